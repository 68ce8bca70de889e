"""What only the Firestore link store has: its URL, its document layout, contention between
writers, and riding out an outage of the database. Against the real emulator."""

import json
import logging
import random
import subprocess
import sys
import threading
import time

import pytest
import yaml

from connectors.linkstore import StaleLinkError
from connectors.stores import open_link_store
from core.model import DeadLetter, Link
from pipelines import cli
from sandbox.server import Sandbox
from tests.conftest import SyncHarness
from tests.firestore_emulator import (  # noqa
    PROJECT,
    REQUIRE_VARIABLE,
    firestore_emulator,
    firestore_url,
    require_emulator,
)

PAIR = "customerp-customwebshop/customers"


def linked(n, pair=PAIR, **changes):
    link = Link(pair=pair, link_id=f"s:S{n}", source_id=f"S{n}", target_id=f"T{n}",
                snapshot_source={"name": f"n{n}"}, snapshot_target={"name": f"n{n}"})
    return link.replace(**changes)


@pytest.fixture
def store(firestore_url):
    with open_link_store(firestore_url) as opened:
        yield opened


@pytest.fixture
def client(firestore_emulator):
    from google.cloud import firestore
    raw = firestore.Client(project=PROJECT)
    yield raw
    raw.close()


@pytest.fixture
def client_library():
    """For tests that need google-cloud-firestore but not the emulator: skipped (or failed in
    CI) where the Firestore tooling is missing, like the emulator's tests."""
    require_emulator()


def wait_until(condition, timeout_s, what):
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"gave up after {timeout_s} s waiting for {what}"
        time.sleep(0.05)


# --- the emulator ------------------------------------------------------------------------------

def test_without_the_emulator_tests_skip_saying_how_to_install_it_or_fail_in_ci(
        tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))             # no gcloud on it
    monkeypatch.delenv(REQUIRE_VARIABLE, raising=False)
    with pytest.raises(pytest.skip.Exception,
                       match="gcloud is not on PATH.*apt-get install "
                             "google-cloud-cli-firestore-emulator.*gcloud components install "
                             "cloud-firestore-emulator"):
        require_emulator()
    monkeypatch.setenv(REQUIRE_VARIABLE, "1")
    with pytest.raises(pytest.fail.Exception, match=f"{REQUIRE_VARIABLE}=1 makes this a failure"):
        require_emulator()


def test_an_emulator_whose_port_was_taken_meanwhile_starts_on_another(tmp_path, monkeypatch):
    """Between probing a free port and the emulator binding it, another server (the other
    test worker's emulator) may take it and answer ``Ok`` there: ours must not take that for
    its own start, but try the next free port."""
    import http.server

    from tests import firestore_emulator as module
    require_emulator()

    class Ok(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"Ok")

        def log_message(self, *args):
            pass

    other = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Ok)
    threading.Thread(target=other.serve_forever, daemon=True).start()
    taken = other.server_address[1]
    ports = iter([taken])
    real_free_port = module.free_port
    monkeypatch.setattr(module, "free_port", lambda: next(ports, None) or real_free_port())
    emulator = module.FirestoreEmulator(tmp_path)
    try:
        emulator.start()
        assert emulator.port != taken
        emulator.reset()                      # a Firestore emulator answers there
    finally:
        emulator.stop()
        other.shutdown()
        other.server_close()


# --- the URL ------------------------------------------------------------------------------------

@pytest.mark.parametrize("url, project, database, prefix", [
    ("firestore://my-proj", "my-proj", "(default)", "talksync_"),
    ("firestore://my-proj/", "my-proj", "(default)", "talksync_"),
    ("firestore://my-proj/sync-db", "my-proj", "sync-db", "talksync_"),
    ("firestore://my-proj/(default)?prefix=shop2_", "my-proj", "(default)", "shop2_"),
    ("firestore://example.com:legacy/sync-db?prefix=", "example.com:legacy", "sync-db", ""),
])
@pytest.mark.usefixtures("client_library")
def test_url_names_project_database_and_prefix(url, project, database, prefix):
    from connectors.firestore_store import FirestoreLocation
    location = FirestoreLocation.parse(url)
    assert (location.project, location.database, location.prefix) == (project, database, prefix)
    assert FirestoreLocation.parse(location.url) == location


