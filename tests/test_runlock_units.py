"""The run lock (transforms/runlock.py) unit by unit, on a SQLite store in a temporary folder,
with the lock's clock injected: the entry it writes, each takeover rule at its boundary, the
messages, renewal, release, the background renewer's interval and the pipeline's release
step. The same behaviour on every link store (Firestore too) is tests/test_runlock.py."""

from __future__ import annotations

import datetime
import os
import subprocess
import sys
import threading

import pytest

from connectors.linkstore import StaleStateError
from connectors.stores import open_link_store
from transforms import runlock
from transforms.runlock import (
    KeepRunLock,
    RunLock,
    RunLockedError,
    lock_key,
    release_run_lock,
)

DATAFLOW = "customerp-customwebshop"
KEY = "locks/customerp-customwebshop"
T0 = datetime.datetime(2026, 12, 7, 9, tzinfo=datetime.UTC)


class Clock:
    def __init__(self):
        self.now = T0

    def __call__(self):
        return self.now

    def advance(self, **delta):
        self.now += datetime.timedelta(**delta)


@pytest.fixture
def clock(monkeypatch):
    fake = Clock()
    monkeypatch.setattr(runlock, "_now", fake)
    return fake


@pytest.fixture
def store(tmp_path):
    with open_link_store(f"sqlite:///{tmp_path}/links.db") as opened:
        yield opened


def _lock(run_id="run-1", host="here", pid=None, minutes=60):
    return RunLock(DATAFLOW, run_id, ttl=datetime.timedelta(minutes=minutes), host=host,
                   pid=os.getpid() if pid is None else pid)


def test_the_key_names_the_dataflow():
    assert lock_key("a-b") == "locks/a-b"
    assert _lock().key == KEY


def test_the_defaults_are_this_host_this_process_and_an_hour():
    lock = RunLock(DATAFLOW, "run-1")
    assert (lock.host, lock.pid) == (runlock.socket.gethostname(), os.getpid())
    assert lock.ttl == datetime.timedelta(minutes=runlock.DEFAULT_TTL_MINUTES) \
        == datetime.timedelta(minutes=60)


def test_the_entry_says_who_since_when_and_until_when(store, clock):
    lock = _lock(pid=4242, minutes=30)
    lock.acquire(store)
    entry = store.read_state(KEY)
    assert entry.value == {"run_id": "run-1", "host": "here", "pid": 4242,
                           "acquired_at": T0.isoformat(),
                           "expires_at": (T0 + datetime.timedelta(minutes=30)).isoformat()}
    clock.advance(minutes=10)
    lock.renew(store)
    renewed = store.read_state(KEY)
    assert renewed.version == entry.version + 1
    assert renewed.value == {**entry.value,
                             "expires_at": (T0 + datetime.timedelta(minutes=40)).isoformat()}


def test_a_held_lock_is_refused_with_a_message_naming_the_holder(store, clock):
    _lock(pid=4242).acquire(store)
    with pytest.raises(RunLockedError) as caught:
        _lock("run-2", host="elsewhere").acquire(store)
    assert str(caught.value) == (
        f"dataflow {DATAFLOW} is being synced by run run-1 (host here, process 4242, since "
        f"{T0.isoformat()}, lock expires {(T0 + datetime.timedelta(hours=1)).isoformat()}); "
        "wait for it to finish, or if that run is dead, run again with --break_run_lock")
    assert store.read_state(KEY).value["run_id"] == "run-1"


def test_the_message_of_a_holder_that_says_nothing_has_question_marks():
    assert _lock()._locked_message({}) == (
        f"dataflow {DATAFLOW} is being synced by run ? (host ?, process ?, since ?, lock "
        "expires ?); wait for it to finish, or if that run is dead, run again with "
        "--break_run_lock")


def test_a_lock_is_taken_over_the_moment_it_expires_not_before(store, clock, caplog):
    _lock(minutes=1, host="elsewhere").acquire(store)
    clock.advance(seconds=59)
    with pytest.raises(RunLockedError):
        _lock("run-2").acquire(store)
    clock.advance(seconds=1)                            # expires_at == now: expired
    with caplog.at_level("WARNING", logger=runlock.__name__):
        _lock("run-2").acquire(store)
    assert store.read_state(KEY).value["run_id"] == "run-2"
    assert caplog.messages == [f"run lock of {DATAFLOW}: taking it over from run run-1 "
                               "(it expired)"]


def test_a_lock_without_an_expiry_is_taken_over(store, clock):
    store.write_state(KEY, {"run_id": "old", "host": "elsewhere", "pid": 1}, None)
    _lock().acquire(store)
    assert store.read_state(KEY).value["run_id"] == "run-1"


