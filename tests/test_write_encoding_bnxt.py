"""Visma Business NXT's write encoding (connectors/businessnxt.py), checked on the GraphQL
requests the connector sends (answered in process by tests/write_path_fakes.py): values as
the table's column types, multi-row create and update fields, an order's lines replaced in one
request, creates adopted by their natural key, a failed multi-row field sent again row by row,
batches of GraphQL requests. The same against the emulator is
tests/test_connector_businessnxt.py."""

from __future__ import annotations

import datetime
import re
from decimal import Decimal

import pytest

from connectors import businessnxt as nxt
from connectors.errors import PermanentApiError, TransientApiError
from core.model import SystemConfig, WriteOp
from tests.write_path_fakes import fake_http

BASE = "https://business.visma.invalid/api/graphql-service"
PRODUCT, ADDRESS, ORDER = nxt.TABLES["product"], nxt.TABLES["address"], nxt.TABLES["order"]


@pytest.fixture(autouse=True)
def _secret(monkeypatch):
    monkeypatch.setenv("TS_NXT_SECRET", "secret-1")


def _connector(**settings) -> nxt.BusinessNxtConnector:
    return nxt.BusinessNxtConnector(SystemConfig("nxt", "businessnxt", BASE, settings={
        "client_id": "cid", "tenant_id": "ten", "company_no": "7",
        "client_secret": "${TS_NXT_SECRET}", "token_url": "https://connect.invalid/token",
        "max_retries": 0, **settings}))


def _op(kind="create", entity="product", ref="r1", **kwargs):
    kwargs.setdefault("fields", {"description": "Pen"})
    return WriteOp(kind=kind, entity=entity, ref=ref, **kwargs)


class Nxt:
    """The GraphQL service: reads by ``_in`` filter from :attr:`rows`, mutations echoed (new
    keys numbered from 100), or answered by ``answer``."""

    def __init__(self, monkeypatch, rows=None, answer=None):
        self.rows = rows or {}
        self.answer = answer or self.echo
        self.next_key = 100
        self.http = fake_http(monkeypatch, self.handle)

    def handle(self, sent):
        if sent.url == "https://connect.invalid/token":
            return 200, {"access_token": "TOKEN", "expires_in": 3600}
        if isinstance(sent.body, list):
            return 200, [self.answer(request) for request in sent.body]
        return 200, self.read(sent.body)

    def read(self, body):
        field = re.search(r"useCompany\(no: \$cid\) \{ (\w+)\(", body["query"]).group(1)
        [(column, condition)] = body["variables"]["filter"].items()
        items = [row for row in self.rows.get(field, []) if row.get(column) in condition["_in"]]
        return {"data": {"useCompany": {field: {
            "pageInfo": {"hasNextPage": False, "endCursor": None}, "items": items}}}}

    def echo(self, request):
        query, variables = request["query"], request["variables"]
        if "gone:" in query:
            return {"data": {"useCompany": {"gone": {"affectedRows": 1},
                                            "lines": {"affectedRows": 1}}}}
        field = re.search(r"rows: (\w+)_(create|update)", query).group(1)
        key = nxt.TABLES[field].key
        items = []
        for n, row in enumerate(variables["values"]):
            if "filters" in variables:
                [(_, condition)] = variables["filters"][n].items()
                items.append({**row, key: condition["_eq"]})
            else:
                self.next_key += 1
                items.append({key: self.next_key, **row})
        return {"data": {"useCompany": {"rows": {"affectedRows": len(items), "items": items}}}}

    def batches(self):
        return [s.body for s in self.http.not_tokens() if isinstance(s.body, list)]

    def reads(self):
        return [s.body for s in self.http.not_tokens() if isinstance(s.body, dict)]


# --- values ---------------------------------------------------------------------------------

def test_dates_become_integers():
    assert nxt.date_to_int(None) is None and nxt.date_to_int("") is None
    assert nxt.date_to_int("2026-12-07") == 20261207
    assert nxt.date_to_int("2026-01-02T23:59:00Z") == 20260102
    assert nxt.date_to_int(datetime.date(2026, 12, 7)) == 20261207


