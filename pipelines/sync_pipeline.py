"""The sync pipeline of one dataflow and the driver that runs it (docs/architecture.md, "One
record's path through a run").

:func:`build_pipeline` adds, per pair in dependency order::

    read source ─ map ─┐                         ┌─ write (batched) ─┐
                       ├─ look up links ─ plan ──┤                   ├─ commit links ─┐
    read target ─ map ─┘                         └───────────────────┘                │
    dead letters, conflicts ─ run files + store ──────────── barrier ─ watermarks ◄────┘

and returns the PCollections, so tests can assert on plans, links and dead letters.
:func:`run_dataflow` runs it and turns the run's metrics into the report.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import logging
import secrets
import time
from collections.abc import Sequence

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions, TestOptions

from connectors.linkstore import LinkStore
from connectors.stores import link_store_class, open_link_store
from core import planner
from core.model import DeadLetter
from core.planner import SOURCE, TARGET
from core.spec import DataflowSpec, PairSpec, get_dataflow
from pipelines.config import DEFAULT_RUNS_DIR, Config, ConfigError, load_config
from pipelines.options import (
    DEFAULT_MAX_DELETES_PER_PAIR,
    DEFAULT_MAX_UPDATES_PER_PAIR,
    DEFAULT_MISSING_REFERENCE_RUNS,
    DEFAULT_MODE,
    DEFAULT_READ_OVERLAP_SECONDS,
    DEFAULT_RUN_LOCK_TTL_MINUTES,
    SyncOptions,
)
from transforms import audit, finish, runlock
from transforms.breaker import HELD_DELETES, HELD_UPDATES
from transforms.common import METRICS_NAMESPACE, PairContext, reference_side_inputs
from transforms.sync import ReadPosition, SyncPair

#: The entities read per pair, each counted once (an entity in both the changed read and the
#: retry read is one entity).
READ_COUNTERS = ("read_source", "read_target")
#: What became of each entity read: every one is counted under exactly one of these, so per
#: pair they add up to read_source + read_target (see :func:`unaccounted`).
OUTCOME_COUNTERS = (planner.CREATE_TARGET, planner.CREATE_SOURCE, planner.LINK, planner.UPDATE,
                    planner.UNCHANGED, planner.DELETED, planner.SKIPPED, planner.DEAD,
                    planner.HELD)
#: What the run changed or recorded, counted per change rather than per entity.
CHANGE_COUNTERS = ("updated_target", "updated_source", "deleted_in_target", "deleted_in_source",
                   "unlinked", "conflicts", "dead_letters")
REPORT_COUNTERS = READ_COUNTERS + OUTCOME_COUNTERS + CHANGE_COUNTERS
_LOG = logging.getLogger(__name__)
_DISTRIBUTED_RUNNERS = ("DataflowRunner", "PortableRunner", "FlinkRunner", "SparkRunner")


@dataclasses.dataclass(frozen=True)
class RunSettings:
    """How this run goes: its id, mode, the pairs it covers, where its files go. Defaults are
    those of :class:`~pipelines.options.SyncOptions` and the config (one constant each)."""

    run_id: str
    mode: str = DEFAULT_MODE             # "sync" | "plan"
    full_rescan: bool = False
    pairs: Sequence[str] | None = None   # None: every pair
    runs_dir: str = DEFAULT_RUNS_DIR
    read_overlap_seconds: int = DEFAULT_READ_OVERLAP_SECONDS
    audit_dir: str | None = None         # None: no audit log (docs/audit.md)
    max_updates_per_pair: int = DEFAULT_MAX_UPDATES_PER_PAIR   # the circuit breaker's limit
    max_deletes_per_pair: int = DEFAULT_MAX_DELETES_PER_PAIR   # and its limit of deletes
    confirm_mass_changes: bool = False
    run_lock_ttl_minutes: int = DEFAULT_RUN_LOCK_TTL_MINUTES
    break_run_lock: bool = False
    missing_reference_runs: int = DEFAULT_MISSING_REFERENCE_RUNS

    @property
    def run_dir(self) -> str:
        return FileSystems.join(self.runs_dir, self.run_id)


@dataclasses.dataclass
class SyncResult:
    """The PCollections of a built pipeline, per pair where that applies."""

    plans: dict[str, beam.PCollection]
    links: dict[str, beam.PCollection]
    dead_letters: beam.PCollection
    conflicts: beam.PCollection


def new_run_id(now: datetime.datetime | None = None) -> str:
    now = now or datetime.datetime.now(datetime.UTC)
    return f"{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def selected_pairs(spec: DataflowSpec, names: Sequence[str] | None) -> list[PairSpec]:
    if not names:
        return list(spec.pairs)
    unknown = sorted(set(names) - {p.name for p in spec.pairs})
    if unknown:
        raise ValueError(f"--pairs: unknown pair(s) {', '.join(unknown)} in dataflow "
                         f"{spec.name}; it has {', '.join(p.name for p in spec.pairs)}")
    return [p for p in spec.pairs if p.name in names]


def build_pipeline(p: beam.Pipeline, spec: DataflowSpec, config: Config,
                   settings: RunSettings, store: LinkStore) -> SyncResult:
    """Adds the sync of ``spec`` to ``p``; ``store`` is read here for watermarks and retries."""
    source_system = config.system(spec.source.system)
    target_system = config.system(spec.target.system)
    syncing = settings.mode == "sync"
    pairs = selected_pairs(spec, settings.pairs)
    plans, links, dead, conflicts, watermarks, done, events, held = \
        {}, {}, [], [], [], [], [], []
    previous: dict[tuple, DeadLetter] = {}
    for pair in pairs:
        ctx = PairContext(dataflow=spec.name, pair=pair, source_system=source_system,
                          target_system=target_system, link_store=config.link_store,
                          run_id=settings.run_id,
                          references={dep: (spec.pair(dep).source.entity,
                                            spec.pair(dep).target.entity)
                                      for dep in pair.depends_on})
        letters = store.open_dead_letters(ctx.dataflow, ctx.pair.name)
        previous.update((finish.entity_key(letter), letter) for letter in letters)
        kept = [letter for letter in letters if finish.is_kept(letter)]
        positions = _read_positions(store, ctx, settings, letters)
        out = p | f"Sync {pair.name}" >> SyncPair(
            ctx, positions, reference_side_inputs(links, pair), apply_changes=syncing,
            max_updates=settings.max_updates_per_pair,
            max_deletes=settings.max_deletes_per_pair, verify_missing=settings.full_rescan,
            confirm_mass_changes=settings.confirm_mass_changes, kept_letters=kept)
        plans[pair.name], links[pair.name] = out.plans, out.links
        dead.extend(out.dead_letters)
        watermarks.extend(out.watermarks)
        if syncing:
            conflicts.append(out.conflicts)
            done.append(out.committed)
            events.append(out.audit)
            held.extend(out.held)

    dead_letters = (_flatten(p, dead, "dead letters")
                    | "One letter per entity" >> finish.OneLetterPerEntity()
                    | "Count attempts" >> beam.Map(
                        finish.count_attempts, previous=previous,
                        missing_reference_runs=settings.missing_reference_runs))
    all_conflicts = _flatten(p, conflicts, "conflicts")
    held_pairs = _flatten(p, held, "held pairs")
    run_dir = settings.run_dir
    recorded = dead_letters | "Record dead letters" >> finish.RecordDeadLetters(
        run_dir, config.link_store if syncing else None, held_pairs)
    all_conflicts | "Write conflicts" >> finish.WriteRunFile(
        FileSystems.join(run_dir, "conflicts.jsonl"))
    (_flatten(p, list(plans.values()), "plans")
     | "Plan rows" >> beam.FlatMap(
         lambda plan_: [_plan_row(plan_)] if plan_.writes or plan_.outcome == "linked_by_match"
         else [])
     | "Write plan" >> finish.WriteRunFile(FileSystems.join(run_dir, "plan.jsonl")))
    if syncing and settings.audit_dir:
        ((_flatten(p, events, "audit events"), dead_letters)
         | "Write audit log" >> audit.WriteAuditLog(settings.audit_dir, spec.name,
                                                    settings.run_id, source_system.name))
    if syncing:
        advanced = (_flatten(p, watermarks, "watermark candidates")
                    | "Advance watermarks" >> finish.AdvanceWatermarks(
                        config.link_store, spec.name, settings.run_id,
                        [pair.name for pair in pairs], done + [recorded], held_pairs))
        advanced | "Release run lock" >> runlock.ReleaseRunLock(
            config.link_store, spec.name, settings.run_id)
    return SyncResult(plans=plans, links=links, dead_letters=dead_letters,
                      conflicts=all_conflicts)


def _flatten(p, pcollections, label):
    if not pcollections:
        return p | f"no {label}" >> beam.Create([])
    return pcollections | f"all {label}" >> beam.Flatten()


def _plan_row(plan_) -> dict:
    return {"pair": plan_.pair, "outcome": plan_.outcome, "link_id": plan_.link.link_id,
            "source_id": plan_.link.source_id, "target_id": plan_.link.target_id,
            "writes": [{"side": w.side, "kind": w.kind, "entity_id": w.entity_id,
                        "changes": {k: str(v) if v is not None else None
                                    for k, v in w.changes.items()}}
                       for w in plan_.writes],
            "conflicts": [dataclasses.asdict(c) for c in plan_.conflicts]}


def _read_positions(store: LinkStore, ctx: PairContext, settings: RunSettings,
                    letters: Sequence[DeadLetter]) -> dict[str, ReadPosition]:
    """Where each side's read starts: the watermark less the overlap (None: a full read); and
    which entities it reads again whatever their modified times: those of the open dead
    ``letters`` (but the ones kept as permanent: they are carried, not retried) together with
    their linked counterparts (a write that failed on a stale version needs the fresh version
    of the side it wrote), and every entity an uncommitted reservation holds."""
    retry: dict[str, set[str]] = {SOURCE: set(), TARGET: set()}
    systems = {ctx.system(side).name: side for side in (SOURCE, TARGET)}
    for letter in letters:
        if finish.is_kept(letter):
            continue
        if letter.entity_id and letter.system in systems:
            retry[systems[letter.system]].add(letter.entity_id)
    counterparts = {
        TARGET: [link.target_id for link in store.lookup_by_source(
            ctx.pair_key, sorted(retry[SOURCE])).values()],
        SOURCE: [link.source_id for link in store.lookup_by_target(
            ctx.pair_key, sorted(retry[TARGET])).values()]}
    for link in store.pending(ctx.pair_key):
        retry[SOURCE].add(link.source_id)
        retry[TARGET].add(link.target_id)
    positions = {}
    for side in (SOURCE, TARGET):
        ids = (retry[side] | set(counterparts[side])) - {None}
        since = None
        watermark = store.get_watermark(ctx.dataflow, ctx.pair.name, ctx.system(side).name)
        if watermark and not settings.full_rescan:
            moment = datetime.datetime.fromisoformat(watermark)
            since = (moment - datetime.timedelta(
                seconds=settings.read_overlap_seconds)).isoformat()
        positions[side] = ReadPosition(since=since, retry_ids=tuple(sorted(ids)))
    return positions


def refuse_embedded_store_on_distributed_runner(options: PipelineOptions,
                                                link_store: str) -> None:
    """A usage error when the runner's workers cannot share the store at ``link_store`` (a
    local SQLite file); the store is not opened."""
    runner = options.view_as(StandardOptions).runner or ""
    name = runner if isinstance(runner, str) else type(runner).__name__
    if (not link_store_class(link_store).distributed
            and any(name.endswith(r) for r in _DISTRIBUTED_RUNNERS)):
        raise ConfigError(
            f"link_store: the SQLite store keeps links in one local file, which {name} workers "
            "cannot share; use a firestore://PROJECT link store on distributed runners "
            "(docs/dataflow.md)")


def run(argv: Sequence[str], *, wait: bool = True) -> dict:
    """Runs one dataflow as :class:`~pipelines.options.SyncOptions` in ``argv`` say; returns its
    report section. The entry point of the Dataflow template, whose launcher passes
    ``wait=False`` (see :func:`run_dataflow`); `talksync run` parses its own arguments and
    calls :func:`run_dataflow`."""
    options = PipelineOptions(list(argv))
    sync = options.view_as(SyncOptions)
    if not sync.dataflow:
        raise ValueError("--dataflow: name the dataflow to run (see `talksync dataflows`)")
    spec = get_dataflow(sync.dataflow)
    config, settings = settings_from(sync, load_config(sync.config))
    selected_pairs(spec, settings.pairs)   # refuse unknown pair names before anything runs
    return run_dataflow(spec, config, settings, options, wait=wait)


def settings_from(values, config: Config, **overrides) -> tuple[Config, RunSettings]:
    """The config (with ``link_store`` overridden) and :class:`RunSettings` of a run, from
    ``values`` with the attributes of :class:`~pipelines.options.SyncOptions` (parsed options,
    or `talksync run`'s arguments, which take their names and defaults from there)."""
    if values.link_store:
        config = dataclasses.replace(config, link_store=values.link_store)
    pairs = values.pairs
    if isinstance(pairs, str):
        pairs = [p.strip() for p in pairs.split(",") if p.strip()] or None
    fields = dict(run_id=getattr(values, "run_id", None) or new_run_id(), mode=values.mode,
                  full_rescan=values.full_rescan, pairs=pairs,
                  runs_dir=values.runs_dir or config.runs_dir,
                  read_overlap_seconds=values.read_overlap_seconds,
                  audit_dir=config.audit_location(values.runs_dir),
                  max_updates_per_pair=values.max_updates_per_pair,
                  max_deletes_per_pair=getattr(values, "max_deletes_per_pair",
                                               DEFAULT_MAX_DELETES_PER_PAIR),
                  confirm_mass_changes=values.confirm_mass_changes,
                  run_lock_ttl_minutes=values.run_lock_ttl_minutes,
                  missing_reference_runs=getattr(values, "missing_reference_runs",
                                                 DEFAULT_MISSING_REFERENCE_RUNS),
                  break_run_lock=values.break_run_lock)
    fields.update(overrides)
    return config, RunSettings(**fields)


def run_dataflow(spec: DataflowSpec, config: Config, settings: RunSettings,
                 options: PipelineOptions, *, wait: bool = True) -> dict:
    """Runs one dataflow and returns its section of the report.

    With ``wait=False`` it returns as soon as the runner accepted the job, with a section that
    names the job instead of counting its results: a Dataflow flex-template launcher must not
    block on ``wait_until_finish`` (the launch would time out on long syncs). The job's
    counters are then read in the Dataflow console, its run files in ``run_dir``.
    """
    standard = options.view_as(StandardOptions)
    if standard.runner is None:
        standard.runner = "FnApiRunner"   # docs/decisions/0004-local-runner.md
    started = datetime.datetime.now(datetime.UTC)
    clock = time.monotonic()
    lock = runlock.RunLock(spec.name, settings.run_id, datetime.timedelta(
        minutes=settings.run_lock_ttl_minutes)) if settings.mode == "sync" else None
    with open_link_store(config.link_store) as store:
        refuse_embedded_store_on_distributed_runner(options, config.link_store)
        if lock:
            lock.acquire(store, break_lock=settings.break_run_lock)
        try:
            p = beam.Pipeline(options=options)
            build_pipeline(p, spec, config, settings, store)
            result = p.run()
        except BaseException:
            if lock:
                runlock.release_run_lock(store, spec.name, settings.run_id)
            raise
    if not wait:        # the job gives the lock back in its last step (ReleaseRunLock)
        if lock and options.view_as(TestOptions).dry_run:     # Beam's truthiness: no job
            with open_link_store(config.link_store) as store:
                runlock.release_run_lock(store, spec.name, settings.run_id)
        return launched_section(spec, settings, result, started)
    try:
        with runlock.KeepRunLock(lock, config.link_store) if lock else contextlib.nullcontext():
            result.wait_until_finish()
    finally:
        if lock:
            with open_link_store(config.link_store) as store:
                runlock.release_run_lock(store, spec.name, settings.run_id)
    finished = datetime.datetime.now(datetime.UTC)
    return report_section(spec, settings, result, started, finished,
                          time.monotonic() - clock)


def launched_section(spec: DataflowSpec, settings: RunSettings, result, started) -> dict:
    """What a launch that does not wait knows: the job and where its files will be."""
    job_id = getattr(result, "job_id", None)
    return {"dataflow": spec.name, "mode": settings.mode, "run_id": settings.run_id,
            "started_at": started.isoformat(), "run_dir": settings.run_dir,
            "job_id": job_id() if callable(job_id) else None, "state": str(result.state)}


def report_section(spec: DataflowSpec, settings: RunSettings, result, started, finished,
                   seconds: float) -> dict:
    """The report of one dataflow run from the pipeline's counters."""
    counters = {}
    for counter in result.metrics().query(
            MetricsFilter().with_namespace(METRICS_NAMESPACE))["counters"]:
        value = counter.committed if counter.committed is not None else counter.attempted
        counters[counter.key.metric.name] = counters.get(counter.key.metric.name, 0) + value
    pairs, held_updates, held_deletes = {}, {}, {}
    # the creates, updates and deletes each system accepted (transforms/write.py's written_*):
    # a section's writes, and per system what tells --all which other dataflows have news to
    # read (pipelines/passes.py)
    by_system = dict.fromkeys((spec.source.system, spec.target.system), 0)
    for pair in selected_pairs(spec, settings.pairs):
        prefix = f"{spec.name}/{pair.name}/"
        pairs[pair.name] = {name: counters.get(prefix + name, 0) for name in REPORT_COUNTERS}
        for side, system in (("source", spec.source.system), ("target", spec.target.system)):
            by_system[system] += counters.get(f"{prefix}written_{side}", 0)
        if counters.get(prefix + HELD_UPDATES):
            held_updates[pair.name] = counters[prefix + HELD_UPDATES]
        if counters.get(prefix + HELD_DELETES):
            held_deletes[pair.name] = counters[prefix + HELD_DELETES]
        if unaccounted(pairs[pair.name]):
            _LOG.warning("%s/%s: %d entities read are counted under no outcome (a bug in the "
                         "report's accounting; please report it)", spec.name, pair.name,
                         unaccounted(pairs[pair.name]))
    requests, unreachable = ({name.split("/", 1)[1]: value
                              for name, value in sorted(counters.items())
                              if name.startswith(prefix) and value}
                             for prefix in ("requests/", "unreachable/"))
    return {"dataflow": spec.name, "mode": settings.mode, "run_id": settings.run_id,
            "started_at": started.isoformat(), "finished_at": finished.isoformat(),
            "duration_s": round(seconds, 3), "run_dir": settings.run_dir,
            "max_updates_per_pair": settings.max_updates_per_pair,
            "max_deletes_per_pair": settings.max_deletes_per_pair,
            "pairs": pairs, "held_updates": held_updates, "held_deletes": held_deletes,
            "requests": requests,
            "unreachable": unreachable, "writes": sum(by_system.values()),
            "writes_by_system": by_system}


def unaccounted(counts: dict) -> int:
    """Entities read less those counted under an outcome: 0 in every run (each entity read
    has exactly one outcome); tests and the report check it."""
    return (sum(counts.get(name, 0) for name in READ_COUNTERS)
            - sum(counts.get(name, 0) for name in OUTCOME_COUNTERS))
