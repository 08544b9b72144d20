"""Run configuration: YAML profiles in conf/ layered base -> profile -> command-line overrides.

Profiles are validated with pydantic (`extra="forbid"`), so a typo in a key is an error at
start-up, not a silently ignored setting discovered after a six-hour backfill; so is a key given
twice in one mapping, whose last value PyYAML would keep without a word.
"""
from __future__ import annotations

import os
import re
from datetime import date
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, field_validator, model_validator

from signals.contracts import lakehouse_table
from signals.decode import DecodeLimits
from signals.fetch import FetchPolicy
from signals.labels.perceptual_hash import bands_for, bands_for_cosine, simhash_reach
from signals.video.decode import VideoLimits
from signals.video.keyframes import VideoReading, VideoSampling
from signals.video.shots import ShotDetection

# The YAML profiles sit beside this module (package data), read as resources so they are found
# from a zip archive on the Python path too (spark-submit --py-files), not only from files.
CONF_DIR: Traversable = resources.files(__package__)
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class UsageError(ValueError):
    """A command, window or setting the user gave that cannot be run: said in one line, no traceback."""


class DuplicateKey(yaml.YAMLError):
    """A key given twice in one YAML mapping: PyYAML keeps the last one silently, almost always a mistake."""

    def __init__(self, key: Any, first_line: int, second_line: int) -> None:
        super().__init__(f"{key!r} is given twice in one mapping (lines {first_line} and {second_line})")
        self.key, self.first_line, self.second_line = key, first_line, second_line


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a mapping that gives a key twice (DuplicateKey) where PyYAML keeps the last."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *anchor` merges keys an explicit one may override; a key that is no scalar is refused by the base
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise DuplicateKey(key, seen[key], key_node.start_mark.line + 1)
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep)


def read_yaml(text: str) -> Any:
    """`text` read as YAML, safely, a key given twice in one mapping refused (DuplicateKey)."""
    return yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader subclass: plain data only


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelSettings(_Strict):
    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True)  # version: 2 -> "2"

    name: str
    version: str | None = None  # a fixed version; else the registry's champion (lake.registry.CHAMPION)

    @field_validator("version")
    @classmethod
    def _path_safe(cls, v: str | None) -> str | None:
        if v is not None and not _VERSION.match(v):
            raise ValueError(f"model version {v!r} must match {_VERSION.pattern} (it names a partition folder)")
        return v


class ResourceSettings(_Strict):
    """What each task of a signal needs from an executor on a cluster (Spark stage-level
    scheduling; docs/design.md, Per-signal resources); a local[N] master ignores it."""

    cpus: int = Field(1, ge=1)
    gpus: float = Field(0, ge=0)  # a fraction (0.5) shares one GPU between tasks; above 1, whole GPUs only
    cpu_fallback: bool = False  # with device auto: on executors without GPUs, run on `cpus` CPUs instead of refusing

    @field_validator("gpus")
    @classmethod
    def _spark_gpu_amount(cls, gpus: float) -> float:
        """Spark takes a task GPU amount of at most 1 or a whole number."""
        if gpus > 1 and not float(gpus).is_integer():
            raise ValueError(f"gpus {gpus} must be at most 1 or a whole number (Spark's task resource amounts)")
        return gpus


class SignalSettings(_Strict):
    kind: str
    enabled: bool = True
    model: ModelSettings
    batch_size: int = Field(32, gt=0)
    device: str = Field("auto", pattern="^(auto|cpu|cuda)$")
    params: dict[str, Any] = Field(default_factory=dict)
    resources: ResourceSettings = ResourceSettings()

    @model_validator(mode="after")
    def _resources_fit_device(self) -> SignalSettings:
        """A CPU signal holds no GPU, and a CPU fallback is only for a signal free to run where it
        is placed (`device: auto`)."""
        if self.device == "cpu" and self.resources.gpus:
            raise ValueError("device cpu: resources.gpus must be 0 (its tasks would hold a GPU they never use)")
        if self.resources.cpu_fallback and self.device != "auto":
            raise ValueError(f"resources.cpu_fallback needs device auto, not {self.device!r}")
        return self

    @field_validator("params")
    @classmethod
    def _no_decode_limits(cls, params: dict[str, Any]) -> dict[str, Any]:
        """Decode limits are the top-level `decode:` section's alone: params can come from the registry."""
        if "decode_limits" in params:
            raise ValueError("decode limits are set in the top-level `decode:` section, not in a signal's params")
        return params


