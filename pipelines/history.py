"""``talksync history`` and ``talksync runs``: the story of one record, and the last runs.

``history`` reads the audit log (:mod:`transforms.audit`) and tells, run by run, what talksync
did to a record — found by its id in either system, or by a match key (an e-mail, a SKU, an
order number) looked up in the audit events and the link store's snapshots — and where each
value came from.
``runs`` lists the last runs from the reports each run writes into its run folder.
Both read through Beam's ``FileSystems``, so a ``gs://`` audit log or runs folder works too.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import pathlib
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from apache_beam.io.filesystems import FileSystems

from core.mapping import match_token
from core.model import LINKED, Link
from core.spec import DataflowSpec, available_dataflows
from pipelines.config import DEFAULT_LINK_STORE, DEFAULT_RUNS_DIR, Config, load_config
from pipelines.exit_status import EXIT_FAILED, EXIT_OK
from transforms import audit

_VALUE_WIDTH = 60
_RELATIVE = re.compile(r"^(\d+)([dhm])$")
_UNITS = {"d": "days", "h": "hours", "m": "minutes"}


# --- where the files are -------------------------------------------------------------------

def locations(config_path: str | None, runs_dir: str | None = None,
              audit_dir: str | None = None) -> tuple[str, str]:
    """(runs folder, audit folder): the options given, else the config's, else the defaults.
    The config is read when it is named or ``talksync.yaml`` exists here."""
    config = _config(config_path)
    return runs_dir or config.runs_dir, audit_dir or config.audit_location(runs_dir)


def link_store_of(config_path: str | None) -> str:
    """The link store of the config (as :func:`locations` finds it), else the default."""
    return _config(config_path).link_store


def _config(config_path: str | None) -> Config:
    if config_path or pathlib.Path("talksync.yaml").exists():
        return load_config(config_path or "talksync.yaml")
    return Config(link_store=DEFAULT_LINK_STORE, runs_dir=DEFAULT_RUNS_DIR, systems={})


def parse_since(text: str | None,
                now: datetime.datetime | None = None) -> datetime.datetime | None:
    """``--since``: a date (2026-11-20), a moment (2026-11-20T08:00, UTC unless it says), or
    a span back from now (``7d``, ``12h``, ``30m``)."""
    if not text:
        return None
    now = now or datetime.datetime.now(datetime.UTC)
    relative = _RELATIVE.match(text.strip())
    if relative:
        amount, unit = int(relative.group(1)), relative.group(2)
        return now - datetime.timedelta(**{_UNITS[unit]: amount})
    try:
        moment = datetime.datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"--since: {text!r} is not a date (2026-11-20), a time "
                         "(2026-11-20T08:00) or a span (7d, 12h, 30m)") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=datetime.UTC)


# --- history -------------------------------------------------------------------------------

def record_events(events: Sequence[dict], entity_id: str) -> list[dict]:
    """The events about the record with ``entity_id`` in either system: those naming it, and
    those about the links it belongs to or the ids it is linked with (a failed write's dead
    letter names the record whose change it carried, which may be the other side's id)."""
    links, ids = set(), {entity_id}
    for event in events:
        if entity_id in (event["source_id"], event["target_id"]):
            if event["link_id"]:
                links.add((event["pair"], event["link_id"]))
            ids.update(i for i in (event["source_id"], event["target_id"]) if i)
    return [event for event in events
            if (event["pair"], event["link_id"]) in links
            or ids & {event["source_id"], event["target_id"]}]


def format_history(events: Sequence[dict], entity_id: str) -> str:
    """The story of one record, run by run, readable in a terminal."""
    if not events:
        return f"no audit events for {entity_id}"
    lines = []
    for key in sorted({(e["dataflow"], e["pair"]) for e in events}):
        pairs = sorted({(e["source_id"], e["target_id"]) for e in events
                        if (e["dataflow"], e["pair"]) == key and e["source_id"]
                        and e["target_id"]})
        linked = "; ".join(f"source {s} ⇄ target {t}" for s, t in pairs)
        lines.append(f"{key[0]} / {key[1]}: {linked or entity_id}")
    run = None
    for event in events:
        if event["run_id"] != run:
            run = event["run_id"]
            lines.append("")
            lines.append(f"{_time(event['time'])}  run {run}")
        lines.extend("  " + line for line in _event_lines(event))
    return "\n".join(lines)


def _event_lines(event: dict) -> list[str]:
    operation = event["operation"]
    where = f"{event['system']} {event['entity']}"
    ids = f"{event['source_id'] or '?'} ⇄ {event['target_id'] or '?'}"
    if operation == audit.LINK_BY_MATCH:
        return [f"[{event['pair']}] linked by match key: {ids}"]
    if operation == audit.DEAD_LETTER:
        status = f", {event['status']}" if event["status"] else ""
        return [f"[{event['pair']}] dead letter ({event['stage']}, {event['error_class']}"
                f"{status}, {event['direction']}): {event['message']}",
                "    retried on the next run"]
    title = {audit.CREATE: "created in", audit.UPDATE: "updated in",
             audit.CONFLICT: "conflict settled, nothing written to"}.get(operation, operation)
    entity_id = event["target_id"] if event["direction"] == "to_target" else event["source_id"]
    out = [f"[{event['pair']}] {title} {where} {entity_id}"]
    width = max((len(row["property"]) for row in event["properties"]), default=0)
    for row in event["properties"]:
        change = (f"= {_value(row['after'])}" if row["before"] is None
                  and operation == audit.CREATE else
                  f"{_value(row['before'])} → {_value(row['after'])}")
        why = row["rule"] if not row["conflict"] else f"conflict: {row['rule']}"
        out.append(f"    {row['property'].ljust(width)}  {change}  "
                   f"(from {row['from_system']}; {why})")
    return out


def _value(text: str | None) -> str:
    value = audit.value_of(text)
    if value is None:
        return "(empty)"
    shown = repr(value) if isinstance(value, str) else (
        str(value) if not isinstance(value, (tuple, list, dict)) else
        json.dumps(json.loads(text), ensure_ascii=False))
    return shown if len(shown) <= _VALUE_WIDTH else shown[:_VALUE_WIDTH - 1] + "…"


def _time(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def history(audit_dir: str, entity_id: str, dataflow: str | None = None,
            since: datetime.datetime | None = None) -> str:
    """The readable story of the record with ``entity_id`` (by its id only)."""
    return format_history(
        record_events(audit.read_events(audit_dir, dataflow, since), entity_id), entity_id)


# --- finding a record by a match key ---------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Answer:
    """What `talksync history` prints, where, and its exit status: the story (0), the
    candidates of an ambiguous key (1), or that nothing is known by that id or key (1)."""

    text: str
    status: int = EXIT_OK
    to_stderr: bool = False


@dataclasses.dataclass(frozen=True)
class Candidate:
    """A link (or one side of one) whose record has the match key asked for."""

    dataflow: str
    pair: str
    key: str
    value: Any
    source: tuple[str, str, str] | None     # (system, entity, id)
    target: tuple[str, str, str] | None


def find_record(query: str, audit_dir: str, links: Iterable[Link],
                dataflow: str | None = None, since: datetime.datetime | None = None,
                specs: Mapping[str, DataflowSpec] | None = None) -> Answer:
    """`talksync history QUERY`: the story of the record whose id is ``query`` in either
    system, else of the record whose match key (e-mail, SKU, order number: any pair's match
    keys) is ``query``, compared as match keys are (case and spacing folded).

    The key is looked up in the audit events' written values and in the snapshots of the
    ``links`` (a record linked by its match key without a write has no event that names its
    key). Records linked to each other, in one dataflow or several, are one record; a key of
    records that are not linked to each other is ambiguous: the candidates are listed. A key
    nobody has is exit status 1 (as a run that could not do what was asked), with a message
    saying where it was looked up.
    """
    specs = specs if specs is not None else available_dataflows()
    links = [link for link in links if link.state == LINKED]
    events = audit.read_events(audit_dir, dataflow, since)
    if _is_known_id(query, events, links):
        return Answer(format_history(record_events(events, query), query))
    groups = _linked_groups(_candidates(query, events, links, specs, dataflow))
    if not groups:
        return Answer(f"talksync: history: no record has the id or a match key {query!r} in "
                      f"the audit log ({audit_dir}) or the link store; match keys: "
                      f"{_match_keys(specs, dataflow)}", EXIT_FAILED, to_stderr=True)
    if len(groups) > 1:
        return Answer("\n".join(
            [f"{query!r} is the match key of {len(groups)} records that are not linked to "
             "each other; ask for one by its id:"]
            + [f"  {_describe(group)}" for group in groups]), EXIT_FAILED)
    [group] = groups
    ids = sorted({node[2] for candidate in group for node in (candidate.source,
                                                              candidate.target) if node})
    found: dict[str, dict] = {}
    for entity_id in ids:
        found.update((event["event_id"], event) for event in record_events(events, entity_id))
    story = sorted(found.values(), key=lambda e: (e["time"], e["event_id"]))
    label = f"{group[0].key} {query!r}"
    return Answer(f"{label}: {_describe(group)}\n" + format_history(story, label))


def _is_known_id(query: str, events: Sequence[dict], links: Sequence[Link]) -> bool:
    return any(query in (event["source_id"], event["target_id"]) for event in events) or any(
        query in (link.source_id, link.target_id) for link in links)


def _candidates(query: str, events: Sequence[dict], links: Sequence[Link],
                specs: Mapping[str, DataflowSpec], dataflow: str | None) -> list[Candidate]:
    token = match_token(query)
    found = []
    for event in events:
        spec = specs.get(event["dataflow"])
        if spec is None or not event["properties"]:
            continue
        match = spec.pair(event["pair"]).match
        for row in event["properties"]:
            values = (audit.value_of(row["after"]), audit.value_of(row["from_value"]))
            if row["property"] in match and any(
                    v is not None and match_token(v) == token for v in values):
                found.append(_candidate(spec, event["pair"], row["property"], query,
                                        event["source_id"], event["target_id"]))
    for link in links:
        flow, _, pair_name = link.pair.partition("/")
        spec = specs.get(flow)
        if spec is None or (dataflow and flow != dataflow):
            continue
        pair = spec.pair(pair_name)
        for key in pair.match:
            values = (link.snapshot_source.get(key), link.snapshot_target.get(key))
            if any(v is not None and match_token(v) == token for v in values):
                found.append(_candidate(spec, pair_name, key, query, link.source_id,
                                        link.target_id))
                break
    return found


def _candidate(spec: DataflowSpec, pair_name: str, key: str, value: Any,
               source_id: str | None, target_id: str | None) -> Candidate:
    pair = spec.pair(pair_name)
    return Candidate(
        dataflow=spec.name, pair=pair_name, key=key, value=value,
        source=(spec.source.system, pair.source.entity, source_id) if source_id else None,
        target=(spec.target.system, pair.target.entity, target_id) if target_id else None)


def _linked_groups(candidates: Sequence[Candidate]) -> list[list[Candidate]]:
    """The candidates grouped by the record they are: two candidates sharing a record (the
    same system, entity and id, in one dataflow or two) are one group."""
    parent: dict[Any, Any] = {}

    def root(node):
        while parent.setdefault(node, node) != node:
            node = parent[node]
        return node

    for index, candidate in enumerate(candidates):
        nodes = [("candidate", index)] + [n for n in (candidate.source, candidate.target) if n]
        for node in nodes[1:]:
            parent[root(node)] = root(nodes[0])
    groups: dict[Any, list[Candidate]] = {}
    for index, candidate in enumerate(candidates):
        group = groups.setdefault(root(("candidate", index)), [])
        if candidate not in group:
            group.append(candidate)
    return sorted(groups.values(), key=_describe)


def _describe(group: Sequence[Candidate]) -> str:
    """One record across the dataflows: ``dataflow / pair: system entity id ⇄ …``."""
    parts = []
    for candidate in group:
        sides = " ⇄ ".join(" ".join(node) if node else "(not linked)"
                           for node in (candidate.source, candidate.target))
        part = f"{candidate.dataflow} / {candidate.pair}: {sides}"
        if part not in parts:
            parts.append(part)
    return "; ".join(sorted(parts))


def _match_keys(specs: Mapping[str, DataflowSpec], dataflow: str | None) -> str:
    keys = sorted({f"{pair.name}.{key}" for spec in specs.values()
                   if not dataflow or spec.name == dataflow
                   for pair in spec.pairs for key in pair.match})
    return ", ".join(keys)


# --- runs ----------------------------------------------------------------------------------

def read_report(run_dir: str) -> dict:
    """The report section a run wrote into its folder (``report.json``)."""
    path = FileSystems.join(run_dir, "report.json")
    if not FileSystems.exists(path):
        raise ValueError(f"{run_dir}: no report.json; is this a run folder of "
                         "`talksync run`? (`talksync runs` lists them)")
    with FileSystems.open(path) as handle:
        return json.loads(handle.read().decode("utf-8"))["dataflows"][0]


def list_runs(runs_dir: str, last: int = 10) -> list[dict]:
    """The report sections of the last ``last`` runs in ``runs_dir``, newest first."""
    matched = FileSystems.match([FileSystems.join(runs_dir, "*", "report.json")])
    sections = []
    for metadata in matched[0].metadata_list:
        with FileSystems.open(metadata.path) as handle:
            sections += json.loads(handle.read().decode("utf-8"))["dataflows"]
    sections.sort(key=lambda s: (s.get("started_at") or "", s["run_id"]), reverse=True)
    return sections[:last]


_RUN_COLUMNS = (("created", ("created_in_target", "created_in_source")),
                ("linked", ("linked_by_match",)),
                ("updated", ("updated_target", "updated_source")),
                ("conflicts", ("conflicts",)), ("dead", ("dead_letters",)))


def format_runs(sections: Iterable[dict]) -> str:
    """One line per run: when, which dataflow, how long, and what it did."""
    headers = ["run", "dataflow", "mode", "started (UTC)", "seconds"] + [
        name for name, _ in _RUN_COLUMNS] + ["requests"]
    rows = []
    for section in sections:
        totals = [sum(counts.get(k, 0) for counts in section["pairs"].values() for k in keys)
                  for _, keys in _RUN_COLUMNS]
        started = (section.get("started_at") or "")[:19].replace("T", " ")
        rows.append([section["run_id"], section["dataflow"], section["mode"], started,
                     f"{section.get('duration_s', 0):.1f}", *map(str, totals),
                     str(sum(section.get("requests", {}).values()))])
    if not rows:
        return "no runs yet"
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    text = [headers] + [["-" * w for w in widths]] + rows
    return "\n".join("  ".join(cell.rjust(w) if i > 3 else cell.ljust(w)
                               for i, (cell, w) in enumerate(zip(row, widths,
                                                                 strict=False))).rstrip()
                     for row in text)
