"""Business Central's write encoding (connectors/businesscentral.py), checked on the
``$batch`` requests the connector sends (answered in process by tests/write_path_fakes.py):
enums escaped, deep inserts of orders, the local currency sent blank, ETags on every PATCH and
DELETE, order lines changed position by position, ``dependsOn`` chains, batches of 100,
adoption of a duplicate number. The same against the emulator is
tests/test_connector_businesscentral.py."""

from __future__ import annotations

from decimal import Decimal

import pytest

from connectors import businesscentral as bc
from connectors.errors import (
    PermanentApiError,
    PreconditionFailedError,
    TransientApiError,
)
from core.model import SystemConfig, WriteOp
from tests.write_path_fakes import fake_http

BASE = "https://api.bc.invalid/v2.0/t/env/api/v2.0"
CO = "companies(c0)"


@pytest.fixture(autouse=True)
def _secret(monkeypatch):
    monkeypatch.setenv("TS_BC_SECRET", "secret-1")


def _connector(**settings) -> bc.BusinessCentralConnector:
    return bc.BusinessCentralConnector(SystemConfig("bc", "businesscentral", BASE, settings={
        "tenant_id": "t", "client_id": "cid", "client_secret": "${TS_BC_SECRET}",
        "company_id": "c0", "token_url": "https://login.invalid/token", "max_retries": 0,
        **settings}))


def _op(kind="create", entity="customers", ref="r1", **kwargs):
    kwargs.setdefault("fields", {"displayName": "Ada"})
    return WriteOp(kind=kind, entity=entity, ref=ref, **kwargs)


def _echo(request):
    """A call's answer: its body back with an id, 200 (a DELETE: 204, no body)."""
    if request["method"] == "DELETE":
        return {"status": 204}
    body = {"id": "new", "@odata.etag": 'W/"1"', **(request.get("body") or {})}
    return {"status": 201 if request["method"] == "POST" else 200, "body": body}


class BC:
    """The service: tokens, and ``$batch`` answered call by call with ``answer``."""

    def __init__(self, monkeypatch, answer=_echo, orders=None):
        self.answer, self.orders = answer, orders or {}
        self.http = fake_http(monkeypatch, self.handle)

    def handle(self, sent):
        if sent.url == "https://login.invalid/token":
            return 200, {"access_token": "TOKEN", "expires_in": 3600}
        if sent.path.endswith("/$batch"):
            return 200, {"responses": [{"id": r["id"], **self.call(r)}
                                       for r in sent.body["requests"]]}
        answer = self.answer({"method": sent.method, "url": sent.url, "query": sent.query})
        return answer["status"], answer["body"]

    def call(self, request):
        if request["method"] == "GET" and "salesOrders(" in request["url"] \
                and "salesOrderLines(" not in request["url"]:
            order_id = request["url"].split("salesOrders(")[1].split(")")[0]
            if order_id in self.orders:
                return {"status": 200, "body": self.orders[order_id]}
        return self.answer(request)

    def batches(self):
        return [s.body["requests"] for s in self.http.not_tokens() if s.path.endswith("$batch")]


def test_enum_members_are_escaped_for_the_wire():
    assert bc.escape_enum("Non-Inventory") == "Non_x002D_Inventory"
    assert bc.escape_enum("In Review") == "In_x0020_Review"
    assert bc.escape_enum("A_b9é") == "A_b9é"
    assert bc.escape_enum("a.b") == "a_x002E_b"


def test_only_the_enum_properties_of_each_entity_are_converted():
    fields = {"type": "a b", "blocked": "x y", "displayName": "c d", "number": 5,
              "salesOrderLines": [{"lineType": "e f", "description": "g h"}]}
    lines = [{"lineType": "e_x0020_f", "description": "g h"}]     # lines: whatever the entity
    assert bc._enums("customers", fields, bc.escape_enum) == {
        **fields, "type": "a_x0020_b", "blocked": "x_x0020_y", "salesOrderLines": lines}
    assert bc._enums("salesOrders", fields, bc.escape_enum) == {
        **fields, "salesOrderLines": lines}
    assert bc._enums("items", {"type": None, "salesOrderLines": "x"}, bc.escape_enum) == {
        "type": None, "salesOrderLines": "x"}


