"""OData query options as Business Central documents them: ``$filter`` (Microsoft's filter
table, and its limit on ``or``), ``$top``/``$skip``/``$count``, ``$orderby``, ``$select``,
``$expand``, server-driven paging with ``Prefer: odata.maxpagesize``.

"MS Learn dev-itpro/PAGE" is
https://learn.microsoft.com/en-us/dynamics365/business-central/dev-itpro/PAGE.
"""

from __future__ import annotations

import urllib.parse

from tests.contracts.businesscentral.conftest import error, message


def _values(api, query: str) -> list[dict]:
    status, body = api.json("GET", query)
    assert status == 200, body
    return body["value"]


def test_filter_with_and_and_comparisons(api):
    """``$filter=status eq 'Open' and totalAmountExcludingTax gt 1000.00`` (Microsoft's example,
    here on salesOrders) → only matching entities. Source:
    MS Learn dev-itpro/developer/devenv-connect-apps-filtering"""
    orders = _values(api, "salesOrders?$filter=status eq 'Open' and "
                          "totalAmountExcludingTax gt 1000.00")
    everything = _values(api, "salesOrders")
    expected = [o["id"] for o in everything
                if o["status"] == "Open" and o["totalAmountExcludingTax"] > 1000]
    assert sorted(o["id"] for o in orders) == sorted(expected) and expected


def test_filter_or_on_one_property(api):
    """"You can use OR operators to apply different filters on the same field" → 200. Source:
    MS Learn dev-itpro/webservices/use-filter-expressions-in-odata-uris"""
    customers = _values(api, "customers?$filter=type eq 'Company' or type eq 'Person'")
    assert len(customers) == len(_values(api, "customers"))


def test_filter_or_on_two_properties_is_refused(api):
    """"you can't use OR operators to apply filters on two different fields": "The 'OR'
    operator is not supported on distinct fields on an OData filter." Sources:
    MS Learn dev-itpro/webservices/use-filter-expressions-in-odata-uris and
    MS Learn dev-itpro/webservices/odata-known-limitations"""
    response = api.call("GET", "customers?$filter=city eq 'Oslo' or type eq 'Person'")
    assert error(response)[0] == 400
    assert message(response).endswith("The 'OR' operator is not supported on distinct fields on "
                                      "an OData filter.")


def test_filter_ranges_and_not_equal(api):
    """``gt``/``lt`` (a range) and ``ne`` from the filter table. Source:
    MS Learn dev-itpro/webservices/use-filter-expressions-in-odata-uris"""
    items = _values(api, "items?$filter=unitPrice gt 100 and unitPrice lt 500")
    assert items and all(100 < i["unitPrice"] < 500 for i in items)
    others = _values(api, f"items?$filter=number ne '{items[0]['number']}'")
    assert items[0]["id"] not in {i["id"] for i in others}


def test_top_skip_and_count(api):
    """``$top``, ``$skip`` and ``$count=true`` are OData system query options BC honours:
    ``$skip=3&$top=2`` is the 4th and 5th entity, ``@odata.count`` the number matching.
    Source: MS Learn dev-itpro/webservices/odata-client-performance (and the OData query options
    overview it links, https://learn.microsoft.com/en-us/odata/concepts/queryoptions-overview)"""
    everything = _values(api, "customers?$orderby=number")
    status, body = api.json("GET", "customers?$orderby=number&$skip=3&$top=2&$count=true")
    assert status == 200 and body["@odata.count"] == len(everything)
    assert [c["id"] for c in body["value"]] == [c["id"] for c in everything[3:5]]


def test_count_segment(api):
    """``GET …/customers/$count`` → the number as plain text; with ``$filter`` the matching
    number. Source: https://learn.microsoft.com/en-us/odata/concepts/queryoptions-overview
    (OData, which MS Learn dev-itpro/webservices/use-filter-expressions-in-odata-uris refers to)"""
    response = api.call("GET", "customers/$count")
    assert response.status_code == 200 and response.headers["Content-Type"].startswith(
        "text/plain")
    assert int(response.text) == len(_values(api, "customers"))
    companies = api.call("GET", "customers/$count?$filter=type eq 'Company'")
    assert int(companies.text) == len(_values(api, "customers?$filter=type eq 'Company'"))


