"""Exact Online REST API (OData v2): accounts, items and sales orders of one division.

* Auth: OAuth2 authorization code with **single-use refresh tokens** (:class:`ExactTokens`).
  The tokens live in the link store's state entry ``tokens/<system>`` (access token, its
  expiry, refresh token), shared by every worker: a token is refreshed only when the stored
  access token has expired (Exact allows a refresh 570 s after the last one, access tokens
  live 600 s) or was refused, and the new refresh token is written (compare-and-set on the
  version read) *before* the new access token is used, so a crash never loses the only valid
  one. A worker whose refresh is refused because another rotated first waits for, and uses,
  the other's entry. A refresh Exact declines as too early (401, as its knowledge base says,
  or 400 ``invalid_grant``: both are handled alike) keeps the stored access token while Exact
  still takes it, else waits for the 570-s floor and refreshes then; a declined refresh is
  not asked again until the entry changes. ``talksync auth exact`` stores the first tokens
  (:func:`exchange_code`).
* Reads: the ``sync/`` endpoints with the ``Timestamp`` cursor (1,000 rows a page, ``__next``
  links) and ``sync/Deleted``. The engine's watermark is a modified time; the connector keeps
  checkpoints ``(modified, Timestamp)`` in the state entry ``cursors/<system>/<entity>``: every
  row at or below the Timestamp was modified at or before that time, so a read since ``t``
  starts after the newest checkpoint older than ``t``. Items and orders: the sync rows name
  what changed (item rows lack the sales price; order rows are one per line), which is then
  read whole by ``get``: ``bulk/`` endpoints, and sales orders with ``$expand=SalesOrderLines``,
  in ``$filter`` requests of up to 40 ids.
* Writes: one entity per request (Exact has no documented batch). Creates are ``POST`` with
  ``Prefer: return=representation`` (orders with their ``SalesOrderLines``); an item whose code
  exists is adopted. Updates are ``PUT`` of the changed properties (204), order lines changed
  one by one at ``SalesOrderLines(guid'…')``, then the entity is read back. Deletes are
  ``DELETE`` (204) of the account, item or order: the reference lists DELETE for all three, and
  Exact records each in ``sync/Deleted``, where readers (this one too) see it; 404 is gone
  already. Exact has no ETags: a delete is not conditional (``docs/api/exact.md``).
* Errors: Exact locks an API key after 10 client errors per hour per endpoint, so **no 4xx is
  ever retried** (the engine dead-letters it with Exact's message); 429 waits for
  ``X-RateLimit-Minutely-Reset`` (or ``Retry-After``), and :class:`RateHeaders` holds requests
  back once ``X-RateLimit-Minutely-Remaining`` reaches zero, so a run does not hammer the limit.
* Wire quirks stay here: ``/Date(ms)/`` date-times become ISO 8601 (dates as ``YYYY-MM-DD``),
  18-character right-aligned codes are trimmed, money and quantities are JSON numbers
  (``Decimal``).
"""

from __future__ import annotations

import datetime
import decimal
import random
import re
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from connectors import auth, odata, secrets
from connectors.errors import (
    ApiError,
    ConsentMissingError,
    PermanentApiError,
    TransientApiError,
)
from connectors.http import HttpConnector
from connectors.linkstore import LinkStore, StaleStateError
from connectors.paging import EXACT_NEXT, PageRequest
from connectors.rows import UnreadableRow, row_key, row_list, row_object, row_timestamp
from connectors.stores import open_link_store
from connectors.wire import describe_error_body
from core.model import (
    Record,
    StateEntry,
    SystemConfig,
    UnreadableRecord,
    WriteOp,
    WriteResult,
)

