"""The Custom Webshop emulator against docs/api/README.md, over real HTTP."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
import requests
import yaml

from sandbox.customwebshop import FIELDS, CustomWebshop
from sandbox.routing import CONTROL_ROUTES
from sandbox.server import Sandbox
from sandbox.validation import validate_fields
from sandbox.wire import format_timestamp, parse_timestamp

SYSTEM = "customwebshop"
TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$")
SPEC = Path(__file__).resolve().parents[1] / "docs" / "api" / "customwebshop.openapi.yaml"


class Api:
    """Calls the webshop API with its key; ``path`` is relative to ``/api/v1``."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.base = sandbox.url(SYSTEM)
        self.key = sandbox.api_key(SYSTEM)

    def __call__(self, method: str, path: str, **kwargs) -> requests.Response:
        headers = {"X-Api-Key": self.key, **kwargs.pop("headers", {})}
        return requests.request(method, self.base + path, headers=headers, timeout=10, **kwargs)

    def all(self, resource: str, **params) -> list[dict]:
        rows, token = [], None
        while True:
            page = self("GET", f"/{resource}", params={**params, "page_size": 500,
                                                       **({"page_token": token} if token else {})})
            assert page.status_code == 200, page.text
            rows += page.json()["data"]
            token = page.json()["next_page_token"]
            if token is None:
                return rows


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    with Sandbox(tmp_path_factory.mktemp("webshop"), base_port=0, systems=(SYSTEM,)) as sb:
        yield sb


@pytest.fixture
def api(sandbox) -> Api:
    sandbox.reset(SYSTEM)
    return Api(sandbox)


def error(code: str, message: str, details=()) -> dict:
    return {"error": {"code": code, "message": message, "details": [{"field": f, "issue": i} for f,
                                                                    i in details]}}


def live(api: Api, resource: str) -> list[dict]:
    return [r for r in api.all(resource) if not r["deleted"]]


def new_customer(api: Api, headers=None, **fields) -> requests.Response:
    response = api("POST", "/customers", json={"email": "ny.kunde@example.com", **fields},
                   headers=headers or {})
    assert response.status_code == 201, response.text
    return response


# -- auth and routing -------------------------------------------------------------------------


def test_missing_or_wrong_key_is_401_in_the_webshop_error_shape(api):
    for headers in ({"X-Api-Key": ""}, {"X-Api-Key": "wrong"}):
        response = requests.get(api.base + "/customers", headers=headers, timeout=10)
        assert response.status_code == 401
        assert response.json() == error("unauthorized", "missing or invalid API key")
    assert requests.get(api.base + "/customers", timeout=10).status_code == 401


def test_unknown_path_is_404_and_wrong_method_is_405_with_allow(api):
    assert api("GET", "/invoices").json()["error"]["code"] == "not_found"
    response = api("PUT", "/customers/cus_000001", json={})
    assert response.status_code == 405
    assert response.headers["Allow"] == "GET, PATCH, DELETE"
    assert response.json()["error"]["code"] == "method_not_allowed"


# -- listing ----------------------------------------------------------------------------------


def test_list_is_ordered_by_updated_at_then_id_and_includes_soft_deleted(api):
    rows = api.all("customers")
    assert len(rows) == 300
    assert [(r["updated_at"], r["id"]) for r in rows] == sorted((r["updated_at"],
                                                                 r["id"]) for r in rows)
    assert sum(r["deleted"] for r in rows) == 4
    assert all(TIMESTAMP.match(r["updated_at"]) for r in rows)


def test_list_defaults_to_100_rows_and_pages_with_an_opaque_token(api):
    first = api("GET", "/products").json()
    assert len(first["data"]) == 100 and isinstance(first["next_page_token"], str)
    second = api("GET", "/products", params={"page_token": first["next_page_token"]}).json()
    assert len(second["data"]) == 100 and second["next_page_token"] is None
    paged = {r["id"] for r in first["data"]} | {r["id"] for r in second["data"]}
    assert paged == {r["id"] for r in api.all("products")}


