"""End to end: `talksync run customwebshop-businessnxt` against the sandbox over HTTP.

The webshop and the Business NXT emulator start from their seeds (seed 42), which overlap: 30
address rows with a webshop customer's e-mail, 25 products numbered with webshop SKUs, and 4
orders whose ``customerOrderNo`` is a webshop order number.
"""

from __future__ import annotations

import json
import pathlib
from decimal import Decimal

import pytest
import requests

from core.spec import get_dataflow
from sandbox import businessnxt_model as model
from sandbox.seed_businessnxt import (
    COUNTRY_NUMBERS,
    CURRENCY_NUMBERS,
    SHARED_ADDRESSES,
    SHARED_ORDERS,
    SHARED_PRODUCTS,
)
from tests.conftest import SyncHarness, group_by
from tests.test_sandbox_businessnxt import Gql

DATAFLOW = "customwebshop-businessnxt"
WRITES = ("created_in_target", "created_in_source", "linked_by_match", "updated_target",
          "updated_source")
ADDRESS = ("addressNo name emailAddress phone addressLine1 postCode postalArea countryNo "
           "changedTimestamp")
PRODUCT = "productNo description salesPrice1 costPrice changedTimestamp"
ORDER = ("orderNo orderDate customerNo customerOrderNo currencyNo changedTimestamp "
         "lines: joindown_OrderLine_via_Order { items { lineNo productNo description quantity "
         "priceInCurrency discountPercent1 changedTimestamp } }")


class NxtHarness(SyncHarness):
    """The sandbox (webshop + Business NXT), `talksync run`, and both systems' APIs."""

    def __init__(self, sandbox, state: pathlib.Path):
        super().__init__(sandbox, state)
        self.gql = Gql(sandbox)
        self.shop = requests.Session()
        self.shop.headers["X-Api-Key"] = sandbox.api_key("customwebshop")

    def run(self, *args: str) -> tuple[int, dict]:
        return super().run(*args, dataflow=DATAFLOW)

    def shop_write(self, method: str, path: str, body: dict) -> dict:
        response = self.shop.request(method, f"{self.sandbox.url('customwebshop')}/{path}",
                                     json=body, timeout=30)
        assert response.status_code in (200, 201), response.text
        return response.json()

    def nxt_all(self) -> dict[str, list[dict]]:
        return {"address": self.gql.rows("address", ADDRESS),
                "product": self.gql.rows("product", PRODUCT),
                "order": self.gql.rows("order", ORDER)}

    def nxt_mutate(self, mutation: str, **variables) -> dict:
        answer = self.gql("mutation($cid: Int!" + "".join(
            f", ${name}: {kind}" for name, (kind, _) in variables.items()) +
            f") {{ useCompany(no: $cid) {{ {mutation} }} }}",
            **{name: value for name, (_, value) in variables.items()})
        assert "errors" not in answer, answer
        return answer["data"]["useCompany"]

    def shop_writes(self) -> dict:
        by_method = self.sandbox.requests("customwebshop")["by_method"]
        return {m: n for m, n in by_method.items() if m in ("POST", "PATCH", "PUT", "DELETE")}


@pytest.fixture
def nxt(sandbox_of, tmp_path):
    return NxtHarness(sandbox_of("customwebshop", "businessnxt"), tmp_path)


def _writes(report) -> dict:
    return {pair: {k: counts[k] for k in WRITES if counts[k]}
            for pair, counts in report["pairs"].items() if any(counts[k] for k in WRITES)}


def _date(text: str) -> int:
    return int(text.replace("-", ""))


# -- the spec ---------------------------------------------------------------------------------


def test_every_property_is_a_column_of_the_emulated_schema():
    spec = get_dataflow(DATAFLOW)
    kinds = {"string": "String", "email": "String", "integer": "Int", "decimal": "Decimal",
             "date": "Int", "reference": None}
    for pair in spec.pairs:
        table = model.TABLES[pair.target.entity]
        for prop in pair.properties:
            if prop.type == "lines":
                assert prop.target == model.LINES
                for line in prop.lines:
                    column = model.ORDER_LINE.column(line.target)
                    assert kinds[line.type] in (None, column.type), line.target
                continue
            column = table.column(prop.target)
            assert kinds[prop.type] in (None, column.type), prop.target
            if column.max_length:
                assert prop.max_length == column.max_length, prop.target
    assert spec.pair("customer").property("countryNo").values == COUNTRY_NUMBERS
    assert spec.pair("order").property("currencyNo").values == CURRENCY_NUMBERS
    [second] = spec.documents
    assert second.title == "CustomWebshop to Visma Business Nxt"
    assert second.labels("customer") == ("Custom", "Businessnxt")
    assert second.labels("order") == ("Custom", "Visma")


# -- syncing ----------------------------------------------------------------------------------


