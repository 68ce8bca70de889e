"""A GraphQL client nobody here wrote, ``gql`` (Visma's own samples use it, ``fetch_schema_from_
transport=True``), against the emulator: it introspects the emulator's schema, validates every
request the connector makes against it, and runs the connector's kind of requests (customers as
associates or addresses with cursor paging, orders with lines, creates and updates)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from gql import Client, gql
from gql.transport.requests import RequestsHTTPTransport
from graphql import validate

from connectors import connector_for
from connectors.businessnxt import BusinessNxtConnector
from connectors.wire import dumps_json
from core.model import SystemConfig, WriteOp
from sandbox import businessnxt as bnxt
from sandbox.server import Sandbox
from tests.test_sandbox_businessnxt import Gql


@pytest.fixture(scope="module")
def address_sandbox(tmp_path_factory) -> Iterator[Sandbox]:
    """A company that keeps its customers in the seed's ``address`` table."""
    running = Sandbox(state_dir=tmp_path_factory.mktemp("bnxt-address"), base_port=0,
                      systems=("businessnxt",), seed=42).start()
    yield running
    running.stop()


def client_of(sandbox: Sandbox) -> Client:
    """gql over requests with a bearer token, the schema fetched by introspection."""
    transport = RequestsHTTPTransport(
        url=sandbox.url("businessnxt"), timeout=30, json_serialize=dumps_json,
        headers={"Authorization": "Bearer " + Gql(sandbox).token()})
    return Client(transport=transport, fetch_schema_from_transport=True)


def connect(sandbox: Sandbox) -> BusinessNxtConnector:
    config = yaml.safe_load(sandbox.config_path.read_text())["systems"]["businessnxt"]
    connector = connector_for(SystemConfig("businessnxt", config.pop("type"),
                                           config.pop("base_url"), {**config, "page_size": 70}))
    assert isinstance(connector, BusinessNxtConnector)
    return connector


def recorded(connector: BusinessNxtConnector) -> list[dict[str, Any]]:
    """Every GraphQL request the connector sends from now on (batches taken apart)."""
    sent: list[dict[str, Any]] = []
    post = connector._post

    def recording(payload: Any, *, idempotent: bool) -> Any:
        sent.extend(json.loads(dumps_json(item))
                    for item in (payload if isinstance(payload, list) else [payload]))
        return post(payload, idempotent=idempotent)

    connector._post = recording  # type: ignore[method-assign]
    return sent


def run(session: Any, query: str, **variables: Any) -> dict[str, Any]:
    request = gql(query)
    request.variable_values = {"cid": bnxt.COMPANY_NO, **variables}
    return session.execute(request)


CUSTOMER_PAGE = """
query customers($cid: Int!, $first: Int!, $after: String) {
  useCompany(no: $cid) {
    associate(first: $first, after: $after, filter: {customerNo: {_not_eq: 0}},
              orderBy: [{customerNo: ASC}]) {
      pageInfo { hasNextPage endCursor }
      items { associateNo customerNo name emailAddress changedTimestamp }
    }
  }
}"""


@pytest.mark.parametrize("table", ["associate", "address"])
def test_gql_validates_every_request_the_connector_makes(table, sandbox, address_sandbox):
    """The connector's reads (paged), adoption look-ups, creates, updates and order writes,
    each valid against the schema gql introspected from the emulator."""
    company = sandbox if table == "associate" else address_sandbox
    company.reset("businessnxt")   # the seed's 200 customers (the module's tests share it)
    with client_of(company) as session, connect(company) as connector:
        sent = recorded(connector)
        customers = list(connector.read("address"))
        assert len(customers) == 200
        list(connector.read("order"))
        [created] = connector.write([WriteOp(ref="c", entity="address", kind="create", fields={
            "emailAddress": f"gql.{table}@example.no", "name": "Gql AS"})])
        assert created.ok, created.error
        [updated] = connector.write([WriteOp(ref="u", entity="address", kind="update",
                                             id=created.record.id, fields={"phone": "123"})])
        [order] = connector.write([WriteOp(ref="o", entity="order", kind="create", fields={
            "customerNo": created.record.id, "customerOrderNo": f"GQL-{table}",
            "orderLines": []})])
        assert updated.ok and order.ok, (updated.error, order.error)
        schema = session.client.schema
        assert schema is not None and table in schema.type_map["Query_UseCompany"].fields
        assert len(sent) > 5
        for request in sent:
            assert validate(schema, gql(request["query"]).document) == [], request["query"]


