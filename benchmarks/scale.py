"""`make bench-scale`: the P1 scaling curve, the engine's plan at 10k, 100k and 1M (issue 18).

Each N runs the three P1 variants (``benchmarks/engine.py``: Beam's floor, the engine, plain
Python) side by side in fresh processes, with each child's peak RSS. A child whose RSS passes
``--max-rss-gb`` is stopped and recorded as such (the machine is shared: a run that would take
all of its memory is a result, "missed", not a reason to take the machine down). The Beam floor
is skipped at N where the previous N's floor, scaled linearly, would pass that limit.

``--incremental-ns`` adds P4 (``benchmarks/incremental.py``: 100 changed customers, an
incremental ``talksync run`` timed from its start to its exit, its link-store reads counted)
over that many links, once each, after the curve: issue 18 asks for it at 1M links.

The results go between the ``<!-- scale:start -->`` markers of BENCHMARKS.md and, raw, into
``benchmarks/scale.json``, which keeps the other N's: ``--ns 1000000`` reruns only 1M.

Usage: ``python -m benchmarks.scale [--ns 10000,100000,1000000] [--runs 3] [--big-runs 1]
[--incremental-ns 1000000]``
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import threading
import time

from benchmarks.common import (
    RESULT_MARKER,
    ROOT,
    Spread,
    load_average,
    machine,
    machine_line,
    run_case,
    write_section,
)

START, END = "<!-- scale:start -->", "<!-- scale:end -->"
VARIANTS = ("floor", "engine", "python")
#: issue 18's targets: (N, peak RSS MB, engine ÷ reference, the reference)
TARGETS = {100_000: (600, 1.5, "floor"), 1_000_000: (6 * 1024, 2.0, "python")}
#: P4 at scale: changed customers, and the target wall time of the run (start-up included)
INCREMENTAL_CHANGED, INCREMENTAL_WALL_S = 100, 30.0
_BIG = 1_000_000


def run_limited(args: list[str], max_rss_mb: float, timeout_s: float = 7200) -> dict:
    """Runs ``python -m benchmarks.engine ARGS``; its result line, or ``{"stopped": why}`` when
    its RSS passed ``max_rss_mb`` (polled every half second) or it ran past ``timeout_s``."""
    command = [sys.executable, "-m", "benchmarks.engine", *args]
    started = time.perf_counter()
    child = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    stopped: dict = {}

    def watch() -> None:
        while child.poll() is None:
            rss = _rss_mb(child.pid)
            stopped["peak_rss_mb"] = max(stopped.get("peak_rss_mb", 0.0), rss)
            if rss > max_rss_mb or time.perf_counter() - started > timeout_s:
                stopped["stopped"] = (f"RSS {rss:.0f} MB > {max_rss_mb:.0f} MB"
                                      if rss > max_rss_mb else f"over {timeout_s:.0f} s")
                child.kill()
                return
            time.sleep(0.5)
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    out, err = child.communicate()
    watcher.join()
    if "stopped" in stopped:
        return {"stopped": stopped["stopped"], "peak_rss_mb": stopped["peak_rss_mb"],
                "seconds": round(time.perf_counter() - started, 1)}
    lines = [line for line in out.splitlines() if line.startswith(RESULT_MARKER)]
    if child.returncode != 0 or not lines:
        raise RuntimeError(f"{' '.join(command)} failed ({child.returncode}):\n{err[-4000:]}")
    return json.loads(lines[-1][len(RESULT_MARKER):])


def _rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def measure(n: int, runs: int, max_rss_mb: float, skip: set[str]) -> dict:
    """The variants at ``n``, interleaved per run; ``skip``: variants not run at this N."""
    with tempfile.TemporaryDirectory(prefix="talksync-scale-") as workdir:
        store = os.path.join(workdir, "links.db")
        prepared = run_limited(["--variant", "prepare", "--n", str(n), "--store", store],
                               max_rss_mb)
        rows = []
        for _ in range(runs):
            rows.append({variant: run_limited(["--variant", variant, "--n", str(n),
                                               "--store", store], max_rss_mb)
                         for variant in VARIANTS if variant not in skip})
            print(f"  {n:,}: {rows[-1]}", file=sys.stderr, flush=True)
    return {"n": n, "runs": rows, "prepare_s": prepared.get("seconds"),
            "skipped": sorted(skip)}


def _ok(run: dict) -> bool:
    return "stopped" not in run


def render(results: dict) -> str:
    m = results["machine"]
    lines = [machine_line(m) + "; shared with other jobs (each N's date and load "
             "average, 1 min, before → after, are under the table). Seconds and peak RSS are "
             "min / median / max over the runs (one run at 1M); "
             "*per record* is peak RSS ÷ N (each record: a source and a target entity and a "
             "link), *added per record* the growth of the median peak RSS from the N before "
             "it, ÷ the records added (the fixed cost of Beam and Python left out).", "",
             "| N | variant | runs | seconds | peak RSS (MB) | per record (KB) | "
             "added per record (KB) |", "|---|---|---|---|---|---|---|"]
    previous: dict[str, tuple[int, float]] = {}
    verdicts = []
    for case in results["cases"]:
        n = case["n"]
        for variant in VARIANTS:
            runs = [row[variant] for row in case["runs"] if variant in row]
            if not runs:
                lines.append(f"| {n:,} | {variant} | 0 | not run (would not fit) | | |")
                continue
            done = [r for r in runs if _ok(r)]
            if not done:
                lines.append(f"| {n:,} | {variant} | {len(runs)} | stopped: "
                             f"{runs[0]['stopped']} after {runs[0]['seconds']} s | "
                             f"> {runs[0]['peak_rss_mb']:.0f} | |")
                continue
            rss = Spread.of([r["peak_rss_mb"] for r in done])
            added = ""
            if variant in previous:
                before_n, before_rss = previous[variant]
                added = f"{(rss.median - before_rss) * 1024 / (n - before_n):.1f}"
            previous[variant] = (n, rss.median)
            lines.append(f"| {n:,} | {variant} | {len(done)} | "
                         f"{Spread.of([r['seconds'] for r in done]).text()} | {rss.text(0)} | "
                         f"{rss.median * 1024 / n:.1f} | {added} |")
        verdicts += _verdict(case)
    verdicts += [f"{case['n']:,}: measured {case['date']}, load average {case['load'][0]:.1f} → "
                 f"{case['load'][1]:.1f}." for case in results["cases"]]
    return "\n".join(lines + [""] + [f"- {v}" for v in verdicts] + [""]
                     + [line + "\n" for line in render_incremental(
                         results.get("incremental", []))])


def _verdict(case: dict) -> list[str]:
    n = case["n"]
    if n not in TARGETS:
        return []
    rss_max, ratio_max, reference = TARGETS[n]
    pairs = [(row["engine"], row.get(reference)) for row in case["runs"]]
    if not all(_ok(e) for e, _ in pairs):
        return [f"{n:,}: the engine did not finish ({pairs[0][0].get('stopped')}): "
                f"≤ {rss_max} MB **missed**"]
    rss = Spread.of([e["peak_rss_mb"] for e, _ in pairs])
    text = (f"{n:,}: engine peak RSS {rss.median:.0f} MB (target ≤ {rss_max} MB: "
            f"{'**met**' if rss.high <= rss_max else '**missed**'})")
    ratios = [e["seconds"] / r["seconds"] for e, r in pairs if r and _ok(r)]
    if ratios:
        spread = Spread.of(ratios)
        text += (f"; engine ÷ {reference} {spread.text()} (target ≤ {ratio_max}: "
                 f"{'**met**' if spread.median <= ratio_max else '**missed**'})")
    return [text]


def measure_incremental(n: int) -> dict:
    """P4 over ``n`` links, once, in a child process (which holds the two emulators' ``n``
    rows each and runs ``talksync run`` as its own child)."""
    before = load_average()[0]
    run = run_case("incremental", "--n", str(n), "--changed", str(INCREMENTAL_CHANGED),
                   timeout_s=7200)
    return {**run.result, "date": machine()["date"], "load": [before, load_average()[0]]}


def render_incremental(runs: list[dict]) -> list[str]:
    """One paragraph per P4 run at scale."""
    lines = []
    for run in runs:
        reads = run["link_reads"]
        links = sum(v["links"] for k, v in reads.items()
                    if k.startswith(("lookup", "pending", "reserve"))
                    and not k.startswith("lookup_refs"))
        refs = sum(v["links"] for k, v in reads.items() if k.startswith("lookup_refs"))
        wall_ok = run["wall_s"] < INCREMENTAL_WALL_S
        reads_ok = links + refs <= 3 * run["changed"]
        lines.append(
            f"P4 over {run['n']:,} links ({run['changed']} customers changed, half in each "
            f"system; measured {run['date']}, load average {run['load'][0]:.1f} → "
            f"{run['load'][1]:.1f}): `talksync run` took {run['wall_s']:.2f} s from process "
            f"start to exit (target < {INCREMENTAL_WALL_S:g} s: "
            f"{'**met**' if wall_ok else '**missed**'}), the run itself {run['run_s']:.2f} s, "
            f"peak RSS {run['sync_peak_rss_mb']:.0f} MB; links read {links}, and before "
            f"grouping the ids and states of {refs} (O(changed): "
            f"{'**met**' if reads_ok else '**missed**'}). Set-up (not timed: emulators' state "
            f"and link store generated directly) {run['setup_s']:.0f} s.")
    return lines


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--ns", default="10000,100000,1000000")
    parser.add_argument("--runs", type=int, default=3, help="runs per N below 1M")
    parser.add_argument("--big-runs", type=int, default=1, help="runs at 1M and above")
    parser.add_argument("--max-rss-gb", type=float, default=12.0)
    parser.add_argument("--incremental-ns", default="",
                        help="P4 (100 changed) over these many links, e.g. 1000000")
    parser.add_argument("--json", default=os.path.join(ROOT, "benchmarks", "scale.json"))
    parser.add_argument("--out", default=os.path.join(ROOT, "BENCHMARKS.md"))
    args = parser.parse_args(argv)
    limit = args.max_rss_gb * 1024
    cases, floor_per_record = [], None
    for n in sorted(int(value) for value in args.ns.split(",")):
        skip = set()
        if floor_per_record is not None and floor_per_record * n > limit:
            skip.add("floor")
        print(f"P1 at {n:,} …", file=sys.stderr, flush=True)
        before = load_average()[0]
        case = measure(n, args.big_runs if n >= _BIG else args.runs, limit, skip)
        case.update(date=machine()["date"], load=[before, load_average()[0]])
        floors = [row["floor"]["peak_rss_mb"] for row in case["runs"]
                  if "floor" in row and _ok(row["floor"])]
        if floors:
            floor_per_record = max(floors) / n
        cases.append(case)
    incremental = []
    for n in sorted(int(value) for value in args.incremental_ns.split(",") if value):
        print(f"P4 over {n:,} links …", file=sys.stderr, flush=True)
        incremental.append(measure_incremental(n))
    saved = pathlib.Path(args.json)
    kept = json.loads(saved.read_text()) if saved.exists() else {}
    measured = {case["n"] for case in cases}
    cases = sorted([c for c in kept.get("cases", []) if c["n"] not in measured] + cases,
                   key=lambda c: c["n"])
    measured = {run["n"] for run in incremental}
    incremental = sorted([r for r in kept.get("incremental", []) if r["n"] not in measured]
                         + incremental, key=lambda r: r["n"])
    results = {"machine": machine(), "cases": cases, "incremental": incremental}
    saved.write_text(json.dumps(results, indent=1, default=str))
    text = render(results)
    if args.out:
        write_section(pathlib.Path(args.out), START, END, text)
    print(text)


if __name__ == "__main__":
    main()
