"""The link-store contract, run against every store: SQLite and Firestore (emulator).

Each test gets an empty store of each kind through its URL, as the pipeline opens it. The
module imports no Beam at the top: the race tests start fresh processes that import it.
"""

import datetime
import decimal
import multiprocessing
import sqlite3
import threading

import pytest

from connectors.linkstore import LinkRef, StaleLinkError, StaleStateError
from connectors.stores import open_link_store
from core.model import LINKED, PENDING, TOMBSTONES, UNLINKED, DeadLetter, Link
from tests.firestore_emulator import PROJECT, firestore_emulator, firestore_url  # noqa: F401

PAIR = "customerp-customwebshop/customers"


@pytest.fixture(params=["sqlite", "firestore"])
def store_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/state/links.db"
    return request.getfixturevalue("firestore_url")


@pytest.fixture
def store(store_url):
    with open_link_store(store_url) as opened:
        yield opened


def linked(n, pair=PAIR, **changes):
    link = Link(pair=pair, link_id=f"s:S{n}", source_id=f"S{n}", target_id=f"T{n}",
                snapshot_source={"name": f"n{n}"}, snapshot_target={"name": f"n{n}"})
    return link.replace(**changes)


def stored_letter_count(url):
    """Dead letters physically kept by the store at ``url`` (all pairs, all runs)."""
    if url.startswith("sqlite:///"):
        with sqlite3.connect(url[len("sqlite:///"):]) as raw:
            return raw.execute("SELECT COUNT(*) FROM dead_letters").fetchone()[0]
    from google.cloud import firestore
    client = firestore.Client(project=PROJECT)
    try:
        return client.collection_group("letters").count().get()[0][0].value
    finally:
        client.close()


# --- opening ------------------------------------------------------------------------------------

def test_reopening_keeps_the_data(store_url):
    with open_link_store(store_url) as store:
        store.commit([linked(1)])
        store.advance_watermark("df", PAIR, "erp", "2026-01-01T00:00:00Z")
    with open_link_store(store_url) as store:
        assert store.lookup_by_source(PAIR, ["S1"])["S1"].version == 1
        assert store.get_watermark("df", PAIR, "erp") == "2026-01-01T00:00:00Z"


def test_only_the_shared_store_runs_on_distributed_runners(store, store_url):
    from apache_beam.options.pipeline_options import PipelineOptions

    from pipelines.sync_pipeline import refuse_embedded_store_on_distributed_runner
    dataflow = PipelineOptions(["--runner=DataflowRunner", "--project=p", "--region=r"])
    if store.distributed:
        refuse_embedded_store_on_distributed_runner(dataflow, store_url)
    else:
        with pytest.raises(ValueError, match="SQLite store.*DataflowRunner.*firestore://"):
            refuse_embedded_store_on_distributed_runner(dataflow, store_url)
    refuse_embedded_store_on_distributed_runner(PipelineOptions([]), store_url)
    refuse_embedded_store_on_distributed_runner(
        PipelineOptions(["--runner=DirectRunner"]), store_url)


# --- links --------------------------------------------------------------------------------------

def test_commit_inserts_new_links_and_returns_their_versions(store):
    committed = store.commit([linked(1), linked(2, state=PENDING)])
    assert [(link.link_id, link.version, link.state) for link in committed] == [
        ("s:S1", 1, LINKED), ("s:S2", 1, LINKED)]
    assert all(item.updated_at for item in committed)
    assert store.lookup_by_source(PAIR, ["S1",
                                         "S2"]) == {item.source_id: item for item in committed}


def test_commit_updates_only_the_expected_version(store):
    (first,) = store.commit([linked(1)])
    (second,) = store.commit([first.replace(snapshot_target={"name": "new"}, target_etag='"4"')])
    assert second.version == 2
    stored = store.lookup_by_source(PAIR, ["S1"])["S1"]
    assert stored == second and stored.snapshot_target == {"name": "new"}
    assert stored.target_etag == '"4"'


