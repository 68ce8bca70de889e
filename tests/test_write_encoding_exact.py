"""Exact Online's write encoding (connectors/exact.py), checked on the requests the connector
sends (answered in process by tests/write_path_fakes.py): dates as zone-less midnight, the
account status of a create, an item whose code exists adopted, updates read back, and order
lines changed position by position. The same against the emulator is
tests/test_connector_exact.py."""

from __future__ import annotations

import datetime
from decimal import Decimal

import pytest

from connectors import exact
from connectors.errors import PermanentApiError
from connectors.stores import open_link_store
from core.model import SystemConfig, WriteOp
from tests.write_path_fakes import fake_http

BASE = "https://start.exact.invalid/api"
ROOT = "/api/v1/123"
ACCOUNT = "11111111-1111-1111-1111-111111111111"
ORDER = "22222222-2222-2222-2222-222222222222"


@pytest.fixture
def connector(tmp_path, monkeypatch):
    monkeypatch.setenv("TS_EXACT_SECRET", "secret-1")
    url = f"sqlite:///{tmp_path}/links.db"
    with open_link_store(url) as store:
        store.write_state("tokens/exact", {"access_token": "AT", "refresh_token": "RT",
                                           "expires_at": 4e9, "refreshed_at": 0}, None)
    config = SystemConfig("exact", "exact", BASE, state_store=url, settings={
        "client_id": "cid", "client_secret": "${TS_EXACT_SECRET}", "division": 123,
        "max_retries": 0})
    made = exact.ExactConnector(config)
    yield made
    made.close()


def _op(kind="create", entity="Accounts", ref="r1", **kwargs):
    kwargs.setdefault("fields", {"Name": "Ada"})
    return WriteOp(kind=kind, entity=entity, ref=ref, **kwargs)


def test_dates_go_as_midnight_without_a_zone():
    assert exact.to_wire("OrderDate", "2026-12-07") == "2026-12-07T00:00:00"
    assert exact.to_wire("DeliveryDate", "2026-12-07T10:00") == "2026-12-07T10:00"
    assert exact.to_wire("Description", "2026-12-07") == "2026-12-07"
    assert exact.to_wire("OrderDate", 20261207) == 20261207
    assert exact.to_wire("Anything", datetime.date(2026, 12, 7)) == "2026-12-07T00:00:00"
    moment = datetime.datetime(2026, 12, 7, 10, 30)
    assert exact.to_wire("Anything", moment) is moment


def test_a_body_converts_its_lines_too():
    assert exact.ExactConnector._body({
        "OrderDate": "2026-12-07", "Note": "2026-12-07",
        exact.LINES: ({"DeliveryDate": "2026-12-08", "Quantity": Decimal("2")},),
    }) == {"OrderDate": "2026-12-07T00:00:00", "Note": "2026-12-07",
           exact.LINES: [{"DeliveryDate": "2026-12-08T00:00:00", "Quantity": Decimal("2")}]}
    assert exact.ExactConnector._body({exact.LINES: "not lines"}) == {exact.LINES: "not lines"}


def test_a_created_account_is_a_customer_unless_it_says_otherwise(connector, monkeypatch):
    http = fake_http(monkeypatch, lambda sent: (201, {"d": {"ID": ACCOUNT, **sent.body,
                                                            "__metadata": {"uri": "x"}}}))
    first, second = connector.write([_op(), _op(ref="r2", fields={"Name": "Bo",
                                                                  "Status": "P"})])
    assert [(s.method, s.path, s.body) for s in http.not_tokens()] == [
        ("POST", f"{ROOT}/crm/Accounts", {"Name": "Ada", "Status": "C"}),
        ("POST", f"{ROOT}/crm/Accounts", {"Name": "Bo", "Status": "P"})]
    assert http.sent[0].headers["Prefer"] == "return=representation"
    assert http.sent[0].headers["Authorization"] == "Bearer AT"
    assert (first.ref, first.record.id, first.record.fields, first.adopted) == (
        "r1", ACCOUNT, {"ID": ACCOUNT, "Name": "Ada", "Status": "C"}, False)
    assert second.ref == "r2" and second.record.fields["Status"] == "P"


def test_a_created_item_gets_no_status(connector, monkeypatch):
    http = fake_http(monkeypatch, lambda sent: (201, {"d": {"ID": ACCOUNT, **sent.body}}))
    connector.write([_op(entity="Items", fields={"Code": "A1"})])
    assert http.sent[0].body == {"Code": "A1"}
    assert http.sent[0].path == f"{ROOT}/logistics/Items"


def _duplicate_item(rows):
    def answer(sent):
        if sent.method == "POST":
            return 400, {"error": {"code": "", "message": {"value": "Code already exists"}}}
        return 200, {"d": {"results": rows}}
    return answer