ACCOUNTS, ITEMS, ORDERS, LINES = "Accounts", "Items", "SalesOrders", "SalesOrderLines"
#: entity -> (service path, sync path, key property, sync/Deleted entity type)
ENDPOINTS: Mapping[str, tuple[str, str, str, int]] = {
    ACCOUNTS: ("crm/Accounts", "CRM/Accounts", "ID", 2),
    ITEMS: ("logistics/Items", "Logistics/Items", "ID", 9),
    ORDERS: ("salesorder/SalesOrders", "SalesOrder/SalesOrders", "OrderID", 12),
}
#: properties read per entity ($select is mandatory on sync and bulk endpoints)
SELECT: Mapping[str, tuple[str, ...]] = {
    ACCOUNTS: ("ID", "Code", "Name", "Status", "Email", "Phone", "VATNumber", "AddressLine1",
               "AddressLine2", "AddressLine3", "Postcode", "City", "State", "Country",
               "Website", "ChamberOfCommerce", "SalesCurrency", "Blocked", "Modified"),
    ITEMS: ("ID", "Code", "Description", "ExtraDescription", "Barcode", "StandardSalesPrice",
            "CostPriceStandard", "SalesVatCode", "Stock", "Unit", "IsSalesItem", "IsStockItem",
            "Modified"),
    ORDERS: ("OrderID", "OrderNumber", "OrderedBy", "OrderDate", "DeliveryDate", "Currency",
             "YourRef", "Description", "Remarks", "Status", "AmountFC", "Modified"),
    LINES: ("ID", "OrderID", "LineNumber", "Item", "ItemCode", "Description", "Quantity",
            "UnitPrice", "NetPrice", "Discount", "AmountFC", "VATCode", "DeliveryDate"),
}
#: entities whose sync rows only name what changed, read again whole: items (the sync rows
#: lack the sales price) and orders (one sync row per line)
READ_AGAIN = frozenset({ITEMS, ORDERS})
#: Edm.DateTime properties that hold a date (sent as midnight, read as ``YYYY-MM-DD``)
DATE_ONLY = frozenset({"OrderDate", "DeliveryDate"})
#: line properties a PUT of a line may carry
_LINE_WRITABLE = frozenset({"Item", "Description", "Quantity", "UnitPrice", "NetPrice",
                            "Discount", "VATCode", "DeliveryDate", "Notes", "UnitCode"})
#: ids per ``$filter`` of a ``get`` (Exact's URLs stay well under their 6,000 characters)
IDS_PER_REQUEST = 40
#: seconds before a stored access token's expiry that it counts as expired: 600 - 30 = 570,
#: Exact's minimum interval between two refreshes
TOKEN_MARGIN_S = 30.0
#: seconds an access token lives when Exact's answer does not say
ACCESS_TOKEN_S = 600.0
#: checkpoints kept per entity
_CHECKPOINTS = 50
#: Exact declines a refresh sooner than this after the previous one (its knowledge base, OAuth
#: step 3: "9 minutes and 30 seconds")
REFRESH_FLOOR_S = 570.0
_DATE = re.compile(r"^/Date\((-?\d+)\)/$")
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)


class ExactError(ApiError):
    """An answer of Exact's token endpoint."""


# --------------------------------------------------------------------------------------------
# Tokens


def token_url(base_url: str) -> str:
    return base_url.rstrip("/") + "/oauth2/token"


def authorize_url(base_url: str, client_id: str, redirect_uri: str, state: str) -> str:
    """Exact's consent page for ``client_id``; it redirects to ``redirect_uri?code=…``."""
    query = urllib.parse.urlencode({"client_id": client_id, "redirect_uri": redirect_uri,
                                    "response_type": "code", "state": state, "force_login": "0"})
    return f"{base_url.rstrip('/')}/oauth2/auth?{query}"


def _grant(url: str, form: Mapping[str, str], system: str,
           issued: list[str] | None = None) -> dict[str, Any]:
    """One call of Exact's token endpoint (:func:`connectors.auth.grant_tokens`)."""
    return auth.grant_tokens(url, form, system, issued)


