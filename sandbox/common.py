"""Machinery shared by every sandbox emulator.

An emulator is a WSGI application: a subclass of :class:`Emulator` that declares its routes,
its error vocabulary and its seed data, and implements the resource handlers. Everything that is
the same for every emulated API lives here, once:

* the request pipeline: faults, API-key check, rate limit, routing, error bodies, request log,
  and the dropped connection of a "lost response";
* the ``/_sandbox/*`` control endpoints (request log, faults, reset, raw records);
* a process-wide monotonic clock for modification timestamps;
* JSON that keeps :class:`~decimal.Decimal` numbers exact in both directions;
* declarative field validation (:class:`FieldSpec`);
* state persistence to one JSON file, flushed from a background thread.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import decimal
import hmac
import json
import logging
import math
import os
import random
import re
import secrets
import socket
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from werkzeug.wrappers import Request, Response

logger = logging.getLogger(__name__)

UTC = datetime.UTC
ONE_MICROSECOND = datetime.timedelta(microseconds=1)

#: Money, rates and quantities sent as decimal strings (the webshop's wire format).
DECIMAL_STRING = re.compile(r"^-?\d+(\.\d{1,4})?$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


# --------------------------------------------------------------------------------------------
# Timestamps


def format_timestamp(moment: datetime.datetime) -> str:
    """``2026-11-21T10:15:00.123456Z``: UTC, always six fractional digits, so that the text
    sorts exactly like the instant."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_timestamp(text: str) -> datetime.datetime:
    """Parse an ISO 8601 date-time (``Z`` or an offset; no offset means UTC) to aware UTC.

    Raises ``ValueError`` for anything else.
    """
    moment = datetime.datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


