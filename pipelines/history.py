"""``talksync history`` and ``talksync runs``: the story of one record, and the last runs.

``history`` reads the audit log (:mod:`transforms.audit`) and tells, run by run, what talksync
did to a record — found by its id in either system — and where each value came from.
``runs`` lists the last runs from the reports each run writes into its run folder.
Both read through Beam's ``FileSystems``, so a ``gs://`` audit log or runs folder works too.
"""

from __future__ import annotations

import datetime
import json
import pathlib
import re
from collections.abc import Iterable, Sequence

from apache_beam.io.filesystems import FileSystems

from pipelines.config import DEFAULT_LINK_STORE, DEFAULT_RUNS_DIR, Config, load_config
from transforms import audit

_VALUE_WIDTH = 60
_RELATIVE = re.compile(r"^(\d+)([dhm])$")
_UNITS = {"d": "days", "h": "hours", "m": "minutes"}


# --- where the files are -------------------------------------------------------------------

def locations(config_path: str | None, runs_dir: str | None = None,
              audit_dir: str | None = None) -> tuple[str, str]:
    """(runs folder, audit folder): the options given, else the config's, else the defaults.
    The config is read when it is named or ``talksync.yaml`` exists here."""
    config = None
    if config_path or pathlib.Path("talksync.yaml").exists():
        config = load_config(config_path or "talksync.yaml")
    if config is None:
        config = Config(link_store=DEFAULT_LINK_STORE, runs_dir=DEFAULT_RUNS_DIR,
                        systems={})
    return runs_dir or config.runs_dir, audit_dir or config.audit_location(runs_dir)


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
    """`talksync history`: the readable story of one record."""
    return format_history(
        record_events(audit.read_events(audit_dir, dataflow, since), entity_id), entity_id)


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
