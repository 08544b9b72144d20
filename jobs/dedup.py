"""The near-duplicate job: one duplicate group per item over the whole corpus, in Spark.

    content-signals dedup

Exact copies share the sha256 of their bytes (an image by URI: of the bytes fetched, as the
signals fetch them). Near copies are found without comparing all pairs: items are bucketed by
LSH bands of two fingerprints, the image's 64-bit pHash and the first 64 bits of a longer SimHash
of its embedding (from the embeddings table: the row of its input as it is now), and only items
sharing a bucket whose hashes (the whole SimHash) are within reach of a rule (`candidate_pairs`)
are compared (docs/design.md, the LSH scheme). A pair is an edge when the bytes are equal, or the pHashes are at most
`max_hamming` bits apart, or at most `confirm_hamming` apart with embeddings at cosine
`confirm_cosine` or more, or the embeddings alone reach `min_cosine`. A flat image (no structure
the pHash sees: one colour, stripes, a gradient) gets no pHash edge: all flat images share one
meaningless pHash (signals.labels.perceptual_hash), so they are duplicates only by their bytes or
their embeddings. Groups are the connected
components of the edges (labels hooked onto their smallest neighbour, pointer jumping, links
contracted: about log2(n) rounds for n copies, whatever the order of their ids).
The items of each hash are paired with one of them, however crowded its buckets, and a bucket
compares only those (equal hashes say nothing more); one of more than `max_bucket` distinct
hashes is skipped.

A video item is fingerprinted like an image, across formats: the sha256 of its video bytes, the
pHashes of its keyframes (as the video pass stored them in the keyframes table: no video is
decoded here), each one a candidate in the LSH buckets, and the SimHash of its pooled embedding.
Two items' Hamming distance is that of their closest pHashes, so a video re-encoded matches its
source, and a still video the photo it shows; a video keeps only its best edge to a picture, so a
slideshow does not make the photos it shows one group.

The duplicates table is rebuilt whole each run, in one commit: every item has one row with
its group, the group's size, whether it is the group's canonical item (the oldest whose input
reads, an item without `created_at` counting as the newest), and the edge that put it there. An
item whose image cannot be decoded or fetched is an error row in a group of its own: its stored
embedding (computed before it was taken down) links nothing, and only its exact hash still
groups byte-identical copies, never the shared hash of empty inputs; so is a bad video, with its
reason from the keyframes table.
"""
from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable

from deltalake import DeltaTable
from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from conf.settings import DedupSettings, Settings
from jobs.corpus import CorpusSource, check_rows, one_row_per_id
from jobs.engine import CORPUS_VERSION, Run, RunResult, Tracked, already_committed, recorded
from jobs.progress import spark_progress
from lake import delta_io, ledger, spark_io
from lake.ledger import SUCCEEDED
from rollout.models import champion_version, configured_signal
from signals.base import ModelRef
from signals.contracts import DUPLICATES, EMBEDDINGS, KEYFRAMES, STATUS_ERROR, STATUS_OK
from signals.labels.perceptual_hash import band_probes
from signals.video.rows import NO_KEYFRAME
from udfs.columns import input_hash_column
from udfs.fingerprints import phash_column, simhash_column

JOB = "dedup"
MAX_ROUNDS = 64  # of connected_components, and of its pointer jumping: each halves what is left, so 2^64 items
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()  # empty inputs share it, and are not copies of each other
COSINE_DIGITS = 5  # an item's best edge is chosen on cosines rounded to this many digits


