"""TLS certificates are always verified: an HTTPS server whose certificate no trusted CA signed
is refused at once (no retry, a clear error), the same server is accepted once its CA is
trusted (so the refusal is verification, not a broken handshake), and no code turns
verification off."""

from __future__ import annotations

import datetime
import http.server
import ipaddress
import pathlib
import re
import ssl
import threading

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from connectors import auth
from connectors import http as talkhttp
from connectors.errors import PermanentApiError

REPO = pathlib.Path(__file__).resolve().parents[1]


def _certificate(subject: str, key, issuer_name, issuer_key, *, ca: bool) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
               .issuer_name(issuer_name).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if not ca:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


@pytest.fixture(scope="module")
def module_https_server(tmp_path_factory):
    """An HTTPS server on 127.0.0.1 with a certificate signed by a CA of its own; yields
    (base URL, path of the CA certificate, hits)."""
    folder = tmp_path_factory.mktemp("tls")
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "talksync test CA")])
    ca_cert = _certificate("talksync test CA", ca_key, ca_name, ca_key, ca=True)
    cert = _certificate("127.0.0.1", key, ca_name, ca_key, ca=False)
    (folder / "ca.pem").write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    (folder / "server.pem").write_bytes(
        cert.public_bytes(serialization.Encoding.PEM)
        + key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()))
    hits = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            hits.append(self.path)
            body = b'{"ok": true}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(folder / "server.pem")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{server.server_address[1]}", folder / "ca.pem", hits
    server.shutdown()


@pytest.fixture
def https_server(module_https_server):
    """The module's HTTPS server with no hits yet: each test sees only its own requests,
    whatever ran before it."""
    module_https_server[2].clear()
    return module_https_server


def test_an_untrusted_certificate_is_refused_at_once(https_server, monkeypatch):
    url, _, hits = https_server
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    client = talkhttp.HttpClient(url, system="shop", max_retries=3, sleep=lambda s: None)
    with pytest.raises(PermanentApiError, match="CERTIFICATE_VERIFY_FAILED"):
        client.request("GET", "/customers")
    assert client.request_count == 1 and hits == []   # not retried, nothing reached the app


def test_the_same_server_is_accepted_once_its_ca_is_trusted(https_server, monkeypatch):
    url, ca, hits = https_server
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(ca))
    client = talkhttp.HttpClient(url, system="shop")
    assert client.request("GET", "/customers").data == {"ok": True}
    assert hits[-1] == "/customers"


def test_token_requests_verify_certificates_too(https_server, monkeypatch):
    url, _, _ = https_server
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    token = auth.ClientCredentialsToken(url + "/token", "client", "secret-value", "scope",
                                            system="erp")
    with pytest.raises(Exception, match="CERTIFICATE_VERIFY_FAILED") as refused:
        token.token()
    assert "secret-value" not in str(refused.value)


def test_no_code_turns_verification_off():
    offenders = []
    for folder in ("connectors", "pipelines", "transforms", "sandbox", "dataflow"):
        for path in (REPO / folder).rglob("*.py"):
            text = path.read_text(encoding="utf-8")
            if re.search(r"verify\s*=\s*False|\.verify\s*=\s*False|CERT_NONE|"
                         r"check_hostname\s*=\s*False|_create_unverified_context", text):
                offenders.append(str(path.relative_to(REPO)))
    assert offenders == []
