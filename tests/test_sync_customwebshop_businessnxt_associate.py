"""End to end: `talksync run customwebshop-businessnxt` against a Business NXT company that keeps
its customers as associates (``customer_table: associate``, decision 0014): webshop customers
become associates with server-suggested customer numbers, orders name those numbers, suppliers
stay out, and the rerun writes nothing."""

from __future__ import annotations

import pytest

from core.spec import get_dataflow
from sandbox import businessnxt_model as model
from sandbox.seed_businessnxt import ADDRESSES, SHARED_ADDRESSES, SUPPLIERS
from tests.conftest import group_by
from tests.test_sync_customwebshop_businessnxt import DATAFLOW, NxtHarness, _writes

ASSOCIATE = ("associateNo customerNo supplierNo name emailAddress phone addressLine1 postCode "
             "postalArea countryNo changedTimestamp")
ORDER = "orderNo customerNo customerOrderNo changedTimestamp"


@pytest.fixture
def nxt(sandbox_of, tmp_path):
    return NxtHarness(sandbox_of("customwebshop", "businessnxt", options={
        "businessnxt": {"customer_table": "associate"}}), tmp_path)


def associates(nxt) -> list[dict]:
    return nxt.gql.rows("associate", ASSOCIATE)


def test_every_customer_property_is_an_associate_column():
    for prop in get_dataflow(DATAFLOW).pair("customer").properties:
        column = model.ASSOCIATE.column(prop.target)
        assert prop.max_length in (None, column.max_length), prop.target


def test_customers_sync_as_associates_and_orders_name_their_customer_numbers(nxt):
    shop_customers = nxt.shop_all("customers")
    before = associates(nxt)
    suppliers = [row for row in before if not row["customerNo"]]
    assert len(suppliers) == SUPPLIERS

    status, report = nxt.run()

    assert status == 0, report
    customers = report["pairs"]["customer"]
    assert customers["linked_by_match"] == 2 * SHARED_ADDRESSES
    assert customers["created_in_target"] == len(shop_customers) - SHARED_ADDRESSES
    assert customers["created_in_source"] == ADDRESSES - SHARED_ADDRESSES  # no supplier
    assert all(counts["dead_letters"] == 0 for counts in report["pairs"].values())
    after = associates(nxt)
    new = [row for row in after if row["associateNo"] > len(before)]
    assert len(new) == len(shop_customers) - SHARED_ADDRESSES
    assert sorted(row["customerNo"] for row in new) == list(range(
        10000 + ADDRESSES + 1, 10000 + ADDRESSES + 1 + len(new)))  # suggested, one after another
    assert [row for row in after if not row["customerNo"]] == suppliers  # untouched
    by_email = group_by([row for row in after if row["customerNo"]], "emailAddress", True)
    assert set(by_email) == {c["email"].lower() for c in nxt.shop_all("customers")}
    customer_no = {email: rows[0]["customerNo"] for email, rows in by_email.items()}
    shop = {c["id"]: c["email"].lower() for c in nxt.shop_all("customers")}
    orders = group_by(nxt.gql.rows("order", ORDER), "customerOrderNo")
    for shop_order in nxt.shop_all("orders"):
        [order] = orders[shop_order["number"]]
        assert order["customerNo"] == customer_no[shop[shop_order["customer_id"]]]

    status, report = nxt.run()
    assert status == 0 and _writes(report) == {}
    assert associates(nxt) == after
