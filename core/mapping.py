"""Typed mapping between a system's records and a pair's canonical view, both directions.

A *view* is a dict from target property name (``address.city``) to canonical value. The source
side is mapped forward (source property → target name, enum values translated, references
translated through links); the target side is already in the target vocabulary and is only
converted to canonical values. Writing goes the other way: canonical changes become the nested
wire fields of the system being written.

Every problem with an entity is collected into one :class:`MappingError`, so a dead letter lists
all that is wrong with a record at once instead of one field per run.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from core import types
from core.spec import PairSpec, PropertySpec

#: ``resolve(pair, direction, id)`` → the id on the other side, or None when not linked.
#: ``direction`` is "to_target" (a source id in, a target id out) or "to_source". It may raise
#: :class:`ReferenceMissing` when the entity the id names does not exist at all.
Resolver = Callable[[str, str, str], str | None]
#: one thing wrong with an entity: (property label, reason, error class)
Problem = tuple[str, str, str]

_ASCII_SPACES = re.compile(r"[ \t\r\n\f\v]+")

VALIDATION = "validation"
REFERENCE = "reference"
#: a problem class only: a reference to an entity that does not exist (its letters are of the
#: error class ``reference`` and the stage ``reference``, retried a bounded number of runs)
MISSING = "missing"


class _Unresolved(Exception):
    """A reference whose entity has no link yet."""


class ReferenceMissing(Exception):
    """Raised by a :data:`Resolver` for an id that has no link because the entity it names
    does not exist (the resolver looked it up in its system); the message says so, naming the
    system: ``customer C99999 does not exist in customerp``."""


class MappingError(ValueError):
    """An entity that cannot be mapped: ``problems`` lists (property, reason) pairs.

    ``error_class`` is ``reference`` when the only problems are references that are not linked
    yet (retried next run, after the referenced entities sync) or that name entities that do
    not exist, else ``validation``. ``missing`` is True when the only problems are references
    and at least one names an entity that does not exist: such a record waits for something
    that may never come, so it is retried a bounded number of runs (docs/rules.md).
    """

    def __init__(self, problems: Sequence[tuple[str, str, str]]):
        self.problems = list(problems)
        classes = {cls for _, _, cls in self.problems}
        references = bool(classes) and classes <= {REFERENCE, MISSING}
        self.error_class = REFERENCE if references else VALIDATION
        self.missing = references and MISSING in classes
        super().__init__("; ".join(f"{prop}: {reason}" for prop, reason, _ in self.problems))


def get_path(fields: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted path of nested dicts (None when any step is missing)."""
    value: Any = fields
    for part in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def _value_at(fields: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted path, like :func:`get_path`, but a step that holds something
    other than an object (an address given as text) is an :class:`~types.InvalidValue`
    rather than no value: read as empty, it would be overwritten from the other side."""
    value: Any = fields
    parts = path.split(".")
    for depth, part in enumerate(parts):
        if value is None:
            return None
        if not isinstance(value, Mapping):
            raise types.InvalidValue(f"{'.'.join(parts[:depth])} is "
                                     f"{type(value).__name__} {value!r}, not an object")
        value = value.get(part)
    return value


def set_path(fields: dict[str, Any], path: str, value: Any) -> None:
    """Set a dotted path in nested dicts, creating the intermediate dicts."""
    parts = path.split(".")
    for part in parts[:-1]:
        fields = fields.setdefault(part, {})
    fields[parts[-1]] = value


def _format_template(template: str, fields: Mapping[str, Any]) -> str | None:
    parts = []
    for literal, name, _, _ in string.Formatter().parse(template):
        parts.append(literal)
        if name:
            value = get_path(fields, name)
            parts.append("" if value is None else str(value))
    # collapse the ASCII spaces an empty part leaves, never a no-break space inside a value
    text = " ".join(_ASCII_SPACES.split("".join(parts))).strip(" ")
    return text or None


def match_token(value: Any) -> str:
    """The form of a match-key value that two systems' records are compared by."""
    if isinstance(value, str):
        return " ".join(value.split()).casefold()
    return str(value)


def _broken_rules(prop: PropertySpec, value: Any) -> list[str]:
    """Why the canonical ``value`` breaks the property's business rules (core.rules): checked
    on whichever side a record is read, so a rule holds in both directions."""
    return [reason for rule in prop.rules if (reason := rule.broken_by(value)) is not None]


def _label(prop: PropertySpec, side: str) -> str:
    return prop.target if side == "target" else f"{prop.target} ({prop.source})"


class PairMapper:
    """Maps records of one pair to canonical views and canonical changes back to records."""

    def __init__(self, pair: PairSpec):
        self.pair = pair

    # --- reading ---------------------------------------------------------------------------
    def source_view(self, fields: Mapping[str, Any], resolve: Resolver) -> dict[str, Any]:
        """The canonical view of a source record (raises :class:`MappingError`)."""
        problems: list[Problem] = []
        view = self._read(self.pair.properties, fields, "source", resolve, problems, "")
        if problems:
            raise MappingError(problems)
        return view

    def target_view(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        """The canonical view of a target record (raises :class:`MappingError`)."""
        problems: list[Problem] = []
        view = self._read(self.pair.properties, fields, "target", None, problems, "")
        if problems:
            raise MappingError(problems)
        return view

    def view(self, side: str, fields: Mapping[str, Any], resolve: Resolver) -> dict[str, Any]:
        if side == "source":
            return self.source_view(fields, resolve)
        return self.target_view(fields)

    def _read(self, properties: Sequence[PropertySpec], fields: Mapping[str, Any], side: str,
              resolve: Resolver | None, problems: list[Problem], prefix: str) -> dict[str, Any]:
        view: dict[str, Any] = {}
        for prop in properties:
            label = prefix + _label(prop, side)
            try:
                raw = _value_at(fields, prop.source if side == "source" else prop.target)
                value = self._read_value(prop, raw, fields, side, resolve, problems, label)
            except types.InvalidValue as exc:
                problems.append((label, str(exc), VALIDATION))
                continue
            except _Unresolved as exc:
                problems.append((label, str(exc), REFERENCE))
                continue
            except ReferenceMissing as exc:
                problems.append((label, str(exc), MISSING))
                continue
            if value is None and prop.required:
                problems.append((label, "a value is required", VALIDATION))
            problems.extend((label, reason, VALIDATION) for reason in _broken_rules(prop, value))
            view[prop.target] = value
        return view

    def _read_value(self, prop: PropertySpec, raw: Any, fields: Mapping[str, Any], side: str,
                    resolve: Resolver | None, problems: list[Problem], label: str) -> Any:
        if prop.type == "lines":
            if raw is None:
                return ()
            if not isinstance(raw, list):
                raise types.InvalidValue(f"expected a list of lines, got {type(raw).__name__}")
            lines = []
            for index, line in enumerate(raw):
                if not isinstance(line, Mapping):
                    problems.append((f"{label}[{index}]", "a line must be an object", VALIDATION))
                    continue
                lines.append(self._read(prop.lines, line, side, resolve, problems,
                                        f"{label}[{index}]."))
            return tuple(lines)
        fallback = prop.source_fallback if side == "source" else prop.target_fallback
        if fallback and types.is_empty(raw):
            raw = _format_template(fallback, fields)
        if side == "source" and prop.values is not None and raw is not None and raw != "":
            if raw in prop.values:
                raw = prop.values[raw]
            elif str(raw) in prop.values:
                raw = prop.values[str(raw)]
            else:
                raise types.InvalidValue(
                    f"{raw!r} has no mapping; known values: {', '.join(map(str, prop.values))}")
        value = types.to_canonical(prop.type, raw, prop.max_length)
        if prop.type == "reference" and side == "source" and value is not None:
            # the source side always maps with a resolver; a reference always names its pair
            assert resolve is not None and prop.pair is not None
            translated = resolve(prop.pair, "to_target", value)
            if translated is None:
                raise _Unresolved(f"{prop.pair} {value} is not linked yet (retried on the "
                                  "next run)")
            return translated
        return value

    # --- writing ---------------------------------------------------------------------------
    def target_fields(self, changes: Mapping[str, Any]) -> dict[str, Any]:
        """Wire fields for the target from canonical changes (raises :class:`MappingError`)."""
        return self._write(changes, "target", None)

    def source_fields(self, changes: Mapping[str, Any], resolve: Resolver) -> dict[str, Any]:
        """Wire fields for the source from canonical changes (raises :class:`MappingError`)."""
        return self._write(changes, "source", resolve)

    def fields_for(self, side: str, changes: Mapping[str, Any],
                   resolve: Resolver) -> dict[str, Any]:
        return self._write(changes, side, resolve)

    def _write(self, changes: Mapping[str, Any], side: str,
               resolve: Resolver | None) -> dict[str, Any]:
        problems: list[Problem] = []
        fields: dict[str, Any] = {}
        for prop in self.pair.properties:
            if prop.target in changes:
                value = self._write_value(prop, changes[prop.target], side, resolve, problems,
                                          _label(prop, side))
                set_path(fields, prop.source if side == "source" else prop.target, value)
        if problems:
            raise MappingError(problems)
        return fields

    def _write_value(self, prop: PropertySpec, value: Any, side: str, resolve: Resolver | None,
                     problems: list[Problem], label: str) -> Any:
        if prop.type == "lines":
            lines = []
            for index, line in enumerate(value or ()):
                out: dict[str, Any] = {}
                for sub in prop.lines:
                    if sub.writes_to(side) and sub.target in line:
                        set_path(out, sub.source if side == "source" else sub.target,
                                 self._write_value(sub, line[sub.target], side, resolve,
                                                   problems, f"{label}[{index}].{sub.target}"))
                lines.append(out)
            return lines
        if value is None:
            return None
        if side == "source" and prop.type == "reference":
            # the source side always maps with a resolver; a reference always names its pair
            assert resolve is not None and prop.pair is not None
            try:
                translated = resolve(prop.pair, "to_source", value)
            except ReferenceMissing as exc:
                problems.append((label, str(exc), MISSING))
                return None
            if translated is None:
                problems.append((label, f"{prop.pair} {value} is not linked yet (retried on the "
                                        "next run)", REFERENCE))
            return translated
        if side == "source" and prop.values is not None:
            for source_value, target_value in prop.values.items():
                if types.to_canonical(prop.type, target_value) == value:
                    return source_value
            problems.append((label, f"{value!r} has no {self.pair.source.label} equivalent; "
                                    f"known values: {', '.join(map(str, prop.values.values()))}",
                             VALIDATION))
            return None
        return types.to_wire(value)

    # --- matching --------------------------------------------------------------------------
    def match_key(self, view: Mapping[str, Any]) -> tuple[str, str] | None:
        """(property, token) of the first match key with a value, or None."""
        for key in self.pair.match:
            value = view.get(key)
            if not types.is_empty(value):
                return key, match_token(value)
        return None