@pytest.mark.parametrize("url, problem", [
    ("firestore://", "expected firestore://PROJECT"),
    ("firestore:///db", "expected firestore://PROJECT"),
    ("firestore://p/a/b", "expected firestore://PROJECT"),
    ("firestore://p/Bad_DB", "not a Firestore database id"),
    ("firestore://p?collection=x", "the only option is prefix"),
    ("firestore://p?prefix=a&prefix=b", "the only option is prefix"),
    ("firestore://p?prefix=a/b", "may hold only letters"),
])
@pytest.mark.usefixtures("client_library")
def test_bad_urls_are_refused_with_the_reason(url, problem):
    with pytest.raises(ValueError, match=problem):
        open_link_store(url)


@pytest.mark.usefixtures("client_library")
def test_without_credentials_the_message_says_how_to_get_them(tmp_path, monkeypatch):
    monkeypatch.delenv("FIRESTORE_EMULATOR_HOST", raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path))
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))
    with pytest.raises(ValueError, match="no Google credentials.*application-default login"):
        open_link_store("firestore://my-proj")


def test_without_the_client_library_the_message_says_what_to_install():
    # a fresh interpreter in which google.cloud.firestore cannot be imported
    code = ("import sys; sys.modules['google.cloud.firestore'] = None\n"
            "from connectors.stores import open_link_store\n"
            "try:\n    open_link_store('firestore://my-proj')\n"
            "except ValueError as exc:\n    print(exc)\n")
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           timeout=60, check=True).stdout
    assert "needs the google-cloud-firestore package" in shown
    assert "pip install --require-hashes --no-deps -r requirements.txt" in shown


def test_the_store_is_one_that_distributed_runners_may_share(store):
    assert store.distributed is True
    assert repr(store) == f"FirestoreLinkStore('firestore://{PROJECT}')"


# --- the layout ---------------------------------------------------------------------------------

def test_a_link_and_the_claims_of_its_ids_are_documents(store, client):
    (one,) = store.commit([linked(1)])
    link_doc = client.document("talksync_links/customerp-customwebshop%2Fcustomers|s:S1").get()
    assert link_doc.exists and link_doc.get("version") == 1
    assert link_doc.get("snapshot_source") == '{"name":"n1"}'
    claims = {doc.id: doc.to_dict() for doc in client.collection("talksync_link_ids").stream()}
    assert claims == {
        "customerp-customwebshop%2Fcustomers|source|S1": {"pair": PAIR, "link_id": "s:S1"},
        "customerp-customwebshop%2Fcustomers|target|T1": {"pair": PAIR, "link_id": "s:S1"}}
    store.commit([one.replace(target_id="T7")])
    assert {doc.id for doc in client.collection("talksync_link_ids").stream()} == {
        "customerp-customwebshop%2Fcustomers|source|S1",
        "customerp-customwebshop%2Fcustomers|target|T7"}


def test_watermarks_and_dead_letters_are_documents(store, client):
    store.advance_watermark("df", "customers", "erp", "2026-11-21T10:00:00Z")
    store.add_dead_letters([DeadLetter(
        run_id="r1", dataflow="df", pair="customers", direction="to_target", system="erp",
        entity="Customers", entity_id="C1", stage="write", error_class="permanent",
        message="bad", created_at="2026-11-21T10:00:00Z")])
    assert client.document("talksync_watermarks/df|customers|erp").get().to_dict() == {
        "dataflow": "df", "pair": "customers", "system": "erp",
        "value": "2026-11-21T10:00:00Z"}
    head = client.document("talksync_dead_letters/df|customers").get().to_dict()
    assert (head["dataflow"], head["pair"], head["next_seq"]) == ("df", "customers", 1)
    letters = list(client.collection("talksync_dead_letters/df|customers/letters").stream())
    assert [(doc.id, doc.get("entity_id"), doc.get("seq")) for doc in letters] == [
        ("000000000000", "C1", 0)]


def test_prefixes_and_databases_keep_installations_apart(firestore_emulator, firestore_url,
                                                         client):
    firestore_emulator.reset(database="second")
    with open_link_store(firestore_url) as default, \
            open_link_store(f"{firestore_url}?prefix=shop2_") as shop2, \
            open_link_store(f"{firestore_url}/second") as second:
        default.commit([linked(1)])
        shop2.commit([linked(1, snapshot_source={"name": "shop2"})])
        second.commit([linked(2)])
        assert default.lookup_by_source(PAIR, ["S1"])["S1"].snapshot_source == {"name": "n1"}
        assert shop2.lookup_by_source(PAIR, ["S1"])["S1"].snapshot_source == {"name": "shop2"}
        assert set(second.lookup_by_source(PAIR, ["S1", "S2"])) == {"S2"}
        assert set(default.lookup_by_source(PAIR, ["S1", "S2"])) == {"S1"}
    assert [doc.id for doc in client.collection("shop2_links").stream()] == [
        "customerp-customwebshop%2Fcustomers|s:S1"]


