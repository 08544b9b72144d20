"""Which model version every signal runs: resolved through the MLflow registry, once per run,
on the driver.

Each signal is a registered model of its own name (`image_embedding`, `image_safety`, ...).
Its configured weights are registered on first use (with their source, sha256 and loading
settings) and become the `champion`; after that the registry, not the configuration, decides.
A run resolves the alias it computes (`champion`, or the signal's `challenger` alias for a
shadow run) to a version number, and the signal is rebuilt with that version's settings, so
the version goes to the executors inside the signal and onto every row and commit. The sha256
of the version's weights travels with it: each worker checks the weights it loads against it.
"""
from __future__ import annotations

from dataclasses import replace

from conf.settings import Settings
from lake.registry import CHALLENGER, CHAMPION, Registry
from signals.base import ModelRef, Signal
from signals.catalog import build_signal


def registry_for(settings: Settings) -> Registry:
    return Registry(settings.registry_uri)


def champion_version(settings: Settings, signal: str) -> str:
    """The version whose rows consumers of `signal` read now: pinned in config, or the registry's."""
    conf = settings.signals[signal]
    if conf.model.version or not settings.registry.enabled:
        return str(conf.model.version)
    return registry_for(settings).resolve(signal, conf.model.alias).version


def resolve_versions(settings: Settings, signals: dict[str, Signal], role: str = CHAMPION) -> dict[str, Signal]:
    """The signals rebuilt at the registry version their role names (unchanged without a registry)."""
    if not settings.registry.enabled:
        return signals
    registry = registry_for(settings)
    resolved = {}
    for name, signal in signals.items():
        conf = settings.signals[name]
        source = signal.weights_source() or f"code:{type(signal).__module__}.{type(signal).__qualname__}"
        registry.register_first_use(name, source, {"kind": conf.kind, **signal.config.params}, description=conf.model.name)
        if role == CHALLENGER:
            if conf.challenger not in registry.aliases(name):
                continue  # a shadow run computes only the signals that have a challenger
            ref = conf.challenger
        else:
            ref = conf.model.version or conf.model.alias
        model = registry.resolve(name, ref)
        params = {k: v for k, v in model.params.items() if k != "kind"}
        resolved[name] = build_signal(conf.kind, replace(signal.config, model=ModelRef(conf.model.name, model.version), params=params,
                                                         weights_sha256=model.weights_sha256))
    if not resolved:
        raise ValueError(f"no enabled signal has a {role!r} version in the registry; register one first")
    return resolved
