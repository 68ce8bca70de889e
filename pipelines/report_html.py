"""``talksync report RUN --html FILE``: one run as a self-contained web page.

It answers "what happened to my record": the run's status and exit status (the command's own
policy, :mod:`pipelines.exit_status`), the systems it could not reach and the pairs the circuit
breaker held, each record created or updated with every property's value before and after
(from the run's audit events, :mod:`transforms.audit`), the conflicts with both sides' values and
edit times, the winner and the policy, and the dead letters with their reasons.

The page is built from the files the run wrote into its folder — ``report.json`` (counts per
pair, requests per system, times), ``conflicts.jsonl`` and ``dead_letters.jsonl`` — and the
run's events in the audit log; it needs nothing else: the styles are inline, the chart is inline
SVG drawn here, there are no scripts, fonts or images to fetch, so it can be mailed, archived or
opened offline. Counters that are zero are left out, and so are sections with nothing to show
(or they say so in one line).
"""

from __future__ import annotations

import datetime
import html
import json
from collections.abc import Sequence
from typing import Any

from apache_beam.io.filesystems import FileSystems

from core.planner import SOURCE, TARGET
from core.spec import SpecError, get_dataflow
from pipelines import exit_status
from pipelines.history import read_report
from transforms import audit
from transforms.breaker import held_deletes_message, held_message

#: rows shown per table; the rest are counted and left to the run's JSON Lines files
MAX_ROWS = 1000
_BAR_WIDTH = 420
_BAR_HEIGHT = 16
_LABEL_WIDTH = 205
# (counter, label with {source}/{target}, css class): the chart's bars, in order, per pair
_SERIES = (
    ("created_in_target", "created in {target}", "to-target"),
    ("updated_target", "updated in {target}", "to-target updated"),
    ("created_in_source", "created in {source}", "to-source"),
    ("updated_source", "updated in {source}", "to-source updated"),
    ("linked_by_match", "linked by match key", "linked"),
    ("conflicts", "conflicts settled", "conflicts"),
    ("dead_letters", "dead letters", "dead"),
)
#: the counters of writes that have an audit event with before → after
_WRITES = ("created_in_target", "created_in_source", "updated_target", "updated_source")
_STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px auto;
  max-width:1100px;padding:0 16px;color:#1f2937;background:#fff}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px}
