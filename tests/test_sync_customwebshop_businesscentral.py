"""End to end: `talksync run customwebshop-businesscentral` against the sandbox over HTTP.

The webshop and the Business Central emulator start from their seeds (seed 42), which overlap:
customers with the same e-mail, items numbered with webshop SKUs, and a few sales orders whose
external document number is a webshop order number.
"""

from __future__ import annotations

import collections
import json
import pathlib
from decimal import Decimal

import pytest
import requests

from core.spec import get_dataflow
from sandbox import businesscentral as bc
from sandbox import businesscentral_edm
from sandbox.seed_businesscentral import SHARED_CUSTOMERS, SHARED_ITEMS, SHARED_ORDERS
from sandbox.server import Sandbox
from tests.conftest import SyncHarness, copy_of_synced, group_by

DATAFLOW = "customwebshop-businesscentral"
WRITES = ("created_in_target", "created_in_source", "linked_by_match", "updated_target",
          "updated_source")


class BcHarness(SyncHarness):
    """The sandbox (webshop + BC) and helpers to run talksync and to use both APIs."""

    def __init__(self, sandbox: Sandbox, state: pathlib.Path):
        super().__init__(sandbox, state)
        self.shop = requests.Session()
        self.shop.headers["X-Api-Key"] = sandbox.api_key("customwebshop")
        self.bc = requests.Session()
        token = requests.post(bc.BusinessCentral.connector_settings(
            sandbox.root_url("businesscentral"))["token_url"], data={
                "grant_type": "client_credentials", "client_id": bc.CLIENT_ID,
                "client_secret": sandbox.api_key("businesscentral"), "scope": bc.SCOPE},
            timeout=10).json()["access_token"]
        self.bc.headers["Authorization"] = f"Bearer {token}"
        self.company = f"{sandbox.url('businesscentral')}/companies({bc.COMPANY_ID})"

    def run(self, *args: str) -> tuple[int, dict]:
        return super().run(*args, dataflow=DATAFLOW)

    def bc_all(self, entity: str) -> list[dict]:
        query = "?$expand=salesOrderLines" if entity == "salesOrders" else ""
        body = json.loads(self.bc.get(f"{self.company}/{entity}{query}", timeout=30).text,
                          parse_float=Decimal)
        assert "@odata.nextLink" not in body
        return body["value"]

    def bc_get(self, entity: str, entity_id: str) -> dict:
        query = "?$expand=salesOrderLines" if entity == "salesOrders" else ""
        response = self.bc.get(f"{self.company}/{entity}({entity_id}){query}", timeout=30)
        assert response.status_code == 200, response.text
        return json.loads(response.text, parse_float=Decimal)

    def bc_patch(self, entity: str, entity_id: str, body: dict) -> dict:
        etag = self.bc_get(entity, entity_id)["@odata.etag"]
        response = self.bc.patch(f"{self.company}/{entity}({entity_id})", json=body,
                                 headers={"If-Match": etag}, timeout=30)
        assert response.status_code == 200, response.text
        return response.json()

    def shop_patch(self, resource: str, key: str, body: dict) -> dict:
        response = self.shop.patch(f"{self.sandbox.url('customwebshop')}/{resource}/{key}",
                                   json=body, timeout=30)
        assert response.status_code == 200, response.text
        return response.json()

    def writes(self, system: str) -> dict:
        """Requests that change state since the log was cleared, by method. BC's writes all
        travel in ``$batch`` POSTs (token requests are POSTs too, and change nothing)."""
        if system != "businesscentral":
            by_method = self.sandbox.requests(system)["by_method"]
            return {m: n for m, n in by_method.items() if m in ("POST", "PATCH", "PUT", "DELETE")}
        log = self.sandbox.requests(system)["log"]
        methods = collections.Counter(entry["method"] for entry in log
                                      if entry["method"] != "GET"
                                      and not entry["path"].endswith("/oauth2/v2.0/token"))
        return dict(methods)

    def clear_logs(self) -> None:
        for system in ("customwebshop", "businesscentral"):
            self.sandbox.clear_requests(system)


