"""The Sandbox runner and what every emulator shares: config, persistence, faults, rate limits,
request log, reset, thread safety, and the deterministic seed data."""

from __future__ import annotations

import json
import logging
import re
import socket
import threading
import time
from collections import Counter
from decimal import Decimal

import pytest
import requests
import yaml

from sandbox import faults as sandbox_faults
from sandbox import seed as seed_data
from sandbox.limits import RateLimit, RateLimiter
from sandbox.server import REGISTRY, SYSTEMS, Sandbox

WEBSHOP, ERP = "customwebshop", "customerp"


def auth(sb: Sandbox, system: str) -> dict[str, str]:
    key = sb.api_key(system)
    return {"X-Api-Key": key} if system == WEBSHOP else {"Authorization": f"ApiKey {key}"}


def call(sb: Sandbox, system: str, method: str, path: str, **kwargs) -> requests.Response:
    headers = {**auth(sb, system), **kwargs.pop("headers", {})}
    return requests.request(method, sb.url(system) + path, headers=headers, timeout=10, **kwargs)


def everything(sb: Sandbox, system: str) -> dict[str, list[dict]]:
    """All entities of every resource, as listed (webshop: all pages; ERP: one 1000-row page)."""
    result = {}
    for resource in REGISTRY[system].emulator.key_fields:
        if system == WEBSHOP:
            rows, token = [], None
            while True:
                params = {"page_size": 500, **({"page_token": token} if token else {})}
                page = call(sb, system, "GET", f"/{resource}", params=params).json()
                rows += page["data"]
                if not (token := page["next_page_token"]):
                    break
        else:
            rows = json.loads(call(sb, system, "GET", f"/{resource}", params={"limit": 1000}).text,
                              parse_float=Decimal)["items"]
        result[resource] = rows
    return result


@pytest.fixture(scope="module")
def shared_sandbox(tmp_path_factory):
    with Sandbox(tmp_path_factory.mktemp("sandbox"), base_port=0) as sb:
        yield sb


@pytest.fixture
def sb(shared_sandbox):
    for system in SYSTEMS:
        shared_sandbox.reset(system)
    return shared_sandbox


@pytest.fixture(scope="module")
def seeded(shared_sandbox):
    """Both systems' seed data as served (read once)."""
    for system in SYSTEMS:
        shared_sandbox.reset(system)
    return {system: everything(shared_sandbox, system) for system in SYSTEMS}


# -- the runner -------------------------------------------------------------------------------


def test_urls_keys_environ_and_config(sb):
    assert SYSTEMS == ("customwebshop", "customerp")
    shop_port = int(sb.root_url(WEBSHOP).rsplit(":", 1)[1])
    erp_port = int(sb.root_url(ERP).rsplit(":", 1)[1])
    assert sb.root_url(WEBSHOP) == f"http://127.0.0.1:{shop_port}"
    assert sb.url(WEBSHOP) == f"http://127.0.0.1:{shop_port}/api/v1"
    assert sb.url(ERP) == f"http://127.0.0.1:{erp_port}/erp/v1"
    assert shop_port != erp_port
    assert sb.api_key(WEBSHOP) != sb.api_key(ERP)
    assert sb.api_key(WEBSHOP) == Sandbox("unused", seed=42).api_key(WEBSHOP) != Sandbox("unused",
                                                                                         seed=7).api_key(WEBSHOP)
    assert sb.environ() == {
        "TALKSYNC_SANDBOX_CUSTOMWEBSHOP_API_KEY": sb.api_key(WEBSHOP),
        "TALKSYNC_SANDBOX_CUSTOMERP_API_KEY": sb.api_key(ERP),
    }
    text = sb.config_path.read_text(encoding="utf-8")
    assert sb.config_path == sb.state_dir / "talksync.yaml"
    assert text.startswith("# Written by `talksync sandbox serve`: a ready config for the "
                           "sandbox systems.\n")
    assert yaml.safe_load(text) == {
        "link_store": f"sqlite:///{sb.state_dir}/links.db",
        "runs_dir": f"{sb.state_dir}/runs",
        "systems": {
            WEBSHOP: {"type": WEBSHOP, "base_url": sb.url(WEBSHOP), "api_key": sb.api_key(WEBSHOP)},
            ERP: {"type": ERP, "base_url": sb.url(ERP), "api_key": sb.api_key(ERP)},
        },
    }
    assert f"  customerp:\n    type: customerp\n    base_url: {sb.url(ERP)}\n" in text
    assert f"    api_key: {sb.api_key(ERP)}  # the sandbox's own local key\n" in text