class SparkSettings(_Strict):
    master: str = "local[2]"
    app_name: str = "content-signals"
    arrow_batch_rows: int = Field(128, gt=0)
    partitions_per_slot: int = Field(4, ge=0)  # fewer input partitions than this per task slot: even them out (udfs.rows.evened)
    executor_wait_s: float = Field(120, gt=0)  # on a cluster: fail when no executor able to run a task registers by then
    # None: left to the cluster (spark-defaults.conf, else Spark's default), a profile's way out of base.yaml's local setting
    conf: dict[str, str | None] = Field(default_factory=dict)

    @field_validator("conf", mode="before")
    @classmethod
    def _as_spark_strings(cls, conf: Any) -> Any:
        """Spark's settings are strings: `--set spark.conf[x]=false` means "false", not a bool."""
        if not isinstance(conf, dict):
            return conf
        return {k: str(v).lower() if isinstance(v, bool) else str(v) if isinstance(v, (int, float)) else v for k, v in conf.items()}

    @property
    def worker_env(self) -> dict[str, str]:
        """Environment variables of the executors and their Python workers (`spark.executorEnv.*`)."""
        prefix = "spark.executorEnv."
        return {k[len(prefix):]: v for k, v in self.conf.items() if k.startswith(prefix) and v is not None}


class SampleCorpusSettings(_Strict):
    n_items: int = Field(480, ge=60)
    seed: int = Field(7, ge=0)  # numpy's generators refuse a negative one
    videos: bool = False  # the sample videos as extra items (sample_corpus/videos.py); the demo turns them on
    photos: str | None = None  # a folder of more photos to cut originals from (sample_corpus/photos.py: a corpus of thousands needs them)


class DedupSettings(_Strict):
    """Near-duplicate rules (jobs.dedup): an edge joins two items when any rule holds."""

    embedding_signal: str = "image_embedding"
    max_hamming: int = Field(10, ge=0, le=64)  # pHash bits apart: a copy on its own (10 is the usual pHash cut)
    confirm_hamming: int = Field(20, ge=0, le=64)  # ... or this close with an embedding agreeing
    confirm_cosine: float = Field(0.94, ge=-1, le=1)
    min_cosine: float = Field(0.985, ge=-1, le=1)  # embedding alone: only near-identical pictures
    max_bucket: int = Field(2000, ge=2)  # a larger LSH bucket joins one item per distinct hash; one of more distinct hashes is skipped
    simhash_seed: int = 0
    simhash_bits: int = Field(1024, ge=64, le=4096, multiple_of=64)  # the SimHash's length: the finer, the fewer pairs of a bucket compared

    @property
    def bands(self) -> int:
        """LSH bands of both hashes, derived from `max_hamming`, not from the corpus size: the fewest
        that make every pHash pair within `max_hamming` bits a candidate for certain (docs/design.md)."""
        return bands_for(self.max_hamming)

    @property
    def simhash_bands(self) -> int:
        """LSH bands of the SimHash's first word: `bands`, or more where `min_cosine` needs them: a
        stricter pHash rule (fewer bands) must not lose the embedding rule's pairs (with one band,
        seven in ten pairs at 0.985 shared no key)."""
        return max(self.bands, bands_for_cosine(self.min_cosine))

    @property
    def simhash_hamming(self) -> int:
        """SimHash bits apart within which two items are compared on their embeddings alone: two
        embeddings at `min_cosine` are farther apart with probability under 1/10,000."""
        return simhash_reach(self.min_cosine, self.simhash_bits)

    @property
    def simhash_confirm_hamming(self) -> int:
        """SimHash bits apart within which two items whose pHashes are within `confirm_hamming` are
        compared: two embeddings at `confirm_cosine` are farther apart with probability under 1/10,000."""
        return simhash_reach(self.confirm_cosine, self.simhash_bits)


