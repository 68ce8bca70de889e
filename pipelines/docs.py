"""Dataflow documents generated from the specs (``talksync docs``).

Each document has the structure of the seed documents in ``shared/seeds/``: a title, an
introduction, and per pair the sync promise and the property table (source property, target
property, target data type), here filled from the executable spec, so the documents can never
disagree with what runs.
"""

from __future__ import annotations

import datetime
import pathlib

from core.spec import TYPES, DataflowSpec, DocumentSpec, PairSpec, PropertySpec

_DIRECTION_NOTE = {"to_target": "(one way: {s} → {t})", "to_source": "(one way: {t} → {s})"}
#: how a business rule (core.rules) reads in a document's data type column
_RULE_NOTE = {"minimum": "at least {}", "greater_than": "above {}", "maximum": "at most {}",
              "less_than": "below {}", "pattern": "matches ``{}``", "allowed": "one of {}"}


def _heading(text: str, char: str, overline: bool = False) -> str:
    rule = char * len(text)
    return f"{rule}\n{text}\n{rule}\n" if overline else f"{text}\n{rule}\n"


def _type_label(prop: PropertySpec, spec: DataflowSpec, target_label: str) -> str:
    if prop.type == "reference":
        ref = spec.pair(prop.pair)
        return f"reference to {target_label} {ref.target.label}"
    label = TYPES[prop.type]
    if prop.max_length:
        label += f" (max {prop.max_length})"
    return label


def _rows(spec: DataflowSpec, pair: PairSpec, properties, target_label: str,
          source_prefix: str = "", target_prefix: str = ""):
    for prop in properties:
        source = source_prefix + prop.source
        target = target_prefix + prop.target
        notes = []
        if prop.direction != "both":
            notes.append(_DIRECTION_NOTE[prop.direction].format(s=spec.source.label,
                                                                 t=target_label))
        if prop.target in pair.match and not target_prefix:
            notes.append("match key")
        if prop.immutable:
            notes.append("set on create")
        if prop.required:
            notes.append("required")
        notes.extend(_RULE_NOTE[rule.kind].format(
            ", ".join(map(str, rule.limit)) if rule.kind == "allowed" else rule.limit)
            for rule in prop.rules)
        type_label = _type_label(prop, spec, target_label)
        if notes:
            type_label += " — " + ", ".join(notes)
        yield source, target, type_label
        if prop.type == "lines":
            yield from _rows(spec, pair, prop.lines, target_label, f"{prop.source}[].",
                             f"{prop.target}[].")


def render_dataflow(spec: DataflowSpec, generated: datetime.datetime | None = None,
                    document: DocumentSpec | None = None) -> str:
    """The RST document of one dataflow, under the labels of ``document`` when given."""
    generated = generated or datetime.datetime.now(datetime.UTC)
    if document is None:
        document = DocumentSpec(name=spec.name, title=f"{spec.source.label} to "
                                f"{spec.target.label}", source_label=spec.source.label,
                                target_label=spec.target.label)
    title = f"{document.title} Dataflow"
    out = [_heading(title, "=", overline=True), f"Generated: {generated:%Y-%m-%d %H:%M:%S}\n",
           _heading("Introduction", "-"),
           f"This document describes the talksync dataflow ``{spec.name}`` between "
           f"{document.source_label} and {document.target_label}. It is generated from "
           f"``core/dataflows/{spec.name}.yaml``, the specification talksync runs, so the "
           "tables below are exactly what is synchronized. "
           + (spec.description.strip() + " " if spec.description else "")
           + "Links are made by the match keys marked below; after that, edits made in either "
           "system reach the other, and when both sides change the same property the pair's "
           "conflict policy decides. What a deletion in one system does to the linked "
           "record in the other is the pair's delete policy (docs/deletes.md).\n"]
    for pair in spec.pairs:
        source_label, target_label = document.labels(pair.name)
        s = f"{source_label} {pair.source.label}"
        t = f"{target_label} {pair.target.label}"
        out.append("\n" + _heading(f"{s} to {t}", "-"))
        out.append(f"Every {s} will be synchronized with a {t}.\n")
        out.append(f"Once a link between a {s} and a {t} is established, it will keep in sync "
                   "between the two systems, regardless of where it is edited.\n")
        policy = {"latest": "the most recent change wins",
                  "source": f"{source_label} wins", "target": f"{target_label} wins"}
        out.append(f"Match keys: {', '.join(pair.match)} (tried in that order). "
                   f"Conflicts: {policy[pair.conflict]}. "
                   f"Deletes: {_DELETES[pair.delete]}.\n")
        out.append(f"The following properties are synchronized between a {s} and a {t}:\n")
        out.append(".. list-table::\n   :header-rows: 1\n")
        out.append(f"   * - {s} Property\n     - {t} Property\n"
                   f"     - {target_label} Data Type\n")
        for source, target, type_label in _rows(spec, pair, pair.properties, target_label):
            out.append(f"   * - {source}\n     - {target}\n     - {type_label}\n")
    return "\n".join(out)


#: each delete policy in the words of the documents (docs/deletes.md)
_DELETES = {"ignore": "not propagated; the other record is kept (policy ignore)",
            "unlink": "the link is removed and both records kept (policy unlink)",
            "propagate": "the other record is deleted its system's way (policy propagate)"}


def write_documents(specs, directory: pathlib.Path,
                    generated: datetime.datetime | None = None) -> list[pathlib.Path]:
    """Writes ``<dataflow>.rst`` for each spec, and one file per extra document it declares,
    into ``directory``; returns the paths."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for spec in specs:
        for document in (None, *spec.documents):
            path = directory / f"{document.name if document else spec.name}.rst"
            path.write_text(render_dataflow(spec, generated, document), encoding="utf-8")
            paths.append(path)
    return paths
