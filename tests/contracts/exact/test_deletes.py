"""How an account, an item or a sales order leaves Exact Online: the ``DELETE`` its REST
reference lists for each of the three, answered 204, and the row ``sync/Deleted`` then holds
(the way talksync's delete policy ``propagate`` removes them from Exact, and the way it reads
deletions made in Exact; ``docs/api/exact.md``)."""

from __future__ import annotations

import pytest

from sandbox.exact_reference import endpoints
from tests.contracts.exact.conftest import error_value
from tests.contracts.exact.sources import reference_page, source

#: endpoint, path, key, ``sync/Deleted`` EntityType (reference_page("SyncDeleted"): "2=
#: Accounts … 9= Items … 12= SalesOrders")
DELETABLE = [("Accounts", "crm/Accounts", "ID", 2), ("Items", "logistics/Items", "ID", 9),
             ("SalesOrders", "salesorder/SalesOrders", "OrderID", 12)]


@source(reference_page("CRMAccounts"), reference_page("LogisticsItems"),
        reference_page("SalesOrderSalesOrders"))
def test_the_reference_lists_delete_for_accounts_items_and_sales_orders(exact):
    """Source: the three reference pages, each "GET POST PUT DELETE" (the copy of the
    reference the sandbox serves from, shared/specs/exact-online-rest-metadata-subset.json)."""
    for endpoint, path, _, _ in DELETABLE:
        documented = endpoints()[endpoint]
        assert documented["supportedMethods"]["delete"] is True, endpoint
        assert documented["uri"] == f"/api/v1/{{division}}/{path}"


@pytest.mark.parametrize("endpoint, path, key, entity_type", DELETABLE)
@source(reference_page("CRMAccounts"), reference_page("LogisticsItems"),
        reference_page("SalesOrderSalesOrders"), reference_page("SyncDeleted"))
def test_delete_answers_204_and_leaves_a_sync_deleted_row(exact, endpoint, path, key,
                                                          entity_type):
    """Source: the resource's reference page (DELETE of ``…(guid'id')``, an empty 204 as
    ossobv/exactonline ``Manager.delete`` expects) and reference_page("SyncDeleted")
    (``EntityKey`` = the deleted entity's ID, ``EntityType``): the entity is gone (GET → 404)
    and ``sync/Deleted`` has its row."""
    entity = exact.json("GET", path, params={"$top": "1"})[1]["d"]["results"][0]

    gone = exact.call("DELETE", f"{path}(guid'{entity[key]}')")

    assert gone.status_code == 204 and gone.text == ""
    assert exact.call("GET", f"{path}(guid'{entity[key]}')").status_code == 404
    rows = exact.json("GET", "sync/Deleted", params={
        "$select": "Timestamp,EntityKey,EntityType,DeletedDate",
        "$filter": f"EntityType eq {entity_type}"})[1]["d"]["results"]
    assert [r["EntityKey"] for r in rows][-1] == entity[key]


@source(reference_page("SalesOrderSalesOrders"), reference_page("SalesOrderSalesOrderLines"))
def test_a_deleted_sales_order_takes_its_lines_with_it(exact):
    """Source: reference_page("SalesOrderSalesOrders") (DELETE) and
    reference_page("SalesOrderSalesOrderLines") (a line belongs to its ``OrderID``): after the
    order's DELETE its lines answer 404 too."""
    order = exact.json("GET", "salesorder/SalesOrders",
                       params={"$top": "1", "$expand": "SalesOrderLines"})[1]["d"]["results"][0]
    line_ids = [line["ID"] for line in order["SalesOrderLines"]["results"]]
    assert line_ids

    assert exact.call("DELETE", f"salesorder/SalesOrders(guid'{order['OrderID']}')"
                      ).status_code == 204

    for line_id in line_ids:
        assert exact.call("GET", f"salesorder/SalesOrderLines(guid'{line_id}')"
                          ).status_code == 404


@source(reference_page("CRMAccounts"))
def test_a_delete_of_an_unknown_id_is_404_in_exacts_error_shape(exact):
    """Source: reference_page("CRMAccounts"); the error body as tests/contracts/exact's
    ``ERRORS`` documents it. A client reads this 404 as "gone already"."""
    response = exact.call("DELETE", "crm/Accounts(guid'0b6c3f1e-1d2a-4c3b-9e8f-7a6b5c4d3e2f')")

    assert response.status_code == 404
    assert error_value(response.json())
