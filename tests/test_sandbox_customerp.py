"""The Custom ERP emulator against docs/api/README.md, over real HTTP."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from pathlib import Path

import pytest
import requests
import yaml
from werkzeug.test import Client

from sandbox.customerp import FIELDS, KEY_FIELDS, CustomErp
from sandbox.routing import CONTROL_ROUTES
from sandbox.server import Sandbox
from sandbox.wire import dumps

SYSTEM = "customerp"
TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$")
SPEC = Path(__file__).resolve().parents[1] / "docs" / "api" / "customerp.openapi.yaml"


class Api:
    """Calls the ERP API with its key; ``path`` is relative to ``/erp/v1``. Bodies are sent and
    read with exact decimals."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.base = sandbox.url(SYSTEM)
        self.key = sandbox.api_key(SYSTEM)

    def __call__(self, method: str, path: str, body=None, **kwargs) -> requests.Response:
        headers = {"Authorization": f"ApiKey {self.key}", **kwargs.pop("headers", {})}
        if body is not None:
            kwargs["data"] = body if isinstance(body, (bytes, str)) else dumps(body).encode()
            headers.setdefault("Content-Type", "application/json")
        return requests.request(method, self.base + path, headers=headers, timeout=10, **kwargs)

    def all(self, resource: str, **params) -> list[dict]:
        response = self("GET", f"/{resource}", params={**params, "limit": 1000})
        assert response.status_code == 200, response.text
        return decimal_json(response)["items"]


def decimal_json(response: requests.Response):
    return json.loads(response.text, parse_float=Decimal)


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    with Sandbox(tmp_path_factory.mktemp("erp"), base_port=0, systems=(SYSTEM,)) as sb:
        yield sb


@pytest.fixture
def api(sandbox) -> Api:
    sandbox.reset(SYSTEM)
    return Api(sandbox)


def error(code: str, message: str, field=None) -> dict:
    return {"Error": {"Code": code, "Message": message, "Field": field}}


# -- auth and routing -------------------------------------------------------------------------


def test_auth_needs_the_apikey_scheme_and_the_key(api):
    for headers in ({}, {"Authorization": "Bearer " + api.key}, {"Authorization": "ApiKey wrong"},
                    {"Authorization": api.key}):
        response = requests.get(api.base + "/Customers", headers=headers, timeout=10)
        assert response.status_code == 401
        assert response.json() == error("Unauthorized", "missing or invalid API key")
        assert response.headers["WWW-Authenticate"] == 'ApiKey realm="erp"'
    lower = requests.get(api.base + "/Customers", headers={"Authorization": "apikey " + api.key},
                         timeout=10)
    assert lower.status_code == 200


def test_unknown_path_is_404_and_wrong_method_is_405(api):
    assert api("GET", "/Invoices").json() == error("NotFound", "no such endpoint: /Invoices")
    response = api("PATCH", "/Customers/C10001", {})
    assert response.status_code == 405 and response.headers["Allow"] == "GET, PUT, DELETE"
    assert response.json()["Error"]["Code"] == "MethodNotAllowed"


# -- listing ----------------------------------------------------------------------------------


def test_list_pages_by_offset_with_total_in_modifiedat_key_order(api):
    everything = api.all("Customers")
    assert len(everything) == 250
    keys = [(r["ModifiedAt"], r["CustomerNo"]) for r in everything]
    assert keys == sorted(keys)
    page = decimal_json(api("GET", "/Customers", params={"offset": 240, "limit": 20}))
    assert page["total"] == 250 and page["items"] == everything[240:]
    default = decimal_json(api("GET", "/Customers"))
    assert len(default["items"]) == 100 and default["items"] == everything[:100]
    assert decimal_json(api("GET", "/Customers", params={"offset": 999}))["items"] == []


def test_modified_since_is_inclusive_and_total_counts_matching_rows(api):
    everything = api.all("Orders")
    pivot = everything[150]
    page = decimal_json(api("GET", "/Orders", params={"modifiedSince": pivot["ModifiedAt"],
                                                      "limit": 10}))
    assert page["total"] == 50 and page["items"][0]["OrderNo"] == pivot["OrderNo"]