def keyframe_hashes(spark: SparkSession, settings: Settings) -> DataFrame:
    """Per video item and input hash with rows in the keyframes table (those of the dedup's
    embedding signal and its champion): its keyframes' pHashes (flat ones left out), the pHash of
    the keyframe standing for the longest span (the video's `phash` in the duplicates table), or
    its error row's reason."""
    root = settings.table_root(KEYFRAMES.name)
    if not DeltaTable.is_deltatable(root):
        return spark.createDataFrame([], "content_id string, input_hash string, keyframe_phashes array<bigint>, video_phash bigint, video_error string")
    delta_io.ensure_table(root, KEYFRAMES)  # a table from before keyframes had a phash gets the column (null: no pHash yet)
    signal = settings.dedup.embedding_signal
    in_order = F.sort_array(F.collect_list(F.struct("keyframe_index", "phash")))
    return (
        spark_io.read_spark(spark, root)
        .filter((F.col("signal") == signal) & (F.col("model_version") == champion_version(settings, signal)))
        .groupBy("content_id", "input_hash").agg(
            F.filter(F.transform(in_order, lambda k: k["phash"]), lambda h: h.isNotNull()).alias("keyframe_phashes"),
            F.max(F.struct(F.col("end_s") - F.col("start_s"), -F.col("keyframe_index"), F.col("phash").alias("phash")))["phash"].alias("video_phash"),
            F.max(F.when(F.col("keyframe_index") == NO_KEYFRAME, F.col("error"))).alias("video_error"),
        )
    )


def fingerprints(spark: SparkSession, settings: Settings, corpus_rows: DataFrame) -> DataFrame:
    """Per item of `corpus_rows` (as `CorpusSource.read` gives them, one row per id kept): exact
    hash, pHash and flatness (or the decode error), and the embedding of its input as it is now
    (its stored row's `input_hash`; of a day's if several) if any; a video item's hash
    is that of its video bytes, its `keyframe_phashes` those of its video as it is now (its
    `phash` the longest span's), its error that of its video."""
    corpus = one_row_per_id(corpus_rows)
    signal = settings.dedup.embedding_signal
    vectors = (  # of the item's input as it is now (an image changed since describes another picture), one of a re-ingested item's days
        spark_io.read_spark(spark, settings.table_root(EMBEDDINGS.name))
        .filter((F.col("signal") == signal) & (F.col("model_version") == champion_version(settings, signal)))
        .filter(F.col("status") == STATUS_OK)
        .groupBy("content_id", "input_hash").agg(F.max(F.struct("ds", "vector"))["vector"].alias("vector"))
    )
    video = F.col("video").isNotNull()
    hashed = corpus.select(  # one read of the corpus: a video item's image fingerprint is a null input's error, replaced below
        "content_id", "ds", "created_at", video.alias("is_video"), F.sha2(F.coalesce("video", "image"), 256).alias("inline_hash"),
        input_hash_column(configured_signal(settings, signal), video=True).alias("input_hash"),
        phash_column(F.when(~video, F.col("image")), F.when(~video, F.col("image_uri")), settings.decode.limits, settings.fetch.policy).alias("p"))
    is_video = F.col("is_video")
    unseen = f"no keyframe rows of {signal} {champion_version(settings, signal)} for this video as it is now: run a backfill or a refresh"
    exact_hash = F.coalesce("inline_hash", "p.fetched_sha256")
    error = (F.when(is_video, F.when(F.col("keyframe_phashes").isNull(), F.lit(unseen)).otherwise(F.col("video_error")))
             .otherwise(F.col("p.error")))
    vector = F.when(error.isNull(), F.col("vector"))  # an item whose input fails now (taken down) is not matched by its old embedding
    return (
        hashed.join(keyframe_hashes(spark, settings), ["content_id", "input_hash"], "left").join(vectors, ["content_id", "input_hash"], "left")
        .select("content_id", "ds", "created_at", F.when(exact_hash != EMPTY_SHA256, exact_hash).alias("exact_hash"),
                F.when(is_video, F.col("video_phash")).otherwise(F.col("p.phash")).alias("phash"),
                F.when(is_video, F.col("video_phash").isNull()).otherwise(F.col("p.flat")).alias("flat"),
                F.when(is_video, F.col("keyframe_phashes")).alias("keyframe_phashes"), error.alias("error"),
                vector.alias("vector"), simhash_column(vector, settings.dedup.simhash_seed, settings.dedup.simhash_bits).alias("simhash"))
    )