class MonotonicClock:
    """Hands out strictly increasing UTC instants: ``max(now, last + 1 µs)``.

    Every write of an emulator takes its timestamp here, so a reader that asks for rows modified
    since a timestamp it has seen never misses a later write, even when two writes fall in the
    same microsecond or the wall clock steps back.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last = datetime.datetime.min.replace(tzinfo=UTC)

    def observe(self, moment: datetime.datetime) -> None:
        """Make every later :meth:`tick` come strictly after ``moment``."""
        with self._lock:
            self._last = max(self._last, moment)

    def tick(self) -> datetime.datetime:
        with self._lock:
            self._last = max(datetime.datetime.now(UTC), self._last + ONE_MICROSECOND)
            return self._last

    @property
    def last(self) -> datetime.datetime:
        return self._last


# --------------------------------------------------------------------------------------------
# JSON with exact decimals


def dumps(value: Any) -> str:
    """Serialise JSON, writing :class:`~decimal.Decimal` as the exact number it holds.

    The standard encoder can only emit decimals by way of ``float`` (``199.50000000001``);
    ERP-style APIs send money as JSON numbers and must round-trip them exactly.
    """
    parts: list[str] = []
    _encode(value, parts.append)
    return "".join(parts)


def _encode(value: Any, out: Callable[[str], None]) -> None:
    if value is None:
        out("null")
    elif value is True:
        out("true")
    elif value is False:
        out("false")
    elif isinstance(value, str):
        out(json.dumps(value, ensure_ascii=False))
    elif isinstance(value, int):
        out(int.__repr__(value))
    elif isinstance(value, decimal.Decimal):
        if not value.is_finite():
            raise ValueError(f"cannot serialise {value} as JSON")
        out(format(value, "f"))
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"cannot serialise {value} as JSON")
        out(float.__repr__(value))
    elif isinstance(value, Mapping):
        out("{")
        for index, (key, item) in enumerate(value.items()):
            if index:
                out(",")
            out(json.dumps(str(key), ensure_ascii=False))
            out(":")
            _encode(item, out)
        out("}")
    elif isinstance(value, (list, tuple)):
        out("[")
        for index, item in enumerate(value):
            if index:
                out(",")
            _encode(item, out)
        out("]")
    else:
        raise TypeError(f"cannot serialise {type(value).__name__} as JSON")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def loads(data: bytes | str) -> Any:
    """Parse JSON with non-integer numbers as :class:`~decimal.Decimal` (never ``float``);
    ``NaN`` and ``Infinity`` are refused."""
    return json.loads(data, parse_float=decimal.Decimal, parse_constant=_reject_constant)


# --------------------------------------------------------------------------------------------
# Errors and validation


class ApiError(Exception):
    """A request the API refuses. ``kind`` names the error in the emulator's ``errors`` table,
    which gives the HTTP status and the wire code; ``details`` are ``(field, issue)`` pairs."""

    def __init__(
        self,
        kind: str,
        message: str,
        details: Sequence[tuple[str, str]] = (),
        *,
        status: int | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.details = list(details)
        self.status = status
        self.headers = dict(headers or {})


def validation_error(problems: Sequence[tuple[str, str]]) -> ApiError:
    """One ``validation_failed`` error listing every ``(field, issue)`` problem."""
    message = "; ".join(f"{field or 'body'}: {issue}" for field, issue in problems)
    return ApiError("validation_failed", message, problems)


@dataclasses.dataclass(frozen=True)
class FieldSpec:
    """One field of a resource, as the API accepts it in a request body.

    ``type`` is one of ``string``, ``integer``, ``number`` (JSON number), ``decimal`` (decimal
    string), ``date`` (``YYYY-MM-DD``), ``enum``, ``object`` (with ``fields``) or ``array`` (of
    objects with ``fields``). ``default`` is the value a created entity gets when the field is
    left out (for arrays, an empty list).
    """

    name: str
    type: str = "string"
    required: bool = False
    read_only: bool = False
    max_length: int | None = None
    pattern: str | None = None
    pattern_issue: str = ""
    choices: tuple[str, ...] = ()
    fields: tuple[FieldSpec, ...] = ()
    default: Any = None


def blank_entity(specs: Iterable[FieldSpec]) -> dict[str, Any]:
    """A new entity with every field at its default, in declaration order."""
    return {
        spec.name: ([] if spec.type == "array" else spec.default)
        for spec in specs
    }


def validate_fields(
    body: Mapping[str, Any], specs: Sequence[FieldSpec], *, partial: bool, prefix: str = ""
) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """Check a request body against ``specs``.

    Returns the accepted values and the problems as ``(dotted.field, issue)`` pairs, in body
    order, then missing required fields. ``partial`` (an update) does not require fields, but
    still refuses ``null`` for a required one. Objects inside a partial body are partial too;
    array items are always complete objects. ``null`` clears a field (an array becomes ``[]``).
    """
    by_name = {spec.name: spec for spec in specs}
    accepted: dict[str, Any] = {}
    problems: list[tuple[str, str]] = []
    for name, value in body.items():
        path = prefix + name
        spec = by_name.get(name)
        if spec is None:
            problems.append((path, "unknown field"))
        elif spec.read_only:
            problems.append((path, "read-only field"))
        elif value is None:
            if spec.required:
                problems.append((path, "must not be null"))
            else:
                accepted[name] = [] if spec.type == "array" else None
        else:
            checked, issues = _check_value(spec, value, path, partial)
            problems.extend(issues)
            if not issues:
                accepted[name] = checked
    if not partial:
        for spec in specs:
            if spec.required and spec.name not in body:
                problems.append((prefix + spec.name, "is required"))
    return accepted, problems


def _check_value(
    spec: FieldSpec, value: Any, path: str, partial: bool
) -> tuple[Any, list[tuple[str, str]]]:
    kind = spec.type
    if kind in ("string", "decimal", "date", "enum"):
        if not isinstance(value, str):
            return value, [(path, "must be a string")]
        if spec.max_length is not None and len(value) > spec.max_length:
            return value, [(path, f"must be at most {spec.max_length} characters")]
        if kind == "decimal" and not DECIMAL_STRING.match(value):
            return value, [(path, 'must be a decimal string like "199.00" (up to 4 decimals)')]
        if kind == "date" and not _is_date(value):
            return value, [(path, "must be a date YYYY-MM-DD")]
        if kind == "enum" and value not in spec.choices:
            return value, [(path, "must be one of " + ", ".join(spec.choices))]
        if spec.pattern and not re.search(spec.pattern, value):
            return value, [(path, spec.pattern_issue)]
        return value, []
    if kind == "integer":
        if isinstance(value, bool) or not isinstance(value, int):
            return value, [(path, "must be an integer")]
        return value, []
    if kind == "number":
        if isinstance(value, bool) or not isinstance(value, (int, decimal.Decimal)):
            return value, [(path, "must be a number")]
        return value, []
    if kind == "object":
        if not isinstance(value, dict):
            return value, [(path, "must be an object")]
        return validate_fields(value, spec.fields, partial=partial, prefix=path + ".")
    if kind == "array":
        if not isinstance(value, list):
            return value, [(path, "must be an array")]
        items: list[dict[str, Any]] = []
        problems: list[tuple[str, str]] = []
        for index, item in enumerate(value):
            if not isinstance(item, dict):
                problems.append((f"{path}.{index}", "must be an object"))
                continue
            checked, issues = validate_fields(
                item, spec.fields, partial=False, prefix=f"{path}.{index}."
            )
            items.append(checked)
            problems.extend(issues)
        return items, problems
    raise ValueError(f"unknown field type {kind!r}")


def _is_date(text: str) -> bool:
    if not _DATE.match(text):
        return False
    try:
        datetime.date.fromisoformat(text)
    except ValueError:
        return False
    return True


def parse_int_param(
    request: Request, name: str, default: int, minimum: int, maximum: int | None = None
) -> int:
    """An integer query parameter within bounds, or a ``validation_failed`` naming it."""
    raw = request.args.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise validation_error([(name, "must be an integer")]) from None
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
        raise validation_error([(name, f"must be {bound}")])
    return value


def parse_since_param(request: Request, name: str) -> str | None:
    """A date-time query parameter as a canonical timestamp string (comparable as text)."""
    raw = request.args.get(name)
    if raw is None:
        return None
    try:
        return format_timestamp(parse_timestamp(raw))
    except ValueError:
        raise validation_error([(name, "must be an ISO 8601 date-time")]) from None


def if_match_ok(header: str | None, version: int) -> bool:
    """RFC 9110 ``If-Match`` with strong comparison: absent, ``*`` or a listed ``"<version>"``."""
    if header is None:
        return True
    header = header.strip()
    if header == "*":
        return True
    return etag(version) in (tag.strip() for tag in header.split(","))


def etag(version: int) -> str:
    return f'"{version}"'


# --------------------------------------------------------------------------------------------
# Request log, rate limit, faults


class RequestLog:
    """Counts every API request since the last clear; keeps the last ``keep`` of them."""

    def __init__(self, keep: int = 1000) -> None:
        self._lock = threading.Lock()
        self._entries: deque[dict[str, Any]] = deque(maxlen=keep)
        self._count = 0
        self._by_method: Counter[str] = Counter()

    def record(self, method: str, path: str, status: int, *, lost: bool = False) -> None:
        entry: dict[str, Any] = {
            "method": method,
            "path": path,
            "status": status,
            "at": format_timestamp(datetime.datetime.now(UTC)),
        }
        if lost:
            entry["lost"] = True
        with self._lock:
            self._entries.append(entry)
            self._count += 1
            self._by_method[method] += 1

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._count = 0
            self._by_method.clear()

    def to_json(self) -> dict[str, Any]:
        with self._lock:
            return {
                "count": self._count,
                "by_method": dict(sorted(self._by_method.items())),
                "log": list(self._entries),
            }


@dataclasses.dataclass(frozen=True)
class RateLimit:
    """At most ``limit`` requests per ``window_s`` seconds for each caller.

    ``sliding``: any ``window_s`` seconds hold at most ``limit`` requests (Business Central's
    "6,000 per 5 minutes"); otherwise fixed windows that open with a caller's first request.
    """

    limit: int
    window_s: float
    sliding: bool = False

    def to_json(self) -> dict[str, Any]:
        window: float | int = (int(self.window_s) if self.window_s == int(self.window_s)
                               else self.window_s)
        return {"limit": self.limit, "window_s": window,
                **({"sliding": True} if self.sliding else {})}


@dataclasses.dataclass(frozen=True)
class RateStatus:
    """The outcome of one request against a :class:`RateLimiter`."""

    allowed: bool
    limit: int
    remaining: int
    reset_s: float

    def headers(self) -> dict[str, str]:
        reset = str(max(1, math.ceil(self.reset_s)))
        headers = {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": reset,
        }
        if not self.allowed:
            headers["Retry-After"] = reset
        return headers


class BearerTokens:
    """The access tokens an emulator's token endpoint issued, each valid until it expires."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._expiry: dict[str, float] = {}

    def issue(self, prefix: str, lifetime_s: float) -> str:
        """A new random token (``prefix`` makes it look like the real API's)."""
        token = prefix + secrets.token_urlsafe(32)
        with self._lock:
            self._expiry[token] = self._clock() + lifetime_s
        return token

    def accepts(self, request: Request) -> bool:
        """Whether ``request`` carries ``Authorization: Bearer`` with a live token."""
        header = request.headers.get("Authorization", "")
        if not header.startswith("Bearer "):
            return False
        with self._lock:
            expires = self._expiry.get(header[len("Bearer "):])
        return expires is not None and expires > self._clock()

    def expire_all(self) -> int:
        """Every token issued so far stops working; returns how many there were."""
        with self._lock:
            count = len(self._expiry)
            self._expiry.clear()
        return count


