"""The Custom ERP connector against the sandbox emulator, over real HTTP."""

import datetime
import decimal
import http.server
import json
import math
import threading
import urllib.parse

import pytest
import requests

from connectors import connector_for
from connectors.customerp import CustomErpConnector
from connectors.errors import PermanentApiError, PreconditionFailedError, TransientApiError
from core.model import SystemConfig, WriteOp
from sandbox import seed

SYSTEM = "customerp"
API_KEY_SETTING = "${TALKSYNC_SANDBOX_CUSTOMERP_API_KEY}"
SEED = seed.erp_seed(42)
SEED_COUNTS = {entity: len(rows) for entity, rows in SEED.items()}
KEYS = {"Customers": "CustomerNo", "Products": "ItemNo", "Orders": "OrderNo"}


def connect(sandbox, **settings):
    config = SystemConfig(name="erp", type=SYSTEM, base_url=sandbox.url(SYSTEM),
                          settings={"api_key": API_KEY_SETTING, **settings})
    return connector_for(config)


@pytest.fixture
def erp(sandbox):
    with connect(sandbox) as connector:
        yield connector


def raw_get(sandbox, path):
    """A GET the connector does not make: the wire text, to compare against."""
    response = requests.get(sandbox.url(SYSTEM) + path, timeout=10,
                            headers={"Authorization": f"ApiKey {sandbox.api_key(SYSTEM)}"})
    response.raise_for_status()
    return response


def product(item_no, **fields):
    return {"ItemNo": item_no, "Description": f"Test item {item_no}", **fields}


# --- construction -------------------------------------------------------------------------------

def test_registry_builds_this_connector(erp):
    assert isinstance(erp, CustomErpConnector)
    assert erp.entities == ("Customers", "Products", "Orders")
    assert erp.max_batch_size == 1


def test_wrong_api_key_is_a_permanent_error(sandbox, monkeypatch):
    monkeypatch.setenv("TALKSYNC_SANDBOX_CUSTOMERP_API_KEY", "not-the-key-98765")
    with connect(sandbox) as erp, pytest.raises(PermanentApiError) as caught:
        erp.get("Products", ["IT-10009"])
    assert caught.value.status == 401 and "Unauthorized" in str(caught.value)


# --- reading ------------------------------------------------------------------------------------

@pytest.mark.parametrize("entity", ["Customers", "Products", "Orders"])
def test_full_read_returns_every_seeded_entity_once(erp, sandbox, entity):
    records = list(erp.read(entity))
    assert sorted(r.id for r in records) == sorted(row[KEYS[entity]] for row in SEED[entity])
    # one page holds them all; a short page is the last
    assert sandbox.requests(SYSTEM)["count"] == 1 == erp.request_count
    for record in records:
        assert record.fields[KEYS[entity]] == record.id
        assert "ModifiedAt" not in record.fields
        assert record.modified.tzinfo == datetime.UTC and not record.deleted


def test_incremental_read_starts_at_since_inclusive(erp):
    records = sorted(erp.read("Customers"), key=lambda r: r.modified)
    since = records[200].modified
    assert [r.id for r in erp.read("Customers", since=since)] == [r.id for r in records[200:]]


def test_keyset_paging_with_rows_changed_mid_read(sandbox):
    """Rows read and not yet read change between pages: every row still comes exactly once."""
    with connect(sandbox, page_size=10) as erp:
        reader = erp.read("Products")
        # Two pages read; the generator stops at the last row of page 2, the cursor.
        first_pages = [next(reader) for _ in range(20)]
        in_order = sorted(SEED["Products"], key=lambda r: r["ModifiedAt"])
        changed = [first_pages[19].id,                        # the cursor row
                   first_pages[3].id,                         # an earlier row
                   in_order[25]["ItemNo"],                    # not read yet, next page
                   in_order[150]["ItemNo"]]                   # not read yet, a later page
        results = erp.write([WriteOp("update", "Products", {"StockQty": 987654}, key, id=key)
                             for key in changed])
        assert all(r.ok for r in results)
        records = first_pages + list(reader)
    ids = [r.id for r in records]
    assert len(ids) == len(set(ids)) == SEED_COUNTS["Products"]
    assert set(ids) == {row["ItemNo"] for row in SEED["Products"]}
    refreshed = {r.id: r for r in records}
    assert refreshed[in_order[150]["ItemNo"]].fields["StockQty"] == 987654