class DecodeSettings(_Strict):
    """Limits on every image any signal or job decodes (signals.decode.DecodeLimits documents the
    memory and time they guarantee); shipped to each signal outside its params."""

    max_bytes: int = Field(DecodeLimits.max_bytes, gt=0)
    max_pixels: int = Field(DecodeLimits.max_pixels, gt=0)
    max_decode_bytes: int = Field(DecodeLimits.max_decode_bytes, gt=0)
    max_aspect: float = Field(DecodeLimits.max_aspect, ge=1)
    max_resized_pixels: int = Field(DecodeLimits.max_resized_pixels, gt=0)
    min_side: int = Field(DecodeLimits.min_side, ge=1)
    formats: tuple[str, ...] = DecodeLimits.formats

    @model_validator(mode="after")
    def _valid_limits(self) -> DecodeSettings:
        self.limits  # noqa: B018 - DecodeLimits checks the formats
        return self

    @property
    def limits(self) -> DecodeLimits:
        return DecodeLimits(**self.model_dump())


class CorpusColumns(_Strict):
    """Which of the source's columns hold what the jobs read; None where the source has none. An
    optional column left at its default name is taken as absent when the source lacks it in any letter case (the
    sample corpus has no `image_uri`; a `Title` column must be mapped), unless the source then has no picture at all (image,
    image_uri or video); one named here on purpose must exist."""

    content_id: str = "content_id"
    image: str | None = "image"          # encoded image bytes
    image_uri: str | None = "image_uri"  # or where the image is (fetched by the executors)
    title: str | None = "title"
    description: str | None = "description"
    created_at: str | None = "created_at"
    updated_at: str | None = "updated_at"
    ds: str | None = "ds"                # the item's day (YYYY-MM-DD string or a date) ...
    day_from: str | None = None          # ... or a timestamp to derive it from (its UTC day)
    video: str | None = "video"          # encoded video bytes (signals/video/): a video item's image signals read its keyframes

    @model_validator(mode="after")
    def _complete(self) -> CorpusColumns:
        if (self.ds is None) == (self.day_from is None):
            raise ValueError("corpus.columns needs exactly one of ds (a day column) and day_from (a timestamp column)")
        if self.image is None and self.image_uri is None:
            raise ValueError("corpus.columns needs image (bytes) or image_uri, or both")
        return self


class CorpusSettings(_Strict):
    """The corpus a job reads (jobs/corpus.py): the sample corpus in the lakehouse unless told otherwise."""

    format: Literal["delta", "parquet", "table"] = "delta"
    path: str | None = None          # a folder or URI; default: <lakehouse>/corpus
    table: str | None = None         # a Spark catalog table, with format: table
    version: int | None = Field(None, ge=0)  # pin a Delta version for every run (default: the latest)
    filter: str | None = None        # a Spark SQL condition on the source's own columns
    columns: CorpusColumns = CorpusColumns()

    @model_validator(mode="after")
    def _located(self) -> CorpusSettings:
        if (self.format == "table") != (self.table is not None):
            raise ValueError("corpus.table names a Spark catalog table, and goes with format: table (and only with it)")
        if self.version is not None and self.format != "delta":
            raise ValueError("corpus.version pins a Delta version: only for format: delta")
        return self


class FetchSettings(_Strict):
    """Where image URIs may be fetched from and the limits of each fetch (signals.fetch.FetchPolicy
    documents them); shipped to each signal outside its params. The allowlist is empty by default:
    nothing is fetched until a profile names the roots, buckets and hosts its corpus uses."""

    file_roots: tuple[str, ...] = ()
    s3_prefixes: tuple[str, ...] = ()
    http_hosts: tuple[str, ...] = ()
    allowed_networks: tuple[str, ...] = ()
    s3_endpoint_url: str | None = None
    s3_region: str | None = None
    connect_timeout_s: float = Field(FetchPolicy.connect_timeout_s, gt=0)
    read_timeout_s: float = Field(FetchPolicy.read_timeout_s, gt=0)
    deadline_s: float = Field(FetchPolicy.deadline_s, gt=0)
    retries: int = Field(FetchPolicy.retries, ge=0, le=10)
    backoff_s: float = Field(FetchPolicy.backoff_s, ge=0)
    max_bytes: int = Field(FetchPolicy.max_bytes, gt=0)
    pool_size: int = Field(FetchPolicy.pool_size, gt=0)
    max_redirects: int = Field(FetchPolicy.max_redirects, ge=0)

    @field_validator("file_roots")
    @classmethod
    def _absolute(cls, roots: tuple[str, ...]) -> tuple[str, ...]:
        """A relative root is taken from the driver's working folder (as a relative lakehouse is):
        each Python worker resolves the roots, and an executor's working folder is its own."""
        return tuple(os.path.abspath(root) for root in roots)

    @model_validator(mode="after")
    def _valid_policy(self) -> FetchSettings:
        self.policy  # noqa: B018 - FetchPolicy checks the networks
        return self

    @property
    def policy(self) -> FetchPolicy:
        return FetchPolicy(**self.model_dump())


