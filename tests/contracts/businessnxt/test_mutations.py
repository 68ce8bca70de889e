"""Contracts of writing: Visma's documented inserts (with suggested numbers), updates, deletes,
orders with lines, and what the emulator refuses loudly instead of ignoring."""

from __future__ import annotations

import itertools

import pytest

#: unique names for the rows each test creates (the module shares one company)
_SERIAL = itertools.count(1)


def mutate(nxt, body: str, declared: str = "", **variables) -> dict:
    """``mutation { useCompany(no: $cid) { body } }``: the whole answer."""
    return nxt(f"mutation($cid: Int!{declared}) {{ useCompany(no: $cid) {{ {body} }} }}",
               **variables)


def new_customer(nxt, **values) -> dict:
    """A new associate that is a customer (its customer number suggested by the server)."""
    answer = mutate(nxt, "associate_create(values: $values, suggest: {customerNo: true}) "
                         "{ affectedRows items { associateNo customerNo name } }",
                    ", $values: [Associate_Input!]!",
                    values=[{"name": f"Kunde {next(_SERIAL)} AS", **values}])
    assert "errors" not in answer, answer
    return answer["data"]["useCompany"]["associate_create"]["items"][0]


@pytest.fixture(scope="module")
def product_no(nxt) -> str:
    answer = nxt("query($cid: Int!) { useCompany(no: $cid) { product(first: 1) { items "
                 "{ productNo } } } }")
    return answer["data"]["useCompany"]["product"]["items"][0]["productNo"]


def test_the_app_templates_associate_create(nxt):
    """github.com/Visma-Software-AS-Product/BusinessNXT_API_Examples ``createassociate.py``:
    ``associate_create(values: [{name shortName customerNo supplierNo}]) { affectedRows items
    { associateNo customerNo name shortName } }`` with numbers given by the client."""
    answer = nxt("mutation create_associate($cid: Int!, $name: String, $shortName: String, "
                 "$customerNumber: Int!, $supplierNumber: Int!) { useCompany(no: $cid) { "
                 "associate_create(values: [{name: $name, shortName: $shortName, customerNo: "
                 "$customerNumber, supplierNo: $supplierNumber}]) { affectedRows items "
                 "{ associateNo customerNo name shortName } } } }",
                 name="Malek Shivan", shortName="MALEK", customerNumber=20001, supplierNumber=0)
    result = answer["data"]["useCompany"]["associate_create"]
    assert result["affectedRows"] == 1
    [item] = result["items"]
    assert item["customerNo"] == 20001 and item["name"] == "Malek Shivan"
    assert item["associateNo"] > 0 and item["shortName"] == "MALEK"


def test_the_primary_key_is_not_an_input_column(nxt):
    """https://docs.vismasoftware.no/businessnxtapi/schema/mutations/inserts: the input type
    has every column but the auto-incremented primary key and the utility columns."""
    fields = {f["name"] for f in nxt('{ __type(name: "Associate_Input") { inputFields '
                                     '{ name } } }')["data"]["__type"]["inputFields"]}
    assert {"customerNo", "name", "emailAddress"} <= fields
    assert not fields & {"associateNo", "createdDate", "changedDate", "changedByUser"}


def test_a_suggested_customer_number_is_the_next_free_one(nxt):
    """https://docs.vismasoftware.no/businessnxtapi/schema/mutations/inserts "Suggested
    values" (``suggest: Suggest_Associate_Input``; release note 2025-12-10 "suggest
    undeprecated"): the server numbers the new customer; the client's "+" takes the highest
    customer number plus one (cloudconnection.no, "Creating a new associate")."""
    highest = nxt("query($cid: Int!) { useCompany(no: $cid) { associate_aggregate { maximum "
                  "{ customerNo } } } }")["data"]["useCompany"]["associate_aggregate"]
    first, second = new_customer(nxt), new_customer(nxt)
    assert first["customerNo"] == int(highest["maximum"]["customerNo"]) + 1
    assert second["customerNo"] == first["customerNo"] + 1


