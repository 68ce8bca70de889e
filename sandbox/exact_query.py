"""The OData v2 query options of Exact's REST API as the emulator honours them, for
:mod:`sandbox.exact`: ``$select``, ``$filter`` (with Exact's typed literals), ``$orderby``,
``$skip``, ``$top``, ``$skiptoken`` and ``$inlinecount``; pages with ``__next`` links.

The principle (issue 16): an option Exact honours is either honoured here or refused loudly,
never ignored. An unknown ``$`` option is refused the way Exact's OData stack (WCF Data
Services) does, 400; what Exact supports and the emulator does not (OData functions in
``$filter``, ``$format``) is refused with 501 in Exact's error shape, so that a test never
passes on an answer the real service would not give.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlencode

from sandbox.exact_reference import comparable, exact_filter, skiptoken, skiptoken_key
from sandbox.odata import FilterError, parse_filter
from sandbox.validation import ApiError

#: the system query options the emulator honours (OData v2 URI conventions §4)
HONOURED = frozenset({"$select", "$filter", "$orderby", "$skip", "$top", "$skiptoken",
                      "$expand", "$inlinecount"})
#: OData v2 options Exact supports that the emulator does not
NOT_EMULATED = frozenset({"$format"})
_FUNCTION = re.compile(r"\b([A-Za-z]+)\s*\(")
_ARITHMETIC = re.compile(r"\s(add|sub|mul|div|mod)\s")
#: a comparison whose right side is a plain string literal: ``Name eq 'x'``
_STRING_COMPARISON = re.compile(r"\b([A-Za-z_][A-Za-z0-9_]*)\s+(eq|ne|gt|ge|lt|le)\s+'")
_GUID = re.compile(r"^[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}$")
_GUID_LITERAL = re.compile(r"^guid'([0-9a-fA-F-]{36})'$")
_QUOTED = re.compile(r"'(?:[^']|'')*'")
#: Edm type -> the CLR type name Exact's OData stack names in its type errors
_CLR = {"Edm.Guid": "System.Guid", "Edm.DateTime": "System.DateTime"}


def not_emulated(what: str) -> ApiError:
    """501 in Exact's error shape: Exact honours ``what``; the sandbox does not emulate it."""
    return ApiError("not_emulated", f"{what} is not emulated by the talksync sandbox "
                                    "(docs/api/exact.md lists what is not).")


def check_options(args: Mapping[str, str]) -> None:
    """Refuse what is not honoured: unknown ``$`` options (400, WCF Data Services' words) and
    the ones Exact has that the sandbox does not (501)."""
    for name in args:
        if not name.startswith("$") or name in HONOURED:
            continue
        if name in NOT_EMULATED:
            raise not_emulated(f"The query option {name}")
        raise ApiError("bad_request", f"The query parameter '{name}' begins with a "
                                      "system-reserved '$' character but is not recognized.")


def select(args: Mapping[str, str], props: Mapping[str, Any], required: bool) -> set[str] | None:
    """The ``$select`` names (None: every property); 400 if required and missing."""
    text = args.get("$select")
    if not text:
        if required:
            raise ApiError("bad_request", "$select is mandatory for this endpoint.")
        return None
    names = {n.strip() for n in text.split(",") if n.strip()}
    if names == {"*"}:
        return None      # every property (Exact's best practices advise against it)
    nested = sorted(name for name in names if "/" in name)
    if nested:
        raise not_emulated(f"A $select of an expanded entity's properties ({nested[0]})")
    unknown = names - set(props)
    if unknown:
        raise ApiError("bad_request", f"Invalid $select: property '{sorted(unknown)[0]}' "
                                      f"does not exist.")
    return names


def _check_literals(text: str, props: Mapping[str, Any]) -> None:
    """Exact's OData v2 is typed: a Guid or DateTime property compares with ``guid'…'`` or
    ``datetime'…'`` only (a plain string is a 400); OData functions and arithmetic operators
    are not emulated (501)."""
    unquoted = _QUOTED.sub("''", text)
    for found in _FUNCTION.finditer(unquoted):
        if found.group(1) not in ("guid", "datetime") and found.group(1).lower() not in (
                "and", "or", "not"):
            raise not_emulated(f"The $filter function {found.group(1)}()")
    arithmetic = _ARITHMETIC.search(unquoted)
    if arithmetic:
        raise not_emulated(f"The $filter operator {arithmetic.group(1)}")
    for found in _STRING_COMPARISON.finditer(unquoted):
        name, operator = found.group(1), found.group(2)
        kind = props.get(name, {}).get("type")
        if kind in _CLR:
            raise ApiError("bad_request", f"Operator '{operator}' incompatible with operand "
                                          f"types '{_CLR[kind]}' and 'System.String' at "
                                          f"position {found.start(2)}.")


