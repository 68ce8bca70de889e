"""Every order of the four dataflows, for the issue's case in both orders of the edits and for
a three-hop chain: the pure core's planner and provenance merge, run over five systems held in
memory the way the pipeline runs them (read both sides, look up the origins of a record still
at talksync's version, plan, write, save the origins the write leaves, commit the snapshots).

The end-to-end tests (tests/test_provenance_all.py) run the real pipeline against the
emulators in two orders, which take minutes each; these cover all 24 in a second."""

from __future__ import annotations

import dataclasses
import datetime
import itertools

import pytest

from core.model import LINKED, Link
from core.planner import SOURCE, TARGET, Entity, plan_group
from core.provenance import OriginWrite, RecordOrigins, Version, merged_origins
from core.spec import EntitySpec, PairSpec, PropertySpec

PAIR = PairSpec(name="customer", source=EntitySpec("customers", "Customer"),
                target=EntitySpec("customers", "Customer"), match=("email",),
                properties=(PropertySpec("email", "email", "email"),
                            PropertySpec("phone", "phone", "string")))
DATAFLOWS = (("customerp", "customwebshop"), ("customwebshop", "businesscentral"),
             ("customwebshop", "businessnxt"), ("exact", "customwebshop"))
SYSTEMS = ("customerp", "customwebshop", "businesscentral", "businessnxt", "exact")
T0 = datetime.datetime(2026, 12, 7, 5, 22, 24, tzinfo=datetime.UTC)


@dataclasses.dataclass
class _Record:
    fields: dict
    version: int = 1
    modified: datetime.datetime = T0


class _World:
    """Five systems with one customer each, linked in the four dataflows and in agreement."""

    def __init__(self):
        self.now = T0
        self.records = {system: _Record({"email": "a@example.com", "phone": "0"})
                        for system in SYSTEMS}
        self.links = {flow: Link(pair=f"{flow[0]}-{flow[1]}/customer", link_id="s:1",
                                 source_id="1", target_id="1", state=LINKED,
                                 snapshot_source={"email": "a@example.com", "phone": "0"},
                                 snapshot_target={"email": "a@example.com", "phone": "0"})
                      for flow in DATAFLOWS}
        self.origins: dict[str, RecordOrigins] = {}

    def tick(self, seconds: float = 1) -> datetime.datetime:
        self.now += datetime.timedelta(seconds=seconds)
        return self.now

    def edit(self, system: str, phone: str, seconds: float = 5) -> None:
        """A person's edit, ``seconds`` after the last thing that happened."""
        record = self.records[system]
        record.fields = {**record.fields, "phone": phone}
        record.version += 1
        record.modified = self.tick(seconds)

    def entity(self, system: str, side: str) -> Entity:
        record = self.records[system]
        entity = Entity(side, "1", dict(record.fields), record.modified,
                        etag=str(record.version), system=system)
        entry = self.origins.get(system)
        if entry is None or not entry.valid_for(entity.version):
            return entity
        return dataclasses.replace(entity, origins=dict(entry.origins),
                                   others_edited=entry.others_edited)

    def run(self, flow: tuple[str, str]) -> int:
        """One dataflow's run; how many writes it made."""
        systems = {SOURCE: flow[0], TARGET: flow[1]}
        [plan], _ = plan_group(PAIR, f"{flow[0]}-{flow[1]}/customer",
                               [self.entity(flow[0], SOURCE)], [self.entity(flow[1], TARGET)],
                               [self.links[flow]], "run")
        link = plan.link
        for write in plan.writes:
            system = systems[write.side]
            record = self.records[system]
            record.fields = {**record.fields, **write.changes}
            record.version += 1
            record.modified = self.tick()
            self.origins[system] = merged_origins(self.origins.get(system), OriginWrite(
                RecordOrigins(system, "customers", "1",
                              Version(str(record.version), record.modified),
                              {p.property: p.edit for p in write.provenance if p.edit}),
                replaced=write.replaces))
            snapshot = dict(record.fields)
            link = link.replace(**{f"snapshot_{write.side}": snapshot})
        self.links[flow] = link
        return len(plan.writes)

    def run_until_settled(self, order, max_passes: int = 4) -> int:
        for number in range(1, max_passes + 1):
            if not sum(self.run(flow) for flow in order):
                return number
        raise AssertionError(f"{order} did not settle in {max_passes} passes")

    def phones(self) -> dict[str, str]:
        return {system: record.fields["phone"] for system, record in self.records.items()}


ORDERS = list(itertools.permutations(DATAFLOWS))


@pytest.mark.parametrize("order", ORDERS, ids=lambda o: ",".join(f[1] if f[0] ==
                                                                    "customwebshop" else f[0]
                                                                    for f in o))
@pytest.mark.parametrize("first,later", [("customerp", "businesscentral"),
                                         ("businesscentral", "customerp"),
                                         ("exact", "businessnxt"),
                                         ("businessnxt", "customerp")])
def test_the_later_edit_wins_everywhere_in_every_order(order, first, later):
    world = _World()
    world.edit(first, f"{first} at T")
    world.edit(later, f"{later} at T+5 s")
    assert world.run_until_settled(order) <= 3
    assert world.phones() == dict.fromkeys(SYSTEMS, f"{later} at T+5 s")


@pytest.mark.parametrize("order", ORDERS[::5])
@pytest.mark.parametrize("later", ["businesscentral", "businessnxt", "exact"])
def test_a_three_hop_chain_with_a_later_edit_at_its_end_in_any_order(order, later):
    world = _World()
    world.edit("customerp", "ERP at T")
    world.run(DATAFLOWS[0])                           # the ERP's value reaches the webshop
    world.edit(later, f"{later} later")
    world.run_until_settled(order)
    assert world.phones() == dict.fromkeys(SYSTEMS, f"{later} later")


def test_without_provenance_the_copy_time_would_win():
    """The check of the check: the same world with the origins forgotten after every write
    (the old behaviour) lets the ERP's older edit win, as the issue found."""
    world = _World()
    world.edit("customerp", "ERP at T")
    world.edit("businesscentral", "BC at T+5 s")
    forgetful = _World.run

    def run_and_forget(self, flow):
        writes = forgetful(self, flow)
        self.origins.clear()
        return writes
    world.run = run_and_forget.__get__(world)
    world.run_until_settled(DATAFLOWS)
    assert world.phones() == dict.fromkeys(SYSTEMS, "ERP at T")
