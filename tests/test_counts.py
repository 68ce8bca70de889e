"""Counts that add up: each record read is counted once, under exactly one outcome.

The harness checks ``read src + read tgt = the outcome columns`` after every run of every
end-to-end test (tests/conftest.py); these tests set up the runs where that is hardest: soft
deletes, a dead letter retried while the read overlap reads the same record again, plan runs.
"""

from __future__ import annotations

import datetime
import json
import pathlib
from decimal import Decimal

import apache_beam as beam
import yaml
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to

from connectors.stores import open_link_store
from core.model import DeadLetter, Link, Record, SystemConfig, UnreadableRecord
from core.planner import (
    DEAD,
    DELETED,
    SKIPPED,
    SOURCE,
    TARGET,
    Entity,
    Rejection,
    SyncPlan,
    account_group,
)
from core.spec import get_dataflow
from transforms import finish, read
from transforms.common import METRICS_NAMESPACE, PairContext

DATAFLOW = "customerp-customwebshop"


def _letters(report) -> list[dict]:
    path = pathlib.Path(report["run_dir"]) / "dead_letters.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


# --- end to end --------------------------------------------------------------------------------

def test_soft_deleted_records_are_counted_as_deleted(harness, capsys):
    seed_deleted = [c for c in harness.list_all("customwebshop", "customers") if c["deleted"]]

    status, report = harness.run()

    assert status == 0, report
    customers = report["pairs"]["customer"]
    assert customers["deleted"] == len(seed_deleted)
    out = capsys.readouterr().out
    assert " deleted " in out.splitlines()[1]      # the column, in the table's header
    assert "deleted: deleted in their system" in out and "read src + read tgt = " in out

    # A linked customer deleted in the webshop: read as deleted, and nothing else is done.
    linked = next(c for c in harness.shop_all("customers")
                  if c["email"].lower() in {e["Email"].lower() for e in
                                            harness.list_all("customerp", "Customers")})
    harness.people.delete("customwebshop", "customers", linked["id"])
    harness.clear_logs()

    status, report = harness.run()

    assert status == 0, report
    assert report["pairs"]["customer"]["deleted"] >= 1
    assert harness.writes("customerp") == {} and harness.writes("customwebshop") == {}


def test_a_retried_dead_letter_in_the_read_overlap_is_read_and_lettered_once(harness, capsys):
    bad = harness.list_all("customerp", "Products")[0]["ItemNo"]
    harness.put_erp("Products", bad, {"StockQty": Decimal("2.5")})
    status, report = harness.run()
    assert status == 3 and report["pairs"]["product"]["dead"] == 1
    store_url = yaml.safe_load(open(harness.config))["link_store"]
    with open_link_store(store_url) as store:
        watermark = store.get_watermark(DATAFLOW, "product", "customerp")
    modified = harness.get("customerp", "Products", bad).json()["ModifiedAt"]
    # the next run reads the product twice: by id (its open dead letter) and in the overlap
    assert datetime.datetime.fromisoformat(modified.replace("Z", "+00:00")) >= \
        datetime.datetime.fromisoformat(watermark) - datetime.timedelta(seconds=60)
    capsys.readouterr()

    for args in (("--plan",), ()):
        status, report = harness.run(*args)

        assert status == 3, report
        assert "product: read again 1 of 1 Products" in capsys.readouterr().err
        product = report["pairs"]["product"]
        assert product["dead"] == 1 and product["dead_letters"] == 1
        letters = [letter for letter in _letters(report) if letter["entity_id"] == bad]
        assert len(letters) == 1 and letters[0]["stage"] == "map"
    with open_link_store(store_url) as store:
        stored = [letter for letter in store.open_dead_letters(DATAFLOW, "product")
                  if letter.entity_id == bad]
    assert len(stored) == 1


# --- the pieces ----------------------------------------------------------------------------------

_T1 = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
_T2 = _T1 + datetime.timedelta(minutes=5)


