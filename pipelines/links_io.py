"""Moving what talksync remembers from one link store to another (`talksync links`).

A user who starts with the local SQLite store and moves to Firestore exports the links, the
watermarks and the open dead letters to a JSON Lines file and imports it into the new store::

    {"format": "talksync-links", "version": 1}
    {"kind": "link", "pair": "...", "link_id": "s:C1", "source_id": "C1", ...,
     "snapshot_source": {...}, "snapshot_target": {...}}
    {"kind": "watermark", "dataflow": "...", "pair": "...", "system": "...", "value": "..."}
    {"kind": "dead_letter", "run_id": "...", ...}

Snapshots use the store's tagged JSON form (:func:`core.model.encode_value`), so
decimals, dates and timestamps come back exactly. Versions are the store's own counters and
are not carried over: an imported link starts at version 1.

Import is idempotent and never loses information the target store already has:

- a link whose ids no link holds yet is added (a reservation as a reservation);
- a link the store already holds (same link id, same ids) is left alone, unless the store
  holds it as a reservation and the file as linked: then the file's link is committed;
- a link whose source or target id another link holds is a conflict: not imported, reported;
- a watermark only ever moves forward;
- dead letters are added when the store has no open letters for their pair, or when its open
  letters are of the same run (those not there yet); letters of another run are newer news.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import pathlib
import sqlite3
from collections.abc import Iterator, Sequence

from connectors.linkstore import LinkStore, StaleLinkError
from connectors.stores import open_link_store
from core.model import (
    LINK_STATES,
    LINKED,
    PENDING,
    DeadLetter,
    Link,
    decode_value,
    decode_values,
    encode_value,
)

FORMAT = "talksync-links"
VERSION = 1
#: links per round of lookups and commits during an import
_IMPORT_BATCH = 500
#: the SQLite schema versions this module reads (connectors.sqlite_store._MIGRATIONS); version 2
#: added state entries (locks, connector tokens), version 3 the origins of written values
#: (decisions/0015): an export leaves both out on purpose (an origin is only good for the
#: record version it names; without it a record's own time counts, as before); version 4
#: counts the attempts of dead letters
_SQLITE_SCHEMAS = (1, 2, 3, 4)
_SQLITE_PREFIX = "sqlite:///"
#: what an import does with a link of the file
_ADD, _UPGRADE, _PRESENT, _CONFLICT = "add", "upgrade", "present", "conflict"

_LINK_FIELDS = ("pair", "link_id", "source_id", "target_id", "state", "source_etag",
                "target_etag", "attempt_id")
_WATERMARK_FIELDS = ("dataflow", "pair", "system", "value")
_DEAD_LETTER_FIELDS = tuple(field.name for field in dataclasses.fields(DeadLetter))
_REQUIRED = {
    "link": {"pair", "link_id", "state", "snapshot_source", "snapshot_target"},
    "watermark": set(_WATERMARK_FIELDS),
    "dead_letter": {field.name for field in dataclasses.fields(DeadLetter)
                    if field.default is dataclasses.MISSING},
}


class LinksFileError(ValueError):
    """A links file that cannot be read; the message names the file and the line."""


@dataclasses.dataclass
class ExportCounts:
    links: int = 0
    watermarks: int = 0
    dead_letters: int = 0

    def summary(self) -> str:
        return (f"{self.links} links, {self.watermarks} watermarks, "
                f"{self.dead_letters} open dead letters")


@dataclasses.dataclass
class Conflict:
    """A link of the file that was not imported, and why."""

    pair: str
    link_id: str
    reason: str


@dataclasses.dataclass
class ImportCounts:
    links_added: int = 0
    links_present: int = 0
    conflicts: list[Conflict] = dataclasses.field(default_factory=list)
    watermarks_moved: int = 0
    watermarks_kept: int = 0
    dead_letters_added: int = 0
    dead_letters_present: int = 0

    def summary(self) -> str:
        return (f"links: {self.links_added} added, {self.links_present} already there, "
                f"{len(self.conflicts)} in conflict; watermarks: {self.watermarks_moved} "
                f"moved forward, {self.watermarks_kept} already as far; dead letters: "
                f"{self.dead_letters_added} added, {self.dead_letters_present} already there "
                "or superseded")


# --- records ----------------------------------------------------------------------------------

def _link_record(link: Link) -> dict:
    record = {"kind": "link", **{field: getattr(link, field) for field in _LINK_FIELDS}}
    record["snapshot_source"] = {k: encode_value(v) for k, v in link.snapshot_source.items()}
    record["snapshot_target"] = {k: encode_value(v) for k, v in link.snapshot_target.items()}
    return record


def _link_from(record: dict) -> Link:
    return Link(**{field: record.get(field) for field in _LINK_FIELDS},
                snapshot_source={k: decode_value(v)
                                 for k, v in record["snapshot_source"].items()},
                snapshot_target={k: decode_value(v)
                                 for k, v in record["snapshot_target"].items()})


def _records(path: pathlib.Path) -> Iterator[tuple[str, dict]]:
    """The (kind, record) pairs of a links file, checked line by line."""
    try:
        lines = path.open(encoding="utf-8")
    except OSError as exc:
        raise LinksFileError(f"{path}: cannot read the links file ({exc.strerror})") from None
    header = False
    with lines:
        for number, line in _numbered(lines, path):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise LinksFileError(f"{path}:{number}: not JSON ({exc.msg})") from None
            if not header:
                if record != {"format": FORMAT, "version": VERSION}:
                    raise LinksFileError(
                        f"{path}:{number}: not a talksync links file (expected the header "
                        f'{{"format": "{FORMAT}", "version": {VERSION}}})')
                header = True
                continue
            kind = record.get("kind") if isinstance(record, dict) else None
            if kind not in _REQUIRED:
                raise LinksFileError(f"{path}:{number}: unknown record kind {kind!r}; "
                                     f"expected one of {', '.join(sorted(_REQUIRED))}")
            missing = sorted(_REQUIRED[kind] - set(record))
            if missing:
                raise LinksFileError(f"{path}:{number}: {kind} record without "
                                     f"{', '.join(missing)}")
            problem = _problem(kind, record)
            if problem:
                raise LinksFileError(f"{path}:{number}: {problem}")
            yield kind, record
    if not header:
        raise LinksFileError(f"{path}: empty; expected a talksync links file")


def _numbered(lines: Iterator[str], path: pathlib.Path) -> Iterator[tuple[int, str]]:
    """The lines with their numbers; text that is not UTF-8 is a :class:`LinksFileError`."""
    try:
        yield from enumerate(lines, start=1)
    except UnicodeDecodeError:
        raise LinksFileError(f"{path}: not UTF-8 text") from None


def _problem(kind: str, record: dict) -> str | None:
    """What is wrong with the values of a record that has every field, if anything."""
    if kind == "link":
        if record["state"] not in LINK_STATES:
            return f"link state {record['state']!r} is not one of {', '.join(LINK_STATES)}"
        try:
            _link_from(record)
        except (TypeError, ValueError, AttributeError) as exc:
            return f"bad snapshot ({exc})"
    if kind == "watermark":
        try:
            datetime.datetime.fromisoformat(record["value"])
        except (TypeError, ValueError):
            return f"watermark {record['value']!r} is not an ISO 8601 timestamp"
    return None


# --- export -----------------------------------------------------------------------------------

class _SqliteScan:
    """Every link, watermark and dead-letter pair in a SQLite store file, read-only.

    The :class:`~connectors.linkstore.LinkStore` interface has no scans, so this reads the
    file's tables directly (schema versions :data:`_SQLITE_SCHEMAS`).
    """

    def __init__(self, path: str):
        if path == ":memory:" or not pathlib.Path(path).is_file():
            raise ValueError(f"links export: no SQLite link store at {path}")
        self._db = sqlite3.connect(pathlib.Path(path).resolve().as_uri() + "?mode=ro",
                                   uri=True)
        self._db.row_factory = sqlite3.Row
        schema = self._db.execute("PRAGMA user_version").fetchone()[0]
        if schema not in _SQLITE_SCHEMAS:
            self._db.close()
            raise ValueError(f"links export: {path} has link store schema version {schema}; "
                             f"this talksync exports versions "
                             f"{', '.join(map(str, _SQLITE_SCHEMAS))}")

    def scan_links(self) -> Iterator[Link]:
        for row in self._db.execute("SELECT * FROM links ORDER BY pair, link_id"):
            yield Link(**{field: row[field] for field in _LINK_FIELDS},
                       snapshot_source=decode_values(row["snapshot_source"]),
                       snapshot_target=decode_values(row["snapshot_target"]))

    def scan_watermarks(self) -> Iterator[tuple[str, str, str, str]]:
        for row in self._db.execute(
                "SELECT dataflow, pair, system, value FROM watermarks "
                "ORDER BY dataflow, pair, system"):
            yield tuple(row)

    def dead_letter_pairs(self) -> Iterator[tuple[str, str]]:
        for row in self._db.execute(
                "SELECT DISTINCT dataflow, pair FROM dead_letters ORDER BY dataflow, pair"):
            yield tuple(row)

    def close(self) -> None:
        self._db.close()


def export_links(url: str, out: pathlib.Path) -> ExportCounts:
    """Write every link, watermark and open dead letter of the store at ``url`` to ``out``.

    The file appears complete or not at all: it is written next to ``out`` and renamed.
    """
    counts = ExportCounts()
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    scan = _SqliteScan(url[len(_SQLITE_PREFIX):]) if url.startswith(_SQLITE_PREFIX) else None
    try:
        with open_link_store(url) as store, partial.open("w", encoding="utf-8") as file:
            source = scan or store

            def write(record: dict) -> None:
                file.write(json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n")

            write({"format": FORMAT, "version": VERSION})
            for link in source.scan_links():
                write(_link_record(link))
                counts.links += 1
            for values in source.scan_watermarks():
                write({"kind": "watermark", **dict(zip(_WATERMARK_FIELDS, values, strict=True))})
                counts.watermarks += 1
            for dataflow, pair in source.dead_letter_pairs():
                for letter in store.open_dead_letters(dataflow, pair):
                    write({"kind": "dead_letter", **letter.to_dict()})
                    counts.dead_letters += 1
        os.replace(partial, out)
    finally:
        if scan:
            scan.close()
        partial.unlink(missing_ok=True)
    return counts


def scan_links(url: str) -> list[Link]:
    """Every link of the store at ``url`` (``talksync history`` finds a record by a match key
    in the links' snapshots); none for a SQLite store whose file does not exist yet (read
    without creating it)."""
    if url.startswith(_SQLITE_PREFIX):
        path = url[len(_SQLITE_PREFIX):]
        if path == ":memory:" or not pathlib.Path(path).is_file():
            return []
        scan = _SqliteScan(path)
        try:
            return list(scan.scan_links())
        finally:
            scan.close()
    with open_link_store(url) as store:
        return list(store.scan_links())


# --- import -----------------------------------------------------------------------------------

def import_links(url: str, path: pathlib.Path) -> ImportCounts:
    """Import the links file ``path`` into the store at ``url`` (see the module docstring).

    The whole file is checked before anything is written.
    """
    for _ in _records(path):
        pass
    counts = ImportCounts()
    with open_link_store(url) as store:
        batch: list[Link] = []
        letters: dict[tuple[str, str], list[DeadLetter]] = {}
        for kind, record in _records(path):
            if kind == "link":
                batch.append(_link_from(record))
                if len(batch) >= _IMPORT_BATCH:
                    _import_link_batch(store, batch, counts)
                    batch = []
            elif kind == "watermark":
                _import_watermark(store, record, counts)
            else:
                letter = DeadLetter(**{f: record[f] for f in _DEAD_LETTER_FIELDS if f in record})
                letters.setdefault((letter.dataflow, letter.pair), []).append(letter)
        _import_link_batch(store, batch, counts)
        for (dataflow, pair), group in letters.items():
            _import_dead_letters(store, dataflow, pair, group, counts)
    return counts


def _import_link_batch(store: LinkStore, links: Sequence[Link], counts: ImportCounts) -> None:
    by_pair: dict[str, list[Link]] = {}
    for link in links:
        by_pair.setdefault(link.pair, []).append(link)
    for pair, group in by_pair.items():
        by_source = store.lookup_by_source(
            pair, [link.source_id for link in group if link.source_id is not None])
        by_target = store.lookup_by_target(
            pair, [link.target_id for link in group if link.target_id is not None])
        to_commit: list[Link] = []
        for link in group:
            holders = {held.link_id: held for held in (
                by_source.get(link.source_id) if link.source_id is not None else None,
                by_target.get(link.target_id) if link.target_id is not None else None)
                if held is not None}
            action, reason = _verdict(link, holders)
            if action == _ADD and link.state == PENDING:
                _reserve(store, link, counts)
            elif action in (_ADD, _UPGRADE):
                held = holders.get(link.link_id)
                to_commit.append(link.replace(version=held.version if held else 0))
            elif action == _PRESENT:
                counts.links_present += 1
            else:
                counts.conflicts.append(Conflict(pair, link.link_id, reason))
        _commit(store, to_commit, counts)


def _verdict(link: Link, holders: dict[str, Link]) -> tuple[str, str]:
    """What to do with ``link`` given the stored links that hold its ids, and why."""
    if not holders:
        return _ADD, "no link holds its ids"
    others = sorted(set(holders) - {link.link_id})
    if others:
        held = holders[others[0]]
        side = "source" if held.source_id == link.source_id else "target"
        return _CONFLICT, (f"another link ({held.link_id}) holds {side} id "
                           f"{getattr(link, side + '_id')}")
    held = holders[link.link_id]
    if held.state == PENDING and link.state == LINKED:
        return _UPGRADE, "the store holds it as a reservation"
    if (held.source_id, held.target_id) == (link.source_id, link.target_id):
        return _PRESENT, "the store holds it"
    return _CONFLICT, (f"the store holds {link.link_id} with other ids (source "
                       f"{held.source_id}, target {held.target_id})")


def _reserve(store: LinkStore, link: Link, counts: ImportCounts) -> None:
    stored = store.reserve(link)
    if stored.link_id == link.link_id and stored.attempt_id == link.attempt_id:
        counts.links_added += 1
    else:   # another writer reserved one of its ids since the lookup
        counts.conflicts.append(Conflict(link.pair, link.link_id,
                                         f"another link ({stored.link_id}) holds its ids"))


def _commit(store: LinkStore, links: Sequence[Link], counts: ImportCounts) -> None:
    if not links:
        return
    try:
        counts.links_added += len(store.commit(links))
    except StaleLinkError as exc:       # another writer got there between lookup and commit
        counts.links_added += len(exc.committed)
        pairs = {link.link_id: link.pair for link in links}
        for link_id in exc.link_ids:
            counts.conflicts.append(Conflict(pairs[link_id], link_id,
                                             "the store changed it or its ids meanwhile"))


def _import_watermark(store: LinkStore, record: dict, counts: ImportCounts) -> None:
    dataflow, pair, system, value = (record[field] for field in _WATERMARK_FIELDS)
    before = store.get_watermark(dataflow, pair, system)
    if store.advance_watermark(dataflow, pair, system, value) != before:
        counts.watermarks_moved += 1
    else:
        counts.watermarks_kept += 1


def _import_dead_letters(store: LinkStore, dataflow: str, pair: str,
                         letters: Sequence[DeadLetter], counts: ImportCounts) -> None:
    open_letters = store.open_dead_letters(dataflow, pair)
    runs = {letter.run_id for letter in letters}
    if open_letters and {letter.run_id for letter in open_letters} != runs:
        counts.dead_letters_present += len(letters)      # the store has newer ones
        return
    new = [letter for letter in letters if letter not in open_letters]
    if new:
        store.add_dead_letters(new)
    counts.dead_letters_added += len(new)
    counts.dead_letters_present += len(letters) - len(new)

