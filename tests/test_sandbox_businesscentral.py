"""The Business Central emulator over HTTP: auth, $metadata-driven validation, ETags, paging,
$filter/$expand/$top/$select, $batch, throttling and the seed."""

from __future__ import annotations

import json
import threading
import urllib.parse
from decimal import Decimal

import pytest
import requests

from sandbox import businesscentral as bc
from sandbox import businesscentral_edm as edm
from sandbox.odata import FilterError, parse_filter
from sandbox.seed import webshop_seed
from sandbox.seed_businesscentral import businesscentral_seed
from sandbox.server import Sandbox

SYSTEM = "businesscentral"


@pytest.fixture(scope="module")
def running(tmp_path_factory):
    with Sandbox(tmp_path_factory.mktemp("bc"), base_port=0, systems=(SYSTEM,)) as sandbox:
        yield sandbox


class Client:
    """Plain HTTP against the emulator, with a token from its token endpoint."""

    def __init__(self, sandbox: Sandbox):
        self.sandbox = sandbox
        self.root = sandbox.root_url(SYSTEM)
        self.service = sandbox.url(SYSTEM)
        self.company = f"{self.service}/companies({bc.COMPANY_ID})"
        self.token = self.new_token().json()["access_token"]

    def new_token(self, secret=None) -> requests.Response:
        return requests.post(self.root + bc.TOKEN_PATH, data={
            "grant_type": "client_credentials", "client_id": bc.CLIENT_ID, "scope": bc.SCOPE,
            "client_secret": secret or self.sandbox.api_key(SYSTEM)}, timeout=10)

    def call(self, method: str, url: str, **kwargs) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.token}", **kwargs.pop("headers", {})}
        if not url.startswith("http"):
            url = f"{self.company}/{url}"
        return requests.request(method, url, headers=headers, timeout=10, **kwargs)

    def json(self, method: str, url: str, **kwargs):
        response = self.call(method, url, **kwargs)
        return response.status_code, json.loads(response.text, parse_float=Decimal)

    def control(self, path: str, body=None) -> requests.Response:
        return requests.post(self.root + path, json=body, timeout=10)


@pytest.fixture
def client(running):
    running.reset(SYSTEM)
    client = Client(running)
    yield client
    client.control("/_sandbox/limits", {})


def _error(response: requests.Response) -> tuple[int, str, str]:
    error = response.json()["error"]
    assert "CorrelationId" in error["message"]
    return response.status_code, error["code"], error["message"].split("  CorrelationId")[0]


# -- auth -------------------------------------------------------------------------------------


def test_token_endpoint_and_401_bodies(client):
    assert client.new_token("wrong").status_code == 401
    assert client.new_token("wrong").json()["error"] == "invalid_client"
    token = client.new_token().json()
    assert token["token_type"] == "Bearer" and token["expires_in"] == bc.TOKEN_LIFETIME_S

    response = requests.get(f"{client.company}/customers", timeout=10)
    assert _error(response) == (401, "Authentication_InvalidCredentials",
                                "The server has rejected the client credentials.")
    assert response.headers["WWW-Authenticate"].startswith("Bearer authorization_uri=")
    assert client.call("GET", "customers?$top=1").status_code == 200
    assert client.control("/_sandbox/expire-tokens").json()["expired"] >= 1
    assert client.call("GET", "customers?$top=1").status_code == 401


def test_service_documents(client):
    status, body = client.json("GET", f"{client.service}/companies")
    assert status == 200 and [c["id"] for c in body["value"]] == [bc.COMPANY_ID]
    status, body = client.json("GET", f"{client.service}/companies?$filter=name eq "
                                      f"'{bc.COMPANY_NAME}'")
    assert len(body["value"]) == 1
    metadata = client.call("GET", f"{client.service}/$metadata")
    assert metadata.status_code == 200
    served = edm.Metadata(metadata.text)
    assert sorted(served.entity_sets) == sorted(bc.SERVED_SETS)   # announced = served
    for name in served.entity_sets:                               # types exactly as BC's
        assert served.entity_set(name) == edm.metadata().entity_set(name)
    other = client.call("GET",
                        f"{client.service}/companies(00000000-0000-0000-0000-000000000001)/items")
    assert _error(other)[:2] == (404, "BadRequest_NotFound")


# -- validation against $metadata ---------------------------------------------------------------


