"""What the HTTP layer says and remembers while a system does not answer.

A system that accepts connections but never answers costs a read timeout per attempt, and a
request retries. Without this module such a run is silent for minutes, and every pair of the
run waits through the same retries again. Here:

- :class:`StillWaiting` says on the progress logger, every ``_STILL_WAITING_S`` seconds of a
  request (its attempts and the waits between them), that it is still waiting: a request is
  never silent for longer than that, whatever its timeouts.
- :class:`UnreachableSystems` remembers, for ``_REMEMBER_S`` seconds, a system whose request
  got no answer through all its retries; the other requests to that system (the run's other
  pairs) then fail at once with the same :class:`~connectors.errors.UnreachableError` instead of
  waiting through their own retries. It is per process: the pairs of a local run
  (FnApiRunner, in one process) share it; with several worker processes (DirectRunner
  ``multi_processing``, Dataflow) each process finds the outage once for itself.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Callable

from connectors.base import PROGRESS_LOGGER
from connectors.errors import UnreachableError

#: a request in flight says it is still waiting this often (the longest silence of a request)
_STILL_WAITING_S = 10.0
#: how long a system that did not answer is not asked again by this process
_REMEMBER_S = 120.0

progress = logging.getLogger(PROGRESS_LOGGER)


class PendingRequest:
    """One request of :class:`~connectors.http.HttpClient` while it is in flight: what it is
    (without query string), how many attempts it may make, which one it is on."""

    def __init__(self, system: str, method: str, path: str, attempts: int, started: float):
        self.system = system
        self.what = f"{method} {path.split('?', 1)[0]}"
        self.attempts = attempts
        self.attempt = 1
        self.started = started
        self.next_line = started + _STILL_WAITING_S

    def still_waiting(self, now: float) -> str:
        return (f"{self.system}: {self.what}: still waiting after {now - self.started:.0f} s "
                f"(attempt {self.attempt}/{self.attempts})")

    def retrying(self, failure: str, wait: float) -> str:
        return (f"{self.system}: {self.what} {failure} (attempt {self.attempt}/"
                f"{self.attempts}); retrying in {wait:.1f} s")


class StillWaiting:
    """Says which requests are still in flight, each at most ``every_s`` seconds after the last
    line about it (see :class:`PendingRequest`).

    One daemon thread per process does the saying (started with the first request); with
    ``background=False`` nothing runs by itself and :meth:`check` is called by the caller (tests
    that move a fake clock).
    """

    def __init__(self, every_s: float = _STILL_WAITING_S,
                 clock: Callable[[], float] = time.monotonic, background: bool = True):
        self._every = every_s
        self._clock = clock
        self._background = background
        self._lock = threading.Condition()
        self._pending: set[PendingRequest] = set()
        self._changed = False
        #: when the thread wakes next (a request due earlier wakes it at once)
        self._wake_at = math.inf
        self._thread_pid: int | None = None

    def clock(self) -> float:
        return self._clock()

    def watch(self, request: PendingRequest) -> None:
        with self._lock:
            request.next_line = request.started + self._every
            self._pending.add(request)
            if request.next_line < self._wake_at:
                self._wake_at = request.next_line
                self._changed = True
                self._lock.notify()
            if self._background and self._thread_pid != os.getpid():   # none yet, or forked
                self._thread_pid = os.getpid()
                threading.Thread(target=self._run, name="talksync-still-waiting",
                                 daemon=True).start()

    def done(self, request: PendingRequest) -> None:
        with self._lock:
            self._pending.discard(request)

    def said(self, request: PendingRequest, line: str) -> None:
        """Says ``line`` about ``request`` (a retry); its next still-waiting line comes later."""
        with self._lock:
            request.next_line = self._clock() + self._every
        progress.info("%s", line)

    def check(self) -> float | None:
        """Says the lines that are due; returns the seconds until the next one (None: idle)."""
        now = self._clock()
        with self._lock:
            due = [r for r in self._pending if r.next_line <= now]
            lines = [r.still_waiting(now) for r in due]
            for request in due:
                request.next_line = now + self._every
            upcoming = min((r.next_line for r in self._pending), default=math.inf)
            self._wake_at = upcoming
        for line in lines:
            progress.info("%s", line)
        return None if upcoming == math.inf else max(0.0, upcoming - now)

    def _run(self) -> None:
        while True:
            wait = self.check()
            with self._lock:
                if not self._changed:
                    self._lock.wait(wait)
                self._changed = False


class UnreachableSystems:
    """Systems, keyed by (name, base URL), whose request got no answer through its retries,
    each remembered for ``remember_s`` seconds or until one of its requests is answered."""

    def __init__(self, remember_s: float = _REMEMBER_S,
                 clock: Callable[[], float] = time.monotonic):
        self._remember = remember_s
        self._clock = clock
        self._lock = threading.Lock()
        self._found: dict[tuple[str, str], tuple[float, UnreachableError]] = {}

    def found(self, key: tuple[str, str], error: UnreachableError) -> None:
        with self._lock:
            self._found[key] = (self._clock(), error)

    def answered(self, key: tuple[str, str]) -> None:
        if key in self._found:
            with self._lock:
                self._found.pop(key, None)

    def refusal(self, key: tuple[str, str], what: str) -> UnreachableError | None:
        """The error for a request ``what`` (``"GET /items"``) to a system remembered as
        unreachable, naming the earlier failure; None when the system may be asked."""
        with self._lock:
            found = self._found.get(key)
            if found is None:
                return None
            age = self._clock() - found[0]
            if age > self._remember:
                del self._found[key]
                return None
        error = found[1]
        return type(error)(f"{error.system}: {what} not sent: the system did not answer "
                           f"{age:.0f} s ago, after its retries ({error.message})",
                           system=error.system)

    def forget(self) -> None:
        with self._lock:
            self._found.clear()


#: the process's registry and watcher, shared by every client
UNREACHABLE = UnreachableSystems()
STILL_WAITING = StillWaiting()


def forget_unreachable_systems() -> None:
    """Asks every system again (tests; a long-lived process starting a new run)."""
    UNREACHABLE.forget()
