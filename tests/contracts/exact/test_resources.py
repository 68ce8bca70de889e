"""Exact's resources as its REST API reference documents them: ``current/Me``, the division
lists, accounts, items and sales orders with their lines; the OData v2 envelope, and every
link an answer hands out (``__metadata.uri``, ``__deferred``) answers."""

from __future__ import annotations

import re

from sandbox import exact as ex
from tests.contracts.exact.conftest import error_value
from tests.contracts.exact.sources import (
    ERRORS,
    ODATA_PRACTICES,
    ODATA_V2_JSON,
    REFERENCE,
    TIPS,
    reference_page,
    source,
)


@source(reference_page("SystemSystemMe"))
def test_current_me_names_the_current_division(exact):
    """Source: reference_page("SystemSystemMe"): ``GET /api/v1/current/Me`` (no division in
    the path) answers the user with ``CurrentDivision`` (Edm.Int32); ``$select`` honoured."""
    status, body = exact.json("GET", f"{exact.api}/v1/current/Me",
                              params={"$select": "CurrentDivision"})
    assert status == 200
    [me] = body["d"]["results"]
    assert me["CurrentDivision"] == ex.DIVISION
    assert set(me) == {"__metadata", "CurrentDivision"}


@source(reference_page("SystemSystemMe"))
def test_current_me_has_the_reference_properties(exact):
    """Source: reference_page("SystemSystemMe"): every property of the resource, unset ones
    null (UserID, FullName, Email, LanguageCode, …)."""
    [me] = exact.json("GET", f"{exact.api}/v1/current/Me")[1]["d"]["results"]
    for name in ("UserID", "FullName", "Email", "LanguageCode", "DivisionCustomer",
                 "ServerTime"):
        assert name in me


@source(reference_page("SystemSystemDivisions"))
def test_system_divisions_lists_the_division(exact):
    """Source: reference_page("SystemSystemDivisions"): ``GET
    /api/v1/{division}/system/Divisions`` lists the divisions with ``Code`` (the number the
    paths use) and ``Description``."""
    status, body = exact.json("GET", "system/Divisions",
                              params={"$select": "Code,Description,Current"})
    assert status == 200
    assert [(d["Code"], d["Current"]) for d in body["d"]["results"]] == [(ex.DIVISION, True)]


@source(reference_page("HRMDivisions"))
def test_hrm_divisions_answers_as_ossobv_calls_it(exact):
    """Source: reference_page("HRMDivisions"), called exactly so by ossobv/exactonline
    ``V1Division.get_divisions``: ``hrm/Divisions?$select=Code,Description``."""
    status, body = exact.json("GET", "hrm/Divisions?$select=Code,Description")
    assert status == 200
    assert {(d["Code"], d["Description"]) for d in body["d"]["results"]} == {
        (ex.DIVISION, "Sandbox B.V.")}


@source(reference_page("CRMAccounts"), ODATA_V2_JSON)
def test_a_list_is_the_verbose_json_envelope_with_metadata(exact):
    """Source: ODATA_V2_JSON and reference_page("CRMAccounts"): ``{"d": {"results": [...]}}``,
    each entity with ``__metadata`` ``uri`` and ``type`` ``Exact.Web.Api.Models.Account``."""
    status, body = exact.json("GET", "crm/Accounts", params={"$select": "ID,Name",
                                                             "$top": "2"})
    assert status == 200
    rows = body["d"]["results"]
    assert len(rows) == 2
    for row in rows:
        assert row["__metadata"]["type"] == "Exact.Web.Api.Models.Account"
        assert row["__metadata"]["uri"].endswith(f"/crm/Accounts(guid'{row['ID']}')")


@source(ODATA_V2_JSON)
def test_every_metadata_uri_answers_with_its_entity(exact):
    """Source: ODATA_V2_JSON (``__metadata.uri`` is the entity's address): the uri of an
    account, an item, a sales order and a sales order line each answer 200 ``{"d": {…}}``."""
    orders = exact.json("GET", "salesorder/SalesOrders", params={
        "$top": "1", "$expand": "SalesOrderLines"})[1]["d"]["results"]
    line = orders[0]["SalesOrderLines"]["results"][0]
    uris = [orders[0]["__metadata"]["uri"], line["__metadata"]["uri"]]
    for path in ("crm/Accounts", "logistics/Items"):
        uris.append(exact.json("GET", path, params={"$top": "1"})[1]["d"]["results"][0][
            "__metadata"]["uri"])
    for uri in uris:
        status, body = exact.json("GET", uri)
        assert status == 200, uri
        assert body["d"]["__metadata"]["uri"] == uri


