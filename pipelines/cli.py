"""The ``talksync`` command.

Exit status: 0 synced; 3 finished with dead letters; 2 bad usage or config; 1 failed (also: a
system could not be reached, a pair held back by the circuit breaker, or another run of the
dataflow holds its run lock).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import pathlib
import signal
import sys
import tempfile
import textwrap
import time
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

# Beam is imported from here on, after the filter (pyproject.toml: E402 here).
from apache_beam.options.pipeline_options import PipelineOptions

from connectors.stores import open_link_store
from connectors.waiting import forget_unreachable_systems
from core.spec import SpecError, available_dataflows, get_dataflow
from pipelines import docs as docs_module
from pipelines import links_io, preflight, sync_pipeline
from pipelines.arguments import (
    MIN_EVERY_SECONDS,
    Parser,
    UsageError,
    add_sync_options,
    beam_flags,
    every_seconds,
)
from pipelines.config import ConfigError, load_config
from pipelines.exit_status import (  # noqa: F401  (EXIT_*: the command's statuses)
    EXIT_BROKEN_PIPE,
    EXIT_DEAD_LETTERS,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    combined,
    held_pairs,
    section_status,
)
from pipelines.preflight import PreflightError
from pipelines.sync_pipeline import OUTCOME_COUNTERS, READ_COUNTERS, REPORT_COUNTERS, new_run_id
from transforms.breaker import held_message
from transforms.common import PROGRESS_LOGGER

_LOG = logging.getLogger("talksync")


#: the run options that come from :class:`~pipelines.options.SyncOptions` as they are
_TUNING_OPTIONS = ("max_updates_per_pair", "confirm_mass_changes", "break_run_lock",
                   "run_lock_ttl_minutes", "read_overlap_seconds", "link_store", "runs_dir")


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
                                     "circuit breaker, run lock); 130 interrupted.")
    run.add_argument("dataflows", nargs="*", metavar="DATAFLOW")
    run.add_argument("--all", action="store_true", help="run every dataflow the config can")
    run.add_argument("--config", default="talksync.yaml", help="systems config (talksync.yaml)")
    run.add_argument("--plan", dest="mode", action="store_const", const="plan", default="sync",
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
    check.add_argument("--config", default="talksync.yaml", help="systems config (talksync.yaml)")

    sub.add_parser("demo", help="start the sandbox, sync every dataflow, then rerun (a no-op)")
    sub.add_parser("dataflows", help="list the dataflows and their pairs")

    docs = sub.add_parser("docs", help="generate the dataflow documents (RST)")
    docs.add_argument("--out", default="docs/dataflows", help="output folder")

    history = sub.add_parser("history", help="what talksync did to one record, run by run "
                                             "(docs/audit.md)")
    history.add_argument("entity_id", metavar="ENTITY-ID", help="its id in either system")
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
    exact.add_argument("--config", default="talksync.yaml", help="systems config (talksync.yaml)")
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
    _show_progress(not args.quiet)
    try:
        if args.command == "run":
            return cmd_run(args)
        if args.command == "check":
            return cmd_check(args.config)
        if args.command == "auth":
            from pipelines import auth as auth_module
            auth_module.auth_exact(args.config, args.system, redirect_port=args.redirect_port,
                                   stdin=sys.stdin, out=sys.stdout)
            return EXIT_OK
        if args.command == "demo":
            return cmd_demo()
        if args.command == "dataflows":
            return cmd_dataflows()
        if args.command == "docs":
            return cmd_docs(args.out)
        if args.command in ("history", "runs", "report"):
            return cmd_audit(args)
        if args.command == "sandbox":
            return cmd_sandbox_serve(args)
        if args.command == "links":
            return cmd_links(args)
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


def cmd_run(args: argparse.Namespace) -> int:
    """`talksync run`: options, config and pre-flight checks first, then each dataflow."""
    options = PipelineOptions(beam_flags(args.beam))
    config = load_config(args.config)
    link_store = args.link_store or config.link_store
    with open_link_store(link_store) as store:   # a usage error before any system is asked
        sync_pipeline.refuse_embedded_store_on_distributed_runner(options, store)
    specs = _dataflows_to_run(args, config)
    pairs = _pair_names(args.pairs)
    for spec in specs:
        sync_pipeline.selected_pairs(spec, pairs)
    if args.every:
        return _run_repeatedly(args, config, specs, options)
    return _run_once(args, config, specs, options, full=args.full_rescan)


def _pair_names(text: str | None) -> list[str] | None:
    return [p.strip() for p in text.split(",") if p.strip()] if text else None


def _dataflows_to_run(args, config):
    shipped = available_dataflows()
    if args.all:
        if args.dataflows:
            raise UsageError("give dataflow names or --all, not both")
        specs = [s for s in shipped.values()
                 if s.source.system in config.systems and s.target.system in config.systems]
        if not specs:
            raise UsageError(f"--all: no dataflow has both its systems configured in "
                             f"{config.path}")
        return specs
    if not args.dataflows:
        raise UsageError("name the dataflow(s) to run, or --all (see `talksync dataflows`)")
    return [get_dataflow(name) for name in args.dataflows]


def _run_once(args, config, specs, options, full: bool) -> int:
    """One pass over ``specs``: every system is checked once, then each dataflow runs."""
    forget_unreachable_systems()   # a system the last run found unreachable is asked again
    systems = preflight.systems_of(specs)
    _progress(f"checking {', '.join(systems)}")
    down = {}
    for check in preflight.preflight(config, systems):
        if not check.run_anyway:
            print(f"talksync: error: {check.message}", file=sys.stderr)
            down[check.system] = check
        elif not check.ok:
            print(f"talksync: warning: {check.message}; its pairs try their reads",
                  file=sys.stderr)
    sections = []
    status = EXIT_FAILED if down else EXIT_OK
    for spec in specs:
        missing = [name for name in (spec.source.system, spec.target.system) if name in down]
        if missing:
            print(f"talksync: {spec.name} not run: {' and '.join(missing)} cannot be read now "
                  f"(the next run syncs it)", file=sys.stderr)
            continue
        run_config, settings = sync_pipeline.settings_from(
            args, config, run_id=new_run_id(), full_rescan=full)
        _progress(f"{spec.name}: {'planning' if settings.mode == 'plan' else 'syncing'} "
                  f"{', '.join(p.name for p in spec.pairs)}")
        try:
            section = sync_pipeline.run_dataflow(spec, run_config, settings, options)
        except (ConfigError, SpecError, KeyboardInterrupt):
            raise
        except Exception as exc:  # the run failed: report it, keep going with the others
            _LOG.debug("run failed", exc_info=True)
            print(f"talksync: {spec.name} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
            status = EXIT_FAILED
            continue
        sections.append(section)
        _write_json(f"{section['run_dir'].rstrip('/')}/report.json", {"dataflows": [section]})
        print(format_summary(section))
        for name, updates in held_pairs(section).items():
            print(f"talksync: {spec.name} stopped by the circuit breaker: "
                  f"{held_message(name, updates, section['max_updates_per_pair'])}",
                  file=sys.stderr)
        for system in section["unreachable"]:
            print(f"talksync: {spec.name} failed: {system} could not be reached; the pairs "
                  f"that read it were not synced (the next run reads them again)",
                  file=sys.stderr)
        status = combined([status, section_status(section)])
    if args.report:
        _write_json(pathlib.Path(args.report), {"dataflows": sections})
    return status


def _run_repeatedly(args, config, specs, options) -> int:
    stop = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
    status = EXIT_OK
    first = True
    while not stop["now"]:
        started = time.monotonic()
        status = _run_once(args, config, specs, options, full=args.full_rescan and first)
        first = False
        remaining = args.every - (time.monotonic() - started)
        while remaining > 0 and not stop["now"]:
            time.sleep(min(remaining, 0.5))
            remaining -= 0.5
    return status


def _progress(message: str) -> None:
    logging.getLogger(PROGRESS_LOGGER).info(message)


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time of each line."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _):
        pass


def _show_progress(enabled: bool) -> None:
    """Progress lines (one per stage and batch, never per record) on stderr."""
    logger = logging.getLogger(PROGRESS_LOGGER)
    logger.setLevel(logging.INFO if enabled else logging.WARNING)
    if enabled and not logger.handlers:
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("[%(asctime)s] %(message)s", "%H:%M:%S"))
        logger.addHandler(handler)
        logger.propagate = False


def _write_json(path: str | pathlib.Path, data) -> None:
    """Writes a JSON file to a local path or a gs:// one (a Dataflow run's run_dir)."""
    from apache_beam.io.filesystems import FileSystems
    text = json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n"
    with FileSystems.create(str(path)) as handle:
        handle.write(text.encode("utf-8"))


