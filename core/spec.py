"""Dataflow specs: what syncs, declared as data in ``core/dataflows/*.yaml``.

A dataflow ties a source system to a target system through entity *pairs*. Each pair has match
keys, a conflict policy, a delete policy and a property table: source property, target property,
the canonical data type and the direction. Canonical views use the target's vocabulary (the
target property names), so the target data type column of the generated documents is the type
column here.

:func:`load_dataflow` reads and validates one file; every problem is a :class:`SpecError` naming
the file, the pair and the field, and saying what is allowed.
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import yaml

from core.rules import RULE_KEYS, Rule, RuleError, parse_rules

DATAFLOWS_DIR = pathlib.Path(__file__).resolve().parent / "dataflows"

#: canonical data types and what they hold (the docs' "data type" column)
TYPES = {
    "string": "string",
    "email": "string (e-mail address)",
    "integer": "integer",
    "decimal": "decimal",
    "boolean": "boolean",
    "date": "date",
    "datetime": "datetime (UTC)",
    "country": "string (ISO 3166-1 alpha-2)",
    "currency": "string (ISO 4217)",
    "reference": "reference",
    "lines": "list of lines",
}
DIRECTIONS = ("both", "to_target", "to_source")
CONFLICT_POLICIES = ("latest", "source", "target")
DELETE_POLICIES = ("ignore", "unlink", "propagate")
CREATE_POLICIES = ("both", "to_target", "to_source", "none")

_DATAFLOW_KEYS = {"name", "title", "description", "source", "target", "pairs", "documents"}
_DOCUMENT_KEYS = {"name", "title", "source_label", "target_label", "pairs"}
_DOCUMENT_PAIR_KEYS = {"source_label", "target_label"}
_SYSTEM_KEYS = {"system", "label"}
_PAIR_KEYS = {"name", "description", "source", "target", "match", "conflict", "delete", "create",
              "properties"}
_ENTITY_KEYS = {"entity", "label"}
_PROPERTY_KEYS = {"source", "target", "type", "direction", "required", "max_length", "values",
                  "immutable", "source_fallback", "target_fallback", "pair", "lines",
                  "description", *RULE_KEYS}


class SpecError(ValueError):
    """A dataflow spec that cannot be used; the message names file, pair and field."""


@dataclasses.dataclass(frozen=True)
class PropertySpec:
    """One row of a property table: how a source property and a target property correspond.

    ``source``/``target`` are dotted paths into the systems' records (``address.city``).
    ``values`` maps source values to target values for enumerations (must be one-to-one).
    ``immutable`` properties are written when an entity is created and never updated (keys
    such as an ERP item number). ``source_fallback`` / ``target_fallback`` is a template over
    other fields of that side (``"{first_name} {last_name}"``) that stands in for the side's
    value when it is empty.
    ``pair`` names the pair whose links translate a ``reference``. ``lines`` holds the
    properties of each line of a ``lines`` property. ``rules`` are the business rules its
    canonical value must keep (:mod:`core.rules`).
    """

    source: str
    target: str
    type: str
    direction: str = "both"
    required: bool = False
    max_length: int | None = None
    values: Mapping[Any, Any] | None = None
    immutable: bool = False
    source_fallback: str | None = None
    target_fallback: str | None = None
    pair: str | None = None
    lines: tuple[PropertySpec, ...] = ()
    description: str = ""
    rules: tuple[Rule, ...] = ()

    def writes_to(self, side: str) -> bool:
        """Whether an update may carry this property to ``side`` ("source" or "target")."""
        return self.direction == "both" or self.direction == f"to_{side}"


@dataclasses.dataclass(frozen=True)
class EntitySpec:
    """One side of a pair: the connector's entity name and the label used in documents."""

    entity: str
    label: str


@dataclasses.dataclass(frozen=True)
class PairSpec:
    """An entity pair of a dataflow (for example ERP ``Customers`` with webshop ``customers``)."""

    name: str
    source: EntitySpec
    target: EntitySpec
    match: tuple[str, ...]
    properties: tuple[PropertySpec, ...]
    conflict: str = "latest"
    delete: str = "ignore"
    create: str = "both"
    description: str = ""

    @property
    def depends_on(self) -> tuple[str, ...]:
        """Names of the pairs whose links this pair's references need (in dependency order)."""
        names: list[str] = []
        for prop in _walk(self.properties):
            # a reference always names its pair (the parser refuses one without)
            if prop.type == "reference" and prop.pair is not None and prop.pair not in names:
                names.append(prop.pair)
        return tuple(names)

    def property(self, target: str) -> PropertySpec:
        for prop in self.properties:
            if prop.target == target:
                return prop
        raise KeyError(target)