def exchange_code(config: SystemConfig, code: str, redirect_uri: str,
                  store: LinkStore) -> StateEntry:
    """The one-time consent: trade an authorization ``code`` for the first tokens and store
    them under ``tokens/<system>`` (replacing earlier ones)."""
    settings = config.settings
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri,
            "client_id": str(settings["client_id"]),
            "client_secret": secrets.resolve(settings["client_secret"])}
    body = _grant(token_url(config.base_url), form, config.name)
    return auth.store_first_tokens(store, tokens_key(config.name), body, time.time(),
                                   ACCESS_TOKEN_S)


def tokens_key(system: str) -> str:
    return f"tokens/{system}"


class ExactTokens(auth.RotatingRefreshTokens):
    """Access tokens of one Exact app and user, rotated through the link store's state entry
    ``tokens/<system>`` (see the module docstring and
    :class:`~connectors.auth.RotatingRefreshTokens`). One instance per process and system
    (:func:`_shared`)."""

    def __init__(self, config: SystemConfig, client_secret: str, *,
                 clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep):
        if not config.state_store:
            raise ValueError(f"system {config.name!r} (exact): tokens are kept in the link "
                             "store; run it through talksync (SystemConfig.state_store is unset)")
        super().__init__(token_url(config.base_url), tokens_key(config.name),
                         str(config.settings["client_id"]), client_secret, system=config.name,
                         margin_s=TOKEN_MARGIN_S, default_expiry_s=ACCESS_TOKEN_S,
                         refresh_floor_s=REFRESH_FLOOR_S, clock=clock, sleep=sleep)
        self._state_store = config.state_store
        self._store: LinkStore | None = None

    def store(self) -> LinkStore:
        """The link store the tokens (and the read checkpoints) are kept in."""
        if self._store is None:
            self._store = open_link_store(self._state_store)
        return self._store

    def consent_missing(self) -> ApiError:
        return ConsentMissingError(
            f"{self._system}: no Exact tokens stored; run `talksync auth exact --system "
            f"{self._system}` once", system=self._system)

    def declined(self, exc: ApiError) -> bool:
        """Exact declined a refresh (and may take it later, or took another worker's): a
        refresh too early, which its knowledge base describes as 401 and which has also been
        seen as 400 ``invalid_grant``, or a refresh token another worker rotated
        (``invalid_grant``; 401 ``unauthorized_client``, picqer/exact-php-client#644). Not: a
        wrong client secret."""
        return exc.status == 401 or (exc.body or {}).get("error") in ("invalid_grant",
                                                                      "unauthorized_client")

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None


_SHARED: dict[tuple, Any] = {}
_SHARED_LOCK = threading.Lock()


def _shared(key: tuple, make: Callable[[], Any]) -> Any:
    """One instance per process and key: the connectors of a run's DoFns share tokens and
    rate-limit knowledge instead of each learning them on its own."""
    with _SHARED_LOCK:
        if key not in _SHARED:
            _SHARED[key] = make()
        return _SHARED[key]


# --------------------------------------------------------------------------------------------
# Rate limits


