"""The end of a run: its files (dead letters, conflicts, plan), the store's records, watermarks.

Files go through Beam's ``FileSystems``, so the same code writes a local folder or a ``gs://``
path on Dataflow. Watermarks advance last, behind a barrier on everything the run committed or
dead-lettered: a run that dies earlier leaves them where they were, and the next run reads the
same changes again (which plan as no-ops where they were already synced).
"""

from __future__ import annotations

import dataclasses
import datetime
import io
import json
import uuid
from collections.abc import Iterable, Mapping, Sequence

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from connectors.stores import open_link_store
from core.model import DeadLetter
from transforms.common import METRICS_NAMESPACE, REFERENCE_STAGE, CallOnce

_DEAD_LETTER_COLUMNS = [
    ("run_id", "string"), ("dataflow", "string"), ("pair", "string"), ("direction", "string"),
    ("system", "string"), ("entity", "string"), ("entity_id", "string"), ("stage", "string"),
    ("error_class", "string"), ("message", "string"), ("status", "int64"),
    ("payload", "string"), ("created_at", "string"), ("attempts", "int64"),
]


def _json_line(record) -> str:
    data = record.to_dict() if hasattr(record, "to_dict") else record
    return json.dumps(data, ensure_ascii=False, sort_keys=True, default=str)


def _write_bytes(path: str, data: bytes) -> None:
    with FileSystems.create(path) as handle:
        handle.write(data)


def write_parquet(path: str, rows: Sequence[Mapping], columns) -> None:
    """Writes rows as a Parquet file with the given (name, arrow type) columns; a type is the
    name of a pyarrow type factory (``"string"``) or a pyarrow type (lists, structs)."""
    import pyarrow
    import pyarrow.parquet
    schema = pyarrow.schema([
        (name, type_ if isinstance(type_, pyarrow.DataType) else getattr(pyarrow, type_)())
        for name, type_ in columns])
    table = pyarrow.Table.from_pylist([{name: row.get(name) for name, _ in columns}
                                       for row in rows], schema=schema)
    buffer = io.BytesIO()
    pyarrow.parquet.write_table(table, buffer)
    _write_bytes(path, buffer.getvalue())


class WriteRunFile(beam.PTransform):
    """Writes every element of a PCollection as one JSON Lines file of the run.

    Always writes the file (empty when there is nothing), and outputs one element (the row
    count) when done, which later steps use as a barrier.
    """

    def __init__(self, path: str, parquet_columns=None):
        super().__init__()
        self._path = path
        self._parquet_columns = parquet_columns

    def expand(self, records):
        return records.pipeline | "Write" >> CallOnce(beam.ParDo(
            _WriteRunFileFn(self._path, self._parquet_columns),
            rows=beam.pvalue.AsList(records)))


class _WriteRunFileFn(beam.DoFn):
    def __init__(self, path: str, parquet_columns):
        self._path = path
        self._parquet_columns = parquet_columns

    def process(self, _, rows: list):
        rows = sorted(rows, key=_json_line)
        _write_bytes(self._path, "".join(_json_line(r) + "\n" for r in rows).encode("utf-8"))
        if self._parquet_columns is not None:
            dicts = [r.to_dict() if hasattr(r, "to_dict") else r for r in rows]
            write_parquet(self._path.rsplit(".", 1)[0] + ".parquet", dicts,
                          self._parquet_columns)
        yield len(rows)


_STAGES = ("read", "map", "reference", "plan", "reserve", "write", "commit")


class OneLetterPerEntity(beam.PTransform):
    """Keeps one dead letter per entity and run: the one of the earliest stage.

    Each entity is read, planned and written once per run, so it should fail once; this
    makes sure of it, for the run's files and the store alike (a second letter would retry
    nothing more, and would count the entity twice). Letters about no entity (a failed read
    of a whole pair) pass on as they are.
    """

    def expand(self, letters):
        return (letters
                | "Key by entity" >> beam.Map(lambda letter: (_letter_key(letter), letter))
                | "Group by entity" >> beam.GroupByKey()
                | "Earliest stage" >> beam.MapTuple(lambda _, same: min(same, key=_letter_rank)))