# (report counter, column label, legend): the summary's columns, in the report's order.
_COLUMNS = [
    ("read_source", "read src", "source records read (each once, retries included)"),
    ("read_target", "read tgt", "target records read"),
    ("created_in_target", "+tgt", "created in the target"),
    ("created_in_source", "+src", "created in the source"),
    ("linked_by_match", "linked", "linked to their match (2 records a link)"),
    ("updated", "updated", "their link updated"),
    ("unchanged", "same", "nothing to write"),
    ("deleted", "deleted", "deleted in their system (not synced)"),
    ("skipped", "skipped", "nothing to do by design (no create that way)"),
    ("dead", "dead", "sync failed (dead_letters.jsonl)"),
    ("held_back", "held", "not written (circuit breaker, failed read)"),
    ("updated_target", "upd tgt", "updates written to the target"),
    ("updated_source", "upd src", "updates written to the source"),
    ("conflicts", "conflicts", "properties both sides changed"),
    ("dead_letters", "letters", "dead letters written"),
]
assert [c for c, _, _ in _COLUMNS] == list(REPORT_COUNTERS)
_OUTCOMES_FROM = len(READ_COUNTERS)
_CHANGES_FROM = len(READ_COUNTERS) + len(OUTCOME_COUNTERS)


def format_summary(section: dict) -> str:
    """The readable table printed after each run, its legend under it.

    Columns are grouped by ``|``: the records read, what became of them (each record read is
    counted in exactly one of these), and the changes written (counted per change)."""
    title = (f"{section['dataflow']} — {section['mode']} run {section['run_id']} "
             f"in {section['duration_s']:.1f} s")
    headers = ["pair"] + [label for _, label, _ in _COLUMNS]
    rows = [[name] + [str(counts[key]) for key, _, _ in _COLUMNS]
            for name, counts in section["pairs"].items()]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(headers)]
    lines = [title, _table_row(headers, widths), _table_row(["-" * w for w in widths], widths)]
    lines += [_table_row(row, widths) for row in rows]
    requests = ", ".join(f"{system} {n}" for system, n in section["requests"].items())
    lines.append(f"requests: {requests or 'none'}; files: {section['run_dir']}")
    return "\n".join(lines + summary_legend())