def _band_keys(lead: Column, bands: int) -> Column:
    """The LSH keys of a 64-bit hash: signals.labels.perceptual_hash.band_probes, as band_keys."""
    return F.array(*[F.shiftrightunsigned(lead, shift).bitwiseAND(F.lit(mask)).bitwiseXOR(F.lit(tag)) for shift, mask, tag in band_probes(bands)])


def _bits_apart(a: Column, b: Column) -> Column:
    """The Hamming distance of two hashes of equal length, as arrays of 64-bit words
    (signals.labels.perceptual_hash.words_apart)."""
    return F.aggregate(F.zip_with(a, b, lambda x, y: F.bit_count(x.bitwiseXOR(y))), F.lit(0), lambda total, bits: total + bits)


def _closest_hamming(left: str, right: str) -> Column:
    """The Hamming distance of the closest pair of two pHash lists (null if either is empty)."""
    return F.array_min(F.flatten(F.transform(left, lambda x: F.transform(right, lambda y: F.bit_count(x.bitwiseXOR(y))))))


def _candidates(items: DataFrame, hashes_column: str, bands: int, within: Callable[[Column], Column], rules: DedupSettings) -> DataFrame:
    """Pairs (a < b) that share an LSH bucket (of `bands` bands) of their hashes' first words
    (`hashes_column`: an array of hashes, each an array of 64-bit words) and that `within` (of the two hashes'
    distance over all their words; the sides are `a` and `b`) keeps: the bucket join's chance
    meetings are dropped on a few longs, before any pair is compared.

    A bucket is never joined with itself whole: each item is paired with its hash's smallest id
    (equal hashes are within every reach, and their pairs would say nothing more), once and
    whatever the crowd of its buckets, and in each bucket the hashes' smallest ids are paired with
    each other, so a bucket costs its distinct hashes squared, not its items squared (a picture
    copied thousands of times fills every bucket of its hashes). The pictures and the videos of a
    hash have a smallest id each: a video keeps only its best edge to a picture
    (`one_picture_per_video`), so a picture cannot stand for the videos of its hash, whose edges to
    each other all count. A bucket of more than `max_bucket` distinct hashes (of pictures, and of
    videos, apart) is skipped: its hashes' items are still paired with the first of their own."""
    video = F.col("keyframe_phashes").isNotNull().alias("video")
    keyed = items.select("content_id", "edge_phashes", video, F.explode(hashes_column).alias("hash")).select(
        "content_id", "edge_phashes", "video", "hash", F.posexplode(_band_keys(F.col("hash")[0], bands)).alias("probe", "bucket")).distinct()
    bucket = Window.partitionBy("bucket")  # one shuffle and one sort for both windows: (bucket, hash, video) first
    anchored = keyed.withColumn("anchor", F.min("content_id").over(Window.partitionBy("bucket", "hash", "video")))
    same_hash = anchored.filter((F.col("probe") == 0) & (F.col("content_id") != F.col("anchor"))).select(  # one bucket of each hash: its first key
        F.col("anchor").alias("a"), F.col("content_id").alias("b"))
    anchors = anchored.filter(F.col("content_id") == F.col("anchor"))
    comparable = anchors.withColumn("hashes", F.count("*").over(bucket)).filter(F.col("hashes") <= rules.max_bucket)
    a, b = comparable.alias("a"), comparable.alias("b")
    return a.join(b, (F.col("a.bucket") == F.col("b.bucket")) & (F.col("a.content_id") < F.col("b.content_id"))).filter(
        within(_bits_apart(F.col("a.hash"), F.col("b.hash")))
    ).select(F.col("a.content_id").alias("a"), F.col("b.content_id").alias("b")).unionByName(same_hash)


