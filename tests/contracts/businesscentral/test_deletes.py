"""How an entity leaves Business Central through API v2.0: the documented ``DELETE`` of a sales
order, the ``blocked`` property that deactivates customers and items, and BC's refusal to delete
a customer or an item that an outstanding sales order still uses (why talksync's delete policy
``propagate`` deactivates those two instead, ``docs/api/businesscentral.md``).

"MS Learn dev-itpro/PAGE" is
https://learn.microsoft.com/en-us/dynamics365/business-central/dev-itpro/PAGE.
"""

from __future__ import annotations

from tests.contracts.businesscentral.conftest import error, message
from tests.contracts.businesscentral.test_customers_items import CUSTOMER


def _order(api, customer: dict) -> dict:
    item = api.first("items")
    status, order = api.json("POST", "salesOrders?$expand=salesOrderLines", json={
        "customerId": customer["id"],
        "salesOrderLines": [{"lineType": "Item", "itemId": item["id"], "quantity": 1}]})
    assert status == 201
    return order


def test_delete_sales_order(api):
    """DELETE companies({id})/salesOrders({id}) with If-Match → 204 No Content, no body; the
    order and its lines are gone (GET → 404). Source: MS Learn
    dev-itpro/api-reference/v2.0/api/dynamics_salesorder_delete"""
    order = _order(api, api.first("customers"))
    line = order["salesOrderLines"][0]

    response = api.call("DELETE", f"salesOrders({order['id']})",
                        headers={"If-Match": order["@odata.etag"]})

    assert response.status_code == 204 and response.content == b""
    assert error(api.call("GET", f"salesOrders({order['id']})")) == (404, "BadRequest_NotFound")
    assert api.call("GET", f"salesOrderLines({line['id']})").status_code == 404


def test_delete_needs_the_current_etag(api):
    """"If-Match: Required. When … the eTag provided does not match the current tag on the
    salesOrders, the salesOrders will not be updated": a stale ETag → 409
    ``Request_EntityChanged``, none → 400 ``BadRequest_InvalidToken``; the order stays.
    Sources: MS Learn dev-itpro/api-reference/v2.0/api/dynamics_salesorder_delete and the error
    codes of dev-itpro/developer/devenv-api-error-codes (apis.md §1.7)"""
    order = _order(api, api.first("customers"))
    api.call("PATCH", f"salesOrders({order['id']})", json={"externalDocumentNumber": "X"},
             headers={"If-Match": order["@odata.etag"]})

    assert error(api.call("DELETE", f"salesOrders({order['id']})",
                          headers={"If-Match": order["@odata.etag"]})) == (
        409, "Request_EntityChanged")
    assert error(api.call("DELETE", f"salesOrders({order['id']})")) == (
        400, "BadRequest_InvalidToken")
    assert api.call("GET", f"salesOrders({order['id']})").status_code == 200


def test_delete_customer_without_documents(api):
    """DELETE companies({id})/customers({id}) → 204 for a customer nothing refers to. Source:
    MS Learn dev-itpro/api-reference/v2.0/api/dynamics_customer_delete"""
    customer = api.json("POST", "customers", json=CUSTOMER)[1]

    response = api.call("DELETE", f"customers({customer['id']})",
                        headers={"If-Match": customer["@odata.etag"]})

    assert response.status_code == 204
    assert api.call("GET", f"customers({customer['id']})").status_code == 404


def test_a_customer_or_item_an_outstanding_order_uses_cannot_be_deleted(api):
    """The Customer and Item tables refuse the delete in their OnDelete trigger while an
    outstanding sales order uses them: labels ``Text000`` "You cannot delete %1 %2 because
    there is at least one outstanding Sales %3 for this customer." and ``Text001`` "… that
    includes this item." (microsoft/BCApps, BaseApp ``Customer.Table.al`` / ``Item.Table.al``),
    answered as an error dialog, 400 ``Application_DialogException``. Deleting the order first
    lets the customer go."""
    customer = api.json("POST", "customers", json=CUSTOMER)[1]
    order = _order(api, customer)
    item = api.json("GET", f"items({order['salesOrderLines'][0]['itemId']})")[1]

    refused = api.call("DELETE", f"customers({customer['id']})",
                       headers={"If-Match": customer["@odata.etag"]})
    assert error(refused) == (400, "Application_DialogException")
    assert message(refused) == (f"You cannot delete Customer {customer['number']} because there "
                                "is at least one outstanding Sales Order for this customer.")
    refused = api.call("DELETE", f"items({item['id']})", headers={"If-Match": item["@odata.etag"]})
    assert error(refused) == (400, "Application_DialogException")
    assert "outstanding Sales Order that includes this item" in message(refused)

    api.call("DELETE", f"salesOrders({order['id']})", headers={"If-Match": "*"})
    assert api.call("DELETE", f"customers({customer['id']})",
                    headers={"If-Match": customer["@odata.etag"]}).status_code == 204


def test_block_customer_for_all_transactions(api):
    """PATCH companies({id})/customers({id}) ``{"blocked": "All"}`` → 200 with the customer;
    it is still read (by id and in the list) with ``blocked`` "All": "No transactions are
    allowed for the customer, including payments." Sources: MS Learn
    dev-itpro/api-reference/v2.0/api/dynamics_customer_update, resources/dynamics_customer
    (``blocked``: enum customerBlocked " ", Ship, Invoice, All) and "Blocked Field, Customer
    Table" (learn.microsoft.com/previous-versions/dynamicsnav-2016/hh894189(v=nav.90))"""
    customer = api.json("POST", "customers", json=CUSTOMER)[1]

    status, body = api.json("PATCH", f"customers({customer['id']})", json={"blocked": "All"},
                            headers={"If-Match": customer["@odata.etag"]})

    assert status == 200 and body["blocked"] == "All"
    assert body["@odata.etag"] != customer["@odata.etag"]
    assert api.json("GET", f"customers({customer['id']})")[1]["blocked"] == "All"
    listed = api.json("GET", f"customers?$filter=id eq {customer['id']}")[1]["value"]
    assert [c["blocked"] for c in listed] == ["All"]


def test_block_item(api):
    """PATCH companies({id})/items({id}) ``{"blocked": true}`` → 200; "blocked: Specifies that
    transactions with the item can't be posted … Set to true, if item is blocked." Sources: MS
    Learn dev-itpro/api-reference/v2.0/api/dynamics_item_update and resources/dynamics_item"""
    item = api.first("items")

    status, body = api.json("PATCH", f"items({item['id']})", json={"blocked": True},
                            headers={"If-Match": item["@odata.etag"]})

    assert status == 200 and body["blocked"] is True
    assert api.json("GET", f"items({item['id']})")[1]["blocked"] is True


def test_no_new_order_for_a_customer_blocked_for_all(api):
    """A customer blocked "All" takes no new documents: the Customer table's check on
    documents, label ``Text006`` "You cannot %1 this type of document when Customer %2 is
    blocked with type %3" with ``Text005`` "create" (microsoft/BCApps, BaseApp
    ``Customer.Table.al``), answered as an error dialog, 400 ``Application_DialogException``."""
    customer = api.json("POST", "customers", json=CUSTOMER)[1]
    blocked = api.json("PATCH", f"customers({customer['id']})", json={"blocked": "All"},
                       headers={"If-Match": customer["@odata.etag"]})[1]

    refused = api.call("POST", "salesOrders", json={"customerId": blocked["id"]})

    assert error(refused) == (400, "Application_DialogException")
    assert message(refused) == ("You cannot create this type of document when Customer "
                                f"{customer['number']} is blocked with type All")