def test_fields_become_the_tables_column_types():
    assert nxt._to_wire(ORDER, {
        "orderNo": "12", "orderLines": [{"lineNo": "1", "quantity": 1.1,
                                         "priceInCurrency": "2.50"}],
        "orderDate": "2026-12-07", "name": 5, "customerOrderNo": "", "currencyNo": None}) == {
        "orderNo": 12, "orderDate": 20261207, "name": "5", "customerOrderNo": None,
        "currencyNo": None, "orderLines": [{"lineNo": 1, "quantity": Decimal("1.1"),
                                            "priceInCurrency": Decimal("2.50")}]}
    assert nxt._to_wire(ORDER, {"orderLines": None}) == {"orderLines": []}
    assert nxt._to_wire(PRODUCT, {"salesPrice1": Decimal("3.10")}) == {
        "salesPrice1": Decimal("3.10")}


def test_a_field_the_table_lacks_is_refused():
    with pytest.raises(PermanentApiError) as caught:
        nxt._to_wire(PRODUCT, {"orderLines": []})
    assert str(caught.value) == "Product has no column 'orderLines'"


# --- the GraphQL of each kind of unit --------------------------------------------------------

SELECT = "{ affectedRows items { " + PRODUCT.selection + " } }"


def test_a_create_unit():
    unit = nxt._Unit(_connector(), PRODUCT, "create", [
        _op(fields={"productNo": "P1", "salesPrice1": "2.50"}), _op(fields={"productNo": 7})])
    assert unit.multi_row
    assert unit.request() == {
        "query": "mutation write($cid: Int!, $values: [Product_Input!]!) { useCompany(no: $cid) "
                 "{ rows: product_create(values: $values) " + SELECT + " } }",
        "variables": {"cid": 7, "values": [{"productNo": "P1", "salesPrice1": Decimal("2.50")},
                                           {"productNo": "7"}]}}


def test_an_update_unit_filters_each_row_by_its_key():
    unit = nxt._Unit(_connector(), ADDRESS, "update", [
        _op("update", "address", id="12", fields={"name": "A"})])
    assert not unit.multi_row
    select = "{ affectedRows items { " + ADDRESS.selection + " } }"
    assert unit.request() == {
        "query": "mutation write($cid: Int!, $filters: [FilterExpression_Address!], "
                 "$values: [Address_Input!]) { useCompany(no: $cid) { rows: address_update("
                 "filters: $filters, values: $values) " + select + " } }",
        "variables": {"cid": 7, "filters": [{"addressNo": {"_eq": 12}}],
                      "values": [{"name": "A"}]}}
    product = nxt._Unit(_connector(), PRODUCT, "update", [_op("update", id="007")])
    assert product.request()["variables"]["filters"] == [{"productNo": {"_eq": "007"}}]


def test_a_lines_unit_replaces_the_lines_after_the_head():
    line = {"lineNo": 1, "productNo": "P1", "quantity": "2"}
    unit = nxt._Unit(_connector(), ORDER, "lines", [
        _op("update", "order", id="55", fields={"name": "N", "orderLines": [line]})])
    assert unit.request() == {
        "query": "mutation write($cid: Int!, $lineKey: FilterExpression_OrderLine!, "
                 "$lines: [OrderLine_Input!]!, $key: FilterExpression_Order!, "
                 "$head: Order_Input!) { useCompany(no: $cid) { head: order_update(filter: "
                 "$key, value: $head) { affectedRows } gone: orderLine_delete(filter: $lineKey) "
                 "{ affectedRows } lines: orderLine_create(values: $lines) { affectedRows } } }",
        "variables": {"cid": 7, "lineKey": {"orderNo": {"_eq": 55}},
                      "lines": [{"lineNo": 1, "productNo": "P1", "quantity": Decimal("2"),
                                 "orderNo": 55}],
                      "key": {"orderNo": {"_eq": 55}}, "head": {"name": "N"}}}
    only_lines = nxt._Unit(_connector(), ORDER, "lines", [
        _op("update", "order", id="55", fields={"orderLines": []})])
    assert only_lines.request() == {
        "query": "mutation write($cid: Int!, $lineKey: FilterExpression_OrderLine!, "
                 "$lines: [OrderLine_Input!]!) { useCompany(no: $cid) { gone: orderLine_delete("
                 "filter: $lineKey) { affectedRows } lines: orderLine_create(values: $lines) "
                 "{ affectedRows } } }",
        "variables": {"cid": 7, "lineKey": {"orderNo": {"_eq": 55}}, "lines": []}}


