"""Business Central's OData query options and request headers, as the emulator honours or
refuses them (for :mod:`sandbox.businesscentral`).

The rule: what real BC honours, the emulator either does or refuses loudly, in BC's error shape.
Nothing is ignored in silence (``docs/api/businesscentral.md`` lists each refusal).

* Honoured: ``$filter`` (comparisons, ``and``/``or``/``not``, ``contains``/``startswith``/
  ``endswith``; ``or`` only over one property, as BC), ``$orderby`` (``asc``/``desc``),
  ``$top``, ``$skip``, ``$count=true`` and ``/$count``, ``$select``,
  ``$expand=salesOrderLines``, ``$skiptoken``, ``$format=json``; the custom option ``company``;
  ``Prefer: odata.maxpagesize`` and ``return=minimal|representation``, ``Data-Access-Intent``,
  English ``Accept-Language``.
* Refused as not emulated (501 ``BadRequest_MethodNotImplemented``): other ``$filter``
  functions, lambdas, ``in`` and arithmetic; ``$search``, ``$apply``, ``$compute``,
  ``$schemaversion`` and the other system options BC knows; nested options in ``$expand`` but
  ``$select``; other ``Prefer`` preferences; ``If-None-Match``/``If-Match`` on GET; other
  languages; an ``Accept`` without JSON.
* Refused as BC refuses them (400): ``or`` over distinct properties ("The 'OR' operator is not
  supported on distinct fields on an OData filter.", MS Learn "Known Limitations with Business
  Central OData"); unknown ``$`` options, repeated options, options a resource does not take.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from werkzeug.wrappers import Request

from sandbox.businesscentral_edm import EdmProperty, comparable, sort_key
from sandbox.odata import FilterError, Predicate, _Parser
from sandbox.validation import ApiError

#: the error kind of a refusal of something BC honours but the sandbox does not emulate
NOT_EMULATED = "not_emulated"
#: query options a collection GET takes; an entity (GET, POST, PATCH) takes ENTITY_OPTIONS
COLLECTION_OPTIONS = frozenset({"$filter", "$orderby", "$top", "$skip", "$count", "$select",
                                "$expand", "$skiptoken", "$format"})
ENTITY_OPTIONS = frozenset({"$select", "$expand", "$format"})
COUNT_OPTIONS = frozenset({"$filter", "$format"})
NO_OPTIONS: frozenset[str] = frozenset()
#: system query options OData (and BC) know that the sandbox does not emulate
_KNOWN_NOT_EMULATED = frozenset({"$search", "$apply", "$compute", "$levels", "$index",
                                 "$schemaversion", "$deltatoken", "$id", "$callback"})
_ALL_SYSTEM = COLLECTION_OPTIONS | _KNOWN_NOT_EMULATED
#: custom options BC honours: ``company`` (served), ``tenant`` (on-premises; not emulated)
_CUSTOM_NOT_EMULATED = frozenset({"tenant"})
_FUNCTION = re.compile(r"\b([A-Za-z_]\w*)\s*\(")
_OPERATOR_WORDS = re.compile(r"(?<![\w'])(add|sub|mul|div|divby|mod|has|in)(?![\w'])")
_STRING = re.compile(r"'(?:[^']|'')*'")
#: media ranges that admit the API's JSON (and the plain text of ``/$count``)
_JSON_RANGES = ("application/json", "application/*", "*/*", "text/plain", "text/*")
_PREFERENCE = re.compile(r"^\s*([\w.\-]+)\s*(?:=\s*\"?([^\";]*)\"?)?")


def not_emulated(what: str) -> ApiError:
    return ApiError(NOT_EMULATED, f"{what} is not emulated by the talksync sandbox (Business "
                                  "Central honours it); see docs/api/businesscentral.md.")


# -- query options ------------------------------------------------------------------------------


def check_options(request: Request, allowed: frozenset[str]) -> None:
    """Refuse query options this request cannot take (see the module docstring)."""
    for name in request.args:
        if len(request.args.getlist(name)) > 1:
            raise ApiError("bad_request", f"Query option '{name}' was specified more than once, "
                                          "but it must be specified at most once.")
        if name == "$format":
            if request.args[name].split(";")[0].strip() not in ("json", "application/json"):
                raise not_emulated(f"$format={request.args[name]}")
            continue
        if name in allowed or name == "company":
            continue
        if name in _KNOWN_NOT_EMULATED or name in _CUSTOM_NOT_EMULATED:
            raise not_emulated(f"The query option '{name}'")
        if name in _ALL_SYSTEM:
            raise ApiError("bad_request", f"The query option '{name}' is not allowed on this "
                                          "resource.")
        if name.startswith("$"):
            raise ApiError("bad_request", f"The query parameter '{name}' is not supported.")
        # other custom query options: OData services ignore them, and so does BC


_FILTER_TOKEN = re.compile(r"""
    \s*(?:
      (?P<string>'(?:[^']|'')*')
    | (?P<open>\() | (?P<close>\)) | (?P<comma>,)
    | (?P<word>[A-Za-z0-9_.:+\-]+)
    )""", re.VERBOSE)
#: the string functions of $filter the emulator evaluates (case-sensitive, like BC's ``*``
#: wildcards they become: MS Learn, "Using filter expressions in OData URIs")
_STRING_FUNCTIONS: Mapping[str, Callable[[str, str], bool]] = {
    "contains": lambda value, part: part in value,
    "startswith": lambda value, part: value.startswith(part),
    "endswith": lambda value, part: value.endswith(part),
}


def _filter_tokens(text: str) -> list[tuple[str, str]]:
    tokens, position, text = [], 0, text.strip()
    while position < len(text):
        found = _FILTER_TOKEN.match(text, position)
        if not found or found.end() == position:
            raise FilterError(f"Syntax error at position {position} in '{text}'.")
        tokens.append((found.lastgroup or "", found.group(found.lastgroup or 0)))
        position = found.end()
    return tokens


class _BcFilterParser(_Parser):
    """The shared ``$filter`` parser, plus ``contains``/``startswith``/``endswith`` and BC's
    rule that ``or`` joins comparisons of one property only (an AL filter is per field)."""

    def __init__(self, text: str, coerce: Callable[[str, Any], Any], properties: frozenset[str]):
        super().__init__("", coerce, properties)
        self._text, self._tokens = text, _filter_tokens(text)
        self._fields: list[str] = []

    def _comparison(self) -> Predicate:
        if self._position + 1 < len(self._tokens) and self._tokens[self._position + 1][0] == "open":
            return self._function()
        if self._position < len(self._tokens):
            self._fields.append(self._tokens[self._position][1])
        return super()._comparison()

    def _function(self) -> Predicate:
        """``contains(property, 'text')`` (or startswith, endswith), optionally ``eq true``."""
        name = self._next()[1]
        self._next()
        kind, prop = self._next()
        if kind != "word" or prop not in self._properties:
            raise FilterError(f"Could not find a property named '{prop}'.")
        self._fields.append(prop)
        comma, literal, close = self._next(), self._next(), self._next()
        if comma[0] != "comma" or literal[0] != "string" or close[0] != "close":
            raise FilterError(f"{name} takes a property and a string literal.")
        test, part = _STRING_FUNCTIONS[name], literal[1][1:-1].replace("''", "'")
        wanted = True
        if self._peek_word() in ("eq", "ne"):
            operator = self._next()[1]
            value = self._next()[1]
            if value not in ("true", "false"):
                raise FilterError(f"{name}(…) {operator} takes true or false.")
            wanted = (value == "true") == (operator == "eq")
        return lambda entity: (isinstance(entity.get(prop), str)
                               and test(entity[prop], part)) == wanted

    def _or(self) -> Predicate:
        start, joined = len(self._fields), False
        left = self._and()
        while self._peek_word() == "or":
            self._position += 1
            right = self._and()
            left = (lambda a, b: lambda e: a(e) or b(e))(left, right)
            joined = True
        if joined and len(set(self._fields[start:])) > 1:
            raise FilterError("An error occurred while processing this request. The 'OR' "
                              "operator is not supported on distinct fields on an OData filter.")
        return left


def compile_filter(text: str, props: Mapping[str, EdmProperty]) -> Predicate:
    """The predicate of ``$filter=text``; functions, lambdas, ``in`` and arithmetic are refused
    as not emulated, syntax errors and BC's own limits with 400."""
    bare = _STRING.sub("''", text)
    function = next((m.group(1) for m in _FUNCTION.finditer(bare)
                     if m.group(1) not in ("and", "or", "not", *_STRING_FUNCTIONS)), None)
    if function is not None:
        raise not_emulated(f"The $filter function or lambda '{function}'")
    operator = _OPERATOR_WORDS.search(bare)
    if operator is not None:
        raise not_emulated(f"The $filter operator '{operator.group(1)}'")
    try:
        return _BcFilterParser(text, lambda n, v: comparable(props.get(n), v),
                               frozenset(props)).parse()
    except FilterError as exc:
        raise ApiError("bad_request", str(exc)) from None


