"""The contract between the sync engine and the systems it talks to.

A connector turns one system's API into plain :class:`~core.model.Record` values and applies
:class:`~core.model.WriteOp` batches. The data types live in :mod:`core.model`; the connector
semantics live here: :class:`Connector` and the :class:`ApiError` family. Everything
system-specific (paging, auth, wire quirks such as JSON numbers for money, error bodies) stays
inside the connector; the engine only sees records whose ``fields`` are JSON-like values in the
system's own vocabulary.

Connectors are created inside DoFns (``setup``) from a :class:`~core.model.SystemConfig`, so
they must be cheap to construct and must resolve secrets themselves (never at pipeline build
time).
"""

from __future__ import annotations

import abc
import datetime
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from core.model import Record, SystemConfig, WriteOp, WriteResult

#: the logger of progress lines (one per stage, batch or retry, never per record); the CLI
#: shows it on stderr unless ``-q``
PROGRESS_LOGGER = "talksync.progress"


class ApiError(Exception):
    """A failed call to a system. ``status`` is the HTTP status (None for network errors).

    ``transient`` says whether the same call may succeed later (5xx, 408, 429, timeouts),
    as opposed to a permanent rejection of the request (other 4xx).
    """

    def __init__(self, message: str, *, status: int | None = None,
                 transient: bool = False, system: str = "", body: Any = None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.transient = transient
        self.system = system
        self.body = body

    @property
    def error_class(self) -> str:
        if self.status == 412 or self.status == 409:
            return "conflict"
        return "transient" if self.transient else "permanent"

    def __reduce__(self):
        return (_rebuild_api_error, (type(self), self.message, self.status, self.transient,
                                     self.system, self.body))


def _rebuild_api_error(cls, message, status, transient, system, body):
    return cls(message, status=status, transient=transient, system=system, body=body)


class TransientApiError(ApiError):
    """5xx, 408, timeouts and connection errors: retrying later may succeed."""

    def __init__(self, message: str, **kwargs):
        kwargs.setdefault("transient", True)
        super().__init__(message, **kwargs)


class UnreachableError(TransientApiError):
    """No answer at all: the connection was refused, the name did not resolve, or the request
    timed out. An outage rather than bad input (a run that meets one after the retries fails)."""


class RateLimitedError(TransientApiError):
    """429: the system asked us to slow down."""


class PermanentApiError(ApiError):
    """4xx other than 408/409/412/429: the request itself is wrong; never retried as is."""


class CredentialsRefusedError(PermanentApiError):
    """401/403, or a token endpoint's refusal: the system does not accept the configured
    credentials (a wrong or revoked key or secret, or one without the rights it needs). A
    configuration error: ``talksync run`` stops before reading, naming the setting."""


class ConsentMissingError(PermanentApiError):
    """A system that needs a one-time consent (OAuth authorisation code) has none stored: a
    configuration step to take (``talksync auth …``), not a failure of the system."""


class PreconditionFailedError(ApiError):
    """409/412: the entity changed since it was read; re-read and re-plan, never overwrite."""


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
    def read(self, entity: str, since: datetime.datetime | None = None) -> Iterator[Record]:
        """Every entity changed at or after ``since`` (all when None), deleted ones included.

        A row that is not a record is yielded as an :class:`UnreadableRecord` (and the read
        goes on); a page or answer that cannot be read at all raises :class:`ApiError`.

        Each id is yielded at most once per call (the first version seen); an entity that
        changes while the read pages on is picked up by the next run's read.
        """

    @abc.abstractmethod
    def get(self, entity: str, ids: Iterable[str]) -> list[Record]:
        """The current state of the given entities; missing ones are left out (unreadable ones
        come as :class:`UnreadableRecord`, as in :meth:`read`)."""

    @abc.abstractmethod
    def write(self, ops: Sequence[WriteOp]) -> list[WriteResult]:
        """Apply creates/updates, at most ``max_batch_size`` per request, one result per op."""

    @abc.abstractmethod
    def probe(self) -> None:
        """One cheap authenticated read, made before a run reads anything and by
        ``talksync check``: returns when the system answers and accepts the credentials,
        raises :class:`ApiError` (:class:`CredentialsRefusedError`, :class:`UnreachableError`)
        otherwise."""

    def stored_credentials(self) -> str | None:
        """What ``talksync check`` says of credentials kept in the link store (tokens of a
        one-time consent), or None for a system without any."""
        return None

    @property
    def request_count(self) -> int:
        """How many HTTP requests this instance has made (for the run report)."""
        return 0

    def close(self) -> None:  # noqa: B027  (a hook: nothing to release by default)
        """Release connections."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
