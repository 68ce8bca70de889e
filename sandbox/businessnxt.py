"""Visma Business NXT emulator: the GraphQL service API of one company, over real GraphQL.

What it reproduces (``shared/research/apis.md`` §3; the choices where the public documentation
is silent are written down in ``docs/api/businessnxt.md``):

* Visma Connect's client-credentials token endpoint ``POST /connect/token`` (form fields
  ``grant_type``, ``client_id``, ``client_secret``, ``scope``, ``tenant_id``) and bearer tokens
  that expire; a request without a valid token gets nginx's **HTML** 401 page;
* ``POST /api/graphql-service`` (and ``/api/graphql``): one ``{query, variables,
  operationName}`` object, or a JSON **array** of up to 32 of them (a batch); every answer that
  got past the gateway is **HTTP 200**, failures as a GraphQL ``errors`` array with ``path``;
* a schema built with ``graphql-core`` from SDL generated out of :data:`TABLES`, following the
  documented naming: ``useCompany(no:)``, ``Query_UseCompany_<Table>_Connection`` with
  ``totalCount``, ``pageInfo`` and ``items`` (no edges), ``first/after/skip`` with opaque
  cursors, ``FilterExpression_<Table>`` with ``_eq/_not_eq/_gt/_gte/_lt/_lte/_in/_not_in/
  _between/_like`` and ``_and/_or``, ``orderBy``, ``<Table>_Input``, ``<table>_create(values:)``,
  ``<table>_update(filter:, value:)`` / ``(filters:, values:)``, ``<table>_delete(filter:)``,
  ``Mutation_UseCompany_<Table>_Result {affectedRows items}``;
* tables ``address``, ``order`` with ``orderLine`` (nested ``orderLines`` on create,
  ``joindown_OrderLine_via_Order`` on read), ``product``; auto-numbered ``addressNo``,
  ``orderNo`` and ``lineNo``; integer dates (``yyyymmdd``) and times (``hhmm``); the utility
  columns (``createdDate/Time/Timestamp``, ``changedDate/Time/Timestamp``) kept on every write;
* one mutation field is one transaction: a row that fails validation fails its whole field
  (``null`` in ``data``, one error with the field's ``path``), and the other fields of the
  request are unaffected;
* the gateway's 600 requests per minute (``rate_limit: true`` of ``/_sandbox/faults``) → 429.

Order lines are stored inside their order; a write to a line recalculates the order and so
changes the order row too (its ``changedTimestamp`` moves).
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import decimal
import functools
import json
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import graphql
from werkzeug.wrappers import Request, Response

from sandbox.emulator import Emulator, Row, constant_time_equal
from sandbox.limits import BearerTokens, RateLimit
from sandbox.routing import CONTROL_ROUTES, Route, Router
from sandbox.validation import ApiError
from sandbox.wire import format_timestamp, loads, parse_timestamp

TENANT_ID = "6f1c2b3a-0d4e-4b5f-9a8c-7e6d5c4b3a21"
CLIENT_ID = "talksync_sandbox"  # a User row is named after it: at most 24 characters
COMPANY_NO = 3456789  # the Visma.net company id useCompany(no:) takes
SCOPE = "business-graphql-service-api:access-group-based"
TOKEN_PATH = "/connect/token"
USER_CONTEXT_PATH = "/api/graphql"
TOKEN_LIFETIME_S = 3600
MAX_BATCH = 32

# --------------------------------------------------------------------------------------------
# The data model


@dataclasses.dataclass(frozen=True)
class Column:
    """One column: its GraphQL scalar, and for strings the length the data model allows.

    ``auto`` marks the auto-numbered last key column (left out of ``<Table>_Input``)."""

    name: str
    type: str = "String"
    max_length: int | None = None
    auto: bool = False


@dataclasses.dataclass(frozen=True)
class Table:
    """A company table: ``field`` is its GraphQL field (camelCase), ``type`` its PascalCase
    identifier, ``key`` its primary key column."""

    field: str
    type: str
    key: str
    columns: tuple[Column, ...]

    @property
    def primary_key(self) -> tuple[str, ...]:
        """All key columns: a line is keyed by its order's number and its own."""
        return ("orderNo", self.key) if self.field == "orderLine" else (self.key,)

    def column(self, name: str) -> Column:
        return next(c for c in self.columns if c.name == name)


