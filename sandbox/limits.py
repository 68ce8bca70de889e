"""The request log, rate limits (fixed and sliding windows) and the bearer tokens an
emulator issues."""

from __future__ import annotations

import collections
import dataclasses
import datetime
import math
import secrets
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from typing import Any

from werkzeug.wrappers import Request

from sandbox.wire import UTC, format_timestamp


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
