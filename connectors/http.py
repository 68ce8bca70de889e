"""The HTTP layer every connector talks through.

:class:`HttpClient` wraps one ``requests.Session`` and adds what every system needs and what
must behave the same for all of them: timeouts, TLS verification, a rate limiter, retries on
tenacity (capped exponential backoff with full jitter, ``Retry-After`` honoured, at most
``max_retries`` after the first attempt), the error policy of
:mod:`connectors.errors` (what each status or failure raises and whether it is asked again),
request counting, and secret masking in every message and error body it surfaces.

Retries never risk a duplicate: a request that is not idempotent (a ``POST`` without an
``Idempotency-Key`` header, or any request the caller marks ``idempotent=False``) is repeated
only when the system certainly did not process it (``429``, or a connection that failed before
the request was sent). A timeout or dropped connection after sending raises
:class:`~connectors.errors.TransientApiError` at once; the engine's pending link makes the next
run look the entity up and adopt it instead of creating it again.

:class:`HttpConnector` is the base of connectors built on :class:`HttpClient`; the row checks
it and the connectors use are in :mod:`connectors.rows`, bearer tokens in :mod:`connectors.auth`,
the paginators its one row reader (:meth:`HttpConnector._read_rows`) walks in
:mod:`connectors.paging`.
"""

from __future__ import annotations

import abc
import dataclasses
import datetime
import decimal
import json
import random
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Protocol

import requests
import tenacity
import urllib3

from connectors import errors, secrets, waiting
from connectors.auth import TokenMasker, TokenProvider
from connectors.base import Connector
from connectors.errors import ApiError, PermanentApiError, TransientApiError, UnreachableError
from connectors.paging import PageRequest, Paginator
from connectors.rows import UnreadableRow, row_key, unique_by_id
from connectors.wire import describe_error_body, dumps_json
from core.model import Record, SystemConfig, UnreadableRecord, WriteOp

#: seconds to establish a connection (TCP + TLS); a system that cannot accept one in 5 s is down
_CONNECT_TIMEOUT_S = 5.0
#: seconds to wait for (each part of) an answer; a 100-operation batch fits comfortably
_READ_TIMEOUT_S = 30.0
#: retries after the first attempt, so at most 6 attempts per request
_MAX_RETRIES = 5
#: the backoff before retry n (0-based) is uniform in
#: [0, min(_MAX_BACKOFF_S, _BASE_BACKOFF_S * 2**n)]
_BASE_BACKOFF_S = 0.5
#: the cap of one backoff wait
_MAX_BACKOFF_S = 30.0
#: a request stops retrying a system that does not answer when its next attempt could end
#: later than this after its first one began (so a run against a system that never answers
#: ends within about 2 minutes with the default timeouts; the run's other requests to it then
#: fail at once, see connectors/waiting.py)
_NO_ANSWER_BUDGET_S = 80.0
#: a wait before a retry longer than this is announced on the progress logger
_ANNOUNCED_WAIT_S = 2.0
#: a longer Retry-After is not waited out in a worker: the error is raised (transient) instead
_MAX_RETRY_AFTER_S = 300.0
#: characters of a non-JSON error body kept in an exception
_ERROR_TEXT_LIMIT = 1000
#: characters of a garbled (non-JSON or malformed) answer quoted in an exception
_GARBLED_TEXT_LIMIT = 200
#: the kinds of :class:`WriteOp`
_WRITE_KINDS = ("create", "update", "delete")
#: "an update", "a delete": the article of each kind that names an entity
_ARTICLE = {"create": "a", "update": "an", "delete": "a"}


@dataclasses.dataclass(frozen=True)
class HttpResponse:
    """A successful answer: status, headers (case-insensitive) and the decoded JSON body."""

    status: int
    headers: Mapping[str, str]
    data: Any = None

    @property
    def etag(self) -> str | None:
        return self.headers.get("ETag")