class RegistrySettings(_Strict):
    """The MLflow model registry: a sqlite store inside the lakehouse unless a URI is given; where
    its runs' artifacts (the compare reports) go: beside a sqlite store, or the tracking server's
    default, unless `artifact_location` (e.g. s3://bucket/lakehouse/_reports) says."""

    enabled: bool = True
    tracking_uri: str | None = None
    artifact_location: str | None = None


class MaintainSettings(_Strict):
    """Table upkeep (`content-signals maintain`, jobs/maintain.py): when a log is checkpointed,
    which small files are compacted, and what a vacuum must keep (docs/design.md, Table upkeep)."""

    checkpoint_every: int = Field(10, ge=1)  # commits since the last checkpoint past which maintain writes one
    small_file_bytes: int = Field(16 * 2**20, gt=0)  # a data file smaller than this is small
    min_small_files: int = Field(4, ge=1)  # a partition is compacted when it holds more small files than this
    target_file_bytes: int = Field(128 * 2**20, gt=0)  # compacted files are about this large
    min_retention_hours: float = Field(168, ge=0, le=24 * 365 * 10)  # a vacuum keeps every version current this recently
    keep_versions: dict[str, tuple[NonNegativeInt, ...]] = Field(default_factory=dict)  # table -> versions a reader pins (indexes' versions are kept without it)


class IndexSettings(_Strict):
    """Nearest-neighbour indexes of the embedding tables (retrieval/): which kind of faiss index
    a number of items gets, and its parameters (docs/design.md, Retrieval indexes)."""

    exact_below: int = Field(50_000, ge=1)    # items: exact search below, IVF-Flat from there
    ivf_lists: int | None = Field(None, ge=1)  # IVF lists (k-means centroids); None: 4 x sqrt(items)
    ivf_probes: int = Field(8, ge=1)           # lists searched per query: recall against query cost
    train_per_list: int = Field(64, ge=39)     # k-means training points per list (faiss asks for at least 39)


class MonitorSettings(_Strict):
    """What `content-signals monitor` compares a run's days with and when it alerts
    (monitoring/rules.py; docs/design.md, Monitoring). Rates and drift are judged only on at
    least `min_rows` values on each side: fewer say nothing either way."""

    reference_days: int = Field(7, ge=1)  # the reference: the previous N days that have statistics ...
    reference_day: str | None = Field(None, pattern=r"^\d{4}-\d{2}-\d{2}$")  # ... or this pinned day
    min_reference_days: int = Field(3, ge=1)  # a rolling reference of fewer days judges no drift (a new signal's warm-up)
    min_rows: int = Field(20, ge=1)
    max_error_rate: float = Field(0.25, ge=0, le=1)  # error items / items of a signal on a day
    max_error_pvalue: float = Field(1e-4, gt=0, le=1)  # ... on a day of fewer than min_rows items: a binomial test this sure
    max_psi: float = Field(0.25, gt=0)  # score drift: PSI above this ...
    max_ks_pvalue: float = Field(1e-4, gt=0, le=1)  # ... and a KS test this sure the scores moved
    max_decision_rate_change: float = Field(0.25, gt=0, le=1)  # decision rate outside reference +- this ...
    max_decision_pvalue: float = Field(1e-4, gt=0, le=1)  # ... and a two-proportion test this sure
    max_domain_auc: float = Field(0.8, gt=0.5, le=1)  # embeddings: a classifier tells the day from the reference this well
    min_neighbour_overlap: float = Field(0.7, ge=0, le=1)  # a new model version's neighbourhoods on the same items: below this it is the model
    sample_size: int = Field(256, ge=8)  # vectors kept per signal, day and run for drift tests
    max_reference_sample: int = Field(1024, ge=8)  # vectors of the reference window drift is tested against
    seed: int = 0

    @field_validator("reference_day", mode="before")
    @classmethod
    def _day_as_written(cls, day: Any) -> Any:
        """YAML reads `2026-11-14` as a date: the day is kept as the string a `ds` is."""
        return day.isoformat() if isinstance(day, date) else day

    @model_validator(mode="after")
    def _can_judge_drift(self) -> MonitorSettings:
        """Refuses values with which drift could never be judged: every verdict would say "not judged", and nothing alert."""
        if self.reference_day is not None:
            try:
                date.fromisoformat(self.reference_day)
            except ValueError:
                raise ValueError(f"monitor.reference_day {self.reference_day} is not a day of the calendar") from None
        elif self.min_reference_days > self.reference_days:
            raise ValueError(f"monitor.min_reference_days {self.min_reference_days} is more than monitor.reference_days "
                             f"{self.reference_days}: a rolling reference never holds enough days and drift is never judged; "
                             "lower min_reference_days or raise reference_days")
        vectors = min(self.sample_size, self.max_reference_sample)
        if self.min_rows > vectors:
            raise ValueError(f"monitor.min_rows {self.min_rows} is more than the vectors an embedding's drift test has on a side "
                             f"(sample_size {self.sample_size}, max_reference_sample {self.max_reference_sample}): embedding "
                             "drift is never judged; lower min_rows or raise those")
        return self