def test_keyset_paging_stops_at_a_short_page(sandbox):
    with connect(sandbox, page_size=50) as erp:
        records = list(erp.read("Orders"))
    assert len(records) == SEED_COUNTS["Orders"] == 200
    gets = [entry["path"] for entry in sandbox.requests(SYSTEM)["log"]]
    # 200 rows in pages of 50: four full pages and an empty one
    assert len(gets) == math.ceil(201 / 50)
    assert all(path == "/erp/v1/Orders" for path in gets)


def test_paging_resumes_right_after_the_cursor_row(sandbox, erp):
    """Each next page starts with the last row seen (the overlap), then new rows."""
    with connect(sandbox, page_size=7) as small:
        records = list(small.read("Customers"))
    assert [r.id for r in records] == [r.id for r in erp.read("Customers")]


def test_decimals_are_exact(erp, sandbox):
    by_no = {r.id: r for r in erp.read("Products")}
    wire = {row["ItemNo"]: row for row in
            json.loads(raw_get(sandbox, "/Products?limit=1000").text,
                       parse_float=decimal.Decimal)["items"]}
    for item_no, row in wire.items():
        assert by_no[item_no].fields["SalesPrice"] == row["SalesPrice"]
        assert isinstance(by_no[item_no].fields["SalesPrice"], decimal.Decimal)
    price = decimal.Decimal("12345678901234.5678")       # a float would make this ...4.568
    (result,) = erp.write([WriteOp("create", "Products",
                                   product("DEC-1", SalesPrice=price,
                                           CostPrice=decimal.Decimal("0.10")), "r")])
    assert result.record.fields["SalesPrice"] == price
    assert "12345678901234.5678" in raw_get(sandbox, "/Products/DEC-1").text
    (stored,) = erp.get("Products", ["DEC-1"])
    assert stored.fields["SalesPrice"] == price
    assert stored.fields["CostPrice"] == decimal.Decimal("0.10")


# --- get ----------------------------------------------------------------------------------------

def test_get_leaves_missing_keys_out_and_carries_the_etag(erp):
    records = erp.get("Customers", ["C10001", "C99999", "C10002"])
    assert [r.id for r in records] == ["C10001", "C10002"]
    assert all(r.etag == '"1"' for r in records)


# --- writing ------------------------------------------------------------------------------------

def test_create_returns_the_record_and_one_request_per_op(erp, sandbox):
    results = erp.write([WriteOp("create", "Products", product("NEW-1"), "a"),
                         WriteOp("create", "Customers", {"Name": "Ny Kunde AS"}, "b")])
    assert [r.ref for r in results] == ["a", "b"]
    assert results[0].record.id == "NEW-1" and results[0].record.etag == '"1"'
    assert results[1].record.id.startswith("C1") and results[1].record.fields["Name"] == \
        "Ny Kunde AS"
    assert not any(r.adopted for r in results)
    assert sandbox.requests(SYSTEM)["by_method"] == {"POST": 2}


def test_create_of_an_existing_key_adopts_it(erp, sandbox):
    (first,) = erp.write([WriteOp("create", "Products", product("DUP-1", StockQty=3), "a")])
    (again,) = erp.write([WriteOp("create", "Products",
                                  product("DUP-1", Description="Another text"), "b")])
    assert first.ok and not first.adopted
    assert again.ok and again.adopted and again.ref == "b"
    assert again.record.id == "DUP-1"
    assert again.record.fields["Description"] == "Test item DUP-1"      # the existing values
    assert again.record.fields["StockQty"] == 3 and again.record.etag == '"1"'
    assert [e["status"] for e in sandbox.requests(SYSTEM)["log"]] == [201, 409, 200]