def _table_row(cells: list, widths: list) -> str:
    """One line of the table: the pair left-aligned, counts right-aligned, groups split by |."""
    out = cells[0].ljust(widths[0])
    for index, (cell, width) in enumerate(zip(cells[1:], widths[1:], strict=True)):
        gap = " | " if index in (_OUTCOMES_FROM, _CHANGES_FROM) else "  "
        out += gap + cell.rjust(width)
    return out


def summary_legend(width: int = 100) -> list[str]:
    """The legend under the summary table: each column in a few words, by group."""
    def group(title, columns):
        text = title + "; ".join(f"{label}: {legend}" for _, label, legend in columns)
        return textwrap.wrap(text, width, subsequent_indent="    ")
    outcomes = _COLUMNS[_OUTCOMES_FROM:_CHANGES_FROM]
    total = " + ".join(label for _, label, _ in outcomes)
    return [*group("legend: ", _COLUMNS[:_OUTCOMES_FROM]),
            *group("  each record read is in one of: ", outcomes),
            *textwrap.wrap(f"  so read src + read tgt = {total}", width,
                           subsequent_indent="    "),
            *group("  changes, counted per change: ", _COLUMNS[_CHANGES_FROM:])]


def cmd_check(config_path: str) -> int:
    """`talksync check`: one row per system and the link store; 0 all good, 1 something
    cannot be reached or read, 2 a config error or refused credentials."""
    checks = preflight.check_all(load_config(config_path))
    print(preflight.describe(checks))
    return combined(check.exit_status for check in checks)


