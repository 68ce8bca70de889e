"""The Exact Online emulator over HTTP: OAuth with rotating refresh tokens, envelopes and
paging, sync and bulk endpoints, validation against the reference, rate limits, the seed."""

from __future__ import annotations

import json
import re
import urllib.parse
from decimal import Decimal

import pytest
import requests

from sandbox import exact as ex
from sandbox import exact_reference
from sandbox.seed import webshop_seed
from sandbox.seed_exact import exact_seed
from sandbox.server import Sandbox

SYSTEM = "exact"
REDIRECT = "http://127.0.0.1:8765/callback"


@pytest.fixture(scope="module")
def running(tmp_path_factory):
    with Sandbox(tmp_path_factory.mktemp("exact"), base_port=0, systems=(SYSTEM,)) as sandbox:
        yield sandbox


class Client:
    """Plain HTTP against the emulator, with tokens from its consent and token endpoints."""

    def __init__(self, sandbox: Sandbox):
        self.sandbox = sandbox
        self.root = sandbox.root_url(SYSTEM)
        self.api = sandbox.url(SYSTEM)
        self.division = f"{self.api}/v1/{ex.DIVISION}"
        self.tokens = self.grant(grant_type="authorization_code", code=self.code(),
                                 redirect_uri=REDIRECT).json()

    def code(self, redirect_uri: str = REDIRECT) -> str:
        response = requests.get(f"{self.api}/oauth2/auth", params={
            "client_id": ex.CLIENT_ID, "redirect_uri": redirect_uri, "response_type": "code",
            "state": "s1"}, allow_redirects=False, timeout=10)
        assert response.status_code == 302
        location = urllib.parse.urlsplit(response.headers["Location"])
        query = urllib.parse.parse_qs(location.query)
        assert location.geturl().startswith(redirect_uri) and query["state"] == ["s1"]
        return query["code"][0]

    def grant(self, **form) -> requests.Response:
        return requests.post(f"{self.api}/oauth2/token", data={
            "client_id": ex.CLIENT_ID, "client_secret": self.sandbox.api_key(SYSTEM), **form},
            timeout=10)

    def call(self, method: str, path: str, *, accept_json: bool = True,
             **kwargs) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.tokens['access_token']}",
                   **({"Accept": "application/json"} if accept_json else {}),
                   **kwargs.pop("headers", {})}
        url = path if path.startswith("http") else f"{self.division}/{path}"
        return requests.request(method, url, headers=headers, timeout=10, **kwargs)

    def json(self, method: str, path: str, **kwargs):
        response = self.call(method, path, **kwargs)
        return response.status_code, json.loads(response.text or "null", parse_float=Decimal)

    def control(self, path: str, body=None) -> requests.Response:
        return requests.post(self.root + path, json=body, timeout=10)


@pytest.fixture
def client(running):
    running.reset(SYSTEM)
    return Client(running)


def _message(body) -> str:
    assert set(body) == {"error"} and body["error"]["code"] == ""
    assert set(body["error"]["message"]) == {"lang", "value"}
    return body["error"]["message"]["value"]


# -- OAuth ------------------------------------------------------------------------------------


def test_codes_are_single_use_and_refresh_tokens_rotate(client):
    first = client.tokens
    assert first["token_type"] == "bearer" and first["expires_in"] == "600"
    code = client.code()
    assert client.grant(grant_type="authorization_code", code=code,
                        redirect_uri=REDIRECT).status_code == 200
    spent = client.grant(grant_type="authorization_code", code=code, redirect_uri=REDIRECT)
    assert spent.status_code == 400 and spent.json()["error"] == "invalid_grant"
    current = client.grant(grant_type="authorization_code", code=client.code(),
                           redirect_uri=REDIRECT).json()

    too_early = client.grant(grant_type="refresh_token", refresh_token=current["refresh_token"])
    assert too_early.status_code == 400 and "570 seconds" in too_early.json()["error_description"]
    assert client.control("/_sandbox/expire-tokens").json()["expired"] >= 1
    old_access = client.call("GET", "crm/Accounts?$top=1")
    assert old_access.status_code == 401
    assert "invalid_token" in old_access.headers["WWW-Authenticate"]
    assert _message(old_access.json()) == "The access token is invalid or has expired."

    rotated = client.grant(grant_type="refresh_token", refresh_token=current["refresh_token"])
    assert rotated.status_code == 200
    new = rotated.json()
    assert new["refresh_token"] != current["refresh_token"]
    reused = client.grant(grant_type="refresh_token", refresh_token=current["refresh_token"])
    assert reused.status_code == 400 and reused.json() == {
        "error": "invalid_grant", "error_description": "Old refresh token used."}
    client.tokens = new
    assert client.call("GET", "crm/Accounts?$top=1").status_code == 200
    wrong_client = client.grant(grant_type="refresh_token", refresh_token=new["refresh_token"],
                                client_secret="nope")
    assert wrong_client.status_code == 400 and wrong_client.json()["error"] == "invalid_client"


