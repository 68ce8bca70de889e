"""Planning: what one group of entities needs, decided by a three-way merge.

The engine groups, per pair, the source entities, target entities and links that belong
together (one link, or one match-key value). :func:`plan_group` decides for that group, with no
I/O, what to write:

* linked entities: per property, compare each side with its own snapshot (the value that side
  had after the last sync). Only one side changed → copy it to the other; both changed to the
  same value → nothing; both changed differently → a conflict, settled by the pair's policy.
  An entity not read this run is taken as unchanged (its snapshot).
* linked entities one of which is deleted (read deleted, or gone by the link's tombstone) →
  the pair's delete policy, and a rejection of a survivor changed meanwhile (core/deletes.py).
* no link yet, both sides present (same match key) → link them; per property a non-empty value
  beats an empty one, otherwise the newer record wins (first-link rule).
* no link, one side → create it on the other side, under a stable link id reserved before the
  create, so a retried create is recognised and adopted rather than duplicated.

Because each side is compared with its own snapshot, our own writes read back unchanged on the
next run: the engine is echo-free by construction, and a rerun with no edits plans nothing.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from core import deletes, types
from core.model import LINKED, PENDING, TOMBSTONES, Link
from core.plans import (  # noqa: F401  (re-exported: the planner's public names)
    CREATE_SOURCE,
    CREATE_TARGET,
    DEAD,
    DELETED,
    HELD,
    LINK,
    SKIPPED,
    SOURCE,
    TARGET,
    UNCHANGED,
    UPDATE,
    Conflict,
    Entity,
    Provenance,
    Rejection,
    SyncPlan,
    Write,
    other,
)
from core.provenance import Version
from core.spec import PairSpec, PropertySpec

_MISSING = object()


def idempotency_key(pair_key: str, link_id: str) -> str:
    """The create's idempotency key: the same for every attempt at the same link."""
    digest = hashlib.sha256(f"{pair_key}\x00{link_id}".encode()).hexdigest()[:32]
    return f"talksync-{digest}"


def plan_group(pair: PairSpec, pair_key: str, sources: Sequence[Entity],
               targets: Sequence[Entity], links: Iterable[Link],
               attempt_id: str, systems: Mapping[str, str] | None = None
               ) -> tuple[list[SyncPlan], list[Rejection]]:
    """Plan one group: the entities and links that share a link id or a match-key value.

    ``systems`` names the system of each side (``{"source": "customerp", ...}``) for the
    messages of rejections that name records of both sides."""
    unique_links = {link.link_id: link for link in links}
    linked = [link for link in unique_links.values()
              if link.state == LINKED or link.state in TOMBSTONES]
    if linked:
        plans, rejections = [], []
        for link in sorted(linked, key=lambda candidate: candidate.link_id):
            source = _entity_with_id(sources, link.source_id)
            target = _entity_with_id(targets, link.target_id)
            plan, rejected = _plan_linked(pair, pair_key, link, source, target, systems or {})
            plans.append(plan)
            rejections += rejected
        return plans, rejections
    pending = [link for link in unique_links.values() if link.state == PENDING]
    return _plan_unlinked(pair, pair_key, list(sources), list(targets), pending, attempt_id)


def account_group(sources: Sequence[Entity], targets: Sequence[Entity],
                  plans: Sequence[SyncPlan], rejections: Sequence[Rejection]
                  ) -> tuple[list[SyncPlan], dict[str, int]]:
    """Gives each entity of one planned group exactly one place in the report.

    A deleted entity counts as :data:`DELETED`, a rejected one as :data:`DEAD`; an entity a
    plan carries (its link's source or target) counts with that plan, whose ``records_read``
    this sets; any other entity had nothing to do by design: :data:`SKIPPED`. Returns the plans
    and the counts of entities that no plan carries, by outcome.
    """
    counts = {DELETED: 0, DEAD: 0, SKIPPED: 0}
    rejected = {(r.side, r.entity_id) for r in rejections}
    carried: dict[tuple[str, str | None], int] = {}
    for index, plan in enumerate(plans):
        carried[(SOURCE, plan.link.source_id)] = index
        carried[(TARGET, plan.link.target_id)] = index
    records_read = [0] * len(plans)
    for entity in [*sources, *targets]:
        key = (entity.side, entity.id)
        if entity.deleted:
            counts[DELETED] += 1
        elif key in rejected:
            counts[DEAD] += 1
        elif key in carried:
            records_read[carried[key]] += 1
        else:
            counts[SKIPPED] += 1
    return ([dataclasses.replace(plan, records_read=n) for plan, n in zip(plans, records_read,
                                                                          strict=True)],
            counts)


