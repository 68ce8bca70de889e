"""The compact coders of the planning shuffle (transforms/coders.py): exact round trips of every
field of entities and links, and that a planning pipeline actually uses them."""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import pickle
import typing

import apache_beam as beam
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.model import LINK_STATES, Link
from core.planner import Entity
from core.provenance import EditOrigin
from transforms import coders

# --- strategies --------------------------------------------------------------------------------

_TEXT = st.text(alphabet=st.characters(), max_size=20) | st.sampled_from(
    ["", "Ærø Å/Sø", "日本語", "emoji 🧾", "lone \ud800 surrogate", "\x00nul"])
_ZONES = st.timezones() | st.sampled_from([datetime.UTC, datetime.timezone(
    datetime.timedelta(hours=5, minutes=30))])
_DATETIMES = st.datetimes(timezones=st.none() | _ZONES)
_SCALARS = (st.none() | st.booleans() | st.integers() | st.integers(min_value=2 ** 63)
            | st.integers(max_value=-(2 ** 63) - 1) | _TEXT
            | st.decimals(allow_nan=False, allow_infinity=False) | _DATETIMES | st.dates()
            | st.floats(allow_nan=False) | st.binary(max_size=20))
_VALUES = st.recursive(_SCALARS, lambda inner: (
    st.lists(inner, max_size=4) | st.lists(inner, max_size=4).map(tuple)
    | st.dictionaries(_TEXT, inner, max_size=4)), max_leaves=12)
_MAPS = st.dictionaries(_TEXT, _VALUES, max_size=8)
_OPTIONAL_TEXT = st.none() | _TEXT

#: every field of Entity, by name: a field added to the dataclass fails the coverage test
_ENTITY_FIELDS = {"side": st.sampled_from(["source", "target"]), "id": _TEXT, "view": _MAPS,
                  "modified": st.none() | _DATETIMES, "deleted": st.booleans(),
                  "etag": _OPTIONAL_TEXT, "system": _TEXT,
                  # a few edits shared among the properties, as one write leaves them
                  "origins": st.lists(st.builds(EditOrigin, system=_TEXT, at=_DATETIMES),
                                      min_size=1, max_size=3).flatmap(
                      lambda edits: st.dictionaries(_TEXT, st.sampled_from(edits), max_size=6)),
                  "others_edited": st.none() | _DATETIMES}
_LINK_FIELDS = {"pair": _TEXT, "link_id": _TEXT, "source_id": _OPTIONAL_TEXT,
                "target_id": _OPTIONAL_TEXT, "state": st.sampled_from(LINK_STATES),
                "snapshot_source": _MAPS, "snapshot_target": _MAPS,
                "source_etag": _OPTIONAL_TEXT, "target_etag": _OPTIONAL_TEXT,
                "attempt_id": _OPTIONAL_TEXT,
                "version": st.integers(min_value=-(2 ** 63), max_value=2 ** 63 - 1),
                "updated_at": _OPTIONAL_TEXT}
_ENTITIES = st.fixed_dictionaries(_ENTITY_FIELDS).map(lambda fields: Entity(**fields))


def _with_origins_of_its_view(entity: Entity):
    """``entity`` with origins of its view's own properties (coded by their place in the view)
    and of one that is not in it."""
    names = [*entity.view, "not in the view"]
    edits = list(entity.origins.values()) or [
        EditOrigin("customerp", datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC))]
    return st.dictionaries(st.sampled_from(names), st.sampled_from(edits), max_size=6).map(
        lambda origins: dataclasses.replace(entity, origins=origins))


_ENTITIES = _ENTITIES | _ENTITIES.flatmap(_with_origins_of_its_view)
_LINKS = st.fixed_dictionaries(_LINK_FIELDS).map(lambda fields: Link(**fields)) | st.builds(
    lambda link, same: link.replace(snapshot_target=dict(link.snapshot_source)) if same else link,
    st.fixed_dictionaries(_LINK_FIELDS).map(lambda fields: Link(**fields)), st.booleans())


