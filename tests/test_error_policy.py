"""The one error policy (connectors/errors.py): the HTTP client, both token calls (client
credentials, and Exact's authorization code and refresh tokens through ``_grant``) and
``ApiError.error_class`` read the same table, so a status means the same everywhere.

Before the table the two token calls disagreed: client credentials took every 400 for refused
credentials and every other failure (404, a redirect, TLS) for a passing one; Exact took
``invalid_grant`` for an ordinary permanent error. Against a real local server.
"""

from __future__ import annotations

import pytest

from connectors import auth, errors, exact
from connectors import http as talkhttp
from connectors.errors import (
    ApiError,
    CredentialsRefusedError,
    PermanentApiError,
    PreconditionFailedError,
    RateLimitedError,
    TransientApiError,
    UnreachableError,
)
from tests.test_http import Answer, ScriptedServer

SECRET = "client-s3cret-0123456789"


@pytest.fixture
def server():
    scripted = ScriptedServer()
    yield scripted
    scripted.close()


def client_credentials(url: str) -> None:
    auth.ClientCredentialsToken(url + "/token", "client", SECRET, "scope", system="erp").token()


def exact_grant(url: str) -> None:
    exact._grant(url + "/token", {"grant_type": "refresh_token", "refresh_token": "Rf1!x",
                                  "client_id": "client", "client_secret": SECRET}, "erp")


TOKEN_CALLS = [pytest.param(client_credentials, id="client-credentials"),
               pytest.param(exact_grant, id="exact")]


@pytest.mark.parametrize("call", TOKEN_CALLS)
@pytest.mark.parametrize("status, body, expected", [
    (400, {"error": "invalid_grant", "error_description": "Old refresh token used."},
     CredentialsRefusedError),
    (400, {"error": "invalid_client"}, CredentialsRefusedError),
    (401, {"error": "invalid_client"}, CredentialsRefusedError),
    (403, {}, CredentialsRefusedError),
    (400, {"error": "invalid_request", "error_description": "scope is required"},
     PermanentApiError),
    (404, "<html>no such page</html>", PermanentApiError),
    (302, "", PermanentApiError),
    (429, {}, RateLimitedError),
    (500, {}, TransientApiError),
    (503, "<html>maintenance</html>", TransientApiError),
    (200, {"token_type": "Bearer"}, TransientApiError),
])
def test_both_token_calls_follow_the_one_policy(server, call, status, body, expected):
    server.script(Answer(status, body))
    with pytest.raises(ApiError) as raised:
        call(server.url)
    assert type(raised.value) is expected
    assert raised.value.status == status
    assert SECRET not in str(raised.value)
    assert f"token request -> HTTP {status}: " in str(raised.value)


@pytest.mark.parametrize("call", TOKEN_CALLS)
def test_a_token_refusal_keeps_its_oauth_code_for_the_rotation_race(server, call):
    server.script(Answer(400, {"error": "invalid_grant", "error_description": "used"}))
    with pytest.raises(CredentialsRefusedError) as raised:
        call(server.url)
    assert raised.value.body == {"error": "invalid_grant"}
    assert "used" in raised.value.message


@pytest.mark.parametrize("call", TOKEN_CALLS)
def test_a_token_endpoint_that_says_nothing_gets_the_policys_hint(server, call):
    server.script(Answer(404, ""))
    with pytest.raises(PermanentApiError, match=r"HTTP 404: the request was rejected$"):
        call(server.url)


@pytest.mark.parametrize("call", TOKEN_CALLS)
def test_no_answer_from_a_token_endpoint_is_unreachable(call):
    with pytest.raises(UnreachableError, match="token request to http://127.0.0.1:9/"):
        call("http://127.0.0.1:9")


@pytest.mark.parametrize("call", TOKEN_CALLS)
def test_a_token_url_that_cannot_be_requested_is_permanent(call):
    with pytest.raises(PermanentApiError, match="InvalidURL|InvalidSchema|MissingSchema"):
        call("http://")


def test_the_http_client_reads_the_same_rows(server):
    """Every row of the table: the client raises its exception and retries only what it
    says (no waiting: a zero sleep)."""
    for status, rule in errors.STATUS_RULES.items():
        server.script(*[Answer(status, {"error": "x"})] * 2)
        client = talkhttp.HttpClient(server.url, system="shop", max_retries=1,
                                     sleep=lambda s: None)
        with pytest.raises(ApiError) as raised:
            client.request("GET", "/customers")
        assert type(raised.value) is rule.error, status
        assert raised.value.error_class == rule.error_class, status
        assert client.request_count == (2 if rule.retry is not errors.Retry.NEVER else 1), status
        server.answers.clear()


@pytest.mark.parametrize("error, expected", [
    (PreconditionFailedError("changed", status=409), "conflict"),
    (PreconditionFailedError("changed", status=412), "conflict"),
    (TransientApiError("rate", status=429), "transient"),
    (TransientApiError("garbled 200", status=200), "transient"),
    (PermanentApiError("not found", status=404), "permanent"),
    (CredentialsRefusedError("no", status=400), "permanent"),
    (TransientApiError("busy", status=501), "transient"),
    (UnreachableError("no answer"), "transient"),
    (PermanentApiError("tls"), "permanent"),
])
def test_the_dead_letter_error_class_comes_from_the_policy(error, expected):
    assert error.error_class == expected


def test_the_policy_agrees_with_the_exception_kinds():
    """A row's error class is its exception's: transient rows raise transient errors."""
    rows = [*errors.STATUS_RULES.values(), errors.OTHER_5XX, errors.OTHER_STATUS,
            *(rule for _, rule in errors.NO_ANSWER_RULES), errors.OTHER_FAILURE, errors.REFUSED]
    for rule in rows:
        transient = issubclass(rule.error, TransientApiError)
        assert rule.error_class in ((errors.CONFLICT,) if rule.error is PreconditionFailedError
                                    else (errors.TRANSIENT if transient else errors.PERMANENT,))
        assert rule.retry is errors.Retry.NEVER or transient
        assert rule.hint


def test_exacts_refresh_token_is_masked_in_a_refusal(server):
    server.script(Answer(400, {"error": "invalid_grant", "error_description": "Rf1!x is old"}))
    with pytest.raises(CredentialsRefusedError) as raised:
        exact_grant(server.url)
    assert "Rf1!x" not in str(raised.value) and "is old" in str(raised.value)


def test_an_error_answer_without_a_body_is_worded_by_the_policy(server):
    server.script(Answer(404, ""))
    client = talkhttp.HttpClient(server.url, system="shop")
    with pytest.raises(PermanentApiError, match=r"^shop: GET /x -> HTTP 404: the request was "
                                                r"rejected$"):
        client.request("GET", "/x")
