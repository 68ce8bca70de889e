"""End to end: the real pipeline, `talksync run`, against the sandbox over HTTP.

Each test starts from the sandbox's seed data (seed 42): ERP and webshop customers, products and
orders, some present in both systems under the same match key.
"""

from __future__ import annotations

import json
import pathlib
from decimal import Decimal

import pyarrow.parquet

from tests.conftest import group_by

DATAFLOW = "customerp-customwebshop"
WRITE_COUNTERS = ("created_in_target", "created_in_source", "linked_by_match",
                  "updated_target", "updated_source")


def _snapshot(h):
    """Every live record of both systems (soft-deleted webshop rows are not synced)."""
    live = _live
    return {
        "erp_customers": h.list_all("customerp", "Customers"),
        "shop_customers": live(h.list_all("customwebshop", "customers")),
        "erp_products": h.list_all("customerp", "Products"),
        "shop_products": live(h.list_all("customwebshop", "products")),
        "erp_orders": h.list_all("customerp", "Orders"),
        "shop_orders": live(h.list_all("customwebshop", "orders")),
    }


def _live(rows):
    return [row for row in rows if not row.get("deleted")]


def _assert_one_to_one(h, ignore=None):
    """Every entity has exactly one counterpart under its match key, on both sides (leaving
    out the rows ``ignore`` picks, if given)."""
    now = _snapshot(h)
    if ignore is not None:
        now = {name: [row for row in rows if not ignore(row)] for name, rows in now.items()}
    for erp, shop, erp_key, shop_key, fold in [
            ("erp_customers", "shop_customers", "Email", "email", True),
            ("erp_products", "shop_products", "ItemNo", "sku", False),
            ("erp_orders", "shop_orders", "OrderNo", "number", False)]:
        erp_keys = group_by(now[erp], erp_key, fold)
        shop_keys = group_by(now[shop], shop_key, fold)
        assert {k for k, v in erp_keys.items() if len(v) > 1} == set(), f"duplicates in {erp}"
        assert {k for k, v in shop_keys.items() if len(v) > 1} == set(), f"duplicates in {shop}"
        assert set(erp_keys) == set(shop_keys), f"{erp} and {shop} disagree"
    return now


def _writes(report) -> dict:
    return {pair: {k: counts[k] for k in WRITE_COUNTERS if counts[k]}
            for pair, counts in report["pairs"].items() if any(counts[k] for k in WRITE_COUNTERS)}


def test_first_run_creates_every_entity_once_and_links_existing_matches(harness):
    before = _snapshot(harness)
    overlap = (set(group_by(before["erp_customers"], "Email", True))
               & set(group_by(before["shop_customers"], "email", True)))
    sku_overlap = set(group_by(before["erp_products"], "ItemNo")) & set(
        group_by(before["shop_products"], "sku"))
    assert len(overlap) >= 20 and len(sku_overlap) >= 20   # the seed exercises matching

    status, report = harness.run()

    assert status == 0, report
    customers, products = report["pairs"]["customer"], report["pairs"]["product"]
    assert customers["linked_by_match"] == 2 * len(overlap)     # records: 2 to a link
    assert customers["created_in_target"] == len(before["erp_customers"]) - len(overlap)
    assert customers["created_in_source"] == len(before["shop_customers"]) - len(overlap)
    assert products["linked_by_match"] == 2 * len(sku_overlap)
    assert products["created_in_target"] == len(before["erp_products"]) - len(sku_overlap)
    assert products["created_in_source"] == len(before["shop_products"]) - len(sku_overlap)
    assert all(counts["dead_letters"] == 0 for counts in report["pairs"].values())
    after = _assert_one_to_one(harness)
    assert len(after["shop_customers"]) == len(before["shop_customers"]) + customers[
        "created_in_target"]
    assert report["requests"]["customwebshop"] > 0 and report["requests"]["customerp"] > 0


def test_rerun_without_edits_writes_nothing(synced_harness):
    harness = synced_harness
    harness.clear_logs()

    status, report = harness.run()

    assert status == 0
    assert _writes(report) == {}
    assert harness.writes("customwebshop") == {} and harness.writes("customerp") == {}


