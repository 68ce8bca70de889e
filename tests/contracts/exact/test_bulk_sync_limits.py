"""Exact's bulk and sync APIs (1,000 rows a call, ``$select`` required, the ``Timestamp``
cursor, ``sync/Deleted``) and its API limits (the six ``X-RateLimit-*`` headers, 429), as
its knowledge base and reference pages document them."""

from __future__ import annotations

import pytest

from tests.contracts.exact.conftest import error_value
from tests.contracts.exact.sources import API_LIMITS, ODATA_PRACTICES, reference_page, source

LIMIT_HEADERS = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset",
                 "X-RateLimit-Minutely-Limit", "X-RateLimit-Minutely-Remaining",
                 "X-RateLimit-Minutely-Reset")


@pytest.fixture(scope="module", autouse=True)
def _70_accounts(exact):
    """30 accounts more than the seed's 40: more than a regular page of 60."""
    for number in range(30):
        assert exact.json("POST", "crm/Accounts", json={"Name": f"Bulk {number}"})[0] == 201


@pytest.mark.parametrize("path", ["bulk/CRM/Accounts", "bulk/Logistics/Items",
                                  "bulk/SalesOrder/SalesOrderLines", "sync/CRM/Accounts",
                                  "sync/Logistics/Items", "sync/SalesOrder/SalesOrders",
                                  "sync/Deleted"])
@source(ODATA_PRACTICES, reference_page("BulkSalesOrderSalesOrderLines"),
        reference_page("SyncCRMAccounts"))
def test_bulk_and_sync_endpoints_require_select(exact, path):
    """Source: ODATA_PRACTICES ("API types": bulk "``$select`` required") and
    reference_page("BulkSalesOrderSalesOrderLines"), reference_page("SyncCRMAccounts"): a
    request without ``$select`` is refused, 400 in Exact's error shape."""
    status, body = exact.json("GET", path, params={"$filter": "Timestamp gt 1L"}
                              if path.startswith("sync/") else None)
    assert status == 400 and "$select" in error_value(body)


@source(ODATA_PRACTICES)
def test_bulk_pages_hold_1000(exact):
    """Source: ODATA_PRACTICES ("API types": bulk 1,000 records a call, regular 60): all 70
    accounts in one bulk page, where the regular endpoint needs two."""
    bulk = exact.json("GET", "bulk/CRM/Accounts", params={"$select": "ID,Name"})[1]["d"]
    regular = exact.json("GET", "crm/Accounts", params={"$select": "ID,Name"})[1]["d"]
    assert len(bulk["results"]) == 70 and "__next" not in bulk
    assert len(regular["results"]) == 60 and "__next" in regular


@source(reference_page("SyncCRMAccounts"), ODATA_PRACTICES)
def test_sync_rows_come_in_timestamp_order_after_the_given_timestamp(exact):
    """Source: reference_page("SyncCRMAccounts") (``$filter=Timestamp gt 1`` … ``Timestamp``
    Edm.Int64, "start with timestamp 1") and ODATA_PRACTICES (sync "based on row
    versioning"): every row after the given Timestamp, ascending."""
    rows = exact.json("GET", "sync/CRM/Accounts", params={
        "$select": "Timestamp,ID,Name", "$filter": "Timestamp gt 1L"})[1]["d"]["results"]
    stamps = [r["Timestamp"] for r in rows]
    assert len(rows) == 70 and stamps == sorted(stamps)
    later = exact.json("GET", "sync/CRM/Accounts", params={
        "$select": "Timestamp,ID", "$filter": f"Timestamp gt {stamps[59]}L"})[1]["d"]["results"]
    assert [r["ID"] for r in later] == [r["ID"] for r in rows[60:]]


@source(reference_page("SyncCRMAccounts"))
def test_a_change_moves_the_row_to_the_end_of_the_sync_order(exact):
    """Source: reference_page("SyncCRMAccounts") (``Timestamp`` changes on every change of the
    row): after a PUT the account comes after the highest Timestamp seen."""
    rows = exact.json("GET", "sync/CRM/Accounts", params={
        "$select": "Timestamp,ID", "$filter": "Timestamp gt 1L"})[1]["d"]["results"]
    high = max(r["Timestamp"] for r in rows)
    assert exact.call("PUT", f"crm/Accounts(guid'{rows[0]['ID']}')",
                      json={"City": "Utrecht"}).status_code == 204
    changed = exact.json("GET", "sync/CRM/Accounts", params={
        "$select": "Timestamp,ID,City", "$filter": f"Timestamp gt {high}L"})[1]["d"]["results"]
    assert [(r["ID"], r["City"]) for r in changed] == [(rows[0]["ID"], "Utrecht")]