# -- envelopes, formats, paging ----------------------------------------------------------------


def test_envelope_dates_codes_and_xml_unless_json_is_asked_for(client):
    status, body = client.json("GET", "crm/Accounts", params={
        "$select": "ID,Code,Name,Modified", "$filter": f"Code eq '{'1001':>18}'"})
    assert status == 200
    [account] = body["d"]["results"]
    assert account["Code"] == " " * 14 + "1001" and len(account["Code"]) == 18
    assert re.fullmatch(r"/Date\(\d{13}\)/", account["Modified"])
    assert account["__metadata"]["uri"].endswith(f"/crm/Accounts(guid'{account['ID']}')")
    assert set(account) == {"__metadata", "ID", "Code", "Name", "Modified"}

    one = client.json("GET", f"crm/Accounts(guid'{account['ID']}')")[1]["d"]
    assert one["Name"] == account["Name"] and "Email" in one     # no $select: every property

    xml = client.call("GET", "crm/Accounts", accept_json=False, params={"$select": "ID,Name"})
    assert xml.status_code == 200 and xml.headers["Content-Type"].startswith("application/xml")
    assert xml.text.startswith("<?xml") and account["Name"] in xml.text


def test_normal_pages_hold_60_and_bulk_and_sync_1000_with_next_links(client):
    for number in range(30):
        status, _ = client.json("POST", "crm/Accounts", json={"Name": f"Paging {number}"})
        assert status == 201
    rows, url, pages = [], f"{client.division}/crm/Accounts", 0
    params = {"$select": "ID,Name"}
    while url:
        body = client.json("GET", url, params=params)[1]["d"]
        pages += 1
        assert len(body["results"]) <= exact_reference.PAGE_SIZE
        rows += body["results"]
        url, params = body.get("__next"), None
        if url:
            assert "$skiptoken" in urllib.parse.unquote(url)
    assert (pages, len(rows), len({r["ID"] for r in rows})) == (2, 70, 70)
    bulk = client.json("GET", "bulk/CRM/Accounts", params={"$select": "ID"})[1]["d"]
    assert len(bulk["results"]) == 70 and "__next" not in bulk
    for path in ("bulk/CRM/Accounts", "sync/CRM/Accounts", "sync/Deleted"):
        status, body = client.json("GET", path)
        assert status == 400 and "$select" in _message(body)


def test_sync_timestamps_follow_every_write_and_deletions(client):
    rows = client.json("GET", "sync/CRM/Accounts", params={
        "$select": "Timestamp,ID,Name", "$filter": "Timestamp gt 1L"})[1]["d"]["results"]
    stamps = [r["Timestamp"] for r in rows]
    assert len(rows) == 40 and stamps == sorted(stamps)
    high = max(r["Timestamp"] for path in ("sync/CRM/Accounts", "sync/Logistics/Items",
                                           "sync/SalesOrder/SalesOrders")
               for r in client.json("GET", path, params={
                   "$select": "Timestamp", "$filter": "Timestamp gt 1L"})[1]["d"]["results"])
    assert client.call("PUT", f"crm/Accounts(guid'{rows[5]['ID']}')",
                       json={"City": "Bergen"}).status_code == 204
    assert client.call("DELETE", f"crm/Accounts(guid'{rows[6]['ID']}')").status_code == 204

    changed = client.json("GET", "sync/CRM/Accounts", params={
        "$select": "Timestamp,ID,City", "$filter": f"Timestamp gt {high}L"})[1]["d"]["results"]
    assert [(r["ID"], r["City"]) for r in changed] == [(rows[5]["ID"], "Bergen")]
    deleted = client.json("GET", "sync/Deleted", params={
        "$select": "Timestamp,EntityKey,EntityType,DeletedDate",
        "$filter": f"Timestamp gt {high}L"})[1]["d"]["results"]
    assert [(r["EntityKey"], r["EntityType"]) for r in deleted] == [(rows[6]["ID"], 2)]
    assert deleted[0]["Timestamp"] > changed[0]["Timestamp"]


def test_order_sync_rows_are_one_per_line(client):
    orders = client.json("GET", "salesorder/SalesOrders",
                         params={"$expand": "SalesOrderLines"})[1]["d"]["results"]
    lines = sum(len(o["SalesOrderLines"]["results"]) for o in orders)
    rows = client.json("GET", "sync/SalesOrder/SalesOrders", params={
        "$select": "Timestamp,OrderID,ID,Item,Quantity,YourRef",
        "$filter": "Timestamp gt 1L"})[1]["d"]["results"]
    assert len(orders) == 20 and len(rows) == lines > 20
    assert {r["OrderID"] for r in rows} == {o["OrderID"] for o in orders}
    deferred = client.json("GET", "salesorder/SalesOrders", params={"$top": "1"})[1]["d"]
    assert "__deferred" in deferred["results"][0]["SalesOrderLines"]


# -- writes -------------------------------------------------------------------------------------