def test_a_call_becomes_a_batch_request():
    call = bc._Call(0, "PATCH", "u", {"a": 1}, 'W/"2"')
    assert call.request(3, [1, 2]) == {
        "id": "3", "method": "PATCH", "url": "u", "dependsOn": ["1", "2"], "body": {"a": 1},
        "headers": {"Content-Type": "application/json", "If-Match": 'W/"2"'}}
    assert bc._Call(0, "POST", "u", {}).request(0) == {
        "id": "0", "method": "POST", "url": "u", "body": {},
        "headers": {"Content-Type": "application/json"}}
    assert bc._Call(0, "GET", "u").request(1) == {
        "id": "1", "method": "GET", "url": "u", "headers": {"Content-Type": "application/json"}}


def test_creates_are_posts_with_enums_escaped_and_orders_deep_inserted(monkeypatch):
    service = BC(monkeypatch)
    ops = [_op(fields={"displayName": "Ada", "type": "Non-Inventory"}),
           _op(entity="salesOrders", ref="r2", fields={
               "number": "SO1", "currencyCode": "EUR",
               "salesOrderLines": [{"itemId": "i1", "quantity": 2},
                                   {"lineType": "Comment", "itemId": "i2"},
                                   {"description": "text only"}]})]
    customer, order = _connector().write(ops)
    [requests] = service.batches()
    assert requests == [
        {"id": "0", "method": "POST", "url": f"{CO}/customers",
         "headers": {"Content-Type": "application/json"},
         "body": {"displayName": "Ada", "type": "Non_x002D_Inventory"}},
        {"id": "1", "method": "POST", "url": f"{CO}/salesOrders?$expand=salesOrderLines",
         "headers": {"Content-Type": "application/json"},
         "body": {"number": "SO1", "currencyCode": "EUR", "salesOrderLines": [
             {"lineType": "Item", "itemId": "i1", "quantity": 2},
             {"lineType": "Comment", "itemId": "i2"}, {"description": "text only"}]}}]
    sent = service.http.not_tokens()[0]
    assert sent.url == BASE + "/$batch" and sent.headers["Authorization"] == "Bearer TOKEN"
    assert customer.record.fields["type"] == "Non-Inventory"       # read back unescaped
    assert customer.record.etag == 'W/"1"' and customer.record.id == "new"
    assert order.ref == "r2" and not order.adopted


@pytest.mark.parametrize(("entity", "currency", "sent"), [
    ("salesOrders", "NOK", ""), ("salesOrders", "EUR", "EUR"), ("customers", "NOK", "NOK")])
def test_the_local_currency_is_sent_blank_on_orders(monkeypatch, entity, currency, sent):
    service = BC(monkeypatch)
    _connector(local_currency="NOK").write([_op(entity=entity,
                                                fields={"currencyCode": currency})])
    assert service.batches()[0][0]["body"]["currencyCode"] == sent


def test_an_update_is_a_patch_with_the_planned_etag(monkeypatch):
    service = BC(monkeypatch)
    [result] = _connector().write([_op("update", id="a b-1", if_match='W/"7"',
                                       fields={"blocked": "All Blocked"})])
    assert service.batches() == [[{
        "id": "0", "method": "PATCH", "url": f"{CO}/customers(a%20b-1)",
        "headers": {"Content-Type": "application/json", "If-Match": 'W/"7"'},
        "body": {"blocked": "All_x0020_Blocked"}}]]
    assert result.ok and result.record.fields["blocked"] == "All Blocked"


def test_an_update_without_an_etag_is_refused_unsent(monkeypatch):
    service = BC(monkeypatch)
    [result] = _connector().write([_op("update", id="x", fields={"a": 1})])
    assert isinstance(result.error, PreconditionFailedError) and result.error.status == 409
    assert result.ref == "r1" and result.error.system == "bc"
    assert str(result.error) == ("bc: PATCH /companies(c0)/customers(x): no ETag to send in "
                                 "If-Match; the entity is read again next run")
    assert service.batches() == []


def test_an_order_head_update_is_read_back_after_it(monkeypatch):
    service = BC(monkeypatch)
    [result] = _connector().write([_op("update", entity="salesOrders", id="o1",
                                       if_match='W/"1"', fields={"externalDocumentNumber": "X"})])
    [requests] = service.batches()
    assert [(r["method"], r["url"], r.get("dependsOn")) for r in requests] == [
        ("PATCH", f"{CO}/salesOrders(o1)", None),
        ("GET", f"{CO}/salesOrders(o1)?$expand=salesOrderLines", ["0"])]
    assert "body" not in requests[1] and "If-Match" not in requests[1]["headers"]
    assert result.ok