class GateSettings(_Strict):
    """What a head's challenger must show on held-out gold before `promote` moves the champion to it
    (training/gate.py; docs/design.md, Heads, evaluation and the gate)."""

    min_auc_margin: float = Field(0.02, ge=-1, le=1)  # ROC-AUC above the best baseline's (the rule, majority vote) by this
    max_slice_drop: float = Field(0.05, ge=0, le=1)  # no slice's ROC-AUC below a baseline's (the rule's, majority vote's) by more than this
    max_ece: float = Field(0.1, gt=0, le=1)  # expected calibration error at most this
    min_slice_items: int = Field(20, ge=2)  # slices with fewer gold items (or one class only) are not judged
    min_class_items: int = Field(10, ge=1)  # held-out gold items of each class at least this: on fewer, a ROC-AUC is the draw's
    lead_beyond_noise: bool = False  # the lead over each baseline must hold at its 95% interval's low end, not only on these items


class TrainingSettings(_Strict):
    """Heads trained on the stored embeddings (`content-signals train TASK`, training/heads.py)."""

    hidden: int = Field(64, ge=0)  # units of the hidden layer; 0: a logistic regression
    epochs: int = Field(40, ge=1)
    learning_rate: float = Field(3e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    balance_classes: bool = True  # weight the positives' loss by negative over positive mass (training/heads.py)
    standardize: bool = True  # centre and scale each input dimension by the train split's mean and standard deviation
    batch_size: int = Field(64, ge=1)
    shuffle_buffer: int = Field(4096, ge=1)  # rows mixed at once by the loader (bounded memory)
    kept_split_mb: int = Field(256, ge=0)  # a split whose vectors fit is read once and kept for the later epochs; 0: streamed each epoch
    splits: tuple[float, float, float] = (0.7, 0.15, 0.15)  # train, validation, test shares of near-duplicate groups
    seed: int = 0
    precision_at_recall: float = Field(0.8, gt=0, le=1)  # the evaluation reports precision at this recall
    threads: int = Field(1, ge=1)  # torch intra-op threads while training: a head's batches are too small for more
    embeddings: dict[str, str] = Field(default_factory=lambda: {"low_quality": "image_embedding", "text_heavy": "image_embedding",
                                                                "spam_text": "text_embedding"})  # task -> embedding signal
    gate: GateSettings = GateSettings()

    @field_validator("splits")
    @classmethod
    def _shares(cls, splits: tuple[float, float, float]) -> tuple[float, float, float]:
        if min(splits) <= 0 or abs(sum(splits) - 1) > 1e-9:
            raise ValueError(f"splits {splits}: three positive shares that sum to 1")
        return splits


class ServeSettings(_Strict):
    """The online scorer (`content-signals serve`, serving/): where it listens, how it batches
    concurrent requests into one model pass, its request limits and how often it looks for a new
    champion (docs/design.md, Online scoring)."""

    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)  # 0: any free port
    max_batch: int = Field(16, ge=1)  # items of concurrent requests scored in one pass of each model
    max_wait_ms: float = Field(5, ge=0)  # how long the first item of a batch waits for others
    max_queue: int = Field(256, ge=1)  # items waiting for a batch; more are refused at once (503)
    max_connections: int = Field(32, ge=1)  # connections served at once, more answered 503: with max_body_bytes, what bodies may hold
    max_body_bytes: int = Field(45 * 2**20, gt=0)  # a request body past this is refused (413), counted while read
    head_timeout_s: float = Field(10, gt=0)  # a connection whose request head (request line, headers) is not in by then is closed: idle sockets
    write_timeout_s: float = Field(10, gt=0)  # a connection whose client takes none of its answers for this long is closed: clients that never read
    body_timeout_s: float = Field(10, gt=0)  # a body not received in full by then is refused (408): slow clients
    request_timeout_s: float = Field(30, gt=0)  # an item not scored by then is answered 504
    neighbours: int = Field(10, ge=0, le=1000)  # nearest items returned per embedding signal with an index
    reload_check_s: float = Field(30, gt=0)  # how often the champion aliases and the indexes are looked at again