def _letter_key(letter: DeadLetter) -> tuple:
    """The entity of a letter about one; a key of its own for a letter about none (a failed
    read of a whole pair), which then passes on alone."""
    return entity_key(letter) if letter.entity_id else ("", "", "", "", uuid.uuid4().hex)


def entity_key(letter: DeadLetter) -> tuple:
    """The entity a letter is about: (dataflow, pair, system, entity, entity id)."""
    return (letter.dataflow, letter.pair, letter.system, letter.entity, letter.entity_id)


def _letter_rank(letter: DeadLetter) -> tuple:
    stage = _STAGES.index(letter.stage) if letter.stage in _STAGES else len(_STAGES)
    return (stage, letter.message or "", letter.created_at or "")


PERMANENT = "permanent"


def is_kept(letter: DeadLetter) -> bool:
    """A letter kept as permanent: a reference to an entity that exists in neither system,
    retried its runs (``--missing_reference_runs``). It is carried from run to run
    (:class:`CarryKeptLetters`) without reading the record again, until the record changes."""
    return letter.stage == REFERENCE_STAGE and letter.error_class == PERMANENT


def count_attempts(letter: DeadLetter, previous: Mapping[tuple, DeadLetter],
                   missing_reference_runs: int) -> DeadLetter:
    """The letter with ``attempts``: one more than the entity's open letter of the previous
    run (1 without one). A reference to an entity that does not exist is retried
    ``missing_reference_runs`` runs, the count in its message; then it is kept as
    permanent. A letter already kept passes on as it is."""
    if is_kept(letter):
        return letter
    before = previous.get(entity_key(letter))
    attempts = before.attempts + 1 if before is not None and before.run_id != letter.run_id \
        else letter.attempts
    if letter.stage != REFERENCE_STAGE:
        return dataclasses.replace(letter, attempts=attempts)
    if attempts >= missing_reference_runs:
        return dataclasses.replace(
            letter, attempts=attempts, error_class=PERMANENT,
            message=f"{letter.message}; kept as permanent after {attempts} "
                    f"run{'s' if attempts > 1 else ''}: not read again until it changes "
                    "(correct the reference, or create what it names)")
    return dataclasses.replace(
        letter, attempts=attempts,
        message=f"{letter.message} (retried on the next run: {attempts} of "
                f"{missing_reference_runs})")


class CarryKeptLetters(beam.PTransform):
    """The letters kept as permanent of one side of a pair, for this run: each one whose record
    this run did not read again (a record that changed was read, and is judged afresh), with
    this run's id. Input: the side's records read."""

    def __init__(self, run_id: str, letters):
        super().__init__()
        self._run_id = run_id
        self._letters = list(letters)

    def expand(self, records):
        ids = frozenset(letter.entity_id for letter in self._letters)
        read_again = (records
                      | "Kept ones read" >> beam.Filter(lambda record: record.id in ids)
                      | "Their ids" >> beam.Map(lambda record: record.id))
        now = datetime.datetime.now(datetime.UTC).isoformat()
        carried = [dataclasses.replace(letter, run_id=self._run_id, created_at=now)
                   for letter in self._letters]
        return (records.pipeline
                | "Kept letters" >> beam.Create(carried)
                | "Not read again" >> beam.FlatMap(
                    lambda letter, read: [] if letter.entity_id in set(read) else [letter],
                    read=beam.pvalue.AsList(read_again)))


