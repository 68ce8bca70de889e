"""End to end: `talksync run exact-customwebshop` against the sandbox over HTTP.

The webshop and the Exact Online emulator start from their seeds (seed 42), which overlap:
accounts with a webshop customer's e-mail, items coded with webshop SKUs, and a few sales
orders whose Your ref. is a webshop order number. The first tokens come from `talksync auth
exact` against the emulator's consent endpoint, as a user would get them.
"""

from __future__ import annotations

import collections
import hashlib
import io
import json
import os
import pathlib
import signal
import subprocess
import sys
from decimal import Decimal

import pytest
import requests

from connectors.stores import open_link_store
from core.spec import get_dataflow
from pipelines import auth
from sandbox import exact as ex
from sandbox import exact_reference
from sandbox.people import approve_exact
from sandbox.server import Sandbox
from tests.conftest import SyncHarness, group_by

DATAFLOW = "exact-customwebshop"
WRITES = ("created_in_target", "created_in_source", "linked_by_match", "updated_target",
          "updated_source")
ROOT = f"/api/v1/{ex.DIVISION}"


class ExactHarness(SyncHarness):
    """The sandbox (webshop + Exact), talksync authorized once, and both systems' APIs."""

    def __init__(self, sandbox: Sandbox, state: pathlib.Path):
        super().__init__(sandbox, state)
        self.store_url = "sqlite:///" + str(sandbox.state_dir / "links.db")
        self.authorize()
        # the test's own Exact session (a second app user would have its own tokens)
        self.exact = requests.Session()
        self.exact.headers["Accept"] = "application/json"

    def authorize(self) -> None:
        """`talksync auth exact` with the code pasted, as a user does after the consent."""
        code = consent_code(self.sandbox)
        assert auth.auth_exact(self.config, "exact", stdin=io.StringIO(code + "\n"),
                               out=io.StringIO()) == "tokens/exact"

    def run(self, *args: str) -> tuple[int, dict]:
        return super().run(*args, dataflow=DATAFLOW)

    def tokens(self) -> dict:
        with open_link_store(self.store_url) as store:
            entry = store.read_state("tokens/exact")
        return {**entry.value, "version": entry.version}

    def bearer(self) -> dict:
        return {"Authorization": f"Bearer {self.tokens()['access_token']}"}

    def exact_all(self, path: str, expand: bool = False) -> list[dict]:
        url = f"{self.sandbox.root_url('exact')}{ROOT}/{path}"
        params = {"$expand": "SalesOrderLines"} if expand else None
        rows = []
        while url:
            body = json.loads(self.exact.get(url, params=params, headers=self.bearer(),
                                             timeout=30).text, parse_float=Decimal)["d"]
            rows += body["results"]
            url, params = body.get("__next"), None
        return rows

    def exact_put(self, path: str, key: str, body: dict) -> None:
        response = self.exact.put(f"{self.sandbox.root_url('exact')}{ROOT}/{path}(guid'{key}')",
                                  json=body, headers=self.bearer(), timeout=30)
        assert response.status_code == 204, response.text

    def writes(self, system: str) -> dict:
        """Requests that change state since the log was cleared, by method (token requests
        are POSTs too, and change no data)."""
        log = self.sandbox.requests(system)["log"]
        return dict(collections.Counter(e["method"] for e in log if "/oauth2/" not in e["path"]
                                        and e["method"] in ("POST", "PATCH", "PUT", "DELETE")))

    def clear_logs(self) -> None:
        for system in ("customwebshop", "exact"):
            self.sandbox.clear_requests(system)

    def control(self, path: str, body=None) -> dict:
        """``POST`` to one of the Exact emulator's control endpoints."""
        response = requests.post(f"{self.sandbox.root_url('exact')}{path}", json=body, timeout=10)
        assert response.status_code == 200, response.text
        return response.json()


def consent_code(sandbox: Sandbox) -> str:
    """What the consent page hands the browser: the code in the redirect to redirect_uri."""
    return approve_exact(sandbox)


@pytest.fixture
def exh(sandbox_of, tmp_path):
    return ExactHarness(sandbox_of("customwebshop", "exact"), tmp_path)


def _written(report) -> int:
    """How many links and writes the run reports."""
    return sum(counts[k] for counts in report["pairs"].values() for k in WRITES)


# -- the spec ---------------------------------------------------------------------------------


