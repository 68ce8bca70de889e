"""What the sync transforms share: the pair context, reference resolution, dead letters, counters.

Everything here is picklable and holds no secrets: connectors and link stores are opened in
``DoFn.setup`` from the context's configs and URLs.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
from collections.abc import Mapping
from typing import Any

import apache_beam as beam
from apache_beam.transforms.window import GlobalWindows

from connectors.base import PROGRESS_LOGGER
from connectors.errors import ApiError
from connectors.linkstore import LinkStore
from connectors.stores import open_link_store
from core.mapping import MappingError, ReferenceMissing
from core.model import LINKED, DeadLetter, SystemConfig
from core.spec import PairSpec

METRICS_NAMESPACE = "talksync"
#: one line per stage or batch (never per record): reads done, batches written, links committed
#: (the logger PROGRESS_LOGGER, which the HTTP layer also writes retries and long waits to)
progress = logging.getLogger(PROGRESS_LOGGER)
_PAYLOAD_LIMIT = 8_000


@dataclasses.dataclass(frozen=True)
class PairContext:
    """One pair of one dataflow in one run: the spec, both systems, the store, the run id."""

    dataflow: str
    pair: PairSpec
    source_system: SystemConfig
    target_system: SystemConfig
    link_store: str
    run_id: str
    #: the entities of the pairs this pair refers to: ``{pair: (source entity, target
    #: entity)}``, where an id with no link is looked up to tell "not linked yet" from
    #: "does not exist"
    references: Mapping[str, tuple[str, str]] = dataclasses.field(default_factory=dict)

    @property
    def pair_key(self) -> str:
        return f"{self.dataflow}/{self.pair.name}"

    def system(self, side: str) -> SystemConfig:
        return self.source_system if side == "source" else self.target_system

    def entity(self, side: str) -> str:
        return self.pair.source.entity if side == "source" else self.pair.target.entity

    def counter(self, name: str) -> beam.metrics.metric.Metrics.DelegatingCounter:
        return beam.metrics.Metrics.counter(METRICS_NAMESPACE,
                                            f"{self.dataflow}/{self.pair.name}/{name}")

    def dead_letter(self, *, side: str | None, entity_id: str | None, stage: str,
                    error_class: str, message: str, status: int | None = None,
                    payload: Any = None, direction: str | None = None) -> DeadLetter:
        """A dead letter about an entity of ``side`` (the side whose entity failed)."""
        system = self.system(side).name if side else ""
        return DeadLetter(
            run_id=self.run_id, dataflow=self.dataflow, pair=self.pair.name,
            direction=direction or (f"to_{side}" if side else "read"),
            system=system, entity=self.entity(side) if side else "",
            entity_id=entity_id, stage=stage, error_class=error_class, message=message,
            status=status, payload=payload_text(payload),
            created_at=datetime.datetime.now(datetime.UTC).isoformat())


def system_fields(pair: PairSpec, side: str) -> dict[str, str]:
    """Each canonical property of ``pair`` by the field of ``side``'s system it is kept in:
    what the origins of written values are keyed by (the same field in every dataflow that
    reads or writes that system, whatever the pair calls the property)."""
    return {prop.target: prop.source if side == "source" else prop.target
            for prop in pair.properties}


def in_global_window(elements):
    """Elements yielded from ``finish_bundle`` (which must carry their window), tags kept."""
    for element in elements:
        if isinstance(element, beam.pvalue.TaggedOutput):
            yield beam.pvalue.TaggedOutput(
                element.tag, GlobalWindows.windowed_value(element.value))
        else:
            yield GlobalWindows.windowed_value(element)


class BufferedStoreFn(beam.DoFn):
    """The base of the DoFns that send the link store batches: look-ups, reservations, commits.

    A round trip per element would make the store the run's bottleneck (Firestore answers in
    milliseconds, not microseconds), so elements are buffered and sent :attr:`batch_size` at a
    time, the rest when the bundle finishes (emitted in the global window, which is where
    ``finish_bundle`` output must say it goes). The store is opened once per DoFn instance
    (``setup``) and closed in ``teardown``. A subclass sets :attr:`batch_size`, passes elements
    to :meth:`buffer` from ``process`` and handles a batch in :meth:`flush_batch`.
    """

    #: elements per link-store round trip
    batch_size: int

    def __init__(self, ctx: PairContext):
        self._ctx = ctx

    def setup(self):
        self._store = open_link_store(self._ctx.link_store)

    def start_bundle(self):
        self._buffer: list = []

    def buffer(self, *elements):
        """Adds ``elements``; sends the buffer when it holds :attr:`batch_size` or more."""
        self._buffer.extend(elements)
        if len(self._buffer) >= self.batch_size:
            yield from self._flush()

    def finish_bundle(self):
        yield from in_global_window(self._flush())

    def _flush(self):
        batch, self._buffer = self._buffer, []
        if batch:
            yield from self.flush_batch(batch)

    def flush_batch(self, batch: list):
        """Sends one batch to the store; yields the outputs of its elements."""
        raise NotImplementedError

    def teardown(self):
        self._store.close()


class CallOnce(beam.PTransform):
    """Applies ``pardo`` once, to the one element of an ``Impulse``, after each of its side
    inputs is complete: how a run takes a PCollection whole (``beam.pvalue.AsList``: an empty
    one as ``[]``) or waits on it (a barrier). A combine to a list (``beam.combiners.ToList``)
    or a ``beam.Create([None])`` to start from would do the same with more transforms and
    stages, which every run pays for. Applied to the pipeline; outputs what ``pardo`` does
    (its tagged outputs too, with ``with_outputs``)."""

    def __init__(self, pardo: beam.PTransform):
        super().__init__()
        self._pardo = pardo

    def expand(self, pbegin):
        return pbegin | "Impulse" >> beam.Impulse() | "Call" >> self._pardo


def requests_counter(system: str):
    return beam.metrics.Metrics.counter(METRICS_NAMESPACE, f"requests/{system}")


def unreachable_counter(system: str):
    """Reads that got no answer at all from ``system`` (refused, unresolvable, timed out)
    after the HTTP layer's retries: an outage, which fails the run (exit status 1)."""
    return beam.metrics.Metrics.counter(METRICS_NAMESPACE, f"unreachable/{system}")


