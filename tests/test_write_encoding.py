"""The write encoding of the Custom Webshop and the Custom ERP connectors, checked on the
requests they send (answered in process by tests/write_path_fakes.py, no server): what each
create and update becomes on the wire, how answers become results, adoption, and what a
failure does to the other ops. The same against the emulators is
tests/test_connector_customwebshop.py and tests/test_connector_customerp.py."""

from __future__ import annotations

import urllib.parse
from decimal import Decimal

import pytest

from connectors import connector_for, customwebshop
from connectors.errors import (
    PermanentApiError,
    PreconditionFailedError,
    TransientApiError,
)
from core.model import SystemConfig, WriteOp
from tests.write_path_fakes import fake_http

SHOP = "http://shop.invalid/api"
ERP = "http://erp.invalid/api"


@pytest.fixture(autouse=True)
def _keys(monkeypatch):
    monkeypatch.setenv("TS_TEST_KEY", "key-1")


def _shop(**settings):
    return connector_for(SystemConfig("shop", "customwebshop", SHOP, settings={
        "api_key": "${TS_TEST_KEY}", "max_retries": 0, **settings}))


def _erp(**settings):
    return connector_for(SystemConfig("erp", "customerp", ERP, settings={
        "api_key": "${TS_TEST_KEY}", "max_retries": 0, **settings}))


def _op(kind="create", entity="customers", ref="r1", **kwargs):
    kwargs.setdefault("fields", {"name": "Ada"})
    return WriteOp(kind=kind, entity=entity, ref=ref, **kwargs)


# --- Custom Webshop ---------------------------------------------------------------------------

def test_decimals_become_decimal_strings_wherever_they_are_nested():
    assert customwebshop._to_wire({"price": Decimal("12.50"), "tags": ("a", Decimal("1E+2")),
                                   "lines": [{"qty": Decimal("2")}], "n": 3, "f": 1.5}) == {
        "price": "12.50", "tags": ["a", "100"], "lines": [{"qty": "2"}], "n": 3, "f": 1.5}


def _batch_answer(sent, status=200, **extra):
    results = []
    for n, op in enumerate(sent.body["operations"]):
        body = {"id": op.get("id", f"new{n}"), "updated_at": "2026-12-07T09:00:00Z",
                "deleted": False, **op["body"]}
        results.append({"status": status, "body": body, "etag": f"e{n}", **extra})
    return 200, {"results": results}


def test_creates_and_updates_on_the_wire(monkeypatch):
    http = fake_http(monkeypatch, _batch_answer)
    ops = [_op(fields={"name": "Ada", "credit": Decimal("10.00")}, idempotency_key="k1"),
           _op(ref="r2"),
           _op("update", ref="r3", id="7", fields={"name": "Bo"}, if_match='W/"1"',
               idempotency_key="ignored"),
           _op("update", ref="r4", id="8", fields={"name": "Cy"})]
    results = _shop().write(ops)
    [sent] = http.sent
    assert (sent.method, sent.path) == ("POST", "/api/customers:batch")
    assert sent.headers["X-Api-Key"] == "key-1"
    assert sent.body == {"operations": [
        {"method": "POST", "body": {"name": "Ada", "credit": "10.00"}, "idempotency_key": "k1"},
        {"method": "POST", "body": {"name": "Ada"}},
        {"method": "PATCH", "body": {"name": "Bo"}, "id": "7", "if_match": 'W/"1"'},
        {"method": "PATCH", "body": {"name": "Cy"}, "id": "8"}]}
    assert [r.ref for r in results] == ["r1", "r2", "r3", "r4"]
    first = results[0].record
    assert (first.system, first.entity, first.id, first.etag) == ("shop", "customers", "new0",
                                                                  "e0")
    assert first.fields == {"name": "Ada", "credit": "10.00"}
    assert first.modified.isoformat() == "2026-12-07T09:00:00+00:00"
    assert first.deleted is False
    assert [r.adopted for r in results] == [False] * 4


def test_results_come_back_in_the_order_of_the_ops_across_entities(monkeypatch):
    http = fake_http(monkeypatch, _batch_answer)
    ops = [_op(ref="c1"), _op(entity="products", ref="p1", fields={"sku": "S"}),
           _op("update", ref="c2", id="9")]
    results = _shop().write(ops)
    assert [s.path for s in http.sent] == ["/api/customers:batch", "/api/products:batch"]
    assert [len(s.body["operations"]) for s in http.sent] == [2, 1]
    assert [(r.ref, r.record.entity, r.record.id) for r in results] == [
        ("c1", "customers", "new0"), ("p1", "products", "new0"), ("c2", "customers", "9")]