@pytest.mark.parametrize(
    "params, field, issue",
    [
        ({"limit": "1001"}, "limit", "must be between 1 and 1000"),
        ({"limit": "0"}, "limit", "must be between 1 and 1000"),
        ({"offset": "-1"}, "offset", "must be >= 0"),
        ({"modifiedSince": "2026-13-45"}, "modifiedSince", "must be an ISO 8601 date-time"),
    ],
)
def test_bad_list_parameters_are_400_naming_the_parameter(api, params, field, issue):
    response = api("GET", "/Products", params=params)
    assert response.status_code == 400
    assert response.json() == error("ValidationError", f"{field}: {issue}", field)


# -- numbers ----------------------------------------------------------------------------------


def test_money_and_quantities_are_exact_json_numbers(api):
    body = (b'{"ItemNo": "EXACT-1", "Description": "Presis", "SalesPrice": 199.5, '
            b'"CostPrice": 0.1, "StockQty": 12}')
    response = api("POST", "/Products", body)
    assert response.status_code == 201
    for exact in ('"SalesPrice":199.5,', '"CostPrice":0.1,', '"StockQty":12,'):
        assert exact in response.text
    huge = api("PUT", "/Products/EXACT-1",
               b'{"SalesPrice": 12345678901234567.89, "CostPrice": 1e2}')
    assert '"SalesPrice":12345678901234567.89,' in huge.text and '"CostPrice":100,' in huge.text
    seeded = api("GET", "/Products/" + api.all("Products")[0]["ItemNo"]).text
    assert re.search(r'"SalesPrice":\d+\.\d{2},', seeded) and re.search(r'"StockQty":\d+,', seeded)


def test_number_fields_refuse_strings_and_booleans(api):
    for value in ('"199"', "true"):
        response = api("POST", "/Products",
                       f'{{"ItemNo": "N1", "Description": "x", "SalesPrice": {value}}}')
        assert response.json() == error("ValidationError", "SalesPrice: must be a number",
                                        "SalesPrice")
    nan = api("POST", "/Products", '{"ItemNo": "N1", "Description": "x", "SalesPrice": NaN}')
    assert nan.json() == error("ValidationError", "body: request body is not valid JSON")


# -- create -----------------------------------------------------------------------------------


def test_customer_numbers_are_server_assigned_and_never_reused(api):
    created = api("POST", "/Customers", {"Name": "Øyrane Gardsbutikk AS", "CountryCode": "NO"})
    assert created.status_code == 201
    assert created.headers["ETag"] == '"1"'
    assert created.headers["Location"] == "/erp/v1/Customers/C10251"
    body = created.json()
    assert body == {
        "CustomerNo": "C10251", "Name": "Øyrane Gardsbutikk AS", "OrgNo": None, "Email": None,
        "Phone": None,
        "Street": None, "Street2": None, "ZipCode": None, "City": None, "CountryCode": "NO",
        "ModifiedAt": body["ModifiedAt"],
    }
    assert TIMESTAMP.match(body["ModifiedAt"])
    assert body["ModifiedAt"] > max(r["ModifiedAt"] for r in api.all("Customers")[:-1])
    assert api("DELETE", "/Customers/C10251").status_code == 204
    assert api("POST", "/Customers", {"Name": "Neste"}).json()["CustomerNo"] == "C10252"


def test_validation_names_the_first_offending_field(api):
    cases = [
        ({"CustomerNo": "C1", "Name": "x"}, "CustomerNo", "read-only field"),
        ({"Name": "x", "ModifiedAt": "2026-01-01T00:00:00Z"}, "ModifiedAt", "read-only field"),
        ({"Nickname": "x", "Name": 5}, "Nickname", "unknown field"),
        ({"Name": "x" * 101}, "Name", "must be at most 100 characters"),
        ({"Email": "a@b.no"}, "Name", "is required"),
        ({"Name": "x", "CountryCode": "Norway"}, "CountryCode", "must be 2 capital letters"),
        ({"Name": None}, "Name", "must not be null"),
    ]
    for body, field, issue in cases:
        response = api("POST", "/Customers", body)
        assert response.status_code == 400, body
        assert response.json() == error("ValidationError", response.json()["Error"]["Message"],
                                        field)
        assert response.json()["Error"]["Message"].startswith(f"{field}: {issue}")
    not_object = api("POST", "/Customers", b"[]")
    assert not_object.json() == error("ValidationError", "body: request body must be a JSON object")