@pytest.mark.parametrize(("fields", "message"), [
    ({"salesPrice1": "abc"}, "nxt: Product: [<class 'decimal.ConversionSyntax'>]"),
    ({"orderNo": 1}, "Product has no column 'orderNo'"),
])
def test_values_a_table_cannot_take_fail_the_units_ops(fields, message):
    results = {}
    unit = nxt._Unit(_connector(), PRODUCT, "create", [_op(fields=fields),
                                                       _op(ref="r2", fields={})])
    assert unit.build(results) is False
    assert set(results) == {"r1", "r2"}
    assert results["r1"].error is results["r2"].error
    assert (results["r1"].ref, results["r2"].ref) == ("r1", "r2")
    assert isinstance(results["r1"].error, PermanentApiError)
    assert results["r1"].error.system == ("nxt" if fields == {"salesPrice1": "abc"} else "")
    assert str(results["r1"].error) == message
    fine = nxt._Unit(_connector(), PRODUCT, "create", [_op()])
    assert fine.build(results) is True and fine.payload == fine.request()


@pytest.mark.parametrize(("path", "inside"), [(["useCompany", "rows"], True),
                                              (["useCompany"], False), (None, False)])
def test_an_error_with_a_path_into_data_belongs_to_a_field(path, inside):
    assert nxt._in_field({"message": "m", "path": path}) is inside


def test_answers_become_results():
    connector = _connector()
    ops = [_op(ref="a", fields={"productNo": "P1"}), _op(ref="b", fields={"productNo": "P2"})]
    create = nxt._Unit(connector, PRODUCT, "create", ops)
    items = [{"productNo": "P1", "description": "x"}, {"productNo": "P2"}]
    results = create.parse({"data": {"useCompany": {"rows": {"items": items}}}})
    assert [(r.ref, r.record.id, r.record.fields["description"]) for r in results] == [
        ("a", "P1", "x"), ("b", "P2", None)]
    short = create.parse({"data": {"useCompany": {"rows": {"items": items[:1]}}}})
    assert all(isinstance(r.error, TransientApiError) for r in short)
    assert [r.ref for r in short] == ["a", "b"] and short[0].error.system == "nxt"
    assert str(short[0].error) == "nxt: product_create answered 1 rows for 2"
    assert len(create.parse({"data": None})) == 2
    assert str(create.parse({"data": None})[0].error) == "nxt: product_create answered 0 rows for 2"


def test_an_update_of_a_row_that_is_not_there_fails_alone():
    update = nxt._Unit(_connector(), ADDRESS, "update", [
        _op("update", "address", ref="a", id="1"), _op("update", "address", ref="b", id="2")])
    found, missing = update.parse({"data": {"useCompany": {"rows": {"items": [
        {"addressNo": 1, "name": "A"}]}}}})
    assert found.record.id == "1" and found.ref == "a"
    assert missing.ref == "b" and isinstance(missing.error, PermanentApiError)
    assert missing.error.status == 404 and missing.error.system == "nxt"
    assert str(missing.error) == "nxt: Address 2 does not exist (the update affected no row)"


def test_a_lines_answer_is_read_back_later():
    unit = nxt._Unit(_connector(), ORDER, "lines", [_op("update", "order", id="5")])
    [result] = unit.parse({"data": {"useCompany": {"gone": {}, "lines": {}}}})
    assert result.ok and result.record is None and result.ref == "r1"


def test_field_errors_of_a_multi_row_unit_send_its_rows_again_one_by_one():
    field_error = {"message": "bad row", "path": ["useCompany", "rows"]}
    multi = nxt._Unit(_connector(), PRODUCT, "create", [_op(ref="a"), _op(ref="b")])
    assert multi.parse({"errors": [field_error]}) is None
    assert [(u.kind, u.table, [op.ref for op in u.ops]) for u in multi.split()] == [
        ("create", PRODUCT, ["a"]), ("create", PRODUCT, ["b"])]
    request_error = {"message": "syntax"}
    for unit, errors in ((multi, [field_error, request_error]),
                         (nxt._Unit(_connector(), PRODUCT, "create", [_op(ref="a")]),
                          [field_error])):
        results = unit.parse({"errors": errors})
        assert [r.ref for r in results] == [op.ref for op in unit.ops] != [None]
        assert isinstance(results[0].error, PermanentApiError)
        assert str(results[0].error).startswith("nxt: GraphQL product_create -> HTTP 200: bad row")


# --- write: adoption, units, batches --------------------------------------------------------

