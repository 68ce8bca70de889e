"""Emulator of the Exact Online REST API (OData v2), driven by Exact's API reference.

What it reproduces (``docs/api/exact.md`` has the full list, and what it leaves out):

* ``/api/v1/{division}/crm/Accounts``, ``/logistics/Items``, ``/salesorder/SalesOrders`` and
  ``/salesorder/SalesOrderLines``: list, ``$count``, ``POST``, and ``GET``/``PUT``/``DELETE``
  of one entity at ``…(guid'<id>')``; navigation links (an order's ``SalesOrderLines``);
  ``/api/v1/current/Me``, ``system/Divisions`` and ``hrm/Divisions``;
* the ``bulk/`` (``CRM/Accounts``, ``Logistics/Items``, ``SalesOrder/SalesOrderLines``) and
  ``sync/`` endpoints (``CRM/Accounts``, ``Logistics/Items``, ``SalesOrder/SalesOrders`` one row
  per order line, ``Deleted``), with ``$select`` required and the ``Timestamp`` counter, which
  every write of the division increments;
* OData v2 verbose JSON: ``{"d": {"results": [...], "__next": url}}``, ``__metadata``, 60 rows
  per page (1,000 on bulk and sync), the query options of :mod:`sandbox.exact_query`,
  ``/Date(ms)/`` date-times, 18-character right-aligned numeric codes, and XML unless the
  request accepts ``application/json``;
* every write checked against the reference (property names, Edm types, which properties a
  ``POST`` or a ``PUT`` may set), mandatory fields, unique codes; ``PUT`` answers 204,
  ``POST`` 201 with the entity (all of it with ``Prefer: return=representation``);
* Exact's error body ``{"error": {"code": "", "message": {"lang": "", "value": …}}}``; what
  Exact honours and the sandbox does not emulate is refused with 501, never ignored;
* OAuth2 authorization code (:mod:`sandbox.exact_oauth`): rotating refresh tokens, 600-s
  access tokens, an early refresh refused as 400 ``invalid_grant`` or 401;
* the rate limits per division: a minutely and a daily limit with Exact's six ``X-RateLimit-*``
  headers (resets in epoch milliseconds) on every API answer, 429 beyond.

Test controls beyond the common ones: ``POST /_sandbox/limits`` (``{"minutely": 60, "daily":
5000, "minute_s": 60, "bulk_page_size": 1000, "mandatory_filter": false}``), ``POST
/_sandbox/oauth`` (``{"early_refresh": 400 | 401}``), ``POST /_sandbox/expire-tokens`` (token
time moves 600 s on) and ``GET /_sandbox/tokens`` (refresh tokens issued, a hash of the
current one).
"""
from __future__ import annotations

import decimal
import re
import uuid
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlencode

from werkzeug.wrappers import Request, Response

from sandbox import exact_query
from sandbox.emulator import Emulator, Row
from sandbox.exact_oauth import EARLY_REFRESH_FORMS, ExactOAuth
from sandbox.exact_reference import (
    BULK_PAGE_SIZE,
    DEFAULT_DAILY,
    DEFAULT_MINUTELY,
    PAGE_SIZE,
    Limits,
    convert,
    endpoints,
    pad_code,
    reference,
    to_wire_date,
    to_xml,
)
from sandbox.limits import RateLimit
from sandbox.routing import CONTROL_ROUTES, Route, Router
from sandbox.seed_exact import FIRST_ORDER_NUMBER, exact_seed
from sandbox.validation import ApiError
from sandbox.wire import format_timestamp, loads

DIVISION = 3069781
CLIENT_ID = "8f2b3c4d-5e6f-4a7b-9c8d-0e1f2a3b4c5d"
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