def test_first_run_links_creates_orders_with_lines_then_the_rerun_writes_nothing(nxt):
    shop_customers = group_by(nxt.shop_all("customers"), "email", True)
    shop_products = group_by(nxt.shop_all("products"), "sku")
    shop_orders = nxt.shop_all("orders")
    before = nxt.nxt_all()
    emails = set(shop_customers) & set(group_by(before["address"], "emailAddress", True))
    skus = set(shop_products) & set(group_by(before["product"], "productNo"))
    numbers = {o["number"] for o in shop_orders} & {o["customerOrderNo"] for o in before["order"]}
    # the overlap the seed was built with (sandbox/seed_businessnxt.py)
    assert (len(emails), len(skus), len(numbers)) == (SHARED_ADDRESSES, SHARED_PRODUCTS,
                                                      SHARED_ORDERS)
    emails, skus, numbers = len(emails), len(skus), len(numbers)

    status, report = nxt.run()

    assert status == 0, report
    customers, products, orders = (report["pairs"][p] for p in ("customer", "product", "order"))
    assert customers["linked_by_match"] == 2 * emails   # records: 2 a link
    assert customers["created_in_target"] == len(shop_customers) - emails
    assert customers["created_in_source"] == len(before["address"]) - emails
    assert products["linked_by_match"] == 2 * skus
    assert products["created_in_target"] == len(shop_products) - skus
    assert products["created_in_source"] == len(before["product"]) - skus
    assert orders["linked_by_match"] == 2 * numbers
    assert orders["created_in_target"] == len(shop_orders) - numbers
    assert orders["created_in_source"] == 0           # create: to_target
    # so the Business NXT orders without a webshop match are read and skipped by design
    assert orders["skipped"] == len(before["order"]) - numbers
    assert all(counts["dead_letters"] == 0 for counts in report["pairs"].values())
    # a person's address row is named "first last": the same as the webshop's person, no write
    assert customers["updated_source"] == 0

    after = nxt.nxt_all()
    shop = {r: nxt.shop_all(r) for r in ("customers", "products", "orders")}
    addresses = group_by(after["address"], "emailAddress", True)
    assert set(addresses) == set(group_by(shop["customers"], "email", True))
    assert all(len(rows) == 1 for rows in addresses.values())
    persons = {c["id"] for rows in shop_customers.values() for c in rows if not c["company_name"]}
    assert {c["id"] for c in shop["customers"] if not c["company_name"]} >= persons
    for customer in shop["customers"]:
        [address] = addresses[customer["email"].lower()]
        assert address["name"] == (customer["company_name"] or
                                   f"{customer['first_name']} {customer['last_name']}")
        assert (address["phone"], address["addressLine1"], address["postCode"],
                address["postalArea"], address["countryNo"]) == (
            customer["phone"], customer["address"]["line1"], customer["address"]["postal_code"],
            customer["address"]["city"], COUNTRY_NUMBERS[customer["address"]["country"]])
    products_by_no = group_by(after["product"], "productNo")
    assert set(products_by_no) == set(group_by(shop["products"], "sku"))
    for product in shop["products"]:
        [row] = products_by_no[product["sku"]]
        assert (row["description"], row["salesPrice1"]) == (product["name"],
                                                            Decimal(product["price"]))
    _assert_orders_arrived_with_lines_and_translated_references(nxt, after)

    nxt.sandbox.clear_requests("customwebshop")
    status, report = nxt.run()
    assert status == 0 and _writes(report) == {}
    assert nxt.shop_writes() == {}
    assert nxt.nxt_all() == after    # not a row touched: every changedTimestamp is the same


def _assert_orders_arrived_with_lines_and_translated_references(nxt, after):
    shop_customers = {c["id"]: c for c in nxt.shop_all("customers")}
    shop_products = {p["id"]: p for p in nxt.shop_all("products")}
    address_no = {a["emailAddress"].lower(): a["addressNo"] for a in after["address"]}
    orders = group_by(after["order"], "customerOrderNo")
    shop_orders = nxt.shop_all("orders")
    for shop_order in shop_orders:
        [order] = orders[shop_order["number"]]
        customer_email = shop_customers[shop_order["customer_id"]]["email"].lower()
        assert order["customerNo"] == address_no[customer_email]
        assert order["orderDate"] == _date(shop_order["order_date"])
        assert order["currencyNo"] == CURRENCY_NUMBERS[shop_order["currency"]]
        lines = order["lines"]["items"]
        assert [line["lineNo"] for line in lines] == list(range(1, len(lines) + 1))
        assert [(line["productNo"], line["quantity"], line["priceInCurrency"],
                 line["discountPercent1"])
                for line in lines] == [
            (shop_products[s["product_id"]]["sku"], Decimal(s["quantity"]),
             Decimal(s["unit_price"]), Decimal(s["discount_percent"]))
            for s in shop_order["lines"]]
    assert len([o for o in after["order"] if o["customerOrderNo"]]) == len(shop_orders)
    assert len(after["order"]) == 150 + len(shop_orders) - 4   # seed orders stay, none doubled


