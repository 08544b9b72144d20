"""The model registry: which weights each signal's model versions are, and which one is `champion`.

Every model a signal uses is a version of a registered model in an MLflow registry (a local
sqlite store by default, a tracking server on a cluster). A version records where its weights
came from (its `source` tag; MLflow's own source field holds it under our scheme, as a tracking
server requires), a sha256 of them and the params that identify the model (rollout.models: never
how it is run), so a row's (`model_name`, `model_version`) always says exactly what computed
it. Registration is idempotent on (weights hash, what of the params identifies the model, as the caller says): registering the same weights twice
reuses the version, changed weights or params make a new one; a new version is created under the
registry's lock (lake/alias_lock.py), so two registrations of the same weights at once make one. Weights are read to be hashed only when their
listing (location, sizes, modification times) changed since their version was registered.

Aliases (`champion`, `challenger`, ...) are the only thing that moves. The job resolves them
once per run on the driver; promotion and rollback move an alias and never recompute rows.
Each alias keeps its own history (a registered-model tag) so that rollback knows where to go
back to, and each move is also appended to the run ledger (its history entry names the record, so
the alias's next move writes the record of one killed before it). Moves hold the registry's alias lock
(lake/alias_lock.py), so two at once cannot lose each other's entries, and a promote decided
against one champion (its gate and coverage checks) refuses to move an alias that moved meanwhile.
`register` and `train` point the challenger under the same lock (`point_alias`, no history) and say
which version it replaced: two at once each said its own version was now the challenger, or one
ended in a traceback (MLflow's sqlite store inserts a new alias after finding none: a UNIQUE constraint).

MLflow is kept off the network: its usage telemetry is disabled before it is imported.

A local sqlite store is set up all or nothing (`set_up_sqlite`). MLflow itself creates its
tables and runs some seventy alembic migrations in the database file in place, and not in one
transaction: a first run killed in its first seconds left a half-migrated file on which every
later command failed (`duplicate column name`), and two first runs at once raced each other's
migrations (an alembic `CommandError`). Here the database is built and migrated in a temporary
file beside it under a file lock and renamed into place when complete: the file either does not
exist or is whole, a killed set-up leaves only a temporary file the next one deletes, and a
concurrent first run waits on the lock and then finds the database made.
"""
from __future__ import annotations

import fcntl
import json
import logging
import os
import sqlite3
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

# MLflow 3 ships usage telemetry that posts to the internet from background threads; whether it
# is on is decided when mlflow is first imported (and again by set_telemetry_client), so it is
# switched off before the import, and its client dropped if mlflow was imported before this module.
os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"

import mlflow.telemetry  # noqa: E402
from mlflow import MlflowClient  # noqa: E402
from mlflow.entities.model_registry import ModelVersion  # noqa: E402
from mlflow.exceptions import MlflowException  # noqa: E402
from mlflow.store.db.utils import _initialize_tables, create_sqlalchemy_engine_with_retry  # noqa: E402

from lake.alias_lock import AliasConflict, alias_lock  # noqa: E402
from lake.ledger import SUCCEEDED, RunRecord, record_runs, recorded  # noqa: E402
from signals.weights import is_weights_location, local_path, weights_sha256, weights_stat  # noqa: E402

log = logging.getLogger(__name__)

if mlflow.telemetry.get_telemetry_client() is not None:
    mlflow.telemetry.set_telemetry_client()  # re-reads the setting: no client

