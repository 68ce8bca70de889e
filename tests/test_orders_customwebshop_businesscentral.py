"""End to end, webshop ↔ Business Central sales orders: currencies and order lines.

Business Central leaves a sales order's currency blank when it is the company's own (LCY); the
connector reads and writes blank as its ``local_currency`` setting (NOK in the sandbox). So a
NOK order arrives blank in BC, and an order in any other currency must keep its code both ways
(issue 19: a connector sending blank for every order booked each EUR order in NOK unnoticed).

Order lines are added, removed, reordered and edited on either side and on both at once. In
BC lines are changed one by one (BC has no way to move a line: a "reordered" line was deleted
and entered again, so it moves to the end). One sandbox, synced once for the module.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from tests.conftest import group_by
from tests.synced import module_harness_fixtures
from tests.test_sync_customwebshop_businesscentral import BcHarness, _writes

CHANGES = ("add", "remove", "reorder", "edit")


synced, h = module_harness_fixtures(("customwebshop", "businesscentral"), BcHarness)


def assert_rerun_writes_nothing(h) -> None:
    h.clear_logs()
    status, report = h.run()
    assert status == 0 and _writes(report) == {}, report
    assert h.writes("customwebshop") == {} and h.writes("businesscentral") == {}


# -- reading both sides -------------------------------------------------------------------------

def shop_order(h, number: str) -> dict:
    [order] = [o for o in h.shop_all("orders") if o["number"] == number]
    return order


def bc_order(h, number: str) -> dict:
    """The sales order whose external document number (or own number) is ``number``."""
    [order] = [o for o in h.bc_all("salesOrders")
               if (o["externalDocumentNumber"] or o["number"]) == number]
    return order


def shop_lines(h, number: str) -> list[tuple]:
    """(SKU, name, quantity, unit price, discount) of each webshop line, in order."""
    skus = {p["id"]: p["sku"] for p in h.shop_all("products")}
    return [(skus[line["product_id"]], line["name"], Decimal(line["quantity"]),
             Decimal(line["unit_price"]), Decimal(line["discount_percent"] or "0"))
            for line in shop_order(h, number)["lines"]]


def bc_lines(h, number: str) -> list[tuple]:
    """The sales order's lines in the shape of :func:`shop_lines`."""
    numbers = {i["id"]: i["number"] for i in h.bc_all("items")}
    return [(numbers[line["itemId"]], line["description"], Decimal(line["quantity"]),
             Decimal(line["unitPrice"]), Decimal(line["discountPercent"]))
            for line in bc_order(h, number)["salesOrderLines"]]


def fresh_orders(h, count: int) -> list[str]:
    """``count`` webshop order numbers, linked to sales orders, with at least two lines of
    different products, that no other test of the module used."""
    numbers = [o["number"] for o in sorted(h.shop_all("orders"), key=lambda o: o["number"])
               if o["number"] not in h.taken and len(o["lines"]) >= 2
               and len({line["product_id"] for line in o["lines"]}) == len(o["lines"])]
    h.taken.update(numbers[:count])
    return numbers[:count]


def a_line_not_in(h, lines: list[tuple]) -> tuple:
    used = {line[0] for line in lines}
    product = next(p for p in sorted(h.shop_all("products"), key=lambda p: p["sku"])
                   if p["sku"] not in used)
    return (product["sku"], product["name"], Decimal(2), Decimal(product["price"]),
            Decimal(0))


# -- editing either side ------------------------------------------------------------------------

def as_shop(h, lines: list[tuple]) -> list[dict]:
    ids = {p["sku"]: p["id"] for p in h.shop_all("products")}
    return [{"product_id": ids[sku], "name": name, "quantity": str(qty),
             "unit_price": str(price), "discount_percent": str(discount)}
            for sku, name, qty, price, discount in lines]


def edit_in_shop(h, number: str, change: str) -> list[tuple]:
    """One kind of line edit in the webshop; returns the lines the order should end with."""
    lines = shop_lines(h, number)
    wanted = {"add": lambda: [*lines, a_line_not_in(h, lines)],
              "remove": lambda: lines[:-1],
              "reorder": lambda: lines[::-1],
              "edit": lambda: [(*lines[0][:2], lines[0][2] + 3, Decimal("99.5"), lines[0][4]),
                               *lines[1:]]}[change]()
    h.shop_patch("orders", shop_order(h, number)["id"], {"lines": as_shop(h, wanted)})
    return wanted


