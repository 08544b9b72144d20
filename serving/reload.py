"""The scorer in service, replaced whole when the lakehouse names other champions or indexes.

`check()` (run periodically, off the event loop) compares what the registry and the index
manifests name now with what the current scorer loaded; when they differ it loads a complete new
scorer beside the current one and then swaps the reference in one assignment. A batch takes the
scorer once, when it starts (`current`), so every item of it is scored by one scorer: no request
sees half a reload. Models no scorer uses any more leave the process's model cache.
"""
from __future__ import annotations

import logging
from typing import Any

from conf.settings import Settings
from rollout.models import champion_version
from serving.scorer import Scorer, index_manifests
from signals import model_cache
from signals.embedders.base import Embedder

log = logging.getLogger(__name__)


def named_state(settings: Settings, embedders: set[str]) -> dict[str, Any]:
    """What a scorer loaded now would hold (Scorer.state's shape): the champion version of each
    enabled signal, and the build of each embedder's index that holds its champion's vectors."""
    versions = {name: champion_version(settings, name) for name in sorted(settings.enabled_signals)}
    manifests, _ = index_manifests(settings.lakehouse_root, {name: versions[name] for name in embedders if name in versions})
    return {"signals": versions, "indexes": {name: manifest.build for name, manifest in sorted(manifests.items())}}


def models_of(scorer: Scorer) -> set[Any]:
    """The model cache entries a scorer uses: its signals' and their backing embedders' (a labeler's model is its embedder's)."""
    return {key for s in scorer.signals.values() for key in (s.cache_key, *(b.cache_key for b in s.backbones()))}


class Champions:
    """The current scorer, and how many times it was replaced."""

    def __init__(self, settings: Settings, scorer: Scorer | None = None) -> None:
        self.settings = settings
        self.current = scorer or Scorer.load(settings)
        self.reloads = 0
        self.last_error: str | None = None  # why the last check failed (the loaded scorer serves on)

    def score(self, items: list[Any]) -> list[Any]:
        """The items scored by the scorer current when the batch starts."""
        return self.current.score(items)

    def check(self) -> bool:
        """Reload when the champions or the indexes changed; True if it did. A failure (the registry
        unreachable, a model that does not load) keeps the loaded scorer and is reported in `last_error`."""
        try:
            embedders = {name for name, s in self.current.signals.items() if isinstance(s, Embedder)}
            if named_state(self.settings, embedders) == self.current.state:
                self.last_error = None
                model_cache.retain(models_of(self.current))  # what a reload that failed halfway loaded (kept for its retries)
                return False
            fresh = Scorer.load(self.settings)
        except Exception as exc:  # noqa: BLE001 - a service keeps serving what it has
            self.last_error = f"{type(exc).__name__}: {exc}"
            log.exception("reload failed; serving the loaded champions")
            return False
        before = self.current.state
        self.current = fresh  # the swap: one reference assignment
        self.reloads += 1
        self.last_error = None
        model_cache.retain(models_of(fresh))
        log.warning("reloaded: %s -> %s", before, fresh.state)
        return True