class VideoSettings(_Strict):
    """Limits on every video decoded (signals.video.decode.VideoLimits: checked from the header,
    then on the frames; the decoding process's memory, CPU time and the wait on it) and how it is sampled into shots and keyframes (signals.video.keyframes)."""

    max_bytes: int = Field(VideoLimits.max_bytes, gt=0)
    max_duration_s: float = Field(VideoLimits.max_duration_s, gt=0)
    max_frames: int = Field(VideoLimits.max_frames, gt=0)
    max_pixels: int = Field(VideoLimits.max_pixels, gt=0)
    min_side: int = Field(VideoLimits.min_side, ge=1)
    containers: tuple[str, ...] = VideoLimits.containers
    codecs: tuple[str, ...] = VideoLimits.codecs
    max_memory_bytes: int = Field(VideoLimits.max_memory_bytes, gt=0)
    max_open_cpu_s: float = Field(VideoLimits.max_open_cpu_s, gt=0)
    max_decode_cpu_s: float = Field(VideoLimits.max_decode_cpu_s, gt=0)
    max_wait_s: float = Field(VideoLimits.max_wait_s, gt=0)
    max_start_s: float = Field(VideoLimits.max_start_s, gt=0)
    sample_fps: float = Field(VideoSampling.sample_fps, gt=0)
    short_side: int = Field(VideoSampling.short_side, ge=16)
    keyframe_every_s: float = Field(VideoSampling.keyframe_every_s, gt=0)
    shot_min_distance: float = Field(ShotDetection.min_distance, gt=0, le=1)
    shot_ratio: float = Field(ShotDetection.ratio, ge=1)
    shot_window: int = Field(ShotDetection.window, ge=1)
    min_shot_s: float = Field(ShotDetection.min_shot_s, ge=0)

    @model_validator(mode="after")
    def _valid_limits(self) -> VideoSettings:
        try:
            self.limits  # noqa: B018 - VideoLimits checks the containers and codecs
        except ValueError as exc:
            raise ValueError(str(exc)) from None
        return self

    @property
    def limits(self) -> VideoLimits:
        return VideoLimits(self.max_bytes, self.max_duration_s, self.max_frames, self.max_pixels, self.min_side, self.containers, self.codecs,
                           self.max_memory_bytes, self.max_open_cpu_s, self.max_decode_cpu_s, self.max_wait_s,
                           self.max_start_s)

    @property
    def sampling(self) -> VideoSampling:
        shots = ShotDetection(self.shot_min_distance, self.shot_ratio, self.shot_window, self.min_shot_s)
        return VideoSampling(self.sample_fps, self.short_side, self.keyframe_every_s, shots)

    @property
    def reading(self) -> VideoReading:
        """What the workers need to read a video (shipped with the job's functions, never from data)."""
        return VideoReading(self.limits, self.sampling)


