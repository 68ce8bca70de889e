"""The OData v4 ``$filter`` subset the Business Central emulator evaluates.

Grammar (OData v4 URL conventions §5.1.1, the part clients of BC use for sync):

* comparisons ``property op literal`` with ``eq ne gt ge lt le``,
* ``and``, ``or``, ``not`` and parentheses (``not`` binds tighter than ``and``, ``and`` than
  ``or``),
* literals: ``'text'`` (``''`` is a quote), numbers, ``true``/``false``/``null``, and the unquoted
  GUID, date and DateTimeOffset literals (``2024-05-01T00:00:00Z``).

:func:`parse_filter` returns a predicate over an entity dict; the caller converts both sides of a
comparison to comparable values with its ``coerce(property, value)`` (it knows the property
types from ``$metadata``). Anything else raises :class:`FilterError`, which the emulator answers
with BC's 400.
"""

from __future__ import annotations

import decimal
import re
from collections.abc import Callable, Mapping
from typing import Any

Predicate = Callable[[Mapping[str, Any]], bool]
#: (property name, raw value) -> a value comparable with the literal coerced the same way
Coerce = Callable[[str, Any], Any]

_COMPARISONS = {
    "eq": lambda a, b: a == b,
    "ne": lambda a, b: a != b,
    "gt": lambda a, b: a is not None and b is not None and a > b,
    "ge": lambda a, b: a is not None and b is not None and a >= b,
    "lt": lambda a, b: a is not None and b is not None and a < b,
    "le": lambda a, b: a is not None and b is not None and a <= b,
}
_TOKEN = re.compile(r"""
    \s*(?:
      (?P<string>'(?:[^']|'')*')
    | (?P<open>\() | (?P<close>\))
    | (?P<word>[A-Za-z0-9_.:+\-]+)
    )""", re.VERBOSE)
_NUMBER = re.compile(r"^-?\d+(\.\d+)?$")


class FilterError(ValueError):
    """A ``$filter`` the emulator cannot parse."""


def _tokens(text: str) -> list[tuple[str, str]]:
    tokens, position = [], 0
    text = text.strip()
    while position < len(text):
        found = _TOKEN.match(text, position)
        if not found or found.end() == position:
            raise FilterError(f"Syntax error at position {position} in '{text}'.")
        kind = found.lastgroup
        tokens.append((kind, found.group(kind)))
        position = found.end()
    return tokens


class _Literal:
    """A literal as written; ``value`` is its Python value before coercion."""

    def __init__(self, token: tuple[str, str]):
        kind, text = token
        if kind == "string":
            self.value: Any = text[1:-1].replace("''", "'")
        elif text in ("true", "false"):
            self.value = text == "true"
        elif text == "null":
            self.value = None
        elif _NUMBER.match(text):
            self.value = decimal.Decimal(text)
        else:
            self.value = text  # GUID, date or DateTimeOffset: coerced by property type


class _Parser:
    """Recursive descent over the tokens; builds the predicate as it goes."""

    def __init__(self, text: str, coerce: Coerce, properties: frozenset[str]):
        self._text = text
        self._tokens = _tokens(text)
        self._position = 0
        self._coerce = coerce
        self._properties = properties

    def parse(self) -> Predicate:
        predicate = self._or()
        if self._position != len(self._tokens):
            raise FilterError(f"Syntax error: unexpected '{self._tokens[self._position][1]}' "
                              f"in '{self._text}'.")
        return predicate

    def _peek_word(self) -> str:
        if self._position < len(self._tokens) and self._tokens[self._position][0] == "word":
            return self._tokens[self._position][1]
        return ""

    def _next(self) -> tuple[str, str]:
        if self._position >= len(self._tokens):
            raise FilterError(f"Syntax error: '{self._text}' ends early.")
        token = self._tokens[self._position]
        self._position += 1
        return token

    def _or(self) -> Predicate:
        left = self._and()
        while self._peek_word() == "or":
            self._position += 1
            right = self._and()
            left = (lambda a, b: lambda e: a(e) or b(e))(left, right)
        return left

    def _and(self) -> Predicate:
        left = self._unary()
        while self._peek_word() == "and":
            self._position += 1
            right = self._unary()
            left = (lambda a, b: lambda e: a(e) and b(e))(left, right)
        return left

    def _unary(self) -> Predicate:
        if self._peek_word() == "not":
            self._position += 1
            inner = self._unary()
            return lambda e: not inner(e)
        if self._position < len(self._tokens) and self._tokens[self._position][0] == "open":
            self._position += 1
            inner = self._or()
            if self._next()[0] != "close":
                raise FilterError(f"Syntax error: ')' expected in '{self._text}'.")
            return inner
        return self._comparison()

    def _comparison(self) -> Predicate:
        kind, name = self._next()
        if kind != "word" or name not in self._properties:
            raise FilterError(f"Could not find a property named '{name}' on type "
                              "'Microsoft.NAV.entity'.")
        _, operator = self._next()
        if operator not in _COMPARISONS:
            raise FilterError(f"Syntax error: '{operator}' is not a comparison operator.")
        literal = _Literal(self._next())
        try:
            expected = self._coerce(name, literal.value)
        except ValueError as exc:
            raise FilterError(str(exc)) from None
        compare = _COMPARISONS[operator]
        coerce = self._coerce
        return lambda entity: compare(coerce(name, entity.get(name)), expected)


def parse_filter(text: str, coerce: Coerce, properties: frozenset[str]) -> Predicate:
    """The predicate of ``$filter=text`` over entities with the given ``properties``."""
    return _Parser(text, coerce, properties).parse()