@source(reference_page("SalesOrderSalesOrders"), ODATA_V2_JSON)
def test_the_deferred_lines_link_of_a_sales_order_answers_with_its_lines(exact):
    """Source: reference_page("SalesOrderSalesOrders") (``SalesOrderLines`` is a collection)
    and ODATA_V2_JSON ("Deferred content": ``{"__deferred": {"uri": …}}``, which answers the
    collection). Issue 16: this link answered 404."""
    order = exact.json("GET", "salesorder/SalesOrders", params={"$top": "1"})[1]["d"][
        "results"][0]
    link = order["SalesOrderLines"]["__deferred"]["uri"]
    assert link.endswith(f"/salesorder/SalesOrders(guid'{order['OrderID']}')/SalesOrderLines")
    status, body = exact.json("GET", link)
    assert status == 200
    lines = body["d"]["results"]
    assert lines and {line["OrderID"] for line in lines} == {order["OrderID"]}
    assert all(line["__metadata"]["type"] == "Exact.Web.Api.Models.SalesOrderLine"
               for line in lines)


@source(reference_page("SalesOrderSalesOrders"), ODATA_PRACTICES)
def test_expand_puts_the_lines_inline(exact):
    """Source: reference_page("SalesOrderSalesOrders") and Exact's OData best practices
    (``$expand`` of a collection): the lines come as ``{"results": [...]}``."""
    order = exact.json("GET", "salesorder/SalesOrders", params={
        "$top": "1", "$expand": "SalesOrderLines"})[1]["d"]["results"][0]
    lines = order["SalesOrderLines"]["results"]
    assert lines and all(line["OrderID"] == order["OrderID"] for line in lines)


@source(reference_page("CRMAccounts"), ODATA_V2_JSON)
def test_the_deferred_bank_accounts_link_of_an_account_answers(exact):
    """Source: reference_page("CRMAccounts") (``BankAccounts`` is a collection of the account):
    the ``__deferred`` link answers a list (the sandbox keeps no bank accounts)."""
    account = exact.json("GET", "crm/Accounts", params={"$top": "1"})[1]["d"]["results"][0]
    status, body = exact.json("GET", account["BankAccounts"]["__deferred"]["uri"])
    assert status == 200 and body == {"d": {"results": []}}


@source(reference_page("LogisticsItems"), ODATA_V2_JSON)
def test_one_entity_is_d_with_the_entity(exact):
    """Source: reference_page("LogisticsItems") and ODATA_V2_JSON: ``GET
    …/logistics/Items(guid'…')`` answers ``{"d": {…}}`` with every property."""
    item = exact.json("GET", "logistics/Items", params={"$top": "1"})[1]["d"]["results"][0]
    status, body = exact.json("GET", f"logistics/Items(guid'{item['ID']}')")
    assert status == 200 and body["d"]["ID"] == item["ID"]
    assert {"Code", "Description", "StandardSalesPrice", "Barcode"} <= set(body["d"])


@source(TIPS, reference_page("CRMAccounts"))
def test_post_with_return_representation_answers_201_with_the_entity(exact):
    """Source: TIPS ("Prefer: return=representation" returns the created entity with every
    property) and reference_page("CRMAccounts") (POST)."""
    status, body = exact.json("POST", "crm/Accounts", json={"Name": "Contract B.V."},
                              headers={"Prefer": "return=representation"})
    assert status == 201
    assert body["d"]["Name"] == "Contract B.V." and "Email" in body["d"]
    assert len(body["d"]["Code"]) == 18


@source(TIPS)
def test_post_without_return_representation_answers_every_property_null_but_the_sent(exact):
    """Source: TIPS ("Once the POST command has successfully completed, the entity will
    contain all properties with the NULL value. Use the following header to get the entity
    with all the properties filled": ``Prefer: return=representation``)."""
    status, body = exact.json("POST", "crm/Accounts", json={"Name": "Bare B.V."})
    assert status == 201
    assert {k for k, v in body["d"].items() if v is not None} == {"__metadata", "ID", "Name"}
    assert {"Code", "Email", "Created"} <= set(body["d"])
    stored = exact.json("GET", body["d"]["__metadata"]["uri"])[1]["d"]
    assert stored["Code"] and stored["Created"]


