"""Edit-time provenance in the pure core (core/provenance.py, core/planner.py): which version is
"as talksync left it", how a write's origins merge with the stored ones, and "latest change
wins" comparing people's edit times instead of the time talksync copied a value in
(docs/decisions/0015-edit-time-provenance.md). End to end: tests/test_provenance_all.py."""

import datetime

import pytest

from core.model import LINKED, Link
from core.planner import SOURCE, TARGET, Entity, plan_group
from core.provenance import EditOrigin, OriginWrite, RecordOrigins, Version, merged_origins
from core.spec import EntitySpec, PairSpec, PropertySpec

T0 = datetime.datetime(2026, 12, 7, 5, 22, 24, tzinfo=datetime.UTC)


def at(seconds: float) -> datetime.datetime:
    return T0 + datetime.timedelta(seconds=seconds)


PAIR = PairSpec(name="customer", source=EntitySpec("customers", "Customer"),
                target=EntitySpec("customers", "Customer"), match=("email",),
                properties=(PropertySpec("email", "email", "email"),
                            PropertySpec("phone", "phoneNumber", "string"),
                            PropertySpec("name", "displayName", "string")))
BASE = {"email": "a@example.com", "phoneNumber": "1", "displayName": "A"}


def _link():
    return Link(pair="flow/customer", link_id="s:c1", source_id="c1", target_id="C1",
                state=LINKED, snapshot_source=BASE, snapshot_target=BASE, version=2)


@pytest.mark.parametrize("written,read,same", [
    (Version('"3"', at(0)), Version('"3"', at(9)), True),       # ETags decide
    (Version('"3"', at(0)), Version('"4"', at(0)), False),
    (Version('"3"', at(0)), Version(None, at(0)), True),        # no ETag read: the time
    (Version('"3"', at(0)), Version(None, at(1)), False),
    (Version(None, at(0)), Version(None, at(0)), True),
    (Version(None, None), Version(None, None), False),          # unknown is never the same
    (Version('"3"', None), Version(None, at(0)), False),
])
def test_a_version_is_the_same_by_etag_else_by_modified_time(written, read, same):
    assert written.same_as(read) is same
    assert written.same_as(None) is False


def _origins(version, origins=None, others=None):
    return RecordOrigins("customwebshop", "customers", "c1", version, origins or {}, others)


def test_a_write_over_the_version_talksync_left_keeps_the_other_fields_origins():
    stored = _origins(Version('"2"'), {"phone": EditOrigin("customerp", at(0)),
                                       "email": EditOrigin("exact", at(1))}, others=at(-60))
    write = OriginWrite(_origins(Version('"3"'), {"phone": EditOrigin("businesscentral", at(5))}),
                        replaced=Version('"2"', at(30)))
    assert merged_origins(stored, write) == _origins(
        Version('"3"'), {"phone": EditOrigin("businesscentral", at(5)),
                         "email": EditOrigin("exact", at(1))}, others=at(-60))


def test_a_write_over_a_version_someone_else_made_forgets_the_old_origins():
    stored = _origins(Version('"2"'), {"email": EditOrigin("exact", at(1))}, others=at(-60))
    write = OriginWrite(_origins(Version('"4"'), {"phone": EditOrigin("customerp", at(0))}),
                        replaced=Version('"3"', at(40)))
    # the other fields were last edited when version 3 was made
    assert merged_origins(stored, write) == _origins(
        Version('"4"'), {"phone": EditOrigin("customerp", at(0))}, others=at(40))
    create = OriginWrite(_origins(Version('"1"'), {"phone": EditOrigin("customerp", at(0))}))
    assert merged_origins(None, create).others_edited is None


def test_origins_survive_the_stores_json():
    origins = _origins(Version('W/"7"', at(3)), {"address.city": EditOrigin("exact", at(1))},
                       others=at(-5))
    assert RecordOrigins.from_json("customwebshop", "customers", "c1",
                                   origins.to_json()) == origins


def _conflict(source_origin, target_time):
    """The webshop (source) has phone "2" that talksync copied in at +60 s from an edit made
    elsewhere (``source_origin``); Business Central (target) has "3", edited at
    ``target_time``."""
    source = Entity(SOURCE, "c1", {**BASE, "phoneNumber": "2"}, at(60), system="customwebshop",
                    origins={"phoneNumber": source_origin} if source_origin else {})
    target = Entity(TARGET, "C1", {**BASE, "phoneNumber": "3"}, target_time,
                    system="businesscentral")
    [plan], _ = plan_group(PAIR, "flow/customer", [source], [target], [_link()], "run")
    return plan