def test_a_hundred_operations_per_request(monkeypatch):
    http = fake_http(monkeypatch, _batch_answer)
    ops = [_op(ref=f"r{n}", idempotency_key=f"k{n}") for n in range(201)]
    results = _shop().write(ops)
    assert [len(s.body["operations"]) for s in http.sent] == [100, 100, 1]
    assert [r.ref for r in results] == [f"r{n}" for n in range(201)]
    assert http.sent[1].body["operations"][0]["idempotency_key"] == "k100"


def test_a_replayed_create_is_adopted(monkeypatch):
    fake_http(monkeypatch, lambda sent: _batch_answer(sent, replayed=True))
    assert _shop().write([_op()])[0].adopted is True
    fake_http(monkeypatch, lambda sent: _batch_answer(sent, replayed="true"))
    assert _shop().write([_op()])[0].adopted is False


@pytest.mark.parametrize(("status", "ok"), [(199, False), (200, True), (299, True),
                                            (300, False)])
def test_an_operation_succeeds_on_a_2xx_status_only(monkeypatch, status, ok):
    fake_http(monkeypatch, lambda sent: _batch_answer(sent, status=status))
    assert _shop().write([_op()])[0].ok is ok


def test_a_failed_operation_fails_alone_with_its_path(monkeypatch):
    def answer(sent):
        return 200, {"results": [
            {"status": 422, "body": {"error": {"code": "invalid", "message": "bad email"}}},
            {"status": 409, "body": {"error": {"code": "conflict", "message": "etag"}}},
            {"status": 201, "body": {"id": "3", "updated_at": "2026-12-07T09:00:00Z"}}]}

    fake_http(monkeypatch, answer)
    bad, stale, good = _shop().write([_op(), _op("update", ref="r2", id="a/b"),
                                      _op(ref="r3")])
    assert isinstance(bad.error, PermanentApiError) and bad.ref == "r1" and stale.ref == "r2"
    assert str(bad.error) == ("shop: POST /customers (in a batch) -> HTTP 422: invalid: "
                              "bad email")
    assert isinstance(stale.error, PreconditionFailedError)
    assert str(stale.error) == ("shop: PATCH /customers/a%2Fb (in a batch) -> HTTP 409: "
                                "conflict: etag")
    assert good.ok and good.record.id == "3" and good.record.etag is None


def test_a_failed_request_fails_every_op_of_its_batch_only(monkeypatch):
    def answer(sent):
        if sent.path.startswith("/api/products"):
            return 400, {"error": {"code": "bad", "message": "no"}}
        return _batch_answer(sent)

    fake_http(monkeypatch, answer)
    one, two, three = _shop().write([_op(entity="products"), _op(ref="r2"),
                                     _op(entity="products", ref="r3")])
    assert one.error is three.error and str(one.error).startswith("shop: POST /products:batch")
    assert (one.ref, three.ref) == ("r1", "r3")
    assert two.ok


def test_too_few_results_fail_the_batch_as_transient(monkeypatch):
    fake_http(monkeypatch, lambda sent: (200, {"results": [{"status": 200, "body": {}}]}))
    results = _shop().write([_op(), _op(ref="r2")])
    assert [r.ref for r in results] == ["r1", "r2"]
    for result in results:
        assert isinstance(result.error, TransientApiError) and result.error.system == "shop"
        assert str(result.error) == ("shop: POST /customers:batch answered 1 results for 2 "
                                     "operations")
    fake_http(monkeypatch, lambda sent: (200, {}))
    assert str(_shop().write([_op()])[0].error) == ("shop: POST /customers:batch answered 0 "
                                                    "results for 1 operations")


def _flaky(then):
    """A 503 (retry at once) first, then ``then``'s answer."""
    calls = []

    def answer(sent):
        calls.append(sent)
        if len(calls) == 1:
            return 503, {"error": {"code": "busy", "message": "later"}}, {"Retry-After": "0"}
        return then(sent)

    return answer


@pytest.mark.parametrize(("ops", "sends"), [
    ([_op(idempotency_key="k"), _op("update", ref="r2", id="1")], 2),  # safe: sent again
    ([_op(idempotency_key="k"), _op(ref="r2")], 1),    # a create without key: never twice
])
def test_a_batch_is_sent_again_only_when_no_create_can_be_duplicated(monkeypatch, ops, sends):
    http = fake_http(monkeypatch, _flaky(_batch_answer))
    results = _shop(max_retries=1).write(ops)
    assert len(http.sent) == sends
    assert all(r.ok for r in results) is (sends == 2)


def test_ops_are_checked_before_anything_is_sent(monkeypatch):
    http = fake_http(monkeypatch, _batch_answer)
    with pytest.raises(ValueError):
        _shop().write([_op(), _op(entity="nope")])
    assert http.sent == []


