"""Bearer tokens for :class:`~connectors.http.HttpClient`: the token protocol, one token call
shared by every OAuth2 grant, and the two token schemes the systems use.

* :func:`client_credentials`: OAuth2 client credentials (Entra ID for Business Central, Visma
  Connect for Business NXT) from ONE per-process cache keyed by token URL, client id and
  scope (and the secret's hash and provider fields): every connector of a process (the many
  DoFns of a run) shares one token, renewed shortly before it expires.
* :class:`RotatingRefreshTokens`: single-use (rotating) refresh tokens kept in a
  :class:`StateStore` entry shared by every worker (Exact Online; :mod:`connectors.exact`
  keeps only Exact's URLs, margins and wording).

msal and authlib are not used: neither keeps a token in a store shared by workers, and both
would still need this module's error policy and masking around them (docs/architecture.md,
"The connector kit").

:func:`grant` is the one call of a token endpoint (client credentials, authorization code and
refresh tokens). What its failures
mean comes from the error policy (:mod:`connectors.errors`): a refusal code
(``invalid_grant``, ``invalid_client``, ``unauthorized_client``) or 401/403 refuse the
credentials (:class:`~connectors.errors.CredentialsRefusedError`), other 4xx are permanent,
5xx transient, no answer at all :class:`~connectors.errors.UnreachableError`.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

import requests

from connectors import errors, secrets
from connectors.linkstore import StaleStateError
from core.model import StateEntry

#: seconds to connect to a token endpoint, and the default seconds to wait for its answer
TOKEN_CONNECT_TIMEOUT_S = 5.0
TOKEN_READ_TIMEOUT_S = 30.0
#: characters of a token endpoint's non-JSON answer kept as its error description
_ERROR_TEXT_LIMIT = 1000
#: seconds before its stated expiry that a cached token is replaced (clock skew, slow requests)
_TOKEN_EXPIRY_MARGIN_S = 120.0


class TokenProvider(Protocol):
    """Bearer tokens for :class:`~connectors.http.HttpClient` (the ``auth`` hook): OAuth2 and
    the like."""

    def token(self, refresh: bool = False) -> str:
        """A valid access token; ``refresh`` asks for a new one (the last was refused)."""

    def secrets(self) -> Iterable[str]:
        """The tokens handed out, to be masked wherever they could show."""


class TokenMasker:
    """A :class:`~connectors.secrets.Masker` that also masks every token ``auth`` handed out
    (so far: the set grows as tokens are renewed)."""

    def __init__(self, masker: secrets.Masker, auth: TokenProvider):
        self._masker = masker
        self._auth = auth

    def mask(self, text: str) -> str:
        return secrets.Masker(self._auth.secrets()).mask(self._masker.mask(text))


def grant(post: Callable[..., requests.Response], url: str, form: Mapping[str, str], *,
          system: str, masker: secrets.Masker,
          timeout_s: float = TOKEN_READ_TIMEOUT_S) -> dict[str, Any]:
    """One ``POST`` of ``form`` to the token endpoint ``url`` through ``post`` (a session's or
    ``requests.post``): the answer with its ``access_token``, or the :class:`ApiError` the
    error policy names for the failure, its message masked by ``masker``. The OAuth ``error``
    code of a refusal is kept in the exception's ``body``."""
    try:
        response = post(url, data=dict(form), timeout=(TOKEN_CONNECT_TIMEOUT_S, timeout_s),
                        headers={"Accept": "application/json"}, allow_redirects=False)
    except requests.RequestException as exc:
        rule = errors.rule_for_failure(exc)
        raise rule.error(masker.mask(f"{system}: token request to {url} failed: "
                                     f"{type(exc).__name__}: {exc}"), system=system) from None
    try:
        body = response.json()
    except ValueError:
        body = {"error_description": response.text[:_ERROR_TEXT_LIMIT]}
    status = response.status_code
    if status == 200 and isinstance(body, dict) and "access_token" in body:
        return body
    code = body.get("error") if isinstance(body, dict) else None
    detail = (body.get("error_description") or code) if isinstance(body, dict) else body
    if 200 <= status < 300:     # a success without a token: garbled, ask again later
        kind: type[errors.ApiError] = errors.TransientApiError
        detail = detail or "no access_token in the answer"
    else:
        rule = errors.rule_for_token_answer(status, code)
        kind, detail = rule.error, detail or rule.hint
    raise kind(masker.mask(f"{system}: token request -> HTTP {status}: {detail}"),
               status=status, system=system, body={"error": code})