def exact(a, b) -> bool:
    """Equal, and of the same types all the way down (1 is not True, 1.0 not Decimal("1")), and
    datetimes at the same instant with the same offset."""
    if type(a) is not type(b):
        return False
    if isinstance(a, datetime.datetime):
        # the same wall-clock time at the same offset: the same instant (``==`` across zones
        # is never true for a time a zone's clocks pass twice, PEP 495)
        return a.utcoffset() == b.utcoffset() and a.replace(
            tzinfo=None) == b.replace(tzinfo=None)
    if isinstance(a, decimal.Decimal):
        return str(a) == str(b)
    if isinstance(a, float):
        return repr(a) == repr(b)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(exact(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return list(a) == list(b) and all(exact(a[k], b[k]) for k in a)
    if isinstance(a, (Entity, Link, EditOrigin)):
        return all(exact(getattr(a, f), getattr(b, f)) for f in coders.coded_fields(type(a)))
    return a == b


def round_trip(coder: beam.coders.Coder, value):
    return coder.decode(coder.encode(value))


# --- round trips -------------------------------------------------------------------------------

def test_the_coders_write_every_field_of_their_types():
    """A field added to Entity or Link (e.g. on a merge) must be added to its coder, and to the
    strategies above, which build each dataclass from every one of its fields by name."""
    assert coders.ENTITY_FIELDS == coders.coded_fields(Entity)
    assert coders.LINK_FIELDS == coders.coded_fields(Link)
    assert tuple(_ENTITY_FIELDS) == coders.coded_fields(Entity)
    assert tuple(_LINK_FIELDS) == coders.coded_fields(Link)


@settings(max_examples=300, deadline=None)
@given(_VALUES)
def test_values_round_trip_exactly(value):
    out = beam.coders.coder_impl.create_OutputStream()
    coders.write_value(value, out)
    assert exact(coders.read_value(beam.coders.coder_impl.create_InputStream(out.get())), value)


@settings(max_examples=200, deadline=None)
@given(_ENTITIES)
def test_entities_round_trip_exactly(entity):
    assert exact(round_trip(coders.EntityCoder(), entity), entity)
    assert exact(round_trip(coders.PlanItemCoder(), entity), entity)


@settings(max_examples=200, deadline=None)
@given(_LINKS)
def test_links_round_trip_exactly(link):
    assert exact(round_trip(coders.LinkCoder(), link), link)
    decoded = round_trip(coders.PlanItemCoder(), link)
    assert exact(decoded, link)
    assert decoded.snapshot_target is not decoded.snapshot_source


def test_equal_snapshots_are_written_once_but_not_values_that_only_compare_equal():
    snapshot = {"email": "a@example.com", "credit": decimal.Decimal("10.50"), "vip": True}
    link = Link(pair="d/p", link_id="s:1", source_id="1", target_id="2",
                snapshot_source=snapshot, snapshot_target=dict(snapshot))
    one_sided = link.replace(snapshot_target={})
    assert len(coders.LinkCoder().encode(link)) < len(coders.LinkCoder().encode(one_sided)) + 5
    # True == 1 and Decimal("10.50") == Decimal("10.5"): equal in Python, not the same value
    lookalike = link.replace(snapshot_target={**snapshot, "credit": decimal.Decimal("10.5"),
                                              "vip": 1})
    assert exact(round_trip(coders.LinkCoder(), lookalike), lookalike)


def test_the_coders_are_far_smaller_than_pickle():
    entity = Entity("source", "S1", {"email": "customer1@example.com", "name": "Kunde 1 AS",
                                     "vat_number": None},
                    datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC), False, None)
    assert len(coders.EntityCoder().encode(entity)) * 2 < len(pickle.dumps(entity))


def test_a_value_the_store_could_not_keep_is_refused_not_pickled():
    entity = Entity("source", "S1", {"when": object()})
    with pytest.raises(TypeError, match="cannot code a value of type object"):
        coders.EntityCoder().encode(entity)
    with pytest.raises(TypeError, match="carries entities and links"):
        coders.PlanItemCoder().encode("a string")


def test_an_origin_that_is_not_an_edit_origin_is_refused_not_pickled():
    at = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    with pytest.raises(TypeError, match="origin of type dict"):
        coders.EntityCoder().encode(Entity("source", "S1", {}, origins={
            "email": {"system": "customerp", "at": at}}))
    with pytest.raises(TypeError, match="type str as an edit time"):
        coders.EntityCoder().encode(Entity("source", "S1", {}, origins={
            "email": EditOrigin("customerp", at.isoformat())}))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="type date as an edit time"):
        coders.EntityCoder().encode(Entity("source", "S1", {}, others_edited=at.date()))