def _with_hash_lists(items: DataFrame) -> DataFrame:
    """`items` with the hashes that may link them, as lists: `edge_phashes` (a video's keyframes'
    pHashes, an image's own pHash, none for a flat image), the same as one-word hashes
    (`phash_words`), and `simhashes` (the SimHash's words, if the item has an embedding)."""
    no_hash = F.array().cast("array<bigint>")
    image_phash = F.when(F.col("phash").isNotNull() & ~F.coalesce(F.col("flat"), F.lit(False)), F.array("phash")).otherwise(no_hash)
    return (items.withColumn("edge_phashes", F.coalesce("keyframe_phashes", image_phash))
            .withColumn("phash_words", F.transform("edge_phashes", lambda h: F.array(h)))
            .withColumn("simhashes", F.when(F.col("simhash").isNotNull(), F.array("simhash")).otherwise(F.array().cast("array<array<bigint>>"))))


def candidate_pairs(items: DataFrame, rules: DedupSettings) -> DataFrame:
    """The pairs (a, b) that are compared: byte-identical items (each to the smallest id of its
    hash), items with pHashes within `max_hamming` bits (every one: the pHash rule's pairs), and
    the embedding rules' pairs: SimHashes within `simhash_hamming` bits, or within
    `simhash_confirm_hamming` with pHashes within `confirm_hamming`; all found through LSH
    buckets. Their count per item is what keeps dedup near linear in the corpus (`make bench`, scale)."""
    items = _with_hash_lists(items)
    exact = items.filter(F.col("exact_hash").isNotNull()).withColumn("anchor", F.min("content_id").over(Window.partitionBy("exact_hash")))
    exact_edges = exact.filter(F.col("content_id") != F.col("anchor")).select(F.col("anchor").alias("a"), F.col("content_id").alias("b"))
    confirmed_phash = _closest_hamming("a.edge_phashes", "b.edge_phashes") <= rules.confirm_hamming
    phash_pairs = _candidates(items, "phash_words", rules.bands, lambda d: d <= rules.max_hamming, rules)
    simhash_pairs = _candidates(items, "simhashes", rules.simhash_bands, lambda d: (d <= rules.simhash_hamming)
                                | ((d <= rules.simhash_confirm_hamming) & F.coalesce(confirmed_phash, F.lit(False))), rules)
    return functools.reduce(DataFrame.unionByName, [exact_edges, phash_pairs, simhash_pairs]).distinct()


def edges(items: DataFrame, rules: DedupSettings) -> DataFrame:
    """Duplicate edges (a, b, method, hamming, cosine) between items; a flat image's pHash links
    nothing; a video's pHashes are its keyframes' (`keyframe_phashes`), and two items' Hamming
    distance is that of their closest pHashes."""
    pairs = candidate_pairs(items, rules)
    items = _with_hash_lists(items)
    left, right = items.alias("l"), items.alias("r")
    closest = _closest_hamming("l.edge_phashes", "r.edge_phashes")
    scored = pairs.join(left, F.col("a") == F.col("l.content_id")).join(right, F.col("b") == F.col("r.content_id")).select(
        "a", "b",
        (F.col("l.exact_hash") == F.col("r.exact_hash")).alias("exact"),
        closest.alias("hamming"),
        F.aggregate(F.zip_with("l.vector", "r.vector", lambda x, y: x * y), F.lit(0.0), lambda acc, v: acc + v).alias("cosine"),
    )
    method = (
        F.when(F.col("exact"), "exact")
        .when(F.col("hamming") <= rules.max_hamming, "phash")
        .when((F.col("hamming") <= rules.confirm_hamming) & (F.col("cosine") >= rules.confirm_cosine), "phash+embedding")
        .when(F.col("cosine") >= rules.min_cosine, "embedding")
    )
    return scored.select("a", "b", method.alias("method"), "hamming", "cosine").filter(F.col("method").isNotNull())


def _best_first(matched: Column) -> list[Column]:
    """The order of an item's edges, best first: byte copies, then by cosine (its first
    COSINE_DIGITS digits only: a vector computed in another batch differs in its last bits), then
    by pHash distance, then by the matched id (two copies of one picture are told apart by it)."""
    return [F.col("method") != "exact", F.desc_nulls_last(F.round("cosine", COSINE_DIGITS)), F.col("hamming"), matched]


