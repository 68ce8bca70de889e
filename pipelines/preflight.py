"""Checks made before a run reads anything, and by ``talksync check``.

A run that would fail on its configuration fails here, in a second and with one line naming
the field and the fix, instead of in the middle of the pipeline after hundreds of records:

1. every system of the run has a known ``type``, an ``http(s)`` URL with a host in
   ``base_url`` and in every ``*_url`` setting, and every ``${ENV}`` / ``secretmanager://``
   reference in its settings resolves (:func:`check_settings`);
2. its connector can be built from those settings (required settings present);
3. one cheap authenticated read per system (:meth:`Connector.probe`): credentials the system
   refuses (401/403, a token endpoint's refusal) are a configuration error naming the setting;
   a system that does not answer fails the run at once, for every pair and dataflow of it.

:data:`OUTCOMES` is the one table from what a probe raised to what it means for the run.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import functools
import re
import time
import urllib.parse
from collections.abc import Callable, Iterable, Sequence

from connectors import SYSTEM_TYPES, connector_for, secrets
from connectors.errors import (
    ApiError,
    ConsentMissingError,
    CredentialsRefusedError,
    PermanentApiError,
    UnreachableError,
)
from core.model import SystemConfig
from pipelines.config import Config, ConfigError
from pipelines.exit_status import EXIT_FAILED, EXIT_OK, EXIT_USAGE, combined

_REFERENCE = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*\}|^secretmanager://")


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What one kind of probe failure means: a status word, the exit status, the message, and
    whether a run still runs the dataflows of that system (their pairs then meet the failure
    one by one: a garbled page stops only the pair that reads it, decision 0011)."""

    status: str
    exit_status: int
    message: str          # formatted with system, settings, url, detail, http
    run_anyway: bool = False


#: what a probe raised -> what it means; the first matching row wins (subclasses first)
OUTCOMES: Sequence[tuple[type[BaseException], Outcome]] = (
    (CredentialsRefusedError, Outcome(
        "refused", EXIT_USAGE,
        "{settings} {was} refused{http}: {detail}; correct {them} in the config or the "
        "environment")),
    (ConsentMissingError, Outcome(
        "no consent", EXIT_USAGE, "systems.{system}: {detail}")),
    (UnreachableError, Outcome(
        "unreachable", EXIT_FAILED,
        "systems.{system} could not be reached at {url}: {detail}")),
    (PermanentApiError, Outcome(
        "rejected", EXIT_USAGE,
        "systems.{system}: the first read was rejected{http}: {detail}; check base_url and "
        "the settings of systems.{system}")),
    (ApiError, Outcome(
        "failing", EXIT_FAILED,
        "systems.{system} answered the check with an error{http}: {detail}",
        run_anyway=True)),
)


@dataclasses.dataclass(frozen=True)
class SystemCheck:
    """The pre-flight result of one system."""

    system: str
    type: str
    url: str
    status: str                 # "ok" or an :data:`OUTCOMES` status
    exit_status: int
    message: str = ""
    seconds: float = 0.0
    run_anyway: bool = True     # a run goes on with the dataflows of this system

    @property
    def ok(self) -> bool:
        return self.exit_status == EXIT_OK


class PreflightError(Exception):
    """A pre-flight check failed: the run must not start. ``exit_status`` is 1 or 2."""

    def __init__(self, checks: Sequence[SystemCheck]):
        failed = [check for check in checks if not check.ok]
        super().__init__("\n".join(check.message for check in failed))
        self.checks = failed
        self.exit_status = combined(check.exit_status for check in failed)


def check_settings(config: Config, system: str) -> SystemConfig:
    """Types, URLs and secret references of ``systems.<system>``; the system's config.

    Raises :class:`ConfigError` naming the field and the fix. Resolving a reference reads the
    environment (or Secret Manager) here, on the machine that starts the run; the value is
    not kept: connectors resolve their settings again where they run.
    """
    where = config.path or "the config"
    settings = config.system(system)
    if settings.type not in SYSTEM_TYPES:
        raise ConfigError(f"{where}: systems.{system}.type: unknown type {settings.type!r}; "
                          f"use one of {', '.join(SYSTEM_TYPES)}")
    urls = {"base_url": settings.base_url,
            **{key: value for key, value in settings.settings.items() if key.endswith("_url")}}
    for key, url in urls.items():
        parsed = urllib.parse.urlsplit(str(url))
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ConfigError(f"{where}: systems.{system}.{key}: {url!r} is not an http(s) URL "
                              f"with a host; write it as https://HOST/PATH")
    for key, value in settings.settings.items():
        if isinstance(value, str) and _REFERENCE.search(value):
            try:
                secrets.resolve(value)
            except secrets.SecretError as exc:
                raise ConfigError(f"{where}: systems.{system}.{key}: {exc}") from None
    return settings