def test_latest_change_wins_compares_the_origins_edit_time_not_the_copy_time():
    # the case: ERP edit at T, Business Central edit at T+5 s, copied into the
    # webshop at T+60 s: Business Central's later edit wins
    plan = _conflict(EditOrigin("customerp", at(0)), at(5))
    [conflict] = plan.conflicts
    assert conflict.winner == TARGET
    assert (conflict.source_modified, conflict.source_edited_in) == (at(0), "customerp")
    assert (conflict.target_modified, conflict.target_edited_in) == (at(5), "businesscentral")
    [write] = plan.writes
    assert write.side == SOURCE and write.changes == {"phoneNumber": "3"}
    # the value written keeps the edit it came from, for the next hop
    assert write.provenance[0].edit == EditOrigin("businesscentral", at(5))


def test_without_an_origin_the_copy_time_counts_as_before():
    assert _conflict(None, at(5)).conflicts[0].winner == SOURCE
    # the reverse order: the ERP's edit is the later one and wins
    plan = _conflict(EditOrigin("customerp", at(5)), at(0))
    assert plan.conflicts[0].winner == SOURCE
    assert plan.writes[0].provenance[0].edit == EditOrigin("customerp", at(5))


def test_a_value_without_an_origin_carries_its_records_own_edit():
    source = Entity(SOURCE, "c1", {**BASE, "displayName": "B"}, at(60), system="customwebshop",
                    origins={"phoneNumber": EditOrigin("customerp", at(0))},
                    others_edited=at(30))
    [plan], _ = plan_group(PAIR, "flow/customer", [source], [], [_link()], "run")
    [write] = plan.writes
    assert write.provenance[0].edit == EditOrigin("customwebshop", at(30))
    assert source.edited_at("phoneNumber") == at(0)
    assert source.edited_at("email") == at(30)


def test_first_link_compares_edit_times_too():
    source = Entity(SOURCE, "c1", {**BASE, "displayName": "Copied"}, at(60),
                    system="customwebshop",
                    origins={"displayName": EditOrigin("customerp", at(0))})
    target = Entity(TARGET, "C1", {**BASE, "displayName": "Typed"}, at(5),
                    system="businesscentral")
    [plan], _ = plan_group(PAIR, "flow/customer", [source], [target], [], "run")
    assert plan.write_for(SOURCE).changes == {"displayName": "Typed"}


STOCK_PAIR = PairSpec(name="product", source=EntitySpec("products", "Product"),
                      target=EntitySpec("items", "Item"), match=("number",),
                      properties=(PropertySpec("sku", "number", "string"),
                                  PropertySpec("stock_quantity", "inventory", "integer",
                                               direction="to_source")))


@pytest.mark.parametrize("bc_edited,brought_at,written", [
    (at(0), at(5), None),        # Exact's later stock stays in the webshop
    (at(9), at(5), "bc"),        # Business Central's later edit goes in
    (at(5), at(5), None),        # a tie keeps what is there: no tug of war
])
def test_a_one_way_value_another_master_brought_in_is_settled_by_the_later_edit(
        bc_edited, brought_at, written):
    """The webshop's stock has two masters (Business Central here, Exact in its own
    dataflow): the webshop's value came from Exact, so it is not "edited on the side it
    flows to" but the other master's edit, and the later of the two stays."""
    link = Link(pair="flow/product", link_id="s:p1", source_id="p1", target_id="I1",
                state=LINKED, snapshot_source={"number": "A", "inventory": 3},
                snapshot_target={"number": "A", "inventory": 3}, version=2)
    shop = Entity(SOURCE, "p1", {"number": "A", "inventory": 7}, at(60), system="customwebshop",
                  origins={"inventory": EditOrigin("exact", brought_at)})
    bc = Entity(TARGET, "I1", {"number": "A", "inventory": 3}, bc_edited,
                system="businesscentral")
    [plan], _ = plan_group(STOCK_PAIR, "flow/product", [shop], [bc], [link], "run")
    assert [w.changes for w in plan.writes] == ([{"inventory": 3}] if written else [])
    # a person's edit of the stock in the webshop is still put back
    typed = Entity(SOURCE, "p1", {"number": "A", "inventory": 7}, at(60), system="customwebshop")
    [plan], _ = plan_group(STOCK_PAIR, "flow/product", [typed], [bc], [link], "run")
    assert [w.changes for w in plan.writes] == [{"inventory": 3}]
