"""The bad-input corpus (issue 8): every kind of bad input a system can hand us becomes a dead
letter with a clear reason, everything valid still syncs, and the run ends with exit status 3.

End to end: the real pipeline (`talksync run customerp-customwebshop`) against the sandbox over
HTTP. The systems' APIs validate what they are sent, so the bad records go in through the
sandbox's back door (``POST /_sandbox/raw/{resource}``: data a system holds although its own API
would refuse it), and bad pages through its ``corrupt`` fault (garbled answers to matching
requests). To stay fast, one sandbox takes the whole record corpus and one run syncs it; the
page faults then take turns over a few short incremental runs of the same sandbox.

Each case is a row of a table: where the bad input goes, what it is, and the stage, error class
and reason text its dead letter must carry.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import pathlib
from collections.abc import Mapping
from typing import Any

import pytest
import requests

from tests.conftest import SyncHarness, group_by
from tests.test_sync_customerp_customwebshop import _assert_one_to_one

ERP, SHOP = "customerp", "customwebshop"
DROP = object()          # an override that removes the field


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


NOW = _now()
MARK = "corpus-bad"      # in the "Note" of every injected bad record (a field nothing maps)
ERP_KEYS = {"Customers": "CustomerNo", "Products": "ItemNo", "Orders": "OrderNo"}


@dataclasses.dataclass(frozen=True)
class Case:
    """One kind of bad record: the template of ``system``/``resource`` with ``changes``.

    ``twin`` (duplicate match keys): a second record with these changes is injected too, and
    both must be dead letters. The letter must be of ``stage`` and ``error_class`` and its
    message must contain ``reason``."""

    name: str
    system: str
    resource: str
    changes: Mapping[str, Any]
    stage: str
    error_class: str
    reason: str
    twin: Mapping[str, Any] | None = None


def erp_customer(name, changes, stage, cls, reason, twin=None):
    return Case(name, ERP, "Customers", changes, stage, cls, reason, twin)


def erp_product(name, changes, stage, cls, reason):
    return Case(name, ERP, "Products", changes, stage, cls, reason)


def erp_order(name, changes, stage, cls, reason):
    return Case(name, ERP, "Orders", changes, stage, cls, reason)


def shop(resource, name, changes, stage, cls, reason, twin=None):
    return Case(name, SHOP, resource, changes, stage, cls, reason, twin)


def _line(**changes):
    return {"line": changes}


V, R = "validation", "reference"
CASES = [
    # --- ERP customers: rows that are not records (read), then values (map), then keys (plan)
    erp_customer("erp key missing", {"CustomerNo": DROP}, "read", V,
                 "unreadable Customers row: it has no CustomerNo"),
    erp_customer("erp key empty", {"CustomerNo": ""}, "read", V, "its CustomerNo is empty"),
    erp_customer("erp key blank", {"CustomerNo": "   "}, "read", V, "its CustomerNo is empty"),
    erp_customer("erp key a number", {"CustomerNo": 10001}, "read", V,
                 "its CustomerNo 10001 is a number, not text"),
    erp_customer("erp key a list", {"CustomerNo": ["C1", "C2"]}, "read", V,
                 "its CustomerNo ['C1', 'C2'] is a list, not text"),
    erp_customer("erp modified missing", {"ModifiedAt": DROP}, "read", V,
                 "it has no ModifiedAt"),
    erp_customer("erp modified unparseable", {"ModifiedAt": "yesterday"}, "read", V,
                 "its ModifiedAt 'yesterday' is not an ISO 8601 timestamp with a time zone"),
    erp_customer("erp modified without zone", {"ModifiedAt": "2026-11-01T10:00:00"}, "read",
                 V, "'2026-11-01T10:00:00' is not an ISO 8601 timestamp with a time zone"),
    erp_customer("erp modified a number", {"ModifiedAt": 1763700000}, "read", V,
                 "its ModifiedAt 1763700000 is a number, not a timestamp"),
    erp_customer("erp email missing", {"Email": None}, "map", V,
                 "email (Email): a value is required"),
    erp_customer("erp email invalid", {"Email": "not-an-address"}, "map", V,
                 "email (Email): 'not-an-address' is not an e-mail address"),
    erp_customer("erp email with a space", {"Email": "ola nordmann@example.no"}, "map", V,
                 "is not an e-mail address"),
    erp_customer("erp email with two dots", {"Email": "ola..nordmann@example.no"}, "map", V,
                 "email (Email): 'ola..nordmann@example.no' does not match the pattern"),
    erp_customer("erp email a boolean", {"Email": True}, "map", V,
                 "email (Email): expected text, got bool"),
    erp_customer("erp name oversize", {"Name": "N" * 101}, "map", V,
                 "company_name (Name): 101 characters, more than the maximum of 100"),
    erp_customer("erp name bell character", {"Name": "Bjelle\x07 AS"}, "map", V,
                 "company_name (Name): contains control characters"),
    erp_customer("erp street NUL byte", {"Street": "Storgata 1\x00"}, "map", V,
                 "address.line1 (Street): contains control characters"),
    erp_customer("erp city ANSI escape", {"City": "\x1b[31mOslo"}, "map", V,
                 "address.city (City): contains control characters"),
    erp_customer("erp city oversize", {"City": "C" * 51}, "map", V,
                 "address.city (City): 51 characters, more than the maximum of 50"),
    erp_customer("erp country a name", {"CountryCode": "Norway"}, "map", V,
                 "address.country (CountryCode): 'Norway' is not an ISO 3166-1 alpha-2"),
    erp_customer("erp country a number", {"CountryCode": 47}, "map", V,
                 "address.country (CountryCode): 47 is not an ISO 3166-1 alpha-2"),
    erp_customer("erp phone an object", {"Phone": {"number": "+47 1"}}, "map", V,
                 "phone (Phone): expected text, got dict"),
    erp_customer("erp street a list", {"Street": ["Storgata", "1"]}, "map", V,
                 "address.line1 (Street): expected text, got list"),
    erp_customer("erp orgno oversize", {"OrgNo": "9" * 21}, "map", V,
                 "vat_number (OrgNo): 21 characters, more than the maximum of 20"),
    erp_customer("erp duplicate email", {"Email": "dup@corpus.test"}, "plan", V,
                 "duplicate match key: 2 source Customer records",
                 twin={"Email": "DUP@corpus.test"}),
    # --- ERP products
    erp_product("erp item key missing", {"ItemNo": DROP}, "read", V,
                "unreadable Products row: it has no ItemNo"),
    erp_product("erp price negative", {"SalesPrice": -10}, "map", V,
                "price (SalesPrice): -10 is below the minimum 0 (rule minimum of product.price)"),
    erp_product("erp price decimal comma", {"SalesPrice": "12,50"}, "map", V,
                "price (SalesPrice): '12,50' is not a number"),
    erp_product("erp price thousands space", {"SalesPrice": "1 000"}, "map", V,
                "price (SalesPrice): '1 000' is not a number"),
    erp_product("erp price NaN", {"SalesPrice": "NaN"}, "map", V,
                "price (SalesPrice): 'NaN' is not a finite number"),
    erp_product("erp price Infinity", {"SalesPrice": "Infinity"}, "map", V,
                "price (SalesPrice): 'Infinity' is not a finite number"),
    erp_product("erp price missing", {"SalesPrice": None}, "map", V,
                "price (SalesPrice): a value is required"),
    erp_product("erp price a boolean", {"SalesPrice": True}, "map", V,
                "price (SalesPrice): expected a number, got a boolean"),
    erp_product("erp cost an object", {"CostPrice": {"amount": 5}}, "map", V,
                "cost (CostPrice): expected a number, got dict"),
    erp_product("erp stock a fraction", {"StockQty": 2.5}, "map", V,
                "stock_quantity (StockQty): 2.5 is not a whole number"),
    erp_product("erp stock text", {"StockQty": "ten"}, "map", V,
                "stock_quantity (StockQty): 'ten' is not an integer"),
    erp_product("erp unknown vat code", {"VatCode": "99"}, "map", V,
                "vat_rate (VatCode): '99' has no mapping; known values: 3, 31, 33, 5"),
    erp_product("erp item number oversize", {"ItemNo": "BAD-LONG-ITEM-NUMBER"  + "X"}, "map", V,
                "sku (ItemNo): 21 characters, more than the maximum of 20"),
    erp_product("erp description missing", {"Description": None}, "map", V,
                "name (Description): a value is required"),
    erp_product("erp gtin oversize", {"Gtin": "7" * 15}, "map", V,
                "gtin (Gtin): 15 characters, more than the maximum of 14"),
    # --- ERP orders
    erp_order("erp order key missing", {"OrderNo": DROP}, "read", V,
              "unreadable Orders row: it has no OrderNo"),
    erp_order("erp order missing customer", {"CustomerNo": "NO-SUCH-CUSTOMER"}, "reference", R,
              "customer_id (CustomerNo): customer NO-SUCH-CUSTOMER does not exist in customerp "
              "(retried on the next run: 1 of 3)"),
    erp_order("erp order missing item", _line(ItemNo="NO-SUCH-ITEM"), "reference", R,
              "lines (Lines)[0].product_id (ItemNo): product NO-SUCH-ITEM does not exist in "
              "customerp"),
    erp_order("erp order line of nothing", _line(Qty=0), "map", V,
              "lines (Lines)[0].quantity (Qty): 0 is not greater than 0 "
              "(rule greater_than of order.lines.quantity)"),
    erp_order("erp order impossible date", {"OrderDate": "2026-02-30"}, "map", V,
              "order_date (OrderDate): '2026-02-30' is not a date (YYYY-MM-DD)"),
    erp_order("erp order dotted date", {"OrderDate": "30.11.2026"}, "map", V,
              "order_date (OrderDate): '30.11.2026' is not a date"),
    erp_order("erp order integer date", {"OrderDate": 20261130}, "map", V,
              "order_date (OrderDate): 20261130 is not a date"),
    erp_order("erp order currency word", {"Currency": "kr"}, "map", V,
              "currency (Currency): 'kr' is not an ISO 4217 currency code"),
    erp_order("erp order currency missing", {"Currency": None}, "map", V,
              "currency (Currency): a value is required"),
    erp_order("erp order unknown status", {"Status": "OnHold"}, "map", V,
              "status (Status): 'OnHold' has no mapping"),
    erp_order("erp order lines an object", {"Lines": {"ItemNo": "X"}}, "map", V,
              "lines (Lines): expected a list of lines, got dict"),
    erp_order("erp order line not an object", {"Lines": ["one line"]}, "map", V,
              "lines (Lines)[0]: a line must be an object"),
    erp_order("erp order quantity a word", _line(Qty="two"), "map", V,
              "lines (Lines)[0].quantity (Qty): 'two' is not a number"),
    erp_order("erp order unit price missing", _line(UnitPrice=None), "map", V,
              "lines (Lines)[0].unit_price (UnitPrice): a value is required"),
    erp_order("erp order discount with percent sign", _line(DiscountPct="10%"), "map", V,
              "lines (Lines)[0].discount_percent (DiscountPct): '10%' is not a number"),
    erp_order("erp order number oversize", {"OrderNo": "BAD-" + "9" * 37}, "map", V,
              "number (OrderNo): 41 characters, more than the maximum of 40"),
    # --- webshop customers
    shop("customers", "shop id missing", {"id": DROP}, "read", V,
         "unreadable customers row: it has no id"),
    shop("customers", "shop id a number", {"id": 12345}, "read", V,
         "its id 12345 is a number, not text"),
    shop("customers", "shop updated_at missing", {"updated_at": DROP}, "read", V,
         "it has no updated_at"),
    shop("customers", "shop updated_at impossible month", {"updated_at": "2026-13-01T00:00:00Z"},
         "read", V, "its updated_at '2026-13-01T00:00:00Z' is not an ISO 8601 timestamp"),
    shop("customers", "shop deleted flag as text", {"deleted": "false"}, "read", V,
         "its deleted 'false' is text, not true or false"),
    shop("customers", "shop email invalid", {"email": "ola.nordmann(at)example.no"}, "map", V,
         "email: 'ola.nordmann(at)example.no' is not an e-mail address"),
    shop("customers", "shop address as text", {"address": "Storgata 1, 0155 Oslo"}, "map", V,
         "address.line1: address is str 'Storgata 1, 0155 Oslo', not an object"),
    shop("customers", "shop company oversize", {"company_name": "X" * 101}, "map", V,
         "company_name: 101 characters, more than the maximum of 100"),
    shop("customers", "shop phone oversize", {"phone": "+47 " + "9" * 30}, "map", V,
         "phone: 34 characters, more than the maximum of 30"),
    shop("customers", "shop vat number vertical tab", {"vat_number": "NO\x0b123"}, "map", V,
         "vat_number: contains control characters"),
    shop("customers", "shop country alpha-3", {"address": {"country": "NOR"}}, "map", V,
         "address.country: 'NOR' is not an ISO 3166-1 alpha-2 country code"),
    shop("customers", "shop duplicate email", {"email": "twin@corpus.test"}, "plan", V,
         "duplicate match key: 2 target Customer records", twin={"email": "Twin@Corpus.test"}),
    # --- webshop products
    shop("products", "shop price two dots", {"price": "12.345.67"}, "map", V,
         "price: '12.345.67' is not a number"),
    shop("products", "shop stock a dash", {"stock_quantity": "-"}, "map", V,
         "stock_quantity: '-' is not an integer"),
    shop("products", "shop sku oversize", {"sku": "BAD-SKU-0123456789-X"  + "X"}, "map", V,
         "sku: 21 characters, more than the maximum of 20"),
    shop("products", "shop name missing", {"name": None}, "map", V, "name: a value is required"),
    shop("products", "shop vat rate a word", {"vat_rate": "high"}, "map", V,
         "vat_rate: 'high' is not a number"),
    shop("products", "shop duplicate sku", {"sku": "BAD-DUP-SKU"}, "plan", V,
         "duplicate match key: 2 target Product records", twin={"sku": "BAD-DUP-SKU"}),
    # --- webshop orders
    shop("orders", "shop order missing customer", {"customer_id": "cus_999999"}, "reference",
         R, "create in customerp failed: customer_id (CustomerNo): customer cus_999999 does "
         "not exist in customwebshop (retried on the next run: 1 of 3)"),
    shop("orders", "shop order missing product", _line(product_id="prd_999999"), "reference",
         R, "lines (Lines)[0].product_id: product prd_999999 does not exist in customwebshop"),
    shop("orders", "shop order line of nothing", _line(quantity="0"), "map", V,
         "lines[0].quantity: 0 is not greater than 0 (rule greater_than of "
         "order.lines.quantity)"),
    shop("products", "shop price negative", {"price": "-0.50"}, "map", V,
         "price: -0.50 is below the minimum 0 (rule minimum of product.price)"),
    shop("orders", "shop order status without ERP equivalent", {"status": "on-hold"}, "write",
         V, "create in customerp failed: status (Status): 'on-hold' has no Order equivalent"),
    shop("orders", "shop order impossible date", {"order_date": "2026-11-31"}, "map", V,
         "order_date: '2026-11-31' is not a date (YYYY-MM-DD)"),
    shop("orders", "shop order quantity comma", _line(quantity="1,5"), "map", V,
         "lines[0].quantity: '1,5' is not a number"),
    shop("orders", "shop order currency a word", {"currency": "EURO"}, "map", V,
         "currency: 'EURO' is not an ISO 4217 currency code"),
]

#: rows that are not objects, appended to a page of ERP products by the ``junk_rows`` fault
JUNK_ROWS = [("junk row text", "not a row", "the row is text, not an object"),
             ("junk row number", 42, "the row is a number, not an object"),
             ("junk row null", None, "the row is null, not an object"),
             ("junk row array", ["a", "list"], "the row is a list, not an object")]

#: malformed answers to list requests: (kind, system, path, what the read letter says)
PAGE_FAULTS = {
    "html_200": (SHOP, "/api/v1/customers", "-> HTTP 200 with a body that is not JSON "
                 "(text/html): <!DOCTYPE html>"),
    "truncated_json": (ERP, "/erp/v1/Products", "-> HTTP 200 with a body that is not JSON "
                       "(application/json): {\"items\""),
    "html_502": (SHOP, "/api/v1/products", "-> HTTP 502: <!DOCTYPE html><html><head><title>"
                 "502 Bad Gateway"),
    "not_an_object": (ERP, "/erp/v1/Orders", "answered a list instead of a page object"),
    "list_not_array": (SHOP, "/api/v1/orders", "answered a page whose 'data' is an object, "
                       "not a list"),
    "empty_200": (ERP, "/erp/v1/Products", "answered null instead of a page object"),
    "missing_list": (ERP, "/erp/v1/Customers", "answered a page without its 'items' list"),
}


def test_the_corpus_has_at_least_50_distinct_kinds():
    names = [c.name for c in CASES] + [n for n, _, _ in JUNK_ROWS] + list(PAGE_FAULTS)
    assert len(names) == len(set(names)) >= 50


# --- the systems' templates -------------------------------------------------------------------


def _erp_template(resource: str, key: str, refs: Mapping[str, str]) -> dict:
    if resource == "Customers":
        return {"CustomerNo": key, "Name": f"Corpus {key}", "OrgNo": None,
                "Email": f"{key.lower()}@corpus.test", "Phone": None, "Street": "Storgata 1",
                "Street2": None, "ZipCode": "0155", "City": "Oslo", "CountryCode": "NO"}
    if resource == "Products":
        return {"ItemNo": key, "Description": f"Corpus {key}", "Gtin": None, "SalesPrice": 100,
                "CostPrice": 50, "VatCode": "3", "StockQty": 1, "Unit": "pcs"}
    return {"OrderNo": key, "CustomerNo": refs["erp_customer"], "OrderDate": "2026-11-01",
            "Currency": "NOK", "Reference": None, "Status": "Open",
            "Lines": [{"ItemNo": refs["erp_item"], "Description": "Corpus line", "Qty": 1,
                       "UnitPrice": 10, "DiscountPct": 0}]}


def _shop_template(resource: str, key: str, refs: Mapping[str, str]) -> dict:
    meta = {"id": key, "updated_at": NOW, "deleted": False}
    if resource == "customers":
        return {**meta, "email": f"{key}@corpus.test", "first_name": "Corpus",
                "last_name": key, "company_name": f"Corpus {key}", "phone": None,
                "vat_number": None, "address": {"line1": "Storgata 1", "line2": None,
                                                "postal_code": "0155", "city": "Oslo",
                                                "country": "NO"}}
    if resource == "products":
        return {**meta, "sku": key.upper().replace("_", "-"), "gtin": None,
                "name": f"Corpus {key}", "description": None, "price": "10.00", "cost": None,
                "currency": "NOK", "vat_rate": "25.00", "stock_quantity": 1}
    return {**meta, "number": key.upper(), "customer_id": refs["shop_customer"],
            "status": "pending", "currency": "NOK", "order_date": "2026-11-01",
            "billing_address": None, "shipping_address": None, "discount_total": "0.00",
            "total": "10.00",
            "lines": [{"product_id": refs["shop_product"], "sku": refs["shop_sku"],
                       "name": "Corpus line", "quantity": "1", "unit_price": "10.00",
                       "discount_percent": "0", "vat_rate": "25.00"}]}


def _bad_record(case: Case, index: int, refs, changes=None, suffix="") -> dict:
    key = f"BAD-{index:02d}{suffix}" if case.system == ERP else f"bad_{index:02d}{suffix}"
    template = (_erp_template if case.system == ERP else _shop_template)(
        case.resource, key, refs)
    if case.system == ERP:
        template["ModifiedAt"] = NOW
    record = dict(template, Note=f"{MARK} {case.name}{suffix}")
    for name, value in (changes if changes is not None else case.changes).items():
        if name == "line":
            lines_key = "Lines" if case.system == ERP else "lines"
            record[lines_key] = [dict(record[lines_key][0], **value)]
        elif name == "address" and isinstance(value, dict):
            record["address"] = dict(record["address"], **value)
        elif value is DROP:
            record.pop(name)
        else:
            record[name] = value
    return record


def _usable_id(record: dict, key_field: str) -> str | None:
    value = record.get(key_field)
    return value if isinstance(value, str) and value.strip() else None


# --- valid but tricky: must arrive byte-identical ---------------------------------------------

TRICKY_NAME = ("Kaffe ☕ & Kake 🎂 AS — شركة القهوة \u200f(RTL) Åse\u030a Nord\u00a0Vest "
               "👩\u200d👩\u200d👧 🇳🇴 ")
TRICKY_NAME += "x" * (100 - len(TRICKY_NAME))                     # exactly at the limit
TRICKY_EMAIL = "t" * (80 - len("@corpus.test")) + "@corpus.test"   # exactly at the limit
TRICKY_ITEM = "TRK-" + "7" * 16                                   # exactly 20 characters
TRICKY_DESCRIPTION = "Ullpledd «Fjord» ½ kg 𝄞 e\u0301 👩\u200d👩\u200d👧 "
TRICKY_DESCRIPTION += "y" * (100 - len(TRICKY_DESCRIPTION))


def _add_tricky_records(h: SyncHarness) -> dict:
    """Valid records at the edges of text, created through the systems' own APIs."""
    erp_customer = h.post(ERP, "Customers", {
        "Name": TRICKY_NAME, "Email": TRICKY_EMAIL, "Street": "شارع الملك فهد ١٢",
        "City": "A\u030angstrøm\u00a0by", "CountryCode": "NO"})
    shop_customer = h.post(SHOP, "customers", {
        "email": "tricky-shop@corpus.test", "company_name": "חברת\u00a0הקפה בע״מ 🎂",
        "address": {"line1": "\u200fרחוב הרצל 1", "city": "Tel Aviv", "country": "IL"}})
    shop_named = h.post(SHOP, "customers", {
        "email": "tricky-named@corpus.test", "first_name": "Anne\u00a0Marie",
        "last_name": "Berg 🌲", "address": {"country": "NO"}})
    erp_product = h.post(ERP, "Products", {
        "ItemNo": TRICKY_ITEM, "Description": TRICKY_DESCRIPTION, "SalesPrice": 10,
        "VatCode": "3"})
    shop_product = h.post(SHOP, "products", {
        "sku": "TRK-SHOP-1", "name": "Kaffe ☕ «Løven» 𝄞 — ½ kg café\u0301 Ω", "price": "10.00",
        "vat_rate": "25.00"})
    return {"erp_customer": erp_customer, "shop_customer": shop_customer,
            "shop_named": shop_named, "erp_product": erp_product, "shop_product": shop_product}