def test_a_page_that_ends_on_a_raw_row_without_updated_at_still_pages_on(api, sandbox):
    """Raw rows without a timestamp sort first; a page of one such row must hand out a token
    (found by `talksync check`'s page-of-one probe, which made the list answer 500)."""
    sandbox.put_raw(SYSTEM, "customers", [{"id": "cus_raw_1", "email": "raw@example.com"},
                                          {"id": "cus_raw_2", "email": "raw2@example.com"}])
    seen, token = [], None
    for _ in range(5):
        page = api("GET", "/customers", params={"page_size": 1,
                                                **({"page_token": token} if token else {})})
        assert page.status_code == 200, page.text
        seen += [row["id"] for row in page.json()["data"]]
        token = page.json()["next_page_token"]
    assert seen[:2] == ["cus_raw_1", "cus_raw_2"] and len(set(seen)) == 5 and token


def test_updated_since_is_inclusive_and_accepts_offsets(api):
    rows = api.all("orders")
    pivot = rows[100]
    since = api.all("orders", updated_since=pivot["updated_at"])
    assert since[0]["id"] == pivot["id"] and len(since) == 150
    as_offset = pivot["updated_at"].replace("Z", "+00:00")
    assert [r["id"] for r in api.all("orders", updated_since=as_offset)] == [r["id"] for r in since]
    later = format_timestamp(parse_timestamp(pivot["updated_at"]) + timedelta(microseconds=1))
    assert api.all("orders", updated_since=later)[0]["id"] == rows[101]["id"]


@pytest.mark.parametrize(
    "params, field, issue",
    [
        ({"page_size": "501"}, "page_size", "must be between 1 and 500"),
        ({"page_size": "0"}, "page_size", "must be between 1 and 500"),
        ({"page_size": "ten"}, "page_size", "must be an integer"),
        ({"updated_since": "yesterday"}, "updated_since", "must be an ISO 8601 date-time"),
        ({"page_token": "not-a-token"}, "page_token", "is not a valid page token"),
    ],
)
def test_bad_list_parameters_are_422_naming_the_parameter(api, params, field, issue):
    response = api("GET", "/customers", params=params)
    assert response.status_code == 422
    assert response.json() == error("validation_failed", f"{field}: {issue}", [(field, issue)])


def test_page_token_stays_valid_when_rows_change_between_pages(api):
    first = api("GET", "/customers", params={"page_size": 10}).json()
    page1 = [r["id"] for r in first["data"]]
    before = [r["id"] for r in api.all("customers")]
    on_later_page = before[50]
    api("PATCH", f"/customers/{on_later_page}", json={"phone": "+47 400 00 000"})
    api("PATCH", f"/customers/{page1[0]}", json={"phone": "+47 400 00 001"})
    seen, token = list(page1), first["next_page_token"]
    while token:
        page = api("GET", "/customers", params={"page_size": 10, "page_token": token}).json()
        seen += [r["id"] for r in page["data"]]
        token = page["next_page_token"]
    # Every row is seen; the changed rows show up again at the end, after the unchanged ones.
    assert set(seen) == set(before)
    assert seen[-2:] == [on_later_page, page1[0]]
    assert seen.count(on_later_page) == 1 and seen.count(page1[0]) == 2
    assert len(seen) == 301


# -- get, create ------------------------------------------------------------------------------


def test_get_returns_the_entity_with_a_quoted_integer_etag(api):
    response = api("GET", "/products/prd_000001")
    assert response.status_code == 200
    assert response.headers["ETag"] == '"1"'
    assert set(response.json()) == {spec.name for spec in FIELDS["products"]}
    missing = api("GET", "/products/prd_999999")
    assert missing.status_code == 404
    assert missing.json() == error("not_found", "no product prd_999999")


def test_create_assigns_ids_and_returns_every_field(api):
    before = max(r["updated_at"] for r in api.all("customers"))
    response = new_customer(api, first_name="Åse", address={"city": "Tromsø", "country": "NO"})
    body = response.json()
    assert response.headers["ETag"] == '"1"'
    assert response.headers["Location"] == "/api/v1/customers/cus_000301"
    assert body == {
        "id": "cus_000301",
        "email": "ny.kunde@example.com",
        "first_name": "Åse",
        "last_name": None,
        "company_name": None,
        "phone": None,
        "vat_number": None,
        "address": {"line1": None, "line2": None, "postal_code": None, "city": "Tromsø",
                    "country": "NO"},
        "updated_at": body["updated_at"],
        "deleted": False,
    }
    assert TIMESTAMP.match(body["updated_at"]) and body["updated_at"] > before
    assert new_customer(api).json()["id"] == "cus_000302"
    product = api("POST", "/products", json={"sku": "NY-1", "name": "Ny", "price": "10.00"})
    assert product.status_code == 201
    assert product.json()["id"] == "prd_000201" and product.json()["currency"] == "NOK"


