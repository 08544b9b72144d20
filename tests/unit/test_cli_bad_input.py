"""Bad input on the command line (no Spark): exit 2 with a one-line reason, never a traceback, and
nothing written where the user did not point."""
from __future__ import annotations

from pathlib import Path

import pytest
from deltalake import DeltaTable
from embedding_tables import append, random_vectors, rows

from conf.settings import UsageError, load_settings
from jobs.cli import main


def cli(capsys, *args: str) -> tuple[int, str]:
    status = main(list(args))
    return status, " ".join(capsys.readouterr().out.split())  # rich wraps long lines


@pytest.mark.parametrize("args, reason", [
    (["show", "--set", "=5"], "override '=5' names no setting"),
    (["show", "--set", "spark.conf[x]=[1"], "the value is not YAML"),
    (["show", "--set", "spark.conf[spark.sql.shuffle.partitions]"], "override 'spark.conf[spark.sql.shuffle.partitions]' is not of"),
    (["register", "nope", "--source", "/tmp"], "no signal 'nope' in the profile"),
    (["register", "image_embedding", "--source", "/tmp", "--alias", "champion"], "the champion moves only by `content-signals promote`"),
    (["register", "image_quality", "--source", "/tmp"], "--source /tmp: the versions of image_quality (image_quality) come from its code"),
    (["register", "image_embedding", "--source", "/tmp", "--param", "foo"], "--param 'foo' is not of the form name=value"),
    (["register", "image_embedding", "--source", "/tmp", "--param", "x={a: 1, a: 2}"], "a value gives 'a' twice; keep one"),
    (["register", "image_embedding", "--source", "/no/such/weights.pth"], "no weights at /no/such/weights.pth"),
    (["make-corpus", "--scenario", "normal", "--day", "20261201"], "--day '20261201' is not a day"),
    (["make-corpus", "--scenario", "normal", "--n-items", "0"], "--n-items 0: a scenario day needs at least one item"),
    (["labels", "simulate", "--task", "low_quality", "--n", "-1"], "--n -1: simulate at least one item"),
    (["show", "--set", "lakehouse=/tmp/[/bold]x"], "no Delta table in /tmp/[/bold]x"),  # printed as text, not Rich markup
    (["show", "--profile", "../../etc/x"], "a profile is named by a file of"),
    # found in review: a lakehouse without the sample corpus's truth (mistyped) was a TableNotFoundError's traceback
    (["labels", "simulate", "--task", "low_quality"], "no sample corpus truth at"),
    (["evaluate"], "no sample corpus truth at"),
    (["make-corpus", "--n-items", "8", "--seed", "-1"], "--seed -1: a seed is not negative"),  # numpy's ValueError's traceback
    (["labels", "simulate", "--task", "low_quality", "--seed", "-2"], "--seed -2: a seed is not negative"),
    (["make-corpus", "--n-items", "8", "--set", "sample_corpus.seed=-1"], "sample_corpus.seed: Input should be greater than or equal to 0"),
    (["make-corpus", "--n-items", "8", "--set", "sample_corpus.photos=/no/such/folder"], "sample_corpus.photos: no folder of photos at /no/such/folder"),
    # found in review: ignored without --scenario, --day wrote a whole new corpus (over an existing one: a different --n-items)
    (["make-corpus", "--n-items", "8", "--day", "2026-12-01"], "--day 2026-12-01: the day of an appended --scenario day"),
    # found in review: a misspelled signal was taken for a new one and refused as "kind: Field required; model: Field required"
    (["show", "--set", "signals.imag_embedding.enabled=false"],
     "--set signals.imag_embedding...: no signal 'imag_embedding' in the profile; its signals: clip_image_embedding,"),
])
def test_bad_input_is_one_line_and_exit_2(capsys, tmp_path, args: list[str], reason: str) -> None:
    lakehouse = [] if any(a.startswith("lakehouse=") for a in args) else ["--set", f"lakehouse={tmp_path}"]
    status, out = cli(capsys, *args, *lakehouse)
    assert status == 2 and reason in out, out
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("args, line", [
    (["--set", "signals.image_embedding.batch_size=abc"],
     "signals.image_embedding.batch_size: Input should be a valid integer, unable to parse string as an integer (given 'abc')"),
    (["--set", "nosuch.key=1"], "nosuch: no such setting"),
    (["--set", "signals.image_embedding.batch_size=0", "--set", "spark.executor_wait_s=soon"],
     "spark.executor_wait_s: Input should be a valid number, unable to parse string as a number (given 'soon'); "
     "signals.image_embedding.batch_size: Input should be greater than 0 (given 0)"),
    (["--set", "signals.image_embedding.model.version=-1"],
     "signals.image_embedding.model.version: model version '-1' must match ^[A-Za-z0-9][A-Za-z0-9._-]*$ (it names a partition folder)"),
    (["--set", "registry.enabled=false"], "without the registry every model needs a version; none for ['image_embedding', "),
])
def test_a_setting_pydantic_refuses_is_one_line_naming_it_and_the_value(capsys, tmp_path, monkeypatch, args, line) -> None:
    """Found in review: a wrong `--set` was told as pydantic's paragraphs (a title, the key path, the
    error with its type and input, a link to pydantic's docs), four lines or more for one mistake."""
    from jobs import commands

    monkeypatch.setattr(commands.console, "soft_wrap", True)  # what is printed, unwrapped
    assert main(["show", *args, "--set", f"lakehouse={tmp_path}"]) == 2
    out = capsys.readouterr().out
    assert out.startswith(f"error: {line}") and out.count("\n") == 1, out