def test_every_exact_property_of_the_dataflow_is_in_the_reference():
    spec = get_dataflow(DATAFLOW)
    reference = exact_reference.reference()
    edm = {"string": {"Edm.String"}, "email": {"Edm.String"}, "country": {"Edm.String"},
           "currency": {"Edm.String"}, "decimal": {"Edm.Double", "Edm.String"},
           "integer": {"Edm.Double", "Edm.Int32"}, "date": {"Edm.DateTime"},
           "reference": {"Edm.Guid"}}
    checked = 0
    for pair in spec.pairs:
        for endpoint, props in ((pair.source.entity, pair.properties),
                                *(("SalesOrderLines", p.lines) for p in pair.properties
                                  if p.type == "lines")):
            for prop in props:
                if prop.type == "lines":
                    assert reference[endpoint][prop.source]["type"] == "SalesOrderLines"
                    continue
                field = reference[endpoint].get(prop.source)
                assert field is not None, (endpoint, prop.source)
                assert field["type"] in edm[prop.type], (endpoint, prop.source, field["type"])
                methods = field["supportedMethods"]
                if prop.writes_to("source"):      # the webshop's values are written to Exact
                    assert methods["post"], (endpoint, prop.source)
                    assert methods["put"] or prop.immutable, (endpoint, prop.source)
                checked += 1
    assert checked == 26 and [p.name for p in spec.pairs] == ["customer", "product", "order"]


# -- syncing ----------------------------------------------------------------------------------