class Settings(_Strict):
    profile: str = "base"
    lakehouse: str
    spark: SparkSettings = SparkSettings()
    torch_threads: int = Field(1, ge=1)
    prefetch: int = Field(2, ge=0)
    sample_corpus: SampleCorpusSettings = SampleCorpusSettings()
    dedup: DedupSettings = DedupSettings()
    corpus: CorpusSettings = CorpusSettings()
    decode: DecodeSettings = DecodeSettings()
    fetch: FetchSettings = FetchSettings()
    registry: RegistrySettings = RegistrySettings()
    maintain: MaintainSettings = MaintainSettings()
    index: IndexSettings = IndexSettings()
    monitor: MonitorSettings = MonitorSettings()
    training: TrainingSettings = TrainingSettings()
    serve: ServeSettings = ServeSettings()
    video: VideoSettings = VideoSettings()
    signals: dict[str, SignalSettings]
    compute_once: bool = True  # items sharing an input hash are computed once per run (docs/design.md, Compute once per unique input)

    @field_validator("lakehouse")
    @classmethod
    def _expand(cls, v: str) -> str:
        expanded = os.path.expanduser(os.path.expandvars(v))  # `~/lh` from a profile, or a shell that left it, is the home folder
        if "$" in expanded:
            raise ValueError(f"lakehouse {v!r} names an environment variable that is not set")
        if not expanded.strip():  # an empty variable would put the lakehouse in whatever folder the command runs from
            raise ValueError(f"lakehouse {v!r} is empty" + (" (its environment variable is set to nothing)" if v.strip() else ""))
        return expanded

    @model_validator(mode="after")
    def _versions_known(self) -> Settings:
        unversioned = [n for n, s in self.signals.items() if s.model.version is None]
        if not self.registry.enabled and unversioned:
            raise ValueError(f"without the registry every model needs a version; none for {unversioned}")
        return self

    @field_validator("signals")
    @classmethod
    def _names(cls, v: dict[str, SignalSettings]) -> dict[str, SignalSettings]:
        bad = [n for n in v if not _NAME.match(n)]
        if bad:
            raise ValueError(f"signal names {bad} must match {_NAME.pattern} (they name partition folders)")
        return v

    @property
    def lakehouse_root(self) -> str:
        """The lakehouse as an absolute path or URI (relative paths are taken from the cwd)."""
        return self.lakehouse if "://" in self.lakehouse else str(Path(self.lakehouse).resolve())

    @property
    def registry_uri(self) -> str:
        if self.registry.tracking_uri:
            return self.registry.tracking_uri
        return local_registry_uri(self.lakehouse_root)

    def table_root(self, name: str) -> str:
        return lakehouse_table(self.lakehouse_root, name)

    @property
    def enabled_signals(self) -> dict[str, SignalSettings]:
        return {name: s for name, s in self.signals.items() if s.enabled}