@pytest.mark.parametrize("body, expected", [
    ({"displayName": "x", "nickname": "y"}, (400, "BadRequest", "The property 'nickname' does not "
                                             "exist on type 'Microsoft.NAV.customer'. Make sure to "
                                             "only use property names that are defined by the "
                                             "type.")),
    ({"displayName": "x", "balanceDue": 5}, (400, "BadRequest_InvalidOperation",
                                             "The property 'balanceDue' is read-only.")),
    ({"displayName": "x", "city": "C" * 31}, (400, "Application_StringExceededLength",
                                              "The length of the string is 31, but it must be less "
                                              "than or equal to 30 characters.")),
    ({"displayName": "x", "creditLimit": "12"}, (400, "BadRequest", "Cannot convert the literal to "
                                                 "the expected type 'Edm.Decimal' of property "
                                                 "'creditLimit'.")),
    ({"displayName": "x", "blocked": "Blocked"}, (400, "Unknown", "'Blocked' is not an option. "
                                                  "The existing options are:  ,Ship,Invoice,All")),
    ({"displayName": "x", "currencyId": "nope"}, (400, "Application_InvalidGUID",
                                                  "The value 'nope' of 'currencyId' is not a "
                                                  "valid GUID.")),
    ({"displayName": None}, (400, "BadRequest", "A null value was found for the property named "
                                               "'displayName', which has the expected type "
                                               "'Edm.String[Nullable=False]'.")),
])
def test_writes_are_checked_against_the_metadata(client, body, expected):
    assert _error(client.call("POST", "customers", json=body)) == expected


def test_create_fills_defaults_and_numbers(client):
    status, body = client.json("POST", "customers", json={"displayName": "Ny AS",
                                                          "blocked": "_x0020_"})
    assert status == 201
    assert body["number"] == "C10201" and body["type"] == "Company"
    assert body["balanceDue"] == 0 and body["taxAreaId"] == edm.EMPTY_GUID
    assert set(body) == {"@odata.context", "@odata.etag",
                         *edm.metadata().entity_set("customers").properties}


# -- ETags ------------------------------------------------------------------------------------


def test_etags_change_on_every_write_and_if_match_is_enforced(client):
    _, customer = client.json("GET", "customers?$top=1")
    customer = customer["value"][0]
    url = f"customers({customer['id']})"
    assert _error(client.call("PATCH", url, json={"city": "Oslo"}))[:2] == (
        400, "BadRequest_InvalidToken")
    first = client.call("PATCH", url, json={"city": "Oslo"},
                        headers={"If-Match": customer["@odata.etag"]})
    assert first.status_code == 200 and first.json()["@odata.etag"] != customer["@odata.etag"]
    assert first.headers["ETag"] == first.json()["@odata.etag"]
    stale = client.call("PATCH", url, json={"city": "Bergen"},
                        headers={"If-Match": customer["@odata.etag"]})
    assert _error(stale) == (409, "Request_EntityChanged",
                             "Another user has already changed the record.")
    same = client.call("PATCH", url, json={"city": "Oslo"},
                       headers={"If-Match": first.json()["@odata.etag"]})
    assert same.json()["@odata.etag"] not in (first.json()["@odata.etag"], customer["@odata.etag"])
    assert client.call("PATCH", url, json={"city": "Bergen"}, headers={"If-Match": "*"}).json()[
        "city"] == "Bergen"
    touched = client.control(f"/_sandbox/touch/customers/{customer['id']}").json()["@odata.etag"]
    assert client.json("GET", url)[1]["@odata.etag"] == touched


# -- reading ------------------------------------------------------------------------------------


def test_server_driven_paging_with_opaque_skiptokens(client):
    seen, url, pages = [], f"{client.company}/customers?$orderby=lastModifiedDateTime,id", 0
    while url:
        response = client.call("GET", url, headers={"Prefer": "odata.maxpagesize=30"})
        body = response.json()
        assert response.headers["Preference-Applied"] == "odata.maxpagesize=30"
        assert len(body["value"]) <= 30 and all("@odata.etag" in row for row in body["value"])
        seen += body["value"]
        url = body.get("@odata.nextLink")
        if url:
            query = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
            assert set(query) == {"$orderby", "$skiptoken"}
        pages += 1
    assert pages == 7 and len({row["id"] for row in seen}) == len(seen) == 200
    stamps = [row["lastModifiedDateTime"] for row in seen]
    assert stamps == sorted(stamps)
    bad = client.call("GET", "customers?$skiptoken=not-a-token")
    assert _error(bad)[:2] == (400, "BadRequest")


