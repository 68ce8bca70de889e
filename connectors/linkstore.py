"""The link store: what talksync remembers between runs.

A :class:`Link` ties one source entity to one target entity of a pair and keeps, per side, the
*snapshot*: the canonical values of that side after the last successful sync. The planner's
three-way merge compares each side with its own snapshot, so a system that normalises a value
(lower-cases an e-mail, rounds a price) never looks like an edit and never causes an echo.

Besides links the store keeps watermarks (where the next incremental read starts) and the
open dead letters (retried on the next run). Implementations: :mod:`connectors.sqlite_store`
(embedded default, one machine) and :mod:`connectors.firestore_store` (Cloud Firestore, shared
by distributed workers). Open one with :func:`open_link_store`.
"""

from __future__ import annotations

import abc
import base64
import dataclasses
import datetime
import decimal
import json
from typing import Any, Iterable, Mapping, Optional, Sequence

PENDING = "pending"
LINKED = "linked"


@dataclasses.dataclass(frozen=True)
class Link:
    """One source entity tied to one target entity of a pair.

    ``link_id`` is stable from the moment the link is reserved: ``"s:<source id>"`` when the
    source entity came first (a create in the target), ``"t:<target id>"`` when the target came
    first. ``state`` is ``pending`` between the reservation and the commit of a create, then
    ``linked``. ``version`` is the store's optimistic-concurrency counter (0 = not stored yet).
    Snapshots map canonical property names to canonical values (see :func:`encode_values`).
    """

    pair: str
    link_id: str
    source_id: Optional[str] = None
    target_id: Optional[str] = None
    state: str = LINKED
    snapshot_source: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    snapshot_target: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    source_etag: Optional[str] = None
    target_etag: Optional[str] = None
    attempt_id: Optional[str] = None
    version: int = 0
    updated_at: Optional[str] = None

    def replace(self, **changes) -> "Link":
        return dataclasses.replace(self, **changes)


@dataclasses.dataclass(frozen=True)
class DeadLetter:
    """An entity that could not be synced this run, with why; retried on the next run.

    ``system``/``entity``/``entity_id`` name the entity the next run reads again: the record
    that failed to map, or — for a failed write — the record whose change the write carried
    (``direction`` says which way; the message names the system that refused it).
    """

    run_id: str
    dataflow: str
    pair: str
    direction: str          # "to_target" | "to_source" | "read"
    system: str
    entity: str
    entity_id: Optional[str]
    stage: str              # "read" | "map" | "plan" | "reference" | "write" | "commit"
    error_class: str        # "validation" | "permanent" | "transient" | "conflict" | "reference"
    message: str
    status: Optional[int] = None
    payload: Optional[str] = None      # JSON text of the offending record (secrets masked)
    created_at: Optional[str] = None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


class StaleLinkError(Exception):
    """A commit's expected version no longer matches the stored link: another writer won.

    ``link_ids`` names the links that were not committed; ``committed`` holds the links of the
    same call that were (with their new versions).
    """

    def __init__(self, message: str, link_ids: Sequence[str] = (),
                 committed: Sequence["Link"] = ()):
        super().__init__(message)
        self.link_ids = tuple(link_ids)
        self.committed = list(committed)

    def __reduce__(self):
        return (StaleLinkError, (str(self), self.link_ids, self.committed))


@dataclasses.dataclass(frozen=True)
class StateEntry:
    """A small versioned document kept beside the links: a run lock, a connector's tokens.

    ``version`` is 1 when the entry is created and grows by one with every write, so writers
    can compare-and-set (:meth:`LinkStore.write_state`).
    """

    key: str
    value: dict
    version: int


class StaleStateError(Exception):
    """A compare-and-set on a state entry failed: it was created, changed or deleted since read."""