def parse_orderby(text: str, props: Mapping[str, EdmProperty]) -> list[tuple[str, bool]]:
    """``$orderby`` as ``(property, descending)``, ending with ``id`` (a total order, which the
    keyset skiptoken needs)."""
    order: list[tuple[str, bool]] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, direction = part.partition(" ")
        direction = direction.strip()
        if name not in props or direction not in ("", "asc", "desc"):
            raise ApiError("bad_request", f"$orderby: '{part}' is not a sortable property.")
        order.append((name, direction == "desc"))
    if "id" not in (name for name, _ in order):
        order.append(("id", False))
    return order


def non_negative(request: Request, name: str) -> int | None:
    text = request.args.get(name)
    if text is None:
        return None
    if not text.isdigit():
        raise ApiError("bad_request", f"Invalid value '{text}' for {name} query option found. "
                                      f"The {name} query option requires a non-negative integer "
                                      "value.")
    return int(text)


def wants_count(request: Request) -> bool:
    text = request.args.get("$count", "false")
    if text not in ("true", "false"):
        raise ApiError("bad_request", f"'{text}' is not a valid count option.")
    return text == "true"


def compare_keys(directions: Sequence[bool], left: list[Any], right: list[Any]) -> int:
    """Order two :func:`~sandbox.businesscentral_edm.sort_key` keys; each property takes two
    slots (present, value) and sorts descending where ``directions`` says so."""
    for index, descending in enumerate(directions):
        a, b = left[2 * index:2 * index + 2], right[2 * index:2 * index + 2]
        if a == b:
            continue
        try:
            smaller = a < b
        except TypeError:
            raise ApiError("bad_request", "The skip token is not valid.") from None
        return (1 if smaller else -1) if descending else (-1 if smaller else 1)
    return 0