@source(reference_page("SyncDeleted"))
def test_a_deleted_entity_is_a_row_of_sync_deleted(exact):
    """Source: reference_page("SyncDeleted"): ``EntityKey`` (the deleted entity's ID),
    ``EntityType`` (2 = accounts), ``DeletedDate``, ``Timestamp``."""
    created = exact.json("POST", "crm/Accounts", json={"Name": "Short-lived"})[1]["d"]
    assert exact.call("DELETE", f"crm/Accounts(guid'{created['ID']}')").status_code == 204
    rows = exact.json("GET", "sync/Deleted", params={
        "$select": "Timestamp,EntityKey,EntityType,DeletedDate",
        "$filter": "Timestamp gt 1L"})[1]["d"]["results"]
    assert [(r["EntityKey"], r["EntityType"]) for r in rows][-1] == (created["ID"], 2)


@source(reference_page("SyncSalesOrderSalesOrders"))
def test_sales_order_sync_rows_are_one_per_line(exact):
    """Source: reference_page("SyncSalesOrderSalesOrders") (header and line columns in one row:
    ``OrderID``, ``ID`` of the line, ``Item``, ``Quantity``)."""
    orders = exact.json("GET", "salesorder/SalesOrders", params={
        "$expand": "SalesOrderLines", "$select": "OrderID,SalesOrderLines"})[1]["d"]["results"]
    lines = {line["ID"] for order in orders for line in order["SalesOrderLines"]["results"]}
    rows = exact.json("GET", "sync/SalesOrder/SalesOrders", params={
        "$select": "Timestamp,OrderID,ID,Item,Quantity",
        "$filter": "Timestamp gt 1L"})[1]["d"]["results"]
    assert {r["ID"] for r in rows} == lines and len(rows) == len(lines)


@source(API_LIMITS, "ossobv/exactonline exactonline/rawapi.py")
def test_every_answer_carries_the_six_rate_limit_headers_with_resets_in_milliseconds(exact):
    """Source: API_LIMITS and the headers' list (X-RateLimit-Limit/Remaining/Reset daily,
    X-RateLimit-Minutely-Limit/Remaining/Reset; resets are epoch milliseconds, as
    ossobv/exactonline ``RateLimiter.update`` asserts)."""
    answer = exact.call("GET", "crm/Accounts", params={"$top": "1"})
    assert all(name in answer.headers for name in LIMIT_HEADERS)
    for name in ("X-RateLimit-Reset", "X-RateLimit-Minutely-Reset"):
        assert 1638448971000 < int(answer.headers[name]) < 9999999999999
    failed = exact.call("GET", "crm/Accounts(guid'00000000-0000-0000-0000-000000000000')")
    assert failed.status_code == 404 and all(name in failed.headers for name in LIMIT_HEADERS)


@source(API_LIMITS)
def test_the_standard_limits_are_60_a_minute_and_5000_a_day_and_429_beyond(exact):
    """Source: API_LIMITS ("your app can make 60 API calls, per company, per minute" and
    "5,000 API calls, per company, per day"; beyond, 429 Too Many Requests)."""
    exact.control("/_sandbox/limits", {"minutely": 60, "daily": 5000, "minute_s": 600})
    try:
        answers = [exact.call("GET", "crm/Accounts", params={"$top": "1", "$select": "ID"})
                   for _ in range(61)]
        assert answers[0].headers["X-RateLimit-Minutely-Limit"] == "60"
        assert answers[0].headers["X-RateLimit-Limit"] == "5000"
        assert [a.status_code for a in answers] == [200] * 60 + [429]
        assert answers[-1].headers["X-RateLimit-Minutely-Remaining"] == "0"
        assert error_value(answers[-1].json())
    finally:
        exact.control("/_sandbox/limits", {})


@source(API_LIMITS)
def test_mandatory_filtering_when_switched_on(exact):
    """Source: API_LIMITS (effective 1 July 2021: "Mandatory filtering on single and bulk
    endpoints where sync APIs are available"). Whether Exact enforces it for every app is
    uncertain (Invantive asks whether it is set per client ID), so the emulator has a switch:
    on, an unfiltered regular or bulk read of accounts, items or orders is refused; a filtered
    one, one by key and the sync endpoints answer."""
    exact.control("/_sandbox/limits", {"mandatory_filter": True})
    try:
        for path, params in (("crm/Accounts", {"$select": "ID"}),
                             ("bulk/Logistics/Items", {"$select": "ID"}),
                             ("salesorder/SalesOrderLines", {"$select": "ID"})):
            status, body = exact.json("GET", path, params=params)
            assert status == 400 and "$filter" in error_value(body), path
        account = exact.json("GET", "crm/Accounts", params={
            "$select": "ID", "$filter": "Status eq 'C'"})[1]["d"]["results"][0]
        assert exact.json("GET", f"crm/Accounts(guid'{account['ID']}')")[0] == 200
        assert exact.json("GET", "sync/CRM/Accounts", params={"$select": "ID"})[0] == 200
    finally:
        exact.control("/_sandbox/limits", {})
