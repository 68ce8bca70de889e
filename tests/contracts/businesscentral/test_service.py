"""The service itself: endpoint structure, service document, ``$metadata``, companies,
authentication and Business Central's error codes for malformed requests.

"MS Learn dev-itpro/PAGE" is
https://learn.microsoft.com/en-us/dynamics365/business-central/dev-itpro/PAGE.
"""

from __future__ import annotations

import requests

from sandbox import businesscentral as bc
from sandbox.businesscentral_edm import Metadata
from tests.contracts.businesscentral.conftest import error, message


def test_service_root_is_the_service_document(api):
    """"this URL points at the OData Service Document": GET {service root} → 200, the entity
    sets, each of which answers. Source: MS Learn dev-itpro/webservices/api-endpoint-structure"""
    status, body = api.json("GET", "/")
    assert status == 200 and body["value"]
    for entity_set in body["value"]:
        assert entity_set["kind"] == "EntitySet"
        answer = api.call("GET", f"/{entity_set['url']}?$top=1")
        assert answer.status_code == 200, entity_set


def test_metadata_announces_only_what_answers(api):
    """"Call (GET) the endpoint with $metadata to list all metadata for the API": every entity
    set in the container, and every navigation property of company, answers. Source:
    MS Learn dev-itpro/developer/devenv-connect-apps-tips"""
    response = api.call("GET", "/$metadata")
    assert response.status_code == 200 and "xml" in response.headers["Content-Type"]
    document = Metadata(response.text)
    for name in document.entity_sets:
        url = "/companies" if name == "companies" else name
        assert api.call("GET", f"{url}?$top=1").status_code == 200, name
    assert "<Action " not in response.text and "<Function " not in response.text


def test_companies(api):
    """GET companies → 200, ``value`` of companies with id, systemVersion, timestamp, name,
    displayName, businessProfileId and the system fields. Sources:
    MS Learn dev-itpro/api-reference/v2.0/api/dynamics_company_get and MS Learn
    dev-itpro/developer/devenv-connect-apps-tips"""
    status, body = api.json("GET", "/companies")
    assert status == 200 and body["@odata.context"].endswith("$metadata#companies")
    assert set(body["value"][0]) == {"id", "systemVersion", "timestamp", "name", "displayName",
                                     "businessProfileId", "systemCreatedAt", "systemCreatedBy",
                                     "systemModifiedAt", "systemModifiedBy"}
    status, one = api.json("GET", f"/companies({bc.COMPANY_ID})")
    assert status == 200 and one["id"] == bc.COMPANY_ID


def test_company_as_a_query_parameter(api):
    """"You can specify the company as a query parameter": {endpoint}?company=<companyGuid> is
    the same as companies(<companyGuid>)/{endpoint}. Source:
    MS Learn dev-itpro/webservices/api-endpoint-structure"""
    by_query = api.json("GET", f"/customers?company={bc.COMPANY_ID}&$top=5")
    by_path = api.json("GET", "customers?$top=5")
    assert by_query[0] == by_path[0] == 200 and by_query[1]["value"] == by_path[1]["value"]
    unknown = api.call("GET", "/customers?company=00000000-0000-0000-0000-00000000abcd")
    assert error(unknown)[0] == 404


def test_no_token_answers_401(api):
    """NavInvalidCredentialException → Authentication_InvalidCredentials "The server has
    rejected the client credentials" (401). Sources: MS Learn
    dev-itpro/webservices/dynamics-error-codes
    and MS Learn dev-itpro/webservices/web-service-troubleshooting"""
    response = requests.get(f"{api.company}/customers", timeout=10)
    assert error(response) == (401, "Authentication_InvalidCredentials")
    assert message(response).startswith("The server has rejected the client credentials")


def test_unknown_segment(api):
    """ODataResourceNotFoundException → BadRequest_ResourceNotFound "Resource not found for the
    segment '…'" (404: "this endpoint isn't available in metadata"). Sources:
    MS Learn dev-itpro/webservices/dynamics-error-codes and
    MS Learn dev-itpro/webservices/web-service-troubleshooting"""
    response = api.call("GET", "/nativeInvoicingItems")
    assert error(response) == (404, "BadRequest_ResourceNotFound")
    assert message(response) == "Resource not found for the segment 'nativeInvoicingItems'."


def test_post_to_companies_is_not_allowed(api):
    """ODataMethodNotAllowedException → BadRequest_MethodNotAllowed "'POST' requests for
    'companies' of EdmType 'Entity' are not allowed within Microsoft Dynamics NAV OData web
    services." (405). Source: MS Learn dev-itpro/webservices/dynamics-error-codes"""
    response = api.call("POST", "/companies", json={"name": "New"})
    assert error(response) == (405, "BadRequest_MethodNotAllowed")
    assert message(response) == ("'POST' requests for 'companies' of EdmType 'Entity' are not "
                                 "allowed within Microsoft Dynamics NAV OData web services.")