# --- Custom ERP -----------------------------------------------------------------------------

def _erp_echo(sent):
    body = dict(sent.body or {})
    if sent.method == "PUT":
        body["CustomerNo"] = urllib.parse.unquote(sent.path.rsplit("/", 1)[1])
    return 200, {**body, "ModifiedAt": "2026-12-07T09:00:00Z"}, {"ETag": '"v2"'}


def test_erp_creates_post_and_updates_put_with_if_match(monkeypatch):
    http = fake_http(monkeypatch, _erp_echo)
    ops = [_op(entity="Customers", fields={"CustomerNo": "C1", "Credit": Decimal("10.50")}),
           _op("update", entity="Customers", ref="r2", id="C 2", fields={"Name": "Bo"},
               if_match='"v1"'),
           _op("update", entity="Customers", ref="r3", id="C3", fields={"Name": "Cy"})]
    created, updated, unguarded = _erp().write(ops)
    assert [(s.method, s.path, s.body) for s in http.sent] == [
        ("POST", "/api/Customers", {"CustomerNo": "C1", "Credit": Decimal("10.50")}),
        ("PUT", "/api/Customers/C%202", {"Name": "Bo"}),
        ("PUT", "/api/Customers/C3", {"Name": "Cy"})]
    assert [s.headers.get("If-Match") for s in http.sent] == [None, '"v1"', None]
    assert http.sent[0].headers["Authorization"] == "ApiKey key-1"
    assert (created.ref, created.record.id, created.record.etag) == ("r1", "C1", '"v2"')
    assert created.record.fields == {"CustomerNo": "C1", "Credit": Decimal("10.50")}
    assert created.record.modified.isoformat() == "2026-12-07T09:00:00+00:00"
    assert (updated.ref, updated.record.id, updated.record.fields) == (
        "r2", "C 2", {"Name": "Bo", "CustomerNo": "C 2"})
    assert updated.record.etag == '"v2"'
    assert not created.adopted and not updated.adopted
    assert unguarded.ok


def test_erp_create_of_an_existing_key_adopts_it(monkeypatch):
    def answer(sent):
        if sent.method == "POST":
            return 409, {"Error": {"Code": "Duplicate", "Message": "exists"}}
        return 200, {"ItemNo": "I1", "Name": "theirs", "ModifiedAt": "2026-12-07T09:00:00Z"}

    http = fake_http(monkeypatch, answer)
    [result] = _erp().write([_op(entity="Products", fields={"ItemNo": "I1", "Name": "ours"})])
    assert [(s.method, s.path) for s in http.sent] == [("POST", "/api/Products"),
                                                       ("GET", "/api/Products/I1")]
    assert result.adopted and result.record.fields["Name"] == "theirs" and result.ref == "r1"


@pytest.mark.parametrize(("status", "fields", "found", "reads"), [
    (409, {"ItemNo": "I1"}, False, 1),      # the key was not found after all
    (412, {"ItemNo": "I1"}, True, 0),       # not a duplicate key
    (409, {"Name": "no key"}, True, 0),      # nothing to look up
])
def test_erp_create_conflicts_that_are_not_adopted_fail(monkeypatch, status, fields, found,
                                                        reads):
    def answer(sent):
        if sent.method == "POST":
            return status, {"Error": {"Code": "C", "Message": "m", "Field": "ItemNo"}}
        if not found:
            return 404, {"Error": {"Code": "NotFound", "Message": "no"}}
        return 200, {"ItemNo": "I1", "ModifiedAt": "2026-12-07T09:00:00Z"}

    http = fake_http(monkeypatch, answer)
    [result] = _erp().write([_op(entity="Products", fields=fields)])
    assert isinstance(result.error, PreconditionFailedError)
    assert str(result.error) == f"erp: POST /Products -> HTTP {status}: C: m (field ItemNo)"
    assert len(http.sent) == 1 + reads


def test_erp_a_failed_op_does_not_stop_the_others(monkeypatch):
    def answer(sent):
        if sent.body.get("Name") == "bad":
            return 400, {"Error": {"Code": "Invalid", "Message": "bad name"}}
        return _erp_echo(sent)

    fake_http(monkeypatch, answer)
    bad, good = _erp().write([_op(entity="Customers", fields={"Name": "bad"}),
                              _op("update", entity="Customers", ref="r2", id="C1",
                                  fields={"Name": "ok"})])
    assert str(bad.error) == "erp: POST /Customers -> HTTP 400: Invalid: bad name"
    assert bad.ref == "r1" and good.ok and good.ref == "r2"
