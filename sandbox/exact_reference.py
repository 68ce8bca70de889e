"""Exact Online's REST reference as the emulator reads it: property types, the wire forms
of dates, codes and literals, skip tokens, XML answers and the minutely and daily rate-limit
windows, for :mod:`sandbox.exact`."""

from __future__ import annotations

import base64
import binascii
import datetime
import decimal
import functools
import json
import re
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from sandbox.validation import ApiError
from sandbox.wire import dumps, format_timestamp, loads, parse_timestamp

METADATA_PATH = Path(__file__).with_name("exact-metadata.json")
#: rows per page on normal endpoints, and on bulk and sync endpoints
PAGE_SIZE, BULK_PAGE_SIZE = 60, 1000
#: the sandbox starts with raised limits (Exact grants those per app on request) so a demo is
#: quick; ``POST /_sandbox/limits {"minutely": 60, "daily": 5000}`` gives the standard ones
DEFAULT_MINUTELY, DEFAULT_DAILY = 6000, 500_000
CODE_WIDTH = 18
#: longest texts Exact stores (the reference names these two)
MAX_LENGTHS = {("Items", "Description"): 60, ("Items", "ExtraDescription"): 255}
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
                   r"[0-9a-fA-F]{12}$")
#: Exact's OData v2 literals: ``guid'…'``/``datetime'…'``, quoted text (left alone), and numbers
#: with a type suffix (``12L`` Int64, ``1.5M`` Decimal, ``1.5d`` Double, ``1.5f`` Single)
_LITERAL = re.compile(r"\b(?:guid|datetime)'([^']*)'|('(?:[^']|'')*')|"
                      r"\b(\d+(?:\.\d+)?)[LMDFlmdf]\b")
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
_NUMBERS = ("Edm.Double", "Edm.Decimal")
_INTEGERS = ("Edm.Int16", "Edm.Int32", "Edm.Int64", "Edm.Byte")


@functools.lru_cache(maxsize=1)
def reference() -> dict[str, dict[str, dict[str, Any]]]:
    """Endpoint -> property name -> property (``type``, ``supportedMethods``), from the copy of
    Exact's REST reference shipped with the sandbox."""
    data = json.loads(METADATA_PATH.read_text(encoding="utf-8"))
    return {name: {p["name"]: p for p in endpoint["properties"]} for name, endpoint in data.items()}


@functools.lru_cache(maxsize=1)
def endpoints() -> dict[str, dict[str, Any]]:
    """Endpoint -> its ``uri`` (``/api/v1/{division}/crm/Accounts``), ``documentation`` (the
    reference page) and ``supportedMethods``."""
    data = json.loads(METADATA_PATH.read_text(encoding="utf-8"))
    return {name: {k: v for k, v in endpoint.items() if k != "properties"}
            for name, endpoint in data.items()}


def to_wire_date(text: str | None) -> str | None:
    """A stored ISO 8601 UTC date-time as Exact writes it: ``/Date(<epoch ms>)/``."""
    if text is None:
        return None
    elapsed = parse_timestamp(text) - _EPOCH
    return f"/Date({elapsed // datetime.timedelta(milliseconds=1)})/"


def pad_code(code: str) -> str:
    """A numeric code as Exact stores it: right-aligned in 18 characters."""
    code = code.strip()
    return code.rjust(CODE_WIDTH) if code.isdigit() else code


def convert(endpoint: str, name: str, prop: Mapping[str, Any], value: Any) -> Any:
    """A written value as stored, or Exact's error for a value the property cannot take."""
    if value is None:
        return None
    kind = prop["type"]
    bad = ApiError("bad_request", f"Error converting value for property '{name}' to type "
                                  f"'{kind}'.")
    if kind == "Edm.String":
        if not isinstance(value, str):
            raise bad
        limit = MAX_LENGTHS.get((endpoint, name))
        if limit is not None and len(value) > limit:
            raise ApiError("bad_request", f"{name}: maximum length is {limit} characters "
                                          f"(got {len(value)}).")
        return value
    if kind == "Edm.Guid":
        if not isinstance(value, str) or not _GUID.match(value):
            raise bad
        return value.lower()
    if kind in _NUMBERS:
        if isinstance(value, bool) or not isinstance(value, (int, decimal.Decimal)):
            raise bad
        return decimal.Decimal(value)
    if kind in _INTEGERS:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad
        return value
    if kind == "Edm.Boolean":
        if not isinstance(value, bool):
            raise bad
        return value
    if kind == "Edm.DateTime":
        if not isinstance(value, str):
            raise bad
        try:  # zone-less ISO 8601 is the administration's time; the sandbox keeps UTC
            return format_timestamp(parse_timestamp(value))
        except ValueError:
            raise bad from None
    raise ApiError("bad_request", f"Property '{name}' of type {kind} cannot be written.")


