"""`make bench`: runs P1–P5, each case ≥ 3 times side by side, and writes BENCHMARKS.md.

The results go between the ``<!-- results -->`` markers of BENCHMARKS.md (the rest of the file,
the notes on fixes with their before/after figures, is kept), and as JSON to ``--json``.

Usage: ``python -m benchmarks [--runs 3] [--only P1,P4] [--quick] [--out BENCHMARKS.md]``
(``--quick``: small N, a check that everything runs; it writes no results unless ``--out``.)
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import tempfile

from benchmarks.common import (
    ROOT,
    Spread,
    load_average,
    machine,
    machine_line,
    run_case,
    write_section,
)

START, END = "<!-- results:start -->", "<!-- results:end -->"
P1_TARGET, P4_WALL_S, P5_RSS_MB, P3_EFFICIENCY, P2_FEWER = 2.0, 30.0, 1536.0, 0.90, 50


def p1_engine(runs: int, n: int) -> dict:
    """Floor, engine and plain Python interleaved per run, so each ratio is side by side."""
    with tempfile.TemporaryDirectory(prefix="talksync-bench-") as workdir:
        store = os.path.join(workdir, "links.db")
        run_case("engine", "--variant", "prepare", "--n", str(n), "--store", store)
        rows = []
        for _ in range(runs):
            rows.append({variant: run_case("engine", "--variant", variant, "--n", str(n),
                                           "--store", store)
                         for variant in ("floor", "engine", "python")})
    for row in rows:
        if row["engine"].result["counts"] != row["python"].result["counts"]:
            raise RuntimeError(f"P1: engine and reference disagree: {row['engine'].result} "
                               f"vs {row['python'].result}")
    seconds = {v: [row[v].result["seconds"] for row in rows] for v in rows[0]}
    return {"n": n, "runs": runs, "seconds": seconds,
            "rss_mb": {v: [row[v].peak_rss_mb for row in rows] for v in rows[0]},
            "engine_over_floor": [e / f for e, f in zip(seconds["engine"], seconds["floor"],
                                                        strict=True)],
            "engine_over_python": [e / p for e, p in zip(seconds["engine"], seconds["python"],
                                                         strict=True)],
            "counts": rows[0]["engine"].result["counts"]}


def p2_requests(runs: int, n: int) -> dict:
    return {case: [run_case("request_counts", "--case", case, "--n", str(n)).result
                   for _ in range(runs)] for case in ("customers", "products")}


def p3_rate_limits(runs: int, n: int, scale: float) -> list:
    return [run_case("rate_limits", "--n", str(n), "--scale", str(scale)).result
            for _ in range(runs)]


def p4_incremental(runs: int, n: int, changed: int) -> list:
    return [run_case("incremental", "--n", str(n), "--changed", str(changed)).result
            for _ in range(runs)]


# --- rendering ----------------------------------------------------------------------------------

def _met(ok: bool) -> str:
    return "**met**" if ok else "**missed**"


def render(results: dict) -> str:
    m = results["machine"]
    lines = [machine_line(m) + "; shared with other jobs, so the ratios measured "
             "side by side are the result and absolute times only context. Figures are min / "
             "median / max over the runs; each section says when it ran and the load average "
             "(1 min) before and after it.", ""]

    def when(name: str) -> list:
        at = results.get("when", {}).get(name)
        return [f"_Measured {at['date']}, load average {at['load'][0]:.2f} → "
                f"{at['load'][1]:.2f}._", ""] if at else []
    if "P1" in results:
        r = results["P1"]
        ratio = Spread.of(r["engine_over_floor"])
        lines += [f"### P1 engine — {r['n']:,} source × {r['n']:,} target entities × "
                  f"{r['n']:,} links, {r['runs']} runs", "", *when("P1"),
                  "| variant | seconds | peak RSS (MB) |", "|---|---|---|"]
        names = {"floor": "Beam floor: one CoGroupByKey of the same inputs",
                 "engine": "talksync: LookUpLinks + PlanSync", "python": "plain-Python reference"}
        for variant, label in names.items():
            lines.append(f"| {label} | {Spread.of(r['seconds'][variant]).text()} | "
                         f"{Spread.of(r['rss_mb'][variant]).text(0)} |")
        lines += ["", f"Engine ÷ floor: {ratio.text()} (target ≤ {P1_TARGET}: "
                  f"{_met(ratio.median <= P1_TARGET)}); engine ÷ plain Python: "
                  f"{Spread.of(r['engine_over_python']).text()}. Plans: {r['counts']}.", ""]
    if "P2" in results:
        lines += ["### P2 requests — initial sync of 1,000 records, then a rerun with no edits",
                  "", *when("P2"),
                  "| case | system | read | written | requests | target ≤ | per-record | "
                  "fewer | rerun requests | rerun writes |", "|---" * 10 + "|"]
        verdicts = []
        for case, rows in results["P2"].items():
            for system in rows[0]["systems"]:
                cells = [row["systems"][system] for row in rows]
                fewer = Spread.of([c["per_record"] / c["requests"] for c in cells])
                lines.append(
                    f"| {case} | {system} | {cells[0]['read']} | {cells[0]['written']} | "
                    f"{Spread.of([c['requests'] for c in cells]).text(0)} | "
                    f"{cells[0]['target_max']} | {cells[0]['per_record']} | "
                    f"{fewer.text(0, '×')} | "
                    f"{Spread.of([c['rerun_requests'] for c in cells]).text(0)} | "
                    f"{max(c['rerun_writes'] for c in cells)} |")
            totals = [(sum(c["per_record"] for c in row["systems"].values()),
                       sum(c["requests"] for c in row["systems"].values())) for row in rows]
            fewer_total = Spread.of([p / q for p, q in totals])
            lines.append(f"| {case} | both | | | {Spread.of([q for _, q in totals]).text(0)} | "
                         f"| {totals[0][0]} | {fewer_total.text(0, '×')} | | |")
            within = all(c["requests"] <= c["target_max"]
                         for row in rows for c in row["systems"].values())
            quiet = all(c["rerun_writes"] == 0 and c["rerun_requests"] <= 2
                        for row in rows for c in row["systems"].values())
            to = rows[0]["to"]
            fewer_to = Spread.of([row["systems"][to]["per_record"] / row["systems"][to]["requests"]
                                  for row in rows])
            verdicts.append(
                f"{case} ({rows[0]['dataflow']}, pair {rows[0]['pair']}): requests within "
                f"target {_met(within)}; ≥ {P2_FEWER}× fewer than per-record into {to} (the "
                f"{rows[0]['n']:,} records' way, {rows[0]['from']} → {to}) "
                f"{_met(fewer_to.median >= P2_FEWER)}, over both systems "
                f"{_met(fewer_total.median >= P2_FEWER)}; rerun ≤ 2 requests and 0 "
                f"writes per system {_met(quiet)}; initial sync "
                f"{Spread.of([row['initial_s'] for row in rows]).text()} s.")
        lines += [""] + [f"- {v}" for v in verdicts] + [""]
    if "P3" in results:
        rows = results["P3"]
        first = rows[0]
        eff = Spread.of([row["efficiency"] for row in rows])
        per_window = all(row["erp_429"] <= row["windows"] for row in rows)
        lines += [f"### P3 rate limits — customer creates into the ERP at {first['limit']} "
                  f"requests / {first['window_s']:g} s (its 600 / 60 s scaled in time), "
                  f"webshop at its real 20 / s", "", *when("P3"),
                  "| run | ERP requests | windows | bound (s) | took (s) | efficiency | "
                  "ERP 429s | webshop 429s |", "|---|---|---|---|---|---|---|---|"]
        for i, row in enumerate(rows, 1):
            lines.append(f"| {i} | {row['erp_requests']} | {row['windows']} | {row['bound_s']:g} "
                         f"| {row['span_s']:.2f} | {row['efficiency']:.1%} | {row['erp_429']} | "
                         f"{row['shop_429']} |")
        lines += ["", f"Efficiency {eff.text(3)} (target ≥ {P3_EFFICIENCY:.0%}: "
                  f"{_met(eff.median >= P3_EFFICIENCY)}); at most one 429 per window: "
                  f"{_met(per_window)}.", ""]
    if "P4" in results:
        rows = results["P4"]
        wall = Spread.of([row["wall_s"] for row in rows])
        reads = rows[0]["link_reads"]
        links_read = Spread.of([sum(v["links"] for k, v in row["link_reads"].items()
                                    if k.startswith(("lookup", "pending", "reserve"))
                                    and not k.startswith("lookup_refs"))
                                for row in rows])
        refs_read = Spread.of([sum(v["links"] for k, v in row["link_reads"].items()
                                   if k.startswith("lookup_refs")) for row in rows])
        lines += [f"### P4 incremental — {rows[0]['changed']} changed among "
                  f"{rows[0]['n']:,} linked customers", "", *when("P4"),
                  f"Wall time of `talksync run` from process start to exit: {wall.text()} s "
                  f"(target < {P4_WALL_S:g} s: {_met(wall.median < P4_WALL_S)}); the run "
                  f"itself {Spread.of([row['run_s'] for row in rows]).text()} s. Links read "
                  f"from the store: {links_read.text(0)}, and before grouping the ids and "
                  f"states of {refs_read.text(0)} (O(changed): "
                  f"{_met(links_read.high + refs_read.high <= 3 * rows[0]['changed'])}). "
                  "Reads by method "
                  "(calls / links or values returned): "
                  + ", ".join(f"`{k}` {v['calls']} / {v['links']}" for k, v in reads.items())
                  + f". Plans: updated {rows[0]['counters']['updated_target']} in the webshop, "
                  f"{rows[0]['counters']['updated_source']} in the ERP.", ""]
    rss = {}
    if "P1" in results:
        n = f"{results['P1']['n']:,}"
        rss[f"P1 engine, {n} × {n} × {n}"] = results["P1"]["rss_mb"]["engine"]
    if "P4" in results:
        rss[f"P4 incremental run over {results['P4'][0]['n']:,} links"] = [
            r["sync_peak_rss_mb"] for r in results["P4"]]
    if rss:
        lines += ["### P5 memory — peak RSS", "", "| run | peak RSS (MB) | target ≤ 1,536 MB |",
                  "|---|---|---|"]
        for label, values in rss.items():
            spread = Spread.of(values)
            lines.append(f"| {label} | {spread.text(0)} | {_met(spread.high <= P5_RSS_MB)} |")
        lines.append("")
    return "\n".join(lines)


def write_results(path: pathlib.Path, text: str) -> None:
    write_section(path, START, END, text)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", default="P1,P2,P3,P4", help="comma-separated (P5 comes "
                        "from P1 and P4)")
    parser.add_argument("--quick", action="store_true", help="small N (a smoke run)")
    parser.add_argument("--out", help="the Markdown file whose results section is rewritten "
                        "(default BENCHMARKS.md; with --quick, none unless given)")
    parser.add_argument("--json", default=os.path.join(ROOT, "benchmarks", "results.json"),
                        help="the raw results, kept: --only reruns some and keeps the others")
    args = parser.parse_args(argv)
    only = {name.strip().upper() for name in args.only.split(",")}
    big = 100_000 if not args.quick else 500
    steps = {"P1": lambda: p1_engine(args.runs, big),
             "P2": lambda: p2_requests(args.runs, 1000 if not args.quick else 320),
             "P3": lambda: p3_rate_limits(args.runs, 450 if not args.quick else 300,
                                          4.0 if not args.quick else 20.0),
             "P4": lambda: p4_incremental(args.runs, big, 100 if not args.quick else 10)}
    saved = pathlib.Path(args.json)
    results = json.loads(saved.read_text()) if saved.exists() and not args.quick else {}
    results["machine"] = machine()
    for name, step in steps.items():
        if name in only:
            print(f"{name} …", file=sys.stderr, flush=True)
            before = load_average()[0]
            results[name] = step()
            results.setdefault("when", {})[name] = {"date": machine()["date"],
                                                    "load": [before, load_average()[0]]}
            if not args.quick:
                saved.write_text(json.dumps(results, indent=1, default=str))
    text = render(results)
    out = args.out or (None if args.quick else os.path.join(ROOT, "BENCHMARKS.md"))
    if out:
        write_results(pathlib.Path(out), text)
    print(text)


if __name__ == "__main__":
    main()
