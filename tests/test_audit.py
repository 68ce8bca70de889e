"""The audit trail: exactly one event per write that happened, values with their provenance.

The end-to-end test drives `talksync run` against the sandbox (customerp-customwebshop,
customers and products) through a create, edits on both sides, a conflict and a write the ERP
refuses, then checks the events of each run one by one, that replaying every event onto the
systems' starting state gives both systems' end state, and `talksync history` / `runs` /
`report`. The planner's provenance is checked as a property over random merges.
"""

from __future__ import annotations

import datetime
import pathlib
from decimal import Decimal

import pyarrow.parquet
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors import connector_for
from core.mapping import MappingError, PairMapper
from core.model import LINKED, Link, SystemConfig
from core.planner import SOURCE, TARGET, Entity, other, plan_group
from core.spec import get_dataflow
from pipelines import cli, history
from pipelines.config import load_config, parse_config
from tests.conftest import group_by
from transforms import audit
from transforms.common import PairContext

DATAFLOW = "customerp-customwebshop"
SPEC = get_dataflow(DATAFLOW)
PAIRS = ("customer", "product")
T0 = datetime.datetime(2026, 11, 1, tzinfo=datetime.UTC)


# --- the planner's provenance ----------------------------------------------------------------

_names = st.sampled_from(["Kaffe", "Te", "Kakao", None])
_prices = st.sampled_from([Decimal("10"), Decimal("12.5"), None])


@settings(max_examples=150, deadline=None)
@given(base_name=_names, s_name=_names, t_name=_names, s_price=_prices, t_price=_prices,
       s_min=st.integers(0, 3), t_min=st.integers(0, 3), linked=st.booleans())
def test_every_written_value_says_where_it_came_from(base_name, s_name, t_name, s_price,
                                                     t_price, s_min, t_min, linked):
    pair = SPEC.pair("product")
    base = {"sku": "IT-1", "name": base_name, "price": Decimal("10"), "gtin": None,
            "cost": None, "vat_rate": Decimal("25"), "stock_quantity": 5}
    source = Entity(SOURCE, "IT-1", dict(base, name=s_name, price=s_price),
                    T0 + datetime.timedelta(minutes=s_min))
    target = Entity(TARGET, "prd_1", dict(base, name=t_name, price=t_price),
                    T0 + datetime.timedelta(minutes=t_min))
    links = [Link(pair="k", link_id="s:IT-1", source_id="IT-1", target_id="prd_1",
                  state=LINKED, snapshot_source=dict(base), snapshot_target=dict(base))]
    [plan], _ = plan_group(pair, "k", [source], [target], links if linked else [], "run")

    conflicted = {c.property: c for c in plan.conflicts}
    for write in plan.writes:
        written = source if write.side == SOURCE else target
        origin = other(write.side)
        assert {p.property: p.after for p in write.provenance} == dict(write.changes)
        for p in write.provenance:
            assert p.origin == origin
            assert p.before == written.view.get(p.property)
            assert p.after == (source if origin == SOURCE else target).view[p.property]
            assert p.conflict == (p.property in conflicted)
            if p.conflict:
                assert p.rule == conflicted[p.property].rule
            assert p.rule.startswith("first link") != linked


def test_a_conflict_settled_without_a_write_is_an_event_and_the_committed_values_are_after():
    pair = SPEC.pair("product")
    ctx = PairContext(dataflow=DATAFLOW, pair=pair,
                      source_system=SystemConfig("customerp", "customerp", "https://erp"),
                      target_system=SystemConfig("customwebshop", "customwebshop",
                                                 "https://shop"),
                      link_store="sqlite:///unused.db", run_id="run-7")
    base = {"sku": "IT-1", "name": "Kaffe", "price": Decimal("10"), "stock_quantity": 5}
    link = Link(pair="k", link_id="s:IT-1", source_id="IT-1", target_id="prd_1", state=LINKED,
                snapshot_source=dict(base), snapshot_target=dict(base))
    # sku (immutable) changed on both sides: a conflict nothing may write; name only in the ERP
    source = Entity(SOURCE, "IT-1", dict(base, sku="IT-1B", name="Kaffe mørk"), T0)
    target = Entity(TARGET, "prd_1", dict(base, sku="IT-1C"), T0 + datetime.timedelta(hours=1))
    [plan], _ = plan_group(pair, "k", [source], [target], [link], "run-7")
    # the webshop answers the write with its own spelling of the name
    committed = plan.link.replace(snapshot_target=dict(plan.link.snapshot_target,
                                                       name="KAFFE MØRK"))

    events = audit.committed_events(ctx, plan, committed, T0)

    assert [(e["operation"], e["direction"], e["system"]) for e in events] == [
        ("update", "to_target", "customwebshop"), ("conflict", "to_source", "customerp")]
    [name] = events[0]["properties"]
    assert (audit.value_of(name["before"]), audit.value_of(name["after"]),
            audit.value_of(name["from_value"]), name["from_system"], name["rule"]) == (
        "Kaffe", "KAFFE MØRK", "Kaffe mørk", "customerp", "changed in source")
    [sku] = events[1]["properties"]
    assert (audit.value_of(sku["before"]), audit.value_of(sku["after"]),
            audit.value_of(sku["from_value"]), sku["from_side"], sku["conflict"]) == (
        "IT-1B", "IT-1B", "IT-1C", TARGET, True)
    assert sku["rule"].startswith("latest change wins; not written")
    assert len({e["event_id"] for e in events}) == 2


