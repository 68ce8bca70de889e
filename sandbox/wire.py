"""The emulators' wire formats: UTC timestamps with microseconds, a process-wide monotonic
clock for modification times, and JSON that keeps :class:`~decimal.Decimal` numbers exact in
both directions."""

from __future__ import annotations

import datetime
import decimal
import json
import math
import re
import threading
from collections.abc import Callable, Mapping
from typing import Any

UTC = datetime.UTC
ONE_MICROSECOND = datetime.timedelta(microseconds=1)

#: Money, rates and quantities sent as decimal strings (the webshop's wire format).
DECIMAL_STRING = re.compile(r"^-?\d+(\.\d{1,4})?$")


def format_timestamp(moment: datetime.datetime) -> str:
    """``2026-11-21T10:15:00.123456Z``: UTC, always six fractional digits, so that the text
    sorts exactly like the instant."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_timestamp(text: str) -> datetime.datetime:
    """Parse an ISO 8601 date-time (``Z`` or an offset; no offset means UTC) to aware UTC.

    Raises ``ValueError`` for anything else.
    """
    moment = datetime.datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


class MonotonicClock:
    """Hands out strictly increasing UTC instants: ``max(now, last + 1 µs)``.

    Every write of an emulator takes its timestamp here, so a reader that asks for rows modified
    since a timestamp it has seen never misses a later write, even when two writes fall in the
    same microsecond or the wall clock steps back.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last = datetime.datetime.min.replace(tzinfo=UTC)

    def observe(self, moment: datetime.datetime) -> None:
        """Make every later :meth:`tick` come strictly after ``moment``."""
        with self._lock:
            self._last = max(self._last, moment)

    def tick(self) -> datetime.datetime:
        with self._lock:
            self._last = max(datetime.datetime.now(UTC), self._last + ONE_MICROSECOND)
            return self._last

    @property
    def last(self) -> datetime.datetime:
        return self._last


# --------------------------------------------------------------------------------------------
# JSON with exact decimals


#: marks a decimal's digits in the standard encoder's output, to be unquoted (a character of
#: Unicode's private use area, which no system's data should hold; if a string does, the
#: count of marked numbers differs and :func:`dumps` encodes the value the slow way)
_MARK = "\ue000"
_MARKED_DECIMAL = re.compile(f'"{_MARK}(-?[0-9.]+){_MARK}"')


def dumps(value: Any) -> str:
    """Serialise JSON, writing :class:`~decimal.Decimal` as the exact number it holds.

    The standard encoder can only emit decimals by way of ``float`` (``199.50000000001``);
    ERP-style APIs send money as JSON numbers and must round-trip them exactly. The standard
    library's C encoder writes everything else (the emulators answer every request and save
    their state with this; a walk in Python was a tenth of a sync's time in the tests): each
    decimal becomes a marked string there, unquoted afterwards. What it does not take (a
    mapping that is not a dict, a key that is not a string or a number) goes the slow way,
    :func:`_encode`, with the same output.
    """
    marked = 0

    def marked_digits(number: Any) -> str:
        nonlocal marked
        if not isinstance(number, decimal.Decimal):
            raise TypeError(f"cannot serialise {type(number).__name__} as JSON")
        if not number.is_finite():
            raise ValueError(f"cannot serialise {number} as JSON")
        marked += 1
        return f"{_MARK}{number:f}{_MARK}"

    try:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False,
                          default=marked_digits)
    except TypeError:
        return _dumps_walking(value)
    if not marked:
        return text
    text, found = _MARKED_DECIMAL.subn(r"\1", text)
    return text if found == marked else _dumps_walking(value)


def _dumps_walking(value: Any) -> str:
    parts: list[str] = []
    _encode(value, parts.append)
    return "".join(parts)


def _encode(value: Any, out: Callable[[str], None]) -> None:
    if value is None:
        out("null")
    elif value is True:
        out("true")
    elif value is False:
        out("false")
    elif isinstance(value, str):
        out(json.dumps(value, ensure_ascii=False))
    elif isinstance(value, int):
        out(int.__repr__(value))
    elif isinstance(value, decimal.Decimal):
        if not value.is_finite():
            raise ValueError(f"cannot serialise {value} as JSON")
        out(format(value, "f"))
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"cannot serialise {value} as JSON")
        out(float.__repr__(value))
    elif isinstance(value, Mapping):
        out("{")
        for index, (key, item) in enumerate(value.items()):
            if index:
                out(",")
            out(json.dumps(str(key), ensure_ascii=False))
            out(":")
            _encode(item, out)
        out("}")
    elif isinstance(value, (list, tuple)):
        out("[")
        for index, item in enumerate(value):
            if index:
                out(",")
            _encode(item, out)
        out("]")
    else:
        raise TypeError(f"cannot serialise {type(value).__name__} as JSON")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def loads(data: bytes | str) -> Any:
    """Parse JSON with non-integer numbers as :class:`~decimal.Decimal` (never ``float``);
    ``NaN`` and ``Infinity`` are refused."""
    return json.loads(data, parse_float=decimal.Decimal, parse_constant=_reject_constant)