@dataclasses.dataclass(frozen=True)
class SystemRef:
    system: str
    label: str


@dataclasses.dataclass(frozen=True)
class DocumentSpec:
    """Another document of the same dataflow, under other labels (a seed with another title).

    ``pair_labels`` overrides the system labels per pair: ``{pair: (source, target)}``, where
    either may be None (the document's label applies).
    """

    name: str
    title: str
    source_label: str
    target_label: str
    pair_labels: Mapping[str, tuple[str | None, str | None]] = dataclasses.field(
        default_factory=dict)

    def labels(self, pair: str) -> tuple[str, str]:
        source, target = self.pair_labels.get(pair, (None, None))
        return source or self.source_label, target or self.target_label


@dataclasses.dataclass(frozen=True)
class DataflowSpec:
    """A dataflow: source and target systems and their entity pairs in dependency order."""

    name: str
    title: str
    source: SystemRef
    target: SystemRef
    pairs: tuple[PairSpec, ...]
    description: str = ""
    path: str | None = None
    documents: tuple[DocumentSpec, ...] = ()

    def pair(self, name: str) -> PairSpec:
        for pair in self.pairs:
            if pair.name == name:
                return pair
        raise KeyError(name)

    def pair_key(self, pair: str) -> str:
        """The link-store name of a pair: ``dataflow/pair``."""
        return f"{self.name}/{pair}"


def _walk(properties: Iterable[PropertySpec]) -> Iterable[PropertySpec]:
    for prop in properties:
        yield prop
        yield from _walk(prop.lines)


class _Validator:
    """Collects the context (file, pair, field) that every error message names."""

    def __init__(self, path: str):
        self.path = path

    def fail(self, where: str, message: str) -> SpecError:
        return SpecError(f"{self.path}: {where}: {message}")

    def mapping(self, value: Any, where: str) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise self.fail(where, f"expected a mapping, got {type(value).__name__}")
        return value

    def keys(self, value: Mapping[str, Any], allowed: set[str], required: Iterable[str],
             where: str) -> None:
        unknown = sorted(set(map(str, value)) - allowed)
        if unknown:
            raise self.fail(where, f"unknown key(s) {', '.join(unknown)}; "
                                   f"allowed: {', '.join(sorted(allowed))}")
        for key in required:
            if value.get(key) in (None, ""):
                raise self.fail(where, f"missing required key {key!r}")

    def choice(self, value: Any, allowed: Sequence[str], where: str, field: str) -> str:
        if value not in allowed:
            raise self.fail(where, f"{field}: {value!r} is not one of {', '.join(allowed)}")
        return str(value)


def parse_dataflow(data: Any, path: str = "<dataflow>") -> DataflowSpec:
    """Validate a parsed YAML document and build its :class:`DataflowSpec`."""
    v = _Validator(path)
    doc = v.mapping(data, "dataflow")
    v.keys(doc, _DATAFLOW_KEYS, ("name", "source", "target", "pairs"), "dataflow")
    systems = {}
    for side in ("source", "target"):
        ref = v.mapping(doc[side], side)
        v.keys(ref, _SYSTEM_KEYS, ("system",), side)
        systems[side] = SystemRef(system=str(ref["system"]),
                                  label=str(ref.get("label") or ref["system"]).strip())
    if not isinstance(doc["pairs"], list) or not doc["pairs"]:
        raise v.fail("pairs", "expected a non-empty list of pairs")
    pairs: list[PairSpec] = []
    for index, raw in enumerate(doc["pairs"]):
        pairs.append(_parse_pair(v, raw, f"pairs[{index}]"))
    names = [p.name for p in pairs]
    for name in names:
        if names.count(name) > 1:
            raise v.fail(f"pair {name}", "duplicate pair name")
    ordered = _dependency_order(v, pairs)
    documents = _parse_documents(v, doc.get("documents") or [], set(names))
    return DataflowSpec(name=str(doc["name"]), title=str(doc.get("title") or doc["name"]),
                        source=systems["source"], target=systems["target"],
                        pairs=tuple(ordered), description=str(doc.get("description") or ""),
                        path=path, documents=documents)


