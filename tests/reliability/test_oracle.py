"""The campaign's oracle (tests/reliability/oracle.py) is itself tested: it passes a converged
first sync, and fails when a pending reservation, an unequal property, a record without a link
or a duplicate link is planted into it — each check can fail."""

from __future__ import annotations

import pytest

from connectors.stores import open_link_store
from core.model import PENDING, Link
from tests.reliability.oracle import assert_converged, find_problems, store_pair

FLOW = "customerp-customwebshop"


@pytest.fixture
def synced(synced_harness, monkeypatch):
    for name, value in synced_harness.sandbox.environ().items():
        monkeypatch.setenv(name, value)
    return synced_harness


def _store(h):
    return open_link_store("sqlite:///" + str(h.sandbox.state_dir / "links.db"))


def _kinds(h) -> set[str]:
    return {kind for kind, _ in find_problems(h.config, FLOW)}


def test_a_converged_first_sync_passes(synced):
    assert_converged(synced.config, FLOW)


def test_a_pending_reservation_fails(synced):
    erp_product = synced.post("customerp", "Products", {
        "ItemNo": "ORACLE-1", "Description": "Reserved, never created", "SalesPrice": 10,
        "VatCode": "3", "StockQty": 1})
    with _store(synced) as store:
        store.reserve(Link(pair=store_pair(FLOW, "product"), link_id=f"s:{erp_product['ItemNo']}",
                           source_id=erp_product["ItemNo"], state=PENDING))
    assert "pending reservation" in _kinds(synced)
    with pytest.raises(AssertionError, match=r"pending reservation \(1\): product s:ORACLE-1"):
        assert_converged(synced.config, FLOW)


def test_an_unequal_property_fails(synced):
    customer = synced.shop_all("customers")[0]
    synced.patch_shop("customers", customer["id"], {"phone": "+47 999 99 999"})
    problems = find_problems(synced.config, FLOW)
    assert [kind for kind, _ in problems] == ["unequal property"]
    assert "phone: source" in problems[0][1] and "'+47 999 99 999'" in problems[0][1]


def test_an_unequal_order_line_fails(synced):
    order = next(o for o in synced.list_all("customerp", "Orders") if len(o["Lines"]) > 1)
    lines = [dict(line) for line in order["Lines"]]
    lines[0]["Qty"] = lines[0]["Qty"] + 1
    synced.put_erp("Orders", order["OrderNo"], {"Lines": lines})
    problems = find_problems(synced.config, FLOW)
    assert [kind for kind, _ in problems] == ["unequal property"]
    assert problems[0][1].startswith("order ") and " lines: " in problems[0][1]


def test_a_record_without_a_link_fails(synced):
    synced.post("customerp", "Products", {"ItemNo": "ORACLE-2", "Description": "Never synced",
                                          "SalesPrice": 10, "VatCode": "3", "StockQty": 1})
    assert _kinds(synced) == {"record without a link"}


def test_a_duplicate_create_in_a_system_that_refuses_duplicates_fails(synced):
    """A product created twice where the webshop's own API would refuse the second (stored
    raw, as a system that does not refuse would), each copy linked: both a duplicate record and
    a duplicate link under one SKU."""
    product = next(p for p in synced.shop_all("products"))
    twin = {k: v for k, v in product.items() if k != "id"}
    erp_twin = synced.post("customerp", "Products", {
        "ItemNo": f"{product['sku']}-twin", "Description": product["name"],
        "SalesPrice": 10, "VatCode": "3", "StockQty": 1})
    [twin_id] = synced.sandbox.put_raw("customwebshop", "products", [
        {**twin, "id": "twin-1", "sku": product["sku"]}])
    with _store(synced) as store:
        store.commit([Link(pair=store_pair(FLOW, "product"), link_id=f"s:{erp_twin['ItemNo']}",
                           source_id=erp_twin["ItemNo"], target_id=twin_id)])
    kinds = _kinds(synced)
    assert {"duplicate record", "duplicate link"} <= kinds, kinds
