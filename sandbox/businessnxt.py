"""Visma Business NXT emulator: the GraphQL service API of one company, over real GraphQL.

What it reproduces (``shared/research/apis.md`` §3; the choices where the public documentation
is silent are written down in ``docs/api/businessnxt.md``):

* Visma Connect's client-credentials token endpoint ``POST /connect/token`` (form fields
  ``grant_type``, ``client_id``, ``client_secret``, ``scope``, ``tenant_id``) and bearer tokens
  that expire; a request without a valid token gets nginx's **HTML** 401 page;
* ``POST /api/graphql-service`` (and ``/api/graphql``): one ``{query, variables,
  operationName}`` object, or a JSON **array** of up to 32 of them (a batch); every answer that
  got past the gateway is **HTTP 200**, failures as a GraphQL ``errors`` array with ``path``;
* a schema built with ``graphql-core`` from SDL generated out of the table description
  (:mod:`sandbox.businessnxt_model`, :mod:`sandbox.businessnxt_schema`), following the
  documented naming: ``useCompany(no:)``, ``Query_UseCompany_<Table>_Connection`` with
  ``totalCount``, ``pageInfo`` and ``items`` (no edges), ``first/after/last/before/skip``
  with opaque cursors, ``FilterExpression_<Table>`` with ``_eq/_not_eq/_gt/_gte/_lt/_lte/
  _in/_not_in/_between/_like`` and ``_and/_or``, ``orderBy``, ``<Table>_Input``,
  ``<table>_create(values:, suggest:)``,
  ``<table>_update(filter:, value:)`` / ``(filters:, values:)``, ``<table>_delete(filter:)``,
  ``Mutation_UseCompany_<Table>_Result {affectedRows items}``, ``<table>_aggregate``,
  ``availableCompanies`` and ``availableCustomers``;
* the customers in ``associate`` (a customer has a ``customerNo``, suggested on insert when
  asked for) or in the seed's ``address`` (``customer_table``, decision 0014); ``order`` with
  ``orderLine`` (nested ``orderLines`` on create, ``joindown_OrderLine_via_Order`` on read),
  ``product``; auto-numbered ``associateNo``/``addressNo``, ``orderNo`` and ``lineNo``;
  integer dates (``yyyymmdd``) and times (``hhmm``); the utility
  columns (``createdDate/Time/Timestamp``, ``changedDate/Time/Timestamp``) kept on every write;
* one mutation field is one transaction: a row that fails validation fails its whole field
  (``null`` in ``data``, one error with the field's ``path``), and the other fields of the
  request are unaffected;
* the gateway's 600 requests per minute (``rate_limit: true`` of ``/_sandbox/faults``) → 429;
* what it does not emulate it refuses in the GraphQL error shape (validation errors carry
  GraphQL.NET's ``extensions.code``; given-but-not-emulated arguments ``NOT_EMULATED``).

Order lines are stored inside their order; a write to a line recalculates the order and so
changes the order row too (its ``changedTimestamp`` moves).
"""

from __future__ import annotations

import datetime
import functools
import re
from collections.abc import Mapping
from typing import Any

import graphql
from werkzeug.wrappers import Request, Response

from sandbox.businessnxt_model import (
    AGGREGATES,
    CUSTOMER_TABLES,
    FIRST_NUMBER,
    LINES,
    ORDER,
    ORDER_LINE,
    PRODUCT,
    RowError,
    Table,
    aggregate,
    comparable,
    compare,
    decode_cursor,
    encode_cursor,
    int_date,
    int_time,
    matches,
    not_emulated,
    order_spec,
    tables_for,
)
from sandbox.businessnxt_schema import build_schema
from sandbox.emulator import Emulator, Row, constant_time_equal
from sandbox.limits import BearerTokens, RateLimit
from sandbox.routing import CONTROL_ROUTES, Route, Router
from sandbox.validation import ApiError
from sandbox.wire import format_timestamp, loads, parse_timestamp

TENANT_ID = "6f1c2b3a-0d4e-4b5f-9a8c-7e6d5c4b3a21"
CLIENT_ID = "talksync_sandbox"  # a User row is named after it: at most 24 characters
COMPANY_NO = 3456789  # the Visma.net company id useCompany(no:) takes
CUSTOMER_NO = 9123456  # the Visma.net customer (the licence holder) the company belongs to
COMPANY_NAME = "Talksync Sandbox AS"
SCOPE = "business-graphql-service-api:access-group-based"
TOKEN_PATH = "/connect/token"
USER_CONTEXT_PATH = "/api/graphql"
TOKEN_LIFETIME_S = 3600
MAX_BATCH = 32

