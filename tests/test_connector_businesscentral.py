"""The Business Central connector against the BC emulator over HTTP."""

from __future__ import annotations

import dataclasses
import datetime
from decimal import Decimal

import pytest
import requests

from connectors import auth
from connectors import businesscentral as conn
from connectors.errors import PermanentApiError, PreconditionFailedError
from core.model import SystemConfig, WriteOp
from sandbox import businesscentral as bc
from sandbox.server import Sandbox

SYSTEM = "businesscentral"


@pytest.fixture(scope="module")
def running(tmp_path_factory):
    with Sandbox(tmp_path_factory.mktemp("bc"), base_port=0, systems=(SYSTEM,)) as sandbox:
        yield sandbox


@pytest.fixture
def sandbox(running, monkeypatch):
    running.reset(SYSTEM)
    for name, value in running.environ().items():
        monkeypatch.setenv(name, value)
    auth.forget_tokens()      # each test fetches its own token
    yield running
    requests.post(running.root_url(SYSTEM) + "/_sandbox/limits", json={}, timeout=10)


def _config(sandbox: Sandbox, **settings) -> SystemConfig:
    base = {**bc.BusinessCentral.connector_settings(sandbox.root_url(SYSTEM)),
            "client_secret": "${TALKSYNC_SANDBOX_BUSINESSCENTRAL_CLIENT_SECRET}"}
    return SystemConfig(name="bc", type=SYSTEM, base_url=sandbox.url(SYSTEM),
                        settings={**base, **settings})


def _connector(sandbox: Sandbox, **settings) -> conn.BusinessCentralConnector:
    return conn.BusinessCentralConnector(_config(sandbox, **settings))


def _log(sandbox: Sandbox, tokens: bool = False) -> list[dict]:
    """The emulator's request log; without the token requests unless ``tokens``."""
    return [entry for entry in sandbox.requests(SYSTEM)["log"]
            if tokens or not entry["path"].endswith("/oauth2/v2.0/token")]


# -- enums ----------------------------------------------------------------------------------


@pytest.mark.parametrize("plain, wire", [(" ", "_x0020_"), ("In Review", "In_x0020_Review"),
                                         ("Non-Inventory", "Non_x002D_Inventory"),
                                         ("Positive Adjmt.", "Positive_x0020_Adjmt_x002E_"),
                                         ("Open", "Open")])
def test_enum_members_are_escaped_on_the_wire_only(plain, wire):
    assert conn.escape_enum(plain) == wire
    assert conn.unescape_enum(wire) == plain


# -- reading ----------------------------------------------------------------------------------


def test_read_pages_with_maxpagesize_and_next_links(sandbox):
    connector = _connector(sandbox, page_size=40)
    sandbox.clear_requests(SYSTEM)

    records = list(connector.read("customers"))

    assert len(records) == len({r.id for r in records}) == 200
    gets = [e for e in _log(sandbox) if e["method"] == "GET"]
    assert len(gets) == 5 == connector.request_count
    first = records[0]
    assert first.etag.startswith('W/"') and first.modified.tzinfo is not None
    assert "@odata.etag" not in first.fields and first.fields["blocked"] == " "   # unescaped
    assert [r.modified for r in records] == sorted(r.modified for r in records)


def test_read_since_a_watermark_and_orders_with_lines(sandbox):
    connector = _connector(sandbox)
    orders = list(connector.read("salesOrders"))
    assert len(orders) == 150 and all(o.fields["salesOrderLines"] for o in orders)
    assert all("@odata.etag" not in line for o in orders for line in o.fields["salesOrderLines"])
    newest = max(o.modified for o in orders)
    assert [o.id for o in connector.read("salesOrders", newest)] == \
        [o.id for o in orders if o.modified == newest]
    later = newest + datetime.timedelta(seconds=1)
    assert list(connector.read("salesOrders", later)) == []


def test_get_reads_many_ids_in_one_batch(sandbox):
    connector = _connector(sandbox)
    ids = [r.id for r in connector.read("items")][:30]
    sandbox.clear_requests(SYSTEM)

    records = connector.get("items", ids + ["00000000-0000-0000-0000-0000000000ff"])

    assert [r.id for r in records] == ids
    assert [(e["method"], e["path"].rsplit("/", 1)[1]) for e in _log(sandbox)] == [
        ("POST", "$batch")]


def test_company_by_name(sandbox):
    settings = {"company_id": None, "company_name": bc.COMPANY_NAME}
    connector = _connector(sandbox, **settings)
    assert len(list(connector.read("items"))) == 150
    with pytest.raises(ValueError, match="no company named"):
        list(_connector(sandbox, company_id=None, company_name="Nope AS").read("items"))