def test_only_127_0_0_1_is_bound(sb):
    port = int(sb.root_url(WEBSHOP).rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=5):
        pass
    # Another loopback address reaches a server bound to every interface, not one bound to
    # 127.0.0.1.
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.2", port), timeout=5).close()


def _free_base_port() -> int:
    for base in range(21700, 60000, 97):
        try:
            sockets = [socket.create_server(("127.0.0.1", base + offset)) for offset in (1, 2)]
        except OSError:
            continue
        for held in sockets:
            held.close()
        return base
    pytest.skip("no free port pair")


def test_fixed_ports_are_base_plus_offset_and_a_taken_port_raises(tmp_path):
    assert REGISTRY[WEBSHOP].port_offset == 1 and REGISTRY[ERP].port_offset == 2
    base = _free_base_port()
    with Sandbox(tmp_path, base_port=base, systems=(ERP, WEBSHOP)) as sb:
        assert sb.root_url(WEBSHOP) == f"http://127.0.0.1:{base + 1}"
        assert sb.url(ERP) == f"http://127.0.0.1:{base + 2}/erp/v1"
        blocked = Sandbox(tmp_path / "other", base_port=base, systems=(ERP,))
        with pytest.raises(OSError):
            blocked.start()
        with pytest.raises(RuntimeError):
            blocked.url(ERP)


def test_systems_can_be_chosen_and_unknown_ones_are_refused(tmp_path):
    with pytest.raises(ValueError):
        Sandbox(tmp_path, systems=("sap",))
    with Sandbox(tmp_path, base_port=0, systems=(ERP,)) as sb:
        assert list(sb.environ()) == ["TALKSYNC_SANDBOX_CUSTOMERP_API_KEY"]
        assert list(yaml.safe_load(sb.config_path.read_text())["systems"]) == [ERP]
        with pytest.raises(RuntimeError):
            sb.url(WEBSHOP)
    sb.stop()  # stopping twice is harmless


def test_request_logger_is_silent(sb, caplog):
    with caplog.at_level(logging.DEBUG):
        call(sb, WEBSHOP, "GET", "/customers", params={"page_size": 1})
        call(sb, ERP, "GET", "/Nothing")
    assert [r for r in caplog.records if r.name.startswith("werkzeug")] == []


# -- persistence ------------------------------------------------------------------------------


def test_state_survives_stop_and_start(tmp_path):
    with Sandbox(tmp_path, base_port=0) as sb:
        created = call(sb, WEBSHOP, "POST", "/customers", json={"email": "varig@example.com"},
                       headers={"Idempotency-Key": "once"})
        call(sb, WEBSHOP, "PATCH", f"/customers/{created.json()['id']}",
             json={"first_name": "Varig"})
        deleted = call(sb, ERP, "DELETE", "/Customers/C10001")
        product = call(sb, ERP, "POST", "/Products",
                       data=b'{"ItemNo": "P-1", "Description": "Varig", "SalesPrice": 19.95}')
        assert (created.status_code, deleted.status_code, product.status_code) == (201, 204, 201)
    assert not list(tmp_path.glob("*.tmp"))
    assert {p.name for p in tmp_path.iterdir()} >= {"customwebshop.json", "customerp.json",
                                                    "talksync.yaml"}
    with Sandbox(tmp_path, base_port=0) as sb:
        customer = call(sb, WEBSHOP, "GET", f"/customers/{created.json()['id']}")
        assert customer.headers["ETag"] == '"2"' and customer.json()["first_name"] == "Varig"
        replay = call(sb, WEBSHOP, "POST", "/customers", json={"email": "x@example.com"},
                      headers={"Idempotency-Key": "once"})
        assert replay.headers["Idempotent-Replayed"] == "true"
        assert replay.json()["id"] == created.json()["id"]
        assert call(sb, ERP, "GET", "/Customers/C10001").status_code == 404
        assert '"SalesPrice":19.95,' in call(sb, ERP, "GET", "/Products/P-1").text
        later = call(sb, WEBSHOP, "POST", "/customers", json={"email": "later@example.com"}).json()
        assert later["id"] == "cus_000302" and later["updated_at"] > customer.json()["updated_at"]