def filtered(args: Mapping[str, str], props: Mapping[str, Any], endpoint: str,
             rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows ``$filter`` keeps."""
    text = args.get("$filter")
    if not text:
        return rows
    _check_literals(text, props)
    try:
        predicate = parse_filter(exact_filter(text),
                                 lambda n, v: comparable(props.get(n, {}).get("type"), v),
                                 frozenset(props))
    except FilterError as exc:
        message = str(exc).replace("Microsoft.NAV.entity", f"Exact.Web.Api.Models.{endpoint}")
        raise ApiError("bad_request", f"Error in $filter: {message}") from None
    return [row for row in rows if predicate(row)]


def ordered(args: Mapping[str, str], props: Mapping[str, Any], rows: list[dict[str, Any]],
            key: str) -> list[dict[str, Any]]:
    """The rows in ``$orderby`` order (``Name``, ``Name desc``, several by commas; nulls
    first ascending), ties and no ``$orderby`` by ``key``."""
    rows = sorted(rows, key=lambda row: row[key])
    text = args.get("$orderby")
    if not text:
        return rows
    terms = [term.split() for term in text.split(",") if term.strip()]
    for term in reversed(terms):
        name, direction = term[0], (term[1].lower() if len(term) > 1 else "asc")
        if name not in props or len(term) > 2 or direction not in ("asc", "desc"):
            raise ApiError("bad_request", f"Invalid $orderby: '{' '.join(term)}'.")
        kind = props[name].get("type")
        rows.sort(key=_sort_key(name, kind), reverse=direction == "desc")
    return rows


def _sort_key(name: str, kind: str | None) -> Callable[[Mapping[str, Any]], tuple]:
    def sort_key(row: Mapping[str, Any]) -> tuple:
        value = comparable(kind, row.get(name))
        return (0,) if value is None else (1, value)
    return sort_key


def _count(args: Mapping[str, str], name: str) -> int | None:
    text = args.get(name)
    if text is None:
        return None
    if not text.isdigit():
        raise ApiError("bad_request", f"{name} must be a non-negative integer.")
    return int(text)


def _token(value: Any) -> str:
    """A skip token: ``guid'<key>'`` after a GUID key, as Exact writes them (its OData best
    practices article shows ``$skiptoken=guid'…'``), else an opaque one."""
    if isinstance(value, str) and _GUID.match(value):
        return f"guid'{value}'"
    return skiptoken(value)


def _token_key(token: str) -> Any:
    found = _GUID_LITERAL.match(token)
    return found.group(1).lower() if found else skiptoken_key(token)


def page(args: Mapping[str, str], base_url: str, rows: list[dict[str, Any]], key: str,
         page_size: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """One page of the ``rows`` (already filtered and ordered): the rows and the rest of the
    ``d`` envelope (``__next`` while more follow, ``__count`` with ``$inlinecount=allpages``).

    Without ``$orderby`` the skip token is the last row's key (Exact's tokens are keys too);
    with it, the position in the ordered rows."""
    inline = args.get("$inlinecount", "none")
    if inline not in ("none", "allpages"):
        raise ApiError("bad_request", "$inlinecount must be 'allpages' or 'none'.")
    by_position = bool(args.get("$orderby"))
    token = args.get("$skiptoken")
    if token:
        after = _token_key(token)
        if by_position:
            if not isinstance(after, int):
                raise ApiError("bad_request", "The $skiptoken is not valid.")
            start = after
        else:
            start = next((i for i, row in enumerate(rows) if row[key] > after), len(rows))
    else:
        start = _count(args, "$skip") or 0
    top = _count(args, "$top")
    end = len(rows) if top is None else min(len(rows), start + top)
    chosen = rows[start:min(end, start + page_size)]
    envelope: dict[str, Any] = {}
    if inline == "allpages":
        envelope["__count"] = str(len(rows))
    left = end - start - len(chosen)
    if left > 0:
        params = {k: v for k, v in args.items() if k not in ("$skiptoken", "$top", "$skip")}
        if top is not None:
            params["$top"] = str(left)
        params["$skiptoken"] = _token(start + len(chosen) if by_position else chosen[-1][key])
        envelope["__next"] = f"{base_url}?{urlencode(params)}"
    return chosen, envelope
