"""Exact's OData v2 query options as its documentation shows them: ``$select``, ``$filter``
with Exact's typed literals, ``$top``, ``$skip``, ``$orderby``, ``$inlinecount``, ``$count``,
pages of 60 with ``__next``; and the loud refusal of what the sandbox does not emulate."""

from __future__ import annotations

import math
import urllib.parse

import pytest

from tests.contracts.exact.conftest import error_value
from tests.contracts.exact.sources import (
    ODATA_PRACTICES,
    ODATA_V2_TYPES,
    ODATA_V2_URI,
    TIPS,
    reference_page,
    source,
)


@pytest.fixture(scope="module", autouse=True)
def _65_accounts(exact):
    """25 accounts more than the seed's 40: two pages of the regular endpoints."""
    for number in range(25):
        assert exact.json("POST", "crm/Accounts", json={"Name": f"Paged {number}"})[0] == 201


def _all(exact, path: str, params: dict) -> tuple[list, int]:
    rows, url, pages = [], path, 0
    while url:
        body = exact.json("GET", url, params=params)[1]["d"]
        rows += body["results"]
        pages += 1
        url, params = body.get("__next"), None
    return rows, pages


@source(TIPS)
def test_pages_hold_60_and_next_links_lead_through_the_rest(exact):
    """Source: TIPS ("Paging": "Usually this limit … is 60 records"; "a node with a __next
    tag … a hyperlink … to the next page"; "keep repeating … until the response doesn't have
    a __next tag anymore")."""
    first = exact.json("GET", "crm/Accounts", params={"$select": "ID"})[1]["d"]
    assert len(first["results"]) == 60 and "__next" in first
    # the module's emulator is shared and the tests run in random order: count what is there
    total = int(exact.json("GET", "crm/Accounts", params={
        "$top": "1", "$inlinecount": "allpages", "$select": "ID"})[1]["d"]["__count"])
    rows, pages = _all(exact, "crm/Accounts", {"$select": "ID"})
    assert total > 60 and pages == math.ceil(total / 60)
    assert len(rows) == len({r["ID"] for r in rows}) == total


@source(ODATA_PRACTICES)
def test_the_skip_token_is_a_guid_literal(exact):
    """Source: ODATA_PRACTICES (``"__next": "…?$select=Code,Description&$skiptoken=
    guid'…'"``)."""
    first = exact.json("GET", "crm/Accounts", params={"$select": "ID"})[1]["d"]
    token = urllib.parse.parse_qs(urllib.parse.urlsplit(first["__next"]).query)["$skiptoken"]
    assert token == [f"guid'{first['results'][-1]['ID']}'"]


@source(TIPS, reference_page("CRMAccounts"))
def test_filter_on_an_18_character_code(exact):
    """Source: TIPS (``$top=1&$filter=Code eq '<code with leading spaces>'`` finds the
    account) and Exact's own SDK (exactonline/exactonline-api-dotnet-client
    src/ExactOnline.Client.Models/CRM/Account.cs, ``Code``: "fixed length numeric string with
    leading spaces, length 18 … $filter … must contain the leading spaces")."""
    code = exact.json("GET", "crm/Accounts", params={"$top": "1"})[1]["d"]["results"][0]["Code"]
    rows = exact.json("GET", "crm/Accounts", params={
        "$top": "1", "$filter": f"Code eq '{code}'"})[1]["d"]["results"]
    assert [r["Code"] for r in rows] == [code]


@source(TIPS, ODATA_PRACTICES)
def test_filter_with_a_datetime_literal(exact):
    """Source: TIPS (``$filter=Created ge datetime'2014-01-01' or Modified ge
    datetime'2014-01-01'``) and ODATA_PRACTICES (``datetime'2000-12-12T12:00'``)."""
    everything = exact.json("GET", "crm/Accounts", params={
        "$select": "ID", "$filter": "Created ge datetime'2014-01-01' or Modified ge "
                                    "datetime'2000-12-12T12:00'"})
    assert everything[0] == 200 and len(everything[1]["d"]["results"]) == 60
    nothing = exact.json("GET", "crm/Accounts", params={
        "$select": "ID", "$filter": "Modified ge datetime'2999-01-01'"})[1]["d"]["results"]
    assert nothing == []


