"""The contract between the sync engine and the systems it talks to.

A connector turns one system's API into plain :class:`~core.model.Record` values and applies
:class:`~core.model.WriteOp` batches. The data types live in :mod:`core.model`; the connector
semantics live here (:class:`Connector`); what its failures mean, the
:class:`~connectors.errors.ApiError` family and the error policy, in :mod:`connectors.errors`.
Everything system-specific (paging, auth, wire quirks such as JSON numbers for money, error
bodies) stays inside the connector; the engine only sees records whose ``fields`` are JSON-like
values in the system's own vocabulary.

Connectors are created inside DoFns (``setup``) from a :class:`~core.model.SystemConfig`, so
they must be cheap to construct and must resolve secrets themselves (never at pipeline build
time).
"""

from __future__ import annotations

import abc
import datetime
from collections.abc import Iterable, Iterator, Sequence
from typing import Self

from core.model import Record, SystemConfig, UnreadableRecord, WriteOp, WriteResult

#: the logger of progress lines (one per stage, batch or retry, never per record); the CLI
#: shows it on stderr unless ``-q``
PROGRESS_LOGGER = "talksync.progress"


class Connector(abc.ABC):
    """A client of one system. One instance per DoFn (created in ``setup``)."""

    #: the system type this connector implements, e.g. ``"customwebshop"``
    system_type: str = ""
    #: entity names this system has, e.g. ``("customers", "products", "orders")``
    entities: Sequence[str] = ()
    #: the largest number of WriteOps :meth:`write` sends in one request
    max_batch_size: int = 1
    #: the settings that hold the credentials, named when the system refuses them
    credential_settings: Sequence[str] = ()

    def __init__(self, config: SystemConfig):
        self.config = config

    @property
    def name(self) -> str:
        return self.config.name

    @abc.abstractmethod
    def read(self, entity: str, since: datetime.datetime | None = None
             ) -> Iterator[Record | UnreadableRecord]:
        """Every entity changed at or after ``since`` (all when None), deleted ones included.

        A row that is not a record is yielded as an :class:`UnreadableRecord` (and the read
        goes on); a page or answer that cannot be read at all raises
        :class:`~connectors.errors.ApiError`.

        Each id is yielded at most once per call (the first version seen); an entity that
        changes while the read pages on is picked up by the next run's read.
        """

    @abc.abstractmethod
    def get(self, entity: str, ids: Iterable[str]) -> list[Record | UnreadableRecord]:
        """The current state of the given entities; missing ones are left out (unreadable ones
        come as :class:`UnreadableRecord`, as in :meth:`read`)."""

    @abc.abstractmethod
    def write(self, ops: Sequence[WriteOp]) -> list[WriteResult]:
        """Apply creates/updates, at most ``max_batch_size`` per request, one result per op."""

    @abc.abstractmethod
    def probe(self) -> None:
        """One cheap authenticated read, made before a run reads anything and by
        ``talksync check``: returns when the system answers and accepts the credentials,
        raises :class:`~connectors.errors.ApiError` (``CredentialsRefusedError``,
        ``UnreachableError``) otherwise."""

    def stored_credentials(self) -> str | None:
        """What ``talksync check`` says of credentials kept in the link store (tokens of a
        one-time consent), or None for a system without any."""
        return None

    def check_details(self) -> str | None:
        """What ``talksync check`` says of the system beyond "ok" (what its probe found), or
        None."""
        return None

    @property
    def request_count(self) -> int:
        """How many HTTP requests this instance has made (for the run report)."""
        return 0

    def close(self) -> None:  # noqa: B027  (a hook: nothing to release by default)
        """Release connections."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
