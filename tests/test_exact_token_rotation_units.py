"""Exact's token rotation (connectors/exact.py, ExactTokens) and the one token call
(connectors/auth.py, grant), fast: a SQLite link store in a temporary folder, the token
endpoint answered in process (tests/write_path_fakes.py), the clock and the sleeps injected.

Exact rotates the refresh token on every use and the old one stops working, so a rotated
token must be stored before anything uses it, whatever another worker wrote meanwhile; a
worker that meets ``invalid_grant`` waits for the entry another worker is writing. The same
against the emulator, with threads, is tests/test_exact_token_conflict.py.
"""

from __future__ import annotations

import pytest
import requests

from connectors import auth, errors, exact, secrets
from connectors.linkstore import StaleStateError
from connectors.stores import open_link_store
from core.model import SystemConfig
from tests.write_path_fakes import fake_http

BASE = "https://start.exact.invalid/api"
TOKEN_URL = BASE + "/oauth2/token"
KEY = "tokens/exact"
NOW = 1_800_000_000.0


@pytest.fixture
def store_url(tmp_path):
    return f"sqlite:///{tmp_path}/links.db"


@pytest.fixture
def store(store_url):
    with open_link_store(store_url) as opened:
        yield opened


def _config(store_url, **changes) -> SystemConfig:
    return SystemConfig(name="exact", type="exact", base_url=BASE + "/",
                        settings={"client_id": "cid", "client_secret": "${NOPE}"},
                        state_store=store_url, **changes)


class Clock:
    def __init__(self):
        self.now = NOW

    def __call__(self):
        return self.now


class Endpoint:
    """Exact's token endpoint: hands out AT<n>/RT<n>, or the answers it is given."""

    def __init__(self, monkeypatch, answers=None):
        self.answers = list(answers or [])
        self.issued = 0
        self.http = fake_http(monkeypatch, self._answer)

    def _answer(self, sent):
        assert sent.url == TOKEN_URL and sent.method == "POST"
        if self.answers:
            return self.answers.pop(0)
        self.issued += 1
        return 200, {"access_token": f"AT{self.issued}", "refresh_token": f"RT{self.issued}",
                     "expires_in": "600"}

    @property
    def forms(self):
        return [sent.body for sent in self.http.sent]


def _tokens(store_url, clock=None, sleeps=None, **kwargs) -> exact.ExactTokens:
    return exact.ExactTokens(_config(store_url), "secret-1", clock=clock or Clock(),
                             sleep=(sleeps.append if sleeps is not None else _no_sleep),
                             **kwargs)


def _no_sleep(seconds):
    raise AssertionError(f"slept {seconds}")


def _stored(store, access="AT0", refresh="RT0", expires_at=NOW + 600, refreshed_at=NOW - 10):
    return store.write_state(KEY, {"access_token": access, "refresh_token": refresh,
                                   "expires_at": expires_at, "refreshed_at": refreshed_at},
                             None)


def test_tokens_need_a_link_store():
    config = SystemConfig(name="exact", type="exact", base_url=BASE, settings={"client_id": 1})
    with pytest.raises(ValueError) as caught:
        exact.ExactTokens(config, "s")
    assert str(caught.value) == ("system 'exact' (exact): tokens are kept in the link store; "
                                 "run it through talksync (SystemConfig.state_store is unset)")


def test_without_a_stored_consent_the_user_is_told_what_to_run(store_url, monkeypatch):
    endpoint = Endpoint(monkeypatch)
    with pytest.raises(errors.ConsentMissingError) as caught:
        _tokens(store_url).token()
    assert str(caught.value) == ("exact: no Exact tokens stored; run `talksync auth exact "
                                 "--system exact` once")
    assert caught.value.system == "exact"
    assert endpoint.forms == []


def test_a_stored_token_is_used_until_its_margin_then_read_again(store_url, store, monkeypatch):
    endpoint = Endpoint(monkeypatch)
    clock = Clock()
    _stored(store, expires_at=NOW + 31)
    tokens = _tokens(store_url, clock)
    assert tokens.token() == "AT0"
    entry = store.read_state(KEY)
    store.write_state(KEY, {**entry.value, "access_token": "AT-other"}, entry.version)
    assert tokens.token() == "AT0"                  # cached: the store is not read again
    clock.now = NOW + 0.999
    assert tokens.token() == "AT0"
    clock.now = NOW + 1                             # 30 s before expiry: the margin
    assert tokens.token() == "AT1"                  # the entry's token is as old: refreshed
    assert endpoint.forms == [{"grant_type": "refresh_token", "refresh_token": "RT0",
                               "client_id": "cid", "client_secret": "secret-1"}]
    assert tokens.request_count == 1
    assert list(tokens.secrets()) == ["secret-1", "AT0", "RT0", "AT-other", "AT1", "RT1"]
    tokens.close()
    tokens.close()