class TokenBucket:
    """A blocking rate limiter: ``rate`` requests per second, bursts of up to ``capacity``.

    Each :meth:`acquire` takes a token; when none is left it reserves the next one (the bucket
    goes into debt) and sleeps until it is due, outside the lock, so waiting threads queue up
    at the right spacing.
    """

    def __init__(self, rate: float, *, capacity: float = 1.0,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        if rate <= 0:
            raise ValueError(f"requests_per_second must be positive, not {rate}")
        self._rate = rate
        self._capacity = capacity
        self._clock = clock
        self._sleep = sleep
        self._tokens = capacity
        self._updated = clock()
        self._lock = threading.Lock()

    def acquire(self) -> None:
        with self._lock:
            now = self._clock()
            self._tokens = min(self._capacity,
                               self._tokens + (now - self._updated) * self._rate)
            self._updated = now
            self._tokens -= 1
            wait = -self._tokens / self._rate
        if wait > 0:
            self._sleep(wait)


class Pacer(Protocol):
    """Server-directed pacing for :class:`HttpClient` (the ``pacer`` hook): systems that say in
    every answer how many calls are left (Exact's ``X-RateLimit-*`` headers)."""

    def before_request(self) -> None:
        """Called before every attempt; may sleep until the system accepts calls again."""

    def after_response(self, status: int, headers: Mapping[str, str]) -> float | None:
        """Called with every answer; returns the seconds to wait before retrying it (429), or
        None for the client's own backoff."""



class HttpClient:
    """Requests to one system: base URL, default headers, timeouts, rate limit, retries.

    ``describe_error`` turns the system's error body into the message of the exception (each
    API words errors differently); ``decimal_numbers`` decodes JSON numbers with a fraction as
    ``Decimal``. ``sleep`` and ``clock`` are injectable so tests do not wait.

    ``auth`` (optional) supplies a bearer token for every request; a ``401`` is answered once
    per request by fetching a new token and sending the request again (a token may expire or
    be revoked early). Its tokens are masked like every other secret. ``pacer`` (optional)
    sees every answer's headers and may hold requests back (see :class:`Pacer`).

    A request that got no answer through its retries makes the system unreachable for the
    process's other requests to it for a while (they fail at once); a request in flight says
    so on the progress logger every few seconds, and every wait before a retry longer than
    ``_ANNOUNCED_WAIT_S`` is announced (see :mod:`connectors.waiting`).
    ``still_waiting`` replaces the process's watcher (tests with a fake clock).
    """

    def __init__(self, base_url: str, *, system: str = "",
                 headers: Mapping[str, str] | None = None,
                 masker: secrets.Masker | None = None,
                 describe_error: Callable[[Any], str] = describe_error_body,
                 decimal_numbers: bool = False,
                 connect_timeout_s: float = _CONNECT_TIMEOUT_S,
                 read_timeout_s: float = _READ_TIMEOUT_S,
                 requests_per_second: float | None = None,
                 max_retries: int = _MAX_RETRIES,
                 first_backoff_s: float | None = None,
                 sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic,
                 auth: TokenProvider | None = None,
                 pacer: Pacer | None = None,
                 still_waiting: waiting.StillWaiting | None = None):
        self._base_url = base_url.rstrip("/")
        self._key = (system, self._base_url)
        self._still_waiting = still_waiting or waiting.STILL_WAITING
        self._clock = clock
        self._pacer = pacer
        self._system = system
        self._auth = auth
        self._masker: secrets.Masker | TokenMasker = masker or secrets.Masker()
        if auth is not None:
            self._masker = TokenMasker(self._masker, auth)
        self._describe_error = describe_error
        self._parse_float = decimal.Decimal if decimal_numbers else float
        self._timeout = (connect_timeout_s, read_timeout_s)
        self._limiter = (TokenBucket(requests_per_second, clock=clock, sleep=sleep)
                         if requests_per_second else None)
        self._max_retries = max_retries
        #: the bound of the first backoff (then doubling per retry, up to _MAX_BACKOFF_S)
        self._first_backoff_s = _BASE_BACKOFF_S if first_backoff_s is None else first_backoff_s
        self._sleep = sleep
        self._session = requests.Session()
        self._session.headers.update(headers or {})
        self._count_lock = threading.Lock()
        #: every HTTP attempt made, retries included
        self.request_count = 0

    @classmethod
    def from_config(cls, config: SystemConfig, **kwargs: Any) -> HttpClient:
        """A client for ``config``: its base URL, name and the common settings.

        Settings: ``timeout_s`` (read timeout), ``requests_per_second`` (rate limit),
        ``max_retries`` (retries of a failed call that is safe to retry), ``retry_backoff_s``
        (the bound of the first wait before a retry, doubling per retry).
        """
        settings = config.settings
        if settings.get("max_retries") is not None:
            kwargs.setdefault("max_retries", int(settings["max_retries"]))
        if settings.get("retry_backoff_s") is not None:
            kwargs.setdefault("first_backoff_s", float(settings["retry_backoff_s"]))
        if settings.get("timeout_s") is not None:
            kwargs.setdefault("read_timeout_s", float(settings["timeout_s"]))
        if settings.get("requests_per_second") is not None:
            kwargs.setdefault("requests_per_second", float(settings["requests_per_second"]))
        return cls(config.base_url, system=config.name, **kwargs)

    def request(self, method: str, path: str, *, params: Mapping[str, Any] | None = None,
                json: Any = None, headers: Mapping[str, str] | None = None,
                idempotent: bool | None = None) -> HttpResponse:
        """Send ``method path`` (relative to the base URL), retrying what is safe to retry.

        ``json`` is the request body. ``idempotent`` defaults to True except for a ``POST``
        without an ``Idempotency-Key`` header. Returns the 2xx answer; raises the
        :class:`ApiError` subclass of the final status, or :class:`TransientApiError` for a
        network failure (:class:`UnreachableError` for no answer, at once when the system did
        not answer another request of this process shortly before).
        """
        method = method.upper()
        headers = dict(headers or {})
        data = None
        if json is not None:
            data = dumps_json(json).encode("utf-8")
            headers["Content-Type"] = "application/json"
        if idempotent is None:
            idempotent = method != "POST" or any(
                name.lower() == "idempotency-key" for name in headers)
        refused = waiting.UNREACHABLE.refusal(
            self._key, f"{method} {self._masker.mask(path.split('?', 1)[0])}")
        if refused is not None:
            raise refused
        pending = waiting.PendingRequest(self._system, method, self._masker.mask(path),
                                         self._max_retries + 1, self._still_waiting.clock())
        self._still_waiting.watch(pending)
        try:
            return self._attempts(method, path, params, data, headers, idempotent, pending)
        finally:
            self._still_waiting.done(pending)

    def _attempts(self, method: str, path: str, params: Mapping[str, Any] | None,
                  data: bytes | None, headers: dict[str, str], idempotent: bool,
                  pending: waiting.PendingRequest) -> HttpResponse:
        """The attempts of :meth:`request` (``pending`` follows them), on tenacity: each
        attempt (:meth:`_attempt`) decides from the error policy whether it may be asked again
        and after how long (:class:`_FailedAttempt`); tenacity stops after ``max_retries``
        retries or when a system that does not answer would outlast the no-answer budget,
        sleeps with the injected ``sleep`` and announces long waits."""
        started = self._clock()
        refreshed = [False]

        def stop(state: tenacity.RetryCallState) -> bool:
            failed = _failure(state)
            return state.attempt_number > self._max_retries or (
                failed is not None and self._past_no_answer_budget(failed.error, started,
                                                                   failed.wait))

        def announce(state: tenacity.RetryCallState) -> None:
            failed = _failure(state)
            if failed is not None and failed.wait > _ANNOUNCED_WAIT_S:
                self._still_waiting.said(pending, pending.retrying(failed.failure, failed.wait))

        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(
                lambda exc: isinstance(exc, _FailedAttempt) and exc.retry),
            stop=stop, wait=lambda state: getattr(_failure(state), "wait", 0.0),
            before_sleep=announce, sleep=self._sleep, reraise=True)
        try:
            for attempt in retrying:
                with attempt:
                    pending.attempt = attempt.retry_state.attempt_number
                    return self._attempt(method, path, params, data, headers, idempotent,
                                         pending.attempt - 1, refreshed)
        except _FailedAttempt as failed:
            last = failed
        else:  # pragma: no cover (tenacity returns the answer or raises)
            raise AssertionError("tenacity ended without an answer")
        if last.retry and last.silent and isinstance(last.error, UnreachableError):
            waiting.UNREACHABLE.found(self._key, last.error)  # the run's others fail at once
        raise last.error    # outside the except: the masked error alone, nothing chained

    def _attempt(self, method: str, path: str, params: Mapping[str, Any] | None,
                 data: bytes | None, headers: dict[str, str], idempotent: bool,
                 attempt: int, refreshed: list[bool]) -> HttpResponse:
        """One attempt (``attempt`` counts from 0): the 2xx answer, or :class:`_FailedAttempt`
        saying what failed, whether to ask again and after how long. A ``401`` is answered
        once per request (``refreshed``) by a new token, sent again at once within the
        attempt."""
        url = self._base_url + path
        refresh = False
        while True:
            if self._auth is not None:
                headers["Authorization"] = "Bearer " + self._token(refresh)
            if self._limiter:
                self._limiter.acquire()
            if self._pacer:
                self._pacer.before_request()
            with self._count_lock:
                self.request_count += 1
            try:
                response = self._session.request(
                    method, url, params=params, data=data, headers=headers,
                    timeout=self._timeout, allow_redirects=False, verify=True)
            except requests.RequestException as exc:
                error, retry = self._network_error(method, path, exc, idempotent)
                unreachable = isinstance(error, UnreachableError)
                raise _FailedAttempt(
                    error, retry, self._backoff(attempt),
                    f"got no answer ({type(exc).__name__})" if unreachable else
                    f"got a broken answer ({type(exc).__name__})",
                    # timed out or never connected (a connection dropped after sending is
                    # quick to fail again, and the system may have carried the request out)
                    silent=unreachable and (isinstance(exc, requests.Timeout)
                                            or _not_sent(exc))) from None
            waiting.UNREACHABLE.answered(self._key)
            paced = (self._pacer.after_response(response.status_code, response.headers)
                     if self._pacer else None)
            if 200 <= response.status_code < 300:
                try:
                    return HttpResponse(response.status_code, response.headers,
                                        self._decode(response, method, path))
                except TransientApiError as garbled:
                    # carried out, but the answer is not JSON (a proxy's or login page):
                    # asked again like a 5xx when asking again is safe
                    raise _FailedAttempt(
                        garbled, idempotent, self._backoff(attempt),
                        f"got HTTP {response.status_code} with a body that is not JSON"
                    ) from None
            if response.status_code == 401 and self._auth is not None and not refreshed[0]:
                refreshed[0] = refresh = True  # refused: once per request, a new token and again
                continue
            raise self._status_failure(response, method, path, idempotent, paced, attempt)

    def _status_failure(self, response: requests.Response, method: str, path: str,
                        idempotent: bool, paced: float | None, attempt: int) -> _FailedAttempt:
        """The failed attempt of an error status: the policy's error and retry rule, waiting
        what ``Retry-After`` (or the pacer) asks, else the backoff; a longer wait than
        ``_MAX_RETRY_AFTER_S`` is not waited out."""
        error = self.error_for(response.status_code, self._error_body(response), method, path)
        retry = errors.rule_for_status(response.status_code).retried(idempotent)
        wait = _retry_after(response)
        if wait is None:
            wait = paced
        if wait is None:
            wait = self._backoff(attempt)
        elif wait > _MAX_RETRY_AFTER_S:
            retry = False
        return _FailedAttempt(error, retry, wait, f"got HTTP {response.status_code}")

    def _token(self, refresh: bool) -> str:
        """A bearer token from ``auth``; a token endpoint that does not answer makes the system
        unreachable for the process's other requests too (none of them could be sent)."""
        assert self._auth is not None
        try:
            return self._auth.token(refresh=refresh)
        except UnreachableError as exc:
            waiting.UNREACHABLE.found(self._key, exc)
            raise

    def _past_no_answer_budget(self, error: ApiError, started: float, wait: float) -> bool:
        """True when ``error`` is no answer and another attempt after ``wait`` could end later
        than ``_NO_ANSWER_BUDGET_S`` after the first attempt began (its connect timeout and
        read timeout both run out)."""
        if not isinstance(error, UnreachableError):
            return False
        worst_end = self._clock() - started + wait + sum(self._timeout)
        return worst_end > _NO_ANSWER_BUDGET_S

    def error_for(self, status: int, body: Any, method: str, path: str) -> ApiError:
        """The exception for an error answer (also for one operation of a batch): the error
        policy's, worded by the system's error body, else by the policy's hint."""
        body = self._mask_body(body)
        rule = errors.rule_for_status(status)
        detail = self._describe_error(body) or rule.hint
        message = f"{self._system}: {method} {path} -> HTTP {status}: {detail}"
        return rule.error(self._masker.mask(message), status=status, system=self._system,
                          body=body)

    def malformed(self, method: str, path: str, problem: str, body: Any) -> TransientApiError:
        """The exception for a JSON answer that is not what the API promises (a page without
        its rows): ``problem`` says what is wrong, the start of ``body`` is quoted (masked)."""
        text = describe_error_body(self._mask_body(body))
        if len(text) > _GARBLED_TEXT_LIMIT:
            text = text[:_GARBLED_TEXT_LIMIT] + "…"
        return TransientApiError(self._masker.mask(
            f"{self._system}: {method} {path} answered {problem}: {text}"), system=self._system)

    def close(self) -> None:
        self._session.close()

    def _network_error(self, method: str, path: str, exc: requests.RequestException,
                       idempotent: bool) -> tuple[ApiError, bool]:
        """The exception for a request that got no (complete) answer, and whether to send it
        again: the error policy's rule, where "safe" means idempotent or surely not sent."""
        rule = errors.rule_for_failure(exc)
        message = self._masker.mask(
            f"{self._system}: {method} {path} failed: {type(exc).__name__}: {exc}")
        return (rule.error(message, system=self._system),
                rule.retried(idempotent or _not_sent(exc)))

    def _decode(self, response: requests.Response, method: str, path: str) -> Any:
        if not response.content:
            return None
        try:
            return json.loads(response.content, parse_float=self._parse_float)
        except ValueError:
            # The request was carried out (2xx) but something (a proxy?) garbled the answer.
            kind = response.headers.get("Content-Type", "no content type").split(";")[0]
            raise TransientApiError(
                self._masker.mask(f"{self._system}: {method} {path} -> HTTP "
                                  f"{response.status_code} with a body that is not JSON "
                                  f"({kind}): {response.text[:_GARBLED_TEXT_LIMIT]}"),
                status=response.status_code, system=self._system) from None

    def _error_body(self, response: requests.Response) -> Any:
        """The parsed JSON error body, else its text (truncated)."""
        try:
            return json.loads(response.content, parse_float=self._parse_float)
        except ValueError:
            return response.text[:_ERROR_TEXT_LIMIT]

    def _mask_body(self, body: Any) -> Any:
        if isinstance(body, str):
            return self._masker.mask(body)
        if isinstance(body, list):
            return [self._mask_body(item) for item in body]
        if isinstance(body, dict):
            return {self._masker.mask(k): self._mask_body(v) for k, v in body.items()}
        return body

    def _backoff(self, attempt: int) -> float:
        """Full jitter: uniform in [0, capped exponential] (spreads retries of many workers)."""
        return random.uniform(0, min(_MAX_BACKOFF_S, self._first_backoff_s * 2 ** attempt))


