"""The commands that read or move what talksync knows, without running a sync: `dataflows`,
`docs`, `check`, `links export|import`, and `history`, `runs`, `report` (docs/audit.md).

Each returns the command's exit status; config and usage errors propagate to the CLI (exit 2).
"""

from __future__ import annotations

import pathlib
import sys

from core.spec import available_dataflows
from pipelines import docs as docs_module
from pipelines import links_io, preflight
from pipelines.config import load_config
from pipelines.exit_status import EXIT_FAILED, EXIT_OK, combined


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
        from pipelines.links_io import scan_links
        answer = history.find_record(args.entity_id, audit_dir,
                                     scan_links(history.link_store_of(args.config)),
                                     args.dataflow, history.parse_since(args.since))
        print(answer.text, file=sys.stderr if answer.to_stderr else sys.stdout)
        return answer.status
    elif args.command == "runs":
        print(history.format_runs(history.list_runs(runs_dir, args.last)))
    else:
        print(report_html.write_html(report_html.run_folder(args.run, runs_dir), args.html,
                                     audit_dir))
    return EXIT_OK