def test_lost_create_response_is_transient_and_the_entity_exists(erp, sandbox):
    sandbox.set_faults(SYSTEM, lost_response_rate=1.0, only=["POST"])
    (lost,) = erp.write([WriteOp("create", "Products", product("LOST-1"), "a")])
    assert isinstance(lost.error, TransientApiError) and lost.error.transient
    assert lost.error.status is None
    assert erp.request_count == 1                  # not resent: it may have been (and was) done
    sandbox.set_faults(SYSTEM)
    assert [r.id for r in erp.get("Products", ["LOST-1"])] == ["LOST-1"]
    (retried,) = erp.write([WriteOp("create", "Products", product("LOST-1"), "a")])
    assert retried.ok and retried.adopted


def test_update_sends_only_the_given_fields(erp):
    (before,) = erp.get("Customers", ["C10001"])
    (result,) = erp.write([WriteOp("update", "Customers", {"Phone": "+47 555 55 555"}, "u",
                                   id="C10001", if_match=before.etag)])
    assert result.ok and result.record.fields["Phone"] == "+47 555 55 555"
    assert {k: v for k, v in result.record.fields.items() if k != "Phone"} == \
        {k: v for k, v in before.fields.items() if k != "Phone"}
    assert result.record.etag == '"2"' and result.record.modified > before.modified


def test_stale_if_match_is_a_precondition_failure(erp):
    (before,) = erp.get("Products", ["IT-10009"])
    erp.write([WriteOp("update", "Products", {"StockQty": 987653}, "a", id="IT-10009")])
    (stale,) = erp.write([WriteOp("update", "Products", {"StockQty": 2}, "b", id="IT-10009",
                                  if_match=before.etag)])
    assert isinstance(stale.error, PreconditionFailedError) and stale.error.status == 412
    assert stale.error.error_class == "conflict"
    assert erp.get("Products", ["IT-10009"])[0].fields["StockQty"] == 987653


def test_validation_error_names_the_field_and_does_not_stop_the_others(erp):
    bad, good = erp.write([WriteOp("create", "Products", {"ItemNo": "BAD-1"}, "bad"),
                           WriteOp("create", "Products", product("GOOD-1"), "good")])
    assert isinstance(bad.error, PermanentApiError) and bad.error.status == 400
    assert "ValidationError" in str(bad.error) and "Description" in str(bad.error)
    assert bad.error.body["Error"]["Field"] == "Description"
    assert good.ok


def test_a_delete_removes_the_entity_for_good_with_if_match(erp, sandbox):
    (current,) = erp.get("Customers", ["C10003"])
    (result,) = erp.write([WriteOp("delete", "Customers", {}, "d", id="C10003",
                                   if_match=current.etag)])
    assert result.ok and result.ref == "d" and result.record is None
    assert erp.get("Customers", ["C10003"]) == []
    [entry] = [e for e in sandbox.requests(SYSTEM)["log"] if e["method"] == "DELETE"]
    assert entry["status"] == 204


def test_a_delete_of_a_changed_entity_fails_and_of_a_missing_one_succeeds(erp):
    (current,) = erp.get("Customers", ["C10004"])
    erp.write([WriteOp("update", "Customers", {"Phone": "+47 2"}, "u", id="C10004")])
    stale, gone = erp.write([
        WriteOp("delete", "Customers", {}, "d", id="C10004", if_match=current.etag),
        WriteOp("delete", "Customers", {}, "g", id="C99998")])
    assert isinstance(stale.error, PreconditionFailedError) and stale.error.status == 412
    assert [r.id for r in erp.get("Customers", ["C10004"])] == ["C10004"]
    assert gone.ok and gone.record is None


