"""rollout.models on a local registry: what the signals of a run are rebuilt with. The sha256 of
the version's weights travels to the workers, which refuse other weights."""
from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from conf.settings import Settings, load_settings
from jobs.engine import build_signals
from signals import base
from signals.embedders.efficientnet import default_weights_path
from signals.weights import WeightsMismatch
from tests.reference import perturbed_efficientnet

pytestmark = pytest.mark.usefixtures("empty_model_cache")


@pytest.fixture
def lakehouse(tmp_path, empty_registry_db) -> Path:
    """A lakehouse folder holding only an empty registry."""
    (tmp_path / "lakehouse" / "_registry").mkdir(parents=True)
    shutil.copy(empty_registry_db, tmp_path / "lakehouse" / "_registry" / "mlflow.db")
    return tmp_path / "lakehouse"


def image_embedding_only(lakehouse: Path, *overrides: str) -> Settings:
    others = [name for name in load_settings("local").signals if name != "image_embedding"]
    return load_settings("local", [f"lakehouse={lakehouse}", *(f"signals.{n}.enabled=false" for n in others), *overrides])


def sha256_of(path: Path | str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_weights_overwritten_after_registration_are_refused_when_loaded(lakehouse, tmp_path):
    weights = tmp_path / "efficientnet.pth"
    shutil.copy(default_weights_path(), weights)
    registered = sha256_of(weights)
    settings = image_embedding_only(lakehouse, f"signals.image_embedding.params.weights_path={weights}")
    signal = build_signals(settings)["image_embedding"]  # the first run registers the weights: version 1
    assert (signal.config.model.version, signal.config.weights_sha256) == ("1", registered)

    perturbed_efficientnet(weights)  # overwritten in place: the same path, other weights
    for stale in (signal, build_signals(settings)["image_embedding"]):  # this run's signal, and the next run's
        assert (stale.config.model.version, stale.config.weights_sha256) == ("1", registered)
        with pytest.raises(WeightsMismatch) as refused:
            stale.load()
        assert all(part in str(refused.value) for part in (str(weights), registered, sha256_of(weights)))


def test_weights_are_hashed_once_per_worker_not_per_task(lakehouse, monkeypatch):
    signal = build_signals(image_embedding_only(lakehouse))["image_embedding"]
    hashed = []
    monkeypatch.setattr(base, "weights_sha256", lambda path, real=base.weights_sha256: hashed.append(path) or real(path))
    for _ in range(3):  # three tasks in one worker
        signal.load()
    assert hashed == [default_weights_path()]