@pytest.mark.parametrize(("code", "literal"), [
    ("42", "                42"),        # a numeric code is right-aligned in 18 characters
    (" O'Neil ", "O''Neil"),
])
def test_an_item_whose_code_exists_is_adopted(connector, monkeypatch, code, literal):
    http = fake_http(monkeypatch, _duplicate_item([{"ID": ACCOUNT, "Code": literal,
                                                    "Description": "theirs"}]))
    [result] = connector.write([_op(entity="Items", fields={"Code": code})])
    assert result.adopted and result.record.id == ACCOUNT
    assert result.record.fields["Description"] == "theirs"
    lookup = http.not_tokens()[1]
    assert (lookup.method, lookup.path) == ("GET", f"{ROOT}/bulk/Logistics/Items")
    assert lookup.query == {"$select": ",".join(exact.SELECT["Items"]),
                            "$filter": f"Code eq '{literal}'"}


@pytest.mark.parametrize(("entity", "fields", "message", "rows", "sends"), [
    ("Items", {"Code": "A1"}, "Code already exists", [], 2),       # not found after all
    ("Items", {"Code": ""}, "Code already exists", [{"ID": ACCOUNT}], 1),
    ("Items", {"Code": "A1"}, "Code is invalid", [{"ID": ACCOUNT}], 1),
    ("Accounts", {"Code": "A1"}, "Code already exists", [{"ID": ACCOUNT}], 1),
])
def test_other_refused_creates_fail(connector, monkeypatch, entity, fields, message, rows,
                                    sends):
    def answer(sent):
        if sent.method == "POST":
            return 400, {"error": {"code": "", "message": {"value": message}}}
        return 200, {"d": {"results": rows}}

    http = fake_http(monkeypatch, answer)
    [result] = connector.write([_op(entity=entity, fields=fields)])
    assert isinstance(result.error, PermanentApiError)
    assert message in str(result.error)
    assert len(http.not_tokens()) == sends


def test_an_update_puts_the_fields_and_reads_the_entity_back(connector, monkeypatch):
    def answer(sent):
        if sent.method == "PUT":
            return 204, None
        return 200, {"d": {"results": [{"ID": ACCOUNT, "Name": "Bo"}]}}

    http = fake_http(monkeypatch, answer)
    [result] = connector.write([_op("update", id=ACCOUNT, fields={"Name": "Bo"})])
    put, read = http.not_tokens()
    assert (put.method, put.path, put.body) == ("PUT", f"{ROOT}/crm/Accounts(guid'{ACCOUNT}')",
                                                {"Name": "Bo"})
    assert (read.method, read.path) == ("GET", f"{ROOT}/bulk/CRM/Accounts")
    assert read.query["$filter"] == f"ID eq guid'{ACCOUNT}'"
    assert result.ok and not result.adopted and result.record.fields == {"ID": ACCOUNT,
                                                                         "Name": "Bo"}


def test_an_update_of_an_entity_that_is_gone_fails(connector, monkeypatch):
    fake_http(monkeypatch, lambda sent: (204, None) if sent.method == "PUT" else
              (200, {"d": {"results": []}}))
    [result] = connector.write([_op("update", id=ACCOUNT, fields={"Name": "Bo"})])
    assert isinstance(result.error, PermanentApiError) and result.error.status == 404
    assert result.error.system == "exact"
    assert str(result.error) == f"exact: Accounts {ACCOUNT} was not found after the update"


def _order(lines):
    return {"OrderID": ORDER, "OrderNumber": 7, "OrderDate": "/Date(1796601600000)/",
            exact.LINES: {"results": lines}}


def _line(n, **fields):
    return {"ID": f"L{n}", "OrderID": ORDER, "LineNumber": n, "Item": f"I{n}",
            "Quantity": Decimal(n), "UnitPrice": Decimal("10.00"), "Description": f"d{n}",
            **fields}


class OrderServer:
    """An order with ``lines`` that answers reads, and records the line requests."""

    def __init__(self, monkeypatch, lines, found=True):
        self.lines, self.found = lines, found
        self.http = fake_http(monkeypatch, self.answer)

    def answer(self, sent):
        if sent.method == "GET":
            return 200, {"d": {"results": [_order(self.lines)] if self.found else []}}
        return (201, {"d": {}}) if sent.method == "POST" else (204, None)

    def writes(self):
        return [(s.method, s.path.removeprefix(ROOT), s.body) for s in self.http.not_tokens()
                if s.method != "GET"]


