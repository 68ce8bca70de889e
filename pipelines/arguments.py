"""Command-line parsing that never guesses.

- An unknown option is a usage error (exit 2) that suggests the option meant (``--plann`` →
  ``--plan``); abbreviations are not accepted (``--ful`` is not ``--full``).
- Beam's pipeline options reach Beam only through ``--beam NAME=VALUE``, and each is checked
  against the options Beam knows, with Beam's own types and choices, before anything runs.
- The run options that tune a sync are declared once, in :class:`~pipelines.options.SyncOptions`
  (also the Dataflow template's parameters); ``talksync run`` takes its flags and defaults
  from there.
"""

from __future__ import annotations

import argparse
import difflib
from collections.abc import Iterable, Sequence
from typing import Any, NoReturn

from pipelines.options import SyncOptions

#: the shortest pause ``--every`` accepts: below it runs would follow each other back to back
MIN_EVERY_SECONDS = 10.0
#: other tools' words for talksync's options, suggested when one of them is given
SYNONYMS = {"--dry-run": "--plan", "--dry_run": "--plan", "--dryrun": "--plan",
            "--noop": "--plan", "--what-if": "--plan", "--full-rescan": "--full",
            "--full_rescan": "--full", "--interval": "--every", "--repeat": "--every",
            "--runner": "--beam runner=NAME"}


class UsageError(Exception):
    """Bad arguments: exit status 2."""


class Parser(argparse.ArgumentParser):
    """An argparse parser whose errors are :class:`UsageError` (one line, with a suggestion),
    without abbreviations."""

    def __init__(self, *args: Any, **kwargs: Any):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        if message.startswith("unrecognized arguments: "):
            unknown = message.split(": ", 1)[1].split()
            raise UsageError(f"{self.prog}: {_unknown_message(unknown, self._option_names())}")
        raise UsageError(f"{self.prog}: {message} (see `{self.prog} --help`)")

    def _option_names(self) -> list[str]:
        return [flag for action in self._actions for flag in action.option_strings]


def _unknown_message(unknown: Sequence[str], known: Sequence[str]) -> str:
    option = next((arg for arg in unknown if arg.startswith("-")), unknown[0])
    name = option.split("=", 1)[0]
    hint = SYNONYMS.get(name) or next(iter(difflib.get_close_matches(name, known, n=1,
                                                                       cutoff=0.6)), None)
    text = f"unknown option {name}" if name.startswith("-") else f"unexpected argument {name!r}"
    if hint:
        text += f"; did you mean {hint}?"
    return text + " (nothing was run)"


class _OnlySome:
    """Passes the ``add_argument`` calls of the named options on to ``target``."""

    def __init__(self, target: Any, names: Iterable[str]):
        self._target = target
        self._names = set(names)

    def add_argument(self, *flags: str, **kwargs: Any) -> None:
        if flags[0].lstrip("-") in self._names:
            self._target.add_argument(*flags, **kwargs)


def add_sync_options(parser: Any, names: Iterable[str]) -> None:
    """Adds the :class:`SyncOptions` options ``names`` to ``parser``, with their help and
    defaults as declared there (one place for both the CLI and the Dataflow template)."""
    SyncOptions._add_argparse_args(_OnlySome(parser, names))


def every_seconds(text: str) -> float:
    """``--every``: a number of seconds, at least :data:`MIN_EVERY_SECONDS`."""
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not seconds >= MIN_EVERY_SECONDS:       # also refuses nan
        raise argparse.ArgumentTypeError(
            f"{text} s is too short: runs every {MIN_EVERY_SECONDS:g} seconds at the most "
            f"often (e.g. --every 300 for every 5 minutes)")
    return seconds


def max_passes(text: str) -> int:
    """``--max_passes``: a whole number of passes, at least 1."""
    try:
        passes = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of passes") from None
    if passes < 1:
        raise argparse.ArgumentTypeError(f"{text}: --all needs at least 1 pass (e.g. "
                                         "--max_passes 3)")
    return passes


# --- Beam's pipeline options ---------------------------------------------------------------

class _Recorder:
    """Collects the ``add_argument`` calls of Beam's option classes."""

    def __init__(self):
        self.calls: list[tuple[tuple, dict]] = []

    def add_argument(self, *flags: str, **kwargs: Any) -> None:
        self.calls.append((flags, kwargs))

    def add_argument_group(self, *_: Any, **__: Any) -> _Recorder:
        return self


def _beam_parser() -> Parser:
    """A parser of every pipeline option Beam declares, except talksync's own."""
    from apache_beam.options.pipeline_options import PipelineOptions
    recorder = _Recorder()
    seen: set[type] = set()
    pending = list(PipelineOptions.__subclasses__())
    while pending:
        cls = pending.pop()
        if cls in seen:
            continue
        seen.add(cls)
        pending.extend(cls.__subclasses__())
        if cls is not SyncOptions and "_add_argparse_args" in vars(cls):
            cls._add_argparse_args(recorder)
    parser = _BeamParser(prog="--beam", add_help=False, conflict_handler="resolve")
    for flags, kwargs in recorder.calls:
        parser.add_argument(*flags, **kwargs)
    return parser


class _BeamParser(Parser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def beam_flags(options: Sequence[str] | None) -> list[str]:
    """``--beam NAME=VALUE`` options as Beam's ``--NAME=VALUE`` flags, each checked against the
    options Beam knows (name, type, choices); a :class:`UsageError` names the one refused."""
    if not options:
        return []
    parser = _beam_parser()
    known = [flag[2:] for flag in parser._option_names() if flag.startswith("--")]
    sync_names = {flag.lstrip("-") for flags, _ in _sync_calls() for flag in flags}
    flags = []
    for option in options:
        name, has_value, value = option.partition("=")
        name = name.strip().lstrip("-")
        if name in sync_names:
            raise UsageError(f"--beam {option}: {name} is a talksync option; give it as "
                             f"--{name} (see `talksync run --help`)")
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
            raise UsageError(f"--beam {option}: Beam has no pipeline option {name!r}"
                             + (f"; did you mean {close[0]}?" if close else "")
                             + " (nothing was run)")
        flag = f"--{name}={value}" if has_value else f"--{name}"
        try:
            parser.parse_args([flag])
        except UsageError as exc:
            raise UsageError(f"--beam {option}: {exc} (nothing was run)") from None
        flags.append(flag)
    return flags


def _sync_calls() -> list[tuple[tuple, dict]]:
    recorder = _Recorder()
    SyncOptions._add_argparse_args(recorder)
    return recorder.calls