@pytest.mark.parametrize("tombstone", TOMBSTONES)
def test_a_tombstone_is_stored_as_such_and_found_by_both_ids(store, tombstone):
    """Delete policies (docs/deletes.md): a link whose record was deleted keeps its state."""
    (first,) = store.commit([linked(1)])
    (dead,) = store.commit([first.replace(state=tombstone)])
    assert (dead.state, dead.version) == (tombstone, 2)
    assert store.lookup_by_source(PAIR, ["S1"])["S1"] == dead
    assert store.lookup_by_target(PAIR, ["T1"])["T1"] == dead


def test_committing_a_link_unlinked_removes_it_and_frees_its_ids(store):
    (first,) = store.commit([linked(1)])
    store.commit([first.replace(state=UNLINKED)])
    assert store.lookup_by_source(PAIR, ["S1"]) == {}
    assert store.lookup_by_target(PAIR, ["T1"]) == {}
    # the survivor can be linked again, under a new link id
    (again,) = store.commit([linked(1, link_id="t:T9", target_id="T9")])
    assert store.lookup_by_source(PAIR, ["S1"])["S1"] == again


def test_an_unlink_of_a_stale_version_removes_nothing(store):
    (first,) = store.commit([linked(1)])
    store.commit([first.replace(snapshot_source={"name": "newer"})])
    with pytest.raises(StaleLinkError):
        store.commit([first.replace(state=UNLINKED)])
    assert store.lookup_by_source(PAIR, ["S1"])["S1"].version == 2


def test_stale_commit_raises_after_committing_the_others(store):
    (one,) = store.commit([linked(1)])
    store.commit([one.replace(snapshot_source={"name": "winner"})])          # version 2 now
    with pytest.raises(StaleLinkError, match="s:S1") as caught:
        store.commit([one.replace(snapshot_source={"name": "loser"}), linked(2)])
    assert list(caught.value.link_ids) == ["s:S1"]
    assert [link.link_id for link in caught.value.committed] == ["s:S2"]
    links = store.lookup_by_source(PAIR, ["S1", "S2"])
    assert links["S1"].snapshot_source == {"name": "winner"} and links["S1"].version == 2
    assert links["S2"].version == 1
    assert caught.value.committed == [links["S2"]]


def test_inserting_an_existing_link_id_is_stale(store):
    store.commit([linked(1)])
    with pytest.raises(StaleLinkError):
        store.commit([linked(1, snapshot_source={"name": "again"})])
    assert store.lookup_by_source(PAIR, ["S1"])["S1"].snapshot_source == {"name": "n1"}


def test_updating_a_link_that_does_not_exist_is_stale(store):
    with pytest.raises(StaleLinkError) as caught:
        store.commit([linked(1, version=3)])
    assert list(caught.value.link_ids) == ["s:S1"] and caught.value.committed == []
    assert store.lookup_by_source(PAIR, ["S1"]) == {}
    assert store.lookup_by_target(PAIR, ["T1"]) == {}


def test_target_id_linked_to_another_link_is_stale(store):
    store.commit([linked(1)])
    clash = Link(pair=PAIR, link_id="t:T1", source_id="S9", target_id="T1")
    with pytest.raises(StaleLinkError) as caught:
        store.commit([clash, linked(2)])
    assert list(caught.value.link_ids) == ["t:T1"]
    assert store.lookup_by_target(PAIR, ["T1"])["T1"].link_id == "s:S1"
    assert set(store.lookup_by_source(PAIR, ["S2", "S9"])) == {"S2"}


def test_two_new_links_with_one_target_in_one_commit_the_first_wins(store):
    with pytest.raises(StaleLinkError) as caught:
        store.commit([linked(1), linked(2, target_id="T1")])
    assert list(caught.value.link_ids) == ["s:S2"]
    assert [link.link_id for link in caught.value.committed] == ["s:S1"]
    assert store.lookup_by_target(PAIR, ["T1"])["T1"].source_id == "S1"
    assert store.lookup_by_source(PAIR, ["S2"]) == {}


