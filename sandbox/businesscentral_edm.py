"""Business Central's entity model as the emulator reads it ($metadata: Edm types, enums,
max lengths, nullability) and its values on the wire (line amounts, ETags, skip tokens), for
:mod:`sandbox.businesscentral`; and the gate that bounds its concurrent requests."""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime
import decimal
import functools
import re
import threading
import xml.etree.ElementTree as ElementTree
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sandbox.validation import ApiError
from sandbox.wire import dumps, format_timestamp, loads, parse_timestamp

METADATA_PATH = Path(__file__).with_name("businesscentral-metadata.xml")
_EDM = "{http://docs.oasis-open.org/odata/ns/edm}"
EMPTY_GUID = "00000000-0000-0000-0000-000000000000"
BLANK_DATE = "0001-01-01"
#: the blank enum member as ``$metadata`` names it (an XML-escaped space)
BLANK_MEMBER = "_x0020_"
#: the two forms of the blank enum member the emulator can serve: ``$metadata``'s name and the
#: ``" "`` of Microsoft's examples
BLANK_FORMS = (BLANK_MEMBER, " ")
#: BC online: 5 requests processed at once, 95 more queued, 429 beyond
MAX_CONCURRENT, MAX_QUEUED = 5, 95
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
                   r"[0-9a-fA-F]{12}$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_ESCAPE = re.compile(r"_x([0-9A-Fa-f]{4})_")
_CENT = decimal.Decimal("0.01")
_DEFAULT_TAX_PERCENT = decimal.Decimal(25)


@dataclasses.dataclass(frozen=True)
class EdmProperty:
    """One structural property of an entity type: Edm type (or enum), MaxLength, Nullable."""

    name: str
    type: str
    max_length: int | None = None
    nullable: bool = True
    members: tuple[str, ...] = ()

    @property
    def is_enum(self) -> bool:
        return bool(self.members)


@dataclasses.dataclass(frozen=True)
class EdmEntityType:
    name: str
    properties: Mapping[str, EdmProperty]


class Metadata:
    """The entity sets of a CSDL ``$metadata`` document, with their properties."""

    def __init__(self, xml_text: str):
        root = ElementTree.fromstring(xml_text)
        schema = root.find(f".//{_EDM}Schema")
        namespace = schema.get("Namespace")
        enums = {
            f"{namespace}.{enum.get('Name')}": tuple(m.get("Name")
                                                     for m in enum.findall(f"{_EDM}Member"))
            for enum in schema.findall(f"{_EDM}EnumType")
        }
        types: dict[str, EdmEntityType] = {}
        for entity in schema.findall(f"{_EDM}EntityType"):
            properties = {}
            for prop in entity.findall(f"{_EDM}Property"):
                kind = prop.get("Type")
                length = prop.get("MaxLength")
                properties[prop.get("Name")] = EdmProperty(
                    name=prop.get("Name"), type=kind,
                    max_length=int(length) if length and length.isdigit() else None,
                    nullable=prop.get("Nullable") != "false", members=enums.get(kind, ()))
            types[f"{namespace}.{entity.get('Name')}"] = EdmEntityType(entity.get("Name"),
                                                                       properties)
        self.entity_sets: dict[str, EdmEntityType] = {
            entity_set.get("Name"): types[entity_set.get("EntityType")]
            for entity_set in root.iter(f"{_EDM}EntitySet")
        }

    def entity_set(self, name: str) -> EdmEntityType:
        return self.entity_sets[name]


@functools.lru_cache(maxsize=1)
def metadata() -> Metadata:
    """The real BC API v2.0 ``$metadata`` shipped with the sandbox, parsed once."""
    return Metadata(METADATA_PATH.read_text(encoding="utf-8"))


def type_default(prop: EdmProperty) -> Any:
    """The value BC shows for a property nobody set."""
    if prop.is_enum:
        return prop.members[0]
    return {"Edm.String": "", "Edm.Decimal": decimal.Decimal(0), "Edm.Int32": 0,
            "Edm.Int64": 0, "Edm.Boolean": False, "Edm.Guid": EMPTY_GUID,
            "Edm.Date": BLANK_DATE}.get(prop.type)


