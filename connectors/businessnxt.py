"""Visma Business NXT, GraphQL service API: customers, the ``product`` and ``order`` tables.

* Customers: the dataflow's ``address`` entity is kept in the table the ``customer_table``
  setting names (decision 0014): ``associate`` (default; Visma's documented table, a customer is
  an associate with a ``customerNo``, which orders refer to and which a new associate gets
  suggested by the server) or ``address`` (the seed's, keyed by ``addressNo``). The choice is
  data (:data:`CUSTOMER_TABLES`); the probe introspects the schema and refuses a table the
  company does not have.

* Auth: Visma Connect client credentials with the ``tenant_id`` the service API requires,
  from the process's one token cache (:func:`connectors.auth.client_credentials`), renewed
  shortly before it expires and once on a ``401`` by the HTTP layer.
* Every operation goes through ``useCompany(no: company_no)``.
* Reads: ``first/after`` cursors until ``pageInfo.hasNextPage`` is false, ordered by the key.
  Incremental reads filter on ``changedTimestamp``, or — for rows last changed before Visma
  introduced it — on the integer ``changedDate``/``changedTime`` pair, taken from an overlap
  window before the watermark because it has minute resolution (rows read twice are harmless:
  the engine compares them with the snapshot). Orders come with their lines
  (``joindown_OrderLine_via_Order``).
* Writes: multi-row ``<table>_create(values: [...])`` (orders with nested ``orderLines``) and
  ``<table>_update(filters: [...], values: [...])``, many GraphQL requests per HTTP request (a
  JSON array, at most 32). A mutation field is one transaction on the server, so an error in one
  of its rows fails the field; the connector then sends the field's rows again one row per field
  (aliases), and only the rows that fail alone become errors (dead letters). An update that
  carries ``orderLines`` replaces the order's lines (``orderLine_delete`` + ``orderLine_create``
  after the head, in one request), then reads the order back.
* Deletes: ``<table>_delete(filter: {<key>: {_in: [...]}})`` per table and up to
  :data:`ROWS_PER_MUTATION` keys (Visma's "Delete operations": the API documents no
  deactivation of an associate, a product or an order), in the same batches; an order's lines go
  with it. A key no row has is gone already: a success. An associate that is also a supplier
  (``supplierNo``: one associate row holds every role, Visma's table "Aktør") is not deleted
  with its customer role: the roles are read first, and its op fails, saying so.
* Creates never duplicate: before creating, rows are looked up by their natural key (e-mail,
  product number, the webshop's order number in ``customerOrderNo``); a row found is adopted.
* Wire quirks stay here: dates are integers ``yyyymmdd`` on the wire and ISO dates in records,
  ``Int`` columns take numbers even when the engine holds a reference as text, money is JSON
  numbers (``Decimal``).
* HTTP 200 with ``errors`` is a failure; 429 is retried by the HTTP layer (``Retry-After``).
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from connectors import auth
from connectors.errors import ApiError, PermanentApiError, TransientApiError
from connectors.http import HttpConnector
from connectors.paging import GraphQLCursor, PageRequest, Paginator
from connectors.rows import UnreadableRow, row_key, row_list, row_object
from connectors.wire import describe_error_body, format_timestamp
from core.model import Record, SystemConfig, UnreadableRecord, WriteOp, WriteResult

SCOPE = "business-graphql-service-api:access-group-based"
DEFAULT_TOKEN_URL = "https://connect.visma.com/connect/token"
#: GraphQL requests per HTTP batch (the service's limit)
MAX_BATCH = 32
#: rows per multi-row mutation field
ROWS_PER_MUTATION = 50
#: how far before the watermark the minute-resolution changedDate/changedTime filter starts
OVERLAP = datetime.timedelta(minutes=2)
_UTC = datetime.UTC


@dataclasses.dataclass(frozen=True)
class Table:
    """A company table as this connector uses it.

    ``columns`` maps each column to its wire kind: ``Int``, ``String``, ``Decimal`` or ``Date``
    (an ``Int`` holding ``yyyymmdd``). ``natural_key`` is the column a create is looked up by
    before it is sent. ``lines`` is the child table nested under ``orderLines``. ``scope`` is
    the filter that selects the table's rows the entity has (associates that are customers);
    ``suggest`` the columns the server numbers on create (``suggest:`` of ``_create``).
    ``other_roles`` are columns that, when non-zero, give a row a role beyond the entity's
    (an associate that is a supplier too): such a row is never deleted.
    """

    field: str
    type: str
    key: str
    columns: Mapping[str, str]
    natural_key: str | None = None
    lines: Table | None = None
    scope: Mapping[str, Any] | None = None
    suggest: tuple[str, ...] = ()
    other_roles: tuple[str, ...] = ()

    def scoped(self, expression: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
        """``expression`` narrowed to the entity's rows (:attr:`scope`)."""
        if self.scope is None:
            return expression
        return {"_and": [self.scope, expression]} if expression else self.scope

    def with_keys(self, keys: Sequence[str]) -> Mapping[str, Any]:
        """The filter of the entity's rows with these keys."""
        values = [int(key) if self.key_kind == "Int" else key for key in keys]
        scoped = self.scoped({self.key: {"_in": values}})
        assert scoped is not None
        return scoped

    @property
    def create_arguments(self) -> str:
        """What ``<table>_create`` takes besides ``values``: the server's suggested numbers."""
        if not self.suggest:
            return ""
        return ", suggest: {" + ", ".join(f"{name}: true" for name in self.suggest) + "}"

    @property
    def key_kind(self) -> str:
        return self.columns[self.key]

    @property
    def selection(self) -> str:
        """The GraphQL selection of a row (and its lines) with the change columns."""
        text = " ".join(self.columns) + " changedTimestamp changedDate changedTime"
        if self.lines is not None:
            line_columns = " ".join(self.lines.columns)
            text += (f" {LINES}: joindown_{self.lines.type}_via_{self.type}(first: {MAX_LINES})"
                     f" {{ pageInfo {{ hasNextPage }} items {{ {line_columns} }} }}")
        return text


