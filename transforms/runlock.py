"""The run lock: one sync run of a dataflow at a time, whatever starts it.

Two runs of one dataflow at once would read the same changes and race each other's writes. The
link store's reservations already keep creates unique, but updates planned from the same
snapshots would be applied twice and their link commits would fail against each other. So a
run takes the dataflow's lock, a state entry ``locks/<dataflow>`` in the link store, before it
builds its pipeline, and gives it back after its watermarks moved:

- taking it is a compare-and-set (:meth:`~connectors.linkstore.LinkStore.write_state`): of two
  runs starting together exactly one gets it; the other stops with :class:`RunLockedError`,
  which names the holder;
- the entry says who holds it (run id, host, process id) and until when (``expires_at``); a
  driver that waits for its run renews it every third of the lifetime, so only a run whose
  driver does not wait (a Dataflow launch) depends on the lifetime being long enough;
- a lock is taken over when it expired, when its holder was a process on this host that no
  longer lives (a local run that was killed), or when the user says so (``break_lock``) after
  checking that the holder is dead;
- the pipeline's last step (:class:`ReleaseRunLock`) gives it back, so a Dataflow job holds it
  until it finished; a driver whose run failed gives it back itself.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import os
import socket
import threading

import apache_beam as beam

from connectors.linkstore import LinkStore, StaleStateError
from connectors.stores import open_link_store
from core.model import StateEntry
from transforms.common import CallOnce

_LOG = logging.getLogger(__name__)
#: how long a lock lives without renewal unless the run says otherwise
DEFAULT_TTL_MINUTES = 60


class RunLockedError(RuntimeError):
    """Another run of the dataflow holds its lock."""


def lock_key(dataflow: str) -> str:
    return f"locks/{dataflow}"


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _process_is_gone(pid: int) -> bool:
    """True when no live process has ``pid`` on this host (a zombie counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    try:
        # the process name may be any bytes: decoded leniently, only the state after it counts
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


@dataclasses.dataclass
class RunLock:
    """The lock of ``dataflow`` as run ``run_id`` holds it (or wants to)."""

    dataflow: str
    run_id: str
    ttl: datetime.timedelta = datetime.timedelta(minutes=DEFAULT_TTL_MINUTES)
    host: str = dataclasses.field(default_factory=socket.gethostname)
    pid: int = dataclasses.field(default_factory=os.getpid)
    _entry: StateEntry | None = dataclasses.field(default=None, repr=False)

    @property
    def key(self) -> str:
        return lock_key(self.dataflow)

    def _value(self) -> dict:
        now = _now()
        return {"run_id": self.run_id, "host": self.host, "pid": self.pid,
                "acquired_at": (self._entry.value["acquired_at"] if self._entry
                                else now.isoformat()),
                "expires_at": (now + self.ttl).isoformat()}

    def acquire(self, store: LinkStore, *, break_lock: bool = False) -> None:
        """Take the lock, or raise :class:`RunLockedError` naming the run that holds it."""
        held = store.read_state(self.key)
        if held is not None and not break_lock:
            reason = self._takeover_reason(held.value)
            if reason is None:
                raise RunLockedError(self._locked_message(held.value))
            _LOG.warning("run lock of %s: taking it over from run %s (%s)", self.dataflow,
                         held.value.get("run_id"), reason)
        try:
            self._entry = store.write_state(self.key, self._value(),
                                            held.version if held else None)
        except StaleStateError:
            current = store.read_state(self.key)
            raise RunLockedError(self._locked_message(current.value if current else {})) \
                from None

    def renew(self, store: LinkStore) -> None:
        """Push the expiry forward; raises :class:`RunLockedError` if the lock was taken."""
        if self._entry is None:
            raise RunLockedError(f"run lock of {self.dataflow}: not held by run {self.run_id}")
        try:
            self._entry = store.write_state(self.key, self._value(), self._entry.version)
        except StaleStateError:
            raise RunLockedError(f"run lock of {self.dataflow}: run {self.run_id} lost it to "
                                 "another run (it expired or was broken)") from None

    def _takeover_reason(self, holder: dict) -> str | None:
        expires = holder.get("expires_at")
        if not expires or datetime.datetime.fromisoformat(expires) <= _now():
            return "it expired"
        pid = holder.get("pid")
        if holder.get("host") == self.host and isinstance(pid, int) and _process_is_gone(pid):
            return f"process {pid} on this host is gone"
        return None

    def _locked_message(self, holder: dict) -> str:
        return (f"dataflow {self.dataflow} is being synced by run {holder.get('run_id', '?')} "
                f"(host {holder.get('host', '?')}, process {holder.get('pid', '?')}, since "
                f"{holder.get('acquired_at', '?')}, lock expires {holder.get('expires_at', '?')})"
                "; wait for it to finish, or if that run is dead, run again with "
                "--break_run_lock")


def release_run_lock(store: LinkStore, dataflow: str, run_id: str) -> bool:
    """Delete the lock of ``dataflow`` if ``run_id`` holds it; True when it did."""
    held = store.read_state(lock_key(dataflow))
    if held is None or held.value.get("run_id") != run_id:
        return False
    try:
        store.delete_state(held.key, held.version)
    except StaleStateError:
        return False
    return True


class KeepRunLock:
    """Renews ``lock`` in a background thread while a driver waits for its run."""

    def __init__(self, lock: RunLock, store_url: str):
        self._lock = lock
        self._store_url = store_url
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew, name="run-lock", daemon=True)

    def __enter__(self) -> KeepRunLock:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _renew(self) -> None:
        interval = self._lock.ttl.total_seconds() / 3
        with open_link_store(self._store_url) as store:
            while not self._stop.wait(interval):
                try:
                    self._lock.renew(store)
                except Exception as exc:     # keep the run going; the log says why
                    _LOG.warning("run lock of %s: renewal failed: %s", self._lock.dataflow, exc)


class ReleaseRunLock(beam.PTransform):
    """The pipeline's last step: gives the run lock back once ``after`` is complete."""

    def __init__(self, link_store: str, dataflow: str, run_id: str):
        super().__init__()
        self._link_store = link_store
        self._dataflow = dataflow
        self._run_id = run_id

    def expand(self, after):
        return after.pipeline | "Release" >> CallOnce(beam.ParDo(
            _ReleaseRunLockFn(self._link_store, self._dataflow, self._run_id),
            after=beam.pvalue.AsList(after)))


class _ReleaseRunLockFn(beam.DoFn):
    def __init__(self, link_store: str, dataflow: str, run_id: str):
        self._link_store = link_store
        self._dataflow = dataflow
        self._run_id = run_id

    def process(self, _, after):
        with open_link_store(self._link_store) as store:
            yield release_run_lock(store, self._dataflow, self._run_id)