# --- the corpus run ---------------------------------------------------------------------------


@dataclasses.dataclass
class CorpusRun:
    harness: SyncHarness
    status: int
    report: dict
    letters: list
    expected: dict        # case name -> [(system, entity id or None, marker)]
    tricky: dict


def _letters(report) -> list[dict]:
    path = pathlib.Path(report["run_dir"]) / "dead_letters.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """One sandbox with every bad record of the corpus, the junk rows and the tricky records,
    synced by one run."""
    from sandbox.server import Sandbox
    state = tmp_path_factory.mktemp("corpus")
    with pytest.MonkeyPatch.context() as monkeypatch, Sandbox(
            state_dir=state / "sandbox", base_port=0, systems=(SHOP, ERP), seed=42) as sandbox:
        for name, value in sandbox.environ().items():
            monkeypatch.setenv(name, value)
        h = SyncHarness(sandbox, state)
        h.configure(SHOP, page_size=500, max_retries=1)
        h.configure(ERP, page_size=1000, max_retries=1)
        erp_order = h.list_all(ERP, "Orders")[0]
        shop_order = next(o for o in h.list_all(SHOP, "orders") if not o["deleted"])
        refs = {"erp_customer": erp_order["CustomerNo"],
                "erp_item": erp_order["Lines"][0]["ItemNo"],
                "shop_customer": shop_order["customer_id"],
                "shop_product": shop_order["lines"][0]["product_id"],
                "shop_sku": shop_order["lines"][0]["sku"]}
        expected = {}
        for index, case in enumerate(CASES):
            records = [_bad_record(case, index, refs)]
            if case.twin is not None:
                records.append(_bad_record(case, index, refs, case.twin, suffix="B"))
            key_field = ERP_KEYS[case.resource] if case.system == ERP else "id"
            sandbox.put_raw(case.system, case.resource, records)
            expected[case.name] = [(case.system, _usable_id(r, key_field), r["Note"])
                                   for r in records]
        tricky = _add_tricky_records(h)
        sandbox.set_faults(ERP, corrupt=[{"path": "/erp/v1/Products", "kind": "junk_rows"}])
        status, report = h.run()
        sandbox.set_faults(ERP)
        yield CorpusRun(h, status, report, _letters(report), expected, tricky)


def test_the_run_ends_with_exit_status_3(corpus):
    assert corpus.status == 3, corpus.report
    stored = sum(p["dead_letters"] for p in corpus.report["pairs"].values())
    assert stored == len(corpus.letters)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_each_bad_record_is_one_dead_letter_with_a_clear_reason(corpus, case):
    for system, entity_id, marker in corpus.expected[case.name]:
        found = [letter for letter in corpus.letters if letter["system"] == system and (
            letter["entity_id"] == entity_id if entity_id else
            letter["entity_id"] is None and marker in (letter["payload"] or ""))]
        assert len(found) == 1, (case.name, found)
        letter = found[0]
        assert (letter["stage"], letter["error_class"]) == (case.stage, case.error_class), letter
        assert case.reason in letter["message"], letter["message"]
        assert letter["dataflow"] == "customerp-customwebshop"
        assert letter["entity"] == case.resource


@pytest.mark.parametrize("name,row,reason", JUNK_ROWS, ids=[n for n, _, _ in JUNK_ROWS])
def test_a_row_that_is_not_an_object_is_a_read_dead_letter(corpus, name, row, reason):
    found = [letter for letter in corpus.letters
             if letter["message"] == f"unreadable Products row: {reason}"]
    assert len(found) == 1, found
    assert (found[0]["system"], found[0]["stage"], found[0]["entity_id"],
            found[0]["error_class"]) == (ERP, "read", None, "validation")
    assert found[0]["payload"] == (None if row is None else json.dumps(row))


def test_no_other_dead_letters_and_every_valid_record_syncs_one_to_one(corpus):
    h = corpus.harness
    expected = sum(len(v) for v in corpus.expected.values()) + len(JUNK_ROWS)
    assert len(corpus.letters) == expected, sorted(
        (letter["stage"], letter["message"][:80]) for letter in corpus.letters)
    now = _valid_one_to_one(h)
    # what the corpus holds was not written anywhere: no bad record has a counterpart
    shop_emails = set(group_by(now["shop_customers"], "email", True))
    erp_emails = set(group_by(now["erp_customers"], "Email", True))
    assert not {e for e in shop_emails | erp_emails if e and e.endswith("@corpus.test")
                and e.startswith(("bad", "dup", "twin"))}
    report = corpus.report["pairs"]
    assert report["customer"]["created_in_target"] > 100        # the seed data synced
    assert report["product"]["created_in_target"] > 100
    assert report["order"]["created_in_target"] > 50


def _valid_one_to_one(h) -> dict:
    """Every record but the corpus's bad ones has exactly one counterpart by match key."""
    return _assert_one_to_one(h, ignore=lambda row: MARK in str(row.get("Note", "")))


