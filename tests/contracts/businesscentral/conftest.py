"""One Business Central emulator per test module, and a plain HTTP client of it."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
import requests

from sandbox import businesscentral as bc
from sandbox.server import Sandbox
from sandbox.wire import dumps

SYSTEM = "businesscentral"
#: Microsoft Learn, Business Central developer and IT-pro docs (the sources the tests cite)
LEARN = "https://learn.microsoft.com/en-us/dynamics365/business-central/dev-itpro"
API = f"{LEARN}/api-reference/v2.0/api"


class Api:
    """The emulator as a client of BC sees it: a bearer token from the token endpoint, the
    service root, the company."""

    def __init__(self, sandbox: Sandbox):
        self.sandbox = sandbox
        self.root = sandbox.root_url(SYSTEM)
        self.service = sandbox.url(SYSTEM)
        self.company = f"{self.service}/companies({bc.COMPANY_ID})"
        self.token = requests.post(self.root + bc.TOKEN_PATH, data={
            "grant_type": "client_credentials", "client_id": bc.CLIENT_ID, "scope": bc.SCOPE,
            "client_secret": sandbox.api_key(SYSTEM)}, timeout=10).json()["access_token"]

    def call(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        """``url`` relative to the company (``customers``), or the service root (``/…``), or
        absolute."""
        headers = {"Authorization": f"Bearer {self.token}", **kwargs.pop("headers", {})}
        if "json" in kwargs:     # BC's numbers are decimals: sent as JSON numbers, exactly
            kwargs["data"] = dumps(kwargs.pop("json")).encode()
            headers.setdefault("Content-Type", "application/json")
        if url.startswith("/"):
            url = self.service + url
        elif not url.startswith("http"):
            url = f"{self.company}/{url}"
        return requests.request(method, url, headers=headers, timeout=10, **kwargs)

    def json(self, method: str, url: str, **kwargs: Any) -> tuple[int, Any]:
        response = self.call(method, url, **kwargs)
        return response.status_code, json.loads(response.text, parse_float=Decimal)

    def first(self, entity_set: str) -> dict[str, Any]:
        return self.json("GET", f"{entity_set}?$top=1")[1]["value"][0]

    def control(self, path: str, body: Any = None) -> requests.Response:
        return requests.post(self.root + path, json=body, timeout=10)


def error(response: requests.Response) -> tuple[int, str]:
    """Status and code of a BC error body ``{"error": {"code", "message"}}``."""
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    return response.status_code, body["error"]["code"]


def message(response: requests.Response) -> str:
    return response.json()["error"]["message"].split("  CorrelationId")[0]


@pytest.fixture(scope="module")
def api(tmp_path_factory) -> Api:
    with Sandbox(tmp_path_factory.mktemp("bc-contract"), base_port=0,
                 systems=(SYSTEM,)) as sandbox:
        yield Api(sandbox)