def test_orderby_descending(api):
    """``$orderby=number desc`` sorts descending. Source:
    https://learn.microsoft.com/en-us/odata/concepts/queryoptions-overview"""
    numbers = [i["number"] for i in _values(api, "items?$orderby=number desc")]
    assert numbers == sorted(numbers, reverse=True)


def test_select(api):
    """``$select=displayName,number`` returns those properties (and the key). Source:
    MS Learn dev-itpro/webservices/odata-client-performance"""
    customers = _values(api, "customers?$top=3&$select=displayName,number")
    assert [set(c) for c in customers] == [{"@odata.etag", "id", "displayName", "number"}] * 3


def test_expand_sales_order_lines(api):
    """``$expand=salesOrderLines`` on salesOrders returns each order with its lines. Source:
    MS Learn dev-itpro/api-reference/v2.0/api/dynamics_salesorder_get (navigation property
    salesOrderLines of
    MS Learn dev-itpro/api-reference/v2.0/resources/dynamics_salesorder)"""
    orders = _values(api, "salesOrders?$top=3&$expand=salesOrderLines")
    assert all(o["salesOrderLines"] and all(line["documentId"] == o["id"]
                                            for line in o["salesOrderLines"]) for o in orders)


def test_server_driven_paging_with_maxpagesize(api):
    """``Prefer: odata.maxpagesize=300`` sets the page size; every ``@odata.nextLink`` is
    followed to the end and each entity comes once. Source:
    MS Learn dev-itpro/webservices/Server-Driven-Paging-in-OData-Web-Services"""
    url, seen = f"{api.company}/customers", []
    while url:
        response = api.call("GET", url, headers={"Prefer": "odata.maxpagesize=30"})
        assert response.status_code == 200
        assert response.headers["Preference-Applied"] == "odata.maxpagesize=30"
        seen += response.json()["value"]
        url = response.json().get("@odata.nextLink")
    assert len(seen) == len({c["id"] for c in seen}) == len(_values(api, "customers"))


def test_next_link_keeps_the_query(api):
    """A nextLink carries the request's filter, order and count; ``$skip`` is applied once.
    Source: MS Learn dev-itpro/webservices/Server-Driven-Paging-in-OData-Web-Services"""
    query = "customers?$filter=type eq 'Company'&$orderby=displayName desc&$skip=5&$count=true"
    wanted = _values(api, "customers?$filter=type eq 'Company'&$orderby=displayName desc")[5:]
    response = api.call("GET", query, headers={"Prefer": "odata.maxpagesize=40"})
    seen, body = [], response.json()
    while True:
        assert body["@odata.count"] == len(wanted) + 5
        seen += body["value"]
        link = body.get("@odata.nextLink")
        if not link:
            break
        assert "$skip" not in urllib.parse.parse_qs(urllib.parse.urlsplit(link).query)
        body = api.call("GET", link, headers={"Prefer": "odata.maxpagesize=40"}).json()
    assert [c["id"] for c in seen] == [c["id"] for c in wanted]


def test_filter_string_functions(api):
    """``startswith(Name, 'S')``, ``contains(Name, 'urn')`` and ``endswith`` from Microsoft's
    filter table (case-sensitive, as the ``*`` wildcards they become). Source:
    MS Learn dev-itpro/webservices/use-filter-expressions-in-odata-uris"""
    everything = _values(api, "customers")
    starts = _values(api, "customers?$filter=startswith(displayName, 'S')")
    assert sorted(c["id"] for c in starts) == sorted(
        c["id"] for c in everything if c["displayName"].startswith("S"))
    assert starts
    contains = _values(api, "customers?$filter=contains(displayName, 'an')")
    assert sorted(c["id"] for c in contains) == sorted(
        c["id"] for c in everything if "an" in c["displayName"])
    ends = _values(api, "customers?$filter=endswith(displayName, 'AS') eq false")
    assert sorted(c["id"] for c in ends) == sorted(
        c["id"] for c in everything if not c["displayName"].endswith("AS"))
