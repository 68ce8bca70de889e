"""Pipeline options of a sync run (``talksync run`` passes them; Dataflow templates too).

The flex template's ``metadata.json`` is generated from these options
(:mod:`pipelines.template`): each option's help is the parameter's help text, and
:data:`TEMPLATE_PARAMETERS` adds what argparse has no place for (a label, a parameter type).
Option values arrive from the template as ``--name=value`` strings, so a boolean option also
accepts ``--name=true|false``.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Mapping

from apache_beam.options.pipeline_options import PipelineOptions

from transforms.breaker import DEFAULT_MAX_DELETES, DEFAULT_MAX_UPDATES
from transforms.runlock import DEFAULT_TTL_MINUTES

#: The defaults of the options that a run's settings (``RunSettings``) repeat: both read them
#: here. The circuit breaker and the run lock own theirs, as their transforms need them.
DEFAULT_CONFIG = "talksync.yaml"
DEFAULT_MODE = "sync"
DEFAULT_READ_OVERLAP_SECONDS = 60
DEFAULT_MAX_UPDATES_PER_PAIR = DEFAULT_MAX_UPDATES
DEFAULT_MAX_DELETES_PER_PAIR = DEFAULT_MAX_DELETES
DEFAULT_RUN_LOCK_TTL_MINUTES = DEFAULT_TTL_MINUTES
#: passes ``talksync run --all`` makes at most until one writes nothing (an option of the
#: command only: a Dataflow job runs one dataflow, one pass)
DEFAULT_MAX_PASSES = 5
DEFAULT_MISSING_REFERENCE_RUNS = 3


@dataclasses.dataclass(frozen=True)
class TemplateParameter:
    """How an option appears in the Dataflow flex template (``ParameterMetadata``).

    ``param_type`` is a Dataflow ``paramType``; None infers it from the option (choices: ENUM,
    a boolean: BOOLEAN, an int: NUMBER, else TEXT). ``optional`` None: optional unless the
    option is required.
    """

    label: str
    param_type: str | None = None
    optional: bool | None = None


#: the template parameter of every :class:`SyncOptions` option, by option name
TEMPLATE_PARAMETERS: Mapping[str, TemplateParameter] = {
    "dataflow": TemplateParameter("Dataflow", param_type="ENUM", optional=False),
    "config": TemplateParameter("Systems config (gs:// path)", param_type="GCS_READ_FILE",
                                optional=False),
    "link_store": TemplateParameter("Link store URL (firestore://PROJECT[/DATABASE])"),
    "mode": TemplateParameter("Mode (sync or plan)"),
    "full_rescan": TemplateParameter("Full rescan"),
    "pairs": TemplateParameter("Pairs to run"),
    "read_overlap_seconds": TemplateParameter("Read overlap (seconds)"),
    "run_id": TemplateParameter("Run id"),
    "runs_dir": TemplateParameter("Run files folder (gs:// path)",
                                  param_type="GCS_WRITE_FOLDER"),
    "max_updates_per_pair": TemplateParameter("Mass-change limit (updates per pair)"),
    "max_deletes_per_pair": TemplateParameter("Mass-delete limit (deletes per pair)"),
    "confirm_mass_changes": TemplateParameter("Confirm mass changes"),
    "run_lock_ttl_minutes": TemplateParameter("Run lock lifetime (minutes)"),
    "break_run_lock": TemplateParameter("Break the run lock"),
    "missing_reference_runs": TemplateParameter("Runs to retry a reference to nothing"),
}


def parse_boolean(value: str | bool) -> bool:
    """``true``/``false`` (and yes/no, 1/0) as a bool: how templates pass boolean options."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "yes", "1"):
        return True
    if text in ("false", "no", "0"):
        return False
    raise ValueError(f"expected true or false, not {value!r}")


def _at_least_one(value: str | int) -> int:
    """A whole number of at least 1 (argparse ``type``)."""
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = 0
    if number < 1 or str(number) != str(value).strip():
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, not {value!r}")
    return number


