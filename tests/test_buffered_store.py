"""The link-store DoFns' shared shape (transforms.common.BufferedStoreFn) and the typed results
of the composite transforms (issue 17, point 4)."""

from __future__ import annotations

import apache_beam as beam
from apache_beam.utils.windowed_value import WindowedValue

from core.model import SystemConfig
from core.spec import get_dataflow
from pipelines.options import SyncOptions
from pipelines.sync_pipeline import RunSettings
from transforms import breaker, plan, read, runlock, sync, write
from transforms.common import BufferedStoreFn, PairContext


def _context(tmp_path) -> PairContext:
    spec = get_dataflow("customerp-customwebshop")
    return PairContext(dataflow=spec.name, pair=spec.pairs[0],
                       source_system=SystemConfig("erp", "customerp", "http://erp.invalid"),
                       target_system=SystemConfig("shop", "customwebshop", "http://shop.invalid"),
                       link_store=f"sqlite:///{tmp_path}/links.db", run_id="r1")


class _Batches(BufferedStoreFn):
    """Records the batches it is given and passes their elements on."""

    batch_size = 3

    def setup(self):
        super().setup()
        self.batches: list[list] = []

    def process(self, element):
        yield from self.buffer(*element)

    def flush_batch(self, batch):
        self.batches.append(batch)
        yield from batch


def test_batches_of_the_batch_size_then_the_rest_in_the_global_window(tmp_path):
    fn = _Batches(_context(tmp_path))
    fn.setup()
    fn.start_bundle()
    out = []
    for element in ([1], [2], [3, 4], [5], [6]):
        out += list(fn.process(element))
    rest = list(fn.finish_bundle())
    fn.teardown()
    # an element's items go in together: a batch may pass the size, never split an element
    assert fn.batches == [[1, 2, 3, 4], [5, 6]]
    assert out == [1, 2, 3, 4]
    assert all(isinstance(value, WindowedValue) for value in rest)
    assert [value.value for value in rest] == [5, 6]
    fn.start_bundle()
    assert list(fn.finish_bundle()) == []
    assert len(fn.batches) == 2          # an empty buffer sends nothing to the store


def test_the_link_store_dofns_share_the_base_and_keep_their_batch_sizes():
    assert issubclass(plan._LookUpLinksFn, BufferedStoreFn)
    assert plan._LookUpLinksFn.batch_size == 500
    assert write._ReserveLinksFn.batch_size == 200 and write._CommitLinksFn.batch_size == 200
    assert issubclass(write._ReserveLinksFn, BufferedStoreFn)
    assert issubclass(write._CommitLinksFn, BufferedStoreFn)


def test_composite_transforms_return_named_pcollections(tmp_path):
    p = beam.Pipeline(runner="FnApiRunner")
    ctx = _context(tmp_path)
    positions = {side: sync.ReadPosition() for side in ("source", "target")}
    out = p | "Sync" >> sync.SyncPair(ctx, positions, {})
    assert isinstance(out, sync.SyncPairResult)
    # the dead letters, watermarks and held pairs as the PCollections they are made of
    parts = [pc for field in out for pc in (field if isinstance(field, tuple) else (field,))]
    assert all(isinstance(pc, beam.PCollection) for pc in parts)
    assert all(isinstance(part, tuple) for part in (out.dead_letters, out.watermarks, out.held))
    applied = next(t for t in p.transforms_stack[0].parts if t.full_label == "Sync")
    assert {name.partition(".")[0] for name in applied.outputs} == set(
        sync.SyncPairResult._fields)
    assert len(applied.outputs) == len(parts)
    planned = p | "Plan mode" >> sync.SyncPair(ctx, positions, {}, apply_changes=False)
    assert (planned.conflicts, planned.committed, planned.audit, planned.held) == (None,) * 4
    assert read.ReadChangesResult._fields == ("records", "watermarks", "dead_letters",
                                              "read_failed")
    assert breaker.HoldMassChangesResult._fields == ("plans", "held")


def test_run_settings_take_the_option_defaults():
    options = SyncOptions([])
    settings = RunSettings(run_id="r")
    for name in ("mode", "read_overlap_seconds", "max_updates_per_pair",
                 "run_lock_ttl_minutes", "confirm_mass_changes", "break_run_lock",
                 "full_rescan"):
        assert getattr(settings, name) == getattr(options, name), name
    assert settings.max_updates_per_pair == breaker.DEFAULT_MAX_UPDATES
    assert settings.run_lock_ttl_minutes == runlock.DEFAULT_TTL_MINUTES