def test_state_is_flushed_in_the_background_while_running(tmp_path):
    with Sandbox(tmp_path, base_port=0, systems=(ERP,)) as sb:
        call(sb, ERP, "POST", "/Products", json={"ItemNo": "BG-1", "Description": "Bakgrunn"})
        state = tmp_path / "customerp.json"
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and "BG-1" not in (
                state.read_text(encoding="utf-8") if state.exists() else ""):
            time.sleep(0.05)  # waits for the flusher (every ~2 s), not for a fixed time
        saved = json.loads(state.read_text(encoding="utf-8"))
        assert saved["system"] == ERP and saved["format"] == 1
        assert "BG-1" in [row["entity"]["ItemNo"] for row in saved["collections"]["Products"]]


def test_a_long_flush_interval_still_saves_the_writes_on_stop(tmp_path):
    """The option the benchmark over a million rows sets (no background dump of hundreds of MB
    while it measures) reaches the emulator, and its writes are saved when the sandbox stops."""
    unflushed = {ERP: {"state_flush_s": 3600.0}}
    with Sandbox(tmp_path, base_port=0, systems=(ERP,), options=unflushed) as sb:
        created = call(sb, ERP, "POST", "/Products",
                       json={"ItemNo": "LATE-1", "Description": "Sen"})
        assert created.status_code == 201
    saved = json.loads((tmp_path / "customerp.json").read_text(encoding="utf-8"))
    assert "LATE-1" in [row["entity"]["ItemNo"] for row in saved["collections"]["Products"]]


# -- faults -----------------------------------------------------------------------------------


def test_error_rate_fails_before_doing_anything_in_each_apis_error_shape(sb):
    sb.set_faults(WEBSHOP, error_rate=1, status=503)
    failed = call(sb, WEBSHOP, "POST", "/customers", json={"email": "never@example.com"})
    assert failed.status_code == 503
    assert failed.json() == {"error": {"code": "unavailable",
                                       "message": "sandbox fault: injected 503", "details": []}}
    sb.set_faults(WEBSHOP)
    assert call(sb, WEBSHOP, "GET", "/customers/cus_000301").status_code == 404
    sb.set_faults(ERP, error_rate=1, status=500)
    assert call(sb, ERP, "GET", "/Customers").json() == {
        "Error": {"Code": "InternalError", "Message": "sandbox fault: injected 500", "Field": None}
    }
    sb.set_faults(ERP, error_rate=1, status=429)
    limited = call(sb, ERP, "GET", "/Customers")
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "1"
    assert limited.json()["Error"]["Code"] == "TooManyRequests"
    sb.set_faults(ERP, error_rate=1, status=502)
    assert requests.get(sb.url(ERP) + "/Customers",
                        timeout=10).status_code == 502  # before the key check


def test_only_limits_faults_to_some_methods(sb):
    sb.set_faults(WEBSHOP, error_rate=1, only=["post", "PATCH"])
    assert call(sb, WEBSHOP, "GET", "/products", params={"page_size": 1}).status_code == 200
    assert call(sb, WEBSHOP, "POST", "/products", json={}).status_code == 503
    assert call(sb, WEBSHOP, "PATCH", "/products/prd_000001", json={}).status_code == 503


def test_faults_are_reproducible_for_a_seed(sb):
    def statuses() -> list[int]:
        sb.set_faults(ERP, error_rate=0.5, seed=1)
        return [call(sb, ERP, "GET", "/Customers",
                     params={"limit": 1}).status_code for _ in range(20)]

    first = statuses()
    assert first == statuses()
    assert set(first) == {200, 503}


def test_latency_delays_the_response(sb):
    sb.set_faults(WEBSHOP, latency_ms=150)
    started = time.monotonic()
    assert call(sb, WEBSHOP, "GET", "/orders", params={"page_size": 1}).status_code == 200
    assert time.monotonic() - started >= 0.15


