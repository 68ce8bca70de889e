"""A client nobody here wrote drives the Exact emulator: ``exactonline``, OSSO B.V.'s Exact
Online REST API library (ossobv/exactonline, in the lock), with its ordinary calls.

How it is pointed at the emulator: the library takes its three URLs (``auth_url``,
``rest_url``, ``token_url``) from its storage's ``[server]`` section (its ``IniStorage``
documents exactly that), so no code of it is patched. It talks HTTPS only, with the
certificate verified (``opt_secure``: ``protocols = ('https',)``, ``verify_cert = True``), so
the emulator is served over TLS with a certificate of a CA made for this module, and the
library's own knob for the CA file (``exactonline.http.opt_secure.cacert_file``) names it.
What cannot be pointed at a local server: nothing of what is used here. Its ``invoices``
(``salesentry/SalesEntries``) and ``receivables`` helpers use resources the emulator does not
serve; ``contacts`` (``crm/Contacts``, in Exact's reference) shows how those are refused.

Its consent (``create_auth_request_url`` then ``request_token``), its division choice
(``get_divisions``: ``current/Me`` then ``hrm/Divisions``, which answered 404 before issue 16),
``relations`` (``crm/Accounts``: ``all``, ``get``, ``filter``, ``create``, ``update``,
``delete``), the ``Manager`` subclasses its documentation asks for to reach other resources
(items; sales orders whose lines it follows through the ``__deferred`` link, as its own
``Invoices.get`` does), its rate limiter (which asserts on Exact's reset headers) and its
token refresh before expiry and after a 401.
"""

from __future__ import annotations

import ssl
import threading
import time
import urllib.parse

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from exactonline import http as eol_http
from exactonline.api import ExactApi
from exactonline.api.manager import Manager
from exactonline.resource import GET
from exactonline.storage.ini import IniStorage
from werkzeug.serving import make_server

from sandbox import exact as ex
from sandbox.seed_exact import exact_seed
from tests.test_tls import _certificate

REDIRECT = "http://127.0.0.1:8765/callback"
SECRET = "sbx_exact_thirdparty_client_secret"
SEED = exact_seed(42)


class Items(Manager):
    """``logistics/Items``, the way the library's documentation adds a resource."""

    resource = "logistics/Items"