def test_filter_top_select_and_expand(client):
    _, everything = client.json("GET", "customers")
    stamps = sorted(row["lastModifiedDateTime"] for row in everything["value"])
    _, newer = client.json("GET", f"customers?$filter=lastModifiedDateTime gt {stamps[189]}")
    assert sorted(r["lastModifiedDateTime"] for r in newer["value"]) == stamps[190:]
    email = everything["value"][5]["email"]
    _, one = client.json("GET", f"customers?$filter=email eq '{email}' and (type eq 'Company' "
                                "or type eq 'Person')&$select=email,number")
    assert [set(r) for r in one["value"]] == [{"@odata.etag", "id", "email", "number"}]
    _, top = client.json("GET", "items?$top=3")
    assert len(top["value"]) == 3 and "@odata.nextLink" not in top
    _, orders = client.json("GET", "salesOrders?$top=2&$expand=salesOrderLines")
    assert all(order["salesOrderLines"] and all("@odata.etag" in line for line in
                                                  order["salesOrderLines"])
               for order in orders["value"])
    _, plain = client.json("GET", "salesOrders?$top=1")
    assert "salesOrderLines" not in plain["value"][0]
    assert _error(client.call("GET", "customers?$filter=nosuch eq 1"))[:2] == (400, "BadRequest")


_ROW = {"name": "O'Brien AS", "id": "9dfca2d5-65bc-4c91-9bad-3ad81c7f6df6", "qty": Decimal("2.5"),
        "when": "2026-01-01T10:00:00.000000Z", "date": "2025-12-24", "flag": True, "none": None}


def _coerce(name, value):
    props = {"id": edm.EdmProperty("id", "Edm.Guid"), "qty": edm.EdmProperty("qty", "Edm.Decimal"),
             "when": edm.EdmProperty("when", "Edm.DateTimeOffset")}
    return edm.comparable(props.get(name), value)


@pytest.mark.parametrize("text, expected", [
    ("name eq 'O''Brien AS'", True),
    ("id eq 9DFCA2D5-65BC-4C91-9BAD-3AD81C7F6DF6", True),
    ("qty gt 2 and qty lt 3", True),
    ("when ge 2026-01-01T11:00:00+01:00", True),
    ("when gt 2026-01-01T10:00:00Z", False),
    ("date le 2025-12-24 and flag eq true", True),
    ("none eq null", True),
    ("not (qty eq 2.5) or name eq 'x'", False),
    ("name eq 'x' or qty eq 2.5 and flag eq false", False),   # and binds tighter than or
    ("(name eq 'x' or qty eq 2.5) and flag eq true", True),
])
def test_filter_expressions(text, expected):
    assert parse_filter(text, _coerce, frozenset(_ROW))(_ROW) is expected


@pytest.mark.parametrize("text", ["name eq", "name like 'x'", "other eq 1", "(name eq 'x'",
                                  "name eq 'x' qty"])
def test_bad_filters_are_refused(text):
    with pytest.raises(FilterError):
        parse_filter(text, _coerce, frozenset(_ROW))


# -- orders and lines ----------------------------------------------------------------------------


def test_deep_insert_line_operations_and_totals(client):
    _, customer = client.json("GET", "customers?$top=1")
    _, items = client.json("GET", "items?$top=2")
    first, second = items["value"]
    status, order = client.json("POST", "salesOrders?$expand=salesOrderLines", json={
        "customerId": customer["value"][0]["id"], "externalDocumentNumber": "WEB-1",
        "salesOrderLines": [{"lineType": "Item", "itemId": first["id"], "quantity": 2,
                             "discountPercent": 10}]})
    assert status == 201 and order["customerNumber"] == customer["value"][0]["number"]
    [line] = order["salesOrderLines"]
    assert line["lineObjectNumber"] == first["number"] and line["unitPrice"] == first["unitPrice"]
    net = (2 * first["unitPrice"] * Decimal("0.9")).quantize(Decimal("0.01"))
    assert line["netAmount"] == net and order["totalAmountExcludingTax"] == net
    lines_url = f"salesOrders({order['id']})/salesOrderLines"
    status, added = client.json("POST", lines_url, json={"itemId": second["id"], "quantity": 1})
    assert status == 201 and added["sequence"] == 20000
    _, now = client.json("GET", f"salesOrders({order['id']})")
    assert now["@odata.etag"] != order["@odata.etag"]
    assert now["lastModifiedDateTime"] > order["lastModifiedDateTime"]
    assert client.call("PATCH", f"{lines_url}({added['id']})", json={"quantity": 4},
                       headers={"If-Match": line["@odata.etag"]}).status_code == 409
    assert client.call("DELETE", f"{lines_url}({line['id']})",
                       headers={"If-Match": line["@odata.etag"]}).status_code == 204
    _, left = client.json("GET", lines_url)
    assert [item["id"] for item in left["value"]] == [added["id"]]
    assert _error(client.call("POST", "salesOrders", json={"externalDocumentNumber": "X"})) == (
        400, "Application_DialogException", "A customerNumber or a customerID must be provided.")
    assert _error(client.call("PATCH", f"salesOrders({order['id']})", json={"status": "Open"},
                              headers={"If-Match": "*"}))[:2] == (400,
                                                                  "BadRequest_InvalidOperation")