def ordered(entities: list[Any], order: list[tuple[str, bool]], props: Mapping[str, EdmProperty],
            entity_of: Callable[[Any], Mapping[str, Any]]) -> list[Any]:
    directions = [descending for _, descending in order]
    keyed = [(sort_key(entity_of(item), order, props), item) for item in entities]
    keyed.sort(key=functools.cmp_to_key(lambda a, b: compare_keys(directions, a[0], b[0])))
    return [item for _, item in keyed]


# -- headers --------------------------------------------------------------------------------------


def preferences(request: Request) -> dict[str, str]:
    """The ``Prefer`` header's preferences, name → value."""
    found = {}
    for part in request.headers.get("Prefer", "").split(","):
        match = _PREFERENCE.match(part)
        if match and match.group(1):
            found[match.group(1).lower()] = (match.group(2) or "").strip()
    return found


def check_headers(request: Request, *, batch: bool = False) -> None:
    """Refuse request headers whose meaning in BC the sandbox does not emulate."""
    for name, value in preferences(request).items():
        # both only mean something to some requests (paging to a collection GET, return to
        # POST and PATCH); elsewhere there is nothing to honour, in BC as here
        if name == "odata.maxpagesize" and value.isdigit():
            continue
        if name == "return" and value in ("minimal", "representation"):
            continue
        if name == "odata.continue-on-error" and batch:
            continue
        raise not_emulated(f"The preference 'Prefer: {name}{'=' + value if value else ''}'")
    if request.method in ("GET", "HEAD"):
        for conditional in ("If-None-Match", "If-Match"):
            if conditional in request.headers:
                raise not_emulated(f"A conditional GET ({conditional})")
    intent = request.headers.get("Data-Access-Intent")
    if intent is not None:
        if intent.lower() not in ("readonly", "readwrite"):
            raise ApiError("bad_request", f"'{intent}' is not a valid Data-Access-Intent; use "
                                          "ReadOnly or ReadWrite.")
        if intent.lower() == "readonly" and request.method not in ("GET", "HEAD"):
            raise ApiError("bad_request", "Modification requests only support "
                                          "'Data-Access-Intent: ReadWrite'.")
    accept = request.headers.get("Accept")
    if accept and not request.path.endswith("/$metadata") and not any(
            media.split(";")[0].strip().lower().startswith(_JSON_RANGES)
            for media in accept.split(",")):
        raise not_emulated(f"Accept: {accept} (the sandbox answers in JSON)")
    language = request.headers.get("Accept-Language")
    if language and not _english_acceptable(language):
        raise not_emulated(f"Accept-Language: {language} (the sandbox answers in English)")
    isolation = request.headers.get("Isolation")
    if batch and isolation is not None and isolation.lower() != "snapshot":
        raise ApiError("bad_request", f"'Isolation: {isolation}' is not valid; the only "
                                      "isolation level is snapshot.")


def _english_acceptable(header: str) -> bool:
    for part in header.split(","):
        tag, _, params = part.strip().partition(";")
        quality = params.strip().removeprefix("q=")
        try:
            acceptable = float(quality) > 0 if params.strip().startswith("q=") else True
        except ValueError:
            acceptable = True
        if acceptable and (tag.strip().lower() in ("*", "en") or
                           tag.strip().lower().startswith("en-")):
            return True
    return False