def test_a_rotated_token_is_stored_with_its_expiry_before_it_is_used(store_url, store,
                                                                     monkeypatch):
    Endpoint(monkeypatch, answers=[(200, {"access_token": "AT9", "refresh_token": "RT9",
                                          "expires_in": "1200"})])
    clock = Clock()
    _stored(store, expires_at=NOW + 30)
    tokens = _tokens(store_url, clock)
    assert tokens.token() == "AT9"
    entry = store.read_state(KEY)
    assert (entry.version, entry.value) == (2, {"access_token": "AT9", "refresh_token": "RT9",
                                                "expires_at": NOW + 1200,
                                                "refreshed_at": NOW})
    clock.now = NOW + 1169.9
    assert tokens.token() == "AT9"


def test_an_answer_without_a_lifetime_lasts_ten_minutes(store_url, store, monkeypatch):
    Endpoint(monkeypatch, answers=[(200, {"access_token": "AT9", "refresh_token": "RT9"})])
    _stored(store, expires_at=NOW)
    _tokens(store_url).token()
    assert store.read_state(KEY).value["expires_at"] == NOW + 600


def test_a_refused_token_is_refreshed_unless_another_worker_did(store_url, store, monkeypatch):
    endpoint = Endpoint(monkeypatch)
    _stored(store)
    tokens = _tokens(store_url)
    assert tokens.token() == "AT0"
    assert tokens.token(refresh=True) == "AT1"      # AT0 was refused: a new one, at once
    assert len(endpoint.forms) == 1
    assert tokens.token(refresh=True) == "AT2"
    assert tokens.request_count == 2
    entry = store.read_state(KEY)
    store.write_state(KEY, {**entry.value, "access_token": "AT-other"}, entry.version)
    assert tokens.token(refresh=True) == "AT-other"  # AT2 refused, another worker's is new
    assert len(endpoint.forms) == 2


def _refused(code="invalid_grant", status=400):
    return status, {"error": code, "error_description": "refresh token RT0 is no longer valid"}


def test_invalid_grant_waits_for_the_entry_another_worker_writes(store_url, store, monkeypatch):
    endpoint = Endpoint(monkeypatch, answers=[_refused(), _refused()])
    _stored(store, expires_at=NOW)
    sleeps = []

    def sleep(seconds):
        sleeps.append(seconds)
        if len(sleeps) == 2:
            entry = store.read_state(KEY)
            store.write_state(KEY, {**entry.value, "access_token": "AT-w",
                                    "refresh_token": "RT-w", "expires_at": NOW + 600},
                              entry.version)

    tokens = exact.ExactTokens(_config(store_url), "secret-1", clock=Clock(), sleep=sleep)
    assert tokens.token() == "AT-w"
    assert sleeps == [0.2, 0.5]
    assert len(endpoint.forms) == 2


def test_invalid_grant_gives_up_after_four_waits(store_url, store, monkeypatch):
    Endpoint(monkeypatch, answers=[_refused()] * 5)
    _stored(store, expires_at=NOW)
    sleeps = []
    with pytest.raises(errors.CredentialsRefusedError) as caught:
        _tokens(store_url, sleeps=sleeps).token()
    assert sleeps == [0.2, 0.5, 1.0, 2.0]
    assert "RT0" not in str(caught.value) and "secret-1" not in str(caught.value)
    assert str(caught.value) == ("exact: token request -> HTTP 400: refresh token *** is no "
                                 "longer valid")


def test_other_refusals_are_not_waited_for(store_url, store, monkeypatch):
    Endpoint(monkeypatch, answers=[_refused("invalid_client", 401)])
    _stored(store, expires_at=NOW)
    with pytest.raises(errors.CredentialsRefusedError) as caught:
        _tokens(store_url, sleeps=[]).token()
    assert caught.value.body == {"error": "invalid_client"}


