"""Business rules end to end (issue 15, point 4): records that break a rule of the shipped
customerp-customwebshop spec, entered through each system's own API (which accepts them), are
dead letters naming the rule, the property and the value; nothing is written for them, in
either direction, and the rest of the run syncs."""

from __future__ import annotations

import json
import pathlib

from tests.test_sync_customerp_customwebshop import _writes


def _letters(report) -> list[dict]:
    path = pathlib.Path(report["run_dir"]) / "dead_letters.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def _letter(letters, system: str, entity_id: str) -> dict:
    [letter] = [x for x in letters if (x["system"], x["entity_id"]) == (system, entity_id)]
    return letter


def test_records_breaking_a_rule_are_dead_letters_and_are_not_written(synced_harness):
    h = synced_harness
    erp_customer = h.list_all("customerp", "Customers")[0]["CustomerNo"]
    shop_customer = h.shop_all("customers")[0]["id"]
    shared = sorted({p["ItemNo"] for p in h.list_all("customerp", "Products")}
                    & {p["sku"] for p in h.shop_all("products")})[:2]
    shop_ids = {p["sku"]: p["id"] for p in h.shop_all("products")}
    # the example: a product with a negative price, created in the ERP
    h.post("customerp", "Products", {"ItemNo": "NEG-1", "Description": "Negative price",
                                     "SalesPrice": -10, "VatCode": "3"})
    # a valid product created beside it still syncs
    h.post("customerp", "Products", {"ItemNo": "OK-1", "Description": "Valid price",
                                     "SalesPrice": 10, "VatCode": "3"})
    # the other direction: a negative price set in the webshop on a linked product
    shop_negative = shop_ids[shared[0]]
    h.patch_shop("products", shop_negative, {"price": "-5.00"})
    # an order line of nothing, in each system
    line = {"ItemNo": shared[1], "Description": "Nothing", "Qty": 0, "UnitPrice": 10,
            "DiscountPct": 0}
    h.post("customerp", "Orders", {"OrderNo": "ZERO-ERP", "CustomerNo": erp_customer,
                                   "Currency": "NOK", "OrderDate": "2026-11-20",
                                   "Lines": [line]})
    zero_shop = h.post("customwebshop", "orders", {
        "number": "ZERO-SHOP", "customer_id": shop_customer, "currency": "NOK",
        "order_date": "2026-11-20",
        "lines": [{"product_id": shop_ids[shared[1]], "name": "Nothing", "quantity": "0",
                   "unit_price": "10.00"}]})
    h.clear_logs()

    status, report = h.run()

    assert status == 3, report
    letters = _letters(report)
    negative = _letter(letters, "customerp", "NEG-1")
    assert (negative["stage"], negative["error_class"], negative["direction"]) == (
        "map", "validation", "to_target")
    assert negative["message"] == ("price (SalesPrice): -10 is below the minimum 0 "
                                   "(rule minimum of product.price)")
    assert _letter(letters, "customwebshop", shop_negative)["message"] == (
        "price: -5.00 is below the minimum 0 (rule minimum of product.price)")
    assert _letter(letters, "customerp", "ZERO-ERP")["message"] == (
        "lines (Lines)[0].quantity (Qty): 0 is not greater than 0 "
        "(rule greater_than of order.lines.quantity)")
    assert _letter(letters, "customwebshop", zero_shop["id"])["message"] == (
        "lines[0].quantity: 0 is not greater than 0 (rule greater_than of "
        "order.lines.quantity)")
    assert len(letters) == 4, letters
    # nothing was written for them, in either system
    assert "NEG-1" not in {p["sku"] for p in h.shop_all("products")}
    assert h.get("customerp", "Products", shared[0]).json()["SalesPrice"] >= 0
    assert "ZERO-ERP" not in {o["number"] for o in h.shop_all("orders")}
    assert h.get("customerp", "Orders", "ZERO-SHOP").status_code == 404
    # the rest went on
    assert "OK-1" in {p["sku"] for p in h.shop_all("products")}
    assert _writes(report) == {"product": {"created_in_target": 1}}, _writes(report)
