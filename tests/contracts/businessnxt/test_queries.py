"""Contracts of reading: Visma's documented queries (connections, filters, sorting, paging,
aggregates, the available companies and customers) and the documented shape of their answers."""

from __future__ import annotations

from decimal import Decimal

from sandbox import businessnxt as bnxt

#: the types of the variables the queries below use besides ``$cid``
VARIABLES = {"after": "String", "before": "String"}


def use_company(nxt, body: str, **variables) -> dict:
    """``useCompany(no: $cid) { body }``: the answer's ``useCompany`` (no errors asserted)."""
    declared = "".join(f", ${name}: {VARIABLES[name]}" for name in variables)
    answer = nxt(f"query($cid: Int!{declared}) {{ useCompany(no: $cid) {{ {body} }} }}",
                 **variables)
    assert "errors" not in answer, answer
    return answer["data"]["useCompany"]


def test_a_connection_has_total_count_page_info_and_items_but_no_edges(nxt):
    """https://docs.vismasoftware.no/businessnxtapi/schema/: Relay-like without ``Node`` and
    ``edges``; https://docs.vismasoftware.no/businessnxtapi/schema/queries/: ``totalCount``,
    ``pageInfo``, ``items``."""
    page = use_company(nxt, "associate(first: 2) { totalCount pageInfo { hasNextPage "
                            "hasPreviousPage startCursor endCursor } items { associateNo } }")
    connection = page["associate"]
    assert set(connection) == {"totalCount", "pageInfo", "items"}
    assert connection["totalCount"] >= 200 and len(connection["items"]) == 2
    assert set(connection["pageInfo"]) == {"hasNextPage", "hasPreviousPage", "startCursor",
                                           "endCursor"}
    answer = nxt("query($cid: Int!) { useCompany(no: $cid) { associate { edges { node "
                 "{ associateNo } } } } }")
    assert "Cannot query field 'edges'" in answer["errors"][0]["message"]


def test_the_schema_names_types_after_the_tables(nxt):
    """https://docs.vismasoftware.no/businessnxtapi/schema/:
    ``Query_UseCompany_<Table>_Connection``, ``FilterExpression_<Table>``, ``<Table>_Input``,
    ``Mutation_UseCompany_<Table>_Result``, ``InsertPosition``."""
    names = {t["name"] for t in nxt("{ __schema { types { name } } }")["data"]["__schema"]["types"]}
    for table in ("Associate", "Order", "OrderLine", "Product"):
        assert {f"Query_UseCompany_{table}_Connection", f"FilterExpression_{table}",
                f"{table}_Input", f"Mutation_UseCompany_{table}_Result",
                f"Suggest_{table}_Input"} <= names
    assert {"InsertPosition", "Query_UseCompany", "Mutation_UseCompany"} <= names


def test_the_app_templates_order_list(nxt):
    """github.com/Visma-Software-AS-Product/BusinessNXT_API_Examples ``listorders.py``: the order
    list with transaction type and supplier."""
    orders = use_company(nxt, "order { items { orderNo name transactionType orderDate "
                              "customerNo supplierNo } }")["order"]["items"]
    assert len(orders) >= 150
    assert set(orders[0]) == {"orderNo", "name", "transactionType", "orderDate", "customerNo",
                              "supplierNo"}


def test_customers_are_associates_with_a_customer_number(nxt):
    """https://docs.vismasoftware.no/businessnxtapi/features/filtering and public clients:
    customers are ``customerNo: {_not_eq: 0}``."""
    everyone = use_company(nxt, "associate { totalCount }")["associate"]["totalCount"]
    customers = use_company(nxt, "associate(filter: {customerNo: {_not_eq: 0}}) { totalCount "
                                 "items { customerNo } }")["associate"]
    assert customers["totalCount"] < everyone
    assert all(item["customerNo"] for item in customers["items"])


def test_filter_operators_compare_and_combine(nxt):
    """https://docs.vismasoftware.no/businessnxtapi/features/filtering: ``_eq``, ``_gt``, ``_lte``,
    ``_in``, ``_between`` and ``_and``/``_or``."""
    body = ("associate(filter: {_and: [{customerNo: {_between: [10001, 10010]}}, "
            "{_or: [{customerNo: {_lte: 10002}}, {customerNo: {_in: [10005, 10009]}}]}]}) "
            "{ items { customerNo } }")
    found = [r["customerNo"] for r in use_company(nxt, body)["associate"]["items"]]
    assert found == [10001, 10002, 10005, 10009]


