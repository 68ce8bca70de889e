"""The Dataflow flex template of talksync: its ``metadata.json``, generated from the options.

One template runs every dataflow: the ``dataflow`` parameter picks it (an enum of the dataflows
shipped in ``core/dataflows/``), and the other parameters are the options of
:class:`~pipelines.options.SyncOptions`. The metadata is generated, never written by hand, so
the template cannot drift from the options: each parameter's help text is the option's
``help``, its label and type come from :data:`~pipelines.options.TEMPLATE_PARAMETERS`, and
``dataflow/metadata.json`` is checked in and kept current by a test
(``talksync template metadata --out dataflow/metadata.json`` regenerates it).

Dataflow requires ``name``, ``label`` and ``helpText`` on every parameter (``gcloud dataflow
flex-template build`` refuses metadata without them); the generator refuses an option that has
no :class:`~pipelines.options.TemplateParameter` for the same reason.
"""

from __future__ import annotations

import argparse
import json
import pathlib
from collections.abc import Iterable
from typing import Any

from core.spec import DataflowSpec, available_dataflows
from pipelines.options import TEMPLATE_PARAMETERS, SyncOptions, parse_boolean

#: the folder of the template's files (Dockerfile, requirements, launcher, metadata)
TEMPLATE_DIR = pathlib.Path(__file__).resolve().parent.parent / "dataflow"
METADATA_PATH = TEMPLATE_DIR / "metadata.json"
TEMPLATE_NAME = "talksync"
TEMPLATE_DESCRIPTION = (
    "Two-way sync of customers, products and orders between a webshop and an ERP (one "
    "talksync dataflow per job). Links live in Firestore; secrets are secretmanager:// or "
    "${ENV} references in the config file, resolved on the workers.")


class TemplateError(ValueError):
    """An option that cannot be described as a template parameter."""


def template_metadata(dataflows: Iterable[DataflowSpec] | None = None) -> dict[str, Any]:
    """The flex template's ``TemplateMetadata`` (the content of ``metadata.json``)."""
    specs = sorted(dataflows if dataflows is not None else available_dataflows().values(),
                   key=lambda spec: spec.name)
    parser = argparse.ArgumentParser(add_help=False)
    SyncOptions._add_argparse_args(parser)
    parameters = [_parameter(action, specs) for action in parser._actions]
    return {"name": TEMPLATE_NAME, "description": TEMPLATE_DESCRIPTION,
            "streaming": False, "parameters": parameters}


def _parameter(action: argparse.Action, specs: list[DataflowSpec]) -> dict[str, Any]:
    name = action.dest
    meta = TEMPLATE_PARAMETERS.get(name)
    if meta is None:
        raise TemplateError(f"option --{name} has no entry in pipelines.options."
                            "TEMPLATE_PARAMETERS; add its label there")
    if not action.help:
        raise TemplateError(f"option --{name} has no help; Dataflow requires a helpText")
    boolean = action.type is parse_boolean
    param_type = meta.param_type or ("ENUM" if action.choices else "BOOLEAN" if boolean
                                     else "NUMBER" if action.type is int else "TEXT")
    parameter = {"name": name, "label": meta.label, "helpText": action.help,
                 "isOptional": meta.optional if meta.optional is not None
                 else not action.required,
                 "paramType": param_type}
    if param_type == "ENUM":
        if name == "dataflow":
            options = [{"value": spec.name, "label": spec.name, "description": spec.title}
                       for spec in specs]
        else:
            options = [{"value": str(choice), "label": str(choice)}
                       for choice in action.choices or ()]
        if not options:
            raise TemplateError(f"option --{name} is an ENUM without values")
        parameter["enumOptions"] = options
    if action.default is not None and parameter["isOptional"]:
        parameter["defaultValue"] = (str(action.default).lower() if boolean
                                     else str(action.default))
    return parameter


def metadata_text(dataflows: Iterable[DataflowSpec] | None = None) -> str:
    """``metadata.json`` as written: indented, keys in a stable order, a final newline."""
    return json.dumps(template_metadata(dataflows), indent=2, ensure_ascii=False) + "\n"


def write_metadata(path: str | pathlib.Path = METADATA_PATH) -> pathlib.Path:
    """Writes ``metadata.json`` for the shipped dataflows to ``path``."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(metadata_text(), encoding="utf-8")
    return path