# -- auth -----------------------------------------------------------------------------------


def test_token_is_cached_renewed_on_401_and_masked(sandbox):
    connector = _connector(sandbox)
    list(connector.read("items"))
    list(connector.read("items"))
    tokens = [e for e in _log(sandbox, True) if e["path"].endswith("/oauth2/v2.0/token")]
    assert len(tokens) == 1
    requests.post(sandbox.root_url(SYSTEM) + "/_sandbox/expire-tokens", timeout=10)

    assert len(list(connector.read("items"))) == 150

    tokens = [e for e in _log(sandbox, True) if e["path"].endswith("/oauth2/v2.0/token")]
    assert len(tokens) == 2
    token = connector._token.token()
    error = connector._http.error_for(400, {"error": {"code": "X", "message": f"echo {token}"}},
                                      "GET", "/items")
    assert token not in str(error) and "***" in str(error)


def test_the_connectors_of_a_process_share_one_token_per_client_and_scope(sandbox):
    first, second = _connector(sandbox), _connector(sandbox, page_size=7)
    list(first.read("items"))
    list(second.read("items"))
    assert first._token is second._token
    tokens = [e for e in _log(sandbox, True) if e["path"].endswith("/oauth2/v2.0/token")]
    assert len(tokens) == 1                        # one token request for both connectors
    other_scope = _connector(sandbox, scope="https://example.test/other/.default")
    assert other_scope._token is not first._token  # another scope: another token
    auth.forget_tokens()
    assert _connector(sandbox)._token is not first._token


def test_wrong_client_secret_is_a_permanent_error_without_the_secret(sandbox, monkeypatch):
    monkeypatch.setenv("TALKSYNC_SANDBOX_BUSINESSCENTRAL_CLIENT_SECRET", "not-the-secret")
    with pytest.raises(PermanentApiError) as failure:
        list(_connector(sandbox).read("items"))
    assert failure.value.status == 401 and "AADSTS7000215" in str(failure.value)
    assert "not-the-secret" not in str(failure.value)


# -- writing --------------------------------------------------------------------------------


def test_batch_partial_failures_are_reported_per_op(sandbox):
    connector = _connector(sandbox)
    customers = list(connector.read("customers"))[:3]
    sandbox.clear_requests(SYSTEM)

    results = connector.write([
        WriteOp(kind="create", entity="customers", ref="new",
                fields={"displayName": "Ny AS", "email": "ny@as.no", "blocked": " "}),
        WriteOp(kind="update", entity="customers", ref="ok", id=customers[0].id,
                if_match=customers[0].etag, fields={"city": "Bodø"}),
        WriteOp(kind="update", entity="customers", ref="stale", id=customers[1].id,
                if_match='W/"JzE7MTswMDsn"', fields={"city": "Bodø"}),
        WriteOp(kind="create", entity="customers", ref="long", fields={"displayName": "x" * 101}),
    ])

    assert [r.ref for r in results] == ["new", "ok", "stale", "long"]
    new, ok, stale, long = results
    assert new.ok and new.record.fields["blocked"] == " " and new.record.etag
    assert ok.ok and ok.record.fields["city"] == "Bodø" and ok.record.etag != customers[0].etag
    assert isinstance(stale.error, PreconditionFailedError)
    assert stale.error.error_class == "conflict" and "Request_EntityChanged" in str(stale.error)
    assert isinstance(long.error, PermanentApiError) and long.error.status == 400
    assert "Application_StringExceededLength" in str(long.error)
    assert [e["method"] for e in _log(sandbox)] == ["POST"]          # one $batch
    stored = connector.get("customers", [customers[1].id])[0]
    assert stored.fields["city"] == customers[1].fields["city"]       # not overwritten


def test_an_update_without_an_etag_is_refused_not_sent_blindly(sandbox):
    connector = _connector(sandbox)
    customer = list(connector.read("customers"))[0]
    sandbox.clear_requests(SYSTEM)

    [result] = connector.write([WriteOp(kind="update", entity="customers", ref="r",
                                        id=customer.id, fields={"city": "Alta"})])

    assert isinstance(result.error, PreconditionFailedError)
    assert _log(sandbox) == []