def test_changing_an_id_releases_the_old_one(store):
    (one,) = store.commit([linked(1)])
    (moved,) = store.commit([one.replace(target_id="T1b")])
    assert store.lookup_by_target(PAIR, ["T1", "T1b"]) == {"T1b": moved}
    (other,) = store.commit([linked(2, target_id="T1")])     # T1 is free again
    assert store.lookup_by_target(PAIR, ["T1", "T1b"]) == {"T1": other, "T1b": moved}


def test_ids_are_unique_per_pair_only(store):
    store.commit([linked(1), linked(1, pair="other/pair")])
    assert store.lookup_by_source(PAIR, ["S1"])["S1"].pair == PAIR
    assert store.lookup_by_source("other/pair", ["S1"])["S1"].pair == "other/pair"


def test_links_without_a_target_yet_do_not_clash(store):
    store.commit([Link(pair=PAIR, link_id="s:A", source_id="A"),
                  Link(pair=PAIR, link_id="s:B", source_id="B")])
    assert set(store.lookup_by_source(PAIR, ["A", "B"])) == {"A", "B"}


def test_ids_with_separators_and_odd_characters_stay_apart(store):
    odd = ["a/b", "a|b", "a%2Fb", "__x__", ".", "..", "Åse Ø", "a b", ""]
    links = [Link(pair=PAIR, link_id=f"s:{i}", source_id=i, target_id=f"T|{i}")
             for i in odd]
    store.commit(links)
    found = store.lookup_by_source(PAIR, odd)
    assert {k: v.link_id for k, v in found.items()} == {i: f"s:{i}" for i in odd}
    assert set(store.lookup_by_target(PAIR, [f"T|{i}" for i in odd])) == {
        f"T|{i}" for i in odd}
    assert store.lookup_by_source("customerp-customwebshop", ["customers/a/b"]) == {}


def test_lookups_are_batched_and_leave_unknown_ids_out(store):
    store.commit([linked(n) for n in range(700)])        # more than one batch of writes
    wanted = [f"S{n}" for n in range(0, 700)] + ["nope", "S0"]   # more than one batch of reads
    found = store.lookup_by_source(PAIR, wanted)
    assert set(found) == {f"S{n}" for n in range(0, 700)}
    assert all(found[s].source_id == s for s in found)
    by_target = store.lookup_by_target(PAIR, (f"T{n}" for n in range(600, 800)))
    assert set(by_target) == {f"T{n}" for n in range(600, 700)}
    assert store.lookup_by_source(PAIR, []) == {}
    assert store.lookup_by_source("other/pair", wanted) == {}


def test_refs_name_each_link_and_its_state_without_the_snapshots(store):
    store.commit([linked(n) for n in range(600)])                       # beyond one batch
    (pending,) = store.reserve_many([Link(pair=PAIR, link_id="s:P", source_id="P",
                                          attempt_id="run-1")])
    store.commit([linked(1, pair="other/pair", link_id="s:other")])
    wanted = [f"S{n}" for n in range(600)] + ["P", "nope"]
    refs = store.lookup_refs_by_source(PAIR, wanted)
    assert set(refs) == {f"S{n}" for n in range(600)} | {"P"}
    assert refs["S7"] == LinkRef("s:S7", LINKED) and refs["P"] == LinkRef("s:P", PENDING)
    assert refs["S7"].link_id == store.lookup_by_source(PAIR, ["S7"])["S7"].link_id
    by_target = store.lookup_refs_by_target(PAIR, (f"T{n}" for n in range(590, 610)))
    assert by_target == {f"T{n}": LinkRef(f"s:S{n}", LINKED) for n in range(590, 600)}
    assert store.lookup_refs_by_source("other/pair", ["S1"]) == {
        "S1": LinkRef("s:other", LINKED)}
    assert store.lookup_refs_by_target(PAIR, []) == {}


