"""The run lock (transforms/runlock.py) on the real link stores: SQLite and Firestore."""

import datetime
import subprocess
import sys
import time

import pytest

from tests.firestore_emulator import firestore_emulator, firestore_url  # noqa: F401

# every store of the link-store contract: SQLite and Firestore (emulator)
from tests.test_link_stores import store, store_url  # noqa: F401
from transforms.runlock import KeepRunLock, RunLock, RunLockedError, lock_key, release_run_lock

DATAFLOW = "customerp-customwebshop"


def test_a_second_run_is_refused_with_the_holder_named(store):
    RunLock(DATAFLOW, "run-1").acquire(store)
    with pytest.raises(RunLockedError) as refused:
        RunLock(DATAFLOW, "run-2").acquire(store)
    message = str(refused.value)
    assert "run-1" in message and "--break_run_lock" in message
    assert store.read_state(lock_key(DATAFLOW)).value["run_id"] == "run-1"
    RunLock("another-dataflow", "run-3").acquire(store)      # one lock per dataflow


def test_release_frees_the_lock_only_for_its_holder(store):
    RunLock(DATAFLOW, "run-1").acquire(store)
    assert not release_run_lock(store, DATAFLOW, "run-2")
    assert release_run_lock(store, DATAFLOW, "run-1")
    assert store.read_state(lock_key(DATAFLOW)) is None
    assert not release_run_lock(store, DATAFLOW, "run-1")     # twice: nothing to do
    RunLock(DATAFLOW, "run-2").acquire(store)


def test_an_expired_lock_is_taken_over(store):
    RunLock(DATAFLOW, "run-1", ttl=datetime.timedelta(seconds=0.2), host="elsewhere").acquire(store)
    with pytest.raises(RunLockedError):
        RunLock(DATAFLOW, "run-2").acquire(store)
    time.sleep(0.3)
    RunLock(DATAFLOW, "run-2").acquire(store)
    assert store.read_state(lock_key(DATAFLOW)).value["run_id"] == "run-2"


def test_the_lock_of_a_dead_local_process_is_taken_over(store):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    RunLock(DATAFLOW, "killed-run", pid=dead.pid).acquire(store)
    RunLock(DATAFLOW, "run-2").acquire(store)
    assert store.read_state(lock_key(DATAFLOW)).value["run_id"] == "run-2"


def test_a_live_process_on_another_host_keeps_its_lock_until_broken(store):
    RunLock(DATAFLOW, "run-1", host="worker-7", pid=1).acquire(store)
    with pytest.raises(RunLockedError, match="worker-7"):
        RunLock(DATAFLOW, "run-2").acquire(store)
    RunLock(DATAFLOW, "run-2").acquire(store, break_lock=True)
    assert store.read_state(lock_key(DATAFLOW)).value["run_id"] == "run-2"


def test_renewal_pushes_the_expiry_and_fails_once_the_lock_is_lost(store):
    lock = RunLock(DATAFLOW, "run-1", ttl=datetime.timedelta(minutes=1))
    lock.acquire(store)
    before = store.read_state(lock_key(DATAFLOW)).value
    time.sleep(0.01)
    lock.renew(store)
    after = store.read_state(lock_key(DATAFLOW)).value
    assert after["expires_at"] > before["expires_at"]
    assert after["acquired_at"] == before["acquired_at"]
    RunLock(DATAFLOW, "run-2").acquire(store, break_lock=True)
    with pytest.raises(RunLockedError, match="lost it"):
        lock.renew(store)


def test_keep_run_lock_renews_in_the_background(store_url, store):
    lock = RunLock(DATAFLOW, "run-1", ttl=datetime.timedelta(seconds=0.6))
    lock.acquire(store)
    with KeepRunLock(lock, store_url):
        time.sleep(1.0)                 # longer than the lifetime: alive only if renewed
        with pytest.raises(RunLockedError):
            RunLock(DATAFLOW, "run-2", host="elsewhere").acquire(store)