# -- $batch --------------------------------------------------------------------------------------


def test_batch_answers_each_request_on_its_own(client):
    _, customers = client.json("GET", "customers?$top=1")
    target = customers["value"][0]
    company = f"companies({bc.COMPANY_ID})"
    status, body = client.json("POST", f"{client.service}/$batch", json={"requests": [
        {"id": "a", "method": "POST", "url": f"{company}/customers",
         "headers": {"Content-Type": "application/json"}, "body": {"displayName": "Batch AS"}},
        {"id": "b", "method": "PATCH", "url": f"{company}/customers({target['id']})",
         "headers": {"If-Match": 'W/"stale"'}, "body": {"city": "Oslo"}},
        {"id": "c", "method": "GET", "url": f"{company}/customers({target['id']})"},
        {"id": "d", "method": "POST", "url": f"{company}/customers",
         "body": {"displayName": "x" * 101}},
    ]})
    assert status == 200
    answers = {r["id"]: r for r in body["responses"]}
    assert [answers[k]["status"] for k in "abcd"] == [201, 409, 200, 400]
    assert answers["b"]["body"]["error"]["code"] == "Request_EntityChanged"
    assert answers["c"]["body"]["city"] == target["city"]
    assert answers["d"]["body"]["error"]["code"] == "Application_StringExceededLength"
    status, body = client.json("POST", f"{client.service}/$batch", json={"requests": [
        {"id": "1", "method": "PATCH", "url": f"{company}/customers({target['id']})",
         "headers": {"If-Match": 'W/"stale"'}, "body": {"city": "Oslo"}},
        {"id": "2", "method": "PATCH", "url": f"{company}/customers({target['id']})",
         "dependsOn": ["1"], "headers": {"If-Match": "*"}, "body": {"city": "Oslo"}},
    ]})
    assert [r["status"] for r in body["responses"]] == [409, 424]
    assert body["responses"][1]["body"]["error"]["code"] == "BadRequest_FailedDependency"
    assert client.json("GET", f"customers({target['id']})")[1]["city"] == target["city"]
    too_many = client.call("POST", f"{client.service}/$batch", json={"requests": [
        {"id": str(i), "method": "GET", "url": f"{company}/items"} for i in range(101)]})
    assert _error(too_many)[:2] == (400, "BadRequest")


# -- throttling ---------------------------------------------------------------------------------


def test_rate_limit_answers_429_with_bc_body(client):
    client.sandbox.set_faults(SYSTEM, rate_limit={"limit": 2, "window_s": 60})
    try:
        assert [client.call("GET", "items?$top=1").status_code for _ in range(2)] == [200, 200]
        refused = client.call("GET", "items?$top=1")
        assert _error(refused)[:2] == (429, "Application_TooManyRequests")
        assert int(refused.headers["Retry-After"]) >= 1
        assert client.new_token().status_code == 200      # Entra ID is not BC: not limited
    finally:
        client.sandbox.set_faults(SYSTEM)