UTILITY_COLUMNS = (
    Column("createdDate", "Int"), Column("createdTime", "Int"),
    Column("createdTimestamp", "DateTime"), Column("createdByUser", "String"),
    Column("changedDate", "Int"), Column("changedTime", "Int"),
    Column("changedTimestamp", "DateTime"), Column("changedByUser", "String"),
)
_UTILITY = frozenset(c.name for c in UTILITY_COLUMNS)

ADDRESS = Table("address", "Address", "addressNo", (
    Column("addressNo", "Int", auto=True),
    Column("name", max_length=80), Column("emailAddress", max_length=80),
    Column("phone", max_length=30), Column("mobilePhone", max_length=30),
    Column("addressLine1", max_length=80), Column("addressLine2", max_length=80),
    Column("postCode", max_length=20), Column("postalArea", max_length=80),
    Column("countryNo", "Int"), Column("noOfEmployees", "Int"),
    *UTILITY_COLUMNS))
PRODUCT = Table("product", "Product", "productNo", (
    Column("productNo", max_length=20), Column("description", max_length=80),
    Column("salesPrice1", "Decimal"), Column("costPrice", "Decimal"),
    *UTILITY_COLUMNS))
ORDER = Table("order", "Order", "orderNo", (
    Column("orderNo", "Int", auto=True), Column("orderDate", "Int"),
    Column("customerNo", "Int"), Column("customerOrderNo", max_length=40),
    Column("name", max_length=80), Column("currencyNo", "Int"),
    *UTILITY_COLUMNS))
ORDER_LINE = Table("orderLine", "OrderLine", "lineNo", (
    Column("orderNo", "Int"), Column("lineNo", "Int", auto=True),
    Column("productNo", max_length=20), Column("description", max_length=80),
    Column("quantity", "Decimal"), Column("priceInCurrency", "Decimal"),
    Column("discountPercent1", "Decimal"),
    *UTILITY_COLUMNS))
#: the company tables, by GraphQL field name
TABLES: Mapping[str, Table] = {t.field: t for t in (ADDRESS, ORDER, ORDER_LINE, PRODUCT)}
#: where an order keeps its lines (create input, storage, and the alias clients use on read)
LINES = "orderLines"
JOINDOWN = "joindown_OrderLine_via_Order"

_FILTER_OPERATORS = {
    "_eq": "{t}", "_not_eq": "{t}", "_gt": "{t}", "_gte": "{t}", "_lt": "{t}", "_lte": "{t}",
    "_in": "[{t}]", "_not_in": "[{t}]", "_between": "[{t}]", "_not_between": "[{t}]",
}


def _connection_args(table: Table) -> str:
    return (f"first: Int, after: String, skip: Int, filter: FilterExpression_{table.type}, "
            f"orderBy: [OrderBy_{table.type}]")


def schema_sdl() -> str:
    """The SDL of the emulated schema, generated from :data:`TABLES` (one source of truth)."""
    out = ["scalar Decimal", "scalar DateTime", "enum SortOrder { ASC DESC }",
           "enum InsertPosition { BEFORE AFTER }",
           "type PageInfo { hasNextPage: Boolean! hasPreviousPage: Boolean! "
           "startCursor: String endCursor: String }"]
    for scalar in ("Int", "String", "Decimal", "DateTime"):
        ops = " ".join(f"{op}: {shape.format(t=scalar)}" for op, shape in _FILTER_OPERATORS.items())
        if scalar == "String":
            ops += " _like: String _not_like: String"
        out.append(f"input FilterExpression_{scalar} {{ {ops} }}")
    query_fields, mutation_fields = [], []
    for table in TABLES.values():
        t = table.type
        columns = " ".join(f"{c.name}: {c.type}" for c in table.columns)
        extra = (f" {JOINDOWN}({_connection_args(ORDER_LINE)}): "
                 f"Query_UseCompany_OrderLine_Connection" if table is ORDER else "")
        out.append(f"type {t} {{ {columns}{extra} }}")
        out.append(f"type Query_UseCompany_{t}_Connection {{ totalCount: Int! "
                   f"pageInfo: PageInfo! items: [{t}!]! }}")
        filters = " ".join(f"{c.name}: FilterExpression_{c.type}" for c in table.columns)
        out.append(f"input FilterExpression_{t} {{ {filters} _and: [FilterExpression_{t}] "
                   f"_or: [FilterExpression_{t}] }}")
        out.append(f"input OrderBy_{t} "
                   f"{{ {' '.join(f'{c.name}: SortOrder' for c in table.columns)} }}")
        inputs = " ".join(f"{c.name}: {c.type}" for c in table.columns
                          if not c.auto and c.name not in _UTILITY)
        if table is ORDER:
            inputs += f" {LINES}: [OrderLine_Input!]"
        out.append(f"input {t}_Input {{ {inputs} }}")
        out.append(f"type Mutation_UseCompany_{t}_Result {{ affectedRows: Int! items: [{t}!] }}")
        query_fields.append(f"{table.field}({_connection_args(table)}): "
                            f"Query_UseCompany_{t}_Connection")
        result = f"Mutation_UseCompany_{t}_Result"
        mutation_fields += [
            f"{table.field}_create(values: [{t}_Input!]!, insertAtRow: FilterExpression_{t}, "
            f"insertPosition: InsertPosition): {result}",
            f"{table.field}_update(filter: FilterExpression_{t}, value: {t}_Input, "
            f"filters: [FilterExpression_{t}!], values: [{t}_Input!]): {result}",
            f"{table.field}_delete(filter: FilterExpression_{t}): {result}",
        ]
    out.append(f"type Query_UseCompany {{ {' '.join(query_fields)} }}")
    out.append(f"type Mutation_UseCompany {{ {' '.join(mutation_fields)} }}")
    out.append("type Query { useCompany(no: Int!): Query_UseCompany }")
    out.append("type Mutation { useCompany(no: Int!): Mutation_UseCompany }")
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------------------------
# Scalars, dates, cursors