def test_a_lost_response_commits_then_drops_the_connection(sb, caplog):
    sb.set_faults(WEBSHOP, lost_response_rate=1, only=["POST"])
    with caplog.at_level(logging.INFO), pytest.raises(requests.ConnectionError):
        call(sb, WEBSHOP, "POST", "/customers", json={"email": "lost@example.com"},
             headers={"Idempotency-Key": "lost-1"})
    assert caplog.records == []  # dropped on purpose: nothing for the server to complain about
    sb.set_faults(WEBSHOP)
    assert call(sb, WEBSHOP, "GET", "/customers/cus_000301").json()["email"] == "lost@example.com"
    retry = call(sb, WEBSHOP, "POST", "/customers", json={"email": "lost@example.com"},
                 headers={"Idempotency-Key": "lost-1"})
    assert retry.headers["Idempotent-Replayed"] == "true" and retry.json()["id"] == "cus_000301"
    log = sb.requests(WEBSHOP)["log"]
    assert log[0] == {"method": "POST", "path": "/api/v1/customers", "status": 201,
                      "at": log[0]["at"], "lost": True}
    assert "lost" not in log[1]

    sb.set_faults(ERP, lost_response_rate=1)
    with pytest.raises(requests.ConnectionError):
        call(sb, ERP, "PUT", "/Customers/C10002", json={"Phone": "+4799999999"})
    sb.set_faults(ERP)
    committed = call(sb, ERP, "GET", "/Customers/C10002")
    assert committed.json()["Phone"] == "+4799999999" and committed.headers["ETag"] == '"2"'


@pytest.fixture
def limiter_clock(monkeypatch):
    """The emulators' rate-limit windows on a clock the test moves (they run in this process):
    a window ends when the test says so, not when the machine gets round to it."""
    now = [1000.0]
    monkeypatch.setattr(sandbox_faults, "RateLimiter",
                        lambda rule: RateLimiter(rule, clock=lambda: now[0]))
    return now


def test_rate_limit_answers_429_with_headers_until_the_window_ends(sb, limiter_clock):
    sb.set_faults(ERP, rate_limit={"limit": 3, "window_s": 1})
    seen = []
    for _ in range(3):
        response = call(sb, ERP, "GET", "/Products", params={"limit": 1})
        assert response.status_code == 200
        seen.append(response.headers["X-RateLimit-Remaining"])
        assert response.headers["X-RateLimit-Limit"] == "3"
        assert response.headers["X-RateLimit-Reset"] == "1"
    assert seen == ["2", "1", "0"]
    refused = call(sb, ERP, "GET", "/Products", params={"limit": 1})
    assert refused.status_code == 429
    assert refused.json() == {"Error": {"Code": "TooManyRequests",
                                        "Message": "rate limit of 3 requests exceeded; retry later",
                                        "Field": None}}
    assert refused.headers["Retry-After"] == "1" and refused.headers["X-RateLimit-Remaining"] == "0"
    assert sb.requests(ERP)["by_method"] == {"GET": 4}
    limiter_clock[0] += 0.99
    assert call(sb, ERP, "GET", "/Products", params={"limit": 1}).status_code == 429
    limiter_clock[0] += float(refused.headers["Retry-After"]) - 0.99  # the window has passed
    assert call(sb, ERP, "GET", "/Products", params={"limit": 1}).status_code == 200


@pytest.mark.parametrize("sliding, answers", [
    (False, [True, True, False, True, True]),   # a fresh window at 10.5 admits two more
    (True, [True, True, False, True, False]),   # at 11 the request of 6 s is still in the window
])
def test_fixed_and_sliding_windows(sliding, answers):
    now = [0.0]
    limiter = RateLimiter(RateLimit(2, 10.0, sliding=sliding), clock=lambda: now[0])
    seen = []
    for moment in (0.0, 6.0, 9.0, 10.5, 11.0):
        now[0] = moment
        seen.append(limiter.hit("key").allowed)
    assert seen == answers
    assert limiter.hit("other key").allowed      # each key on its own


