"""Bearer tokens for :class:`~connectors.http.HttpClient`: the token protocol, one token call
shared by every OAuth2 grant, and client-credentials tokens.

:func:`grant` is the one call of a token endpoint (client credentials here, Exact's
authorization code and rotating refresh tokens in :mod:`connectors.exact`). What its failures
mean comes from the error policy (:mod:`connectors.errors`): a refusal code
(``invalid_grant``, ``invalid_client``, ``unauthorized_client``) or 401/403 refuse the
credentials (:class:`~connectors.errors.CredentialsRefusedError`), other 4xx are permanent,
5xx transient, no answer at all :class:`~connectors.errors.UnreachableError`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

import requests

from connectors import errors, secrets

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
