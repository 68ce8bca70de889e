"""The link store interface: what talksync remembers between runs.

The store keeps :class:`~core.model.Link` values (one source entity tied to one target entity of
a pair, with each side's snapshot: the canonical values of that side after the last successful
sync), the watermarks (where the next incremental read starts), the open dead letters (retried
on the next run), small state entries (run locks, connector tokens) and the origins of the
values talksync wrote into each record (:class:`~core.provenance.RecordOrigins`, shared by
every dataflow: docs/decisions/0015-edit-time-provenance.md). The planner's
three-way merge compares each side with its own snapshot, so a system that normalises a value
(lower-cases an e-mail, rounds a price) never looks like an edit and never causes an echo.

Implementations: :mod:`connectors.sqlite_store` (embedded default, one machine) and
:mod:`connectors.firestore_store` (Cloud Firestore, shared by distributed workers). Open one
with :func:`connectors.stores.open_link_store`.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple, Self

from core.model import DeadLetter, Link, StateEntry
from core.provenance import OriginWrite, RecordOrigins


class StaleLinkError(Exception):
    """A commit's expected version no longer matches the stored link: another writer won.

    ``link_ids`` names the links that were not committed; ``committed`` holds the links of the
    same call that were (with their new versions).
    """

    def __init__(self, message: str, link_ids: Sequence[str] = (),
                 committed: Sequence[Link] = ()):
        super().__init__(message)
        self.link_ids = tuple(link_ids)
        self.committed = list(committed)

    def __reduce__(self) -> tuple[Any, ...]:
        return (StaleLinkError, (str(self), self.link_ids, self.committed))


class LinkRef(NamedTuple):
    """Which link an entity has and its state, without the snapshots: what grouping needs
    (:meth:`LinkStore.lookup_refs_by_source`). The link itself is read after grouping, once."""

    link_id: str
    state: str


class StaleStateError(Exception):
    """A compare-and-set on a state entry failed: it was created, changed or deleted since read."""


class LinkStore(abc.ABC):
    """Links, reservations, watermarks and dead letters. Pair names are ``dataflow/pair``."""

    #: False for stores that only one process can use (SQLite): refused on distributed runners.
    distributed = False

    @classmethod
    def from_url(cls, url: str) -> LinkStore:
        """The store at ``url`` (each store parses its own scheme)."""
        raise NotImplementedError(f"{cls.__name__} is not opened from a URL")

    @abc.abstractmethod
    def lookup_by_source(self, pair: str, ids: Iterable[str]) -> dict[str, Link]:
        """Links of ``pair`` whose source id is in ``ids``, keyed by source id."""

    @abc.abstractmethod
    def lookup_by_target(self, pair: str, ids: Iterable[str]) -> dict[str, Link]:
        """Links of ``pair`` whose target id is in ``ids``, keyed by target id."""

    def lookup_refs_by_source(self, pair: str, ids: Iterable[str]) -> dict[str, LinkRef]:
        """:meth:`lookup_by_source` without the snapshots: each link's id and state.

        Planning groups entities by these and reads each group's link once, after grouping
        (:meth:`lookup_by_id`), so no link's snapshots are read or decoded twice nor carried
        through the shuffle. Stores override this to read only the index.
        """
        return {entity_id: LinkRef(link.link_id, link.state)
                for entity_id, link in self.lookup_by_source(pair, ids).items()}

    def lookup_refs_by_target(self, pair: str, ids: Iterable[str]) -> dict[str, LinkRef]:
        """:meth:`lookup_by_target` without the snapshots (see :meth:`lookup_refs_by_source`)."""
        return {entity_id: LinkRef(link.link_id, link.state)
                for entity_id, link in self.lookup_by_target(pair, ids).items()}

    @abc.abstractmethod
    def lookup_by_id(self, pair: str, link_ids: Iterable[str]) -> dict[str, Link]:
        """Links of ``pair`` whose link id is in ``link_ids``, keyed by link id."""

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

        A tombstone (:data:`core.model.TOMBSTONES`) keeps its state; a link in state
        ``unlinked`` is removed with the claims on its ids (:func:`core.model.committed_state`).

        Returns the stored links with their new versions; raises :class:`StaleLinkError` for a
        link whose stored version moved on (the others are still committed).
        """

    @abc.abstractmethod
    def lookup_origins(self, system: str, entity: str,
                       ids: Iterable[str]) -> dict[str, RecordOrigins]:
        """What talksync's last writes left in the records ``ids`` of ``entity`` in ``system``
        (any dataflow's), keyed by record id; records talksync never wrote are left out."""

    @abc.abstractmethod
    def save_origins(self, writes: Sequence[OriginWrite]) -> None:
        """Remember successful writes: each record's entry becomes
        :func:`core.provenance.merged_origins` of the stored one and the write, atomically per
        record (a concurrent save of the same record is merged, never lost half-way)."""

    @abc.abstractmethod
    def get_watermark(self, dataflow: str, pair: str, system: str) -> str | None:
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
    def read_state(self, key: str) -> StateEntry | None:
        """The state entry at ``key``, or None."""

    @abc.abstractmethod
    def write_state(self, key: str, value: dict,
                    expected_version: int | None) -> StateEntry:
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

    def close(self) -> None:  # noqa: B027  (a hook: nothing to release by default)
        """Release the connection."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
