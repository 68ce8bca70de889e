"""End to end, customerp ↔ webshop orders: currencies other than the local one, order lines
added, removed, reordered and edited on either side and on both at once, and a pair whose
policy is ``conflict: target``.

One sandbox, synced once for the module (tests/synced.py); each test edits orders no other
test touches (:func:`fresh_orders`), runs the sync, asserts the lines exactly on both sides and
that a rerun writes nothing. Both systems keep an ISO 4217 currency per order (NOK when none
is given), so a EUR order stays EUR on the other side.
"""

from __future__ import annotations

import dataclasses
from decimal import Decimal

import pytest

from core.spec import get_dataflow
from pipelines import run_driver
from tests.conftest import SyncHarness, group_by
from tests.synced import module_harness_fixtures
from tests.test_sync_customerp_customwebshop import _writes

DATAFLOW = "customerp-customwebshop"


synced, h = module_harness_fixtures(("customwebshop", "customerp"), SyncHarness)


def assert_rerun_writes_nothing(h) -> None:
    h.clear_logs()
    status, report = h.run()
    assert status == 0 and _writes(report) == {}, report
    assert h.writes("customwebshop") == {} and h.writes("customerp") == {}


def fresh_orders(h, count: int) -> list[str]:
    """Numbers of ``count`` orders in both systems with at least two lines (of different
    items) that no other test of the module has used."""
    shop = {o["number"]: o for o in h.shop_all("orders")}
    erp = {o["OrderNo"] for o in h.list_all("customerp", "Orders")}
    numbers = [n for n in sorted(set(shop) & erp) if n not in h.taken
               and len({line["product_id"] for line in shop[n]["lines"]}) == len(
                   shop[n]["lines"]) >= 2]
    assert len(numbers) >= count
    h.taken.update(numbers[:count])
    return numbers[:count]


def shop_order(h, number: str) -> dict:
    [order] = [o for o in h.shop_all("orders") if o["number"] == number]
    return order


def erp_order(h, number: str) -> dict:
    response = h.get("customerp", "Orders", number)
    assert response.status_code == 200, response.text
    return response.json()


def shop_lines(h, number: str) -> list[tuple]:
    """The order's lines in the webshop as (SKU, name, quantity, unit price, discount)."""
    skus = {p["id"]: p["sku"] for p in h.shop_all("products")}
    return [(skus[line["product_id"]], line["name"], Decimal(line["quantity"]),
             Decimal(line["unit_price"]), Decimal(line["discount_percent"] or "0"))
            for line in shop_order(h, number)["lines"]]


def erp_lines(h, number: str) -> list[tuple]:
    """The order's lines in the ERP, in the same shape as :func:`shop_lines`."""
    return [(line["ItemNo"], line["Description"], Decimal(str(line["Qty"])),
             Decimal(str(line["UnitPrice"])), Decimal(str(line["DiscountPct"] or 0)))
            for line in erp_order(h, number)["Lines"]]


def as_erp(lines: list[tuple]) -> list[dict]:
    return [{"ItemNo": sku, "Description": name, "Qty": qty, "UnitPrice": price,
             "DiscountPct": discount} for sku, name, qty, price, discount in lines]


def as_shop(h, lines: list[tuple]) -> list[dict]:
    ids = {p["sku"]: p["id"] for p in h.shop_all("products")}
    return [{"product_id": ids[sku], "name": name, "quantity": str(qty),
             "unit_price": str(price), "discount_percent": str(discount)}
            for sku, name, qty, price, discount in lines]


def edited(lines: list[tuple], change: str, extra: tuple) -> list[tuple]:
    """``lines`` after one kind of edit: a line added, the last removed, the order reversed,
    or the first line's quantity and price changed."""
    if change == "add":
        return [*lines, extra]
    if change == "remove":
        return lines[:-1]
    if change == "reorder":
        return lines[::-1]
    first = lines[0]
    return [(first[0], first[1], first[2] + 3, Decimal("99.50"), first[4]), *lines[1:]]


def a_line_not_in(h, lines: list[tuple]) -> tuple:
    """A line of a product in both systems that none of ``lines`` has."""
    used = {line[0] for line in lines}
    erp_skus = {p["ItemNo"] for p in h.list_all("customerp", "Products")}
    product = next(p for p in sorted(h.shop_all("products"), key=lambda p: p["sku"])
                   if p["sku"] in erp_skus and p["sku"] not in used)
    return (product["sku"], product["name"], Decimal(2), Decimal(product["price"]),
            Decimal(0))


CHANGES = ("add", "remove", "reorder", "edit")


@pytest.mark.parametrize("side", ["webshop", "erp"])
def test_order_lines_added_removed_reordered_and_edited_on_one_side(h, side):
    numbers = fresh_orders(h, len(CHANGES))
    wanted = {}
    for number, change in zip(numbers, CHANGES, strict=True):
        lines = shop_lines(h, number)
        assert erp_lines(h, number) == lines                 # in agreement after the sync
        wanted[number] = edited(lines, change, a_line_not_in(h, lines))
        if side == "webshop":
            h.patch_shop("orders", shop_order(h, number)["id"],
                         {"lines": as_shop(h, wanted[number])})
        else:
            h.put_erp("Orders", number, {"Lines": as_erp(wanted[number])})

    status, report = h.run()

    assert status == 0, report
    for number in numbers:
        assert shop_lines(h, number) == erp_lines(h, number) == wanted[number], number
    written = "updated_target" if side == "erp" else "updated_source"
    assert report["pairs"]["order"][written] == len(CHANGES)
    assert report["pairs"]["order"]["conflicts"] == 0
    assert_rerun_writes_nothing(h)