def test_links_are_read_by_id_as_the_lookups_by_side_return_them(store):
    committed = store.commit([linked(n) for n in range(600)])           # beyond one batch
    store.commit([linked(1, pair="other/pair")])
    (pending,) = store.reserve_many([Link(pair=PAIR, link_id="s:P", source_id="P",
                                          attempt_id="run-1")])
    found = store.lookup_by_id(PAIR, [link.link_id for link in committed] + ["s:P", "nope"])
    assert found == {link.link_id: link for link in committed} | {"s:P": pending}
    assert found["s:S3"] == store.lookup_by_source(PAIR, ["S3"])["S3"]
    assert found["s:S3"].snapshot_source == {"name": "n3"}
    assert store.lookup_by_id("other/pair", ["s:S1", "s:S2"]) == {
        "s:S1": store.lookup_by_source("other/pair", ["S1"])["S1"]}
    assert store.lookup_by_id(PAIR, []) == {}


def test_ids_with_separators_are_read_by_id_and_ref(store):
    odd = ["a/b", "a|b", "a%2Fb", "__x__", "Åse Ø", ""]
    store.commit([Link(pair=PAIR, link_id=f"s:{i}", source_id=i, target_id=f"T|{i}")
                  for i in odd])
    assert set(store.lookup_by_id(PAIR, [f"s:{i}" for i in odd])) == {f"s:{i}" for i in odd}
    assert {k: ref.link_id for k, ref in store.lookup_refs_by_target(
        PAIR, [f"T|{i}" for i in odd]).items()} == {f"T|{i}": f"s:{i}" for i in odd}


@pytest.mark.parametrize("values", [
    {"name": "Åse", "count": 3, "active": False, "note": None},          # flat: decoded as read
    {"name": "{not a tag}", "code": "[x]"},                              # brackets in text
    {"price": decimal.Decimal("1.50"), "tags": ("a", "b"), "when": datetime.date(2026, 1, 2)},
])
def test_snapshot_text_decodes_to_the_values_encoded(values):
    from core.model import decode_values, encode_values
    decoded = decode_values(encode_values(values))
    assert decoded == values
    assert {k: type(v) for k, v in decoded.items()} == {k: type(v) for k, v in values.items()}


def test_snapshots_round_trip_exactly(store):
    snapshot = {
        "price": decimal.Decimal("199.9000"),
        "order_date": datetime.date(2026, 11, 21),
        "at": datetime.datetime(2026, 11, 21, 10, 15, 0, 123456, tzinfo=datetime.UTC),
        "lines": ({"sku": "A-1", "qty": 2, "unit_price": decimal.Decimal("10.50"),
                   "tags": ("x", "y")}, {"sku": "B-2", "qty": 1, "unit_price": None}),
        "address": {"city": "Bergen", "country": "NO"},
        "active": True, "count": 0, "note": None, "name": "Åse Ødegård", "raw": b"\x00\xff",
    }
    store.commit([linked(1, snapshot_source=snapshot, snapshot_target={})])
    stored = store.lookup_by_source(PAIR, ["S1"])["S1"]
    assert stored.snapshot_source == snapshot and stored.snapshot_target == {}
    assert type(stored.snapshot_source["price"]) is decimal.Decimal
    assert str(stored.snapshot_source["price"]) == "199.9000"
    assert type(stored.snapshot_source["order_date"]) is datetime.date
    assert stored.snapshot_source["at"].tzinfo is not None


# --- reservations -------------------------------------------------------------------------------

def reservation(attempt):
    return Link(pair=PAIR, link_id="s:S1", source_id="S1", attempt_id=attempt,
                snapshot_source={"name": "n1"})