class RateLimiter:
    """Windows per key, fixed or sliding as the rule says. A fixed window opens with the key's
    first request and admits ``limit`` requests until it ends; a sliding one admits a request
    while fewer than ``limit`` were admitted in the ``window_s`` seconds before it. Refused
    requests do not count."""

    def __init__(self, rule: RateLimit, clock: Callable[[], float] = time.monotonic) -> None:
        self.rule = rule
        self._clock = clock
        self._lock = threading.Lock()
        self._windows: dict[str, tuple[float, int]] = {}
        self._admitted: dict[str, collections.deque] = {}

    def hit(self, key: str) -> RateStatus:
        if self.rule.sliding:
            return self._hit_sliding(key)
        with self._lock:
            now = self._clock()
            start, used = self._windows.get(key, (now, 0))
            if now - start >= self.rule.window_s:
                start, used = now, 0
            reset_s = start + self.rule.window_s - now
            if used >= self.rule.limit:
                return RateStatus(False, self.rule.limit, 0, reset_s)
            used += 1
            self._windows[key] = (start, used)
            return RateStatus(True, self.rule.limit, self.rule.limit - used, reset_s)

    def _hit_sliding(self, key: str) -> RateStatus:
        with self._lock:
            now = self._clock()
            admitted = self._admitted.setdefault(key, collections.deque())
            while admitted and now - admitted[0] >= self.rule.window_s:
                admitted.popleft()
            if len(admitted) >= self.rule.limit:
                return RateStatus(False, self.rule.limit, 0,
                                  admitted[0] + self.rule.window_s - now)
            admitted.append(now)
            reset_s = admitted[0] + self.rule.window_s - now
            return RateStatus(True, self.rule.limit, self.rule.limit - len(admitted), reset_s)


#: Statuses ``POST /_sandbox/faults`` may inject, and the error kind each is reported as.
FAULT_STATUSES: Mapping[int, str] = {
    429: "rate_limited",
    500: "internal",
    502: "unavailable",
    503: "unavailable",
    504: "unavailable",
}
_FAULT_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
_MAX_LATENCY_MS = 60_000

#: What a ``corrupt`` fault does to the answer of a matching request: the garbled pages,
#: envelopes and error pages that real systems (or the proxies in front of them) send.
CORRUPTIONS: Mapping[str, str] = {
    "truncated_json": "the JSON body cut off halfway, status kept",
    "html_200": "an HTML page with status 200 (a login or maintenance page)",
    "html_502": "an HTML Bad Gateway page with status 502 (a proxy)",
    "empty_200": "status 200 with an empty body",
    "not_an_object": "the JSON body wrapped in an array",
    "missing_list": "the JSON object without its list members (no rows, no envelope)",
    "list_not_array": "each list member of the JSON object turned into an object",
    "junk_rows": "rows that are not objects appended to each list member",
}
#: the rows ``junk_rows`` appends: text, a number, null, an array
JUNK_ROWS: tuple[Any, ...] = ("not a row", 42, None, ["a", "list"])
_HTML_PAGE = ("<!DOCTYPE html><html><head><title>{title}</title></head><body><h1>{title}</h1>"
              "<p>The server is temporarily unable to service your request.</p></body></html>")


