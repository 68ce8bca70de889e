"""The SQLite link store keeps OAuth tokens: its files are owner-only whatever the umask."""

from __future__ import annotations

import logging
import os
import stat

import pytest

from connectors import sqlite_store
from connectors.sqlite_store import SqliteLinkStore

pytestmark = pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")


@pytest.fixture(params=[0o000, 0o022], ids=["umask-000", "umask-022"])
def permissive_umask(request):
    previous = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(previous)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_a_new_store_and_its_folders_are_owner_only(tmp_path, permissive_umask):
    os.chmod(tmp_path, 0o755)
    folder = tmp_path / "talksync" / "state"
    store = SqliteLinkStore.from_url(f"sqlite:///{folder / 'links.db'}")
    try:
        store.write_state("tokens/exact", {"refresh_token": "r-1"}, expected_version=None)
        assert store.read_state("tokens/exact").value == {"refresh_token": "r-1"}
        files = [folder / name for name in ("links.db", "links.db-wal", "links.db-shm")]
        assert all(path.exists() for path in files)  # WAL mode, open: both side files exist
        assert {path.name: oct(_mode(path)) for path in files} == \
            {path.name: oct(0o600) for path in files}
    finally:
        store.close()
    assert oct(_mode(folder)) == oct(_mode(folder.parent)) == oct(0o700)
    assert _mode(tmp_path) == 0o755  # a folder it found is left alone


def test_an_existing_store_open_to_others_is_warned_about_once_and_left_as_it_is(
        tmp_path, permissive_umask, caplog, monkeypatch):
    monkeypatch.setattr(sqlite_store, "_WARNED_OPEN_TO_OTHERS", set(), raising=False)
    path = tmp_path / "links.db"
    SqliteLinkStore(str(path)).close()
    os.chmod(path, 0o644)
    with caplog.at_level(logging.WARNING, logger="connectors.sqlite_store"):
        for _ in range(3):  # a run opens its store many times
            SqliteLinkStore(str(path)).close()
    warnings = [r.getMessage() for r in caplog.records if r.name == "connectors.sqlite_store"]
    assert len(warnings) == 1 and "\n" not in warnings[0]
    assert str(path) in warnings[0] and "-rw-r--r--" in warnings[0] and "chmod 600" in warnings[0]
    assert _mode(path) == 0o644


def test_an_owner_only_store_is_not_warned_about(tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(sqlite_store, "_WARNED_OPEN_TO_OTHERS", set(), raising=False)
    path = tmp_path / "links.db"
    SqliteLinkStore(str(path)).close()
    with caplog.at_level(logging.WARNING, logger="connectors.sqlite_store"):
        SqliteLinkStore(str(path)).close()
    assert not [r for r in caplog.records if r.name == "connectors.sqlite_store"]
