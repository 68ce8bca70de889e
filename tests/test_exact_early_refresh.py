"""A refresh sooner than Exact allows, in both of the forms it may take (issue 16, point 5).

Exact's knowledge base (OAuth step 3, "Do not request a new access token too early", quoted in
ossobv/exactonline ``exactonline/api/autorefresh.py``) says such a refresh "will be rejected
with response code 401 and reason Access Token not expired"; the emulator answered 400
``invalid_grant`` until issue 16, and clients report both. ``POST /_sandbox/oauth
{"early_refresh": 400|401}`` picks the form, and the connector must treat them the same:
keep using the stored access token while Exact still takes it, and when that token is spent
or refused, wait for the refresh floor (570 s after the last refresh) and refresh then — never
fail the run with "credentials refused", and never ask Exact again for nothing.
"""

from __future__ import annotations

import pytest

from connectors import exact
from connectors.stores import open_link_store
from sandbox import exact_oauth, exact_reference
from tests.test_connector_exact import SYSTEM, Exact, FakeTime

ITEM = "00000000-0000-4000-8000-000000000001"


@pytest.fixture(params=[400, 401], ids=["400-invalid_grant", "401-knowledge-base"])
def early(request, sandbox_of, tmp_path, monkeypatch):
    """The emulator refusing early refreshes in one form, on one fake clock with the
    connector's (the token clock moves only when the connector sleeps)."""
    env = Exact(sandbox_of(SYSTEM), tmp_path)
    fake = FakeTime()
    monkeypatch.setattr(exact_oauth, "time", fake)
    monkeypatch.setattr(exact_reference, "time", fake)
    env.clock, env.wait = fake.time, fake.sleep
    env.fake = fake
    env.control("/_sandbox/oauth", {"early_refresh": request.param})
    yield env
    env.control("/_sandbox/oauth", {"early_refresh": 400})


def _rewrite_entry(env, **changes) -> int:
    with open_link_store(env.store_url) as store:
        entry = store.read_state(exact.tokens_key(SYSTEM))
        return store.write_state(exact.tokens_key(SYSTEM), {**entry.value, **changes},
                                 entry.version).version


def _statuses(entries) -> list[int]:
    return [e["status"] for e in entries]


def test_a_declined_early_refresh_keeps_the_token_exact_still_takes_then_waits_for_the_floor(
        early, request):
    form = request.node.callspec.params["early"]
    # our clock says the stored access token is due for a refresh; Exact's says it is not
    version = _rewrite_entry(early, expires_at=early.fake.now + 20)
    connector = early.connector()

    connector.get("Items", [ITEM])
    connector.get("Items", [ITEM])
    assert _statuses(early.token_requests()) == [form]        # declined once, not asked again
    assert _statuses(early.log()) == [200, 200]                # the stored token still works
    assert early.stored()["version"] == version

    early.fake.sleep(30)                                       # now the token is spent here too
    connector.get("Items", [ITEM])
    assert _statuses(early.token_requests()) == [form, form, 200]   # waited, then refreshed
    assert _statuses(early.log()) == [200, 200, 200]
    assert early.stored()["version"] == version + 1
    assert max(early.sleeps) > 400                             # the wait for the floor


def test_an_access_token_refused_during_the_floor_is_renewed_once_the_floor_passes(
        early, request):
    form = request.node.callspec.params["early"]
    _rewrite_entry(early, access_token="gAAAAABrevoked-elsewhere")   # Exact refuses it now
    connector = early.connector()

    connector.get("Items", [ITEM])

    assert _statuses(early.log()) == [401, 200]
    assert _statuses(early.token_requests()) == [form, 200]
    waited = sum(early.sleeps)
    assert exact.REFRESH_FLOOR_S - 60 < waited <= exact.REFRESH_FLOOR_S + 5