@dataclasses.dataclass(frozen=True)
class Corruption:
    """A ``corrupt`` fault: answers to ``method path`` (the exact path) garbled as ``kind``."""

    path: str
    kind: str
    method: str = "GET"

    def matches(self, method: str, path: str) -> bool:
        return (method == "HEAD" and self.method == "GET" or method == self.method) and \
            path == self.path

    def apply(self, response: Response) -> Response:
        if self.kind in ("html_200", "html_502"):
            status = 200 if self.kind == "html_200" else 502
            title = "Service Unavailable" if status == 200 else "502 Bad Gateway"
            return Response(_HTML_PAGE.format(title=title), status=status,
                            content_type="text/html; charset=utf-8")
        if self.kind == "empty_200":
            return Response(b"", status=200, content_type="application/json")
        body = response.get_data()
        if self.kind == "truncated_json":
            data: bytes | str = body[:len(body) // 2]
        else:
            data = dumps(self._reshape(loads(body)))
        return Response(data, status=response.status_code, headers=dict(response.headers))

    def _reshape(self, body: Any) -> Any:
        if self.kind == "not_an_object" or not isinstance(body, dict):
            return [body]
        if self.kind == "missing_list":
            return {key: value for key, value in body.items() if not isinstance(value, list)}
        if self.kind == "list_not_array":
            return {key: ({str(i): item for i, item in enumerate(value)}
                          if isinstance(value, list) else value) for key, value in body.items()}
        return {key: (value + list(JUNK_ROWS) if isinstance(value, list) else value)
                for key, value in body.items()}

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "kind": self.kind, "method": self.method}


def _parse_corruptions(value: Any) -> tuple[Corruption, ...] | None:
    """The ``corrupt`` rules of a faults body; ``None`` when malformed."""
    if not isinstance(value, list):
        return None
    rules = []
    for item in value:
        if not isinstance(item, dict) or not {"path", "kind"} <= set(item) <= {
                "path", "kind", "method"}:
            return None
        path, kind, method = item["path"], item["kind"], item.get("method", "GET")
        if not isinstance(path, str) or not path.startswith("/") or kind not in CORRUPTIONS \
                or not isinstance(method, str) or method.upper() not in _FAULT_METHODS:
            return None
        rules.append(Corruption(path, kind, method.upper()))
    return tuple(rules)


@dataclasses.dataclass(frozen=True)
class FaultSettings:
    """What ``POST /_sandbox/faults`` turned on. The default value is "no faults"."""

    error_rate: float = 0.0
    status: int = 503
    latency_ms: float = 0
    lost_response_rate: float = 0.0
    rate_limit: RateLimit | None = None
    seed: int | None = None
    only: tuple[str, ...] = ()
    corrupt: tuple[Corruption, ...] = ()

    def corruption(self, method: str, path: str) -> Corruption | None:
        """The ``corrupt`` rule for a request (every matching request, not a random share)."""
        return next((rule for rule in self.corrupt if rule.matches(method, path)), None)

    def applies_to(self, method: str) -> bool:
        if method == "HEAD":
            method = "GET"
        return not self.only or method in self.only

    def to_json(self) -> dict[str, Any]:
        return {
            "error_rate": self.error_rate,
            "status": self.status,
            "latency_ms": self.latency_ms,
            "lost_response_rate": self.lost_response_rate,
            "rate_limit": self.rate_limit.to_json() if self.rate_limit else None,
            "seed": self.seed,
            "only": list(self.only) or None,
            "corrupt": [rule.to_json() for rule in self.corrupt] or None,
        }

    @classmethod
    def parse(cls, body: Any, system_limit: RateLimit) -> FaultSettings:
        """Read a faults request body; ``rate_limit: true`` means ``system_limit``.

        Raises a ``validation_failed`` :class:`ApiError` naming every bad field.
        """
        if not isinstance(body, dict):
            raise validation_error([("", "request body must be a JSON object")])
        problems: list[tuple[str, str]] = []
        values: dict[str, Any] = {}
        for name, value in body.items():
            if name in ("error_rate", "lost_response_rate"):
                if not _is_number(value) or not 0 <= value <= 1:
                    problems.append((name, "must be a number from 0 to 1"))
                else:
                    values[name] = float(value)
            elif name == "latency_ms":
                if not _is_number(value) or not 0 <= value <= _MAX_LATENCY_MS:
                    problems.append((name, f"must be a number from 0 to {_MAX_LATENCY_MS}"))
                else:
                    values[name] = value if isinstance(value, int) else float(value)
            elif name == "status":
                if isinstance(value, bool) or value not in FAULT_STATUSES:
                    allowed = ", ".join(str(status) for status in FAULT_STATUSES)
                    problems.append((name, f"must be one of {allowed}"))
                else:
                    values[name] = value
            elif name == "seed":
                if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                    problems.append((name, "must be an integer"))
                else:
                    values[name] = value
            elif name == "only":
                if not isinstance(value, list) or not all(
                    isinstance(method, str) and method.upper() in _FAULT_METHODS
                    for method in value
                ):
                    problems.append(
                        (name, "must be a list of HTTP methods: " + ", ".join(_FAULT_METHODS))
                    )
                else:
                    values[name] = tuple(dict.fromkeys(method.upper() for method in value))
            elif name == "corrupt":
                rules = _parse_corruptions(value)
                if rules is None:
                    problems.append((name, 'must be a list of {"path": "/api/...", "kind": '
                                           f'one of {", ".join(CORRUPTIONS)}, "method": "GET"}}'))
                else:
                    values[name] = rules
            elif name == "rate_limit":
                rule = _parse_rate_limit(value, system_limit)
                if rule is False:
                    problems.append(
                        (name,
                         'must be true, false or {"limit": <int >= 1>, "window_s": <number > 0>}')
                    )
                else:
                    values[name] = rule
            else:
                problems.append((name, "unknown field"))
        if problems:
            raise validation_error(problems)
        return cls(**values)