def test_duplicate_key_is_409_and_writes_nothing(api):
    existing = api.all("Products")[0]
    response = api("POST", "/Products", {"ItemNo": existing["ItemNo"], "Description": "Duplikat"})
    assert response.status_code == 409
    assert response.json() == error("Conflict", f"product {existing['ItemNo']} already exists",
                                    "ItemNo")
    assert decimal_json(api("GET", f"/Products/{existing['ItemNo']}")) == existing
    created = api("POST", "/Products", {"ItemNo": "IT-20001", "Description": "Ny vare"})
    assert created.json()["Unit"] == "pcs" and created.json()["VatCode"] is None
    bad_key = api("POST", "/Products", {"ItemNo": "A/B", "Description": "x"})
    assert bad_key.json()["Error"]["Field"] == "ItemNo"
    assert api("POST", "/Products", {"ItemNo": "X", "Description": "x",
                                     "VatCode": "25"}).json()["Error"]["Field"] == "VatCode"


def test_orders_get_a_number_unless_given_and_lines_default_from_the_item(api):
    product = api.all("Products")[0]
    line = {"ItemNo": product["ItemNo"], "Qty": 3}
    created = api("POST", "/Orders", {"CustomerNo": "C10001", "Lines": [line]})
    assert created.status_code == 201
    order = decimal_json(created)
    assert order["OrderNo"] == "SO-100196"
    assert order["Status"] == "Open" and order["Currency"] == "NOK" and order["OrderDate"] is None
    assert order["Lines"] == [{"ItemNo": product["ItemNo"], "Description": product["Description"],
                               "Qty": 3,
                               "UnitPrice": product["SalesPrice"], "DiscountPct": 0}]
    given = api("POST", "/Orders", {"OrderNo": "WEB-77", "CustomerNo": "C10001",
                                    "OrderDate": "2026-11-21"})
    assert given.json()["OrderNo"] == "WEB-77"
    duplicate = api("POST", "/Orders", {"OrderNo": "WEB-77", "CustomerNo": "C10002"})
    assert duplicate.status_code == 409 and duplicate.json()["Error"]["Field"] == "OrderNo"
    assert api("POST", "/Orders", {"CustomerNo": "C10001"}).json()["OrderNo"] == "SO-100197"


def test_order_references_must_exist(api):
    unknown_customer = api("POST", "/Orders", {"CustomerNo": "C99999"})
    assert unknown_customer.json() == error("ValidationError", "CustomerNo: no customer C99999",
                                            "CustomerNo")
    unknown_item = api("POST", "/Orders", {"CustomerNo": "C10001", "Lines": [{"ItemNo": "NOPE",
                                                                              "Qty": 1}]})
    assert unknown_item.json() == error("ValidationError", "Lines.0.ItemNo: no item NOPE",
                                        "Lines.0.ItemNo")
    missing_qty = api("POST", "/Orders", {"CustomerNo": "C10001", "Lines": [{"ItemNo": "NOPE"}]})
    assert missing_qty.json()["Error"]["Field"] == "Lines.0.Qty"
    refused = api("POST", "/Orders", {"CustomerNo": "C10001", "OrderDate": "21.11.2026"})
    assert refused.json()["Error"]["Field"] == "OrderDate"


# -- update, delete ---------------------------------------------------------------------------


def test_put_changes_only_the_fields_sent(api):
    original = api("GET", "/Customers/C10005").json()
    response = api("PUT", "/Customers/C10005", {"CustomerNo": "C10005", "Phone": "+4790000000",
                                                "OrgNo": None})
    assert response.status_code == 200 and response.headers["ETag"] == '"2"'
    assert response.json() == {**original, "Phone": "+4790000000", "OrgNo": None,
                               "ModifiedAt": response.json()["ModifiedAt"]}
    assert response.json()["ModifiedAt"] > original["ModifiedAt"]
    rename = api("PUT", "/Customers/C10005", {"CustomerNo": "C10006"})
    assert rename.json() == error("ValidationError", "CustomerNo: cannot change", "CustomerNo")
    read_only = api("PUT", "/Customers/C10005", {"ModifiedAt": original["ModifiedAt"]})
    assert read_only.json()["Error"]["Field"] == "ModifiedAt"
    unchanged = api("PUT", "/Customers/C10005", {"Phone": "+4790000000"})
    assert unchanged.headers["ETag"] == '"2"' and unchanged.json() == response.json()
    assert api("PUT", "/Customers/C99999", {"Phone": "1"}).status_code == 404


