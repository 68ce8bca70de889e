"""The campaign's oracle: is a dataflow's end state what a converged sync must leave?

It reads what talksync itself would read — every record of both systems through the
connectors, every link through the link store's export — and checks, for every pair:

- **no reservation left pending** in the link store;
- **links and records one to one**: every link names a source and a target record that exist,
  no record is in two links, and every live record of a side the pair creates from (``create:
  both``, ``to_target`` for the source side, ``to_source`` for the target side) is in a link;
- **no duplicates**: no two live records of a system, and no two links, under one match key
  (the form :func:`core.mapping.match_token` compares), so a duplicate create shows even where
  a system's own API refuses duplicates (products, orders) or the store's indexes would;
- **every mapped property equal**: both records of each link mapped to the canonical view by the
  pair's :class:`~core.mapping.PairMapper`, equal in every property that maps both ways (one-way
  properties are left out, also inside order lines: the planner leaves them alone unless a side
  changed).

Every problem found is collected; :func:`assert_converged` raises one ``AssertionError`` naming
them all (the first few of each kind).
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import json
import pathlib
import tempfile
from collections.abc import Iterable, Mapping
from typing import Any

from core.mapping import MappingError, PairMapper
from core.model import PENDING, Record
from core.spec import DataflowSpec, PairSpec, PropertySpec, get_dataflow
from pipelines.config import load_config
from pipelines.links_io import export_links
from pipelines.preflight import build_connector

#: problems of one kind named in the failure message (the count is always given)
_SHOWN = 5


@dataclasses.dataclass(frozen=True)
class LinkRow:
    """One link of the store, as ``talksync links export`` writes it."""

    pair: str
    link_id: str
    source_id: str | None
    target_id: str | None
    state: str


def assert_converged(config_path: str | pathlib.Path, dataflow: str) -> None:
    """Raise ``AssertionError`` listing every way the systems and link store of ``config_path``
    are not the converged end state of ``dataflow``."""
    problems = find_problems(config_path, dataflow)
    if problems:
        by_kind = collections.defaultdict(list)
        for kind, text in problems:
            by_kind[kind].append(text)
        lines = [f"{kind} ({len(texts)}): " + "; ".join(texts[:_SHOWN])
                 + (" …" if len(texts) > _SHOWN else "") for kind, texts in by_kind.items()]
        raise AssertionError(f"{dataflow} has not converged:\n  " + "\n  ".join(lines))


def find_problems(config_path: str | pathlib.Path, dataflow: str) -> list[tuple[str, str]]:
    """(kind, description) of every problem found (empty: converged)."""
    spec = get_dataflow(dataflow)
    config = load_config(config_path)
    links = read_links(config.link_store, spec.name)
    records = _records(config, spec)
    resolve = _resolver(links)
    problems: list[tuple[str, str]] = []
    for pair in spec.pairs:
        problems += _pair_problems(pair, links.get(pair.name, []), records[pair.name], resolve)
    return problems


def store_pair(dataflow: str, pair: str) -> str:
    """The pair's name in the link store (transforms/common.py: ``dataflow/pair``)."""
    return f"{dataflow}/{pair}"


# --- reading ------------------------------------------------------------------------------------

def read_links(link_store: str, dataflow: str) -> dict[str, list[LinkRow]]:
    """Every link of ``dataflow`` in the store by pair name, read the way `talksync links
    export` reads them."""
    with tempfile.TemporaryDirectory(prefix="talksync-oracle-") as folder:
        out = pathlib.Path(folder, "links.jsonl")
        export_links(link_store, out)
        rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    links: dict[str, list[LinkRow]] = collections.defaultdict(list)
    prefix = store_pair(dataflow, "")
    for row in rows:
        if row.get("kind") == "link" and row["pair"].startswith(prefix):
            pair = row["pair"][len(prefix):]
            links[pair].append(LinkRow(pair, row["link_id"], row.get("source_id"),
                                       row.get("target_id"), row["state"]))
    return links


def _records(config, spec: DataflowSpec) -> dict[str, tuple[dict, dict]]:
    """pair → (source records by id, target records by id), every record each system holds."""
    out = {}
    with contextlib.ExitStack() as stack:
        source = stack.enter_context(build_connector(config, spec.source.system))
        target = stack.enter_context(build_connector(config, spec.target.system))
        for pair in spec.pairs:
            out[pair.name] = (_by_id(source.read(pair.source.entity)),
                              _by_id(target.read(pair.target.entity)))
    return out


def _by_id(rows: Iterable[Any]) -> dict[str, Record]:
    records = {}
    for row in rows:
        assert isinstance(row, Record), f"an unreadable row: {row!r}"
        records[row.id] = row
    return records


