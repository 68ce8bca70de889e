"""The production link store: Cloud Firestore, shared by every worker of a distributed run.

URL: ``firestore://PROJECT[/DATABASE][?prefix=PREFIX]`` (database ``(default)`` and prefix
``talksync_`` when left out). The prefix starts every top-level collection name, so several
installations can share one database. Layout (docs/decisions/0005-firestore-link-store.md)::

    {prefix}links/{pair}|{link_id}                   a link; snapshots as JSON text
    {prefix}link_ids/{pair}|source|{source_id}       the claim of a source id: its link_id
    {prefix}link_ids/{pair}|target|{target_id}       the claim of a target id: its link_id
    {prefix}watermarks/{dataflow}|{pair}|{system}    a read position
    {prefix}dead_letters/{dataflow}|{pair}           the next letter sequence number
    {prefix}dead_letters/{dataflow}|{pair}/letters/{seq}
    {prefix}state/{key}                              a state entry; its value as JSON text
    {prefix}record_origins/{system}|{entity}|{id}    the origins of the values talksync wrote
                                                     into one record (decisions/0015)

Concurrency is optimistic. Every change is one atomic commit (a batched write, at most
:data:`_MAX_BATCH` writes) whose writes carry preconditions on what was read: a create needs
the document absent, an update or a delete needs its update time unchanged. A commit that
fails a precondition changes nothing; the operation reads again and decides again, so a
second reserver of an id gets the first one's link and a stale writer gets
:class:`~connectors.linkstore.StaleLinkError`. A link and its id claims are always written in
the same commit, which is what keeps a source or target id unique within a pair.

Transient errors (ABORTED, UNAVAILABLE, DEADLINE_EXCEEDED, INTERNAL, RESOURCE_EXHAUSTED) are
retried with exponential backoff and jitter for up to :data:`_RETRY_DEADLINE_S`, so an
operation outlives a short outage. Each write operation carries a random token; an attempt
whose commit went through although its reply was lost recognises its own token on the retry
and reports success instead of a conflict or a duplicate.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

from google.api_core import exceptions as api_exceptions
from google.api_core import retry as api_retry
from google.auth import exceptions as auth_exceptions
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from connectors.firestore_layout import FirestoreLocation, Layout, entity_ids
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
_T = TypeVar("_T")

#: Firestore's limit of writes in one commit
_MAX_BATCH = 500
#: documents per BatchGetDocuments call and per page of a scan
_READ_CHUNK = 500
#: writes one link commit can need: the link, and per side a claim deleted and one created
_MAX_WRITES_PER_LINK = 5
#: deadline of one RPC
_RPC_TIMEOUT_S = 30.0
#: backoff between attempts: first wait, growth factor, longest wait; the whole operation
#: gives up after the deadline (the caller, e.g. a Beam bundle retry, may then try again)
_RETRY_INITIAL_S = 0.05
_RETRY_MULTIPLIER = 2.0
_RETRY_MAX_S = 2.0
_RETRY_DEADLINE_S = 60.0

#: errors that say "try again later": the same request may succeed
_TRANSIENT = (api_exceptions.Aborted, api_exceptions.ServiceUnavailable,
              api_exceptions.DeadlineExceeded, api_exceptions.InternalServerError,
              api_exceptions.ResourceExhausted)


class _Raced(Exception):
    """What an operation read changed before it could use it: read again."""


#: errors of a commit whose precondition failed (another writer changed what was read),
#: and of a read overtaken by another writer
_CONTENTION = (api_exceptions.AlreadyExists, api_exceptions.FailedPrecondition, _Raced)

_SIDES = ("source", "target")
_LINK_FIELDS = ("pair", "link_id", "source_id", "target_id", "state", "source_etag",
                "target_etag", "attempt_id", "version", "updated_at")
_DEAD_LETTER_FIELDS = tuple(field.name for field in dataclasses.fields(DeadLetter))


def _dead_letter(document: dict) -> DeadLetter:
    """A stored letter; one stored before letters counted their attempts counts one."""
    return DeadLetter(**{field: document.get(field) for field in _DEAD_LETTER_FIELDS
                         if field in document})


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="microseconds")


def _instant(value: str) -> datetime.datetime:
    """An ISO 8601 timestamp as an aware datetime (naive ones are UTC), for comparing."""
    parsed = datetime.datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=datetime.UTC)


def _chunks(items: Sequence[_T], size: int) -> Iterator[Sequence[_T]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _link_document(link: Link, token: str) -> dict:
    document = {field: getattr(link, field) for field in _LINK_FIELDS}
    document["snapshot_source"] = encode_values(link.snapshot_source)
    document["snapshot_target"] = encode_values(link.snapshot_target)
    document["write_token"] = token
    return document


def _link(document: Mapping[str, Any]) -> Link:
    return Link(**{field: document[field] for field in _LINK_FIELDS},
                snapshot_source=decode_values(document["snapshot_source"]),
                snapshot_target=decode_values(document["snapshot_target"]))


def _written_by(document: Mapping[str, Any] | None, token: str, version: int) -> bool:
    """Whether ``document`` is the link at ``version`` that the operation ``token`` wrote."""
    return (document is not None and document.get("write_token") == token
            and document["version"] == version)


def _log_retry(exc: Exception) -> None:
    _LOG.debug("link store: retrying after %s: %s", type(exc).__name__, exc)


class _UnitOfWork:
    """Documents as read, the changes decided on them, and the one commit that applies them.

    Decisions see earlier decisions of the same unit (as in one SQL transaction). The commit
    writes only what changed, each write with a precondition on the state read, so it applies
    in full or not at all and never over a change made since the read.
    """

    def __init__(self, client: firestore.Client):
        self._client = client
        self._read: dict[str, Any] = {}           # path -> snapshot as read
        self._now: dict[str, dict | None] = {}  # path -> document as decided (None: absent)
        self._created: dict[str, tuple[Any, dict]] = {}   # path -> (ref, doc), never read

    def add_read(self, snapshots: Iterable[Any]) -> None:
        for snapshot in snapshots:
            path = snapshot.reference.path
            self._read[path] = snapshot
            self._now[path] = snapshot.to_dict() if snapshot.exists else None

    def has(self, ref) -> bool:
        return ref.path in self._now

    def get(self, ref) -> dict | None:
        """The document at ``ref`` as decided so far (None: absent); ``ref`` must be read."""
        return self._now[ref.path]

    def put(self, ref, document: dict) -> None:
        self._decide(ref, document)

    def remove(self, ref) -> None:
        self._decide(ref, None)

    def _decide(self, ref, document: dict | None) -> None:
        if ref.path not in self._read:
            raise KeyError(f"{ref.path} was not read; read it before changing it")
        self._now[ref.path] = document

    def create(self, ref, document: dict) -> None:
        """Create a document that was not read, e.g. one whose id was just allocated."""
        self._created[ref.path] = (ref, document)

    def commit(self) -> None:
        """Apply the changes in one atomic commit (none when nothing changed)."""
        batch = self._client.batch()
        writes = 0
        for path, document in self._now.items():
            snapshot = self._read[path]
            before = snapshot.to_dict() if snapshot.exists else None
            if document == before:
                continue
            if before is None:
                batch.create(snapshot.reference, document)
            else:
                unchanged = self._client.write_option(last_update_time=snapshot.update_time)
                if document is None:
                    batch.delete(snapshot.reference, option=unchanged)
                else:
                    batch.update(snapshot.reference, document, option=unchanged)
            writes += 1
        for ref, document in self._created.values():
            batch.create(ref, document)
            writes += 1
        assert writes <= _MAX_BATCH, f"{writes} writes in one commit; the limit is {_MAX_BATCH}"
        if writes:
            batch.commit(retry=None, timeout=_RPC_TIMEOUT_S)


class FirestoreLinkStore(LinkStore):
    """A :class:`LinkStore` in Cloud Firestore (or its emulator, via FIRESTORE_EMULATOR_HOST)."""

    distributed = True

    def __init__(self, location: FirestoreLocation, *,
                 retry_deadline_s: float = _RETRY_DEADLINE_S):
        """Connect to ``location``; operations retry transient errors for ``retry_deadline_s``."""
        self._location = location
        try:
            self._client = firestore.Client(project=location.project,
                                            database=location.database)
        except auth_exceptions.DefaultCredentialsError as exc:
            raise ValueError(
                f"link_store: {location.url}: no Google credentials found; run `gcloud auth "
                "application-default login`, or set FIRESTORE_EMULATOR_HOST for the "
                "emulator") from exc
        self._docs = Layout(self._client, location.prefix)
        backoff = dict(initial=_RETRY_INITIAL_S, maximum=_RETRY_MAX_S,
                       multiplier=_RETRY_MULTIPLIER, timeout=retry_deadline_s,
                       on_error=_log_retry)
        self._retry_transient = api_retry.Retry(
            predicate=api_retry.if_exception_type(*_TRANSIENT), **backoff)
        self._retry_contended = api_retry.Retry(
            predicate=api_retry.if_exception_type(*_TRANSIENT, *_CONTENTION), **backoff)

    @classmethod
    def from_url(cls, url: str) -> FirestoreLinkStore:
        return cls(FirestoreLocation.parse(url))

    def __repr__(self) -> str:
        return f"FirestoreLinkStore({self._location.url!r})"

    # --- links -------------------------------------------------------------------------------

    def lookup_by_source(self, pair: str, ids: Iterable[str]) -> dict[str, Link]:
        return self._lookup(pair, "source", ids)

    def lookup_by_target(self, pair: str, ids: Iterable[str]) -> dict[str, Link]:
        return self._lookup(pair, "target", ids)

    def lookup_refs_by_source(self, pair: str, ids: Iterable[str]) -> dict[str, LinkRef]:
        return self._lookup_refs(pair, "source", ids)

    def lookup_refs_by_target(self, pair: str, ids: Iterable[str]) -> dict[str, LinkRef]:
        return self._lookup_refs(pair, "target", ids)

    def _lookup_refs(self, pair: str, side: str, ids: Iterable[str]) -> dict[str, LinkRef]:
        """The same two reads as :meth:`_lookup`, the links' without their snapshots (a field
        mask: neither sent nor decoded)."""
        fields = ("link_id", "state", f"{side}_id")
        return {entity_id: LinkRef(document["link_id"], document["state"])
                for entity_id, document in self._lookup_documents(pair, side, ids,
                                                                  fields).items()}

    def lookup_by_id(self, pair: str, link_ids: Iterable[str]) -> dict[str, Link]:
        """One batched read of the link documents."""
        return {link.link_id: link for link in (
            _link(snapshot.to_dict()) for snapshot in self._get_all(
                self._docs.link(pair, link_id) for link_id in sorted(set(link_ids)))
            if snapshot.exists)}

    def _lookup(self, pair: str, side: str, ids: Iterable[str]) -> dict[str, Link]:
        return {entity_id: _link(document)
                for entity_id, document in self._lookup_documents(pair, side, ids).items()}

    def _lookup_documents(self, pair: str, side: str, ids: Iterable[str],
                          fields: Sequence[str] | None = None) -> dict[str, dict]:
        """Two batched reads: the claims of ``ids``, then (``fields`` of) the links they name.

        A link is returned under an id only if the link itself still holds that id, so a
        change between the two reads never yields a wrong pairing.
        """
        wanted = set(ids)
        claims = self._get_all(self._docs.claim(pair, side, i) for i in sorted(wanted))
        link_ids = sorted({claim.get("link_id") for claim in claims if claim.exists})
        found = {}
        for snapshot in self._get_all((self._docs.link(pair, link_id) for link_id in link_ids),
                                      fields):
            if snapshot.exists:
                document = snapshot.to_dict()
                entity_id = document.get(f"{side}_id")
                if entity_id in wanted:
                    found[entity_id] = document
        return found

    def pending(self, pair: str) -> list[Link]:
        query = (self._docs.links.where(filter=FieldFilter("pair", "==", pair))
                 .where(filter=FieldFilter("state", "==", PENDING)))
        links = [_link(snapshot.to_dict()) for snapshot in self._query(query)]
        return sorted(links, key=lambda link: link.link_id)

    def reserve(self, link: Link) -> Link:
        """Create ``link`` as pending (version 1) with its id claims unless its id exists.

        Returns the stored link: the new one, the one with the same link id, or the one that
        already holds the source id (else the target id). The creates go first, unread (one
        round trip when the id is free): of two reservers racing for one id, the second
        one's commit fails its precondition and it reads and returns the first one's link.
        """
        token = uuid.uuid4().hex
        return self._retry_contended(self._reserve)(link, token)

    def _reserve(self, link: Link, token: str) -> Link:
        stored = link.replace(state=PENDING, version=1, updated_at=_now())
        work = _UnitOfWork(self._client)
        work.create(self._docs.link(link.pair, link.link_id), _link_document(stored, token))
        for claim in self._docs.claims(link):
            work.create(claim, {"pair": link.pair, "link_id": link.link_id})
        try:
            work.commit()
            return stored
        except api_exceptions.AlreadyExists:
            return self._holder(link)

    def _holder(self, link: Link) -> Link:
        """The stored link with ``link``'s id, else the one holding its source (target) id."""
        ref = self._docs.link(link.pair, link.link_id)
        claims = self._docs.claims(link)
        snapshots = self._get_all([ref, *claims])
        if snapshots[0].exists:
            return _link(snapshots[0].to_dict())
        for claim in snapshots[1:]:
            if claim.exists:
                holder = self._get_all([self._docs.link(link.pair, claim.get("link_id"))])[0]
                if holder.exists:
                    return _link(holder.to_dict())
        raise _Raced(f"the link holding an id of {link.link_id} changed its ids meanwhile")

    def reserve_many(self, links: Sequence[Link]) -> list[Link]:
        """:meth:`reserve` of each link, one commit per group of links that fits a batch.

        As in :meth:`reserve`, a group's creates go first, unread: one round trip when every
        id is free. When one of them exists the commit changes nothing, and the group is
        decided on what it reads (:meth:`_reserve_read`), in one more commit.
        """
        token = uuid.uuid4().hex
        stored: list[Link] = []
        for group in _chunks(list(links), _MAX_BATCH // 3):   # a link and two claims each
            stored += self._retry_contended(self._reserve_group)(group, token)
        return stored

    def _reserve_group(self, links: Sequence[Link], token: str) -> list[Link]:
        now = _now()
        wanted = [link.replace(state=PENDING, version=1, updated_at=now) for link in links]
        work = _UnitOfWork(self._client)
        paths = set()
        for link in wanted:
            refs = [self._docs.link(link.pair, link.link_id), *self._docs.claims(link)]
            paths.update(ref.path for ref in refs)
            work.create(refs[0], _link_document(link, token))
            for claim in refs[1:]:
                work.create(claim, {"pair": link.pair, "link_id": link.link_id})
        if len(paths) == sum(1 + len(self._docs.claims(link)) for link in wanted):
            try:
                work.commit()
                return wanted
            except api_exceptions.AlreadyExists:
                pass
        return self._reserve_read(wanted, token)

    def _reserve_read(self, wanted: Sequence[Link], token: str) -> list[Link]:
        """Reservations decided on what is stored: per link its own document, else the link
        holding its source (else target) id, else the new link with its claims."""
        work = _UnitOfWork(self._client)
        refs = []
        for link in wanted:
            refs += [self._docs.link(link.pair, link.link_id), *self._docs.claims(link)]
        work.add_read(self._get_all(refs))
        holders = [self._docs.link(link.pair, work.get(claim)["link_id"])
                   for link in wanted for claim in self._docs.claims(link) if work.get(claim)]
        work.add_read(self._get_all(ref for ref in holders if not work.has(ref)))
        stored = []
        for link in wanted:
            ref = self._docs.link(link.pair, link.link_id)
            found = work.get(ref) or self._claim_holder(work, link)
            if found is None:
                work.put(ref, _link_document(link, token))
                for claim in self._docs.claims(link):
                    work.put(claim, {"pair": link.pair, "link_id": link.link_id})
            stored.append(_link(found) if found is not None else link)
        work.commit()
        return stored

    def _claim_holder(self, work: _UnitOfWork, link: Link) -> dict | None:
        """In ``work``: the document of the link holding ``link``'s source (else target) id."""
        for claim in self._docs.claims(link):
            held = work.get(claim)
            if held:
                holder = work.get(self._docs.link(link.pair, held["link_id"]))
                if holder is None:
                    raise _Raced(f"the link holding an id of {link.link_id} changed meanwhile")
                return holder
        return None

    def commit(self, links: Sequence[Link]) -> list[Link]:
        """Store each link as linked if its version still matches (0: if it does not exist).

        Links are committed in groups of at most :data:`_MAX_BATCH` writes, each group one
        atomic commit with preconditions. A link whose stored version moved on, or whose
        source or target id another link holds, is left out; when the others are stored,
        :class:`StaleLinkError` names the stale ones and carries the committed ones.
        """
        token = uuid.uuid4().hex
        committed: list[Link] = []
        stale: list[str] = []
        for group in self._commit_groups(links):
            done, lost = self._retry_contended(self._commit_group)(group, token)
            committed += done
            stale += lost
        if stale:
            raise StaleLinkError(
                f"{len(stale)} link(s) changed since they were read (another writer won): "
                f"{', '.join(stale)}", stale, committed)
        return committed

    def _commit_groups(self, links: Sequence[Link]) -> Iterator[list[Link]]:
        """Consecutive groups of links whose commits fit in one batch."""
        group: list[Link] = []
        writes = 0
        for link in links:
            needed = (1 + len(self._docs.claims(link)) if link.version == 0
                      else _MAX_WRITES_PER_LINK)
            if group and writes + needed > _MAX_BATCH:
                yield group
                group, writes = [], 0
            group.append(link)
            writes += needed
        if group:
            yield group

    def _commit_group(self, links: Sequence[Link], token: str) -> tuple[list[Link], list[str]]:
        work = _UnitOfWork(self._client)
        refs = []
        for link in links:
            refs += [self._docs.link(link.pair, link.link_id), *self._docs.claims(link)]
        work.add_read(self._get_all(refs))
        # the claims the stored links hold now: released when a commit changes an id
        held = []
        for link in links:
            stored = work.get(self._docs.link(link.pair, link.link_id))
            for side in _SIDES:
                if stored and stored[f"{side}_id"] is not None:
                    claim = self._docs.claim(link.pair, side, stored[f"{side}_id"])
                    if not work.has(claim):
                        held.append(claim)
        work.add_read(self._get_all(held))
        committed, stale = [], []
        for link in links:
            stored = self._commit_one(work, link, token)
            if stored is None:
                stale.append(link.link_id)
            else:
                committed.append(stored)
        work.commit()
        return committed, stale

    def _commit_one(self, work: _UnitOfWork, link: Link, token: str) -> Link | None:
        """Decide the commit of ``link`` in ``work``; the stored link, or None if stale."""
        ref = self._docs.link(link.pair, link.link_id)
        stored = work.get(ref)
        if _written_by(stored, token, link.version + 1):
            return _link(stored)        # an earlier attempt of this call went through
        if link.version == 0 and stored is not None:
            return None                 # the link exists already
        if link.version and (stored is None or stored["version"] != link.version):
            return None                 # another writer moved it on
        new_ids = entity_ids(link)
        for side, entity_id in new_ids.items():
            if entity_id is not None:
                holder = work.get(self._docs.claim(link.pair, side, entity_id))
                if holder and holder["link_id"] != link.link_id:
                    return None         # another link holds the id
        new = link.replace(state=committed_state(link.state), version=link.version + 1,
                           updated_at=_now())
        if new.state == UNLINKED:       # unlinked: the link and its claims are removed
            new_ids = dict.fromkeys(_SIDES)
            work.remove(ref)
        else:
            work.put(ref, _link_document(new, token))
        for side, entity_id in new_ids.items():
            old_id = stored[f"{side}_id"] if stored else None
            if old_id == entity_id:
                continue
            if old_id is not None:
                old = self._docs.claim(link.pair, side, old_id)
                if (work.get(old) or {}).get("link_id") == link.link_id:
                    work.remove(old)
            if entity_id is not None:
                work.put(self._docs.claim(link.pair, side, entity_id),
                         {"pair": link.pair, "link_id": link.link_id})
        return new

    # --- origins of written values (edit-time provenance) -------------------------------------

    def lookup_origins(self, system: str, entity: str,
                       ids: Iterable[str]) -> dict[str, RecordOrigins]:
        """One batched read (:data:`_READ_CHUNK` documents per call) of the records' entries."""
        found = {}
        wanted = sorted(set(ids))
        for record_id, snapshot in zip(wanted, self._get_all(
                self._docs.origins(system, entity, i) for i in wanted), strict=True):
            if snapshot.exists:
                found[record_id] = RecordOrigins.from_json(
                    system, entity, record_id, json.loads(snapshot.get("origins")))
        return found

    def save_origins(self, writes: Sequence[OriginWrite]) -> None:
        """Per group of :data:`_MAX_BATCH` records: one batched read and one commit that
        holds only if none of the entries read changed meanwhile (else read and merge again)."""
        last = {write.key: write for write in writes}     # a record written twice: the last
        for group in _chunks(list(last.values()), _MAX_BATCH):
            self._retry_contended(self._save_origins)(group)

    def _save_origins(self, writes: Sequence[OriginWrite]) -> None:
        work = _UnitOfWork(self._client)
        refs = [self._docs.origins(*write.key) for write in writes]
        work.add_read(self._get_all(refs))
        for ref, write in zip(refs, writes, strict=True):
            stored = work.get(ref)
            previous = (RecordOrigins.from_json(*write.key, json.loads(stored["origins"]))
                        if stored else None)
            merged = merged_origins(previous, write)
            work.put(ref, {"system": write.written.system, "entity": write.written.entity,
                           "record_id": write.written.id, "updated_at": _now(),
                           "origins": json.dumps(merged.to_json(), sort_keys=True)})
        work.commit()

    # --- watermarks --------------------------------------------------------------------------

    def get_watermark(self, dataflow: str, pair: str, system: str) -> str | None:
        snapshot = self._get_all([self._docs.watermark(dataflow, pair, system)])[0]
        return snapshot.get("value") if snapshot.exists else None

    def advance_watermark(self, dataflow: str, pair: str, system: str, value: str) -> str:
        new = _instant(value)
        return self._retry_contended(self._advance_watermark)(dataflow, pair, system, value, new)

    def _advance_watermark(self, dataflow: str, pair: str, system: str, value: str,
                           new: datetime.datetime) -> str:
        ref = self._docs.watermark(dataflow, pair, system)
        work = _UnitOfWork(self._client)
        work.add_read(self._get_all([ref]))
        stored = work.get(ref)
        if stored and _instant(stored["value"]) >= new:
            return stored["value"]
        work.put(ref, {"dataflow": dataflow, "pair": pair, "system": system, "value": value})
        work.commit()
        return value

    # --- dead letters ------------------------------------------------------------------------

    def add_dead_letters(self, letters: Sequence[DeadLetter]) -> None:
        """Store ``letters`` in order; a letter without ``created_at`` gets the current time.

        Per pair, each group of letters takes the next sequence numbers from the pair's head
        document in the same commit that creates the letters.
        """
        now, token = _now(), uuid.uuid4().hex
        by_pair: dict[tuple[str, str], list[dict]] = {}
        for letter in letters:
            document = letter.to_dict()
            document["created_at"] = letter.created_at or now
            by_pair.setdefault((letter.dataflow, letter.pair), []).append(document)
        for (dataflow, pair), documents in by_pair.items():
            for number, group in enumerate(_chunks(documents, _MAX_BATCH - 1)):
                self._retry_contended(self._add_letters)(dataflow, pair, group,
                                                     f"{token}-{number}")

    def _add_letters(self, dataflow: str, pair: str, documents: Sequence[dict],
                     token: str) -> None:
        head = self._docs.letters_head(dataflow, pair)
        work = _UnitOfWork(self._client)
        work.add_read(self._get_all([head]))
        stored = work.get(head) or {}
        if stored.get("write_token") == token:
            return                      # an earlier attempt of this call went through
        first = stored.get("next_seq", 0)
        work.put(head, {"dataflow": dataflow, "pair": pair,
                        "next_seq": first + len(documents), "write_token": token})
        letters = self._docs.letters(dataflow, pair)
        for seq, document in enumerate(documents, start=first):
            work.create(letters.document(f"{seq:012d}"), {**document, "seq": seq})
        work.commit()

    def open_dead_letters(self, dataflow: str, pair: str) -> list[DeadLetter]:
        """The letters of the run that stored letters for ``pair`` last, in insertion order."""
        letters = self._docs.letters(dataflow, pair)
        latest = self._query(letters.order_by("seq", direction=firestore.Query.DESCENDING)
                             .limit(1))
        if not latest:
            return []
        run = self._query(letters.where(filter=FieldFilter("run_id", "==",
                                                           latest[0].get("run_id"))))
        return [_dead_letter(snapshot.to_dict())
                for snapshot in sorted(run, key=lambda snapshot: snapshot.get("seq"))]

    def retire_dead_letters(self, dataflow: str, pair: str, keep_run_id: str) -> None:
        query = (self._docs.letters(dataflow, pair)
                 .where(filter=FieldFilter("run_id", "!=", keep_run_id)).select([]))
        refs = [snapshot.reference for snapshot in self._query(query)]
        for group in _chunks(refs, _MAX_BATCH):
            self._retry_transient(self._delete)(group)

    def _delete(self, refs: Sequence[Any]) -> None:
        batch = self._client.batch()
        for ref in refs:
            batch.delete(ref)
        batch.commit(retry=None, timeout=_RPC_TIMEOUT_S)

    # --- state entries -----------------------------------------------------------------------

    def read_state(self, key: str) -> StateEntry | None:
        snapshot = self._get_all([self._docs.state(key)])[0]
        if not snapshot.exists:
            return None
        return StateEntry(key, json.loads(snapshot.get("value")), snapshot.get("version"))

    def write_state(self, key: str, value: dict,
                    expected_version: int | None) -> StateEntry:
        """Compare-and-set in one conditional commit; a commit raced by another writer is
        decided again on a fresh read (and then fails the version check)."""
        text, token = json.dumps(value, sort_keys=True), uuid.uuid4().hex
        return self._retry_contended(self._write_state)(key, text, expected_version, token)

    def _write_state(self, key: str, text: str, expected_version: int | None,
                     token: str) -> StateEntry:
        ref = self._docs.state(key)
        work = _UnitOfWork(self._client)
        work.add_read(self._get_all([ref]))
        stored = work.get(ref)
        if stored and stored.get("write_token") == token:
            return StateEntry(key, json.loads(stored["value"]), stored["version"])  # reply lost
        if (stored["version"] if stored else None) != expected_version:
            raise StaleStateError(f"state {key!r} is no longer at version {expected_version}")
        version = (expected_version or 0) + 1
        work.put(ref, {"key": key, "value": text, "version": version, "updated_at": _now(),
                       "write_token": token})
        work.commit()
        return StateEntry(key, json.loads(text), version)

    def delete_state(self, key: str, expected_version: int) -> None:
        self._retry_contended(self._delete_state)(key, expected_version)

    def _delete_state(self, key: str, expected_version: int) -> None:
        ref = self._docs.state(key)
        work = _UnitOfWork(self._client)
        work.add_read(self._get_all([ref]))
        stored = work.get(ref)
        if not stored or stored["version"] != expected_version:
            raise StaleStateError(f"state {key!r} is no longer at version {expected_version}")
        work.remove(ref)
        work.commit()

    # --- scans (moving a store: pipelines.links_io) ------------------------------------------

    def scan_links(self) -> Iterator[Link]:
        """Every link of every pair, in document order, page by page."""
        return (_link(snapshot.to_dict()) for snapshot in self._scan(self._docs.links))

    def scan_watermarks(self) -> Iterator[tuple[str, str, str, str]]:
        """Every watermark as (dataflow, pair, system, value)."""
        for snapshot in self._scan(self._docs.watermarks):
            yield (snapshot.get("dataflow"), snapshot.get("pair"), snapshot.get("system"),
                   snapshot.get("value"))

    def dead_letter_pairs(self) -> Iterator[tuple[str, str]]:
        """Every (dataflow, pair) that ever stored dead letters."""
        for snapshot in self._scan(self._docs.dead_letters):
            yield snapshot.get("dataflow"), snapshot.get("pair")

    # --- plumbing ----------------------------------------------------------------------------

    def close(self) -> None:
        self._client.close()

    def _get_all(self, refs: Iterable[Any],
                 fields: Sequence[str] | None = None) -> list[Any]:
        """Snapshots of ``refs`` (existing or not) in the order given, in batched reads; only
        the ``fields`` of each document when given."""
        unique = list({ref.path: ref for ref in refs}.values())
        by_path = {}
        for group in _chunks(unique, _READ_CHUNK):
            for snapshot in self._retry_transient(self._get_group)(group, fields):
                by_path[snapshot.reference.path] = snapshot
        return [by_path[ref.path] for ref in unique]

    def _get_group(self, refs: Sequence[Any], fields: Sequence[str] | None = None) -> list[Any]:
        return list(self._client.get_all(refs, field_paths=fields, retry=None,
                                         timeout=_RPC_TIMEOUT_S))

    def _query(self, query) -> list[Any]:
        return self._retry_transient(self._run_query)(query)

    @staticmethod
    def _run_query(query) -> list[Any]:
        return list(query.stream(retry=None, timeout=_RPC_TIMEOUT_S))

    def _scan(self, collection) -> Iterator[Any]:
        """Every document of ``collection``, :data:`_READ_CHUNK` per read."""
        query = collection.order_by("__name__").limit(_READ_CHUNK)
        while True:
            page = self._query(query)
            yield from page
            if len(page) < _READ_CHUNK:
                return
            query = collection.order_by("__name__").limit(_READ_CHUNK).start_after(page[-1])