def test_writes_are_checked_against_the_reference(client):
    item = client.json("GET", "logistics/Items", params={"$top": "1"})[1]["d"]["results"][0]
    cases = [
        ("POST", "logistics/Items", {"Code": "X-1"}, "Mandatory: Description"),
        ("POST", "crm/Accounts", {"Name": "A", "Nickname": "x"}, "does not exist"),
        ("PUT", f"logistics/Items(guid'{item['ID']}')", {"StandardSalesPrice": 10},
         "cannot be set with PUT"),
        ("PUT", f"logistics/Items(guid'{item['ID']}')", {"Description": "x" * 61},
         "maximum length is 60"),
        ("POST", "logistics/Items", {"Code": item["Code"].strip(), "Description": "Dup"},
         "already exists"),
        ("POST", "salesorder/SalesOrders", {"OrderedBy": item["ID"], "SalesOrderLines": []},
         "SalesOrderLines"),
        ("PUT", "crm/Accounts(guid'00000000-0000-4000-8000-000000000000')", {"Name": "x"},
         "not found"),
    ]
    for method, path, body, expected in cases:
        status, answer = client.json(method, path, json=body)
        assert status in (400, 404), (path, body)
        assert expected in _message(answer), (expected, answer)


def test_post_returns_the_entity_and_put_changes_only_what_it_carries(client):
    account = client.json("GET", "crm/Accounts", params={"$top": "1"})[1]["d"]["results"][0]
    item = client.json("GET", "logistics/Items", params={"$top": "1"})[1]["d"]["results"][0]
    status, body = client.json("POST", "salesorder/SalesOrders", json={
        "OrderedBy": account["ID"], "YourRef": "WEB-1", "OrderDate": "2026-03-01T00:00:00",
        "SalesOrderLines": [{"Item": item["ID"], "Quantity": 2}]},
        headers={"Prefer": "return=representation"})
    assert status == 201
    order = body["d"]
    [line] = order["SalesOrderLines"]["results"]
    assert order["OrderNumber"] > 500000 and order["Status"] == 12
    assert order["OrderDate"] == "/Date(1772323200000)/"
    assert (line["ItemCode"], line["UnitPrice"], line["LineNumber"]) == (
        item["Code"], item["StandardSalesPrice"], 1)
    assert line["AmountFC"] == 2 * item["StandardSalesPrice"]

    assert client.call("PUT", f"salesorder/SalesOrders(guid'{order['OrderID']}')",
                       json={"Remarks": "ring first"}).status_code == 204
    again = client.json("GET", f"salesorder/SalesOrders(guid'{order['OrderID']}')",
                        params={"$expand": "SalesOrderLines"})[1]["d"]
    assert (again["Remarks"], again["YourRef"]) == ("ring first", "WEB-1")
    bare = client.json("POST", "crm/Accounts", json={"Name": "Without representation"})[1]["d"]
    assert {k for k, v in bare.items() if v is not None} == {"__metadata", "ID", "Name"}
    assert "Email" in bare                              # without return=representation: null
    stored = client.json("GET", f"crm/Accounts(guid'{bare['ID']}')")[1]["d"]
    assert stored["Code"].strip().isdigit() and len(stored["Code"]) == 18


# -- rate limits ---------------------------------------------------------------------------------


def test_rate_limit_headers_and_429(client):
    assert client.control("/_sandbox/limits", {"minutely": 3, "daily": 5000,
                                               "minute_s": 30}).status_code == 200
    answers = [client.call("GET", "crm/Accounts?$top=1&$select=ID") for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    headers = answers[0].headers
    assert headers["X-RateLimit-Minutely-Limit"] == "3" and headers["X-RateLimit-Limit"] == "5000"
    assert [a.headers["X-RateLimit-Minutely-Remaining"] for a in answers] == ["2", "1", "0", "0"]
    reset = int(headers["X-RateLimit-Minutely-Reset"])
    assert reset > 1.7e12      # epoch milliseconds
    assert "rate limit" in _message(answers[3].json())
    # the token endpoint is not rate limited
    assert client.grant(grant_type="refresh_token", refresh_token="x").status_code == 400


# -- the seed -------------------------------------------------------------------------------------


def test_seed_overlaps_the_webshop():
    data, shop = exact_seed(42), webshop_seed(42)
    assert data == exact_seed(42)
    emails = {c["email"].lower() for c in shop["customers"]}
    skus = {p["sku"] for p in shop["products"]}
    numbers = {o["number"] for o in shop["orders"]}
    assert sum(a["Email"].lower() in emails for a in data["Accounts"]) == 12
    assert sum(i["Code"] in skus for i in data["Items"]) == 10
    assert sum(o["YourRef"] in numbers for o in data["SalesOrders"]) == 3
    props = exact_reference.reference()
    for endpoint, rows in (("Accounts", data["Accounts"]), ("Items", data["Items"]),
                           ("SalesOrders", data["SalesOrders"])):
        for row in rows:
            assert set(row) <= set(props[endpoint]), set(row) - set(props[endpoint])