class LinkStore(abc.ABC):
    """Links, reservations, watermarks and dead letters. Pair names are ``dataflow/pair``."""

    #: False for stores that only one process can use (SQLite): refused on distributed runners.
    distributed = False

    @abc.abstractmethod
    def lookup_by_source(self, pair: str, ids: Iterable[str]) -> dict[str, Link]:
        """Links of ``pair`` whose source id is in ``ids``, keyed by source id."""

    @abc.abstractmethod
    def lookup_by_target(self, pair: str, ids: Iterable[str]) -> dict[str, Link]:
        """Links of ``pair`` whose target id is in ``ids``, keyed by target id."""

    @abc.abstractmethod
    def pending(self, pair: str) -> list[Link]:
        """Reservations of ``pair`` whose create was never committed."""

    @abc.abstractmethod
    def reserve(self, link: Link) -> Link:
        """Store ``link`` (state pending) unless a link with its id exists; return the stored one.

        The caller owns the reservation when the returned link's ``attempt_id`` is its own.
        """

    def reserve_many(self, links: Sequence[Link]) -> list[Link]:
        """:meth:`reserve` each link, in order; the stored links in the same order.

        Stores override this to reserve a batch in one round trip (one transaction, one
        commit) instead of one per link; the outcome per link is the same as :meth:`reserve`'s,
        also when two links of the batch want the same id (the first one gets it).
        """
        return [self.reserve(link) for link in links]

    @abc.abstractmethod
    def commit(self, links: Sequence[Link]) -> list[Link]:
        """Store links (state linked), each only if its ``version`` still matches.

        Returns the stored links with their new versions; raises :class:`StaleLinkError` for a
        link whose stored version moved on (the others are still committed).
        """

    @abc.abstractmethod
    def get_watermark(self, dataflow: str, pair: str, system: str) -> Optional[str]:
        """The read position (ISO 8601 UTC) of ``system`` for ``pair``, or None (full read)."""

    @abc.abstractmethod
    def advance_watermark(self, dataflow: str, pair: str, system: str, value: str) -> str:
        """Move the watermark forward to ``value`` (never back); return the stored value."""

    @abc.abstractmethod
    def add_dead_letters(self, letters: Sequence[DeadLetter]) -> None:
        """Record dead letters of a run."""

    @abc.abstractmethod
    def open_dead_letters(self, dataflow: str, pair: str) -> list[DeadLetter]:
        """Dead letters of ``pair`` still to retry (those of the latest finished run)."""

    @abc.abstractmethod
    def retire_dead_letters(self, dataflow: str, pair: str, keep_run_id: str) -> None:
        """Forget the dead letters of ``pair`` that earlier runs left (the run retried them)."""

    @abc.abstractmethod
    def read_state(self, key: str) -> Optional[StateEntry]:
        """The state entry at ``key``, or None."""

    @abc.abstractmethod
    def write_state(self, key: str, value: dict,
                    expected_version: Optional[int]) -> StateEntry:
        """Store ``value`` at ``key`` if the entry is still at ``expected_version``.

        ``expected_version`` None: only if no entry exists. Returns the stored entry (its
        version one more than before); raises :class:`StaleStateError` when the condition
        fails, writing nothing. ``value`` must be JSON-serialisable.
        """

    @abc.abstractmethod
    def delete_state(self, key: str, expected_version: int) -> None:
        """Delete the entry at ``key`` if it is still at ``expected_version``.

        Raises :class:`StaleStateError` when it is not (or is gone).
        """

    def close(self) -> None:
        """Release the connection."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def open_link_store(url: str) -> LinkStore:
    """The link store at ``url``: ``sqlite:///path/to/links.db`` (or ``sqlite:///:memory:``),
    or ``firestore://PROJECT[/DATABASE][?prefix=PREFIX]`` (Cloud Firestore)."""
    if url.startswith("sqlite://"):
        from connectors.sqlite_store import SqliteLinkStore
        return SqliteLinkStore.from_url(url)
    if url.startswith("firestore://"):
        try:
            from connectors.firestore_store import FirestoreLinkStore
        except ImportError as exc:
            raise ValueError(
                f"link_store: {url!r} needs the google-cloud-firestore package ({exc}); "
                "install it with: pip install 'talksync[gcp]'") from exc
        return FirestoreLinkStore.from_url(url)
    scheme = url.split(":", 1)[0] if ":" in url else url
    raise ValueError(
        f"link_store: unsupported URL scheme {scheme!r} in {url!r}; "
        "use sqlite:///PATH (e.g. sqlite:///.talksync/links.db) or firestore://PROJECT")


# --- canonical values <-> JSON -------------------------------------------------------------
# Snapshots hold canonical Python values (str, int, bool, Decimal, date, datetime, lists and
# dicts of those). Stores keep them as JSON; these tags make the round trip exact.

def encode_value(value: Any) -> Any:
    """A JSON-safe form of a canonical value that :func:`decode_value` turns back exactly."""
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, decimal.Decimal):
        return {"$decimal": str(value)}
    if isinstance(value, datetime.datetime):
        return {"$datetime": value.isoformat()}
    if isinstance(value, datetime.date):
        return {"$date": value.isoformat()}
    if isinstance(value, float):
        return {"$decimal": repr(value)}
    if isinstance(value, bytes):
        return {"$bytes": base64.b64encode(value).decode("ascii")}
    if isinstance(value, (list, tuple)):
        return [encode_value(v) for v in value]
    if isinstance(value, Mapping):
        return {"$map": {str(k): encode_value(v) for k, v in value.items()}}
    raise TypeError(f"cannot store a value of type {type(value).__name__}")


def decode_value(value: Any) -> Any:
    """The inverse of :func:`encode_value`."""
    if isinstance(value, list):
        return tuple(decode_value(v) for v in value)
    if isinstance(value, dict):
        if "$decimal" in value:
            return decimal.Decimal(value["$decimal"])
        if "$datetime" in value:
            return datetime.datetime.fromisoformat(value["$datetime"])
        if "$date" in value:
            return datetime.date.fromisoformat(value["$date"])
        if "$bytes" in value:
            return base64.b64decode(value["$bytes"])
        if "$map" in value:
            return {k: decode_value(v) for k, v in value["$map"].items()}
        raise ValueError(f"unknown tagged value {sorted(value)}")
    return value


def encode_values(values: Mapping[str, Any]) -> str:
    """A snapshot as JSON text."""
    return json.dumps({k: encode_value(v) for k, v in values.items()}, sort_keys=True,
                      ensure_ascii=False, separators=(",", ":"))


def decode_values(text: Optional[str]) -> dict[str, Any]:
    """A snapshot from JSON text (empty for None)."""
    if not text:
        return {}
    values = json.loads(text)
    if "{" not in text[1:] and "[" not in text:
        return values       # no nested object or list, so no tagged value: nothing to decode
    return {k: decode_value(v) for k, v in values.items()}