def test_a_hash_in_a_value_is_kept_and_a_file_is_no_lakehouse(capsys, tmp_path) -> None:
    status, out = cli(capsys, "show", "--set", f"lakehouse={tmp_path}/lh #2")
    assert status == 2 and f"no Delta table in {tmp_path}/lh #2:" in out
    (tmp_path / "afile").write_text("x")
    assert cli(capsys, "show", "--set", f"lakehouse={tmp_path}/afile")[0] == 2


def test_labels_settings_go_after_the_step(capsys, tmp_path) -> None:
    """`labels --set lakehouse=X gold` once ran on ./lakehouse: the step's defaults overwrote what the group parsed."""
    with pytest.raises(SystemExit) as refused:
        main(["labels", "--set", f"lakehouse={tmp_path}", "gold", "--task", "low_quality"])
    assert refused.value.code == 2
    status, out = cli(capsys, "labels", "gold", "--task", "low_quality", "--set", f"lakehouse={tmp_path}")
    assert status == 2 and f"no human labels of low_quality in {tmp_path}" in out


def test_a_pinned_corpus_version_past_the_latest_is_bad_input(capsys, tmp_path) -> None:
    assert cli(capsys, "make-corpus", "--n-items", "8", "--set", f"lakehouse={tmp_path}")[0] == 0
    status, out = cli(capsys, "backfill", "--dry-run", "--set", f"lakehouse={tmp_path}", "--set", "corpus.version=99")
    assert status == 2 and f"corpus.version 99: the corpus at {Path(tmp_path) / 'corpus'} has versions 0 to 0" in out
    assert DeltaTable(str(tmp_path / "corpus")).version() == 0


def test_videos_with_a_scenario_day_are_refused_not_ignored(capsys, tmp_path) -> None:
    """Found in review: `make-corpus --scenario normal --videos` appended a day without videos and said nothing of them."""
    assert cli(capsys, "make-corpus", "--n-items", "8", "--set", f"lakehouse={tmp_path}")[0] == 0
    status, out = cli(capsys, "make-corpus", "--scenario", "normal", "--videos", "--set", f"lakehouse={tmp_path}")
    assert status == 2 and "--videos: the sample videos join a whole corpus" in out, out
    assert DeltaTable(str(tmp_path / "corpus")).version() == 0


PINNED = [arg for name in load_settings("local").signals for arg in ("--set", f"signals.{name}.model.version=1")]