def test_reserve_stores_a_pending_link_once(store):
    mine = store.reserve(reservation("attempt-A").replace(state=LINKED, version=7))
    assert (mine.state, mine.version, mine.attempt_id) == (PENDING, 1, "attempt-A")
    theirs = store.reserve(reservation("attempt-B"))
    assert theirs == mine
    assert store.pending(PAIR) == [mine]
    assert store.pending("other/pair") == []


def test_commit_of_a_reservation_links_it(store):
    mine = store.reserve(reservation("attempt-A"))
    (done,) = store.commit([mine.replace(target_id="T1", snapshot_target={"name": "n1"})])
    assert (done.state, done.version, done.target_id) == (LINKED, 2, "T1")
    assert store.pending(PAIR) == []
    assert store.reserve(reservation("attempt-C")) == done
    assert store.lookup_by_target(PAIR, ["T1"]) == {"T1": done}


def test_reserve_returns_the_link_that_already_holds_the_id(store):
    (existing,) = store.commit([Link(pair=PAIR, link_id="t:T1", source_id="S1",
                                     target_id="T1")])
    assert store.reserve(reservation("attempt-A")) == existing
    assert store.pending(PAIR) == []


def test_pending_lists_only_the_pairs_reservations_in_id_order(store):
    for n in (3, 1, 2):
        store.reserve(Link(pair=PAIR, link_id=f"s:S{n}", source_id=f"S{n}", attempt_id="a"))
    store.reserve(Link(pair="other/pair", link_id="s:S9", source_id="S9", attempt_id="a"))
    store.commit([linked(4)])
    assert [link.link_id for link in store.pending(PAIR)] == ["s:S1", "s:S2", "s:S3"]


def test_reserve_many_decides_each_link_as_reserve_does(store):
    (existing,) = store.commit([Link(pair=PAIR, link_id="t:T1", source_id="S1",
                                     target_id="T1")])
    fresh = [Link(pair=PAIR, link_id=f"s:S{n}", source_id=f"S{n}", attempt_id="mine")
             for n in (2, 3)]
    clash = Link(pair=PAIR, link_id="s:S1", source_id="S1", attempt_id="mine")
    twin = Link(pair=PAIR, link_id="t:T9", source_id="S2", target_id="T9", attempt_id="mine")
    stored = store.reserve_many([fresh[0], clash, fresh[1], twin])
    assert [link.link_id for link in stored] == ["s:S2", "t:T1", "s:S3", "s:S2"]
    assert stored[1] == existing
    assert stored[3] == stored[0]       # the first link of the batch got the id
    assert [(item.state, item.version, item.attempt_id) for item in (stored[0], stored[2])] == [
        (PENDING, 1, "mine")] * 2
    assert store.pending(PAIR) == [stored[0], stored[2]]
    assert store.lookup_by_target(PAIR, ["T9"]) == {}
    again = store.reserve_many([item.replace(attempt_id="theirs") for item in fresh])
    assert again == [stored[0], stored[2]]
    assert store.reserve_many([]) == []


def test_reserve_many_reserves_batches_beyond_one_commit(store):
    links = [Link(pair=PAIR, link_id=f"s:S{n:04d}", source_id=f"S{n:04d}",
                  target_id=f"T{n:04d}", attempt_id="a") for n in range(400)]
    stored = store.reserve_many(links)
    assert [link.link_id for link in stored] == [link.link_id for link in links]
    assert {(item.state, item.attempt_id) for item in stored} == {(PENDING, "a")}
    assert len(store.pending(PAIR)) == 400
    assert store.lookup_by_target(PAIR, ["T0399"])["T0399"].link_id == "s:S0399"


def _reserve_batch(store, attempt, barrier, results):
    barrier.wait()
    batch = [reservation(attempt).replace(link_id=f"s:S{n}", source_id=f"S{n}")
             for n in (1, 2, 3)]
    results.append([item.attempt_id for item in store.reserve_many(batch)])


