"""`talksync auth exact` end to end against the emulator's consent and token endpoints: the
code caught on a loopback redirect, or pasted; the first tokens land in the link store."""

from __future__ import annotations

import hashlib
import io
import re
import sys
import threading
import time

import requests

from connectors.stores import open_link_store
from pipelines import auth, cli
from sandbox import exact as ex
from tests.test_sync_exact_customwebshop import consent_code


def _stored(sandbox) -> dict:
    with open_link_store("sqlite:///" + str(sandbox.state_dir / "links.db")) as store:
        entry = store.read_state("tokens/exact")
    return {**entry.value, "version": entry.version} if entry else {}


def _current_refresh_sha(sandbox) -> str:
    return requests.get(f"{sandbox.root_url('exact')}/_sandbox/tokens",
                        timeout=10).json()["current_refresh_token_sha256"]


class _Output(io.StringIO):
    """The consent's output; ``url_shown`` is set once the consent URL is written."""

    def __init__(self):
        super().__init__()
        self.url_shown = threading.Event()

    def write(self, text: str) -> int:
        written = super().write(text)
        if "oauth2/auth?" in self.getvalue():
            self.url_shown.set()
        return written


def test_the_code_is_caught_on_a_loopback_redirect(sandbox_of):
    sandbox = sandbox_of("exact")
    out, done = _Output(), {}

    def consent():          # redirect port 0: the loopback server binds a free port itself
        done["key"] = auth.auth_exact(str(sandbox.config_path), "exact", redirect_port=0,
                                      stdin=io.StringIO(), out=out, timeout_s=30)

    worker = threading.Thread(target=consent)
    worker.start()
    assert out.url_shown.wait(30), out.getvalue()
    url = next(line for line in out.getvalue().splitlines() if "oauth2/auth?" in line)
    port = re.search(r"redirect_uri=http%3A%2F%2F127\.0\.0\.1%3A(\d+)%2Fcallback", url)
    assert port and int(port.group(1)) > 0, url
    # the browser: the consent page redirects to the loopback server, which takes the code
    landing = requests.get(url, timeout=10)
    worker.join(timeout=30)

    assert landing.status_code == 200 and "you can close this window" in landing.text
    assert done["key"] == "tokens/exact"
    stored = _stored(sandbox)
    assert stored["version"] == 1 and stored["expires_at"] > time.time() + 500
    assert hashlib.sha256(stored["refresh_token"].encode()).hexdigest() == \
        _current_refresh_sha(sandbox)
    assert stored["refresh_token"] not in out.getvalue()


def test_the_pasted_code_through_the_cli_and_a_spent_code_refused(sandbox_of, monkeypatch,
                                                                  capsys):
    sandbox = sandbox_of("exact")
    settings = ex.ExactOnline.connector_settings(sandbox.root_url("exact"))
    code = consent_code(sandbox)
    landed = f"{settings['redirect_uri']}?code={code}"
    argv = ["auth", "exact", "--system", "exact", "--config", str(sandbox.config_path)]

    monkeypatch.setattr(sys, "stdin", io.StringIO(landed + "\n"))
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "oauth2/auth?client_id=" in out and "Stored the tokens of 'exact'" in out
    first = _stored(sandbox)
    assert first["version"] == 1

    monkeypatch.setattr(sys, "stdin", io.StringIO(code + "\n"))        # the same code again
    assert cli.main(argv) == 2
    assert "already used" in capsys.readouterr().err
    assert _stored(sandbox) == first                                   # the tokens are kept

    monkeypatch.setattr(sys, "stdin", io.StringIO(consent_code(sandbox) + "\n"))
    assert cli.main(argv) == 0                                         # a new consent replaces
    assert _stored(sandbox)["version"] == 2


def test_only_exact_systems_and_a_config_with_the_client(sandbox_of, capsys):
    sandbox = sandbox_of("customwebshop")
    status = cli.main(["auth", "exact", "--system", "customwebshop", "--config",
                       str(sandbox.config_path)])
    assert status == 2 and "is of type 'customwebshop'" in capsys.readouterr().err