def _parse_decimal(value: Any) -> decimal.Decimal:
    if isinstance(value, bool) or not isinstance(value, (int, float, decimal.Decimal)):
        raise graphql.GraphQLError(f"Decimal cannot represent a non-numeric value: {value!r}")
    return decimal.Decimal(str(value)) if isinstance(value, float) else decimal.Decimal(value)


def _parse_decimal_literal(node: Any, _variables: Any = None) -> decimal.Decimal:
    if not isinstance(node, (graphql.IntValueNode, graphql.FloatValueNode)):
        raise graphql.GraphQLError("Decimal cannot represent a non-numeric value")
    return decimal.Decimal(node.value)


def _parse_datetime(value: Any) -> datetime.datetime:
    """``2025-10-01T12:00:00Z``, or without a zone (taken as the server's local time, UTC)."""
    if not isinstance(value, str):
        raise graphql.GraphQLError(f"DateTime cannot represent {value!r}")
    try:
        return parse_timestamp(value.replace(" ", "T"))
    except ValueError:
        raise graphql.GraphQLError(f"DateTime cannot represent {value!r}") from None


def _parse_datetime_literal(node: Any, _variables: Any = None) -> datetime.datetime:
    if not isinstance(node, graphql.StringValueNode):
        raise graphql.GraphQLError("DateTime must be a string")
    return _parse_datetime(node.value)


def int_date(moment: datetime.datetime) -> int:
    """``yyyymmdd`` as BNXT stores a date."""
    return moment.year * 10000 + moment.month * 100 + moment.day


def int_time(moment: datetime.datetime) -> int:
    """``hhmm`` as BNXT stores a time of day."""
    return moment.hour * 100 + moment.minute