def test_like_matches_with_sql_wildcards(nxt):
    """https://docs.vismasoftware.no/businessnxtapi/features/filtering: ``_like`` with SQL's ``%``
    wildcard (public clients search names this way)."""
    items = use_company(nxt, 'associate(filter: {name: {_like: "Leverand%"}}) '
                             '{ items { name supplierNo customerNo } }')["associate"]["items"]
    assert items and all(i["name"].startswith("Leverand") and i["customerNo"] == 0
                         for i in items)


def test_eq_null_finds_rows_without_a_value(nxt):
    """https://docs.vismasoftware.no/businessnxtapi/features/filtering: a null operand tests for
    null."""
    items = use_company(nxt, "associate(filter: {mobilePhone: {_eq: null}}, first: 3) "
                             "{ items { mobilePhone } }")["associate"]["items"]
    assert items and all(i["mobilePhone"] is None for i in items)


def test_order_by_sorts_ascending_or_descending(nxt):
    """https://docs.vismasoftware.no/businessnxtapi/features/sorting: ``orderBy: [{<column>:
    ASC|DESC}]``, several columns in order."""
    items = use_company(nxt, "associate(first: 3, orderBy: [{customerNo: DESC}]) "
                             "{ items { customerNo } }")["associate"]["items"]
    numbers = [i["customerNo"] for i in items]
    assert numbers == sorted(numbers, reverse=True) and numbers[0] >= 10200


