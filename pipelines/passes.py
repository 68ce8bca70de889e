"""Which dataflows another ``--all`` pass must run, and the line that says how the passes went.

Dataflows that share a system see each other's writes only by reading them: a value the ERP's
dataflow writes into the webshop is news for every other dataflow that reads the webshop. A
dataflow reads its own writes back as its own (no echo), so after it ran it has something new
to read only where *another* dataflow wrote into one of its systems after it (before it in the
same pass, it already read). :func:`with_unread_writes` picks exactly those for the next pass;
when none is left, the passes have settled: another pass would read nothing new.

Edits people make while the passes run are read by the next run, as any edit made after a run.
"""

from __future__ import annotations

from collections.abc import Sequence

from core.spec import DataflowSpec


def systems_written(section: dict) -> set[str]:
    """The systems a dataflow run wrote into (its section's ``writes_by_system``)."""
    return {system for system, count in section.get("writes_by_system", {}).items() if count}


def with_unread_writes(specs: Sequence[DataflowSpec],
                       sections: Sequence[dict]) -> list[DataflowSpec]:
    """The dataflows of ``specs`` (in their order) that a pass whose runs are ``sections`` (in
    the order they ran) left something new to read: a system of theirs that another dataflow
    wrote into after they last read it."""
    position = {section["dataflow"]: at for at, section in enumerate(sections)}
    unread = set()
    for at, section in enumerate(sections):
        written = systems_written(section)
        for spec in specs:
            if spec.name == section["dataflow"] or not written & _systems(spec):
                continue
            if position.get(spec.name, -1) < at:    # ran before the write, or not this pass
                unread.add(spec.name)
    return [spec for spec in specs if spec.name in unread]


def _systems(spec: DataflowSpec) -> set[str]:
    return {spec.source.system, spec.target.system}


def passes_line(passes: list[dict], settled: bool) -> str:
    """``settled in 2 passes: pass 1 wrote 3 (…); pass 2 (1 of 4 dataflows) wrote nothing``:
    a pass after the first names how many dataflows had something new to read."""
    parts = []
    for done in passes:
        total = sum(done["writes"].values())
        ran = len(done["writes"])
        of_all = done.get("of", ran)
        label = (f"pass {done['pass']}" if ran == of_all
                 else f"pass {done['pass']} ({ran} of {of_all} dataflows)")
        detail = ", ".join(f"{name} {count}" for name, count in done["writes"].items() if count)
        parts.append(f"{label} wrote {total} ({detail})" if total else f"{label} wrote nothing")
    verdict = "settled" if settled else "did not settle"
    return f"{verdict} in {count_passes(len(passes))}: " + "; ".join(parts)


def count_passes(count: int) -> str:
    """``1 pass``, ``2 passes``."""
    return f"{count} pass" + ("es" if count != 1 else "")