def test_edits_on_either_side_reach_the_other_and_merge(synced_harness):
    harness = synced_harness
    shop_customers = group_by(harness.list_all("customwebshop", "customers"), "email", True)
    erp_customers = group_by(harness.list_all("customerp", "Customers"), "Email", True)
    erp_products = group_by(harness.list_all("customerp", "Products"), "ItemNo")
    shop_products = group_by(harness.list_all("customwebshop", "products"), "sku")
    emails = sorted(set(shop_customers) & set(erp_customers))
    skus = sorted(set(erp_products) & set(shop_products))

    # a webshop edit, an ERP edit, and one customer edited on both sides (different fields)
    harness.patch_shop("customers", shop_customers[emails[0]][0]["id"],
                       {"phone": "+47 400 00 001"})
    harness.put_erp("Products", skus[0], {"SalesPrice": Decimal("1234.50")})
    merged = emails[1]
    harness.patch_shop("customers", shop_customers[merged][0]["id"],
                       {"address": {"city": "Tromsø"}})
    harness.put_erp("Customers", erp_customers[merged][0]["CustomerNo"],
                    {"Phone": "+47 900 00 002"})

    status, report = harness.run()

    assert status == 0
    assert harness.get("customerp", "Customers",
                       erp_customers[emails[0]][0]["CustomerNo"]).json()["Phone"] == \
        "+47 400 00 001"
    assert Decimal(harness.get("customwebshop", "products",
                               shop_products[skus[0]][0]["id"]).json()["price"]) == \
        Decimal("1234.50")
    erp_merged = harness.get("customerp", "Customers",
                             erp_customers[merged][0]["CustomerNo"]).json()
    shop_merged = harness.get("customwebshop", "customers",
                              shop_customers[merged][0]["id"]).json()
    assert (erp_merged["City"], erp_merged["Phone"]) == ("Tromsø", "+47 900 00 002")
    assert (shop_merged["address"]["city"], shop_merged["phone"]) == ("Tromsø",
                                                                      "+47 900 00 002")
    assert report["pairs"]["customer"]["updated_source"] == 2
    assert report["pairs"]["customer"]["updated_target"] == 1
    assert report["pairs"]["product"]["updated_target"] == 1
    assert report["pairs"]["customer"]["conflicts"] == 0

    harness.clear_logs()
    status, report = harness.run()
    assert status == 0 and _writes(report) == {}      # no echo of our own writes
    assert harness.writes("customwebshop") == {} and harness.writes("customerp") == {}


def test_conflicting_edits_follow_the_latest_change_and_are_reported(synced_harness):
    harness = synced_harness
    erp_products = group_by(harness.list_all("customerp", "Products"), "ItemNo")
    shop_products = group_by(harness.list_all("customwebshop", "products"), "sku")
    sku = sorted(set(erp_products) & set(shop_products))[3]
    shop_id = shop_products[sku][0]["id"]
    harness.patch_shop("products", shop_id, {"name": "Webshop-navn"})
    harness.put_erp("Products", sku, {"Description": "ERP-navn, endret sist"})   # later: wins

    status, report = harness.run()

    assert status == 0
    assert report["pairs"]["product"]["conflicts"] == 1
    assert harness.get("customwebshop", "products", shop_id).json()["name"] == \
        "ERP-navn, endret sist"
    assert harness.get("customerp", "Products", sku).json()["Description"] == \
        "ERP-navn, endret sist"
    conflicts = [json.loads(line) for line in
                 (pathlib.Path(report["run_dir"]) / "conflicts.jsonl").read_text().splitlines()]
    assert [(c["pair"], c["property"], c["source_value"], c["target_value"], c["winner"])
            for c in conflicts] == [("product", "name", "ERP-navn, endret sist",
                                     "Webshop-navn", "source")]


def test_orders_arrive_with_translated_references_and_lines(harness):
    before = _snapshot(harness)
    assert harness.run()[0] == 0
    now = _assert_one_to_one(harness)
    shop_customers = {c["id"]: c for c in now["shop_customers"]}
    erp_customers = {c["CustomerNo"]: c for c in now["erp_customers"]}
    shop_products = {p["id"]: p for p in now["shop_products"]}
    shop_orders = group_by(now["shop_orders"], "number")
    erp_orders = group_by(now["erp_orders"], "OrderNo")
    erp_only = sorted(set(group_by(before["erp_orders"], "OrderNo")) - set(
        group_by(before["shop_orders"], "number")))
    shop_only = sorted(set(group_by(before["shop_orders"], "number")) - set(
        group_by(before["erp_orders"], "OrderNo")))
    assert erp_only and shop_only

    for number in erp_only[:20] + shop_only[:20]:
        erp, [shop] = erp_orders[number][0], shop_orders[number]
        assert erp_customers[erp["CustomerNo"]]["Email"].lower() == \
            shop_customers[shop["customer_id"]]["email"].lower()
        assert len(erp["Lines"]) == len(shop["lines"]) > 0
        for erp_line, shop_line in zip(erp["Lines"], shop["lines"], strict=True):
            assert shop_products[shop_line["product_id"]]["sku"] == erp_line["ItemNo"]
            assert Decimal(shop_line["quantity"]) == Decimal(str(erp_line["Qty"]))
            assert Decimal(shop_line["unit_price"]) == Decimal(str(erp_line["UnitPrice"]))