def test_read_only_and_unknown_fields_are_refused_with_every_problem_named(api):
    response = api("POST", "/customers", json={
        "id": "cus_9", "email": "a@b.no", "updated_at": "2026-01-01T00:00:00Z", "deleted": False,
        "nickname": "x",
    })
    assert response.status_code == 422
    assert response.json()["error"]["details"] == [
        {"field": "id", "issue": "read-only field"},
        {"field": "updated_at", "issue": "read-only field"},
        {"field": "deleted", "issue": "read-only field"},
        {"field": "nickname", "issue": "unknown field"},
    ]
    order = api("POST", "/orders", json={"number": "X1", "customer_id": "cus_000001",
                                         "currency": "NOK", "total": "1.00"})
    assert order.status_code == 422
    assert order.json()["error"]["details"] == [{"field": "total", "issue": "read-only field"}]


def test_validation_names_each_offending_field(api):
    response = api("POST", "/products", json={
        "gtin": "70381A",
        "name": "x" * 201,
        "price": 199,
        "cost": "1.23456",
        "currency": "nok",
        "stock_quantity": "5",
        "vat_rate": True,
    })
    assert response.status_code == 422
    assert response.json()["error"]["details"] == [
        {"field": "gtin", "issue": "must contain only digits"},
        {"field": "name", "issue": "must be at most 200 characters"},
        {"field": "price", "issue": "must be a string"},
        {"field": "cost", "issue": 'must be a decimal string like "199.00" (up to 4 decimals)'},
        {"field": "currency", "issue": "must be an ISO 4217 currency code"},
        {"field": "stock_quantity", "issue": "must be an integer"},
        {"field": "vat_rate", "issue": "must be a string"},
        {"field": "sku", "issue": "is required"},
    ]
    customer = api("POST", "/customers", json={"email": "no-at-sign", "address": {"country": "no",
                                                                                  "zip": "1"}})
    assert customer.json()["error"]["details"] == [
        {"field": "email", "issue": "must contain @"},
        {"field": "address.country", "issue": "must be an ISO 3166-1 alpha-2 country code"},
        {"field": "address.zip", "issue": "unknown field"},
    ]


def test_a_body_that_is_not_a_json_object_is_422(api):
    for data in (b"{not json", b"[1, 2]"):
        response = api("POST", "/customers", data=data,
                       headers={"Content-Type": "application/json"})
        assert response.status_code == 422
        assert response.json()["error"]["details"][0]["field"] == ""


# -- idempotency ------------------------------------------------------------------------------


def test_idempotency_key_replays_the_first_result_with_the_current_state(api):
    headers = {"Idempotency-Key": "create-42"}
    first = api("POST", "/customers", json={"email": "first@example.com"}, headers=headers)
    assert first.status_code == 201 and "Idempotent-Replayed" not in first.headers
    again = api("POST", "/customers", json={"email": "second@example.com"}, headers=headers)
    assert again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json() and again.headers["ETag"] == '"1"'
    api("PATCH", f"/customers/{first.json()['id']}", json={"first_name": "Kari"})
    current = api("POST", "/customers", data=b"not even json", headers=headers)
    assert current.status_code == 201 and current.headers["ETag"] == '"2"'
    assert current.json()["first_name"] == "Kari"
    assert len(api.all("customers")) == 301


def test_idempotency_keys_are_per_resource_and_failed_creates_are_not_remembered(api):
    headers = {"Idempotency-Key": "k"}
    assert api("POST", "/customers", json={}, headers=headers).status_code == 422
    assert "Idempotent-Replayed" not in new_customer(api, headers=headers).headers
    product = api("POST", "/products", json={"sku": "S", "name": "N", "price": "1.00"},
                  headers=headers)
    assert product.status_code == 201 and "Idempotent-Replayed" not in product.headers
    too_long = api("POST", "/customers", json={"email": "a@b.no"},
                   headers={"Idempotency-Key": "x" * 256})
    assert too_long.status_code == 422
    assert too_long.json()["error"]["details"] == [{"field": "Idempotency-Key",
                                                    "issue": "must be 1 to 255 characters"}]


# -- update, delete ---------------------------------------------------------------------------


