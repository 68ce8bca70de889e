"""One emulator per test module (module scope keeps the suite fast), and a client that holds
talksync's first tokens from the emulator's consent and token endpoints."""

from __future__ import annotations

import pytest

from sandbox.server import Sandbox
from tests.test_sandbox_exact import SYSTEM, Client


@pytest.fixture(scope="module")
def exact(tmp_path_factory) -> Client:
    with Sandbox(tmp_path_factory.mktemp("exact-contract"), base_port=0,
                 systems=(SYSTEM,)) as sandbox:
        yield Client(sandbox)


def pytest_configure(config):
    config.addinivalue_line("markers", "source(*documents): the documentation a contract test "
                                       "takes its request and answer from")


@pytest.fixture(autouse=True)
def _names_its_source(request):
    """Every contract test names the documentation it follows."""
    marker = request.node.get_closest_marker("source")
    assert marker is not None and marker.args, \
        f"{request.node.name}: a contract test names its source with @source(...)"


def error_value(body) -> str:
    """Exact's error body, ``{"error": {"code": "", "message": {"lang": "", "value": …}}}``,
    checked for shape; its message."""
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message"}, body
    assert set(body["error"]["message"]) == {"lang", "value"}, body
    return body["error"]["message"]["value"]
