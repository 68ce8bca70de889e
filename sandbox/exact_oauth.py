"""Exact Online's OAuth2 authorization server as the emulator runs it, for :mod:`sandbox.exact`:
single-use authorization codes, 600-s access tokens, single-use (rotating) refresh tokens and
the refusal of a refresh sooner than 570 s after the previous one.

Where Exact's answer is uncertain the emulator can give either form (issue 16, point 5): a
refresh that comes too early is refused as 400 ``invalid_grant`` (what the emulator always
said) or as 401, the form Exact's knowledge base describes ("your call will be rejected with
response code 401 and reason Access Token not expired", quoted in ossobv/exactonline
``exactonline/api/autorefresh.py``; Exact's token endpoint answers its 401s with OAuth's JSON,
``unauthorized_client``, picqer/exact-php-client#644). ``POST /_sandbox/oauth
{"early_refresh": 401}`` chooses.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections.abc import Mapping
from typing import Any

from sandbox.emulator import constant_time_equal

ACCESS_TOKEN_LIFETIME_S = 600
#: Exact refuses a refresh sooner than this after the previous one
REFRESH_FLOOR_S = 570
AUTH_CODE_LIFETIME_S = 180
#: the two forms of the early-refresh refusal
EARLY_REFRESH_FORMS = (400, 401)

#: an answer of the token endpoint: status, JSON body, headers
Answer = tuple[int, dict[str, Any], dict[str, str]]


class ExactOAuth:
    """Codes, access tokens and the one current refresh token of the sandbox's app and user.
    Thread-safe; token time can be moved on (``expire``) so tests need not wait 10 minutes."""

    def __init__(self, client_id: str, client_secret: str):
        self._client_id, self._client_secret = client_id, client_secret
        self._lock = threading.Lock()
        self._offset = 0.0
        self._codes: dict[str, tuple[float, str]] = {}
        self._access: dict[str, float] = {}
        self._refresh: str | None = None
        self._refreshed_at = 0.0
        self._issued_refresh = 0
        #: the status of the early-refresh refusal: 400 ``invalid_grant`` or 401
        self.early_refresh = 400

    def now(self) -> float:
        return time.time() + self._offset

    def valid(self, access_token: str) -> bool:
        with self._lock:
            expires = self._access.get(access_token)
        return expires is not None and expires > self.now()

    def new_code(self, redirect_uri: str) -> str:
        code = "stampNL001." + secrets.token_urlsafe(24)
        with self._lock:
            self._codes[code] = (self.now() + AUTH_CODE_LIFETIME_S, redirect_uri)
        return code

    def token(self, form: Mapping[str, str]) -> Answer:
        """``POST /api/oauth2/token``: the ``authorization_code`` and ``refresh_token`` grants."""
        if form.get("client_id") != self._client_id or not constant_time_equal(
                form.get("client_secret"), self._client_secret):
            return _refusal(400, "invalid_client", "Invalid client credentials.")
        grant = form.get("grant_type")
        with self._lock:
            now = self.now()
            if grant == "authorization_code":
                entry = self._codes.pop(form.get("code", ""), None)
                if entry is None or entry[0] < now or entry[1] != form.get("redirect_uri"):
                    return _refusal(400, "invalid_grant", "The authorization code is invalid, "
                                                          "expired or was already used.")
            elif grant == "refresh_token":
                presented = form.get("refresh_token")
                if self._refresh is None or not constant_time_equal(presented, self._refresh):
                    return _refusal(400, "invalid_grant", "Old refresh token used.")
                if now - self._refreshed_at < REFRESH_FLOOR_S:
                    return self._too_early()
            else:
                return _refusal(400, "unsupported_grant_type", f"grant_type {grant!r}")
            access = "gAAAAAB" + secrets.token_urlsafe(32)
            self._refresh = refresh = "Rf1!" + secrets.token_urlsafe(32)
            self._issued_refresh += 1
            self._refreshed_at = now
            self._access = {t: e for t, e in self._access.items() if e > now}
            self._access[access] = now + ACCESS_TOKEN_LIFETIME_S
        return 200, {"access_token": access, "token_type": "bearer",
                     "expires_in": str(ACCESS_TOKEN_LIFETIME_S), "refresh_token": refresh}, {}

    def _too_early(self) -> Answer:
        """The refusal of a refresh within 570 s, in the chosen form (the refresh token stays
        valid either way)."""
        if self.early_refresh == 401:
            status, body, headers = _refusal(401, "unauthorized_client",
                                             "Access Token not expired")
            return status, body, {**headers, "Reason": "Access Token not expired"}
        return _refusal(400, "invalid_grant", f"Access token requested too early: a new access "
                                              f"token can be requested {REFRESH_FLOOR_S} seconds "
                                              f"after the previous one.")

    def expire(self) -> int:
        """Token time jumps 600 s: every access token expires, a refresh is allowed again."""
        with self._lock:
            self._offset += ACCESS_TOKEN_LIFETIME_S
            return sum(1 for e in self._access.values() if e <= self.now())

    def status(self) -> dict[str, Any]:
        with self._lock:
            current = (hashlib.sha256(self._refresh.encode()).hexdigest()
                       if self._refresh else None)
            return {"refresh_tokens_issued": self._issued_refresh,
                    "current_refresh_token_sha256": current}


def _refusal(status: int, error: str, description: str) -> Answer:
    return status, {"error": error, "error_description": description}, {}
