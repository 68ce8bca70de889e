"""The Business NXT connector against the emulator over HTTP: tokens, cursor reads, incremental
filters, integer dates, multi-row mutations in batches, per-row errors, adoption, 429."""

from __future__ import annotations

import datetime
from decimal import Decimal

import pytest
import requests
import yaml

from connectors import connector_for
from connectors.businessnxt import changed_at, date_to_int, int_to_date, since_filter
from connectors.errors import PermanentApiError, RateLimitedError
from core.model import SystemConfig, WriteOp
from core.types import InvalidValue, to_canonical
from tests.test_sandbox_businessnxt import Gql

UTC = datetime.UTC


@pytest.fixture
def bnxt(sandbox_of):
    return sandbox_of("businessnxt")


def connect(sandbox, **settings):
    """The connector as `talksync run` builds it from the sandbox's config."""
    config = yaml.safe_load(sandbox.config_path.read_text())["systems"]["businessnxt"]
    base_url = config.pop("base_url")
    return connector_for(SystemConfig("businessnxt", config.pop("type"), base_url,
                                      {**config, **settings}))


def posts(sandbox) -> int:
    """GraphQL requests answered (token requests left out) since the log was cleared: an
    attempt the client retried (a dropped connection under load, its answer lost) is not a
    page asked for twice. The statuses of the rest are in the failure's message."""
    log = [e for e in sandbox.requests("businessnxt")["log"]
           if e["path"] == "/api/graphql-service"]
    answered = [e for e in log if e["status"] == 200 and not e.get("lost")]
    assert len(log) - len(answered) <= 1, f"more than one retried attempt: {log}"
    return len(answered)


def test_wire_conversions():
    assert date_to_int("2026-01-05") == 20260105 and date_to_int(None) is None
    assert int_to_date(20260105) == "2026-01-05" and int_to_date(0) is None
    assert changed_at({"changedTimestamp": "2026-01-05T10:00:00.5Z"}) == datetime.datetime(
        2026, 1, 5, 10, 0, 0, 500000, tzinfo=UTC)
    assert changed_at({"changedTimestamp": "2026-01-05 10:00:00"}) == datetime.datetime(
        2026, 1, 5, 10, 0, tzinfo=UTC)  # the server's local time, no zone: UTC
    assert changed_at({"changedTimestamp": None, "changedDate": 20260105, "changedTime": 931}) == \
        datetime.datetime(2026, 1, 5, 9, 31, tzinfo=UTC)
    # an impossible integer date is left for the mapping to refuse, not a failed read
    assert int_to_date(20261340) == "20261340"
    assert changed_at({"changedTimestamp": None, "changedDate": 20261340}) is None
    with pytest.raises(InvalidValue, match="20261340"):
        to_canonical("date", int_to_date(20261340))
    since = datetime.datetime(2026, 1, 5, 0, 1, 30, tzinfo=UTC)
    assert since_filter(since)["_or"][1:] == [  # minute resolution: from 2 minutes earlier
        {"changedDate": {"_gt": 20260104}},
        {"_and": [{"changedDate": {"_eq": 20260104}}, {"changedTime": {"_gte": 2359}}]}]


def test_reads_every_row_by_cursor_with_iso_dates(bnxt):
    with connect(bnxt, page_size=40) as connector:
        bnxt.clear_requests("businessnxt")
        addresses = list(connector.read("address"))
        assert [r.id for r in addresses] == [str(n) for n in range(1, 201)]
        assert posts(bnxt) == 5  # 200 rows, 40 a page
        orders = list(connector.read("order"))
    assert len(orders) == 150
    order = orders[0]
    assert order.id == "1001" and order.fields["orderDate"] == "2025-12-29"
    assert order.modified.tzinfo is not None
    assert all(line["orderNo"] == 1001 for line in order.fields["orderLines"])
    assert isinstance(order.fields["orderLines"][0]["priceInCurrency"], Decimal)
    assert "changedTimestamp" not in order.fields


def test_incremental_read_returns_rows_changed_since(bnxt):
    with connect(bnxt) as connector:
        everything = list(connector.read("product"))
        since = sorted(r.modified for r in everything)[120]
        changed = list(connector.read("product", since))
    assert {r.id for r in changed} >= {r.id for r in everything if r.modified >= since}
    # the overlap window of the minute-resolution fallback may add a few rows, never many
    assert all(r.modified >= since - datetime.timedelta(minutes=3) for r in changed)
    assert len(changed) < 40


