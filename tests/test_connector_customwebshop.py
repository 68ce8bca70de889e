"""The Custom Webshop connector against the sandbox emulator, over real HTTP."""

import dataclasses
import datetime
import decimal
import math

import pytest
import requests

from connectors import connector_for
from connectors.customwebshop import CustomWebshopConnector
from connectors.errors import PermanentApiError, PreconditionFailedError, TransientApiError
from connectors.secrets import SecretError
from core.model import SystemConfig, WriteOp
from sandbox import seed

SYSTEM = "customwebshop"
API_KEY_SETTING = "${TALKSYNC_SANDBOX_CUSTOMWEBSHOP_API_KEY}"
SEED_COUNTS = {entity: len(rows) for entity, rows in seed.webshop_seed(42).items()}


def connect(sandbox, **settings):
    config = SystemConfig(name="shop", type=SYSTEM, base_url=sandbox.url(SYSTEM),
                          settings={"api_key": API_KEY_SETTING, **settings})
    return connector_for(config)


@pytest.fixture
def shop(sandbox):
    with connect(sandbox) as connector:
        yield connector


def batch_requests(sandbox, entity):
    return [entry for entry in sandbox.requests(SYSTEM)["log"]
            if entry["method"] == "POST" and entry["path"].endswith(f"/{entity}:batch")]


def customer(n):
    return {"email": f"new{n}@example.com", "first_name": f"First{n}", "last_name": "Test"}


# --- construction -------------------------------------------------------------------------------

def test_registry_builds_this_connector(shop):
    assert isinstance(shop, CustomWebshopConnector)
    assert shop.entities == ("customers", "products", "orders")
    assert shop.max_batch_size == 100


def test_registry_refuses_an_unknown_type():
    config = SystemConfig(name="x", type="sap", base_url="http://127.0.0.1:1")
    with pytest.raises(ValueError, match=r"unknown type 'sap'; known types: .*customerp, "
                                         r"customwebshop"):
        connector_for(config)


def test_missing_api_key_setting_is_a_config_error(sandbox):
    config = SystemConfig(name="shop", type=SYSTEM, base_url=sandbox.url(SYSTEM))
    with pytest.raises(ValueError, match="'shop'.*'api_key' is required"):
        connector_for(config)


def test_missing_api_key_variable_is_a_config_error(sandbox, monkeypatch):
    monkeypatch.delenv("TALKSYNC_SANDBOX_CUSTOMWEBSHOP_API_KEY")
    with pytest.raises(SecretError, match="TALKSYNC_SANDBOX_CUSTOMWEBSHOP_API_KEY"):
        connect(sandbox)


def test_wrong_api_key_is_a_permanent_error(sandbox, monkeypatch):
    monkeypatch.setenv("TALKSYNC_SANDBOX_CUSTOMWEBSHOP_API_KEY", "wrong-key-123456")
    with connect(sandbox) as shop, pytest.raises(PermanentApiError) as caught:
        list(shop.read("customers"))
    assert caught.value.status == 401 and "unauthorized" in str(caught.value)
    assert "wrong-key-123456" not in str(caught.value) + repr(caught.value.body)


def test_unknown_entity_is_refused(shop):
    with pytest.raises(ValueError, match="customers, products, orders"):
        shop.read("Customers")


# --- reading ------------------------------------------------------------------------------------

@pytest.mark.parametrize("entity", ["customers", "products", "orders"])
def test_full_read_returns_every_seeded_entity_once(shop, sandbox, entity):
    records = list(shop.read(entity))
    assert len(records) == SEED_COUNTS[entity]
    assert len({r.id for r in records}) == len(records)
    expected_pages = math.ceil(SEED_COUNTS[entity] / type(shop).default_page_size)
    assert sandbox.requests(SYSTEM)["by_method"] == {"GET": expected_pages}
    assert shop.request_count == expected_pages
    for record in records:
        assert record.system == "shop" and record.entity == entity
        assert record.modified.tzinfo == datetime.UTC
        assert not {"id", "updated_at", "deleted"} & set(record.fields)
        assert record.etag is None