def _order(etag='W/"5"', lines=()):
    return {"id": "o1", "@odata.etag": etag, "salesOrderLines": list(lines)}


def _bc_line(n, **fields):
    return {"id": f"l{n}", "@odata.etag": f'W/"l{n}"', "itemId": f"i{n}", "lineType": "Item",
            "quantity": Decimal(n), "unitPrice": Decimal("10.00"), "description": f"d{n}",
            "amountIncludingTax": 99, **fields}


def test_order_lines_become_line_operations_after_the_head(monkeypatch):
    no_etag = _bc_line(3)
    del no_etag["@odata.etag"]
    current = _order(lines=[_bc_line(1), _bc_line(2), no_etag, _bc_line(4), {"id": "l5"}])
    service = BC(monkeypatch, orders={"o1": current})
    wanted = [
        {"itemId": "i1", "quantity": "1.00", "unitPrice": 10, "amountIncludingTax": 5},
        {"itemId": "i2", "quantity": 7, "lineType": "Comment", "description": "d2"},
        # another item: BC revalidates the line, so every wanted value goes with it
        {"itemId": "i9", "quantity": 3, "description": "d3"},
    ]
    [result] = _connector().write([_op("update", entity="salesOrders", id="o1",
                                       if_match='W/"5"',
                                       fields={"phoneNumber": "1", "salesOrderLines": wanted})])
    read, write = service.batches()
    assert [(r["method"], r["url"]) for r in read] == [
        ("GET", f"{CO}/salesOrders(o1)?$expand=salesOrderLines")]
    url = f"{CO}/salesOrders(o1)"
    assert [(r["method"], r["url"], r["headers"].get("If-Match"), r.get("body"),
             r.get("dependsOn")) for r in write] == [
        ("PATCH", url, 'W/"5"', {"phoneNumber": "1"}, None),
        ("PATCH", f"{url}/salesOrderLines(l2)", 'W/"l2"', {"quantity": 7, "lineType": "Comment"},
         ["0"]),
        ("PATCH", f"{url}/salesOrderLines(l3)", "*",
         {"itemId": "i9", "quantity": 3, "description": "d3"}, ["1"]),
        ("DELETE", f"{url}/salesOrderLines(l4)", 'W/"l4"', None, ["2"]),
        ("DELETE", f"{url}/salesOrderLines(l5)", "*", None, ["3"]),
        ("GET", f"{url}?$expand=salesOrderLines", None, None, ["4"])]
    assert result.ok and result.ref == "r1"


def test_only_lines_changed_sends_no_head_patch_and_posts_new_lines(monkeypatch):
    service = BC(monkeypatch, orders={"o1": _order(lines=[])})
    _connector().write([_op("update", entity="salesOrders", id="o1", if_match='W/"5"',
                            fields={"salesOrderLines": [{"itemId": "i1", "lineType": "Item "},
                                                        {"description": "note"}]})])
    url = f"{CO}/salesOrders(o1)"
    assert [(r["method"], r["url"], r.get("body")) for r in service.batches()[1]] == [
        ("POST", f"{url}/salesOrderLines", {"lineType": "Item_x0020_", "itemId": "i1"}),
        ("POST", f"{url}/salesOrderLines", {"description": "note"}),
        ("GET", f"{url}?$expand=salesOrderLines", None)]


def test_lines_of_an_order_whose_etag_moved_are_not_sent(monkeypatch):
    service = BC(monkeypatch, orders={"o1": _order(etag='W/"6"')})
    other = _op(ref="r2", fields={"displayName": "Bo"})
    [result, created] = _connector().write([
        _op("update", entity="salesOrders", id="o1", if_match='W/"5"',
            fields={"salesOrderLines": []}), other])
    assert isinstance(result.error, PreconditionFailedError) and result.error.status == 409
    assert result.error.system == "bc"
    assert str(result.error) == (
        "bc: PATCH /companies(c0)/salesOrders(o1) -> HTTP 409: Request_EntityChanged: the order "
        "changed since it was read (ETag moved); re-read and planned again")
    assert [r["method"] for r in service.batches()[1]] == ["POST"]
    assert created.ok