class SalesOrders(Manager):
    """``salesorder/SalesOrders``; ``get`` follows the lines' ``__deferred`` link as the
    library's own ``Invoices.get`` follows ``SalesEntryLines``."""

    resource = "salesorder/SalesOrders"

    def get(self, **kwargs):
        order = super().get(**kwargs)
        uri = order["SalesOrderLines"]["__deferred"]["uri"]
        order["SalesOrderLines"] = self._api.restv1(GET(str(uri)))
        return order


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    """The Exact emulator over HTTPS on 127.0.0.1; yields (its URL, the CA file, the app)."""
    folder = tmp_path_factory.mktemp("exact-tls")
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "exact emulator test CA")])
    ca_cert = _certificate("exact emulator test CA", ca_key, ca_name, ca_key, ca=True)
    cert = _certificate("127.0.0.1", key, ca_name, ca_key, ca=False)
    (folder / "ca.pem").write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    (folder / "server.pem").write_bytes(
        cert.public_bytes(serialization.Encoding.PEM)
        + key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(folder / "server.pem")
    app = ex.ExactOnline(api_key=SECRET, seed=42)
    server = make_server("127.0.0.1", 0, app, threaded=True, ssl_context=context)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{server.server_address[1]}", folder / "ca.pem", app
    server.shutdown()
    thread.join()


@pytest.fixture(scope="module")
def api(emulator, tmp_path_factory):
    """The library's ``ExactApi`` on an ``IniStorage`` naming the emulator, after its consent
    and its choice of the current division."""
    url, ca, _ = emulator
    path = tmp_path_factory.mktemp("exact-ini") / "exact.ini"
    path.write_text(f"[server]\nauth_url = {url}/api/oauth2/auth\nrest_url = {url}/api\n"
                    f"token_url = {url}/api/oauth2/token\n\n[application]\n"
                    f"base_url = {REDIRECT}\nclient_id = {ex.CLIENT_ID}\n"
                    f"client_secret = {SECRET}\n", encoding="utf-8")
    previous = eol_http.opt_secure.cacert_file
    eol_http.opt_secure.cacert_file = str(ca)
    try:
        client = ExactApi(storage=IniStorage(str(path)))
        # the user's browser: the consent page redirects to the app with a code
        consent = requests.get(client.create_auth_request_url(), allow_redirects=False,
                               verify=str(ca), timeout=10)
        code = urllib.parse.parse_qs(urllib.parse.urlsplit(
            consent.headers["Location"]).query)["code"][0]
        client.request_token(code)
        divisions, current = client.get_divisions()
        client.set_division(current)
        client.divisions = divisions
        yield client
    finally:
        eol_http.opt_secure.cacert_file = previous


def test_its_consent_stores_tokens_and_its_division_choice_lists_the_division(api):
    assert api.storage.get_access_token() and api.storage.get_refresh_token()
    assert api.storage.get_access_expiry() > time.time() + 500
    assert api.divisions == {ex.DIVISION: "Sandbox B.V."}
    assert api.storage.get_division() == ex.DIVISION


def test_relations_all_pages_through_every_account(api):
    relations = api.relations.all()
    assert len(relations) == len(SEED["Accounts"]) > 0
    assert {r["Name"] for r in relations} == {a["Name"] for a in SEED["Accounts"]}
    assert all(set(r) == {"__metadata", "ID", "Code", "Name"} for r in relations)


def test_relations_get_by_code_pads_it_to_18_characters(api):
    account = SEED["Accounts"][0]
    found = api.relations.get(relation_code=account["Code"])
    assert found["ID"] == account["ID"] and found["Code"].strip() == account["Code"]


def test_relations_create_update_filter_and_delete(api):
    created = api.relations.create({"Name": "Third-party B.V.", "City": "Amersfoort"})
    assert created["Name"] == "Third-party B.V."
    assert api.relations.update(created["ID"], {"City": "Zwolle"}) is None    # 204, empty
    [found] = api.relations.filter(filter=f"ID eq guid'{created['ID']}'", select="ID,City")
    assert found["City"] == "Zwolle"
    assert api.relations.delete(created["ID"]) is None
    assert api.relations.filter(filter=f"ID eq guid'{created['ID']}'") == []


def test_items_through_a_manager_of_its_own(api):
    items = Items(api)
    every = items.filter(select="ID,Code,Description")
    assert len(every) == len(SEED["Items"])
    first = SEED["Items"][0]
    assert items.get(filter=f"Code eq '{first['Code']}'", select="ID,Description")[
        "Description"] == first["Description"]


def test_a_sales_order_with_its_lines_through_the_deferred_link(api):
    order = SEED["SalesOrders"][0]
    found = SalesOrders(api).get(filter=f"OrderID eq guid'{order['OrderID']}'")
    assert found["OrderNumber"] == order["OrderNumber"]
    assert {line["ID"] for line in found["SalesOrderLines"]} == {
        line["ID"] for line in order["SalesOrderLines"]}


def test_its_rate_limiter_reads_exacts_headers(api):
    api.relations.filter(top=1)
    assert api.limiter._reset_times      # both resets parsed (it asserts they are epoch ms)


def test_a_resource_the_emulator_does_not_emulate_is_refused_loudly(api):
    with pytest.raises(eol_http.HTTPError) as refused:
        api.contacts.all()
    assert refused.value.code == 501
    assert b"not emulated" in refused.value.response


def test_its_token_refresh_before_expiry_and_after_a_401(api, emulator):
    _, _, app = emulator
    app.oauth.expire()                         # Exact's token time moves 10 minutes on
    before = api.storage.get_refresh_token()
    assert len(api.relations.filter(top=1)) == 1          # a 401, a refresh, the call again
    after = api.storage.get_refresh_token()
    assert after != before

    app.oauth.expire()
    api.storage.set_access_expiry(int(time.time()) + 10)  # due within its 30-s margin
    assert len(api.relations.filter(top=1)) == 1          # refreshed first
    assert api.storage.get_refresh_token() != after