def test_records_keep_the_wire_values(shop):
    by_id = {r.id: r for r in shop.read("products")}
    for row in seed.webshop_seed(42)["products"]:
        record = by_id[row["id"]]
        assert record.fields["price"] == row["price"] and isinstance(row["price"], str)
        assert record.modified == datetime.datetime.fromisoformat(row["updated_at"])
        assert record.deleted == row["deleted"]


def test_soft_deleted_entities_are_read_as_deleted(shop, sandbox):
    response = requests.delete(sandbox.url(SYSTEM) + "/customers/cus_000002",
                               headers={"X-Api-Key": sandbox.api_key(SYSTEM)}, timeout=10)
    assert response.status_code == 204
    (record,) = [r for r in shop.read("customers") if r.id == "cus_000002"]
    assert record.deleted


def test_incremental_read_starts_at_since_inclusive(shop):
    records = sorted(shop.read("customers"), key=lambda r: (r.modified, r.id))
    since = records[100].modified
    later = list(shop.read("customers", since=since))
    assert {r.id for r in later} == {r.id for r in records if r.modified >= since}
    assert since in {r.modified for r in later}


def test_incremental_read_sees_a_write(shop):
    before = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=1)
    (result,) = shop.write([WriteOp("update", "products", {"stock_quantity": 5}, "r1",
                                    id="prd_000003")])
    assert result.ok
    assert [r.id for r in shop.read("products", since=before)] == ["prd_000003"]


def test_naive_since_is_refused(shop):
    with pytest.raises(ValueError, match="naive"):
        list(shop.read("customers", since=datetime.datetime(2025, 1, 1)))


def test_small_pages_with_rows_changed_mid_read(sandbox):
    with connect(sandbox, page_size=7) as shop:
        reader = shop.read("products")
        first_page = [next(reader) for _ in range(7)]
        # Change a row already read and one not read yet, between two pages.
        unread = sorted(seed.webshop_seed(42)["products"], key=lambda r: r["updated_at"])[-1]
        changes = [WriteOp("update", "products", {"stock_quantity": 987651}, "a",
                           id=first_page[-1].id),
                   WriteOp("update", "products", {"stock_quantity": 987652}, "b", id=unread["id"])]
        assert all(r.ok for r in shop.write(changes))
        records = first_page + list(reader)
    ids = [r.id for r in records]
    assert len(ids) == len(set(ids)) == SEED_COUNTS["products"]
    # after the first page: 193 rows left, and the changed row already read comes round again
    assert sandbox.requests(SYSTEM)["by_method"] == {"GET": 1 + math.ceil(194 / 7), "POST": 1}


# --- get ----------------------------------------------------------------------------------------

def test_get_leaves_missing_ids_out_and_carries_the_etag(shop):
    records = shop.get("customers", ["cus_000001", "cus_999999", "cus_000003"])
    assert [r.id for r in records] == ["cus_000001", "cus_000003"]
    assert all(r.etag == '"1"' for r in records)
    assert shop.request_count == 3


def test_get_of_an_id_with_url_delimiters_is_just_missing(shop):
    assert shop.get("customers", ["a/b?c#d"]) == []


# --- writing ------------------------------------------------------------------------------------

def test_250_creates_take_three_batch_requests(shop, sandbox):
    ops = [WriteOp("create", "customers", customer(n), f"ref-{n}",
                   idempotency_key=f"key-{n}") for n in range(250)]
    results = shop.write(ops)
    assert [r.ref for r in results] == [op.ref for op in ops]
    assert all(r.ok and not r.adopted for r in results)
    assert [r.record.fields["email"] for r in results] == [op.fields["email"] for op in ops]
    assert len({r.record.id for r in results}) == 250
    assert all(r.record.etag == '"1"' for r in results)
    assert len(batch_requests(sandbox, "customers")) == 3
    assert sandbox.requests(SYSTEM)["count"] == 3 == shop.request_count
    assert len(list(shop.read("customers"))) == SEED_COUNTS["customers"] + 250