@pytest.fixture
def bch(tmp_path, monkeypatch):
    sandbox = Sandbox(state_dir=tmp_path / "sandbox", base_port=0,
                      systems=("customwebshop", "businesscentral"), seed=42)
    sandbox.start()
    for name, value in sandbox.environ().items():
        monkeypatch.setenv(name, value)
    try:
        yield BcHarness(sandbox, tmp_path)
    finally:
        sandbox.stop()


@pytest.fixture
def synced_bch(synced_states, tmp_path, monkeypatch):
    """Both systems and the link store after a first successful run (a copy of one made once
    per session: tests/conftest.py), for the tests of what happens after it."""
    systems = ("customwebshop", "businesscentral")
    with copy_of_synced(synced_states(systems, DATAFLOW), systems,
                        tmp_path / "sandbox") as sandbox:
        for name, value in sandbox.environ().items():
            monkeypatch.setenv(name, value)
        yield BcHarness(sandbox, tmp_path)


def _writes(report) -> dict:
    return {pair: {k: counts[k] for k in WRITES if counts[k]}
            for pair, counts in report["pairs"].items() if any(counts[k] for k in WRITES)}


# -- the spec ---------------------------------------------------------------------------------


def test_every_bc_property_of_the_dataflow_is_in_the_metadata():
    spec = get_dataflow(DATAFLOW)
    metadata = businesscentral_edm.metadata()
    for pair in spec.pairs:
        entity = metadata.entity_set(pair.target.entity)
        for prop in pair.properties:
            assert prop.target in entity.properties or prop.type == "lines", prop.target
            if prop.type == "lines":
                lines = metadata.entity_set(prop.target)
                assert {line.target for line in prop.lines} <= set(lines.properties)
                continue
            edm = entity.properties[prop.target]
            if edm.max_length is not None and prop.type != "country":  # ISO codes: 2 ≤ 10
                assert prop.max_length is not None and prop.max_length <= edm.max_length, \
                    prop.target
            expected = {"string": "Edm.String", "email": "Edm.String", "country": "Edm.String",
                        "currency": "Edm.String", "decimal": "Edm.Decimal",
                        "integer": "Edm.Decimal", "date": "Edm.Date", "reference": "Edm.Guid"}
            assert edm.type == expected[prop.type], prop.target
    assert [p.name for p in spec.pairs] == ["customer", "product", "order"]


# -- syncing ----------------------------------------------------------------------------------


def test_first_run_links_and_creates_both_ways_and_the_rerun_writes_nothing(bch):
    shop_customers = group_by(bch.shop_all("customers"), "email", True)
    bc_customers = group_by(bch.bc_all("customers"), "email", True)
    shop_products = group_by(bch.shop_all("products"), "sku")
    bc_items = group_by(bch.bc_all("items"), "number")
    shop_orders = bch.shop_all("orders")
    bc_orders = bch.bc_all("salesOrders")
    emails = set(shop_customers) & set(bc_customers)
    skus = set(shop_products) & set(bc_items)
    numbers = {o["number"] for o in shop_orders} & {o["externalDocumentNumber"] for o in bc_orders}
    # the overlap the seed was built with (sandbox/seed_businesscentral.py)
    assert (len(emails), len(skus), len(numbers)) == (SHARED_CUSTOMERS, SHARED_ITEMS,
                                                      SHARED_ORDERS)
    emails, skus, numbers = len(emails), len(skus), len(numbers)

    status, report = bch.run()

    assert status == 0, report
    customers, products, orders = (report["pairs"][p] for p in ("customer", "product", "order"))
    assert customers["linked_by_match"] == 2 * emails   # records: 2 a link
    assert customers["created_in_target"] == len(shop_customers) - emails
    assert customers["created_in_source"] == len(bc_customers) - emails
    assert products["linked_by_match"] == 2 * skus
    assert products["created_in_target"] == len(shop_products) - skus
    assert products["created_in_source"] == len(bc_items) - skus
    assert orders["linked_by_match"] == 2 * numbers
    assert orders["created_in_target"] == len(shop_orders) - numbers
    assert orders["created_in_source"] == len(bc_orders) - numbers   # numbered S-ORD… in the shop
    assert all(counts["dead_letters"] == 0 for counts in report["pairs"].values())
    after_bc = group_by(bch.bc_all("customers"), "email", True)
    after_shop = group_by(bch.shop_all("customers"), "email", True)
    assert set(after_bc) == set(after_shop) and all(len(v) == 1 for v in after_bc.values())
    items = group_by(bch.bc_all("items"), "number")
    assert set(items) == set(group_by(bch.shop_all("products"), "sku"))
    assert all(len(v) == 1 for v in items.values())

    # a BC-only item arrived in the webshop with its values translated
    bc_only = sorted(set(items) - set(shop_products))[0]
    [item], [product] = items[bc_only], group_by(bch.shop_all("products"), "sku")[bc_only]
    assert (product["name"], Decimal(product["price"]), product["gtin"]) == (
        item["displayName"], Decimal(item["unitPrice"]), item["gtin"])
    assert product["vat_rate"] == {"VAT25": "25.00", "VAT15": "15.00", "VAT12": "12.00",
                                   "VAT0": "0.00"}[item["taxGroupCode"]]
    assert product["stock_quantity"] == item["inventory"]

    bch.clear_logs()
    status, report = bch.run()
    assert status == 0 and _writes(report) == {}
    assert bch.writes("customwebshop") == {} and bch.writes("businesscentral") == {}


