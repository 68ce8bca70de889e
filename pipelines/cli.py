"""The ``talksync`` command: its parser, and the dispatch with the exit policy every command
shares (bad usage or config 2, Ctrl-C 130, a closed pipe ends quietly).

Exit status: 0 synced; 3 finished with dead letters; 2 bad usage or config; 1 failed (also: a
system could not be reached, a pair held back by the circuit breaker, or another run of the
dataflow holds its run lock).

The commands live in :mod:`pipelines.run_driver` (`run`), :mod:`pipelines.commands`
(`dataflows`, `docs`, `check`, `links`, `history`, `runs`, `report`) and
:mod:`pipelines.sandbox_commands` (`sandbox serve`, `demo`: the only ones importing the
emulators, lazily).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence


class _WithoutBeamImportNoise(logging.Filter):
    """Beam warns at import about Google Cloud clients it could not load (BigQuery, GCS) when
    the ``[gcp]`` extra is not installed; local runs never use them, so the warnings would
    only confuse."""

    _NOISE = ("apitools not found", "Failed to import GCSFileSystem")

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(noise in message for noise in self._NOISE)


logging.getLogger().addFilter(_WithoutBeamImportNoise())

# Beam is imported from here on (by the run driver), after the filter (pyproject.toml: E402).
from core.spec import SpecError
from pipelines import commands, run_driver, sandbox_commands
from pipelines.arguments import (
    MIN_EVERY_SECONDS,
    Parser,
    UsageError,
    add_sync_options,
    every_seconds,
    max_passes,
)
from pipelines.config import ConfigError
from pipelines.console import show_progress
from pipelines.exit_status import (  # noqa: F401  (EXIT_*: the command's statuses)
    EXIT_BROKEN_PIPE,
    EXIT_DEAD_LETTERS,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
)
from pipelines.options import DEFAULT_CONFIG, DEFAULT_MAX_PASSES, DEFAULT_MODE
from pipelines.preflight import PreflightError

#: the run options that come from :class:`~pipelines.options.SyncOptions` as they are
_TUNING_OPTIONS = ("max_updates_per_pair", "max_deletes_per_pair", "confirm_mass_changes",
                   "break_run_lock",
                   "run_lock_ttl_minutes", "read_overlap_seconds", "link_store", "runs_dir",
                   "missing_reference_runs")


def _parser() -> Parser:
    parser = Parser(
        prog="talksync",
        description="Two-way sync of customers, products and orders between webshops and ERPs.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log Beam's progress too")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="sync one or more dataflows",
                         description="Sync dataflows: read both systems, plan, write, report. "
                                     "Exit status: 0 synced; 3 dead letters; 2 usage, config "
                                     "or refused credentials; 1 failed (unreachable system, "
                                     "circuit breaker, run lock, --all not settled); 130 "
                                     "interrupted.")
    run.add_argument("dataflows", nargs="*", metavar="DATAFLOW")
    run.add_argument("--all", action="store_true",
                     help="run every dataflow the config can, those feeding the shared system "
                          "first, in passes until no dataflow has another's write left to read")
    run.add_argument("--max_passes", type=max_passes, default=DEFAULT_MAX_PASSES, metavar="N",
                     help="--all: passes at most; a write still unread after the last is a warning "
                          f"and exit status 1 (default {DEFAULT_MAX_PASSES})")
    run.add_argument("--config", default=DEFAULT_CONFIG,
                     help=f"systems config ({DEFAULT_CONFIG})")
    run.add_argument("--plan", dest="mode", action="store_const", const="plan",
                     default=DEFAULT_MODE,
                     help="read and plan only; write nothing (plan.jsonl says what would "
                          "change); exits as the sync would for its reads")
    run.add_argument("--full", dest="full_rescan", action="store_true",
                     help="read everything, not only changes")
    run.add_argument("--pairs", help="comma-separated pairs to run (default: all)")
    run.add_argument("--report", help="write the JSON report to this file")
    run.add_argument("--every", type=every_seconds, metavar="SECONDS",
                     help=f"repeat incremental runs every SECONDS (at least "
                          f"{MIN_EVERY_SECONDS:g}) until stopped (Ctrl-C)")
    add_sync_options(run, _TUNING_OPTIONS)
    run.add_argument("--beam", action="append", metavar="NAME=VALUE",
                     help="a Beam pipeline option, checked against Beam's own (repeatable), "
                          "e.g. --beam direct_running_mode=multi_processing "
                          "--beam direct_num_workers=2")

    check = sub.add_parser("check", help="check the config, the secrets, each system's "
                                         "credentials and the link store; change nothing")
    check.add_argument("--config", default=DEFAULT_CONFIG,
                       help=f"systems config ({DEFAULT_CONFIG})")

    sub.add_parser("demo", help="start the sandbox, sync every dataflow, then rerun (a no-op)")
    sub.add_parser("dataflows", help="list the dataflows and their pairs")

    docs = sub.add_parser("docs", help="generate the dataflow documents (RST)")
    docs.add_argument("--out", default="docs/dataflows", help="output folder")

    history = sub.add_parser("history", help="what talksync did to one record, run by run "
                                             "(docs/audit.md)")
    history.add_argument("entity_id", metavar="ID-OR-KEY",
                         help="its id in either system, or a match key: e-mail, SKU, order number")
    history.add_argument("--dataflow", help="only this dataflow")
    history.add_argument("--since", help="from a date, a time or a span back (7d, 12h)")
    runs = sub.add_parser("runs", help="the last runs with their counts")
    runs.add_argument("--last", type=int, default=10, help="how many (default 10)")
    report = sub.add_parser("report", help="one run as a self-contained HTML page")
    report.add_argument("run", metavar="RUN", help="a run id (see `talksync runs`) or folder")
    report.add_argument("--html", required=True, metavar="FILE", help="the page to write")
    for command in (history, runs, report):
        command.add_argument("--config", help="the config naming runs_dir and audit_dir "
                                              "(default: talksync.yaml if present)")
        command.add_argument("--runs-dir", help="the runs folder, overriding the config")
        command.add_argument("--audit-dir", help="the audit log, overriding the config")

    sandbox = sub.add_parser("sandbox", help="local emulators of the systems")
    sandbox_sub = sandbox.add_subparsers(dest="sandbox_command", required=True)
    serve = sandbox_sub.add_parser("serve", help="serve the emulators until stopped")
    serve.add_argument("--base-port", type=int, default=8700)
    serve.add_argument("--state", default=".talksync/sandbox",
                       help="folder for the emulators' state and the generated talksync.yaml")
    serve.add_argument("--seed", type=int, default=42)
    serve.add_argument("--systems", default=None,
                       help="comma-separated systems to serve (default: every emulator: "
                            "customwebshop, customerp, businesscentral, businessnxt, exact)")
    serve.add_argument("--businessnxt-customer-table", choices=("address", "associate"),
                       default="address",
                       help="where the Business NXT company keeps its customers: the seeds' "
                            "address table (default) or Visma's associate table (decision 14)")

    template = sub.add_parser("template", help="the Dataflow flex template (docs/dataflow.md)")
    template_sub = template.add_subparsers(dest="template_command", required=True)
    metadata = template_sub.add_parser(
        "metadata", help="write the template's metadata.json, generated from the options")
    metadata.add_argument("--out", default="dataflow/metadata.json", help="the file to write")

    links = sub.add_parser("links", help="move links between link stores (JSON Lines files)")
    links_sub = links.add_subparsers(dest="links_command", required=True)
    export = links_sub.add_parser(
        "export", help="write every link, watermark and open dead letter of a store to a file")
    export.add_argument("--store", required=True, metavar="URL",
                        help="the link store, e.g. sqlite:///.talksync/links.db")
    export.add_argument("--out", required=True, metavar="FILE.jsonl", help="the file to write")
    import_ = links_sub.add_parser(
        "import", help="add a file's links, watermarks and dead letters to a store; "
                       "importing again adds nothing")
    import_.add_argument("--store", required=True, metavar="URL",
                         help="the link store, e.g. firestore://PROJECT")
    import_.add_argument("--in", dest="input", required=True, metavar="FILE.jsonl",
                         help="a file written by `talksync links export`")

    auth = sub.add_parser("auth", help="one-time OAuth consent of a system (docs/api/exact.md)")
    auth_sub = auth.add_subparsers(dest="auth_command", required=True)
    exact = auth_sub.add_parser("exact", help="approve talksync in Exact Online; stores the "
                                              "first tokens in the link store")
    exact.add_argument("--system", required=True, help="the Exact system of the config")
    exact.add_argument("--config", default=DEFAULT_CONFIG,
                       help=f"systems config ({DEFAULT_CONFIG})")
    exact.add_argument("--redirect-port", type=int, metavar="PORT",
                       help="catch the redirect on http://127.0.0.1:PORT/callback instead of "
                            "reading the pasted code")
    parser.commands = sub.choices
    return parser


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    """The arguments, or :class:`UsageError` naming an unknown option and the one meant."""
    parser = _parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        command = parser.commands.get(args.command, parser)
        command.error(f"unrecognized arguments: {' '.join(unknown)}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """``talksync``: the exit status of the command; Ctrl-C is 130, a closed pipe ends quietly."""
    try:
        return _main(argv)
    except KeyboardInterrupt:
        print("talksync: interrupted (exit 130); a sync run resumes where it stopped on the "
              "next run", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # the reader went away (`talksync history … | head`): nothing more to say, to anyone
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE


def _main(argv: Sequence[str] | None) -> int:
    try:
        args = _parse(argv)
    except UsageError as exc:
        print(f"{exc}", file=sys.stderr)
        return EXIT_USAGE
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    show_progress(not args.quiet)
    try:
        if args.command == "run":
            return run_driver.cmd_run(args)
        if args.command == "check":
            return commands.cmd_check(args.config)
        if args.command == "auth":
            from pipelines import auth as auth_module
            auth_module.auth_exact(args.config, args.system, redirect_port=args.redirect_port,
                                   stdin=sys.stdin, out=sys.stdout)
            return EXIT_OK
        if args.command == "demo":
            return sandbox_commands.cmd_demo(_parse)
        if args.command == "dataflows":
            return commands.cmd_dataflows()
        if args.command == "docs":
            return commands.cmd_docs(args.out)
        if args.command in ("history", "runs", "report"):
            return commands.cmd_audit(args)
        if args.command == "sandbox":
            return sandbox_commands.cmd_sandbox_serve(args)
        if args.command == "links":
            return commands.cmd_links(args)
        if args.command == "template":
            from pipelines import template as template_module
            print(template_module.write_metadata(args.out))
            return EXIT_OK
    except (UsageError, ConfigError, SpecError, ValueError) as exc:
        print(f"talksync: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except PreflightError as exc:
        for line in str(exc).splitlines():
            print(f"talksync: error: {line}", file=sys.stderr)
        return exc.exit_status
    return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