def _parse_documents(v: _Validator, rows: Any, pair_names: set[str]) -> tuple[DocumentSpec, ...]:
    if not isinstance(rows, list):
        raise v.fail("documents", "expected a list of documents")
    documents = []
    for index, raw in enumerate(rows):
        row = v.mapping(raw, f"documents[{index}]")
        where = f"document {row.get('name') or index}"
        v.keys(row, _DOCUMENT_KEYS, ("name", "title", "source_label", "target_label"), where)
        labels = {}
        for pair, override in v.mapping(row.get("pairs") or {}, f"{where}: pairs").items():
            if pair not in pair_names:
                raise v.fail(f"{where}: pairs", f"{pair!r} is not a pair of this dataflow")
            override = v.mapping(override, f"{where}: pairs: {pair}")
            v.keys(override, _DOCUMENT_PAIR_KEYS, (), f"{where}: pairs: {pair}")
            labels[pair] = (override.get("source_label"), override.get("target_label"))
        documents.append(DocumentSpec(name=str(row["name"]), title=str(row["title"]),
                                      source_label=str(row["source_label"]),
                                      target_label=str(row["target_label"]), pair_labels=labels))
    return tuple(documents)


def _parse_pair(v: _Validator, raw: Any, where: str) -> PairSpec:
    pair = v.mapping(raw, where)
    v.keys(pair, _PAIR_KEYS, ("name",), where)
    name = str(pair["name"])
    where = f"pair {name}"
    v.keys(pair, _PAIR_KEYS, ("source", "target", "properties", "match"), where)
    entities = {}
    for side in ("source", "target"):
        ent = v.mapping(pair[side], f"{where}: {side}")
        v.keys(ent, _ENTITY_KEYS, ("entity",), f"{where}: {side}")
        entities[side] = EntitySpec(entity=str(ent["entity"]),
                                    label=str(ent.get("label") or ent["entity"]))
    if not isinstance(pair["properties"], list) or not pair["properties"]:
        raise v.fail(where, "properties: expected a non-empty list")
    properties = _parse_properties(v, pair["properties"], where, name)
    match = pair["match"]
    if isinstance(match, str):
        match = [match]
    if not isinstance(match, list) or not match:
        raise v.fail(where, "match: expected a list of target property names "
                            "(the keys that link existing records instead of creating them)")
    by_target = {p.target: p for p in properties}
    for key in match:
        if key not in by_target:
            raise v.fail(where, f"match: {key!r} is not a target property of this pair; "
                                f"choose from {', '.join(sorted(by_target))}")
        if by_target[key].type in ("lines", "reference"):
            raise v.fail(where, f"match: {key!r} has type {by_target[key].type}, "
                                "which cannot be a match key")
    return PairSpec(
        name=name, source=entities["source"], target=entities["target"],
        match=tuple(str(k) for k in match), properties=properties,
        conflict=v.choice(pair.get("conflict", "latest"), CONFLICT_POLICIES, where, "conflict"),
        delete=v.choice(pair.get("delete", "ignore"), DELETE_POLICIES, where, "delete"),
        create=v.choice(pair.get("create", "both"), CREATE_POLICIES, where, "create"),
        description=str(pair.get("description") or ""))


