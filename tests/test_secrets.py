"""Secret references and masking (connectors.secrets)."""

import sys

import pytest

from connectors import secrets


def test_env_reference_is_replaced_anywhere_in_the_value():
    environ = {"SHOP_KEY": "k-123", "USER": "bob"}
    assert secrets.resolve("${SHOP_KEY}", environ) == "k-123"
    assert secrets.resolve("Bearer ${SHOP_KEY} for ${USER}", environ) == "Bearer k-123 for bob"


def test_value_without_references_is_unchanged():
    assert secrets.resolve("plain-value $HOME {X}", {}) == "plain-value $HOME {X}"


def test_missing_variable_names_it_and_says_to_export_it():
    with pytest.raises(ValueError) as caught:
        secrets.resolve("${TALKSYNC_MISSING_KEY}", {})
    assert isinstance(caught.value, secrets.SecretError)
    assert "TALKSYNC_MISSING_KEY" in str(caught.value)
    assert "export TALKSYNC_MISSING_KEY" in str(caught.value)


def test_default_environment_is_os_environ(monkeypatch):
    monkeypatch.setenv("TALKSYNC_TEST_SECRET", "from-env")
    assert secrets.resolve("${TALKSYNC_TEST_SECRET}") == "from-env"


def test_secret_manager_reference_needs_the_gcp_backend(monkeypatch):
    monkeypatch.setitem(sys.modules, "google.cloud.secretmanager", None)   # not installed
    if "google.cloud" in sys.modules:                                     # nor imported
        monkeypatch.delattr(sys.modules["google.cloud"], "secretmanager", raising=False)
    with pytest.raises(secrets.SecretError, match=r"talksync\[gcp\]") as caught:
        secrets.resolve("secretmanager://projects/p1/secrets/shop-key/versions/latest", {})
    assert "projects/p1/secrets/shop-key/versions/latest" in str(caught.value)


def test_malformed_secret_manager_reference_says_the_expected_form():
    with pytest.raises(secrets.SecretError, match="projects/PROJECT/secrets/NAME/versions/VERSION"):
        secrets.resolve("secretmanager://shop-key", {})


def test_non_string_setting_is_refused():
    with pytest.raises(secrets.SecretError, match="string"):
        secrets.resolve(12345, {})


def test_masker_replaces_every_secret_longest_first():
    masker = secrets.Masker(["abc", "abcdef", ""])
    assert masker.mask("key=abcdef, short=abc, none=xyz") == "key=***, short=***, none=xyz"


def test_masker_without_secrets_changes_nothing():
    assert secrets.Masker().mask("nothing to hide") == "nothing to hide"