@source(ODATA_PRACTICES)
def test_filter_with_a_guid_literal(exact):
    """Source: ODATA_PRACTICES ("GUIDs require a guid prefix": ``ID eq guid'…'``)."""
    account = exact.json("GET", "crm/Accounts", params={"$top": "1"})[1]["d"]["results"][0]
    rows = exact.json("GET", "crm/Accounts", params={
        "$filter": f"ID eq guid'{account['ID'].upper()}'"})[1]["d"]["results"]
    assert [r["ID"] for r in rows] == [account["ID"]]


@source(ODATA_PRACTICES)
def test_a_guid_compared_with_a_plain_string_is_refused(exact):
    """Source: ODATA_PRACTICES (the ``guid`` prefix is required; OData v2 is typed, so
    ``ID eq '…'`` compares a Guid with a String): 400 in Exact's error shape."""
    account = exact.json("GET", "crm/Accounts", params={"$top": "1"})[1]["d"]["results"][0]
    status, body = exact.json("GET", "crm/Accounts", params={
        "$filter": f"ID eq '{account['ID']}'"})
    assert status == 400 and "System.Guid" in error_value(body)


@source(ODATA_PRACTICES)
def test_filter_with_numbers_booleans_and_strings(exact):
    """Source: ODATA_PRACTICES ("Filter syntax summary": ``Amount gt 100``, ``Status eq 'C'``,
    a Boolean ``eq false``)."""
    rows = exact.json("GET", "crm/Accounts", params={
        "$select": "Status", "$filter": "Status eq 'C'"})[1]
    assert rows["d"]["results"] and all(r["Status"] == "C" for r in rows["d"]["results"])
    items = exact.json("GET", "logistics/Items", params={
        "$select": "StandardSalesPrice,IsSalesItem",
        "$filter": "StandardSalesPrice gt 100 and IsSalesItem eq true"})[1]["d"]["results"]
    assert items and all(r["StandardSalesPrice"] > 100 and r["IsSalesItem"] for r in items)


@source(ODATA_V2_TYPES, ODATA_PRACTICES)
def test_typed_number_literals_and_quoted_text(exact):
    """Source: ODATA_V2_TYPES (``Edm.Decimal`` ``1.5M``, ``Edm.Int64`` ``1L``, ``Edm.Double``
    ``1.5d``) and ODATA_PRACTICES (``AmountFC ge -8500``): the suffixes mark the type; text in
    quotes is text (``'…12L'`` stays as written)."""
    prices = [r["StandardSalesPrice"] for r in exact.json("GET", "logistics/Items", params={
        "$select": "StandardSalesPrice"})[1]["d"]["results"]]
    for literal in ("100M", "100m", "100d", "100.0M", "100"):
        rows = exact.json("GET", "logistics/Items", params={
            "$select": "StandardSalesPrice",
            "$filter": f"StandardSalesPrice gt {literal}"})[1]["d"]["results"]
        assert len(rows) == sum(1 for p in prices if p > 100), literal
    assert exact.json("GET", "logistics/Items", params={
        "$filter": "StandardSalesPrice ge -8500"})[0] == 200
    created = exact.json("POST", "crm/Accounts", json={"Name": "Shop 12L"})[1]["d"]
    rows = exact.json("GET", "crm/Accounts", params={"$filter": "Name eq 'Shop 12L'"})[1]
    assert [r["ID"] for r in rows["d"]["results"]] == [created["ID"]]
    status, body = exact.json("GET", "logistics/Items", params={
        "$filter": "StandardSalesPrice gt 12abc"})
    assert status == 400 and error_value(body)


@source(ODATA_V2_URI, TIPS)
def test_top_limits_the_rows(exact):
    """Source: ODATA_V2_URI ("Top System Query Option ($top)") and TIPS (``$top=1``)."""
    rows = exact.json("GET", "logistics/Items", params={"$top": "3"})[1]["d"]
    assert len(rows["results"]) == 3 and "__next" not in rows


