"""Business Central's blank enum member, spelt two ways by Microsoft: ``_x0020_`` in the real
``$metadata`` (``customerBlocked``: ``_x0020_``, Ship, Invoice, All) and ``" "`` in the API v2.0
examples ("Create customers", "Get customers": ``"blocked": " "``,
https://learn.microsoft.com/en-us/dynamics365/business-central/dev-itpro/api-reference/v2.0/api/dynamics_customer_create).

Where the documentation disagrees with itself, both are accepted: the emulator serves either
form (``blank_enum=``, ``POST /_sandbox/blank-enum``) and takes both; the connector reads both as
``" "`` and writes the form the tenant serves (else its ``blank_enum`` setting, else
``_x0020_``). Each form is tested end to end: the connector blocking and unblocking a customer,
and the customwebshop-businesscentral sync converging while BC blocks and unblocks one.
"""

from __future__ import annotations

import pathlib

import pytest
import requests

from connectors import auth
from connectors import businesscentral as conn
from core.model import SystemConfig, WriteOp
from sandbox import businesscentral as bc
from sandbox.server import Sandbox
from tests.test_sync_customwebshop_businesscentral import BcHarness, _writes

SYSTEM = "businesscentral"
FORMS = ("_x0020_", " ")


@pytest.fixture(scope="module")
def running(tmp_path_factory):
    with Sandbox(tmp_path_factory.mktemp("bc-blank"), base_port=0, systems=(SYSTEM,)) as sandbox:
        yield sandbox


@pytest.fixture(params=FORMS, ids=("escaped", "space"))
def served(request, running, monkeypatch):
    """The emulator, serving the blank member in one form; its secret in the environment."""
    running.reset(SYSTEM)
    for name, value in running.environ().items():
        monkeypatch.setenv(name, value)
    auth.forget_tokens()
    _serve_blank(running, request.param)
    yield request.param
    running.reset(SYSTEM)


def _serve_blank(sandbox: Sandbox, form: str) -> None:
    answer = requests.post(sandbox.root_url(SYSTEM) + "/_sandbox/blank-enum", json={"form": form},
                           timeout=10)
    assert answer.status_code == 200, answer.text


def _connector(sandbox: Sandbox, **settings) -> conn.BusinessCentralConnector:
    base = {**bc.BusinessCentral.connector_settings(sandbox.root_url(SYSTEM)),
            "client_secret": "${TALKSYNC_SANDBOX_BUSINESSCENTRAL_CLIENT_SECRET}"}
    return conn.BusinessCentralConnector(SystemConfig(
        name="bc", type=SYSTEM, base_url=sandbox.url(SYSTEM), settings={**base, **settings}))


def _sent_blocked(connector: conn.BusinessCentralConnector) -> list:
    """Spy on the connector's HTTP client: the ``blocked`` values its ``$batch`` bodies carry."""
    sent: list = []
    request = connector._http.request

    def spy(method, path, **kwargs):
        for call in (kwargs.get("json") or {}).get("requests", []):
            if isinstance(call.get("body"), dict) and "blocked" in call["body"]:
                sent.append(call["body"]["blocked"])
        return request(method, path, **kwargs)

    connector._http.request = spy
    return sent


def test_the_emulator_serves_the_chosen_form_and_takes_both(running, served):
    token = requests.post(
        bc.BusinessCentral.connector_settings(running.root_url(SYSTEM))["token_url"],
        data={"grant_type": "client_credentials", "client_id": bc.CLIENT_ID, "scope": bc.SCOPE,
              "client_secret": running.api_key(SYSTEM)}, timeout=10).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    company = f"{running.url(SYSTEM)}/companies({bc.COMPANY_ID})"
    for written in FORMS:
        created = requests.post(f"{company}/customers", headers=headers, timeout=10,
                                json={"displayName": "Blank AS", "blocked": written})
        assert created.status_code == 201 and created.json()["blocked"] == served
    for literal in FORMS:     # $filter takes either spelling too
        found = requests.get(f"{company}/customers/$count?$filter=blocked eq '{literal}'",
                             headers=headers, timeout=10)
        assert found.status_code == 200 and int(found.text) > 0


def test_the_connector_blocks_and_unblocks_in_the_tenants_form(running, served):
    connector = _connector(running)
    customer = next(iter(connector.read("customers")))
    assert customer.fields["blocked"] == " "                       # read as plain text
    sent = _sent_blocked(connector)

    [blocked] = connector.write([WriteOp(kind="update", entity="customers", id=customer.id,
                                         fields={"blocked": "Ship"}, if_match=customer.etag,
                                         ref="block")])
    assert blocked.ok and blocked.record.fields["blocked"] == "Ship"
    [unblocked] = connector.write([WriteOp(kind="update", entity="customers", id=customer.id,
                                           fields={"blocked": " "},
                                           if_match=blocked.record.etag, ref="unblock")])
    assert unblocked.ok and unblocked.record.fields["blocked"] == " "
    assert sent == ["Ship", served]                     # the blank as the tenant spells it
    assert running.requests(SYSTEM)["log"][-1]["status"] == 200


@pytest.mark.parametrize("setting", FORMS, ids=("escaped", "space"))
def test_before_any_read_the_setting_decides(running, served, setting):
    connector = _connector(running, blank_enum=setting)
    sent = _sent_blocked(connector)
    [created] = connector.write([WriteOp(kind="create", entity="customers", ref="new",
                                         fields={"displayName": "Ny AS", "blocked": " "})])
    assert created.ok and created.record.fields["blocked"] == " "
    assert sent == [setting]


def test_a_bad_setting_names_the_field(running, served):
    with pytest.raises(ValueError, match="blank_enum"):
        _connector(running, blank_enum="blank")


# -- end to end: the sync, with BC serving each form ------------------------------------------


@pytest.fixture(params=FORMS, ids=("escaped", "space"))
def sync(request, tmp_path: pathlib.Path, monkeypatch):
    sandbox = Sandbox(state_dir=tmp_path / "sandbox", base_port=0,
                      systems=("customwebshop", SYSTEM), seed=42)
    sandbox.start()
    for name, value in sandbox.environ().items():
        monkeypatch.setenv(name, value)
    _serve_blank(sandbox, request.param)
    try:
        yield BcHarness(sandbox, tmp_path)
    finally:
        sandbox.stop()


def test_sync_converges_while_bc_blocks_one_customer_and_unblocks_another(sync):
    status, report = sync.run()
    assert status == 0 and all(c["dead_letters"] == 0 for c in report["pairs"].values())
    first, second = [c for c in sync.bc_all("customers") if c["email"]][:2]
    served = sync.bc_get("customers", first["id"])["blocked"]
    assert served in FORMS
    sync.bc_patch("customers", first["id"], {"blocked": "All"})       # blocked
    sync.bc_patch("customers", second["id"], {"blocked": "Ship"})
    sync.bc_patch("customers", second["id"], {"blocked": served})     # unblocked again
    assert sync.bc_get("customers", second["id"])["blocked"] == served
    sync.clear_logs()
    status, report = sync.run()
    assert status == 0 and _writes(report) == {}
    assert all(c["dead_letters"] == 0 for c in report["pairs"].values())
    assert sync.writes("customwebshop") == {} and sync.writes(SYSTEM) == {}