def test_orders_arrive_with_lines_and_translated_references(synced_bch):
    bch = synced_bch
    shop_customers = {c["id"]: c for c in bch.shop_all("customers")}
    shop_products = {p["id"]: p for p in bch.shop_all("products")}
    bc_customers = {c["id"]: c for c in bch.bc_all("customers")}
    bc_items = {i["id"]: i for i in bch.bc_all("items")}
    bc_orders = group_by(bch.bc_all("salesOrders"), "externalDocumentNumber")
    for entered_in_bc in bc_orders.pop(""):
        bc_orders[entered_in_bc["number"]] = [entered_in_bc]
    shop_orders = bch.shop_all("orders")
    assert len(shop_orders) > 200 and len(shop_orders) == sum(map(len, bc_orders.values()))
    for shop in shop_orders:
        [order] = bc_orders[shop["number"]]
        assert bc_customers[order["customerId"]]["email"].lower() == \
            shop_customers[shop["customer_id"]]["email"].lower()
        assert len(order["salesOrderLines"]) == len(shop["lines"]) > 0
        for line, shop_line in zip(order["salesOrderLines"], shop["lines"], strict=True):
            assert (bc_items[line["itemId"]]["number"]
                    == shop_products[shop_line["product_id"]]["sku"])
            assert line["lineType"] == "Item"
            assert Decimal(line["quantity"]) == Decimal(shop_line["quantity"])
            assert Decimal(line["unitPrice"]) == Decimal(shop_line["unit_price"])


def test_an_order_entered_in_bc_reaches_the_webshop_under_its_bc_number(synced_bch):
    """No external document number: the BC number becomes the webshop number; the company's
    own currency, blank in BC, arrives as the configured local currency; nothing echoes."""
    bch = synced_bch
    shop_customers = group_by(bch.shop_all("customers"), "email", True)
    customer = next(c for c in bch.bc_all("customers") if c["email"].lower() in shop_customers)
    bch.bc_patch("customers", customer["id"], {"currencyCode": ""})
    items = bch.bc_all("items")[:2]
    response = bch.bc.post(f"{bch.company}/salesOrders?$expand=salesOrderLines", json={
        "customerId": customer["id"], "orderDate": "2026-11-20",
        "salesOrderLines": [{"lineType": "Item", "itemId": item["id"], "quantity": 2}
                            for item in items]}, timeout=30)
    assert response.status_code == 201, response.text
    entered = response.json()
    assert entered["externalDocumentNumber"] == "" and entered["currencyCode"] == ""

    status, report = bch.run()

    assert status == 0 and report["pairs"]["order"]["created_in_source"] == 1, report
    [shop] = [o for o in bch.shop_all("orders") if o["number"] == entered["number"]]
    assert shop["currency"] == "NOK"
    assert shop["customer_id"] == shop_customers[customer["email"].lower()][0]["id"]
    products = {p["id"]: p["sku"] for p in bch.shop_all("products")}
    assert [(products[line["product_id"]], Decimal(line["quantity"])) for line in shop["lines"]] \
        == [(item["number"], Decimal(2)) for item in items]
    after = bch.bc_get("salesOrders", entered["id"])
    assert (after["externalDocumentNumber"], after["currencyCode"]) == ("", "")
    bch.clear_logs()
    status, report = bch.run()
    assert status == 0 and _writes(report) == {}
    assert bch.writes("customwebshop") == {} and bch.writes("businesscentral") == {}


