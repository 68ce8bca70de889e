"""End to end, all five systems: edit-time provenance across the hub and `--all` converging
(issue 15, points 1 and 2; docs/decisions/0015-edit-time-provenance.md).

The webshop takes part in all four dataflows, so a value reaches Business Central from the ERP
through it. Before, "latest change wins" compared the webshop's modified time, which is when
talksync copied the ERP's value in, and an older ERP edit beat a newer Business Central edit.
Each test edits its own customer in the emulators, in the order the test says (each emulator
stamps an edit with its clock, so the later edit has the later time: no sleeping), then runs,
on a SQLite and on a Firestore (emulator) link store.
"""

from __future__ import annotations

import itertools
import uuid

import pytest

from pipelines.exit_status import EXIT_FAILED, EXIT_OK
from sandbox.server import Sandbox
from tests.firestore_emulator import PROJECT, firestore_emulator  # noqa: F401
from tests.five_systems import DATAFLOWS, SYSTEMS, FiveSystems


@pytest.fixture(scope="module", params=["sqlite", "firestore"])
def five(request, tmp_path_factory):
    """The five systems after a first `--all` that settled, on each kind of link store."""
    state = tmp_path_factory.mktemp(f"five-{request.param}")
    if request.param == "sqlite":
        store_url = f"sqlite:///{state}/links.db"
    else:
        request.getfixturevalue("firestore_emulator")
        store_url = f"firestore://{PROJECT}?prefix=prov{uuid.uuid4().hex[:8]}_"
    with pytest.MonkeyPatch.context() as env:
        sandbox = Sandbox(state_dir=state / "sandbox", base_port=0, systems=SYSTEMS,
                          seed=42).start()
        try:
            for name, value in sandbox.environ().items():
                env.setenv(name, value)
            harness = FiveSystems(sandbox, state, store_url)
            status, report = harness.run_dataflows(args=("--max_passes", "5"))
            assert report["settled"], report["passes"]
            yield harness
        finally:
            sandbox.stop()


def _phone(label: str) -> str:
    return f"+47 {abs(hash(label)) % 90_000_000 + 10_000_000}"


def test_a_second_all_writes_nothing(five):
    status, report = five.run_dataflows()
    assert status == EXIT_OK
    assert [p["writes"] for p in report["passes"]] == [dict.fromkeys(_hub_first(), 0)]
    assert report["settled"] is True


def _hub_first():
    """--all's order: the dataflows feeding the webshop (its target) first, then the rest."""
    return ["customerp-customwebshop", "exact-customwebshop", "customwebshop-businesscentral",
            "customwebshop-businessnxt"]


@pytest.mark.parametrize("first,later", [("customerp", "businesscentral"),
                                         ("businesscentral", "customerp")])
def test_the_later_edit_wins_in_every_system(five, first, later):
    """The issue's case (ERP at T, Business Central at T+; and the reverse order): after
    `--all`, every system has the later edit's phone number, and a second `--all` writes
    nothing."""
    email = five.next_customer()
    five.set_phone(first, email, _phone(f"{email} {first}"))
    five.set_phone(later, email, _phone(f"{email} {later}"))
    status, report = five.run_dataflows()
    assert status == EXIT_OK, report["passes"]
    assert five.phones(email) == dict.fromkeys(SYSTEMS, _phone(f"{email} {later}"))
    assert report["settled"] and len(report["passes"]) <= 3
    assert five.run_dataflows()[1]["passes"][0]["writes"] == dict.fromkeys(_hub_first(), 0)


@pytest.mark.parametrize("order", list(itertools.permutations(DATAFLOWS)),
                         ids=lambda order: "-".join(name.split("-")[0][:4] + name.split("-")[1][:4]
                                                    for name in order))
def test_the_later_edit_wins_whatever_order_the_dataflows_run_in(five, order):
    """Both edits, in both orders, with the four dataflows run in ``order`` (named on the
    command line, which keeps their order and repeats passes as `--all` does)."""
    email_1, email_2 = five.next_customer(), five.next_customer()
    five.set_phone("customerp", email_1, _phone(f"{email_1} erp"))
    five.set_phone("businesscentral", email_1, _phone(f"{email_1} bc"))
    five.set_phone("businesscentral", email_2, _phone(f"{email_2} bc"))
    five.set_phone("customerp", email_2, _phone(f"{email_2} erp"))
    status, report = five.run_dataflows(*order, args=("--max_passes", "4"))
    assert status == EXIT_OK, report["passes"]
    assert five.phones(email_1) == dict.fromkeys(SYSTEMS, _phone(f"{email_1} bc"))
    assert five.phones(email_2) == dict.fromkeys(SYSTEMS, _phone(f"{email_2} erp"))


@pytest.mark.parametrize("later", ["businesscentral", "businessnxt", "exact"])
def test_a_three_hop_chain_and_a_later_edit_at_its_end(five, later):
    """An ERP edit reaches Business Central, Business NXT and Exact through the webshop; a
    later edit in one of them, made before the chain has carried the ERP's value there,
    wins everywhere."""
    email = five.next_customer()
    five.set_phone("customerp", email, _phone(f"{email} erp"))
    status, _ = five.run_dataflows("customerp-customwebshop")
    assert status == EXIT_OK
    assert five.phone("customwebshop", email) == _phone(f"{email} erp")
    five.set_phone(later, email, _phone(f"{email} {later}"))
    status, report = five.run_dataflows()
    assert status == EXIT_OK, report["passes"]
    assert five.phones(email) == dict.fromkeys(SYSTEMS, _phone(f"{email} {later}"))

    # and the ERP's edit alone travels the whole chain
    email = five.next_customer()
    five.set_phone("customerp", email, _phone(f"{email} erp"))
    assert five.run_dataflows()[0] == EXIT_OK
    assert five.phones(email) == dict.fromkeys(SYSTEMS, _phone(f"{email} erp"))


def test_a_bound_hit_while_still_writing_warns_and_fails(five, capsys):
    email = five.next_customer()
    five.set_phone("businesscentral", email, _phone(f"{email} bound"))
    status, report = five.run_dataflows(args=("--max_passes", "1"))
    assert status == EXIT_FAILED
    assert report["settled"] is False and len(report["passes"]) == 1
    err = capsys.readouterr().err
    assert "--all did not settle in 1 passes" in err and "--max_passes" in err
    assert five.run_dataflows()[0] == EXIT_OK
    assert five.phones(email) == dict.fromkeys(SYSTEMS, _phone(f"{email} bound"))
