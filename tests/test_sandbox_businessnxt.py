"""The Business NXT emulator over HTTP: Visma Connect tokens, the GraphQL schema's documented
conventions, paging, filters, mutations, batches and the gateway's errors."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
import requests

from connectors.wire import dumps_json
from sandbox import businessnxt as bnxt
from sandbox import businessnxt_model as model

ADDRESS_ITEMS = "addressNo name emailAddress countryNo changedTimestamp changedDate changedTime"


class Gql:
    """A plain GraphQL client of the emulator (a token from its token endpoint)."""

    def __init__(self, sandbox):
        self.sandbox = sandbox
        self.url = sandbox.url("businessnxt")
        self.token_url = sandbox.root_url("businessnxt") + bnxt.TOKEN_PATH
        self.session = requests.Session()
        self.session.headers["Authorization"] = "Bearer " + self.token()

    def token(self, **overrides) -> str:
        response = requests.post(self.token_url, data=self.token_form(**overrides), timeout=10)
        assert response.status_code == 200, response.text
        return response.json()["access_token"]

    def token_form(self, **overrides) -> dict:
        return {"grant_type": "client_credentials", "client_id": bnxt.CLIENT_ID,
                "client_secret": self.sandbox.api_key("businessnxt"), "scope": bnxt.SCOPE,
                "tenant_id": bnxt.TENANT_ID, **overrides}

    def post(self, body) -> requests.Response:
        return self.session.post(self.url, data=dumps_json(body),
                                 headers={"Content-Type": "application/json"}, timeout=30)

    def __call__(self, query: str, company: int = bnxt.COMPANY_NO, **variables) -> dict:
        """The answer (HTTP 200 asserted), numbers with a fraction as Decimal."""
        response = self.post({"query": query, "variables": {"cid": company, **variables}})
        assert response.status_code == 200, response.text
        return json.loads(response.text, parse_float=Decimal)

    def rows(self, table: str, items: str, filter: dict = None) -> list[dict]:
        """Every row of a table (paged by 100)."""
        type_ = model.TABLES[table].type
        rows, after = [], None
        while True:
            page = self(f"query($cid: Int!, $after: String, $filter: FilterExpression_{type_}) "
                        f"{{ useCompany(no: $cid) {{ {table}(first: 100, after: $after, "
                        f"filter: $filter) {{ pageInfo {{ hasNextPage endCursor }} items "
                        f"{{ {items} }} }} }} }}", after=after, filter=filter)
            page = page["data"]["useCompany"][table]
            rows += page["items"]
            if not page["pageInfo"]["hasNextPage"]:
                return rows
            after = page["pageInfo"]["endCursor"]


@pytest.fixture
def gql(sandbox_of):
    return Gql(sandbox_of("businessnxt"))


# --- Visma Connect and the gateway ------------------------------------------------------------

def test_token_endpoint_wants_client_credentials_with_tenant(gql):
    assert gql.token().startswith("eyJ")
    for bad, error in [({"tenant_id": ""}, "invalid_request"), ({"scope": "openid"},
                                                                "invalid_request"),
                       ({"client_secret": "wrong"}, "invalid_client")]:
        response = requests.post(gql.token_url, data=gql.token_form(**bad), timeout=10)
        assert response.status_code == 400 and response.json()["error"] == error


def test_unauthorized_is_nginx_html_and_expired_tokens_stop_working(gql):
    for headers in ({}, {"Authorization": "Bearer nonsense"}):
        response = requests.post(gql.url, json={"query": "{ __typename }"}, headers=headers,
                                 timeout=10)
        assert response.status_code == 401
        assert response.headers["Content-Type"].startswith("text/html")
        assert "<title>401 Authorization Required</title>" in response.text
    assert gql.post({"query": "{ __typename }"}).status_code == 200
    requests.post(gql.sandbox.root_url("businessnxt") + "/_sandbox/expire-tokens", timeout=10)
    assert gql.post({"query": "{ __typename }"}).status_code == 401


def test_rate_limit_answers_429_with_retry_after(gql):
    gql.sandbox.set_faults("businessnxt", rate_limit={"limit": 2, "window_s": 60})
    statuses = [gql.post({"query": "{ __typename }"}).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    response = gql.post({"query": "{ __typename }"})
    assert response.status_code == 429 and int(response.headers["Retry-After"]) >= 1
    assert gql.sandbox.set_faults("businessnxt", rate_limit=True)["rate_limit"] == {
        "limit": 600, "window_s": 60}


def test_rate_limit_counts_each_token_on_its_own(gql):
    """600 a minute per access token: a second token has its own budget."""
    gql.sandbox.set_faults("businessnxt", rate_limit={"limit": 2, "window_s": 60})
    assert [gql.post({"query": "{ __typename }"}).status_code for _ in range(3)] == [200, 200, 429]
    other = requests.Session()
    other.headers["Authorization"] = "Bearer " + gql.token()
    answers = [other.post(gql.url, json={"query": "{ __typename }"}, timeout=10)
               for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert answers[0].headers["X-RateLimit-Remaining"] == "1"


# --- the schema ---------------------------------------------------------------------------------

def test_schema_follows_the_documented_naming(gql):
    names = {t["name"] for t in gql("{ __schema { types { name } } }")["data"]["__schema"]["types"]}
    for table in ("Address", "Order", "OrderLine", "Product"):
        assert {f"Query_UseCompany_{table}_Connection", f"FilterExpression_{table}",
                f"{table}_Input", f"Mutation_UseCompany_{table}_Result"} <= names
    order_input = gql('{ __type(name: "Order_Input") { inputFields { name } } }')
    fields = {f["name"] for f in order_input["data"]["__type"]["inputFields"]}
    assert "orderLines" in fields and "orderNo" not in fields and "changedTimestamp" not in fields


def test_errors_are_http_200_with_graphql_errors(gql):
    answer = gql("query($cid: Int!) { useCompany(no: $cid) { address { totalRows } } }")
    [error] = answer["errors"]
    assert "Cannot query field 'totalRows' on type 'Query_UseCompany_Address_Connection'. " \
           "Did you mean 'totalCount'?" in error["message"] and error["locations"]
    answer = gql("query($cid: Int!) { useCompany(no: $cid) { address { totalCount } } }",
                 company=1234567)
    assert answer["data"] == {"useCompany": None}
    assert answer["errors"][0]["message"] == (
        "Error: Could not get authorize user using VismaNetCompanyId: 1234567. "
        "Description: External integration error. Status: 18.")


# --- reading --------------------------------------------------------------------------------------

def test_cursor_paging_reads_every_row_once(gql):
    rows = gql.rows("address", "addressNo")
    assert [r["addressNo"] for r in rows] == list(range(1, 201))
    page = gql("query($cid: Int!) { useCompany(no: $cid) { address(first: 5, skip: 2) { totalCount "
               "pageInfo { hasNextPage hasPreviousPage } items { addressNo } } } }")
    page = page["data"]["useCompany"]["address"]
    assert page["totalCount"] == 200 and page["pageInfo"] == {"hasNextPage": True,
                                                              "hasPreviousPage": True}
    assert [r["addressNo"] for r in page["items"]] == [3, 4, 5, 6, 7]


def test_filters_and_order_by(gql):
    rows = gql.rows("address", ADDRESS_ITEMS)
    stamp = sorted(r["changedTimestamp"] for r in rows)[150]
    newer = gql.rows("address", "addressNo", {"changedTimestamp": {"_gte": stamp}})
    assert len(newer) == 50
    day = sorted(r["changedDate"] for r in rows)[100]
    combined = gql.rows("address", "addressNo", {"_or": [
        {"changedDate": {"_gt": day}},
        {"_and": [{"changedDate": {"_eq": day}}, {"changedTime": {"_gte": 1200}}]}]})
    assert {r["addressNo"] for r in combined} == {
        r["addressNo"] for r in rows
        if r["changedDate"] > day or (r["changedDate"] == day and r["changedTime"] >= 1200)}
    assert [r["addressNo"] for r in gql.rows("address", "addressNo",
                                             {"addressNo": {"_in": [3, 5, 999]}})] == [3, 5]
    norwegian = gql.rows("address", "countryNo", {"countryNo": {"_eq": 47}})
    assert norwegian and {r["countryNo"] for r in norwegian} == {47}
    ordered = gql("query($cid: Int!) { useCompany(no: $cid) { product(first: 3, "
                  "orderBy: [{salesPrice1: DESC}]) { items { salesPrice1 } } } }")
    prices = [r["salesPrice1"] for r in ordered["data"]["useCompany"]["product"]["items"]]
    all_prices = sorted((r["salesPrice1"] for r in gql.rows("product", "salesPrice1")),
                        reverse=True)
    assert prices == all_prices[:3]


def test_orders_have_integer_dates_and_lines_via_joindown(gql):
    [order] = gql("query($cid: Int!) { useCompany(no: $cid) { order(first: 1) { items { orderNo "
                  "orderDate customerNo customerOrderNo lines: joindown_OrderLine_via_Order "
                  "{ items { orderNo lineNo productNo quantity priceInCurrency } } } } } }"
                  )["data"]["useCompany"]["order"]["items"]
    assert isinstance(order["orderDate"], int) and 20250101 < order["orderDate"] < 20270101
    lines = order["lines"]["items"]
    assert [line["lineNo"] for line in lines] == list(range(1, len(lines) + 1))
    assert {line["orderNo"] for line in lines} == {order["orderNo"]}
    assert all(isinstance(line["productNo"], str) for line in lines)


# --- writing --------------------------------------------------------------------------------------

CREATE = ("mutation($cid: Int!, $values: [Address_Input!]!) { useCompany(no: $cid) { "
          f"address_create(values: $values) {{ affectedRows items {{ {ADDRESS_ITEMS} }} }} }} }}")


def test_create_numbers_rows_and_keeps_change_columns(gql):
    answer = gql(CREATE, values=[{"name": "Fjord AS", "emailAddress": "post@fjord.example"},
                                 {"name": "Vidde AS", "countryNo": 47}])
    result = answer["data"]["useCompany"]["address_create"]
    assert result["affectedRows"] == 2
    first, second = result["items"]
    assert (first["addressNo"], second["addressNo"]) == (201, 202)
    assert first["changedTimestamp"] and first["changedDate"] == int(
        first["changedTimestamp"][:10].replace("-", ""))
    stamp = first["changedTimestamp"]
    assert first["changedTime"] == int(stamp[11:13] + stamp[14:16])
    update = gql("mutation($cid: Int!) { useCompany(no: $cid) { address_update("
                 "filters: [{addressNo: {_eq: 201}}, {addressNo: {_eq: 202}}], "
                 "values: [{phone: \"+47 1\"}, {phone: \"+47 2\"}]) { affectedRows items "
                 "{ addressNo phone changedTimestamp } } } }"
                 )["data"]["useCompany"]["address_update"]
    assert update["affectedRows"] == 2
    assert [(r["addressNo"], r["phone"]) for r in update["items"]] == [(201, "+47 1"), (202,
                                                                                        "+47 2")]
    assert update["items"][0]["changedTimestamp"] > first["changedTimestamp"]


def test_a_bad_row_fails_its_whole_field_only(gql):
    answer = gql("mutation($cid: Int!, $good: [Address_Input!]!, $mixed: [Address_Input!]!) { "
                 "useCompany(no: $cid) { ok: address_create(values: $good) { affectedRows } "
                 "bad: address_create(values: $mixed) { affectedRows } } }",
                 good=[{"name": "Good AS"}], mixed=[{"name": "Fine AS"}, {"name": "x" * 81}])
    assert answer["data"]["useCompany"] == {"ok": {"affectedRows": 1}, "bad": None}
    [error] = answer["errors"]
    assert error["path"] == ["useCompany", "bad"] and "longer than 80" in error["message"]
    names = {r["name"] for r in gql.rows("address", "name")}
    assert "Good AS" in names and "Fine AS" not in names


def test_order_create_with_nested_lines_and_line_rules(gql):
    product = gql.rows("product", "productNo description salesPrice1")[0]
    answer = gql("mutation($cid: Int!, $values: [Order_Input!]!) { useCompany(no: $cid) { "
                 "order_create(values: $values) { affectedRows items { orderNo orderDate "
                 "orderLines: joindown_OrderLine_via_Order { items { lineNo productNo "
                 "description quantity priceInCurrency } } } } } }",
                 values=[{"customerNo": 1, "orderDate": 20260105, "orderLines": [
                     {"productNo": product["productNo"], "quantity": 2},
                     {"productNo": product["productNo"], "quantity": 1.5, "priceInCurrency": 10}]}])
    [order] = answer["data"]["useCompany"]["order_create"]["items"]
    assert order["orderDate"] == 20260105
    assert order["orderLines"]["items"] == [
        {"lineNo": 1, "productNo": product["productNo"], "description": product["description"],
         "quantity": 2, "priceInCurrency": product["salesPrice1"]},
        {"lineNo": 2, "productNo": product["productNo"], "description": product["description"],
         "quantity": Decimal("1.5"), "priceInCurrency": 10}]
    for values, message in [
            ([{"customerNo": 99999}], "Customer 99999 does not exist."),
            ([{"customerNo": 1, "orderLines": [{"productNo": "NOPE"}]}],
             "Product 'NOPE' does not exist."),
            ([{"customerNo": 1, "orderDate": 20261340}], "is not a date")]:
        answer = gql("mutation($cid: Int!, $values: [Order_Input!]!) { useCompany(no: $cid) { "
                     "order_create(values: $values) { affectedRows } } }", values=values)
        assert answer["data"]["useCompany"]["order_create"] is None
        assert message in answer["errors"][0]["message"]


def test_batches_hold_at_most_32_requests(gql):
    one = {"query": "query($cid: Int!) { useCompany(no: $cid) "
                    "{ address(first: 1) { items { addressNo } } } }",
           "variables": {"cid": bnxt.COMPANY_NO}}
    response = gql.post([one, {"query": "{ nope }"}])
    assert response.status_code == 200
    first, second = response.json()
    assert first["data"]["useCompany"]["address"]["items"] == [{"addressNo": 1}]
    assert "Cannot query field 'nope'" in second["errors"][0]["message"]
    response = gql.post([one] * 33)
    assert response.status_code == 200
    assert response.json()["errors"][0]["message"] == \
        "Batch contains 33 operations, the maximum is 32."


def test_state_survives_a_restart(sandbox_of, tmp_path):
    sandbox = sandbox_of("businessnxt")
    Gql(sandbox)(CREATE, values=[{"name": "Persisted AS", "emailAddress": "p@x.example"}])
    sandbox.stop()
    sandbox.start()
    rows = Gql(sandbox).rows("address", "addressNo name")
    assert rows[-1] == {"addressNo": 201, "name": "Persisted AS"}


def test_order_lines_are_a_table_of_their_own_too(gql):
    lines = [(r["orderNo"], r["lineNo"]) for r in gql.rows("orderLine", "orderNo lineNo")]
    orders = gql.rows("order", "orderNo lines: joindown_OrderLine_via_Order { items { lineNo } }")
    assert lines == sorted(lines) and len(set(lines)) == len(lines)
    assert lines == [(o["orderNo"], line["lineNo"]) for o in orders for line in o["lines"]["items"]]