def _gone_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_the_lock_of_a_gone_process_on_this_host_is_taken_over(store, clock, caplog):
    pid = _gone_pid()
    _lock(pid=pid).acquire(store)
    with caplog.at_level("WARNING", logger=runlock.__name__):
        _lock("run-2").acquire(store)
    assert store.read_state(KEY).value["run_id"] == "run-2"
    assert caplog.messages == [f"run lock of {DATAFLOW}: taking it over from run run-1 "
                               f"(process {pid} on this host is gone)"]


@pytest.mark.parametrize("holder", [
    {"host": "elsewhere", "pid": "gone"},      # another host: its processes are not ours
    {"host": "here", "pid": "gone-as-text"},   # a pid that is not a number is not checked
    {"host": "here", "pid": "live"},
])
def test_a_lock_is_kept_unless_its_holder_is_a_gone_process_here(store, clock, holder):
    pid = {"gone": _gone_pid(), "gone-as-text": str(_gone_pid()), "live": os.getpid()}[
        holder["pid"]]
    _lock(host=holder["host"], pid=0).acquire(store)
    entry = store.read_state(KEY)
    store.write_state(KEY, {**entry.value, "pid": pid}, entry.version)
    with pytest.raises(RunLockedError):
        _lock("run-2", host="here").acquire(store)


def test_breaking_takes_a_live_lock(store, clock):
    _lock().acquire(store)
    _lock("run-2").acquire(store, break_lock=True)
    assert store.read_state(KEY).value["run_id"] == "run-2"


class _RacingStore:
    """A store where another run writes the lock between our read and our write."""

    def __init__(self, store, winner: dict | None):
        self._store, self._winner = store, winner

    def read_state(self, key):
        return self._store.read_state(key)

    def write_state(self, key, value, expected):
        current = self._store.read_state(key)
        if self._winner is not None:
            self._store.write_state(key, self._winner, current.version if current else None)
        raise StaleStateError(key)

    def delete_state(self, key, version):
        raise StaleStateError(key)


def test_losing_the_race_names_the_winner(store, clock):
    winner = {"run_id": "run-9", "host": "h9", "pid": 9, "acquired_at": "a", "expires_at": "e"}
    with pytest.raises(RunLockedError) as caught:
        _lock().acquire(_RacingStore(store, winner))
    assert str(caught.value).startswith(f"dataflow {DATAFLOW} is being synced by run run-9 "
                                        "(host h9, process 9, since a, lock expires e)")
    assert caught.value.__suppress_context__


def test_losing_the_race_to_a_run_that_is_gone_again_names_nobody(store, clock):
    with pytest.raises(RunLockedError) as caught:
        _lock().acquire(_RacingStore(store, None))
    assert "synced by run ? (host ?" in str(caught.value)


def test_renewing_a_lock_not_held_or_lost(store, clock):
    lock = _lock()
    with pytest.raises(RunLockedError) as caught:
        lock.renew(store)
    assert str(caught.value) == f"run lock of {DATAFLOW}: not held by run run-1"
    lock.acquire(store)
    _lock("run-2").acquire(store, break_lock=True)
    with pytest.raises(RunLockedError) as caught:
        lock.renew(store)
    assert str(caught.value) == (f"run lock of {DATAFLOW}: run run-1 lost it to another run "
                                 "(it expired or was broken)")
    assert caught.value.__suppress_context__
    assert store.read_state(KEY).value["run_id"] == "run-2"


def test_release_deletes_only_the_holders_lock(store, clock):
    assert release_run_lock(store, DATAFLOW, "run-1") is False        # nothing held
    _lock().acquire(store)
    assert release_run_lock(store, DATAFLOW, "run-2") is False
    assert store.read_state(KEY) is not None
    assert release_run_lock(store, "other-dataflow", "run-1") is False
    assert release_run_lock(store, DATAFLOW, "run-1") is True
    assert store.read_state(KEY) is None


def test_release_that_loses_a_race_says_so(store, clock):
    _lock().acquire(store)
    assert release_run_lock(_RacingStore(store, None), DATAFLOW, "run-1") is False


def test_the_pipelines_release_step_gives_the_lock_back(tmp_path, store, clock):
    _lock().acquire(store)
    url = f"sqlite:///{tmp_path}/links.db"
    assert list(runlock._ReleaseRunLockFn(url, DATAFLOW, "run-2").process(None, [])) == [False]
    assert store.read_state(KEY) is not None
    assert list(runlock._ReleaseRunLockFn(url, DATAFLOW, "run-1").process(None, [])) == [True]
    assert store.read_state(KEY) is None


