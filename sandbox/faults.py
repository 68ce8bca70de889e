"""Injected faults (``POST /_sandbox/faults``): error statuses, latency, lost responses,
garbled answers and per-fault rate limits, and the verdict for one request."""

from __future__ import annotations

import dataclasses
import decimal
import random
import threading
from collections.abc import Mapping
from typing import Any

from werkzeug.wrappers import Response

from sandbox.limits import RateLimit, RateLimiter, RateStatus
from sandbox.validation import validation_error
from sandbox.wire import dumps, loads

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
