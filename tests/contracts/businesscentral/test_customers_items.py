"""Customers and items: Microsoft Learn's own requests of API v2.0 and the documented answers
(status, and the properties the example response shows). Each test names its page.

"MS Learn dev-itpro/PAGE" is
https://learn.microsoft.com/en-us/dynamics365/business-central/dev-itpro/PAGE.
"""

from __future__ import annotations

from decimal import Decimal

from sandbox.businesscentral_edm import metadata
from tests.contracts.businesscentral.conftest import error

#: "Create customers", request body exactly as documented
CUSTOMER = {
    "displayName": "Adatum Corporation", "type": "Company", "addressLine1": "192 Market Square",
    "addressLine2": "", "city": "Atlanta", "state": "GA", "country": "US", "postalCode": "31772",
    "phoneNumber": "", "email": "robert.townes@contoso.com", "website": "", "taxLiable": True,
    "taxAreaId": "90196a90-44e3-ea11-bb43-000d3a2feca1", "taxRegistrationNumber": "",
    "currencyId": "00000000-0000-0000-0000-000000000000", "currencyCode": "USD",
    "paymentTermsId": "04a5738a-44e3-ea11-bb43-000d3a2feca1",
    "shipmentMethodId": "00000000-0000-0000-0000-000000000000",
    "paymentMethodId": "3b196a90-44e3-ea11-bb43-000d3a2feca1", "blocked": " "}
#: "Create items", request body exactly as documented (the number made unique per test run)
ITEM = {
    "number": "1896-S", "displayName": "ATHENS Desk", "type": "Inventory",
    "itemCategoryId": "e21a6a90-44e3-ea11-bb43-000d3a2feca1", "itemCategoryCode": "TABLE",
    "blocked": False, "gtin": "", "unitPrice": Decimal("1000.8"), "priceIncludesTax": False,
    "unitCost": Decimal("780.7"), "taxGroupId": "9f196a90-44e3-ea11-bb43-000d3a2feca1",
    "taxGroupCode": "FURNITURE", "baseUnitOfMeasureId": "5ca6738a-44e3-ea11-bb43-000d3a2feca1",
    "baseUnitOfMeasureCode": "PCS"}


def _all_properties(entity_set: str) -> set[str]:
    return set(metadata().entity_set(entity_set).properties)


def test_create_customer_with_the_documented_body(api):
    """POST companies({id})/customers with Microsoft's example, ``"blocked": " "`` included
    → 201 and a customers object. Source: MS Learn
    dev-itpro/api-reference/v2.0/api/dynamics_customer_create"""
    status, body = api.json("POST", "customers", json=CUSTOMER)
    assert status == 201
    for name, value in CUSTOMER.items():
        if name != "blocked":
            assert body[name] == value, name
    assert body["blocked"] in (" ", "_x0020_")     # the blank member, in the tenant's form
    assert body["number"] and body["id"] and body["lastModifiedDateTime"]
    # "All of the properties will be returned from an actual call."
    assert set(body) - {"@odata.context", "@odata.etag"} == _all_properties("customers")


def test_get_customer(api):
    """GET companies({id})/customers({id}) → 200 and the customer. Source:
    MS Learn dev-itpro/api-reference/v2.0/api/dynamics_customer_get"""
    created = api.json("POST", "customers", json=CUSTOMER)[1]
    status, body = api.json("GET", f"customers({created['id']})")
    assert status == 200 and body["id"] == created["id"]
    assert body["displayName"] == "Adatum Corporation" and body["taxAreaId"] == CUSTOMER[
        "taxAreaId"]


def test_update_customer(api):
    """PATCH companies({id})/customers({id}) with If-Match and the documented body → 200 and
    the updated customer. Source: MS Learn
    dev-itpro/api-reference/v2.0/api/dynamics_customer_update"""
    created = api.json("POST", "customers", json=CUSTOMER)[1]
    status, body = api.json("PATCH", f"customers({created['id']})",
                            json={"displayName": "Coho Winery Inc.",
                                  "phoneNumber": "(555) 555-1234"},
                            headers={"If-Match": created["@odata.etag"]})
    assert status == 200
    assert (body["displayName"], body["phoneNumber"]) == ("Coho Winery Inc.", "(555) 555-1234")
    assert body["addressLine1"] == "192 Market Square"     # the rest keeps its values