def test_rate_limit_true_is_the_systems_own_limit(sb, limiter_clock):
    assert sb.set_faults(WEBSHOP, rate_limit=True)["rate_limit"] == {"limit": 20, "window_s": 1}
    responses = [call(sb, WEBSHOP, "GET", "/orders", params={"page_size": 1}) for _ in range(21)]
    assert responses[0].headers["X-RateLimit-Limit"] == "20"
    assert responses[0].headers["X-RateLimit-Remaining"] == "19"
    assert [r.status_code for r in responses] == [200] * 20 + [429]   # one window: the clock stood
    assert sb.set_faults(ERP, rate_limit=True)["rate_limit"] == {"limit": 600, "window_s": 60}
    first = call(sb, ERP, "GET", "/Orders", params={"limit": 1})
    assert first.headers["X-RateLimit-Limit"] == "600"
    assert first.headers["X-RateLimit-Remaining"] == "599"
    assert first.headers["X-RateLimit-Reset"] == "60"
    assert requests.get(sb.url(ERP) + "/Orders",
                        timeout=10).status_code == 401  # no key: not counted
    assert call(sb, ERP, "GET", "/Orders",
                params={"limit": 1}).headers["X-RateLimit-Remaining"] == "598"


def test_fault_settings_are_validated_and_readable(sb):
    response = requests.post(sb.root_url(WEBSHOP) + "/_sandbox/faults", json={"error_rate": 2,
                                                                              "status": 404,
                                                                              "bogus": 1},
                                                                              timeout=10)
    assert response.status_code == 422
    assert [d["field"] for d in response.json()["error"]["details"]] == ["error_rate", "status",
                                                                         "bogus"]
    erp = requests.post(sb.root_url(ERP) + "/_sandbox/faults", json={"rate_limit": {"limit": 0,
                                                                                    "window_s": 1}},
                                                                                    timeout=10)
    assert erp.status_code == 400 and erp.json()["Error"]["Field"] == "rate_limit"
    active = sb.set_faults(ERP, error_rate=0.25, latency_ms=5, only=["GET"], seed=3)
    assert active == {"error_rate": 0.25, "status": 503, "latency_ms": 5, "lost_response_rate": 0.0,
                      "rate_limit": None, "seed": 3, "only": ["GET"], "corrupt": None}
    assert requests.get(sb.root_url(ERP) + "/_sandbox/faults", timeout=10).json() == active
    cleared = sb.set_faults(ERP)
    assert cleared["error_rate"] == 0 and cleared["only"] is None
    with pytest.raises(ValueError, match="lost_response_rate"):
        sb.set_faults(WEBSHOP, lost_response_rate=-1)


def test_control_endpoints_are_never_faulted_logged_or_authenticated(sb):
    sb.set_faults(ERP, error_rate=1, rate_limit={"limit": 1, "window_s": 60})
    for _ in range(3):
        assert requests.get(sb.root_url(ERP) + "/_sandbox/requests", timeout=10).status_code == 200
    assert sb.requests(ERP)["count"] == 0
    assert requests.get(sb.root_url(ERP) + "/_sandbox/nothing", timeout=10).status_code == 404


# -- request log and reset --------------------------------------------------------------------


def test_request_log_counts_everything_and_keeps_the_last_1000(sb):
    session = requests.Session()
    headers = auth(sb, WEBSHOP)
    for index in range(1003):
        session.get(sb.url(WEBSHOP) + f"/products/prd_{index % 200 + 1:06d}", headers=headers,
                    timeout=10)
    session.post(sb.url(WEBSHOP) + "/products", json={}, headers=headers, timeout=10)
    session.get(sb.url(WEBSHOP) + "/products", timeout=10)
    log = sb.requests(WEBSHOP)
    assert log["count"] == 1005 and log["by_method"] == {"GET": 1004, "POST": 1}
    assert len(log["log"]) == 1000
    assert log["log"][-2:] == [
        {"method": "POST", "path": "/api/v1/products", "status": 422, "at": log["log"][-2]["at"]},
        {"method": "GET", "path": "/api/v1/products", "status": 401, "at": log["log"][-1]["at"]},
    ]
    assert log["log"][0]["path"] == "/api/v1/products/prd_000006"
    assert all(re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$",
                        entry["at"]) for entry in log["log"])
    sb.clear_requests(WEBSHOP)
    assert sb.requests(WEBSHOP) == {"count": 0, "by_method": {}, "log": []}


