"""Business rules: per-property constraints a dataflow spec declares on canonical values.

A system accepts what its own checks allow; a business wants more: no negative price, no order
line of nothing, no e-mail address a mail server would refuse. A property of a spec may carry
rules (docs/rules.md):

``minimum`` / ``maximum``
    the value is at least / at most this number (integer and decimal properties);
``greater_than`` / ``less_than``
    the value is above / below this number, the number itself excluded;
``pattern``
    the whole value matches this Python regular expression (string and e-mail properties);
``allowed``
    the value is one of these (given as the property's values are written; compared after
    conversion, so ``nok`` allows the canonical ``NOK``).

``required`` (a value must be there) is the rule the spec had before these. A rule is checked on
the canonical value of the record being read, whichever side it comes from, so it holds in both
directions; a record that breaks one is a validation dead letter naming the rule, the property
and the value, and nothing is written for it. :func:`parse_rules` checks a spec's rules
(:class:`RuleError` says what is wrong and how to write it), :meth:`Rule.broken_by` checks a
value.
"""

from __future__ import annotations

import dataclasses
import decimal
import re
from collections.abc import Mapping
from typing import Any

from core import types

#: the rule keys of a property, in the order they are checked and documented
RULE_KEYS = ("minimum", "greater_than", "maximum", "less_than", "pattern", "allowed")
_BOUNDS = {"minimum": "below the minimum", "greater_than": "not greater than",
           "maximum": "above the maximum", "less_than": "not less than"}
_NUMBER_TYPES = ("integer", "decimal")
_PATTERN_TYPES = ("string", "email")
_ALLOWED_TYPES = ("string", "email", "integer", "decimal", "country", "currency")


class RuleError(ValueError):
    """A rule of a spec that cannot be used; the message names the key and the fix."""


@dataclasses.dataclass(frozen=True)
class Rule:
    """One constraint on a property's canonical value.

    ``kind`` is one of :data:`RULE_KEYS`; ``limit`` the number (a :class:`decimal.Decimal`), the
    pattern text, or the tuple of allowed canonical values; ``owner`` names the property as
    ``pair.property`` (``order.lines.quantity`` for a line's), which every message cites.
    """

    kind: str
    limit: Any
    owner: str

    def broken_by(self, value: Any) -> str | None:
        """Why ``value`` breaks this rule, or None when it keeps it (an empty value keeps every
        rule: ``required`` is the rule that asks for one)."""
        if types.is_empty(value):
            return None
        if self.kind in _BOUNDS:
            kept = {"minimum": value >= self.limit, "greater_than": value > self.limit,
                    "maximum": value <= self.limit, "less_than": value < self.limit}[self.kind]
            return None if kept else self._says(f"{value} is {_BOUNDS[self.kind]} {self.limit}")
        if self.kind == "pattern":
            if re.fullmatch(self.limit, str(value)):
                return None
            return self._says(f"{value!r} does not match the pattern {self.limit!r}")
        if value in self.limit:
            return None
        return self._says(f"{value!r} is not one of the allowed values "
                          f"{', '.join(map(str, self.limit))}")

    def _says(self, reason: str) -> str:
        return f"{reason} (rule {self.kind} of {self.owner})"


def parse_rules(row: Mapping[str, Any], type_: str, owner: str) -> tuple[Rule, ...]:
    """The rules of one property row of a spec (raises :class:`RuleError`)."""
    rules = []
    for kind in RULE_KEYS:
        if kind in row:
            rules.append(Rule(kind, _limit(kind, row[kind], type_), owner))
    _check_bounds(rules)
    return tuple(rules)


def _limit(kind: str, raw: Any, type_: str) -> Any:
    if kind in _BOUNDS:
        return _number(kind, raw, type_)
    if kind == "pattern":
        return _pattern(raw, type_)
    return _allowed(raw, type_)


def _number(kind: str, raw: Any, type_: str) -> decimal.Decimal:
    if type_ not in _NUMBER_TYPES:
        raise RuleError(f"{kind}: a bound is a rule of a number (type integer or decimal), "
                        f"and this property is of type {type_}; remove {kind}"
                        + (", or use pattern or allowed" if type_ in _PATTERN_TYPES else ""))
    if isinstance(raw, bool) or not isinstance(raw, (int, float, str)):
        raise RuleError(f"{kind}: expected a number, e.g. {kind}: 0")
    try:
        number = decimal.Decimal(str(raw).strip())
    except decimal.InvalidOperation:
        raise RuleError(f"{kind}: {raw!r} is not a number; write e.g. {kind}: 0") from None
    if not number.is_finite():
        raise RuleError(f"{kind}: {raw!r} is not a finite number; write e.g. {kind}: 0")
    return number


def _pattern(raw: Any, type_: str) -> str:
    if type_ not in _PATTERN_TYPES:
        raise RuleError(f"pattern: a pattern is a rule of text (type string or email), and "
                        f"this property is of type {type_}; remove pattern"
                        + (", or use minimum, maximum or allowed" if type_ in _NUMBER_TYPES
                           else ""))
    if not isinstance(raw, str) or not raw:
        raise RuleError("pattern: expected a regular expression in quotes, e.g. "
                        "pattern: '[A-Z]{2}[0-9]+'")
    try:
        re.compile(raw)
    except re.error as exc:
        raise RuleError(f"pattern: {raw!r} does not compile ({exc}); write a Python regular "
                        "expression the whole value must match, e.g. '[A-Z]{2}[0-9]+'") from None
    return raw


def _allowed(raw: Any, type_: str) -> tuple[Any, ...]:
    if type_ not in _ALLOWED_TYPES:
        raise RuleError(f"allowed: a list of allowed values is a rule of type "
                        f"{', '.join(_ALLOWED_TYPES)}, and this property is of type {type_}; "
                        "remove allowed")
    if not isinstance(raw, list) or not raw:
        raise RuleError("allowed: expected a non-empty list of values, e.g. "
                        "allowed: [NOK, EUR]")
    values = []
    for item in raw:
        try:
            value = types.to_canonical(type_, item)
        except types.InvalidValue as exc:
            raise RuleError(f"allowed: {item!r} is not a value of type {type_} ({exc})") from None
        if value is None:
            raise RuleError("allowed: an empty value cannot be allowed (an empty value keeps "
                            "every rule; use required: true to ask for one)")
        values.append(value)
    return tuple(values)


def _check_bounds(rules: list[Rule]) -> None:
    kinds = {rule.kind: rule.limit for rule in rules}
    for low, high in (("minimum", "greater_than"), ("maximum", "less_than")):
        if low in kinds and high in kinds:
            raise RuleError(f"{low} and {high}: one bound per side; keep {low} (the limit "
                            f"allowed) or {high} (the limit excluded)")
    lower = [kind for kind in ("minimum", "greater_than") if kind in kinds]
    upper = [kind for kind in ("maximum", "less_than") if kind in kinds]
    if lower and upper:
        low, high = lower[0], upper[0]
        inclusive = low == "minimum" and high == "maximum"
        if kinds[low] > kinds[high] or (kinds[low] == kinds[high] and not inclusive):
            raise RuleError(f"{low} {kinds[low]} and {high} {kinds[high]}: no value keeps both; "
                            f"make {low} smaller than {high}")
