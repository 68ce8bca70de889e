"""Canonical values: the one form every property takes inside the engine.

Systems disagree on wire formats (money as ``"199.00"`` or ``199.0``, dates as strings or
integers); connectors hand over JSON-like values and the mapping turns each into its canonical
Python value with :func:`to_canonical`. Empty strings and missing values are both ``None``, so
"no value" compares equal everywhere. A value that cannot be converted raises
:class:`InvalidValue`, which the mapping turns into a validation dead letter.
"""

from __future__ import annotations

import datetime
import decimal
import re
from typing import Any

_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_INTEGER_TEXT = re.compile(r"^[+-]?\d+$")
_COUNTRY = re.compile(r"^[A-Z]{2}$")
_CURRENCY = re.compile(r"^[A-Z]{3}$")


class InvalidValue(ValueError):
    """A value that does not fit its canonical type; the message says why."""


def to_canonical(type_: str, value: Any, max_length: int | None = None) -> Any:
    """The canonical form of a wire value of the given spec type (``None`` for no value)."""
    if value is None or (isinstance(value, str) and value == ""):
        return None
    converter = _CONVERTERS.get(type_)
    if converter is None:
        raise InvalidValue(f"no conversion for type {type_!r}")
    result = converter(value)
    if max_length is not None and isinstance(result, str) and len(result) > max_length:
        raise InvalidValue(f"{len(result)} characters, more than the maximum of {max_length}")
    return result


def to_wire(value: Any) -> Any:
    """A canonical value as a JSON-like value for a connector.

    Decimals stay :class:`decimal.Decimal` (each connector writes them in its system's form:
    a decimal string or a JSON number); dates and datetimes become ISO 8601 strings.
    """
    if isinstance(value, datetime.datetime):
        return value.astimezone(datetime.UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, datetime.date):
        return value.isoformat()
    return value


def is_empty(value: Any) -> bool:
    return value is None or value == "" or value == ()


def _string(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int, decimal.Decimal)):
        raise InvalidValue(f"expected text, got {type(value).__name__}")
    text = str(value)
    if _CONTROL_CHARS.search(text):
        raise InvalidValue("contains control characters")
    return text


def _email(value: Any) -> str:
    text = _string(value).strip()
    local, at, domain = text.rpartition("@")
    if not at or not local or "." not in domain or " " in text:
        raise InvalidValue(f"{text!r} is not an e-mail address")
    return text.lower()


def _integer(value: Any) -> int:
    if isinstance(value, bool):
        raise InvalidValue("expected an integer, got a boolean")
    if isinstance(value, int):
        return value
    if isinstance(value, decimal.Decimal):
        if value != value.to_integral_value():
            raise InvalidValue(f"{value} is not a whole number")
        return int(value)
    if isinstance(value, float):
        if not value.is_integer():
            raise InvalidValue(f"{value} is not a whole number")
        return int(value)
    if isinstance(value, str) and _INTEGER_TEXT.match(value.strip()):
        return int(value.strip())
    raise InvalidValue(f"{value!r} is not an integer")


def _decimal(value: Any) -> decimal.Decimal:
    if isinstance(value, bool):
        raise InvalidValue("expected a number, got a boolean")
    try:
        if isinstance(value, float):
            result = decimal.Decimal(repr(value))
        elif isinstance(value, (int, decimal.Decimal)):
            result = decimal.Decimal(value)
        elif isinstance(value, str):
            result = decimal.Decimal(value.strip())
        else:
            raise InvalidValue(f"expected a number, got {type(value).__name__}")
    except decimal.InvalidOperation:
        raise InvalidValue(f"{value!r} is not a number") from None
    if not result.is_finite():
        raise InvalidValue(f"{value!r} is not a finite number")
    return result


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise InvalidValue(f"{value!r} is not true or false")


def _date(value: Any) -> datetime.date:
    if isinstance(value, datetime.datetime):
        return value.date()
    if isinstance(value, datetime.date):
        return value
    if isinstance(value, str):
        try:
            return datetime.date.fromisoformat(value.strip()[:10])
        except ValueError:
            pass
    raise InvalidValue(f"{value!r} is not a date (YYYY-MM-DD)")


def parse_datetime(value: Any) -> datetime.datetime:
    """An ISO 8601 timestamp as an aware UTC datetime (naive input is taken as UTC)."""
    if isinstance(value, datetime.datetime):
        result = value
    elif isinstance(value, str):
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            result = datetime.datetime.fromisoformat(text)
        except ValueError:
            raise InvalidValue(f"{value!r} is not an ISO 8601 timestamp") from None
    else:
        raise InvalidValue(f"{value!r} is not a timestamp")
    if result.tzinfo is None:
        result = result.replace(tzinfo=datetime.UTC)
    return result.astimezone(datetime.UTC)


# Plain functions rather than a factory of closures: a closure made at import time is out of
# reach of mutation testing (mutmut swaps functions when they are called; docs/testing.md).
def _code(value: Any, pattern: re.Pattern[str], what: str) -> str:
    text = _string(value).strip().upper()
    if not pattern.match(text):
        raise InvalidValue(f"{value!r} is not {what}")
    return text


def _country(value: Any) -> str:
    return _code(value, _COUNTRY, "an ISO 3166-1 alpha-2 country code")


def _currency(value: Any) -> str:
    return _code(value, _CURRENCY, "an ISO 4217 currency code")


def _reference(value: Any) -> str:
    return _string(value).strip()


_CONVERTERS = {
    "string": _string,
    "email": _email,
    "integer": _integer,
    "decimal": _decimal,
    "boolean": _boolean,
    "date": _date,
    "datetime": parse_datetime,
    "country": _country,
    "currency": _currency,
    "reference": _reference,
}
