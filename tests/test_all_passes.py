"""`talksync run --all`'s order and pass bound, without running anything (the passes
themselves, end to end: tests/test_provenance_all.py)."""

import pytest

from core.spec import available_dataflows
from pipelines import cli
from pipelines.run_driver import hub_first, passes_line


def test_all_runs_the_dataflows_feeding_the_hub_first():
    order = [spec.name for spec in hub_first(list(available_dataflows().values()))]
    assert order == ["customerp-customwebshop", "exact-customwebshop",
                     "customwebshop-businesscentral", "customwebshop-businessnxt"]


@pytest.mark.parametrize("value", ["0", "-1", "two"])
def test_max_passes_must_be_a_whole_number_of_at_least_one(value, capsys):
    assert cli.main(["run", "--all", "--max_passes", value]) == 2
    err = capsys.readouterr().err
    assert "--max_passes" in err and "Traceback" not in err


def test_the_passes_line_says_what_each_pass_wrote():
    passes = [{"pass": 1, "writes": {"a": 2, "b": 0}}, {"pass": 2, "writes": {"a": 0, "b": 0}}]
    assert passes_line(passes, True) == \
        "settled in 2 passes: pass 1 wrote 2 (a 2); pass 2 wrote nothing"
    assert passes_line(passes[:1], False) == "did not settle in 1 pass: pass 1 wrote 2 (a 2)"
