"""Sales orders and their lines: Microsoft Learn's requests of API v2.0 (both documented
addressings of a line: under its order and in the company-level set) and the documented
answers.

"MS Learn dev-itpro/PAGE" is
https://learn.microsoft.com/en-us/dynamics365/business-central/dev-itpro/PAGE.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from tests.contracts.businesscentral.conftest import error, message

#: "Create salesOrderLines", request body as documented; ``itemId`` is set to a seeded item
LINE = {
    "lineType": "Item", "description": "ATLANTA Whiteboard, base",
    "unitOfMeasureId": "5ca6738a-44e3-ea11-bb43-000d3a2feca1", "quantity": 12,
    "unitPrice": Decimal("1397.3"), "discountAmount": 0, "discountPercent": 0,
    "shipmentDate": "2020-04-02", "invoiceQuantity": 12, "shipQuantity": 12,
    "itemVariantId": "00000000-0000-0000-0000-000000000000",
    "locationId": "00000000-0000-0000-0000-000000000000"}


@pytest.fixture(scope="module")
def order(api):
    """A sales order made with "Create salesOrders"' documented body (for a seeded customer)."""
    customer = api.first("customers")
    status, body = api.json("POST", "salesOrders", json={
        "orderDate": "2023-09-01", "customerNumber": customer["number"], "currencyCode": "GBP",
        "paymentTermsId": "3bb5b4b6-ea4c-43ca-ba1c-3b69e29a6668"})
    assert status == 201
    return body


def _line(api, order) -> dict:
    item = api.first("items")
    status, line = api.json("POST", f"salesOrders({order['id']})/salesOrderLines",
                            json={**LINE, "itemId": item["id"]})
    assert status == 201
    return line


def test_create_sales_order_with_the_documented_body(api, order):
    """POST companies({id})/salesOrders with orderDate, customerNumber, currencyCode and
    paymentTermsId → 201, a Draft order with customer and bill-to filled in and zero totals.
    Source: MS Learn dev-itpro/api-reference/v2.0/api/dynamics_salesorder_create"""
    customer = api.first("customers")
    assert order["status"] == "Draft" and order["orderDate"] == "2023-09-01"
    assert order["customerNumber"] == customer["number"] == order["billToCustomerNumber"]
    assert order["customerId"] == customer["id"] == order["billToCustomerId"]
    assert order["customerName"] == customer["displayName"]
    assert (order["currencyCode"], order["totalAmountIncludingTax"]) == ("GBP", 0)
    assert order["paymentTermsId"] == "3bb5b4b6-ea4c-43ca-ba1c-3b69e29a6668"


def test_sales_order_without_a_customer(api):
    """BC's dialog error "A customerNumber or a customerID must be provided." is
    Application_DialogException. Source: MS Learn dev-itpro/webservices/dynamics-error-codes"""
    response = api.call("POST", "salesOrders", json={"orderDate": "2023-09-01"})
    assert error(response) == (400, "Application_DialogException")
    assert message(response) == "A customerNumber or a customerID must be provided."


def test_get_sales_order(api, order):
    """GET companies({id})/salesOrders({id}) → 200. Source: MS Learn
    dev-itpro/api-reference/v2.0/api/dynamics_salesorder_get"""
    status, body = api.json("GET", f"salesOrders({order['id']})")
    assert status == 200 and body["number"] == order["number"]
    assert "salesOrderLines" not in body                # lines only when expanded


def test_update_sales_order(api, order):
    """PATCH companies({id})/salesOrders({id}) with {"paymentTermsId"} and If-Match → 200.
    Source: MS Learn dev-itpro/api-reference/v2.0/api/dynamics_salesorder_update"""
    current = api.json("GET", f"salesOrders({order['id']})")[1]
    status, body = api.json("PATCH", f"salesOrders({order['id']})",
                            json={"paymentTermsId": "0e8b5305-593f-ee11-be74-6045bdc8c285"},
                            headers={"If-Match": current["@odata.etag"]})
    assert status == 200 and body["paymentTermsId"] == "0e8b5305-593f-ee11-be74-6045bdc8c285"


def test_create_line_under_the_order(api, order):
    """POST companies({id})/salesOrders({id})/salesOrderLines with the documented body → 201;
    amounts computed (amountExcludingTax = quantity × unitPrice). Source:
    MS Learn dev-itpro/api-reference/v2.0/api/dynamics_salesorderline_create"""
    line = _line(api, order)
    assert line["documentId"] == order["id"] and line["lineType"] == "Item"
    assert line["quantity"] == 12 and line["unitPrice"] == Decimal("1397.3")
    assert line["amountExcludingTax"] == Decimal("16767.60")
    assert line["invoiceQuantity"] == 12 and line["shipQuantity"] == 12