def _resolver(links: Mapping[str, list[LinkRow]]):
    """``resolve(pair, direction, id)`` through the committed links, as the pipeline resolves
    references."""
    to_target = {(link.pair, link.source_id): link.target_id
                 for rows in links.values() for link in rows if link.state != PENDING}

    def resolve(pair: str, direction: str, entity_id: str) -> str | None:
        assert direction == "to_target", direction
        return to_target.get((pair, entity_id))
    return resolve


# --- checking -----------------------------------------------------------------------------------

def _pair_problems(pair: PairSpec, links: list[LinkRow], records: tuple[dict, dict],
                   resolve) -> list[tuple[str, str]]:
    sources, targets = records
    mapper = PairMapper(pair)
    problems = [("pending reservation", f"{pair.name} {link.link_id}")
                for link in links if link.state == PENDING]
    problems += _one_to_one(pair, links, sources, targets)
    views = {"source": {}, "target": {}}
    for side, side_records in (("source", sources), ("target", targets)):
        for record in side_records.values():
            try:
                views[side][record.id] = mapper.view(side, record.fields, resolve)
            except MappingError as exc:
                if not record.deleted:
                    problems.append(("unmappable record",
                                     f"{pair.name} {side} {record.id}: {exc}"))
    problems += _duplicates(pair, mapper, links, sources, targets, views)
    for link in links:
        source_view = views["source"].get(link.source_id)
        target_view = views["target"].get(link.target_id)
        if source_view is None or target_view is None:
            continue            # a missing or unmappable record: reported above
        for name, (s, t) in _differences(pair.properties, source_view, target_view).items():
            problems.append(("unequal property",
                             f"{pair.name} {link.link_id} {name}: source {s!r}, target {t!r}"))
    return problems


def _one_to_one(pair: PairSpec, links: list[LinkRow], sources: dict,
                targets: dict) -> list[tuple[str, str]]:
    problems = []
    for side, records, creates in (("source", sources, pair.create in ("both", "to_target")),
                                   ("target", targets, pair.create in ("both", "to_source"))):
        linked = collections.Counter(getattr(link, f"{side}_id") for link in links)
        for entity_id, count in linked.items():
            if entity_id is None:
                problems.append(("link without a record", f"{pair.name}: {count} link(s) "
                                 f"without a {side} id"))
            elif entity_id not in records:
                problems.append(("link without a record", f"{pair.name} {side} {entity_id} "
                                 f"is linked but not in its system"))
            elif count > 1:
                problems.append(("duplicate link", f"{pair.name} {side} {entity_id} is in "
                                 f"{count} links"))
        if creates:
            problems += [("record without a link", f"{pair.name} {side} {entity_id}")
                         for entity_id, record in records.items()
                         if not record.deleted and entity_id not in linked]
    return problems


def _duplicates(pair: PairSpec, mapper: PairMapper, links: list[LinkRow], sources: dict,
                targets: dict, views: dict) -> list[tuple[str, str]]:
    """Two live records of a system, or two links, under one match key."""
    problems = []
    for side, records in (("source", sources), ("target", targets)):
        keys: dict[tuple[str, str], list[str]] = collections.defaultdict(list)
        for entity_id, view in views[side].items():
            key = mapper.match_key(view)
            if key is not None and not records[entity_id].deleted:
                keys[key].append(entity_id)
        problems += [("duplicate record", f"{pair.name} {side} {key[0]} {key[1]!r}: "
                      f"{sorted(ids)}") for key, ids in keys.items() if len(ids) > 1]
        by_key: dict[tuple[str, str], list[str]] = collections.defaultdict(list)
        for link in links:
            view = views[side].get(getattr(link, f"{side}_id"))
            key = mapper.match_key(view) if view is not None else None
            if key is not None:
                by_key[key].append(link.link_id)
        problems += [("duplicate link", f"{pair.name} {key[0]} {key[1]!r} ({side}) in links "
                      f"{sorted(ids)}") for key, ids in by_key.items() if len(ids) > 1]
    return problems


def _differences(properties: Iterable[PropertySpec], source: Mapping[str, Any],
                 target: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    """property → (source value, target value) of every two-way property that differs."""
    out = {}
    for prop in properties:
        if prop.direction != "both":
            continue
        s, t = source.get(prop.target), target.get(prop.target)
        if prop.type == "lines":
            s, t = _two_way_lines(prop, s), _two_way_lines(prop, t)
        if s != t:
            out[prop.target] = (s, t)
    return out


def _two_way_lines(prop: PropertySpec, lines: Any) -> Any:
    """Lines with only their two-way properties (one-way ones may differ by design)."""
    if lines is None:
        return None
    keep = [sub.target for sub in prop.lines if sub.direction == "both"]
    return tuple({name: line.get(name) for name in keep} for line in lines)
