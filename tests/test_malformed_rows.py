"""One malformed row is one dead letter in every connector (issue 17, the connector kit).

End to end, the real pipeline against the sandbox over HTTP: the emulator of Business Central,
Business NXT or Exact Online serves one customer row that is not a record (its modified time is
no timestamp: the sandbox's ``/_sandbox/malformed-rows`` hook changes the row in every answer,
as the API's own validation would never let it be stored), and the first sync makes exactly
one read dead letter of it, naming the row's id and what is wrong, while every other record
syncs. Before the shared row reader
(connectors/paging.py, ``HttpConnector._read_rows``) such a row failed the whole pair in these
three connectors; the custom systems' cases are in tests/test_bad_input.py.
"""

from __future__ import annotations

import json
import pathlib

import requests

from sandbox import businesscentral as bc
from sandbox.seed_businesscentral import SHARED_CUSTOMERS as BC_SHARED
from sandbox.seed_businessnxt import SHARED_ADDRESSES as NXT_SHARED
from tests.conftest import SyncHarness
from tests.test_sandbox_businessnxt import Gql
from tests.test_sync_exact_customwebshop import ExactHarness

SHOP = "customwebshop"


def _letters(report: dict) -> list[dict]:
    path = pathlib.Path(report["run_dir"]) / "dead_letters.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def _shop_emails(h: SyncHarness) -> set[str]:
    return {c["email"].lower() for c in h.shop_all("customers") if c.get("email")}


def _assert_one_letter(h: SyncHarness, dataflow: str, system: str, entity: str,
                       entity_id: str, says: str) -> dict:
    """The run ends with exit status 3 and exactly one dead letter: the read letter of the
    corrupted row. Returns the run's customer-pair counts."""
    status, report = SyncHarness.run(h, dataflow=dataflow)
    letters = _letters(report)
    assert status == 3, report
    assert len(letters) == 1, [(letter["stage"], letter["message"]) for letter in letters]
    [letter] = letters
    assert (letter["system"], letter["entity"], letter["entity_id"], letter["stage"],
            letter["error_class"]) == (system, entity, entity_id, "read", "validation"), letter
    assert letter["message"].startswith(f"unreadable {entity} row: ") and says in \
        letter["message"], letter["message"]
    return report["pairs"]["customer"]


def test_business_central_serves_one_malformed_customer(sandbox_of, tmp_path):
    sandbox = sandbox_of(SHOP, "businesscentral")
    h = SyncHarness(sandbox, tmp_path)
    session = requests.Session()
    token = session.post(bc.BusinessCentral.connector_settings(
        sandbox.root_url("businesscentral"))["token_url"], data={
            "grant_type": "client_credentials", "client_id": bc.CLIENT_ID,
            "client_secret": sandbox.api_key("businesscentral"), "scope": bc.SCOPE},
        timeout=10).json()["access_token"]
    session.headers["Authorization"] = f"Bearer {token}"
    company = f"{sandbox.url('businesscentral')}/companies({bc.COMPANY_ID})"
    customers = session.get(f"{company}/customers", timeout=30).json()["value"]
    ordering = {o["customerId"] for o in session.get(f"{company}/salesOrders",
                                                      timeout=30).json()["value"]}
    bad = next(c for c in customers[BC_SHARED:] if c["id"] not in ordering)
    sandbox.malformed_rows("businesscentral", {"match": {"id": bad["id"]},
                                               "set": {"lastModifiedDateTime": "yesterday"}})

    counts = _assert_one_letter(h, "customwebshop-businesscentral", "businesscentral",
                                "customers", bad["id"],
                                "its lastModifiedDateTime 'yesterday' is not an ISO 8601")

    assert counts["created_in_source"] == len(customers) - BC_SHARED - 1
    emails = _shop_emails(h)
    assert bad["email"].lower() not in emails
    assert {c["email"].lower() for c in customers if c["id"] != bad["id"]} <= emails


def test_business_nxt_serves_one_malformed_address(sandbox_of, tmp_path):
    sandbox = sandbox_of(SHOP, "businessnxt")
    h = SyncHarness(sandbox, tmp_path)
    gql = Gql(sandbox)
    addresses = gql.rows("address", "addressNo emailAddress")
    ordering = {o["customerNo"] for o in gql.rows("order", "customerNo")}
    bad = next(a for a in addresses[NXT_SHARED:] if a["addressNo"] not in ordering)
    sandbox.malformed_rows("businessnxt", {"match": {"addressNo": bad["addressNo"]},
                                           "set": {"changedTimestamp": "the day before yesterday"}})

    counts = _assert_one_letter(h, "customwebshop-businessnxt", "businessnxt", "address",
                                str(bad["addressNo"]),
                                "its changedTimestamp 'the day before yesterday' is not a "
                                "timestamp")

    assert counts["created_in_source"] == len(addresses) - NXT_SHARED - 1
    emails = _shop_emails(h)
    assert bad["emailAddress"].lower() not in emails
    assert {a["emailAddress"].lower() for a in addresses
            if a["addressNo"] != bad["addressNo"] and a["emailAddress"]} <= emails


def test_exact_serves_one_malformed_account(sandbox_of, tmp_path):
    h = ExactHarness(sandbox_of(SHOP, "exact"), tmp_path)
    accounts = [a for a in h.exact_all("crm/Accounts") if a["Status"] == "C"]
    ordering = {o["OrderedBy"] for o in h.exact_all("salesorder/SalesOrders")}
    before = _shop_emails(h)
    bad = next(a for a in accounts if a["ID"] not in ordering and a["Email"]
               and a["Email"].lower() not in before)
    h.sandbox.malformed_rows("exact", {"match": {"ID": bad["ID"]},
                                       "set": {"Modified": "/Date(soon)/"}})

    counts = _assert_one_letter(h, "exact-customwebshop", "exact", "Accounts", bad["ID"],
                                "its Modified '/Date(soon)/' is not an ISO 8601 timestamp")

    # every other account created in the webshop or linked to its match
    assert counts["created_in_target"] + counts["linked_by_match"] // 2 == len(accounts) - 1
    emails = _shop_emails(h)
    assert bad["Email"].lower() not in emails
    assert {a["Email"].lower() for a in accounts if a["ID"] != bad["ID"] and a["Email"]} <= emails