def test_a_null_number_asks_for_a_suggested_value(nxt):
    """Release note 2023-08-24 "More fields can be set to null for suggested values": a null
    in ``values`` asks the server to suggest the value."""
    answer = mutate(nxt, "associate_create(values: $values) { items { customerNo } }",
                    ", $values: [Associate_Input!]!",
                    values=[{"name": "Null Kunde AS", "customerNo": None}])
    [item] = answer["data"]["useCompany"]["associate_create"]["items"]
    assert item["customerNo"] > 10000


def test_a_customer_number_in_use_is_refused(nxt):
    """Business NXT: a customer number already in the Associates table is refused ("Value is
    already in use", cloudconnection.no "Creating a new associate"); the field fails, nothing of
    it is applied."""
    taken = new_customer(nxt)["customerNo"]
    answer = mutate(nxt, "associate_create(values: [{name: \"Dup\", customerNo: $no}]) "
                         "{ affectedRows }", ", $no: Int", no=taken)
    assert answer["data"]["useCompany"]["associate_create"] is None
    assert "is already in use" in answer["errors"][0]["message"]
    assert answer["errors"][0]["path"] == ["useCompany", "associate_create"]


def test_update_with_filter_and_value(nxt):
    """https://docs.vismasoftware.no/businessnxtapi/schema/mutations/updates and public code:
    ``associate_update(filter: {associateNo: {_eq: N}}, value: {name: "..."}) { affectedRows
    items { name } }``."""
    customer = new_customer(nxt)
    answer = mutate(nxt, "associate_update(filter: {associateNo: {_eq: $no}}, "
                         "value: {name: \"Shivan Malek\"}) { affectedRows items { name } }",
                    ", $no: Int", no=customer["associateNo"])
    assert answer["data"]["useCompany"]["associate_update"] == {
        "affectedRows": 1, "items": [{"name": "Shivan Malek"}]}


def test_update_many_rows_with_filters_and_values(nxt):
    """Release note 2023-12-07 "Multiple edits in a single update operation": ``filters`` and
    ``values`` are parallel lists, value *i* for the rows filter *i* selects."""
    a, b = new_customer(nxt), new_customer(nxt)
    answer = mutate(nxt, "associate_update(filters: $filters, values: $values) "
                         "{ affectedRows items { associateNo phone } }",
                    ", $filters: [FilterExpression_Associate!], $values: [Associate_Input!]",
                    filters=[{"associateNo": {"_eq": a["associateNo"]}},
                             {"associateNo": {"_eq": b["associateNo"]}}],
                    values=[{"phone": "111"}, {"phone": "222"}])
    result = answer["data"]["useCompany"]["associate_update"]
    assert result["affectedRows"] == 2
    assert {(i["associateNo"], i["phone"]) for i in result["items"]} == {
        (a["associateNo"], "111"), (b["associateNo"], "222")}


def test_delete_by_filter_reports_affected_rows(nxt):
    """https://docs.vismasoftware.no/businessnxtapi/schema/mutations/deletes:
    ``<table>_delete(filter:) { affectedRows }``."""
    customer = new_customer(nxt)
    answer = mutate(nxt, "associate_delete(filter: {associateNo: {_eq: $no}}) "
                         "{ affectedRows }", ", $no: Int", no=customer["associateNo"])
    assert answer["data"]["useCompany"]["associate_delete"] == {"affectedRows": 1}
    gone = nxt("query($cid: Int!, $no: Int) { useCompany(no: $cid) { associate(filter: "
               "{associateNo: {_eq: $no}}) { totalCount } } }", no=customer["associateNo"])
    assert gone["data"]["useCompany"]["associate"]["totalCount"] == 0


