"""Run the sandbox emulators on local ports: the :class:`Sandbox`.

Each emulator gets its own Werkzeug threaded server on 127.0.0.1, in a thread of its own, at
``base_port + offset`` (``base_port=0``: a free ephemeral port each). Their state lives in
``state_dir/<system>.json``; :meth:`Sandbox.start` also writes ``state_dir/talksync.yaml``, a
ready talksync config pointing at them that runs as written: it holds the sandbox's own keys
(:meth:`Sandbox.api_key`) literally. They are fake and open only these local emulators, and
their ``sbx_`` form is what ``pipelines/config.py`` recognises as not a secret (no plain-text
warning); a real config still takes its secrets as ``${ENV_VAR}`` or ``secretmanager://``.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import json
import re
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from sandbox.businesscentral import BusinessCentral
from sandbox.businessnxt import BusinessNxt
from sandbox.customerp import CustomErp
from sandbox.customwebshop import CustomWebshop
from sandbox.emulator import Emulator
from sandbox.exact import ExactOnline


@dataclasses.dataclass(frozen=True)
class SystemEntry:
    """A system the sandbox can run: its port offset from ``base_port`` and its emulator."""

    port_offset: int
    emulator: type[Emulator]


#: Every system the sandbox emulates. Adding one is adding its entry here.
REGISTRY: dict[str, SystemEntry] = {
    "customwebshop": SystemEntry(1, CustomWebshop),
    "customerp": SystemEntry(2, CustomErp),
    "businesscentral": SystemEntry(3, BusinessCentral),
    "businessnxt": SystemEntry(4, BusinessNxt),
    "exact": SystemEntry(5, ExactOnline),
}
#: The systems served when none are named. businesscentral is served on request
#: (``systems=(..., "businesscentral")``) until the default set grows to all of REGISTRY.
SYSTEMS: tuple[str, ...] = ("customwebshop", "customerp")

CONFIG_HEADER = "# Written by `talksync sandbox serve`: a ready config for the sandbox systems.\n"
_KEYS_NOTE = ("# The keys below are the sandbox's own local keys: fake, accepted only by these "
              "emulators on\n# 127.0.0.1, so they are written as they are. A real config takes "
              "its secrets as ${ENV_VAR}\n# or secretmanager:// references.")
_KEY_COMMENT = "# the sandbox's own local key"


class PortInUseError(OSError):
    """A sandbox system's port is taken by another process."""

    def __init__(self, system: str, port: int):
        super().__init__(f"port {port} for the sandbox's {system} is already in use")
        self.system, self.port = system, port