def test_valid_but_tricky_text_arrives_byte_identical(corpus):
    h, tricky = corpus.harness, corpus.tricky
    shop_customers = group_by(h.list_all(SHOP, "customers"), "email", True)
    erp_customers = group_by(h.list_all(ERP, "Customers"), "Email", True)
    [shop_copy] = shop_customers[TRICKY_EMAIL]
    erp = tricky["erp_customer"]
    assert (shop_copy["company_name"], shop_copy["email"], shop_copy["address"]["line1"],
            shop_copy["address"]["city"]) == (erp["Name"], erp["Email"], erp["Street"],
                                              erp["City"])
    assert len(erp["Name"]) == 100 and len(erp["Email"]) == 80
    [erp_copy] = erp_customers["tricky-shop@corpus.test"]
    shop = tricky["shop_customer"]
    assert (erp_copy["Name"], erp_copy["Street"]) == (shop["company_name"],
                                                     shop["address"]["line1"])
    [named] = erp_customers["tricky-named@corpus.test"]
    assert named["Name"] == "Anne\u00a0Marie Berg 🌲"          # the no-break space kept
    shop_products = group_by(h.list_all(SHOP, "products"), "sku")
    [product_copy] = shop_products[TRICKY_ITEM]
    assert product_copy["name"] == TRICKY_DESCRIPTION and len(TRICKY_DESCRIPTION) == 100
    erp_product = h.get(ERP, "Products", "TRK-SHOP-1").json()
    assert erp_product["Description"] == tricky["shop_product"]["name"]
    ids = {tricky["erp_customer"]["CustomerNo"], tricky["shop_customer"]["id"],
           tricky["shop_named"]["id"], TRICKY_ITEM, tricky["shop_product"]["id"]}
    assert not [letter for letter in corpus.letters if letter["entity_id"] in ids]