CHAMPION, CHALLENGER = "champion", "challenger"
SHA_TAG, PARAMS_TAG, SOURCE_TAG = "weights_sha256", "params", "source"
STAT_TAG = "weights_stat"  # signals.weights.weights_stat of the weights when last hashed
CODE_TAG = "code_sha256"  # signals.code_fingerprint of a signal whose logic is all code: its rules
# registered-model tags, JSON lists, oldest first; a tag value holds at most 100,000 characters
STACK_TAG = "alias_stack.{alias}"  # versions the alias named before, for rollback
HISTORY_TAG = "alias_history.{alias}"  # every promotion and rollback of the alias
# What each of those tags holds, as a damaged one is told: its shape, its entries' check, and what deleting it loses.
_TAG_SHAPES = {
    STACK_TAG: ('a JSON list of the versions the alias named before, oldest first (e.g. ["1", "2"])',
                lambda entry: isinstance(entry, str), "the versions rollback can return to"),
    HISTORY_TAG: ('a JSON list of the alias\'s moves, oldest first, each an object with its "action", "from", "to" and "at"',
                  lambda entry: isinstance(entry, dict) and {"action", "from", "to", "at"} <= entry.keys(), "the alias's history"),
}
UNRECORDED = "unrecorded"  # a history entry's action for a move that left none (killed before logging it, or made by hand)
HISTORY_KEEP = 100
LEDGER_RUN_ID = "run_id"  # of a history entry: its record in the run ledger, written by this move or the alias's next
LEDGER_ROOT = "ledger"  # of a history entry: the ledger owed that record (lakehouses may share one registry)
SOURCE_SCHEME = "content-signals"  # of MLflow's source of every version (_mlflow_source)
ANY = "any"  # promote's `expected`: whatever version the alias names when it moves


def challenger_is_champion(aliases: Mapping[str, str], pinned: str | None) -> bool:
    """Whether a signal's challenger is a version readers take for its champion: the one its jobs run (`pinned`) or
    the champion alias's, which readers without the pin read (promoted, or retrained alike); a shadow run, whose
    canary would cut its rows down to its slice, does not compute it. Under a pin it took the pin alone (found in review)."""
    return aliases[CHALLENGER] in {pinned, aliases.get(CHAMPION)} - {None}


class RegistryError(LookupError):
    """A model, version or alias that is not in the registry, or a rollback with nowhere to go."""


class RegistryDamaged(Exception):
    """A local registry database that cannot be read whole (restored from a backup, not made again), or
    a rollback stack or history tag edited into something else (set back by hand)."""


class AliasMoved(AliasConflict):
    """A promote or rollback refused because the alias no longer names the version its caller read."""


def _check_unmoved(name: str, alias: str, current: str | None, expected: str | None, move: str) -> None:
    """AliasMoved unless `alias` still names `expected` (ANY: whatever it names)."""
    if expected != ANY and current != expected:
        raise AliasMoved(f"{name} {alias} moved from version {expected} to {current} after this {move} read it "
                         f"(another promote or rollback): nothing moved; check and {move} again")


@dataclass(frozen=True)
class RegisteredModel:
    """One registered version: what the job records on rows and ships to executors."""

    name: str
    version: str
    source: str
    weights_sha256: str | None
    params: dict[str, Any]
    code_sha256: str | None = None  # of a signal whose logic is all code; None where not recorded (registered before)


def local_store_uri(folder: str | Path) -> str:
    """The sqlite registry/tracking URI for a local folder (MLflow 3 refuses the plain file store)."""
    path = Path(folder).expanduser().resolve()
    return f"sqlite:///{path / 'mlflow.db'}"


def sqlite_path(uri: str) -> Path | None:
    """The database file of a `sqlite:///...` URI, else None."""
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri[len("sqlite:///"):])


def registry_exists(tracking_uri: str) -> bool:
    """Whether the registry is there: a local sqlite one once a first use made it (opening one makes
    it, so a read asks this first); a tracking server is taken to be."""
    db = sqlite_path(tracking_uri)
    return db is None or db.exists()