def test_lost_create_responses_do_not_duplicate_on_the_rerun(harness):
    # Every create is carried out by the systems, then its response is lost.
    for system in ("customwebshop", "customerp"):
        harness.sandbox.set_faults(system, lost_response_rate=1.0, only=["POST"], seed=7)
        harness.configure(system, max_retries=1)

    status, report = harness.run()

    assert status == 3       # the creates' outcomes are unknown: dead letters, retried next run
    assert report["pairs"]["customer"]["created_in_target"] == 0
    for system in ("customwebshop", "customerp"):
        harness.sandbox.set_faults(system)

    status, report = harness.run()
    status_again, _ = harness.run()

    assert (status, status_again) == (0, 0)
    _assert_one_to_one(harness)
    harness.clear_logs()
    assert _writes(harness.run()[1]) == {}


def test_invalid_records_become_dead_letters_and_the_rest_syncs(harness):
    erp_products = harness.list_all("customerp", "Products")
    erp_customers = harness.list_all("customerp", "Customers")
    bad_product = erp_products[0]["ItemNo"]
    bad_customer = erp_customers[0]["CustomerNo"]
    harness.put_erp("Products", bad_product, {"StockQty": Decimal("2.5")})
    harness.put_erp("Customers", bad_customer, {"Email": "not-an-address"})

    status, report = harness.run()

    assert status == 3
    run_dir = pathlib.Path(report["run_dir"])
    letters = [json.loads(letter)
               for letter in (run_dir / "dead_letters.jsonl").read_text().splitlines()]
    by_id = {letter["entity_id"]: letter for letter in letters if letter["stage"] == "map"}
    assert "stock_quantity (StockQty): 2.5 is not a whole number" in by_id[bad_product]["message"]
    assert by_id[bad_product]["error_class"] == "validation"
    assert "is not an e-mail address" in by_id[bad_customer]["message"]
    assert {letter["entity_id"] for letter in letters} >= {bad_product, bad_customer}
    table = pyarrow.parquet.read_table(run_dir / "dead_letters.parquet").to_pylist()
    assert (sorted(r["entity_id"] for r in table)
            == sorted(letter["entity_id"] for letter in letters))
    assert report["pairs"]["product"]["dead_letters"] >= 1
    # everything else synced
    assert report["pairs"]["product"]["created_in_target"] > 100
    shop_skus = set(group_by(harness.list_all("customwebshop", "products"), "sku"))
    assert bad_product not in shop_skus
    assert {p["ItemNo"] for p in erp_products[1:]} <= shop_skus

    # Fixed in the ERP: the next (incremental) run retries the dead letters and succeeds.
    harness.put_erp("Products", bad_product, {"StockQty": 3})
    harness.put_erp("Customers", bad_customer, {"Email": "fixed@example.no"})
    status, report = harness.run()
    assert status == 0
    assert bad_product in set(group_by(harness.list_all("customwebshop", "products"), "sku"))
    _assert_one_to_one(harness)


def test_plan_writes_nothing_and_reports_what_a_sync_would_do(harness):
    status, planned = harness.run("--plan")

    assert status == 0
    assert harness.writes("customwebshop") == {} and harness.writes("customerp") == {}
    plan_rows = (pathlib.Path(planned["run_dir"]) / "plan.jsonl").read_text().splitlines()
    assert len(plan_rows) == sum(
        counts["created_in_target"] + counts["created_in_source"]
        + counts["linked_by_match"] // 2 for counts in planned["pairs"].values())

    status, synced = harness.run()
    assert status == 0
    for pair in ("customer", "product", "order"):
        for counter in ("created_in_target", "created_in_source", "linked_by_match"):
            assert planned["pairs"][pair][counter] == synced["pairs"][pair][counter], (pair,
                                                                                       counter)


def test_first_link_whose_write_failed_is_linked_not_duplicated_on_the_rerun(harness):
    # The first run links the seed's matching records, but every update the merge sends to
    # the ERP fails: those links stay uncommitted. The rerun must read both records of each
    # such match again and link them, not take the webshop one for new and create it twice.
    harness.sandbox.set_faults("customerp", error_rate=1.0, status=500, only=["PUT"], seed=5)
    harness.configure("customerp", max_retries=0)

    status, report = harness.run()

    assert status == 3
    assert report["pairs"]["customer"]["updated_source"] == 0
    harness.sandbox.set_faults("customerp")
    status, report = harness.run()
    assert status == 0, report
    assert report["pairs"]["customer"]["created_in_source"] == 0
    assert report["pairs"]["customer"]["linked_by_match"] > 0
    _assert_one_to_one(harness)
    harness.clear_logs()
    assert _writes(harness.run()[1]) == {}