def test_order_lines_are_changed_position_by_position(connector, monkeypatch):
    server = OrderServer(monkeypatch, [_line(1), _line(2), _line(3)])
    wanted = [
        {"Item": "I1", "Quantity": "1.000", "UnitPrice": 10, "Description": "d1",
         "LineNumber": 99},                                            # the same by value
        {"Item": "I2", "Quantity": 5, "Description": "new", "Unknown": "x",
         "DeliveryDate": "2026-12-24"},
    ]
    [result] = connector.write([_op("update", entity="SalesOrders", id=ORDER,
                                    fields={"YourRef": "R", exact.LINES: wanted})])
    assert server.writes() == [
        ("PUT", f"/salesorder/SalesOrders(guid'{ORDER}')", {"YourRef": "R"}),
        ("PUT", "/salesorder/SalesOrderLines(guid'L2')",
         {"Quantity": 5, "Description": "new", "DeliveryDate": "2026-12-24T00:00:00"}),
        ("DELETE", "/salesorder/SalesOrderLines(guid'L3')", None)]
    reads = [s for s in server.http.not_tokens() if s.method == "GET"]
    assert len(reads) == 2 and all(r.query == {"$filter": f"OrderID eq guid'{ORDER}'",
                                               "$expand": exact.LINES} for r in reads)
    assert result.ok and result.record.id == ORDER
    assert result.record.fields["OrderDate"] == "2026-12-07"


def test_new_order_lines_are_posted_to_the_order(connector, monkeypatch):
    server = OrderServer(monkeypatch, [_line(1)])
    connector.write([_op("update", entity="SalesOrders", id=ORDER, fields={exact.LINES: [
        {"Item": "I1", "Quantity": 1, "UnitPrice": Decimal("10.00"), "Description": "d1"},
        {"Item": "I9", "Quantity": 2}]})])
    assert server.writes() == [("POST", "/salesorder/SalesOrderLines",
                                {"Item": "I9", "Quantity": 2, "OrderID": ORDER})]
    post = [s for s in server.http.not_tokens() if s.method == "POST"][0]
    assert post.headers["Prefer"] == "return=representation"


def test_lines_of_an_order_that_is_gone_fail_the_update(connector, monkeypatch):
    server = OrderServer(monkeypatch, [], found=False)
    [result] = connector.write([_op("update", entity="SalesOrders", id=ORDER,
                                    fields={exact.LINES: []})])
    assert server.writes() == []            # no head to PUT, nothing else sent
    assert isinstance(result.error, PermanentApiError) and result.error.status == 404
    assert result.error.system == "exact"
    assert str(result.error) == f"exact: sales order {ORDER} was not found"


def test_an_order_update_without_lines_reads_the_order_back(connector, monkeypatch):
    server = OrderServer(monkeypatch, [_line(1)])
    [result] = connector.write([_op("update", entity="SalesOrders", id=ORDER,
                                    fields={"OrderDate": "2026-12-08"})])
    assert server.writes() == [("PUT", f"/salesorder/SalesOrders(guid'{ORDER}')",
                                {"OrderDate": "2026-12-08T00:00:00"})]
    assert result.record.fields[exact.LINES][0]["ID"] == "L1"


def test_a_lines_field_of_another_entity_is_sent_as_it_is(connector, monkeypatch):
    http = fake_http(monkeypatch, lambda sent: (204, None) if sent.method == "PUT" else
                     (200, {"d": {"results": [{"ID": ACCOUNT}]}}))
    connector.write([_op("update", id=ACCOUNT, fields={exact.LINES: [{"a": "2026-12-07"}]})])
    assert http.not_tokens()[0].body == {exact.LINES: [{"a": "2026-12-07"}]}


def test_a_failed_op_does_not_stop_the_next(connector, monkeypatch):
    def answer(sent):
        if sent.body and sent.body.get("Name") == "bad":
            return 400, {"error": {"code": "E1", "message": {"value": "bad name"}}}
        return 201, {"d": {"ID": ACCOUNT, **sent.body}}

    fake_http(monkeypatch, answer)
    bad, good = connector.write([_op(fields={"Name": "bad"}), _op(ref="r2")])
    assert (bad.ref, str(bad.error)) == (
        "r1", "exact: POST /v1/123/crm/Accounts -> HTTP 400: E1: bad name")
    assert good.ok and good.ref == "r2"


@pytest.mark.parametrize(("current", "wanted", "same"), [
    (2, "2.00", True), (Decimal("2.5"), 2.5, True), (2.5, Decimal("2.50"), True),
    (2, 3, False), (True, "1", False), (1, "True", False), (2, "two", False),
    ("a", "a", True), ("a", "b", False), (None, None, True),
])
def test_line_values_compare_numbers_by_value(current, wanted, same):
    assert exact._same(current, wanted) is same