def _required_id(entity_id: str | None) -> str:
    """The id of the entity a request is about (an update's: :meth:`_check_ops` made sure)."""
    if entity_id is None:
        raise ValueError("no entity id")
    return entity_id


class _FailedAttempt(Exception):
    """One attempt's failure as :meth:`HttpClient._attempts` retries it: the error to raise
    if it is the last, whether it may be asked again (``retry``), after how many seconds
    (``wait``), in words for the progress line (``failure``), and whether the system surely
    did not answer (``silent``: it is then remembered as unreachable)."""

    def __init__(self, error: ApiError, retry: bool, wait: float, failure: str, *,
                 silent: bool = False):
        super().__init__(failure)
        self.error, self.retry, self.wait, self.failure = error, retry, wait, failure
        self.silent = silent


def _failure(state: tenacity.RetryCallState) -> _FailedAttempt | None:
    """The failed attempt tenacity is deciding about (None after a success)."""
    exc = state.outcome.exception() if state.outcome is not None else None
    return exc if isinstance(exc, _FailedAttempt) else None


def _not_sent(exc: requests.RequestException) -> bool:
    """True when the request certainly never reached the server (connect failed or timed out)."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
    reason = exc.args[0] if exc.args else None
    if isinstance(reason, urllib3.exceptions.MaxRetryError):
        reason = reason.reason
    return isinstance(reason, urllib3.exceptions.NewConnectionError)


def _retry_after(response: requests.Response) -> float | None:
    """Seconds the server asked us to wait (``Retry-After`` as seconds or an HTTP date)."""
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return urllib3.util.Retry().parse_retry_after(value)
    except urllib3.exceptions.InvalidHeader:
        return None


class HttpConnector(Connector):
    """The base of connectors on :class:`HttpClient`: request counting, closing and ``get``.

    Subclasses turn one JSON entity into a :class:`Record` (:meth:`_to_record`) and may word
    the system's error bodies (:meth:`_describe_error`).
    """

    #: decode JSON numbers with a fraction as Decimal (systems that send money as numbers)
    decimal_numbers = False
    #: rows per list request unless the ``page_size`` setting says otherwise
    default_page_size = 100
    #: how the system pages its lists (connectors/paging.py); or override :meth:`_paginator`
    paginator: Paginator | None = None

    def __init__(self, config: SystemConfig, *, headers: Mapping[str, str],
                 secret_values: Iterable[str], auth: TokenProvider | None = None,
                 pacer: Pacer | None = None, sleep: Callable[[float], None] | None = None,
                 clock: Callable[[], float] | None = None):
        """``headers`` carry the authentication (or ``auth`` supplies bearer tokens);
        ``secret_values`` are masked in messages; ``pacer`` follows the system's own rate
        headers; ``sleep`` and ``clock`` (tests) replace the client's waits before a retry and
        its monotonic clock."""
        super().__init__(config)
        timing: dict[str, Any] = {"sleep": sleep, "clock": clock}
        self._http = HttpClient.from_config(
            config, headers=headers, masker=secrets.Masker(secret_values),
            describe_error=self._describe_error, decimal_numbers=self.decimal_numbers,
            auth=auth, pacer=pacer, **{k: v for k, v in timing.items() if v is not None})
        self._page_size = int(config.settings.get("page_size", self.default_page_size))

    def probe(self) -> None:
        """The first row of the first entity, read on a page of one."""
        page_size, self._page_size = self._page_size, 1
        try:
            for _ in self.read(self.entities[0]):
                break
        finally:
            self._page_size = page_size

    @staticmethod
    def _secret_setting(config: SystemConfig, name: str) -> str:
        """The resolved secret that setting ``name`` refers to (a configuration error if unset)."""
        if name not in config.settings:
            raise ValueError(f"system {config.name!r} ({config.type}): setting {name!r} is "
                             "required")
        return secrets.resolve(config.settings[name])

    @property
    def request_count(self) -> int:
        return self._http.request_count

    def close(self) -> None:
        self._http.close()

    def get(self, entity: str, ids: Iterable[str]) -> list[Record | UnreadableRecord]:
        """One ``GET /{entity}/{id}`` per id; unknown ids (404) are left out."""
        self._check_entity(entity)
        records = []
        for entity_id in ids:
            try:
                response = self._http.request("GET", self._entity_path(entity, entity_id))
            except PermanentApiError as exc:
                if exc.status == 404:
                    continue
                raise
            records.append(self._read_row(entity, response.data, response.etag))
        return records

    @abc.abstractmethod
    def _to_record(self, entity: str, data: Mapping[str, Any], etag: str | None) -> Record:
        """The record of one entity as the system returned it; :class:`UnreadableRow` when
        the row is not a record (use :func:`row_key`, :func:`row_timestamp`,
        :func:`row_flag`)."""

    def _key_field(self, entity: str) -> str:
        """The row member holding an entity's id (named in dead letters of unreadable rows)."""
        return "id"

    def _usable_id(self, entity: str, data: Any) -> str:
        """The id of a row that is not a record, when it has a usable one (the dead letter
        names it, and the next run reads the entity again by it); else :class:`UnreadableRow`."""
        return row_key(data, self._key_field(entity))

    def _read_row(self, entity: str, data: Any,
                  etag: str | None = None) -> Record | UnreadableRecord:
        """A row of a read as a :class:`Record`, or as an :class:`UnreadableRecord` saying
        what is wrong with it (with its id when it has a usable one)."""
        try:
            return self._to_record(entity, data, etag)
        except UnreadableRow as exc:
            try:
                entity_id: str | None = self._usable_id(entity, data)
            except UnreadableRow:
                entity_id = None
            return UnreadableRecord(system=self.name, entity=entity, id=entity_id,
                                    reason=f"unreadable {entity} row: {exc}", payload=data)

    @staticmethod
    def _describe_error(body: Any) -> str:
        return describe_error_body(body)

    # -- the row reader and its page source (connectors/paging.py) -------------------------

    def read(self, entity: str, since: datetime.datetime | None = None
             ) -> Iterator[Record | UnreadableRecord]:
        """The rows of the entity's list, from :meth:`_first_page`, through the connector's
        paginator; each row a record or an unreadable one; each id once."""
        self._check_entity(entity)
        return unique_by_id(self._read_rows(entity, self._first_page(entity, since)))

    def _first_page(self, entity: str, since: datetime.datetime | None) -> PageRequest:
        """The request of the first page of the entity's rows changed since ``since``."""
        raise NotImplementedError(f"{type(self).__name__} reads {entity} its own way")

    def _paginator(self, entity: str) -> Paginator:
        """The paginator of the entity's lists (the class's :attr:`paginator` by default)."""
        if self.paginator is None:
            raise NotImplementedError(f"{type(self).__name__} declares no paginator")
        return self.paginator

    def _read_rows(self, entity: str, first: PageRequest,
                   paginator: Paginator | None = None) -> Iterator[Record | UnreadableRecord]:
        """The one row reader: every row of every page, as a record or an unreadable one
        (see :meth:`_read_row`); a page that cannot be read raises."""
        for rows in (paginator or self._paginator(entity)).pages(self, first):
            for row in rows:
                yield self._read_row(entity, row)

    def fetch_page(self, request: PageRequest) -> Any:
        return self._http.request(request.method, request.path, params=request.params,
                                  headers=request.headers, json=request.json,
                                  idempotent=request.idempotent).data

    def malformed_page(self, request: PageRequest, problem: str, page: Any) -> ApiError:
        return self._http.malformed(request.method, request.path, problem, page)

    def relative_link(self, link: str) -> str:
        """A next-page link as a path under the base URL; a link elsewhere is refused (the
        credentials must never go to another host)."""
        base = self.config.base_url.rstrip("/")
        if not link.startswith(base + "/"):
            raise TransientApiError(f"{self.name}: next-page link {link!r} is not under {base}",
                                    system=self.name)
        return link[len(base):]

    def _entity_path(self, entity: str, entity_id: str | None) -> str:
        return f"/{entity}/{urllib.parse.quote(_required_id(entity_id), safe='')}"

    def _check_entity(self, entity: str) -> None:
        if entity not in self.entities:
            raise ValueError(f"{self.system_type} has no entity {entity!r}; "
                             f"it has {', '.join(self.entities)}")

    def _check_ops(self, ops: Iterable[WriteOp]) -> None:
        """Refuse (before anything is sent) ops no system could apply: a caller's bug."""
        for op in ops:
            self._check_entity(op.entity)
            if op.kind not in _WRITE_KINDS:
                raise ValueError(f"unknown write kind {op.kind!r} (create, update or delete)")
            if op.kind in ("update", "delete") and not op.id:
                raise ValueError(f"{_ARTICLE[op.kind]} {op.kind} of {op.entity} needs the id of "
                                 "the entity")