class _ConnectorReadingTwice:
    """C1 and the unreadable U1 come in the changed read and again by id; C1 newer by id."""

    name = "erp"
    request_count = 0

    def read(self, entity, since=None):
        yield Record(system="erp", entity=entity, id="C1", fields={"v": 1}, modified=_T1)
        yield Record(system="erp", entity=entity, id="C2", fields={"v": 2}, modified=_T1)
        yield UnreadableRecord(system="erp", entity=entity, id="U1", reason="no e-mail")

    def get(self, entity, ids):
        return [Record(system="erp", entity=entity, id="C1", fields={"v": 3}, modified=_T2),
                UnreadableRecord(system="erp", entity=entity, id="U1", reason="no e-mail")]

    def close(self):
        pass


def _context() -> PairContext:
    spec = get_dataflow(DATAFLOW)
    return PairContext(dataflow=spec.name, pair=spec.pairs[0],
                       source_system=SystemConfig("erp", "customerp", "http://erp.invalid"),
                       target_system=SystemConfig("shop", "customwebshop", "http://shop.invalid"),
                       link_store="sqlite:///:memory:", run_id="r1")


def test_a_record_read_twice_is_passed_on_counted_and_lettered_once(monkeypatch):
    ctx = _context()
    monkeypatch.setattr(read, "connector_for", lambda config: _ConnectorReadingTwice())
    p = test_pipeline.TestPipeline(runner="FnApiRunner")
    out = p | read.ReadChanges(ctx, SOURCE, since=None, retry_ids=["C1", "U1"])
    assert_that(out.records | beam.Map(lambda r: (r.id, r.fields["v"])),
                equal_to([("C1", 3), ("C2", 2)]))
    assert_that(out.dead_letters | beam.Flatten()
                | beam.Map(lambda item: (item.entity_id, item.stage)),
                equal_to([("U1", "read")]), label="one letter")
    result = p.run()
    result.wait_until_finish()
    counters = {c.key.metric.name: c.committed for c in result.metrics().query(
        MetricsFilter().with_namespace(METRICS_NAMESPACE))["counters"]}
    prefix = f"{ctx.dataflow}/{ctx.pair.name}/"
    assert counters[prefix + "read_source"] == 3 and counters[prefix + DEAD] == 1


def _letter(entity_id, stage, message="failed") -> DeadLetter:
    return DeadLetter(run_id="r1", dataflow=DATAFLOW, pair="product", direction="to_target",
                      system="erp", entity="Products", entity_id=entity_id, stage=stage,
                      error_class="validation", message=message)


def test_one_dead_letter_per_entity_the_earliest_stage_kept():
    letters = [_letter("P1", "write"), _letter("P1", "map"), _letter("P1", "map"),
               _letter("P2", "write"), _letter(None, "read", "page 3 was garbled"),
               _letter(None, "read", "page 4 was garbled")]
    with test_pipeline.TestPipeline(runner="FnApiRunner") as p:
        kept = p | beam.Create(letters) | finish.OneLetterPerEntity()
        assert_that(kept | beam.Map(lambda item: (item.entity_id, item.stage)),
                    equal_to([("P1", "map"), ("P2", "write"), (None, "read"), (None, "read")]))


def test_account_group_gives_each_entity_of_a_group_one_place():
    def entity(side, id_, deleted=False):
        return Entity(side, id_, {}, deleted=deleted)
    linked = SyncPlan(pair="customer", outcome="updated",
                      link=Link(pair="p", link_id="s:S1", source_id="S1", target_id="T1"))
    sources = [entity(SOURCE, "S1"), entity(SOURCE, "S2", deleted=True), entity(SOURCE, "S3")]
    targets = [entity(TARGET, "T1"), entity(TARGET, "T2")]
    rejections = [Rejection(side=SOURCE, entity_id="S3", message="duplicate match key")]

    plans, counts = account_group(sources, targets, [linked], rejections)

    assert [plan.records_read for plan in plans] == [2]
    assert counts == {DELETED: 1, DEAD: 1, SKIPPED: 1}      # T2: nothing to do by design
