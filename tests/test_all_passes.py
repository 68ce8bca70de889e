"""`talksync run --all`'s order and pass bound, without running anything (the passes
themselves, end to end: tests/test_provenance_all.py)."""

import pytest

from core.spec import available_dataflows
from pipelines import cli
from pipelines.passes import passes_line, with_unread_writes
from pipelines.run_driver import hub_first


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
    passes = [{"pass": 1, "writes": {"a": 2, "b": 0}, "of": 2},
              {"pass": 2, "writes": {"b": 0}, "of": 2}]
    assert passes_line(passes, True) == \
        "settled in 2 passes: pass 1 wrote 2 (a 2); pass 2 (1 of 2 dataflows) wrote nothing"
    assert passes_line(passes[:1], False) == "did not settle in 1 pass: pass 1 wrote 2 (a 2)"


_SPECS = {spec.name: spec for spec in available_dataflows().values()}
ERP, EXACT, BC, NXT = ("customerp-customwebshop", "exact-customwebshop",
                       "customwebshop-businesscentral", "customwebshop-businessnxt")


def _ran(*runs) -> list[dict]:
    """Sections of a pass: (dataflow, {system: writes}) in the order they ran."""
    return [{"dataflow": name, "writes_by_system": written} for name, written in runs]


def _next(*runs) -> list[str]:
    return [spec.name for spec in with_unread_writes(hub_first(list(_SPECS.values())),
                                                     _ran(*runs))]


def test_a_pass_that_wrote_nothing_leaves_nothing_to_read():
    assert _next((ERP, {}), (EXACT, {}), (BC, {}), (NXT, {})) == []


def test_a_write_into_the_hub_is_news_for_those_that_read_it_before_only():
    # the ERP's dataflow wrote into the webshop first: the three after it read it this pass
    assert _next((ERP, {"customwebshop": 3}), (EXACT, {}), (BC, {}), (NXT, {})) == []
    # Business NXT's dataflow, last, wrote into the webshop: the three before it have not read it
    assert _next((ERP, {}), (EXACT, {}), (BC, {}), (NXT, {"customwebshop": 1})) == \
        [ERP, EXACT, BC]


def test_a_write_into_a_system_only_one_dataflow_reads_is_news_for_nobody():
    # what a dataflow writes into its own systems it reads back as its own (no echo)
    assert _next((ERP, {"customerp": 2}), (EXACT, {"exact": 1}), (BC, {"businesscentral": 4}),
                 (NXT, {"businessnxt": 1})) == []


def test_a_dataflow_not_run_this_pass_reads_what_any_other_wrote():
    # a later pass ran only the Business Central dataflow, which wrote into the webshop
    assert _next((BC, {"customwebshop": 1, "businesscentral": 1})) == [ERP, EXACT, NXT]
