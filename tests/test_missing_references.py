"""References to records that exist nowhere (issue 15, point 5): an order whose customer is in
neither system is a dead letter saying so, naming the system looked in, retried
``--missing_reference_runs`` runs (counted per record in the dead-letter store) and then kept
as permanent: carried from run to run without reading the order again, until it changes. An
order whose customer exists but is not linked yet keeps being retried, as before."""

from __future__ import annotations

import json
import pathlib

import pytest

from core.mapping import MappingError, PairMapper, ReferenceMissing
from core.model import DeadLetter
from core.spec import get_dataflow
from transforms.finish import count_attempts, entity_key, is_kept

ERP, SHOP = "customerp", "customwebshop"
OLD = "2020-01-01T00:00:00Z"        # older than any watermark: read only by id or with --full


def _letters(report) -> dict[str, dict]:
    path = pathlib.Path(report["run_dir"]) / "dead_letters.jsonl"
    return {row["entity_id"]: row for row in map(json.loads, path.read_text().splitlines())}


def _letter(**changes) -> DeadLetter:
    fields = dict(run_id="r2", dataflow="df", pair="order", direction="to_target",
                  system="erp", entity="Orders", entity_id="O1", stage="reference",
                  error_class="reference",
                  message="customer_id (CustomerNo): customer C9 does not exist in erp")
    return DeadLetter(**{**fields, **changes})


def _resolver(missing: set[str]):
    """Links nothing; the ids in ``missing`` do not exist at all."""
    def resolve(pair, direction, entity_id):
        if entity_id in missing:
            raise ReferenceMissing(f"{pair} {entity_id} does not exist in erp")
        return None
    return resolve


def test_the_mapping_tells_a_missing_reference_from_one_not_linked_yet():
    mapper = PairMapper(get_dataflow("customerp-customwebshop").pair("order"))
    order = {"OrderNo": "1", "CustomerNo": "C9", "Currency": "NOK", "Status": "Open",
             "Lines": [{"ItemNo": "IT-1", "Qty": 1, "UnitPrice": 10}]}
    with pytest.raises(MappingError) as info:
        mapper.source_view(order, _resolver({"C9"}))
    assert (info.value.error_class, info.value.missing) == ("reference", True)
    assert str(info.value) == ("customer_id (CustomerNo): customer C9 does not exist in erp; "
                               "lines (Lines)[0].product_id (ItemNo): product IT-1 is not "
                               "linked yet (retried on the next run)")
    with pytest.raises(MappingError) as info:
        mapper.source_view(order, _resolver(set()))
    assert (info.value.error_class, info.value.missing) == ("reference", False)
    with pytest.raises(MappingError) as info:                 # with a bad value: validation
        mapper.source_view({**order, "Currency": "kr"}, _resolver({"C9"}))
    assert (info.value.error_class, info.value.missing) == ("validation", False)
    with pytest.raises(MappingError) as info:                 # writing back to the source
        mapper.source_fields({"customer_id": "cus_9"}, _resolver({"cus_9"}))
    assert info.value.missing and str(info.value) == (
        "customer_id (CustomerNo): customer cus_9 does not exist in erp")


def test_a_missing_reference_counts_its_runs_then_is_kept_as_permanent():
    first = count_attempts(_letter(run_id="r1"), {}, missing_reference_runs=3)
    assert (first.attempts, first.error_class) == (1, "reference")
    assert first.message.endswith("does not exist in erp (retried on the next run: 1 of 3)")
    second = count_attempts(_letter(), {entity_key(first): first}, 3)
    assert (second.attempts, second.message) == (
        2, f"{_letter().message} (retried on the next run: 2 of 3)")
    third = count_attempts(_letter(run_id="r3"), {entity_key(second): second}, 3)
    assert (third.attempts, third.error_class, is_kept(third)) == (3, "permanent", True)
    assert third.message == ("customer_id (CustomerNo): customer C9 does not exist in erp; kept "
                             "as permanent after 3 runs: not read again until it changes "
                             "(correct the reference, or create what it names)")
    # carried into a later run as it is
    carried = count_attempts(third.__class__(**{**third.to_dict(), "run_id": "r4"}),
                             {entity_key(third): third}, 3)
    assert (carried.attempts, carried.message) == (3, third.message)


def test_other_letters_count_their_runs_and_are_never_kept():
    before = _letter(run_id="r1", stage="map", attempts=4)
    letter = count_attempts(_letter(stage="map"), {entity_key(before): before}, 3)
    assert (letter.attempts, letter.error_class, letter.message, is_kept(letter)) == (
        5, "reference", _letter().message, False)
    once = count_attempts(_letter(stage="reference"), {}, missing_reference_runs=1)
    assert (once.attempts, once.error_class) == (1, "permanent")