def one_picture_per_video(links: DataFrame, items: DataFrame) -> DataFrame:
    """`links` with each video's edges to pictures cut to its best one (its edges to videos kept):
    a slideshow of unrelated photos is close to each of them through one keyframe each, and would
    make them all one group."""
    videos = items.filter(F.col("keyframe_phashes").isNotNull()).select("content_id", F.lit(True).alias("video"))
    tagged = links.join(videos.toDF("a", "a_video"), "a", "left").join(videos.toDF("b", "b_video"), "b", "left").select(
        *links.columns, F.coalesce("a_video", F.lit(False)).alias("a_video"), F.coalesce("b_video", F.lit(False)).alias("b_video"))
    mixed = F.col("a_video") != F.col("b_video")
    video, picture = F.when(F.col("a_video"), F.col("a")).otherwise(F.col("b")), F.when(F.col("a_video"), F.col("b")).otherwise(F.col("a"))
    best = tagged.filter(mixed).withColumn("rank", F.row_number().over(Window.partitionBy(video).orderBy(*_best_first(picture))))
    return tagged.filter(~mixed).select(*links.columns).unionByName(best.filter(F.col("rank") == 1).select(*links.columns))


def connected_components(nodes: DataFrame, links: DataFrame) -> DataFrame:
    """(content_id, group_id): the smallest content_id reachable through `links` (a, b). Each round
    every linked label hooks onto its smallest linked label, the hooks are followed to their roots
    (pointer jumping), and the links are contracted onto those roots: a label still linked merges
    with at least one other, so the linked labels at least halve each round and n copies settle in
    at most about log2(n) rounds, whatever the order of their ids."""
    both_ways = links.select("a", "b").unionByName(links.select(F.col("b").alias("a"), F.col("a").alias("b")))
    linked = _checkpointed(both_ways.filter(F.col("a") != F.col("b")).distinct())
    groups = nodes.select("content_id", F.col("content_id").alias("group_id"))
    for _ in range(MAX_ROUNDS):
        if linked.isEmpty():
            return groups
        roots = _roots(linked.groupBy("a").agg(F.least(F.col("a"), F.min("b")).alias("root")).withColumnRenamed("a", "label"))
        groups = _checkpointed(groups.join(roots, F.col("group_id") == F.col("label"), "left").select(
            "content_id", F.coalesce("root", "group_id").alias("group_id")))
        ends = [roots.select(F.col("label").alias(end), F.col("root").alias(f"{end}_root")) for end in ("a", "b")]
        linked = _checkpointed(linked.join(ends[0], "a").join(ends[1], "b").select(F.col("a_root").alias("a"), F.col("b_root").alias("b"))
                               .filter(F.col("a") != F.col("b")).distinct())
    raise RuntimeError(f"duplicate groups did not settle in {MAX_ROUNDS} rounds")


def _roots(hooks: DataFrame) -> DataFrame:
    """(label, root): each label's hook (label, root) followed until it reaches a label hooked onto
    itself; each pass doubles the distance jumped, so it takes log2 of the longest path of hooks."""
    for _ in range(MAX_ROUNDS):
        after = _checkpointed(hooks.alias("x").join(hooks.alias("y"), F.col("x.root") == F.col("y.label"), "left").select(
            F.col("x.label"), F.coalesce("y.root", "x.root").alias("root"), F.col("x.root").alias("before")))
        hooks = after.select("label", "root")
        if after.filter(F.col("root") != F.col("before")).isEmpty():
            return hooks
    raise RuntimeError(f"duplicate groups' hooks did not reach their roots in {MAX_ROUNDS} passes")


def _checkpointed(frame: DataFrame) -> DataFrame:
    """`frame` computed once, as a plan that keeps neither its lineage nor the planner's estimate
    of its size: Spark estimates a join as the product of its sides, and a checkpoint keeps that
    estimate, so in the loops above it squared each pass until estimating took minutes."""
    done = frame.localCheckpoint()
    session = done.sparkSession
    return DataFrame(session._jsparkSession.createDataFrame(done._jdf.rdd(), done._jdf.schema()), session)


