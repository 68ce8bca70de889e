"""The readable table `talksync run` prints after each dataflow, and its legend.

Its columns are the report's counters (:data:`~pipelines.sync_pipeline.REPORT_COUNTERS`), in
the report's order, grouped by ``|``: the records read, what became of them, and the changes
written."""

from __future__ import annotations

import textwrap

from pipelines.sync_pipeline import OUTCOME_COUNTERS, READ_COUNTERS, REPORT_COUNTERS

# (report counter, column label, legend): the summary's columns, in the report's order.
_COLUMNS = [
    ("read_source", "read src", "source records read (each once, retries included)"),
    ("read_target", "read tgt", "target records read"),
    ("created_in_target", "+tgt", "created in the target"),
    ("created_in_source", "+src", "created in the source"),
    ("linked_by_match", "linked", "linked to their match (2 records a link)"),
    ("updated", "updated", "their link updated"),
    ("unchanged", "same", "nothing to write"),
    ("deleted", "deleted", "deleted in their system, or linked to one that is (deletes.md)"),
    ("skipped", "skipped", "nothing to do by design (no create that way)"),
    ("dead", "dead", "sync failed (dead_letters.jsonl)"),
    ("held_back", "held", "not written (circuit breaker, failed read)"),
    ("updated_target", "upd tgt", "updates written to the target"),
    ("updated_source", "upd src", "updates written to the source"),
    ("deleted_in_target", "del tgt", "deletes propagated to the target"),
    ("deleted_in_source", "del src", "deletes propagated to the source"),
    ("unlinked", "unlinked", "links removed after a delete (delete: unlink)"),
    ("conflicts", "conflicts", "properties both sides changed"),
    ("dead_letters", "letters", "dead letters written"),
]
assert [c for c, _, _ in _COLUMNS] == list(REPORT_COUNTERS)
_OUTCOMES_FROM = len(READ_COUNTERS)
_CHANGES_FROM = len(READ_COUNTERS) + len(OUTCOME_COUNTERS)


def format_summary(section: dict, legend: bool = True) -> str:
    """The readable table printed after each run, its legend under it (``legend=False``: the
    tables of one command but its last, which carries the legend once).

    Columns are grouped by ``|``: the records read, what became of them (each record read is
    counted in exactly one of these), and the changes written (counted per change)."""
    title = (f"{section['dataflow']} — {section['mode']} run {section['run_id']} "
             f"in {section['duration_s']:.1f} s")
    headers = ["pair"] + [label for _, label, _ in _COLUMNS]
    rows = [[name] + [str(counts[key]) for key, _, _ in _COLUMNS]
            for name, counts in section["pairs"].items()]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(headers)]
    lines = [title, _table_row(headers, widths), _table_row(["-" * w for w in widths], widths)]
    lines += [_table_row(row, widths) for row in rows]
    requests = ", ".join(f"{system} {n}" for system, n in section["requests"].items())
    lines.append(f"requests: {requests or 'none'}; files: {section['run_dir']}")
    return "\n".join(lines + (summary_legend() if legend else []))


def _table_row(cells: list, widths: list) -> str:
    """One line of the table: the pair left-aligned, counts right-aligned, groups split by |."""
    out = cells[0].ljust(widths[0])
    for index, (cell, width) in enumerate(zip(cells[1:], widths[1:], strict=True)):
        gap = " | " if index in (_OUTCOMES_FROM, _CHANGES_FROM) else "  "
        out += gap + cell.rjust(width)
    return out


def summary_legend(width: int = 100) -> list[str]:
    """The legend under the summary table: each column in a few words, by group."""
    def group(title, columns):
        text = title + "; ".join(f"{label}: {legend}" for _, label, legend in columns)
        return textwrap.wrap(text, width, subsequent_indent="    ")
    outcomes = _COLUMNS[_OUTCOMES_FROM:_CHANGES_FROM]
    total = " + ".join(label for _, label, _ in outcomes)
    return [*group("legend: ", _COLUMNS[:_OUTCOMES_FROM]),
            *group("  each record read is in one of: ", outcomes),
            *textwrap.wrap(f"  so read src + read tgt = {total}", width,
                           subsequent_indent="    "),
            *group("  changes, counted per change: ", _COLUMNS[_CHANGES_FROM:])]