def _is_number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float, decimal.Decimal))


def _parse_rate_limit(value: Any, system_limit: RateLimit) -> RateLimit | None | bool:
    """The rate limit a faults body asks for; ``False`` when the value is malformed."""
    if value is True:
        return system_limit
    if value is False or value is None:
        return None
    if not isinstance(value, dict) or not {"limit", "window_s"} <= set(value) <= {
            "limit", "window_s", "sliding"}:
        return False
    limit, window = value["limit"], value["window_s"]
    sliding = value.get("sliding", system_limit.sliding)
    if not isinstance(sliding, bool):
        return False
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        return False
    if not _is_number(window) or window <= 0:
        return False
    return RateLimit(limit, float(window), sliding=sliding)


@dataclasses.dataclass(frozen=True)
class Verdict:
    """What the active faults do to one request."""

    latency_s: float = 0.0
    fail_status: int | None = None
    lose_response: bool = False


class Faults:
    """The active :class:`FaultSettings` with their random source and rate limiter.

    Each request the settings apply to draws two numbers from a ``random.Random(seed)``, one for
    the error and one for the lost response, so the n-th request's fate depends only on the seed.
    """

    def __init__(self, default_seed: int) -> None:
        self._default_seed = default_seed
        self._lock = threading.Lock()
        self.configure(FaultSettings())

    def configure(self, settings: FaultSettings) -> None:
        with self._lock:
            self.settings = settings
            seed = settings.seed if settings.seed is not None else self._default_seed
            self._random = random.Random(seed)
            self._limiter = RateLimiter(settings.rate_limit) if settings.rate_limit else None

    def judge(self, method: str) -> Verdict:
        with self._lock:
            settings = self.settings
            if not settings.applies_to(method):
                return Verdict()
            error_draw, lost_draw = self._random.random(), self._random.random()
        return Verdict(
            latency_s=settings.latency_ms / 1000,
            fail_status=settings.status if error_draw < settings.error_rate else None,
            lose_response=lost_draw < settings.lost_response_rate,
        )

    def admit(self, key: str, method: str) -> RateStatus | None:
        """Count a request against the rate limit; ``None`` when no limit applies to it."""
        with self._lock:
            limiter = self._limiter if self.settings.applies_to(method) else None
        return limiter.hit(key) if limiter else None


# --------------------------------------------------------------------------------------------
# Persistence


class StateFile:
    """An emulator's state as one JSON file, written atomically (temp file + ``os.replace``).

    Writes only mark the state dirty; a background thread flushes it at most every
    ``interval_s`` seconds, so a write costs O(1) however large the state is. :meth:`stop`
    flushes what is left.
    """

    def __init__(
        self, path: Path, snapshot: Callable[[], Mapping[str, Any]], interval_s: float = 0.5
    ) -> None:
        self.path = path
        self._snapshot = snapshot
        self._interval_s = interval_s
        self._dirty = threading.Event()
        self._stopping = threading.Event()
        self._flush_lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def load(self) -> dict[str, Any] | None:
        if not self.path.exists():
            return None
        return loads(self.path.read_bytes())

    def mark_dirty(self) -> None:
        self._dirty.set()

    def start(self) -> None:
        self._stopping.clear()
        self._thread = threading.Thread(
            target=self._run, name=f"sandbox-state-{self.path.stem}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self.flush()

    def flush(self) -> None:
        with self._flush_lock:
            if not self._dirty.is_set():
                return
            self._dirty.clear()
            text = dumps(self._snapshot())
            self.path.parent.mkdir(parents=True, exist_ok=True)
            temporary = self.path.with_name(self.path.name + ".tmp")
            temporary.write_text(text, encoding="utf-8")
            os.replace(temporary, self.path)

    def _run(self) -> None:
        while not self._stopping.wait(self._interval_s):
            try:
                self.flush()
            except Exception:  # keep flushing later writes even if one flush failed
                logger.exception("could not write sandbox state to %s", self.path)


# --------------------------------------------------------------------------------------------
# Routing


@dataclasses.dataclass(frozen=True)
class Route:
    """``method`` + OpenAPI-style ``template`` (``/customers/{id}``) → handler method name,
    called with the path parameters and the fixed keyword arguments ``args``."""

    method: str
    template: str
    handler: str
    args: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def pattern(self) -> re.Pattern[str]:
        regex = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(self.template))
        return re.compile(f"^{regex}$")


class Router:
    """Matches a method and path against :class:`Route` templates."""

    def __init__(self, routes: Iterable[Route]) -> None:
        self._routes = [(route, route.pattern()) for route in routes]

    def match(self, method: str, path: str) -> tuple[Route, dict[str, str]]:
        """The route and path parameters; ``not_found`` or ``method_not_allowed`` otherwise."""
        if method == "HEAD":
            method = "GET"
        allowed: list[str] = []
        for route, pattern in self._routes:
            found = pattern.match(path)
            if found is None:
                continue
            if route.method == method:
                return route, {**route.args, **found.groupdict()}
            allowed.append(route.method)
        if allowed:
            raise ApiError(
                "method_not_allowed",
                f"{method} is not allowed on {path}",
                headers={"Allow": ", ".join(allowed)},
            )
        raise ApiError("not_found", f"no such endpoint: {path}")