def test_a_commit_larger_than_one_batch_reports_the_stale_link_of_a_later_batch(store):
    (old,) = store.commit([linked(5000)])
    store.commit([old.replace(snapshot_source={"name": "moved on"})])
    # a new link needs 3 writes: 166 fill the first commit, the stale one is in the second
    batch = [linked(n) for n in range(200)] + [old] + [linked(n) for n in range(200, 260)]
    with pytest.raises(StaleLinkError) as caught:
        store.commit(batch)
    assert list(caught.value.link_ids) == ["s:S5000"]
    assert [link.link_id for link in caught.value.committed] == [f"s:S{n}" for n in range(260)]
    assert len(store.lookup_by_target(PAIR, [f"T{n}" for n in range(260)])) == 260
    assert store.lookup_by_source(PAIR, ["S5000"])["S5000"].snapshot_source == {
        "name": "moved on"}


# --- a reply lost after the commit went through -------------------------------------------------
# White-box: an attempt is repeated with the token of the first, as the retry loop does when
# a commit's reply never arrived.

def test_a_repeated_commit_attempt_whose_first_went_through_is_not_stale(store):
    first = store._commit_group([linked(1), linked(2)], "token-1")
    again = store._commit_group([linked(1), linked(2)], "token-1")
    assert again == first and [item.version for item in again[0]] == [1, 1] and again[1] == []
    assert store._commit_group([linked(1)], "token-2") == ([], ["s:S1"])


def test_a_repeated_dead_letter_attempt_stores_the_letters_once(store):
    letter = DeadLetter(run_id="r1", dataflow="df", pair="customers", direction="read",
                        system="erp", entity="Customers", entity_id="C1", stage="map",
                        error_class="validation", message="bad", created_at="x")
    for _ in range(2):
        store._add_letters("df", "customers", [letter.to_dict()], "token-1")
    assert store.open_dead_letters("df", "customers") == [letter]


# --- contention ---------------------------------------------------------------------------------

