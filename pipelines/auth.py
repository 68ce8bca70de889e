"""``talksync auth exact``: the one-time OAuth2 consent that gives talksync its first tokens.

Exact Online has no service accounts: a user of the division approves the app once in a
browser, Exact redirects to the app's ``redirect_uri`` with a code, and the code buys the first
access and refresh tokens. From then on the connector keeps them fresh by itself (single-use
refresh tokens, rotated and stored in the link store; see :mod:`connectors.exact`).

This command prints the consent URL and takes the code either pasted on stdin (the code alone
or the whole URL the browser landed on), or caught by a one-request HTTP server on the loopback
interface (``--redirect-port``; the app's redirect URI must then be
``http://127.0.0.1:PORT/callback``). The tokens go to the state entry ``tokens/<system>`` of the
config's link store, where every run reads them.
"""

from __future__ import annotations

import http.server
import secrets
import threading
import urllib.parse
from typing import TextIO

from connectors.errors import ApiError
from connectors.exact import authorize_url, exchange_code, tokens_key
from connectors.stores import open_link_store
from pipelines.config import load_config

#: seconds to wait for the browser to come back to the loopback redirect
REDIRECT_TIMEOUT_S = 300.0


class AuthError(ValueError):
    """The consent could not be completed; the message says why and what to do."""


def auth_exact(config_path: str, system: str, *, redirect_port: int | None = None,
               stdin: TextIO, out: TextIO, timeout_s: float = REDIRECT_TIMEOUT_S) -> str:
    """Run the consent for ``system`` of the config; returns the state key the tokens are in."""
    config = load_config(config_path)
    target = config.system(system)
    if target.type != "exact":
        raise AuthError(f"system {system!r} is of type {target.type!r}; `auth exact` is for "
                        "Exact Online systems")
    for name in ("client_id", "client_secret"):
        if not target.settings.get(name):
            raise AuthError(f"system {system!r}: setting {name!r} is required")
    state = secrets.token_urlsafe(16)
    server = None
    if redirect_port is not None:
        server = _Redirect(redirect_port, state)      # port 0: a free port, bound at once
        redirect_uri = f"http://127.0.0.1:{server.port}/callback"
    else:
        redirect_uri = str(target.settings.get("redirect_uri") or "")
        if not redirect_uri:
            raise AuthError(f"system {system!r}: set redirect_uri (the app's redirect URI "
                            "registered at Exact) or pass --redirect-port")
    url = authorize_url(target.base_url, str(target.settings["client_id"]), redirect_uri, state)
    print("Open this URL in a browser and approve talksync's access to the division:", file=out)
    print(url, file=out, flush=True)
    if server is not None:
        print(f"Waiting for Exact to redirect to {redirect_uri} ...", file=out, flush=True)
        code = server.wait(timeout_s)
    else:
        print("Then paste the code (or the whole URL the browser shows) here:", file=out,
              flush=True)
        code = _code_from(stdin.readline(), state)
    with open_link_store(target.state_store) as store:
        try:
            entry = exchange_code(target, code, redirect_uri, store)
        except ApiError as exc:
            raise AuthError(f"{exc.message}; start again with a fresh code") from None
    key = tokens_key(system)
    print(f"Stored the tokens of {system!r} in the link store ({key}, version "
          f"{entry.version}).", file=out)
    return key


def _code_from(text: str, state: str) -> str:
    """The code in what was pasted: the code itself or the redirect URL carrying it."""
    text = text.strip()
    if not text:
        raise AuthError("no code was given")
    if "code=" not in text:
        return text
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(text).query or text)
    if "state" in query and query["state"][0] != state:
        raise AuthError("the URL belongs to another consent (its state does not match); "
                        "open the URL printed above")
    if "error" in query:
        raise AuthError(f"Exact refused the consent: {query['error'][0]}")
    return query["code"][0]


class _Redirect:
    """A one-request HTTP server on 127.0.0.1 that catches the consent's redirect."""

    def __init__(self, port: int, state: str):
        outer = self
        self.result: dict[str, str] = {}
        self._done = threading.Event()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - the stdlib's name
                query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
                if query.get("state", [""])[0] != state or "code" not in query:
                    self.send_response(400)
                    self.end_headers()
                    self.wfile.write(b"This is not the redirect of the consent talksync started.")
                    return
                outer.result["code"] = query["code"][0]
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.end_headers()
                self.wfile.write(b"talksync has the code; you can close this window.")
                outer._done.set()

            def log_message(self, *args):
                pass

        self._server = http.server.HTTPServer(("127.0.0.1", port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        """The port listened on (the one asked for, or the free one port 0 got)."""
        return self._server.server_address[1]

    def wait(self, timeout_s: float) -> str:
        try:
            if not self._done.wait(timeout_s):
                raise AuthError(f"no redirect arrived within {timeout_s:.0f} s")
            return self.result["code"]
        finally:
            self._server.shutdown()
            self._server.server_close()