def test_delete_customer(api):
    """DELETE companies({id})/customers({id}) with If-Match → 204, no body; then 404. Source:
    MS Learn dev-itpro/api-reference/v2.0/api/dynamics_customer_delete"""
    created = api.json("POST", "customers", json=CUSTOMER)[1]
    response = api.call("DELETE", f"customers({created['id']})",
                        headers={"If-Match": created["@odata.etag"]})
    assert response.status_code == 204 and response.content == b""
    assert api.call("GET", f"customers({created['id']})").status_code == 404


def test_patch_without_if_match_is_refused(api):
    """If-Match is "Required" on PATCH; BC's OData error for a missing concurrency token is
    BadRequest_InvalidToken (400). Sources: MS Learn
    dev-itpro/api-reference/v2.0/api/dynamics_customer_update and
    MS Learn dev-itpro/webservices/dynamics-error-codes"""
    customer = api.first("customers")
    response = api.call("PATCH", f"customers({customer['id']})", json={"city": "Oslo"})
    assert error(response) == (400, "BadRequest_InvalidToken")


def test_patch_with_if_match_star(api):
    """"PATCH operations require the 'If-Match' header to be set, either with a retrieved ETag
    or with '*'." Source: MS Learn dev-itpro/webservices/use-odata-to-modify-data"""
    customer = api.first("customers")
    status, body = api.json("PATCH", f"customers({customer['id']})", json={"city": "Oslo"},
                            headers={"If-Match": "*"})
    assert status == 200 and body["city"] == "Oslo"


def test_create_item_with_the_documented_body(api):
    """POST companies({id})/items with Microsoft's example → 201 with ``inventory`` 0 and all
    properties. Source: MS Learn dev-itpro/api-reference/v2.0/api/dynamics_item_create"""
    status, body = api.json("POST", "items", json={**ITEM, "number": "1896-S-A"})
    assert status == 201
    for name, value in ITEM.items():
        if name != "number":
            assert body[name] == value, name
    assert body["number"] == "1896-S-A" and body["inventory"] == 0
    assert set(body) - {"@odata.context", "@odata.etag"} == _all_properties("items")


def test_get_item(api):
    """GET companies({id})/items({id}) → 200. Source: MS Learn
    dev-itpro/api-reference/v2.0/api/dynamics_item_get"""
    created = api.json("POST", "items", json={**ITEM, "number": "1896-S-B"})[1]
    status, body = api.json("GET", f"items({created['id']})")
    assert status == 200 and (body["number"], body["displayName"]) == ("1896-S-B", "ATHENS Desk")


def test_update_item(api):
    """PATCH companies({id})/items({id}) with the documented body → 200, blocked. Source:
    MS Learn dev-itpro/api-reference/v2.0/api/dynamics_item_update"""
    created = api.json("POST", "items", json={**ITEM, "number": "1896-S-C"})[1]
    status, body = api.json("PATCH", f"items({created['id']})",
                            json={"displayName": "ATHENS Desk - blocked", "blocked": True},
                            headers={"If-Match": created["@odata.etag"]})
    assert status == 200 and body["blocked"] is True
    assert body["displayName"] == "ATHENS Desk - blocked"


def test_item_with_an_existing_number_is_refused(api):
    """A second item with the same No.: NavCSideDuplicateKeyException →
    Internal_EntityWithSameKeyExists. Source: MS Learn dev-itpro/webservices/dynamics-error-codes"""
    api.json("POST", "items", json={**ITEM, "number": "1896-S-D"})
    response = api.call("POST", "items", json={**ITEM, "number": "1896-S-D"})
    assert error(response) == (400, "Internal_EntityWithSameKeyExists")


def test_an_enum_value_that_is_no_option(api):
    """``"type": "Invalid Type"`` on an item: BC answers 400, code ``Unknown``, "'Invalid
    Type' is not an option. The existing options are: Inventory,Service,Non-Inventory".
    Source: MS Learn dev-itpro/webservices/use-odata-batch"""
    item = api.first("items")
    response = api.call("PATCH", f"items({item['id']})", json={"type": "Invalid Type"},
                        headers={"If-Match": "*"})
    assert error(response) == (400, "Unknown")
    assert response.json()["error"]["message"].startswith(
        "'Invalid Type' is not an option. The existing options are: "
        "Inventory,Service,Non-Inventory")