class RateHeaders:
    """Paces requests by Exact's ``X-RateLimit-*`` headers (a :class:`~connectors.http.Pacer`).

    Each answer says how many calls are left this minute and today and when each window resets
    (epoch milliseconds). Calls are counted down locally between answers; at zero the next call
    waits for the minutely reset. A spent daily limit fails the call (transient: the next run
    goes on). A 429 is retried after the minutely reset.
    """

    def __init__(self, system: str, clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep):
        self._system = system
        self._clock, self._sleep = clock, sleep
        self._lock = threading.Lock()
        self._minute_left: int | None = None
        self._minute_reset = 0.0
        self._day_left: int | None = None
        self._day_reset = 0.0

    def before_request(self) -> None:
        with self._lock:
            now = self._clock()
            if self._day_left is not None and self._day_left <= 0 and now < self._day_reset:
                reset = datetime.datetime.fromtimestamp(self._day_reset, datetime.UTC)
                raise TransientApiError(f"{self._system}: Exact's daily API limit is spent; it "
                                        f"resets at {reset.isoformat()}", status=429,
                                        system=self._system)
            wait = 0.0
            if self._minute_left is not None and self._minute_left <= 0:
                wait = max(0.0, min(self._minute_reset - now, 60.0))
                self._minute_left = None      # unknown until the next answer
            elif self._minute_left is not None:
                self._minute_left -= 1
            if self._day_left is not None:
                self._day_left -= 1
        if wait > 0:
            self._sleep(wait + random.uniform(0, 0.05))

    def after_response(self, status: int, headers: Mapping[str, str]) -> float | None:
        with self._lock:
            minute_left = _int(headers.get("X-RateLimit-Minutely-Remaining"))
            minute_reset = _epoch(headers.get("X-RateLimit-Minutely-Reset"))
            if minute_left is not None and minute_reset is not None:
                self._minute_left, self._minute_reset = minute_left, minute_reset
            day_left = _int(headers.get("X-RateLimit-Remaining"))
            day_reset = _epoch(headers.get("X-RateLimit-Reset"))
            if day_left is not None and day_reset is not None:
                self._day_left, self._day_reset = day_left, day_reset
            if status != 429:
                return None
            self._minute_left = None
            return max(0.0, min(self._minute_reset - self._clock(), 60.0)) + 0.05


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def _epoch(text: str | None) -> float | None:
    """A reset header as epoch seconds (Exact sends milliseconds)."""
    value = _int(text)
    if value is None:
        return None
    return value / 1000 if value > 10**11 else float(value)


# --------------------------------------------------------------------------------------------
# Values on the wire


def from_wire(name: str, value: Any) -> Any:
    """A value as Exact sends it, in the record's form: dates as ISO 8601, codes trimmed."""
    if isinstance(value, str):
        match = _DATE.match(value)
        if match:
            moment = _EPOCH + datetime.timedelta(milliseconds=int(match.group(1)))
            if name in DATE_ONLY:
                return moment.date().isoformat()
            return moment.isoformat().replace("+00:00", "Z")
        if name in ("Code", "ItemCode"):
            return value.strip()
    return value


def to_wire(name: str, value: Any) -> Any:
    """A record value as Exact takes it: dates as zone-less midnight."""
    if name in DATE_ONLY and isinstance(value, str) and len(value) == 10:
        return f"{value}T00:00:00"
    if isinstance(value, datetime.date) and not isinstance(value, datetime.datetime):
        return f"{value.isoformat()}T00:00:00"
    return value