def test_order_lines_edited_on_both_sides_at_once(h):
    """Lines are one property: both sides changing them is a conflict the latest change wins
    (whole, never a mix of lines); lines on one side and another property on the other merge."""
    conflicting, merged = fresh_orders(h, 2)
    lines = shop_lines(h, conflicting)
    h.patch_shop("orders", shop_order(h, conflicting)["id"],
                 {"lines": as_shop(h, edited(lines, "reorder", ()))})
    latest = edited(lines, "edit", ())
    h.put_erp("Orders", conflicting, {"Lines": as_erp(latest)})          # later: wins
    merged_lines = shop_lines(h, merged)
    grown = edited(merged_lines, "add", a_line_not_in(h, merged_lines))
    h.patch_shop("orders", shop_order(h, merged)["id"], {"lines": as_shop(h, grown)})
    h.put_erp("Orders", merged, {"Status": "Shipped"})

    status, report = h.run()

    assert status == 0, report
    assert shop_lines(h, conflicting) == erp_lines(h, conflicting) == latest
    assert shop_lines(h, merged) == erp_lines(h, merged) == grown
    assert (erp_order(h, merged)["Status"], shop_order(h, merged)["status"]) == (
        "Shipped", "shipped")
    assert report["pairs"]["order"]["conflicts"] == 1
    assert_rerun_writes_nothing(h)


def test_orders_in_a_foreign_currency_travel_both_ways(h):
    """Edited and new orders in EUR, SEK and DKK keep their currency on the other side; the
    local currency (NOK) stays NOK."""
    shop_edit, erp_edit = fresh_orders(h, 2)
    h.patch_shop("orders", shop_order(h, shop_edit)["id"], {"currency": "EUR"})
    h.put_erp("Orders", erp_edit, {"Currency": "SEK"})
    customers = group_by(h.shop_all("customers"), "email", True)
    erp_customer = next(c for c in h.list_all("customerp", "Customers")
                        if c["Email"].lower() in customers)
    shop_customer = customers[erp_customer["Email"].lower()][0]
    line = a_line_not_in(h, [])
    new_in_shop = h.post("customwebshop", "orders", {
        "number": "EUR-1", "customer_id": shop_customer["id"], "currency": "EUR",
        "order_date": "2026-11-20", "lines": as_shop(h, [line])})
    new_in_erp = h.post("customerp", "Orders", {
        "OrderNo": "DKK-1", "CustomerNo": erp_customer["CustomerNo"], "Currency": "DKK",
        "OrderDate": "2026-11-21", "Lines": [{**as_erp([line])[0], "Qty": 2,
                                               "UnitPrice": float(line[3]), "DiscountPct": 0}]})

    status, report = h.run()

    assert status == 0, report
    assert report["pairs"]["order"]["created_in_target"] == 1
    assert report["pairs"]["order"]["created_in_source"] == 1
    currencies = {number: (erp_order(h, number)["Currency"], shop_order(h, number)["currency"])
                  for number in (shop_edit, erp_edit, new_in_shop["number"],
                                 new_in_erp["OrderNo"])}
    assert currencies == {shop_edit: ("EUR", "EUR"), erp_edit: ("SEK", "SEK"),
                          "EUR-1": ("EUR", "EUR"), "DKK-1": ("DKK", "DKK")}
    assert erp_lines(h, "EUR-1") == shop_lines(h, "EUR-1") == [line]
    assert_rerun_writes_nothing(h)
    h.taken.update({"EUR-1", "DKK-1"})


def test_conflict_target_keeps_the_targets_value_even_when_the_source_changed_later(
        h, monkeypatch):
    """A pair with ``conflict: target`` (here the product pair, the webshop being the target):
    the webshop's edit wins although the ERP's is newer; under ``latest`` the ERP's would."""
    spec = get_dataflow(DATAFLOW)
    target_first = dataclasses.replace(spec, pairs=tuple(
        dataclasses.replace(pair, conflict="target") if pair.name == "product" else pair
        for pair in spec.pairs))
    monkeypatch.setattr(run_driver, "get_dataflow",
                        lambda name, *a, **k: target_first if name == DATAFLOW else
                        get_dataflow(name, *a, **k))
    erp_products = group_by(h.list_all("customerp", "Products"), "ItemNo")
    shop_products = group_by(h.shop_all("products"), "sku")
    sku = sorted(set(erp_products) & set(shop_products))[5]
    shop_id = shop_products[sku][0]["id"]
    h.patch_shop("products", shop_id, {"name": "Webshop-navn, endret først"})
    h.put_erp("Products", sku, {"Description": "ERP-navn, endret sist"})    # newer

    status, report = h.run()

    assert status == 0, report
    assert report["pairs"]["product"]["conflicts"] == 1
    assert h.get("customerp", "Products", sku).json()["Description"] == \
        "Webshop-navn, endret først"
    assert h.get("customwebshop", "products", shop_id).json()["name"] == \
        "Webshop-navn, endret først"
    assert_rerun_writes_nothing(h)