def _entity_with_id(entities: Sequence[Entity], entity_id: str | None) -> Entity | None:
    for entity in entities:
        if entity.id == entity_id:
            return entity
    return None


# --- linked ------------------------------------------------------------------------------------

def _plan_linked(pair: PairSpec, pair_key: str, link: Link, source: Entity | None,
                 target: Entity | None, systems: Mapping[str, str]
                 ) -> tuple[SyncPlan, list[Rejection]]:
    """A link's plan: the delete policy's when a record of it is gone (core/deletes.py), else
    the three-way merge (a tombstone whose records are all read alive again is live again)."""
    gone = deletes.gone_sides(link, source, target)
    if gone:
        return deletes.plan_gone(pair, link, source, target, gone, systems)
    if link.state != LINKED:
        restored = _plan_live(pair, link.replace(state=LINKED), source, target)
        return dataclasses.replace(restored, commit=True), []
    return _plan_live(pair, link, source, target), []


def _plan_live(pair: PairSpec, link: Link, source: Entity | None,
               target: Entity | None) -> SyncPlan:
    base_s, base_t = dict(link.snapshot_source), dict(link.snapshot_target)
    s_view = dict(source.view) if source else dict(base_s)
    t_view = dict(target.view) if target else dict(base_t)
    routes = _Routes()
    conflicts: list[Conflict] = []
    for prop in pair.properties:
        name = prop.target
        s, t = s_view.get(name), t_view.get(name)
        bs, bt = base_s.get(name, _MISSING), base_t.get(name, _MISSING)
        if bs is _MISSING or bt is _MISSING:
            # A property new to the spec since the link was made: the first-link rule.
            decision = _first_link_winner(prop, s, t, source, target)
        else:
            decision = _three_way_winner(pair, prop, s, t, s != bs, t != bt, source, target,
                                         conflicts)
        routes.route(prop, decision, s, t, source, target)
    to_target, to_source = routes.changes[TARGET], routes.changes[SOURCE]
    new_s = {**s_view, **to_source}
    new_t = {**t_view, **to_target}
    writes = []
    if to_target:
        writes.append(Write(TARGET, "update", to_target, entity_id=link.target_id,
                            etag=target.etag if target else link.target_etag,
                            provenance=routes.provenance(TARGET),
                            replaces=_version_read(target, link.target_etag)))
    if to_source:
        writes.append(Write(SOURCE, "update", to_source, entity_id=link.source_id,
                            etag=source.etag if source else link.source_etag,
                            provenance=routes.provenance(SOURCE),
                            replaces=_version_read(source, link.source_etag)))
    new_link = link.replace(
        snapshot_source=new_s, snapshot_target=new_t,
        source_etag=source.etag if source and source.etag else link.source_etag,
        target_etag=target.etag if target and target.etag else link.target_etag)
    changed = (writes or new_s != base_s or new_t != base_t
               or new_link.source_etag != link.source_etag
               or new_link.target_etag != link.target_etag)
    return SyncPlan(pair=pair.name, outcome=UPDATE if writes else UNCHANGED, link=new_link,
                    writes=tuple(writes), conflicts=tuple(conflicts), commit=bool(changed))


#: A decision about one property: the side whose value both sides should have (None: leave
#: both as they are), the rule that decided, and whether it settled a conflict.
Decision = tuple[str | None, str, bool]
_KEEP: Decision = (None, "", False)


def _three_way_winner(pair: PairSpec, prop: PropertySpec, s: Any, t: Any, s_changed: bool,
                      t_changed: bool, source: Entity | None, target: Entity | None,
                      conflicts: list[Conflict]) -> Decision:
    """Which side's value should both sides have, and by which rule."""
    if s == t:
        return _KEEP
    if prop.direction in ("to_target", "to_source"):
        return _one_way_winner(prop, s_changed or t_changed, source, target)
    if s_changed and not t_changed:
        return SOURCE, "changed in source", False
    if t_changed and not s_changed:
        return TARGET, "changed in target", False
    if not s_changed and not t_changed:
        return _KEEP  # the sides agreed to differ (a system normalises the value): no echo
    winner, rule = _resolve_conflict(pair.conflict, prop.target, source, target)
    s_origin = source.edit_origin(prop.target) if source else None
    t_origin = target.edit_origin(prop.target) if target else None
    conflicts.append(Conflict(property=prop.target, source_value=s, target_value=t,
                              winner=winner, rule=rule,
                              source_modified=_edited_at(source, prop.target),
                              target_modified=_edited_at(target, prop.target),
                              source_edited_in=s_origin.system if s_origin else None,
                              target_edited_in=t_origin.system if t_origin else None))
    return winner, rule, True