def test_batches_racing_to_reserve_one_owner_per_link(store_url, store):
    """Two threads with their own stores reserve the same three links at once."""
    barrier, results = threading.Barrier(2), []

    def own_store(attempt):
        with open_link_store(store_url) as own:
            _reserve_batch(own, attempt, barrier, results)
    threads = [threading.Thread(target=own_store, args=(attempt,)) for attempt in ("x", "y")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 2 and results[0] == results[1]
    assert [item.attempt_id for item in store.pending(PAIR)] == results[0]


def _reserve(store, attempt, barrier, results):
    barrier.wait()
    results.append(store.reserve(reservation(attempt)).attempt_id)


def _reserve_with_own_store(url, attempt, barrier, results):
    with open_link_store(url) as own:
        _reserve(own, attempt, barrier, results)


def test_threads_racing_to_reserve_one_owner(store_url, store):
    """Four threads share one store, four more open their own on the same URL."""
    barrier = threading.Barrier(8)
    results = []
    threads = [threading.Thread(target=_reserve, args=(store, f"shared-{n}", barrier, results))
               for n in range(4)]
    threads += [threading.Thread(target=_reserve_with_own_store,
                                 args=(store_url, f"own-{n}", barrier, results))
                for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 8 and len(set(results)) == 1
    assert [item.attempt_id for item in store.pending(PAIR)] == results[:1]


def _reserve_in_process(url, attempt, barrier, queue):
    store = open_link_store(url)
    barrier.wait()
    queue.put((attempt, store.reserve(reservation(attempt)).attempt_id))
    store.close()


def test_processes_racing_to_reserve_one_owner(store_url, store):
    context = multiprocessing.get_context("spawn")
    barrier, queue = context.Barrier(2), context.Queue()
    processes = [context.Process(target=_reserve_in_process,
                                 args=(store_url, attempt, barrier, queue))
                 for attempt in ("p0", "p1")]
    for process in processes:
        process.start()
    answers = dict(queue.get(timeout=60) for _ in processes)
    for process in processes:
        process.join(60)
        assert process.exitcode == 0
    owners = [attempt for attempt, owner in answers.items() if attempt == owner]
    assert len(owners) == 1 and set(answers.values()) == set(owners)
    assert [item.attempt_id for item in store.pending(PAIR)] == owners


def test_two_writers_committing_the_same_version_one_wins(store_url, store):
    (base,) = store.commit([linked(1)])
    with open_link_store(store_url) as other:
        (theirs,) = other.commit([base.replace(snapshot_target={"name": "theirs"})])
    with pytest.raises(StaleLinkError):
        store.commit([base.replace(snapshot_target={"name": "ours"})])
    assert store.lookup_by_source(PAIR, ["S1"])["S1"] == theirs


# --- watermarks ---------------------------------------------------------------------------------

def test_watermark_starts_empty_and_only_moves_forward(store):
    assert store.get_watermark("df", PAIR, "erp") is None
    assert store.advance_watermark("df", PAIR, "erp", "2026-11-21T10:00:00.000000Z") == \
        "2026-11-21T10:00:00.000000Z"
    assert store.advance_watermark("df", PAIR, "erp", "2026-11-21T09:00:00.000000Z") == \
        "2026-11-21T10:00:00.000000Z"
    assert store.advance_watermark("df", PAIR, "erp", "2026-11-21T10:00:00.000001Z") == \
        "2026-11-21T10:00:00.000001Z"
    assert store.get_watermark("df", PAIR, "erp") == "2026-11-21T10:00:00.000001Z"
    assert store.get_watermark("df", PAIR, "shop") is None
    assert store.get_watermark("other", PAIR, "erp") is None


def test_watermarks_compare_instants_not_strings(store):
    store.advance_watermark("df", PAIR, "erp", "2026-11-21T09:30:00Z")
    # "T10:00+01:00" sorts after "T09:30Z" as text but is 09:00 UTC: earlier, so no move
    assert store.advance_watermark("df", PAIR, "erp", "2026-11-21T10:00:00+01:00") == \
        "2026-11-21T09:30:00Z"
    # "T08:00-02:00" sorts before as text but is 10:00 UTC: later
    assert store.advance_watermark("df", PAIR, "erp", "2026-11-21T08:00:00-02:00") == \
        "2026-11-21T08:00:00-02:00"


def test_watermark_must_be_a_timestamp(store):
    with pytest.raises(ValueError):
        store.advance_watermark("df", PAIR, "erp", "yesterday")
    assert store.get_watermark("df", PAIR, "erp") is None


# --- dead letters -------------------------------------------------------------------------------

def letter(run_id, entity_id, pair=PAIR, **changes):
    return DeadLetter(run_id=run_id, dataflow="df", pair=pair, direction="to_target",
                      system="erp", entity="Customers", entity_id=entity_id, stage="write",
                      error_class="permanent", message=f"bad {entity_id}", **changes)


def test_dead_letters_of_the_latest_run_are_open(store, store_url):
    assert store.open_dead_letters("df", PAIR) == []
    store.add_dead_letters([letter("r1", "C1", status=400, payload='{"Name": ""}'),
                            letter("r1", "C2", created_at="2026-11-21T10:00:00Z")])
    store.add_dead_letters([letter("r1", "C9", pair="other/pair")])
    opened = store.open_dead_letters("df", PAIR)
    assert [item.entity_id for item in opened] == ["C1", "C2"]
    assert opened[0].status == 400 and opened[0].payload == '{"Name": ""}'
    assert opened[0].created_at and opened[1].created_at == "2026-11-21T10:00:00Z"
    assert opened[1] == letter("r1", "C2", created_at="2026-11-21T10:00:00Z")

    store.add_dead_letters([letter("r2", "C2")])
    assert [(letter.run_id, letter.entity_id) for letter in store.open_dead_letters("df",
                                                                                    PAIR)] == [
        ("r2", "C2")]
    store.retire_dead_letters("df", PAIR, keep_run_id="r2")
    assert stored_letter_count(store_url) == 2              # r2's C2 and the other pair's C9
    assert [letter.entity_id for letter in store.open_dead_letters("df", "other/pair")] == ["C9"]
    store.retire_dead_letters("df", PAIR, keep_run_id="r3")
    assert store.open_dead_letters("df", PAIR) == []
    assert stored_letter_count(store_url) == 1


def test_retiring_keeps_the_kept_runs_letters_open(store):
    store.add_dead_letters([letter("r1", "C1")])
    store.add_dead_letters([letter("r2", "C2")])
    store.retire_dead_letters("df", PAIR, keep_run_id="r1")
    assert [(letter.run_id, letter.entity_id) for letter in store.open_dead_letters("df",
                                                                                    PAIR)] == [
        ("r1", "C1")]


def test_many_dead_letters_keep_their_order(store):
    store.add_dead_letters([letter("r1", f"C{n}") for n in range(620)])    # > 1 commit
    assert [letter.entity_id for letter in store.open_dead_letters("df", PAIR)] == [
        f"C{n}" for n in range(620)]
    store.add_dead_letters([letter("r2", "D1"), letter("r2", "D2")])
    store.retire_dead_letters("df", PAIR, keep_run_id="r2")
    assert [letter.entity_id for letter in store.open_dead_letters("df", PAIR)] == ["D1", "D2"]


# --- state entries ------------------------------------------------------------------------------

def test_state_is_created_once_then_changed_by_compare_and_set(store):
    assert store.read_state("tokens/exact") is None
    created = store.write_state("tokens/exact", {"refresh": "r1", "n": 1}, None)
    assert (created.value, created.version) == ({"refresh": "r1", "n": 1}, 1)
    with pytest.raises(StaleStateError):
        store.write_state("tokens/exact", {"refresh": "other"}, None)      # exists already
    updated = store.write_state("tokens/exact", {"refresh": "r2"}, 1)
    assert updated.version == 2
    with pytest.raises(StaleStateError):
        store.write_state("tokens/exact", {"refresh": "late"}, 1)          # version moved on
    assert store.read_state("tokens/exact") == updated


def test_state_delete_needs_the_current_version(store):
    entry = store.write_state("locks/df", {"owner": "a"}, None)
    with pytest.raises(StaleStateError):
        store.delete_state("locks/df", entry.version + 1)
    store.delete_state("locks/df", entry.version)
    assert store.read_state("locks/df") is None
    with pytest.raises(StaleStateError):
        store.delete_state("locks/df", entry.version)
    assert store.write_state("locks/df", {"owner": "b"}, None).version == 1


def test_state_survives_reopening_and_keys_stay_apart(store_url, store):
    store.write_state("a/b", {"x": 1}, None)
    store.write_state("a|b", {"x": 2}, None)
    with open_link_store(store_url) as reopened:
        assert reopened.read_state("a/b").value == {"x": 1}
        assert reopened.read_state("a|b").value == {"x": 2}


def _write_state_from_thread(url, barrier, results):
    with open_link_store(url) as own:
        barrier.wait()
        try:
            results.append(own.write_state("locks/race", {"thread": threading.get_ident()},
                                           None).value["thread"])
        except StaleStateError:
            results.append(None)


def test_racing_creators_of_one_state_entry_one_wins(store_url, store):
    barrier, results = threading.Barrier(4), []
    threads = [threading.Thread(target=_write_state_from_thread,
                                args=(store_url, barrier, results)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winners = [r for r in results if r is not None]
    assert len(results) == 4 and len(winners) == 1
    assert store.read_state("locks/race").value == {"thread": winners[0]}


# --- origins of written values (docs/decisions/0015-edit-time-provenance.md) -----------------

def _written(record_id, version, origins, replaced=None, system="customwebshop"):
    from core.provenance import OriginWrite, RecordOrigins
    return OriginWrite(RecordOrigins(system, "customers", record_id, version, origins),
                       replaced=replaced)


def test_origins_are_saved_merged_and_looked_up_in_batches(store):
    from core.provenance import EditOrigin, Version
    moment = datetime.datetime(2026, 12, 7, 5, 22, 24, tzinfo=datetime.UTC)
    erp = EditOrigin("customerp", moment)
    bc = EditOrigin("businesscentral", moment + datetime.timedelta(seconds=5))
    assert store.lookup_origins("customwebshop", "customers", ["c1"]) == {}
    store.save_origins([_written(f"c{n}", Version(f'"{n}"', moment), {"phone": erp})
                        for n in range(1, 601)])
    found = store.lookup_origins("customwebshop", "customers",
                                 [f"c{n}" for n in range(1, 700)])
    assert len(found) == 600 and found["c7"].origins == {"phone": erp}
    assert found["c7"].version == Version('"7"', moment)
    # another dataflow writes c1 over the version talksync left: phone keeps its origin
    store.save_origins([_written("c1", Version('"9"'), {"email": bc},
                                 replaced=Version('"1"', moment))])
    # and c2 over a version a person made since: only the new field's origin is known
    later = moment + datetime.timedelta(minutes=1)
    store.save_origins([_written("c2", Version('"9"'), {"email": bc},
                                 replaced=Version('"8"', later))])
    found = store.lookup_origins("customwebshop", "customers", ["c1", "c2"])
    assert found["c1"].origins == {"phone": erp, "email": bc}
    assert found["c2"].origins == {"email": bc} and found["c2"].others_edited == later
    # the key is system, entity and id: another system's record c1 is another record
    assert store.lookup_origins("customerp", "customers", ["c1"]) == {}
    assert store.lookup_origins("customwebshop", "products", ["c1"]) == {}
