"""`talksync run`: the run driver.

Options, the config (loaded once per run, then passed on) and the checks that need no system
come first; then each pass checks every system once (pre-flight) and runs each dataflow whose
systems can be read, printing its summary. The exit status combines the dataflows': 0 synced,
3 dead letters, 1 failed (an unreachable system, the circuit breaker, a run lock held, a
dataflow that raised, ``--all`` not settled); config and usage errors propagate to the CLI
(exit 2).

``--all`` converges: the dataflows share systems (the webshop is in all four), so a value one
dataflow writes into the shared system is news for the others. It runs the dataflows that feed
the most shared system (the hub) first, then those it feeds, and repeats passes over the
dataflows another one wrote news for, until none is left, at most ``--max_passes``
(:func:`run_until_settled`, :mod:`pipelines.passes`). Several dataflows named
on the command line repeat passes the same way, in the order given."""

from __future__ import annotations

import argparse
import collections
import json
import logging
import pathlib
import signal
import sys
import time

from apache_beam.options.pipeline_options import PipelineOptions

from connectors.waiting import forget_unreachable_systems
from core.spec import SpecError, available_dataflows, get_dataflow
from pipelines import preflight, sync_pipeline
from pipelines.arguments import UsageError, beam_flags
from pipelines.config import ConfigError, load_config
from pipelines.console import progress
from pipelines.exit_status import (
    EXIT_FAILED,
    EXIT_OK,
    combined,
    held_for_deletes,
    held_pairs,
    section_status,
    unsettled_status,
)
from pipelines.passes import count_passes, passes_line, with_unread_writes
from pipelines.summary import format_summary
from pipelines.sync_pipeline import new_run_id
from transforms.breaker import held_deletes_message, held_message

_LOG = logging.getLogger("talksync")


def cmd_run(args: argparse.Namespace) -> int:
    """`talksync run`: options, config and pre-flight checks first, then each dataflow."""
    options = PipelineOptions(beam_flags(args.beam))
    config = load_config(args.config)
    # a usage error before any system is asked
    sync_pipeline.refuse_embedded_store_on_distributed_runner(
        options, args.link_store or config.link_store)
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
        return hub_first(specs)
    if not args.dataflows:
        raise UsageError("name the dataflow(s) to run, or --all (see `talksync dataflows`)")
    return [get_dataflow(name) for name in args.dataflows]


def hub_first(specs: list) -> list:
    """The dataflows in the order that settles soonest: the hub is the system most of them
    share; first those that feed it (the hub is their target), then those it feeds (its
    source), each group by name. An edit in any system then reaches the hub in the first
    half of a pass and the other systems in the second half of the same pass."""
    counts = collections.Counter(system for spec in specs
                                 for system in (spec.source.system, spec.target.system))
    hub = max(sorted(counts), key=lambda system: counts[system])
    return sorted(specs, key=lambda spec: (spec.target.system != hub, spec.name))


def _run_once(args, config, specs, options, full: bool) -> int:
    """One run: passes until settled when it syncs more than one dataflow (they may share a
    system), else a single pass."""
    if args.mode == "sync" and len(specs) > 1:
        status, report = run_until_settled(args, config, specs, options, full)
    else:
        status, sections = _run_pass(args, config, specs, options, full)
        report = {"dataflows": sections}
    if args.report:
        _write_json(pathlib.Path(args.report), report)
    return status


def run_until_settled(args, config, specs, options, full: bool) -> tuple[int, dict]:
    """Passes over ``specs`` until none is left with something new to read, at most
    ``args.max_passes``.

    The first pass runs every dataflow; each later one only those another dataflow wrote into
    one of the systems of after they ran (:func:`~pipelines.passes.with_unread_writes`): the
    others would read nothing new. Returns the exit status and the report: every dataflow
    section of every pass (each section says its ``pass``), and per pass what each dataflow
    it ran wrote (``writes``) and how many dataflows there are (``of``). A pass that failed (a
    system unreachable, the circuit breaker, a run lock) stops the repeating: another pass
    could not do better. When the last pass allowed still left writes unread, the systems
    may still disagree: a warning, and the status of
    :func:`~pipelines.exit_status.unsettled_status`.
    """
    status, sections, passes = EXIT_OK, [], []
    pending = list(specs)
    for number in range(1, args.max_passes + 1):
        progress(f"pass {number} of at most {args.max_passes}" + (
            "" if len(pending) == len(specs) else
            f": {', '.join(spec.name for spec in pending)} (the others have nothing new)"))
        pass_status, pass_sections = _run_pass(args, config, pending, options,
                                               full and number == 1)
        for section in pass_sections:
            section["pass"] = number
        sections += pass_sections
        written = {section["dataflow"]: section.get("writes", 0) for section in pass_sections}
        passes.append({"pass": number, "writes": written, "of": len(specs),
                       "status": pass_status})
        status = combined([status, pass_status])
        pending = with_unread_writes(specs, pass_sections)
        if not pending or pass_status == EXIT_FAILED:
            break
    settled = not pending
    print(passes_line(passes, settled))
    if not settled and status != EXIT_FAILED:
        print(f"talksync: warning: the dataflows did not settle in "
              f"{count_passes(len(passes))}: the last wrote "
              f"{sum(passes[-1]['writes'].values())} changes, which "
              f"{', '.join(spec.name for spec in pending)} have not read yet; run again, or "
              "raise --max_passes", file=sys.stderr)
        status = combined([status, unsettled_status()])
    return status, {"dataflows": sections, "passes": passes, "settled": settled}


def _run_pass(args, config, specs, options, full: bool) -> tuple[int, list[dict]]:
    """One pass over ``specs``: every system is checked once, then each dataflow runs."""
    forget_unreachable_systems()   # a system the last run found unreachable is asked again
    systems = preflight.systems_of(specs)
    progress(f"checking {', '.join(systems)}")
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
        progress(f"{spec.name}: {'planning' if settings.mode == 'plan' else 'syncing'} "
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
        print(format_summary(section, legend=spec is specs[-1]))
        for name, updates in held_pairs(section).items():
            print(f"talksync: {spec.name} stopped by the circuit breaker: "
                  f"{held_message(name, updates, section['max_updates_per_pair'])}",
                  file=sys.stderr)
        for name, deletes in held_for_deletes(section).items():
            print(f"talksync: {spec.name} stopped by the circuit breaker: "
                  f"{held_deletes_message(name, deletes, section['max_deletes_per_pair'])}",
                  file=sys.stderr)
        for system in section["unreachable"]:
            print(f"talksync: {spec.name} failed: {system} could not be reached; the pairs "
                  f"that read it were not synced (the next run reads them again)",
                  file=sys.stderr)
        status = combined([status, section_status(section)])
    return status, sections


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


def _write_json(path: str | pathlib.Path, data) -> None:
    """Writes a JSON file to a local path or a gs:// one (a Dataflow run's run_dir)."""
    from apache_beam.io.filesystems import FileSystems
    text = json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n"
    with FileSystems.create(str(path)) as handle:
        handle.write(text.encode("utf-8"))