class SyncOptions(PipelineOptions):
    """What to sync and how: the dataflow, the systems config, the link store, the mode."""

    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument(
            "--dataflow", required=False,
            help="Name of the dataflow to run, e.g. customerp-customwebshop "
                 "(see `talksync dataflows`).")
        parser.add_argument(
            "--config", default=DEFAULT_CONFIG,
            help="Path of the systems config (link store, base URLs, credential references), "
                 f"a local path or gs://BUCKET/talksync.yaml. Default: {DEFAULT_CONFIG}.")
        parser.add_argument(
            "--link_store", default=None,
            help="Link store URL, overriding the config's link_store: "
                 "firestore://PROJECT[/DATABASE] on Dataflow, sqlite:///PATH for local runs.")
        parser.add_argument(
            "--mode", default=DEFAULT_MODE, choices=("sync", "plan"),
            help="sync: read, plan and write. plan: read and plan only, write nothing. "
                 f"Default: {DEFAULT_MODE}.")
        parser.add_argument(
            "--full_rescan", default=False, nargs="?", const=True, type=parse_boolean,
            help="Read every entity instead of only those changed since the last run "
                 "(--full_rescan or --full_rescan=true). Default: false.")
        parser.add_argument(
            "--pairs", default=None,
            help="Comma-separated pair names to run (default: every pair of the dataflow).")
        parser.add_argument(
            "--read_overlap_seconds", default=DEFAULT_READ_OVERLAP_SECONDS, type=int,
            help="How far before the last watermark an incremental read starts, to catch "
                 "writes that committed out of timestamp order. "
                 f"Default: {DEFAULT_READ_OVERLAP_SECONDS}.")
        parser.add_argument(
            "--run_id", default=None,
            help="Identifier of this run (default: derived from the start time).")
        parser.add_argument(
            "--runs_dir", default=None,
            help="Folder (local or gs://) for run files: dead letters, conflicts, plan, "
                 "report. Default: the config's runs_dir.")
        parser.add_argument(
            "--max_updates_per_pair", default=DEFAULT_MAX_UPDATES_PER_PAIR, type=int,
            help="Circuit breaker: a pair that plans more updates than this writes nothing "
                 "and the run stops with a message, unless --confirm_mass_changes is given. "
                 f"Default: {DEFAULT_MAX_UPDATES_PER_PAIR}.")
        parser.add_argument(
            "--max_deletes_per_pair", default=DEFAULT_MAX_DELETES_PER_PAIR, type=int,
            help="Circuit breaker for deletes: a pair that plans more deletes and unlinks "
                 "(delete policies propagate and unlink, docs/deletes.md) than this writes "
                 "nothing, unless --confirm_mass_changes is given. "
                 f"Default: {DEFAULT_MAX_DELETES_PER_PAIR}.")
        parser.add_argument(
            "--confirm_mass_changes", default=False, nargs="?", const=True, type=parse_boolean,
            help="Write the updates and deletes of pairs over --max_updates_per_pair or "
                 "--max_deletes_per_pair (after checking the held run's report). "
                 "Default: false.")
        parser.add_argument(
            "--run_lock_ttl_minutes", default=DEFAULT_RUN_LOCK_TTL_MINUTES, type=int,
            help="Lifetime of the dataflow's run lock, which keeps a second run of the same "
                 "dataflow from starting; a waiting driver renews it, so set it above the "
                 f"longest Dataflow job. Default: {DEFAULT_RUN_LOCK_TTL_MINUTES}.")
        parser.add_argument(
            "--break_run_lock", default=False, nargs="?", const=True, type=parse_boolean,
            help="Take the run lock from a run that is known to be dead (its job failed or "
                 "its machine is gone). Default: false.")
        parser.add_argument(
            "--missing_reference_runs", default=DEFAULT_MISSING_REFERENCE_RUNS,
            type=_at_least_one,
            help="How many runs a record whose reference names a record that exists in "
                 "neither system (an order of a customer that does not exist) is retried; "
                 "then its dead letter is kept as permanent and the record is not read again "
                 f"until it changes. Default: {DEFAULT_MISSING_REFERENCE_RUNS}.")