def _navigation(prop: Mapping[str, Any]) -> bool:
    """Whether a reference property is a navigation property (a collection of other entities,
    like ``SalesOrderLines``), which Exact sends as a ``__deferred`` link."""
    return not prop["type"].startswith(("Edm.", "Exact."))


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
    routes += [Route("GET", f"{division}/{path}/$count", "count_entities", {"resource": resource})
               for resource, (path, _, _, _) in RESOURCES.items()]
    routes += [Route("GET", f"{division}/{path}(guid'{{id}}')/{{navigation}}", "get_navigation",
                     {"resource": resource}) for resource, (path, _, _, _) in RESOURCES.items()]
    routes += [Route("GET", f"{division}/{service}/Divisions", "list_divisions")
               for service in ("system", "hrm")]
    lines = f"{division}/salesorder/{LINES}"
    routes += [Route("GET", lines, "list_lines"), Route("POST", lines, "create_line"),
               Route("GET", f"{lines}(guid'{{id}}')", "get_line"),
               Route("PUT", f"{lines}(guid'{{id}}')", "put_line"),
               Route("DELETE", f"{lines}(guid'{{id}}')", "delete_line")]
    routes += [Route("GET", f"{division}/sync/{path}", "sync", {"path": path}) for path in SYNC]
    routes += [Route("GET", f"{division}/bulk/{path}", "bulk", {"path": path}) for path in BULK]
    served = {template.template for template in routes}
    for name, endpoint in endpoints().items():   # in Exact's reference, not emulated: 501
        path = endpoint["uri"].removeprefix("/api")
        if path not in served:
            routes += [Route(method, template, "not_emulated_endpoint", {"endpoint": name})
                       for method in ("GET", "POST", "PUT", "DELETE")
                       for template in (path, f"{path}(guid'{{id}}')")]
    return tuple(routes)


