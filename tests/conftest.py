"""Shared fixtures: a running sandbox, and running talksync against it the way a user does."""

from __future__ import annotations

import collections
import dataclasses
import decimal
import json
import pathlib
import shutil
import socket

import pytest
import requests
import yaml

from pipelines import cli
from pipelines.sync_pipeline import OUTCOME_COUNTERS, READ_COUNTERS, unaccounted


def pytest_terminal_summary(terminalreporter, config):
    """The random order's seed at the end of every run, also under ``-q`` (which hides
    pytest-randomly's header line), so a failing order can be run again."""
    seed = getattr(config.option, "randomly_seed", None)
    if config.pluginmanager.has_plugin("randomly") and isinstance(seed, int):
        terminalreporter.write_line(f"tests ran in random order; run this order again with "
                                    f"-p randomly --randomly-seed={seed}")


@pytest.fixture(autouse=True)
def _systems_asked_afresh():
    """Every test asks every system afresh: a system one test left unreachable (remembered by
    the process, connectors/waiting.py) must not fail another test's requests at once."""
    from connectors.waiting import forget_unreachable_systems
    forget_unreachable_systems()
    yield
    forget_unreachable_systems()


@pytest.fixture
def refused_port() -> int:
    """A local port where a connection is refused for the whole test: bound by a socket that
    never listens. A port probed free and released could be taken meanwhile by another
    process (the other test worker's server), and the test would then talk to it."""
    with socket.socket() as reserved:
        reserved.bind(("127.0.0.1", 0))
        yield reserved.getsockname()[1]


def group_by(rows, key, fold=False) -> dict:
    """Rows grouped by the value of ``key`` (text lower-cased with ``fold``): match-key checks."""
    out = collections.defaultdict(list)
    for row in rows:
        value = row.get(key)
        out[value.lower() if (fold and isinstance(value, str)) else value].append(row)
    return out


def assert_counts_add_up(section: dict) -> None:
    """Every record read is counted under exactly one outcome, in every pair of every run."""
    for pair, counts in section.get("pairs", {}).items():
        read = {name: counts[name] for name in READ_COUNTERS}
        outcomes = {name: counts[name] for name in OUTCOME_COUNTERS if counts[name]}
        assert unaccounted(counts) == 0, f"{pair}: {read} read, but outcomes {outcomes}"


class SyncHarness:
    """A sandbox plus helpers to run `talksync run` in-process and to poke the systems' APIs."""

    def __init__(self, sandbox, state: pathlib.Path):
        self.sandbox = sandbox
        self.state = state
        self.config = str(sandbox.config_path)
        self.runs = 0

    # --- running --------------------------------------------------------------------------
    def run(self, *args: str, dataflow: str = "customerp-customwebshop") -> tuple[int, dict]:
        """Runs `talksync run DATAFLOW --config … ARGS`; returns (exit status, report section)."""
        self.runs += 1
        report = self.state / f"report-{self.runs}.json"
        status = cli.main(["run", dataflow, "--config", self.config, "--report", str(report),
                           *args])
        sections = json.loads(report.read_text())["dataflows"] if report.exists() else []
        for section in sections:
            assert_counts_add_up(section)
        return status, (sections[0] if sections else {})

    def configure(self, system: str, **settings) -> None:
        """Adds settings to one system of the config (e.g. ``max_retries=1`` for fault tests)."""
        path = pathlib.Path(self.config)
        config = yaml.safe_load(path.read_text())
        config["systems"][system].update(settings)
        path.write_text(yaml.safe_dump(config, sort_keys=False))

    # --- the systems ------------------------------------------------------------------------
    def _session(self, system: str) -> requests.Session:
        session = requests.Session()
        key = self.sandbox.api_key(system)
        if system == "customwebshop":
            session.headers["X-Api-Key"] = key
        else:
            session.headers["Authorization"] = f"ApiKey {key}"
        return session

    def list_all(self, system: str, resource: str) -> list[dict]:
        """Every record of a resource, through the system's own list endpoint."""
        session, url = self._session(system), f"{self.sandbox.url(system)}/{resource}"
        rows: list[dict] = []
        if system == "customwebshop":
            token = None
            while True:
                params = {"page_size": 500, **({"page_token": token} if token else {})}
                response = session.get(url, params=params, timeout=30)
                assert response.status_code == 200, response.text
                body = response.json()
                rows += body["data"]
                token = body["next_page_token"]
                if not token:
                    return rows
        offset = 0
        while True:
            response = session.get(url, params={"offset": offset, "limit": 1000}, timeout=30)
            assert response.status_code == 200, response.text
            body = response.json()
            rows += body["items"]
            offset += len(body["items"])
            if offset >= body["total"] or not body["items"]:
                return rows

    def shop_all(self, resource: str) -> list[dict]:
        """Every live (not soft-deleted) webshop record of ``resource``."""
        return [row for row in self.list_all("customwebshop", resource) if not row["deleted"]]

    def get(self, system: str, resource: str, key: str) -> requests.Response:
        return self._session(system).get(f"{self.sandbox.url(system)}/{resource}/{key}",
                                         timeout=30)

    def patch_shop(self, resource: str, key: str, body: dict) -> dict:
        response = self._session("customwebshop").patch(
            f"{self.sandbox.url('customwebshop')}/{resource}/{key}", json=body, timeout=30)
        assert response.status_code == 200, response.text
        return response.json()

    def put_erp(self, resource: str, key: str, body: dict) -> dict:
        """PUT to the ERP; Decimal values go on the wire as JSON numbers, as the ERP wants."""
        response = self._session("customerp").put(
            f"{self.sandbox.url('customerp')}/{resource}/{key}", data=_erp_json(body),
            headers={"Content-Type": "application/json"}, timeout=30)
        assert response.status_code == 200, response.text
        return response.json()

    def post(self, system: str, resource: str, body: dict) -> dict:
        response = self._session(system).post(f"{self.sandbox.url(system)}/{resource}",
                                              json=body, timeout=30)
        assert response.status_code == 201, response.text
        return response.json()

    def writes(self, system: str) -> dict:
        """Requests by method that change state, since the log was last cleared."""
        by_method = self.sandbox.requests(system)["by_method"]
        return {m: n for m, n in by_method.items() if m in ("POST", "PATCH", "PUT", "DELETE")}

    def clear_logs(self) -> None:
        for system in ("customwebshop", "customerp"):
            self.sandbox.clear_requests(system)