def test_first_and_after_page_forward_by_cursor(nxt):
    """https://docs.vismasoftware.no/businessnxtapi/features/pagination: ``first`` + ``after`` (the
    previous page's ``endCursor``) until ``hasNextPage`` is false."""
    numbers, after = [], None
    while True:
        page = use_company(nxt, "associate(first: 60, after: $after) { pageInfo { hasNextPage "
                                "endCursor } items { associateNo } }", after=after)["associate"]
        numbers += [i["associateNo"] for i in page["items"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert numbers == sorted(set(numbers)) and len(numbers) >= 212


def test_last_and_before_page_backward(nxt):
    """https://docs.vismasoftware.no/businessnxtapi/features/pagination: backward with ``last`` +
    ``before``."""
    first = use_company(nxt, "product(first: 10) { pageInfo { endCursor } items { productNo } }")
    cursor = first["product"]["pageInfo"]["endCursor"]
    ten = [i["productNo"] for i in first["product"]["items"]]
    back = use_company(nxt, "product(last: 3, before: $before) { pageInfo { hasPreviousPage "
                            "hasNextPage } items { productNo } }", before=cursor)["product"]
    assert [i["productNo"] for i in back["items"]] == ten[6:9]
    assert back["pageInfo"] == {"hasPreviousPage": True, "hasNextPage": True}


def test_skip_skips_records_from_the_cursor(nxt):
    """https://docs.vismasoftware.no/businessnxtapi/features/pagination: ``skip``, records skipped
    from the cursor (or the start)."""
    items = use_company(nxt, "associate(first: 2, skip: 5) { pageInfo { hasPreviousPage } "
                             "items { associateNo } }")["associate"]
    assert [i["associateNo"] for i in items["items"]] == [6, 7]
    assert items["pageInfo"]["hasPreviousPage"] is True


def test_paging_values_must_be_positive(nxt):
    """https://docs.vismasoftware.no/businessnxtapi/features/pagination: "values must be positive
    integers"."""
    answer = nxt("query($cid: Int!) { useCompany(no: $cid) { associate(first: -1) "
                 "{ totalCount } } }")
    assert "'first' must be a positive integer" in answer["errors"][0]["message"]
    assert answer["data"] == {"useCompany": {"associate": None}}


def test_dates_are_integers_and_timestamps_are_datetimes(nxt):
    """https://docs.vismasoftware.no/businessnxtapi/schema/datetime: dates ``yyyymmdd`` and times
    ``hhmm`` as integers; ``changedTimestamp`` (release note 2024-10-09) a date and time."""
    [item] = use_company(nxt, "order(first: 1) { items { orderDate changedDate changedTime "
                              "changedTimestamp } }")["order"]["items"]
    assert 20000101 < item["orderDate"] < 21000101 and 20000101 < item["changedDate"]
    assert 0 <= item["changedTime"] <= 2359
    assert item["changedTimestamp"][:4] == str(item["changedDate"])[:4]


def test_order_lines_join_down_from_their_order(nxt):
    """https://docs.vismasoftware.no/businessnxtapi/schema/queries/ relations:
    ``joindown_OrderLine_via_Order`` is a connection of the order's lines."""
    [order] = use_company(nxt, "order(first: 1) { items { orderNo joindown_OrderLine_via_Order "
                               "{ totalCount items { orderNo lineNo productNo quantity } } } }"
                          )["order"]["items"]
    lines = order["joindown_OrderLine_via_Order"]
    assert lines["totalCount"] == len(lines["items"]) > 0
    assert {line["orderNo"] for line in lines["items"]} == {order["orderNo"]}


def test_the_app_templates_order_count_aggregate(nxt):
    """github.com/Visma-Software-AS-Product/BusinessNXT_API_Examples ``countorders.py``:
    ``order_aggregate { count { orderNo } }``."""
    counted = use_company(nxt, "order_aggregate { count { orderNo } }")["order_aggregate"]
    total = use_company(nxt, "order { totalCount }")["order"]["totalCount"]
    assert counted == {"count": {"orderNo": total}}


def test_aggregates_ignore_nulls_and_follow_the_filter(nxt):
    """https://docs.vismasoftware.no/businessnxtapi/schema/queries/aggregates: ``sum``,
    ``average``, ``minimum``, ``maximum`` of the filtered rows, nulls ignored."""
    agg = use_company(nxt, "product_aggregate(filter: {costPrice: {_gt: 0}}) { "
                           "sum { costPrice } average { costPrice } minimum { costPrice } "
                           "maximum { costPrice } count { costPrice productNo } }"
                      )["product_aggregate"]
    rows = use_company(nxt, "product(filter: {costPrice: {_gt: 0}}) { items { costPrice } }"
                       )["product"]["items"]
    costs = [Decimal(str(r["costPrice"])) for r in rows]
    assert Decimal(str(agg["sum"]["costPrice"])) == sum(costs)
    assert Decimal(str(agg["minimum"]["costPrice"])) == min(costs)
    assert Decimal(str(agg["maximum"]["costPrice"])) == max(costs)
    assert agg["count"] == {"costPrice": len(costs), "productNo": len(costs)}
    assert abs(Decimal(str(agg["average"]["costPrice"])) - sum(costs) / len(costs)) < Decimal(
        "0.001")


def test_distinct_aggregates_count_each_value_once(nxt):
    """https://docs.vismasoftware.no/businessnxtapi/schema/queries/aggregates: ``countDistinct``,
    ``sumDistinct``."""
    agg = use_company(nxt, "order_aggregate { count { currencyNo } countDistinct "
                           "{ currencyNo } sumDistinct { currencyNo } }")["order_aggregate"]
    assert agg["countDistinct"]["currencyNo"] == 1 < agg["count"]["currencyNo"]
    assert agg["sumDistinct"]["currencyNo"] == 578


def test_available_companies_lists_the_users_companies_without_page_info(nxt):
    """https://docs.vismasoftware.no/businessnxtapi/schema/queries/companies: ``availableCompanies
    { totalCount items { name vismaNetCompanyId vismaNetCustomerId } }``, no ``pageInfo``;
    github.com/Visma-Software-AS-Product/BusinessNXT_API_Examples ``getavailablecompanies.py``."""
    answer = nxt("{ availableCompanies { totalCount items { name vismaNetCompanyId "
                 "vismaNetCustomerId } } }")
    companies = answer["data"]["availableCompanies"]
    assert companies["totalCount"] == 1
    assert companies["items"] == [{"name": bnxt.COMPANY_NAME, "vismaNetCompanyId":
                                   bnxt.COMPANY_NO, "vismaNetCustomerId": bnxt.CUSTOMER_NO}]
    answer = nxt("{ availableCompanies { pageInfo { hasNextPage } } }")
    assert "Cannot query field 'pageInfo'" in answer["errors"][0]["message"]


def test_available_companies_of_one_customer(nxt):
    """https://docs.vismasoftware.no/businessnxtapi/schema/queries/companies:
    ``availableCompanies(customerNo:)``; ``first``/``last``."""
    mine = nxt("query($no: Int) { availableCompanies(customerNo: $no, first: 5) "
               "{ totalCount items { vismaNetCompanyId } } }", no=bnxt.CUSTOMER_NO
               )["data"]["availableCompanies"]
    assert mine["items"] == [{"vismaNetCompanyId": bnxt.COMPANY_NO}]
    other = nxt("{ availableCompanies(customerNo: 12345678) { totalCount items { name } } }")
    assert other["data"]["availableCompanies"] == {"totalCount": 0, "items": []}


def test_available_customers(nxt):
    """https://docs.vismasoftware.no/businessnxtapi/schema/queries/customers: ``availableCustomers
    { totalCount items { name vismaNetCustomerId } }``."""
    customers = nxt("{ availableCustomers { totalCount items { name vismaNetCustomerId } } }")
    assert customers["data"]["availableCustomers"]["items"] == [
        {"name": bnxt.COMPANY_NAME, "vismaNetCustomerId": bnxt.CUSTOMER_NO}]