def _encode_cursor(position: list[Any]) -> str:
    """An opaque cursor: the row's sort position (its ``orderBy`` values and key)."""
    raw = json.dumps(position, default=str, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> list[Any]:
    try:
        position = json.loads(
            base64.urlsafe_b64decode((cursor + "=" * (-len(cursor) % 4)).encode()))
    except ValueError:
        raise graphql.GraphQLError(f"Invalid cursor: {cursor}") from None
    if not isinstance(position, list):
        raise graphql.GraphQLError(f"Invalid cursor: {cursor}")
    return position


# --------------------------------------------------------------------------------------------
# Filtering and ordering


def _comparable(column: Column, value: Any) -> Any:
    if value is None:
        return None
    if column.type == "DateTime":
        return value if isinstance(value, datetime.datetime) else parse_timestamp(value)
    if column.type == "Decimal":
        return decimal.Decimal(value)
    return value


def _like(pattern: str, text: Any) -> bool:
    regex = "".join(".*" if ch == "%" else "." if ch == "_" else re.escape(ch) for ch in pattern)
    return isinstance(text, str) and re.fullmatch(regex, text,
                                                  re.IGNORECASE | re.DOTALL) is not None


def _check(op: str, value: Any, arg: Any) -> bool:
    if op == "_eq":
        return value == arg
    if op == "_not_eq":
        return value != arg
    if op in ("_in", "_not_in"):
        return (value in (arg or [])) == (op == "_in")
    if op in ("_like", "_not_like"):
        return _like(arg, value) == (op == "_like")
    if value is None or arg is None:
        return False
    if op in ("_between", "_not_between"):
        if not isinstance(arg, list) or len(arg) != 2:
            raise graphql.GraphQLError(f"{op} takes a list of two values")
        return (arg[0] <= value <= arg[1]) == (op == "_between")
    return {"_gt": value > arg, "_gte": value >= arg, "_lt": value < arg, "_lte": value <= arg}[op]


def matches(table: Table, row: Mapping[str, Any], expression: Mapping[str, Any] | None) -> bool:
    """Whether ``row`` satisfies a ``FilterExpression_<Table>`` (all its parts: AND)."""
    for name, condition in (expression or {}).items():
        if name == "_and":
            if not all(matches(table, row, part) for part in condition or []):
                return False
        elif name == "_or":
            if not any(matches(table, row, part) for part in condition or []):
                return False
        else:
            column = table.column(name)
            value = _comparable(column, row.get(name))
            for op, arg in (condition or {}).items():
                arg = ([_comparable(column, a) for a in arg] if isinstance(arg, list)
                       else arg if op in ("_like", "_not_like") else _comparable(column, arg))
                if not _check(op, value, arg):
                    return False
    return True


def _order_spec(table: Table, order_by: Sequence[Mapping[str, str]] | None) -> list[tuple[str,
                                                                                          bool]]:
    """``[(column, descending)]`` from ``orderBy``, always ending with the key (a total order)."""
    spec = [(name, direction == "DESC") for item in order_by or [] for name,
            direction in item.items()]
    for key in table.primary_key:
        if key not in [name for name, _ in spec]:
            spec.append((key, False))
    return spec


def _compare(spec: list[tuple[str, bool]], a: Sequence[Any], b: Sequence[Any]) -> int:
    for (_, descending), x, y in zip(spec, a, b, strict=False):
        if x == y:
            continue
        if x is None or y is None:  # nulls first
            result = -1 if x is None else 1
        else:
            result = -1 if x < y else 1
        return -result if descending else result
    return 0


# --------------------------------------------------------------------------------------------
# The emulator


class _RowError(Exception):
    """A row a mutation cannot apply: fails the whole mutation field."""


class BusinessNxt(Emulator):
    """Visma Business NXT's GraphQL service API for one company (see the module docstring)."""

    system = "businessnxt"
    api_prefix = "/api/graphql-service"
    timestamp_field = "changedTimestamp"
    key_fields = {"address": "addressNo", "order": "orderNo", "product": "productNo"}
    singular = {"address": "address", "order": "order", "product": "product"}
    system_rate_limit = RateLimit(600, 60.0)
    errors = {
        "unauthorized": (401, "UNAUTHORIZED"),
        "not_found": (404, "NOT_FOUND"),
        "method_not_allowed": (405, "METHOD_NOT_ALLOWED"),
        "validation_failed": (400, "BAD_REQUEST"),
        "rate_limited": (429, "TOO_MANY_REQUESTS"),
        "internal": (500, "INTERNAL_SERVER_ERROR"),
        "unavailable": (503, "SERVICE_UNAVAILABLE"),
    }
    routes = (Route("POST", "/", "serve_graphql"),)
    control_routes = CONTROL_ROUTES + (Route("POST", "/_sandbox/expire-tokens",
                                             "control_expire_tokens"),)

    #: the config setting the sandbox's secret goes in
    secret_setting = "client_secret"

    def __init__(self, **kwargs: Any):
        self._tokens = BearerTokens()
        self.schema = _schema()
        super().__init__(**kwargs)
        self._control_router = Router(self.control_routes)

    @classmethod
    def connector_settings(cls, root_url: str) -> dict[str, str]:
        """What ``talksync.yaml`` needs besides base URL and secret to reach this emulator."""
        return {"client_id": CLIENT_ID, "tenant_id": TENANT_ID,
                "token_url": root_url + TOKEN_PATH, "company_no": str(COMPANY_NO)}

    # -- Emulator hooks -------------------------------------------------------------------

    def authenticate(self, request: Request) -> bool:
        return self._tokens.accepts(request)

    def rate_key(self, request: Request) -> str:
        """Business NXT limits each access token: 600 requests a minute."""
        return request.headers.get("Authorization", "")

    def error_body(self, code: str, message: str, details: Any) -> Any:
        return {"errors": [{"message": message, "extensions": {"code": code}}]}

    def error_response(self, error: ApiError) -> Response:
        """The gateway's answers are not GraphQL: 401 is nginx's HTML page."""
        if error.kind == "unauthorized":
            return Response(_NGINX_401, status=401, content_type="text/html")
        return super().error_response(error)

    def seed_collections(self) -> Mapping[str, list[dict[str, Any]]]:
        from sandbox.seed_businessnxt import businessnxt_seed
        data = businessnxt_seed(self.seed)
        for rows in data.values():
            for row in rows:
                self._stamp(row, created=True,
                            moment=parse_timestamp(row["changedTimestamp"]))
                for line in row.get(LINES, ()):
                    self._stamp(line, created=True,
                                moment=parse_timestamp(row["changedTimestamp"]))
        return data

    def initial_counters(self) -> dict[str, int]:
        return {table: max((int(key) for key in self.collections[table]), default=0)
                for table in ("address", "order")}

    def commit(self, resource: str, key: Any, entity: dict[str, Any]) -> Row:
        """Store a row with its ``changed*`` columns (and ``created*`` on insert) kept."""
        row = super().commit(resource, key, entity)
        self._stamp(entity, created=row.version == 1,
                    moment=parse_timestamp(entity["changedTimestamp"]))
        return row

    @staticmethod
    def _stamp(row: dict[str, Any], *, created: bool, moment: datetime.datetime) -> None:
        """Set the ``changed*`` utility columns (and the ``created*`` ones of a new row)."""
        stamps = {"Date": int_date(moment), "Time": int_time(moment),
                  "Timestamp": format_timestamp(moment), "ByUser": CLIENT_ID}
        for prefix in ("changed", "created") if created else ("changed",):
            for suffix, value in stamps.items():
                if prefix == "created" and row.get(prefix + suffix) is not None:
                    continue  # seeded creation data stays
                row[prefix + suffix] = value

    # -- the request pipeline ---------------------------------------------------------------

    def _serve(self, request: Request) -> tuple[Response, bool]:
        """The token endpoint is Visma Connect, another service: not behind the API gateway's
        faults and rate limit."""
        if request.path == TOKEN_PATH:
            if request.method != "POST":
                return self.respond(405, {"error": "invalid_request"}), False
            return self._issue_token(request), False
        return super()._serve(request)

    def _dispatch(self, request: Request) -> Response:
        if request.path == USER_CONTEXT_PATH:  # the user-context endpoint: the same API
            route, _ = self._router.match(request.method, "/")
            with self.lock:
                return getattr(self, route.handler)(request)
        return super()._dispatch(request)

    def _issue_token(self, request: Request) -> Response:
        """Visma Connect's client-credentials grant (with ``tenant_id``) for the one client."""
        form = request.form
        if (form.get("grant_type") != "client_credentials" or form.get("scope") != SCOPE
                or form.get("tenant_id") != TENANT_ID):
            return self.respond(400, {"error": "invalid_request", "error_description":
                                      "grant_type client_credentials, scope " + SCOPE +
                                      " and the tenant_id are required"})
        if form.get("client_id") != CLIENT_ID or not constant_time_equal(
                form.get("client_secret"), self.api_key):
            return self.respond(400, {"error": "invalid_client"})
        token = self._tokens.issue("eyJhbGciOiJSUzI1NiJ9.", TOKEN_LIFETIME_S)
        return self.respond(200, {"access_token": token, "expires_in": TOKEN_LIFETIME_S,
                                  "token_type": "Bearer", "scope": SCOPE})

    def serve_graphql(self, request: Request) -> Response:
        """One GraphQL request, or a batch (a JSON array of at most 32)."""
        try:
            body = loads(request.get_data())
        except ValueError:
            return self.respond(200, _errors("Request body is not valid JSON."))
        if isinstance(body, list):
            if not body:
                return self.respond(200, _errors("A batch needs at least one operation."))
            if len(body) > MAX_BATCH:
                return self.respond(200, _errors(
                    f"Batch contains {len(body)} operations, the maximum is {MAX_BATCH}."))
            return self.respond(200, [self._execute(item) for item in body])
        return self.respond(200, self._execute(body))

    def _execute(self, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict) or not isinstance(body.get("query"), str):
            return _errors("A GraphQL request is an object with a query string.")
        variables = body.get("variables")
        if variables is not None and not isinstance(variables, dict):
            return _errors("Variables must be an object.")
        result = graphql.graphql_sync(self.schema, body["query"], root_value=self,
                                      variable_values=variables,
                                      operation_name=body.get("operationName"))
        out: dict[str, Any] = {}
        if result.errors:
            out["errors"] = [error.formatted for error in result.errors]
        if result.data is not None or not result.errors:
            out["data"] = result.data
        return out

    def control_expire_tokens(self, request: Request) -> Response:
        """Every token issued so far stops working (as if it had expired)."""
        return self.respond(200, {"expired": self._tokens.expire_all()})

    # -- resolvers: reading -------------------------------------------------------------------

    def use_company(self, no: int) -> BusinessNxt:
        if no != COMPANY_NO:
            raise graphql.GraphQLError(
                f"Error: Could not get authorize user using VismaNetCompanyId: {no}. "
                "Description: External integration error. Status: 18.")
        return self

    def rows(self, table: Table) -> list[dict[str, Any]]:
        """The rows of a table as stored (order lines flattened out of their orders)."""
        if table is ORDER_LINE:
            return [line for row in self.collections["order"].values()
                    for line in row.entity[LINES]]
        return [row.entity for row in self.collections[table.field].values()]

    def connection(self, table: Table, rows: list[dict[str, Any]], args: Mapping[str, Any]) -> dict:
        """``first/after/skip``, ``filter`` and ``orderBy`` over ``rows``: the connection."""
        for name in ("first", "skip"):
            if args.get(name) is not None and args[name] < 0:
                raise graphql.GraphQLError(f"'{name}' must be a positive integer.")
        spec = _order_spec(table, args.get("orderBy"))
        columns = [table.column(name) for name, _ in spec]
        position = lambda row: [_comparable(c, row.get(c.name)) for c in columns]  # noqa: E731
        selected = [row for row in rows if matches(table, row, args.get("filter"))]
        selected.sort(key=functools.cmp_to_key(lambda a, b: _compare(spec, position(a),
                                                                     position(b))))
        start = 0
        if args.get("after"):
            after = [_comparable(c, v) for c, v in zip(columns, _decode_cursor(args["after"]),
                                                       strict=False)]
            start = next((i for i, row in enumerate(selected)
                          if _compare(spec, position(row), after) > 0), len(selected))
        start += args.get("skip") or 0
        end = len(selected) if args.get("first") is None else start + args["first"]
        page = selected[start:end]
        cursor = lambda row: _encode_cursor([row.get(c.name) for c in columns])  # noqa: E731
        return {
            "totalCount": len(selected),
            "pageInfo": {"hasNextPage": end < len(selected), "hasPreviousPage": start > 0,
                         "startCursor": cursor(page[0]) if page else None,
                         "endCursor": cursor(page[-1]) if page else None},
            "items": [_out(table, row) for row in page],
        }

    # -- resolvers: writing -------------------------------------------------------------------

    def create(self, table: Table, values: list[dict[str, Any]]) -> dict:
        """Insert every row or none (a failing row fails the field)."""
        if table is ORDER_LINE:
            return self._create_lines(values)
        checked = [self._check_row(table, value, creating=True) for value in values]
        items = []
        for value in checked:
            entity = {c.name: None for c in table.columns}
            lines = value.pop(LINES, None) or []
            entity.update(value)
            if table.key == "productNo":
                key = entity["productNo"]
            else:
                self.counters[table.field] += 1
                key = entity[table.key] = self.counters[table.field]
            if table is ORDER:
                entity[LINES] = [self._new_line(entity, line, index)
                                 for index, line in enumerate(lines, start=1)]
            items.append(self.commit(table.field, key, entity).entity)
        return {"affectedRows": len(items), "items": [_out(table, row) for row in items]}

    def update(self, table: Table, pairs: list[tuple[dict | None, dict]]) -> dict:
        """Apply ``value i`` to the rows ``filter i`` selects; all pairs or none."""
        if table is ORDER_LINE:
            return self._update_lines(pairs)
        planned = []
        for expression, value in pairs:
            value = self._check_row(table, value, creating=False)
            if not value:
                continue  # an empty value changes nothing (the service warns, it does not fail)
            if LINES in value:
                raise _RowError(f"{LINES} can only be given when the order is created.")
            for entity in self.rows(table):
                if matches(table, entity, expression):
                    planned.append((entity[table.key], value))
        items = []
        for key, value in planned:
            current = self.collections[table.field][key].entity
            items.append(self.commit(table.field, key, {**current, **value}).entity)
        return {"affectedRows": len(items), "items": [_out(table, row) for row in items]}

    def delete(self, table: Table, expression: dict | None) -> dict:
        if table is ORDER_LINE:
            changed = 0
            for order in list(self.collections["order"].values()):
                kept = [line for line in order.entity[LINES] if not matches(ORDER_LINE, line,
                                                                            expression)]
                if len(kept) != len(order.entity[LINES]):
                    changed += len(order.entity[LINES]) - len(kept)
                    self.commit("order", order.entity["orderNo"], {**order.entity, LINES: kept})
            return {"affectedRows": changed, "items": []}
        doomed = [e[table.key] for e in self.rows(table) if matches(table, e, expression)]
        for key in doomed:
            self.remove(table.field, key)
        return {"affectedRows": len(doomed), "items": []}

    def _check_row(self, table: Table, value: Mapping[str, Any], *, creating: bool) -> dict:
        """The value as stored, or :class:`_RowError` for what the data model refuses."""
        value = dict(value)
        for column in table.columns:
            text = value.get(column.name)
            if column.max_length and isinstance(text, str) and len(text) > column.max_length:
                raise _RowError(f"Value of column '{column.name}' in table '{table.type}' is "
                                f"longer than {column.max_length} characters.")
        if table is PRODUCT and creating:
            if not value.get("productNo"):
                raise _RowError("Column 'productNo' in table 'Product' must have a value.")
            if value["productNo"] in self.collections["product"]:
                raise _RowError(f"A row with primary key productNo = '{value['productNo']}' "
                                "already exists in table 'Product'.")
        if table is PRODUCT and not creating and "productNo" in value:
            raise _RowError("Column 'productNo' is the primary key of 'Product' and cannot be "
                            "changed.")
        if table is ORDER:
            if creating and not value.get("customerNo"):
                raise _RowError("Column 'customerNo' in table 'Order' must have a value.")
            if value.get("customerNo") and value["customerNo"] not in self.collections["address"]:
                raise _RowError(f"Customer {value['customerNo']} does not exist.")
            if value.get("orderDate") is not None:
                _check_date(value["orderDate"], "orderDate")
            for line in value.get(LINES) or []:
                self._check_line(line)
        return value

    def _check_line(self, line: Mapping[str, Any]) -> None:
        for column in ORDER_LINE.columns:
            text = line.get(column.name)
            if column.max_length and isinstance(text, str) and len(text) > column.max_length:
                raise _RowError(f"Value of column '{column.name}' in table 'OrderLine' is longer "
                                f"than {column.max_length} characters.")
        if line.get("productNo") and line["productNo"] not in self.collections["product"]:
            raise _RowError(f"Product '{line['productNo']}' does not exist.")

    def _new_line(self, order: Mapping[str, Any], value: Mapping[str, Any], line_no: int) -> dict:
        line = {c.name: None for c in ORDER_LINE.columns}
        line.update({k: v for k, v in value.items() if k != "orderNo"})
        product = self.collections["product"].get(line["productNo"])
        if product is not None:  # what is not given comes from the product, as in the client
            if line["description"] is None:
                line["description"] = product.entity["description"]
            if line["priceInCurrency"] is None:
                line["priceInCurrency"] = product.entity["salesPrice1"]
        line["orderNo"], line["lineNo"] = order["orderNo"], line_no
        self._stamp(line, created=True, moment=self.clock.tick())
        return line

    def _order_row(self, order_no: Any) -> Row:
        row = self.collections["order"].get(order_no)
        if row is None:
            raise _RowError(f"Order {order_no} does not exist.")
        return row

    def _create_lines(self, values: list[dict[str, Any]]) -> dict:
        for value in values:
            if value.get("orderNo") is None:
                raise _RowError("Column 'orderNo' in table 'OrderLine' must have a value.")
            self._order_row(value["orderNo"])
            self._check_line(value)
        created = []
        for value in values:
            order = self._order_row(value["orderNo"]).entity
            line = self._new_line(order, value, max((item["lineNo"] for item in order[LINES]),
                                                    default=0) + 1)
            self.commit("order", order["orderNo"], {**order, LINES: [*order[LINES], line]})
            created.append(line)
        return {"affectedRows": len(created), "items": [_out(ORDER_LINE, line) for line in created]}

    def _update_lines(self, pairs: list[tuple[dict | None, dict]]) -> dict:
        for _, value in pairs:
            self._check_line(value)
            if "orderNo" in value or "lineNo" in value:
                raise _RowError("The key of an order line cannot be changed.")
        items = []
        for expression, value in pairs:
            for order in list(self.collections["order"].values()):
                lines = order.entity[LINES]
                if not any(matches(ORDER_LINE, line, expression) for line in lines):
                    continue
                new_lines = []
                for line in lines:
                    if matches(ORDER_LINE, line, expression):
                        line = {**line, **value}
                        self._stamp(line, created=False, moment=self.clock.tick())
                        items.append(line)
                    new_lines.append(line)
                self.commit("order", order.entity["orderNo"], {**order.entity, LINES: new_lines})
        return {"affectedRows": len(items), "items": [_out(ORDER_LINE, line) for line in items]}


def _check_date(value: int, name: str) -> None:
    try:
        datetime.date(value // 10000, value // 100 % 100, value % 100)
    except ValueError:
        raise _RowError(f"Value {value} of column '{name}' is not a date (yyyymmdd).") from None


def _out(table: Table, row: Mapping[str, Any]) -> dict[str, Any]:
    """A stored row as GraphQL items see it (an order's lines behind the joindown field)."""
    out = dict(row)
    if table is ORDER:
        out["_lines"] = out.pop(LINES, [])
    return out


def _errors(message: str) -> dict[str, Any]:
    return {"errors": [{"message": message}]}


_NGINX_401 = ("<html>\r\n<head><title>401 Authorization Required</title></head>\r\n<body>\r\n"
              "<center><h1>401 Authorization Required</h1></center>\r\n"
              "<hr><center>nginx</center>\r\n"
              "</body>\r\n</html>\r\n")


# --------------------------------------------------------------------------------------------
# The schema and its resolvers


def _field_resolver(action: Callable[..., dict], table: Table) -> Callable[..., Any]:
    """A mutation field: the emulator's action, its :class:`_RowError` as the field's error."""
    def resolve(emulator: BusinessNxt, info: Any, **args: Any) -> Any:
        try:
            return action(emulator, table, args)
        except _RowError as exc:
            raise graphql.GraphQLError(str(exc)) from None
    return resolve


def _update_args(emulator: BusinessNxt, table: Table, args: Mapping[str, Any]) -> dict:
    if args.get("filters") is not None or args.get("values") is not None:
        filters, values = args.get("filters") or [], args.get("values") or []
        if len(filters) != len(values):
            raise _RowError("'filters' and 'values' must have the same number of elements.")
        pairs = list(zip(filters, values, strict=True))
    else:
        if args.get("value") is None:
            raise _RowError("Give 'filter' and 'value', or 'filters' and 'values'.")
        pairs = [(args.get("filter"), args["value"])]
    return emulator.update(table, pairs)


@functools.lru_cache(maxsize=1)
def _schema() -> graphql.GraphQLSchema:
    schema = graphql.build_schema(schema_sdl())
    decimal_type = schema.type_map["Decimal"]
    decimal_type.serialize = lambda value: decimal.Decimal(value)
    decimal_type.parse_value = _parse_decimal
    decimal_type.parse_literal = _parse_decimal_literal
    datetime_type = schema.type_map["DateTime"]
    datetime_type.serialize = lambda value: (format_timestamp(value) if isinstance(
        value, datetime.datetime) else value)
    datetime_type.parse_value = _parse_datetime
    datetime_type.parse_literal = _parse_datetime_literal
    for root in (schema.query_type, schema.mutation_type):
        root.fields["useCompany"].resolve = lambda emulator, info, no: emulator.use_company(no)
    query = schema.type_map["Query_UseCompany"]
    mutation = schema.type_map["Mutation_UseCompany"]
    for table in TABLES.values():
        query.fields[table.field].resolve = (
            lambda emulator, info, _t=table, **args: emulator.connection(_t, emulator.rows(_t),
                                                                         args))
        mutation.fields[f"{table.field}_create"].resolve = _field_resolver(
            lambda e, t, args: e.create(t, args["values"]), table)
        mutation.fields[f"{table.field}_update"].resolve = _field_resolver(_update_args, table)
        mutation.fields[f"{table.field}_delete"].resolve = _field_resolver(
            lambda e, t, args: e.delete(t, args.get("filter")), table)
    schema.type_map["Order"].fields[JOINDOWN].resolve = (
        lambda order, info, **args: info.root_value.connection(ORDER_LINE, order["_lines"], args))
    return schema
