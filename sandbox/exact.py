"""Emulator of the Exact Online REST API (OData v2), driven by Exact's API reference.

What it reproduces (``docs/api/exact.md`` has the full list, and what it leaves out):

* ``/api/v1/{division}/crm/Accounts``, ``/logistics/Items``, ``/salesorder/SalesOrders`` (with
  ``$expand=SalesOrderLines``) and ``/salesorder/SalesOrderLines``: list, ``POST``, and
  ``GET``/``PUT``/``DELETE`` of one entity at ``…(guid'<id>')``; ``/api/v1/current/Me``;
* the ``bulk/`` (``CRM/Accounts``, ``Logistics/Items``, ``SalesOrder/SalesOrderLines``) and
  ``sync/`` endpoints (``CRM/Accounts``, ``Logistics/Items``, ``SalesOrder/SalesOrders`` one row
  per order line, ``Deleted``), with ``$select`` required and the ``Timestamp`` counter, which
  every write of the division increments;
* OData v2 verbose JSON: ``{"d": {"results": [...], "__next": url}}``, ``__metadata``, 60 rows
  per page (1,000 on bulk and sync), ``$skiptoken`` continuation, ``$filter`` with ``guid'…'``,
  ``datetime'…'`` and ``…L`` literals, ``/Date(ms)/`` date-times, 18-character right-aligned
  numeric codes, and XML unless the request accepts ``application/json``;
* every write checked against the reference (property names, Edm types, which properties a
  ``POST`` or a ``PUT`` may set), mandatory fields, unique codes; ``PUT`` answers 204,
  ``POST`` 201 with the entity (all of it with ``Prefer: return=representation``);
* Exact's error body ``{"error": {"code": "", "message": {"lang": "", "value": …}}}``;
* OAuth2 authorization code: ``/api/oauth2/auth`` (consent is auto-approved: a redirect to
  ``redirect_uri`` with a single-use ``code``, valid 3 minutes), ``/api/oauth2/token`` with the
  ``authorization_code`` and ``refresh_token`` grants; access tokens live 600 s, refresh tokens
  are single-use (a rotated one is refused with ``invalid_grant``) and a refresh sooner than
  570 s after the last one is refused;
* the rate limits per division: a minutely and a daily limit with Exact's six ``X-RateLimit-*``
  headers (resets in epoch milliseconds) on every API answer, 429 beyond.

Test controls beyond the common ones: ``POST /_sandbox/limits`` (``{"minutely": 60, "daily":
5000, "minute_s": 60, "bulk_page_size": 1000}``), ``POST /_sandbox/expire-tokens`` (token time
moves 600 s on: every access token expires and a refresh is allowed again) and ``GET
/_sandbox/tokens`` (how many refresh tokens were issued, and a hash of the current one).
"""

from __future__ import annotations

import decimal
import hashlib
import secrets
import threading
import time
import uuid
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

from werkzeug.wrappers import Request, Response

from sandbox.emulator import Emulator, Row, constant_time_equal
from sandbox.exact_reference import (
    BULK_PAGE_SIZE,
    DEFAULT_DAILY,
    DEFAULT_MINUTELY,
    PAGE_SIZE,
    Limits,
    comparable,
    convert,
    exact_filter,
    pad_code,
    reference,
    skiptoken,
    skiptoken_key,
    to_wire_date,
    to_xml,
)
from sandbox.limits import RateLimit
from sandbox.odata import FilterError, parse_filter
from sandbox.routing import CONTROL_ROUTES, Route, Router
from sandbox.seed_exact import FIRST_ORDER_NUMBER, exact_seed
from sandbox.validation import ApiError
from sandbox.wire import format_timestamp, loads

DIVISION = 3069781
CLIENT_ID = "8f2b3c4d-5e6f-4a7b-9c8d-0e1f2a3b4c5d"
ACCESS_TOKEN_LIFETIME_S = 600
#: Exact refuses a refresh sooner than this after the previous one
REFRESH_FLOOR_S = 570
AUTH_CODE_LIFETIME_S = 180
STANDARD_MINUTELY, STANDARD_DAILY = 60, 5000
#: the division's Timestamp counter before the seed (a client starts its sync at 1)
FIRST_TIMESTAMP = 8_500_000
EMPTY_GUID = "00000000-0000-0000-0000-000000000000"
#: ``sync/Deleted`` entity types (Exact's numbering)
ENTITY_TYPES = {"Accounts": 2, "Items": 9, "SalesOrders": 12}

