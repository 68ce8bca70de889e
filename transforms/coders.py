"""Compact Beam coders for what goes through the planning shuffle: entities and links.

Without them Beam pickles every :class:`~core.planner.Entity` and :class:`~core.model.Link` that
:class:`~transforms.plan.PlanSync` groups (457 bytes an entity, 734 a link in P1; 229 and 297
here), class path and field names included, and the in-memory runner holds all of them at once
(BENCHMARKS.md, "Fixes", 5).
These coders write the fields in a fixed order, without names: strings as length-prefixed UTF-8,
datetimes as microseconds and offset, snapshots and views as tagged values (one byte of type,
then the value), the same value types :func:`core.model.encode_value` stores, so anything a link
store accepts is coded exactly and anything else is refused here too (no pickling fallback).
An entity's edit-time provenance (:mod:`core.provenance`: ``system``, ``origins``,
``others_edited``) is coded the same way: each distinct :class:`~core.provenance.EditOrigin`
once, each property by its place in the view; an origin of another type is refused.

The key of each group stays with Beam's own deterministic coder; the values are coded by
:class:`PlanItemCoder`, one tag byte saying entity or link. :func:`register_coders` registers
them with Beam's registry; :class:`~transforms.plan.LookUpLinks` calls it and declares its output
type, so every pipeline that plans uses them.
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
from collections.abc import Callable, Mapping
from typing import Any

import apache_beam as beam
from apache_beam.coders import coder_impl
from apache_beam.coders.coders import FastCoder
from apache_beam.typehints import typehints

from core.model import Link
from core.planner import Entity
from core.provenance import EditOrigin

# --- tagged values ------------------------------------------------------------------------------

_NONE, _FALSE, _TRUE, _INT, _BIG_INT, _STR, _DECIMAL = 0, 1, 2, 3, 4, 5, 6
_DATETIME, _DATE, _FLOAT, _BYTES, _LIST, _TUPLE, _MAP = 7, 8, 9, 10, 11, 12, 13
_SAME, _OTHER = 0, 1
_INT64 = range(-(2 ** 63), 2 ** 63)
_YEAR_ONE = datetime.datetime(1, 1, 1)
_MICROSECOND = datetime.timedelta(microseconds=1)
_UTF8 = "utf-8"
#: lone surrogates (which JSON text may carry) survive the round trip, as with pickle
_SURROGATES = "surrogatepass"


def _write_str(text: str, out) -> None:
    out.write(text.encode(_UTF8, _SURROGATES), True)


def _read_str(stream) -> str:
    return stream.read_all(True).decode(_UTF8, _SURROGATES)


def _write_optional_str(text: str | None, out) -> None:
    if text is None:
        out.write_byte(_NONE)
    else:
        out.write_byte(_STR)
        _write_str(text, out)


def _read_optional_str(stream) -> str | None:
    return None if stream.read_byte() == _NONE else _read_str(stream)


def write_value(value: Any, out) -> None:
    """One canonical value: a type byte, then the value (containers recursively)."""
    kind = type(value)
    if kind is str:
        out.write_byte(_STR)
        _write_str(value, out)
    elif value is None:
        out.write_byte(_NONE)
    elif kind is bool:
        out.write_byte(_TRUE if value else _FALSE)
    elif kind is int and value in _INT64:
        out.write_byte(_INT)
        out.write_var_int64(value)
    elif isinstance(value, str):
        out.write_byte(_STR)
        _write_str(str(value), out)
    elif isinstance(value, int) and not isinstance(value, bool):
        out.write_byte(_BIG_INT)
        _write_str(str(int(value)), out)
    elif isinstance(value, decimal.Decimal):
        out.write_byte(_DECIMAL)
        _write_str(str(value), out)
    elif isinstance(value, datetime.datetime):
        out.write_byte(_DATETIME)
        _write_datetime(value, out)
    elif isinstance(value, datetime.date):
        out.write_byte(_DATE)
        _write_str(value.isoformat(), out)
    elif isinstance(value, float):
        out.write_byte(_FLOAT)
        out.write_bigendian_double(value)
    elif isinstance(value, bytes):
        out.write_byte(_BYTES)
        out.write(value, True)
    elif isinstance(value, (list, tuple)):
        out.write_byte(_LIST if isinstance(value, list) else _TUPLE)
        out.write_var_int64(len(value))
        for item in value:
            write_value(item, out)
    elif isinstance(value, Mapping):
        write_map(value, out)
    else:
        raise TypeError(f"cannot code a value of type {type(value).__name__} "
                        "(entities and links hold canonical values only)")


def write_map(values: Mapping[str, Any], out) -> None:
    out.write_byte(_MAP)
    out.write_var_int64(len(values))
    for key, value in values.items():
        write_value(key, out)
        write_value(value, out)


def read_value(stream) -> Any:
    """The inverse of :func:`write_value`."""
    tag = stream.read_byte()
    if tag == _STR:
        return _read_str(stream)
    if tag == _NONE:
        return None
    if tag in (_FALSE, _TRUE):
        return tag == _TRUE
    if tag == _INT:
        return stream.read_var_int64()
    if tag == _MAP:
        return {read_value(stream): read_value(stream)
                for _ in range(stream.read_var_int64())}
    if tag in (_LIST, _TUPLE):
        items = [read_value(stream) for _ in range(stream.read_var_int64())]
        return items if tag == _LIST else tuple(items)
    return _read_scalar(tag, stream)


def _read_scalar(tag: int, stream) -> Any:
    if tag == _DECIMAL:
        return decimal.Decimal(_read_str(stream))
    if tag == _DATETIME:
        return _read_datetime(stream)
    if tag == _DATE:
        return datetime.date.fromisoformat(_read_str(stream))
    if tag == _FLOAT:
        return stream.read_bigendian_double()
    if tag == _BYTES:
        return stream.read_all(True)
    if tag == _BIG_INT:
        return int(_read_str(stream))
    raise ValueError(f"unknown value tag {tag}")


# --- entities and links -------------------------------------------------------------------------

#: the fields each coder writes, in this order (tests check they are all of the dataclass's)
ENTITY_FIELDS = ("side", "id", "view", "modified", "deleted", "etag", "system", "origins",
                 "others_edited")
LINK_FIELDS = ("pair", "link_id", "source_id", "target_id", "state", "snapshot_source",
               "snapshot_target", "source_etag", "target_etag", "attempt_id", "version",
               "updated_at")


def write_entity(entity: Entity, out) -> None:
    _write_str(entity.side, out)
    _write_str(entity.id, out)
    write_map(entity.view, out)
    write_value(entity.modified, out)
    out.write_byte(_TRUE if entity.deleted else _FALSE)
    _write_optional_str(entity.etag, out)
    _write_str(entity.system, out)
    _write_origins(entity.origins, entity.view, out)
    _write_optional_datetime(entity.others_edited, out)


def read_entity(stream) -> Entity:
    side = _read_str(stream)
    entity_id = _read_str(stream)
    view = read_value(stream)
    modified = read_value(stream)
    deleted = stream.read_byte() == _TRUE
    etag = _read_optional_str(stream)
    return Entity(side, entity_id, view, modified, deleted, etag, system=_read_str(stream),
                  origins=_read_origins(stream, view),
                  others_edited=_read_optional_datetime(stream))


def _write_origins(origins: Mapping[str, EditOrigin], view: Mapping[str, Any], out) -> None:
    """Per property, the edit its value came from (:class:`~core.provenance.EditOrigin`),
    without the class's name: first each distinct edit once (system and time), then each
    property (its place in the view, already written, else its name) and the number of its
    edit. One write usually gives all its properties the same origin, so a record talksync
    wrote carries one system and time and a few bytes per property; a record without origins
    costs one byte."""
    table: dict[tuple, int] = {}      # by wall time and offset: equal instants may differ
    keys = []
    for origin in origins.values():
        if type(origin) is not EditOrigin:
            raise TypeError(f"cannot code an origin of type {type(origin).__name__} "
                            "(an entity's origins are EditOrigin values)")
        key = (origin.system, _exact_time(origin.at))
        keys.append(table.setdefault(key, len(table)))
    out.write_var_int64(len(table))
    for system, (wall, offset) in table:
        _write_str(system, out)
        _write_wall_time(wall, offset, out)
    if not table:
        return
    places = {name: place for place, name in enumerate(view, start=1)}
    out.write_var_int64(len(origins))
    for name, number in zip(origins, keys, strict=True):
        _write_property(name, places, out)
        out.write_var_int64(number)


def _write_property(name: str, places: Mapping[Any, int], out) -> None:
    """A property's name as its place in the view (from 1), or 0 and the name."""
    place = places.get(name) if type(name) is str else None
    if place is None:
        out.write_var_int64(0)
        _write_str(name, out)
    else:
        out.write_var_int64(place)