def test_concurrent_compare_and_set_loses_no_update(store, firestore_url):
    """Six writers (three on their own store) each count a link up five times."""
    (start,) = store.commit([linked(1, snapshot_source={"count": 0})])
    writers, rounds = 6, 5
    barrier = threading.Barrier(writers)
    stale_seen, errors = [], []

    def count_up(own: bool):
        mine = open_link_store(firestore_url) if own else store
        try:
            barrier.wait()
            for _ in range(rounds):
                while True:
                    link = mine.lookup_by_source(PAIR, ["S1"])["S1"]
                    bumped = link.replace(
                        snapshot_source={"count": link.snapshot_source["count"] + 1})
                    try:
                        mine.commit([bumped])
                        break
                    except StaleLinkError:
                        stale_seen.append(1)
        except Exception as exc:      # surfaced below: a thread's failure fails the test
            errors.append(exc)
        finally:
            if own:
                mine.close()

    threads = [threading.Thread(target=count_up, args=(n % 2 == 0,)) for n in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == [] and not any(thread.is_alive() for thread in threads)
    final = store.lookup_by_source(PAIR, ["S1"])["S1"]
    assert final.snapshot_source == {"count": writers * rounds}
    assert final.version == start.version + writers * rounds
    assert stale_seen, "the writers never collided: the test proved nothing"


def test_concurrent_watermark_advances_keep_the_latest(store):
    moments = [f"2026-11-21T10:{minute:02d}:00Z" for minute in range(40)]
    random.Random(7).shuffle(moments)
    barrier = threading.Barrier(8)

    def advance(share):
        barrier.wait()
        for moment in share:
            store.advance_watermark("df", PAIR, "erp", moment)

    threads = [threading.Thread(target=advance, args=(moments[n::8],)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert store.get_watermark("df", PAIR, "erp") == "2026-11-21T10:39:00Z"


def test_concurrent_dead_letter_runs_each_keep_all_their_letters_in_order(store, client):
    barrier = threading.Barrier(4)

    def add(run):
        barrier.wait()
        store.add_dead_letters([DeadLetter(
            run_id=run, dataflow="df", pair=PAIR, direction="read", system="erp",
            entity="Customers", entity_id=f"{run}-{n}", stage="map", error_class="validation",
            message="bad") for n in range(30)])

    threads = [threading.Thread(target=add, args=(f"r{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    opened = store.open_dead_letters("df", PAIR)
    run = opened[0].run_id
    assert [item.entity_id for item in opened] == [f"{run}-{n}" for n in range(30)]
    seqs = [doc.get("seq") for doc in client.collection_group("letters").stream()]
    assert sorted(seqs) == list(range(120))


# --- outages ------------------------------------------------------------------------------------

def test_an_operation_outlives_an_emulator_restart(firestore_emulator, firestore_url, caplog):
    """The emulator goes down under a commit; the commit retries until it is back."""
    caplog.set_level(logging.DEBUG, logger="connectors.firestore_store")
    store = open_link_store(firestore_url)
    store.commit([linked(1)])
    firestore_emulator.stop()
    outcome = {}

    def commit():
        try:
            outcome["links"] = store.commit([linked(2)])
        except Exception as exc:
            outcome["error"] = exc

    worker = threading.Thread(target=commit)
    worker.start()
    wait_until(lambda: any("retrying after ServiceUnavailable" in r.getMessage()
                           for r in caplog.records), 30, "a retry of the unreachable store")
    assert worker.is_alive()
    firestore_emulator.start()               # same port; a restarted emulator starts empty
    worker.join(90)
    assert not worker.is_alive() and "error" not in outcome, outcome
    assert [(link.link_id, link.version) for link in outcome["links"]] == [("s:S2", 1)]
    assert set(store.lookup_by_source(PAIR, ["S1", "S2"])) == {"S2"}
    store.close()


def test_an_unreachable_store_gives_up_after_its_deadline(firestore_emulator, monkeypatch,
                                                          refused_port):
    from google.api_core.exceptions import RetryError

    from connectors.firestore_store import FirestoreLinkStore, FirestoreLocation
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", f"127.0.0.1:{refused_port}")
    store = FirestoreLinkStore(FirestoreLocation(PROJECT), retry_deadline_s=1.0)
    # the retry's own deadline ended it (its message says so), not a timer of this test
    with pytest.raises(RetryError, match="Timeout of 1.0s exceeded.*503"):
        store.lookup_by_source(PAIR, ["S1"])
    store.close()


# --- the pipeline on Firestore ------------------------------------------------------------------

_VOLATILE = ("ModifiedAt", "updated_at")     # when the sandbox stored a record


def _run_all(sandbox, tmp_path, link_store):
    """`talksync run --all` with ``link_store``; returns (status, report, end state)."""
    config = yaml.safe_load(sandbox.config_path.read_text(encoding="utf-8"))
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "talksync.yaml"
    path.write_text(yaml.safe_dump({**config, "link_store": link_store}), encoding="utf-8")
    report = tmp_path / "report.json"
    status = cli.main(["run", "--all", "--config", str(path), "--report", str(report)])
    (section,) = json.loads(report.read_text(encoding="utf-8"))["dataflows"]
    systems = SyncHarness(sandbox, tmp_path)
    state = {(system, resource): sorted(
        json.dumps({k: v for k, v in row.items() if k not in _VOLATILE}, sort_keys=True)
         for row in systems.list_all(system, resource))
        for system, resources in (("customerp", ("Customers", "Products", "Orders")),
                                  ("customwebshop", ("customers", "products", "orders")))
        for resource in resources}
    return status, section, state


def test_run_all_on_firestore_gives_the_same_result_as_on_sqlite(harness, firestore_url,
                                                                tmp_path, monkeypatch):
    sqlite = _run_all(harness.sandbox, tmp_path / "sqlite", f"sqlite:///{tmp_path}/links.db")
    with Sandbox(state_dir=tmp_path / "second", base_port=0,
                 systems=("customwebshop", "customerp"), seed=42) as second:
        for name, value in second.environ().items():
            monkeypatch.setenv(name, value)
        firestore = _run_all(second, tmp_path / "firestore", firestore_url)
    assert sqlite[0] == firestore[0] == 0
    assert sqlite[1]["pairs"] == firestore[1]["pairs"]
    assert sqlite[1]["requests"] == firestore[1]["requests"]
    assert sum(counts["created_in_target"] + counts["created_in_source"]
               for counts in firestore[1]["pairs"].values()) > 100
    assert sqlite[2] == firestore[2]
    exports = []
    for url in (f"sqlite:///{tmp_path}/links.db", firestore_url):
        out = tmp_path / f"{len(exports)}.jsonl"
        assert cli.main(["links", "export", "--store", url, "--out", str(out)]) == 0
        links = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()
                 if '"kind": "link"' in line]
        exports.append(sorted(json.dumps({**link, "attempt_id": None}, sort_keys=True)
                              for link in links))    # attempt ids are the runs' ids
    assert exports[0] == exports[1] and len(exports[0]) > 1000