# --- end to end against the sandbox ----------------------------------------------------------

def _views(harness) -> dict:
    """``{(pair, side): {id: view}}`` of every record of both systems, in canonical values
    without empty properties (mapped the way the engine maps them)."""
    config = load_config(harness.config)
    out = {}
    for pair_name in PAIRS:
        pair = SPEC.pair(pair_name)
        mapper = PairMapper(pair)
        for side, system, entity in ((SOURCE, SPEC.source.system, pair.source.entity),
                                     (TARGET, SPEC.target.system, pair.target.entity)):
            records = {}
            with connector_for(config.system(system)) as connector:
                for record in connector.read(entity):
                    if record.deleted:
                        continue
                    try:
                        view = mapper.view(side, record.fields, lambda *_: None)
                    except MappingError:
                        continue
                    records[record.id] = _without_empty(view)
            out[(pair_name, side)] = records
    return out


def _without_empty(view: dict) -> dict:
    return {k: v for k, v in view.items() if v is not None}


def _replay(events, state: dict) -> dict:
    """Every written value onto the side written (``after``) and onto the side it came from
    (``from_value``, the value that side had when it was read)."""
    for event in events:
        if event["operation"] not in (audit.CREATE, audit.UPDATE):
            continue
        ids = {SOURCE: event["source_id"], TARGET: event["target_id"]}
        written = event["direction"][len("to_"):]
        for row in event["properties"]:
            for side, text in ((written, row["after"]), (row["from_side"], row["from_value"])):
                record = state.setdefault((event["pair"], side), {}).setdefault(ids[side], {})
                record[row["property"]] = audit.value_of(text)
    return {key: {i: _without_empty(v) for i, v in records.items()}
            for key, records in state.items()}


def _events_of_run(audit_dir, run_id):
    return [e for e in audit.read_events(audit_dir, DATAFLOW) if e["run_id"] == run_id]


def _summary(event) -> tuple:
    """An event as comparable data: what, where, and per property (before → after, whence)."""
    return (event["pair"], event["operation"], event["direction"], event["system"],
            event["source_id"], event["target_id"],
            tuple(sorted((r["property"], audit.value_of(r["before"]),
                          audit.value_of(r["after"]), r["from_side"],
                          audit.value_of(r["from_value"]), r["rule"], r["conflict"])
                         for r in event["properties"])))


