"""`talksync links export|import`: moving links, watermarks and dead letters between stores."""

import datetime
import decimal
import json

import pytest
import yaml

from connectors.stores import open_link_store
from core.model import LINKED, PENDING, DeadLetter, Link
from pipelines import cli
from tests.firestore_emulator import firestore_emulator, firestore_url  # noqa: F401

CUSTOMERS = "customerp-customwebshop/customer"
PRODUCTS = "customerp-customwebshop/product"
SNAPSHOT = {"price": decimal.Decimal("10.50"), "since": datetime.date(2026, 1, 2),
            "name": "Åse", "tags": ("a", "b"), "address": {"city": "Bergen"}}


@pytest.fixture
def sqlite_url(tmp_path):
    return f"sqlite:///{tmp_path}/local/links.db"


@pytest.fixture(params=["sqlite", "firestore"])
def target_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/target/links.db"
    return request.getfixturevalue("firestore_url")


def letter(run_id, entity_id, pair="customer", **changes):
    return DeadLetter(run_id=run_id, dataflow="customerp-customwebshop", pair=pair,
                      direction="to_target", system="customwebshop", entity="customers",
                      entity_id=entity_id, stage="write", error_class="permanent",
                      message=f"bad {entity_id}", status=422, payload='{"email": ""}',
                      **changes)


def populate(url):
    """Links of two pairs (one a reservation), two watermarks, dead letters of two runs."""
    with open_link_store(url) as store:
        store.commit([
            Link(pair=CUSTOMERS, link_id=f"s:C{n}", source_id=f"C{n}", target_id=f"cus_{n}",
                 snapshot_source=SNAPSHOT, snapshot_target={"name": f"n{n}"},
                 target_etag=f'"{n}"')
            for n in range(3)])
        store.commit([Link(pair=PRODUCTS, link_id="t:prd_1", source_id="P1",
                           target_id="prd_1", snapshot_target={"price": decimal.Decimal("1")})])
        store.reserve(Link(pair=PRODUCTS, link_id="s:P2", source_id="P2", attempt_id="att-1",
                           snapshot_source={"name": "new"}))
        store.advance_watermark("customerp-customwebshop", "customer", "customerp",
                                "2026-11-21T10:00:00+00:00")
        store.advance_watermark("customerp-customwebshop", "product", "customwebshop",
                                "2026-11-21T11:00:00+00:00")
        store.add_dead_letters([letter("r1", "C7"), letter("r1", "C8")])
        store.add_dead_letters([letter("r2", "C8", created_at="2026-11-21T12:00:00Z")])
        store.add_dead_letters([letter("r1", "P9", pair="product")])


def contents(url):
    """Everything a move must keep, without the store's own counters and times."""
    with open_link_store(url) as store:
        links = {}
        for pair, ids in ((CUSTOMERS, [f"C{n}" for n in range(5)] + ["C99"]),
                          (PRODUCTS, ["P1", "P2"])):
            for link in store.lookup_by_source(pair, ids).values():
                links[(pair, link.link_id)] = link.replace(version=0, updated_at=None)
        return {
            "links": links,
            "pending": [link.link_id for link in store.pending(PRODUCTS)],
            "watermarks": {(pair, system): store.get_watermark("customerp-customwebshop",
                                                               pair, system)
                           for pair in ("customer", "product")
                           for system in ("customerp", "customwebshop")},
            "dead_letters": {pair: store.open_dead_letters("customerp-customwebshop", pair)
                             for pair in ("customer", "product")},
        }