def test_gql_pages_through_customers_by_cursor(sandbox):
    """``first``/``after`` with ``pageInfo.endCursor`` until ``hasNextPage`` is false, as the
    connector reads: every customer once, suppliers left out by the filter."""
    with client_of(sandbox) as session:
        numbers, after = [], None
        while True:
            page = run(session, CUSTOMER_PAGE, first=45, after=after)["useCompany"]["associate"]
            numbers += [item["customerNo"] for item in page["items"]]
            if not page["pageInfo"]["hasNextPage"]:
                break
            after = page["pageInfo"]["endCursor"]
    assert numbers == sorted(set(numbers)) and len(numbers) >= 200 and 0 not in numbers


def test_gql_creates_and_updates_an_associate_and_orders_for_it(sandbox):
    """Create with a suggested customer number, update by filter, an order with lines for the
    customer number, read back through the join."""
    with client_of(sandbox) as session:
        created = run(session, """
            mutation create($cid: Int!, $values: [Associate_Input!]!) {
              useCompany(no: $cid) {
                associate_create(values: $values, suggest: {customerNo: true}) {
                  affectedRows items { associateNo customerNo name emailAddress }
                }
              }
            }""", values=[{"name": "Gql Kunde AS", "emailAddress": "gql.kunde@example.no"}])
        [customer] = created["useCompany"]["associate_create"]["items"]
        assert customer["customerNo"] > 10000
        updated = run(session, """
            mutation update($cid: Int!, $key: FilterExpression_Associate!,
                            $value: Associate_Input!) {
              useCompany(no: $cid) {
                associate_update(filter: $key, value: $value) { affectedRows items { phone } }
              }
            }""", key={"customerNo": {"_eq": customer["customerNo"]}},
                      value={"phone": "+47 99 99 99 99"})
        assert updated["useCompany"]["associate_update"] == {
            "affectedRows": 1, "items": [{"phone": "+47 99 99 99 99"}]}
        product = run(session, "query($cid: Int!) { useCompany(no: $cid) { product(first: 1) "
                               "{ items { productNo } } } }")["useCompany"]["product"]["items"][0]
        order = run(session, """
            mutation order($cid: Int!, $values: [Order_Input!]!) {
              useCompany(no: $cid) {
                order_create(values: $values) {
                  items { orderNo customerNo
                          orderLines: joindown_OrderLine_via_Order { items { lineNo quantity } } }
                }
              }
            }""", values=[{"customerNo": customer["customerNo"], "orderDate": 20261207,
                           "orderLines": [{"productNo": product["productNo"], "quantity": 2}]}])
        [made] = order["useCompany"]["order_create"]["items"]
    assert made["customerNo"] == customer["customerNo"]
    assert made["orderLines"]["items"] == [{"lineNo": 1, "quantity": 2}]


def test_gql_reads_the_seeds_address_table(address_sandbox):
    """The seed's ``address`` company: rows keyed by ``addressNo``, paged by cursor."""
    with client_of(address_sandbox) as session:
        page = run(session, """
            query($cid: Int!, $after: String) {
              useCompany(no: $cid) {
                address(first: 150, after: $after) {
                  totalCount pageInfo { hasNextPage endCursor } items { addressNo }
                }
              }
            }""")["useCompany"]["address"]
        rest = run(session, "query($cid: Int!, $after: String) { useCompany(no: $cid) { "
                            "address(first: 150, after: $after) { pageInfo { hasNextPage } "
                            "items { addressNo } } } }",
                   after=page["pageInfo"]["endCursor"])["useCompany"]["address"]
    numbers = [i["addressNo"] for i in page["items"] + rest["items"]]
    assert page["totalCount"] == len(numbers) >= 200 and page["pageInfo"]["hasNextPage"]
    assert numbers[:200] == list(range(1, 201)) and not rest["pageInfo"]["hasNextPage"]


def test_gql_refuses_what_the_schema_does_not_have_before_sending(sandbox):
    """gql validates against the introspected schema: a request for a table the company does
    not have never reaches the server."""
    with client_of(sandbox) as session:
        sandbox.clear_requests("businessnxt")
        with pytest.raises(Exception, match="Cannot query field 'address'"):
            run(session, "query($cid: Int!) { useCompany(no: $cid) { address { totalCount } } }")
    assert sandbox.requests("businessnxt")["count"] == 0
