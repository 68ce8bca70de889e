"""The embedded link store: one SQLite file (the default for local runs).

Several DoFn threads and several DirectRunner worker processes may open the same file, so:
WAL mode (readers never block the writer), a 30 s busy timeout (writers queue instead of
failing), every write in a ``BEGIN IMMEDIATE`` transaction (the write lock is taken up front,
so two writers never deadlock upgrading a read lock), and one connection per store shared by
threads behind a lock. Uniqueness of ids within a pair is enforced by the database itself, so
two writers racing for the same entity cannot both win.

The schema is versioned with ``PRAGMA user_version``: :data:`_MIGRATIONS` lists the steps,
and a file is brought up to date when it is opened.

The store keeps OAuth tokens (Exact's, in state entries), so talksync creates the database file
readable by its owner only (0600) and the folders it creates for it 0700, whatever the umask;
SQLite gives the ``-wal``, ``-shm`` and ``-journal`` files the database file's permissions. An
existing file open to group or others is left as it is, with a one-line warning naming the
fix: tightening it silently could lock out a group that shares the store on purpose.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import os
import pathlib
import sqlite3
import stat
import threading
from collections.abc import Iterable, Iterator, Sequence

from connectors.linkstore import LinkRef, LinkStore, StaleLinkError, StaleStateError
from core.model import (
    PENDING,
    UNLINKED,
    DeadLetter,
    Link,
    StateEntry,
    committed_state,
    decode_values,
    encode_values,
)
from core.provenance import OriginWrite, RecordOrigins, merged_origins

_LOG = logging.getLogger(__name__)
_URL_PREFIX = "sqlite:///"
_MEMORY = ":memory:"
#: how long a writer waits for another process's transaction before giving up
_BUSY_TIMEOUT_MS = 30_000
#: ids per ``IN (...)`` query; well below SQLite's bound-parameter limit
_LOOKUP_CHUNK = 500

#: owner-only permissions of the database file and of the folders created for it
_PRIVATE_FILE, _PRIVATE_FOLDER = 0o600, 0o700
#: the files SQLite keeps beside the database
_SIDE_FILES = ("-wal", "-shm", "-journal")
#: databases already warned about in this process (a run opens its store many times)
_WARNED_OPEN_TO_OTHERS: set[str] = set()

#: schema steps; step i takes a file from user_version i to i + 1
_MIGRATIONS = (
    """
    CREATE TABLE links (
        pair            TEXT NOT NULL,
        link_id         TEXT NOT NULL,
        source_id       TEXT,
        target_id       TEXT,
        state           TEXT NOT NULL,
        snapshot_source TEXT NOT NULL,
        snapshot_target TEXT NOT NULL,
        source_etag     TEXT,
        target_etag     TEXT,
        attempt_id      TEXT,
        version         INTEGER NOT NULL,
        updated_at      TEXT NOT NULL,
        PRIMARY KEY (pair, link_id)
    );
    CREATE UNIQUE INDEX links_by_source ON links (pair, source_id) WHERE source_id IS NOT NULL;
    CREATE UNIQUE INDEX links_by_target ON links (pair, target_id) WHERE target_id IS NOT NULL;
    CREATE INDEX links_pending ON links (pair) WHERE state = 'pending';
    CREATE TABLE watermarks (
        dataflow TEXT NOT NULL,
        pair     TEXT NOT NULL,
        system   TEXT NOT NULL,
        value    TEXT NOT NULL,
        PRIMARY KEY (dataflow, pair, system)
    );
    CREATE TABLE dead_letters (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        run_id      TEXT NOT NULL,
        dataflow    TEXT NOT NULL,
        pair        TEXT NOT NULL,
        direction   TEXT NOT NULL,
        system      TEXT NOT NULL,
        entity      TEXT NOT NULL,
        entity_id   TEXT,
        stage       TEXT NOT NULL,
        error_class TEXT NOT NULL,
        message     TEXT NOT NULL,
        status      INTEGER,
        payload     TEXT,
        created_at  TEXT NOT NULL
    );
    CREATE INDEX dead_letters_by_pair ON dead_letters (dataflow, pair, run_id);
    """,
    """
    CREATE TABLE state (
        key        TEXT PRIMARY KEY,
        value      TEXT NOT NULL,
        version    INTEGER NOT NULL,
        updated_at TEXT NOT NULL
    );
    """,
    """
    CREATE TABLE record_origins (
        system     TEXT NOT NULL,
        entity     TEXT NOT NULL,
        record_id  TEXT NOT NULL,
        origins    TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (system, entity, record_id)
    );
    """,
    """
    ALTER TABLE dead_letters ADD COLUMN attempts INTEGER NOT NULL DEFAULT 1;
    """,
)

_LINK_COLUMNS = ("pair", "link_id", "source_id", "target_id", "state", "snapshot_source",
                 "snapshot_target", "source_etag", "target_etag", "attempt_id", "version",
                 "updated_at")
_DEAD_LETTER_COLUMNS = ("run_id", "dataflow", "pair", "direction", "system", "entity",
                        "entity_id", "stage", "error_class", "message", "status", "payload",
                        "attempts", "created_at")


def _prepare_private_file(path: str) -> None:
    """Create the database file, and any folder missing on its way, readable by the owner only
    (the umask cannot widen or narrow it); an existing file open to others is warned about."""
    if os.name != "posix":  # permissions there are ACLs, inherited from the folder
        pathlib.Path(path).parent.mkdir(parents=True, exist_ok=True)
        return
    _make_private_folders(pathlib.Path(path).parent)
    try:
        handle = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, _PRIVATE_FILE)
    except FileExistsError:
        _warn_if_open_to_others(path)
        return
    try:
        os.fchmod(handle, _PRIVATE_FILE)  # exactly 0600: the umask only ever takes bits away
    finally:
        os.close(handle)  # an empty file is an empty SQLite database


def _make_private_folders(folder: pathlib.Path) -> None:
    """Create ``folder`` and its missing parents 0700; folders that exist are left alone."""
    missing = []
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    for created in reversed(missing):
        try:
            created.mkdir(mode=_PRIVATE_FOLDER)
        except FileExistsError:  # another worker made it first
            continue
        os.chmod(created, _PRIVATE_FOLDER)


def _warn_if_open_to_others(path: str) -> None:
    """One warning per database and process when it or a file beside it is open to group or
    others, naming the files and the fix."""
    if path in _WARNED_OPEN_TO_OTHERS:
        return
    open_files = []
    for name in (path, *(path + suffix for suffix in _SIDE_FILES)):
        try:
            mode = os.stat(name).st_mode
        except FileNotFoundError:
            continue
        if stat.S_IMODE(mode) & 0o077:
            open_files.append(f"{name} ({stat.filemode(mode)})")
    if open_files:
        _WARNED_OPEN_TO_OTHERS.add(path)
        _LOG.warning("link store %s keeps OAuth tokens but is open to group or others: %s; "
                     "make it owner-only with `chmod 600` on these files", path,
                     ", ".join(open_files))


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="microseconds")


def _instant(value: str) -> datetime.datetime:
    """An ISO 8601 timestamp as an aware datetime (naive ones are UTC), for comparing."""
    parsed = datetime.datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=datetime.UTC)


def _link_row(link: Link, *, state: str, version: int, updated_at: str | None) -> tuple:
    return (link.pair, link.link_id, link.source_id, link.target_id, state,
            encode_values(link.snapshot_source), encode_values(link.snapshot_target),
            link.source_etag, link.target_etag, link.attempt_id, version, updated_at)


def _link(row: sqlite3.Row) -> Link:
    return Link(pair=row["pair"], link_id=row["link_id"], source_id=row["source_id"],
                target_id=row["target_id"], state=row["state"],
                snapshot_source=decode_values(row["snapshot_source"]),
                snapshot_target=decode_values(row["snapshot_target"]),
                source_etag=row["source_etag"], target_etag=row["target_etag"],
                attempt_id=row["attempt_id"], version=row["version"],
                updated_at=row["updated_at"])


class SqliteLinkStore(LinkStore):
    """A :class:`LinkStore` in one SQLite database file (or in memory)."""

    def __init__(self, path: str):
        """Open (creating it and its folder if needed) the database at ``path``."""
        if path != _MEMORY:
            _prepare_private_file(path)
        self._path = path
        self._lock = threading.Lock()
        # timeout: SQLite's busy timeout. isolation_level=None: no implicit transactions,
        # every write says BEGIN IMMEDIATE.
        self._db = sqlite3.connect(path, timeout=_BUSY_TIMEOUT_MS / 1000,
                                   isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode = WAL")
        self._migrate()

    @classmethod
    def from_url(cls, url: str) -> SqliteLinkStore:
        """``sqlite:///relative/path.db``, ``sqlite:////absolute/path.db`` or ``sqlite:///:memory:``."""
        if not url.startswith(_URL_PREFIX) or url == _URL_PREFIX:
            raise ValueError(f"link_store: expected sqlite:///PATH or sqlite:///:memory:, "
                             f"not {url!r}")
        return cls(url[len(_URL_PREFIX):])

    def __repr__(self) -> str:
        return f"SqliteLinkStore({self._path!r})"

    # --- links -------------------------------------------------------------------------------

    def lookup_by_source(self, pair: str, ids: Iterable[str]) -> dict[str, Link]:
        return {link.source_id: link for link in self._lookup(pair, "source_id", ids)
                if link.source_id is not None}

    def lookup_by_target(self, pair: str, ids: Iterable[str]) -> dict[str, Link]:
        return {link.target_id: link for link in self._lookup(pair, "target_id", ids)
                if link.target_id is not None}

    def lookup_refs_by_source(self, pair: str, ids: Iterable[str]) -> dict[str, LinkRef]:
        return self._lookup_refs(pair, "source_id", ids)

    def lookup_refs_by_target(self, pair: str, ids: Iterable[str]) -> dict[str, LinkRef]:
        return self._lookup_refs(pair, "target_id", ids)

    def _lookup_refs(self, pair: str, column: str, ids: Iterable[str]) -> dict[str, LinkRef]:
        """Only the index's columns: no snapshot text is read or decoded."""
        rows = self._select(f"{column}, link_id, state", pair, column, ids)
        return {row[0]: LinkRef(row[1], row[2]) for row in rows}

    def lookup_by_id(self, pair: str, link_ids: Iterable[str]) -> dict[str, Link]:
        return {link.link_id: link for link in self._lookup(pair, "link_id", link_ids)}

    def _lookup(self, pair: str, column: str, ids: Iterable[str]) -> list[Link]:
        return [_link(row) for row in self._select("*", pair, column, ids)]

    def _select(self, columns: str, pair: str, column: str, ids: Iterable[str]) -> list:
        """The ``columns`` of the links of ``pair`` whose ``column`` is in ``ids``."""
        wanted = sorted(set(ids))
        rows = []
        with self._lock:
            for start in range(0, len(wanted), _LOOKUP_CHUNK):
                chunk = wanted[start:start + _LOOKUP_CHUNK]
                rows += self._db.execute(
                    f"SELECT {columns} FROM links WHERE pair = ? AND {column} IN "
                    f"({', '.join('?' * len(chunk))})", (pair, *chunk)).fetchall()
        return rows

    def pending(self, pair: str) -> list[Link]:
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM links WHERE pair = ? AND state = ? ORDER BY link_id",
                (pair, PENDING)).fetchall()
        return [_link(row) for row in rows]

    def reserve(self, link: Link) -> Link:
        """Insert ``link`` as pending (version 1) unless its id exists; return the stored link.

        When another link of the pair already holds the same source or target id, that link is
        returned: the caller does not own it (its ``attempt_id`` is not the caller's).
        """
        with self._transaction():
            row = self._reserve_row(link)
        return _link(row)

    def reserve_many(self, links: Sequence[Link]) -> list[Link]:
        """:meth:`reserve` of each link, all in one transaction (one write lock, one sync)."""
        with self._transaction():
            rows = [self._reserve_row(link) for link in links]
        return [_link(row) for row in rows]

    def _reserve_row(self, link: Link) -> sqlite3.Row:
        """Inside a write transaction: the reservation of ``link``, the stored row."""
        try:
            self._db.execute(
                f"INSERT INTO links ({', '.join(_LINK_COLUMNS)}) "
                f"VALUES ({', '.join('?' * len(_LINK_COLUMNS))}) "
                "ON CONFLICT (pair, link_id) DO NOTHING",
                _link_row(link, state=PENDING, version=1, updated_at=_now()))
        except sqlite3.IntegrityError:
            return self._db.execute(
                "SELECT * FROM links WHERE pair = ? AND (source_id = ? OR target_id = ?) "
                "ORDER BY source_id = ? DESC LIMIT 1",
                (link.pair, link.source_id, link.target_id, link.source_id)).fetchone()
        return self._db.execute("SELECT * FROM links WHERE pair = ? AND link_id = ?",
                                (link.pair, link.link_id)).fetchone()

    def commit(self, links: Sequence[Link]) -> list[Link]:
        """Store each link as linked if its version still matches (0: if it does not exist).

        A link whose stored version moved on, or whose source or target id another link
        already holds, is not stored; the others are, and then :class:`StaleLinkError` is
        raised with ``link_ids`` (the stale ones) and ``committed`` (the stored ones).
        """
        committed, stale = [], []
        with self._transaction():
            for link in links:
                stored = link.replace(state=committed_state(link.state),
                                      version=link.version + 1, updated_at=_now())
                if self._store_if_current(link, stored):
                    committed.append(stored)
                else:
                    stale.append(link.link_id)
        if stale:
            error = StaleLinkError(
                f"{len(stale)} link(s) changed since they were read (another writer won): "
                f"{', '.join(stale)}")
            error.link_ids = tuple(stale)
            error.committed = committed
            raise error
        return committed

    def _store_if_current(self, expected: Link, stored: Link) -> bool:
        """Write ``stored`` over the row at ``expected.version``; False when that is not there."""
        row = _link_row(stored, state=stored.state, version=stored.version,
                        updated_at=stored.updated_at)
        try:
            if stored.state == UNLINKED:    # unlinked: the link is removed
                return self._db.execute(
                    "DELETE FROM links WHERE pair = ? AND link_id = ? AND version = ?",
                    (expected.pair, expected.link_id, expected.version)).rowcount == 1
            if expected.version == 0:
                self._db.execute(
                    f"INSERT INTO links ({', '.join(_LINK_COLUMNS)}) "
                    f"VALUES ({', '.join('?' * len(_LINK_COLUMNS))})", row)
                return True
            updated = self._db.execute(
                f"UPDATE links SET {', '.join(c + ' = ?' for c in _LINK_COLUMNS[2:])} "
                "WHERE pair = ? AND link_id = ? AND version = ?",
                (*row[2:], expected.pair, expected.link_id, expected.version))
            return updated.rowcount == 1
        except sqlite3.IntegrityError:
            # The link id exists already (version 0), or its source/target id is another's.
            return False

    # --- origins of written values (edit-time provenance) -------------------------------------

    def lookup_origins(self, system: str, entity: str,
                       ids: Iterable[str]) -> dict[str, RecordOrigins]:
        wanted = sorted(set(ids))
        found = {}
        with self._lock:
            for start in range(0, len(wanted), _LOOKUP_CHUNK):
                chunk = wanted[start:start + _LOOKUP_CHUNK]
                for row in self._db.execute(
                        "SELECT record_id, origins FROM record_origins WHERE system = ? AND "
                        f"entity = ? AND record_id IN ({', '.join('?' * len(chunk))})",
                        (system, entity, *chunk)):
                    found[row["record_id"]] = RecordOrigins.from_json(
                        system, entity, row["record_id"], json.loads(row["origins"]))
        return found

    def save_origins(self, writes: Sequence[OriginWrite]) -> None:
        """Each write merged with the stored entry, all in one transaction."""
        if not writes:
            return
        now = _now()
        with self._transaction():
            for write in writes:
                row = self._db.execute(
                    "SELECT origins FROM record_origins WHERE system = ? AND entity = ? AND "
                    "record_id = ?", write.key).fetchone()
                stored = (RecordOrigins.from_json(*write.key, json.loads(row["origins"]))
                          if row else None)
                merged = merged_origins(stored, write)
                self._db.execute(
                    "INSERT INTO record_origins (system, entity, record_id, origins, updated_at) "
                    "VALUES (?, ?, ?, ?, ?) ON CONFLICT (system, entity, record_id) DO UPDATE "
                    "SET origins = excluded.origins, updated_at = excluded.updated_at",
                    (*write.key, json.dumps(merged.to_json(), sort_keys=True), now))

    # --- watermarks --------------------------------------------------------------------------

    def get_watermark(self, dataflow: str, pair: str, system: str) -> str | None:
        with self._lock:
            row = self._db.execute(
                "SELECT value FROM watermarks WHERE dataflow = ? AND pair = ? AND system = ?",
                (dataflow, pair, system)).fetchone()
        return row["value"] if row else None

    def advance_watermark(self, dataflow: str, pair: str, system: str, value: str) -> str:
        new = _instant(value)
        with self._transaction():
            row = self._db.execute(
                "SELECT value FROM watermarks WHERE dataflow = ? AND pair = ? AND system = ?",
                (dataflow, pair, system)).fetchone()
            if row and _instant(row["value"]) >= new:
                return row["value"]
            self._db.execute(
                "INSERT INTO watermarks (dataflow, pair, system, value) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (dataflow, pair, system) DO UPDATE SET value = excluded.value",
                (dataflow, pair, system, value))
        return value

    # --- dead letters ------------------------------------------------------------------------

    def add_dead_letters(self, letters: Sequence[DeadLetter]) -> None:
        """Store ``letters``; a letter without ``created_at`` gets the current time."""
        now = _now()
        rows = [tuple(getattr(letter, c) for c in _DEAD_LETTER_COLUMNS[:-1])
                + (letter.created_at or now,) for letter in letters]
        with self._transaction():
            self._db.executemany(
                f"INSERT INTO dead_letters ({', '.join(_DEAD_LETTER_COLUMNS)}) "
                f"VALUES ({', '.join('?' * len(_DEAD_LETTER_COLUMNS))})", rows)

    def open_dead_letters(self, dataflow: str, pair: str) -> list[DeadLetter]:
        """The letters of the run that stored letters for ``pair`` last, in insertion order.

        Runs store their letters when they finish, so that is the latest finished run.
        """
        with self._lock:
            rows = self._db.execute(
                f"SELECT {', '.join(_DEAD_LETTER_COLUMNS)} FROM dead_letters "
                "WHERE dataflow = ? AND pair = ? AND run_id = ("
                "  SELECT run_id FROM dead_letters WHERE dataflow = ? AND pair = ? "
                "  ORDER BY id DESC LIMIT 1) ORDER BY id",
                (dataflow, pair, dataflow, pair)).fetchall()
        return [DeadLetter(**dict(row)) for row in rows]

    def retire_dead_letters(self, dataflow: str, pair: str, keep_run_id: str) -> None:
        with self._transaction():
            self._db.execute(
                "DELETE FROM dead_letters WHERE dataflow = ? AND pair = ? AND run_id != ?",
                (dataflow, pair, keep_run_id))

    # --- state entries -----------------------------------------------------------------------

    def read_state(self, key: str) -> StateEntry | None:
        with self._lock:
            row = self._db.execute("SELECT value, version FROM state WHERE key = ?",
                                   (key,)).fetchone()
        return StateEntry(key, json.loads(row["value"]), row["version"]) if row else None

    def write_state(self, key: str, value: dict,
                    expected_version: int | None) -> StateEntry:
        text = json.dumps(value, sort_keys=True)
        with self._transaction():
            if expected_version is None:
                written = self._db.execute(
                    "INSERT INTO state (key, value, version, updated_at) VALUES (?, ?, 1, ?) "
                    "ON CONFLICT (key) DO NOTHING", (key, text, _now())).rowcount
            else:
                written = self._db.execute(
                    "UPDATE state SET value = ?, version = version + 1, updated_at = ? "
                    "WHERE key = ? AND version = ?",
                    (text, _now(), key, expected_version)).rowcount
        if written != 1:
            raise StaleStateError(f"state {key!r} is no longer at version {expected_version}")
        return StateEntry(key, json.loads(text), (expected_version or 0) + 1)

    def delete_state(self, key: str, expected_version: int) -> None:
        with self._transaction():
            deleted = self._db.execute("DELETE FROM state WHERE key = ? AND version = ?",
                                       (key, expected_version)).rowcount
        if deleted != 1:
            raise StaleStateError(f"state {key!r} is no longer at version {expected_version}")

    # --- plumbing ----------------------------------------------------------------------------

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        """A write transaction that holds the database's write lock from its start."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _migrate(self) -> None:
        with self._transaction():
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version > len(_MIGRATIONS):
                raise RuntimeError(
                    f"{self._path}: link store schema version {version} is newer than this "
                    f"talksync understands ({len(_MIGRATIONS)}); upgrade talksync")
            for step in range(version, len(_MIGRATIONS)):
                for statement in _MIGRATIONS[step].split(";"):
                    if statement.strip():
                        self._db.execute(statement)
            self._db.execute(f"PRAGMA user_version = {len(_MIGRATIONS)}")