def _read_origins(stream, view: Mapping[str, Any]) -> dict[str, EditOrigin]:
    table = [EditOrigin(system=_read_str(stream), at=_read_datetime(stream))
             for _ in range(stream.read_var_int64())]
    if not table:
        return {}
    names = list(view)
    origins = {}
    for _ in range(stream.read_var_int64()):
        place = stream.read_var_int64()
        name = names[place - 1] if place else _read_str(stream)
        origins[name] = table[stream.read_var_int64()]
    return origins


def _write_datetime(moment: datetime.datetime, out) -> None:
    """The wall-clock time as microseconds since year 1, then the UTC offset in microseconds
    (or none): about 11 bytes where the ISO text takes 26. A named zone is kept as its offset
    at that moment, as the ISO text and the link stores keep it."""
    _write_wall_time(*_exact_time(moment), out)


def _exact_time(moment: datetime.datetime) -> tuple[datetime.datetime, datetime.timedelta | None]:
    """The wall-clock time and offset of ``moment``: what tells it apart exactly (``==``
    compares instants, so 12:00+00:00 equals 13:00+01:00)."""
    if not isinstance(moment, datetime.datetime):
        raise TypeError(f"cannot code a value of type {type(moment).__name__} "
                        "as an edit time (a datetime)")
    return moment.replace(tzinfo=None, fold=0), moment.utcoffset()