def build_connector(config: Config, system: str):
    """The connector of ``systems.<system>`` after :func:`check_settings`; a setting it
    refuses is a :class:`ConfigError` naming the system."""
    settings = check_settings(config, system)
    try:
        return connector_for(settings)
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{config.path or 'the config'}: {exc}") from None


def _probe(connector, settings: SystemConfig) -> SystemCheck:
    """One cheap authenticated read through ``connector`` (the caller closes it)."""
    started = time.monotonic()
    try:
        connector.probe()
    except ApiError as exc:
        return _failed(settings, connector.credential_settings, exc,
                       time.monotonic() - started)
    return SystemCheck(settings.name, settings.type, settings.base_url, "ok", EXIT_OK,
                       seconds=time.monotonic() - started)


def _failed(settings: SystemConfig, credentials: Sequence[str], exc: ApiError,
            seconds: float) -> SystemCheck:
    outcome = next(outcome for kind, outcome in OUTCOMES if isinstance(exc, kind))
    names = [f"systems.{settings.name}.{name}" for name in credentials
             if name in settings.settings] or [f"the credentials of systems.{settings.name}"]
    message = outcome.message.format(
        system=settings.name, url=settings.base_url, detail=exc.message,
        settings=" / ".join(names), was="was" if len(names) == 1 else "were",
        them="it" if len(names) == 1 else "them",
        http=f" (HTTP {exc.status})" if exc.status else "")
    return SystemCheck(settings.name, settings.type, settings.base_url, outcome.status,
                       outcome.exit_status, message, seconds, outcome.run_anyway)


def systems_of(specs: Iterable) -> list[str]:
    """The systems the dataflows ``specs`` read and write, each once, in order."""
    names: list[str] = []
    for spec in specs:
        for side in (spec.source, spec.target):
            if side.system not in names:
                names.append(side.system)
    return names


def preflight(config: Config, systems: Iterable[str]) -> list[SystemCheck]:
    """Checks and probes every system once. Raises :class:`ConfigError` on a bad setting and
    :class:`PreflightError` when a system refuses the credentials (exit 2: nothing runs);
    returns the checks: a system that cannot be reached now is not ``run_anyway`` (exit 1:
    the dataflows that need it are not run, the others are)."""
    # every system's settings are checked (its connector built) before any request is made
    with contextlib.ExitStack() as opened:
        connectors = {system: opened.enter_context(build_connector(config, system))
                      for system in systems}
        checks = _in_parallel([functools.partial(_probe, connector, config.system(system))
                               for system, connector in connectors.items()])
    if any(check.exit_status == EXIT_USAGE for check in checks):
        raise PreflightError(checks)
    return checks


def _in_parallel(probes: Sequence[Callable[[], SystemCheck]]) -> list[SystemCheck]:
    """Every probe at once: systems that do not answer cost the run one timeout budget, not
    one per system. Results in the order of ``probes``."""
    if len(probes) <= 1:
        return [probe() for probe in probes]
    with concurrent.futures.ThreadPoolExecutor(len(probes)) as pool:
        return list(pool.map(lambda probe: probe(), probes))


def check_link_store(link_store: str) -> SystemCheck:
    """Whether the link store opens and answers a read (``talksync check``)."""
    from connectors.stores import open_link_store
    kind = link_store.split(":", 1)[0]
    started = time.monotonic()
    try:
        with open_link_store(link_store) as store:
            store.read_state("talksync/check")
    except Exception as exc:  # each backend fails its own way: report it, do not crash
        return SystemCheck("link store", kind, link_store, "failing", EXIT_FAILED,
                           f"link_store {link_store}: {type(exc).__name__}: {exc}",
                           time.monotonic() - started)
    return SystemCheck("link store", kind, link_store, "ok", EXIT_OK,
                       seconds=time.monotonic() - started)


def check_all(config: Config) -> list[SystemCheck]:
    """``talksync check``: every system of the config (settings, secrets, one authenticated
    read, stored consent tokens) and the link store; changes nothing in any system."""
    checks = _in_parallel([functools.partial(_check_system, config, system)
                           for system in config.systems])
    checks.append(check_link_store(config.link_store))
    return checks


def _check_system(config: Config, system: str) -> SystemCheck:
    settings = config.systems[system]
    try:
        connector = build_connector(config, system)
    except ConfigError as exc:
        return SystemCheck(system, settings.type, settings.base_url, "config", EXIT_USAGE,
                           str(exc))
    with connector:
        check = _probe(connector, config.system(system))
        notes = [connector.check_details(), connector.stored_credentials()] if check.ok else []
    if any(notes):
        check = dataclasses.replace(check, message="; ".join([check.url, *filter(None, notes)]))
    return check


def describe(checks: Sequence[SystemCheck]) -> str:
    """The ``talksync check`` table: one row per system and one for the link store."""
    rows = [("", "type", "status", "time", "detail")]
    rows += [(check.system, check.type, check.status, f"{check.seconds:.1f} s",
              check.message or check.url) for check in checks]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False))
                     + "  " + row[4] for row in rows)