class _ExactRouter(Router):
    """Exact's paths are case-insensitive, as ASP.NET's routes are: its own examples write
    ``CRM/Accounts`` and ``crm/Accounts`` alike, and ``Accounts/?$top=1``."""

    def __init__(self, routes: Iterable[Route]) -> None:
        self._routes = [(route, re.compile(route.pattern().pattern, re.IGNORECASE))
                        for route in routes]

    def match(self, method: str, path: str) -> tuple[Route, dict[str, str]]:
        return super().match(method, path.rstrip("/") or "/")


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
        "not_emulated": (501, ""),
    }
    routes = _routes()
    control_routes = CONTROL_ROUTES + (
        Route("POST", "/_sandbox/limits", "control_limits"),
        Route("POST", "/_sandbox/expire-tokens", "control_expire_tokens"),
        Route("GET", "/_sandbox/tokens", "control_tokens"),
        Route("POST", "/_sandbox/oauth", "control_oauth"),
    )

    #: the config setting the sandbox's secret goes in
    secret_setting = "client_secret"

    def __init__(self, **kwargs: Any):
        self.reference = reference()
        self._limits = Limits()
        super().__init__(**kwargs)
        self._router = _ExactRouter(self.routes)
        self.oauth = ExactOAuth(CLIENT_ID, self.api_key)
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
        return self.oauth.valid(header[len("Bearer "):])

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
            exact_query.check_options(request.args)
            response = super()._dispatch(request)
        except ApiError as error:
            if error.message.startswith("no such endpoint"):   # Exact has hundreds more
                error.message += " (not an endpoint of Exact, or not emulated: docs/api/exact.md)"
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
        code = self.oauth.new_code(args["redirect_uri"])
        query = {"code": code, **({"state": args["state"]} if "state" in args else {})}
        separator = "&" if "?" in args["redirect_uri"] else "?"
        return Response(status=302, headers={
            "Location": f"{args['redirect_uri']}{separator}{urlencode(query)}"})

    def token(self, request: Request) -> Response:
        return self.respond(*self.oauth.token(request.form))

    # -- helpers --------------------------------------------------------------------------

    def _check_division(self, division: str) -> None:
        if division != str(DIVISION):
            raise ApiError("forbidden", f"Forbidden: no access to division {division}.")

    def _filter_required(self, request: Request) -> None:
        """Exact's "mandatory filtering on single and bulk endpoints where sync APIs are
        available" (API limits, 1 July 2021), when ``POST /_sandbox/limits`` turns it on."""
        if self._limits.mandatory_filter and not request.args.get("$filter"):
            raise ApiError("bad_request", "$filter is mandatory on this endpoint; read it all "
                                          "through its sync endpoint.")

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
             expand: Iterable[str] = ()) -> dict[str, Any]:
        """An entity as Exact sends it: the reference's properties, ``/Date(ms)/`` dates, and
        navigation properties as ``__deferred`` links (served) unless ``$expand``ed."""
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
            elif _navigation(prop) and uri is not None:
                value = ({"results": self._related(request, entity, name)}
                         if name in expand else {"__deferred": {"uri": f"{uri}/{name}"}})
            out[name] = value
        return out

    def _related(self, request: Request, entity: Mapping[str, Any], name: str) -> list:
        """The entities a navigation property leads to: an order's lines; the sandbox keeps
        no bank accounts or VAT percentages, so those lists are empty."""
        if name != LINES:
            return []
        return [self._out(request, LINES, line, self._uri(request, LINES, line["ID"]))
                for line in entity.get(LINES, [])]

    def _expand(self, request: Request, endpoint: str) -> set[str]:
        names = {n.strip() for n in request.args.get("$expand", "").split(",") if n.strip()}
        allowed = {name for name, prop in self._props(endpoint).items() if _navigation(prop)}
        if names - allowed:
            raise ApiError("bad_request", f"Invalid $expand: {sorted(names - allowed)[0]}.")
        return names

    def _select(self, request: Request, endpoint: str, required: bool) -> set[str] | None:
        return exact_query.select(request.args, self._props(endpoint), required)

    def _uri(self, request: Request, resource: str, key: str) -> str:
        path = "salesorder/SalesOrderLines" if resource == LINES else RESOURCES[resource][0]
        return f"{request.host_url.rstrip('/')}{self.api_prefix}/v1/{DIVISION}/{path}(guid'{key}')"

    def _page(self, request: Request, endpoint: str, rows: list[dict[str, Any]], key: str,
              page_size: int, select: set[str] | None, resource: str | None) -> Response:
        """The rows ``$filter`` keeps, in ``$orderby`` (else ``key``) order, from ``$skip`` or
        ``$skiptoken`` on, ``page_size`` per page with ``__next``; ``__count`` if asked."""
        props = self._props(endpoint)
        rows = exact_query.ordered(request.args, props,
                                   exact_query.filtered(request.args, props, endpoint, rows), key)
        page, envelope = exact_query.page(request.args, request.base_url, rows, key, page_size)
        expand = self._expand(request, endpoint)
        results = [self._out(request, endpoint, row,
                             self._uri(request, resource, row[key]) if resource else None, select,
                             expand)
                   for row in page]
        return self.respond(200, {"d": {"results": results, **envelope}})

    # -- handlers: reads ----------------------------------------------------------------------

    def get_me(self, request: Request) -> Response:
        """``current/Me``: the user, with every property of the reference (``$select``)."""
        me = {"CurrentDivision": DIVISION, "DivisionCustomer": EMPTY_GUID,
              "AccountingDivision": DIVISION, "Email": "sandbox@example.com",
              "FullName": "Sandbox User", "UserID": "5b1d7a3c-0000-4000-8000-00000000e7ac",
              "UserName": "sandbox@example.com", "LanguageCode": "en-GB", "Language": "EN",
              "Legislation": 1}
        out = self._out(request, "Me", me, None, self._select(request, "Me", False))
        out = {"__metadata": {"uri": request.base_url, "type": "Exact.Web.Api.System.Me"}, **out}
        return self.respond(200, {"d": {"results": [out]}})

    def list_divisions(self, request: Request, division: str) -> Response:
        """``system/Divisions`` and ``hrm/Divisions``: the one division of the sandbox."""
        self._check_division(division)
        row = {"Code": DIVISION, "Description": "Sandbox B.V.", "Current": True,
               "Country": "NL", "Currency": "EUR", "Status": 1, "Legislation": 1,
               "IsMainDivision": True, "Customer": EMPTY_GUID}
        return self._page(request, "Divisions", [row], "Code", PAGE_SIZE,
                          self._select(request, "Divisions", False), None)

    def count_entities(self, request: Request, division: str, resource: str) -> Response:
        """``…/$count``: how many entities ``$filter`` keeps, as plain text."""
        self._check_division(division)
        _, endpoint, _, _ = RESOURCES[resource]
        rows = [row.entity for row in self.collections[resource].values()]
        kept = exact_query.filtered(request.args, self._props(endpoint), endpoint, rows)
        return Response(str(len(kept)), status=200, content_type="text/plain; charset=utf-8")

    def get_navigation(self, request: Request, division: str, resource: str, id: str,
                       navigation: str) -> Response:
        """A ``__deferred`` link: ``…(guid'<id>')/SalesOrderLines`` and the like."""
        self._check_division(division)
        _, endpoint, _, _ = RESOURCES[resource]
        prop = self._props(endpoint).get(navigation)
        if prop is None or not _navigation(prop):
            raise ApiError("not_found", f"No navigation property '{navigation}' on "
                                        f"'Exact.Web.Api.Models.{endpoint}'.")
        row = self._row(resource, id)
        if navigation != LINES:
            return self._page(request, endpoint, [], "ID", PAGE_SIZE, None, None)
        return self._page(request, LINES, list(row.entity[LINES]), "ID", PAGE_SIZE,
                          self._select(request, LINES, False), LINES)

    def not_emulated_endpoint(self, request: Request, endpoint: str, division: str = "",
                              id: str = "") -> Response:
        """An endpoint of Exact's reference the sandbox does not emulate: refused loudly."""
        raise exact_query.not_emulated(f"The endpoint {endpoints()[endpoint]['uri']}")

    def get_line(self, request: Request, division: str, id: str) -> Response:
        self._check_division(division)
        order, index = self._order_of_line(id)
        line = order.entity[LINES][index]
        return self.respond(200, {"d": self._out(request, LINES, line,
                                                 self._uri(request, LINES, line["ID"]),
                                                 self._select(request, LINES, False))})

    def list_entities(self, request: Request, division: str, resource: str) -> Response:
        self._check_division(division)
        _, endpoint, key, _ = RESOURCES[resource]
        self._filter_required(request)
        rows = [row.entity for row in self.collections[resource].values()]
        return self._page(request, endpoint, rows, key, PAGE_SIZE,
                          self._select(request, endpoint, False), resource)

    def get_entity(self, request: Request, division: str, resource: str, id: str) -> Response:
        self._check_division(division)
        _, endpoint, key, _ = RESOURCES[resource]
        row = self._row(resource, id)
        return self.respond(200, {"d": self._out(request, endpoint, row.entity,
                                                 self._uri(request, resource, row.entity[key]),
                                                 self._select(request, endpoint, False),
                                                 self._expand(request, endpoint))})

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
        self._filter_required(request)
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
        self._filter_required(request)
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
        out = self._out(request, endpoint, row.entity, self._uri(request, resource, entity_id),
                        expand=(LINES,))
        if "return=representation" not in request.headers.get("Prefer", ""):
            # Exact's tips: without it "the entity will contain all properties with the NULL
            # value" (but what was sent, and the key)
            out = {k: v if k in body or k in (key, "__metadata") else None
                   for k, v in out.items()}
        return self.respond(201, {"d": out})

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
        mandatory = body.get("mandatory_filter", False) if isinstance(body, dict) else None
        if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 1
                   for n in (minutely, daily, page)) or not isinstance(
                       minute_s, (int, decimal.Decimal)) or minute_s <= 0 or \
                not isinstance(mandatory, bool):
            raise ApiError("bad_request", "minutely, daily and bulk_page_size must be integers "
                                          ">= 1, minute_s a positive number and "
                                          "mandatory_filter true or false.")
        self._limits = Limits(minutely, daily, float(minute_s), page, mandatory)
        return self.respond(200, {"minutely": minutely, "daily": daily, "minute_s": minute_s,
                                  "bulk_page_size": page, "mandatory_filter": mandatory})

    def control_expire_tokens(self, request: Request) -> Response:
        """Token time jumps 600 s: every access token expires, a refresh is allowed again."""
        return self.respond(200, {"expired": self.oauth.expire()})

    def control_tokens(self, request: Request) -> Response:
        return self.respond(200, self.oauth.status())

    def control_oauth(self, request: Request) -> Response:
        """``{"early_refresh": 400 | 401}``: the form of the early-refresh refusal."""
        body = loads(request.get_data() or b"{}")
        form = body.get("early_refresh") if isinstance(body, dict) else None
        if form not in EARLY_REFRESH_FORMS:
            raise ApiError("bad_request", "early_refresh must be 400 or 401.")
        self.oauth.early_refresh = form
        return self.respond(200, {"early_refresh": form})

    def control_reset(self, request: Request) -> Response:
        self._limits = Limits()
        self.oauth.early_refresh = 400
        return super().control_reset(request)
