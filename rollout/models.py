"""Which model version every signal runs: resolved through the MLflow registry, once per run,
on the driver.

Each signal is a registered model of its own name (`image_embedding`, `image_safety`, ...).
Its configured weights are registered on first use (with their source, sha256 and the params
that identify the model) and become the `champion`; after that the registry, not the
configuration, decides which model runs. A run resolves the alias it computes (`champion`, or
the signal's `challenger` alias for a shadow run) to a version number, and the signal is rebuilt
with that version's identity params, so the version goes to the executors inside the signal and
onto every row and commit. The sha256 of the version's weights travels with it: each worker
checks the weights it loads against it.

The registry decides WHICH model runs, never HOW: a version records only its signal kind and
the params its class and bases declare as identity params (`Signal.identity_names`: the weights'
location, the architecture, a text signal's `max_chars`). Batch sizes, threads, thresholds and decoding limits always come
from the configuration, and a version whose params hold anything else is refused: whoever can
write the registry database does not decide how every executor reads its input.
"""
from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from conf.settings import Settings, UsageError
from lake.registry import (
    CHALLENGER,
    CHAMPION,
    AliasMoved,
    RegisteredModel,
    Registry,
    RegistryError,
    challenger_is_champion,
    registry_exists,
)
from signals.base import ModelRef, Signal, SignalConfig
from signals.catalog import build_signal, signal_class
from signals.labels.head import embedding_reads
from signals.weights import driver_path

KIND = "kind"
# Without the registry a signal has one version, its pinned one, which is also the champion's: a "challenger"
# run would compute the champion's rows again, and a canary's commit would replace the window's with its slice.
NO_CHALLENGER_WITHOUT_REGISTRY = ("--challenger needs the model registry (registry.enabled is false): every signal has only its "
                                  "pinned version, the champion's, whose rows a canary would cut down to its slice")
# Run settings that versions registered before identity params recorded together with them
# (the whole configured params): dropped when read, never taken, and left out when versions are compared
# (`identity_params`; a text signal's `max_chars`, an identity param since, is taken from such a version).
LEGACY_RUN_PARAMS = frozenset({
    "gpu_batch_size", "prepare_threads", "mixed_precision", "gpu_decode", "gpu_decode_max_pixels", "decode_limits",
    "max_chars", "max_batch_tokens", "thresholds",
})


def registry_for(settings: Settings, existing: bool = False) -> Registry:
    """The profile's model registry; with `existing`, refused where none was ever made (commands that
    only move aliases or read, run on a mistyped lakehouse, would otherwise leave an empty one there)."""
    if existing and not registry_exists(settings.registry_uri):
        raise UsageError(f"no model registry at {settings.registry_uri}: nothing was registered in this lakehouse (is --set lakehouse right?)")
    return Registry(settings.registry_uri)