def test_an_unavailable_endpoint_is_not_waited_for(store_url, store, monkeypatch):
    Endpoint(monkeypatch, answers=[(503, {"error": "temporarily_unavailable"})])
    _stored(store, expires_at=NOW)
    sleeps = []
    with pytest.raises(errors.TransientApiError):
        _tokens(store_url, sleeps=sleeps).token()
    assert sleeps == []


class _MovingStore:
    """The link store, where other workers write the entry ``moves`` times between our read
    and our write (the last time by deleting it when ``delete``)."""

    def __init__(self, store, moves: int, delete: bool = False):
        self._store, self._moves, self._delete = store, moves, delete
        self.writes: list = []

    def read_state(self, key):
        return self._store.read_state(key)

    def write_state(self, key, value, expected):
        self.writes.append(expected)
        if self._moves:
            self._moves -= 1
            current = self._store.read_state(key)
            if self._delete and not self._moves:
                self._store.delete_state(key, current.version)
            else:
                self._store.write_state(key, {**current.value, "access_token": "late"},
                                        current.version)
        return self._store.write_state(key, value, expected)

    def close(self):
        pass


@pytest.mark.parametrize(("moves", "delete", "expected"), [
    (2, False, [1, 2, 3]),
    (1, True, [1, None]),
])
def test_a_rotated_token_is_saved_over_a_write_conflict(store_url, store, monkeypatch, moves,
                                                        delete, expected):
    Endpoint(monkeypatch)
    _stored(store, expires_at=NOW)
    tokens = _tokens(store_url)
    tokens._store = moving = _MovingStore(store, moves, delete)
    assert tokens.token() == "AT1"
    assert moving.writes == expected
    assert store.read_state(KEY).value["refresh_token"] == "RT1"   # ours, the valid one


def test_a_conflict_is_not_swallowed_by_the_store_wrapper(store):
    _stored(store)
    with pytest.raises(StaleStateError):
        _MovingStore(store, 1).write_state(KEY, {}, 1)


def test_the_store_is_opened_once_and_closed(store_url):
    tokens = _tokens(store_url)
    first = tokens.store()
    assert tokens.store() is first
    tokens.close()
    assert tokens._store is None
    assert tokens.store() is not first


def test_the_consent_code_is_traded_for_the_first_tokens(store_url, store, monkeypatch):
    endpoint = Endpoint(monkeypatch)
    monkeypatch.setenv("NOPE", "secret-1")
    entry = exact.exchange_code(_config(store_url), "CODE", "http://localhost/cb", store)
    assert endpoint.forms == [{"grant_type": "authorization_code", "code": "CODE",
                               "redirect_uri": "http://localhost/cb", "client_id": "cid",
                               "client_secret": "secret-1"}]
    assert (entry.key, entry.version) == (KEY, 1)
    assert entry.value["access_token"] == "AT1" and entry.value["refresh_token"] == "RT1"
    again = exact.exchange_code(_config(store_url), "CODE2", "http://localhost/cb", store)
    assert (again.version, again.value["refresh_token"]) == (2, "RT2")
    assert store.read_state(KEY) == again


def test_a_refused_consent_code_names_the_system(store_url, store, monkeypatch):
    Endpoint(monkeypatch, answers=[(400, {"error": "invalid_grant"})])
    monkeypatch.setenv("NOPE", "secret-1")
    with pytest.raises(errors.CredentialsRefusedError) as caught:
        exact.exchange_code(_config(store_url), "CODE", "http://localhost/cb", store)
    assert str(caught.value) == "exact: token request -> HTTP 400: invalid_grant"
    assert store.read_state(KEY) is None


def test_urls_of_the_token_endpoint_and_the_consent_page():
    assert exact.token_url(BASE + "/") == TOKEN_URL
    assert exact.token_url("https://h.invalid/apiX/") == "https://h.invalid/apiX/oauth2/token"
    assert exact.tokens_key("x") == "tokens/x"
    assert exact.authorize_url(BASE + "/", "cid", "http://localhost/cb", "st") == (
        BASE + "/oauth2/auth?client_id=cid&redirect_uri=http%3A%2F%2Flocalhost%2Fcb"
        "&response_type=code&state=st&force_login=0")


def test_grant_masks_every_secret_of_the_form_and_what_was_issued(monkeypatch):
    Endpoint(monkeypatch, answers=[(400, {"error": "invalid_request",
                                          "error_description": "S3 C0DE R3 AT9 RT9 ok"})])
    with pytest.raises(errors.PermanentApiError) as caught:
        exact._grant(TOKEN_URL, {"client_secret": "S3", "refresh_token": "R3", "code": "C0DE"},
                     "exact", issued=["AT9", "RT9"])
    assert str(caught.value) == "exact: token request -> HTTP 400: *** *** *** *** *** ok"