def test_put_replaces_order_lines_whole(api):
    order = next(o for o in api.all("Orders") if len(o["Lines"]) > 1)
    item = order["Lines"][0]["ItemNo"]
    response = api("PUT", f"/Orders/{order['OrderNo']}", {"Lines": [{"ItemNo": item, "Qty": 7,
                                                                     "UnitPrice": 10,
                                                                     "DiscountPct": 2.5}]})
    assert decimal_json(response)["Lines"] == [
        {"ItemNo": item, "Description": order["Lines"][0]["Description"], "Qty": 7, "UnitPrice": 10,
         "DiscountPct": Decimal("2.5")}
    ]
    assert decimal_json(response)["CustomerNo"] == order["CustomerNo"]


def test_if_match_mismatch_is_412_and_writes_nothing(api):
    stale = api("PUT", "/Products/" + api.all("Products")[0]["ItemNo"], {"StockQty": 1},
                headers={"If-Match": '"2"'})
    assert stale.status_code == 412
    assert stale.json()["Error"]["Code"] == "PreconditionFailed"
    assert stale.json()["Error"]["Field"] is None
    item = api.all("Products")[0]["ItemNo"]
    ok = api("PUT", f"/Products/{item}", {"StockQty": 1}, headers={"If-Match": '"1"'})
    assert ok.status_code == 200 and ok.headers["ETag"] == '"2"'
    assert api("DELETE", f"/Products/{item}", headers={"If-Match": '"1"'}).status_code == 412
    assert api("GET", f"/Products/{item}").status_code == 200


def test_delete_is_hard(api):
    before = decimal_json(api("GET", "/Orders", params={"limit": 1}))["total"]
    assert api("DELETE", "/Orders/SO-100001").status_code == 204
    assert api("GET", "/Orders/SO-100001").json() == error("NotFound", "no order SO-100001")
    assert api("DELETE", "/Orders/SO-100001").status_code == 404
    assert decimal_json(api("GET", "/Orders", params={"limit": 1}))["total"] == before - 1
    assert "SO-100001" not in {o["OrderNo"] for o in api.all("Orders")}


def test_every_write_gets_a_strictly_later_timestamp(api):
    stamps = [api("PUT", "/Products/" + p["ItemNo"],
                  {"StockQty": 1000}).json()["ModifiedAt"] for p in api.all("Products")[:30]]
    assert all(TIMESTAMP.match(s) for s in stamps) and stamps == sorted(set(stamps))


# -- contract and seed ------------------------------------------------------------------------


def test_openapi_spec_parses_and_lists_every_served_path():
    spec = yaml.safe_load(SPEC.read_text(encoding="utf-8"))
    assert spec["openapi"].startswith("3.1")
    assert spec["components"]["securitySchemes"]["apiKey"]["name"] == "Authorization"
    for route in CustomErp.routes:
        assert route.method.lower() in spec["paths"][route.template], route
    for route in CONTROL_ROUTES:
        item = spec["paths"][route.template]
        assert route.method.lower() in item, route
        assert item["servers"][0]["url"].endswith(":8702")
    assert set(spec["paths"]) == {route.template for route in CustomErp.routes + CONTROL_ROUTES}


def test_every_seeded_entity_passes_the_apis_own_validation():
    """PUT of each seeded entity with its own fields succeeds and changes nothing (in-process,
    to keep 650 requests fast)."""
    app = CustomErp(api_key="k", seed=42)
    client = Client(app)
    headers = {"Authorization": "ApiKey k"}
    for resource in FIELDS:
        key_field = KEY_FIELDS[resource]
        rows = json.loads(client.get(f"/erp/v1/{resource}?limit=1000", headers=headers).get_data(),
                          parse_float=Decimal)["items"]
        for row in rows:
            body = {name: value for name, value in row.items() if name != "ModifiedAt"}
            response = client.put(f"/erp/v1/{resource}/{row[key_field]}", data=dumps(body),
                                  headers=headers)
            assert response.status_code == 200, (row, response.get_data(as_text=True))
            assert response.headers["ETag"] == '"1"', row