def test_patch_is_a_json_merge_patch(api):
    original = next(r for r in live(api, "customers") if r["address"] and r["phone"])
    path = f"/customers/{original['id']}"
    patched = api("PATCH", path, json={"phone": None, "address": {"line2": "c/o Ærø"}})
    assert patched.status_code == 200 and patched.headers["ETag"] == '"2"'
    body = patched.json()
    assert body["phone"] is None
    assert body["address"] == {**original["address"], "line2": "c/o Ærø"}
    assert body["updated_at"] > original["updated_at"]
    cleared = api("PATCH", path, json={"address": None})
    assert cleared.json()["address"] is None and cleared.headers["ETag"] == '"3"'
    required = api("PATCH", path, json={"email": None})
    assert required.status_code == 422
    assert required.json()["error"]["details"] == [{"field": "email", "issue": "must not be null"}]


def test_a_patch_that_changes_nothing_writes_nothing(api):
    path = f"/customers/{live(api, 'customers')[0]['id']}"
    original = api("GET", path)
    same = api("PATCH", path, json={"email": original.json()["email"], "address": {}})
    assert same.headers["ETag"] == '"1"' and same.json() == original.json()


def test_if_match_mismatch_is_412_and_writes_nothing(api):
    product = live(api, "products")[0]["id"]
    stale = api("PATCH", f"/products/{product}", json={"price": "1.00"},
                headers={"If-Match": '"7"'})
    assert stale.status_code == 412
    assert stale.json() == error("precondition_failed",
                                 f'product {product} is at version "1"; If-Match does not match')
    assert api("GET", f"/products/{product}").json()["price"] != "1.00"
    for quantity, tag in enumerate(('"1"', '"9", "2"', "*")):
        fresh = api("PATCH", f"/products/{product}", json={"stock_quantity": 1000 + quantity},
                    headers={"If-Match": tag})
        assert fresh.status_code == 200, tag
        assert fresh.headers["ETag"] == f'"{quantity + 2}"'
    weak = api("PATCH", f"/products/{product}", json={"stock_quantity": 1},
               headers={"If-Match": 'W/"4"'})
    assert weak.status_code == 412
    assert api("DELETE", f"/products/{product}", headers={"If-Match": '"1"'}).status_code == 412
    assert api("DELETE", f"/products/{product}", headers={"If-Match": '"4"'}).status_code == 204


def test_delete_is_soft(api):
    customer = live(api, "customers")[0]["id"]
    deleted = api("DELETE", f"/customers/{customer}")
    assert deleted.status_code == 204 and deleted.content == b""
    entity = api("GET", f"/customers/{customer}")
    assert entity.json()["deleted"] is True and entity.headers["ETag"] == '"2"'
    assert api.all("customers")[-1]["id"] == customer
    assert api("DELETE", f"/customers/{customer}").status_code == 204
    assert api("GET", f"/customers/{customer}").headers["ETag"] == '"2"'
    patched = api("PATCH", f"/customers/{customer}", json={"phone": "1"})
    assert patched.status_code == 409
    assert patched.json() == error("conflict", f"customer {customer} is deleted")
    assert api("DELETE", "/customers/cus_999999").status_code == 404


def test_unique_sku_and_order_number_among_live_entities(api):
    existing = live(api, "products")[0]
    body = {"sku": existing["sku"], "name": "Kopi", "price": "1.00"}
    clash = api("POST", "/products", json=body)
    assert clash.status_code == 409
    assert clash.json()["error"]["details"] == [{"field": "sku", "issue": "must be unique"}]
    assert api("DELETE", f"/products/{existing['id']}").status_code == 204
    assert api("POST", "/products", json=body).status_code == 201
    first, second = live(api, "orders")[:2]
    renumber = api("PATCH", f"/orders/{second['id']}", json={"number": first["number"]})
    assert renumber.status_code == 409
    assert renumber.json()["error"]["details"] == [{"field": "number", "issue": "must be unique"}]


# -- orders -----------------------------------------------------------------------------------