def test_grant_adds_what_it_issued(monkeypatch):
    Endpoint(monkeypatch, answers=[(200, {"access_token": "A", "refresh_token": "R"}),
                                   (200, {"access_token": "A2"})])
    issued = ["old"]
    assert exact._grant(TOKEN_URL, {}, "exact", issued)["access_token"] == "A"
    assert issued == ["old", "A", "R"]
    exact._grant(TOKEN_URL, {}, "exact", issued)
    assert issued == ["old", "A", "R", "A2", ""]
    assert exact._grant(TOKEN_URL, {}, "exact") == {"access_token": "AT1", "refresh_token": "RT1",
                                                    "expires_in": "600"}


# --- connectors.auth.grant: the one call of a token endpoint -------------------------------

class _Post:
    def __init__(self, status=200, body=None, text=None, raises=None):
        self.calls = []
        self._status, self._body, self._text, self._raises = status, body, text, raises

    def __call__(self, url, **kwargs):
        self.calls.append((url, kwargs))
        if self._raises is not None:
            raise self._raises
        response = requests.Response()
        response.status_code = self._status
        response._content = (self._text if self._text is not None else
                             __import__("json").dumps(self._body)).encode()
        return response


def _grant(post, **kwargs):
    return auth.grant(post, "https://t.invalid/token", {"client_secret": "S"}, system="sys",
                      masker=secrets.Masker(["S"]), **kwargs)


def test_grant_posts_the_form_once_without_redirects():
    post = _Post(body={"access_token": "A", "expires_in": 5})
    assert _grant(post, timeout_s=7.0) == {"access_token": "A", "expires_in": 5}
    assert post.calls == [("https://t.invalid/token", {
        "data": {"client_secret": "S"}, "timeout": (5.0, 7.0),
        "headers": {"Accept": "application/json"}, "allow_redirects": False})]
    _grant(post)
    assert post.calls[1][1]["timeout"] == (auth.TOKEN_CONNECT_TIMEOUT_S, 30.0)


@pytest.mark.parametrize(("status", "body", "kind", "message"), [
    (200, {"token_type": "bearer"}, errors.TransientApiError, "no access_token in the answer"),
    (200, ["access_token"], errors.TransientApiError, "['access_token']"),
    (201, {"error_description": "odd S"}, errors.TransientApiError, "odd ***"),
    (400, {"error": "invalid_grant"}, errors.CredentialsRefusedError, "invalid_grant"),
    (400, {"error": "invalid_scope", "error_description": "no S"}, errors.PermanentApiError,
     "no ***"),
    (401, {}, errors.CredentialsRefusedError, None),
    (500, {"error": "server_error"}, errors.TransientApiError, "server_error"),
    (300, {}, errors.rule_for_status(300).error, None),   # not a success: the policy decides
])
def test_grant_failures_follow_the_error_policy(status, body, kind, message):
    with pytest.raises(errors.ApiError) as caught:
        _grant(_Post(status, body))
    assert type(caught.value) is kind
    assert caught.value.status == status and caught.value.system == "sys"
    code = body.get("error") if isinstance(body, dict) else None
    assert caught.value.body == {"error": code}
    if message is None:
        message = errors.rule_for_token_answer(status, None).hint
    assert str(caught.value) == f"sys: token request -> HTTP {status}: {message}"


def test_a_non_json_answer_is_kept_as_text_up_to_a_limit():
    with pytest.raises(errors.TransientApiError) as caught:
        _grant(_Post(502, text="<html>" + "x" * 2000 + "S"))
    assert str(caught.value) == f"sys: token request -> HTTP 502: <html>{'x' * 994}"


def test_no_answer_is_the_failure_rules_error_masked():
    exc = requests.ConnectionError("refused for S")
    with pytest.raises(errors.ApiError) as caught:
        _grant(_Post(raises=exc))
    assert type(caught.value) is errors.rule_for_failure(exc).error
    assert str(caught.value) == ("sys: token request to https://t.invalid/token failed: "
                                 "ConnectionError: refused for ***")
    assert caught.value.system == "sys"
    assert caught.value.__suppress_context__