def run_dedup(spark: SparkSession, settings: Settings, run_id: str | None = None) -> RunResult:
    """Rebuild the duplicates table from the corpus and the embeddings, in one commit."""
    run = Run.begin(JOB, run_id)
    done = already_committed(spark, settings, run, [DUPLICATES])  # a retry of a run whose commit landed computes nothing
    if done:
        return done
    root = settings.table_root(DUPLICATES.name)
    corpus = CorpusSource.of(settings)
    signal = settings.dedup.embedding_signal
    embeddings = settings.table_root(EMBEDDINGS.name)
    if not DeltaTable.is_deltatable(embeddings):
        raise FileNotFoundError(f"dedup reads the {signal} vectors, and there is no embeddings table at {embeddings} yet: "
                                "run a backfill first (content-signals backfill)")
    entry = Tracked(JOB, ModelRef(signal, champion_version(settings, signal)), DUPLICATES.name)
    with recorded(settings, run, [entry]) as finish:
        read_version = delta_io.ensure_table(root, DUPLICATES).version()
        corpus_version = corpus.version()
        rows_read = corpus.read(spark, corpus_version)  # one read, of the pinned version: what is counted is what is grouped
        check = check_rows(rows_read)
        with spark_progress(spark.sparkContext, "dedup fingerprints and edges"):
            items = fingerprints(spark, settings, rows_read).localCheckpoint()
            links = one_picture_per_video(edges(items, settings.dedup), items).localCheckpoint()
            groups = connected_components(items.select("content_id"), links)
        best = links.select("a", "b", "method", "hamming", "cosine").unionByName(links.select(F.col("b").alias("a"), F.col("a").alias("b"), "method", "hamming", "cosine"))
        best = best.withColumn("rank", F.row_number().over(Window.partitionBy("a").orderBy(*_best_first(F.col("b"))))).filter("rank = 1")
        rows = (
            items.join(groups, "content_id")
            .join(best.select(F.col("a").alias("content_id"), F.col("b").alias("matched_id"), F.col("method").alias("match_method"), "hamming", "cosine"), "content_id", "left")
            .withColumn("group_size", F.count("*").over(Window.partitionBy("group_id")))
            .withColumn("canonical", F.first("content_id").over(  # the oldest item whose input reads; one without a date is the newest
                Window.partitionBy("group_id").orderBy(F.col("error").isNotNull(), F.asc_nulls_last("created_at"), "content_id")))
            .select(
                "content_id", "group_id", "group_size", (F.col("content_id") == F.col("canonical")).alias("is_canonical"),
                "matched_id", "match_method", F.col("hamming").cast("int"), F.col("cosine").cast("double"), "exact_hash", "phash",
                F.when(F.col("error").isNull(), STATUS_OK).otherwise(STATUS_ERROR).alias("status"), "error",
                F.lit(run.run_id).alias("run_id"), F.lit(run.started).alias("computed_at"), "ds",
            )
        )
        with spark_progress(spark.sparkContext, "dedup write"):
            files = spark_io.write_files([spark_io.WriteSource(rows)], root, DUPLICATES, f"part-{run.run_id}")
        written = sum(f.num_items for f in files)
        if written != check.items:
            raise RuntimeError(f"duplicates: {written} items written for {check.items} corpus items; nothing committed")
        read = {CORPUS_VERSION: str(corpus_version)} if corpus_version is not None else {}  # which corpus the groups are of
        version = delta_io.commit_files(root, DUPLICATES, files, run.app_id, {"job": JOB, "run_id": run.run_id, **read},
                                        remove=lambda live: True, read_version=read_version)
        result = RunResult(run.run_id, SUCCEEDED, {DUPLICATES.name: version}, ledger.outcomes_of(root, run.run_id, {JOB: entry.model}),
                           check.describe())
        finish(result)
    return result
