"""The systems config (``talksync.yaml``): where the link store is and how to reach each system.

::

    link_store: sqlite:///.talksync/links.db
    runs_dir: .talksync/runs
    systems:
      customwebshop:
        type: customwebshop
        base_url: https://shop.example.com/api/v1
        api_key: ${SHOP_API_KEY}

Secrets are never written in the file: a value is ``${ENV_VAR}`` (read from the environment by
the connector, on the machine that makes the calls) or a ``secretmanager://`` reference. A
plain-text value for a secret setting is accepted with a warning, given once per setting per
process however often the config is loaded. The sandbox's own keys (``sbx_<system>_<24 hex
digits>``, fake and local) are not secrets: the config ``talksync sandbox serve`` writes holds
them as they are, without a warning.
"""

from __future__ import annotations

import dataclasses
import logging
import pathlib
import posixpath
import re
from collections.abc import Mapping
from typing import Any

import yaml
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from core.model import SystemConfig

_LOG = logging.getLogger(__name__)

DEFAULT_LINK_STORE = "sqlite:///.talksync/links.db"
DEFAULT_RUNS_DIR = ".talksync/runs"
_TOP_KEYS = {"link_store", "runs_dir", "audit_dir", "systems"}
_SYSTEM_KEYS = {"type", "base_url"}
_SECRET_SETTING = re.compile(r"(key|secret|password|token)", re.IGNORECASE)
_REFERENCE = re.compile(r"^(\$\{[A-Za-z_][A-Za-z0-9_]*\}|secretmanager://.+)$")
#: The sandbox's own keys (``sandbox/server.py`` ``Sandbox.api_key``): fake, accepted only by the
#: local emulators, so the config ``talksync sandbox serve`` writes holds them as they are.
_SANDBOX_KEY = re.compile(r"^sbx_[a-z]+_[0-9a-f]{24}$")


class ConfigError(ValueError):
    """A config that cannot be used; the message names the file, the field and the fix."""


@dataclasses.dataclass(frozen=True)
class Config:
    link_store: str
    runs_dir: str
    systems: Mapping[str, SystemConfig]
    path: str | None = None
    audit_dir: str | None = None

    def audit_location(self, runs_dir: str | None = None) -> str:
        """Where the audit log goes: ``audit_dir``, else next to the link store's data (the
        SQLite file's folder), else next to the runs folder (``runs_dir`` when a run overrides
        the config's) (docs/audit.md)."""
        if self.audit_dir:
            return self.audit_dir
        if self.link_store.startswith("sqlite:///"):
            folder = posixpath.dirname(self.link_store[len("sqlite:///"):])
            return posixpath.join(folder or ".", "audit")
        parent = posixpath.dirname((runs_dir or self.runs_dir).rstrip("/"))
        return posixpath.join(parent or ".", "audit")

    def system(self, name: str) -> SystemConfig:
        """The system ``name``, with this config's link store as its ``state_store``."""
        if name not in self.systems:
            where = self.path or "the config"
            raise ConfigError(
                f"{where}: systems.{name} is missing; add it with its type, base_url and "
                f"credentials (systems configured: {', '.join(sorted(self.systems)) or 'none'})")
        return dataclasses.replace(self.systems[name], state_store=self.link_store)


def parse_config(data: Any, path: str = "<config>") -> Config:
    """Validate a parsed config document."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path}: expected a mapping with link_store and systems")
    unknown = sorted(set(data) - _TOP_KEYS)
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {', '.join(unknown)}; "
                          f"allowed: {', '.join(sorted(_TOP_KEYS))}")
    systems_raw = data.get("systems") or {}
    if not isinstance(systems_raw, Mapping):
        raise ConfigError(f"{path}: systems: expected a mapping of system name to settings")
    systems = {}
    for name, raw in systems_raw.items():
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{path}: systems.{name}: expected a mapping of settings")
        for key in sorted(_SYSTEM_KEYS):
            if not raw.get(key):
                raise ConfigError(f"{path}: systems.{name}.{key} is missing")
        base_url = str(raw["base_url"])
        if not re.match(r"^https?://", base_url):
            raise ConfigError(f"{path}: systems.{name}.base_url: {base_url!r} is not an "
                              "http(s) URL")
        settings = {k: v for k, v in raw.items() if k not in _SYSTEM_KEYS}
        for key, value in settings.items():
            if (_SECRET_SETTING.search(key) and not key.endswith("_url")
                    and isinstance(value, str) and not _REFERENCE.match(value)
                    and not _SANDBOX_KEY.match(value)):
                _warn_plain_text_secret(path, str(name), key)
        systems[str(name)] = SystemConfig(name=str(name), type=str(raw["type"]),
                                          base_url=base_url.rstrip("/"), settings=settings)
    return Config(link_store=str(data.get("link_store") or DEFAULT_LINK_STORE),
                  runs_dir=str(data.get("runs_dir") or DEFAULT_RUNS_DIR),
                  systems=systems, path=path,
                  audit_dir=str(data["audit_dir"]) if data.get("audit_dir") else None)


#: The (config, system, setting) triples already warned about in this process.
_WARNED_PLAIN_TEXT: set[tuple[str, str, str]] = set()


def _warn_plain_text_secret(path: str, system: str, key: str) -> None:
    """Warn once per setting per process: a process may load a config several times (the demo's
    two runs, a test session's many), and the same warning repeated reads like several
    problems."""
    if (path, system, key) in _WARNED_PLAIN_TEXT:
        return
    _WARNED_PLAIN_TEXT.add((path, system, key))
    _LOG.warning("%s: systems.%s.%s holds a secret in plain text; use ${ENV_VAR} "
                 "or secretmanager:// instead", path, system, key)


def load_config(path: str | pathlib.Path) -> Config:
    """Read and validate a config file: a local path, or any path Beam's ``FileSystems``
    opens (``gs://BUCKET/talksync.yaml`` for a Dataflow template)."""
    path = str(path)
    if not FileSystems.exists(path):
        raise ConfigError(f"{path}: no such config file; pass --config FILE "
                          "(`talksync sandbox serve` writes one for the sandbox)")
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
        text = handle.read().decode("utf-8")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    return parse_config(data, path)