def test_first_run_rerun_with_rotated_tokens_edits_both_ways_and_a_4xx_dead_letter(exh):
    """The first run links and creates on both sides under low rate limits; the next finds
    the access token expired, rotates the refresh token once and writes nothing; then edits
    on both sides cross over, and a create Exact refuses is dead-lettered after one request."""
    shop_customers = group_by(exh.shop_all("customers"), "email", True)
    shop_products = group_by(exh.shop_all("products"), "sku")
    shop_orders = exh.shop_all("orders")
    accounts, items = exh.exact_all("crm/Accounts"), exh.exact_all("logistics/Items")
    orders = exh.exact_all("salesorder/SalesOrders")
    # limits low enough to bind while talksync writes one entity per request (without the
    # connector's pacing this run meets 429 over a dozen times)
    exh.control("/_sandbox/limits", {"minutely": 40, "daily": 5000, "minute_s": 0.5})
    exh.clear_logs()

    status, report = exh.run()

    assert status == 0, report
    statuses = collections.Counter(e["status"] for e in exh.sandbox.requests("exact")["log"])
    assert statuses[200] + statuses[201] > 600 and statuses[429] <= 2     # paced, no 429 storm
    exh.control("/_sandbox/limits", {})
    customers, products, order_pair = (report["pairs"][p] for p in ("customer", "product", "order"))
    assert (customers["linked_by_match"], products["linked_by_match"],
            order_pair["linked_by_match"]) == (2 * 12, 2 * 10, 2 * 3)   # 2 records a link
    assert customers["created_in_source"] == len(shop_customers) - 12
    assert customers["created_in_target"] == len(accounts) - 12
    assert products["created_in_source"] == len(shop_products) - 10
    assert products["created_in_target"] == len(items) - 10
    assert order_pair["created_in_source"] == len(shop_orders) - 3
    assert order_pair["created_in_target"] == len(orders) - 3
    assert all(counts["dead_letters"] == 0 for counts in report["pairs"].values())

    after = exh.exact_all("salesorder/SalesOrders", expand=True)
    by_ref = group_by(after, "YourRef")
    shop_items = {p["id"]: p["sku"] for p in exh.shop_all("products")}
    exact_items = {i["ID"]: i["Code"].strip() for i in exh.exact_all("logistics/Items")}
    for shop_order in shop_orders:           # every webshop order is an Exact sales order
        [order] = by_ref[shop_order["number"]]
        lines = order["SalesOrderLines"]["results"]
        assert [exact_items[line["Item"]] for line in lines] == \
            [shop_items[line["product_id"]] for line in shop_order["lines"]]
        assert [line["Quantity"] for line in lines] == \
            [Decimal(line["quantity"]) for line in shop_order["lines"]]
    exact_only = [o for o in orders if not o["YourRef"]]
    numbers = {o["number"] for o in exh.shop_all("orders")}
    assert exact_only and all(str(o["OrderNumber"]) in numbers for o in exact_only)
    shop_codes = {p["sku"]: p for p in exh.shop_all("products")}
    item = next(i for i in items if i["Code"].strip() not in shop_products)
    product = shop_codes[item["Code"].strip()]          # an Exact item reached the webshop
    assert (product["name"], Decimal(product["price"]), product["gtin"]) == (
        item["Description"], item["StandardSalesPrice"], item["Barcode"])

    # the next run finds the access token expired: it rotates the refresh token once
    before = exh.tokens()
    exh.control("/_sandbox/expire-tokens")
    exh.clear_logs()
    status, report = exh.run()
    assert status == 0 and _written(report) == 0
    assert exh.writes("customwebshop") == {} and exh.writes("exact") == {}
    after_tokens = exh.tokens()
    assert after_tokens["version"] == before["version"] + 1
    assert after_tokens["refresh_token"] != before["refresh_token"]
    issued = requests.get(f"{exh.sandbox.root_url('exact')}/_sandbox/tokens", timeout=10).json()
    assert issued["current_refresh_token_sha256"] == hashlib.sha256(
        after_tokens["refresh_token"].encode()).hexdigest()
    token_calls = [e for e in exh.sandbox.requests("exact")["log"] if "/oauth2/token" in e["path"]]
    assert [e["status"] for e in token_calls] == [200]
    stale = requests.post(f"{exh.sandbox.url('exact')}/oauth2/token", data={
        "grant_type": "refresh_token", "refresh_token": before["refresh_token"],
        "client_id": ex.CLIENT_ID, "client_secret": exh.sandbox.api_key("exact")}, timeout=10)
    assert stale.status_code == 400 and stale.json()["error"] == "invalid_grant"

    # edits on both sides (one test with the first run: a first run is the slow part)
    shop = group_by(exh.shop_all("customers"), "email", True)
    accounts = group_by(exh.exact_all("crm/Accounts"), "Email", True)
    emails = sorted(set(shop) & set(accounts))
    items = group_by([{**i, "Code": i["Code"].strip()} for i in exh.exact_all("logistics/Items")],
                     "Code")
    products = group_by(exh.shop_all("products"), "sku")
    sku = sorted(set(items) & set(products))[0]
    exh.patch_shop("customers", shop[emails[0]][0]["id"], {"phone": "+47 400 00 001"})
    exh.exact_put("crm/Accounts", accounts[emails[1]][0]["ID"], {"City": "Tromsø"})
    exh.exact_put("logistics/Items", items[sku][0]["ID"], {"Description": "Termos 1 l, blå"})
    order = exh.shop_all("orders")[0]
    lines = [dict(line) for line in order["lines"]]
    lines[0]["quantity"] = "7"
    lines.append({"product_id": products[sku][0]["id"], "quantity": "2", "unit_price": "10.00"})
    exh.patch_shop("orders", order["id"], {"lines": lines})
    # a webshop customer with no name: Exact refuses an account without one (HTTP 400)
    nameless = exh.post("customwebshop", "customers", {"email": "no.name@example.net"})
    exh.clear_logs()

    status, report = exh.run()

    assert status == 3, report
    account = exh.exact_all("crm/Accounts")
    assert next(a for a in account if a["ID"] == accounts[emails[0]][0]["ID"])["Phone"] == \
        "+47 400 00 001"
    moved = exh.get("customwebshop", "customers", shop[emails[1]][0]["id"]).json()
    assert moved["address"]["city"] == "Tromsø"
    renamed = exh.get("customwebshop", "products", products[sku][0]["id"]).json()
    assert renamed["name"] == "Termos 1 l, blå"
    [exact_order] = group_by(exh.exact_all("salesorder/SalesOrders", expand=True),
                             "YourRef")[order["number"]]
    exact_lines = exact_order["SalesOrderLines"]["results"]
    assert ([line["Quantity"] for line in exact_lines]
            == [Decimal(line["quantity"]) for line in lines])
    assert exact_lines[-1]["ItemCode"].strip() == sku
    assert report["pairs"]["order"]["updated_source"] == 1

    letters = [json.loads(line) for line in (pathlib.Path(report["run_dir"]) /
                                              "dead_letters.jsonl").read_text().splitlines()]
    assert [(letter["error_class"], letter["status"], letter["entity_id"],
             letter["system"]) for letter in letters] == [
        ("permanent", 400, nameless["id"], "customwebshop")]
    assert "Mandatory: Name" in letters[0]["message"]
    posts = [e for e in exh.sandbox.requests("exact")["log"]
             if e["method"] == "POST" and e["path"].endswith("/crm/Accounts")]
    assert [e["status"] for e in posts] == [400]        # sent once, never retried
    tokens = exh.tokens()
    secrets = (tokens["access_token"], tokens["refresh_token"], exh.sandbox.api_key("exact"))
    for path in pathlib.Path(report["run_dir"]).rglob("*"):
        text = path.read_bytes().decode("utf-8", errors="replace")
        assert not any(secret in text for secret in secrets), path


def test_a_process_killed_after_rotating_leaves_a_working_refresh_token(exh):
    exh.control("/_sandbox/expire-tokens")
    before = exh.tokens()
    script = ("import sys, time\n"
              "from connectors import connector_for\n"
              "from pipelines.config import load_config\n"
              f"connector = connector_for(load_config({exh.config!r}).system('exact'))\n"
              "print(sum(1 for _ in connector.read('Accounts')), flush=True)\n"
              "time.sleep(120)\n")
    worker = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                              cwd=str(pathlib.Path(__file__).resolve().parent.parent),
                              env=dict(os.environ))
    try:
        assert worker.stdout.readline().strip() == "40"      # it rotated, then read
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=30)
    finally:
        if worker.poll() is None:
            worker.kill()
    assert worker.returncode == -signal.SIGKILL
    rotated = exh.tokens()
    assert rotated["version"] == before["version"] + 1

    exh.control("/_sandbox/expire-tokens")
    status, report = exh.run("--plan", "--pairs", "customer")
    assert status == 0, report
    assert report["pairs"]["customer"]["read_source"] == 40
    assert exh.tokens()["version"] == rotated["version"] + 1
