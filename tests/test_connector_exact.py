"""The Exact Online connector against the emulator over HTTP: tokens shared through the link
store and rotated once, sync cursors, paging, one entity per write, no 4xx retried, rate-limit
pacing and 429s."""

from __future__ import annotations

import datetime
import time
from decimal import Decimal

import pytest
import requests

from connectors import exact
from connectors.errors import PermanentApiError
from connectors.stores import open_link_store
from core.model import SystemConfig, WriteOp
from sandbox import exact as ex
from sandbox import exact_oauth, exact_reference
from sandbox.seed_exact import exact_seed
from tests.test_sync_exact_customwebshop import consent_code

SYSTEM = "exact"
#: what the emulator starts from (seed 42): the expected counts are computed from it
SEED = exact_seed(42)


class Exact:
    """The running emulator, a link store with talksync's first tokens, and connectors."""

    def __init__(self, sandbox, tmp_path, store_url=None):
        self.sandbox = sandbox
        self.store_url = store_url or f"sqlite:///{tmp_path / 'links.db'}"
        settings = ex.ExactOnline.connector_settings(sandbox.root_url(SYSTEM))
        self.config = SystemConfig(
            name=SYSTEM, type=SYSTEM, base_url=sandbox.url(SYSTEM),
            settings={**settings, "client_secret": sandbox.api_key(SYSTEM)},
            state_store=self.store_url)
        with open_link_store(self.store_url) as store:
            exact.exchange_code(self.config, consent_code(sandbox), settings["redirect_uri"], store)
        sandbox.clear_requests(SYSTEM)
        self.sleeps: list[float] = []
        #: the connectors' clock and sleep (a test may put both on a :class:`FakeTime`)
        self.clock, self.wait = time.time, time.sleep

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.wait(seconds)

    def connector(self, worker: str = "w1") -> exact.ExactConnector:
        """A connector as a separate worker process would have it (its own token cache)."""
        exact._SHARED.pop(("tokens", self.store_url, SYSTEM, self.config.base_url), None)
        exact._SHARED.pop(("rate", self.config.base_url, str(ex.DIVISION)), None)
        # ``sleep`` reaches the HTTP client too: its retry waits (a 429's) never really sleep
        return exact.ExactConnector(self.config, clock=lambda: self.clock(), sleep=self.sleep)

    def control(self, path: str, body=None) -> dict:
        response = requests.post(self.sandbox.root_url(SYSTEM) + path, json=body, timeout=10)
        assert response.status_code == 200, response.text
        return response.json()

    def log(self) -> list[dict]:
        return [e for e in self.sandbox.requests(SYSTEM)["log"] if "/oauth2/" not in e["path"]]

    def token_requests(self) -> list[dict]:
        return [e for e in self.sandbox.requests(SYSTEM)["log"] if "/oauth2/token" in e["path"]]

    def stored(self) -> dict:
        with open_link_store(self.store_url) as store:
            entry = store.read_state("tokens/exact")
        return {**entry.value, "version": entry.version}


@pytest.fixture
def ex_env(sandbox_of, tmp_path):
    return Exact(sandbox_of(SYSTEM), tmp_path)


class FakeTime:
    """One clock for the emulator's rate-limit windows (it runs in this process) and the
    connector: it moves only when the connector sleeps, so a window ends exactly when the
    connector waited for it, however slow the machine is."""

    def __init__(self):
        self.now = time.time()

    def time(self) -> float:
        return self.now

    monotonic = time

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def fake_time(ex_env, monkeypatch):
    fake = FakeTime()
    monkeypatch.setattr(exact_oauth, "time", fake)          # token lifetimes
    monkeypatch.setattr(exact_reference, "time", fake)     # the rate-limit windows
    ex_env.clock, ex_env.wait = fake.time, fake.sleep
    return fake