class ExactConnector(HttpConnector):
    """A client of one Exact Online division.

    Settings: ``division`` (the administration number; looked up at ``current/Me`` when
    unset), ``client_id``, ``client_secret`` (a secret reference), ``redirect_uri`` (for
    ``talksync auth exact``), ``timeout_s``, ``max_retries``. ``base_url`` is the API root of
    the country's host, e.g. ``https://start.exactonline.nl/api``.
    """

    system_type = "exact"
    entities = (ACCOUNTS, ITEMS, ORDERS)
    max_batch_size = 1
    decimal_numbers = True
    default_page_size = 1000
    credential_settings = ("client_id", "client_secret")
    paginator = EXACT_NEXT

    def __init__(self, config: SystemConfig, *, clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep):
        if not config.settings.get("client_id"):
            raise ValueError(f"system {config.name!r} (exact): setting 'client_id' is required")
        secret = self._secret_setting(config, "client_secret")
        self._tokens = _shared(("tokens", config.state_store, config.name, config.base_url),
                               lambda: ExactTokens(config, secret, clock=clock, sleep=sleep))
        self._pacer = _shared(("rate", config.base_url, str(config.settings.get("division"))),
                              lambda: RateHeaders(config.name, clock=clock, sleep=sleep))
        super().__init__(config, headers={"Accept": "application/json"}, secret_values=(secret,),
                         auth=self._tokens, pacer=self._pacer, sleep=sleep)
        division = config.settings.get("division")
        self._division: str | None = str(division) if division else None

    @staticmethod
    def _describe_error(body: Any) -> str:
        """Exact's message from ``{"error": {"code", "message": {"lang", "value"}}}``."""
        error = body.get("error") if isinstance(body, Mapping) else None
        if not isinstance(error, Mapping):
            return describe_error_body(body)
        message = error.get("message")
        text = message.get("value") if isinstance(message, Mapping) else message
        return f"{error.get('code')}: {text}" if error.get("code") else str(text)

    # -- paths ------------------------------------------------------------------------------

    def _root(self) -> str:
        """``/v1/{division}``, looking the current division up once if it is not set."""
        if self._division is None:
            me = self._http.request("GET", "/v1/current/Me",
                                    params={"$select": "CurrentDivision"}).data
            self._division = str(me["d"]["results"][0]["CurrentDivision"])
        return f"/v1/{self._division}"

    def probe(self) -> None:
        """``current/Me``: the cheapest authenticated call, the one Exact's own clients make
        first."""
        self._http.request("GET", "/v1/current/Me", params={"$select": "CurrentDivision"})

    def stored_credentials(self) -> str | None:
        entry = self._tokens.store().read_state(tokens_key(self.name))
        if entry is None:
            return (f"no tokens in the link store: run `talksync auth exact --system "
                    f"{self.name}` once")
        refreshed = datetime.datetime.fromtimestamp(entry.value["refreshed_at"],
                                                    datetime.UTC)
        return f"tokens present (last refreshed {refreshed:%Y-%m-%d %H:%M} UTC)"

    def _set_path(self, entity: str) -> str:
        return f"{self._root()}/{ENDPOINTS[entity][0]}"

    def _entity_path(self, entity: str, entity_id: str | None) -> str:
        if entity_id is None or not odata.is_guid(entity_id):
            raise PermanentApiError(f"{self.name}: {entity} id {entity_id!r} is not a GUID",
                                    system=self.name)
        return f"{self._set_path(entity)}({odata.guid(entity_id)})"

    def _rows(self, path: str, params: dict[str, str] | None) -> Iterator[Any]:
        """The raw rows of every page, following ``d.__next``."""
        for rows in self.paginator.pages(self, PageRequest(path, params)):
            yield from rows

    def _key_field(self, entity: str) -> str:
        return ENDPOINTS[entity][2]

    # -- reading ----------------------------------------------------------------------------

    def read(self, entity: str, since: datetime.datetime | None = None
             ) -> Iterator[Record | UnreadableRecord]:
        self._check_entity(entity)
        return self._read(entity, since)

    def _read(self, entity: str, since: datetime.datetime | None
              ) -> Iterator[Record | UnreadableRecord]:
        cursors = _Cursors(self._tokens.store if self.config.state_store else None,
                           f"cursors/{self.name}/{entity}")
        start = cursors.start(since)
        _, sync_path, key, entity_type = ENDPOINTS[entity]
        whole = entity in READ_AGAIN
        select = ("Timestamp", key, "Modified") if whole else ("Timestamp", *SELECT[entity])
        rows = self._rows(f"{self._root()}/sync/{sync_path}",
                          {"$select": ",".join(select),
                           "$filter": odata.gt("Timestamp", odata.int64(start))})
        seen: set[str] = set()
        changed: list[str] = []
        for row in rows:
            cursors.see(row, "Modified")
            try:
                entity_id = row_key(row, key)
            except UnreadableRow:
                yield self._read_row(entity, row)     # unreadable: a dead letter, read on
                continue
            if entity_id in seen:
                continue
            seen.add(entity_id)
            if whole:
                changed.append(entity_id)
            elif entity != ACCOUNTS or row.get("Status") == "C":
                yield self._read_row(entity, row)
        if changed:
            yield from self.get(entity, changed)
        cursors.save()
        yield from self._deleted(entity, entity_type, since, seen)

    def _deleted(self, entity: str, entity_type: int, since: datetime.datetime | None,
                 seen: set[str]) -> Iterator[Record | UnreadableRecord]:
        """Entities deleted since ``since`` (``sync/Deleted``), as deleted records."""
        if since is None:
            return  # a full read has nothing to compare deletions with
        cursors = _Cursors(self._tokens.store if self.config.state_store else None,
                           f"cursors/{self.name}/Deleted/{entity}")
        start = cursors.start(since)
        rows = self._rows(f"{self._root()}/sync/Deleted", {
            "$select": "Timestamp,EntityKey,EntityType,DeletedDate",
            "$filter": odata.all_of(odata.gt("Timestamp", odata.int64(start)),
                                    odata.eq("EntityType", str(entity_type)))})
        for row in rows:
            cursors.see(row, "DeletedDate")
            try:
                entity_id = row_key(row, "EntityKey")
                if entity_id in seen:
                    continue
                when = {"DeletedDate": from_wire("DeletedDate", row.get("DeletedDate"))}
                modified = row_timestamp(when, "DeletedDate", required=False)
            except UnreadableRow as exc:
                yield UnreadableRecord(system=self.name, entity=entity, id=None,
                                       reason=f"unreadable {entity} deletion row: {exc}",
                                       payload=row)
                continue
            seen.add(entity_id)
            yield Record(system=self.name, entity=entity, id=entity_id, fields={},
                         modified=modified, deleted=True)
        cursors.save()

    def _orders(self, ids: Sequence[str]) -> list[Record | UnreadableRecord]:
        """Orders with their lines, by id (up to :data:`IDS_PER_REQUEST`)."""
        if not ids:
            return []
        clause = odata.any_of("OrderID", [odata.guid(i) for i in ids])
        return list(self._read_rows(ORDERS, PageRequest(
            self._set_path(ORDERS), {"$filter": clause, "$expand": LINES})))

    def get(self, entity: str, ids: Iterable[str]) -> list[Record | UnreadableRecord]:
        """The entities by id, in ``$filter`` requests of 40 ids (bulk endpoints for accounts
        and items); unknown ids are left out."""
        self._check_entity(entity)
        ids = [i for i in dict.fromkeys(ids) if odata.is_guid(i)]   # others cannot exist
        records: list[Record | UnreadableRecord] = []
        for start in range(0, len(ids), IDS_PER_REQUEST):
            chunk = ids[start:start + IDS_PER_REQUEST]
            if entity == ORDERS:
                records += self._orders(chunk)
                continue
            clause = odata.any_of("ID", [odata.guid(i) for i in chunk])
            records += self._read_rows(entity, PageRequest(
                f"{self._root()}/bulk/{ENDPOINTS[entity][1]}",
                {"$select": ",".join(SELECT[entity]), "$filter": clause}))
        return records

    def _readable(self, records: Iterable[Record | UnreadableRecord]) -> list[Record]:
        """The records a write reads back; one that is not a record fails the write."""
        out = []
        for record in records:
            if isinstance(record, UnreadableRecord):
                raise TransientApiError(f"{self.name}: {record.reason}", system=self.name)
            out.append(record)
        return out

    def _to_record(self, entity: str, data: Mapping[str, Any], etag: str | None) -> Record:
        entity_id = row_key(data, ENDPOINTS[entity][2])
        fields = {name: from_wire(name, value) for name, value in data.items()
                  if name not in ("__metadata", "Timestamp", LINES)}
        if entity == ORDERS:
            lines = data.get(LINES)
            lines = row_list(lines, "results") if isinstance(lines, Mapping) else (
                row_list(data, LINES))
            fields[LINES] = sorted(
                ({name: from_wire(name, value) for name, value in row_object(line).items()
                  if name != "__metadata"} for line in lines),
                key=lambda line: line.get("LineNumber") or 0)
        return Record(system=self.name, entity=entity, id=entity_id, fields=fields,
                      modified=row_timestamp(fields, "Modified", required=False))

    # -- writing ----------------------------------------------------------------------------

    def write(self, ops: Sequence[WriteOp]) -> list[WriteResult]:
        """Each op on its own requests; one result per op, an :class:`ApiError` as its error."""
        self._check_ops(ops)
        results = []
        for op in ops:
            try:
                record: Record | None
                if op.kind == "delete":
                    record, adopted = self._delete(op), False
                else:
                    record, adopted = (self._create(op) if op.kind == "create" else
                                       (self._update(op), False))
            except ApiError as exc:
                results.append(WriteResult(ref=op.ref, error=exc))
            else:
                results.append(WriteResult(ref=op.ref, record=record, adopted=adopted))
        return results

    @staticmethod
    def _body(fields: Mapping[str, Any]) -> dict[str, Any]:
        body = {}
        for name, value in fields.items():
            if name == LINES and isinstance(value, (list, tuple)):
                value = [{k: to_wire(k, v) for k, v in line.items()} for line in value]
            body[name] = to_wire(name, value)
        return body

    def _create(self, op: WriteOp) -> tuple[Record, bool]:
        body = self._body(op.fields)
        if op.entity == ACCOUNTS:
            body.setdefault("Status", "C")     # the accounts this connector syncs are customers
        try:
            answer = self._http.request("POST", self._set_path(op.entity), json=body,
                                        headers={"Prefer": "return=representation"})
        except PermanentApiError as exc:
            existing = self._existing_item(op, exc)
            if existing is None:
                raise
            return existing, True
        return self._to_record(op.entity, answer.data["d"], None), False

    def _existing_item(self, op: WriteOp, exc: ApiError) -> Record | None:
        """An item whose code exists already (our own create whose answer was lost, say)."""
        if op.entity != ITEMS or "already exists" not in exc.message or not op.fields.get("Code"):
            return None
        code = str(op.fields["Code"]).strip()
        literal = odata.string(code.rjust(18) if code.isdigit() else code)
        rows = self._readable(self._read_rows(ITEMS, PageRequest(
            f"{self._root()}/bulk/{ENDPOINTS[ITEMS][1]}",
            {"$select": ",".join(SELECT[ITEMS]), "$filter": odata.eq("Code", literal)})))
        return rows[0] if rows else None

    def _update(self, op: WriteOp) -> Record:
        assert op.id is not None        # _check_ops refused an update without one
        body = self._body(op.fields)
        lines = body.pop(LINES, None) if op.entity == ORDERS else None
        path = self._entity_path(op.entity, op.id)
        if body:
            self._http.request("PUT", path, json=body)
        if lines is not None:
            now = self._readable(self._orders([op.id]))
            if not now:
                raise PermanentApiError(f"{self.name}: sales order {op.id} was not found",
                                        status=404, system=self.name)
            self._change_lines(op.id, now[0].fields.get(LINES) or [], lines)
        found = self._readable(self._orders([op.id]) if op.entity == ORDERS else
                               self.get(op.entity, [op.id]))
        if not found:
            raise PermanentApiError(f"{self.name}: {op.entity} {op.id} was not found after the "
                                    "update", status=404, system=self.name)
        return found[0]

    def _delete(self, op: WriteOp) -> Record | None:
        """``DELETE`` of the entity, 204 (Exact's reference, e.g. CRMAccounts: "GET POST PUT
        DELETE"; the deletion then shows in ``sync/Deleted``); 404: gone already. Nothing of
        it is left to return. A delete Exact refuses (an account or item still in use) is the
        op's error."""
        try:
            self._http.request("DELETE", self._entity_path(op.entity, op.id))
        except PermanentApiError as exc:
            if exc.status != 404:
                raise
        return None

    def _change_lines(self, order_id: str, current: list, lines: list) -> None:
        """Turn the order's lines into ``lines``, position by position: a PUT of each changed
        line, a POST of each new one, a DELETE of each surplus one."""
        root = f"{self._root()}/salesorder/{LINES}"
        for line in current:
            if not odata.is_guid(line.get("ID")):
                # checked before any line is sent, so its lines are not left half changed
                raise PermanentApiError(f"{self.name}: sales order {order_id} has a line whose "
                                        f"ID {line.get('ID')!r} is not a GUID", system=self.name)
        for position, wanted in enumerate(lines):
            if position < len(current):
                line = current[position]
                changed = {k: v for k, v in wanted.items()
                           if k in _LINE_WRITABLE and not _same(line.get(k), v)}
                if changed:
                    self._http.request("PUT", f"{root}({odata.guid(line['ID'])})", json=changed)
            else:
                self._http.request("POST", root, json={**wanted, "OrderID": order_id},
                                   headers={"Prefer": "return=representation"})
        for line in current[len(lines):]:
            self._http.request("DELETE", f"{root}({odata.guid(line['ID'])})")