def test_multi_row_create_and_update_in_one_request_each(bnxt):
    with connect(bnxt) as connector:
        bnxt.clear_requests("businessnxt")
        results = connector.write([
            WriteOp("create", "address", {"name": f"Firma {n} AS",
                                          "emailAddress": f"f{n}@x.example",
                                          "countryNo": 47}, f"c{n}") for n in range(3)] + [
            WriteOp("update", "address", {"phone": "+47 22 00 00 00"}, "u1", id="7")])
        assert posts(bnxt) == 2  # the natural-key lookup, then one batch with both mutations
        assert [r.ok for r in results] == [True] * 4
        assert [r.record.id for r in results[:3]] == ["201", "202", "203"]
        assert results[3].record.fields["phone"] == "+47 22 00 00 00"
        assert connector.get("address", ["7", "203", "999"])[0].fields["phone"] == "+47 22 00 00 00"
        assert [r.id for r in connector.get("address", ["7", "203", "999"])] == ["7", "203"]


def test_a_row_the_server_refuses_fails_alone(bnxt):
    gql = Gql(bnxt)
    with connect(bnxt) as connector:
        results = connector.write([
            WriteOp("create", "address", {"name": "Ok AS", "emailAddress": "ok@x.example"}, "a"),
            WriteOp("create", "address", {"name": "N" * 81, "emailAddress": "long@x.example"}, "b"),
            WriteOp("create", "address", {"name": "Also AS", "emailAddress": "also@x.example"},
                    "c"),
            WriteOp("update", "address", {"phone": "1"}, "d", id="4"),
            WriteOp("update", "address", {"phone": "2"}, "e", id="4040")])
    assert [r.ok for r in results] == [True, False, True, True, False]
    assert isinstance(results[1].error, PermanentApiError)
    assert "longer than 80 characters" in str(results[1].error)
    assert results[4].error.status == 404
    emails = {r["emailAddress"] for r in gql.rows("address", "emailAddress")}
    assert {"ok@x.example", "also@x.example"} <= emails and "long@x.example" not in emails


def test_orders_with_lines_and_line_replacement(bnxt):
    with connect(bnxt) as connector:
        products = [r.id for r in connector.read("product")][:3]
        [created] = connector.write([WriteOp("create", "order", {
            "customerNo": "12", "orderDate": "2026-01-05", "customerOrderNo": "W-1",
            "orderLines": [{"productNo": products[0], "quantity": Decimal("2"),
                            "priceInCurrency": Decimal("99.50")}]}, "o")])
        order = created.record
        assert order.fields["orderDate"] == "2026-01-05" and order.fields["customerNo"] == 12
        assert [(line["productNo"], line["quantity"], line["priceInCurrency"])
                for line in order.fields["orderLines"]] == [(products[0], 2, Decimal("99.50"))]
        [updated] = connector.write([WriteOp("update", "order", {
            "orderDate": "2026-01-06", "orderLines": [
                {"productNo": products[1], "quantity": Decimal("1"),
                 "priceInCurrency": Decimal("5")},
                {"productNo": products[2], "quantity": Decimal("3"),
                 "priceInCurrency": Decimal("7")}]},
            "u", id=order.id)])
        assert updated.ok and updated.record.fields["orderDate"] == "2026-01-06"
        assert [(line["lineNo"], line["productNo"],
                 line["quantity"]) for line in updated.record.fields["orderLines"]] \
            == [(1, products[1], 1), (2, products[2], 3)]
        [only_lines] = connector.write([WriteOp("update", "order", {"orderLines": [
            {"productNo": products[0], "quantity": Decimal("4"), "priceInCurrency": Decimal("1")}]},
            "l", id=order.id)])
        assert [line["quantity"] for line in only_lines.record.fields["orderLines"]] == [4]
    raw = Gql(bnxt)("query($cid: Int!, $no: Int) { useCompany(no: $cid) { order(filter: "
                    "{orderNo: {_eq: $no}}) { items { orderDate } } } }", no=int(order.id))
    assert raw["data"]["useCompany"]["order"]["items"] == [{"orderDate": 20260106}]


