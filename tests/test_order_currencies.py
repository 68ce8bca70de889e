"""End to end: orders in a currency other than the local one (NOK), through the emulators, for
Business NXT and Exact Online (customerp and Business Central: tests/test_orders_*.py).

Every ERP here has a currency per order: Business NXT keeps the company's currency number
(ISO 4217 numeric, ``currencyNo``: NOK 578, EUR 978, SEK 752), Exact the ISO code
(``Currency``). Business NXT orders are created from the webshop only (``create: to_target``:
an order entered there has no webshop number), so its other direction is an edit of the
currency in Business NXT. Each system gets one sandbox for the module, synced once.
"""

from __future__ import annotations

import pytest

from tests.conftest import group_by
from tests.synced import synced_sandbox
from tests.test_sync_customwebshop_businessnxt import ORDER, NxtHarness
from tests.test_sync_customwebshop_businessnxt import _writes as nxt_writes
from tests.test_sync_exact_customwebshop import ROOT, ExactHarness, _written


def _shop_order(h, number: str) -> dict:
    [order] = [o for o in h.shop_all("orders") if o["number"] == number]
    return order


def _new_shop_order(h, number: str, currency: str, customer: dict, product: dict) -> None:
    h.post("customwebshop", "orders", {
        "number": number, "customer_id": customer["id"], "currency": currency,
        "order_date": "2026-11-20", "lines": [{
            "product_id": product["id"], "quantity": "2", "unit_price": product["price"]}]})


# -- Business NXT -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def nxt(tmp_path_factory):
    with synced_sandbox(tmp_path_factory, ("customwebshop", "businessnxt"), NxtHarness) as h:
        yield h


def test_business_nxt_orders_in_eur_and_sek_both_ways(nxt):
    nxt_orders = nxt.gql.rows("order", ORDER)
    linked = sorted(o["customerOrderNo"] for o in nxt_orders if o["customerOrderNo"])
    edited_in_shop, edited_in_nxt = linked[:2]
    nxt.patch_shop("orders", _shop_order(nxt, edited_in_shop)["id"], {"currency": "EUR"})
    nxt.nxt_mutate("order_update(filter: $f, value: $v) { affectedRows }",
                   f=("FilterExpression_Order", {"customerOrderNo": {"_eq": edited_in_nxt}}),
                   v=("Order_Input", {"currencyNo": 752}))
    addresses = {a["emailAddress"].lower() for a in nxt.gql.rows("address", "emailAddress")
                 if a["emailAddress"]}
    customer = next(c for c in nxt.shop_all("customers") if c["email"].lower() in addresses)
    products = {p["productNo"] for p in nxt.gql.rows("product", "productNo")}
    product = next(p for p in nxt.shop_all("products") if p["sku"] in products)
    _new_shop_order(nxt, "EUR-1", "EUR", customer, product)
    _new_shop_order(nxt, "NOK-1", "NOK", customer, product)

    status, report = nxt.run()

    assert status == 0, report
    assert report["pairs"]["order"]["created_in_target"] == 2
    by_number = {o["customerOrderNo"]: o for o in nxt.gql.rows("order", ORDER)}
    currencies = {number: (_shop_order(nxt, number)["currency"], by_number[number]["currencyNo"])
                  for number in ("EUR-1", "NOK-1", edited_in_shop, edited_in_nxt)}
    assert currencies == {"EUR-1": ("EUR", 978), "NOK-1": ("NOK", 578),
                          edited_in_shop: ("EUR", 978), edited_in_nxt: ("SEK", 752)}
    status, report = nxt.run()
    assert status == 0 and nxt_writes(report) == {}


# -- Exact Online -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def exh(tmp_path_factory):
    with synced_sandbox(tmp_path_factory, ("customwebshop", "exact"), ExactHarness) as h:
        yield h


def test_exact_orders_in_eur_and_sek_both_ways(exh):
    orders = exh.exact_all("salesorder/SalesOrders")
    by_ref = {o["YourRef"]: o for o in orders if o["YourRef"]}
    edited_in_shop, edited_in_exact = sorted(by_ref)[:2]
    exh.patch_shop("orders", _shop_order(exh, edited_in_shop)["id"], {"currency": "EUR"})
    exh.exact_put("salesorder/SalesOrders", by_ref[edited_in_exact]["OrderID"],
                  {"Currency": "SEK"})
    accounts = group_by(exh.exact_all("crm/Accounts"), "Email", True)
    customer = next(c for c in exh.shop_all("customers") if c["email"].lower() in accounts)
    items = {i["Code"].strip(): i for i in exh.exact_all("logistics/Items")}
    product = next(p for p in exh.shop_all("products") if p["sku"] in items)
    _new_shop_order(exh, "EUR-1", "EUR", customer, product)
    response = exh.exact.post(
        f"{exh.sandbox.root_url('exact')}{ROOT}/salesorder/SalesOrders",
        json={"OrderedBy": accounts[customer["email"].lower()][0]["ID"], "Currency": "EUR",
              "SalesOrderLines": [{"Item": items[product["sku"]]["ID"], "Quantity": 1}]},
        headers={**exh.bearer(), "Prefer": "return=representation"}, timeout=30)
    assert response.status_code == 201, response.text
    entered = str(response.json()["d"]["OrderNumber"])

    status, report = exh.run()

    assert status == 0, report
    assert report["pairs"]["order"]["created_in_source"] == 1      # EUR-1 into Exact
    assert report["pairs"]["order"]["created_in_target"] == 1      # Exact's own order
    exact_orders = exh.exact_all("salesorder/SalesOrders")
    by_number = {o["YourRef"] or str(o["OrderNumber"]): o for o in exact_orders}
    currencies = {number: (_shop_order(exh, number)["currency"], by_number[number]["Currency"])
                  for number in ("EUR-1", entered, edited_in_shop, edited_in_exact)}
    assert currencies == {"EUR-1": ("EUR", "EUR"), entered: ("EUR", "EUR"),
                          edited_in_shop: ("EUR", "EUR"), edited_in_exact: ("SEK", "SEK")}
    status, report = exh.run()
    assert status == 0 and _written(report) == 0