def _same(current: Any, wanted: Any) -> bool:
    """Whether a line's wire value already equals the wanted one (numbers by value)."""
    numbers = (int, float, decimal.Decimal)
    if isinstance(current, numbers) and isinstance(wanted, numbers + (str,)) and \
            not isinstance(current, bool) and not isinstance(wanted, bool):
        try:
            return decimal.Decimal(str(wanted)) == decimal.Decimal(str(current))
        except ArithmeticError:
            return False
    return current == wanted


def _parse(text: str | None) -> datetime.datetime | None:
    if not text:
        return None
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(
        datetime.UTC)


class _Cursors:
    """The ``(modified, Timestamp)`` checkpoints of one sync endpoint (see the module
    docstring): where a read since a modified time starts, and what a read learnt.

    A read walks rows in Timestamp order keeping the running maximum of their modified times:
    after row ``i`` every row up to its Timestamp was modified at or before that maximum. A
    few of these points are kept, spaced back from the newest (1 s, 10 s, 1 min, … 1 week), so
    that a watermark less the engine's overlap still finds one just below it.
    """

    #: how far back from the newest modified time checkpoints are kept (seconds)
    SPACING = (0, 1, 10, 60, 300, 1800, 7200, 86400, 7 * 86400)

    def __init__(self, store: Callable[[], LinkStore] | None, key: str):
        self._store = store
        self._key = key
        self._running: datetime.datetime | None = None
        self._points: list[tuple[datetime.datetime, int]] = []

    def start(self, since: datetime.datetime | None) -> int:
        """The Timestamp to read after: 1 (everything) without ``since`` or a checkpoint."""
        entry = self._store().read_state(self._key) if self._store else None
        start = 1
        if since is not None:
            for modified, stamp in (entry.value.get("checkpoints", []) if entry else []):
                moment = _parse(modified)
                if moment is not None and moment < since and stamp > start:
                    start, self._running = stamp, moment
        return start

    def see(self, row: Any, field: str) -> None:
        """A row read, in Timestamp order, modified at its ``field``. A row without a usable
        Timestamp or modified time adds nothing (it is a dead letter of its own)."""
        if not isinstance(row, Mapping):
            return
        try:
            stamp = int(row["Timestamp"])
            modified = row.get(field)
            moment = _parse(from_wire(field, modified)) if modified else None
        except (KeyError, TypeError, ValueError):
            return
        if moment is not None and (self._running is None or moment > self._running):
            self._running = moment
        if self._running is not None:
            self._points.append((self._running, int(stamp)))

    def save(self) -> None:
        """Merge this read's checkpoints into the stored ones."""
        if self._store is None or not self._points:
            return
        newest = self._points[-1][0]
        chosen = {}
        for back in self.SPACING:
            bound = newest - datetime.timedelta(seconds=back)
            below = [p for p in self._points if p[0] <= bound]
            if below:
                chosen[below[-1][1]] = below[-1][0].isoformat()
        store = self._store()
        for _ in range(5):
            entry = store.read_state(self._key)
            merged = {stamp: modified for modified, stamp in
                      (entry.value.get("checkpoints", []) if entry else [])}
            merged.update(chosen)
            checkpoints = [[merged[stamp], stamp] for stamp in sorted(merged)][-_CHECKPOINTS:]
            try:
                store.write_state(self._key, {"checkpoints": checkpoints},
                                  entry.version if entry else None)
                return
            except StaleStateError:
                continue  # another reader saved at the same time: merge again