class ClientCredentialsToken:
    """OAuth2 client-credentials tokens (RFC 6749 §4.4), as Entra ID and Visma Connect issue
    them: one ``POST`` of a form to ``token_url`` (:func:`grant`), the token cached until
    shortly before its ``expires_in``. Thread-safe: concurrent callers share one fetch."""

    def __init__(self, token_url: str, client_id: str, client_secret: str, scope: str, *,
                 system: str = "", timeout_s: float = TOKEN_READ_TIMEOUT_S,
                 clock: Callable[[], float] = time.monotonic,
                 extra_form: Mapping[str, str] | None = None):
        """``extra_form`` adds provider-specific fields to the token request (Visma Connect's
        ``tenant_id``)."""
        self._url = token_url
        self._form = {"grant_type": "client_credentials", "client_id": client_id,
                      "client_secret": client_secret, "scope": scope, **(extra_form or {})}
        self._system = system
        self._timeout_s = timeout_s
        self._clock = clock
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expires = 0.0
        self._issued: list[str] = []
        self._session = requests.Session()
        #: token requests made (they count as requests to the system)
        self.request_count = 0

    def secrets(self) -> Iterable[str]:
        return [self._form["client_secret"], *self._issued]

    def token(self, refresh: bool = False) -> str:
        with self._lock:
            if refresh or self._token is None or self._clock() >= self._expires:
                self._fetch()
            assert self._token is not None
            return self._token

    def _fetch(self) -> None:
        self.request_count += 1
        body = grant(self._session.post, self._url, self._form, system=self._system,
                     masker=secrets.Masker(self.secrets()), timeout_s=self._timeout_s)
        self._token = str(body["access_token"])
        self._issued.append(self._token)
        self._expires = self._clock() + float(body.get("expires_in", 3600)) - _TOKEN_EXPIRY_MARGIN_S

    def close(self) -> None:
        self._session.close()


#: the process's client-credentials tokens (see :func:`client_credentials`)
_TOKENS: dict[tuple[str, ...], ClientCredentialsToken] = {}
_TOKENS_LOCK = threading.Lock()


def client_credentials(token_url: str, client_id: str, client_secret: str, scope: str, *,
                       system: str = "", extra_form: Mapping[str, str] | None = None
                       ) -> ClientCredentialsToken:
    """The process's one token cache of this client: shared by every connector that asks
    with the same token URL, client id, scope, provider fields and secret (a changed secret
    is a new client), so the many connectors of a run's DoFns share a token instead of each
    fetching its own (Entra ID and Visma Connect throttle token requests too)."""
    extra = tuple(sorted((extra_form or {}).items()))
    key = (token_url, client_id, scope, repr(extra),
           hashlib.sha256(client_secret.encode()).hexdigest())
    with _TOKENS_LOCK:
        if key not in _TOKENS:
            _TOKENS[key] = ClientCredentialsToken(token_url, client_id, client_secret, scope,
                                                  system=system, extra_form=extra_form)
        return _TOKENS[key]


def forget_tokens() -> None:
    """Empty the process's client-credentials cache (tests; each then fetches its own)."""
    with _TOKENS_LOCK:
        _TOKENS.clear()


# --------------------------------------------------------------------------------------------
# Rotating refresh tokens


class StateStore(Protocol):
    """Where rotating tokens are kept: small versioned entries with compare-and-set writes
    (the link store, :class:`~connectors.linkstore.LinkStore`, is one). A write whose
    ``expected_version`` is not the entry's raises
    :class:`~connectors.linkstore.StaleStateError`."""

    def read_state(self, key: str) -> StateEntry | None: ...

    def write_state(self, key: str, value: dict[str, Any],
                    expected_version: int | None) -> StateEntry: ...


#: how long a worker whose refresh was refused waits for the worker that rotated first
ROTATION_WAITS = (0.2, 0.5, 1.0, 2.0)


def grant_tokens(url: str, form: Mapping[str, str], system: str,
                 issued: list[str] | None = None) -> dict[str, Any]:
    """One call of a token endpoint (:func:`grant`) with every secret of ``form`` and
    ``issued`` masked: the tokens, which join ``issued``. A refusal (``invalid_grant``: a used
    or rotated refresh token, a spent code; ``invalid_client``) is a
    :class:`~connectors.errors.CredentialsRefusedError` whose ``body`` keeps the OAuth error
    code."""
    masker = secrets.Masker([form.get("client_secret", ""), form.get("refresh_token", ""),
                             form.get("code", ""), *(issued or [])])
    body = grant(requests.post, url, form, system=system, masker=masker)
    if issued is not None:
        issued += [str(body["access_token"]), str(body.get("refresh_token", ""))]
    return body


def entry_value(body: Mapping[str, Any], now: float, default_expiry_s: float) -> dict[str, Any]:
    """The state entry of a token answer (``expires_in`` may come as a string)."""
    return {"access_token": str(body["access_token"]), "refresh_token": str(body["refresh_token"]),
            "expires_at": now + float(body.get("expires_in") or default_expiry_s),
            "refreshed_at": now}


def store_first_tokens(store: StateStore, key: str, body: Mapping[str, Any], now: float,
                       default_expiry_s: float) -> StateEntry:
    """The tokens of a one-time consent stored under ``key`` (replacing earlier ones)."""
    current = store.read_state(key)
    return store.write_state(key, entry_value(body, now, default_expiry_s),
                             current.version if current else None)