def _read_failures(report) -> dict:
    """(system, entity) -> message of each read that failed as a whole."""
    failed = {(letter["system"], letter["entity"]): letter["message"] for letter in _letters(report)
              if letter["stage"] == "read" and letter["message"].startswith("reading ")}
    return failed


def _faults(h, *kinds):
    by_system: dict[str, list] = {ERP: [], SHOP: []}
    for kind in kinds:
        system, path, _ = PAGE_FAULTS[kind]
        by_system[system].append({"path": path, "kind": kind})
    for system, rules in by_system.items():
        h.sandbox.set_faults(system, corrupt=rules) if rules else h.sandbox.set_faults(system)


def _entity(path: str) -> str:
    return path.rsplit("/", 1)[1]


def test_malformed_pages_fail_only_their_pair_and_the_next_run_syncs_it(corpus):
    h = corpus.harness
    erp_orders = h.list_all(ERP, "Orders")
    erp_customer = next(c for c in h.list_all(ERP, "Customers")
                        if not c.get("Note") and c["CustomerNo"].startswith("C1"))
    order_no = next(o["OrderNo"] for o in erp_orders
                    if not o.get("Note") and o["Status"] == "Open")
    # A customer edit on the side that reads fine, and a new customer on both sides under one
    # e-mail: planned against the failed read of the webshop, the first would be pushed over
    # a picture we do not have, and the second created twice.
    h.put_erp("Customers", erp_customer["CustomerNo"], {"Phone": "+47 400 12 345"})
    h.post(ERP, "Customers", {"Name": "Begge Sider AS", "Email": "both@corpus.test"})
    h.post(SHOP, "customers", {"email": "both@corpus.test", "company_name": "Begge Sider AS"})
    h.put_erp("Orders", order_no, {"Status": "Released"})
    # an unreadable row fixed in the ERP (it gets its ModifiedAt) syncs once read
    [(_, fixed, _)] = corpus.expected["erp modified missing"]
    record = {k: v for k, v in h.get(ERP, "Customers", fixed).json().items() if k != "Note"}
    h.sandbox.put_raw(ERP, "Customers", [dict(record, Phone="+47 22 00 00 00",
                                              ModifiedAt=_now())])
    h.clear_logs()

    report = _run_with_page_faults(h, "html_200", "truncated_json", "html_502")

    log = h.sandbox.requests(SHOP)["log"]
    # the run's pre-flight check reads a page of one (retried once), then the pair's read
    # (retried once): the check warns and lets the pair meet the garbled page itself
    assert sum(1 for r in log if r["path"] == "/api/v1/customers") == 4
    pairs = report["pairs"]
    assert all(pairs[p][c] == 0 for p in ("customer", "product") for c in (
        "created_in_target", "created_in_source", "linked_by_match", "updated_target",
        "updated_source"))
    assert pairs["order"]["updated_target"] == 1                   # the other pair went on
    assert _shop_order(h, order_no)["status"] == "processing"
    [linked] = [c for c in h.list_all(SHOP, "customers") if not c.get("Note") and
                c["email"].lower() == erp_customer["Email"].lower()]
    assert linked["phone"] != "+47 400 12 345"                     # not planned, not written

    h.put_erp("Orders", order_no, {"Status": "Shipped"})
    report = _run_with_page_faults(h, "not_an_object", "list_not_array", "empty_200")

    customers = report["pairs"]["customer"]
    assert (customers["linked_by_match"], customers["created_in_target"],
            customers["created_in_source"]) == (2, 1, 0)   # linked (2 records), not created twice
    [fixed_copy] = [c for c in h.list_all(SHOP, "customers")
                    if c.get("email") == f"{fixed.lower()}@corpus.test"]
    assert fixed_copy["phone"] == "+47 22 00 00 00"
    assert h.get(SHOP, "customers", linked["id"]).json()["phone"] == "+47 400 12 345"
    assert _shop_order(h, order_no)["status"] == "processing"      # the order pair waits

    _run_with_page_faults(h, "missing_list")

    assert _shop_order(h, order_no)["status"] == "shipped"         # synced once readable
    _valid_one_to_one(h)                                           # no duplicate anywhere


