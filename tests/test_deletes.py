"""Delete policies end to end through the emulators (issue 15, point 3; docs/deletes.md):
customerp <-> customwebshop customers, from a synced state (``synced_harness``).

* ignore (the default): nothing deleted, the link a tombstone; an ERP edit to a customer the
  webshop deleted is a dead letter naming both records (the issue's bug: it was 'same'), in
  the report and on the HTML page; a restored webshop customer syncs again.
* unlink: the link goes, both records stay.
* propagate: webshop soft delete -> ERP hard delete; ERP hard delete (seen by a --full run's
  look-up of the records it did not return) -> webshop soft delete; the breaker holds a mass
  delete; --plan writes nothing.
"""

from __future__ import annotations

import datetime
import json
import pathlib

from connectors.stores import open_link_store
from pipelines import report_html

DATAFLOW = "customerp-customwebshop"
PAIR = f"{DATAFLOW}/customer"


def linked_customers(h, count: int = 1) -> list[tuple[str, str]]:
    """(ERP CustomerNo, webshop id) of ``count`` customers linked by the first sync, none with
    an order in either system (a deleted customer's orders are dead letters of their own)."""
    with open_link_store(_store_url(h)) as store:
        erp = sorted(row["CustomerNo"] for row in h.list_all("customerp", "Customers"))
        links = store.lookup_by_source(PAIR, erp)
    ordered = ({row["CustomerNo"] for row in h.list_all("customerp", "Orders")}
               | {row["customer_id"] for row in h.list_all("customwebshop", "orders")})
    pairs = sorted((no, link.target_id) for no, link in links.items()
                   if link.state == "linked" and link.target_id
                   and no not in ordered and link.target_id not in ordered)
    return pairs[:count]


def link_of(h, erp_no: str):
    with open_link_store(_store_url(h)) as store:
        return store.lookup_by_source(PAIR, [erp_no]).get(erp_no)


def _store_url(h) -> str:
    return f"sqlite:///{h.sandbox.state_dir / 'links.db'}"


def delete_in_shop(h, shop_id: str) -> None:
    h.people.delete("customwebshop", "customers", shop_id)     # a soft delete


def delete_in_erp(h, erp_no: str) -> None:
    h.people.delete("customerp", "Customers", erp_no)          # gone for good


def restore_in_shop(h, shop_id: str) -> None:
    """Undo a soft delete the way an admin would (the API has no undelete): the record stored
    again with ``deleted: false`` and a new ``updated_at``."""
    row = h.get("customwebshop", "customers", shop_id).json()
    now = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=1)
    h.sandbox.put_raw("customwebshop", "customers", [
        dict(row, deleted=False, updated_at=now.strftime("%Y-%m-%dT%H:%M:%S.%fZ"))])


def letters(report) -> list[dict]:
    path = pathlib.Path(report["run_dir"]) / "dead_letters.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def customer_counts(report) -> dict:
    return report["pairs"]["customer"]


# --- ignore (the default) ---------------------------------------------------------------------

def test_an_erp_edit_after_a_webshop_delete_is_a_dead_letter_naming_both(synced_harness,
                                                                        tmp_path):
    """The user's report: the edit was counted 'same' with no letter, conflict or event."""
    h = synced_harness
    [(erp_no, shop_id)] = linked_customers(h)
    delete_in_shop(h, shop_id)
    h.put_erp("Customers", erp_no, {"Phone": "+47 900 00 001"})
    h.clear_logs()

    status, report = h.run()

    assert status == 3, report                           # finished with dead letters
    [letter] = [d for d in letters(report) if d["pair"] == "customer"]
    assert (letter["system"], letter["entity_id"], letter["error_class"]) == (
        "customerp", erp_no, "conflict")
    for words in (f"customerp customer {erp_no}", f"customwebshop customer {shop_id}",
                  "'ignore'", "Restore", "delete"):
        assert words in letter["message"]
    assert customer_counts(report)["dead"] >= 1 and customer_counts(report)["deleted"] >= 1
    assert h.writes("customwebshop") == {} and h.writes("customerp") == {}
    assert link_of(h, erp_no).state == "deleted_target"
    page = report_html.render(report["run_dir"])
    assert erp_no in page and shop_id in page and "Restore" in page

    # a later run reads the deleted customer no more: the edit is still not silent
    h.put_erp("Customers", erp_no, {"Phone": "+47 900 00 002"})
    h.clear_logs()
    status, report = h.run()
    assert status == 3
    [again] = [d for d in letters(report) if d["pair"] == "customer"]
    assert again["entity_id"] == erp_no and shop_id in again["message"]
    assert h.writes("customwebshop") == {}