@source(ODATA_V2_URI, ODATA_PRACTICES)
def test_skip_and_orderby(exact):
    """Source: ODATA_V2_URI ("Skip System Query Option", "OrderBy System Query Option") and
    ODATA_PRACTICES (requests "using the $top and $skip options"): items by ``Code desc``,
    the first two skipped."""
    ordered = exact.json("GET", "logistics/Items", params={
        "$select": "Code", "$orderby": "Code desc"})[1]["d"]["results"]
    codes = [r["Code"] for r in ordered]
    assert codes == sorted(codes, reverse=True)
    skipped = exact.json("GET", "logistics/Items", params={
        "$select": "Code", "$orderby": "Code desc", "$skip": "2", "$top": "3"})[1]["d"]
    assert [r["Code"] for r in skipped["results"]] == codes[2:5]


@source(ODATA_V2_URI, TIPS)
def test_orderby_pages_through_every_row_once(exact):
    """Source: ODATA_V2_URI ($orderby) and TIPS (follow ``__next``): ordered by ``Name`` over
    two pages, every account once and in order."""
    rows, pages = _all(exact, "crm/Accounts", {"$select": "ID,Name", "$orderby": "Name"})
    names = [r["Name"] for r in rows]
    assert pages == 2 and names == sorted(names) and len({r["ID"] for r in rows}) == len(rows)


@source(ODATA_PRACTICES, ODATA_V2_URI)
def test_inlinecount_allpages_gives_the_count(exact):
    """Source: ODATA_PRACTICES (``$top=5&$inlinecount=allpages`` gives a ``__count``) and
    ODATA_V2_URI ("Inlinecount System Query Option")."""
    body = exact.json("GET", "logistics/Items", params={
        "$top": "5", "$inlinecount": "allpages", "$select": "Code"})[1]["d"]
    total = len(exact.json("GET", "bulk/Logistics/Items", params={"$select": "ID"})[1]["d"][
        "results"])
    assert len(body["results"]) == 5 and body["__count"] == str(total)


@source(ODATA_PRACTICES)
def test_count_answers_the_number_as_text(exact):
    """Source: ODATA_PRACTICES (``GET …/PurchaseEntries/$count``: "only the count")."""
    answer = exact.call("GET", "logistics/Items/$count")
    assert answer.status_code == 200 and answer.text.isdigit()
    filtered = exact.call("GET", "logistics/Items/$count",
                          params={"$filter": "StandardSalesPrice gt 100000"})
    assert filtered.text == "0"


@source(ODATA_PRACTICES)
def test_select_gives_only_the_named_properties(exact):
    """Source: ODATA_PRACTICES ("$select: specify which properties you want")."""
    rows = exact.json("GET", "salesorder/SalesOrders", params={
        "$select": "OrderID,OrderNumber", "$top": "2"})[1]["d"]["results"]
    assert all(set(r) == {"__metadata", "OrderID", "OrderNumber"} for r in rows)


@source(ODATA_V2_URI)
def test_an_unknown_query_option_is_refused(exact):
    """Source: ODATA_V2_URI (system query options begin with ``$``; an unknown one is not a
    custom option): 400 in Exact's error shape, never ignored."""
    status, body = exact.json("GET", "crm/Accounts", params={"$search": "x"})
    assert status == 400 and "$search" in error_value(body)


@source(TIPS, ODATA_V2_URI, ODATA_V2_TYPES, reference_page("CRMContacts"))
def test_what_is_not_emulated_is_refused_with_501(exact):
    """Source: TIPS (``trim(Code) eq '25'``), ODATA_V2_URI (``$format``), ODATA_V2_TYPES
    (arithmetic operators) and
    reference_page("CRMContacts"): Exact honours these; the sandbox does not emulate them and
    says so (501, Exact's error shape) rather than answer what Exact would not."""
    for path, params in (("crm/Accounts", {"$filter": "trim(Code) eq '25'"}),
                         ("logistics/Items", {"$filter": "StandardSalesPrice add 1 gt 5"}),
                         ("crm/Accounts", {"$format": "json"}),
                         ("salesorder/SalesOrders", {"$expand": "SalesOrderLines",
                                                     "$select": "OrderID,SalesOrderLines/Item"}),
                         ("crm/Contacts", {"$select": "ID"})):
        status, body = exact.json("GET", path, params=params)
        assert status == 501, (path, params)
        assert "not emulated" in error_value(body)