def mlflow_client(tracking_uri: str) -> MlflowClient:
    """A client whose tracking and registry are both `tracking_uri` (a local database set up, or checked, first)."""
    db = sqlite_path(tracking_uri)
    if db is not None:
        set_up_sqlite(db)
        check_sqlite(db)
    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def check_sqlite(db: Path) -> None:
    """RegistryDamaged unless `db` reads as a whole SQLite database (`PRAGMA quick_check`, milliseconds):
    MLflow met one that is not a database with a sqlalchemy traceback, and read one cut short as a
    registry without the model, on which a job registers the packaged weights as champion again."""
    try:
        with closing(sqlite3.connect(db, timeout=60)) as connection:  # waits out a writer's lock, as MLflow's own connections do
            found = [row[0] for row in connection.execute("PRAGMA quick_check")]
    except sqlite3.OperationalError:
        raise  # locked or unreachable, not damaged
    except sqlite3.DatabaseError as e:
        found = [str(e)]
    if found != ["ok"]:
        raise RegistryDamaged(f"the model registry's database {db} is damaged ({'; '.join(found[:3])}): restore it from a backup. "
                              "It says which version each signal's champion is: a new one in its place would make the configured "
                              "weights the champion again, numbered from 1 like versions the tables hold rows of")


def set_up_sqlite(db: Path) -> None:
    """Make `db` a complete MLflow database if it does not exist, so that no crash or concurrent
    first run can leave it half migrated: built in `<db>.setup` under the lock `<db>.lock`, then
    renamed into place (see the module docstring)."""
    if db.exists():
        return
    db.parent.mkdir(parents=True, exist_ok=True)
    with open(db.with_name(f"{db.name}.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released on close, or by the kernel when the process dies
        if db.exists():
            return  # set up by the process this one waited for
        building = db.with_name(f"{db.name}.setup")
        for leftover in db.parent.glob(f"{building.name}*"):  # of a set-up that was killed (and its journal)
            leftover.unlink()
        engine = create_sqlalchemy_engine_with_retry(f"sqlite:///{building}")
        try:
            with _quiet("mlflow.store.db.utils", "alembic"):  # a first run's set-up is not news worth printing
                _initialize_tables(engine)  # what MLflow's stores do on an empty database: tables, then migrations
        finally:
            engine.dispose()
        os.replace(building, db)
        folder = os.open(db.parent, os.O_RDONLY)
        try:
            os.fsync(folder)  # the rename survives a power cut too
        finally:
            os.close(folder)


@contextmanager
def _quiet(*loggers: str) -> Iterator[None]:
    """The loggers held at WARNING for the block."""
    levels = {name: logging.getLogger(name).level for name in loggers}
    for name in loggers:
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        yield
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


def _canonical(params: Mapping[str, Any]) -> str:
    return json.dumps(dict(params), sort_keys=True, separators=(",", ":"), default=str)


def _mlflow_source(source: str) -> str:
    """What MLflow records as a version's source: a tracking server accepts only an absolute path
    under a scheme for a version that no run of its own logged (a path, a hub tag or a `code:`
    source is refused), so every source is put under our own scheme; the source itself is the
    version's SOURCE_TAG."""
    return f"{SOURCE_SCHEME}:/{source.lstrip('/')}"


def _source(version: ModelVersion) -> str:
    """Where a version's weights come from, as it was registered."""
    return (version.tags or {}).get(SOURCE_TAG, version.source)


def _with_unrecorded(events: list[dict[str, Any]], current: str | None, ledger: str | None = None) -> list[dict[str, Any]]:
    """An alias's history entries and, where the alias no longer names the version the last entry
    moved it to, one for the move that left none (its time is when it was found)."""
    last = events[-1]["to"] if events else None
    if current == last:
        return events
    return [*events, _entry(UNRECORDED, last, current, ledger)]


def _entry(action: str, old: str | None, new: str | None, ledger: str | None) -> dict[str, Any]:
    """A history entry; with a `ledger`, it names that ledger and the record it is owed there, which
    a move killed before writing it leaves to the alias's next move with that ledger."""
    now = _now()
    entry = {"action": action, "from": old, "to": new, "at": now.isoformat()}
    if ledger is not None:
        entry[LEDGER_ROOT] = ledger
        entry[LEDGER_RUN_ID] = f"{action}-{now.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"
    return entry


def _tag_values(name: str, tag: str, text: str, shape: str, fits: Callable[[Any], bool], lost: str) -> list[Any]:
    """A rollback stack or history tag's list; RegistryDamaged, naming the tag and its repair, where it
    was edited by hand into something else (a JSONDecodeError traceback in promote and rollback before)."""
    try:
        values = json.loads(text)
        found = "" if isinstance(values, list) and all(fits(v) for v in values) else f"it holds {text[:80]!r}"
    except json.JSONDecodeError as e:
        values, found = None, f"not JSON: {e}"
    if found:
        raise RegistryDamaged(f"the registry tag {tag!r} of {name!r} is not {shape} ({found}): it was edited by hand. "
                              f"In the MLflow UI (or MlflowClient.set_registered_model_tag), set it back to what it held; the "
                              f"alias's moves are in the run ledger too (the runs table's promote and rollback rows). Or delete "
                              f"the tag to start it anew, losing {lost}")
    return values


Identifies = Callable[[Mapping[str, Any]], Mapping[str, Any]]  # what of a version's params names its model


def _identified(version: ModelVersion, identifies: Identifies) -> str | None:
    """A version's params as `register` compares them (canonical, as `identifies` keeps them); as written where they are
    not a JSON object (edited by hand: then no params match them), None where it has none."""
    recorded = version.tags.get(PARAMS_TAG)
    try:
        params = json.loads(recorded) if recorded is not None else None
    except json.JSONDecodeError:
        return recorded
    return _canonical(identifies(params)) if isinstance(params, dict) else recorded


def _now() -> datetime:
    return datetime.now(UTC)


class Registry:
    """Registered models, their versions and aliases, in one MLflow registry."""

    def __init__(self, tracking_uri: str) -> None:
        self.tracking_uri = tracking_uri
        self.client = mlflow_client(tracking_uri)

    # -- versions ---------------------------------------------------------------------------

    def register(self, name: str, source: str, params: Mapping[str, Any], description: str = "",
                 identifies: Identifies = dict, code_sha256: str | None = None) -> RegisteredModel:
        """Idempotent: a version with the same weights hash and params is reused, else a new version is created,
        under the registry's lock after searching again, so that two registrations at once make one version.
        Params are compared as `identifies` keeps them (all of them by default): a version that recorded
        more (run settings, a param at its default, from before its params identified it alone) is reused,
        its params left as they are; a new version records `params` as given.

        The weights are hashed once per version, not on every run: a version records the listing
        fingerprint of the weights it hashed (`weights_stat`: location, sizes, modification
        times), and weights whose fingerprint and params match a version are that version
        without being read again. Weights rewritten with the same size and time pass here; the
        workers' check of the sha256 on load still refuses them.
        Hub tags cannot be hashed; for them the source itself stands in for the hash.
        A signal whose logic is all code gives its `code_sha256`: a version of other code is another version, and one
        that recorded none (registered before) is taken to be of this code, which it records from now on."""
        source = local_path(source) or source
        located = is_weights_location(source)
        stat = weights_stat(source) if located else None  # before hashing: weights changed meanwhile differ from it next time
        compared = _canonical(identifies(params))
        self._ensure_model(name, description)
        versions = self._versions(name)
        for version in versions:
            if stat is not None and version.tags.get(STAT_TAG) == stat and _identified(version, identifies) == compared:
                return self._entity(version)
        sha = weights_sha256(source) if located else None
        if (same := self._same_model(name, versions, source, sha, stat, compared, identifies, code_sha256)) is not None:
            return same
        with alias_lock(self.client):  # searched again under the lock: two registrations at once made two versions of one model
            if (same := self._same_model(name, self._versions(name), source, sha, stat, compared, identifies, code_sha256)) is not None:
                return same
            tags = {PARAMS_TAG: _canonical(params), SOURCE_TAG: source}
            if sha is not None:
                tags[SHA_TAG] = sha
            if stat is not None:
                tags[STAT_TAG] = stat
            if code_sha256 is not None:
                tags[CODE_TAG] = code_sha256
            created = self.client.create_model_version(name, _mlflow_source(source), tags=tags, description=description or None,
                                                       await_creation_for=0)
        return self._entity(created)

    def _same_model(self, name: str, versions: list[ModelVersion], source: str, sha: str | None, stat: str | None,
                    compared: str, identifies: Identifies, code_sha256: str | None) -> RegisteredModel | None:
        """The version of `versions` with these weights (`sha`; a hub tag's `source` where there is none), code (`code_sha256`,
        or none recorded) and params (as `identifies` keeps them: `compared`), its fingerprint set to `stat` so they are not
        hashed again next time, and the code recorded where it had none; None where there is none."""
        for version in versions:
            tags = version.tags
            same_weights = tags.get(SHA_TAG) == sha if sha is not None else (SHA_TAG not in tags and _source(version) == source)
            same_code = code_sha256 is None or tags.get(CODE_TAG, code_sha256) == code_sha256
            if same_weights and same_code and _identified(version, identifies) == compared:
                if stat is not None:  # moved or touched: not hashed again next time
                    self.client.set_model_version_tag(name, version.version, STAT_TAG, stat)
                if code_sha256 is not None and CODE_TAG not in tags:
                    self.record_code(name, version.version, code_sha256)
                return self._entity(version)
        return None

    def record_code(self, name: str, version: str, code_sha256: str) -> None:
        """Record the fingerprint of the code of a version that recorded none (registered before versions recorded it)."""
        self.client.set_model_version_tag(name, version, CODE_TAG, code_sha256)

    def register_first_use(self, name: str, source: str, params: Mapping[str, Any], description: str = "",
                           alias: str = CHAMPION, identifies: Identifies = dict, code_sha256: str | None = None) -> RegisteredModel:
        """Register packaged weights (`register`) and, if the model has no `alias` yet, point it at them.

        Returns what `alias` resolves to, which is the registered version only on first use:
        after that the registry, not the configuration, decides the champion."""
        registered = self.register(name, source, params, description, identifies, code_sha256)
        if alias not in self.aliases(name):
            try:
                self.promote(name, registered.version, alias, expected=None)
            except AliasMoved:
                pass  # another first run set it meanwhile: from now on the registry decides
        return self.resolve(name, alias)

    def resolve(self, name: str, ref: str) -> RegisteredModel:
        """The version `ref` names: an alias (`champion`, `challenger`), `latest`, or a version number."""
        ref = str(ref)
        try:
            if ref.isdigit():
                return self._entity(self.client.get_model_version(name, ref))
            if ref == "latest":
                versions = self._versions(name)
                if not versions:
                    raise RegistryError(f"model {name!r} has no versions")
                return self._entity(max(versions, key=lambda v: int(v.version)))
            return self._entity(self.client.get_model_version_by_alias(name, ref))
        except MlflowException as e:
            known = self._known(name)
            raise RegistryError(f"cannot resolve {name!r} at {ref!r}: {known}") from e

    def aliases(self, name: str) -> dict[str, str]:
        """alias -> version of a registered model."""
        try:
            model = self.client.get_registered_model(name)
        except MlflowException as e:
            raise RegistryError(f"no registered model {name!r}") from e
        return {alias: str(version) for alias, version in model.aliases.items()}

    def aliases_if_registered(self, name: str) -> dict[str, str]:
        """alias -> version; none for a model never registered."""
        try:
            return self.aliases(name)
        except RegistryError:
            return {}

    def every_alias(self) -> dict[str, dict[str, str]]:
        """model -> alias -> version of every registered model, in one paged read (not a read per model)."""
        return {m.name: {alias: str(version) for alias, version in m.aliases.items()}
                for m in self._paged(self.client.search_registered_models, None)}

    def versions(self, name: str) -> list[RegisteredModel]:
        """Every version of a model, oldest first."""
        return [self._entity(v) for v in sorted(self._versions(name), key=lambda v: int(v.version))]

    # -- aliases ----------------------------------------------------------------------------

    def point_alias(self, name: str, alias: str, version: str) -> str | None:
        """Point `alias` (a `challenger`, which keeps no history) at `version` under the registry's lock and return
        the version it named before (None: unset), read with the move, so that of two moves at once each says what it replaced."""
        with alias_lock(self.client):
            previous = self.aliases(name).get(alias)
            self.client.set_registered_model_alias(name, alias, version)
        return previous

    def promote(self, name: str, version: str, alias: str = CHAMPION, ledger_root: str | None = None,
                signal: str | None = None, expected: str | None = ANY) -> str | None:
        """Point `alias` at `version` (a number, or another alias: promote("m", "challenger"));
        returns the version the alias pointed to before (None if it was unset).

        The previous version is pushed on the alias's rollback stack, the move is logged in the
        alias's history and, with `ledger_root`, appended to the run ledger. Promoting the version
        the alias already names moves nothing, and writes only what the move that put it there owes (a
        promote killed after its alias moved, retried: its history entry, as unrecorded, and its ledger
        record). With `expected` (a version, or None for an unset alias), an alias that names anything
        else is not moved (AliasMoved)."""
        version = self.resolve(name, str(version)).version  # refuses unknown versions
        with alias_lock(self.client):
            previous = self.aliases(name).get(alias)
            _check_unmoved(name, alias, previous, expected, "promote")
            stack, history = self._tag_lists(name, alias, STACK_TAG, HISTORY_TAG)  # both read whole before anything moves
            if previous == version:  # its retry returned here and left them to the alias's next move, months away maybe
                if (events := _with_unrecorded(history, previous, ledger_root)) != history:
                    self._set_tag_list(name, HISTORY_TAG, alias, events)
                self._record(ledger_root, name, alias, events, signal)
                return previous
            if previous is not None:  # pushed before the move: a promote killed between them leaves a top that rollback skips,
                stack.append(previous)  # never a moved alias whose previous version rollback cannot find
                self._set_tag_list(name, STACK_TAG, alias, stack)
            self.client.set_registered_model_alias(name, alias, version)
            events = self._log(name, alias, history, "promote", previous, version, ledger_root)
            self._record(ledger_root, name, alias, events, signal)
        return previous

    def rollback(self, name: str, alias: str = CHAMPION, ledger_root: str | None = None, signal: str | None = None,
                 expected: str | None = ANY) -> str:
        """Move `alias` back to the version it named before its last promotion; returns that version.

        Successive rollbacks walk further back, past versions deleted from the registry since; the
        abandoned version is tagged `rolled_back.<alias>`. Raises RegistryError when there is no
        earlier version. With `expected`, an alias that names another version (a promote landed
        since the caller read it) is not moved (AliasMoved)."""
        with alias_lock(self.client):
            current = self.aliases(name).get(alias)
            _check_unmoved(name, alias, current, expected, "rollback")
            stack, history = self._tag_lists(name, alias, STACK_TAG, HISTORY_TAG)  # both read whole before anything moves
            while stack and (stack[-1] == current or not self._registered(name, stack[-1])):
                gone = stack.pop()  # the alias was moved back by hand meanwhile, or the version deleted by hand (no alias can name it)
                if gone != current:
                    log.warning("%s version %s, which %s's %r named before, is no longer in the registry: rolled back past it",
                                name, gone, name, alias)
            if not stack:
                raise RegistryError(
                    f"cannot roll back {name!r} {alias!r} (now version {current}): no earlier version to return to"
                )
            target = stack.pop()
            self.client.set_registered_model_alias(name, alias, target)
            self._set_tag_list(name, STACK_TAG, alias, stack)
            if current is not None:
                self.client.set_model_version_tag(name, current, f"rolled_back.{alias}", _now().isoformat())
            events = self._log(name, alias, history, "rollback", current, target, ledger_root)
            self._record(ledger_root, name, alias, events, signal)
        return target

    def history(self, name: str, alias: str = CHAMPION) -> list[dict[str, Any]]:
        """The alias's promotions and rollbacks (action, from, to, at), oldest first, and a move
        that left no entry as UNRECORDED (kept by the alias's next promotion or rollback)."""
        events = self._tag_list(name, HISTORY_TAG, alias)
        return _with_unrecorded(events, self.aliases(name).get(alias))

    # -- internals --------------------------------------------------------------------------

    def _ensure_model(self, name: str, description: str) -> None:
        try:
            self.client.get_registered_model(name)
        except MlflowException:
            try:
                self.client.create_registered_model(name, description=description or None)
            except MlflowException as e:  # created meanwhile by another driver
                if e.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise

    def _registered(self, name: str, version: str) -> bool:
        """Whether the version is (still) in the registry."""
        try:
            self.client.get_model_version(name, version)
        except MlflowException as e:
            if e.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
            return False
        return True

    def _versions(self, name: str) -> list[ModelVersion]:
        escaped = name.replace("'", "\\'")
        return self._paged(self.client.search_model_versions, f"name = '{escaped}'")

    @staticmethod
    def _paged(search: Callable[..., list[Any]], filter_string: str | None) -> list[Any]:
        """Everything an MLflow search finds, page after page."""
        found, token = [], None
        while True:
            page = search(filter_string, page_token=token)
            found.extend(page)
            token = page.token
            if not token:
                return found

    def _entity(self, version: ModelVersion) -> RegisteredModel:
        tags = version.tags or {}
        return RegisteredModel(
            name=version.name,
            version=str(version.version),  # the sqlite store hands back an int
            source=_source(version),
            weights_sha256=tags.get(SHA_TAG),
            params=json.loads(tags.get(PARAMS_TAG, "{}")),
            code_sha256=tags.get(CODE_TAG),
        )

    def _known(self, name: str) -> str:
        try:
            aliases = self.aliases(name)
        except RegistryError:
            return "no such registered model"
        versions = sorted(int(v.version) for v in self._versions(name))
        return f"versions {versions}, aliases {aliases}"

    def _tag_list(self, name: str, template: str, alias: str) -> list[Any]:
        return self._tag_lists(name, alias, template)[0]

    def _tag_lists(self, name: str, alias: str, *templates: str) -> list[list[Any]]:
        """The alias's lists of these tags (`_TAG_SHAPES`), from one read of the model's tags."""
        try:
            tags = self.client.get_registered_model(name).tags
        except MlflowException as e:
            raise RegistryError(f"no registered model {name!r}") from e
        tag_names = [template.format(alias=alias) for template in templates]
        return [_tag_values(name, tag, tags.get(tag, "[]"), *_TAG_SHAPES[template]) for tag, template in zip(tag_names, templates, strict=True)]

    def _set_tag_list(self, name: str, template: str, alias: str, values: list[Any]) -> None:
        self.client.set_registered_model_tag(name, template.format(alias=alias), json.dumps(values[-HISTORY_KEEP:]))

    def _log(self, name: str, alias: str, history: list[dict[str, Any]], action: str, old: str | None, new: str,
             ledger: str | None) -> list[dict[str, Any]]:
        """Append the move (and one that left no entry) to the alias's `history`, read under the same lock; returns the history."""
        events = _with_unrecorded(history, old, ledger)
        events.append(_entry(action, old, new, ledger))
        self._set_tag_list(name, HISTORY_TAG, alias, events)
        return events

    def _record(self, ledger_root: str | None, name: str, alias: str, events: list[dict[str, Any]], signal: str | None) -> None:
        """Write the records the history's entries owe `ledger_root` and it lacks: this move's and
        those of moves killed before writing theirs. Under the alias lock, so no two movers write
        one record twice."""
        if ledger_root is None:
            return
        owed = {e[LEDGER_RUN_ID]: e for e in events if e.get(LEDGER_ROOT) == ledger_root}
        written = recorded(ledger_root, owed)
        missing = [e for run_id, e in owed.items() if run_id not in written]
        if not missing:
            return
        now = _now()
        record_runs(ledger_root, [RunRecord(
            run_id=e[LEDGER_RUN_ID], job=e["action"], signal=signal or name, model_name=name, model_version=e["to"],
            window_start=None, window_end=None, rows_in=None, rows_ok=None, rows_error=None, status=SUCCEEDED,
            message=f"{alias} {e['from']} -> {e['to']}", table_version=None,
            started_at=datetime.fromisoformat(e["at"]), finished_at=now,
        ) for e in missing])