CONTROL_ROUTES: tuple[Route, ...] = (
    Route("GET", "/_sandbox/requests", "control_requests"),
    Route("DELETE", "/_sandbox/requests", "control_clear_requests"),
    Route("GET", "/_sandbox/faults", "control_faults"),
    Route("POST", "/_sandbox/faults", "control_set_faults"),
    Route("POST", "/_sandbox/reset", "control_reset"),
    Route("POST", "/_sandbox/raw/{resource}", "control_raw"),
)


class ResponseLost(ConnectionAbortedError):
    """Raised to the WSGI server after a lost response's connection was dropped; the server
    treats it as a connection the client went away from and writes nothing."""


def drop_connection(environ: Mapping[str, Any]) -> None:
    """Close the client's TCP connection without a response, then raise :class:`ResponseLost`."""
    connection: socket.socket | None = environ.get("werkzeug.socket")
    if connection is not None:
        try:
            connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        connection.close()
    raise ResponseLost("sandbox fault: response dropped")


# --------------------------------------------------------------------------------------------
# The emulator base


@dataclasses.dataclass
class Row:
    """One stored entity (wire-format dict) with its version, the number its ETag carries."""

    version: int
    entity: dict[str, Any]


class Emulator:
    """Base of every emulator: a thread-safe WSGI app over in-memory, persisted collections.

    A subclass declares:

    * ``system``, ``api_prefix`` (``/api/v1``), ``timestamp_field``, ``key_fields``
      (resource → key field of its entities) and ``singular`` (resource → noun for messages),
    * ``system_rate_limit``: what ``rate_limit: true`` turns on,
    * ``errors``: error kind → ``(status, wire code)``; the kinds used here are
      ``unauthorized``, ``not_found``, ``method_not_allowed``, ``validation_failed``,
      ``precondition_failed``, ``conflict``, ``rate_limited``, ``internal`` and ``unavailable``,
    * ``routes``: its API as :class:`Route` values relative to ``api_prefix``; handlers are
      methods called as ``handler(request, **path_params)`` with the emulator lock held and
      returning a :class:`Response` (or raising :class:`ApiError`),

    and implements :meth:`authenticate`, :meth:`error_body`, :meth:`seed_collections` and
    :meth:`initial_counters` (and, if it has one, :meth:`challenge_headers`).

    One lock (``self.lock``) serialises every handler, so a request sees and leaves the state
    consistent. Faults, latency and the rate limit are applied outside it. A stored entity dict
    is never changed in place: a write stores a new dict (see :meth:`commit`), which is what lets
    the state be serialised outside the lock.
    """

    system: ClassVar[str]
    api_prefix: ClassVar[str]
    timestamp_field: ClassVar[str]
    key_fields: ClassVar[Mapping[str, str]]
    singular: ClassVar[Mapping[str, str]]
    system_rate_limit: ClassVar[RateLimit]
    errors: ClassVar[Mapping[str, tuple[int, str]]]
    routes: ClassVar[tuple[Route, ...]]

    #: State file layout version, checked on load.
    STATE_FORMAT = 1

    def __init__(self, *, api_key: str, seed: int,
                 state_path: os.PathLike[str] | str | None = None):
        self.api_key = api_key
        self.seed = seed
        self.lock = threading.RLock()
        self.clock = MonotonicClock()
        self.log = RequestLog()
        self.faults = Faults(default_seed=seed)
        self._router = Router(self.routes)
        self._control_router = Router(CONTROL_ROUTES)
        self.collections: dict[str, dict[str, Row]] = {}
        self.counters: dict[str, int] = {}
        self.idempotency: dict[str, dict[str, dict[str, Any]]] = {}
        self._state = StateFile(Path(state_path), self._snapshot) if state_path else None
        saved = self._state.load() if self._state else None
        if saved is None:
            self._seed()
        else:
            self._restore(saved)

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Start flushing state in the background (no-op without a state file)."""
        if self._state:
            self._state.start()

    def close(self) -> None:
        """Stop the background flush and write the state one last time."""
        if self._state:
            self._state.stop()

    # -- subclass hooks -------------------------------------------------------------------

    def authenticate(self, request: Request) -> bool:
        """Whether the request carries this emulator's API key."""
        raise NotImplementedError

    def rate_key(self, request: Request) -> str:
        """Who a request counts against under the rate limit: the API key, unless the API
        limits each token (or user) on its own."""
        return self.api_key

    def error_body(self, code: str, message: str, details: Sequence[tuple[str, str]]) -> Any:
        """The API's error body for a wire ``code``."""
        raise NotImplementedError

    def seed_collections(self) -> Mapping[str, list[dict[str, Any]]]:
        """The seed entities per resource, complete with timestamps (a function of ``seed``)."""
        raise NotImplementedError

    def initial_counters(self) -> dict[str, int]:
        """Counters of server-assigned keys, derived from the collections just seeded."""
        raise NotImplementedError

    # -- state ----------------------------------------------------------------------------

    def _seed(self) -> None:
        self.collections = {
            resource: {entity[self.key_fields[resource]]: Row(1, entity) for entity in entities}
            for resource, entities in self.seed_collections().items()
        }
        self.counters = self.initial_counters()
        self.idempotency = {}
        self._observe_timestamps()
        self._changed()

    def _restore(self, saved: Mapping[str, Any]) -> None:
        if saved.get("format") != self.STATE_FORMAT or saved.get("system") != self.system:
            raise ValueError(f"not a format-{self.STATE_FORMAT} {self.system} sandbox state file")
        self.collections = {
            resource: {
                row.get("key", row["entity"].get(self.key_fields[resource])):
                    Row(row["version"], row["entity"])
                for row in rows
            }
            for resource, rows in saved["collections"].items()
        }
        self.counters = dict(saved["counters"])
        self.idempotency = {resource: dict(keys) for resource, keys in saved["idempotency"].items()}
        self.clock.observe(parse_timestamp(saved["clock"]))
        self._observe_timestamps()

    def _observe_timestamps(self) -> None:
        for rows in self.collections.values():
            for row in rows.values():
                try:
                    self.clock.observe(parse_timestamp(row.entity.get(self.timestamp_field)))
                except (TypeError, ValueError):
                    pass  # a raw record's missing or broken timestamp (/_sandbox/raw)

    def _snapshot(self) -> dict[str, Any]:
        """The persistent state; taken under the lock, serialised by the caller outside it."""
        with self.lock:
            self._expire_idempotency_keys()
            return {
                "format": self.STATE_FORMAT,
                "system": self.system,
                "seed": self.seed,
                "clock": format_timestamp(self.clock.last),
                "counters": dict(self.counters),
                "collections": {
                    resource: [{"key": key, "version": row.version, "entity": row.entity}
                               for key, row in rows.items()]
                    for resource, rows in self.collections.items()
                },
                "idempotency": {resource: dict(keys) for resource,
                                keys in self.idempotency.items()},
            }

    def _changed(self) -> None:
        if self._state:
            self._state.mark_dirty()

    def commit(self, resource: str, key: str, entity: dict[str, Any]) -> Row:
        """Store a created or changed entity: next version, next timestamp, state marked dirty.

        ``entity`` must be a new dict (never the stored one changed in place).
        """
        previous = self.collections[resource].get(key)
        entity[self.timestamp_field] = format_timestamp(self.clock.tick())
        row = Row(previous.version + 1 if previous else 1, entity)
        self.collections[resource][key] = row
        self._changed()
        return row

    def row(self, resource: str, key: str) -> Row:
        """The stored row, or ``not_found``."""
        row = self.collections[resource].get(key)
        if row is None:
            raise ApiError("not_found", f"no {self.singular[resource]} {key}")
        return row

    def check_if_match(self, resource: str, key: str, row: Row, header: str | None) -> None:
        """Raise ``precondition_failed`` unless ``header`` (an ``If-Match`` value) matches."""
        if not if_match_ok(header, row.version):
            raise ApiError(
                "precondition_failed",
                f"{self.singular[resource]} {key} is at version {etag(row.version)}; "
                "If-Match does not match",
            )

    def remove(self, resource: str, key: str) -> None:
        del self.collections[resource][key]
        self._changed()

    def ordered_rows(
        self, resource: str, since: str | None = None, after: tuple[str, str] | None = None
    ) -> list[Row]:
        """Rows ordered by (timestamp, key), from ``since`` (inclusive) and after ``after``."""
        return [row for _, row in self.keyed_rows(resource, since, after)]

    def keyed_rows(
        self, resource: str, since: str | None = None, after: tuple[str, str] | None = None
    ) -> list[tuple[tuple[str, str], Row]]:
        """:meth:`ordered_rows` with each row's (timestamp, key): where a page after it starts."""
        # Rows stored through /_sandbox/raw may lack a timestamp (or hold one that is not
        # text): they sort first and only a full read (no ``since``) returns them.
        ts_field = self.timestamp_field
        keyed = []
        for key, row in self.collections[resource].items():
            stamp = row.entity.get(ts_field)
            sort_key = (stamp if isinstance(stamp, str) else "", key)
            if (since is None or sort_key[0] >= since) and (after is None or sort_key > after):
                keyed.append((sort_key, row))
        keyed.sort(key=lambda item: item[0])
        return keyed

    # Idempotency keys: resource → key → {"id": entity key, "at": epoch seconds}. Kept 24 hours.

    IDEMPOTENCY_TTL_S = 24 * 3600

    def remembered(self, resource: str, idempotency_key: str) -> str | None:
        """The entity key a create with this idempotency key made, if within the TTL."""
        entry = self.idempotency.get(resource, {}).get(idempotency_key)
        if entry is None or time.time() - entry["at"] > self.IDEMPOTENCY_TTL_S:
            return None
        return entry["id"]

    def remember(self, resource: str, idempotency_key: str, key: str) -> None:
        self.idempotency.setdefault(resource, {})[idempotency_key] = {
            "id": key,
            "at": int(time.time()),
        }
        self._changed()

    def _expire_idempotency_keys(self) -> None:
        horizon = time.time() - self.IDEMPOTENCY_TTL_S
        for keys in self.idempotency.values():
            for stale in [key for key, entry in keys.items() if entry["at"] < horizon]:
                del keys[stale]

    # -- responses ------------------------------------------------------------------------

    def respond(
        self, status: int, body: Any = None, headers: Mapping[str, str] | None = None
    ) -> Response:
        if status == 204:
            return Response(status=204, headers=dict(headers or {}))
        return Response(
            dumps(body),
            status=status,
            headers=dict(headers or {}),
            content_type="application/json; charset=utf-8",
        )

    def entity_response(
        self, status: int, row: Row, headers: Mapping[str, str] | None = None
    ) -> Response:
        return self.respond(status, row.entity, {"ETag": etag(row.version), **(headers or {})})

    def error_status(self, error: ApiError) -> int:
        return error.status or self.errors[error.kind][0]

    def error_payload(self, error: ApiError) -> Any:
        return self.error_body(self.errors[error.kind][1], error.message, error.details)

    def error_response(self, error: ApiError) -> Response:
        return self.respond(self.error_status(error), self.error_payload(error), error.headers)

    @staticmethod
    def json_body(request: Request) -> dict[str, Any]:
        """The request body as a JSON object, or ``validation_failed``."""
        try:
            body = loads(request.get_data())
        except ValueError:
            raise validation_error([("", "request body is not valid JSON")]) from None
        if not isinstance(body, dict):
            raise validation_error([("", "request body must be a JSON object")])
        return body

    # -- the WSGI pipeline ----------------------------------------------------------------

    def __call__(self, environ: dict[str, Any], start_response: Callable[...,
                                                                         Any]) -> Iterable[bytes]:
        request = Request(environ)
        if request.path.startswith("/_sandbox/"):
            return self._control(request)(environ, start_response)
        response, lost = self._serve(request)
        corruption = self.faults.settings.corruption(request.method, request.path)
        if corruption is not None:
            response = corruption.apply(response)
        self.log.record(request.method, request.path, response.status_code, lost=lost)
        if lost:
            drop_connection(environ)
        return response(environ, start_response)

    def _serve(self, request: Request) -> tuple[Response, bool]:
        """Apply faults, auth and the rate limit, then the handler. Returns the response and
        whether it is to be lost."""
        verdict = self.faults.judge(request.method)
        if verdict.latency_s:
            time.sleep(verdict.latency_s)
        if verdict.fail_status is not None:  # fails before anything is done, and is not also lost
            status = verdict.fail_status
            error = ApiError(
                FAULT_STATUSES[status],
                f"sandbox fault: injected {status}",
                status=status,
                headers={"Retry-After": "1"} if status == 429 else None,
            )
            return self.error_response(error), False
        rate: RateStatus | None = None
        try:
            if not self.authenticate(request):
                raise ApiError("unauthorized", "missing or invalid API key")
            rate = self.faults.admit(self.rate_key(request), request.method)
            if rate is not None and not rate.allowed:
                raise ApiError(
                    "rate_limited",
                    f"rate limit of {rate.limit} requests exceeded; retry later",
                )
            response = self._dispatch(request)
        except ApiError as error:
            response = self.error_response(error)
        except Exception:
            logger.exception("%s: unhandled error in %s %s", self.system, request.method,
                             request.path)
            response = self.error_response(ApiError("internal", "unexpected server error"))
        if rate is not None:
            response.headers.update(rate.headers())
        if response.status_code == 401:
            response.headers.update(self.challenge_headers())
        return response, verdict.lose_response

    def challenge_headers(self) -> Mapping[str, str]:
        """Headers added to every 401 (e.g. ``WWW-Authenticate``)."""
        return {}

    def _dispatch(self, request: Request) -> Response:
        path = request.path
        if not (path == self.api_prefix or path.startswith(self.api_prefix + "/")):
            raise ApiError("not_found", f"no such endpoint: {path}")
        route, params = self._router.match(request.method, path[len(self.api_prefix):] or "/")
        with self.lock:
            return getattr(self, route.handler)(request, **params)

    # -- control endpoints (never faulted, rate limited, logged or authenticated) ----------

    def _control(self, request: Request) -> Response:
        try:
            route, params = self._control_router.match(request.method, request.path)
            return getattr(self, route.handler)(request, **params)
        except ApiError as error:
            return self.error_response(error)

    def control_requests(self, request: Request) -> Response:
        return self.respond(200, self.log.to_json())

    def control_clear_requests(self, request: Request) -> Response:
        self.log.clear()
        return self.respond(204)

    def control_faults(self, request: Request) -> Response:
        return self.respond(200, self.faults.settings.to_json())

    def control_set_faults(self, request: Request) -> Response:
        try:
            body = loads(request.get_data() or b"{}")
        except ValueError:
            raise validation_error([("", "request body is not valid JSON")]) from None
        settings = FaultSettings.parse(body, self.system_rate_limit)
        self.faults.configure(settings)
        return self.respond(200, settings.to_json())

    def control_reset(self, request: Request) -> Response:
        with self.lock:
            self._seed()
            counts = {resource: len(rows) for resource, rows in self.collections.items()}
        self.log.clear()
        self.faults.configure(FaultSettings())
        return self.respond(200, {"reset": True, "counts": counts})


    def control_raw(self, request: Request, resource: str) -> Response:
        """Store records exactly as given, without the API's validation: data the system holds
        although its own API would refuse it (imports, old versions, direct database edits).

        The body is a JSON array of objects. A record is stored under its key field when that
        is non-empty text, else under a generated ``raw-N`` key; its timestamp is kept as
        given (parseable ones move the emulator's clock past them).
        """
        if resource not in self.key_fields:
            raise ApiError("not_found", f"no resource {resource}")
        try:
            records = loads(request.get_data())
        except ValueError:
            raise validation_error([("", "request body is not valid JSON")]) from None
        if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
            raise validation_error([("", "request body must be a JSON array of objects")])
        keys = []
        with self.lock:
            rows = self.collections[resource]
            for record in records:
                key = record.get(self.key_fields[resource])
                if not isinstance(key, str) or not key:
                    key = f"raw-{len(rows) + 1}"
                    while key in rows:
                        key += "+"
                previous = rows.get(key)
                rows[key] = Row(previous.version + 1 if previous else 1, dict(record))
                keys.append(key)
            self._observe_timestamps()
            self._changed()
        return self.respond(200, {"stored": keys})


def constant_time_equal(presented: str | None, expected: str) -> bool:
    """Compare a presented secret in constant time (no timing hint of how much matched)."""
    return presented is not None and hmac.compare_digest(presented.encode(), expected.encode())
