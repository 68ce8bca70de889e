"""What Business Central honours but the emulator does not emulate is refused loudly (501
``BadRequest_MethodNotImplemented`` in BC's error shape), never ignored. Each test names the
page that documents the feature; docs/api/businesscentral.md lists them all.

"MS Learn dev-itpro/PAGE" is
https://learn.microsoft.com/en-us/dynamics365/business-central/dev-itpro/PAGE.
"""

from __future__ import annotations

import pytest

from tests.contracts.businesscentral.conftest import error


@pytest.mark.parametrize("query", [
    # "endswith", "startswith", "contains", "substring", "tolower", "toupper" and "in":
    # MS Learn dev-itpro/webservices/use-filter-expressions-in-odata-uris
    "customers?$filter=tolower(city) eq 'oslo'",
    "customers?$filter=substring(city, 1) eq 'slo'",
    "customers?$filter=number in ('C1', 'C2')",
    # lambda operators: MS Learn dev-itpro/webservices/odata-known-limitations
    "salesOrders?$filter=salesOrderLines/any(l: l/quantity gt 1)",
    # $schemaversion: MS Learn dev-itpro/webservices/use-filter-expressions-in-odata-uris
    "customers?$schemaversion=2.1",
    # nested options beyond $select: MS Learn dev-itpro/webservices/odata-client-performance
    "salesOrders?$expand=salesOrderLines($filter=quantity gt 1)",
    # every navigation property at once:
    # https://learn.microsoft.com/en-us/odata/concepts/queryoptions-overview
    "salesOrders?$expand=*",
])
def test_query_features_not_emulated(api, query):
    """Documented query features the emulator does not evaluate → 501. Sources: in the
    parameters."""
    assert error(api.call("GET", query)) == (501, "BadRequest_MethodNotImplemented")


@pytest.mark.parametrize("headers", [
    # Accept-Language: MS Learn dev-itpro/developer/devenv-connect-apps-tips
    {"Accept-Language": "da-DK"},
    # change tracking (delta links) is a preference: https://learn.microsoft.com/en-us/odata/
    {"Prefer": "odata.track-changes"},
    # conditional GET
    {"If-None-Match": 'W/"x"'},
    # the Atom format of OData web services: MS Learn
    # dev-itpro/webservices/return-obtain-an-atompub-document
    {"Accept": "application/atom+xml"},
])
def test_headers_not_emulated(api, headers):
    """Request headers whose effect the emulator does not reproduce → 501. Sources: in the
    parameters."""
    assert error(api.call("GET", "customers?$top=1", headers=headers)) == (
        501, "BadRequest_MethodNotImplemented")


def test_english_is_served(api):
    """``Accept-Language: en-US`` (Microsoft's own example) is honoured. Source:
    MS Learn dev-itpro/developer/devenv-connect-apps-tips"""
    assert api.call("GET", "customers?$top=1",
                    headers={"Accept-Language": "en-US"}).status_code == 200


def test_expand_of_a_navigation_property_not_served(api):
    """``$expand=customerFinancialDetails`` (documented on "Get customers") is not served and
    not announced in the emulator's $metadata → 400 "Could not find a property". Source:
    MS Learn dev-itpro/api-reference/v2.0/api/dynamics_customer_get"""
    customer = api.first("customers")
    response = api.call("GET", f"customers({customer['id']})?$expand=customerFinancialDetails")
    assert error(response) == (400, "BadRequest")


def test_unknown_system_query_option(api):
    """An OData system query option that does not exist → 400. Source:
    https://learn.microsoft.com/en-us/odata/concepts/queryoptions-overview"""
    assert error(api.call("GET", "customers?$nosuch=1")) == (400, "BadRequest")


def test_multipart_batch(api):
    """OData's multipart/mixed ``$batch`` (BC takes it besides the JSON format) → 501. Source:
    MS Learn dev-itpro/webservices/use-odata-batch ("Content-Type: application/json. Required
    for JSON Batch content")"""
    response = api.call("POST", "/$batch", data=b"--batch_1--\r\n",
                        headers={"Content-Type": "multipart/mixed; boundary=batch_1"})
    assert error(response) == (501, "BadRequest_MethodNotImplemented")
