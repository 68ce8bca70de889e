"""OData literals and ``$filter`` clauses, shared by the OData connectors: Business Central
(OData v4) and Exact Online (OData v2).

A value put into a URL's ``$filter`` or key segment is code, not data: text is quoted with its
single quotes doubled (OData's only escape), GUIDs are checked to be GUIDs before they are
written bare (v4) or as ``guid'…'`` (v2), and date-times are written in the version's form.
Connectors build clauses with these functions and never paste a value into a filter
themselves. References: OData v4 ABNF (``SQUOTE-in-string``, ``guidValue``,
``dateTimeOffsetValue``), https://docs.oasis-open.org/odata/odata/v4.01/os/abnf/odata-abnf-construction-rules.txt;
OData v2 URI conventions, https://www.odata.org/documentation/odata-version-2-0/uri-conventions/
(``guid'…'``, ``datetime'…'``, ``…L``).
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterable

from connectors.wire import format_timestamp

_GUID = re.compile(r"^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-"
                   r"[0-9A-Fa-f]{12}$")


def string(value: str) -> str:
    """A text literal: ``'O''Brien'`` for ``O'Brien``."""
    return "'" + str(value).replace("'", "''") + "'"


def is_guid(value: object) -> bool:
    """Whether ``value`` is a GUID in its 8-4-4-4-12 hex form."""
    return isinstance(value, str) and bool(_GUID.match(value))


def _checked_guid(value: str) -> str:
    if not is_guid(value):
        raise ValueError(f"{value!r} is not a GUID")
    return value


def guid(value: str) -> str:
    """An OData v2 GUID literal, ``guid'…'`` (Exact Online keys and filters)."""
    return f"guid'{_checked_guid(value)}'"


def guid_v4(value: str) -> str:
    """An OData v4 GUID literal: the GUID bare (Business Central keys and filters)."""
    return _checked_guid(value)


def datetime_v4(value: datetime.datetime) -> str:
    """An OData v4 ``Edm.DateTimeOffset`` literal: ISO 8601 in UTC with ``Z``."""
    return format_timestamp(value)


def datetime_v2(value: datetime.datetime) -> str:
    """An OData v2 ``Edm.DateTime`` literal in UTC: ``datetime'2026-01-05T10:00:00.5'``."""
    return "datetime'" + format_timestamp(value).rstrip("Z") + "'"


def int64(value: int) -> str:
    """An OData v2 ``Edm.Int64`` literal: ``12345L`` (Exact's ``Timestamp``)."""
    return f"{int(value)}L"


def eq(name: str, literal: str) -> str:
    """``name eq literal``; ``literal`` made by one of the functions above."""
    return f"{name} eq {literal}"


def ge(name: str, literal: str) -> str:
    return f"{name} ge {literal}"


def gt(name: str, literal: str) -> str:
    return f"{name} gt {literal}"


def all_of(*clauses: str) -> str:
    """The clauses joined with ``and``; a clause with an ``or`` in it is parenthesised (``and``
    binds tighter)."""
    return " and ".join(f"({clause})" if " or " in clause and len(clauses) > 1 else clause
                        for clause in clauses)


def any_of(name: str, literals: Iterable[str]) -> str:
    """``name eq a or name eq b …``: one of several values (OData v2 has no ``in``)."""
    return " or ".join(eq(name, literal) for literal in literals)