.meta{color:#4b5563}.meta code{background:#f3f4f6;padding:1px 4px;border-radius:3px}
.cards{display:flex;gap:12px;flex-wrap:wrap;margin:16px 0}
.card{border:1px solid #e5e7eb;border-radius:8px;padding:8px 14px;min-width:110px}
.card b{display:block;font-size:20px}.card span{color:#6b7280;font-size:12px}
table{border-collapse:collapse;width:100%;margin:6px 0}
th,td{border-bottom:1px solid #e5e7eb;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f9fafb;font-weight:600}td.n{text-align:right;font-variant-numeric:tabular-nums}
td.winner{background:#ecfdf5;font-weight:600}td.loser{color:#6b7280;text-decoration:line-through}
td.msg{max-width:480px;word-break:break-word}.none{color:#6b7280;font-style:italic}
.status{font-size:16px;padding:8px 14px;border-radius:8px;margin:12px 0 4px}
.status.ok{background:#ecfdf5;color:#065f46}.status.dead{background:#fffbeb;color:#92400e}
.status.failed{background:#fef2f2;color:#991b1b}ul.problems{margin:4px 0 0;padding-left:20px}
tr.record-head th{background:#f3f4f6;font-weight:500}tr.record-head code{font-weight:600}
td.before{color:#6b7280}td.arrow{color:#9ca3af;width:1em}td.after{font-weight:600}
td.value,td.before,td.after{max-width:360px;word-break:break-word}
svg text{font:12px system-ui,sans-serif;fill:#374151}svg .pair{font-weight:600;fill:#111827}
rect.to-target{fill:#2563eb}rect.to-source{fill:#d97706}rect.updated{opacity:.6}
rect.linked{fill:#059669}rect.conflicts{fill:#7c3aed}rect.dead{fill:#dc2626}
rect.request{fill:#0891b2}.legend{display:flex;gap:14px;flex-wrap:wrap;font-size:12px}
.legend i{display:inline-block;width:10px;height:10px;margin-right:4px;border-radius:2px}
"""


def render(run_dir: str, audit_dir: str | None = None) -> str:
    """The HTML page of the run whose files are in ``run_dir``; its record changes are read
    from the audit log in ``audit_dir`` (none shown without one)."""
    section = read_report(run_dir)
    systems = _systems(section["dataflow"])
    conflicts = _read_lines(FileSystems.join(run_dir, "conflicts.jsonl"))
    letters = _read_lines(FileSystems.join(run_dir, "dead_letters.jsonl"))
    title = f"talksync {section['mode']} run {section['run_id']} — {section['dataflow']}"
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title><style>{_STYLE}</style></head><body>",
        _header(section), _status(section, len(letters)), _cards(section, conflicts, letters),
        _chart(section, systems), _counts_table(section),
        _changes(section, audit_dir, systems), _conflicts(conflicts, systems),
        _dead_letters(letters), _requests(section), "</body></html>", ""])


def write_html(run_dir: str, out: str, audit_dir: str | None = None) -> str:
    """Writes the page of the run in ``run_dir`` to ``out`` (local or ``gs://``)."""
    with FileSystems.create(out) as handle:
        handle.write(render(run_dir, audit_dir).encode("utf-8"))
    return out


def run_folder(run: str, runs_dir: str) -> str:
    """The folder of ``run``: a run id under ``runs_dir``, or a run folder's path."""
    if FileSystems.exists(FileSystems.join(run, "report.json")):
        return run
    return FileSystems.join(runs_dir, run)


# --- parts of the page ----------------------------------------------------------------------

def _header(section: dict) -> str:
    duration = section.get("duration_s")
    return (f"<header><h1>{_e(section['dataflow'])}</h1>"
            f'<p class="meta">{_e(section["mode"])} run <code id="run-id">'
            f'{_e(section["run_id"])}</code> · started {_e(_moment(section.get("started_at")))}'
            f' · finished {_e(_moment(section.get("finished_at")))} · duration '
            f'<b id="duration">{"?" if duration is None else f"{duration:.1f} s"}</b></p>'
            "</header>")


_STATUS_CLASS = {exit_status.EXIT_OK: "ok", exit_status.EXIT_DEAD_LETTERS: "dead"}


def _status(section: dict, letters: int) -> str:
    """How the run ended, with the exit status `talksync run` gave it, and why."""
    status = exit_status.section_status(section)
    problems = [
        f'<li class="unreachable" data-system="{_e(system)}">{_e(system)} could not be '
        f"reached ({_plural(count, 'request')} got no answer); the pairs that read it were not "
        "synced, the next run reads them again</li>"
        for system, count in sorted(section.get("unreachable", {}).items())]
    problems += [
        f'<li class="held" data-pair="{_e(pair)}">held by the circuit breaker: '
        f'{_e(held_message(pair, updates, section.get("max_updates_per_pair", "?")))}</li>'
        for pair, updates in exit_status.held_pairs(section).items()]
    problems += [
        f'<li class="held" data-pair="{_e(pair)}">held by the circuit breaker: '
        f'{_e(held_deletes_message(pair, n, section.get("max_deletes_per_pair", "?")))}</li>'
        for pair, n in exit_status.held_for_deletes(section).items()]
    if letters:
        problems.append(f'<li class="dead">{_plural(letters, "dead letter")}, retried on the '
                        "next run (below)</li>")
    listed = f'<ul class="problems">{"".join(problems)}</ul>' if problems else ""
    css = _STATUS_CLASS.get(status, "failed")
    return (f'<section id="status"><div class="status {css}" id="exit-status" '
            f'data-exit="{status}"><b>{_e(exit_status.meaning(status))}</b> · exit status '
            f"{status}{listed}</div></section>")


def _cards(section: dict, conflicts: list, letters: list) -> str:
    pairs = section["pairs"].values()

    def total(*keys):
        return sum(counts.get(k, 0) for counts in pairs for k in keys)
    cards = [("created", total("created_in_target", "created_in_source")),
             ("linked", total("linked_by_match")),
             ("updated", total("updated_target", "updated_source")),
             ("deleted", total("deleted_in_target", "deleted_in_source")),
             ("unlinked", total("unlinked")),
             ("conflicts", len(conflicts)), ("dead letters", len(letters)),
             ("requests", sum(section.get("requests", {}).values()))]
    shown = [(name, value) for name, value in cards if value]
    if not shown:
        return ""
    return '<div class="cards">' + "".join(
        f'<div class="card" data-card="{_e(name)}"><b>{value}</b><span>{_e(name)}</span></div>'
        for name, value in shown) + "</div>"


def _chart(section: dict, systems: dict) -> str:
    """Per pair, one horizontal bar per direction and kind of write, scaled to the largest;
    only the kinds that happened, only the pairs where something did (else no chart)."""
    pairs = {pair: [series for series in _SERIES if counts.get(series[0], 0)]
             for pair, counts in section["pairs"].items()}
    pairs = {pair: series for pair, series in pairs.items() if series}
    if not pairs:
        return ""
    peak = max(section["pairs"][pair].get(c, 0) for pair, series in pairs.items()
               for c, _, _ in series)
    row = _BAR_HEIGHT + 4
    height = sum(row * (len(series) + 1) + 10 for series in pairs.values())
    parts = [f'<svg id="counts-chart" role="img" '
             f'width="{_LABEL_WIDTH + _BAR_WIDTH + 60}" height="{height}" '
             f'aria-label="writes per pair and direction">']
    y = 0
    for pair, series in pairs.items():
        y += row
        parts.append(f'<text class="pair" x="0" y="{y - 4}">{_e(pair)}</text>')
        for counter, label, css in series:
            value = section["pairs"][pair][counter]
            width = round(_BAR_WIDTH * value / peak, 1)
            text = label.format(**systems)
            parts.append(
                f'<g class="bar-row"><text x="12" y="{y + _BAR_HEIGHT - 4}">{_e(text)}</text>'
                f'<rect class="bar {css}" data-pair="{_e(pair)}" data-counter="{counter}" '
                f'data-value="{value}" x="{_LABEL_WIDTH}" y="{y}" width="{width}" '
                f'height="{_BAR_HEIGHT}"><title>{_e(pair)}: {_e(text)}: {value}</title></rect>'
                f'<text x="{_LABEL_WIDTH + width + 6}" y="{y + _BAR_HEIGHT - 4}">{value}'
                "</text></g>")
            y += row
        y += 10
    parts.append("</svg>")
    legend = ('<div class="legend">'
              f'<span><i style="background:#2563eb"></i>to {_e(systems["target"])}</span>'
              f'<span><i style="background:#d97706"></i>to {_e(systems["source"])}</span>'
              '<span><i style="background:#059669"></i>linked</span>'
              '<span><i style="background:#7c3aed"></i>conflicts</span>'
              '<span><i style="background:#dc2626"></i>dead letters</span>'
              "<span>(lighter: updates)</span></div>")
    return ('<section id="chart"><h2>Writes per pair and direction</h2>'
            + legend + "".join(parts) + "</section>")


def _counts_table(section: dict) -> str:
    """The counters per pair: only the pairs and counters that are not zero."""
    pairs = {pair: counts for pair, counts in section["pairs"].items() if any(counts.values())}
    counters = [c for c in next(iter(section["pairs"].values()), {})
                if any(counts.get(c, 0) for counts in pairs.values())]
    rows = [[_e(pair)] + [_num(counts.get(c, 0)) for c in counters]
            for pair, counts in pairs.items()]
    return ('<section id="counts"><h2>Counts</h2>'
            + _table("counts-table", ["pair"] + [c.replace("_", " ") for c in counters], rows,
                     "pair-row", "nothing read or written") + "</section>")


def _changes(section: dict, audit_dir: str | None, systems: dict) -> str:
    """Each record the run created or updated, with every written property before → after."""
    head = '<section id="changes"><h2>Records created and updated</h2>'
    if section["mode"] != "sync":
        return head + '<p class="none">a plan run writes nothing (its plan.jsonl says what ' \
                      "a sync would write)</p></section>"
    events = [e for e in _run_events(section, audit_dir)
              if e["operation"] in (audit.CREATE, audit.UPDATE)]
    events.sort(key=lambda e: (e["pair"], e["operation"], e["system"], _written_id(e) or ""))
    bodies = "".join(_record(event, systems) for event in events[:MAX_ROWS])
    written = sum(counts.get(counter, 0) for counts in section["pairs"].values()
                  for counter in _WRITES)
    if not bodies and written:
        return head + f'<p class="none" id="changes-table-empty">{_plural(written, "write")} ' \
            f"counted, but the audit log ({_e(audit_dir or 'not given')}) holds no events of " \
            "this run</p></section>"
    if not bodies:
        return head + '<p class="none" id="changes-table-empty">no records created or ' \
                      "updated</p></section>"
    columns = "".join(f"<th>{h}</th>" for h in ("property", "before", "", "after", "why"))
    return (head + f'<table id="changes-table"><thead><tr>{columns}</tr></thead>{bodies}'
            "</table>" + _more(len(events), "audit log (`talksync history ID`)")
            + "</section>")


def _record(event: dict, systems: dict) -> str:
    """One created or updated record: a heading row, then one row per written property."""
    origin = SOURCE if event["direction"] == "to_target" else TARGET
    origin_id = event["source_id"] if origin == SOURCE else event["target_id"]
    verb = "created in" if event["operation"] == audit.CREATE else "updated in"
    heading = (f'{_e(event["pair"])} · {verb} {_e(event["system"])} {_e(event["entity"])} '
               f'<code>{_e(_written_id(event))}</code> ⇐ {_e(systems.get(origin, origin))} '
               f'<code>{_e(origin_id)}</code>')
    rows = "".join(
        f'<tr class="change" data-property="{_e(row["property"])}"><td>{_e(row["property"])}'
        f'</td><td class="before">{_e(_before(row, event))}</td><td class="arrow">→</td>'
        f'<td class="after">{_e(_shown(row["after"]))}</td><td>from '
        f'{_e(row["from_system"])}; {"conflict: " if row["conflict"] else ""}'
        f'{_e(row["rule"])}</td></tr>' for row in event["properties"])
    return (f'<tbody class="record" data-pair="{_e(event["pair"])}" '
            f'data-operation="{_e(event["operation"])}" data-system="{_e(event["system"])}" '
            f'data-id="{_e(_written_id(event))}"><tr class="record-head"><th colspan="5">'
            f"{heading}</th></tr>{rows}</tbody>")


def _conflicts(conflicts: list, systems: dict) -> str:
    """Each property both sides had changed: both values and edit times, who won, by which
    policy."""
    rows = []
    for c in conflicts[:MAX_ROWS]:
        won_source = c.get("winner") == SOURCE
        rows.append([_e(c.get("pair")), _e(c.get("source_id")), _e(c.get("target_id")),
                     _e(c.get("property")),
                     _cell(c.get("source_value"), "value " + ("winner" if won_source
                                                              else "loser")),
                     _edited(c.get("source_modified"), SOURCE,
                             _elsewhere(c.get("source_edited_in"), systems[SOURCE])),
                     _cell(c.get("target_value"), "value " + ("loser" if won_source
                                                              else "winner")),
                     _edited(c.get("target_modified"), TARGET,
                             _elsewhere(c.get("target_edited_in"), systems[TARGET])),
                     _e(systems.get(c.get("winner"), c.get("winner"))), _e(c.get("rule"))])
    headers = ["pair", f"{systems['source']} id", f"{systems['target']} id", "property",
               f"{systems['source']} value", f"{systems['source']} edited",
               f"{systems['target']} value", f"{systems['target']} edited", "won", "policy"]
    return ('<section id="conflicts"><h2>Conflicts</h2>'
            + _table("conflicts-table", headers, rows, "conflict", "no conflicts")
            + _more(len(conflicts), "conflicts.jsonl") + "</section>")


def _dead_letters(letters: list) -> str:
    rows = [[_e(d.get("pair")), _e(d.get("direction")), _e(d.get("system")),
             _e(d.get("entity")), _e(d.get("entity_id")), _e(d.get("stage")),
             _e(d.get("error_class")), _num(d.get("status")),
             f'<td class="msg">{_e(d.get("message"))}</td>']
            for d in letters[:MAX_ROWS]]
    headers = ["pair", "direction", "system", "entity", "id", "stage", "error", "status",
               "reason"]
    return ('<section id="dead-letters"><h2>Dead letters</h2>'
            + ('<p class="meta">Each is retried on the next run.</p>' if rows else "")
            + _table("dead-letters-table", headers, rows, "dead-letter", "no dead letters")
            + _more(len(letters), "dead_letters.jsonl") + "</section>")


def _requests(section: dict) -> str:
    requests = section.get("requests", {})
    peak = max(list(requests.values()) + [1])
    rows = [[_e(system), _num(count),
             f'<td><svg width="{_BAR_WIDTH}" height="{_BAR_HEIGHT}" role="img" '
             f'aria-label="{_e(system)}: {count}"><rect class="request" data-system='
             f'"{_e(system)}" data-value="{count}" x="0" y="0" '
             f'width="{round(_BAR_WIDTH * count / peak, 1)}" height="{_BAR_HEIGHT}"/></svg></td>']
            for system, count in sorted(requests.items())]
    return ('<section id="requests"><h2>Requests per system</h2>'
            + _table("requests-table", ["system", "requests", ""], rows, "request-row",
                     "no requests") + "</section>")


# --- helpers -------------------------------------------------------------------------------

def _systems(dataflow: str) -> dict:
    """The names the page gives the two sides: the dataflow's systems (or source/target)."""
    try:
        spec = get_dataflow(dataflow)
    except (SpecError, KeyError, ValueError):
        return {"source": "source", "target": "target"}
    return {"source": spec.source.system, "target": spec.target.system}


def _moment(iso: str | None, precise: bool = False) -> str:
    """An ISO time as ``2026-11-22 01:02:03 UTC`` (``precise``: with its milliseconds, when it
    has any: two edits in one second still tell which was later)."""
    if not iso:
        return "?"
    moment = datetime.datetime.fromisoformat(iso)
    if moment.tzinfo:
        moment = moment.astimezone(datetime.UTC)
    if precise and moment.microsecond:
        return moment.strftime("%Y-%m-%d %H:%M:%S.") + f"{moment.microsecond // 1000:03d} UTC"
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def _read_lines(path: str) -> list[dict]:
    if not FileSystems.exists(path):
        return []
    with FileSystems.open(path) as handle:
        text = handle.read().decode("utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _table(table_id: str, headers: Sequence[str], rows: list, row_class: str,
           empty: str = "none") -> str:
    if not rows:
        return f'<p class="none" id="{table_id}-empty">{_e(empty)}</p>'
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join(f'<tr class="{row_class}">'
                   + "".join(c if c.startswith("<td") else f"<td>{c}</td>" for c in row)
                   + "</tr>" for row in rows)
    return f'<table id="{table_id}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _more(total: int, where: str) -> str:
    if total <= MAX_ROWS:
        return ""
    return f'<p class="meta">{total - MAX_ROWS} more in the run\'s {_e(where)}.</p>'


def _cell(value: Any, css: str) -> str:
    text = ("(empty)" if value is None else value if isinstance(value, str)
            else json.dumps(value, ensure_ascii=False))
    return f'<td class="{css}">{_e(text)}</td>'


def _run_events(section: dict, audit_dir: str | None) -> list[dict]:
    """The run's events in the audit log (only the date folders from its start on are read)."""
    if not audit_dir:
        return []
    started = section.get("started_at")
    since = datetime.datetime.fromisoformat(started) if started else None
    return audit.read_events(audit_dir, section["dataflow"], since, section["run_id"])


def _written_id(event: dict) -> str | None:
    return event["target_id"] if event["direction"] == "to_target" else event["source_id"]


def _before(row: dict, event: dict) -> str:
    if row["before"] is None and event["operation"] == audit.CREATE:
        return "(new)"
    return _shown(row["before"])


def _shown(text: str | None) -> str:
    """An audit value (canonical JSON text) as a reader writes it: text as is, numbers and
    dates plainly, lists and objects as JSON."""
    value = audit.value_of(text)
    if value is None:
        return "(empty)"
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(json.loads(text), ensure_ascii=False)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (datetime.date, datetime.datetime)):
        return value.isoformat()
    return str(value)


def _elsewhere(edited_in: str | None, system: str) -> str | None:
    """The system a value was edited in when it is not the one that holds it now."""
    return edited_in if edited_in and edited_in != system else None


def _edited(iso: str | None, side: str, edited_in: str | None = None) -> str:
    """When a person edited a conflict side's value (unknown in runs from before the times
    were kept), and where, when talksync had copied it in from another system
    (docs/decisions/0015-edit-time-provenance.md)."""
    where = f" in {edited_in}" if edited_in else ""
    return (f'<td class="edited" data-side="{side}" data-time="{_e(iso)}">'
            f'{_e(_moment(iso, precise=True) if iso else "unknown")}{_e(where)}</td>')


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _num(value: int | None) -> str:
    return f'<td class="n">{"" if value is None else value}</td>'


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))