def test_ops_of_several_entities_come_back_in_input_order(shop, sandbox):
    ops = [WriteOp("create", "customers", customer(1), "c1"),
           WriteOp("update", "products", {"stock_quantity": 9}, "p1", id="prd_000001"),
           WriteOp("create", "customers", customer(2), "c2"),
           WriteOp("update", "products", {"name": "Renamed"}, "p2", id="prd_000002")]
    results = shop.write(ops)
    assert [r.ref for r in results] == ["c1", "p1", "c2", "p2"]
    assert results[1].record.fields["stock_quantity"] == 9
    assert results[3].record.fields["name"] == "Renamed" and results[3].record.etag == '"2"'
    assert len(batch_requests(sandbox, "customers")) == 1
    assert len(batch_requests(sandbox, "products")) == 1


def test_decimals_and_dates_are_sent_in_the_api_formats(shop):
    product = {"sku": "DEC-1", "name": "Decimal test", "price": decimal.Decimal("523.00"),
               "cost": decimal.Decimal("203.9700"), "vat_rate": decimal.Decimal("25")}
    (created,) = shop.write([WriteOp("create", "products", product, "p")])
    assert created.ok, created.error
    assert (created.record.fields["price"], created.record.fields["cost"],
            created.record.fields["vat_rate"]) == ("523.00", "203.9700", "25")
    order = {"number": "DEC-ORDER-1", "customer_id": "cus_000001", "currency": "NOK",
             "order_date": datetime.date(2026, 1, 31),
             "lines": ({"product_id": created.record.id, "quantity": decimal.Decimal("3"),
                        "unit_price": decimal.Decimal("10.50"),
                        "discount_percent": decimal.Decimal("0")},)}
    (placed,) = shop.write([WriteOp("create", "orders", order, "o")])
    assert placed.ok, placed.error
    assert placed.record.fields["order_date"] == "2026-01-31"
    assert placed.record.fields["lines"][0]["unit_price"] == "10.50"
    assert placed.record.fields["total"] == "31.50"


def test_a_failing_operation_does_not_fail_the_others(shop):
    ops = [WriteOp("create", "customers", customer(1), "good-1"),
           WriteOp("create", "customers", {"email": "bad@example.com", "shoe_size": 44}, "bad"),
           WriteOp("update", "customers", {"email": "x@example.com"}, "missing",
                   id="cus_999999"),
           WriteOp("create", "customers", customer(2), "good-2")]
    good1, bad, missing, good2 = shop.write(ops)
    assert good1.ok and good2.ok
    assert isinstance(bad.error, PermanentApiError) and bad.error.status == 422
    assert bad.error.error_class == "permanent" and not bad.error.transient
    assert "shoe_size" in str(bad.error) and "POST /customers (in a batch)" in str(bad.error)
    assert bad.error.body["error"]["code"] == "validation_failed"
    assert isinstance(missing.error, PermanentApiError) and missing.error.status == 404
    assert "PATCH /customers/cus_999999" in str(missing.error)


def test_a_repeated_create_with_the_same_key_returns_the_first(shop):
    op = WriteOp("create", "customers", customer(1), "r1", idempotency_key="attempt-42")
    (first,) = shop.write([op])
    (again,) = shop.write([dataclasses.replace(op, fields=customer(2))])
    assert first.ok and not first.adopted
    assert again.ok and again.adopted
    assert again.record.id == first.record.id
    assert again.record.fields["email"] == customer(1)["email"]
    assert len(list(shop.read("customers"))) == SEED_COUNTS["customers"] + 1


def test_a_stale_if_match_is_a_precondition_failure(shop):
    (current,) = shop.get("products", ["prd_000001"])
    (first,) = shop.write([WriteOp("update", "products", {"stock_quantity": 987651}, "a",
                                   id="prd_000001", if_match=current.etag)])
    assert first.ok and first.record.etag != current.etag
    (stale,) = shop.write([WriteOp("update", "products", {"stock_quantity": 2}, "b",
                                   id="prd_000001", if_match=current.etag)])
    assert isinstance(stale.error, PreconditionFailedError)
    assert stale.error.status == 412 and stale.error.error_class == "conflict"
    assert shop.get("products", ["prd_000001"])[0].fields["stock_quantity"] == 987651