def test_an_entity_with_provenance_stays_far_smaller_than_pickle():
    at = datetime.datetime(2026, 1, 1, 12, 30, tzinfo=datetime.UTC)
    entity = Entity("target", "T1", {"email": "customer1@example.com", "name": "Kunde 1 AS"},
                    at, False, '"etag-1"', system="customwebshop",
                    origins={"email": EditOrigin("customerp", at),
                             "name": EditOrigin("customerp", at)},
                    others_edited=at)
    decoded = round_trip(coders.EntityCoder(), entity)
    assert exact(decoded, entity)
    assert decoded.edited_at("email") == at
    assert len(coders.EntityCoder().encode(entity)) * 2 < len(pickle.dumps(entity))
    # one write's edit is written once, however many properties it gave a value
    more = dataclasses.replace(entity, origins={
        **entity.origins, "phone": EditOrigin("customerp", at)})
    assert len(coders.EntityCoder().encode(more)) == len(
        coders.EntityCoder().encode(entity)) + len("phone") + 3
    # and a property of the view by its place in it (one byte), not by its name
    def origins_bytes(view):
        with_view = dataclasses.replace(entity, view=view)
        return len(coders.EntityCoder().encode(with_view)) - len(coders.EntityCoder().encode(
            dataclasses.replace(with_view, origins={})))
    assert origins_bytes({}) - origins_bytes(entity.view) == len("email") + len("name") + 2


def test_origins_at_the_same_instant_in_other_offsets_stay_apart():
    """``==`` compares instants: the table of edits must not merge 12:00Z and 13:00+01:00."""
    utc = datetime.datetime(2026, 3, 1, 12, 0, tzinfo=datetime.UTC)
    oslo = utc.astimezone(datetime.timezone(datetime.timedelta(hours=1)))
    entity = Entity("target", "T1", {}, system="customwebshop",
                    origins={"email": EditOrigin("customerp", utc),
                             "name": EditOrigin("customerp", oslo)})
    assert exact(round_trip(coders.EntityCoder(), entity), entity)


# --- the pipeline uses them --------------------------------------------------------------------

def test_the_registry_answers_with_the_compact_coders():
    coders.register_coders()
    registry = beam.coders.registry
    assert isinstance(registry.get_coder(Entity), coders.EntityCoder)
    assert isinstance(registry.get_coder(Link), coders.LinkCoder)
    assert isinstance(registry.get_coder(coders.PLAN_ITEM), coders.PlanItemCoder)
    # other unions keep Beam's own fallback
    assert not isinstance(registry.get_coder(beam.typehints.Union[int, str]),
                          coders.PlanItemCoder)
    coders.register_coders()     # idempotent: no second fallback
    assert registry.get_coder(typing.Any) == beam.coders.FastPrimitivesCoder()


def test_a_planning_pipeline_codes_each_entity_once_and_no_linked_link(tmp_path, monkeypatch):
    """The P1 engine pipeline (LookUpLinks + PlanSync) at a small N: every grouped entity is
    coded by PlanItemCoder exactly once (packed before the shuffle, not coded by the runner on
    each of its hops), and the plans are the reference's. Every entity is linked, so no link
    goes through the shuffle at all: PlanSync reads each group's link after grouping."""
    from benchmarks import engine
    written = []
    monkeypatch.setattr(coders.PlanItemCoder, "_write", staticmethod(
        lambda item, out: (written.append(type(item).__name__),
                           coders.write_plan_item(item, out))))
    url = f"sqlite:///{tmp_path / 'links.db'}"
    n = 60
    engine.prepare(url, n)
    _, counts = engine.run_engine(n, url)
    assert counts == engine.expected_outcomes(n)
    assert written.count("Entity") == 2 * n
    assert written.count("Link") == 0
