"""`talksync sandbox serve` and `talksync demo`: the only product code that imports the
emulators (sandbox/), and only inside these two commands, so that importing the CLI loads no
emulator and a Dataflow worker never needs their servers (pyproject.toml's import contracts)."""

from __future__ import annotations

import argparse
import datetime
import io
import json
import os
import pathlib
import signal
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

from connectors.exact import tokens_key
from connectors.stores import open_link_store
from pipelines import auth, commands
from pipelines.arguments import UsageError
from pipelines.config import load_config
from pipelines.exit_status import EXIT_FAILED, EXIT_OK
from pipelines.run_driver import cmd_run


def cmd_sandbox_serve(args) -> int:
    from sandbox.server import REGISTRY, PortInUseError, Sandbox
    systems = ([s.strip() for s in args.systems.split(",") if s.strip()] if args.systems
               else list(REGISTRY))
    try:
        sandbox = Sandbox(state_dir=args.state, base_port=args.base_port, seed=args.seed,
                          systems=systems, options={"businessnxt": {
                              "customer_table": args.businessnxt_customer_table}})
    except ValueError as exc:  # an unknown system or base port: the message names the fix
        raise UsageError(str(exc)) from None
    try:
        sandbox.start()
    except PortInUseError as exc:
        top = max(entry.port_offset for entry in REGISTRY.values())
        raise UsageError(f"{exc}; choose another base port with --base-port N (the systems "
                         f"listen on N+1 to N+{top}; 0 picks free ports)") from None
    except ValueError as exc:  # a state folder of another kind of sandbox: the message says
        raise UsageError(f"{exc} (--state {args.state})") from None
    print(f"sandbox running; config: {sandbox.config_path}")
    for system in sandbox.systems:
        print(f"  {system}: {sandbox.url(system)}")
    print(f"the config holds the sandbox's own keys; sync with `talksync run --config "
          f"{sandbox.config_path} --all`")
    stop = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
    try:
        while not stop["now"]:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        sandbox.stop()
    return EXIT_OK


def cmd_demo(parse: Callable[[Sequence[str]], argparse.Namespace]) -> int:
    """The sandbox's five systems synced by `--all` until it settles; `--all`
    again (it writes nothing); then one customer edited in two systems, the later edit winning
    in all five, told by `talksync history`.

    ``parse`` is the CLI's parser: the demo runs `talksync run` and `talksync history` with the
    arguments a user would type (the CLI passes it in, so that this module does not import
    the CLI)."""
    from sandbox.people import People, approve_exact
    from sandbox.server import REGISTRY, Sandbox
    state = pathlib.Path(tempfile.mkdtemp(prefix="talksync-demo-"))
    with Sandbox(state_dir=state, base_port=0, systems=list(REGISTRY)) as sandbox:
        os.environ.update(sandbox.environ())
        config = str(sandbox.config_path)
        print(f"sandbox started ({', '.join(sandbox.systems)}); state in {state}")
        _consent_to_exact(config, approve_exact(sandbox))

        def run_all(name: str) -> tuple[int, dict]:
            report = state / f"report-{name}.json"
            status = cmd_run(parse(["run", "--all", "--config", config, "--report",
                                    str(report)]))
            return status, json.loads(report.read_text()) if report.exists() else {}

        print("\nFirst --all: link what matches, create what is missing, everywhere; passes "
              "repeat until no dataflow has another's write left to read.")
        first, _ = run_all("first")
        print("\nSecond --all, nothing edited in between: nothing to write.")
        second, report = run_all("second")
        if _changes_written(report):
            print(f"The second --all wrote {_changes_written(report)} changes: that is a bug, "
                  "please report it.")
            second = max(second, EXIT_FAILED)
        else:
            print("The second --all wrote nothing: every record is linked and in agreement.")
        people = People(sandbox, exact_token=lambda: _exact_access_token(config))
        edited = _edit_in_two_systems(people)
        print("\nThird --all: the later edit wins, in every system.")
        third, _ = run_all("third")
        agreed = _show_phones(people, edited)
        print(f"\n$ talksync history {edited.email}")
        commands.cmd_audit(parse(["history", edited.email, "--config", config]))
        print(f"\nReports and the audit log are under {state}")
    return max(first, second, third, EXIT_OK if agreed else EXIT_FAILED)


class _Edited(NamedTuple):
    email: str
    erp_phone: str
    bc_phone: str


def _consent_to_exact(config: str, code: str) -> None:
    """Exact's one-time consent, given on the sandbox's consent page (a real Exact needs a
    person: `talksync auth exact`)."""
    auth.auth_exact(config, "exact", stdin=io.StringIO(code + "\n"), out=io.StringIO())
    print("exact: talksync's access approved on the sandbox's consent page (with a real Exact, "
          "run `talksync auth exact` once)")


def _exact_access_token(config: str) -> str:
    """The access token talksync keeps for Exact (the demo's people act with it)."""
    with open_link_store(load_config(config).link_store) as store:
        entry = store.read_state(tokens_key("exact"))
    if entry is None:
        raise RuntimeError("exact: no tokens stored")
    return str(entry.value["access_token"])


def _edit_in_two_systems(people) -> _Edited:
    """A customer every system has: its phone changed in the ERP, a second later in Business
    Central."""
    from sandbox.people import ABSENT
    emails = sorted(str(c["email"]).lower() for c in people.customers("customwebshop"))
    email = next(e for e in emails if ABSENT not in people.phones(e).values())
    edited = _Edited(email, "+47 400 11 111", "+47 400 22 222")
    people.set_phone("customerp", email, edited.erp_phone)
    print(f"\n{_clock()} someone changes {email}'s phone in the ERP (customerp) to "
          f"{edited.erp_phone}")
    time.sleep(1)
    people.set_phone("businesscentral", email, edited.bc_phone)
    print(f"{_clock()} someone else changes it in Business Central to {edited.bc_phone}")
    return edited


def _show_phones(people, edited: _Edited) -> bool:
    """Print the customer's phone in every system; whether all hold the later edit."""
    phones = people.phones(edited.email)
    for system, phone in phones.items():
        print(f"  {system:<16} {phone}")
    if set(phones.values()) == {edited.bc_phone}:
        print(f"Every system has {edited.bc_phone}, the later edit (Business Central's), though "
              "the ERP's earlier one reached the webshop first.")
        return True
    print("The systems disagree: that is a bug, please report it.")
    return False


def _clock() -> str:
    return datetime.datetime.now().strftime("%H:%M:%S")


def _changes_written(report: Mapping[str, Any]) -> int:
    kinds = ("created_in_target", "created_in_source", "linked_by_match", "updated_target",
             "updated_source")
    return sum(pair[k] for section in report["dataflows"]
               for pair in section["pairs"].values() for k in kinds)