def test_a_zombie_counts_as_gone_and_a_live_process_does_not():
    assert runlock._process_is_gone(os.getpid()) is False
    assert runlock._process_is_gone(_gone_pid()) is True
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)   # exited, not reaped
        assert runlock._process_is_gone(child.pid) is True
    finally:
        child.wait()


def test_a_process_we_may_not_signal_is_alive(monkeypatch):
    def refuse(pid, signal):
        raise PermissionError(pid)

    monkeypatch.setattr(runlock.os, "kill", refuse)
    assert runlock._process_is_gone(1) is False


class _Stop:
    """The renewer's stop event: records each wait and stops after ``rounds``."""

    def __init__(self, rounds: int):
        self.waits: list[float] = []
        self._rounds = rounds
        self.done = threading.Event()

    def set(self):
        pass

    def wait(self, interval):
        self.waits.append(interval)
        if len(self.waits) > self._rounds:
            self.done.set()
            return True
        return False


def test_the_renewer_renews_every_third_of_the_lifetime_and_survives_a_failure(
        tmp_path, store, clock, caplog):
    lock = _lock(minutes=3)
    lock.acquire(store)
    keeper = KeepRunLock(lock, f"sqlite:///{tmp_path}/links.db")
    keeper._stop = _Stop(rounds=2)
    clock.advance(minutes=2)
    keeper._renew()
    assert keeper._stop.waits == [60.0, 60.0, 60.0]
    assert store.read_state(KEY).value["expires_at"] == (T0 + datetime.timedelta(minutes=5)
                                                         ).isoformat()
    _lock("run-2").acquire(store, break_lock=True)
    keeper._stop = _Stop(rounds=1)
    with caplog.at_level("WARNING", logger=runlock.__name__):
        keeper._renew()
    assert caplog.messages == [f"run lock of {DATAFLOW}: renewal failed: run lock of {DATAFLOW}"
                               ": run run-1 lost it to another run (it expired or was broken)"]


def test_the_renewer_runs_while_the_driver_waits_and_stops_after(tmp_path, store, clock):
    lock = _lock(minutes=3)
    lock.acquire(store)
    keeper = KeepRunLock(lock, f"sqlite:///{tmp_path}/links.db")
    assert keeper._thread.daemon and keeper._thread.name == "run-lock"
    with keeper as entered:
        assert entered is keeper and keeper._thread.is_alive()
    assert not keeper._thread.is_alive() and keeper._stop.is_set()


def test_the_renewer_thread_renews_until_the_driver_is_done(tmp_path, store, clock):
    lock = _lock(minutes=3)
    lock.acquire(store)
    keeper = KeepRunLock(lock, f"sqlite:///{tmp_path}/links.db")
    keeper._stop = _Stop(rounds=1)              # one renewal, then the thread ends by itself
    clock.advance(minutes=1)
    with keeper:
        assert keeper._stop.done.wait(timeout=30), "the renewer never ran"
    assert keeper._stop.waits == [60.0, 60.0]
    assert store.read_state(KEY).value["expires_at"] == (T0 + datetime.timedelta(minutes=4)
                                                         ).isoformat()


def test_the_real_clock_is_aware_utc():
    before = datetime.datetime.now(datetime.UTC)
    now = runlock._now()
    assert now.tzinfo is datetime.UTC and before <= now <= datetime.datetime.now(datetime.UTC)


def test_a_zombie_is_found_whatever_its_name(tmp_path):
    odd = tmp_path / "sync) R job"          # a name with ") R " in it, as /proc shows it
    odd.symlink_to(sys.executable)
    child = subprocess.Popen([str(odd), "-c", "pass"])
    try:
        os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)
        assert runlock._process_is_gone(child.pid) is True
    finally:
        child.wait()


def test_a_process_whose_state_cannot_be_read_counts_as_alive(monkeypatch):
    def unreadable(*args, **kwargs):
        raise PermissionError("no")

    monkeypatch.setattr(runlock, "open", unreadable, raising=False)
    assert runlock._process_is_gone(os.getpid()) is False


def test_a_live_process_with_a_name_that_is_not_ascii_keeps_its_lock(tmp_path, store, clock):
    named = tmp_path / "synç"                    # /proc/PID/stat holds the name as UTF-8
    named.symlink_to(sys.executable)
    child = subprocess.Popen([str(named), "-c", "import time; time.sleep(60)"])
    try:
        assert runlock._process_is_gone(child.pid) is False
        _lock(pid=child.pid).acquire(store)
        with pytest.raises(RunLockedError):
            _lock("run-2").acquire(store)
    finally:
        child.kill()
        child.wait()