def test_creates_adopt_rows_with_their_natural_key(bnxt):
    with connect(bnxt) as connector:
        existing = next(iter(connector.read("product")))
        [result] = connector.write([WriteOp("create", "product", {
            "productNo": existing.id, "description": "Again", "salesPrice1": Decimal("1")}, "p")])
        assert result.ok and result.adopted and result.record.fields == existing.fields
        [order] = connector.write([WriteOp("create", "order", {
            "customerNo": "1", "customerOrderNo": "10247"}, "o")])
        assert order.adopted and order.record.id == "1001"


def test_graphql_errors_and_wrong_credentials_are_permanent(bnxt, monkeypatch):
    with connect(bnxt, company_no=1234567) as connector:
        with pytest.raises(PermanentApiError, match="Could not get authorize user"):
            list(connector.read("address"))
    with connect(bnxt, client_secret="wrong") as connector:
        with pytest.raises(PermanentApiError, match="invalid_client") as raised:
            list(connector.read("address"))
        assert "wrong" not in str(raised.value)


def test_expired_token_is_renewed_once(bnxt):
    with connect(bnxt) as connector:
        assert len(connector.get("address", ["1"])) == 1
        requests.post(bnxt.root_url("businessnxt") + "/_sandbox/expire-tokens", timeout=10)
        assert len(connector.get("address", ["1"])) == 1
        assert connector._token.request_count == 2


def test_the_connectors_of_a_process_share_one_token(bnxt):
    """The many connectors of a run's DoFns share the process's one token of a client (Visma
    Connect throttles token requests too); another tenant is another client."""
    with connect(bnxt) as first, connect(bnxt, page_size=3) as second:
        assert len(first.get("address", ["1"])) == len(second.get("address", ["2"])) == 1
        assert first._token is second._token and first._token.request_count == 1
        tokens = [e for e in bnxt.requests("businessnxt")["log"] if "token" in e["path"]]
        assert len(tokens) == 1
        with connect(bnxt, tenant_id="another-tenant") as other:
            assert other._token is not first._token


def test_429_is_a_transient_rate_limit_error(bnxt):
    bnxt.set_faults("businessnxt", rate_limit={"limit": 1, "window_s": 60})
    with connect(bnxt, max_retries=0) as connector:
        assert len(connector.get("address", ["1"])) == 1
        with pytest.raises(RateLimitedError) as raised:
            connector.get("address", ["2"])
    assert raised.value.status == 429 and raised.value.transient


# -- deletes ----------------------------------------------------------------------------------
# Visma's "Delete operations" (docs.vismasoftware.no/businessnxtapi/schema/mutations/deletes):
# ``<table>_delete(filter: FilterExpression_<Table>) { affectedRows }``, the filter as for
# updates; ``items`` is always null for a delete.


def _delete(entity: str, key: str, ref: str) -> WriteOp:
    return WriteOp(kind="delete", entity=entity, id=key, fields={}, ref=ref)


def test_deletes_are_one_delete_field_per_table_in_one_batch(bnxt):
    with connect(bnxt) as connector:
        addresses = list(connector.read("address"))[:2]
        products = list(connector.read("product"))[:2]
        order = list(connector.read("order"))[0]
        bnxt.clear_requests("businessnxt")

        results = connector.write([_delete(r.entity, r.id, f"{r.entity}-{r.id}")
                                   for r in (*addresses, *products, order)])

        assert all(r.ok and r.record is None for r in results), [r.error for r in results]
        assert posts(bnxt) == 1              # three delete fields, one batch request
        for record in (*addresses, *products, order):
            assert connector.get(record.entity, [record.id]) == []
    lines = Gql(bnxt).rows("orderLine", "orderNo lineNo")
    assert not [line for line in lines if str(line["orderNo"]) == order.id]   # gone with it


def test_get_leaves_a_deleted_row_out(bnxt):
    with connect(bnxt) as connector:
        products = list(connector.read("product"))[:3]
        assert connector.write([_delete("product", products[1].id, "p")])[0].ok

        found = connector.get("product", [p.id for p in products])

    assert [r.id for r in found] == [products[0].id, products[2].id]


def test_a_delete_of_a_row_already_gone_is_a_success(bnxt):
    with connect(bnxt) as connector:
        order = list(connector.read("order"))[0]
        assert connector.write([_delete("order", order.id, "first")])[0].ok

        again, never = connector.write([_delete("order", order.id, "again"),
                                        _delete("order", "987654", "never")])

    assert again.ok and again.record is None and never.ok and never.record is None
