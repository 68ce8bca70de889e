"""End to end, all five systems: edit-time provenance across the hub and `--all` converging
(issue 15, points 1 and 2; docs/decisions/0015-edit-time-provenance.md).

The webshop takes part in all four dataflows, so a value reaches Business Central from the ERP
through it. Before, "latest change wins" compared the webshop's modified time, which is when
talksync copied the ERP's value in, and an older ERP edit beat a newer Business Central edit.
Each test edits its own customer in the emulators, in the order the test says (each emulator
stamps an edit with its clock, so the later edit has the later time: no sleeping), then runs,
on a SQLite link store here and on a Firestore (emulator) one in
tests/test_provenance_all_firestore.py. Both start from a copy of one first `--all` that
settled, made once per test session (tests/five_systems.py).
"""

from __future__ import annotations

import hashlib
import json
import pathlib

import pytest

from pipelines.exit_status import EXIT_FAILED, EXIT_OK
from tests.five_systems import CUSTOMERS, SYSTEMS, settled_five

#: `make test` starts this module among the first (tests/conftest.py): it takes minutes
pytestmark = pytest.mark.long_module


@pytest.fixture(scope="module")
def five(tmp_path_factory):
    """The five systems settled, on a SQLite link store (a copy of the session's settled state,
    tests/five_systems.py)."""
    yield from settled_five(tmp_path_factory)


def _phone(label: str) -> str:
    """A phone number of its own for each edit (stable: the same label, the same number)."""
    digest = int(hashlib.sha256(label.encode()).hexdigest(), 16)
    return f"+47 {digest % 90_000_000 + 10_000_000}"


#: --all's order: the dataflows feeding the webshop (its target) first, then those it feeds
HUB_FIRST = ("customerp-customwebshop", "exact-customwebshop", "customwebshop-businesscentral",
             "customwebshop-businessnxt")


def _edit_in_both_orders(five) -> tuple[str, str]:
    """Two customers, each edited in the ERP and in Business Central, in opposite orders;
    returns (the one Business Central edited last, the one the ERP edited last)."""
    bc_last, erp_last = five.next_customer(), five.next_customer()
    five.set_phone("customerp", bc_last, _phone(f"{bc_last} customerp"))
    five.set_phone("businesscentral", bc_last, _phone(f"{bc_last} businesscentral"))
    five.set_phone("businesscentral", erp_last, _phone(f"{erp_last} businesscentral"))
    five.set_phone("customerp", erp_last, _phone(f"{erp_last} customerp"))
    return bc_last, erp_last


def _assert_everywhere(five, email: str, edited_in: str) -> None:
    assert five.phones(email) == dict.fromkeys(SYSTEMS, _phone(f"{email} {edited_in}"))


def _conflicts(report: dict) -> list[dict]:
    rows = []
    for section in report["dataflows"]:
        path = pathlib.Path(section["run_dir"]) / "conflicts.jsonl"
        if path.exists():
            rows += [json.loads(line) for line in path.read_text().splitlines()]
    return rows


def test_the_later_edit_wins_in_every_system_and_a_second_all_writes_nothing(five):
    """The issue's case: a phone number edited in the ERP at T and in Business Central at
    T+, then `--all`: Business Central's edit in every system; and the reverse order. The ERP's
    dataflow runs first (hub first), so when the Business Central dataflow compares, the
    webshop holds the ERP's value, copied in after both edits.

    In the same run, three-hop chains: ERP edits that reached the webshop (one earlier run of
    the ERP's dataflow) and were then edited later in Business Central, Business NXT or Exact
    before travelling on: the later edit wins everywhere; and an ERP edit alone reaches all
    four other systems."""
    later = {"businesscentral": five.next_customer(), "businessnxt": five.next_customer(),
             "exact": five.next_customer()}
    alone = five.next_customer()
    for email in [*later.values(), alone]:
        five.set_phone("customerp", email, _phone(f"{email} customerp"))
    assert five.run_dataflows("customerp-customwebshop", args=CUSTOMERS)[0] == EXIT_OK
    for email in [*later.values(), alone]:
        assert five.phone("customwebshop", email) == _phone(f"{email} customerp")
    for system, email in later.items():
        five.set_phone(system, email, _phone(f"{email} {system}"))
    bc_last, erp_last = _edit_in_both_orders(five)

    status, report = five.run_dataflows(args=CUSTOMERS)

    assert status == EXIT_OK, report["passes"]
    assert [section["dataflow"] for section in report["dataflows"]][:4] == list(HUB_FIRST)
    _assert_everywhere(five, bc_last, "businesscentral")
    _assert_everywhere(five, erp_last, "customerp")
    for system, email in later.items():
        _assert_everywhere(five, email, system)
    _assert_everywhere(five, alone, "customerp")
    assert report["settled"] is True and len(report["passes"]) <= 3
    # settled: the last pass wrote nothing into the webshop, the system the others read (what
    # it wrote into the ERP, Exact or Business Central only their own dataflow reads, as its
    # own write), and a pass runs only the dataflows with a write of another's left to read
    last = [s for s in report["dataflows"] if s["pass"] == len(report["passes"])]
    assert [s["writes_by_system"]["customwebshop"] for s in last] == [0] * len(last)
    for done in report["passes"][1:]:
        assert len(done["writes"]) < len(HUB_FIRST) == done["of"]
    # conflicts.jsonl says why: the webshop's value is dated by the ERP's edit
    conflicts = _conflicts(report)
    [bc_won] = [c for c in conflicts
                if c["target_value"] == _phone(f"{bc_last} businesscentral")]
    assert (bc_won["winner"], bc_won["source_edited_in"], bc_won["target_edited_in"]) == \
        ("target", "customerp", "businesscentral")
    assert bc_won["source_modified"] < bc_won["target_modified"]
    [erp_won] = [c for c in conflicts if c["source_value"] == _phone(f"{erp_last} customerp")]
    assert (erp_won["winner"], erp_won["source_edited_in"]) == ("source", "customerp")

    # a second --all with no new edits: one pass, nothing written
    status, report = five.run_dataflows(args=CUSTOMERS)
    assert status == EXIT_OK
    assert [p["writes"] for p in report["passes"]] == [dict.fromkeys(HUB_FIRST, 0)]


#: the Business Central dataflow before the ERP's, Exact's between them: the reverse of the
#: relation that matters in the test above
BC_FIRST = ("customwebshop-businesscentral", "exact-customwebshop", "customwebshop-businessnxt",
            "customerp-customwebshop")


def test_in_another_order_and_a_bound_hit_while_still_writing(five, capsys):
    """The same edits with the dataflows named in another order (kept, with passes as --all
    makes them): the Business Central dataflow now runs before the ERP's, so the ERP's later
    edit must win over a value Business Central already put in the webshop. First with
    --max_passes 1, which is not enough: a warning and exit status 1; the next run settles."""
    bc_last, erp_last = _edit_in_both_orders(five)
    status, report = five.run_dataflows(*BC_FIRST, args=(*CUSTOMERS, "--max_passes", "1"))
    assert status == EXIT_FAILED
    assert report["settled"] is False and len(report["passes"]) == 1
    err = capsys.readouterr().err
    assert "did not settle in 1 pass:" in err and "--max_passes" in err

    status, report = five.run_dataflows(*BC_FIRST, args=CUSTOMERS)
    assert status == EXIT_OK, report["passes"]
    assert [section["dataflow"] for section in report["dataflows"]][:4] == list(BC_FIRST)
    _assert_everywhere(five, bc_last, "businesscentral")
    _assert_everywhere(five, erp_last, "customerp")
    assert report["settled"] is True
