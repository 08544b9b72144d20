"""The lifecycle every signal follows, whether it outputs a vector or label scores.

1. Construct on the driver from configuration: cheap, picklable, no weights touched.
2. `load(gpu_addresses)` on the worker: weights are read once per worker process (model_cache).
3. `prepare(row)` per row on the CPU: decode and preprocess; raises InputError for bad input.
4. `compute(prepared)` per model batch: one output value per row.

Keeping prepare and compute apart lets the runner prepare the next batch on another thread while
the model works on the current one, and turns a bad row into an error row without losing its
neighbours. The same object serves the Spark UDF, the tests, the benchmarks and an online scorer.
"""
from __future__ import annotations

import math
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import torch

from signals import model_cache
from signals.code_fingerprint import code_sha256
from signals.decode import DecodeLimits
from signals.device import select_device
from signals.fetch import FetchPolicy
from signals.profiling import stage_times
from signals.weights import WeightsMismatch, weights_sha256

if TYPE_CHECKING:
    import pandas as pd

    from signals.embedders.base import Embedder

InputKind = Literal["image", "text"]
FETCH_THREADS = 4  # default prepare threads of a signal that fetches: each holds at most one fetch's bytes


@dataclass(frozen=True)
class ModelRef:
    """Which model a signal row was computed with: recorded on every row."""

    name: str
    version: str


@dataclass(frozen=True)
class RowError:
    """A value `compute` may return for one row whose input only failed on the model's side
    (e.g. an image that the GPU decoder and the CPU fallback both refused): that row becomes an
    error row with `reason`, its batch mates keep their values."""

    reason: str


@dataclass(frozen=True)
class SignalConfig:
    """Everything a signal needs, resolved on the driver and shipped to workers.

    `decode` and `fetch` come from the configuration's `decode:` and `fetch:` sections alone,
    never from `params`, which a model's registry entry may override: whoever writes the registry
    (or the corpus) does not set the limits and the allowlist that protect every executor."""

    signal: str
    model: ModelRef
    batch_size: int = 32
    device: str = "auto"
    params: Mapping[str, Any] = field(default_factory=dict)
    decode: DecodeLimits = field(default_factory=DecodeLimits)
    # the sha256 the registry recorded for the version's weights: the worker refuses others
    weights_sha256: str | None = None
    fetch: FetchPolicy = field(default_factory=FetchPolicy)