LINES = "orderLines"
#: lines read with an order (an order with more is refused rather than read incomplete)
MAX_LINES = 1000

ORDER_LINE = Table("orderLine", "OrderLine", "lineNo", {
    "orderNo": "Int", "lineNo": "Int", "productNo": "String", "description": "String",
    "quantity": "Decimal", "priceInCurrency": "Decimal", "discountPercent1": "Decimal"})
#: where a company keeps its customers (the ``customer_table`` setting) -> the table. Both
#: hold the dataflow's customer columns under the same names; an associate is keyed by its
#: customer number, the number orders refer to (docs "Insert operations", app template
#: ``createassociate.py``), and only associates with one are customers.
CUSTOMER_TABLES: Mapping[str, Table] = {
    "associate": Table("associate", "Associate", "customerNo", {
        "customerNo": "Int", "associateNo": "Int", "name": "String", "emailAddress": "String",
        "phone": "String", "mobilePhone": "String", "addressLine1": "String",
        "addressLine2": "String", "postCode": "String", "postalArea": "String",
        "countryNo": "Int"}, natural_key="emailAddress",
        scope={"customerNo": {"_not_eq": 0}}, suggest=("customerNo",),
        other_roles=("supplierNo",)),
    "address": Table("address", "Address", "addressNo", {
        "addressNo": "Int", "name": "String", "emailAddress": "String", "phone": "String",
        "mobilePhone": "String", "addressLine1": "String", "addressLine2": "String",
        "postCode": "String", "postalArea": "String", "countryNo": "Int",
        "noOfEmployees": "Int"}, natural_key="emailAddress"),
}
DEFAULT_CUSTOMER_TABLE = "associate"
#: the dataflow's name of the customer entity (the seeds' "Businessnxt Address")
CUSTOMERS = "address"
TABLES: Mapping[str, Table] = {t.field: t for t in (
    Table("product", "Product", "productNo", {
        "productNo": "String", "description": "String", "salesPrice1": "Decimal",
        "costPrice": "Decimal"}, natural_key="productNo"),
    Table("order", "Order", "orderNo", {
        "orderNo": "Int", "orderDate": "Date", "customerNo": "Int", "customerOrderNo": "String",
        "name": "String", "currencyNo": "Int"}, natural_key="customerOrderNo",
        lines=ORDER_LINE),
)}


