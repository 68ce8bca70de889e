"""The SQLite link store's half of the create protocol, field by field: reservations (one at a
time and many in one transaction), commits (insert, update at the expected version, stale ones
named while the others are kept) and the state entries the run lock and Exact's tokens live
in. The contract every store shares is tests/test_link_stores.py; these pin what SQLite stores
exactly, for mutation testing (docs/testing.md)."""

from __future__ import annotations

import datetime
import sqlite3

import pytest

from connectors.linkstore import StaleLinkError, StaleStateError
from connectors.stores import open_link_store
from core.model import LINKED, PENDING, Link

PAIR = "customerp-customwebshop/customers"


@pytest.fixture
def store(tmp_path):
    with open_link_store(f"sqlite:///{tmp_path}/links.db") as opened:
        yield opened


def _full(n: int, **changes) -> Link:
    """A link with every column set to something of its own."""
    return Link(pair=PAIR, link_id=f"s:S{n}", source_id=f"S{n}", target_id=f"T{n}",
                state=LINKED, snapshot_source={"name": f"s{n}", "price": "1.50"},
                snapshot_target={"name": f"t{n}"}, source_etag=f"se{n}", target_etag=f"te{n}",
                attempt_id=f"a{n}").replace(**changes)


def _recent(stamp: str | None) -> bool:
    moment = datetime.datetime.fromisoformat(stamp)
    return moment.tzinfo is not None and \
        abs(datetime.datetime.now(datetime.UTC) - moment) < datetime.timedelta(minutes=5)


def _same_but_bookkeeping(stored: Link, wanted: Link, *, state: str, version: int) -> None:
    assert _recent(stored.updated_at)
    assert stored == wanted.replace(state=state, version=version, updated_at=stored.updated_at)


def test_a_reservation_keeps_every_field_as_pending_version_1(store):
    wanted = _full(1, version=5)
    stored = store.reserve(wanted)
    _same_but_bookkeeping(stored, wanted, state=PENDING, version=1)
    assert store.lookup_by_source(PAIR, ["S1"]) == {"S1": stored}


def test_reserving_many_answers_in_order_with_what_holds_each_id(store):
    (theirs,) = store.commit([_full(2).replace(link_id="t:T2")])
    wanted = [_full(1), _full(2), _full(3, attempt_id="a3")]
    got = store.reserve_many(wanted)
    assert [link.link_id for link in got] == ["s:S1", "t:T2", "s:S3"]
    assert got[1] == theirs
    _same_but_bookkeeping(got[0], wanted[0], state=PENDING, version=1)
    _same_but_bookkeeping(got[2], wanted[2], state=PENDING, version=1)
    assert store.reserve_many([]) == []


def test_a_reservation_prefers_the_link_holding_its_source_id(store):
    # one link holds the target id, another the source id: the source's is the answer
    store.commit([Link(PAIR, "t:T1", source_id="X", target_id="T1"),
                  Link(PAIR, "s:S1", source_id="S1", target_id="Y")])
    holder = store.reserve(Link(PAIR, "new", source_id="S1", target_id="T1"))
    assert holder.link_id == "s:S1"
    holder = store.reserve(Link(PAIR, "new", source_id="Z", target_id="T1"))
    assert holder.link_id == "t:T1"


def test_reserving_an_existing_link_id_returns_it_unchanged(store):
    first = store.reserve(_full(1, attempt_id="mine"))
    again = store.reserve(_full(1, attempt_id="theirs", target_id="T9"))
    assert again == first


def test_a_failed_reservation_batch_leaves_nothing_behind(store):
    with pytest.raises(AttributeError):
        store.reserve_many([_full(1), None])
    assert store.lookup_by_source(PAIR, ["S1"]) == {}


def test_commit_inserts_version_0_and_updates_the_expected_version(store):
    (inserted,) = store.commit([_full(1, state=PENDING)])
    _same_but_bookkeeping(inserted, _full(1), state=LINKED, version=1)
    changed = inserted.replace(target_id="T7", snapshot_target={"name": "new"},
                               target_etag="te7", source_etag="se7", attempt_id=None,
                               snapshot_source={"name": "src"}, source_id="S7")
    (updated,) = store.commit([changed])
    _same_but_bookkeeping(updated, changed, state=LINKED, version=2)
    assert store.lookup_by_target(PAIR, ["T7"]) == {"T7": updated}
    assert store.lookup_by_source(PAIR, ["S1", "S7"]) == {"S7": updated}


def test_stale_links_are_named_and_the_others_committed(store):
    (one,) = store.commit([_full(1)])
    (two,) = store.commit([_full(2)])
    fresh = _full(3)
    with pytest.raises(StaleLinkError) as caught:
        store.commit([one.replace(version=0), two, fresh, one.replace(version=7)])
    error = caught.value
    assert str(error) == ("2 link(s) changed since they were read (another writer won): "
                          "s:S1, s:S1")
    assert list(error.link_ids) == ["s:S1", "s:S1"]
    assert [(link.link_id, link.version) for link in error.committed] == [("s:S2", 2),
                                                                          ("s:S3", 1)]
    assert store.lookup_by_source(PAIR, ["S1"])["S1"] == one


def test_commit_of_an_id_another_link_holds_is_stale(store):
    store.commit([_full(1)])
    with pytest.raises(StaleLinkError) as caught:
        store.commit([_full(2, target_id="T1")])
    assert list(caught.value.link_ids) == ["s:S2"] and caught.value.committed == []


def test_state_entries_are_versioned_compare_and_set(store, tmp_path):
    assert store.read_state("k") is None
    first = store.write_state("k", {"b": 1, "a": [1, 2]}, None)
    assert (first.key, first.value, first.version) == ("k", {"a": [1, 2], "b": 1}, 1)
    assert store.read_state("k") == first
    with sqlite3.connect(tmp_path / "links.db") as raw:         # stored as stable text
        assert raw.execute("SELECT value FROM state").fetchone() == ('{"a": [1, 2], "b": 1}',)
    with pytest.raises(StaleStateError) as caught:
        store.write_state("k", {"c": 3}, None)
    assert str(caught.value) == "state 'k' is no longer at version None"
    second = store.write_state("k", {"c": 3}, 1)
    assert (second.value, second.version) == ({"c": 3}, 2)
    assert store.read_state("k") == second
    with pytest.raises(StaleStateError) as caught:
        store.write_state("k", {"d": 4}, 1)
    assert str(caught.value) == "state 'k' is no longer at version 1"
    assert store.read_state("k") == second
    with pytest.raises(StaleStateError) as caught:
        store.delete_state("k", 1)
    assert str(caught.value) == "state 'k' is no longer at version 1"
    store.delete_state("k", 2)
    assert store.read_state("k") is None
    assert store.read_state("other") is None
