"""JSON ``$batch`` as Microsoft documents it: the transactional example (``Isolation:
snapshot``, inner URLs relative to the service root with a ``Company`` header) and BC's limit
of 100 operations.

"MS Learn dev-itpro/PAGE" is
https://learn.microsoft.com/en-us/dynamics365/business-central/dev-itpro/PAGE.
"""

from __future__ import annotations

from sandbox import businesscentral as bc
from tests.contracts.businesscentral.conftest import error


def _batch(api, item_id: str) -> dict:
    """Microsoft's example body, for one of our items: a valid PATCH, then one that fails."""
    headers = {"Company": bc.COMPANY_NAME, "Content-Type": "application/json", "If-Match": "*"}
    return {"requests": [
        {"method": "PATCH", "url": f"items({item_id})", "headers": headers,
         "body": {"displayName": "Touring Bicycle v2"}},
        {"method": "PATCH", "url": f"items({item_id})", "headers": headers,
         "body": {"type": "Invalid Type"}}]}


def test_transactional_batch_rolls_everything_back(api):
    """With ``Isolation: snapshot``, the first request answers 200, the invalid one 400 (code
    Unknown), and "none of the changes made by either of the successful inner requests are
    applied". Source: MS Learn dev-itpro/webservices/use-odata-batch"""
    item = api.first("items")
    status, body = api.json("POST", "/$batch", json=_batch(api, item["id"]),
                            headers={"Isolation": "snapshot", "Accept": "application/json"})
    assert status == 200
    first, second = body["responses"]
    assert (first["id"], first["status"]) == (None, 200)
    assert first["body"]["displayName"] == "Touring Bicycle v2"
    assert second["status"] == 400 and second["body"]["error"]["code"] == "Unknown"
    assert api.json("GET", f"items({item['id']})")[1]["displayName"] == item["displayName"]


def test_batch_without_isolation_keeps_what_succeeded(api):
    """Without the header each inner request stands alone: the valid change stays. Source:
    MS Learn dev-itpro/webservices/use-odata-batch ("To enable transactional batch behavior, include
    the
    Isolation: snapshot header")"""
    item = api.first("items")
    status, body = api.json("POST", "/$batch", json=_batch(api, item["id"]))
    assert status == 200 and [r["status"] for r in body["responses"]] == [200, 400]
    assert api.json("GET", f"items({item['id']})")[1]["displayName"] == "Touring Bicycle v2"


def test_batch_of_more_than_100_is_refused(api):
    """"Max batch size: The maximum number of operations in an OData V4 $batch request: 100".
    Source: MS Learn dev-itpro/administration/operational-limits-online"""
    requests = [{"id": str(i), "method": "GET", "url": "items?$top=1"} for i in range(101)]
    assert error(api.call("POST", "/$batch", json={"requests": requests}))[0] == 400
    status, body = api.json("POST", "/$batch", json={"requests": requests[:100]})
    assert status == 200 and {r["status"] for r in body["responses"]} == {200}