@pytest.mark.parametrize("args, reason", [
    (["backfill", "--start", "2026-13-01"], "--start '2026-13-01' is not a day"),
    (["backfill", "--challenger", "--slice-pct", "0"], "--slice-pct 0: a share of the items"),
    (["backfill", "--dry-run", "--challenger", "--slice-pct", "500"], "--slice-pct 500: a share of the items"),
    (["backfill", "--slice-pct", "25"], "--slice-pct 25 is a canary of the challenger: add --challenger"),
    (["monitor", "--day", "2026-13-01"], "--day '2026-13-01' is not a day"),
    (["backfill", "--start", "2026-02-30"], "--start '2026-02-30' is not a day"),
    (["backfill", "--start", "2026-11-20", "--end", "2026-11-19"], "the window ends (2026-11-19) before it starts (2026-11-20)"),
    # found in review: these two started Spark (and made a registry) before the refusal
    (["backfill", "--challenger", "--slice-pct", "5"], "no enabled signal has a 'challenger' version other than its champion"),
    (["backfill", "--challenger", "--set", "registry.enabled=false", *PINNED], "--challenger needs the model registry"),
    # found in review: an empty run id (`--run-id "$SCHEDULER_RUN_ID"`, the variable unset) ran under a new id, so a
    # scheduler's retry of a run that landed redid it; one holding '/' nested the data files in a folder of the partition
    (["backfill", "--run-id", ""], "--run-id '': a run id names the run's data files and commits"),
    (["refresh", "--run-id", "nightly/2026-11-20"], "--run-id 'nightly/2026-11-20': a run id names the run's data files"),
    (["dedup", "--run-id", "a b"], "--run-id 'a b': a run id names"),
    (["monitor", "--run-id", " "], "--run-id ' ': a run id names"),
])
def test_what_the_command_line_shows_wrong_is_refused_before_spark_starts(capsys, tmp_path, monkeypatch, args, reason) -> None:
    from jobs import commands

    monkeypatch.setattr(commands, "build_session", lambda _: pytest.fail("a Spark session started for a command refused from its arguments"))
    status, out = cli(capsys, *args, "--set", f"lakehouse={tmp_path}")
    assert status == 2 and reason in out, out
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("args", [["promote", "image_embedding", "challenger"], ["rollback", "image_embedding"], ["compare", "image_embedding"]])
def test_registry_commands_on_a_lakehouse_without_one_make_none(capsys, tmp_path, args) -> None:
    status, out = cli(capsys, *args, "--set", f"lakehouse={tmp_path / 'typo'}")
    assert status == 2 and "no model registry at" in out, out
    assert not (tmp_path / "typo").exists()


def test_evaluate_before_a_backfill_says_to_run_one(capsys, tmp_path) -> None:
    """Found in review: the sample corpus made and nothing computed yet, `evaluate` was a TableNotFoundError's traceback."""
    assert cli(capsys, "make-corpus", "--n-items", "8", "--set", f"lakehouse={tmp_path}")[0] == 0
    status, out = cli(capsys, "evaluate", "--set", f"lakehouse={tmp_path}")
    assert status == 2 and f"no labels table at {tmp_path / 'labels'}: run a backfill first" in out, out


def test_serve_on_a_lakehouse_without_a_registry_makes_none_and_serves_nothing(capsys, tmp_path, monkeypatch) -> None:
    """`serve` reads the champions: run from another folder (the profile's lakehouse is relative) it once made a
    registry there, registered every signal's first version and served those."""
    monkeypatch.setattr("serving.server.serve", lambda settings: pytest.fail("served a lakehouse that holds nothing"))
    status, out = cli(capsys, "serve", "--set", f"lakehouse={tmp_path / 'typo'}")
    assert status == 2 and "no model registry at" in out, out
    assert not (tmp_path / "typo").exists()


def test_a_dry_run_refuses_the_corpus_a_run_would_refuse(capsys, tmp_path) -> None:
    assert cli(capsys, "make-corpus", "--n-items", "8", "--set", f"lakehouse={tmp_path}")[0] == 0
    status, out = cli(capsys, "backfill", "--dry-run", "--set", f"lakehouse={tmp_path}", "--set", "corpus.columns.ds=day")
    assert status == 2 and "ds -> 'day' is not a column" in out and "content_id string" in out
    status, out = cli(capsys, "backfill", "--dry-run", "--set", f"lakehouse={tmp_path}", "--set", "corpus.format=parquet",
                      "--set", f"corpus.path={tmp_path}/nowhere")
    assert status == 2 and f"no parquet corpus at {tmp_path}/nowhere" in out
    assert cli(capsys, "backfill", "--dry-run", "--set", f"lakehouse={tmp_path}")[0] == 0


def test_compare_of_a_challenger_with_no_rows_says_so(capsys, tmp_path, empty_registry_db) -> None:
    """A challenger registered but not yet computed (or a canary whose share held no item): compare
    ended in a traceback (an uncaught LookupError), as if it were a bug."""
    import shutil

    from lake.registry import CHALLENGER, Registry

    (tmp_path / "_registry").mkdir()
    shutil.copy(empty_registry_db, tmp_path / "_registry" / "mlflow.db")
    registry = Registry(f"sqlite:///{tmp_path}/_registry/mlflow.db")
    for i in (1, 2):
        (tmp_path / f"{i}.pt").write_bytes(bytes([i]))
        registry.register("image_embedding", str(tmp_path / f"{i}.pt"), {})
    registry.promote("image_embedding", "1")
    registry.client.set_registered_model_alias("image_embedding", CHALLENGER, "2")
    status, out = cli(capsys, "compare", "image_embedding", "--set", f"lakehouse={tmp_path}")
    assert status == 2 and "image_embedding: no rows at version" in out and "backfill --challenger" in out, out