def records(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def links_cli(*args):
    return cli.main(["links", *args])


# --- export -------------------------------------------------------------------------------------

def test_export_writes_links_watermarks_and_open_dead_letters(sqlite_url, tmp_path, capsys):
    populate(sqlite_url)
    out = tmp_path / "moved" / "links.jsonl"
    assert links_cli("export", "--store", sqlite_url, "--out", str(out)) == 0
    assert capsys.readouterr().out.startswith(
        "exported 5 links, 2 watermarks, 2 open dead letters from ")
    lines = records(out)
    assert lines[0] == {"format": "talksync-links", "version": 1}
    assert [r["kind"] for r in lines[1:]] == ["link"] * 5 + ["watermark"] * 2 + \
        ["dead_letter"] * 2
    first = lines[1]
    assert first["snapshot_source"] == {"price": {"$decimal": "10.50"},
                                        "since": {"$date": "2026-01-02"}, "name": "Åse",
                                        "tags": ["a", "b"],
                                        "address": {"$map": {"city": "Bergen"}}}
    assert (first["pair"], first["link_id"], first["target_etag"], first["state"]) == (
        CUSTOMERS, "s:C0", '"0"', LINKED)
    assert "version" not in first and "updated_at" not in first
    reservation = next(r for r in lines if r.get("link_id") == "s:P2")
    assert (reservation["state"], reservation["attempt_id"]) == (PENDING, "att-1")
    assert [(r["run_id"], r["pair"], r["entity_id"]) for r in lines[-2:]] == [
        ("r2", "customer", "C8"), ("r1", "product", "P9")]
    assert not list(tmp_path.glob("moved/*.partial"))


def test_moving_to_another_store_keeps_everything_and_importing_again_adds_nothing(
        sqlite_url, target_url, tmp_path, capsys):
    populate(sqlite_url)
    exported = tmp_path / "links.jsonl"
    assert links_cli("export", "--store", sqlite_url, "--out", str(exported)) == 0
    assert links_cli("import", "--store", target_url, "--in", str(exported)) == 0
    assert "links: 5 added, 0 already there, 0 in conflict; watermarks: 2 moved forward" \
        in capsys.readouterr().out
    moved = contents(target_url)
    assert moved == contents(sqlite_url)
    assert moved["pending"] == ["s:P2"] and len(moved["links"]) == 5

    assert links_cli("import", "--store", target_url, "--in", str(exported)) == 0
    assert ("links: 0 added, 5 already there, 0 in conflict; watermarks: 0 moved forward, "
            "2 already as far; dead letters: 0 added, 2 already there") \
        in capsys.readouterr().out
    assert contents(target_url) == moved

    # and back: the target's export holds exactly what the first export held
    again = tmp_path / "again.jsonl"
    assert links_cli("export", "--store", target_url, "--out", str(again)) == 0
    assert sorted(map(json.dumps, records(again))) == sorted(map(json.dumps, records(exported)))


def test_import_keeps_what_the_store_knows_better_and_reports_conflicts(
        sqlite_url, target_url, tmp_path, capsys):
    populate(sqlite_url)
    exported = tmp_path / "links.jsonl"
    assert links_cli("export", "--store", sqlite_url, "--out", str(exported)) == 0
    with open_link_store(target_url) as target:
        # C0 already moved; C1's target id belongs to another link here; P2 is linked here
        target.commit([Link(pair=CUSTOMERS, link_id="s:C0", source_id="C0",
                            target_id="cus_0", snapshot_target={"name": "newer"}),
                       Link(pair=CUSTOMERS, link_id="t:cus_1", source_id="C99",
                            target_id="cus_1")])
        target.reserve(Link(pair=PRODUCTS, link_id="t:prd_1", source_id="P1",
                            target_id="prd_1", attempt_id="other"))
        target.advance_watermark("customerp-customwebshop", "customer", "customerp",
                                 "2026-11-22T00:00:00+00:00")
        target.add_dead_letters([letter("r3", "C5")])
    assert links_cli("import", "--store", target_url, "--in", str(exported)) == 1
    shown = capsys.readouterr()
    assert (f"talksync: links import: {CUSTOMERS} s:C1 not imported: another link (t:cus_1) "
            "holds target id cus_1") in shown.err
    assert "links: 3 added, 1 already there, 1 in conflict" in shown.out

    after = contents(target_url)
    assert after["links"][(CUSTOMERS, "s:C0")].snapshot_target == {"name": "newer"}
    assert after["links"][(CUSTOMERS, "t:cus_1")].source_id == "C99"
    assert (CUSTOMERS, "s:C1") not in after["links"]
    upgraded = after["links"][(PRODUCTS, "t:prd_1")]       # the reservation, now linked
    assert (upgraded.state, upgraded.snapshot_target) == (LINKED, {"price": 1})
    assert after["watermarks"][("customer", "customerp")] == "2026-11-22T00:00:00+00:00"
    assert after["watermarks"][("product", "customwebshop")] == "2026-11-21T11:00:00+00:00"
    assert [letter.run_id for letter in after["dead_letters"]["customer"]] == ["r3"]
    assert [letter.entity_id for letter in after["dead_letters"]["product"]] == ["P9"]


# --- usage errors -------------------------------------------------------------------------------

@pytest.mark.parametrize("content, problem", [
    (None, "cannot read the links file"),
    ("", "empty; expected a talksync links file"),
    ('{"kind": "link"}\n', ":1: not a talksync links file"),
    ('{"format": "talksync-links", "version": 1}\n{"kind": "watermark", "dataflow": "d", '
     '"pair": "p", "system": "s", "value": "2026-01-01T00:00:00Z"}\nnot json\n',
     ":3: not JSON"),
    ('{"format": "talksync-links", "version": 1}\n{"kind": "watermark", "dataflow": "d", '
     '"pair": "p", "system": "s", "value": "2026-01-01T00:00:00Z"}\n{"kind": "watermark", '
     '"dataflow": "d", "pair": "p", "system": "t", "value": "soon"}\n',
     ":3: watermark 'soon' is not an ISO 8601 timestamp"),
    ('{"format": "talksync-links", "version": 1}\n{"kind": "link", "pair": "p"}\n',
     ":2: link record without link_id, snapshot_source, snapshot_target, state"),
    ('{"format": "talksync-links", "version": 1}\n{"kind": "cake"}\n',
     ":2: unknown record kind 'cake'"),
    (b'{"format": "talksync-links", "version": 1}\n\xff\xfe\n', ": not UTF-8 text"),
])
def test_a_bad_file_is_refused_before_anything_is_written(content, problem, sqlite_url,
                                                          tmp_path, capsys):
    path = tmp_path / "links.jsonl"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content, encoding="utf-8")
    assert links_cli("import", "--store", sqlite_url, "--in", str(path)) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"talksync: error: {path}") and problem in error
    assert not (tmp_path / "local").exists()          # the store was not even opened