@source(ODATA_PRACTICES)
def test_select_star_gives_every_property(exact):
    """Source: ODATA_PRACTICES ("never use ``$select=*``": it gives every property)."""
    [row] = exact.json("GET", "crm/Accounts", params={"$select": "*", "$top": "1"})[1]["d"][
        "results"]
    assert {"ID", "Name", "Email", "Code", "Modified"} <= set(row)


@source(reference_page("SalesOrderSalesOrders"))
def test_a_sales_order_is_created_with_its_lines(exact):
    """Source: reference_page("SalesOrderSalesOrders"): ``POST`` with ``OrderedBy`` and a
    ``SalesOrderLines`` array answers 201 with ``OrderNumber`` and the lines."""
    account = exact.json("GET", "crm/Accounts", params={"$top": "1"})[1]["d"]["results"][0]
    item = exact.json("GET", "logistics/Items", params={"$top": "1"})[1]["d"]["results"][0]
    status, body = exact.json("POST", "salesorder/SalesOrders", json={
        "OrderedBy": account["ID"], "SalesOrderLines": [{"Item": item["ID"], "Quantity": 3}]},
        headers={"Prefer": "return=representation"})
    assert status == 201
    [line] = body["d"]["SalesOrderLines"]["results"]
    assert body["d"]["OrderNumber"] and line["Quantity"] == 3


@source(reference_page("CRMAccounts"))
def test_put_answers_204_and_delete_answers_204(exact):
    """Source: reference_page("CRMAccounts") (PUT and DELETE) and ossobv/exactonline
    ``Manager.update``/``delete`` (which expect an empty answer)."""
    created = exact.json("POST", "crm/Accounts", json={"Name": "To change"})[1]["d"]
    changed = exact.call("PUT", f"crm/Accounts(guid'{created['ID']}')", json={"City": "Delft"})
    assert changed.status_code == 204 and changed.text == ""
    gone = exact.call("DELETE", f"crm/Accounts(guid'{created['ID']}')")
    assert gone.status_code == 204
    assert exact.call("GET", f"crm/Accounts(guid'{created['ID']}')").status_code == 404


@source(TIPS, ODATA_V2_JSON)
def test_dates_are_epoch_milliseconds_and_codes_18_characters(exact):
    """Source: TIPS (codes are 18 characters with leading spaces) and ODATA_V2_JSON
    (``"\\/Date(<ms>)\\/"``): ``Modified`` as ``/Date(…)/``, ``Code`` right-aligned."""
    account = exact.json("GET", "crm/Accounts", params={
        "$select": "Code,Modified", "$top": "1"})[1]["d"]["results"][0]
    assert re.fullmatch(r"/Date\(\d+\)/", account["Modified"])
    assert len(account["Code"]) == 18 and account["Code"].strip().isdigit()


@source(TIPS, ODATA_PRACTICES)
def test_paths_are_case_insensitive_as_in_exacts_examples(exact):
    """Source: TIPS (``/CRM/Accounts/?$top=1&$filter=Code eq ' 25'`` for the regular
    endpoint) and Exact's OData best practices (``bulk/crm/Accounts``)."""
    code = exact.json("GET", "crm/Accounts", params={"$top": "1"})[1]["d"]["results"][0]["Code"]
    status, body = exact.json("GET", "CRM/Accounts/", params={"$top": "1",
                                                              "$filter": f"Code eq '{code}'"})
    assert status == 200 and [r["Code"] for r in body["d"]["results"]] == [code]
    assert exact.json("GET", "bulk/crm/Accounts", params={"$select": "ID"})[0] == 200


@source(reference_page("SystemSystemDivisions"), ERRORS)
def test_another_division_is_forbidden_in_exacts_error_shape(exact):
    """Source: reference_page("SystemSystemDivisions") (a user reaches the divisions it has
    rights to) and Exact's error body (``{"error": {"code", "message": {"lang",
    "value"}}}``)."""
    status, body = exact.json("GET", f"{exact.api}/v1/1/crm/Accounts")
    assert status == 403 and error_value(body)


@source(REFERENCE, ERRORS)
def test_an_endpoint_the_sandbox_does_not_know_is_404_in_exacts_error_shape(exact):
    """Source: REFERENCE (``salesentry/SalesEntries`` is one of Exact's endpoints, used by
    ossobv/exactonline's ``invoices``) and Exact's error body: the sandbox does not serve it
    and says so, 404 in Exact's shape, naming the possibility that it is not emulated."""
    status, body = exact.json("GET", "salesentry/SalesEntries", params={"$select": "EntryID"})
    assert status == 404 and "not emulated" in error_value(body)