def edit_in_bc(h, number: str, change: str) -> list[tuple]:
    """One kind of line edit in Business Central, line by line as BC allows it."""
    lines, order = bc_lines(h, number), bc_order(h, number)
    url = f"{h.company}/salesOrders({order['id']})/salesOrderLines"
    items = {i["number"]: i["id"] for i in h.bc_all("items")}
    current = order["salesOrderLines"]

    def post(line: tuple) -> None:
        sku, name, qty, price, discount = line
        response = h.bc.post(url, json={"lineType": "Item", "itemId": items[sku],
                                        "description": name, "quantity": float(qty),
                                        "unitPrice": float(price),
                                        "discountPercent": float(discount)}, timeout=30)
        assert response.status_code == 201, response.text

    def delete(line: dict) -> None:
        response = h.bc.delete(f"{url}({line['id']})",
                               headers={"If-Match": line["@odata.etag"]}, timeout=30)
        assert response.status_code == 204, response.text

    if change == "add":
        extra = a_line_not_in(h, lines)
        post(extra)
        return [*lines, extra]
    if change == "remove":
        delete(current[-1])
        return lines[:-1]
    if change == "reorder":
        delete(current[0])
        post(lines[0])
        return [*lines[1:], lines[0]]
    response = h.bc.patch(f"{url}({current[0]['id']})",
                          json={"quantity": float(lines[0][2] + 3), "unitPrice": 99.5},
                          headers={"If-Match": current[0]["@odata.etag"]}, timeout=30)
    assert response.status_code == 200, response.text
    return [(*lines[0][:2], lines[0][2] + 3, Decimal("99.5"), lines[0][4]), *lines[1:]]


# -- order lines ------------------------------------------------------------------------------

@pytest.mark.parametrize("side", ["webshop", "businesscentral"])
def test_order_lines_added_removed_reordered_and_edited_on_one_side(h, side):
    numbers = fresh_orders(h, len(CHANGES))
    wanted = {}
    for number, change in zip(numbers, CHANGES, strict=True):
        assert bc_lines(h, number) == shop_lines(h, number)      # in agreement after the sync
        edit = edit_in_shop if side == "webshop" else edit_in_bc
        wanted[number] = edit(h, number, change)

    status, report = h.run()

    assert status == 0, report
    for number in numbers:
        assert shop_lines(h, number) == bc_lines(h, number) == wanted[number], number
    written = "updated_target" if side == "webshop" else "updated_source"
    assert report["pairs"]["order"][written] == len(CHANGES)
    assert report["pairs"]["order"]["conflicts"] == 0
    assert_rerun_writes_nothing(h)


def test_order_lines_edited_on_both_sides_at_once(h):
    """Lines are one property: edited on both sides, the latest change wins them whole; lines
    edited on one side and another property on the other merge."""
    conflicting, merged = fresh_orders(h, 2)
    edit_in_shop(h, conflicting, "reorder")
    latest = edit_in_bc(h, conflicting, "edit")                  # later: wins
    grown = edit_in_shop(h, merged, "add")
    h.bc_patch("salesOrders", bc_order(h, merged)["id"], {"shipToCity": "Bodø"})

    status, report = h.run()

    assert status == 0, report
    assert shop_lines(h, conflicting) == bc_lines(h, conflicting) == latest
    assert shop_lines(h, merged) == bc_lines(h, merged) == grown
    assert shop_order(h, merged)["shipping_address"]["city"] == "Bodø"
    assert report["pairs"]["order"]["conflicts"] == 1
    assert_rerun_writes_nothing(h)


# -- currencies ---------------------------------------------------------------------------------

def test_orders_in_eur_keep_their_currency_both_ways_and_nok_is_blank_in_bc(h):
    shop_customers = group_by(h.shop_all("customers"), "email", True)
    bc_customers = [c for c in h.bc_all("customers") if c["email"].lower() in shop_customers]
    lcy_customer = bc_customers[0]
    h.bc_patch("customers", lcy_customer["id"], {"currencyCode": ""})   # BC's own currency
    shop_customer = shop_customers[lcy_customer["email"].lower()][0]
    line = as_shop(h, [a_line_not_in(h, [])])
    for number, currency in (("EUR-1", "EUR"), ("NOK-1", "NOK")):
        h.post("customwebshop", "orders", {"number": number, "customer_id": shop_customer["id"],
                                           "currency": currency, "order_date": "2026-11-20",
                                           "lines": line})
    edited_in_shop, edited_in_bc = fresh_orders(h, 2)
    h.shop_patch("orders", shop_order(h, edited_in_shop)["id"], {"currency": "EUR"})
    h.bc_patch("salesOrders", bc_order(h, edited_in_bc)["id"], {"currencyCode": "EUR"})
    item = h.bc_all("items")[0]
    response = h.bc.post(f"{h.company}/salesOrders?$expand=salesOrderLines", json={
        "customerId": lcy_customer["id"], "orderDate": "2026-11-21", "currencyCode": "EUR",
        "salesOrderLines": [{"lineType": "Item", "itemId": item["id"], "quantity": 1}]},
        timeout=30)
    assert response.status_code == 201, response.text
    entered_in_bc = response.json()["number"]

    status, report = h.run()

    assert status == 0, report
    assert report["pairs"]["order"]["created_in_target"] == 2
    assert report["pairs"]["order"]["created_in_source"] == 1
    currencies = {number: (shop_order(h, number)["currency"], bc_order(h, number)["currencyCode"])
                  for number in ("EUR-1", "NOK-1", edited_in_shop, edited_in_bc, entered_in_bc)}
    assert currencies == {"EUR-1": ("EUR", "EUR"), "NOK-1": ("NOK", ""),
                          edited_in_shop: ("EUR", "EUR"), edited_in_bc: ("EUR", "EUR"),
                          entered_in_bc: ("EUR", "EUR")}
    assert_rerun_writes_nothing(h)
    h.taken.update({"EUR-1", "NOK-1", entered_in_bc})
