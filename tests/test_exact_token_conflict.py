"""Exact's single-use refresh tokens when saving a rotated token meets a write conflict.

Exact has rotated the refresh token the moment it answers a refresh: the old one is dead, and
the new one exists only in the answer. If the compare-and-set that stores it loses to another
writer (:class:`~connectors.linkstore.StaleStateError`), :meth:`ExactTokens._persist` must
write it again over whatever is there now; giving up would lose the only valid refresh token,
and nobody could sync until someone authorised again (issue 19). Workers rotating at once
must end with the one rotation Exact kept. Both link stores (SQLite, Firestore emulator).
"""

from __future__ import annotations

import hashlib
import threading

import pytest
import requests

from connectors import exact
from connectors.linkstore import StaleStateError
from connectors.stores import open_link_store
from tests.firestore_emulator import firestore_emulator, firestore_url  # noqa: F401
from tests.test_connector_exact import SEED, SYSTEM, Exact

KEY = "tokens/exact"


@pytest.fixture(params=["sqlite", "firestore"])
def ex_env(request, sandbox_of, tmp_path):
    """The Exact emulator and a link store (SQLite or Firestore) holding talksync's first
    tokens."""
    store_url = request.getfixturevalue("firestore_url") if request.param == "firestore" \
        else None
    return Exact(sandbox_of(SYSTEM), tmp_path, store_url)


class ConcurrentWriterOnce:
    """A link store whose first ``write_state`` of the tokens loses a race: another worker's
    write of the entry lands just before it, so it raises :class:`StaleStateError`."""

    def __init__(self, store):
        self._store = store
        self.conflicts = 0

    def write_state(self, key, value, expected_version):
        if key == KEY and self.conflicts == 0:
            self.conflicts += 1
            current = self._store.read_state(key)      # the other worker writes first
            self._store.write_state(key, {**current.value, "written_by": "another worker"},
                                    current.version)
        return self._store.write_state(key, value, expected_version)

    def __getattr__(self, name):
        return getattr(self._store, name)


def _expire_stored_access_token(ex_env) -> None:
    """Token time moves on in Exact, and the stored access token is due for a refresh."""
    ex_env.control("/_sandbox/expire-tokens")
    with open_link_store(ex_env.store_url) as store:
        entry = store.read_state(KEY)
        store.write_state(KEY, {**entry.value, "expires_at": 0}, entry.version)


def _current_refresh_sha(sandbox) -> str:
    return requests.get(f"{sandbox.root_url(SYSTEM)}/_sandbox/tokens",
                        timeout=10).json()["current_refresh_token_sha256"]


def test_the_store_conflict_wrapper_really_conflicts(ex_env):
    """The wrapper's race is real: the write it wraps is refused by the store itself."""
    tokens = exact.ExactTokens(ex_env.config, ex_env.sandbox.api_key(SYSTEM))
    racing = ConcurrentWriterOnce(tokens.store())
    entry = racing.read_state(KEY)
    with pytest.raises(StaleStateError):
        racing.write_state(KEY, entry.value, entry.version)
    assert racing.conflicts == 1


def test_a_rotated_refresh_token_is_saved_despite_a_write_conflict_and_used_next_run(ex_env):
    _expire_stored_access_token(ex_env)
    tokens = exact.ExactTokens(ex_env.config, ex_env.sandbox.api_key(SYSTEM),
                               sleep=lambda s: None)
    racing = ConcurrentWriterOnce(tokens.store())
    tokens.store = lambda: racing

    access = tokens.token()                            # refreshes: Exact rotates the token

    assert racing.conflicts == 1
    stored = ex_env.stored()
    assert stored["access_token"] == access
    assert "written_by" not in stored                  # ours replaced the other worker's
    assert hashlib.sha256(stored["refresh_token"].encode()).hexdigest() == \
        _current_refresh_sha(ex_env.sandbox)           # the one valid refresh token is kept
    assert [e["status"] for e in ex_env.token_requests()] == [200]

    # the next run (another process: no cached token) refreshes with the saved token
    _expire_stored_access_token(ex_env)
    ex_env.sandbox.clear_requests(SYSTEM)
    next_run = ex_env.connector("next-run")
    assert len(list(next_run.read("Items"))) == len(SEED["Items"])
    assert [e["status"] for e in ex_env.token_requests()] == [200]
    assert ex_env.stored()["access_token"] != access


class TellsWhenTokensAreSaved:
    """A worker's link store that sets ``saved`` once any worker's tokens were written."""

    def __init__(self, store, saved: threading.Event):
        self._store, self._saved = store, saved

    def write_state(self, key, value, expected_version):
        entry = self._store.write_state(key, value, expected_version)
        if key == KEY:
            self._saved.set()
        return entry

    def __getattr__(self, name):
        return getattr(self._store, name)


def test_workers_rotating_at_once_end_with_one_valid_token(ex_env):
    """Four workers (each its own token cache and store connection) find the access token
    expired at the same moment: Exact rotates once, every worker ends with that rotation's
    access token, and the stored refresh token is the one Exact holds valid. A worker whose
    refresh was refused waits for the winner's entry (an event, not a timed sleep)."""
    _expire_stored_access_token(ex_env)
    saved = threading.Event()
    workers = []
    for _ in range(4):
        tokens = exact.ExactTokens(ex_env.config, ex_env.sandbox.api_key(SYSTEM),
                                   sleep=lambda s: saved.wait(30))
        store = TellsWhenTokensAreSaved(tokens.store(), saved)
        tokens.store = lambda store=store: store
        workers.append(tokens)
    start = threading.Barrier(len(workers))
    results: list = [None] * len(workers)

    def work(index: int) -> None:
        start.wait()
        try:
            results[index] = workers[index].token()
        except Exception as exc:  # noqa: BLE001 (reported by the assertion below)
            results[index] = exc

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(workers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    stored = ex_env.stored()
    assert results == [stored["access_token"]] * len(workers), results
    assert [e["status"] for e in ex_env.token_requests()].count(200) == 1
    assert hashlib.sha256(stored["refresh_token"].encode()).hexdigest() == \
        _current_refresh_sha(ex_env.sandbox)
