"""How rows leave Business NXT: Visma's "Delete operations", ``<table>_delete(filter:)`` with the
filter of updates, answered with ``affectedRows`` (and ``items`` always null). The API documents
no deactivation of an associate, a product or an order, so talksync's delete policy
``propagate`` deletes them this way (``docs/api/businessnxt.md``)."""

from __future__ import annotations

import pytest

from tests.contracts.businessnxt.test_mutations import mutate, new_customer


@pytest.fixture(scope="module")
def product_no(nxt) -> str:
    answer = nxt("query($cid: Int!) { useCompany(no: $cid) { product(first: 1) { items "
                 "{ productNo } } } }")
    return answer["data"]["useCompany"]["product"]["items"][0]["productNo"]


def _order(nxt, customer_no: int, product_no: str) -> int:
    answer = mutate(nxt, "order_create(values: [{customerNo: $cno, orderDate: 20260105, "
                         "orderLines: [{productNo: $pno, quantity: 1}, {productNo: $pno, "
                         "quantity: 2}]}]) { affectedRows items { orderNo } }",
                    ", $cno: Int, $pno: String", cno=customer_no, pno=product_no)
    assert "errors" not in answer, answer
    return answer["data"]["useCompany"]["order_create"]["items"][0]["orderNo"]


def test_the_documented_delete_example(nxt):
    """https://docs.vismasoftware.no/businessnxtapi/schema/mutations/deletes:
    ``associate_delete(filter: {associateNo: {_gt: 546}}) { affectedRows }``
    → ``{"data": {"useCompany": {"associate_delete": {"affectedRows": 2}}}}``; "The
    value of the items field of the return type will always be null for a delete
    operation." """
    made = [new_customer(nxt)["associateNo"] for _ in range(2)]
    answer = mutate(nxt, "associate_delete(filter: {associateNo: {_gt: $above}}) "
                         "{ affectedRows items { associateNo } }", ", $above: Int",
                    above=min(made) - 1)

    assert "errors" not in answer, answer
    assert answer["data"]["useCompany"]["associate_delete"] == {"affectedRows": 2,
                                                                "items": None}


def test_a_filter_that_matches_nothing_deletes_nothing_without_an_error(nxt):
    """https://docs.vismasoftware.no/businessnxtapi/schema/mutations/deletes
    (``affectedRows`` counts the rows deleted): a filter no row matches →
    ``affectedRows: 0`` and no ``errors`` (a client reads the row as gone already)."""
    answer = mutate(nxt, "order_delete(filter: {orderNo: {_in: [987654, 987655]}}) "
                         "{ affectedRows }")

    assert answer == {"data": {"useCompany": {"order_delete": {"affectedRows": 0}}}}


def test_deleting_orders_by_key_takes_their_lines(nxt, product_no):
    """https://docs.vismasoftware.no/businessnxtapi/schema/mutations/deletes with the filter of
    …/features/filtering (``_in``); an order's lines are rows of ``orderLine`` under it
    (…/howto/create-and-finish-an-order: ``joindown_OrderLine_via_Order``): deleting the order
    leaves none of its lines."""
    customer = new_customer(nxt)["customerNo"]
    orders = [_order(nxt, customer, product_no) for _ in range(2)]

    answer = mutate(nxt, "order_delete(filter: {orderNo: {_in: $keys}}) { affectedRows }",
                    ", $keys: [Int]", keys=orders)

    assert answer["data"]["useCompany"]["order_delete"] == {"affectedRows": 2}
    lines = nxt("query($cid: Int!, $keys: [Int]) { useCompany(no: $cid) { orderLine(filter: "
                "{orderNo: {_in: $keys}}) { totalCount } } }", keys=orders)
    assert lines["data"]["useCompany"]["orderLine"]["totalCount"] == 0


def test_an_associate_is_deleted_with_all_its_roles(nxt):
    """https://docs.vismasoftware.no/businessnxtapi/schema/mutations/deletes, and the table
    as Visma's user documentation describes it ("Aktør:
    one row for each customer, supplier, employee or other person/organisation … an associate
    may have more than one of these fields filled in", shared/research/apis.md §3.7): deleting
    a customer's associate row ends its supplier role too; why the connector reads the roles
    before it deletes a customer."""
    both = new_customer(nxt, supplierNo=59001)["customerNo"]

    answer = mutate(nxt, "associate_delete(filter: {customerNo: {_eq: $key}}) "
                         "{ affectedRows }", ", $key: Int", key=both)

    assert answer["data"]["useCompany"]["associate_delete"] == {"affectedRows": 1}
    left = nxt("query($cid: Int!) { useCompany(no: $cid) { associate(filter: "
               "{supplierNo: {_eq: 59001}}) { totalCount } } }")
    assert left["data"]["useCompany"]["associate"]["totalCount"] == 0