def test_lines_of_an_order_that_is_gone_fail(monkeypatch):
    BC(monkeypatch, answer=lambda r: {"status": 404, "body": {"error": {"code": "NotFound"}}})
    [result] = _connector().write([_op("update", entity="salesOrders", id="o1",
                                       if_match='W/"5"', fields={"salesOrderLines": []})])
    assert isinstance(result.error, PermanentApiError) and result.error.status == 404
    assert result.error.system == "bc"
    assert str(result.error) == "bc: sales order o1 was not found"


def test_a_failed_read_of_the_orders_fails_only_their_line_updates(monkeypatch):
    def handle(sent):
        if "token" in sent.url:
            return 200, {"access_token": "TOKEN"}
        if all(r["method"] == "GET" for r in sent.body["requests"]):
            return 400, {"error": {"code": "BadRequest", "message": "no"}}
        return 200, {"responses": [{"id": r["id"], **_echo(r)} for r in sent.body["requests"]]}

    fake_http(monkeypatch, handle)
    lines, head, create = _connector().write([
        _op("update", entity="salesOrders", id="o1", if_match="e",
            fields={"salesOrderLines": []}),
        _op("update", entity="salesOrders", ref="r2", id="o2", if_match="e",
            fields={"phoneNumber": "2"}),
        _op(ref="r3")])
    assert str(lines.error) == ("bc: POST /$batch -> HTTP 400: BadRequest: no")
    assert head.ok and create.ok


def test_a_batch_holds_at_most_a_hundred_calls_and_never_splits_an_op(monkeypatch):
    service = BC(monkeypatch)
    ops = [_op("update", entity="salesOrders", ref=f"r{n}", id=f"o{n}", if_match="e",
               fields={"phoneNumber": str(n)}) for n in range(51)]
    results = _connector().write(ops)
    batches = service.batches()
    assert [len(b) for b in batches] == [100, 2]
    assert batches[1][0]["id"] == "0" and "dependsOn" not in batches[1][0]
    assert batches[1][1]["dependsOn"] == ["0"]
    assert [r.ref for r in results] == [f"r{n}" for n in range(51)]
    assert all(r.ok for r in results)


def test_the_first_failed_call_of_an_op_is_its_result(monkeypatch):
    def answer(request):
        if request["method"] == "PATCH" and "o1" in request["url"]:
            return {"status": 412, "body": {"error": {"code": "Request_EntityChanged",
                                                      "message": "moved"}}}
        return _echo(request)

    BC(monkeypatch, answer)
    result, other = _connector().write([
        _op("update", entity="salesOrders", id="o1", if_match="e", fields={"phoneNumber": "1"}),
        _op("update", entity="salesOrders", ref="r2", id="o2", if_match="e",
            fields={"phoneNumber": "2"})])
    assert other.ok and other.ref == "r2"        # the next op's calls are still read
    assert isinstance(result.error, PreconditionFailedError) and result.ref == "r1"
    assert str(result.error) == ("bc: PATCH /companies(c0)/salesOrders(o1) (in a batch) -> "
                                 "HTTP 412: Request_EntityChanged: moved")


@pytest.mark.parametrize(("status", "ok"), [(199, False), (200, True), (299, True),
                                            (300, False)])
def test_a_call_succeeds_on_a_2xx_status_only(monkeypatch, status, ok):
    BC(monkeypatch, lambda request: {"status": status, "body": {"id": "x"}})
    assert _connector().write([_op()])[0].ok is ok


def _duplicate(found):
    def answer(request):
        if request["method"] == "POST":
            return {"status": 400, "body": {"error": {"code": "Internal_EntityWithSameKeyExists",
                                                      "message": "exists"}}}
        return {"status": 200, "body": {"value": [{"id": "old", "number": "N'1",
                                                   "type": "Non_x002D_Inventory",
                                                   "salesOrderLines": []}] if found else []}}
    return answer