# --------------------------------------------------------------------------------------------
# The emulator


class BusinessNxt(Emulator):
    """Visma Business NXT's GraphQL service API for one company (see the module docstring)."""

    system = "businessnxt"
    api_prefix = "/api/graphql-service"
    timestamp_field = "changedTimestamp"
    key_fields = {"address": "addressNo", "associate": "associateNo", "order": "orderNo",
                  "product": "productNo"}
    singular = {"address": "address", "associate": "associate", "order": "order",
                "product": "product"}
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

    def __init__(self, *, customer_table: str = "address", **kwargs: Any):
        """``customer_table``: where this company keeps its customers, ``address`` (the seed's)
        or ``associate`` (Visma's documented table); the schema has that one of the two."""
        self._tokens = BearerTokens()
        self.customer_table = customer_table
        self.tables = tables_for(customer_table)
        self.schema = build_schema(customer_table)
        super().__init__(**kwargs)
        self._control_router = Router(self.control_routes)

    def connector_settings(self, root_url: str) -> dict[str, str]:
        """What ``talksync.yaml`` needs besides base URL and secret to reach this emulator."""
        return {"client_id": CLIENT_ID, "tenant_id": TENANT_ID,
                "token_url": root_url + TOKEN_PATH, "company_no": str(COMPANY_NO),
                "customer_table": self.customer_table}

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
        data = businessnxt_seed(self.seed, customer_table=self.customer_table)
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
                for table in (self.customer_table, "order")}

    def _restore(self, saved: Mapping[str, Any]) -> None:
        """A saved company keeps its customers where it kept them: a state of the other kind
        is refused, not served with a table missing."""
        other = next(name for name in CUSTOMER_TABLES if name != self.customer_table)
        if other in saved.get("collections", {}):
            raise ValueError(f"the saved Business NXT company keeps its customers in {other!r}, "
                             f"not {self.customer_table!r}: serve it with customer table {other} "
                             "or start from another state folder")
        super()._restore(saved)

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
            out["errors"] = [_formatted(error) for error in result.errors]
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
        """``first/after``, ``last/before``, ``skip``, ``filter`` and ``orderBy`` over ``rows``:
        the connection (docs "Pagination": the rows after/before a cursor, ``skip`` of them
        skipped, then the first or last ones)."""
        for name in ("first", "last", "skip"):
            if args.get(name) is not None and args[name] < 0:
                raise graphql.GraphQLError(f"'{name}' must be a positive integer.")
        spec = order_spec(table, args.get("orderBy"))
        columns = [table.column(name) for name, _ in spec]
        position = lambda row: [comparable(c, row.get(c.name)) for c in columns]  # noqa: E731
        selected = [row for row in rows if matches(table, row, args.get("filter"))]
        selected.sort(key=functools.cmp_to_key(lambda a, b: compare(spec, position(a),
                                                                     position(b))))

        def index(cursor: str) -> int:
            """Where the rows after ``cursor`` start."""
            at = [comparable(c, v) for c, v in zip(columns, decode_cursor(cursor), strict=False)]
            return next((i for i, row in enumerate(selected)
                         if compare(spec, position(row), at) > 0), len(selected))

        start = index(args["after"]) if args.get("after") else 0
        end = index(args["before"]) - 1 if args.get("before") else len(selected)
        start = min(start + (args.get("skip") or 0), max(end, start))
        if args.get("first") is not None:
            end = min(end, start + args["first"])
        elif args.get("last") is not None:
            start = max(start, end - args["last"])
        page = selected[start:end]
        cursor = lambda row: encode_cursor([row.get(c.name) for c in columns])  # noqa: E731
        return {
            "totalCount": len(selected),
            "pageInfo": {"hasNextPage": end < len(selected), "hasPreviousPage": start > 0,
                         "startCursor": cursor(page[0]) if page else None,
                         "endCursor": cursor(page[-1]) if page else None},
            "items": [_out(table, row) for row in page],
        }

    def aggregates(self, table: Table, expression: Mapping[str, Any] | None) -> dict:
        """``<table>_aggregate(filter:)``: each aggregate computed when it is asked for."""
        selected = [row for row in self.rows(table) if matches(table, row, expression)]
        return {name: functools.partial(lambda name, info, **_: aggregate(table, selected, name),
                                        name) for name in AGGREGATES}

    def available(self, kind: str, args: Mapping[str, Any]) -> dict:
        """``availableCompanies`` / ``availableCustomers``: this one company and its customer,
        ``customerNo`` narrowing the companies, ``orderBy``, then ``first`` (or ``last``)."""
        rows: list[dict[str, Any]] = [
            {"name": COMPANY_NAME, "vismaNetCompanyId": COMPANY_NO,
             "vismaNetCustomerId": CUSTOMER_NO} if kind == "companies" else
            {"name": COMPANY_NAME, "vismaNetCustomerId": CUSTOMER_NO}]
        if args.get("customerNo") is not None:
            rows = [row for row in rows if row["vismaNetCustomerId"] == args["customerNo"]]
        for item in reversed(args.get("orderBy") or []):
            for name, direction in reversed(list(item.items())):
                rows.sort(key=lambda row, name=name: row[name], reverse=direction == "DESC")
        if args.get("first") is not None:
            rows = rows[:args["first"]]
        elif args.get("last") is not None:
            rows = rows[len(rows) - args["last"]:] if args["last"] else []
        return {"totalCount": len(rows), "items": rows}

    # -- resolvers: writing -------------------------------------------------------------------

    def create(self, table: Table, values: list[dict[str, Any]],
               suggest: Mapping[str, bool] | None = None) -> dict:
        """Insert every row or none (a failing row fails the field). A number column asked for
        in ``suggest``, or given as null, gets the next free number (docs "Suggested values")."""
        if table is ORDER_LINE:
            return self._create_lines(values)
        asked = [name for name, wanted in (suggest or {}).items() if wanted]
        for name in asked:
            if name not in table.numbers:
                raise not_emulated(f"A suggested value for '{name}' of {table.type}")
        taken: dict[str, list[int]] = {}
        values = [self._suggested(table, value, asked, taken) for value in values]
        checked = [self._check_row(table, value, creating=True) for value in values]
        self._check_unique(table, checked)
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
            self._check_unique(table, [value], expression or {})
            if not value:
                continue  # an empty value changes nothing (the service warns, it does not fail)
            if LINES in value:
                raise RowError(f"{LINES} can only be given when the order is created.")
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
            return {"affectedRows": changed, "items": None}
        doomed = [e[table.key] for e in self.rows(table) if matches(table, e, expression)]
        for key in doomed:
            self.remove(table.field, key)
        # "The value of the items field of the return type will always be null for a delete
        # operation." (Visma, "Delete operations"); an order's lines are stored in it: gone too
        return {"affectedRows": len(doomed), "items": None}

    def _suggested(self, table: Table, value: Mapping[str, Any], asked: list[str],
                   taken: dict[str, list[int]]) -> dict:
        """``value`` with the number columns asked for (or sent as null) numbered: one more
        than the highest in use (the client's "+" does the same), :data:`FIRST_NUMBER` first."""
        value = dict(value)
        for name in table.numbers:
            if name in asked or (name in value and value[name] is None):
                used = [row.get(name) or 0 for row in self.rows(table)]
                value[name] = max([FIRST_NUMBER - 1, *used, *taken.get(name, ())]) + 1
                taken.setdefault(name, []).append(value[name])
        return value

    def _check_unique(self, table: Table, values: list[dict],
                      expression: Mapping[str, Any] | None = None) -> None:
        """A customer or supplier number belongs to one associate ("Value is already in use");
        on update, rows the ``expression`` selects may keep theirs."""
        for name in table.numbers:
            given = [v[name] for v in values if v.get(name)]
            used = {row.get(name) for row in self.rows(table)
                    if expression is None or not matches(table, row, expression)}
            for number in given:
                if number in used or given.count(number) > 1:
                    raise RowError(f"Value {number} of column '{name}' in table '{table.type}' "
                                   "is already in use.")

    def _check_row(self, table: Table, value: Mapping[str, Any], *, creating: bool) -> dict:
        """The value as stored, or :class:`RowError` for what the data model refuses."""
        value = dict(value)
        for column in table.columns:
            text = value.get(column.name)
            if column.max_length and isinstance(text, str) and len(text) > column.max_length:
                raise RowError(f"Value of column '{column.name}' in table '{table.type}' is "
                                f"longer than {column.max_length} characters.")
        if table is PRODUCT and creating:
            if not value.get("productNo"):
                raise RowError("Column 'productNo' in table 'Product' must have a value.")
            if value["productNo"] in self.collections["product"]:
                raise RowError(f"A row with primary key productNo = '{value['productNo']}' "
                                "already exists in table 'Product'.")
        if table is PRODUCT and not creating and "productNo" in value:
            raise RowError("Column 'productNo' is the primary key of 'Product' and cannot be "
                            "changed.")
        if table is ORDER:
            if creating and not value.get("customerNo"):
                raise RowError("Column 'customerNo' in table 'Order' must have a value.")
            if value.get("customerNo") and not self._is_customer(value["customerNo"]):
                raise RowError(f"Customer {value['customerNo']} does not exist.")
            if value.get("orderDate") is not None:
                _check_date(value["orderDate"], "orderDate")
            for line in value.get(LINES) or []:
                self._check_line(line)
        return value

    def _is_customer(self, number: int) -> bool:
        """Whether an order may name ``number`` as its ``customerNo``: an associate's customer
        number, or (in the seed's model) an address number."""
        column = CUSTOMER_TABLES[self.customer_table]
        return any(row.get(column) == number for row in self.rows(self.tables[
            self.customer_table]))

    def _check_line(self, line: Mapping[str, Any]) -> None:
        for column in ORDER_LINE.columns:
            text = line.get(column.name)
            if column.max_length and isinstance(text, str) and len(text) > column.max_length:
                raise RowError(f"Value of column '{column.name}' in table 'OrderLine' is longer "
                                f"than {column.max_length} characters.")
        if line.get("productNo") and line["productNo"] not in self.collections["product"]:
            raise RowError(f"Product '{line['productNo']}' does not exist.")

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
            raise RowError(f"Order {order_no} does not exist.")
        return row

    def _create_lines(self, values: list[dict[str, Any]]) -> dict:
        for value in values:
            if value.get("orderNo") is None:
                raise RowError("Column 'orderNo' in table 'OrderLine' must have a value.")
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
                raise RowError("The key of an order line cannot be changed.")
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
        raise RowError(f"Value {value} of column '{name}' is not a date (yyyymmdd).") from None