def _erp_json(body: dict) -> str:
    class _Numbers(json.JSONEncoder):
        def default(self, o):
            if isinstance(o, decimal.Decimal):
                return float(o)
            return super().default(o)
    return json.dumps(body, cls=_Numbers)


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    """A fresh sandbox of the custom systems (seed 42), their API keys exported."""
    from sandbox.server import Sandbox
    with Sandbox(state_dir=tmp_path / "sandbox", base_port=0,
                 systems=("customwebshop", "customerp"), seed=42) as running:
        for name, value in running.environ().items():
            monkeypatch.setenv(name, value)
        yield running


@pytest.fixture
def harness(sandbox, tmp_path):
    """The sandbox, a fresh link store, and `talksync run` against them."""
    return SyncHarness(sandbox, tmp_path)


@pytest.fixture(scope="session")
def synced_template(tmp_path_factory) -> pathlib.Path:
    """The custom systems' sandbox state and link store right after a first sync of
    customerp-customwebshop (seed 42), made once per test session (see ``synced_harness``)."""
    from sandbox.server import Sandbox
    state = tmp_path_factory.mktemp("synced-template")
    with Sandbox(state_dir=state / "sandbox", base_port=0,
                 systems=("customwebshop", "customerp"), seed=42) as running:
        status, _ = SyncHarness(running, state).run()
        assert status == 0, "the first sync of the template failed"
    return state / "sandbox"


@pytest.fixture
def synced_harness(synced_template, tmp_path):
    """A harness whose systems and link store are already in sync after a first run (a copy of
    ``synced_template``, served on fresh ports): for tests of what happens after the first sync,
    without repeating it. Its watermarks are older than the read overlap by the time a test
    runs, as in production."""
    from sandbox.server import Sandbox
    shutil.copytree(synced_template, tmp_path / "sandbox")
    with Sandbox(state_dir=tmp_path / "sandbox", base_port=0,
                 systems=("customwebshop", "customerp"), seed=42) as running:
        yield SyncHarness(running, tmp_path)


@pytest.fixture
def sandbox_of(tmp_path, monkeypatch):
    """A factory of fresh sandboxes (seed 42): ``sandbox_of("customwebshop", "businessnxt")``
    starts those systems (``options=``: emulator arguments by system), exports their secrets
    and stops them after the test."""
    from sandbox.server import Sandbox
    started = []

    def start(*systems: str, options=None):
        running = Sandbox(state_dir=tmp_path / f"sandbox-{len(started)}", base_port=0,
                          systems=systems, seed=42, options=options).start()
        started.append(running)
        for name, value in running.environ().items():
            monkeypatch.setenv(name, value)
        return running

    yield start
    for running in started:
        running.stop()


@pytest.fixture
def delete_policy(monkeypatch):
    """``delete_policy("propagate", dataflow)``: the shipped dataflow with that delete policy on
    every pair (the seeds keep the safe default, ``ignore``; docs/deletes.md)."""
    from core import spec as spec_module
    from pipelines import run_driver
    shipped = spec_module.available_dataflows

    def use(policy: str, dataflow: str = "customerp-customwebshop") -> None:
        def patched(directory=spec_module.DATAFLOWS_DIR):
            specs = shipped(directory)
            flow = specs[dataflow]
            specs[dataflow] = dataclasses.replace(flow, pairs=tuple(
                dataclasses.replace(pair, delete=policy) for pair in flow.pairs))
            return specs
        monkeypatch.setattr(spec_module, "available_dataflows", patched)
        monkeypatch.setattr(run_driver, "available_dataflows", patched)
    return use