def test_edits_both_ways_and_order_line_changes(synced_bch):
    bch = synced_bch
    shop_customers = group_by(bch.shop_all("customers"), "email", True)
    bc_customers = group_by(bch.bc_all("customers"), "email", True)
    emails = sorted(set(shop_customers) & set(bc_customers))
    bc_items = group_by(bch.bc_all("items"), "number")
    shop_products = group_by(bch.shop_all("products"), "sku")
    sku = sorted(set(bc_items) & set(shop_products))[0]
    bch.shop_patch("customers", shop_customers[emails[0]][0]["id"], {"phone": "+47 400 00 001"})
    bch.bc_patch("customers", bc_customers[emails[1]][0]["id"], {"city": "Tromsø"})
    bch.bc_patch("items", bc_items[sku][0]["id"], {"unitPrice": 1234.5})
    order = bch.shop_all("orders")[0]
    lines = [dict(line) for line in order["lines"]]
    lines[0]["quantity"] = "7"
    extra = shop_products[sku][0]
    lines.append({"product_id": extra["id"], "quantity": "2", "unit_price": "10.00"})
    bch.shop_patch("orders", order["id"], {"lines": lines})

    status, report = bch.run()

    assert status == 0, report
    assert bch.bc_get("customers", bc_customers[emails[0]][0]["id"])["phoneNumber"] == \
        "+47 400 00 001"
    shop_customer = shop_customers[emails[1]][0]
    assert bch.shop.get(f"{bch.sandbox.url('customwebshop')}/customers/{shop_customer['id']}",
                        timeout=10).json()["address"]["city"] == "Tromsø"
    product = bch.shop.get(f"{bch.sandbox.url('customwebshop')}/products/{extra['id']}",
                           timeout=10).json()
    assert Decimal(product["price"]) == Decimal("1234.5")
    [bc_order] = group_by(bch.bc_all("salesOrders"), "externalDocumentNumber")[order["number"]]
    assert [Decimal(line["quantity"]) for line in bc_order["salesOrderLines"]] == \
        [Decimal(line["quantity"]) for line in lines]
    assert bc_order["salesOrderLines"][-1]["lineObjectNumber"] == sku
    assert report["pairs"]["order"]["updated_target"] == 1
    assert report["pairs"]["customer"]["conflicts"] == 0

    bch.clear_logs()
    status, report = bch.run()
    assert status == 0 and _writes(report) == {}


def test_conflicting_edits_follow_the_latest_change(synced_bch):
    bch = synced_bch
    shop = group_by(bch.shop_all("products"), "sku")
    items = group_by(bch.bc_all("items"), "number")
    sku = sorted(set(shop) & set(items))[3]
    bch.shop_patch("products", shop[sku][0]["id"], {"name": "Webshop-navn"})
    bch.bc_patch("items", items[sku][0]["id"], {"displayName": "BC-navn, endret sist"})

    status, report = bch.run()

    assert status == 0
    assert report["pairs"]["product"]["conflicts"] == 1
    assert bch.shop.get(f"{bch.sandbox.url('customwebshop')}/products/{shop[sku][0]['id']}",
                        timeout=10).json()["name"] == "BC-navn, endret sist"
    assert bch.bc_get("items", items[sku][0]["id"])["displayName"] == "BC-navn, endret sist"


