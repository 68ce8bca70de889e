"""What a failed call to a system means: the :class:`ApiError` family and the one error policy.

:data:`STATUS_RULES`, :data:`NO_ANSWER_RULES` and :data:`REFUSAL_CODES` are the single
declarative table (in the style of Airbyte's error mapping) from an HTTP status, a network
failure or an OAuth error code to

* the exception raised (an :class:`ApiError` subclass),
* the error class a dead letter records (``transient``, ``permanent`` or ``conflict``),
* whether the HTTP client sends the request again (:class:`Retry`), and
* a hint, the message's detail when the system's answer says nothing itself.

The HTTP client (:mod:`connectors.http`), both token calls (:func:`connectors.auth.grant`,
used by client credentials and Exact's rotating refresh tokens) and
:attr:`ApiError.error_class` all look here, so a status means the same everywhere.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping, Sequence
from typing import Any

import requests

TRANSIENT = "transient"
PERMANENT = "permanent"
CONFLICT = "conflict"


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
        """The dead letter's error class: the policy's for an error status, else (no answer,
        a garbled answer, a refusal made before sending) transient or permanent."""
        if self.status is not None and self.status >= 400:
            return rule_for_status(self.status).error_class
        return TRANSIENT if self.transient else PERMANENT

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_api_error, (type(self), self.message, self.status, self.transient,
                                     self.system, self.body))


def _rebuild_api_error(cls: type[ApiError], message: str, status: int | None, transient: bool,
                       system: str, body: Any) -> ApiError:
    return cls(message, status=status, transient=transient, system=system, body=body)


class TransientApiError(ApiError):
    """5xx, 408, timeouts and connection errors: retrying later may succeed."""

    def __init__(self, message: str, **kwargs: Any):
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


class Retry(enum.Enum):
    """Whether the HTTP client sends a failed request again (within its retry budget)."""

    #: never: asking again gets the same answer
    NEVER = "never"
    #: only a request that is safe to repeat (idempotent, or certainly not sent): the system
    #: may have carried the first one out
    IF_SAFE = "if safe"
    #: always: the system certainly did not carry the request out (a 429)
    ALWAYS = "always"


@dataclasses.dataclass(frozen=True)
class ErrorRule:
    """One row of the policy: what a status or failure raises, records, retries and says."""

    error: type[ApiError]
    error_class: str
    retry: Retry
    hint: str

    def retried(self, idempotent: bool) -> bool:
        """Whether a request that met this rule is sent again."""
        return self.retry is Retry.ALWAYS or (self.retry is Retry.IF_SAFE and idempotent)


def _row(error: type[ApiError], retry: Retry, hint: str, error_class: str = "") -> ErrorRule:
    return ErrorRule(error, error_class or (TRANSIENT if issubclass(error, TransientApiError)
                                            else PERMANENT), retry, hint)


#: HTTP status -> rule, for the statuses that are not simply "4xx permanent, 5xx transient"
STATUS_RULES: Mapping[int, ErrorRule] = {
    401: _row(CredentialsRefusedError, Retry.NEVER, "the credentials were refused"),
    403: _row(CredentialsRefusedError, Retry.NEVER, "the credentials lack the rights needed"),
    408: _row(TransientApiError, Retry.IF_SAFE, "the system timed out waiting for the request"),
    409: _row(PreconditionFailedError, Retry.NEVER, "the entity changed since it was read",
              CONFLICT),
    412: _row(PreconditionFailedError, Retry.NEVER, "the entity changed since it was read",
              CONFLICT),
    429: _row(RateLimitedError, Retry.ALWAYS, "too many requests"),
    500: _row(TransientApiError, Retry.IF_SAFE, "the system failed"),
    502: _row(TransientApiError, Retry.IF_SAFE, "a gateway in front of the system failed"),
    503: _row(TransientApiError, Retry.IF_SAFE, "the system is unavailable"),
    504: _row(TransientApiError, Retry.IF_SAFE, "a gateway timed out waiting for the system"),
}
#: any other status from 500 on: transient, but not asked again (501 and the like stay so)
OTHER_5XX = _row(TransientApiError, Retry.NEVER, "the system failed")
#: any other status (4xx, and a redirect, which is never followed): the request is wrong
OTHER_STATUS = _row(PermanentApiError, Retry.NEVER, "the request was rejected")

#: a request that got no proper answer -> rule; the first matching row wins (subclasses first)
NO_ANSWER_RULES: Sequence[tuple[type[requests.RequestException], ErrorRule]] = (
    # an untrusted certificate stays untrusted; nothing was sent to the server
    (requests.exceptions.SSLError,
     _row(PermanentApiError, Retry.NEVER, "the TLS certificate was not accepted")),
    # the answer began but broke off: the request was carried out, or not
    (requests.exceptions.ChunkedEncodingError,
     _row(TransientApiError, Retry.IF_SAFE, "the answer broke off")),
    (requests.ConnectionError, _row(UnreachableError, Retry.IF_SAFE, "no answer")),
    (requests.Timeout, _row(UnreachableError, Retry.IF_SAFE, "no answer in time")),
)
#: any other failure of ``requests`` (an invalid URL, say): a usage error
OTHER_FAILURE = _row(PermanentApiError, Retry.NEVER, "the request could not be made")

#: OAuth2 error codes (RFC 6749 §5.2) a token endpoint answers when it does not accept the
#: credentials: a wrong client or secret, a spent code, a used or revoked refresh token
REFUSAL_CODES = frozenset({"invalid_grant", "invalid_client", "unauthorized_client"})
REFUSED = _row(CredentialsRefusedError, Retry.NEVER, "the credentials were refused")


def rule_for_status(status: int) -> ErrorRule:
    """The rule of an HTTP error status."""
    return STATUS_RULES.get(status) or (OTHER_5XX if status >= 500 else OTHER_STATUS)


def rule_for_failure(exc: requests.RequestException) -> ErrorRule:
    """The rule of a request that got no (complete) answer."""
    for kind, rule in NO_ANSWER_RULES:
        if isinstance(exc, kind):
            return rule
    return OTHER_FAILURE


def rule_for_token_answer(status: int, oauth_error: Any) -> ErrorRule:
    """The rule of a token endpoint's error answer: a refusal code (whatever the status, in
    practice 400) or 401/403 refuse the credentials; otherwise the status decides."""
    if oauth_error in REFUSAL_CODES:
        return REFUSED
    return rule_for_status(status)


def error_type(status: int) -> type[ApiError]:
    """The :class:`ApiError` subclass for an HTTP error status."""
    return rule_for_status(status).error