def test_edits_reach_the_other_side_both_ways(nxt):
    assert nxt.run()[0] == 0
    shop_customers = nxt.shop_all("customers")
    addresses = group_by(nxt.gql.rows("address", ADDRESS), "emailAddress", True)
    edited_in_shop, renamed, moved = shop_customers[:3]
    nxt.shop_write("PATCH", f"customers/{edited_in_shop['id']}",
                   {"phone": "+47 400 00 000", "address": {"postal_code": "0150"}})
    [renamed_row] = addresses[renamed["email"].lower()]
    [moved_row] = addresses[moved["email"].lower()]
    nxt.nxt_mutate("a: address_update(filter: $f1, value: $v1) { affectedRows } "
                   "b: address_update(filter: $f2, value: $v2) { affectedRows }",
                   f1=("FilterExpression_Address",
                       {"addressNo": {"_eq": renamed_row["addressNo"]}}),
                   v1=("Address_Input", {"name": "Nytt Navn AS"}),
                   f2=("FilterExpression_Address", {"addressNo": {"_eq": moved_row["addressNo"]}}),
                   v2=("Address_Input", {"countryNo": 358}))
    shop_products = nxt.shop_all("products")
    nxt.shop_write("PATCH", f"products/{shop_products[0]['id']}", {"price": "1234.50"})
    nxt.nxt_mutate("product_update(filter: $f, value: $v) { affectedRows }",
                   f=("FilterExpression_Product", {"productNo": {"_eq": shop_products[1]["sku"]}}),
                   v=("Product_Input", {"salesPrice1": Decimal("777.00")}))
    order = nxt.shop_all("orders")[0]
    lines = [{**line, "quantity": "9"} if i == 0 else line for i, line in enumerate(order["lines"])]
    nxt.shop_write("PATCH", f"orders/{order['id']}", {"lines": lines})

    status, report = nxt.run()

    assert status == 0, report
    assert _writes(report) == {"customer": {"updated_target": 1, "updated_source": 2},
                               "product": {"updated_target": 1, "updated_source": 1},
                               "order": {"updated_target": 1}}
    addresses = group_by(nxt.gql.rows("address", ADDRESS), "emailAddress", True)
    [row] = addresses[edited_in_shop["email"].lower()]
    assert (row["phone"], row["postCode"]) == ("+47 400 00 000", "0150")
    shop = {c["id"]: c for c in nxt.shop_all("customers")}
    assert shop[renamed["id"]]["company_name"] == "Nytt Navn AS"
    assert shop[moved["id"]]["address"]["country"] == "FI"
    products = {p["id"]: p for p in nxt.shop_all("products")}
    assert products[shop_products[1]["id"]]["price"] == "777.00"
    [price_row] = nxt.gql.rows("product", PRODUCT, {"productNo": {"_eq": shop_products[0]["sku"]}})
    assert price_row["salesPrice1"] == Decimal("1234.50")
    [nxt_order] = nxt.gql.rows("order", ORDER, {"customerOrderNo": {"_eq": order["number"]}})
    assert [line["quantity"] for line in nxt_order["lines"]["items"]] == \
        [Decimal("9")] + [Decimal(line["quantity"]) for line in order["lines"][1:]]

    status, report = nxt.run()
    assert status == 0 and _writes(report) == {}


def test_a_graphql_error_on_one_row_dead_letters_that_row_only(nxt):
    assert nxt.run()[0] == 0
    shop_products = nxt.shop_all("products")
    gone, kept = shop_products[0], shop_products[1]
    assert nxt.nxt_mutate("product_delete(filter: $f) { affectedRows }", f=(
        "FilterExpression_Product", {"productNo": {"_eq": gone["sku"]}}))["product_delete"] == {
        "affectedRows": 1}
    customer = nxt.shop_all("customers")[0]

    def order(number: str, product: dict) -> dict:
        return nxt.shop_write("POST", "orders", {
            "number": number, "customer_id": customer["id"], "currency": "NOK",
            "order_date": "2026-01-10", "lines": [{
                "product_id": product["id"], "sku": product["sku"], "name": product["name"],
                "quantity": "1", "unit_price": product["price"]}]})

    bad, good = order("W-900", gone), order("W-901", kept)

    status, report = nxt.run()

    assert status == 3
    assert report["pairs"]["order"]["dead_letters"] == 1
    assert report["pairs"]["order"]["created_in_target"] == 1
    run_dir = pathlib.Path(report["run_dir"])
    [letter] = [json.loads(row)
                for row in (run_dir / "dead_letters.jsonl").read_text().splitlines()]
    assert (letter["pair"], letter["entity_id"], letter["stage"], letter["error_class"]) == (
        "order", bad["id"], "write", "permanent")
    assert f"Product '{gone['sku']}' does not exist." in letter["message"]
    numbers = {o["customerOrderNo"] for o in nxt.gql.rows("order", "customerOrderNo")}
    assert good["number"] in numbers and bad["number"] not in numbers