def _parse_properties(v: _Validator, rows: list[Any], where: str, owner: str,
                      in_lines: bool = False) -> tuple[PropertySpec, ...]:
    """The property rows of a pair (``owner`` is the pair's name, ``pair.property`` for the
    properties of a line, as the rules' messages cite them)."""
    properties: list[PropertySpec] = []
    for index, raw in enumerate(rows):
        row = v.mapping(raw, f"{where}: properties[{index}]")
        label = row.get("target") or row.get("source") or f"properties[{index}]"
        at = f"{where}: property {label}"
        v.keys(row, _PROPERTY_KEYS, ("source", "target", "type"), at)
        type_ = v.choice(row["type"], tuple(TYPES), at, "type")
        if in_lines and type_ == "lines":
            raise v.fail(at, "type: lines cannot be nested inside lines")
        max_length = row.get("max_length")
        if max_length is not None and (not isinstance(max_length, int) or max_length <= 0):
            raise v.fail(at, "max_length: expected a positive integer")
        values = row.get("values")
        if values is not None:
            if not isinstance(values, Mapping) or not values:
                raise v.fail(at, "values: expected a mapping of source value to target value")
            if len(set(map(repr, values.values()))) != len(values):
                raise v.fail(at, "values: two source values map to the same target value; "
                                 "the mapping must be one-to-one to work in both directions")
        if type_ == "reference" and not row.get("pair"):
            raise v.fail(at, "pair: a reference names the pair whose links translate it")
        if type_ != "reference" and row.get("pair"):
            raise v.fail(at, "pair: only a reference property names a pair")
        lines: tuple[PropertySpec, ...] = ()
        if type_ == "lines":
            if not isinstance(row.get("lines"), list) or not row["lines"]:
                raise v.fail(at, "lines: a lines property lists the properties of each line")
            lines = _parse_properties(v, row["lines"], f"{at}: lines",
                                      f"{owner}.{row['target']}", in_lines=True)
        elif row.get("lines"):
            raise v.fail(at, "lines: only a property of type lines has line properties")
        for flag in ("required", "immutable"):
            if flag in row and not isinstance(row[flag], bool):
                raise v.fail(at, f"{flag}: expected true or false")
        try:
            rules = parse_rules(row, type_, f"{owner}.{row['target']}")
        except RuleError as exc:
            raise v.fail(at, str(exc)) from None
        properties.append(PropertySpec(
            source=str(row["source"]), target=str(row["target"]), type=type_,
            direction=v.choice(row.get("direction", "both"), DIRECTIONS, at, "direction"),
            required=bool(row.get("required", False)), max_length=max_length,
            values=dict(values) if values else None,
            immutable=bool(row.get("immutable", False)),
            source_fallback=row.get("source_fallback"),
            target_fallback=row.get("target_fallback"), pair=row.get("pair"), lines=lines,
            description=str(row.get("description") or ""), rules=rules))
    _check_duplicates(v, properties, where)
    return tuple(properties)


def _check_duplicates(v: _Validator, properties: Sequence[PropertySpec], where: str) -> None:
    targets: dict[str, PropertySpec] = {}
    sources: dict[str, PropertySpec] = {}
    for prop in properties:
        if prop.target in targets:
            raise v.fail(f"{where}: property {prop.target}",
                         "duplicate target property; each target property is mapped once")
        targets[prop.target] = prop
        if prop.writes_to("source"):
            if prop.source in sources:
                raise v.fail(f"{where}: property {prop.target}",
                             f"duplicate source property {prop.source!r}: two rows would both "
                             "write it; make all but one direction: to_target")
            sources[prop.source] = prop


def _dependency_order(v: _Validator, pairs: list[PairSpec]) -> list[PairSpec]:
    by_name = {p.name: p for p in pairs}
    for pair in pairs:
        for dep in pair.depends_on:
            if dep not in by_name:
                raise v.fail(f"pair {pair.name}",
                             f"a reference names pair {dep!r}, which this dataflow does not have")
    ordered: list[PairSpec] = []
    visiting: set[str] = set()

    def visit(pair: PairSpec) -> None:
        if pair in ordered:
            return
        if pair.name in visiting:
            raise v.fail(f"pair {pair.name}", "references form a cycle")
        visiting.add(pair.name)
        for dep in pair.depends_on:
            visit(by_name[dep])
        visiting.discard(pair.name)
        ordered.append(pair)

    for pair in pairs:
        visit(pair)
    return ordered


def load_dataflow(path: str | pathlib.Path) -> DataflowSpec:
    """Read and validate one dataflow spec file. A file read before and not changed since
    (the same modification time and size) is not parsed again: a run looks its dataflows up
    more than once, and ``--every`` and ``--all`` run them again and again in one process."""
    path = pathlib.Path(path)
    stat = path.stat()
    return _parsed_dataflow(str(path), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=64)
def _parsed_dataflow(path: str, _mtime_ns: int, _size: int) -> DataflowSpec:
    try:
        data = yaml.safe_load(pathlib.Path(path).read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise SpecError(f"{path}: not valid YAML: {exc}") from None
    return parse_dataflow(data, path)


def available_dataflows(directory: pathlib.Path = DATAFLOWS_DIR) -> dict[str, DataflowSpec]:
    """Every dataflow shipped with talksync, by name."""
    specs = {}
    for path in sorted(directory.glob("*.yaml")):
        spec = load_dataflow(path)
        specs[spec.name] = spec
    return specs


def get_dataflow(name: str, directory: pathlib.Path = DATAFLOWS_DIR) -> DataflowSpec:
    """The dataflow called ``name``, or a :class:`SpecError` listing the ones there are."""
    specs = available_dataflows(directory)
    if name not in specs:
        raise SpecError(f"unknown dataflow {name!r}; available: {', '.join(sorted(specs))}")
    return specs[name]