def test_reset_restores_the_seed_and_clears_log_and_faults(sb, seeded):
    call(sb, WEBSHOP, "DELETE", "/customers/cus_000001")
    call(sb, WEBSHOP, "POST", "/customers", json={"email": "temp@example.com"},
         headers={"Idempotency-Key": "r"})
    sb.set_faults(WEBSHOP, latency_ms=1)
    response = requests.post(sb.root_url(WEBSHOP) + "/_sandbox/reset", timeout=10)
    assert response.json() == {"reset": True, "counts": {"customers": 300, "products": 200,
                                                         "orders": 250}}
    assert sb.requests(WEBSHOP)["count"] == 0
    assert requests.get(sb.root_url(WEBSHOP) + "/_sandbox/faults",
                        timeout=10).json()["latency_ms"] == 0
    assert everything(sb, WEBSHOP) == seeded[WEBSHOP]
    fresh = call(sb, WEBSHOP, "POST", "/customers", json={"email": "temp@example.com"},
                 headers={"Idempotency-Key": "r"})
    assert "Idempotent-Replayed" not in fresh.headers and fresh.json()["id"] == "cus_000301"


def test_concurrent_writes_are_all_applied_with_distinct_timestamps(sb):
    def create(worker: int) -> None:
        session = requests.Session()
        for index in range(25):
            response = session.post(sb.url(ERP) + "/Customers",
                                    json={"Name": f"Tråd {worker}-{index}"}, headers=auth(sb, ERP),
                                    timeout=10)
            results.append(response.json())

    results: list[dict] = []
    threads = [threading.Thread(target=create, args=(worker,)) for worker in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    numbers = {r["CustomerNo"] for r in results}
    assert numbers == {f"C{n}" for n in range(10251, 10451)}
    assert len({r["ModifiedAt"] for r in results}) == 200


# -- seed data --------------------------------------------------------------------------------


def test_seed_data_is_a_pure_function_of_the_seed(tmp_path, seeded):
    with Sandbox(tmp_path / "a", base_port=0, seed=42) as again:
        assert {system: everything(again, system) for system in SYSTEMS} == seeded
    assert seed_data.webshop_seed(42) == seed_data.webshop_seed(42)
    assert seed_data.erp_seed(7) != seed_data.erp_seed(42)


def test_seed_sizes(seeded):
    assert {k: len(v) for k, v in seeded[WEBSHOP].items()} == {"customers": 300, "products": 200,
                                                               "orders": 250}
    assert {k: len(v) for k, v in seeded[ERP].items()} == {"Customers": 250, "Products": 200,
                                                           "Orders": 200}


def test_seed_overlap_exercises_first_link_matching(seeded):
    shop, erp = seeded[WEBSHOP], seeded[ERP]
    shop_by_email = {c["email"]: c for c in shop["customers"]}
    erp_by_email = {c["Email"]: c for c in erp["Customers"] if c["Email"]}
    assert len(shop_by_email) == 300
    assert len(erp_by_email) == len([c for c in erp["Customers"] if c["Email"]])
    shared_emails = set(shop_by_email) & set(erp_by_email)
    assert len(shared_emails) == 40
    assert not any(shop_by_email[e]["deleted"] for e in shared_emails)
    pairs = [(shop_by_email[e], erp_by_email[e]) for e in shared_emails]
    assert any(s["phone"] and not e["Phone"] for s, e in pairs)
    assert any(e["Phone"] and not s["phone"] for s, e in pairs)
    assert any(s["phone"] and e["Phone"] and s["phone"] != e["Phone"] for s, e in pairs)
    assert all(e["Name"] in (s["company_name"], f"{s['first_name']} {s['last_name']}") for s,
               e in pairs)

    shop_by_sku = {p["sku"]: p for p in shop["products"]}
    erp_by_item = {p["ItemNo"]: p for p in erp["Products"]}
    shared_skus = set(shop_by_sku) & set(erp_by_item)
    assert len(shared_skus) == 30
    assert all(shop_by_sku[s]["gtin"] == erp_by_item[s]["Gtin"] is not None for s in shared_skus)
    assert all(re.match(r"^IT-\d{5}$", item) for item in set(erp_by_item) - shared_skus)
    assert not any(re.match(r"^IT-", sku) for sku in shop_by_sku)

    shop_orders = {o["number"]: o for o in shop["orders"]}
    shared_orders = set(shop_orders) & {o["OrderNo"] for o in erp["Orders"]}
    assert len(shared_orders) == 5
    shop_customer_email = {c["id"]: c["email"] for c in shop["customers"]}
    shop_product_sku = {p["id"]: p["sku"] for p in shop["products"]}
    erp_customer_email = {c["CustomerNo"]: c["Email"] for c in erp["Customers"]}
    for erp_order in (o for o in erp["Orders"] if o["OrderNo"] in shared_orders):
        shop_order = shop_orders[erp_order["OrderNo"]]
        email = shop_customer_email[shop_order["customer_id"]]
        assert email in shared_emails and erp_customer_email[erp_order["CustomerNo"]] == email
        skus = [shop_product_sku[line["product_id"]] for line in shop_order["lines"]]
        assert set(skus) <= shared_skus and skus == [line["ItemNo"] for line in erp_order["Lines"]]
        assert ([Decimal(line["quantity"]) for line in shop_order["lines"]]
                == [line["Qty"] for line in erp_order["Lines"]])


def _gtin_ok(gtin: str) -> bool:
    digits = [int(d) for d in gtin]
    return len(gtin) == 13 and sum(d * (3 if i % 2 else 1) for i, d in enumerate(digits)) % 10 == 0


def test_seed_values_are_realistic(seeded):
    shop, erp = seeded[WEBSHOP], seeded[ERP]
    text = json.dumps(seeded, ensure_ascii=False, default=str)
    for char in "æøåÆØÅüéłß":
        assert char in text, char
    assert any(re.search(r"[\U0001F300-\U0001FAFF☕]",
                         p["description"] or "") for p in shop["products"])
    assert any(re.search(r"[\u0590-\u08FF]", c["first_name"] or "") for c in shop["customers"])
    assert all(_gtin_ok(p["gtin"]) for p in shop["products"] if p["gtin"])
    assert all(_gtin_ok(p["Gtin"]) for p in erp["Products"] if p["Gtin"])
    assert all(re.match(r"^\d+\.\d{2}$", p["price"]) for p in shop["products"])
    assert all(p["SalesPrice"] == p["SalesPrice"].quantize(Decimal("0.01"))
               for p in erp["Products"])
    vat = {"3": "25.00", "31": "15.00", "33": "12.00", "5": "0.00"}
    assert {p["VatCode"] for p in erp["Products"]} == set(vat)
    assert {p["vat_rate"] for p in shop["products"]} <= set(vat.values())
    shop_by_sku = {p["sku"]: p for p in shop["products"]}
    assert all(vat[p["VatCode"]] == shop_by_sku[p["ItemNo"]]["vat_rate"]
               for p in erp["Products"] if p["ItemNo"] in shop_by_sku)
    assert all(type(p["StockQty"]) is int for p in erp["Products"])
    units = Counter(p["Unit"] for p in erp["Products"])
    assert units.most_common(1)[0][0] == "pcs" and units["pcs"] > 0.9 * len(erp["Products"])
    assert all(1 <= len(o["lines"]) <= 5 for o in shop["orders"])
    assert all(1 <= len(o["Lines"]) <= 5 for o in erp["Orders"])
    stamps = ([r["updated_at"] for rows in shop.values() for r in rows]
              + [r["ModifiedAt"] for rows in erp.values() for r in rows])
    assert all("2025-10-03T00:00:00" <= s < "2026-01-01T00:00:00" for s in stamps)
    assert re.match(r"^\+47 \d{3} \d{2} \d{3}$",
                    next(c["phone"] for c in shop["customers"]
                         if c["address"]["country"] == "NO" and c["phone"]))
    org_numbers = [c["OrgNo"] for c in erp["Customers"] if c["OrgNo"] and c["CountryCode"] == "NO"]
    weights = (3, 2, 7, 6, 5, 4, 3, 2)
    assert org_numbers and all(
        (11 - sum(int(d) * w for d, w in zip(org, weights, strict=False)) % 11) % 11
        == int(org[8]) for org in org_numbers
    )