class _QuietRequestHandler(WSGIRequestHandler):
    """Werkzeug's handler without the per-request access log line (errors are still logged)."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


@dataclasses.dataclass
class _Running:
    app: Emulator
    server: BaseWSGIServer
    thread: threading.Thread

    @property
    def port(self) -> int:
        return self.server.port


class Sandbox:
    """The emulators of ``systems``, seeded from ``seed``, persisted under ``state_dir``.

    Usable as a context manager (``with Sandbox(...) as sb:`` starts and stops it).
    """

    def __init__(
        self,
        state_dir: str | Path,
        base_port: int = 8700,
        systems: Iterable[str] = SYSTEMS,
        seed: int = 42,
        options: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        """``options``: keyword arguments of an emulator by system, e.g.
        ``{"businessnxt": {"customer_table": "associate"}}``."""
        self.state_dir = Path(state_dir).resolve()
        self.base_port = base_port
        self.systems = tuple(systems)
        _check_choice(self.systems, base_port)
        self.seed = seed
        self.options = {system: dict(values) for system, values in (options or {}).items()}
        self._running: dict[str, _Running] = {}

    @property
    def config_path(self) -> Path:
        return self.state_dir / "talksync.yaml"

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> Sandbox:
        """Load (or seed) every emulator, serve it, and write ``talksync.yaml``."""
        if self._running:
            raise RuntimeError("sandbox is already running")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        try:
            for system in self.systems:
                self._running[system] = self._serve(system)
        except BaseException:
            self.stop()
            raise
        self._write_config()
        return self

    def stop(self) -> None:
        """Stop serving, then write every emulator's state. Safe to call twice."""
        running, self._running = self._running, {}
        for entry in running.values():
            entry.server.shutdown()
            entry.server.server_close()
            entry.thread.join()
        for entry in running.values():
            entry.app.close()

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    def _serve(self, system: str) -> _Running:
        entry = REGISTRY[system]
        app = entry.emulator(
            api_key=self.api_key(system),
            seed=self.seed,
            state_path=self.state_dir / f"{system}.json",
            **self.options.get(system, {}),
        )
        port = self.base_port + entry.port_offset if self.base_port else 0
        try:
            listener = _listen("127.0.0.1", port)
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise PortInUseError(system, port) from None
            raise
        try:
            # Werkzeug exits the process when it cannot bind, so bind here and hand over the fd.
            server = make_server(
                "127.0.0.1", port, app, threaded=True,
                request_handler=_QuietRequestHandler, fd=listener.fileno(),
            )
        finally:
            listener.close()  # the server holds its own duplicate of the socket
        app.start()
        thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"sandbox-{system}",
            daemon=True,
        )
        thread.start()
        return _Running(app, server, thread)

    def _write_config(self) -> None:
        lines = [
            CONFIG_HEADER.rstrip("\n"),
            _KEYS_NOTE,
            f"link_store: {_yaml_scalar('sqlite:///' + str(self.state_dir / 'links.db'))}",
            f"runs_dir: {_yaml_scalar(str(self.state_dir / 'runs'))}",
            "systems:",
        ]
        for system in self.systems:
            lines += [
                f"  {system}:",
                f"    type: {system}",
                f"    base_url: {_yaml_scalar(self.url(system))}",
            ]
            lines += [f"    {name}: {_yaml_scalar(value)}"
                      for name, value in self._extra_settings(system).items()]
            lines.append(f"    {_secret_setting(system)}: {_yaml_scalar(self.api_key(system))}"
                         f"  {_KEY_COMMENT}")
        self.config_path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    def _extra_settings(self, system: str) -> dict[str, str]:
        """Settings beyond base URL and secret an emulator's connector needs (OAuth: tenant,
        client id, token URL, company)."""
        emulator = self._entry(system).app
        if not hasattr(emulator, "connector_settings"):
            return {}
        return emulator.connector_settings(self.root_url(system))

    # -- where and how to reach the systems -------------------------------------------------

    def _entry(self, system: str) -> _Running:
        try:
            return self._running[system]
        except KeyError:
            raise RuntimeError(f"sandbox system {system!r} is not running") from None

    def root_url(self, system: str) -> str:
        """``http://127.0.0.1:<port>``: where the emulator's control endpoints live."""
        return f"http://127.0.0.1:{self._entry(system).port}"

    def url(self, system: str) -> str:
        """The API base URL, e.g. ``http://127.0.0.1:8701/api/v1``."""
        return self.root_url(system) + REGISTRY[system].emulator.api_prefix

    def api_key(self, system: str) -> str:
        """The API key the emulator accepts: fixed for a system and seed. Its form
        ``sbx_<system>_<24 hex digits>`` marks it as a sandbox key (``pipelines/config.py``)."""
        digest = hashlib.sha256(f"talksync-sandbox:{system}:{self.seed}".encode()).hexdigest()
        return f"sbx_{system}_{digest[:24]}"

    def environ(self) -> dict[str, str]:
        """The sandbox's keys as environment variables, for configs of one's own that take
        them as ``${TALKSYNC_SANDBOX_<SYSTEM>_<SETTING>}`` (the written ``talksync.yaml`` holds
        the keys themselves and needs none)."""
        return {_env_name(system): self.api_key(system) for system in self.systems}

    # -- control endpoints ----------------------------------------------------------------

    def requests(self, system: str) -> dict[str, Any]:
        """``GET /_sandbox/requests``: request count, count per method and the last requests."""
        return self._control(system, "GET", "/_sandbox/requests")

    def clear_requests(self, system: str) -> None:
        self._control(system, "DELETE", "/_sandbox/requests")

    def set_faults(self, system: str, **faults: Any) -> dict[str, Any]:
        """``POST /_sandbox/faults`` with ``faults`` (none: clear all); returns the active
        faults."""
        return self._control(system, "POST", "/_sandbox/faults", faults)

    def put_raw(self, system: str, resource: str, records: list) -> list[str]:
        """``POST /_sandbox/raw/{resource}``: store records unvalidated; returns their keys."""
        return self._control(system, "POST", f"/_sandbox/raw/{resource}", records)["stored"]

    def malformed_rows(self, system: str, *rules: dict[str, Any]) -> None:
        """``POST /_sandbox/malformed-rows``: serve the rows each rule ``match``-es with its
        ``set`` members and without its ``drop`` ones (no rules: off)."""
        self._control(system, "POST", "/_sandbox/malformed-rows", list(rules))

    def reset(self, system: str) -> None:
        """Back to the seed data; request log and faults cleared."""
        self._control(system, "POST", "/_sandbox/reset")

    def _control(self, system: str, method: str, path: str, body: dict[str,
                                                                       Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            self.root_url(system) + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json"} if data is not None else {},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                payload = response.read()
        except urllib.error.HTTPError as error:
            detail = error.read().decode("utf-8", "replace")
            raise ValueError(
                f"{system} {method} {path} failed with {error.code}: {detail}") from None
        return json.loads(payload) if payload else None


def _check_choice(systems: tuple[str, ...], base_port: int) -> None:
    """``ValueError`` naming the fix for an unknown system or a base port whose systems'
    ports would fall outside 1 to 65535 (a usage error, before anything is started)."""
    unknown = [system for system in systems if system not in REGISTRY]
    if unknown:
        raise ValueError(f"unknown sandbox system(s) {', '.join(unknown)}; "
                         f"known: {', '.join(REGISTRY)}")
    top = max((REGISTRY[system].port_offset for system in systems), default=0)
    if base_port and not 0 < base_port <= 65535 - top:
        raise ValueError(f"base port {base_port}: the systems listen on base+1 to base+{top}; "
                         f"choose 0 (free ports) or 1 to {65535 - top}")


def _secret_setting(system: str) -> str:
    """The config setting that holds the system's secret: ``api_key``, or the emulator's own
    (``client_secret`` for OAuth client credentials)."""
    return getattr(REGISTRY[system].emulator, "secret_setting", "api_key")


def _env_name(system: str) -> str:
    return f"TALKSYNC_SANDBOX_{system.upper()}_{_secret_setting(system).upper()}"


def _listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket; ``OSError`` if the port is taken."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, port))
        listener.listen(128)
    except BaseException:
        listener.close()
        raise
    return listener


_PLAIN_YAML = re.compile(r"^[A-Za-z0-9_./:+@-]+$")


def _yaml_scalar(text: str) -> str:
    """``text`` as a YAML scalar: plain when safe, else double-quoted (JSON strings are YAML)."""
    return text if _PLAIN_YAML.match(text) else json.dumps(text, ensure_ascii=False)