def _convert_error(prop: EdmProperty) -> ApiError:
    return ApiError("bad_request", f"Cannot convert the literal to the expected type "
                                   f"'{prop.type}' of property '{prop.name}'.")


def check_value(prop: EdmProperty, value: Any) -> Any:
    """``value`` as stored, or BC's error for a value the property cannot take."""
    if value is None:
        if not prop.nullable:
            raise ApiError("bad_request", f"A null value was found for the property named "
                                          f"'{prop.name}', which has the expected type "
                                          f"'{prop.type}[Nullable=False]'.")
        return None
    if prop.is_enum:
        value = enum_member(prop, value)
        if value not in prop.members:
            # BC's answer (MS Learn, "Using OData transactional $batch requests"): code Unknown
            options = ",".join(_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), member)
                               for member in prop.members)
            raise ApiError("not_an_option", f"'{value}' is not an option. The existing options "
                                            f"are: {options}")
        return value
    kind = prop.type
    if kind == "Edm.String":
        if not isinstance(value, str):
            raise _convert_error(prop)
        if prop.max_length is not None and len(value) > prop.max_length:
            raise ApiError("string_too_long", f"The length of the string is {len(value)}, but "
                                              f"it must be less than or equal to "
                                              f"{prop.max_length} characters.")
        return value
    if kind == "Edm.Decimal":
        if isinstance(value, bool) or not isinstance(value, (int, decimal.Decimal)):
            raise _convert_error(prop)
        return decimal.Decimal(value)
    if kind in ("Edm.Int32", "Edm.Int64"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise _convert_error(prop)
        return value
    if kind == "Edm.Boolean":
        if not isinstance(value, bool):
            raise _convert_error(prop)
        return value
    if kind == "Edm.Guid":
        if not isinstance(value, str) or not _GUID.match(value):
            raise ApiError("invalid_guid", f"The value '{value}' of '{prop.name}' is not a "
                                           "valid GUID.")
        return value.lower()
    if kind == "Edm.Date":
        if not isinstance(value, str) or not _DATE.match(value):
            raise _convert_error(prop)
        try:
            datetime.date.fromisoformat(value)
        except ValueError:
            raise _convert_error(prop) from None
        return value
    if kind == "Edm.DateTimeOffset":
        try:
            return format_timestamp(parse_timestamp(value))
        except (TypeError, ValueError):
            raise _convert_error(prop) from None
    raise ApiError("bad_request", f"Property '{prop.name}' of type {kind} cannot be written.")


def enum_member(prop: EdmProperty, value: Any) -> Any:
    """The member a value names: the blank member is ``_x0020_`` in ``$metadata`` but ``" "`` in
    Microsoft's own examples (``"blocked": " "`` in "Create customers", API v2.0); both name it."""
    if value == " " and BLANK_MEMBER in prop.members:
        return BLANK_MEMBER
    return value


def comparable(prop: EdmProperty | None, value: Any) -> Any:
    """A stored value or a ``$filter`` literal in a form that compares the way OData does."""
    if value is None or prop is None:
        return value
    if prop.is_enum:
        return enum_member(prop, value)
    if prop.type == "Edm.DateTimeOffset":
        return parse_timestamp(value) if isinstance(value, str) else value
    if prop.type == "Edm.Decimal" or prop.type.startswith("Edm.Int"):
        return decimal.Decimal(value)
    if prop.type == "Edm.Guid":
        return str(value).lower()
    return value


def sort_key(entity: Mapping[str, Any], order, props) -> list:
    """The row's position in ``order``, as JSON-safe scalars (the skiptoken holds it)."""
    key: list[Any] = []
    for name, _ in order:
        value = comparable(props.get(name), entity.get(name))
        if isinstance(value, datetime.datetime):
            value = format_timestamp(value)
        key += [value is not None, value if value is not None else ""]
    return key


def line_amounts(line: dict[str, Any]) -> dict[str, Any]:
    """Recompute a line's read-only amounts from quantity, price, discount and tax percent."""
    if not line.get("taxPercent"):
        line["taxPercent"] = _DEFAULT_TAX_PERCENT
    gross = decimal.Decimal(line["quantity"]) * decimal.Decimal(line["unitPrice"])
    discount = round_cents(gross * decimal.Decimal(line["discountPercent"] or 0) / 100)
    net = round_cents(gross - discount)
    tax = round_cents(net * decimal.Decimal(line["taxPercent"]) / 100)
    line.update(discountAmount=discount, amountExcludingTax=net, netAmount=net,
                totalTaxAmount=tax, netTaxAmount=tax, amountIncludingTax=net + tax,
                netAmountIncludingTax=net + tax)
    return line


def format_etag(entity_id: str, version: int) -> str:
    """BC's weak ETag: base64 of ``'<version>;<hash>;00;'``, opaque to clients."""
    inner = f"'{version};{zlib.crc32(entity_id.encode())};00;'"
    return 'W/"' + base64.b64encode(inner.encode()).decode() + '"'


def round_cents(value: decimal.Decimal) -> decimal.Decimal:
    return value.quantize(_CENT, rounding=decimal.ROUND_HALF_UP)


def encode_skiptoken(key: list[Any]) -> str:
    return base64.urlsafe_b64encode(dumps(key).encode()).decode().rstrip("=")


def decode_skiptoken(token: str) -> list[Any]:
    try:
        key = loads(base64.urlsafe_b64decode((token + "=" * (-len(token) % 4)).encode()))
    except (ValueError, binascii.Error):
        raise ApiError("bad_request", "The skip token is not valid.") from None
    if not isinstance(key, list):
        raise ApiError("bad_request", "The skip token is not valid.")
    return key


class Gate:
    """BC's concurrency limit: ``max_concurrent`` requests run, ``max_queued`` wait, the rest
    are refused at once."""

    def __init__(self, max_concurrent: int = MAX_CONCURRENT, max_queued: int = MAX_QUEUED):
        self.max_concurrent, self.max_queued = max_concurrent, max_queued
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(max_concurrent)
        self._inside = 0

    def enter(self) -> bool:
        with self._lock:
            if self._inside >= self.max_concurrent + self.max_queued:
                return False
            self._inside += 1
        self._slots.acquire()
        return True

    def leave(self) -> None:
        self._slots.release()
        with self._lock:
            self._inside -= 1


@functools.lru_cache(maxsize=4)
def served_metadata(entity_sets: frozenset[str],
                    navigation: frozenset[tuple[str, str]]) -> bytes:
    """BC's ``$metadata`` cut down to what the emulator serves: the ``entity_sets`` in the
    container, the ``(entity type, property)`` pairs of ``navigation``, no bound actions or
    functions. Types stay as BC declares them. A document that announced sets, navigation or
    actions the emulator answers 404 to would send generic clients (which follow ``$metadata``)
    into requests that cannot work; this one announces exactly what is served."""
    ElementTree.register_namespace("edmx", "http://docs.oasis-open.org/odata/ns/edmx")
    ElementTree.register_namespace("", _EDM[1:-1])
    root = ElementTree.fromstring(METADATA_PATH.read_bytes())
    schema = root.find(f".//{_EDM}Schema")
    for kind in ("Action", "Function"):
        for element in schema.findall(f"{_EDM}{kind}"):
            schema.remove(element)
    for entity in schema.findall(f"{_EDM}EntityType"):
        for nav in entity.findall(f"{_EDM}NavigationProperty"):
            if (entity.get("Name"), nav.get("Name")) not in navigation:
                entity.remove(nav)
    for entity in schema.findall(f"{_EDM}EntityType"):
        for nav in entity.findall(f"{_EDM}NavigationProperty"):
            partner = nav.get("Partner")
            target = nav.get("Type").removeprefix("Collection(").rstrip(")").rpartition(".")[2]
            if partner and (target, partner) not in navigation:
                del nav.attrib["Partner"]
    container = root.find(f".//{_EDM}EntityContainer")
    for element in list(container):
        if element.tag != f"{_EDM}EntitySet" or element.get("Name") not in entity_sets:
            container.remove(element)
            continue
        for binding in element.findall(f"{_EDM}NavigationPropertyBinding"):
            if binding.get("Target") not in entity_sets:
                element.remove(binding)
    return ElementTree.tostring(root, encoding="utf-8", xml_declaration=True)