def cmd_dataflows() -> int:
    for spec in available_dataflows().values():
        print(f"{spec.name}: {spec.title}")
        for pair in spec.pairs:
            print(f"  {pair.name}: {spec.source.label} {pair.source.label} "
                  f"({pair.source.entity}) ⇄ {spec.target.label} {pair.target.label} "
                  f"({pair.target.entity}); match {', '.join(pair.match)}; "
                  f"{len(pair.properties)} properties")
    return EXIT_OK


def cmd_docs(out: str) -> int:
    paths = docs_module.write_documents(available_dataflows().values(), pathlib.Path(out))
    for path in paths:
        print(path)
    return EXIT_OK


def cmd_sandbox_serve(args) -> int:
    from sandbox.server import REGISTRY, PortInUseError, Sandbox
    systems = ([s.strip() for s in args.systems.split(",") if s.strip()] if args.systems
               else list(REGISTRY))
    try:
        sandbox = Sandbox(state_dir=args.state, base_port=args.base_port, seed=args.seed,
                          systems=systems)
    except ValueError as exc:  # an unknown system or base port: the message names the fix
        raise UsageError(str(exc)) from None
    try:
        sandbox.start()
    except PortInUseError as exc:
        top = max(entry.port_offset for entry in REGISTRY.values())
        raise UsageError(f"{exc}; choose another base port with --base-port N (the systems "
                         f"listen on N+1 to N+{top}; 0 picks free ports)") from None
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


def cmd_links(args) -> int:
    """`talksync links export|import`: exit 1 when some links could not be imported."""
    if args.links_command == "export":
        counts = links_io.export_links(args.store, pathlib.Path(args.out))
        print(f"exported {counts.summary()} from {args.store} to {args.out}")
        return EXIT_OK
    counts = links_io.import_links(args.store, pathlib.Path(args.input))
    for conflict in counts.conflicts:
        print(f"talksync: links import: {conflict.pair} {conflict.link_id} not imported: "
              f"{conflict.reason}", file=sys.stderr)
    print(f"imported {args.input} into {args.store}: {counts.summary()}")
    return EXIT_FAILED if counts.conflicts else EXIT_OK


def cmd_audit(args) -> int:
    """`talksync history`, `runs` and `report`: reading what runs did (docs/audit.md)."""
    from pipelines import history, report_html
    runs_dir, audit_dir = history.locations(args.config, args.runs_dir, args.audit_dir)
    if args.command == "history":
        print(history.history(audit_dir, args.entity_id, args.dataflow,
                              history.parse_since(args.since)))
    elif args.command == "runs":
        print(history.format_runs(history.list_runs(runs_dir, args.last)))
    else:
        print(report_html.write_html(report_html.run_folder(args.run, runs_dir), args.html,
                                     audit_dir))
    return EXIT_OK


def cmd_demo() -> int:
    """Sandbox + every dataflow it can serve + report, then the same again (a no-op)."""
    from sandbox.server import Sandbox
    state = pathlib.Path(tempfile.mkdtemp(prefix="talksync-demo-"))
    with Sandbox(state_dir=state, base_port=0) as sandbox:
        os.environ.update(sandbox.environ())
        print(f"sandbox started ({', '.join(sandbox.systems)}); state in {state}")
        args = _parse(["run", "--all", "--config", str(sandbox.config_path),
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


if __name__ == "__main__":
    sys.exit(main())