@pytest.mark.parametrize("entity", ["customers", "salesOrders"])
def test_a_create_whose_number_exists_adopts_that_entity(monkeypatch, entity):
    service = BC(monkeypatch, _duplicate(True))
    [result] = _connector().write([_op(entity=entity, fields={"number": "N'1"})])
    assert result.adopted and result.record.id == "old" and result.ref == "r1"
    assert result.record.entity == entity
    assert result.record.fields.get("type") == ("Non-Inventory" if entity == "customers"
                                                else "Non_x002D_Inventory")
    lookup = service.http.not_tokens()[1]
    assert (lookup.method, lookup.path) == ("GET", f"/v2.0/t/env/api/v2.0/{CO}/{entity}")
    expected = {"$filter": "number eq 'N''1'"}
    if entity == "salesOrders":
        expected["$expand"] = "salesOrderLines"
    assert lookup.query == expected


@pytest.mark.parametrize(("kind", "fields", "found", "reads"), [
    ("create", {"number": "N1"}, False, 1),
    ("create", {"displayName": "no number"}, True, 0),
    ("update", {"number": "N1"}, True, 0),
])
def test_other_duplicates_fail(monkeypatch, kind, fields, found, reads):
    service = BC(monkeypatch, lambda r: {"status": 400, "body": {"error": {
        "code": "Internal_EntityWithSameKeyExists", "message": "exists"}}}
        if r["method"] in ("POST", "PATCH") else _duplicate(found)(r))
    [result] = _connector().write([_op(kind, id="x", if_match="e", fields=fields)])
    assert isinstance(result.error, PermanentApiError) and result.ref == "r1"
    assert len(service.http.not_tokens()) == 1 + reads


def test_an_answer_missing_responses_fails_the_batch(monkeypatch):
    def handle(sent):
        if "token" in sent.url:
            return 200, {"access_token": "TOKEN"}
        return 200, {"responses": [{"id": "0", "status": 200, "body": {"id": "x"}}]}

    fake_http(monkeypatch, handle)
    results = _connector().write([_op(), _op(ref="r2")])
    for result in results:
        assert isinstance(result.error, TransientApiError)
        assert str(result.error) == "bc: POST /$batch answered 1 responses for 2 requests"
        assert result.error.system == "bc"


def _busy_then(service):
    calls = []

    def handle(sent):
        if "token" in sent.url:
            return 200, {"access_token": "TOKEN"}
        calls.append(sent)
        if len(calls) == 1:
            return 503, {"error": {"code": "Busy", "message": "later"}}, {"Retry-After": "0"}
        return service.handle(sent)

    return handle, calls


@pytest.mark.parametrize(("op", "sends"), [
    (_op("update", id="x", if_match="e"), 2),   # PATCHes only: safe to send again
    (_op(), 1),                                 # a POST could create twice
])
def test_a_batch_is_sent_again_only_without_creates(monkeypatch, op, sends):
    service = BC(monkeypatch)
    handle, calls = _busy_then(service)
    fake_http(monkeypatch, handle)
    [result] = _connector(max_retries=1).write([op])
    assert len(calls) == sends and result.ok is (sends == 2)


@pytest.mark.parametrize(("current", "wanted", "same"), [
    (2, "2.00", True), (Decimal("2.5"), "2.50", True), (2, 3, False), (True, "1", False),
    (1, True, True), (2, "two", False), (2.5, 2.5, True), ("a", "a", True),
    (Decimal(1), 1, True),
])
def test_line_values_compare_numbers_by_value(current, wanted, same):
    assert bc._same(current, wanted) is same


def test_a_failed_batch_request_fails_each_of_its_ops(monkeypatch):
    def handle(sent):
        if "token" in sent.url:
            return 200, {"access_token": "TOKEN"}
        return 400, {"error": {"code": "BadRequest", "message": "no"}}

    fake_http(monkeypatch, handle)
    one, two = _connector().write([_op(), _op(ref="r2")])
    assert (one.ref, two.ref) == ("r1", "r2")
    assert one.error is two.error
    assert str(one.error) == "bc: POST /$batch -> HTTP 400: BadRequest: no"


def test_a_call_that_failed_with_a_text_body_is_its_ops_error(monkeypatch):
    BC(monkeypatch, lambda request: {"status": 502, "body": "Bad Gateway"})
    [result] = _connector().write([_op(fields={"number": "N1"})])
    assert isinstance(result.error, TransientApiError) and result.ref == "r1"
    assert str(result.error) == ("bc: POST /companies(c0)/customers (in a batch) -> HTTP 502: "
                                 "Bad Gateway")