def test_update_of_a_missing_key_is_a_permanent_error(erp):
    (result,) = erp.write([WriteOp("update", "Products", {"StockQty": 1}, "x", id="NOPE-1")])
    assert isinstance(result.error, PermanentApiError) and result.error.status == 404
    assert "PUT /Products/NOPE-1" in str(result.error)


# --- keyset paging where timestamps tie ---------------------------------------------------------

class TiedTimestampsErp:
    """A minimal ERP list endpoint whose rows share ``ModifiedAt`` values (as real ERPs with
    second-resolution clocks do, and the sandbox never does), with ``touch`` to change a row."""

    def __init__(self, rows):
        self.rows = {row["ItemNo"]: row for row in rows}
        self.after_request = lambda count: None
        self.requests = 0
        erp = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                url = urllib.parse.urlsplit(self.path)
                query = dict(urllib.parse.parse_qsl(url.query))
                since = query.get("modifiedSince", "")
                offset, limit = int(query["offset"]), int(query["limit"])
                matching = sorted((r for r in erp.rows.values() if r["ModifiedAt"] >= since),
                                  key=lambda r: (r["ModifiedAt"], r["ItemNo"]))
                body = json.dumps({"items": matching[offset:offset + limit],
                                   "total": len(matching)}).encode()
                erp.requests += 1
                erp.after_request(erp.requests)
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}/erp/v1"
        threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02},
                         daemon=True).start()

    def touch(self, item_no, modified):
        self.rows[item_no] = {**self.rows[item_no], "ModifiedAt": modified}

    def close(self):
        self._httpd.shutdown()
        self._httpd.server_close()


T1, T2, LATER = ("2026-01-01T10:00:00.000000Z", "2026-01-01T10:00:01.000000Z",
                 "2026-01-01T11:00:00.000000Z")


@pytest.fixture
def tied_erp(monkeypatch):
    monkeypatch.setenv("TIED_ERP_KEY", "k")
    rows = ([{"ItemNo": f"A{n:02}", "ModifiedAt": T1} for n in range(12)]
            + [{"ItemNo": f"B{n:02}", "ModifiedAt": T2} for n in range(5)])
    fake = TiedTimestampsErp(rows)
    yield fake
    fake.close()


def read_tied(fake, page_size=5):
    config = SystemConfig(name="erp", type=SYSTEM, base_url=fake.url,
                          settings={"api_key": "${TIED_ERP_KEY}", "page_size": page_size})
    with connector_for(config) as erp:
        return [r.id for r in erp.read("Products")]


def test_a_tie_group_longer_than_a_page_is_read_whole(tied_erp):
    assert read_tied(tied_erp) == sorted(tied_erp.rows)
    # pages at offsets 0, 4, 8 (T1), then the T2 rows after the overlap, then a short page
    assert tied_erp.requests == 5


@pytest.mark.parametrize("moved", ["A01", "A04", "A07", "B00"])
def test_a_row_of_the_cursor_group_changing_mid_read_skips_nothing(tied_erp, moved):
    def after(count):
        if count == 1:                  # after the first page (A00..A04, all at T1)
            tied_erp.touch(moved, LATER)
    tied_erp.after_request = after
    ids = read_tied(tied_erp)
    assert len(ids) == len(set(ids)) and set(ids) == set(tied_erp.rows)


def test_an_unknown_kind_or_entity_is_refused_before_anything_is_sent(erp):
    with pytest.raises(ValueError, match="'upsert'"):
        erp.write([WriteOp("create", "Products", product("OK-1"), "a"),
                   WriteOp("upsert", "Products", {}, "b", id="IT-10009")])
    with pytest.raises(ValueError, match="a delete of Products needs the id"):
        erp.write([WriteOp("delete", "Products", {}, "c")])
    with pytest.raises(ValueError, match="Customers, Products, Orders"):
        erp.write([WriteOp("create", "products", product("OK-1"), "a")])
    assert erp.request_count == 0