class Signal(ABC):
    """One signal: inputs of one kind in, one output value per row out."""

    input_kind: ClassVar[InputKind]
    input_columns: ClassVar[tuple[str, ...]]
    # the model pads each batch to its longest row (a text transformer): batches of rows of
    # similar `sort_keys` run several times faster, so the runner forms them
    pads_batches: ClassVar[bool] = False
    # the params that say WHICH model this is (where its weights are, its architecture, how much of
    # a text it reads), each class naming those it reads itself (`identity_names` gathers them over
    # its bases): the model registry records them per version and decides them; every other param
    # says how the model is RUN (batch sizes, threads, thresholds, decoding) and comes from the configuration
    identity_params: ClassVar[tuple[str, ...]] = ()
    # the default of each identity param that has one, written here once and read by its getter: a param
    # at its default names the model the param unset names, so the registry records and compares neither
    # (`identity`); a param that must be given (weights with no default) has none
    identity_defaults: ClassVar[Mapping[str, Any]] = {}
    # the identity params whose default is a place only the install knows (its packaged weights), each with what
    # finds that place: one naming it (however the path is spelled) names the model the param unset names (`identity`)
    installed_defaults: ClassVar[Mapping[str, Callable[[], str]]] = {}
    # the params that may name a local file or folder the workers read (weights, a model's configs):
    # one relative to the driver's folder is made absolute there (rollout.models.configured_signal)
    path_params: ClassVar[tuple[str, ...]] = ()
    # the params that say how it is run, each class naming those it reads itself (`known_params`
    # gathers them over its bases): a profile's param that is neither these nor identity is a typo
    run_params: ClassVar[tuple[str, ...]] = ("gpu_batch_size", "prepare_threads", "mixed_precision")
    # a derived signal reads these columns of a stored row (a head: the item's embedding row),
    # joined in by the job, instead of its corpus inputs (which still make its input hash)
    stored_columns: ClassVar[tuple[str, ...]] = ()
    # versions come only from training here (`content-signals train`), never registered from the configuration
    trained_here: ClassVar[bool] = False
    # runs on the CPU whatever its device preference: a few small products per item, where a GPU gains
    # nothing and its half precision and TF32 would move the scores from the model called directly
    cpu_only: ClassVar[bool] = False

    def __init__(self, config: SignalConfig) -> None:
        self.config = config
        self.device: torch.device | None = None
        self._resources: Any = None

    @property
    def signal(self) -> str:
        return self.config.signal

    @property
    def input_parts(self) -> tuple[InputKind, ...]:
        """The kinds of corpus input its input hash covers, in order: its own kind, or each
        embedding's for a head that reads several (signals.labels.head)."""
        return (self.input_kind,)

    @classmethod
    def identity_names(cls) -> tuple[str, ...]:
        """The identity params of its class and bases (a text input's `max_chars` too), so that a version names all of them."""
        return tuple(dict.fromkeys(name for k in cls.__mro__ for name in vars(k).get("identity_params", ())))

    @classmethod
    def identity_default_values(cls) -> dict[str, Any]:
        """The defaults of the identity params of its class and bases (see `identity_defaults`)."""
        return cls._declared_over_bases("identity_defaults")

    @classmethod
    def _declared_over_bases(cls, attribute: str) -> dict[str, Any]:
        """A mapping class attribute merged over its class and bases, a class's own entries over its bases'."""
        return {name: value for k in reversed(cls.__mro__) for name, value in vars(k).get(attribute, {}).items()}

    @classmethod
    def identity_value(cls, name: str, value: Any) -> Any:
        """`value` of identity param `name` as the type of its default (`max_chars` "4096" or 4096.0 is 4096, `temperature`
        "0.5" is 0.5), so that spellings of one value name one version; ValueError naming the param for a value
        not of that type (a param without a numeric default is kept as given)."""
        default = cls.identity_default_values().get(name)
        if not isinstance(default, int | float):
            return value
        kind = type(default)
        try:
            number = math.nan if isinstance(value, bool) else float(value)
        except (TypeError, ValueError):
            number = math.nan
        if not math.isfinite(number) or (kind is int and not number.is_integer()):
            raise ValueError(f"params.{name}: {value!r} is not {'an integer' if kind is int else 'a number'}, "
                             f"which {name} is (its default: {default!r})")
        return kind(number)

    @classmethod
    def identity(cls, params: Mapping[str, Any]) -> dict[str, Any]:
        """The identity params among `params` (see `identity_params`), each as `identity_value` reads it (one it cannot read
        kept as written: a version recorded so matches no configured value), less those at their default (`_at_default`),
        which name the same model unset."""
        identity = {name: cls._identity_value_as_recorded(name, params[name]) for name in cls.identity_names() if name in params}
        return {name: value for name, value in identity.items() if not cls._at_default(name, value)}

    @classmethod
    def _at_default(cls, name: str, value: Any) -> bool:
        """Whether `value` of identity param `name` is its default: its declared one (`identity_defaults`), or the place
        its installed default finds (`installed_defaults`) on this install, symlinks resolved."""
        defaults = cls.identity_default_values()
        if name in defaults:
            return value == defaults[name]
        locate = cls._declared_over_bases("installed_defaults").get(name)
        return locate is not None and isinstance(value, str) and os.path.realpath(value) == os.path.realpath(locate())

    @classmethod
    def _identity_value_as_recorded(cls, name: str, value: Any) -> Any:
        """`identity_value`, or `value` as written where it is not of its default's type."""
        try:
            return cls.identity_value(name, value)
        except ValueError:
            return value

    @classmethod
    def known_params(cls) -> frozenset[str]:
        """Every param this signal reads: its identity params and the run params of its class and bases."""
        return frozenset(cls.identity_names()).union(*(vars(k).get("run_params", ()) for k in cls.__mro__))

    def on_device(self, device: str) -> Signal:
        """This signal with device preference `device` ("auto", "cpu", "cuda"): itself if it has
        it already, else a configured (not loaded) copy; where a job placed it decides (udfs.resources)."""
        return self if device == self.config.device else type(self)(replace(self.config, device=device))

    @property
    def batch_size(self) -> int:
        """Rows per model batch: `params.gpu_batch_size` once loaded on a GPU (when set), else
        the configured `batch_size`. GPUs want far larger batches than a CPU core does."""
        gpu_batch = self.config.params.get("gpu_batch_size")
        if gpu_batch and self.device is not None and self.device.type == "cuda":
            return int(gpu_batch)
        return self.config.batch_size

    @property
    def fetches(self) -> bool:
        """Whether preparing a row may wait on the network (an image fetched by URI): the worker
        then prepares ahead on every device, so fetches overlap the model. Default: no."""
        return False

    @property
    def prepare_threads(self) -> int:
        """Threads that prepare (fetch, decode, preprocess) the rows of a batch:
        `params.prepare_threads`, default 1 (the runner's one prefetch thread), or FETCH_THREADS
        for a signal that `fetches` (threads waiting on the network take no core). More only pays
        where cores are free, e.g. a GPU task given several CPUs; PIL and torch release the GIL
        while they work."""
        default = FETCH_THREADS if self.fetches else 1
        return max(1, int(self.config.params.get("prepare_threads", default)))

    @abstractmethod
    def resource_key(self) -> Hashable:
        """What identifies the loaded weights, so that signals sharing a model share one copy."""

    @abstractmethod
    def load_resources(self, device: torch.device) -> Any:
        """Read the weights and build the model (and its preprocessing) on `device`."""

    @abstractmethod
    def prepare(self, row: Mapping[str, Any]) -> Any:
        """CPU work for one row; raise signals.decode.InputError for unusable input."""

    def sort_keys(self, frame: pd.DataFrame) -> Sequence[int]:
        """Per input row, its size for the model (e.g. a text's length): with `pads_batches`,
        the runner batches rows of similar size together. Default: all alike."""
        return [0] * len(frame)

    @property
    def prepares_batches(self) -> bool:
        """Whether `prepare_batch` does real work here (e.g. GPU decoding): the runner then gives
        it a prefetch thread of its own, so per-row preparation, batch preparation and the model
        all overlap. Default: no."""
        return False

    def prepare_batch(self, inputs: list[Any]) -> list[Any]:
        """Batch-level preparation on the prefetch thread, after `prepare` of each good row and
        while the model runs the previous batch (e.g. decoding on the GPU, the copy to it).
        One value per input, in order; a RowError makes that row an error row. Default: none."""
        return inputs

    @abstractmethod
    def compute(self, prepared: list[Any]) -> list[Any]:
        """The model on one batch of prepared rows: one output value per row (a RowError for a
        row that fails alone)."""

    @abstractmethod
    def result_columns(self, values: list[Any | None]) -> dict[str, list[Any]]:
        """Output columns of a batch, from per-row values (None for error rows)."""

    def backbones(self) -> tuple[Embedder, ...]:
        """The embedders whose forward pass computes this signal's values (an embedder itself, a
        labeler on an embedder's model that embedder): signals.shared_forward shares one pass
        among those of one loaded model. Default: none."""
        return ()

    def weights_source(self) -> str | None:
        """Where the weights come from (a file, a folder, a hub tag), for the model registry;
        None for signals whose logic is all code."""
        return None

    def code_sha256(self) -> str | None:
        """The fingerprint of its code (signals.code_fingerprint) where its logic is all code (no `weights_source`): its
        version records it, as another's records its weights' sha256, so that an edited rule is not run as that version."""
        return code_sha256(type(self)) if self.weights_source() is None else None

    def check(self, value: Any) -> None:  # noqa: B027 - an optional hook: most signals check nothing
        """Raise ValueError if one row's output is unusable (it becomes that row's error)."""

    def verify_weights(self) -> None:
        """Raise WeightsMismatch unless the weights hash to the registry version's sha256 (when
        the version has one): a row stamped with a version must have been computed with its
        weights, whatever happened to the file since it was registered."""
        expected = self.config.weights_sha256
        if expected is None:
            return
        source = self.weights_source()
        actual = weights_sha256(source) if source is not None else None
        if actual != expected:
            raise WeightsMismatch(
                f"{self.signal}: the weights at {source} have sha256 {actual}, but version {self.config.model.version} "
                f"was registered with sha256 {expected}; refusing to compute rows of that version with other weights "
                f"(register these weights as a new version)"
            )

    @property
    def cache_key(self) -> Hashable:
        """The worker's model cache entry of this signal on its device: the weights, and the sha256
        they were verified against, so that signals sharing a model only share weights they agree on."""
        return (self.resource_key(), str(self.device), self.config.weights_sha256)

    def load(self, gpu_addresses: tuple[str, ...] = ()) -> Signal:
        """Attach the worker's cached model, loading it (weights verified) on first use in this process."""
        self.device = torch.device("cpu") if self.cpu_only else select_device(self.config.device, gpu_addresses)

        def load_now() -> Any:
            with stage_times.time("model_load", 1):  # counted only when this worker really loads
                self.verify_weights()  # once per worker and model, like the load: hashing reads every byte
                return self.load_resources(self.device)

        self._resources = model_cache.get_or_load(self.cache_key, load_now)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed input shapes: pick the fastest kernels once
            torch.backends.cuda.matmul.allow_tf32 = True
        return self

    @property
    def resources(self) -> Any:
        if self._resources is None:
            raise RuntimeError(f"{self.signal}: call load() before using the model")
        return self._resources

    def to_device(self, batch: torch.Tensor) -> torch.Tensor:
        """Copy a CPU batch to the model's device: pinned and non-blocking on the GPU."""
        if self.device is None or self.device.type != "cuda":
            return batch
        return batch.pin_memory().to(self.device, non_blocking=True)

    def autocast(self):
        """Mixed precision on the GPU; full precision on the CPU so results match the reference."""
        if self.device is not None and self.device.type == "cuda" and self.config.params.get("mixed_precision", True):
            return torch.autocast("cuda", dtype=torch.float16)
        return torch.autocast("cpu", enabled=False)
