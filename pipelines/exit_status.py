"""The exit status of ``talksync run``, from the report sections of the runs it made.

One policy, read by the command (``pipelines/cli.py``) and by the run's page
(``pipelines/report_html.py``), so the page says the status the command returned:
0 synced; 3 finished with dead letters; 1 failed (a system could not be reached, a pair was held
back by the circuit breaker, the run itself failed, or ``--all`` did not settle within its
passes); 2 bad usage, config or credentials (raised before any run, so never a section's
status).
"""

from __future__ import annotations

from collections.abc import Iterable

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_DEAD_LETTERS = 0, 1, 2, 3
#: Ctrl-C; a reader that closed the pipe (as a process ended by SIGPIPE would say)
EXIT_INTERRUPTED, EXIT_BROKEN_PIPE = 130, 141

#: the statuses of several runs combine to the gravest: a failure outweighs dead letters
_GRAVITY = (EXIT_OK, EXIT_DEAD_LETTERS, EXIT_FAILED, EXIT_USAGE)
_MEANING = {EXIT_OK: "synced", EXIT_DEAD_LETTERS: "finished with dead letters",
            EXIT_FAILED: "failed", EXIT_USAGE: "bad usage or config"}


def held_pairs(section: dict) -> dict[str, int]:
    """``{pair: planned updates}`` of the pairs the circuit breaker held back (``held_updates``;
    reports written before it existed counted them in the pairs' ``held_back``)."""
    if "held_updates" in section:
        return {name: updates for name, updates in section["held_updates"].items() if updates}
    return {name: counts.get("held_back", 0) for name, counts in section["pairs"].items()
            if counts.get("held_back", 0)}


def held_for_deletes(section: dict) -> dict[str, int]:
    """``{pair: planned deletes and unlinks}`` of the pairs the circuit breaker held back for
    their deletes (``held_deletes``, docs/deletes.md)."""
    return {name: n for name, n in section.get("held_deletes", {}).items() if n}


def section_status(section: dict) -> int:
    """The exit status of one finished run: failed when a system could not be reached or a
    pair was held back, else dead letters when there are any, else ok."""
    if held_pairs(section) or held_for_deletes(section) or section.get("unreachable"):
        return EXIT_FAILED
    if sum(counts.get("dead_letters", 0) for counts in section["pairs"].values()):
        return EXIT_DEAD_LETTERS
    return EXIT_OK


def unsettled_status() -> int:
    """The status of an ``--all`` whose last allowed pass still wrote: failed. Its writes are
    sound, but the systems may still disagree (a value the last pass wrote into the hub has
    not reached the other systems), which a scheduler must notice as it notices a pair held
    back; the next run carries on from there."""
    return EXIT_FAILED


def combined(statuses: Iterable[int]) -> int:
    """The status of a command that made several runs: the gravest of theirs."""
    return max(statuses, key=_GRAVITY.index, default=EXIT_OK)


def meaning(status: int) -> str:
    """What an exit status says, in words (``synced``, ``failed``, …)."""
    return _MEANING.get(status, "unknown")