def local_registry_uri(lakehouse_root: str) -> str:
    """The default registry: a sqlite MLflow store in the lakehouse's `_registry` folder."""
    if "://" in lakehouse_root:
        raise UsageError("a lakehouse on remote storage needs registry.tracking_uri (an MLflow tracking server)")
    return f"sqlite:///{lakehouse_root.rstrip('/')}/_registry/mlflow.db"


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Deep merge: mappings merge key by key, anything else is replaced."""
    merged = dict(base)
    for key, value in override.items():
        merged[key] = _merge(merged[key], value) if isinstance(value, dict) and isinstance(merged.get(key), dict) else value
    return merged


_KEY_PATH = re.compile(r"(?:\[[^\]]+\]|[^.\[\]]+)(?:\.?(?:\[[^\]]+\]|[^.\[\]]+))*")  # keys between dots, or [in.brackets]


def _override(dotted: str) -> dict[str, Any]:
    """`signals.image_embedding.enabled=false` -> nested dict, the value parsed as YAML.

    A key that itself contains dots goes in brackets: `spark.conf[spark.sql.shuffle.partitions]=4`.
    A decimal is kept as written (`model.version=1.10`), except in a signal's free-form params,
    where it is the number YAML reads (`params.thresholds.nsfw=0.7`), as in a profile.
    """
    if "=" not in dotted:
        raise UsageError(f"override {dotted!r} is not of the form key.path=value")
    path, raw = dotted.split("=", 1)
    if not _KEY_PATH.fullmatch(path.strip()):  # `spark..master`, `.x`, `x.`: a key left empty is a typo, not a setting
        raise UsageError(f"override {dotted!r} names no setting (key.path=value; a key holding dots goes in brackets)")
    keys = re.findall(r"\[([^\]]+)\]|([^.\[\]]+)", path.strip())
    try:
        value: Any = read_yaml(raw)
    except DuplicateKey as e:
        raise UsageError(f"override {dotted!r}: the value gives {e.key!r} twice; keep one") from None
    except yaml.YAMLError as e:
        raise UsageError(f"override {dotted!r}: the value is not YAML ({str(e).splitlines()[0]}); quote it") from None
    except ValueError:  # a timestamp YAML cannot make a date of (2026-13-01): the text is the value
        value = raw.strip()
    names = [bracketed or plain for bracketed, plain in keys]
    in_params = names[:1] == ["signals"] and names[2:3] == ["params"]  # free-form (Any): taken as YAML reads them, as in a profile
    if isinstance(value, float) and not in_params or (value is None or isinstance(value, str)) and "#" in raw:
        value = raw.strip()  # "1.10" as written (pydantic still parses it where a float is wanted); '#' is not a YAML comment here
    elif isinstance(value, int) and not isinstance(value, bool) and not re.fullmatch(r"[-+]?(0|[1-9][0-9]*)", raw.strip()):
        value = raw.strip()  # YAML 1.1's octal, hex, `1_000` and `1:20` integers: `model.version=010` is "010", not "8"
    for bracketed, plain in reversed(keys):
        value = {bracketed or plain: value}
    return value


def load_settings(profile: str = "local", overrides: list[str] | tuple[str, ...] = (), conf_dir: Traversable = CONF_DIR) -> Settings:
    """base.yaml, then `<profile>.yaml`, then each `key.path=value` override, validated."""
    if not re.fullmatch(r"[A-Za-z0-9_-]+", profile):
        raise UsageError(f"--profile {profile!r}: a profile is named by a file of {conf_dir} (letters, digits, '_' and '-'), not a path")
    layers = [conf_dir / "base.yaml"] + ([conf_dir / f"{profile}.yaml"] if profile != "base" else [])
    merged: dict[str, Any] = {"profile": profile}
    for layer in layers:
        if not layer.is_file():
            known = sorted(p.name.removesuffix(".yaml") for p in conf_dir.iterdir() if p.name.endswith(".yaml"))
            raise FileNotFoundError(f"no profile {layer.name.removesuffix('.yaml')!r} in {conf_dir}; known profiles: {', '.join(known)}")
        try:
            read = read_yaml(layer.read_text(encoding="utf-8")) or {}
        except DuplicateKey as e:  # the last would win silently: two values for one setting are almost always a mistake
            raise UsageError(f"the profile {layer} gives {e.key!r} twice in one mapping (lines {e.first_line} and {e.second_line}); "
                             "keep one") from None
        except yaml.YAMLError as e:
            raise UsageError(f"the profile {layer} is not valid YAML: {' '.join(str(e).split())}") from None
        except UnicodeDecodeError as e:
            raise UsageError(f"the profile {layer} is not UTF-8 text (byte {e.start}: {e.reason})") from None
        if not isinstance(read, dict):  # a list or a scalar: nothing to merge key by key
            raise UsageError(f"the profile {layer} is not a mapping of settings (key: value lines) but a {type(read).__name__}")
        merged = _merge(merged, read)
    profiled = set(merged.get("signals") or {})
    for dotted in overrides:
        merged = _merge(merged, _override(dotted))
    _refuse_unknown_signals(merged.get("signals"), profiled)
    return Settings.model_validate(merged)


def _refuse_unknown_signals(signals: Any, profiled: set[str]) -> None:
    """Refuse a signal that only `--set` names and without its kind: a misspelled one (`signals.imag_embedding.enabled=false`),
    which pydantic would refuse as a new signal missing fields ("kind: Field required")."""
    if not isinstance(signals, dict):
        return
    unknown = sorted(name for name, conf in signals.items() if name not in profiled and isinstance(conf, dict) and "kind" not in conf)
    if unknown:
        raise UsageError(f"--set signals.{unknown[0]}...: no signal {unknown[0]!r} in the profile; its signals: {', '.join(sorted(profiled))} "
                         f"(a new signal needs its kind and model: --set signals.{unknown[0]}.kind=...)")