def _out(table: Table, row: Mapping[str, Any]) -> dict[str, Any]:
    """A stored row as GraphQL items see it (an order's lines behind the joindown field)."""
    out = dict(row)
    if table is ORDER:
        out["_lines"] = out.pop(LINES, [])
    return out


#: graphql-core's validation messages -> GraphQL.NET's rule and code, which the real service
#: puts in the message and in ``extensions`` (docs "Error handling" shows the first); the first
#: match wins
_VALIDATION_RULES: tuple[tuple[re.Pattern[str], str, str], ...] = tuple(
    (re.compile(pattern), rule, code) for pattern, rule, code in (
        (r"^Syntax Error", "", "SYNTAX_ERROR"),
        (r"^Cannot query field", "FieldsOnCorrectTypeError", "FIELDS_ON_CORRECT_TYPE"),
        (r"^Unknown argument", "KnownArgumentNamesError", "KNOWN_ARGUMENT_NAMES"),
        (r"^Unknown type", "KnownTypeNamesError", "KNOWN_TYPE_NAMES"),
        (r"^Unknown directive", "KnownDirectivesError", "KNOWN_DIRECTIVES"),
        (r"^Variable '\$\w+' of type .* used in position", "VariablesInAllowedPositionError",
         "VARIABLES_IN_ALLOWED_POSITION"),
        (r"^Variable '\$\w+'", "InvalidVariableError", "INVALID_VALUE"),
        (r"^Field '.*' argument '.*' of type '.*' is required", "ProvidedRequiredArgumentsError",
         "PROVIDED_REQUIRED_ARGUMENTS"),
        (r"is not defined by type|Expected value of type|cannot represent",
         "ArgumentsOfCorrectTypeError", "ARGUMENTS_OF_CORRECT_TYPE"),
        (r"", "ValidationError", "VALIDATION_ERROR"),
    ))


def _formatted(error: graphql.GraphQLError) -> dict[str, Any]:
    """An error as the answer carries it. A request the schema refuses before anything runs
    (no ``path``) gets GraphQL.NET's rule name and ``extensions.code`` like the real service's
    ``FIELDS_ON_CORRECT_TYPE``; an error of a field keeps its own extensions."""
    out = dict(error.formatted)
    if error.path is None and not error.extensions:
        _, rule, code = next(row for row in _VALIDATION_RULES if row[0].search(error.message))
        if rule:
            out["message"] = f"GraphQL.Validation.Errors.{rule}: {error.message}"
        out["extensions"] = {"code": code, "codes": [code]}
    return out


def _errors(message: str) -> dict[str, Any]:
    return {"errors": [{"message": message}]}


_NGINX_401 = ("<html>\r\n<head><title>401 Authorization Required</title></head>\r\n<body>\r\n"
              "<center><h1>401 Authorization Required</h1></center>\r\n"
              "<hr><center>nginx</center>\r\n"
              "</body>\r\n</html>\r\n")