def test_a_challenger_without_the_registry_is_refused_by_a_run_and_its_dry_run(capsys, tmp_path) -> None:
    """Found in review: with `registry.enabled: false` every signal has only its pinned version,
    the champion's, and `backfill --challenger --slice-pct 5` computed it on its 5% and replaced
    the window's champion rows with them (a probe: 8 items' rows became none). A shadow run
    without the registry has no challenger to compute: the run and its dry run refuse it."""
    from rollout.models import build_signals

    pins = [f"signals.{name}.model.version=1" for name in load_settings("local").signals]
    sets = [arg for setting in [f"lakehouse={tmp_path}", "registry.enabled=false", *pins] for arg in ("--set", setting)]
    settings = load_settings("local", sets[1::2])
    assert {s.config.model.version for s in build_signals(settings).values()} == {"1"}  # the champion run is as it was
    with pytest.raises(UsageError, match="--challenger needs the model registry"):
        build_signals(settings, "challenger")
    assert cli(capsys, "make-corpus", "--n-items", "8", "--set", f"lakehouse={tmp_path}")[0] == 0
    before = sorted(tmp_path.rglob("*"))
    status, out = cli(capsys, "backfill", "--dry-run", "--challenger", "--slice-pct", "5", *sets)
    assert status == 2 and "--challenger needs the model registry (registry.enabled is false)" in out, out
    assert sorted(tmp_path.rglob("*")) == before


def test_register_refuses_a_source_other_than_the_weights_its_version_loads(capsys, tmp_path) -> None:
    """Found in review: `register image_embedding --source v2.pth` without `--param weights_path=v2.pth`
    registered v2's sha256 on a version whose params load the packaged weights, so every worker of
    its canary refused them (WeightsMismatch): a version no job could ever run, said to be the challenger."""
    from rollout.models import build_signals

    weights = tmp_path / "weights" / "v2.pth"
    weights.parent.mkdir()
    weights.write_bytes(b"the new weights")
    lakehouse = ["--set", f"lakehouse={tmp_path / 'lh'}"]
    status, out = cli(capsys, "register", "image_embedding", "--source", str(weights), *lakehouse)
    assert status == 2 and f"--source {weights} is not the weights" in out and "weights_path" in out, out
    assert not (tmp_path / "lh").exists()
    status, out = cli(capsys, "register", "image_embedding", "--source", f"file://{weights}", "--param", f"weights_path={weights}", *lakehouse)
    assert status == 0, out
    challenger = build_signals(load_settings("local", [f"lakehouse={tmp_path / 'lh'}"]), "challenger")["image_embedding"]
    assert challenger.weights_source() == str(weights)
    challenger.verify_weights()  # what a worker checks before its first row


