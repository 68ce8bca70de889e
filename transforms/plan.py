"""Grouping entities with their links and planning each group (docs/architecture.md, "One
record's path through a run", steps 3–4)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import NamedTuple

import apache_beam as beam

from connectors import connector_for
from connectors.errors import ApiError
from connectors.linkstore import LinkRef
from core.mapping import PairMapper
from core.model import DELETED_BOTH, DELETED_SOURCE, DELETED_TARGET, LINKED, TOMBSTONES, Link
from core.planner import HELD, SOURCE, TARGET, Entity, account_group, plan_group
from transforms.coders import (
    is_packed_entity,
    plan_item_packer,
    plan_item_unpacker,
    register_coders,
)
from transforms.common import (
    BufferedStoreFn,
    PairContext,
    RequestCounting,
    progress,
    system_fields,
)

_DEAD_LETTERS = "dead_letters"
#: the link states under which a side's record is known gone (no look-up needed)
_GONE_STATES = {SOURCE: (DELETED_SOURCE, DELETED_BOTH), TARGET: (DELETED_TARGET, DELETED_BOTH)}
_LOOKUP_BATCH = 500
#: what :class:`LookUpLinks` outputs: (group key, packed entity or link)
KEYED_ITEM = beam.typehints.Tuple[beam.typehints.Any, bytes]


class LookUpLinks(beam.PTransform):
    """Keys each entity by the group it is planned in.

    A linked entity's group is its link; an entity without a link (or whose create is still
    pending) is grouped by its first match-key value, so records of both systems with the same
    key meet; an entity without a key is a group of its own. Links are looked up in batches, so
    a run touches only the links of the entities it read.

    Each entity (or link) is sent on packed, as :func:`~transforms.coders.plan_item_packer`'s
    bytes: the shuffle then holds it at its coded size on every runner.

    Only the links' ids and states are read here (the store's index, no snapshots): a group
    keyed by its link carries no link through the shuffle, :class:`PlanSync` reads it once
    after grouping. The rare link whose group is a match key (a create still pending) is read
    whole here and travels with its entity, as the planner needs it in that group.

    In the same batches, each entity gets the origins of the values talksync wrote into its
    record (any dataflow's writes), when the record is still as that write left it
    (docs/decisions/0015-edit-time-provenance.md).
    """

    def __init__(self, ctx: PairContext):
        super().__init__()
        self._ctx = ctx

    def expand(self, entities):
        register_coders()   # the grouped entities and links go through compact coders
        return entities | "LookUp" >> beam.ParDo(_LookUpLinksFn(self._ctx)).with_output_types(
            KEYED_ITEM)


class _LookUpLinksFn(BufferedStoreFn):
    batch_size = _LOOKUP_BATCH

    def setup(self):
        super().setup()
        self._mapper = PairMapper(self._ctx.pair)
        self._fields = {side: system_fields(self._ctx.pair, side) for side in (SOURCE, TARGET)}
        self._pack = plan_item_packer()

    def process(self, entity: Entity):
        yield from self.buffer(entity)

    def flush_batch(self, entities: list[Entity]):
        entities = self._with_origins(entities)
        by_side = {
            SOURCE: self._store.lookup_refs_by_source(
                self._ctx.pair_key, [e.id for e in entities if e.side == SOURCE]),
            TARGET: self._store.lookup_refs_by_target(
                self._ctx.pair_key, [e.id for e in entities if e.side == TARGET]),
        }
        keyed = []
        for entity in entities:
            ref = by_side[entity.side].get(entity.id)
            keyed.append((self._group_key(entity, ref), entity, ref))
        travelling_ids = [ref.link_id for key, _, ref in keyed
                          if ref is not None and key[0] != "link"]
        travelling = (self._store.lookup_by_id(self._ctx.pair_key, travelling_ids)
                      if travelling_ids else {})
        for key, entity, ref in keyed:
            yield key, self._pack(entity)
            link = travelling.get(ref.link_id) if ref is not None else None
            if link is not None:
                yield key, self._pack(link)

    def _with_origins(self, entities: list[Entity]) -> list[Entity]:
        """``entities`` with the origins of the values talksync wrote into their records, for
        the records still at the version that write left (one look-up per side and batch)."""
        stored = {side: self._store.lookup_origins(
            self._ctx.system(side).name, self._ctx.entity(side),
            [e.id for e in entities if e.side == side and not e.deleted])
            for side in (SOURCE, TARGET)}
        enriched = []
        for entity in entities:
            entry = stored[entity.side].get(entity.id)
            if entry is None or not entry.valid_for(entity.version):
                enriched.append(entity)
                continue
            origins = {name: entry.origins[path]
                       for name, path in self._fields[entity.side].items()
                       if path in entry.origins}
            enriched.append(dataclasses.replace(entity, origins=origins,
                                                others_edited=entry.others_edited))
        return enriched

    def _group_key(self, entity: Entity, ref: LinkRef | None) -> tuple:
        """The entity's group; ``("link", id)`` exactly when its link does not travel with it
        (:class:`PlanSync` reads that link after grouping)."""
        if ref is not None and (ref.state == LINKED or ref.state in TOMBSTONES):
            return ("link", ref.link_id)
        match = None if entity.deleted else self._mapper.match_key(entity.view)
        if match is not None:
            return ("match",) + match
        if ref is not None:
            return ("link", ref.link_id)
        return (entity.side, entity.id)


class PlanSyncResult(NamedTuple):
    """What :class:`PlanSync` outputs."""

    #: one :class:`~core.planner.SyncPlan` per link that exists or will
    plans: beam.PCollection
    #: the entities the planner refuses (duplicate match keys)
    dead_letters: beam.PCollection


class PlanSync(beam.PTransform):
    """Plans every group with the three-way merge: creates, links, updates, conflicts, and
    the delete policy of links whose records are deleted (core/deletes.py).

    Input: the keyed entities (and travelling links) of :class:`LookUpLinks`, both sides'
    flattened. Output: a :class:`PlanSyncResult`. A group keyed by its link gets that link
    here, read after the grouping in batches (one store round trip per :data:`_LOOKUP_BATCH`
    groups), so each link is read and decoded once, whichever sides were read. Entities no
    plan carries are counted here (deleted, dead, skipped); the others with their plan's
    fate.

    ``verify_missing`` (a full rescan, which read every record of both sides): a linked
    record the read did not return is looked up by id (the connector's ``get``); not found
    there, it is taken as deleted. That is how a hard delete (customerp, Business Central,
    Business NXT), invisible to an incremental read, is seen. Never on an incremental read,
    where a record not returned is only a record not changed.

    ``failed_reads`` (the pair's name once per side whose read failed) is the read-failure gate:
    when a read of the pair failed, nothing is planned (planning against a partial read of one
    side would take the records it missed for absent and create duplicates) and the entities
    are counted as held back. The gate is here, after the grouping, which waits for every read
    anyway: entities wait nowhere else, so each is coded once on its way (packed by
    :class:`LookUpLinks`) and decoded once (here).
    """

    def __init__(self, ctx: PairContext, verify_missing: bool = False, failed_reads=None):
        super().__init__()
        self._ctx = ctx
        self._verify = verify_missing
        self._failed_reads = failed_reads

    def expand(self, keyed):
        gate = ({} if self._failed_reads is None
                else {"failed": beam.pvalue.AsList(self._failed_reads)})
        planned = (keyed
                   | "Group" >> beam.GroupByKey()
                   | "Plan" >> beam.ParDo(_PlanGroupsFn(self._ctx, self._verify), **gate)
                   .with_outputs(_DEAD_LETTERS, main="plans"))
        return PlanSyncResult(plans=planned.plans, dead_letters=planned[_DEAD_LETTERS])


class _PlanGroupsFn(BufferedStoreFn):
    """Reads the links of a batch of groups in one round trip, then plans each group."""

    batch_size = _LOOKUP_BATCH

    def __init__(self, ctx: PairContext, verify_missing: bool = False):
        super().__init__(ctx)
        self._verify = verify_missing

    def setup(self):
        super().setup()
        self._unpack = plan_item_unpacker()
        self._held = self._ctx.counter(HELD)
        self._connectors = {}
        self._requests = {}

    def process(self, element, failed: Sequence[str] = ()):
        key, packed = element
        if failed:
            self._held.inc(sum(1 for item in packed if is_packed_entity(item)))
            return
        yield from self.buffer((key, list(packed)))

    def flush_batch(self, groups: list[tuple[tuple, list[bytes]]]):
        link_ids = [key[1] for key, _ in groups if key[0] == "link"]
        links = self._store.lookup_by_id(self._ctx.pair_key, link_ids) if link_ids else {}
        for key, packed in groups:
            items = [self._unpack(item) for item in packed]
            link = links.get(key[1]) if key[0] == "link" else None
            yield from self._plan(items if link is None else [*items, link])

    def _plan(self, items: list):
        sources: dict[str, Entity] = {}
        targets: dict[str, Entity] = {}
        links = []
        for item in items:
            if isinstance(item, Entity):
                side = sources if item.side == SOURCE else targets
                known = side.get(item.id)
                # The same entity may arrive twice (changed and retried): keep the newest.
                if known is None or _newer(item, known):
                    side[item.id] = item
            else:
                links.append(item)
        if self._verify:
            for link in links:
                self._verify_missing(link, sources, targets)
        plans, rejections = plan_group(
            self._ctx.pair, self._ctx.pair_key, list(sources.values()), list(targets.values()),
            links, attempt_id=self._ctx.run_id,
            systems={side: self._ctx.system(side).name for side in (SOURCE, TARGET)})
        plans, not_carried = account_group(sources.values(), targets.values(), plans,
                                           rejections)
        for outcome, count in not_carried.items():
            if count:
                self._ctx.counter(outcome).inc(count)
        for rejection in rejections:
            yield beam.pvalue.TaggedOutput(_DEAD_LETTERS, self._ctx.dead_letter(
                side=rejection.side, entity_id=rejection.entity_id, stage="plan",
                error_class=rejection.error_class, message=rejection.message))
        yield from plans

    def _verify_missing(self, link: Link, sources: dict[str, Entity],
                        targets: dict[str, Entity]) -> None:
        """Adds a deleted entity for each record of ``link`` that the full read did not
        return and a look-up by id does not find (Sesam's "verify deletes"). A look-up that
        fails proves nothing: the record is left out, as when it is not read."""
        if link.state != LINKED and link.state not in TOMBSTONES:
            return
        for side, read, entity_id in ((SOURCE, sources, link.source_id),
                                      (TARGET, targets, link.target_id)):
            if entity_id is None or entity_id in read or link.state in _GONE_STATES[side]:
                continue
            connector = self._connector(side)
            try:
                found = connector.get(self._ctx.entity(side), [entity_id])
            except ApiError as exc:
                progress.warning("%s: %s %s was not read and could not be looked up (%s); "
                                 "not taken as deleted", self._ctx.pair.name,
                                 self._ctx.system(side).name, entity_id, exc)
                continue
            finally:
                self._requests[side].flush()
            if not found:       # read (looked up) and gone: counted like a read record
                self._ctx.counter(f"read_{side}").inc()
                read[entity_id] = Entity(side, entity_id, {}, deleted=True,
                                         system=self._ctx.system(side).name)

    def _connector(self, side: str):
        if side not in self._connectors:
            self._connectors[side] = connector_for(self._ctx.system(side))
            self._requests[side] = RequestCounting(self._connectors[side])
        return self._connectors[side]

    def teardown(self):
        for connector in self._connectors.values():
            connector.close()
        super().teardown()


def _newer(entity: Entity, than: Entity) -> bool:
    if entity.modified is None:
        return False
    return than.modified is None or entity.modified > than.modified
