"""One sandbox per test module, synced once: end-to-end tests that each edit their own records
start from it instead of repeating the full first sync (most of the suite's time)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import pytest

from sandbox.server import Sandbox


@contextlib.contextmanager
def synced_sandbox(tmp_path_factory, systems: tuple[str, ...], make_harness: Callable,
                   *run_args: str, **run_kwargs) -> Iterator:
    """A sandbox of ``systems`` (seed 42), its secrets exported for the module, a harness
    from ``make_harness(sandbox, state_dir)``, and one successful first run of its dataflow."""
    state = tmp_path_factory.mktemp("synced")
    with pytest.MonkeyPatch.context() as env:
        sandbox = Sandbox(state_dir=state / "sandbox", base_port=0, systems=systems,
                          seed=42).start()
        try:
            for name, value in sandbox.environ().items():
                env.setenv(name, value)
            harness = make_harness(sandbox, state)
            status, report = harness.run(*run_args, **run_kwargs)
            assert status == 0, report
            yield harness
        finally:
            sandbox.stop()


def module_harness_fixtures(systems: tuple[str, ...], make_harness: Callable):
    """The fixtures ``synced`` (one synced sandbox for the module, with ``taken``: the records
    its tests have claimed) and ``h`` (it, with the request logs cleared for each test).
    Assign them in a test module: ``synced, h = module_harness_fixtures(...)``."""

    @pytest.fixture(scope="module")
    def synced(tmp_path_factory):
        with synced_sandbox(tmp_path_factory, systems, make_harness) as harness:
            harness.taken = set()
            yield harness

    @pytest.fixture
    def h(synced):
        synced.clear_logs()
        return synced

    return synced, h