def test_a_stale_etag_is_dead_lettered_alone_and_the_next_run_converges(synced_bch):
    bch = synced_bch
    shop = group_by(bch.shop_all("customers"), "email", True)
    bc_rows = group_by(bch.bc_all("customers"), "email", True)
    stale_email, fine_email = sorted(set(shop) & set(bc_rows))[2:4]
    bc_id = bc_rows[stale_email][0]["id"]
    before = bch.bc_get("customers", bc_id)
    bch.shop_patch("customers", shop[stale_email][0]["id"], {"phone": "+47 911 11 111"})
    bch.shop_patch("customers", shop[fine_email][0]["id"], {"phone": "+47 922 22 222"})
    # someone saves the first customer in BC between talksync's read and its write
    touched = requests.post(f"{bch.sandbox.root_url('businesscentral')}/_sandbox/touch/"
                            f"customers/{bc_id}", json={"when": "next_write"}, timeout=10)
    assert touched.status_code == 200

    status, report = bch.run()

    assert status == 3
    letters = [json.loads(line) for line in (pathlib.Path(report["run_dir"]) /
                                              "dead_letters.jsonl").read_text().splitlines()]
    assert [(letter["error_class"], letter["status"],
             letter["entity_id"]) for letter in letters] == [
        ("conflict", 409, shop[stale_email][0]["id"])]
    assert "Request_EntityChanged" in letters[0]["message"]
    assert bch.bc_get("customers", bc_id)["phoneNumber"] == before["phoneNumber"]  # not overwritten
    # the other update went through
    assert bch.bc_get("customers", bc_rows[fine_email][0]["id"])["phoneNumber"] == "+47 922 22 222"
    assert report["pairs"]["customer"]["dead_letters"] == 1

    status, report = bch.run()
    assert status == 0
    assert bch.bc_get("customers", bc_id)["phoneNumber"] == "+47 911 11 111"
    assert bch.run()[1]["pairs"]["customer"]["updated_target"] == 0


def test_429_is_retried_and_the_sync_completes(bch):
    bch.sandbox.set_faults("businesscentral", error_rate=0.3, status=429, seed=3)

    status, report = bch.run()

    assert status == 0, report
    statuses = [e["status"] for e in bch.sandbox.requests("businesscentral")["log"]]
    assert 429 in statuses
    assert report["pairs"]["customer"]["created_in_target"] > 0


def test_propagate_blocks_the_bc_customer_and_the_next_run_is_quiet(synced_bch, delete_policy):
    """A webshop delete under ``delete: propagate`` blocks the Business Central customer
    (``blocked: "All"``, BC's way: docs/deletes.md), and the next run, which reads that
    customer back (changed by our write), writes nothing and letters nothing."""
    from connectors.stores import open_link_store
    bch = synced_bch
    delete_policy("propagate", DATAFLOW)
    ordered = ({row["customer_id"] for row in bch.shop_all("orders")}
               | {row["customerId"] for row in bch.bc_all("salesOrders")})
    pair = f"{DATAFLOW}/customer"
    with open_link_store(f"sqlite:///{bch.sandbox.state_dir / 'links.db'}") as store:
        shop_ids = sorted(row["id"] for row in bch.shop_all("customers"))
        links = store.lookup_by_source(pair, shop_ids)
    shop_id, bc_id = next((shop_id, link.target_id) for shop_id, link in sorted(links.items())
                          if link.state == "linked" and shop_id not in ordered
                          and link.target_id not in ordered)
    response = bch.shop.delete(f"{bch.sandbox.url('customwebshop')}/customers/{shop_id}",
                               timeout=30)
    assert response.status_code == 204, response.text
    bch.clear_logs()

    status, report = bch.run()
    assert status == 0, report
    assert report["pairs"]["customer"]["deleted_in_target"] == 1
    assert bch.bc_get("customers", bc_id)["blocked"] == "All"

    for _ in range(2):                            # settled: nothing written, nothing lettered
        bch.clear_logs()
        status, report = bch.run()
        assert status == 0, report
        assert bch.writes("businesscentral") == {} and bch.writes("customwebshop") == {}
        assert report["pairs"]["customer"]["dead"] == 0
