"""Shared fixtures: a running sandbox, and running talksync against it the way a user does."""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import json
import pathlib
import shutil
import socket
from collections.abc import Iterator

import pytest
import requests
import yaml

from pipelines import cli
from pipelines.sync_pipeline import OUTCOME_COUNTERS, READ_COUNTERS, unaccounted
from sandbox.people import People


def pytest_terminal_summary(terminalreporter, config):
    """The random order's seed at the end of every run, also under ``-q`` (which hides
    pytest-randomly's header line), so a failing order can be run again."""
    seed = getattr(config.option, "randomly_seed", None)
    if config.pluginmanager.has_plugin("randomly") and isinstance(seed, int):
        terminalreporter.write_line(f"tests ran in random order; run this order again with "
                                    f"-p randomly --randomly-seed={seed}")


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "long_module: a module of minutes (`pytestmark`), started first under xdist")


def pytest_collection_modifyitems(items):
    """The modules marked ``long_module`` first, each kept whole and in the shuffled order
    pytest-randomly gave them (its hook wraps this one and shuffles before it), the rest after
    them as shuffled. `make test` hands modules to its two workers in collection order
    (``--dist loadfile --no-loadscope-reorder``): a module of minutes started last would keep
    one worker busy long after the other ran out of work."""
    items.sort(key=lambda item: item.get_closest_marker("long_module") is None)


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
        self.people = People(sandbox)

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

    # --- the systems, as their users see them (sandbox/people.py) -----------------------
    def list_all(self, system: str, resource: str) -> list[dict]:
        """Every record of a resource, through the system's own list endpoint."""
        return self.people.records(system, resource)

    def shop_all(self, resource: str) -> list[dict]:
        """Every live (not soft-deleted) webshop record of ``resource``."""
        return [row for row in self.list_all("customwebshop", resource) if not row["deleted"]]

    def get(self, system: str, resource: str, key: str) -> requests.Response:
        return self.people.record(system, resource, key)

    def patch_shop(self, resource: str, key: str, body: dict) -> dict:
        return self.people.edit("customwebshop", resource, key, body)

    def put_erp(self, resource: str, key: str, body: dict) -> dict:
        """PUT to the ERP; Decimal values go on the wire as JSON numbers, as the ERP wants."""
        return self.people.edit("customerp", resource, key, body)

    def post(self, system: str, resource: str, body: dict) -> dict:
        return self.people.create(system, resource, body)

    def writes(self, system: str) -> dict:
        """Requests by method that change state, since the log was last cleared."""
        by_method = self.sandbox.requests(system)["by_method"]
        return {m: n for m, n in by_method.items() if m in ("POST", "PATCH", "PUT", "DELETE")}

    def clear_logs(self) -> None:
        for system in ("customwebshop", "customerp"):
            self.sandbox.clear_requests(system)


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
def synced_states(tmp_path_factory):
    """``synced_states(systems, dataflow)``: the folder of a sandbox of ``systems`` (seed 42)
    with its state and link store right after a first successful `talksync run DATAFLOW`,
    made the first time a test of the session asks for it (see ``copy_of_synced``)."""
    from sandbox.server import Sandbox
    made: dict[tuple, pathlib.Path] = {}

    def synced(systems: tuple[str, ...], dataflow: str) -> pathlib.Path:
        if (systems, dataflow) not in made:
            state = tmp_path_factory.mktemp("synced-template")
            with Sandbox(state_dir=state / "sandbox", base_port=0, systems=systems,
                         seed=42) as running:
                status, report = SyncHarness(running, state).run(dataflow=dataflow)
                assert status == 0, f"the first sync of the template failed: {report}"
            made[systems, dataflow] = state / "sandbox"
        return made[systems, dataflow]

    return synced


@contextlib.contextmanager
def copy_of_synced(template: pathlib.Path, systems: tuple[str, ...],
                   into: pathlib.Path) -> Iterator:
    """A sandbox running on a copy of ``template`` (from ``synced_states``) in ``into``, on
    fresh ports: its systems and link store as the first sync left them. Its watermarks are
    older than the read overlap by the time a test runs, as in production."""
    from sandbox.server import Sandbox
    shutil.copytree(template, into)
    with Sandbox(state_dir=into, base_port=0, systems=systems, seed=42) as running:
        yield running


@pytest.fixture(scope="session")
def synced_template(synced_states) -> pathlib.Path:
    """The custom systems' sandbox state and link store right after a first sync of
    customerp-customwebshop (seed 42), made once per test session (see ``synced_harness``)."""
    return synced_states(("customwebshop", "customerp"), "customerp-customwebshop")


@pytest.fixture
def synced_harness(synced_template, tmp_path):
    """A harness whose systems and link store are already in sync after a first run (a copy of
    ``synced_template``, served on fresh ports): for tests of what happens after the first sync,
    without repeating it. Its watermarks are older than the read overlap by the time a test
    runs, as in production."""
    with copy_of_synced(synced_template, ("customwebshop", "customerp"),
                        tmp_path / "sandbox") as running:
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