def test_concurrency_beyond_the_queue_is_refused(client):
    assert client.control("/_sandbox/limits", {"max_concurrent": 1, "max_queued": 0}).ok
    client.sandbox.set_faults(SYSTEM, latency_ms=400)
    barrier, statuses = threading.Barrier(3), []

    def call():
        barrier.wait()
        statuses.append(client.call("GET", "items?$top=1").status_code)

    threads = [threading.Thread(target=call) for _ in range(3)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        client.sandbox.set_faults(SYSTEM)
    assert sorted(statuses) == [200, 429, 429]


# -- the seed -----------------------------------------------------------------------------------


def test_seed_overlaps_the_webshop_and_satisfies_the_metadata():
    data = businesscentral_seed(42)
    assert data == businesscentral_seed(42)                          # deterministic
    shop = webshop_seed(42)
    assert (len(data["customers"]), len(data["items"]), len(data["salesOrders"])) == (200, 150, 150)
    emails = {c["email"].lower() for c in shop["customers"] if not c["deleted"]}
    assert sum(c["email"].lower() in emails for c in data["customers"]) == 30
    skus = {p["sku"] for p in shop["products"] if not p["deleted"]}
    assert sum(i["number"] in skus for i in data["items"]) == 25
    numbers = {o["number"] for o in shop["orders"] if not o["deleted"]}
    assert sum(o["externalDocumentNumber"] in numbers for o in data["salesOrders"]) == 4
    metadata = edm.metadata()
    for entity_set, rows in data.items():
        props = metadata.entity_set(entity_set).properties
        for row in rows:
            for name, value in row.items():
                if name == "salesOrderLines":
                    line_props = metadata.entity_set(name).properties
                    for line in value:
                        for key, item in line.items():
                            if key != "_version":
                                edm.check_value(line_props[key], item)
                    continue
                edm.check_value(props[name], value)


# -- what BC honours is done or refused, never ignored (issue 16) --------------------------------


def test_order_lines_honour_the_query_options(client):
    _, orders = client.json("GET", "salesOrders?$top=1&$expand=salesOrderLines")
    order = orders["value"][0]
    lines = f"salesOrders({order['id']})/salesOrderLines"
    everything = client.json("GET", lines)[1]["value"]
    status, body = client.json("GET", f"{lines}?$orderby=sequence desc&$top=1&$count=true"
                                      "&$select=sequence")
    assert status == 200 and body["@odata.count"] == len(everything)
    assert [line["sequence"] for line in body["value"]] == [max(x["sequence"] for x in everything)]
    assert set(body["value"][0]) == {"@odata.etag", "id", "sequence"}
    assert client.call("GET", f"{lines}/$count").text == str(len(everything))
    _, nested = client.json("GET", f"salesOrders({order['id']})?$expand=salesOrderLines("
                                   "$select=quantity)")
    assert {frozenset(line) for line in nested["salesOrderLines"]} == {
        frozenset({"@odata.etag", "id", "quantity"})}


def test_prefer_return_minimal(client):
    response = client.call("POST", "customers", json={"displayName": "Minimal AS"},
                           headers={"Prefer": "return=minimal"})
    assert response.status_code == 204 and response.content == b""
    assert response.headers["Preference-Applied"] == "return=minimal"
    created = client.call("GET", response.headers["Location"]).json()
    assert created["displayName"] == "Minimal AS"
    assert response.headers["ETag"] == created["@odata.etag"]
    patched = client.call("PATCH", response.headers["Location"], json={"city": "Oslo"},
                          headers={"If-Match": created["@odata.etag"],
                                   "Prefer": "return=minimal"})
    assert patched.status_code == 204 and patched.headers["ETag"] != created["@odata.etag"]


def test_company_by_header_name_and_default(client):
    by_header = client.call("GET", f"{client.service}/items?$top=2",
                            headers={"Company": bc.COMPANY_NAME})
    by_default = client.call("GET", f"{client.service}/items?$top=2")
    assert by_header.status_code == by_default.status_code == 200
    assert by_header.json()["value"] == by_default.json()["value"]
    assert _error(client.call("GET", f"{client.service}/items",
                              headers={"Company": "Other AS"}))[:2] == (404, "BadRequest_NotFound")


def test_transactional_batch_rolls_back_creates_and_number_series(client):
    company = f"companies({bc.COMPANY_ID})"
    before = client.call("GET", "customers/$count").text
    status, body = client.json("POST", f"{client.service}/$batch", headers={
        "Isolation": "snapshot"}, json={"requests": [
            {"id": "1", "method": "POST", "url": f"{company}/customers",
             "body": {"displayName": "Rolled back AS"}},
            {"id": "2", "method": "POST", "url": f"{company}/customers",
             "body": {"displayName": "x" * 101}}]})
    assert status == 200 and [r["status"] for r in body["responses"]] == [201, 400]
    assert client.call("GET", "customers/$count").text == before
    again = client.json("POST", "customers", json={"displayName": "Next AS"})[1]
    assert again["number"] == body["responses"][0]["body"]["number"]   # the number is free again
    assert _error(client.call("POST", f"{client.service}/$batch", json={"requests": []},
                              headers={"Isolation": "readcommitted"}))[:2] == (400, "BadRequest")


def test_blank_enum_form_is_a_constructor_option():
    with pytest.raises(ValueError, match="blank_enum"):
        bc.BusinessCentral(api_key="k", seed=1, blank_enum="blank")
    emulator = bc.BusinessCentral(api_key="k", seed=1, blank_enum=" ")
    row = next(iter(emulator.collections["customers"].values()))
    assert row.entity["blocked"] == "_x0020_"                      # stored as $metadata names it
    assert emulator._out("customers", row, None)["blocked"] == " "  # served as configured