def identity_params(kind: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """What the registry records of a signal's params, and compares of a version's (`Registry.register`'s
    `identifies`): its kind (a version's own, where it records one) and the params that identify its model,
    less those at their default; not the run settings a version recorded before it recorded these alone."""
    return {KIND: params.get(KIND, kind), **signal_class(kind).identity(params)}


def model_source(signal: Signal) -> str:
    """What the registry records a version of `signal` comes from: its weights, or the name of its
    code (`code:module.Class`) for a signal whose logic is all code, whose versions differ in their params alone."""
    return signal.weights_source() or f"code:{type(signal).__module__}.{type(signal).__qualname__}"


def registered_identity(name: str, model: RegisteredModel, kind: str) -> dict[str, Any]:
    """The identity params of a registry version of signal `name` (kind left out), refusing a
    version of another kind and params that identify nothing."""
    params = dict(model.params)
    registered_kind = params.pop(KIND, kind)
    if registered_kind != kind:
        raise UsageError(f"{name} version {model.version} is a {registered_kind!r} model; the configuration runs {name} as {kind!r}")
    allowed = signal_class(kind).identity_names()
    unknown = sorted(params.keys() - set(allowed) - LEGACY_RUN_PARAMS)
    if unknown:
        raise UsageError(
            f"{name} version {model.version}: its params in the registry hold {unknown}, which do not identify a {kind!r} "
            f"model (its identity params: {list(allowed)}); how a model runs comes from the configuration, not the registry"
        )
    return {k: v for k, v in params.items() if k in allowed}


def trained_kind(name: str, model: RegisteredModel, configured: str) -> str:
    """The kind of a version of a head: the one `train` registered (a head on an image embedding,
    a text one, or several joined: the same task's versions may differ), if it is a head's."""
    kind = str(model.params.get(KIND, configured))
    if not signal_class(kind).trained_here:
        raise UsageError(f"{name} version {model.version} is a {kind!r} model, not a head trained here")
    return kind


def runnable(name: str, model: RegisteredModel, configured: str) -> tuple[str, dict[str, Any]]:
    """The kind and identity params a version of signal `name` (configured as kind `configured`)
    runs with; a UsageError for a version the profile cannot run (of another kind, say), which
    `promote` refuses as every run on it would."""
    kind = trained_kind(name, model, configured) if signal_class(configured).trained_here else configured
    return kind, registered_identity(name, model, kind)


def champion_version(settings: Settings, signal: str) -> str:
    """The version whose rows consumers of `signal` read now: pinned in config, or the registry's."""
    conf = settings.signals[signal]
    if conf.model.version or not settings.registry.enabled:
        return str(conf.model.version)
    return registry_for(settings).resolve(signal, CHAMPION).version


def heads_reading(settings: Settings, registry: Registry, signal: str, version: str) -> list[str]:
    """The enabled heads of the profile whose running version (pinned, else the champion) reads `version` of embedding
    `signal`, each as "name (version N)": a refresh computes the embedding's champion alone, so once that moves away from
    `version` their rows of items new or changed since are errors until a head trained on the new one is promoted."""
    heads = []
    for name in settings.enabled_signals:
        conf = settings.signals[name]
        running = conf.model.version or registry.aliases_if_registered(name).get(CHAMPION)
        if not signal_class(conf.kind).trained_here or running is None:
            continue
        try:
            head = registry.resolve(name, running)
        except RegistryError:  # a pin of a version never registered: its jobs refuse it themselves
            continue
        if (signal, version) in embedding_reads(head.params):
            heads.append(f"{name} (version {head.version})")
    return heads


def _check_trained(registry: Registry, name: str, role: str, pinned: str | None) -> None:
    """A signal trained here runs as the champion only once a trained version is (a challenger run skips it otherwise)."""
    if role != CHALLENGER and pinned is None and CHAMPION not in registry.aliases_if_registered(name):
        raise UsageError(f"{name} has no {CHAMPION!r} version: train one (content-signals train TASK) and promote it, "
                         f"or disable signals.{name}")


def check_configured_identity(registry: Registry, name: str, kind: str, configured: Mapping[str, Any], source: str,
                              code: str | None = None) -> None:
    """UsageError where signal `name` has a champion of its configured kind and the profile's identity
    params (`configured`, as `identity_params` makes them, of the model at `source`) with its `code` (a rule's
    fingerprint) are those of none of its versions: the run would register them as a version nothing computes
    and compute the champion without them. A version that recorded no code (registered before) is of any."""
    champion = registry.aliases_if_registered(name).get(CHAMPION)
    if champion is None:
        return  # first use: the configured params become the champion
    versions = registry.versions(name)
    if any(identity_params(kind, v.params) == configured and v.code_sha256 in (None, code) for v in versions):
        return
    running = next((v for v in versions if v.version == champion), None)
    if running is None or running.params.get(KIND, kind) != kind:
        return  # a champion of another kind: refused with its own message (`runnable`)
    given = {k: v for k, v in configured.items() if k != KIND}
    if any(identity_params(kind, v.params) == configured for v in versions):  # the params of a version, its code of none
        raise UsageError(_code_edited(name, f"no registered version of {name} has this code (its champion is version {champion})",
                                      source, given))
    theirs = signal_class(kind).identity(running.params)
    raise UsageError(
        f"signals.{name}.params {given} are not those of any registered version of {name} (its champion, version "
        f"{champion}, has {theirs or 'the defaults'}). The registry, not the profile, decides which version runs: a "
        f"run would compute the version its alias or pin names without them, its rows saying nothing changed. To run "
        f"them, register them as the challenger (content-signals register {name} --source {source} --param NAME=VALUE), "
        f"compute it beside the champion (backfill --challenger), compare and promote it; or set signals.{name}.params back"
    )


def check_code(registry: Registry, name: str, model: RegisteredModel, code: str, source: str,
                given: Mapping[str, Any]) -> None:
    """UsageError where `model`, the version a run computes of signal `name`, recorded other code than the signal's now
    (`code`: a rule edited since), whose rows would be written as that version beside its rows of the old rules; the
    code recorded where the version recorded none (registered before versions did: this run's is all that can say)."""
    if model.code_sha256 == code:
        return
    if model.code_sha256 is None:
        registry.record_code(name, model.version, code)
        return
    found = f"version {model.version} was registered with other code than {name}'s now"
    same = [v.version for v in registry.versions(name) if v.code_sha256 == code]
    if not same:
        raise UsageError(_code_edited(name, found, source, given))
    target = CHALLENGER if registry.aliases(name).get(CHALLENGER) in same else same[-1]
    raise UsageError(f"{found} ({source}): its rules were edited since, and a run would write rows of the new ones as version "
                     f"{model.version}, beside its rows of the old, which nothing can compute any more. This code is version "
                     f"{' and '.join(same)}'s: compute it beside the champion (backfill --challenger), compare and promote it "
                     f"(content-signals promote {name} {target}); or put the code back")


def _code_edited(name: str, found: str, source: str, given: Mapping[str, Any]) -> str:
    """The refusal of a rule whose code is no version's: how to register it."""
    params = "".join(f" --param {k}={v}" for k, v in given.items())
    return (f"{found} ({source}): its rules were edited since it was registered, and a run would write rows of the new ones as "
            f"the old version, beside its rows of the old. To run it, register it as the challenger (content-signals register "
            f"{name} --source {source}{params}), compute it beside the champion (backfill --challenger), compare and promote it; "
            f"or put the code back")


def resolve_versions(settings: Settings, signals: dict[str, Signal], role: str = CHAMPION) -> dict[str, Signal]:
    """The signals rebuilt at the registry version their role names (unchanged without a registry,
    where a challenger is a UsageError): that version's identity params, the configuration's run settings."""
    if not settings.registry.enabled:
        if role == CHALLENGER:
            raise UsageError(NO_CHALLENGER_WITHOUT_REGISTRY)
        return signals
    registry = registry_for(settings)
    resolved, champions = {}, []
    for name, signal in signals.items():
        conf = settings.signals[name]
        code = None  # a rule's fingerprint: a head's version is its trained weights
        if type(signal).trained_here:  # a head: its versions come from `train` alone
            _check_trained(registry, name, role, conf.model.version)
        else:
            source, code = model_source(signal), signal.code_sha256()
            configured = identity_params(conf.kind, signal.config.params)
            check_configured_identity(registry, name, conf.kind, configured, source, code)
            registry.register_first_use(name, source, configured, description=conf.model.name,
                                        identifies=functools.partial(identity_params, conf.kind), code_sha256=code)
        if role == CHALLENGER:
            aliases = registry.aliases_if_registered(name)
            if CHALLENGER not in aliases:
                continue  # a shadow run computes only the signals that have a challenger
            if challenger_is_champion(aliases, conf.model.version):
                champions.append(f"{name}'s is its champion, version {aliases[CHALLENGER]}")  # promoted, or retrained alike:
                continue  # its rows are the champion's, which a canary would cut down to its slice
            ref = CHALLENGER
        else:
            ref = conf.model.version or CHAMPION
        model = registry.resolve(name, ref)
        kind, identity = runnable(name, model, conf.kind)
        if code is not None:
            check_code(registry, name, model, code, source, identity)
        run = {k: v for k, v in signal.config.params.items() if k not in signal.identity_names()}
        params = {**run, **identity}
        resolved[name] = build_signal(kind, replace(signal.config, model=ModelRef(conf.model.name, model.version), params=params,
                                                    weights_sha256=model.weights_sha256))
    if not resolved:
        same = f" other than its champion ({'; '.join(champions)})" if champions else ""
        raise UsageError(f"no enabled signal has a {role!r} version{same} in the registry; register one first")
    return resolved


def check_still_challengers(settings: Settings, signals: Mapping[str, Signal]) -> None:
    """AliasMoved where a challenger run's version became its signal's champion while it ran (a promote
    meanwhile), checked before each of its commits: its canary would cut the new champion's rows of the
    window down to its slice, as `resolve_versions` refuses at the start of a run."""
    registry = registry_for(settings)
    promoted = [f"{name} version {s.config.model.version}" for name, s in signals.items()
                if challenger_is_champion({**registry.aliases(name), CHALLENGER: s.config.model.version}, settings.signals[name].model.version)]
    if promoted:
        raise AliasMoved(f"{', '.join(promoted)} became the champion while this challenger run computed it (a promote meanwhile): "
                         "this commit and the run's later ones were not made, so the champion's rows stay whole")


def configured_signal(settings: Settings, name: str, params: Mapping[str, Any] | None = None) -> Signal:
    """Signal `name` of the profile configured (not loaded), `params` over the profile's, at its
    pinned model version or "unresolved" until the registry resolves one. Its `path_params` given
    relative to this (the driver's) folder or `~` are made absolute: the executors' Python workers
    read them from work folders of their own, so a job ships and registers the driver's files. Its identity params are
    typed as their defaults (`Signal.identity_value`: "4096" from a quoted YAML value is 4096), so that a run compares
    and registers the value, not its spelling; one that is not of that type is a UsageError naming it."""
    s = settings.signals[name]
    kind = signal_class(s.kind)
    given = {**s.params, **(params or {})}
    if unread := sorted(set(given) - kind.known_params()):
        raise UsageError(f"signals.{name}.params: {', '.join(map(repr, unread))} is read by no {name} signal ({s.kind}), which "
                         f"reads {', '.join(sorted(kind.known_params()))}")
    given = {k: driver_path(v) if k in kind.path_params and isinstance(v, str) else v for k, v in given.items()}
    try:
        given = {k: kind.identity_value(k, v) if k in kind.identity_names() else v for k, v in given.items()}
    except ValueError as e:
        raise UsageError(f"signals.{name}.{e}") from None
    return build_signal(s.kind, SignalConfig(name, ModelRef(s.model.name, s.model.version or "unresolved"), s.batch_size, s.device,
                                             given, decode=settings.decode.limits, fetch=settings.fetch.policy))


def build_signals(settings: Settings, role: str = CHAMPION) -> dict[str, Signal]:
    """The enabled signals of the profile at the model versions `role` resolves to in the
    registry, configured (not loaded): what a job ships to its executors and the online scorer loads."""
    enabled = {name: configured_signal(settings, name) for name in settings.enabled_signals}
    if not enabled:
        raise UsageError(f"profile {settings.profile!r} enables no signals")
    return resolve_versions(settings, enabled, role)