def test_creates_adopt_rows_with_their_natural_key_and_the_rest_are_created(monkeypatch):
    service = Nxt(monkeypatch, rows={"product": [{"productNo": "P1", "description": "theirs"}]})
    adopted, created, unkeyed = _connector().write([
        _op(fields={"productNo": "P1", "description": "ours"}),
        _op(ref="r2", fields={"productNo": "P2"}), _op(ref="r3", fields={"productNo": ""})])
    [lookup] = service.reads()
    assert lookup["variables"]["filter"] == {"productNo": {"_in": ["P1", "P2"]}}
    assert adopted.adopted and adopted.record.fields["description"] == "theirs"
    assert (adopted.ref, created.ref, unkeyed.ref) == ("r1", "r2", "r3")
    assert not created.adopted and created.record.id == "P2"
    assert unkeyed.ok and not unkeyed.adopted
    [[request]] = service.batches()
    assert request["variables"]["values"] == [{"productNo": "P2"}, {"productNo": None}]


def test_creates_without_natural_keys_are_not_looked_up(monkeypatch):
    service = Nxt(monkeypatch)
    [result] = _connector().write([_op(fields={"description": "no key"})])
    assert service.reads() == [] and result.ok


def test_a_failed_lookup_fails_the_creates(monkeypatch):
    def handle(sent):
        if "token" in sent.url:
            return 200, {"access_token": "TOKEN"}
        return 200, {"errors": [{"message": "lookup failed"}]}

    http = fake_http(monkeypatch, handle)
    a, b = _connector().write([_op(fields={"productNo": "P1"}), _op(ref="r2")])
    assert a.error is b.error and "lookup failed" in str(a.error)
    assert (a.ref, b.ref) == ("r1", "r2")
    assert len(http.not_tokens()) == 1


def test_units_of_fifty_rows_and_batches_of_thirty_two_requests(monkeypatch):
    service = Nxt(monkeypatch)
    ops = ([_op(ref=f"c{n}", fields={"description": f"d{n}"}) for n in range(51)] +
           [_op("update", ref=f"u{n}", id=f"P{n}") for n in range(50 * 32)])
    results = _connector().write(ops)
    batches = service.batches()
    assert [len(batch) for batch in batches] == [32, 2]
    assert [len(r["variables"]["values"]) for r in batches[0][:3]] == [50, 1, 50]
    assert "product_create" in batches[0][0]["query"] and "update" in batches[0][2]["query"]
    assert [r.ref for r in results] == [op.ref for op in ops]
    assert all(r.ok for r in results)


def test_a_multi_row_field_that_failed_is_sent_again_row_by_row(monkeypatch):
    def answer(request):
        rows = request["variables"]["values"]
        if len(rows) > 1:
            return {"errors": [{"message": "one bad row", "path": ["useCompany", "rows"]}]}
        if rows[0]["description"] == "bad":
            return {"errors": [{"message": "bad", "path": ["useCompany", "rows"]}]}
        return service.echo(request)

    service = Nxt(monkeypatch, answer=answer)
    good, bad = _connector().write([_op(), _op(ref="r2", fields={"description": "bad"})])
    assert [len(b) for b in service.batches()] == [1, 2]
    assert good.ok and "bad" in str(bad.error)


def test_an_answer_of_the_wrong_shape_fails_its_batch(monkeypatch):
    def handle(sent):
        if "token" in sent.url:
            return 200, {"access_token": "TOKEN"}
        return 200, {"data": {}}

    fake_http(monkeypatch, handle)
    [result] = _connector().write([_op()])
    assert isinstance(result.error, TransientApiError) and result.ref == "r1"
    assert result.error.system == "nxt"
    assert str(result.error) == "nxt: a batch of 1 requests was not answered with as many results"


@pytest.mark.parametrize(("ops", "sends"), [
    ([_op("update", id="P1")], 2),      # updates only: safe to send again
    ([_op()], 1),                       # a create could be made twice
])
def test_a_batch_is_sent_again_only_without_creates(monkeypatch, ops, sends):
    service = Nxt(monkeypatch)
    calls = []

    def handle(sent):
        if "token" not in sent.url:
            calls.append(sent)
            if len(calls) == 1:
                return 503, {"errors": [{"message": "busy"}]}, {"Retry-After": "0"}
        return service.handle(sent)

    fake_http(monkeypatch, handle)
    [result] = _connector(max_retries=1).write(ops)
    assert len(calls) == sends and result.ok is (sends == 2)