def test_an_order_with_lines_for_a_customer_number(nxt, product_no):
    """https://docs.vismasoftware.no/businessnxtapi/howto/create-and-finish-an-order:
    ``order_create(values: [{orderDate, customerNo, orderLines: [{productNo, quantity}]}])``
    answered with the lines through ``joindown_OrderLine_via_Order``; the order's customer is
    the associate's customer number."""
    customer = new_customer(nxt)
    answer = mutate(nxt, "order_create(values: [{orderDate: 20261207, customerNo: $no, "
                         "orderLines: [{productNo: $product, quantity: 1}, {productNo: $product, "
                         "quantity: 2}]}]) { affectedRows items { orderNo orderDate customerNo "
                         "orderLines: joindown_OrderLine_via_Order { items { lineNo productNo "
                         "quantity } } } }", ", $no: Int, $product: String",
                    no=customer["customerNo"], product=product_no)
    [order] = answer["data"]["useCompany"]["order_create"]["items"]
    assert order["customerNo"] == customer["customerNo"] and order["orderDate"] == 20261207
    assert [(line["lineNo"], line["quantity"]) for line in order["orderLines"]["items"]] == [
        (1, 1), (2, 2)]


def test_an_order_for_an_associate_that_is_no_customer_is_refused(nxt):
    """apis.md §3.7 (Order.customerNo "the BNXT customer number"): an order names a customer
    number; an associate number or a supplier is not one."""
    answer = mutate(nxt, "order_create(values: [{orderDate: 20261207, customerNo: 3}]) "
                         "{ affectedRows }")
    assert answer["data"]["useCompany"]["order_create"] is None
    assert "Customer 3 does not exist." in answer["errors"][0]["message"]


def test_the_app_templates_order_line_create(nxt, product_no):
    """github.com/Visma-Software-AS-Product/BusinessNXT_API_Examples ``addorderlines.py``:
    ``orderLine_create(values: [{orderNo, productNo, quantity}])``; all but the last key column
    must be given (docs "Insert operations"), ``lineNo`` is assigned."""
    order = mutate(nxt, "order_create(values: [{customerNo: 10001}]) { items { orderNo } }")
    order_no = order["data"]["useCompany"]["order_create"]["items"][0]["orderNo"]
    answer = nxt("mutation create_order_line($cid: Int!, $orderNumber: Int!, $productNumber: "
                 "String, $quantity: Decimal) { useCompany(no: $cid) { orderLine_create(values: "
                 "[{orderNo: $orderNumber, productNo: $productNumber, quantity: $quantity}]) "
                 "{ affectedRows items { lineNo orderNo } } } }",
                 orderNumber=order_no, productNumber=product_no, quantity=3)
    assert answer["data"]["useCompany"]["orderLine_create"] == {
        "affectedRows": 1, "items": [{"lineNo": 1, "orderNo": order_no}]}


def test_inserting_between_rows_is_refused_loudly(nxt):
    """https://docs.vismasoftware.no/businessnxtapi/schema/mutations/inserts ``insertAtRow`` /
    ``insertPosition``: the emulator does not insert between rows, so it refuses the arguments
    in the GraphQL error shape instead of ignoring them."""
    answer = mutate(nxt, "associate_create(values: [{name: \"X\"}], insertAtRow: "
                         "{associateNo: {_eq: 1}}, insertPosition: BEFORE) { affectedRows }")
    [error] = answer["errors"]
    assert answer["data"]["useCompany"]["associate_create"] is None
    assert error["extensions"]["code"] == "NOT_EMULATED" and "insertAtRow" in error["message"]


def test_suggestions_the_emulator_cannot_make_are_refused_loudly(nxt):
    """Docs "Suggested values": the server suggests values of many columns; the emulator
    suggests customer and supplier numbers and refuses the others loudly."""
    answer = mutate(nxt, "associate_create(values: [{name: \"X\"}], suggest: {shortName: true}) "
                         "{ affectedRows }")
    assert answer["errors"][0]["extensions"]["code"] == "NOT_EMULATED"