def test_export_of_a_store_that_is_not_there_is_refused(tmp_path, capsys):
    url = f"sqlite:///{tmp_path}/nothing/links.db"
    assert links_cli("export", "--store", url, "--out", str(tmp_path / "x.jsonl")) == 2
    assert "no SQLite link store at" in capsys.readouterr().err
    assert not (tmp_path / "nothing").exists() and not (tmp_path / "x.jsonl").exists()


def test_an_unknown_store_url_is_refused(tmp_path, capsys):
    assert links_cli("export", "--store", "redis://x", "--out", str(tmp_path / "x")) == 2
    assert "unsupported URL scheme 'redis'" in capsys.readouterr().err


def test_links_needs_a_subcommand_and_its_options(capsys):
    for argv in (["links"], ["links", "export", "--store", "sqlite:///x.db"],
                 ["links", "import", "--in", "x.jsonl"]):
        assert cli.main(argv) == 2
        err = capsys.readouterr().err
        assert "required" in err and len(err.strip().splitlines()) == 1, err


# --- moving a real installation -----------------------------------------------------------------

def test_a_user_who_moves_to_firestore_keeps_the_links_and_creates_no_duplicates(
        harness, firestore_url, tmp_path, capsys):
    status, first = harness.run("--pairs", "customer")     # one pair keeps the test quick
    assert status == 0 and first["pairs"]["customer"]["created_in_target"] > 0
    first_counts = (len(harness.list_all("customerp", "Customers")),
                    len(harness.list_all("customwebshop", "customers")))
    local = yaml.safe_load(open(harness.config, encoding="utf-8"))["link_store"]
    exported = tmp_path / "links.jsonl"
    assert links_cli("export", "--store", local, "--out", str(exported)) == 0
    assert links_cli("import", "--store", firestore_url, "--in", str(exported)) == 0
    capsys.readouterr()

    cloud = tmp_path / "cloud.yaml"
    config = yaml.safe_load(open(harness.config, encoding="utf-8"))
    cloud.write_text(yaml.safe_dump({**config, "link_store": firestore_url}), encoding="utf-8")
    harness.config = str(cloud)
    shop = {c["email"].lower(): c for c in harness.list_all("customwebshop", "customers")
            if c["email"] and not c["deleted"]}
    erp = {c["Email"].lower(): c for c in harness.list_all("customerp", "Customers")
           if c["Email"]}
    email = sorted(set(shop) & set(erp))[0]
    harness.patch_shop("customers", shop[email]["id"], {"phone": "+47 400 00 009"})
    harness.clear_logs()

    status, second = harness.run("--pairs", "customer")   # the edit reaches the ERP, only
    assert status == 0, second
    changes = {pair: {k: v for k, v in counts.items()
                      if k.startswith(("created", "linked", "updated")) and v}
               for pair, counts in second["pairs"].items()}
    assert changes == {"customer": {"updated": 1, "updated_source": 1}}
    assert harness.writes("customwebshop") == {} and harness.writes("customerp") == {"PUT": 1}
    assert harness.get("customerp", "Customers",
                       erp[email]["CustomerNo"]).json()["Phone"] == "+47 400 00 009"
    assert len(harness.list_all("customerp", "Customers")) == first_counts[0]
    assert len(harness.list_all("customwebshop", "customers")) == first_counts[1]