def test_a_failed_batch_request_fails_every_op_without_raising(shop, sandbox):
    sandbox.set_faults(SYSTEM, error_rate=1.0, status=500)
    ops = [WriteOp("create", "customers", customer(n), f"r{n}") for n in range(3)]
    results = shop.write(ops)
    assert [r.ref for r in results] == ["r0", "r1", "r2"]
    assert all(isinstance(r.error, TransientApiError) and r.error.status == 500
               for r in results)
    # creates without idempotency keys: a batch that may have been applied is not resent
    assert shop.request_count == 1


def test_unknown_write_kind_is_refused(shop):
    with pytest.raises(ValueError, match="create, update or delete"):
        shop.write([WriteOp("upsert", "customers", {}, "r", id="cus_000001")])


# --- deletes (docs/deletes.md) ------------------------------------------------------------------

def test_a_delete_is_a_soft_delete_sent_with_if_match(shop, sandbox):
    (current,) = shop.get("customers", ["cus_000002"])
    created, deleted = shop.write([
        WriteOp("create", "customers", customer(71), "c"),
        WriteOp("delete", "customers", {}, "d", id="cus_000002", if_match=current.etag)])
    assert created.ok and created.record is not None
    assert deleted.ok and deleted.ref == "d" and deleted.record is None
    [entry] = [e for e in sandbox.requests(SYSTEM)["log"] if e["method"] == "DELETE"]
    assert entry["path"].endswith("/customers/cus_000002") and entry["status"] == 204
    (after,) = shop.get("customers", ["cus_000002"])
    assert after.deleted                        # the webshop keeps it, flagged


def test_a_delete_of_a_record_changed_since_it_was_read_fails_and_deletes_nothing(shop):
    (current,) = shop.get("customers", ["cus_000003"])
    shop.write([WriteOp("update", "customers", {"phone": "+47 1"}, "u", id="cus_000003")])
    (stale,) = shop.write([WriteOp("delete", "customers", {}, "d", id="cus_000003",
                                   if_match=current.etag)])
    assert isinstance(stale.error, PreconditionFailedError) and stale.error.status == 412
    assert not shop.get("customers", ["cus_000003"])[0].deleted


def test_a_delete_of_a_record_already_gone_is_a_success(shop):
    (gone,) = shop.write([WriteOp("delete", "customers", {}, "d", id="cus_999999")])
    assert gone.ok and gone.record is None
    shop.write([WriteOp("delete", "customers", {}, "d", id="cus_000004")])
    (again,) = shop.write([WriteOp("delete", "customers", {}, "d", id="cus_000004")])
    assert again.ok


# --- rate limits --------------------------------------------------------------------------------

def test_a_429_is_waited_out_as_retry_after_says(shop, sandbox):
    sandbox.set_faults(SYSTEM, rate_limit={"limit": 3, "window_s": 1})
    records = shop.get("customers", [f"cus_{n:06}" for n in range(1, 5)])
    assert [r.id for r in records] == [f"cus_{n:06}" for n in range(1, 5)]
    statuses = [entry["status"] for entry in sandbox.requests(SYSTEM)["log"]]
    assert statuses == [200, 200, 200, 429, 200]
    assert shop.request_count == 5


def test_requests_per_second_keeps_under_the_rate_limit(sandbox):
    sandbox.set_faults(SYSTEM, rate_limit={"limit": 3, "window_s": 1})
    with connect(sandbox, requests_per_second=2.5) as shop:
        assert len(shop.get("customers", [f"cus_{n:06}" for n in range(1, 7)])) == 6
    assert [entry["status"] for entry in sandbox.requests(SYSTEM)["log"]] == [200] * 6