def _run_with_page_faults(h, *kinds) -> dict:
    """One run with the ``kinds`` of :data:`PAGE_FAULTS` on. It must end with exit status 3
    and exactly those reads failed, each as one read dead letter saying why (no secret in it).
    Returns the report."""
    _faults(h, *kinds)
    status, report = h.run()
    _faults(h)
    assert status == 3
    failures = _read_failures(report)
    assert set(failures) == {(PAGE_FAULTS[k][0], _entity(PAGE_FAULTS[k][1])) for k in kinds}
    for kind in kinds:
        system, path, says = PAGE_FAULTS[kind]
        message = failures[(system, _entity(path))]
        assert says in message and "was not planned this run" in message, message
        assert h.sandbox.api_key(system) not in message
    return report


def _shop_order(h, number: str) -> dict:
    [order] = [o for o in h.list_all(SHOP, "orders") if o["number"] == number]
    return order


# --- the sandbox's back door and garbling faults themselves -----------------------------------


def test_sandbox_raw_records_and_corrupt_faults(sandbox):
    key = sandbox.api_key(SHOP)
    url = sandbox.url(SHOP) + "/customers"
    stored = sandbox.put_raw(SHOP, "customers", [{"id": "x_1", "email": 5}, {"email": "?"}])
    assert stored[0] == "x_1" and stored[1].startswith("raw-")
    rows = requests.get(url, headers={"X-Api-Key": key}, params={"page_size": 500},
                        timeout=10).json()["data"]
    assert {"id": "x_1", "email": 5} in rows and {"email": "?"} in rows   # first: no timestamp
    bad = requests.post(sandbox.root_url(SHOP) + "/_sandbox/faults",
                        json={"corrupt": [{"path": "/api/v1/customers", "kind": "nonsense"}]},
                        timeout=10)
    assert bad.status_code == 422
    expected = {"not_an_object": lambda b: isinstance(json.loads(b), list),
                "missing_list": lambda b: set(json.loads(b)) == {"next_page_token"},
                "list_not_array": lambda b: isinstance(json.loads(b)["data"], dict),
                "junk_rows": lambda b: json.loads(b)["data"][-4:] == [
                    "not a row", 42, None, ["a", "list"]],
                "truncated_json": lambda b: b.startswith(b'{"data"') and not _is_json(b),
                "empty_200": lambda b: b == b""}
    for kind, check in expected.items():
        sandbox.set_faults(SHOP, corrupt=[{"path": "/api/v1/customers", "kind": kind}])
        response = requests.get(url, headers={"X-Api-Key": key}, timeout=10)
        assert response.status_code == 200 and check(response.content), kind
        assert requests.get(url + "/x_1", headers={"X-Api-Key": key},
                            timeout=10).json()["id"] == "x_1"          # other paths untouched
    sandbox.set_faults(SHOP, corrupt=[{"path": "/api/v1/customers", "kind": "html_502"}])
    response = requests.get(url, headers={"X-Api-Key": key}, timeout=10)
    assert response.status_code == 502 and "text/html" in response.headers["Content-Type"]


def test_sandbox_keeps_raw_records_across_a_restart(tmp_path):
    from sandbox.server import Sandbox
    with Sandbox(tmp_path, base_port=0, systems=(ERP,)) as sb:
        stored = sb.put_raw(ERP, "Customers", [{"Name": "no key", "ModifiedAt": "yesterday"}])
    with Sandbox(tmp_path, base_port=0, systems=(ERP,)) as sb:
        rows = requests.get(sb.url(ERP) + "/Customers", params={"limit": 1000}, timeout=10,
                            headers={"Authorization": f"ApiKey {sb.api_key(ERP)}"}).json()
        assert {"Name": "no key", "ModifiedAt": "yesterday"} in rows["items"]
        assert sb.put_raw(ERP, "Customers", [{"CustomerNo": "K1"}]) == ["K1"]
        assert stored[0].startswith("raw-")


def _is_json(data: bytes) -> bool:
    try:
        json.loads(data)
    except ValueError:
        return False
    return True