def test_stale_etag_is_a_conflict(api):
    """ODataConflictException → Request_EntityChanged "Another user has already changed the
    record." (409: "another user has already changed the record(s)"). Sources:
    MS Learn dev-itpro/webservices/dynamics-error-codes and MS Learn
    dev-itpro/webservices/web-service-troubleshooting"""
    customer = api.first("customers")
    url = f"customers({customer['id']})"
    assert api.call("PATCH", url, json={"city": "Oslo"},
                    headers={"If-Match": customer["@odata.etag"]}).status_code == 200
    stale = api.call("PATCH", url, json={"city": "Bergen"},
                     headers={"If-Match": customer["@odata.etag"]})
    assert error(stale) == (409, "Request_EntityChanged")
    assert message(stale) == "Another user has already changed the record."


def test_string_too_long(api):
    """NavNCLStringLengthExceededException → Application_StringExceededLength "The length of the
    string is 57, but it must be less than or equal to 50 characters." Source:
    MS Learn dev-itpro/webservices/dynamics-error-codes"""
    response = api.call("POST", "customers", json={"displayName": "x", "addressLine2": "y" * 57})
    assert error(response) == (400, "Application_StringExceededLength")
    assert message(response).startswith("The length of the string is 57, but it must be less "
                                        "than or equal to 50 characters.")


def test_invalid_guid(api):
    """NavNCLInvalidGuidFormatException → Application_InvalidGUID. Source:
    MS Learn dev-itpro/webservices/dynamics-error-codes"""
    response = api.call("POST", "customers", json={"displayName": "x", "currencyId": "USD"})
    assert error(response) == (400, "Application_InvalidGUID")


def test_record_not_found(api):
    """NavCSideRecordNotFoundException → Internal_RecordNotFound ("… does not exist.
    Identification fields and values: …"), e.g. an order for an unknown customer. Source:
    MS Learn dev-itpro/webservices/dynamics-error-codes"""
    response = api.call("POST", "salesOrders", json={"customerNumber": "NO-SUCH"})
    assert error(response) == (400, "Internal_RecordNotFound")
    assert "does not exist. Identification fields and values:" in message(response)


def test_read_only_property(api):
    """ODataInvalidOperationException → BadRequest_InvalidOperation for a read-only control.
    Source: MS Learn dev-itpro/webservices/dynamics-error-codes"""
    customer = api.first("customers")
    response = api.call("PATCH", f"customers({customer['id']})",
                        json={"lastModifiedDateTime": "2020-01-01T00:00:00Z"},
                        headers={"If-Match": "*"})
    assert error(response) == (400, "BadRequest_InvalidOperation")


def test_data_access_intent(api):
    """``Data-Access-Intent: ReadOnly`` is allowed on GET; "Trying to specify
    Data-Access-Intent: ReadOnly for such [modification] requests will result in an error."
    Source: MS Learn dev-itpro/developer/devenv-connect-apps-tips"""
    assert api.call("GET", "customers?$top=1",
                    headers={"Data-Access-Intent": "ReadOnly"}).status_code == 200
    response = api.call("POST", "customers", json={"displayName": "x"},
                        headers={"Data-Access-Intent": "ReadOnly"})
    assert error(response)[0] == 400


def test_every_link_handed_out_answers(api):
    """``@odata.context`` points into ``$metadata``, ``@odata.nextLink`` at the next page,
    ``Location`` (``Prefer: return=minimal``) at the created entity: each answers 200. Sources:
    MS Learn dev-itpro/developer/devenv-connect-apps-tips ("@odata.context":
    "<endpoint>/$metadata#companies") and
    MS Learn dev-itpro/webservices/Server-Driven-Paging-in-OData-Web-Services"""
    page = api.call("GET", "salesOrders?$expand=salesOrderLines",
                    headers={"Prefer": "odata.maxpagesize=5"}).json()
    links = [page["@odata.context"].split("#")[0], page["@odata.nextLink"]]
    order = page["value"][0]
    links.append(api.json("GET", f"salesOrders({order['id']})")[1]["@odata.context"].split("#")[0])
    created = api.call("POST", "customers", json={"displayName": "Linked AS"},
                       headers={"Prefer": "return=minimal"})
    links += [created.headers["Location"], created.headers["OData-EntityId"]]
    for link in links:
        assert api.call("GET", link).status_code == 200, link