def comparable(kind: str | None, value: Any) -> Any:
    """A stored value or a ``$filter`` literal in a form that compares the way OData does."""
    if value is None or kind is None:
        return value
    if kind == "Edm.DateTime":
        return parse_timestamp(value) if isinstance(value, str) else value
    if kind in _NUMBERS or kind in _INTEGERS:
        try:
            return decimal.Decimal(value)
        except (decimal.InvalidOperation, TypeError, ValueError):
            raise ValueError(f"'{value}' is not a number of type {kind}.") from None
    if kind == "Edm.Guid":
        return str(value).lower()
    if kind == "Edm.String" and isinstance(value, str):
        return value
    return value


def exact_filter(text: str) -> str:
    """Exact's OData v2 literals as the OData v4 parser reads them: ``guid'x'`` and
    ``datetime'x'`` become strings (compared by property type), ``12L`` and ``1.5M`` numbers;
    quoted text stays as it is."""
    def literal(found: re.Match[str]) -> str:
        if found.group(1) is not None:
            return f"'{found.group(1)}'"
        return found.group(2) if found.group(2) is not None else found.group(3)
    return _LITERAL.sub(literal, text)


def skiptoken(value: Any) -> str:
    return base64.urlsafe_b64encode(dumps(value).encode()).decode().rstrip("=")


def skiptoken_key(token: str) -> Any:
    try:
        return loads(base64.urlsafe_b64decode((token + "=" * (-len(token) % 4)).encode()))
    except (ValueError, binascii.Error):
        raise ApiError("bad_request", "The $skiptoken is not valid.") from None


def to_xml(value: Any, tag: str = "d") -> str:
    """A JSON answer as XML, which is what Exact sends a client that does not ask for JSON."""
    if isinstance(value, Mapping):
        inner = "".join(to_xml(item, str(key).lstrip("_") or "item") for key, item in value.items())
    elif isinstance(value, list):
        inner = "".join(to_xml(item, "element") for item in value)
    elif value is None:
        return f'<{tag} m:null="true"/>'
    elif isinstance(value, bool):
        inner = "true" if value else "false"
    else:
        inner = escape(str(value))
    return f"<{tag}>{inner}</{tag}>"


class _Window:
    """A fixed window of ``limit`` requests per ``length_s`` seconds (refused ones not counted)."""

    def __init__(self, limit: int, length_s: float):
        self.limit, self.length_s = limit, length_s
        self._start, self._used = 0.0, 0

    def remaining(self, now: float) -> int:
        if now - self._start >= self.length_s:
            self._start, self._used = now, 0
        return self.limit - self._used

    def take(self) -> None:
        self._used += 1

    def reset_ms(self) -> str:
        """When the window ends, in epoch milliseconds (Exact's reset headers)."""
        return str(int((time.time() + self._start + self.length_s - time.monotonic()) * 1000))


class Limits:
    """Exact's two rate limits of a division: per minute and per day."""

    def __init__(self, minutely: int = DEFAULT_MINUTELY, daily: int = DEFAULT_DAILY,
                 minute_s: float = 60.0, bulk_page_size: int = BULK_PAGE_SIZE,
                 mandatory_filter: bool = False):
        self._lock = threading.Lock()
        #: Exact's mandatory $filter on regular and bulk endpoints that have a sync API
        self.mandatory_filter = mandatory_filter
        #: rows per page of bulk and sync endpoints (smaller in paging tests)
        self.bulk_page_size = bulk_page_size
        self.minute = _Window(minutely, minute_s)
        self.day = _Window(daily, 86400.0)

    def hit(self) -> tuple[bool, dict[str, str]]:
        """Count a request; whether it is allowed, and the six headers of the answer."""
        with self._lock:
            now = time.monotonic()
            allowed = self.minute.remaining(now) > 0 and self.day.remaining(now) > 0
            if allowed:
                self.minute.take()
                self.day.take()
            return allowed, {
                "X-RateLimit-Limit": str(self.day.limit),
                "X-RateLimit-Remaining": str(self.day.remaining(now)),
                "X-RateLimit-Reset": self.day.reset_ms(),
                "X-RateLimit-Minutely-Limit": str(self.minute.limit),
                "X-RateLimit-Minutely-Remaining": str(self.minute.remaining(now)),
                "X-RateLimit-Minutely-Reset": self.minute.reset_ms(),
            }
