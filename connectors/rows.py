"""Rows of a read: the checks that turn one JSON row into a record or say why it is not one
(:class:`UnreadableRow`), and :func:`unique_by_id` for paged reads."""

from __future__ import annotations

import datetime
import decimal
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, overload

from connectors.wire import parse_timestamp
from core.model import Record, UnreadableRecord


def unique_by_id(records: Iterable[Record | UnreadableRecord]
                 ) -> Iterator[Record | UnreadableRecord]:
    """``records`` without repeats of an id: a row changed during a paged read shows up again
    later in it, and each entity must reach the engine once per read (its newer state is read
    by the next run, as it changed after this one started). Unreadable rows pass through."""
    seen: set[str] = set()
    for record in records:
        if isinstance(record, UnreadableRecord):
            yield record
        elif record.id not in seen:
            seen.add(record.id)
            yield record


class UnreadableRow(ValueError):
    """Raised by a connector's ``_to_record`` for a row that is not a record; says why."""


def value_kind(value: Any) -> str:
    """What kind of JSON value ``value`` is, in words (for messages about rows)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float, decimal.Decimal)):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, Mapping):
        return "an object"
    return "a list" if isinstance(value, list) else f"a {type(value).__name__}"


def row_object(data: Any) -> Mapping[str, Any]:
    """``data`` if it is a JSON object (a row), else :class:`UnreadableRow`."""
    if not isinstance(data, Mapping):
        raise UnreadableRow(f"the row is {value_kind(data)}, not an object")
    return data


def row_key(data: Any, field: str) -> str:
    """The row's id in ``field``: non-empty text (an id that is not text would not name the
    same entity in every system and store it passes through)."""
    value = row_object(data).get(field)
    if value is None:
        raise UnreadableRow(f"it has no {field}")
    if not isinstance(value, str):
        raise UnreadableRow(f"its {field} {value!r} is {value_kind(value)}, not text")
    if not value.strip():
        raise UnreadableRow(f"its {field} is empty")
    return value


@overload
def row_timestamp(data: Mapping[str, Any], field: str) -> datetime.datetime: ...


@overload
def row_timestamp(data: Mapping[str, Any], field: str, *,
                  required: bool) -> datetime.datetime | None: ...


def row_timestamp(data: Mapping[str, Any], field: str, *,
                  required: bool = True) -> datetime.datetime | None:
    """The row's modified time in ``field`` (ISO 8601 with a time zone) as aware UTC; with
    ``required=False`` a missing, null or empty one is None (a system that may not know)."""
    value = data.get(field)
    if value in (None, "") and not required:
        return None
    if value is None:
        raise UnreadableRow(f"it has no {field}")
    if not isinstance(value, str):
        raise UnreadableRow(f"its {field} {value!r} is {value_kind(value)}, not a timestamp")
    try:
        return parse_timestamp(value)
    except ValueError:
        raise UnreadableRow(f"its {field} {value!r} is not an ISO 8601 timestamp with a "
                            "time zone") from None


def row_list(data: Mapping[str, Any], field: str) -> list[Any]:
    """The row's list in ``field`` (missing or null: empty), e.g. an order's lines."""
    value = data.get(field)
    if value is None:
        return []
    if not isinstance(value, list):
        raise UnreadableRow(f"its {field} is {value_kind(value)}, not a list")
    return value


def row_flag(data: Mapping[str, Any], field: str) -> bool:
    """The row's boolean ``field`` (missing or null: false); text like ``"false"`` is refused,
    as reading it as true would, for a deleted flag, drop the entity silently."""
    value = data.get(field)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise UnreadableRow(f"its {field} {value!r} is {value_kind(value)}, not true or false")
    return value
