"""Secrets in system settings: resolving references and keeping the values out of messages.

A setting that holds a secret is a *reference*, never the secret itself, so configs can be
committed and pipeline options never carry credentials:

- ``${NAME}`` (anywhere in the value, e.g. ``"Bearer ${TOKEN}"``) is replaced by the environment
  variable ``NAME``;
- ``secretmanager://projects/P/secrets/S/versions/V`` names a Google Secret Manager version.

Connectors resolve their settings themselves (in ``__init__``, i.e. in a DoFn's ``setup`` on the
worker) and hand the resolved values to a :class:`Masker`, which the HTTP layer applies to every
message it surfaces.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterable, Mapping

_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_SECRET_MANAGER_SCHEME = "secretmanager://"
_SECRET_MANAGER_NAME = re.compile(r"^projects/[^/]+/secrets/[^/]+/versions/[^/]+$")
#: what a secret is replaced with in messages
MASK = "***"


class SecretError(ValueError):
    """A secret reference that cannot be resolved (a configuration error)."""


def resolve(value: str, environ: Mapping[str, str] = os.environ) -> str:
    """``value`` with its secret references replaced by the secrets they name."""
    if not isinstance(value, str):
        raise SecretError(f"a secret setting must be a string, not {type(value).__name__}")
    if value.startswith(_SECRET_MANAGER_SCHEME):
        return _resolve_secret_manager(value[len(_SECRET_MANAGER_SCHEME):])

    def substitute(match: re.Match) -> str:
        name = match.group(1)
        if name not in environ:
            raise SecretError(
                f"environment variable {name} is not set; export {name}=... "
                "before running (the config refers to it as ${" + name + "})")
        return environ[name]

    return _ENV_REFERENCE.sub(substitute, value)


def _resolve_secret_manager(name: str) -> str:
    """The value of a Secret Manager version (``talksync[gcp]``), read once per process.

    Called where the connector is built, i.e. on the worker, with the worker's service
    account (it needs ``roles/secretmanager.secretAccessor`` on the secret).
    """
    if not _SECRET_MANAGER_NAME.match(name):
        raise SecretError(
            f"malformed secret reference {_SECRET_MANAGER_SCHEME}{name}; expected "
            f"{_SECRET_MANAGER_SCHEME}projects/PROJECT/secrets/NAME/versions/VERSION")
    with _SECRET_MANAGER_LOCK:
        if name not in _SECRET_MANAGER_VALUES:
            _SECRET_MANAGER_VALUES[name] = _access_secret_version(name)
        return _SECRET_MANAGER_VALUES[name]


#: Secret Manager values already read by this process, by version name
_SECRET_MANAGER_VALUES: dict[str, str] = {}
_SECRET_MANAGER_LOCK = threading.Lock()


def _access_secret_version(name: str) -> str:
    try:
        from google.api_core import exceptions
        from google.cloud import secretmanager
    except ImportError:
        raise SecretError(
            f"cannot resolve {_SECRET_MANAGER_SCHEME}{name}: the Secret Manager backend needs "
            "talksync[gcp], which the lock includes "
            "(pip install --require-hashes --no-deps -r requirements.txt); "
            "it is not installed here, use a ${ENV} reference instead") from None
    try:
        client = secretmanager.SecretManagerServiceClient()
        response = client.access_secret_version(request={"name": name})
    except exceptions.GoogleAPICallError as exc:
        raise SecretError(
            f"cannot read {_SECRET_MANAGER_SCHEME}{name}: {type(exc).__name__}: "
            f"{exc.message}; the service account that runs talksync needs "
            "roles/secretmanager.secretAccessor on the secret") from None
    except Exception as exc:  # no credentials, no network: say which secret, not the client's trace
        raise SecretError(f"cannot read {_SECRET_MANAGER_SCHEME}{name}: "
                          f"{type(exc).__name__}: {exc}") from None
    return response.payload.data.decode("utf-8")


class Masker:
    """Replaces known secret values with ``***`` in any text."""

    def __init__(self, secrets: Iterable[str] = ()):
        # Longest first, so a secret that contains another is masked whole.
        self._secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def mask(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, MASK)
        return text