def test_order_total_is_computed_and_line_fields_default_from_the_product(api):
    customer = live(api, "customers")[0]
    p1, p2 = live(api, "products")[:2]
    response = api("POST", "/orders", json={
        "number": "W-1",
        "customer_id": customer["id"],
        "currency": "NOK",
        "discount_total": "10.00",
        "lines": [
            {"product_id": p1["id"], "quantity": "3", "unit_price": "99.90",
             "discount_percent": "10"},
            {"product_id": p2["id"], "quantity": "1.5", "unit_price": "20.00", "sku": "own-sku"},
        ],
    })
    assert response.status_code == 201, response.text
    order = response.json()
    expected = (Decimal("3") * Decimal("99.90") * Decimal("0.9")
                + Decimal("1.5") * Decimal("20.00") - Decimal("10.00"))
    assert order["total"] == f"{expected.quantize(Decimal('0.01')):.2f}" == "289.73"
    assert order["status"] == "pending"
    assert order["lines"][0] == {
        "product_id": p1["id"], "sku": p1["sku"], "name": p1["name"], "quantity": "3",
        "unit_price": "99.90", "discount_percent": "10", "vat_rate": p1["vat_rate"],
    }
    assert order["lines"][1]["sku"] == "own-sku" and order["lines"][1]["discount_percent"] == "0"
    replaced = api("PATCH", f"/orders/{order['id']}", json={"lines": [{"product_id": p2["id"],
                                                                       "quantity": "2",
                                                                       "unit_price": "5.00"}]})
    assert len(replaced.json()["lines"]) == 1 and replaced.json()["total"] == "0.00"
    emptied = api("PATCH", f"/orders/{order['id']}", json={"lines": None, "discount_total": None})
    assert emptied.json()["lines"] == [] and emptied.json()["total"] == "0.00"


def test_order_references_must_exist_and_not_be_deleted(api):
    product = live(api, "products")[0]
    line = {"product_id": "prd_999999", "quantity": "1", "unit_price": "1.00"}
    response = api("POST", "/orders", json={"number": "W-2", "customer_id": "cus_999999",
                                            "currency": "NOK", "lines": [line]})
    assert response.status_code == 422
    assert response.json()["error"]["details"] == [
        {"field": "customer_id", "issue": "no customer cus_999999"},
        {"field": "lines.0.product_id", "issue": "no product prd_999999"},
    ]
    deleted_customer = next(r for r in api.all("customers") if r["deleted"])
    response = api("POST", "/orders", json={
        "number": "W-3", "customer_id": deleted_customer["id"], "currency": "NOK",
        "lines": [{"product_id": product["id"], "quantity": "x", "unit_price": "1.00"}],
    })
    assert response.json()["error"]["details"] == [{
        "field": "lines.0.quantity",
        "issue": 'must be a decimal string like "199.00" (up to 4 decimals)'}]
    missing = api("POST", "/orders", json={"number": "W-3", "customer_id": deleted_customer["id"],
                                           "currency": "NOK", "lines": [{}]})
    assert [d["field"] for d in missing.json()["error"]["details"]] == ["lines.0.product_id",
                                                                        "lines.0.quantity",
                                                                        "lines.0.unit_price"]
    gone = api("POST", "/orders", json={"number": "W-3", "customer_id": deleted_customer["id"],
                                        "currency": "NOK"})
    assert gone.json()["error"]["details"] == [{"field": "customer_id",
                                                "issue": f"no customer {deleted_customer['id']}"}]


def test_patching_an_order_field_does_not_recheck_untouched_references(api):
    order = next(r for r in live(api, "orders"))
    api("DELETE", f"/customers/{order['customer_id']}")
    response = api("PATCH", f"/orders/{order['id']}", json={"status": "shipped"})
    assert response.status_code == 200 and response.json()["status"] == "shipped"


# -- batch ------------------------------------------------------------------------------------


