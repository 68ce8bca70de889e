"""`make bench-scale` at a tiny N, so it does not rot, and its memory guard (the 1M case must stop
itself, not take a shared machine's memory)."""

from __future__ import annotations

import json

from benchmarks import scale


def test_the_scaling_curve_runs_and_is_written(tmp_path):
    out, saved = tmp_path / "BENCHMARKS.md", tmp_path / "scale.json"
    out.write_text("# Benchmarks\n\nkept\n", encoding="utf-8")
    scale.main(["--ns", "200", "--runs", "1", "--json", str(saved), "--out", str(out)])
    text = out.read_text(encoding="utf-8")
    assert "kept" in text and scale.START in text and scale.END in text
    assert "| 200 | engine | 1 |" in text
    # a run of another N adds its row to the curve and keeps the others
    scale.main(["--ns", "300", "--runs", "1", "--json", str(saved), "--out", str(out)])
    assert [case["n"] for case in json.loads(saved.read_text())["cases"]] == [200, 300]
    text = out.read_text(encoding="utf-8")
    assert "| 200 | engine | 1 |" in text and "| 300 | python | 1 |" in text
    assert text.count(scale.START) == 1 and "kept" in text


def test_the_incremental_run_at_scale_is_measured_and_kept(tmp_path):
    """P4 at a tiny N through `make bench-scale`'s --incremental-ns (issue 18 runs it at 1M):
    the run reads O(changed) links, and a later curve-only run keeps its figures."""
    out, saved = tmp_path / "BENCHMARKS.md", tmp_path / "scale.json"
    out.write_text("# Benchmarks\n", encoding="utf-8")
    scale.main(["--ns", "200", "--runs", "1", "--incremental-ns", "400", "--json", str(saved),
                "--out", str(out)])
    (run,) = json.loads(saved.read_text())["incremental"]
    assert run["n"] == 400 and run["counters"]["updated_target"] == 50
    assert run["link_reads"]["lookup_by_id"]["links"] == 100
    text = out.read_text(encoding="utf-8")
    assert "P4 over 400 links (100 customers changed" in text
    assert "links read 100, and before grouping the ids and states of 100 (O(changed): " \
           "**met**)" in text
    scale.main(["--ns", "200", "--runs", "1", "--json", str(saved), "--out", str(out)])
    assert "P4 over 400 links" in out.read_text(encoding="utf-8")


def test_a_run_past_the_memory_limit_is_stopped_and_reported(tmp_path):
    result = scale.run_limited(["--variant", "prepare", "--n", "200000", "--store",
                                str(tmp_path / "links.db")], max_rss_mb=1)
    assert result["stopped"].startswith("RSS ")
    case = {"n": 100_000, "runs": [{"engine": result}], "date": "today", "load": [1, 1]}
    text = scale.render({"machine": {"cpu": "cpu", "cores": 2, "memory_gb": 1, "os": "os",
                                     "python": "3", "beam": "2"}, "cases": [case]})
    assert "stopped: RSS" in text and "**missed**" in text