def test_ignore_deletes_nothing_and_a_restored_record_syncs_again(synced_harness):
    h = synced_harness
    [(erp_no, shop_id)] = linked_customers(h)
    delete_in_shop(h, shop_id)
    h.clear_logs()

    status, report = h.run()
    assert status == 0, report
    assert link_of(h, erp_no).state == "deleted_target"
    assert h.writes("customerp") == {}
    assert h.get("customerp", "Customers", erp_no).status_code == 200     # kept
    assert customer_counts(report)["deleted_in_source"] == 0

    restore_in_shop(h, shop_id)
    h.put_erp("Customers", erp_no, {"Phone": "+47 900 00 003"})
    h.clear_logs()
    status, report = h.run()
    assert status == 0, report
    assert link_of(h, erp_no).state == "linked"
    assert h.get("customwebshop", "customers", shop_id).json()["phone"] == "+47 900 00 003"


# --- unlink -----------------------------------------------------------------------------------

def test_unlink_removes_the_link_and_keeps_both_records(synced_harness, delete_policy):
    delete_policy("unlink")
    h = synced_harness
    [(erp_no, shop_id)] = linked_customers(h)
    delete_in_shop(h, shop_id)
    h.clear_logs()

    status, report = h.run()

    assert status == 0, report
    assert customer_counts(report)["unlinked"] == 1
    assert link_of(h, erp_no) is None
    assert h.get("customerp", "Customers", erp_no).status_code == 200
    assert h.writes("customerp") == {}


# --- propagate --------------------------------------------------------------------------------

def test_propagate_a_webshop_delete_deletes_the_erp_customer(synced_harness, delete_policy):
    delete_policy("propagate")
    h = synced_harness
    [(erp_no, shop_id)] = linked_customers(h)
    delete_in_shop(h, shop_id)
    h.clear_logs()

    status, report = h.run()

    assert status == 0, report
    assert customer_counts(report)["deleted_in_source"] == 1
    assert h.get("customerp", "Customers", erp_no).status_code == 404
    assert h.writes("customerp") == {"DELETE": 1}
    assert link_of(h, erp_no).state == "deleted"

    status, report = h.run()                     # settled: nothing more to do
    assert status == 0 and h.writes("customerp") == {"DELETE": 1}


def test_propagate_an_erp_delete_is_seen_by_a_full_run_and_soft_deletes_the_webshop_customer(
        synced_harness, delete_policy):
    delete_policy("propagate")
    h = synced_harness
    [(erp_no, shop_id)] = linked_customers(h)
    delete_in_erp(h, erp_no)

    status, report = h.run()                     # incremental: a hard delete is invisible
    assert status == 0, report
    assert not h.get("customwebshop", "customers", shop_id).json()["deleted"]

    h.clear_logs()
    status, report = h.run("--full")
    assert status == 0, report
    assert customer_counts(report)["deleted_in_target"] == 1
    assert h.get("customwebshop", "customers", shop_id).json()["deleted"] is True
    assert h.writes("customwebshop") == {"DELETE": 1}


def test_a_mass_delete_is_held_by_the_breaker_until_confirmed(synced_harness, delete_policy,
                                                              capsys):
    delete_policy("propagate")
    h = synced_harness
    customers = linked_customers(h, 2)
    for _, shop_id in customers:
        delete_in_shop(h, shop_id)
    h.clear_logs()

    status, report = h.run("--max_deletes_per_pair=1")

    assert status == 1, report
    assert report["held_deletes"] == {"customer": 2}
    assert "customer: 2 deletes and unlinks planned" in capsys.readouterr().err
    assert h.writes("customerp") == {}
    status, report = h.run("--max_deletes_per_pair=1", "--confirm_mass_changes")
    assert status == 0, report
    assert all(h.get("customerp", "Customers", no).status_code == 404 for no, _ in customers)


def test_plan_mode_shows_the_planned_delete_and_writes_nothing(synced_harness, delete_policy):
    delete_policy("propagate")
    h = synced_harness
    [(erp_no, shop_id)] = linked_customers(h)
    delete_in_shop(h, shop_id)
    h.clear_logs()

    status, report = h.run("--plan")

    assert status == 0, report
    assert h.writes("customerp") == {}
    rows = [json.loads(line) for line in
            (pathlib.Path(report["run_dir"]) / "plan.jsonl").read_text().splitlines()]
    [row] = [r for r in rows if r["pair"] == "customer"]
    assert row["writes"] == [{"side": "source", "kind": "delete", "entity_id": erp_no,
                              "changes": {}}]
    assert h.get("customerp", "Customers", erp_no).status_code == 200
    assert link_of(h, erp_no).state == "linked"
