"""The emulators' API errors (:class:`ApiError`, worded by each emulator's error table) and
declarative field validation (:class:`FieldSpec`), query parameters and ETags."""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from werkzeug.wrappers import Request

from sandbox.wire import DECIMAL_STRING, format_timestamp, parse_timestamp

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class ApiError(Exception):
    """A request the API refuses. ``kind`` names the error in the emulator's ``errors`` table,
    which gives the HTTP status and the wire code; ``details`` are ``(field, issue)`` pairs."""

    def __init__(
        self,
        kind: str,
        message: str,
        details: Sequence[tuple[str, str]] = (),
        *,
        status: int | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.details = list(details)
        self.status = status
        self.headers = dict(headers or {})


def validation_error(problems: Sequence[tuple[str, str]]) -> ApiError:
    """One ``validation_failed`` error listing every ``(field, issue)`` problem."""
    message = "; ".join(f"{field or 'body'}: {issue}" for field, issue in problems)
    return ApiError("validation_failed", message, problems)


@dataclasses.dataclass(frozen=True)
class FieldSpec:
    """One field of a resource, as the API accepts it in a request body.

    ``type`` is one of ``string``, ``integer``, ``number`` (JSON number), ``decimal`` (decimal
    string), ``date`` (``YYYY-MM-DD``), ``enum``, ``object`` (with ``fields``) or ``array`` (of
    objects with ``fields``). ``default`` is the value a created entity gets when the field is
    left out (for arrays, an empty list).
    """

    name: str
    type: str = "string"
    required: bool = False
    read_only: bool = False
    max_length: int | None = None
    pattern: str | None = None
    pattern_issue: str = ""
    choices: tuple[str, ...] = ()
    fields: tuple[FieldSpec, ...] = ()
    default: Any = None


def blank_entity(specs: Iterable[FieldSpec]) -> dict[str, Any]:
    """A new entity with every field at its default, in declaration order."""
    return {
        spec.name: ([] if spec.type == "array" else spec.default)
        for spec in specs
    }


def validate_fields(
    body: Mapping[str, Any], specs: Sequence[FieldSpec], *, partial: bool, prefix: str = ""
) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """Check a request body against ``specs``.

    Returns the accepted values and the problems as ``(dotted.field, issue)`` pairs, in body
    order, then missing required fields. ``partial`` (an update) does not require fields, but
    still refuses ``null`` for a required one. Objects inside a partial body are partial too;
    array items are always complete objects. ``null`` clears a field (an array becomes ``[]``).
    """
    by_name = {spec.name: spec for spec in specs}
    accepted: dict[str, Any] = {}
    problems: list[tuple[str, str]] = []
    for name, value in body.items():
        path = prefix + name
        spec = by_name.get(name)
        if spec is None:
            problems.append((path, "unknown field"))
        elif spec.read_only:
            problems.append((path, "read-only field"))
        elif value is None:
            if spec.required:
                problems.append((path, "must not be null"))
            else:
                accepted[name] = [] if spec.type == "array" else None
        else:
            checked, issues = _check_value(spec, value, path, partial)
            problems.extend(issues)
            if not issues:
                accepted[name] = checked
    if not partial:
        for spec in specs:
            if spec.required and spec.name not in body:
                problems.append((prefix + spec.name, "is required"))
    return accepted, problems


def _check_value(
    spec: FieldSpec, value: Any, path: str, partial: bool
) -> tuple[Any, list[tuple[str, str]]]:
    kind = spec.type
    if kind in ("string", "decimal", "date", "enum"):
        if not isinstance(value, str):
            return value, [(path, "must be a string")]
        if spec.max_length is not None and len(value) > spec.max_length:
            return value, [(path, f"must be at most {spec.max_length} characters")]
        if kind == "decimal" and not DECIMAL_STRING.match(value):
            return value, [(path, 'must be a decimal string like "199.00" (up to 4 decimals)')]
        if kind == "date" and not _is_date(value):
            return value, [(path, "must be a date YYYY-MM-DD")]
        if kind == "enum" and value not in spec.choices:
            return value, [(path, "must be one of " + ", ".join(spec.choices))]
        if spec.pattern and not re.search(spec.pattern, value):
            return value, [(path, spec.pattern_issue)]
        return value, []
    if kind == "integer":
        if isinstance(value, bool) or not isinstance(value, int):
            return value, [(path, "must be an integer")]
        return value, []
    if kind == "number":
        if isinstance(value, bool) or not isinstance(value, (int, decimal.Decimal)):
            return value, [(path, "must be a number")]
        return value, []
    if kind == "object":
        if not isinstance(value, dict):
            return value, [(path, "must be an object")]
        return validate_fields(value, spec.fields, partial=partial, prefix=path + ".")
    if kind == "array":
        if not isinstance(value, list):
            return value, [(path, "must be an array")]
        items: list[dict[str, Any]] = []
        problems: list[tuple[str, str]] = []
        for index, item in enumerate(value):
            if not isinstance(item, dict):
                problems.append((f"{path}.{index}", "must be an object"))
                continue
            checked, issues = validate_fields(
                item, spec.fields, partial=False, prefix=f"{path}.{index}."
            )
            items.append(checked)
            problems.extend(issues)
        return items, problems
    raise ValueError(f"unknown field type {kind!r}")


def _is_date(text: str) -> bool:
    if not _DATE.match(text):
        return False
    try:
        datetime.date.fromisoformat(text)
    except ValueError:
        return False
    return True


def parse_int_param(
    request: Request, name: str, default: int, minimum: int, maximum: int | None = None
) -> int:
    """An integer query parameter within bounds, or a ``validation_failed`` naming it."""
    raw = request.args.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise validation_error([(name, "must be an integer")]) from None
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
        raise validation_error([(name, f"must be {bound}")])
    return value


def parse_since_param(request: Request, name: str) -> str | None:
    """A date-time query parameter as a canonical timestamp string (comparable as text)."""
    raw = request.args.get(name)
    if raw is None:
        return None
    try:
        return format_timestamp(parse_timestamp(raw))
    except ValueError:
        raise validation_error([(name, "must be an ISO 8601 date-time")]) from None


def if_match_ok(header: str | None, version: int) -> bool:
    """RFC 9110 ``If-Match`` with strong comparison: absent, ``*`` or a listed ``"<version>"``."""
    if header is None:
        return True
    header = header.strip()
    if header == "*":
        return True
    return etag(version) in (tag.strip() for tag in header.split(","))


def etag(version: int) -> str:
    return f'"{version}"'