class RecordDeadLetters(beam.PTransform):
    """Writes the run's dead letters (JSON Lines and Parquet) and keeps them in the link store,
    so the next run reads those entities again. Outputs the count when done.

    The letters of pairs in ``held`` (held back by the circuit breaker, or not planned because
    a read failed) go to the run files only: stored, they would hide the letters of earlier
    runs, which the next run must retry.
    """

    def __init__(self, run_dir: str, link_store: str | None,
                 held: beam.PCollection | None = None):
        super().__init__()
        self._run_dir = run_dir
        self._link_store = link_store
        self._held = held

    def expand(self, dead_letters):
        dead_letters = dead_letters | "Count" >> beam.Map(_counted)
        written = dead_letters | "Files" >> WriteRunFile(
            FileSystems.join(self._run_dir, "dead_letters.jsonl"), _DEAD_LETTER_COLUMNS)
        if self._link_store is None:
            return written
        held = self._held if self._held is not None else \
            dead_letters.pipeline | "Nothing held" >> beam.Create([])
        return dead_letters.pipeline | "Store" >> CallOnce(beam.ParDo(
            _StoreDeadLettersFn(self._link_store), letters=beam.pvalue.AsList(dead_letters),
            barrier=beam.pvalue.AsList(written), held=beam.pvalue.AsList(held)))


def _counted(letter: DeadLetter) -> DeadLetter:
    """Counts a letter of the run's file in its pair's ``dead_letters`` (plan runs too)."""
    beam.metrics.Metrics.counter(
        METRICS_NAMESPACE, f"{letter.dataflow}/{letter.pair}/dead_letters").inc()
    return letter


class _StoreDeadLettersFn(beam.DoFn):
    def __init__(self, link_store: str):
        self._link_store = link_store

    def process(self, _, letters: list[DeadLetter], barrier, held):
        letters = [letter for letter in letters if letter.pair not in held]
        with open_link_store(self._link_store) as store:
            store.add_dead_letters(letters)
        yield len(letters)


class AdvanceWatermarks(beam.PTransform):
    """After ``barrier`` is complete: moves each (pair, system) watermark forward and retires
    the dead letters that earlier runs left for the pairs this run processed — except for the
    pairs in ``held`` (names of pairs whose changes the circuit breaker held back, or that were
    not planned because a read failed: their next run must read the same changes and retry the
    same letters)."""

    def __init__(self, link_store: str, dataflow: str, run_id: str, pairs: Sequence[str],
                 barrier: Iterable[beam.PCollection], held: beam.PCollection | None = None):
        super().__init__()
        self._link_store = link_store
        self._dataflow = dataflow
        self._run_id = run_id
        self._pairs = list(pairs)
        self._barrier = list(barrier)
        self._held = held

    def expand(self, candidates):
        # candidates: (pair, system, iso timestamp) of the newest record each changed read saw
        barrier = (self._barrier | "Barrier" >> beam.Flatten()) if len(self._barrier) > 1 \
            else self._barrier[0]
        held = self._held if self._held is not None else \
            candidates.pipeline | "Nothing held" >> beam.Create([])
        return candidates.pipeline | "Advance" >> CallOnce(beam.ParDo(
            _AdvanceWatermarksFn(self._link_store, self._dataflow, self._run_id, self._pairs),
            candidates=beam.pvalue.AsList(candidates), barrier=beam.pvalue.AsList(barrier),
            held=beam.pvalue.AsList(held)))


class _AdvanceWatermarksFn(beam.DoFn):
    def __init__(self, link_store, dataflow, run_id, pairs):
        self._link_store = link_store
        self._dataflow = dataflow
        self._run_id = run_id
        self._pairs = pairs

    def process(self, _, candidates, barrier, held):
        newest: dict[tuple[str, str], datetime.datetime] = {}
        for pair, system, value in candidates:
            if pair in held:
                continue
            moment = datetime.datetime.fromisoformat(value)
            if (pair, system) not in newest or moment > newest[(pair, system)]:
                newest[(pair, system)] = moment
        with open_link_store(self._link_store) as store:
            for (pair, system), moment in sorted(newest.items()):
                store.advance_watermark(self._dataflow, pair, system, moment.isoformat())
            for pair in self._pairs:
                if pair not in held:
                    store.retire_dead_letters(self._dataflow, pair, self._run_id)
        yield len(newest)
