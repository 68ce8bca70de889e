"""Business NXT customers as associates (decision 0014): the connector against a company that
keeps its customers in ``associate``, and the choice of table (``customer_table``) checked
before anything is read."""

from __future__ import annotations

import pytest
import yaml

from connectors import connector_for
from connectors.errors import PermanentApiError
from core.model import SystemConfig, WriteOp
from pipelines import preflight
from pipelines.config import ConfigError, parse_config
from pipelines.exit_status import EXIT_USAGE
from sandbox.seed_businessnxt import ADDRESSES, SUPPLIERS
from tests.test_sandbox_businessnxt import Gql

ASSOCIATE = {"businessnxt": {"customer_table": "associate"}}


@pytest.fixture
def company(sandbox_of):
    """A company whose customers are associates (the sandbox's talksync.yaml says so)."""
    return sandbox_of("businessnxt", options=ASSOCIATE)


def settings_of(sandbox) -> dict:
    return yaml.safe_load(sandbox.config_path.read_text())["systems"]["businessnxt"]


def connect(sandbox, **settings):
    config = {**settings_of(sandbox), **settings}
    return connector_for(SystemConfig("businessnxt", config.pop("type"), config.pop("base_url"),
                                      config))


def test_the_sandbox_config_names_its_customer_table(company, sandbox_of):
    assert settings_of(company)["customer_table"] == "associate"
    assert settings_of(sandbox_of("businessnxt"))["customer_table"] == "address"


def test_customers_are_the_associates_with_a_customer_number(company):
    with connect(company, page_size=70) as connector:
        customers = list(connector.read("address"))
    assert len(customers) == ADDRESSES  # the suppliers-only associates are left out
    assert [r.id for r in customers] == [str(10000 + n) for n in range(1, ADDRESSES + 1)]
    first = customers[0]
    assert first.entity == "address" and first.fields["customerNo"] == 10001
    assert first.fields["associateNo"] == 1 and first.fields["emailAddress"]
    assert len(Gql(company).rows("associate", "associateNo")) == ADDRESSES + SUPPLIERS


def test_a_new_customer_gets_its_number_from_the_server_and_orders_refer_to_it(company):
    with connect(company) as connector:
        [created] = connector.write([WriteOp(ref="c1", entity="address", kind="create", fields={
            "emailAddress": "ny.kunde@example.no", "name": "Ny Kunde AS", "countryNo": 47})])
        assert created.ok and created.record.id == "10201", created.error
        assert created.record.fields["associateNo"] == ADDRESSES + SUPPLIERS + 1
        [order] = connector.write([WriteOp(ref="o1", entity="order", kind="create", fields={
            "customerNo": created.record.id, "orderDate": "2026-12-07",
            "customerOrderNo": "WS-9001", "orderLines": []})])
        assert order.ok, order.error
        assert order.record.fields["customerNo"] == 10201
        [updated] = connector.write([WriteOp(ref="c2", entity="address", kind="update",
                                             id="10201", fields={"phone": "+47 22 00 00 00"})])
        assert updated.ok and updated.record.fields["phone"] == "+47 22 00 00 00"
        assert [r.id for r in connector.get("address", ["10201", "10001", "1"])] == \
            ["10001", "10201"]  # keys are customer numbers; associate number 1 is not one


def test_a_customer_created_again_is_adopted_by_e_mail(company):
    with connect(company) as connector:
        first = next(iter(connector.read("address")))
        [again] = connector.write([WriteOp(ref="c1", entity="address", kind="create", fields={
            "emailAddress": first.fields["emailAddress"], "name": "Someone"})])
    assert again.adopted and again.record.id == first.id


def test_check_reports_the_customer_table_configured_and_found(company):
    config = parse_config({"link_store": "sqlite:///:memory:",
                               "systems": {"businessnxt": settings_of(company)}})
    [check] = [c for c in preflight.check_all(config) if c.system == "businessnxt"]
    assert check.ok and "customer_table associate (the company has associate)" in check.message


def test_a_table_the_company_does_not_have_stops_the_run_naming_the_setting(company):
    with connect(company, customer_table="address") as connector, \
            pytest.raises(PermanentApiError, match="set customer_table: associate"):
        connector.probe()
    config = parse_config({"link_store": "sqlite:///:memory:", "systems": {
        "businessnxt": {**settings_of(company), "customer_table": "address"}}})
    with pytest.raises(preflight.PreflightError) as stopped:
        preflight.preflight(config, ["businessnxt"])
    assert stopped.value.exit_status == EXIT_USAGE
    assert "customer_table is 'address', but company" in str(stopped.value)


def test_a_bad_customer_table_value_is_a_usage_error_naming_the_setting(company):
    config = parse_config({"link_store": "sqlite:///:memory:", "systems": {
        "businessnxt": {**settings_of(company), "customer_table": "customers"}}})
    with pytest.raises(ConfigError, match="setting 'customer_table' is 'customers'; use "
                                          "associate or address"):
        preflight.preflight(config, ["businessnxt"])


def test_a_saved_company_is_not_served_as_the_other_kind(tmp_path):
    from sandbox.businessnxt import BusinessNxt
    state = tmp_path / "businessnxt.json"
    BusinessNxt(api_key="k", seed=42, state_path=state).close()  # an address company, saved
    with pytest.raises(ValueError, match="keeps its customers in 'address', not 'associate'"):
        BusinessNxt(api_key="k", seed=42, state_path=state, customer_table="associate")


def test_deleting_a_customer_deletes_its_associate_unless_it_is_a_supplier_too(company):
    """One associate row holds every role (Visma's table "Aktør": customer, supplier, …), and
    ``associate_delete`` removes the row: a customer that is also a supplier is left alone, and
    its op fails saying why; the other customers of the batch are deleted."""
    gql = Gql(company)
    gql("mutation m($cid: Int!) { useCompany(no: $cid) { associate_update(filter: "
        "{customerNo: {_eq: 10002}}, value: {supplierNo: 59999}) { affectedRows } } }")
    with connect(company) as connector:
        [created] = connector.write([WriteOp(ref="c", entity="address", kind="create", fields={
            "emailAddress": "kort.liv@example.no", "name": "Kort Liv AS"})])
        plain, both, new = connector.write([
            WriteOp(ref="d1", entity="address", kind="delete", id="10001", fields={}),
            WriteOp(ref="d2", entity="address", kind="delete", id="10002", fields={}),
            WriteOp(ref="d3", entity="address", kind="delete", id=created.record.id, fields={})])

        assert plain.ok and plain.record is None and new.ok and new.record is None
        assert isinstance(both.error, PermanentApiError) and "supplierNo" in str(both.error)
        assert [r.id for r in connector.get("address", ["10001", "10002", created.record.id])
                ] == ["10002"]
    suppliers = gql.rows("associate", "customerNo supplierNo", {"supplierNo": {"_eq": 59999}})
    assert suppliers == [{"customerNo": 10002, "supplierNo": 59999}]