class RotatingRefreshTokens:
    """Access tokens from single-use refresh tokens, shared through the state entry ``key``
    (access token, its expiry, refresh token) by every worker of every process.

    A token is refreshed only when the stored access token has expired (less ``margin_s``) or
    was refused, and the new refresh token is written (compare-and-set on the version read)
    *before* the new access token is used, so a crash never loses the only valid one. A
    worker whose refresh is refused because another rotated first waits for, and uses, the
    other's entry. Thread-safe; one instance per process and system.

    Subclasses name the store (:meth:`store`), the error of an empty entry
    (:meth:`consent_missing`); ``store`` may also be replaced on an instance (tests).
    """

    def __init__(self, token_url: str, key: str, client_id: str, client_secret: str, *,
                 system: str, margin_s: float, default_expiry_s: float,
                 refresh_floor_s: float = 0.0,
                 clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep):
        self._url = token_url
        self._key = key
        self._system = system
        self._client = {"client_id": client_id, "client_secret": client_secret}
        self._margin_s = margin_s
        self._default_expiry_s = default_expiry_s
        #: the system declines a refresh sooner than this after the previous one
        self._refresh_floor_s = refresh_floor_s
        self._clock, self._sleep = clock, sleep
        self._lock = threading.Lock()
        self._access: str | None = None
        self._expires = 0.0
        self._seen: list[str] = []
        #: token requests made (they count as requests to the system)
        self.request_count = 0

    def store(self) -> StateStore:
        """The store the tokens are kept in."""
        raise NotImplementedError

    def consent_missing(self) -> errors.ApiError:
        """The error when no tokens are stored (the one-time consent was not given)."""
        return errors.ConsentMissingError(f"{self._system}: no tokens stored",
                                          system=self._system)

    def secrets(self) -> Iterable[str]:
        return [self._client["client_secret"], *self._seen]

    def token(self, refresh: bool = False) -> str:
        with self._lock:
            if not refresh and self._access and self._clock() < self._expires:
                return self._access
            refused = self._access if refresh else None
            waits = list(ROTATION_WAITS)
            floor_waited = False
            declined: tuple[int, errors.ApiError] | None = None   # the entry not refreshed
            while True:
                entry = self._entry()
                value = entry.value
                now = self._clock()
                if value["access_token"] != refused and \
                        now < value["expires_at"] - self._margin_s:
                    return self._use(value)
                if declined is None or declined[0] != entry.version:
                    # a declined refresh is not sent again for the same entry: each refusal
                    # may count towards the system's limit of failed token requests
                    try:
                        body = self._refresh(value["refresh_token"])
                    except errors.CredentialsRefusedError as exc:
                        if not self.declined(exc):
                            raise
                        declined = (entry.version, exc)
                    else:
                        return self._use(self._persist(
                            entry, entry_value(body, self._clock(), self._default_expiry_s)))
                # the refresh was declined: too early, or another worker rotated first and
                # its entry is on the way
                if value["access_token"] != refused and now < value["expires_at"]:
                    return self._use(value, until=value["expires_at"])   # still taken
                if waits:
                    self._sleep(waits.pop(0))
                    continue
                early = float(value.get("refreshed_at", 0.0)) + self._refresh_floor_s - now
                if early > 0 and not floor_waited:   # the access token was refused: wait
                    floor_waited, declined = True, None   # out the floor, then once more
                    self._sleep(early)
                    continue
                raise declined[1]

    def declined(self, exc: errors.ApiError) -> bool:
        """Whether the system declined a refresh it may take later, or because another worker
        rotated the refresh token first (``invalid_grant``, RFC 6749 5.2); not a wrong
        client secret. Systems with other forms override it."""
        return (exc.body or {}).get("error") == "invalid_grant"

    def _entry(self) -> StateEntry:
        """The stored tokens (every token in them joins the masked secrets)."""
        entry = self.store().read_state(self._key)
        if entry is None:
            raise self.consent_missing()
        self._seen += [t for t in (entry.value["access_token"], entry.value["refresh_token"])
                       if t not in self._seen]
        return entry

    def _refresh(self, refresh_token: str) -> dict[str, Any]:
        self.request_count += 1
        return grant_tokens(self._url, {"grant_type": "refresh_token",
                                        "refresh_token": refresh_token, **self._client},
                            self._system, issued=self._seen)

    def _persist(self, read: StateEntry, value: dict[str, Any]) -> dict[str, Any]:
        """Store the new tokens before anyone uses them. The system has just rotated the
        refresh token to ours, so ours is the valid one even if the entry moved since it was
        read."""
        expected: int | None = read.version
        while True:
            try:
                self.store().write_state(self._key, value, expected)
                return value
            except StaleStateError:
                current = self.store().read_state(self._key)
                expected = current.version if current else None

    def _use(self, value: Mapping[str, Any], until: float | None = None) -> str:
        """Use the entry's access token until ``until`` (default: its refresh is due)."""
        access = str(value["access_token"])
        self._access = access
        self._expires = value["expires_at"] - self._margin_s if until is None else until
        return access