ORDERS, LINES = "SalesOrders", "SalesOrderLines"
#: resource -> (service path, reference endpoint, key property, OData type name)
RESOURCES: Mapping[str, tuple[str, str, str, str]] = {
    "Accounts": ("crm/Accounts", "Accounts", "ID", "Account"),
    "Items": ("logistics/Items", "Items", "ID", "Item"),
    ORDERS: ("salesorder/SalesOrders", "SalesOrders", "OrderID", "SalesOrder"),
}
#: sync and bulk endpoints: path -> (resource, reference endpoint)
SYNC = {"CRM/Accounts": ("Accounts", "CRM/Accounts"),
        "Logistics/Items": ("Items", "Logistics/Items"),
        "SalesOrder/SalesOrders": (ORDERS, "SalesOrder/SalesOrders"),
        "Deleted": ("Deleted", "Deleted")}
BULK = {"CRM/Accounts": ("Accounts", "Accounts"),
        "Logistics/Items": ("Items", "Items"),
        "SalesOrder/SalesOrderLines": (LINES, "SalesOrder/SalesOrderLines")}
#: properties a create must carry (the reference has no mandatory flags; Exact's UI rules)
MANDATORY = {"Accounts": ("Name",), "Items": ("Code", "Description"), ORDERS: ("OrderedBy",),
             LINES: ("Item",)}


# --------------------------------------------------------------------------------------------
# The emulator


def _routes() -> tuple[Route, ...]:
    division = "/v1/{division}"
    routes = [Route("GET", "/v1/current/Me", "get_me"),
              Route("GET", "/oauth2/auth", "authorize"),
              Route("POST", "/oauth2/token", "token")]
    for resource, (path, _, _, _) in RESOURCES.items():
        args = {"resource": resource}
        routes += [
            Route("GET", f"{division}/{path}", "list_entities", args),
            Route("POST", f"{division}/{path}", "create_entity", args),
            Route("GET", f"{division}/{path}(guid'{{id}}')", "get_entity", args),
            Route("PUT", f"{division}/{path}(guid'{{id}}')", "put_entity", args),
            Route("DELETE", f"{division}/{path}(guid'{{id}}')", "delete_entity", args),
        ]
    lines = f"{division}/salesorder/{LINES}"
    routes += [Route("GET", lines, "list_lines"), Route("POST", lines, "create_line"),
               Route("PUT", f"{lines}(guid'{{id}}')", "put_line"),
               Route("DELETE", f"{lines}(guid'{{id}}')", "delete_line")]
    routes += [Route("GET", f"{division}/sync/{path}", "sync", {"path": path}) for path in SYNC]
    routes += [Route("GET", f"{division}/bulk/{path}", "bulk", {"path": path}) for path in BULK]
    return tuple(routes)


