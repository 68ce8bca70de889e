"""`talksync history` finds a record by any match key (issue 15, point 7): an e-mail, a SKU, an
order number, in either system's spelling (case and spacing folded as match keys are), through
the audit events and the link store's snapshots; records linked to each other are one record,
across dataflows too; a key of records that are not linked to each other lists them; a key
nobody has says where it was looked up and exits 1."""

from __future__ import annotations

import datetime
import pathlib

from core.model import LINKED, Link
from pipelines import cli, history
from transforms import audit
from transforms.finish import write_parquet

FLOW = "customerp-customwebshop"
T0 = datetime.datetime(2026, 11, 20, 8, tzinfo=datetime.UTC)


def _event(run: str, minute: int, pair: str, operation: str, source_id, target_id,
           properties=(), dataflow: str = FLOW, system: str = "customwebshop") -> dict:
    return {"event_id": f"{run}/{pair}/{operation}/{source_id}", "run_id": run,
            "time": T0 + datetime.timedelta(minutes=minute), "dataflow": dataflow,
            "pair": pair, "operation": operation, "direction": "to_target", "system": system,
            "entity": pair, "link_id": f"s:{source_id}", "source_id": source_id,
            "target_id": target_id,
            "properties": [{"property": name, "before": None, "after": audit.value_text(value),
                            "from_side": "source", "from_system": "customerp",
                            "from_value": audit.value_text(value), "rule": "create",
                            "conflict": False} for name, value in properties],
            "stage": None, "error_class": None, "status": None, "message": None}


def _audit(tmp_path: pathlib.Path, events: list[dict]) -> str:
    folder = tmp_path / "audit"
    by_flow: dict[str, list[dict]] = {}
    for event in events:
        by_flow.setdefault(event["dataflow"], []).append(event)
    for flow, rows in by_flow.items():
        path = folder / f"dataflow={flow}" / "date=2026-11-20"
        path.mkdir(parents=True)
        write_parquet(str(path / "run-0000.parquet"), rows, audit.COLUMNS)
    return str(folder)


def _link(pair: str, source_id: str, target_id: str, source: dict, target: dict,
          dataflow: str = FLOW) -> Link:
    return Link(pair=f"{dataflow}/{pair}", link_id=f"s:{source_id}", source_id=source_id,
                target_id=target_id, state=LINKED, snapshot_source=source,
                snapshot_target=target)


EVENTS = [
    _event("r1", 0, "customer", "create", "C1", "cus_1",
           [("email", "ola@example.no"), ("phone", "+47 1")]),
    _event("r1", 1, "product", "create", "IT-1", "prd_1", [("sku", "IT-1"), ("name", "Kaffe")]),
    _event("r2", 5, "customer", "update", "C1", "cus_1", [("phone", "+47 2")]),
    _event("r2", 6, "customer", "update", "C2", "cus_2", [("phone", "+47 3")]),
]
LINKS = [
    _link("customer", "C1", "cus_1", {"email": "ola@example.no"}, {"email": "ola@example.no"}),
    # linked by its e-mail without a write: no event names its e-mail, its link does
    _link("customer", "C2", "cus_2", {"email": "kari@example.no"}, {"email": "Kari@Example.no"}),
    _link("product", "IT-1", "prd_1", {"sku": "IT-1"}, {"sku": "IT-1"}),
    # the same webshop customer in another dataflow: one record with the ERP's
    _link("customer", "cus_1", "10001", {"email": "ola@example.no"}, {"email": "ola@example.no"},
          dataflow="customwebshop-businesscentral"),
]


def test_a_match_key_finds_the_record_and_its_story_on_both_sides(tmp_path):
    audit_dir = _audit(tmp_path, EVENTS)
    answer = history.find_record("  OLA@example.NO ", audit_dir, LINKS)
    assert answer.status == 0 and not answer.to_stderr
    first, *story = answer.text.splitlines()
    assert first == ("email '  OLA@example.NO ': customerp-customwebshop / customer: "
                     "customerp Customers C1 ⇄ customwebshop customers cus_1; "
                     "customwebshop-businesscentral / customer: customwebshop customers cus_1 "
                     "⇄ businesscentral customers 10001")
    text = "\n".join(story)
    assert "run r1" in text and "run r2" in text and "'+47 2'" in text
    assert "C2" not in text and "'+47 3'" not in text


