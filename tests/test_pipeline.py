"""build_pipeline on its own: Beam's assert_that on the plans, links and dead letters."""

from __future__ import annotations

import apache_beam as beam
import pytest
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to, is_empty

from connectors.stores import open_link_store
from core.model import Record, SystemConfig
from core.spec import get_dataflow
from pipelines.config import load_config
from pipelines.sync_pipeline import RunSettings, build_pipeline
from transforms import read
from transforms.common import PairContext


def test_build_pipeline_returns_plans_links_and_dead_letters(harness, tmp_path):
    config = load_config(harness.config)
    spec = get_dataflow("customerp-customwebshop")
    erp = {p["ItemNo"] for p in harness.list_all("customerp", "Products")}
    shop = {p["sku"] for p in harness.list_all("customwebshop", "products")
            if not p["deleted"]}
    settings = RunSettings(run_id="test-run", pairs=["product"], runs_dir=str(tmp_path / "runs"))

    with open_link_store(config.link_store) as store:
        with test_pipeline.TestPipeline(runner="FnApiRunner") as p:
            result = build_pipeline(p, spec, config, settings, store)
            outcomes = (result.plans["product"]
                        | beam.Map(lambda plan: plan.outcome)
                        | beam.combiners.Count.PerElement())
            assert_that(outcomes, equal_to([("created_in_target", len(erp - shop)),
                                            ("created_in_source", len(shop - erp)),
                                            ("linked_by_match", len(erp & shop))]))
            linked = result.links["product"] | beam.Map(lambda item: (item.state, item.source_id))
            assert_that(linked, equal_to([("linked", sku) for sku in erp | shop]),
                        label="every product linked")
            assert_that(result.dead_letters, is_empty(), label="no dead letters")

        links = store.lookup_by_source("customerp-customwebshop/product", sorted(erp | shop))
    assert len(links) == len(erp | shop)
    assert {link.state for link in links.values()} == {"linked"}
    assert store_watermark_moved(config.link_store)


def store_watermark_moved(url: str) -> bool:
    with open_link_store(url) as store:
        return all(store.get_watermark("customerp-customwebshop", "product", system)
                   for system in ("customerp", "customwebshop"))


class _ConnectorMeetingBadData:
    """A connector whose read yields one record, then trips over a row it cannot parse."""

    name = "erp"
    request_count = 0

    def __init__(self, error: Exception):
        self._error = error

    def read(self, entity, since=None):
        yield Record(system="erp", entity=entity, id="C1", fields={"CustomerNo": "C1"})
        raise self._error

    def close(self):
        pass


@pytest.mark.parametrize("error", [KeyError("id"), TypeError("'str' object is not a mapping"),
                                   ValueError("bad /Date()/")])
def test_a_connector_that_cannot_read_a_row_fails_only_its_pair(monkeypatch, error):
    """Any connector's parse error is a pair-level read failure (one dead letter naming it),
    like a malformed page: never a crashed run."""
    spec = get_dataflow("customerp-customwebshop")
    ctx = PairContext(dataflow=spec.name, pair=spec.pairs[0],
                      source_system=SystemConfig("erp", "customerp", "http://erp.invalid"),
                      target_system=SystemConfig("shop", "customwebshop", "http://shop.invalid"),
                      link_store="sqlite:///:memory:", run_id="r1")
    monkeypatch.setattr(read, "connector_for", lambda config: _ConnectorMeetingBadData(error))
    fn = read._ReadRecordsFn(ctx, "source")
    fn.setup()
    out = list(fn.process(("changed", None)))
    records = [o for o in out if isinstance(o, Record)]
    tagged = {o.tag: o.value for o in out if isinstance(o, beam.pvalue.TaggedOutput)}
    assert [r.id for r in records] == ["C1"]
    assert tagged[read._READ_FAILED] == "customer"      # the pair, not planned this run
    letter = tagged[read._DEAD_LETTERS]
    assert (letter.stage, letter.error_class, letter.entity_id) == ("read", "validation", None)
    assert f"{type(error).__name__}" in letter.message and "was not planned" in letter.message


class _ConnectorWithout:
    """A connector whose ``get`` finds only ``C1`` (the others were deleted for good)."""

    name = "erp"
    request_count = 0

    def get(self, entity, ids):
        return [Record(system="erp", entity=entity, id=i, fields={"CustomerNo": i})
                for i in ids if i == "C1"]

    def close(self):
        pass


def test_a_record_read_again_by_id_that_is_gone_is_read_as_deleted(monkeypatch):
    """docs/deletes.md: a retried id the system no longer has (a hard delete) is a deleted
    record, so its link's delete policy applies instead of the record silently vanishing."""
    spec = get_dataflow("customerp-customwebshop")
    ctx = PairContext(dataflow=spec.name, pair=spec.pairs[0],
                      source_system=SystemConfig("erp", "customerp", "http://erp.invalid"),
                      target_system=SystemConfig("shop", "customwebshop", "http://shop.invalid"),
                      link_store="sqlite:///:memory:", run_id="r1")
    monkeypatch.setattr(read, "connector_for", lambda config: _ConnectorWithout())
    fn = read._ReadRecordsFn(ctx, "source")
    fn.setup()
    out = list(fn.process(("ids", ("C1", "C2"))))
    assert [(r.id, r.deleted) for r in out] == [("C1", False), ("C2", True)]
