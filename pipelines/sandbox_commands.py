"""`talksync sandbox serve` and `talksync demo`: the only product code that imports the
emulators (sandbox/), and only inside these two commands, so that importing the CLI loads no
emulator and a Dataflow worker never needs their servers (pyproject.toml's import contracts)."""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import signal
import tempfile
import time
from collections.abc import Callable, Sequence

from pipelines.arguments import UsageError
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
    """Sandbox + every dataflow it can serve + report, then the same again (a no-op).

    ``parse`` is the CLI's parser: the demo runs `talksync run` with the arguments a user would
    type (the CLI passes it in, so that this module does not import the CLI)."""
    from sandbox.server import Sandbox
    state = pathlib.Path(tempfile.mkdtemp(prefix="talksync-demo-"))
    with Sandbox(state_dir=state, base_port=0) as sandbox:
        os.environ.update(sandbox.environ())
        print(f"sandbox started ({', '.join(sandbox.systems)}); state in {state}")
        args = parse(["run", "--all", "--config", str(sandbox.config_path),
                      "--report", str(state / "report-first.json")])
        print("\nFirst run: link what matches, create what is missing, on both sides.")
        first = cmd_run(args)
        args.report = str(state / "report-second.json")
        print("\nSecond run, nothing edited in between: nothing to write.")
        second = cmd_run(args)
        counts = {s: sandbox.requests(s)["by_method"] for s in sandbox.systems}
        print(f"\nRequests the sandbox received, by method: {json.dumps(counts)}")
        changes = _changes_written(json.loads(pathlib.Path(args.report).read_text()))
        if changes:
            print(f"The second run wrote {changes} changes: that is a bug, please report it.")
            second = max(second, EXIT_FAILED)
        else:
            print("The second run wrote nothing: every record is linked and in agreement.")
        print(f"Reports: {state / 'report-first.json'}, {state / 'report-second.json'}")
    return max(first, second)


def _changes_written(report: dict) -> int:
    kinds = ("created_in_target", "created_in_source", "linked_by_match", "updated_target",
             "updated_source")
    return sum(pair[k] for section in report["dataflows"]
               for pair in section["pairs"].values() for k in kinds)