def test_create_line_in_the_company_level_set(api, order):
    """POST companies({id})/salesOrderLines (the line's order in ``documentId``) → 201.
    Source: MS Learn dev-itpro/api-reference/v2.0/api/dynamics_salesorderline_create"""
    item = api.first("items")
    status, line = api.json("POST", "salesOrderLines",
                            json={**LINE, "itemId": item["id"], "documentId": order["id"]})
    assert status == 201 and line["documentId"] == order["id"]
    assert line["id"] in [
        other["id"] for other in api.json("GET", f"salesOrders({order['id']})/salesOrderLines")[
            1]["value"]]


def test_get_line_both_ways(api, order):
    """GET companies({id})/salesOrders({id})/salesOrderLines({lineId}) and GET
    companies({id})/salesOrderLines({lineId}) → 200, the same line. Source:
    MS Learn dev-itpro/api-reference/v2.0/api/dynamics_salesorderline_get"""
    line = _line(api, order)
    nested = api.json("GET", f"salesOrders({order['id']})/salesOrderLines({line['id']})")
    flat = api.json("GET", f"salesOrderLines({line['id']})")
    assert nested[0] == flat[0] == 200
    assert nested[1]["id"] == flat[1]["id"] == line["id"] and flat[1]["sequence"] > 0


def test_update_line_both_ways(api, order):
    """PATCH …/salesOrders({id})/salesOrderLines({lineId}) and PATCH
    companies({id})/salesOrderLines({lineId}) with If-Match → 200. Source:
    MS Learn dev-itpro/api-reference/v2.0/api/dynamics_salesorderline_update"""
    line = _line(api, order)
    status, body = api.json("PATCH", f"salesOrders({order['id']})/salesOrderLines({line['id']})",
                            json={"unitPrice": Decimal("1397.3")},
                            headers={"If-Match": line["@odata.etag"]})
    assert status == 200 and body["unitPrice"] == Decimal("1397.3")
    status, body = api.json("PATCH", f"salesOrderLines({line['id']})", json={"quantity": 3},
                            headers={"If-Match": body["@odata.etag"]})
    assert status == 200 and body["quantity"] == 3


def test_delete_line_both_ways(api, order):
    """DELETE …/salesOrders({id})/salesOrderLines({lineId}) and DELETE
    companies({id})/salesOrderLines({lineId}) → 204. Source:
    MS Learn dev-itpro/api-reference/v2.0/api/dynamics_salesorderline_delete"""
    first, second = _line(api, order), _line(api, order)
    assert api.call("DELETE", f"salesOrders({order['id']})/salesOrderLines({first['id']})",
                    headers={"If-Match": first["@odata.etag"]}).status_code == 204
    assert api.call("DELETE", f"salesOrderLines({second['id']})",
                    headers={"If-Match": second["@odata.etag"]}).status_code == 204
    assert api.call("GET", f"salesOrderLines({second['id']})").status_code == 404


def test_deep_insert_of_an_order_with_lines(api):
    """"Business Central supports deep insert on API page types": an order POSTed with its
    ``salesOrderLines`` → 201, lines included with $expand. Sources:
    MS Learn dev-itpro/webservices/odata-known-limitations and (the same pattern for sales invoices)
    MS Learn dev-itpro/api-reference/v2.0/api/dynamics_salesinvoiceline_create"""
    customer, item = api.first("customers"), api.first("items")
    status, body = api.json("POST", "salesOrders?$expand=salesOrderLines", json={
        "customerId": customer["id"],
        "salesOrderLines": [{"lineType": "Item", "itemId": item["id"], "quantity": 2}]})
    assert status == 201 and len(body["salesOrderLines"]) == 1
    assert body["salesOrderLines"][0]["lineObjectNumber"] == item["number"]


def test_delete_sales_order(api):
    """DELETE companies({id})/salesOrders({id}) → 204. Source:
    MS Learn dev-itpro/api-reference/v2.0/api/dynamics_salesorder_delete"""
    customer = api.first("customers")
    created = api.json("POST", "salesOrders", json={"customerId": customer["id"]})[1]
    assert api.call("DELETE", f"salesOrders({created['id']})",
                    headers={"If-Match": created["@odata.etag"]}).status_code == 204