def test_a_record_linked_without_a_write_is_found_through_its_link(tmp_path):
    answer = history.find_record("kari@example.no", _audit(tmp_path, EVENTS), LINKS)
    assert answer.status == 0
    assert answer.text.splitlines()[0].endswith(
        "customerp Customers C2 ⇄ customwebshop customers cus_2")
    assert "'+47 3'" in answer.text


def test_a_sku_and_an_id_still_work(tmp_path):
    audit_dir = _audit(tmp_path, EVENTS)
    assert "[product] created in" in history.find_record("it-1", audit_dir, LINKS).text
    by_id = history.find_record("cus_2", audit_dir, LINKS)
    assert by_id.status == 0 and by_id.text.startswith("customerp-customwebshop / customer: "
                                                        "source C2 ⇄ target cus_2")


def test_a_key_of_records_not_linked_to_each_other_lists_them(tmp_path):
    """A webshop order number that is also an item number in Business Central: two records;
    neither story is guessed. An id is always taken as an id first."""
    flow = "customwebshop-businesscentral"
    events = EVENTS + [
        _event("r3", 9, "product", "create", "prd_7", "item-7", [("number", "1001")],
               dataflow=flow, system="businesscentral"),
        _event("r3", 9, "order", "create", "ord_7", "so-7",
               [("externalDocumentNumber", "1001")], dataflow=flow, system="businesscentral")]
    audit_dir = _audit(tmp_path, events)
    answer = history.find_record("1001", audit_dir, LINKS)
    assert answer.status == 1 and not answer.to_stderr
    assert answer.text.splitlines() == [
        "'1001' is the match key of 2 records that are not linked to each other; ask for one "
        "by its id:",
        f"  {flow} / order: customwebshop orders ord_7 ⇄ businesscentral salesOrders so-7",
        f"  {flow} / product: customwebshop products prd_7 ⇄ businesscentral items item-7"]
    assert history.find_record("ord_7", audit_dir, LINKS).status == 0


def test_an_unknown_key_says_where_it_looked_and_fails(tmp_path):
    audit_dir = _audit(tmp_path, EVENTS)
    answer = history.find_record("nobody@example.no", audit_dir, LINKS)
    assert (answer.status, answer.to_stderr) == (1, True)
    assert answer.text.startswith(
        f"talksync: history: no record has the id or a match key 'nobody@example.no' in the "
        f"audit log ({audit_dir}) or the link store; match keys: customer.email, ")
    assert "order.number" in answer.text


def test_the_cli_finds_a_customer_by_e_mail_and_a_product_by_sku(synced_harness, capsys):
    """End to end: after a first sync and an edit, `talksync history` by the e-mail of a
    customer linked by match (no event names its e-mail), by a SKU in the other system's
    case, and an unknown key (exit 1, on stderr)."""
    h = synced_harness
    erp = {c["Email"].lower(): c for c in h.list_all("customerp", "Customers")}
    shop = {c["email"].lower(): c for c in h.shop_all("customers")}
    email = sorted(set(erp) & set(shop))[0]
    h.put_erp("Customers", erp[email]["CustomerNo"], {"Phone": "+47 400 00 001"})
    status, _ = h.run()
    assert status == 0
    capsys.readouterr()

    assert cli.main(["history", email.upper(), "--config", h.config]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == (
        f"email {email.upper()!r}: customerp-customwebshop / customer: customerp Customers "
        f"{erp[email]['CustomerNo']} ⇄ customwebshop customers {shop[email]['id']}")
    assert "'+47 400 00 001'  (from customerp; changed in source)" in out

    product = sorted(h.shop_all("products"), key=lambda p: p["sku"])[0]
    assert cli.main(["history", product["sku"].lower(), "--config", h.config]) == 0
    assert capsys.readouterr().out.splitlines()[0] == (
        f"sku {product['sku'].lower()!r}: customerp-customwebshop / product: customerp "
        f"Products {product['sku']} ⇄ customwebshop products {product['id']}")

    assert cli.main(["history", "nobody@example.no", "--config", h.config]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.startswith(
        "talksync: history: no record has the id or a match key 'nobody@example.no'")