@pytest.mark.parametrize("damage", ["not a database", "truncated"])
def test_a_damaged_registry_database_is_said_to_be_damaged(capsys, tmp_path, empty_registry_db, damage) -> None:
    """Found in review: a local registry database that is not one (overwritten, say) was a sqlalchemy
    traceback, and one cut short (a copy that did not finish) read as a registry without the model
    ("no registered model", exit 2), on which a job would register the packaged weights as champion again."""
    import shutil

    from lake.registry import Registry

    db = tmp_path / "_registry" / "mlflow.db"
    db.parent.mkdir()
    shutil.copy(empty_registry_db, db)
    registry = Registry(f"sqlite:///{db}")
    (tmp_path / "1.pt").write_bytes(b"1")
    registry.promote("image_embedding", registry.register("image_embedding", str(tmp_path / "1.pt"), {}).version)
    if damage == "not a database":
        db.write_bytes(b"not sqlite at all " * 100)
    else:
        with open(db, "r+b") as f:
            f.truncate(db.stat().st_size // 3)
    for args in (["promote", "image_embedding", "1"], ["rollback", "image_embedding"]):
        status, out = cli(capsys, *args, "--set", f"lakehouse={tmp_path}")
        assert status == 4 and f"the model registry's database {db} is damaged" in out and "restore it from a backup" in out, out


@pytest.mark.parametrize("tag, value", [("alias_stack.champion", '["1"'), ("alias_history.champion", "edited"),
                                        ("alias_stack.champion", '{"1": "2"}'), ("alias_history.champion", '["1", "2"]')])
def test_a_rollback_stack_or_history_tag_edited_into_something_else_is_said_to_be_damaged(capsys, tmp_path, empty_registry_db,
                                                                                         tag, value) -> None:
    """Found in review: an `alias_stack.*` or `alias_history.*` tag edited by hand (the MLflow UI)
    into something not JSON was a JSONDecodeError traceback in promote and rollback (and JSON of
    another shape an AttributeError or a TypeError): now exit 4, naming the tag and how to repair it."""
    import shutil

    from lake.registry import Registry

    db = tmp_path / "_registry" / "mlflow.db"
    db.parent.mkdir()
    shutil.copy(empty_registry_db, db)
    registry = Registry(f"sqlite:///{db}")
    for i in (1, 2, 3):
        (tmp_path / f"{i}.pt").write_bytes(bytes([i]))
        registry.register("image_embedding", str(tmp_path / f"{i}.pt"), {})
    registry.promote("image_embedding", "1")
    registry.promote("image_embedding", "2")
    registry.client.set_registered_model_tag("image_embedding", tag, value)
    for args in (["promote", "image_embedding", "3", "--force"], ["rollback", "image_embedding"]):
        status, out = cli(capsys, *args, "--set", f"lakehouse={tmp_path}")
        assert status == 4 and f"the registry tag {tag!r} of 'image_embedding' is not a JSON list of" in out, out
        assert "edited by hand" in out and "set it back" in out and "delete the tag" in out, out
        assert registry.aliases("image_embedding")["champion"] == "2"  # nothing moved (a promote moved it, then met the history)
    assert registry.client.get_registered_model("image_embedding").tags[tag] == value  # nor written


def test_a_promotion_refused_for_coverage_names_force_once() -> None:
    """`promote` ends every refusal with "(--force promotes it anyway)"; the coverage refusal said "(or promote with
    --force)" before it as well, so a newcomer's first refused promote named --force twice."""
    from rollout.coverage import Coverage

    message = Coverage("image_embedding", "1", "2", champion_items=500, candidate_items=22, missing=("pin-000000",)).message()
    assert "--force" not in message and message.endswith("then promote again"), message


@pytest.mark.parametrize("which", [[], ["--run-id", "r1"], ["--day", "2026-11-01"]])
def test_monitor_on_a_lakehouse_without_signal_tables_says_so_before_spark_starts(capsys, tmp_path, monkeypatch, which) -> None:
    """Found in review: a mistyped lakehouse started Spark (about ten seconds), then said to name a run with --run-id,
    or that the run named wrote no rows."""
    from jobs import commands

    monkeypatch.setattr(commands, "build_session", lambda _: pytest.fail("a Spark session started on a lakehouse without signal tables"))
    typo = tmp_path / "typo"
    status, out = cli(capsys, "monitor", *which, "--set", f"lakehouse={typo}")
    assert status == 2 and out == f"error: no signal tables (embeddings, labels) in {typo}: nothing was computed there to monitor (is --set lakehouse right?)"
    assert not typo.exists()

    class Started(Exception):
        pass

    def started(_):
        raise Started
    monkeypatch.setattr(commands, "build_session", started)
    append(str(typo), rows(["pin-0001"], random_vectors(1, 0)))  # one signal table: there is something to monitor
    with pytest.raises(Started):
        main(["monitor", *which, "--set", f"lakehouse={typo}"])


def test_the_top_level_help_lists_every_exit_status_a_failure_is_given(capsys) -> None:
    """Found in review: `content-signals --help` named no exit status (README and jobs/failures.py did);
    its epilog now lists them from jobs/exit_statuses.py, each status `explain` gives among them."""
    import ast
    import inspect

    from jobs import failures
    from jobs.exit_statuses import BUG, DONE, EXIT_STATUSES

    given = {getattr(failures, call.args[0].id) for call in ast.walk(ast.parse(inspect.getsource(failures)))
             if isinstance(call, ast.Call) and getattr(call.func, "id", None) == "Failure" and isinstance(call.args[0], ast.Name)}
    assert given, "no Failure(STATUS, ...) found in jobs/failures.py"
    with pytest.raises(SystemExit):
        main(["--help"])
    shown = capsys.readouterr().out
    for status in sorted({DONE, BUG} | given):
        assert f"  {status}  {EXIT_STATUSES[status]}" in shown, status