# --------------------------------------------------------------------------------------------
# Wire values


def date_to_int(value: Any) -> int | None:
    """An ISO date (or ``date``) as BNXT's integer ``yyyymmdd``; None for no date."""
    if value in (None, ""):
        return None
    day = value if isinstance(value,
                              datetime.date) else datetime.date.fromisoformat(str(value)[:10])
    return day.year * 10000 + day.month * 100 + day.day


def int_to_date(value: Any) -> str | None:
    """BNXT's integer ``yyyymmdd`` as an ISO date; 0 and null mean no date. A value that is no
    date (``20261340``) is passed on as text, so the mapping refuses that one record with a
    dead letter naming it instead of the read failing."""
    if not value:
        return None
    try:
        return datetime.date(value // 10000, value // 100 % 100, value % 100).isoformat()
    except (TypeError, ValueError):
        return str(value)


def changed_at(row: Mapping[str, Any]) -> datetime.datetime | None:
    """When the row last changed: ``changedTimestamp`` (no zone: the server's time, UTC), else
    ``changedDate`` + ``changedTime`` (``hhmm``). A ``changedTimestamp`` that is not a
    timestamp makes the row unreadable (:class:`UnreadableRow`)."""
    if row.get("changedTimestamp"):
        stamp = row["changedTimestamp"]
        try:
            moment = datetime.datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))
        except ValueError:
            raise UnreadableRow(f"its changedTimestamp {stamp!r} is not a timestamp") from None
        return (moment if moment.tzinfo else moment.replace(tzinfo=_UTC)).astimezone(_UTC)
    if row.get("changedDate"):
        time = row.get("changedTime") or 0
        try:
            return datetime.datetime.fromisoformat(str(int_to_date(row["changedDate"]))).replace(
                hour=time // 100, minute=time % 100, tzinfo=_UTC)
        except (TypeError, ValueError):
            return None         # unknown: the row is compared with its snapshot anyway
    return None


def since_filter(since: datetime.datetime) -> dict[str, Any]:
    """Rows changed at or after ``since``: by ``changedTimestamp``, or by the date/time pair
    from :data:`OVERLAP` earlier (rows that have no timestamp yet)."""
    start = since.astimezone(_UTC) - OVERLAP
    day, time = date_to_int(start.date()), start.hour * 100 + start.minute
    return {"_or": [
        {"changedTimestamp": {"_gte": format_timestamp(since)}},
        {"changedDate": {"_gt": day}},
        {"_and": [{"changedDate": {"_eq": day}}, {"changedTime": {"_gte": time}}]},
    ]}


def _to_wire(table: Table, fields: Mapping[str, Any]) -> dict[str, Any]:
    """Record fields as ``<Table>_Input`` values (lines nested for a create)."""
    out: dict[str, Any] = {}
    for name, value in fields.items():
        if name == LINES and table.lines is not None:
            out[name] = [_to_wire(table.lines, line) for line in value or []]
            continue
        kind = table.columns.get(name)
        if kind is None:
            raise PermanentApiError(f"{table.type} has no column {name!r}")
        if value is None or value == "":
            out[name] = None
        elif kind == "Date":
            out[name] = date_to_int(value)
        elif kind == "Int":
            out[name] = int(value)
        elif kind == "Decimal":
            out[name] = decimal.Decimal(str(value)) if isinstance(value,
                                                                  float) else decimal.Decimal(value)
        else:
            out[name] = str(value)
    return out


def _from_wire(table: Table, row: Mapping[str, Any]) -> dict[str, Any]:
    """A row as record fields: its columns, dates as ISO dates, lines as a list."""
    fields = {}
    for name, kind in table.columns.items():
        value = row.get(name)
        fields[name] = int_to_date(value) if kind == "Date" else value
    if table.lines is not None:
        lines = row_object(row.get(LINES) or {"items": []})
        if (lines.get("pageInfo") or {}).get("hasNextPage"):
            raise PermanentApiError(f"{table.type} {row.get(table.key)} has more than "
                                    f"{MAX_LINES} lines")
        fields[LINES] = [_from_wire(table.lines, row_object(line))
                         for line in row_list(lines, "items")]
    return fields


def row_id(row: Any, key: str) -> str:
    """The row's key as text: a whole number (``addressNo``) or non-empty text
    (``productNo``); anything else makes the row unreadable."""
    value = row_object(row).get(key)
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return row_key(row, key)


# --------------------------------------------------------------------------------------------
# Writes: GraphQL requests that each carry some ops


class _Unit:
    """One GraphQL request of a write batch: mutation fields for ``ops``.

    ``parse`` turns the request's answer into one result per op, or None when a multi-row field
    failed (nothing of it was applied): the ops are then sent again one row per field.
    """

    def __init__(self, connector: BusinessNxtConnector, table: Table, kind: str,
                 ops: Sequence[WriteOp]):
        self.connector, self.table, self.kind, self.ops = connector, table, kind, list(ops)

    @property
    def multi_row(self) -> bool:
        return len(self.ops) > 1

    def build(self, results: dict[str, WriteResult]) -> bool:
        """Prepare :attr:`payload`; values the table cannot take fail the unit's ops instead."""
        try:
            self.payload = self.request()
        except (ApiError, ValueError, TypeError, decimal.InvalidOperation) as exc:
            error = exc if isinstance(exc, ApiError) else PermanentApiError(
                f"{self.connector.name}: {self.table.type}: {exc}", system=self.connector.name)
            for op in self.ops:
                results[op.ref] = WriteResult(ref=op.ref, error=error)
            return False
        return True

    def request(self) -> dict[str, Any]:
        t = self.table
        rows = [_to_wire(t, op.fields) for op in self.ops]
        select = f"{{ affectedRows items {{ {t.selection} }} }}"
        if self.kind == "create":
            fields = f"rows: {t.field}_create(values: $values{t.create_arguments}) {select}"
            variables: dict[str, Any] = {"values": rows}
            params = f"$values: [{t.type}_Input!]!"
        elif self.kind == "delete":
            fields = f"rows: {t.field}_delete(filter: $filter) {{ affectedRows }}"
            variables = {"filter": t.with_keys([_key(op) for op in self.ops])}
            params = f"$filter: FilterExpression_{t.type}!"
        elif self.kind == "update":
            fields = f"rows: {t.field}_update(filters: $filters, values: $values) {select}"
            variables = {"filters": [self._key_filter(op.id) for op in self.ops], "values": rows}
            params = f"$filters: [FilterExpression_{t.type}!], $values: [{t.type}_Input!]"
        else:  # "lines": one order's head (if it changed) and its lines replaced
            [op] = self.ops
            lt = t.lines
            assert op.id is not None and lt is not None     # an order update has both
            head = {k: v for k, v in rows[0].items() if k != LINES}
            variables = {"lineKey": {"orderNo": {"_eq": int(op.id)}},
                         "lines": [{**line, "orderNo": int(op.id)} for line in rows[0][LINES]]}
            params = f"$lineKey: FilterExpression_{lt.type}!, $lines: [{lt.type}_Input!]!"
            fields = (f"gone: {lt.field}_delete(filter: $lineKey) {{ affectedRows }} "
                      f"lines: {lt.field}_create(values: $lines) {{ affectedRows }}")
            if head:  # first the head, then the lines (mutation fields run in order)
                variables.update(key=self._key_filter(op.id), head=head)
                params += f", $key: FilterExpression_{t.type}!, $head: {t.type}_Input!"
                fields = (f"head: {t.field}_update(filter: $key, value: $head) "
                          f"{{ affectedRows }} {fields}")
        return {"query": f"mutation write($cid: Int!, {params}) {{ useCompany(no: $cid) "
                         f"{{ {fields} }} }}",
                "variables": {"cid": self.connector.company_no, **variables}}

    def _key_filter(self, key: str | None) -> dict[str, Any]:
        assert key is not None          # an update's (HttpConnector._check_ops)
        value = int(key) if self.table.key_kind == "Int" else key
        return {self.table.key: {"_eq": value}}

    def parse(self, answer: Any) -> list[WriteResult] | None:
        errors = answer.get("errors") if isinstance(answer, Mapping) else None
        if errors:
            if self.multi_row and all(_in_field(e) for e in errors):
                return None
            error = self.connector.graphql_error(errors, f"{self.table.field}_{self.kind}")
            return [WriteResult(ref=op.ref, error=error) for op in self.ops]
        company = (answer.get("data") or {}).get("useCompany") or {}
        if self.kind in ("lines", "delete"):
            # an order whose lines changed is read back afterwards; a deleted row is gone (or
            # was already: no row matched)
            return [WriteResult(ref=op.ref) for op in self.ops]
        items = (company.get("rows") or {}).get("items") or []
        if self.kind == "create":
            if len(items) != len(self.ops):
                error = TransientApiError(f"{self.connector.name}: {self.table.field}_create "
                                          f"answered {len(items)} rows for {len(self.ops)}",
                                          system=self.connector.name)
                return [WriteResult(ref=op.ref, error=error) for op in self.ops]
            return [WriteResult(ref=op.ref, record=self.connector.record(self.table, item))
                    if item.get(self.table.key) else
                    WriteResult(ref=op.ref, error=PermanentApiError(
                        f"{self.connector.name}: {self.table.field}_create gave the new row no "
                        f"{self.table.key}", system=self.connector.name))
                    for op, item in zip(self.ops, items, strict=True)]
        by_key = {str(item[self.table.key]): item for item in items}
        return [WriteResult(ref=op.ref, record=self.connector.record(self.table, by_key[op.id]))
                if op.id in by_key else
                WriteResult(ref=op.ref, error=PermanentApiError(
                    f"{self.connector.name}: {self.table.type} {op.id} does not exist "
                    "(the update affected no row)", status=404, system=self.connector.name))
                for op in self.ops]

    def split(self) -> list[_Unit]:
        return [_Unit(self.connector, self.table, self.kind, [op]) for op in self.ops]


def _key(op: WriteOp) -> str:
    assert op.id is not None        # an update's or a delete's (HttpConnector._check_ops)
    return op.id


def _in_field(error: Mapping[str, Any]) -> bool:
    """Whether a GraphQL error belongs to a mutation field (it has a path into ``data``)."""
    return len(error.get("path") or ()) >= 2


# --------------------------------------------------------------------------------------------
# The connector


class BusinessNxtConnector(HttpConnector):
    """A client of one Business NXT company through the GraphQL service API.

    Settings: ``client_id``, ``client_secret`` (a secret reference), ``tenant_id`` (the Visma
    Connect tenant), ``token_url`` (default Visma Connect's), ``company_no`` (the Visma.net
    company id ``useCompany`` takes), ``page_size``, ``requests_per_second`` (the service allows
    600 per minute per token: 10), ``timeout_s``, ``customer_table`` (``associate`` or
    ``address``: where the company keeps its customers). ``base_url`` is the GraphQL endpoint,
    ``https://business.visma.net/api/graphql-service``.
    """

    system_type = "businessnxt"
    entities = (CUSTOMERS, *TABLES)
    max_batch_size = MAX_BATCH * ROWS_PER_MUTATION
    decimal_numbers = True
    default_page_size = 500
    credential_settings = ("tenant_id", "client_id", "client_secret")

    def __init__(self, config: SystemConfig):
        settings = config.settings
        for name in ("client_id", "tenant_id", "company_no"):
            if not settings.get(name):
                raise ValueError(f"system {config.name!r} (businessnxt): setting {name!r} is "
                                 "required")
        customer_table = str(settings.get("customer_table") or DEFAULT_CUSTOMER_TABLE)
        if customer_table not in CUSTOMER_TABLES:
            raise ValueError(f"system {config.name!r} (businessnxt): setting 'customer_table' is "
                             f"{customer_table!r}; use {' or '.join(CUSTOMER_TABLES)} (the table "
                             "the company keeps its customers in)")
        #: the dataflow's entities -> the company's tables
        self.tables: Mapping[str, Table] = {CUSTOMERS: CUSTOMER_TABLES[customer_table], **TABLES}
        self._entity_of = {table.field: entity for entity, table in self.tables.items()}
        secret = self._secret_setting(config, "client_secret")
        # Visma Connect's client-credentials grant also names the tenant, as tenant-based APIs
        # such as the Business NXT service API require.
        self._token = auth.client_credentials(
            settings.get("token_url") or DEFAULT_TOKEN_URL, str(settings["client_id"]), secret,
            SCOPE, system=config.name, extra_form={"tenant_id": str(settings["tenant_id"])})
        super().__init__(config, headers={}, secret_values=(secret,), auth=self._token)
        self.company_no = int(settings["company_no"])
        #: the customer tables the company has, once :meth:`probe` has asked
        self._found_tables: list[str] | None = None

    @staticmethod
    def _describe_error(body: Any) -> str:
        """The ``errors[].message`` texts of a GraphQL answer (or the gateway's page)."""
        if isinstance(body, Mapping) and isinstance(body.get("errors"), list):
            return "; ".join(str(e.get("message")) for e in body["errors"] if isinstance(e,
                                                                                         Mapping))
        return describe_error_body(body)

    def graphql_error(self, errors: Sequence[Mapping[str, Any]], what: str) -> ApiError:
        """An HTTP-200 answer with ``errors``: a permanent failure (status 200), masked."""
        return self._http.error_for(200, {"errors": list(errors)}, "GraphQL", what)

    # -- the transport ------------------------------------------------------------------------

    def _post(self, payload: Any, *, idempotent: bool) -> Any:
        return self._http.request("POST", "", json=payload, idempotent=idempotent).data

    def fetch_page(self, request: PageRequest) -> Any:
        """A page of a query, sent as every GraphQL request is (:meth:`_post`); an answer with
        ``errors`` fails the read."""
        answer = self._post(request.json, idempotent=request.idempotent)
        if isinstance(answer, Mapping) and answer.get("errors"):
            raise self.graphql_error(answer["errors"], "query")
        return answer

    # -- the check ----------------------------------------------------------------------------

    def company_tables(self) -> list[str]:
        """The customer tables the company's schema has, read by introspection (the schema is
        the company's own: tables and columns vary with its data model)."""
        answer = self._post({"query": '{ __type(name: "Query_UseCompany") { fields { name } } }'},
                            idempotent=True)
        if answer.get("errors"):
            raise self.graphql_error(answer["errors"], "introspection")
        fields = {field["name"] for field in ((answer.get("data") or {}).get("__type") or {})
                  .get("fields") or ()}
        return [name for name in CUSTOMER_TABLES if name in fields]

    def probe(self) -> None:
        """The company has the configured customer table (else a configuration error naming
        the setting and what the company has), then the first customer row."""
        found = self.company_tables()
        self._found_tables = found
        table = self.tables[CUSTOMERS].field
        if table not in found:
            raise PermanentApiError(
                f"setting customer_table is {table!r}, but company {self.company_no} has no "
                f"{table} table (it has: {', '.join(found) or 'neither associate nor address'}); "
                f"set customer_table: {found[0] if found else 'associate'}",
                system=self.name)
        super().probe()

    def check_details(self) -> str | None:
        """``talksync check``: the customer table configured and the ones the company has."""
        found = self._found_tables
        if found is None:
            return None
        return (f"customer_table {self.tables[CUSTOMERS].field} (the company has "
                f"{' and '.join(found)})")

    # -- reading ------------------------------------------------------------------------------

    def record(self, table: Table, row: Mapping[str, Any]) -> Record:
        return Record(system=self.name, entity=self._entity_of[table.field],
                      id=row_id(row, table.key),
                      fields=_from_wire(table, row_object(row)), modified=changed_at(row))

    def _to_record(self, entity: str, data: Mapping[str, Any], etag: str | None) -> Record:
        return self.record(self.tables[entity], data)

    def _usable_id(self, entity: str, data: Any) -> str:
        return row_id(data, self.tables[entity].key)

    def _paginator(self, entity: str) -> Paginator:
        return GraphQLCursor(("data", "useCompany", self.tables[entity].field))

    def _first_page(self, entity: str, since: datetime.datetime | None) -> PageRequest:
        return self._query_page(self.tables[entity], since_filter(since) if since else None)

    def _query_page(self, table: Table, expression: Mapping[str, Any] | None) -> PageRequest:
        """The first page of the table's rows that match ``expression``, ordered by key."""
        query = (f"query read($cid: Int!, $first: Int!, $after: String, "
                 f"$filter: FilterExpression_{table.type}) {{ useCompany(no: $cid) {{ "
                 f"{table.field}(first: $first, after: $after, filter: $filter, "
                 f"orderBy: [{{{table.key}: ASC}}]) {{ pageInfo {{ hasNextPage endCursor }} "
                 f"items {{ {table.selection} }} }} }} }}")
        variables = {"cid": self.company_no, "first": self._page_size, "after": None,
                     "filter": table.scoped(expression)}
        return PageRequest("", method="POST", json={"query": query, "variables": variables},
                           idempotent=True)

    def get(self, entity: str, ids: Iterable[str]) -> list[Record | UnreadableRecord]:
        """The rows with these keys (one query per page of keys); unknown keys left out."""
        self._check_entity(entity)
        table = self.tables[entity]
        keys = [int(i) if table.key_kind == "Int" else i for i in ids]
        return self._by_column(table, table.key, keys)

    def _by_column(self, table: Table, column: str,
                   values: list[Any]) -> list[Record | UnreadableRecord]:
        records: list[Record | UnreadableRecord] = []
        for start in range(0, len(values), self._page_size):
            chunk = values[start:start + self._page_size]
            records += self._read_rows(self._entity_of[table.field],
                                       self._query_page(table, {column: {"_in": chunk}}))
        return records

    # -- writing ------------------------------------------------------------------------------

    def write(self, ops: Sequence[WriteOp]) -> list[WriteResult]:
        """Creates (after a natural-key lookup) and updates as multi-row mutations, sent in
        batches of :data:`MAX_BATCH` GraphQL requests; one result per op, in order."""
        self._check_ops(ops)
        results: dict[str, WriteResult] = {}
        units: list[_Unit] = []
        for entity in dict.fromkeys(op.entity for op in ops):
            table = self.tables[entity]
            mine = [op for op in ops if op.entity == entity]
            creates = self._adopt([op for op in mine if op.kind == "create"], table, results)
            updates = [op for op in mine if op.kind == "update"]
            with_lines = [op for op in updates if LINES in op.fields]
            plain = [op for op in updates if LINES not in op.fields]
            deletes = self._single_role([op for op in mine if op.kind == "delete"], table,
                                        results)
            for kind, group in (("create", creates), ("update", plain), ("delete", deletes)):
                units += [_Unit(self, table, kind, group[i:i + ROWS_PER_MUTATION])
                          for i in range(0, len(group), ROWS_PER_MUTATION)]
            units += [_Unit(self, table, "lines", [op]) for op in with_lines]
        self._send(units, results)
        self._read_back([op for op in ops if op.kind == "update" and LINES in op.fields
                         and results[op.ref].ok], results)
        return [results[op.ref] for op in ops]

    def _single_role(self, deletes: list[WriteOp], table: Table,
                     results: dict[str, WriteResult]) -> list[WriteOp]:
        """The deletes whose rows have no role beyond the entity's (:attr:`Table.other_roles`,
        read first: 0 and null both mean none); the others fail without being sent."""
        if not table.other_roles or not deletes:
            return deletes
        roles = " ".join(table.other_roles)
        query = (f"query roles($cid: Int!, $first: Int!, $filter: FilterExpression_{table.type})"
                 f" {{ useCompany(no: $cid) {{ {table.field}(first: $first, filter: $filter) "
                 f"{{ items {{ {table.key} {roles} }} }} }} }}")
        other: dict[str, list[str]] = {}
        for start in range(0, len(deletes), self._page_size):
            chunk = deletes[start:start + self._page_size]
            try:
                page = self.fetch_page(PageRequest("", method="POST", idempotent=True, json={
                    "query": query, "variables": {
                        "cid": self.company_no, "first": len(chunk),
                        "filter": table.with_keys([_key(op) for op in chunk])}}))
                company = row_object(row_object(page).get("data")).get("useCompany")
                rows = row_list(row_object(row_object(company).get(table.field)), "items")
                other.update((row_id(row, table.key), [r for r in table.other_roles
                                                       if row_object(row).get(r)])
                             for row in rows)
            except (ApiError, UnreadableRow) as exc:
                error = exc if isinstance(exc, ApiError) else TransientApiError(
                    f"{self.name}: {table.field} roles unreadable: {exc}", system=self.name)
                results.update((op.ref, WriteResult(ref=op.ref, error=error)) for op in chunk)
        for op in deletes:
            if other.get(_key(op)):
                results[op.ref] = WriteResult(ref=op.ref, error=PermanentApiError(
                    f"{self.name}: {table.field} with {table.key} {op.id} has "
                    f"{', '.join(other[_key(op)])} set too: not deleted, that role would go "
                    "with it; end its customer role in Business NXT by hand",
                    system=self.name))
        return [op for op in deletes if op.ref not in results]

    def _adopt(self, creates: list[WriteOp], table: Table,
               results: dict[str, WriteResult]) -> list[WriteOp]:
        """Creates whose natural key a row has already (our earlier create whose answer was
        lost, or a row entered meanwhile) adopt that row; the others are returned."""
        natural_key = table.natural_key
        keyed = {op.fields.get(natural_key): op for op in creates
                 if natural_key and op.fields.get(natural_key)}
        if not keyed or natural_key is None:
            return creates
        try:
            found = self._by_column(table, natural_key, list(keyed))
        except ApiError as exc:
            for op in creates:
                results[op.ref] = WriteResult(ref=op.ref, error=exc)
            return []
        for record in found:
            if not isinstance(record, Record):
                continue        # unreadable: not adopted (the create may then fail as a duplicate)
            adopter = keyed.pop(record.fields.get(natural_key), None)
            if adopter is not None:
                op = adopter
                results[op.ref] = WriteResult(ref=op.ref, record=record, adopted=True)
        return [op for op in creates if op.ref not in results]

    def _send(self, units: list[_Unit], results: dict[str, WriteResult]) -> None:
        """Send ``units`` in batches; multi-row units whose field failed go again row by row."""
        retry: list[_Unit] = []
        for start in range(0, len(units), MAX_BATCH):
            batch = [unit for unit in units[start:start + MAX_BATCH] if unit.build(results)]
            if not batch:
                continue
            idempotent = all(unit.kind != "create" for unit in batch)
            try:
                answers = self._post([unit.payload for unit in batch], idempotent=idempotent)
                if not isinstance(answers, list) or len(answers) != len(batch):
                    raise TransientApiError(f"{self.name}: a batch of {len(batch)} requests was "
                                            "not answered with as many results", system=self.name)
            except ApiError as exc:
                for unit in batch:
                    for op in unit.ops:
                        results[op.ref] = WriteResult(ref=op.ref, error=exc)
                continue
            for unit, answer in zip(batch, answers, strict=True):
                parsed = unit.parse(answer)
                if parsed is None:
                    retry += unit.split()
                else:
                    results.update((result.ref, result) for result in parsed)
        if retry:
            self._send(retry, results)

    def _read_back(self, ops: list[WriteOp], results: dict[str, WriteResult]) -> None:
        """The orders whose lines were replaced, as they are now."""
        if not ops:
            return
        error: ApiError | None
        try:
            found = {r.id: r for r in self.get(ops[0].entity,
                                               [op.id for op in ops if op.id is not None])
                     if isinstance(r, Record)}
        except ApiError as exc:
            found, error = {}, exc
        else:
            error = None
        for op in ops:
            record = found.get(op.id) if op.id is not None else None
            results[op.ref] = (WriteResult(ref=op.ref, record=record) if record else
                               WriteResult(ref=op.ref, error=error or PermanentApiError(
                                   f"{self.name}: order {op.id} vanished", system=self.name)))
