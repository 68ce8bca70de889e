"""The wire formats every HTTP connector shares: JSON with exact decimals, ISO 8601
timestamps, and the fallback wording of an error body."""

from __future__ import annotations

import datetime
import decimal
import json
from collections.abc import Mapping
from typing import Any


def dumps_json(value: Any) -> str:
    """JSON text of ``value``: ``Decimal`` as an exact JSON number, dates and datetimes as
    ISO 8601 strings, tuples as arrays.

    ``json.dumps`` refuses ``Decimal`` and would round a float, and money must cross unchanged.
    """
    if isinstance(value, decimal.Decimal):
        if not value.is_finite():
            raise ValueError(f"{value} cannot be sent as a JSON number")
        return format(value, "f")
    if isinstance(value, datetime.date):
        return json.dumps(value.isoformat())
    if isinstance(value, Mapping):
        items = []
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"JSON object keys must be strings, not {key!r}")
            items.append(json.dumps(key) + ":" + dumps_json(item))
        return "{" + ",".join(items) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(dumps_json(item) for item in value) + "]"
    return json.dumps(value, allow_nan=False)


def parse_timestamp(text: str) -> datetime.datetime:
    """An ISO 8601 timestamp (``...Z`` or with an offset) as an aware UTC datetime."""
    value = datetime.datetime.fromisoformat(text)
    if value.tzinfo is None:
        raise ValueError(f"timestamp without a time zone: {text!r}")
    return value.astimezone(datetime.UTC)


def format_timestamp(value: datetime.datetime) -> str:
    """An aware datetime as the APIs write it: UTC, microseconds, ``Z``."""
    if value.tzinfo is None:
        raise ValueError(f"a naive datetime is ambiguous, give a time zone: {value!r}")
    return value.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def describe_error_body(body: Any) -> str:
    """The server's error message from a body of unknown shape (the fallback describer)."""
    if isinstance(body, str):
        return body
    return dumps_json(body) if body is not None else ""