class ExactOnline(Emulator):
    """Exact Online's REST API for one division (see the module docstring)."""

    system = "exact"
    api_prefix = "/api"
    timestamp_field = "Modified"
    key_fields = {"Accounts": "ID", "Items": "ID", ORDERS: "OrderID", "Deleted": "ID"}
    singular = {"Accounts": "Account", "Items": "Item", ORDERS: "Sales order",
                "Deleted": "Deleted"}
    system_rate_limit = RateLimit(STANDARD_MINUTELY, 60.0)
    errors = {
        "unauthorized": (401, ""),
        "forbidden": (403, ""),
        "not_found": (404, ""),
        "method_not_allowed": (405, ""),
        "validation_failed": (400, ""),
        "bad_request": (400, ""),
        "conflict": (400, ""),
        "rate_limited": (429, ""),
        "internal": (500, ""),
        "unavailable": (503, ""),
    }
    routes = _routes()
    control_routes = CONTROL_ROUTES + (
        Route("POST", "/_sandbox/limits", "control_limits"),
        Route("POST", "/_sandbox/expire-tokens", "control_expire_tokens"),
        Route("GET", "/_sandbox/tokens", "control_tokens"),
    )

    #: the config setting the sandbox's secret goes in
    secret_setting = "client_secret"

    def __init__(self, **kwargs: Any):
        self.reference = reference()
        self._auth_lock = threading.Lock()
        self._token_time_offset = 0.0
        self._codes: dict[str, tuple[float, str]] = {}
        self._access: dict[str, float] = {}
        self._refresh: str | None = None
        self._refreshed_at = 0.0
        self._issued_refresh = 0
        self._limits = Limits()
        super().__init__(**kwargs)
        self._control_router = Router(self.control_routes)

    @classmethod
    def connector_settings(cls, root_url: str) -> dict[str, str]:
        """What ``talksync.yaml`` needs besides base URL and secret to reach this emulator."""
        return {"division": str(DIVISION), "client_id": CLIENT_ID,
                "redirect_uri": "http://127.0.0.1:8765/callback"}

    # -- hooks ----------------------------------------------------------------------------

    def authenticate(self, request: Request) -> bool:
        if request.path.startswith(self.api_prefix + "/oauth2/"):
            return True  # the OAuth endpoints authenticate the client themselves
        header = request.headers.get("Authorization", "")
        if not header.startswith("Bearer "):
            return False
        with self._auth_lock:
            expires = self._access.get(header[len("Bearer "):])
        return expires is not None and expires > self._token_now()

    def challenge_headers(self) -> Mapping[str, str]:
        return {"WWW-Authenticate": 'Bearer realm="Exact Online", error="invalid_token"'}

    def error_body(self, code: str, message: str, details: Any) -> Any:
        return {"error": {"code": code, "message": {"lang": "", "value": message}}}

    def error_payload(self, error: ApiError) -> Any:
        if error.kind == "unauthorized":
            return self.error_body("", "The access token is invalid or has expired.", ())
        return super().error_payload(error)

    def seed_collections(self) -> Mapping[str, list[dict[str, Any]]]:
        data = exact_seed(self.seed)
        stamp = FIRST_TIMESTAMP
        # the Timestamp counts writes: the seed's were made in the order of their Modified
        for entity in sorted((e for entities in data.values() for e in entities),
                             key=lambda e: e["Modified"]):
            entity["Division"] = DIVISION
            if "Code" in entity:
                entity["Code"] = pad_code(entity["Code"])
            stamp += 1
            entity["Timestamp"] = stamp
            for line in entity.get(LINES, []):
                stamp += 1
                line["Timestamp"] = stamp
                line["Division"] = DIVISION
        for order in data[ORDERS]:
            self._order_rules(order, data)
        return {**data, "Deleted": []}

    def initial_counters(self) -> dict[str, int]:
        stamps = [row.entity["Timestamp"] for rows in self.collections.values()
                  for row in rows.values()]
        stamps += [line["Timestamp"] for row in self.collections[ORDERS].values()
                   for line in row.entity[LINES]]
        numbers = [row.entity["OrderNumber"] for row in self.collections[ORDERS].values()]
        codes = [int(row.entity["Code"]) for row in self.collections["Accounts"].values()
                 if row.entity["Code"].strip().isdigit()]
        return {"Timestamp": max(stamps, default=0),
                "OrderNumber": max(numbers, default=FIRST_ORDER_NUMBER - 1),
                "AccountCode": max(codes, default=0)}

    def commit(self, resource: str, key: str, entity: dict[str, Any]) -> Row:
        """Every write moves the division's ``Timestamp`` on; each line of an order is a row of
        ``sync/SalesOrder/SalesOrders``, so a changed order restamps all of its lines."""
        self.counters["Timestamp"] += 1
        entity["Timestamp"] = self.counters["Timestamp"]
        if resource == ORDERS:
            lines = []
            for line in entity.get(LINES, []):
                self.counters["Timestamp"] += 1
                lines.append({**line, "Timestamp": self.counters["Timestamp"]})
            entity[LINES] = lines
        return super().commit(resource, key, entity)

    # -- the request pipeline ---------------------------------------------------------------

    def _token_now(self) -> float:
        return time.time() + self._token_time_offset

    def _serve(self, request: Request) -> tuple[Response, bool]:
        """The common pipeline (the OAuth endpoints without faults or limits), then XML for a
        client that did not ask for JSON."""
        if request.path.startswith(self.api_prefix + "/oauth2/"):
            try:
                return self._dispatch(request), False
            except ApiError as error:
                return self.error_response(error), False
        response, lost = super()._serve(request)
        if ("application/json" not in request.headers.get("Accept", "")
                and response.mimetype == "application/json" and response.get_data()):
            body = loads(response.get_data())
            response.set_data('<?xml version="1.0" encoding="utf-8"?>' + to_xml(body))
            response.mimetype = "application/xml"
        return response, lost

    def _dispatch(self, request: Request) -> Response:
        """The division's rate limits around every API call (not the OAuth endpoints)."""
        if request.path.startswith(self.api_prefix + "/oauth2/"):
            return super()._dispatch(request)
        allowed, headers = self._limits.hit()
        if not allowed:
            raise ApiError("rate_limited", "API rate limit exceeded.", headers=headers)
        try:
            response = super()._dispatch(request)
        except ApiError as error:
            error.headers.update(headers)
            raise
        response.headers.update(headers)
        return response

    # -- OAuth2 -------------------------------------------------------------------------------

    def authorize(self, request: Request) -> Response:
        """The consent page, auto-approved: a redirect to ``redirect_uri`` with a code."""
        args = request.args
        if args.get("client_id") != CLIENT_ID or args.get("response_type") != "code" or \
                not args.get("redirect_uri"):
            return self.respond(400, {"error": "invalid_request", "error_description":
                                      "client_id, redirect_uri and response_type=code are "
                                      "required."})
        code = "stampNL001." + secrets.token_urlsafe(24)
        with self._auth_lock:
            self._codes[code] = (self._token_now() + AUTH_CODE_LIFETIME_S, args["redirect_uri"])
        query = {"code": code, **({"state": args["state"]} if "state" in args else {})}
        separator = "&" if "?" in args["redirect_uri"] else "?"
        return Response(status=302, headers={
            "Location": f"{args['redirect_uri']}{separator}{urlencode(query)}"})

    def token(self, request: Request) -> Response:
        form = request.form
        if form.get("client_id") != CLIENT_ID or not constant_time_equal(
                form.get("client_secret"), self.api_key):
            return self.respond(400, {"error": "invalid_client",
                                      "error_description": "Invalid client credentials."})
        grant = form.get("grant_type")
        with self._auth_lock:
            now = self._token_now()
            if grant == "authorization_code":
                entry = self._codes.pop(form.get("code", ""), None)
                if entry is None or entry[0] < now or entry[1] != form.get("redirect_uri"):
                    return self._invalid_grant("The authorization code is invalid, expired or "
                                               "was already used.")
            elif grant == "refresh_token":
                presented = form.get("refresh_token")
                if self._refresh is None or not constant_time_equal(presented, self._refresh):
                    return self._invalid_grant("Old refresh token used.")
                if now - self._refreshed_at < REFRESH_FLOOR_S:
                    return self._invalid_grant(
                        f"Access token requested too early: a new access token can be "
                        f"requested {REFRESH_FLOOR_S} seconds after the previous one.")
            else:
                return self.respond(400, {"error": "unsupported_grant_type",
                                          "error_description": f"grant_type {grant!r}"})
            access = "gAAAAAB" + secrets.token_urlsafe(32)
            self._refresh = "Rf1!" + secrets.token_urlsafe(32)
            self._issued_refresh += 1
            self._refreshed_at = now
            self._access = {t: e for t, e in self._access.items() if e > now}
            self._access[access] = now + ACCESS_TOKEN_LIFETIME_S
            refresh = self._refresh
        return self.respond(200, {"access_token": access, "token_type": "bearer",
                                  "expires_in": str(ACCESS_TOKEN_LIFETIME_S),
                                  "refresh_token": refresh})

    def _invalid_grant(self, description: str) -> Response:
        return self.respond(400, {"error": "invalid_grant", "error_description": description})

    # -- helpers --------------------------------------------------------------------------

    def _check_division(self, division: str) -> None:
        if division != str(DIVISION):
            raise ApiError("forbidden", f"Forbidden: no access to division {division}.")

    def _row(self, resource: str, key: str) -> Row:
        row = self.collections[resource].get(key.lower())
        if row is None:
            raise ApiError("not_found", f"{self.singular[resource]} not found.")
        return row

    def _props(self, endpoint: str) -> dict[str, dict[str, Any]]:
        return self.reference[endpoint]

    def _accept(self, endpoint: str, body: Mapping[str, Any], method: str,
                nested: tuple[str, ...] = ()) -> dict[str, Any]:
        """The body's values as stored, checked against the reference: the property exists and
        the method may set it."""
        props = self._props(endpoint)
        accepted = {}
        for name, value in body.items():
            if name == "__metadata":
                continue
            if name in nested:
                accepted[name] = value
                continue
            prop = props.get(name)
            if prop is None:
                raise ApiError("bad_request", f"Property '{name}' does not exist on type "
                                              f"'Exact.Web.Api.Models.{endpoint}'.")
            if not prop["supportedMethods"].get(method):
                raise ApiError("bad_request", f"Property '{name}' cannot be set with "
                                              f"{method.upper()}.")
            accepted[name] = convert(endpoint, name, prop, value)
        return accepted

    def _out(self, request: Request, endpoint: str, entity: Mapping[str, Any],
             uri: str | None, select: set[str] | None = None,
             expand: bool = False) -> dict[str, Any]:
        """An entity as Exact sends it: the reference's properties, ``/Date(ms)/`` dates."""
        out: dict[str, Any] = {}
        if uri is not None:
            kind = next((r[3] for r in RESOURCES.values() if r[1] == endpoint),
                        "SalesOrderLine" if endpoint == LINES else endpoint)
            out["__metadata"] = {"uri": uri, "type": f"Exact.Web.Api.Models.{kind}"}
        for name, prop in self._props(endpoint).items():
            if select and name not in select:
                continue
            value = entity.get(name)
            if prop["type"] == "Edm.DateTime":
                value = to_wire_date(value)
            elif prop["type"] == LINES:
                value = self._lines_value(request, entity, uri,
                                          expand or LINES in self._expand(request))
            out[name] = value
        return out

    def _lines_value(self, request: Request, order: Mapping[str, Any], uri: str | None,
                     expanded: bool) -> Any:
        if not expanded:
            return {"__deferred": {"uri": f"{uri}/SalesOrderLines"}}
        return {"results": [self._out(request, LINES, line, self._uri(request, LINES, line["ID"]))
                            for line in order.get(LINES, [])]}

    @staticmethod
    def _expand(request: Request) -> set[str]:
        names = {n.strip() for n in request.args.get("$expand", "").split(",") if n.strip()}
        if names - {LINES}:
            raise ApiError("bad_request", f"Invalid $expand: {sorted(names - {LINES})[0]}.")
        return names

    def _select(self, request: Request, endpoint: str, required: bool) -> set[str] | None:
        text = request.args.get("$select")
        if not text:
            if required:
                raise ApiError("bad_request", "$select is mandatory for this endpoint.")
            return None
        names = {n.strip() for n in text.split(",") if n.strip()}
        unknown = names - set(self._props(endpoint))
        if unknown:
            raise ApiError("bad_request", f"Invalid $select: property '{sorted(unknown)[0]}' "
                                          f"does not exist.")
        return names

    def _uri(self, request: Request, resource: str, key: str) -> str:
        path = "salesorder/SalesOrderLines" if resource == LINES else RESOURCES[resource][0]
        return f"{request.host_url.rstrip('/')}{self.api_prefix}/v1/{DIVISION}/{path}(guid'{key}')"

    def _filter(self, request: Request, endpoint: str, rows: list[dict[str, Any]]) -> list:
        text = request.args.get("$filter")
        if not text:
            return rows
        props = self._props(endpoint)
        try:
            predicate = parse_filter(exact_filter(text),
                                     lambda n, v: comparable(props.get(n, {}).get("type"), v),
                                     frozenset(props))
        except FilterError as exc:
            raise ApiError("bad_request", f"Error in $filter: {exc}") from None
        return [row for row in rows if predicate(row)]

    def _page(self, request: Request, endpoint: str, rows: list[dict[str, Any]], key: str,
              page_size: int, select: set[str] | None, resource: str | None) -> Response:
        """Rows ordered by ``key`` from ``$skiptoken`` on, ``page_size`` per page, ``__next``."""
        rows = sorted(self._filter(request, endpoint, rows), key=lambda r: r[key])
        token = request.args.get("$skiptoken")
        if token:
            after = skiptoken_key(token)
            rows = [row for row in rows if row[key] > after]
        top = request.args.get("$top")
        if top is not None:
            if not top.isdigit():
                raise ApiError("bad_request", "$top must be a non-negative integer.")
            rows = rows[:int(top)]
        page, rest = rows[:page_size], rows[page_size:]
        results = [self._out(request, endpoint, row,
                             self._uri(request, resource, row[key]) if resource else None, select)
                   for row in page]
        body: dict[str, Any] = {"results": results}
        if rest:
            params = {k: v for k, v in request.args.items() if k not in ("$skiptoken", "$top")}
            if top is not None:
                params["$top"] = str(len(rest))
            params["$skiptoken"] = skiptoken(page[-1][key])
            body["__next"] = f"{request.base_url}?{urlencode(params)}"
        return self.respond(200, {"d": body})

    # -- handlers: reads ----------------------------------------------------------------------

    def get_me(self, request: Request) -> Response:
        me = {"__metadata": {"uri": f"{request.base_url}", "type": "Exact.Web.Api.System.Me"},
              "CurrentDivision": DIVISION, "DivisionCustomer": EMPTY_GUID,
              "FullName": "Sandbox User", "UserID": "5b1d7a3c-0000-4000-8000-00000000e7ac",
              "UserName": "sandbox@example.com", "LanguageCode": "en-GB"}
        return self.respond(200, {"d": {"results": [me]}})

    def list_entities(self, request: Request, division: str, resource: str) -> Response:
        self._check_division(division)
        _, endpoint, key, _ = RESOURCES[resource]
        self._expand(request)
        rows = [row.entity for row in self.collections[resource].values()]
        return self._page(request, endpoint, rows, key, PAGE_SIZE,
                          self._select(request, endpoint, False), resource)

    def get_entity(self, request: Request, division: str, resource: str, id: str) -> Response:
        self._check_division(division)
        _, endpoint, key, _ = RESOURCES[resource]
        row = self._row(resource, id)
        return self.respond(200, {"d": self._out(request, endpoint, row.entity,
                                                 self._uri(request, resource, row.entity[key]),
                                                 self._select(request, endpoint, False))})

    def sync(self, request: Request, division: str, path: str) -> Response:
        """``sync/…``: every row changed after a ``Timestamp``, 1,000 per page, by Timestamp."""
        self._check_division(division)
        resource, endpoint = SYNC[path]
        select = self._select(request, endpoint, True)
        if resource == ORDERS:
            rows = [{**line, **{k: v for k, v in order.entity.items() if k not in (
                LINES, "Timestamp", "Description")}, "ID": line["ID"],
                     "Modified": order.entity["Modified"]}
                    for order in self.collections[ORDERS].values()
                    for line in order.entity[LINES]]
        else:
            rows = [row.entity for row in self.collections[resource].values()]
        return self._page(request, endpoint, rows, "Timestamp", self._limits.bulk_page_size,
                          select, None)

    def bulk(self, request: Request, division: str, path: str) -> Response:
        """``bulk/…``: like the normal endpoint with ``$select`` required and 1,000 per page."""
        self._check_division(division)
        resource, endpoint = BULK[path]
        select = self._select(request, endpoint, True)
        if resource == LINES:
            rows = [line for order in self.collections[ORDERS].values()
                    for line in order.entity[LINES]]
        else:
            rows = [row.entity for row in self.collections[resource].values()]
        return self._page(request, endpoint, rows, "ID", self._limits.bulk_page_size, select,
                          resource if resource != LINES else LINES)

    def list_lines(self, request: Request, division: str) -> Response:
        self._check_division(division)
        rows = [line for order in self.collections[ORDERS].values() for line in order.entity[LINES]]
        return self._page(request, LINES, rows, "ID", PAGE_SIZE,
                          self._select(request, LINES, False), LINES)

    # -- handlers: writes ---------------------------------------------------------------------

    def create_entity(self, request: Request, division: str, resource: str) -> Response:
        self._check_division(division)
        _, endpoint, key, _ = RESOURCES[resource]
        body = self.json_body(request)
        accepted = self._accept(endpoint, body, "post",
                                nested=(LINES,) if resource == ORDERS else ())
        missing = [name for name in MANDATORY[resource] if accepted.get(name) in (None, "")]
        if missing:
            raise ApiError("bad_request", f"Mandatory: {', '.join(missing)}")
        entity_id = accepted.pop(key, None) or str(uuid.uuid4())
        if entity_id in self.collections[resource]:
            raise ApiError("conflict", f"{self.singular[resource]} {entity_id} already exists.")
        entity = {**accepted, key: entity_id, "Division": DIVISION}
        entity["Created"] = format_timestamp(self.clock.tick())
        if resource == "Accounts":
            entity["Code"] = self._account_code(entity.get("Code"))
        elif resource == "Items":
            entity["Code"] = pad_code(entity["Code"])
            self._unique_code("Items", entity["Code"], entity_id)
            entity.setdefault("StandardSalesPrice", decimal.Decimal(0))
            entity.setdefault("Stock", decimal.Decimal(0))
        elif resource == ORDERS:
            lines = accepted.get(LINES)
            if isinstance(lines, Mapping):
                lines = lines.get("results")
            if not isinstance(lines, list) or not lines:
                raise ApiError("bad_request", "Mandatory: SalesOrderLines (at least one line).")
            entity["OrderNumber"] = entity.get("OrderNumber") or self._next_order_number()
            entity[LINES] = []
            for line in lines:
                entity[LINES].append(self._new_line(entity, line))
            self._order_rules(entity)
        row = self.commit(resource, entity_id, entity)
        select = None if "return=representation" in request.headers.get("Prefer", "") else \
            set(body) | {key}
        return self.respond(201, {"d": self._out(request, endpoint, row.entity,
                                                 self._uri(request, resource, entity_id), select,
                                                 expand=True)})

    def put_entity(self, request: Request, division: str, resource: str, id: str) -> Response:
        """PUT: the properties given change, the rest stay (Exact has no PATCH); 204."""
        self._check_division(division)
        _, endpoint, key, _ = RESOURCES[resource]
        row = self._row(resource, id)
        accepted = self._accept(endpoint, self.json_body(request), "put",
                                nested=(LINES,) if resource == ORDERS else ())
        if accepted.get(key, row.entity[key]) != row.entity[key]:
            raise ApiError("bad_request", f"{key} cannot be changed.")
        entity = {**row.entity, **accepted}
        if resource in ("Accounts", "Items") and "Code" in accepted:
            if resource == "Accounts" and not str(entity["Code"] or "").strip().isdigit():
                raise ApiError("bad_request", "Code: an account code is numeric.")
            entity["Code"] = pad_code(entity["Code"])
            self._unique_code(resource, entity["Code"], row.entity[key])
        if resource == ORDERS and LINES in accepted:
            entity[LINES] = self._put_lines(entity, row.entity[LINES], accepted[LINES])
            self._order_rules(entity)
        self.commit(resource, row.entity[key], entity)
        return self.respond(204)

    def delete_entity(self, request: Request, division: str, resource: str, id: str) -> Response:
        self._check_division(division)
        row = self._row(resource, id)
        key = RESOURCES[resource][2]
        self.remove(resource, row.entity[key])
        self._deleted(resource, row.entity[key])
        return self.respond(204)

    def _deleted(self, resource: str, key: str) -> None:
        entry_id = str(uuid.uuid4())
        self.commit("Deleted", entry_id, {
            "ID": entry_id, "EntityKey": key, "EntityType": ENTITY_TYPES[resource],
            "DeletedBy": "5b1d7a3c-0000-4000-8000-00000000e7ac",
            "DeletedDate": format_timestamp(self.clock.tick()), "Division": DIVISION})

    def _account_code(self, code: str | None) -> str:
        if code is None:
            self.counters["AccountCode"] += 1
            code = str(self.counters["AccountCode"])
        if not code.strip().isdigit():
            raise ApiError("bad_request", "Code: an account code is numeric.")
        padded = pad_code(code)
        self._unique_code("Accounts", padded, None)
        return padded

    def _unique_code(self, resource: str, code: str, own_id: str | None) -> None:
        for row in self.collections[resource].values():
            if row.entity.get("Code") == code and row.entity["ID"] != own_id:
                raise ApiError("conflict", f"Code '{code.strip()}' already exists.")

    def _next_order_number(self) -> int:
        self.counters["OrderNumber"] += 1
        return self.counters["OrderNumber"]

    def _new_line(self, order: Mapping[str, Any], body: Any) -> dict[str, Any]:
        if not isinstance(body, Mapping):
            raise ApiError("bad_request", "A sales order line must be an object.")
        accepted = self._accept(LINES, body, "post")
        if not accepted.get("Item"):
            raise ApiError("bad_request", "Mandatory: Item")
        return {"Quantity": decimal.Decimal(1), **accepted,
                "ID": accepted.get("ID") or str(uuid.uuid4()), "OrderID": order["OrderID"],
                "Division": DIVISION}

    def _put_lines(self, order: Mapping[str, Any], current: list, given: Any) -> list:
        """Lines in a PUT of an order: one with an ``ID`` changes that line, one without is
        added; lines not mentioned stay (delete them at ``SalesOrderLines(guid'…')``)."""
        if isinstance(given, Mapping):
            given = given.get("results")
        if not isinstance(given, list):
            raise ApiError("bad_request", "SalesOrderLines must be a list of lines.")
        lines = [dict(line) for line in current]
        by_id = {line["ID"]: line for line in lines}
        for body in given:
            if isinstance(body, Mapping) and body.get("ID") and body["ID"].lower() in by_id:
                by_id[body["ID"].lower()].update(self._accept(LINES, {
                    k: v for k, v in body.items() if k != "ID"}, "put"))
            else:
                lines.append(self._new_line(order, body))
        return lines

    def _order_rules(self, order: dict[str, Any],
                     seed: Mapping[str, list] | None = None) -> None:
        """Exact's derived values: the customer must exist; lines are numbered, take their
        item's code, description, price and VAT code, and amounts follow."""
        accounts = ({a["ID"]: a for a in seed["Accounts"]} if seed is not None else
                    {k: r.entity for k, r in self.collections["Accounts"].items()})
        items = ({i["ID"]: i for i in seed["Items"]} if seed is not None else
                 {k: r.entity for k, r in self.collections["Items"].items()})
        customer = accounts.get(order.get("OrderedBy"))
        if customer is None:
            raise ApiError("bad_request", "OrderedBy: the account does not exist.")
        order.setdefault("DeliverTo", customer["ID"])
        order.setdefault("InvoiceTo", customer["ID"])
        order.setdefault("Status", 12)
        order["OrderedByName"] = customer["Name"]
        order.setdefault("Currency", customer.get("SalesCurrency") or "EUR")
        if not order.get("OrderDate"):
            order["OrderDate"] = format_timestamp(self.clock.tick()).split("T")[0] + \
                "T00:00:00.000000Z"
        total = decimal.Decimal(0)
        for number, line in enumerate(order[LINES], start=1):
            item = items.get(line.get("Item"))
            if item is None:
                raise ApiError("bad_request", "Item: the item does not exist.")
            line["LineNumber"] = number
            line["ItemCode"] = item["Code"]
            line["ItemDescription"] = item["Description"]
            if not line.get("Description"):
                line["Description"] = item["Description"]
            if line.get("UnitPrice") is None:
                line["UnitPrice"] = item["StandardSalesPrice"]
            line.setdefault("VATCode", item.get("SalesVatCode"))
            amount = (decimal.Decimal(line["Quantity"]) * decimal.Decimal(line["UnitPrice"])
                      ).quantize(decimal.Decimal("0.01"), rounding=decimal.ROUND_HALF_UP)
            line["NetPrice"] = line["UnitPrice"]
            line["AmountFC"] = line["AmountDC"] = amount
            total += amount
        order["AmountFC"] = order["AmountDC"] = total

    # -- handlers: lines ----------------------------------------------------------------------

    def _order_of_line(self, line_id: str) -> tuple[Row, int]:
        for row in self.collections[ORDERS].values():
            for index, line in enumerate(row.entity[LINES]):
                if line["ID"] == line_id.lower():
                    return row, index
        raise ApiError("not_found", "Sales order line not found.")

    def create_line(self, request: Request, division: str) -> Response:
        self._check_division(division)
        body = self.json_body(request)
        order_id = str(body.get("OrderID") or "").lower()
        order = self._row(ORDERS, order_id) if order_id else None
        if order is None:
            raise ApiError("bad_request", "Mandatory: OrderID")
        entity = {**order.entity}
        line = self._new_line(entity, {k: v for k, v in body.items() if k != "OrderID"})
        entity[LINES] = [*entity[LINES], line]
        self._order_rules(entity)
        stored = self.commit(ORDERS, order_id, entity)
        created = next(stored_line for stored_line in stored.entity[LINES]
                       if stored_line["ID"] == line["ID"])
        return self.respond(201, {"d": self._out(request, LINES, created,
                                                 self._uri(request, LINES, line["ID"]))})

    def put_line(self, request: Request, division: str, id: str) -> Response:
        self._check_division(division)
        order, index = self._order_of_line(id)
        accepted = self._accept(LINES, self.json_body(request), "put")
        accepted.pop("ID", None)
        accepted.pop("OrderID", None)
        entity = {**order.entity, LINES: [dict(line) for line in order.entity[LINES]]}
        entity[LINES][index].update(accepted)
        self._order_rules(entity)
        self.commit(ORDERS, entity["OrderID"], entity)
        return self.respond(204)

    def delete_line(self, request: Request, division: str, id: str) -> Response:
        self._check_division(division)
        order, index = self._order_of_line(id)
        if len(order.entity[LINES]) == 1:
            raise ApiError("bad_request", "A sales order must have at least one line.")
        entity = {**order.entity,
                  LINES: [line for i, line in enumerate(order.entity[LINES]) if i != index]}
        self._order_rules(entity)
        self.commit(ORDERS, entity["OrderID"], entity)
        return self.respond(204)

    # -- control endpoints ------------------------------------------------------------------

    def control_limits(self, request: Request) -> Response:
        body = loads(request.get_data() or b"{}")
        minutely = body.get("minutely", DEFAULT_MINUTELY) if isinstance(body, dict) else None
        daily = body.get("daily", DEFAULT_DAILY) if isinstance(body, dict) else None
        minute_s = body.get("minute_s", 60) if isinstance(body, dict) else None
        page = body.get("bulk_page_size", BULK_PAGE_SIZE) if isinstance(body, dict) else None
        if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 1
                   for n in (minutely, daily, page)) or not isinstance(
                       minute_s, (int, decimal.Decimal)) or minute_s <= 0:
            raise ApiError("bad_request", "minutely, daily and bulk_page_size must be integers "
                                          ">= 1 and minute_s a positive number.")
        self._limits = Limits(minutely, daily, float(minute_s), page)
        return self.respond(200, {"minutely": minutely, "daily": daily, "minute_s": minute_s,
                                  "bulk_page_size": page})

    def control_expire_tokens(self, request: Request) -> Response:
        """Token time jumps 600 s: every access token expires, a refresh is allowed again."""
        with self._auth_lock:
            self._token_time_offset += ACCESS_TOKEN_LIFETIME_S
            expired = sum(1 for e in self._access.values() if e <= self._token_now())
        return self.respond(200, {"expired": expired})

    def control_tokens(self, request: Request) -> Response:
        with self._auth_lock:
            current = (hashlib.sha256(self._refresh.encode()).hexdigest()
                       if self._refresh else None)
            return self.respond(200, {"refresh_tokens_issued": self._issued_refresh,
                                      "current_refresh_token_sha256": current})

    def control_reset(self, request: Request) -> Response:
        self._limits = Limits()
        return super().control_reset(request)