def test_reads_page_through_sync_and_start_after_the_checkpoint(ex_env):
    ex_env.control("/_sandbox/limits", {"bulk_page_size": 7})
    connector = ex_env.connector()
    ex_env.sandbox.clear_requests(SYSTEM)

    accounts = list(connector.read("Accounts"))

    assert len(accounts) == len({a.id for a in accounts}) == len(SEED["Accounts"])
    sync_pages = [e for e in ex_env.log() if e["path"].endswith("/sync/CRM/Accounts")]
    assert len(sync_pages) == -(-len(SEED["Accounts"]) // 7)    # 7 rows a page, rounded up
    account = accounts[0]
    assert account.fields["Code"].isdigit()                     # trimmed from 18 characters
    assert account.modified is not None and account.modified.tzinfo is not None
    assert account.fields["Modified"].endswith("Z")

    watermark = max(a.modified for a in accounts)
    [result] = connector.write([WriteOp("update", "Accounts", {"City": "Narvik"}, "r1",
                                        id=accounts[3].id)])
    assert result.ok and result.record.fields["City"] == "Narvik"
    ex_env.sandbox.clear_requests(SYSTEM)
    changed = list(connector.read("Accounts", watermark))
    # from the checkpoint below the watermark: the newest account again, and the edited one
    assert {r.id for r in changed} == {a.id for a in accounts if a.modified >= watermark} | {
        accounts[3].id}
    assert [r.fields["City"] for r in changed if r.id == accounts[3].id] == ["Narvik"]
    assert len([e for e in ex_env.log() if "/sync/CRM/Accounts" in e["path"]]) == 1

    bearer = {"Authorization": f"Bearer {ex_env.stored()['access_token']}"}
    deleted = requests.delete(f"{ex_env.sandbox.url(SYSTEM)}/v1/{ex.DIVISION}/crm/Accounts"
                              f"(guid'{accounts[4].id}')", headers=bearer, timeout=10)
    assert deleted.status_code == 204
    [gone] = [r for r in connector.read("Accounts", watermark) if r.deleted]
    assert gone.id == accounts[4].id and gone.modified > watermark

    orders = list(connector.read("SalesOrders"))
    assert len(orders) == len(SEED["SalesOrders"])
    assert all(o.fields["SalesOrderLines"] for o in orders)
    assert all(len(o.fields["OrderDate"]) == 10 for o in orders)        # a date
    line = orders[0].fields["SalesOrderLines"][0]
    assert isinstance(line["Quantity"], (int, Decimal)) and line["LineNumber"] == 1


def test_writes_are_one_entity_per_request_with_lines_nested_on_create(ex_env):
    connector = ex_env.connector()
    account = next(iter(connector.read("Accounts")))
    items = list(connector.read("Items"))
    ex_env.sandbox.clear_requests(SYSTEM)

    [created] = connector.write([WriteOp("create", "SalesOrders", {
        "OrderedBy": account.id, "YourRef": "10999", "OrderDate": "2026-02-01",
        "SalesOrderLines": [{"Item": items[0].id, "Quantity": Decimal("2"),
                             "UnitPrice": Decimal("12.50")},
                            {"Item": items[1].id, "Quantity": Decimal("1"),
                             "UnitPrice": Decimal("99")}]}, "c1")])
    assert created.ok, created.error
    order = created.record
    assert order.fields["YourRef"] == "10999" and order.fields["OrderDate"] == "2026-02-01"
    assert [line["Quantity"] for line in order.fields["SalesOrderLines"]] == [2, 1]
    assert [(e["method"], e["path"].rsplit("/", 1)[-1]) for e in ex_env.log()] == [
        ("POST", "SalesOrders")]

    ex_env.sandbox.clear_requests(SYSTEM)
    [updated] = connector.write([WriteOp("update", "SalesOrders", {"SalesOrderLines": [
        {"Item": items[0].id, "Quantity": Decimal("5"), "UnitPrice": Decimal("12.50")}],
        "Remarks": "gift wrap"}, "u1", id=order.id)])
    assert updated.ok, updated.error
    assert [line["Quantity"] for line in updated.record.fields["SalesOrderLines"]] == [5]
    assert updated.record.fields["Remarks"] == "gift wrap"
    writes = [(e["method"], e["path"].split("/")[-1].split("(")[0]) for e in ex_env.log()
              if e["method"] != "GET"]
    assert writes == [("PUT", "SalesOrders"), ("PUT", "SalesOrderLines"),
                      ("DELETE", "SalesOrderLines")]


def test_a_4xx_is_never_retried_and_carries_exacts_message(ex_env):
    connector = ex_env.connector()
    existing = list(connector.read("Items"))[0]
    ex_env.sandbox.clear_requests(SYSTEM)

    bad, dup = connector.write([
        WriteOp("create", "Items", {"Code": "NEW-1"}, "bad"),
        WriteOp("create", "Items", {"Code": existing.fields["Code"], "Description": "Again"},
                "dup")])

    assert isinstance(bad.error, PermanentApiError) and bad.error.status == 400
    assert bad.error.message.endswith("HTTP 400: Mandatory: Description")
    assert dup.ok and dup.adopted and dup.record.id == existing.id   # the code was there
    posts = [e for e in ex_env.log() if e["method"] == "POST"]
    assert [e["status"] for e in posts] == [400, 400]         # one request each, no retry
    ex_env.sandbox.clear_requests(SYSTEM)
    [missing] = connector.write([WriteOp("update", "Accounts", {"City": "X"}, "m",
                                         id="00000000-0000-4000-8000-000000000001")])
    assert missing.error.status == 404 and len(ex_env.log()) == 1


def test_requests_are_paced_by_the_rate_limit_headers_without_429s(ex_env, fake_time):
    ex_env.control("/_sandbox/limits", {"minutely": 4, "daily": 5000, "minute_s": 1})
    connector = ex_env.connector()
    ids = [a.id for a in connector.read("Accounts")][:10]
    ex_env.sandbox.clear_requests(SYSTEM)

    records = [connector.get("Accounts", [i])[0] for i in ids]

    assert [r.id for r in records] == ids
    statuses = [e["status"] for e in ex_env.log()]
    assert statuses == [200] * 10                              # paced, never refused
    assert len(ex_env.sleeps) >= 2 and all(0 < s <= 1.1 for s in ex_env.sleeps)


def test_a_429_waits_for_the_minutely_reset_then_succeeds(ex_env, fake_time):
    connector = ex_env.connector()
    ids = [a.id for a in connector.read("Accounts")][:2]
    ex_env.control("/_sandbox/limits", {"minutely": 2, "daily": 5000, "minute_s": 1})
    bearer = {"Authorization": f"Bearer {ex_env.stored()['access_token']}",
              "Accept": "application/json"}
    for _ in range(2):       # another client of the same division spends this minute's calls
        assert requests.get(f"{ex_env.sandbox.url(SYSTEM)}/v1/{ex.DIVISION}/crm/Accounts",
                            params={"$top": "1"}, headers=bearer, timeout=10).status_code == 200
    ex_env.sandbox.clear_requests(SYSTEM)

    [record] = connector.get("Accounts", ids[:1])

    assert record.id == ids[0]
    # refused once, then sent again after the reset the 429's headers named
    assert [e["status"] for e in ex_env.log()] == [429, 200]
    # waited through the connector's injected sleep (the HTTP client's retry wait)
    assert len(ex_env.sleeps) == 1 and 0 < ex_env.sleeps[0] <= 1.1, ex_env.sleeps


def test_every_read_and_write_filters_where_exact_makes_filtering_mandatory(ex_env):
    """Exact's "mandatory filtering on single and bulk endpoints where sync APIs are available"
    (API limits, 1 July 2021; a switch of the emulator, since whether it applies to every app
    is uncertain): the connector's reads, look-ups and writes never read such an endpoint
    unfiltered."""
    ex_env.control("/_sandbox/limits", {"mandatory_filter": True})
    connector = ex_env.connector()
    assert len(list(connector.read("Items"))) == len(SEED["Items"])
    assert len(list(connector.read("SalesOrders"))) == len(SEED["SalesOrders"])
    order = SEED["SalesOrders"][0]
    [result] = connector.write([WriteOp(kind="update", entity="SalesOrders", id=order["OrderID"],
                                        fields={"Remarks": "filtered"}, ref="r1")])
    assert result.error is None and result.record.fields["Remarks"] == "filtered"
    assert all(e["status"] < 400 for e in ex_env.log())


def test_workers_share_the_stored_tokens_and_rotate_once(ex_env):
    first, second = ex_env.connector("w1"), ex_env.connector("w2")
    assert first._tokens is not second._tokens
    first.get("Items", ["00000000-0000-4000-8000-000000000001"])
    second.get("Items", ["00000000-0000-4000-8000-000000000001"])
    assert ex_env.token_requests() == []        # the consent's access token is still valid
    version = ex_env.stored()["version"]

    ex_env.control("/_sandbox/expire-tokens")   # both workers now hold a refused token
    ex_env.sandbox.clear_requests(SYSTEM)
    first.get("Items", ["00000000-0000-4000-8000-000000000001"])
    second.get("Items", ["00000000-0000-4000-8000-000000000001"])

    assert [e["status"] for e in ex_env.token_requests()] == [200]   # one rotation in all
    assert [e["status"] for e in ex_env.log()] == [401, 200, 401, 200]
    assert ex_env.stored()["version"] == version + 1


def test_a_worker_that_lost_the_rotation_race_uses_the_winners_tokens(ex_env):
    ex_env.control("/_sandbox/expire-tokens")
    with open_link_store(ex_env.store_url) as store:      # the stored access token is old
        entry = store.read_state("tokens/exact")
        before = store.write_state("tokens/exact", {**entry.value, "expires_at": 0},
                                   entry.version)          # what the slower worker reads
    winner = exact.ExactTokens(ex_env.config, ex_env.sandbox.api_key(SYSTEM))
    loser = exact.ExactTokens(ex_env.config, ex_env.sandbox.api_key(SYSTEM), sleep=lambda s: None)
    won = winner.token()                                   # rotates and stores version 2

    class ReadBeforeTheWinnerWrote:
        """The loser's store: its first read happened before the winner's write landed."""

        def __init__(self, store):
            self._store, self._reads = store, 0

        def read_state(self, key):
            self._reads += 1
            return before if self._reads == 1 else self._store.read_state(key)

        def __getattr__(self, name):
            return getattr(self._store, name)

    proxy = ReadBeforeTheWinnerWrote(loser.store())
    loser.store = lambda: proxy

    assert loser.token() == won
    assert [e["status"] for e in ex_env.token_requests()] == [200, 400]   # its refresh: refused
    assert ex_env.stored()["version"] == before.version + 1               # nothing overwritten


def test_the_division_is_looked_up_when_not_configured(ex_env):
    settings = {k: v for k, v in ex_env.config.settings.items() if k != "division"}
    config = SystemConfig(name=SYSTEM, type=SYSTEM, base_url=ex_env.config.base_url,
                          settings=settings, state_store=ex_env.store_url)
    connector = exact.ExactConnector(config)
    assert len(list(connector.read("Items"))) == len(SEED["Items"])
    assert ex_env.log()[0]["path"] == "/api/v1/current/Me"


def test_a_refused_refresh_token_fails_permanently_and_says_what_to_do(ex_env):
    with open_link_store(ex_env.store_url) as store:
        entry = store.read_state("tokens/exact")
        store.write_state("tokens/exact", {**entry.value, "refresh_token": "Rf1!stale-token",
                                           "expires_at": 0}, entry.version)
    tokens = exact.ExactTokens(ex_env.config, ex_env.sandbox.api_key(SYSTEM),
                               sleep=lambda s: None)
    with pytest.raises(PermanentApiError) as raised:
        tokens.token()
    assert "Old refresh token used" in raised.value.message
    assert "Rf1!stale-token" not in raised.value.message
    # it waited for another worker's rotation (reading the entry, not asking Exact again: each
    # refused call counts towards Exact's 10 errors an hour), then for the refresh floor, and
    # asked once more
    assert [e["status"] for e in ex_env.token_requests()] == [400, 400]


# -- deletes ----------------------------------------------------------------------------------
# Exact's REST reference lists DELETE for crm/Accounts, logistics/Items and
# salesorder/SalesOrders (start.exactonline.nl/docs/HlpRestAPIResourcesDetails.aspx?name=
# CRMAccounts, …=LogisticsItems, …=SalesOrderSalesOrders) and records every deletion in
# sync/Deleted (…=SyncDeleted: EntityType 2 Accounts, 9 Items, 12 SalesOrders).


def _delete(record, ref: str) -> WriteOp:
    return WriteOp("delete", record.entity, {}, ref, id=record.id)


def test_a_delete_is_one_delete_request_and_shows_in_sync_deleted(ex_env):
    connector = ex_env.connector()
    before = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=1)
    gone = [list(connector.read(entity))[0] for entity in ("Accounts", "Items", "SalesOrders")]
    ex_env.sandbox.clear_requests(SYSTEM)

    results = connector.write([_delete(record, record.entity) for record in gone])

    assert all(r.ok and r.record is None for r in results), [r.error for r in results]
    assert [(e["method"], e["path"].split("/")[-1].split("(")[0], e["status"])
            for e in ex_env.log()] == [("DELETE", "Accounts", 204), ("DELETE", "Items", 204),
                                       ("DELETE", "SalesOrders", 204)]
    for record in gone:
        assert connector.get(record.entity, [record.id]) == []        # gone from every read
        deleted = [r for r in connector.read(record.entity, since=before) if r.id == record.id]
        assert [(r.deleted, r.fields) for r in deleted] == [(True, {})]
        assert deleted[0].modified is not None


def test_get_leaves_a_deleted_id_out(ex_env):
    connector = ex_env.connector()
    accounts = list(connector.read("Accounts"))[:3]
    assert connector.write([_delete(accounts[1], "d")])[0].ok

    assert {r.id for r in connector.get("Accounts", [a.id for a in accounts])} == {
        accounts[0].id, accounts[2].id}


def test_a_delete_of_an_entity_already_gone_is_a_success(ex_env):
    connector = ex_env.connector()
    order = list(connector.read("SalesOrders"))[0]
    assert connector.write([_delete(order, "first")])[0].ok
    ex_env.sandbox.clear_requests(SYSTEM)

    [again] = connector.write([_delete(order, "again")])

    assert again.ok and again.record is None
    assert [(e["method"], e["status"]) for e in ex_env.log()] == [("DELETE", 404)]  # no retry