def test_orders_whose_lines_were_replaced_are_read_back(monkeypatch):
    order = {"orderNo": 5, "name": "N", "orderLines": {"items": [{"orderNo": 5, "lineNo": 1}]}}
    service = Nxt(monkeypatch, rows={"order": [order]})
    replaced, head, gone = _connector().write([
        _op("update", "order", id="5", fields={"orderLines": [{"lineNo": 1}]}),
        _op("update", "order", ref="r2", id="6", fields={"name": "M"}),
        _op("update", "order", ref="r3", id="9", fields={"orderLines": []})])
    [read_back] = service.reads()
    assert read_back["variables"]["filter"] == {"orderNo": {"_in": [5, 9]}}
    assert replaced.record.fields["orderLines"] == [
        {"orderNo": 5, "lineNo": 1, "productNo": None, "description": None, "quantity": None,
         "priceInCurrency": None, "discountPercent1": None}]
    assert head.ok and head.record.id == "6"
    assert (replaced.ref, head.ref, gone.ref) == ("r1", "r2", "r3")
    assert isinstance(gone.error, PermanentApiError) and gone.error.system == "nxt"
    assert str(gone.error) == "nxt: order 9 vanished"


def test_a_failed_read_back_fails_the_orders_with_its_error(monkeypatch):
    service = Nxt(monkeypatch)

    def handle(sent):
        if isinstance(sent.body, dict) and "query read" in sent.body.get("query", ""):
            return 200, {"errors": [{"message": "read failed"}]}
        return service.handle(sent)

    fake_http(monkeypatch, handle)
    [result] = _connector().write([_op("update", "order", id="5",
                                       fields={"orderLines": []})])
    assert "read failed" in str(result.error) and result.ref == "r1"


def test_a_failed_lines_update_is_not_read_back(monkeypatch):
    service = Nxt(monkeypatch, answer=lambda request: {"errors": [{"message": "no"}]})
    [result] = _connector().write([_op("update", "order", id="5",
                                       fields={"orderLines": []})])
    assert not result.ok and service.reads() == []


def test_two_rows_with_one_natural_key_adopt_once(monkeypatch):
    rows = [{"addressNo": 1, "emailAddress": "a@x.no"}, {"addressNo": 2, "emailAddress": "a@x.no"}]
    Nxt(monkeypatch, rows={"address": rows})
    [result] = _connector().write([_op(entity="address", fields={"emailAddress": "a@x.no"})])
    assert result.adopted and result.record.id == "1"


def test_rows_that_cannot_be_encoded_fail_and_the_next_batches_go_on(monkeypatch):
    service = Nxt(monkeypatch)
    bad = [_op("update", "order", ref=f"b{n}", id=str(n), fields={"orderLines": [
        {"quantity": "many"}]}) for n in range(32)]
    good = _op("update", "order", ref="ok", id="99", fields={"orderLines": []})
    results = _connector().write([*bad, good])
    assert all(not r.ok for r in results[:32]) and [r.ref for r in results[:2]] == ["b0", "b1"]
    assert len(service.batches()) == 1 and results[32].ref == "ok"
    assert str(results[32].error) == "nxt: order 99 vanished"     # sent, then not found


def test_a_failed_batch_request_does_not_stop_the_next(monkeypatch):
    service = Nxt(monkeypatch)
    posts = []

    def handle(sent):
        if isinstance(sent.body, list):
            posts.append(sent)
            if len(posts) == 1:
                return 400, {"errors": [{"message": "refused"}]}
        return service.handle(sent)

    fake_http(monkeypatch, handle)
    ops = [_op("update", ref=f"u{n}", id=f"P{n}") for n in range(50 * 33)]
    results = _connector().write(ops)
    assert len(posts) == 2
    assert not results[0].ok and results[0].ref == "u0" and results[-1].ok


def test_every_failed_multi_row_unit_of_a_batch_is_sent_again(monkeypatch):
    def answer(request):
        if len(request["variables"]["values"]) > 1:
            return {"errors": [{"message": "one bad row", "path": ["useCompany", "rows"]}]}
        return service.echo(request)

    service = Nxt(monkeypatch, answer=answer)
    results = _connector().write([_op(ref="p1"), _op(ref="p2"),
                                  _op(entity="address", ref="a1", fields={"name": "A"}),
                                  _op(entity="address", ref="a2", fields={"name": "B"})])
    assert [len(b) for b in service.batches()] == [2, 4]
    assert all(r.ok for r in results)