def test_writes_are_chunked_into_batches_of_100(sandbox):
    connector = _connector(sandbox)
    sandbox.clear_requests(SYSTEM)
    ops = [WriteOp(kind="create", entity="customers", ref=str(i),
                   fields={"displayName": f"Kunde {i}", "email": f"k{i}@example.no"})
           for i in range(230)]

    results = connector.write(ops)

    assert all(r.ok for r in results) and [r.ref for r in results] == [str(i) for i in range(230)]
    assert [e["method"] for e in _log(sandbox)] == ["POST"] * 3


def test_creating_an_item_whose_number_exists_adopts_it(sandbox):
    connector = _connector(sandbox)
    existing = list(connector.read("items"))[0]

    [result] = connector.write([WriteOp(kind="create", entity="items", ref="r",
                                        fields={"number": existing.fields["number"],
                                                "displayName": "Other"})])

    assert result.ok and result.adopted and result.record.id == existing.id


def test_order_create_deep_inserts_lines_and_updates_become_line_operations(sandbox):
    connector = _connector(sandbox)
    customer = list(connector.read("customers"))[0]
    items = list(connector.read("items"))[:3]
    [created] = connector.write([WriteOp(kind="create", entity="salesOrders", ref="o", fields={
        "customerId": customer.id, "externalDocumentNumber": "WEB-9",
        "salesOrderLines": [{"itemId": items[0].id, "quantity": Decimal("2"),
                             "unitPrice": Decimal("10.50")},
                            {"itemId": items[1].id, "quantity": Decimal("1"),
                             "unitPrice": Decimal("99")}]})])
    assert created.ok
    order = created.record
    assert [(line["lineType"], line["itemId"],
             line["quantity"]) for line in order.fields["salesOrderLines"]] \
        == [("Item", items[0].id, 2), ("Item", items[1].id, 1)]
    sandbox.clear_requests(SYSTEM)

    [updated] = connector.write([WriteOp(
        kind="update", entity="salesOrders", ref="u", id=order.id, if_match=order.etag,
        fields={"shipToCity": "Narvik",
                "salesOrderLines": [{"itemId": items[2].id, "quantity": Decimal("5"),
                                     "unitPrice": Decimal("10.50")}]})])

    assert updated.ok, updated.error
    lines = updated.record.fields["salesOrderLines"]
    assert [(line["itemId"], line["quantity"], line["unitPrice"]) for line in lines] == [
        (items[2].id, 5, Decimal("10.50"))]
    assert updated.record.fields["shipToCity"] == "Narvik"
    assert updated.record.etag != order.etag
    # one $batch to read the current lines, one with header PATCH, line PATCH, DELETE, GET
    assert [e["method"] for e in _log(sandbox)] == ["POST", "POST"]

    [again] = connector.write([WriteOp(kind="update", entity="salesOrders", ref="s", id=order.id,
                                       if_match=order.etag, fields={"salesOrderLines": []})])
    assert isinstance(again.error, PreconditionFailedError)             # stale: nothing sent
    assert len(connector.get("salesOrders", [order.id])[0].fields["salesOrderLines"]) == 1


def test_a_stale_order_patch_leaves_its_lines_alone(sandbox):
    connector = _connector(sandbox)
    order = list(connector.read("salesOrders"))[0]
    lines = order.fields["salesOrderLines"]
    # someone saves the order between the connector's check of its ETag and its PATCH
    requests.post(f"{sandbox.root_url(SYSTEM)}/_sandbox/touch/salesOrders/{order.id}",
                  json={"when": "next_write"}, timeout=10)

    [result] = connector.write([WriteOp(
        kind="update", entity="salesOrders", ref="u", id=order.id, if_match=order.etag,
        fields={"shipToCity": "Narvik", "salesOrderLines": [
            {"itemId": lines[0]["itemId"], "quantity": Decimal("99")}]})])

    assert isinstance(result.error, PreconditionFailedError) and result.error.status == 409
    now = connector.get("salesOrders", [order.id])[0]
    assert now.fields["salesOrderLines"] == lines                       # 424: never run
    assert now.fields["shipToCity"] == order.fields["shipToCity"]


def test_429_is_waited_out_and_retried(sandbox):
    connector = _connector(sandbox, page_size=50)
    sandbox.set_faults(SYSTEM, rate_limit={"limit": 2, "window_s": 1})
    try:
        assert len(list(connector.read("items"))) == 150
    finally:
        sandbox.set_faults(SYSTEM)
    statuses = [e["status"] for e in _log(sandbox) if e["method"] == "GET"]
    assert statuses.count(200) == 3 and 429 in statuses