def _edited_at(entity: Entity | None, name: str) -> datetime.datetime | None:
    """When a person last edited property ``name`` of ``entity`` (None: not read, not known)."""
    return entity.edited_at(name) if entity else None


def _version_read(entity: Entity | None, link_etag: str | None) -> Version:
    """The version an update of ``entity``'s record replaces: as read, else as last linked."""
    return entity.version if entity else Version(etag=link_etag)


def _one_way_winner(prop: PropertySpec, changed: bool, source: Entity | None,
                    target: Entity | None) -> Decision:
    """A one-way property: the side it flows from (its master here) has the say, and a value
    edited on the side it flows to is put back. But when that value was brought in by
    another dataflow from another master of the same field (its origin is another system:
    two ERPs keep the webshop's stock, say), the two masters' edits are compared and the
    later one stays: putting ours back would start a tug of war that never settles."""
    if not changed:
        return _KEEP
    master = SOURCE if prop.direction == "to_target" else TARGET
    rule = f"one-way {prop.direction.replace('_', ' ')}"
    receiver = target if master == SOURCE else source
    brought = receiver.origins.get(prop.target) if receiver else None
    if receiver is not None and brought is not None and brought.system != receiver.system:
        master_time = _edited_at(source if master == SOURCE else target, prop.target)
        if master_time is None or master_time <= brought.at:
            return _KEEP
    return master, rule, False


def _resolve_conflict(policy: str, name: str, source: Entity | None,
                      target: Entity | None) -> tuple[str, str]:
    """The side that wins a conflict on property ``name``: by priority, or the later edit by a
    person (edit-time provenance: a value talksync copied in counts from its origin's edit)."""
    if policy == "source":
        return SOURCE, "source priority"
    if policy == "target":
        return TARGET, "target priority"
    s_time = _edited_at(source, name)
    t_time = _edited_at(target, name)
    if s_time and t_time and t_time > s_time:
        return TARGET, "latest change wins"
    if s_time and t_time and s_time > t_time:
        return SOURCE, "latest change wins"
    return SOURCE, "latest change wins (same time: source)"


def _first_link_winner(prop: PropertySpec, s: Any, t: Any, source: Entity | None,
                       target: Entity | None) -> Decision:
    """The first-link rule: a non-empty value beats an empty one, else the newer record wins."""
    if s == t:
        return _KEEP
    if types.is_empty(t):
        return (SOURCE, "first link: the only value", False) if not types.is_empty(s) \
            else _KEEP
    if types.is_empty(s):
        return TARGET, "first link: the only value", False
    if prop.direction == "to_target":
        return SOURCE, "first link: one-way to target", False
    if prop.direction == "to_source":
        return TARGET, "first link: one-way to source", False
    s_time = _edited_at(source, prop.target)
    t_time = _edited_at(target, prop.target)
    if s_time and t_time and t_time > s_time:
        return TARGET, "first link: newer record wins", False
    return SOURCE, "first link: newer record wins", False


class _Routes:
    """The values queued for each side, and where each one came from."""

    def __init__(self) -> None:
        self.changes: dict[str, dict[str, Any]] = {SOURCE: {}, TARGET: {}}
        self._provenance: dict[str, list[Provenance]] = {SOURCE: [], TARGET: []}

    def route(self, prop: PropertySpec, decision: Decision, s: Any, t: Any,
              source: Entity | None, target: Entity | None) -> None:
        """Queue the winning value for the side that lacks it, where that side is writable,
        with the edit it comes from."""
        winner, rule, conflict = decision
        if winner is None or prop.immutable or s == t:
            return
        written = other(winner)
        if not prop.writes_to(written):
            return
        after, before = (s, t) if winner == SOURCE else (t, s)
        origin = source if winner == SOURCE else target
        self.changes[written][prop.target] = after
        self._provenance[written].append(Provenance(
            property=prop.target, before=before, after=after, origin=winner, rule=rule,
            conflict=conflict, edit=origin.edit_origin(prop.target) if origin else None))

    def provenance(self, side: str) -> tuple[Provenance, ...]:
        return tuple(self._provenance[side])


# --- not linked ----------------------------------------------------------------------------

