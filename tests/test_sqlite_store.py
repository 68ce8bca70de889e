"""What only the SQLite link store has: its URLs, its file format and schema versions.

The behaviour every link store shares is tested in test_link_stores.py, against each store.
"""

import dataclasses
import sqlite3

import pytest

from connectors.sqlite_store import SqliteLinkStore
from connectors.stores import open_link_store
from core.model import DeadLetter, Link

PAIR = "customerp-customwebshop/customers"


@pytest.fixture
def db_path(tmp_path):
    return tmp_path / "state" / "links.db"


@pytest.fixture
def store(db_path):
    with SqliteLinkStore(str(db_path)) as opened:
        yield opened


def linked(n, pair=PAIR, **changes):
    link = Link(pair=pair, link_id=f"s:S{n}", source_id=f"S{n}", target_id=f"T{n}",
                snapshot_source={"name": f"n{n}"}, snapshot_target={"name": f"n{n}"})
    return link.replace(**changes)


# --- opening ------------------------------------------------------------------------------------

def test_from_url_relative_path_creates_the_folders(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with open_link_store("sqlite:///.talksync/deep/links.db") as store:
        assert isinstance(store, SqliteLinkStore)
        store.commit([linked(1)])
    assert (tmp_path / ".talksync" / "deep" / "links.db").is_file()


def test_from_url_absolute_path(tmp_path):
    path = tmp_path / "abs" / "links.db"
    with SqliteLinkStore.from_url(f"sqlite:///{path}") as store:     # sqlite:////abs/...
        store.commit([linked(1)])
    with SqliteLinkStore.from_url(f"sqlite:///{path}") as store:
        assert set(store.lookup_by_source(PAIR, ["S1"])) == {"S1"}


def test_from_url_memory():
    with SqliteLinkStore.from_url("sqlite:///:memory:") as store:
        store.commit([linked(1)])
        assert store.lookup_by_target(PAIR, ["T1"])["T1"].source_id == "S1"


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///", "postgres://x/y", "sqlite:/x.db"])
def test_from_url_refuses_other_urls(url):
    with pytest.raises(ValueError, match="sqlite:///"):
        SqliteLinkStore.from_url(url)


def test_file_is_in_wal_mode_with_a_schema_version(store, db_path):
    with sqlite3.connect(db_path) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert raw.execute("PRAGMA user_version").fetchone()[0] == 4


def test_a_version_1_file_is_migrated_and_keeps_its_links(db_path):
    """A file written before state entries existed gets the state table (and the origins of
    written values, docs/decisions/0015) on opening."""
    with SqliteLinkStore(str(db_path)) as store:
        store.commit([Link(pair="df/p", link_id="L1", source_id="S1", target_id="T1",
                           state="linked", version=0)])
    with sqlite3.connect(db_path) as raw:
        raw.execute("DROP TABLE state")
        raw.execute("DROP TABLE record_origins")
        raw.execute("ALTER TABLE dead_letters DROP COLUMN attempts")
        raw.execute("PRAGMA user_version = 1")
    with SqliteLinkStore(str(db_path)) as store:
        assert store.lookup_by_source("df/p", ["S1"])["S1"].target_id == "T1"
        assert store.write_state("k", {"v": 1}, None).version == 1
        assert store.lookup_origins("erp", "Customers", ["C1"]) == {}


def test_a_version_2_file_counts_its_letters_attempts_from_one(db_path):
    """A file written before dead letters counted their attempts (and before the origins of
    written values) gets the column on opening: its open letters count one attempt each."""
    letter = DeadLetter(run_id="r1", dataflow="df", pair="p", direction="to_target",
                        system="erp", entity="Orders", entity_id="O1", stage="reference",
                        error_class="reference", message="customer C9 does not exist in erp")
    with SqliteLinkStore(str(db_path)) as store:
        store.add_dead_letters([dataclasses.replace(letter, attempts=2)])
    with sqlite3.connect(db_path) as raw:
        raw.execute("ALTER TABLE dead_letters DROP COLUMN attempts")
        raw.execute("DROP TABLE record_origins")
        raw.execute("PRAGMA user_version = 2")
    with SqliteLinkStore(str(db_path)) as store:
        assert store.open_dead_letters("df", "p")[0].attempts == 1
        store.add_dead_letters([dataclasses.replace(letter, run_id="r2", attempts=3)])
        assert [x.attempts for x in store.open_dead_letters("df", "p")] == [3]


def test_a_newer_schema_is_refused(db_path):
    SqliteLinkStore(str(db_path)).close()
    with sqlite3.connect(db_path) as raw:
        raw.execute("PRAGMA user_version = 99")
    with pytest.raises(RuntimeError, match="newer"):
        SqliteLinkStore(str(db_path))