# -- deletes ----------------------------------------------------------------------------------
# API v2.0 (MS Learn dev-itpro/api-reference/v2.0): customers are deactivated with
# ``blocked: "All"`` (resources/dynamics_customer, enum customerBlocked), items with
# ``blocked: true`` (resources/dynamics_item), sales orders deleted (api/dynamics_salesorder_delete:
# DELETE with If-Match, 204). docs/api/businesscentral.md says why.


def _delete(record, ref: str, etag: str | None = "") -> WriteOp:
    return WriteOp(kind="delete", entity=record.entity, id=record.id, fields={}, ref=ref,
                   if_match=record.etag if etag == "" else etag)


def test_deletes_deactivate_customers_and_items_and_delete_orders_in_one_batch(sandbox):
    connector = _connector(sandbox)
    customer = list(connector.read("customers"))[0]
    item = list(connector.read("items"))[0]
    order = list(connector.read("salesOrders"))[0]
    sandbox.clear_requests(SYSTEM)

    results = connector.write([_delete(customer, "c"), _delete(item, "i"), _delete(order, "o")])

    assert [e["method"] for e in _log(sandbox)] == ["POST"]               # one $batch
    blocked, deactivated, deleted = results
    assert blocked.ok and blocked.record.deleted and blocked.record.fields["blocked"] == "All"
    assert blocked.record.id == customer.id and blocked.record.etag != customer.etag
    assert deactivated.ok and deactivated.record.deleted and deactivated.record.fields["blocked"]
    assert deleted.ok and deleted.record is None
    # a deactivated entity still reads as BC keeps it (blocked, not deleted); the order is gone
    [still] = connector.get("customers", [customer.id])
    assert still.fields["blocked"] == "All" and not still.deleted
    assert connector.get("items", [item.id])[0].fields["blocked"] is True


def test_get_leaves_a_deleted_order_out(sandbox):
    connector = _connector(sandbox)
    orders = list(connector.read("salesOrders"))[:2]
    [result] = connector.write([_delete(orders[0], "o")])
    assert result.ok

    assert [r.id for r in connector.get("salesOrders", [o.id for o in orders])] == [orders[1].id]


def test_a_delete_of_an_entity_already_gone_is_a_success(sandbox):
    connector = _connector(sandbox)
    order = list(connector.read("salesOrders"))[0]
    assert connector.write([_delete(order, "first")])[0].ok
    customer = list(connector.read("customers"))[0]
    unknown = dataclasses.replace(customer, id="0b6c3f1e-1d2a-4c3b-9e8f-7a6b5c4d3e2f")

    again, nobody = connector.write([_delete(order, "again"), _delete(unknown, "nobody")])

    assert again.ok and again.record is None          # 404: gone already
    assert nobody.ok and nobody.record is None


def test_a_stale_delete_is_a_conflict_and_changes_nothing(sandbox):
    connector = _connector(sandbox)
    customer = list(connector.read("customers"))[0]
    order = list(connector.read("salesOrders"))[0]
    for entity_set, record in (("customers", customer), ("salesOrders", order)):
        requests.post(f"{sandbox.root_url(SYSTEM)}/_sandbox/touch/{entity_set}/{record.id}",
                      json={}, timeout=10)

    results = connector.write([_delete(customer, "c"), _delete(order, "o")])

    assert all(isinstance(r.error, PreconditionFailedError) for r in results)
    assert "Request_EntityChanged" in str(results[0].error)
    assert connector.get("customers", [customer.id])[0].fields["blocked"] == " "
    assert [r.id for r in connector.get("salesOrders", [order.id])] == [order.id]


def test_a_delete_without_an_etag_is_refused_not_sent_blindly(sandbox):
    connector = _connector(sandbox)
    order = list(connector.read("salesOrders"))[0]
    sandbox.clear_requests(SYSTEM)

    [result] = connector.write([_delete(order, "o", etag=None)])

    assert isinstance(result.error, PreconditionFailedError) and "DELETE" in str(result.error)
    assert _log(sandbox) == []


def test_a_failed_delete_fails_its_own_op_only(sandbox):
    """A delete BC refuses (a stale ETag) fails its own op; the others of the batch go on."""
    connector = _connector(sandbox)
    customers = list(connector.read("customers"))[:2]
    sandbox.clear_requests(SYSTEM)

    results = connector.write([_delete(customers[0], "bad", etag='W/"JzE7MTswMDsn"'),
                               _delete(customers[1], "good")])

    assert isinstance(results[0].error, PreconditionFailedError)
    assert results[1].ok and results[1].record.fields["blocked"] == "All"