def test_an_order_of_a_customer_that_exists_nowhere_is_retried_three_runs_then_kept(
        synced_harness):
    h = synced_harness
    linked = h.list_all(ERP, "Customers")[0]["CustomerNo"]
    item = h.list_all(ERP, "Products")[0]["ItemNo"]
    shop_product = h.shop_all("products")[0]["id"]
    line = {"ItemNo": item, "Description": "Kaffe", "Qty": 1, "UnitPrice": 10, "DiscountPct": 0}
    order = {"OrderDate": "2026-11-20", "Currency": "NOK", "Status": "Open", "Lines": [line],
             "ModifiedAt": OLD}
    # an ERP customer that exists but cannot be linked (its e-mail is broken), and its order
    h.sandbox.put_raw(ERP, "Customers", [{
        "CustomerNo": "C-WAIT", "Name": "Venter AS", "Email": "not an address",
        "CountryCode": "NO", "ModifiedAt": OLD}])
    h.sandbox.put_raw(ERP, "Orders", [{**order, "OrderNo": "MISS-1", "CustomerNo": "C99999"},
                                      {**order, "OrderNo": "WAIT-1", "CustomerNo": "C-WAIT"}])
    # a webshop order of a webshop customer that does not exist
    h.sandbox.put_raw(SHOP, "orders", [{
        "id": "ord_miss", "number": "MISS-SHOP", "customer_id": "cus_999999",
        "status": "pending", "currency": "NOK", "order_date": "2026-11-20",
        "updated_at": OLD, "deleted": False,
        "lines": [{"product_id": shop_product, "name": "Kaffe", "quantity": "1",
                   "unit_price": "10.00"}]}])

    status, report = h.run("--full")            # the records are old: a full read finds them

    assert status == 3, report
    letters = _letters(report)
    miss = letters["MISS-1"]
    assert (miss["stage"], miss["error_class"], miss["attempts"]) == ("reference", "reference", 1)
    assert miss["message"] == ("customer_id (CustomerNo): customer C99999 does not exist in "
                               "customerp (retried on the next run: 1 of 3)")
    wait = letters["WAIT-1"]
    assert (wait["stage"], wait["error_class"]) == ("map", "reference")
    assert wait["message"] == ("customer_id (CustomerNo): customer C-WAIT is not linked yet "
                               "(retried on the next run)")
    shop = letters["ord_miss"]
    assert (shop["stage"], shop["error_class"], shop["system"]) == (
        "reference", "reference", SHOP)
    assert shop["message"] == ("create in customerp failed: customer_id (CustomerNo): customer "
                               "cus_999999 does not exist in customwebshop (retried on the "
                               "next run: 1 of 3)")
    assert not {"MISS-1", "WAIT-1"} & {o["number"] for o in h.shop_all("orders")}
    assert h.get(ERP, "Orders", "MISS-SHOP").status_code == 404

    for run in (2, 3):
        status, report = h.run()
        assert status == 3, report
        letters = _letters(report)
        assert letters["MISS-1"]["attempts"] == run
        assert letters["WAIT-1"]["message"].endswith("is not linked yet (retried on the next run)")
    miss = letters["MISS-1"]
    assert (miss["error_class"], miss["stage"]) == ("permanent", "reference")
    assert miss["message"] == ("customer_id (CustomerNo): customer C99999 does not exist in "
                               "customerp; kept as permanent after 3 runs: not read again "
                               "until it changes (correct the reference, or create what it "
                               "names)")

    # kept: carried into the next run's letters without reading the order again
    h.clear_logs()
    status, report = h.run()
    assert status == 3, report
    letters = _letters(report)
    assert letters["MISS-1"]["message"] == miss["message"]
    assert letters["MISS-1"]["attempts"] == 3 and letters["MISS-1"]["run_id"] == report["run_id"]
    assert letters["WAIT-1"]["attempts"] == 4                 # still retried, unbounded
    asked = [entry["path"] for entry in h.sandbox.requests(ERP)["log"]
             if entry["method"] == "GET"]
    assert any(path.endswith("/Orders/WAIT-1") for path in asked), asked
    assert not any(path.endswith("/Orders/MISS-1") for path in asked), asked

    # the order is corrected: read again as a change, judged afresh, synced; the letter goes
    h.put_erp("Orders", "MISS-1", {"CustomerNo": linked})
    status, report = h.run()
    assert "MISS-1" not in _letters(report)
    assert report["pairs"]["order"]["created_in_target"] == 1
    assert "MISS-1" in {o["number"] for o in h.shop_all("orders")}