def test_batch_applies_each_operation_on_its_own(api):
    one, two, three = (r["id"] for r in live(api, "customers")[:3])
    api("POST", "/customers", json={"email": "earlier@example.com"},
        headers={"Idempotency-Key": "b-1"})
    operations = [
        {"method": "POST", "body": {"email": "batch@example.com"}},
        {"method": "POST", "body": {"email": "invalid"}},
        {"method": "PATCH", "id": one, "body": {"first_name": "Bjørn"}, "if_match": '"1"'},
        {"method": "PATCH", "id": two, "body": {"first_name": "X"}, "if_match": '"5"'},
        {"method": "PATCH", "id": "cus_999999", "body": {}},
        {"method": "POST", "body": {"email": "ignored@example.com"}, "idempotency_key": "b-1"},
        {"method": "DELETE", "id": three, "body": {}},
    ]
    response = api("POST", "/customers:batch", json={"operations": operations})
    assert response.status_code == 200
    results = response.json()["results"]
    assert [r["status"] for r in results] == [201, 422, 200, 412, 404, 201, 422]
    assert [r["etag"] for r in results] == ['"1"', None, '"2"', None, None, '"1"', None]
    assert results[0]["body"]["id"] == "cus_000302"
    assert results[0]["body"]["email"] == "batch@example.com"
    assert results[1]["body"] == error("validation_failed", "email: must contain @",
                                       [("email", "must contain @")])
    assert results[2]["body"]["first_name"] == "Bjørn"
    assert results[3]["body"]["error"]["code"] == "precondition_failed"
    assert results[4]["body"] == error("not_found", "no customer cus_999999")
    assert results[5]["body"]["email"] == "earlier@example.com" and results[5]["replayed"] is True
    assert "replayed" not in results[0]
    assert results[6]["body"]["error"]["details"] == [{"field": "method",
                                                       "issue": 'must be "POST" or "PATCH"'}]
    assert api("GET", f"/customers/{two}").headers["ETag"] == '"1"'
    assert api("GET", f"/customers/{three}").json()["deleted"] is False


def test_batch_over_100_operations_applies_nothing(api):
    operations = [{"method": "POST", "body": {"email": f"n{i}@example.com"}} for i in range(101)]
    response = api("POST", "/customers:batch", json={"operations": operations})
    assert response.status_code == 422
    assert response.json() == error(
        "too_many_operations", "a batch holds at most 100 operations, got 101",
        [("operations", "must have at most 100 items")],
    )
    assert len(api.all("customers")) == 300
    ok = api("POST", "/customers:batch", json={"operations": operations[:100]})
    assert [r["status"] for r in ok.json()["results"]] == [201] * 100


def test_batch_body_must_hold_an_operations_array(api):
    for body in ({}, {"operations": {}}, {"operations": [], "extra": 1}):
        assert api("POST", "/products:batch", json=body).status_code == 422
    assert api("POST", "/products:batch", json={"operations": []}).json() == {"results": []}


def test_every_write_gets_a_strictly_later_timestamp(api):
    customers = live(api, "customers")[:60]
    operations = [{"method": "PATCH", "id": r["id"], "body": {"phone": f"+47 4000 {i:04d}"}} for i,
                  r in enumerate(customers)]
    results = api("POST", "/customers:batch", json={"operations": operations}).json()["results"]
    stamps = [r["body"]["updated_at"] for r in results]
    assert all(TIMESTAMP.match(s) for s in stamps)
    assert stamps == sorted(stamps) and len(set(stamps)) == 60


# -- contract and seed ------------------------------------------------------------------------


def test_openapi_spec_parses_and_lists_every_served_path():
    spec = yaml.safe_load(SPEC.read_text(encoding="utf-8"))
    assert spec["openapi"].startswith("3.1")
    assert spec["components"]["securitySchemes"]["apiKey"] == {"type": "apiKey", "in": "header",
                                                               "name": "X-Api-Key"}
    for route in CustomWebshop.routes:
        assert route.method.lower() in spec["paths"][route.template], route
    for route in CONTROL_ROUTES:
        item = spec["paths"][route.template]
        assert route.method.lower() in item, route
        assert item["servers"][0]["url"].endswith(":8701")
    served = {route.template for route in CustomWebshop.routes + CONTROL_ROUTES}
    assert set(spec["paths"]) == served


def test_every_seeded_entity_passes_the_apis_own_validation(api):
    """A batch PATCH of each live entity with its own writable fields must succeed and change
    nothing (so totals and line defaults are as the API would compute them)."""
    for resource, specs in FIELDS.items():
        writable = [spec.name for spec in specs if not spec.read_only]
        rows = api.all(resource)
        for row in (r for r in rows if r["deleted"]):
            _, problems = validate_fields({k: row[k] for k in writable}, specs, partial=False)
            assert problems == [], (row["id"], problems)
        live_rows = [r for r in rows if not r["deleted"]]
        for start in range(0, len(live_rows), 100):
            chunk = live_rows[start:start + 100]
            operations = [{"method": "PATCH", "id": r["id"],
                           "body": {k: r[k] for k in writable}} for r in chunk]
            results = api("POST", f"/{resource}:batch",
                          json={"operations": operations}).json()["results"]
            assert [(r["status"], r["etag"]) for r in results] == [(200,
                                                                    '"1"')] * len(chunk), resource