class RequestCounting:
    """Adds a connector's new requests to the run's per-system request counter."""

    def __init__(self, connector):
        self._connector = connector
        self._seen = 0
        self._counter = requests_counter(connector.name)

    def flush(self) -> None:
        now = self._connector.request_count
        if now > self._seen:
            self._counter.inc(now - self._seen)
            self._seen = now


def payload_text(payload: Any) -> str | None:
    """A record as JSON text for a dead letter (truncated; canonical values made readable)."""
    if payload is None:
        return None
    text = json.dumps(payload, default=str, ensure_ascii=False, sort_keys=True)
    return text if len(text) <= _PAYLOAD_LIMIT else text[:_PAYLOAD_LIMIT] + "…"


class Resolver:
    """Translates ids through the links of other pairs: this run's links first, then the store.

    ``this_run`` maps a pair name to ``(source→target, target→source)`` dicts built from the
    links committed earlier in this run (side inputs); anything else is looked up in the store
    and cached for the life of the DoFn instance.
    """

    def __init__(self, dataflow: str, store: LinkStore | None,
                 this_run: Mapping[str, tuple[Mapping[str, str], Mapping[str, str]]],
                 existence: ExistenceCheck | None = None):
        self._dataflow = dataflow
        self._store = store
        self._this_run = this_run
        self._existence = existence
        self._cache: dict[tuple[str, str, str], str | None] = {}

    def __call__(self, pair: str, direction: str, entity_id: str) -> str | None:
        """The linked id, or None when not linked yet; raises
        :class:`~core.mapping.ReferenceMissing` when the entity does not exist at all."""
        forward, backward = self._this_run.get(pair, ({}, {}))
        found = (forward if direction == "to_target" else backward).get(entity_id)
        if found is not None:
            return found
        key = (pair, direction, entity_id)
        if key not in self._cache:
            self._cache[key] = self._lookup(pair, direction, entity_id)
        if self._cache[key] is None and self._existence is not None:
            missing_in = self._existence.missing_in(pair, direction, entity_id)
            if missing_in is not None:
                raise ReferenceMissing(f"{pair} {entity_id} does not exist in {missing_in}")
        return self._cache[key]

    def _lookup(self, pair: str, direction: str, entity_id: str) -> str | None:
        if self._store is None:
            return None
        pair_key = f"{self._dataflow}/{pair}"
        if direction == "to_target":
            link = self._store.lookup_by_source(pair_key, [entity_id]).get(entity_id)
            return link.target_id if link and link.state == LINKED else None
        link = self._store.lookup_by_target(pair_key, [entity_id]).get(entity_id)
        return link.source_id if link and link.state == LINKED else None