def _plan_unlinked(pair: PairSpec, pair_key: str, sources: list[Entity], targets: list[Entity],
                   pending: list[Link], attempt_id: str
                   ) -> tuple[list[SyncPlan], list[Rejection]]:
    sources = [e for e in sources if not e.deleted]
    targets = [e for e in targets if not e.deleted]
    rejections = _duplicate_rejections(pair, sources) + _duplicate_rejections(pair, targets)
    if rejections:
        return [], rejections
    source = sources[0] if sources else None
    target = targets[0] if targets else None
    reservation = _reservation_for(pending, source, target)
    if source and target:
        return [_plan_link_by_match(pair, pair_key, source, target, reservation)], []
    if source and pair.create in ("both", "to_target"):
        return [_plan_create(pair, pair_key, source, TARGET, reservation, attempt_id)], []
    if target and pair.create in ("both", "to_source"):
        return [_plan_create(pair, pair_key, target, SOURCE, reservation, attempt_id)], []
    return [], []


def _duplicate_rejections(pair: PairSpec, entities: Sequence[Entity]) -> list[Rejection]:
    if len(entities) < 2:
        return []
    ids = ", ".join(sorted(e.id for e in entities))
    keys = ", ".join(f"{k}={entities[0].view.get(k)!r}" for k in pair.match
                     if not types.is_empty(entities[0].view.get(k)))
    side = entities[0].side
    label = pair.source.label if side == SOURCE else pair.target.label
    message = (f"duplicate match key: {len(entities)} {side} {label} records ({ids}) share "
               f"{keys}; none is linked until the key is unique in that system")
    return [Rejection(side=e.side, entity_id=e.id, message=message) for e in entities]


def _reservation_for(pending: Sequence[Link], source: Entity | None,
                     target: Entity | None) -> Link | None:
    for link in pending:
        if (source and link.source_id == source.id) or (target and link.target_id == target.id):
            return link
    return None


def _plan_link_by_match(pair: PairSpec, pair_key: str, source: Entity, target: Entity,
                        reservation: Link | None) -> SyncPlan:
    routes = _Routes()
    for prop in pair.properties:
        s, t = source.view.get(prop.target), target.view.get(prop.target)
        routes.route(prop, _first_link_winner(prop, s, t, source, target), s, t, source,
                     target)
    to_target, to_source = routes.changes[TARGET], routes.changes[SOURCE]
    link = (reservation or Link(pair=pair_key, link_id=f"s:{source.id}")).replace(
        source_id=source.id, target_id=target.id, state=LINKED,
        snapshot_source={**source.view, **to_source}, snapshot_target={**target.view, **to_target},
        source_etag=source.etag, target_etag=target.etag)
    writes = []
    if to_target:
        writes.append(Write(TARGET, "update", to_target, entity_id=target.id, etag=target.etag,
                            provenance=routes.provenance(TARGET), replaces=target.version))
    if to_source:
        writes.append(Write(SOURCE, "update", to_source, entity_id=source.id, etag=source.etag,
                            provenance=routes.provenance(SOURCE), replaces=source.version))
    return SyncPlan(pair=pair.name, outcome=LINK, link=link, writes=tuple(writes))


def creatable_view(pair: PairSpec, view: Mapping[str, Any], side: str) -> dict[str, Any]:
    """The properties of ``view`` a create on ``side`` carries: writable there and not empty."""
    return {prop.target: view[prop.target] for prop in pair.properties
            if prop.writes_to(side) and not types.is_empty(view.get(prop.target))}


def _plan_create(pair: PairSpec, pair_key: str, entity: Entity, side: str,
                 reservation: Link | None, attempt_id: str) -> SyncPlan:
    if reservation is not None:
        link = reservation
    elif side == TARGET:
        link = Link(pair=pair_key, link_id=f"s:{entity.id}", source_id=entity.id)
    else:
        link = Link(pair=pair_key, link_id=f"t:{entity.id}", target_id=entity.id)
    changes = creatable_view(pair, entity.view, side)
    snapshot = dict(entity.view)
    link = link.replace(
        state=PENDING, attempt_id=link.attempt_id or attempt_id,
        snapshot_source=snapshot if side == TARGET else {},
        snapshot_target=snapshot if side == SOURCE else {},
        source_etag=entity.etag if side == TARGET else None,
        target_etag=entity.etag if side == SOURCE else None)
    write = Write(side, "create", changes,
                  idempotency_key=idempotency_key(pair_key, link.link_id),
                  provenance=tuple(Provenance(property=name, before=None, after=value,
                                              origin=entity.side, rule="create",
                                              edit=entity.edit_origin(name))
                                   for name, value in changes.items()))
    return SyncPlan(pair=pair.name, outcome=CREATE_TARGET if side == TARGET else CREATE_SOURCE,
                    link=link, writes=(write,))