def test_audit_log_holds_exactly_the_writes_that_happened_and_replays_to_the_end_state(
        harness, capsys):
    audit_dir = str(pathlib.Path(harness.config).parent / "audit")
    start = _views(harness)

    # Run 1: links what matches, creates the rest. One event per write, per the counters.
    status, first = harness.run("--pairs", "customer,product")
    assert status == 0
    events = _events_of_run(audit_dir, first["run_id"])
    for pair in PAIRS:
        counts = first["pairs"][pair]
        mine = [e for e in events if e["pair"] == pair]
        ops = [(e["operation"], e["direction"]) for e in mine]
        assert ops.count(("create", "to_target")) == counts["created_in_target"]
        assert ops.count(("create", "to_source")) == counts["created_in_source"]
        # linked_by_match counts records: both records of each new link
        assert 2 * ops.count(("link", "link")) == counts["linked_by_match"]
        assert ops.count(("update", "to_target")) == counts["updated_target"]
        assert ops.count(("update", "to_source")) == counts["updated_source"]
        assert len(mine) == counts["linked_by_match"] // 2 + sum(counts[k] for k in (
            "created_in_target", "created_in_source", "updated_target", "updated_source"))
    assert len({e["event_id"] for e in events}) == len(events)

    # Between runs: a webshop customer is created, an ERP price and a webshop phone are edited,
    # and one product's name is edited on both sides (the ERP's edit is later: it wins).
    shop_customers = group_by(harness.list_all("customwebshop", "customers"), "email", True)
    erp_customers = group_by(harness.list_all("customerp", "Customers"), "Email", True)
    shop_products = group_by(harness.list_all("customwebshop", "products"), "sku")
    email = sorted(set(shop_customers) & set(erp_customers))[0]
    shop_customer, erp_customer = shop_customers[email][0], erp_customers[email][0]
    priced, renamed = sorted(shop_products)[:2]
    old_price = Decimal(shop_products[priced][0]["price"])
    new = harness.post("customwebshop", "customers", {
        "email": "audit.trail@example.no", "first_name": "Ada", "last_name": "Revisor",
        "phone": "+47 400 11 222", "address": {"line1": "Kontrollveien 1", "postal_code": "0150",
                                                "city": "Oslo", "country": "NO"}})
    harness.put_erp("Products", priced, {"SalesPrice": Decimal("777.25")})
    harness.patch_shop("customers", shop_customer["id"], {"phone": "+47 999 88 777"})
    harness.patch_shop("products", shop_products[renamed][0]["id"], {"name": "Navn i nettbutikken"})
    harness.put_erp("Products", renamed, {"Description": "Navn i ERP, sist endret"})
    # Every update the ERP receives fails (a create is a POST and goes through).
    harness.sandbox.set_faults("customerp", error_rate=1.0, status=500, only=["PUT"], seed=3)
    harness.configure("customerp", max_retries=0)

    status, second = harness.run("--pairs", "customer,product")
    assert status == 3
    events = _events_of_run(audit_dir, second["run_id"])
    [created] = [e for e in events if e["operation"] == "create"]
    new_erp_id = created["source_id"]
    views = _views(harness)
    new_view = views[("customer", SOURCE)][new_erp_id]
    new_shop_view = views[("customer", TARGET)][new["id"]]
    assert sorted(map(_summary, events)) == sorted([
        _summary(created),   # checked on its own below
        ("product", "update", "to_target", "customwebshop", priced, shop_products[priced][0]["id"],
         (("price", old_price, Decimal("777.25"), SOURCE, Decimal("777.25"),
           "changed in source", False),)),
        ("product", "update", "to_target", "customwebshop", renamed,
         shop_products[renamed][0]["id"],
         (("name", "Navn i nettbutikken", "Navn i ERP, sist endret", SOURCE,
           "Navn i ERP, sist endret", "latest change wins", True),)),
        ("customer", "dead_letter", "to_source", "customwebshop", None, shop_customer["id"], ()),
    ])
    assert (created["pair"], created["direction"], created["system"], created["target_id"]) == (
        "customer", "to_source", "customerp", new["id"])
    assert {r["property"]: audit.value_of(r["after"]) for r in created["properties"]} == new_view
    for row in created["properties"]:
        assert row["before"] is None
        if row["rule"] == "create":       # sent: the webshop's value
            assert row["from_side"] == TARGET
            assert audit.value_of(row["from_value"]) == new_shop_view[row["property"]]
        else:                             # not sent: filled in by the ERP
            assert (row["from_side"], row["rule"]) == (SOURCE, "set by customerp")
    assert {r["property"] for r in created["properties"] if r["rule"] == "create"} == set(
        new_shop_view)
    [letter] = [e for e in events if e["operation"] == "dead_letter"]
    assert (letter["stage"], letter["error_class"], letter["status"]) == ("write", "transient",
                                                                          500)
    assert "update in customerp failed" in letter["message"]
    # the refused write left no trace but its dead letter
    assert not [e for e in events if e["operation"] == "update"
                and shop_customer["id"] in (e["source_id"], e["target_id"])]

    # Run 3: the ERP takes updates again; the dead letter is retried and the phone arrives.
    harness.sandbox.set_faults("customerp")
    status, third = harness.run("--pairs", "customer,product")
    assert status == 0
    events = _events_of_run(audit_dir, third["run_id"])
    assert [_summary(e) for e in events] == [
        ("customer", "update", "to_source", "customerp", erp_customer["CustomerNo"],
         shop_customer["id"], (("phone", erp_customer["Phone"], "+47 999 88 777", TARGET,
                                "+47 999 88 777", "changed in target", False),))]

    # Replaying every event onto the starting state gives both systems' end state.
    every_event = audit.read_events(audit_dir, DATAFLOW)
    assert {e["run_id"] for e in every_event} == {first["run_id"], second["run_id"],
                                                  third["run_id"]}
    end = _views(harness)
    replayed = _replay(every_event, {key: {i: dict(v) for i, v in records.items()}
                                     for key, records in start.items()})
    # ... except for the edits made by hand between runs that no event could know of: none
    # here, since every edit was synced (the losing webshop name was overwritten).
    for key in end:
        assert replayed[key] == end[key], key

    # Partitioned by dataflow and date; secrets never in the log.
    files = sorted(pathlib.Path(audit_dir).rglob("*.parquet"))
    days = {e["time"].astimezone(datetime.UTC).date().isoformat() for e in every_event}
    assert {f.parent.relative_to(audit_dir).as_posix() for f in files} == {
        f"dataflow={DATAFLOW}/date={day}" for day in days}
    for file in files:
        day = file.parent.name[len("date="):]
        assert {t.astimezone(datetime.UTC).date().isoformat() for t in
                pyarrow.parquet.read_table(file, columns=["time"]).column("time").to_pylist()
                } == {day}
    assert {f.name.rsplit("-", 1)[0] for f in files} == {
        first["run_id"], second["run_id"], third["run_id"]}
    blob = b"".join(f.read_bytes() for f in files)
    for system in ("customwebshop", "customerp"):
        assert harness.sandbox.api_key(system).encode() not in blob
    assert pyarrow.parquet.read_schema(files[0]).field("properties").type.value_type.names == [
        "property", "before", "after", "from_side", "from_system", "from_value", "rule",
        "conflict"]

    # The CLI: one record's story, the last runs, a run's page.
    capsys.readouterr()
    assert cli.main(["history", shop_customer["id"], "--config", harness.config]) == 0
    story = capsys.readouterr().out
    assert story.index(second["run_id"]) < story.index(third["run_id"])
    assert "dead letter (write, transient, 500, to_source)" in story
    [phone_line] = [line for line in story.splitlines() if line.strip().startswith("phone")]
    assert phone_line.endswith("→ '+47 999 88 777'  (from customwebshop; changed in target)")
    assert cli.main(["history", erp_customer["CustomerNo"], "--config", harness.config,
                     "--since", "2999-01-01"]) == 0
    assert capsys.readouterr().out.strip() == f"no audit events for {erp_customer['CustomerNo']}"
    assert cli.main(["history", erp_customer["CustomerNo"], "--config", harness.config,
                     "--dataflow", "customwebshop-businessnxt"]) == 0
    assert capsys.readouterr().out.strip() == f"no audit events for {erp_customer['CustomerNo']}"
    assert cli.main(["history", erp_customer["CustomerNo"], "--config", harness.config,
                     "--dataflow", DATAFLOW, "--since", "1d"]) == 0
    assert capsys.readouterr().out == story      # found by its id on the other side, too
    assert cli.main(["runs", "--config", harness.config, "--last", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines[2:]] == [third["run_id"], second["run_id"]]
    page = pathlib.Path(harness.state) / "second.html"
    assert cli.main(["report", second["run_id"], "--html", str(page), "--config",
                     harness.config]) == 0
    text = page.read_text()
    assert text.count('<tr class="conflict">') == 1 and "Navn i nettbutikken" in text
    assert text.count('<tr class="dead-letter">') == 1


def test_history_since_accepts_dates_times_and_spans():
    now = datetime.datetime(2026, 11, 22, 12, 0, tzinfo=datetime.UTC)
    assert history.parse_since("2026-11-20", now) == datetime.datetime(
        2026, 11, 20, tzinfo=datetime.UTC)
    assert history.parse_since("2026-11-20T08:30+01:00", now).hour == 8
    assert history.parse_since("7d", now) == now - datetime.timedelta(days=7)
    assert history.parse_since("12h", now) == now - datetime.timedelta(hours=12)
    assert history.parse_since(None, now) is None
    try:
        history.parse_since("last week", now)
    except ValueError as exc:
        assert "7d" in str(exc)
    else:
        raise AssertionError("an unreadable --since was accepted")


def test_audit_dir_defaults_next_to_the_link_store_data():
    def config(**top):
        return parse_config({"systems": {}, **top}).audit_location()
    assert config() == ".talksync/audit"
    assert config(link_store="sqlite:////var/lib/talksync/links.db") == "/var/lib/talksync/audit"
    assert config(link_store="firestore://proj", runs_dir="gs://bucket/talksync/runs") == \
        "gs://bucket/talksync/audit"
    assert config(link_store="firestore://proj", runs_dir="gs://bucket/talksync/runs",
                  audit_dir="gs://audit-bucket/log") == "gs://audit-bucket/log"
    assert parse_config({"systems": {}, "link_store": "firestore://proj"}).audit_location(
        "gs://b/runs") == "gs://b/audit"      # a run's --runs_dir overrides the config's