class ExistenceCheck:
    """Asks a system whether the entity an unlinked reference names exists: an order whose
    customer exists is waiting for that customer's link (retried until it comes); an order
    whose customer exists nowhere is waiting for nothing (docs/rules.md).

    ``connector(side)`` gives the open connector of a side (the caller's, opened in its
    ``setup``). The id of a reference read from the source is a source id, looked up in the
    source system, and the other way round. Answers are kept for the life of the DoFn; a
    lookup that fails (the system unreachable) answers "exists": never call a record missing
    without the system saying so.
    """

    def __init__(self, ctx: PairContext, connector):
        self._ctx = ctx
        self._connector = connector
        self._answers: dict[tuple[str, str, str], str | None] = {}

    def missing_in(self, pair: str, direction: str, entity_id: str) -> str | None:
        """The system's name when the entity does not exist there, else None."""
        key = (pair, direction, entity_id)
        if key not in self._answers:
            self._answers[key] = self._ask(pair, direction, entity_id)
        return self._answers[key]

    def _ask(self, pair: str, direction: str, entity_id: str) -> str | None:
        entities = self._ctx.references.get(pair)
        if entities is None:
            return None
        side = "source" if direction == "to_target" else "target"
        entity = entities[0] if side == "source" else entities[1]
        connector = self._connector(side)
        try:
            found = connector.get(entity, [entity_id])
        except (ApiError, KeyError, TypeError, ValueError) as exc:   # no answer: no verdict
            progress.warning("%s: could not ask %s whether %s %s exists: %s",
                             self._ctx.pair.name, connector.name, pair, entity_id, exc)
            return None
        if any(getattr(row, "id", None) == entity_id and not getattr(row, "deleted", False)
               for row in found):
            return None
        return self._ctx.system(side).name


#: the stage of a letter about a reference to an entity that does not exist
REFERENCE_STAGE = "reference"


def reference_stage(error: MappingError, stage: str) -> str:
    """The stage of a mapping failure's letter: :data:`REFERENCE_STAGE` when only references
    failed and one names an entity that does not exist (retried a bounded number of runs,
    then kept as permanent: transforms.finish.CountAttempts), else ``stage``."""
    return REFERENCE_STAGE if error.missing else stage


def reference_side_inputs(links_by_pair: Mapping[str, beam.PCollection],
                          pair: PairSpec) -> dict[str, Any]:
    """Side inputs (as keyword arguments) with this run's links of the pairs ``pair`` refers to."""
    side_inputs = {}
    for dep in pair.depends_on:
        links = links_by_pair.get(dep)
        if links is None:
            continue  # that pair is not part of this run: its links come from the store
        live = links | f"{pair.name}: {dep} live links" >> beam.Filter(
            lambda link: link.state == LINKED)      # not a tombstone, nor an unlink
        side_inputs[f"{dep}__to_target"] = beam.pvalue.AsDict(
            live | f"{pair.name}: {dep} ids to target" >> beam.Map(
                lambda link: (link.source_id, link.target_id)))
        side_inputs[f"{dep}__to_source"] = beam.pvalue.AsDict(
            live | f"{pair.name}: {dep} ids to source" >> beam.Map(
                lambda link: (link.target_id, link.source_id)))
    return side_inputs


def this_run_links(pair: PairSpec, side_inputs: Mapping[str, Any]):
    """The ``this_run`` mapping of :class:`Resolver` from the side inputs' values."""
    return {dep: (side_inputs.get(f"{dep}__to_target", {}),
                  side_inputs.get(f"{dep}__to_source", {}))
            for dep in pair.depends_on}