def _write_wall_time(wall: datetime.datetime, offset: datetime.timedelta | None, out) -> None:
    out.write_var_int64((wall - _YEAR_ONE) // _MICROSECOND)
    if offset is None:
        out.write_byte(_NONE)
    else:
        out.write_byte(_INT)
        out.write_var_int64(offset // _MICROSECOND)


def _read_datetime(stream) -> datetime.datetime:
    moment = _YEAR_ONE + datetime.timedelta(microseconds=stream.read_var_int64())
    if stream.read_byte() == _NONE:
        return moment
    offset = datetime.timedelta(microseconds=stream.read_var_int64())
    return moment.replace(tzinfo=datetime.UTC if not offset else datetime.timezone(offset))


def _write_optional_datetime(moment: datetime.datetime | None, out) -> None:
    if moment is None:
        out.write_byte(_NONE)
    else:
        out.write_byte(_DATETIME)
        _write_datetime(moment, out)


def _read_optional_datetime(stream) -> datetime.datetime | None:
    return None if stream.read_byte() == _NONE else _read_datetime(stream)


def write_link(link: Link, out) -> None:
    _write_str(link.pair, out)
    _write_str(link.link_id, out)
    _write_optional_str(link.source_id, out)
    _write_optional_str(link.target_id, out)
    _write_str(link.state, out)
    _write_snapshots(link.snapshot_source, link.snapshot_target, out)
    _write_optional_str(link.source_etag, out)
    _write_optional_str(link.target_etag, out)
    _write_optional_str(link.attempt_id, out)
    out.write_var_int64(link.version)
    _write_optional_str(link.updated_at, out)


def _write_snapshots(source: Mapping[str, Any], target: Mapping[str, Any], out) -> None:
    """Both snapshots, the target's only when its bytes differ: after a sync both sides
    usually agree, and then the link carries one snapshot, not two."""
    source_bytes = _map_bytes(source)
    target_bytes = source_bytes if target is source else _map_bytes(target)
    out.write(source_bytes, True)
    if target_bytes == source_bytes:
        out.write_byte(_SAME)
    else:
        out.write_byte(_OTHER)
        out.write(target_bytes, True)


def _map_bytes(values: Mapping[str, Any]) -> bytes:
    out = coder_impl.create_OutputStream()
    write_map(values, out)
    return out.get()


def _read_snapshots(stream) -> tuple[dict[str, Any], dict[str, Any]]:
    source = read_value(coder_impl.create_InputStream(stream.read_all(True)))
    if stream.read_byte() == _SAME:
        return source, dict(source)     # equal bytes: equal values, types and all
    return source, read_value(coder_impl.create_InputStream(stream.read_all(True)))


def read_link(stream) -> Link:
    pair = _read_str(stream)
    link_id = _read_str(stream)
    source_id = _read_optional_str(stream)
    target_id = _read_optional_str(stream)
    state = _read_str(stream)
    snapshot_source, snapshot_target = _read_snapshots(stream)
    return Link(pair=pair, link_id=link_id, source_id=source_id, target_id=target_id,
                state=state, snapshot_source=snapshot_source,
                snapshot_target=snapshot_target,
                source_etag=_read_optional_str(stream), target_etag=_read_optional_str(stream),
                attempt_id=_read_optional_str(stream), version=stream.read_var_int64(),
                updated_at=_read_optional_str(stream))


class _Impl(coder_impl.StreamCoderImpl):
    def __init__(self, write, read):
        self._write = write
        self._read = read

    def encode_to_stream(self, value, out, nested):
        self._write(value, out)

    def decode_from_stream(self, in_stream, nested):
        return self._read(in_stream)


class _CompactCoder(FastCoder):
    """A coder of one type from a write and a read function over Beam's streams."""

    _write: Any
    _read: Any
    value_type: type

    def _create_impl(self):
        return _Impl(type(self)._write, type(self)._read)

    def is_deterministic(self) -> bool:
        return False        # maps keep their insertion order: equal values may differ in bytes

    def to_type_hint(self):
        return self.value_type

    def __eq__(self, other):
        return type(self) is type(other)

    def __hash__(self):
        return hash(type(self))


class EntityCoder(_CompactCoder):
    """:class:`~core.planner.Entity`: its fields in :data:`ENTITY_FIELDS` order."""

    _write = staticmethod(write_entity)
    _read = staticmethod(read_entity)
    value_type = Entity


class LinkCoder(_CompactCoder):
    """:class:`~core.model.Link`: its fields in :data:`LINK_FIELDS` order."""

    _write = staticmethod(write_link)
    _read = staticmethod(read_link)
    value_type = Link


_ENTITY_TAG, _LINK_TAG = 0, 1


def write_plan_item(item: Entity | Link, out) -> None:
    if type(item) is Entity:
        out.write_byte(_ENTITY_TAG)
        write_entity(item, out)
    elif type(item) is Link:
        out.write_byte(_LINK_TAG)
        write_link(item, out)
    else:
        raise TypeError(f"the planning shuffle carries entities and links, not "
                        f"{type(item).__name__}")


def read_plan_item(stream) -> Entity | Link:
    return read_entity(stream) if stream.read_byte() == _ENTITY_TAG else read_link(stream)


#: what LookUpLinks emits as the value of each keyed element
PLAN_ITEM = typehints.Union[Entity, Link]


class PlanItemCoder(_CompactCoder):
    """An entity or a link (one tag byte, then :class:`EntityCoder`'s or
    :class:`LinkCoder`'s bytes): the values :class:`~transforms.plan.PlanSync` groups.

    Beam's registry has no slot for a union, so this coder is found as a fallback coder that
    answers only ``Union[Entity, Link]`` and leaves every other type to Beam's own fallbacks.
    """

    _write = staticmethod(write_plan_item)
    _read = staticmethod(read_plan_item)

    def to_type_hint(self):
        return PLAN_ITEM

    @classmethod
    def from_type_hint(cls, typehint, unused_registry):
        if typehint != PLAN_ITEM:
            raise ValueError(f"{cls.__name__} codes only {PLAN_ITEM}")
        return cls()


def plan_item_packer() -> Callable[[Entity | Link], bytes]:
    """A function from an entity or link to :class:`PlanItemCoder`'s bytes.

    :class:`~transforms.plan.LookUpLinks` sends the planning shuffle these bytes rather than the
    objects: Beam's in-memory runner keeps every shuffled value *decoded* until the grouping's
    end (``GroupingBuffer.append`` in ``apache_beam/runners/portability/fn_api_runner/
    execution.py``) and codes each value twice on its way through it, so bytes keep the shuffle
    at its coded size and code each value once. On a distributed runner the shuffle carries
    the same bytes the coder would write.
    """
    return PlanItemCoder().get_impl().encode


def is_packed_entity(packed: bytes) -> bool:
    """Whether :func:`plan_item_packer`'s ``packed`` bytes are an entity (not a link), read off
    the tag byte without decoding the rest."""
    return packed[0] == _ENTITY_TAG


def plan_item_unpacker() -> Callable[[bytes], Entity | Link]:
    """The inverse of :func:`plan_item_packer`."""
    return PlanItemCoder().get_impl().decode


def register_coders() -> None:
    """Registers the compact coders with Beam's registry (once; later calls do nothing)."""
    registry = beam.coders.registry
    if isinstance(registry.get_coder(PLAN_ITEM), PlanItemCoder):
        return
    registry.register_coder(Entity, EntityCoder)
    registry.register_coder(Link, LinkCoder)
    registry.register_fallback_coder(PlanItemCoder)


def coded_fields(kind: type) -> tuple[str, ...]:
    """The dataclass fields of ``kind`` (for the tests that keep the coders complete)."""
    return tuple(field.name for field in dataclasses.fields(kind))
