"""Emulator of the Business Central API v2.0 (OData v4), driven by BC's real ``$metadata``.

What real BC honours, the emulator does or refuses loudly (501
``BadRequest_MethodNotImplemented`` where BC would have done it, BC's own answer where BC
refuses); every link it hands out and every set it announces, it serves. What it reproduces
(``docs/api/businesscentral.md`` has the full list, and the table of refusals):

* the service root ``/v2.0/{tenant}/{environment}/api/v2.0`` (service document, ``$metadata``
  cut to what is served) with one company, ``companies({id})/customers|items|salesOrders``,
  ``salesOrders({id})/salesOrderLines`` and ``companies({id})/salesOrderLines``; the company
  also as ``?company=``, a ``Company`` header, or by default;
* an Entra ID style token endpoint ``/{tenant}/oauth2/v2.0/token`` (client credentials) and
  BC's 401 body for a missing, unknown or expired bearer token;
* every write checked against the ``$metadata`` (property names, Edm types, ``MaxLength``, enum
  member names, ``Nullable``), read-only properties refused, BC's error body
  ``{"error": {"code", "message"}}`` with BC's codes; the blank enum member served as
  ``_x0020_`` or ``" "`` (``blank_enum=``) and accepted either way;
* ``@odata.etag`` on every entity, changing on every write; ``If-Match`` required on PATCH and
  DELETE, a stale one answered ``409 Request_EntityChanged``; a customer or an item that an
  outstanding sales order uses cannot be deleted (BC's ``Application_DialogException``);
* query options (:mod:`sandbox.businesscentral_query`): ``$filter``, ``$orderby`` asc/desc,
  ``$top``, ``$skip``, ``$count``/``/$count``, ``$select``, ``$expand=salesOrderLines``;
  server-driven paging (``Prefer: odata.maxpagesize``, ``@odata.nextLink`` with an opaque
  keyset ``$skiptoken``); deep insert of lines, recomputed read-only amounts;
* JSON ``$batch`` of up to 100 requests (:mod:`sandbox.businesscentral_batch`), each answered on
  its own, transactional under ``Isolation: snapshot``;
* throttling: 6,000 requests per 5 minutes (``rate_limit: true`` of ``/_sandbox/faults``) and
  5 concurrent requests plus 95 queued (``POST /_sandbox/limits``), ``429
  Application_TooManyRequests`` beyond.

Test controls beyond the common ones (:mod:`sandbox.businesscentral_controls`): ``POST
/_sandbox/touch/{set}/{id}`` saves an entity unchanged, so its ETag moves (a concurrent edit, for
conflict tests; ``{"when": "next_write"}`` does it just before the next write of it arrives),
``POST /_sandbox/expire-tokens``, ``POST /_sandbox/limits`` and ``POST /_sandbox/blank-enum``.
"""

from __future__ import annotations

import decimal
import re
import uuid
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

from werkzeug.wrappers import Request, Response

from sandbox.businesscentral_batch import BatchMixin
from sandbox.businesscentral_controls import ControlsMixin
from sandbox.businesscentral_edm import (
    BLANK_FORMS,
    BLANK_MEMBER,
    EMPTY_GUID,
    EdmEntityType,
    Gate,
    check_value,
    decode_skiptoken,
    encode_skiptoken,
    format_etag,
    line_amounts,
    metadata,
    round_cents,
    served_metadata,
    sort_key,
    type_default,
)
from sandbox.businesscentral_lines import COMPANY_ID, LINES, LinesMixin
from sandbox.businesscentral_query import (
    COLLECTION_OPTIONS,
    COUNT_OPTIONS,
    ENTITY_OPTIONS,
    NO_OPTIONS,
    check_headers,
    check_options,
    compare_keys,
    compile_filter,
    non_negative,
    not_emulated,
    ordered,
    parse_orderby,
    preferences,
    wants_count,
)
from sandbox.emulator import Emulator, Row, constant_time_equal
from sandbox.limits import BearerTokens, RateLimit
from sandbox.routing import CONTROL_ROUTES, Route, Router
from sandbox.seed_businesscentral import businesscentral_seed
from sandbox.validation import ApiError

TENANT_ID = "7c4c2f8e-3d0a-4b8e-9c55-0f1d2e3a4b5c"
ENVIRONMENT = "sandbox"
COMPANY_NAME = "CRONUS Norge AS"
CLIENT_ID = "5f0e6d2a-1b3c-4d5e-8f90-a1b2c3d4e5f6"
SCOPE = "https://api.businesscentral.dynamics.com/.default"
TOKEN_PATH = f"/{TENANT_ID}/oauth2/v2.0/token"

#: the entity sets served under the company, and their lines
ENTITY_SETS = ("customers", "items", "salesOrders")
#: the biggest page BC online serves
MAX_PAGE_SIZE = 20_000
#: the entity sets and navigation properties served (and so announced in ``$metadata``)
SERVED_SETS = frozenset({"companies", "customers", "items", "salesOrders", "salesOrderLines"})
SERVED_NAVIGATION = frozenset({("company", "customers"), ("company", "items"),
                               ("company", "salesOrders"), ("company", "salesOrderLines"),
                               ("salesOrder", "salesOrderLines")})
_SEGMENT = re.compile(r"^/([A-Za-z]+)")
#: access tokens live an hour, like Entra's (less the client's skew)
TOKEN_LIFETIME_S = 3599
#: properties BC computes or owns; a body that sets one is refused (MS resource docs)
READ_ONLY: Mapping[str, frozenset[str]] = {
    "customers": frozenset({"id", "balanceDue", "lastModifiedDateTime"}),
    "items": frozenset({"id", "inventory", "lastModifiedDateTime"}),
    "salesOrders": frozenset({"id", "status", "fullyShipped", "pricesIncludeTax",
                              "totalAmountExcludingTax", "totalTaxAmount",
                              "totalAmountIncludingTax", "lastModifiedDateTime"}),
    LINES: frozenset({"id", "documentId", "amountExcludingTax", "totalTaxAmount",
                      "amountIncludingTax", "netAmount", "netTaxAmount",
                      "netAmountIncludingTax", "invoiceDiscountAllocation", "shippedQuantity",
                      "invoicedQuantity", "discountAppliedBeforeTax"}),
}
#: number series of the entity sets that number their records
NUMBER_SERIES = {"customers": "C", "items": "", "salesOrders": "S-ORD"}


# --------------------------------------------------------------------------------------------
# The emulator


def _entity_routes() -> tuple[Route, ...]:
    company = "/companies({company})"
    routes = [Route("GET", "/", "service_document"),
              Route("GET", "/companies", "list_companies"),
              Route("GET", company, "get_company"),
              Route("GET", "/$metadata", "get_metadata"),
              Route("POST", "/$batch", "batch")]
    for resource in ENTITY_SETS:
        args = {"resource": resource}
        routes += [
            Route("GET", f"{company}/{resource}", "list_entities", args),
            Route("GET", f"{company}/{resource}/$count", "count_entities", args),
            Route("POST", f"{company}/{resource}", "create_entity", args),
            Route("GET", f"{company}/{resource}({{id}})", "get_entity", args),
            Route("PATCH", f"{company}/{resource}({{id}})", "patch_entity", args),
            Route("DELETE", f"{company}/{resource}({{id}})", "delete_entity", args),
        ]
    lines = f"{company}/salesOrders({{id}})/{LINES}"
    routes += [
        Route("GET", lines, "list_lines"),
        Route("GET", f"{lines}/$count", "count_lines"),
        Route("POST", lines, "create_line"),
        Route("GET", f"{lines}({{line}})", "get_line"),
        Route("PATCH", f"{lines}({{line}})", "patch_line"),
        Route("DELETE", f"{lines}({{line}})", "delete_line"),
    ]
    # the company-level set of all sales order lines (MS Learn: "Get salesOrderLines",
    # "GET businesscentralPrefix/companies({id})/salesOrderLines({salesOrderLineId})")
    every_line = f"{company}/{LINES}"
    routes += [
        Route("GET", every_line, "list_company_lines"),
        Route("GET", f"{every_line}/$count", "count_company_lines"),
        Route("POST", every_line, "create_company_line"),
        Route("GET", f"{every_line}({{line}})", "get_company_line"),
        Route("PATCH", f"{every_line}({{line}})", "patch_company_line"),
        Route("DELETE", f"{every_line}({{line}})", "delete_company_line"),
    ]
    return tuple(routes)


class BusinessCentral(LinesMixin, BatchMixin, ControlsMixin, Emulator):
    """Business Central API v2.0 for one company (see the module docstring)."""

    system = "businesscentral"
    api_prefix = f"/v2.0/{TENANT_ID}/{ENVIRONMENT}/api/v2.0"
    timestamp_field = "lastModifiedDateTime"
    key_fields = {resource: "id" for resource in ENTITY_SETS}
    singular = {"customers": "Customer", "items": "Item", "salesOrders": "Sales Order"}
    system_rate_limit = RateLimit(6000, 300.0, sliding=True)
    errors = {
        "unauthorized": (401, "Authentication_InvalidCredentials"),
        "not_found": (404, "BadRequest_NotFound"),
        "resource_not_found": (404, "BadRequest_ResourceNotFound"),
        "not_emulated": (501, "BadRequest_MethodNotImplemented"),
        "required": (400, "BadRequest_RequiredParamNotProvided"),
        "method_not_allowed": (405, "BadRequest_MethodNotAllowed"),
        "validation_failed": (400, "BadRequest"),
        "bad_request": (400, "BadRequest"),
        "not_an_option": (400, "Unknown"),
        "read_only": (400, "BadRequest_InvalidOperation"),
        "string_too_long": (400, "Application_StringExceededLength"),
        "invalid_guid": (400, "Application_InvalidGUID"),
        "dialog": (400, "Application_DialogException"),
        "record_not_found": (400, "Internal_RecordNotFound"),
        "missing_etag": (400, "BadRequest_InvalidToken"),
        "conflict": (400, "Internal_EntityWithSameKeyExists"),
        "precondition_failed": (409, "Request_EntityChanged"),
        "failed_dependency": (424, "BadRequest_FailedDependency"),
        "rate_limited": (429, "Application_TooManyRequests"),
        "internal": (500, "Internal_ServerError"),
        "unavailable": (503, "Internal_TenantUnavailable"),
    }
    routes = _entity_routes()
    control_routes = CONTROL_ROUTES + (
        Route("POST", "/_sandbox/touch/{resource}/{id}", "control_touch"),
        Route("POST", "/_sandbox/expire-tokens", "control_expire_tokens"),
        Route("POST", "/_sandbox/limits", "control_limits"),
        Route("POST", "/_sandbox/blank-enum", "control_blank_enum"),
    )

    def __init__(self, *, blank_enum: str = BLANK_MEMBER, **kwargs: Any):
        if blank_enum not in BLANK_FORMS:
            raise ValueError(f"blank_enum must be one of {BLANK_FORMS}, not {blank_enum!r}")
        #: the form the blank enum member is served in: ``$metadata``'s ``_x0020_`` or the
        #: ``" "`` of Microsoft's examples (both are accepted on input either way)
        self.blank_enum = self._default_blank_enum = blank_enum
        self.metadata = metadata()
        self._tokens = BearerTokens()
        self._gate = Gate()
        self._armed: set[str] = set()
        super().__init__(**kwargs)
        self._control_router = Router(self.control_routes)

    # -- configuration the sandbox writes ---------------------------------------------------

    #: the config setting the sandbox's secret goes in (the client secret, not an API key)
    secret_setting = "client_secret"

    @classmethod
    def connector_settings(cls, root_url: str) -> dict[str, str]:
        """What ``talksync.yaml`` needs besides base URL and secret to reach this emulator."""
        return {"tenant_id": TENANT_ID, "environment": ENVIRONMENT, "client_id": CLIENT_ID,
                "token_url": root_url + TOKEN_PATH, "company_id": COMPANY_ID,
                "local_currency": "NOK"}

    # -- hooks ----------------------------------------------------------------------------

    def authenticate(self, request: Request) -> bool:
        return self._tokens.accepts(request)

    def challenge_headers(self) -> Mapping[str, str]:
        return {"WWW-Authenticate": f'Bearer authorization_uri="https://login.microsoftonline.com/'
                                    f'{TENANT_ID}/oauth2/authorize", error="invalid_token"'}

    def error_body(self, code: str, message: str, details: Any) -> Any:
        if code == "Authentication_InvalidCredentials":
            message = "The server has rejected the client credentials."
        return {"error": {"code": code,
                          "message": f"{message}  CorrelationId:  {uuid.uuid4()}."}}

    def seed_collections(self) -> Mapping[str, list[dict[str, Any]]]:
        data = businesscentral_seed(self.seed)
        blank_line = self._blank(LINES)
        for resource, entities in data.items():
            blank = self._blank(resource)
            data[resource] = [{**blank, **entity} for entity in entities]
        for order in data["salesOrders"]:
            order[LINES] = [line_amounts({**blank_line, **line}) for line in order[LINES]]
            self._with_totals("salesOrders", order)
        return data

    def initial_counters(self) -> dict[str, int]:
        counters = {}
        for resource, prefix in NUMBER_SERIES.items():
            numbers = [row.entity["number"][len(prefix):]
                       for row in self.collections[resource].values()
                       if row.entity["number"].startswith(prefix)]
            counters[resource] = max((int(n) for n in numbers if n.isdigit()), default=0)
        return counters

    # -- the request pipeline ---------------------------------------------------------------

    def _serve(self, request: Request) -> tuple[Response, bool]:
        """BC's concurrency gate around the common pipeline. The token endpoint is Entra ID's,
        not BC's: BC's faults and limits do not apply to it."""
        if request.path == TOKEN_PATH:
            try:
                return self._dispatch(request), False
            except ApiError as error:
                return self.error_response(error), False
        gate = self._gate  # the one entered is the one left, even if limits change meanwhile
        if not gate.enter():
            maximum = gate.max_concurrent + gate.max_queued
            error = ApiError("rate_limited", f"Too many requests reached. Actual ({maximum + 1}). "
                                             f"Maximum ({maximum}).")
            return self.error_response(error), False
        try:
            return super()._serve(request)
        finally:
            gate.leave()

    def _dispatch(self, request: Request) -> Response:
        if request.path == TOKEN_PATH:
            if request.method != "POST":
                raise ApiError("method_not_allowed", "The token endpoint takes POST.")
            return self._issue_token(request)
        path = request.path
        if not (path == self.api_prefix or path.startswith(self.api_prefix + "/")):
            raise ApiError("not_found", f"no such endpoint: {path}")
        check_headers(request, batch=path.rstrip("/").endswith("/$batch"))
        with self.lock:
            return self._route(request)

    def _route(self, request: Request) -> Response:
        """The handler's answer to an API request (also one inside a ``$batch``). An entity set
        named at the service root is the company's of the ``company`` query option, the
        ``Company`` header, or the tenant's only company (MS Learn, "API endpoint structure")."""
        path = request.path[len(self.api_prefix):] or "/"
        first = _SEGMENT.match(path)
        if first and first.group(1) in (*ENTITY_SETS, LINES):
            path = f"/companies({self._company_for(request)}){path}"
        try:
            route, params = self._router.match(request.method, path)
        except ApiError as error:
            if error.kind == "method_not_allowed":
                raise ApiError("method_not_allowed", f"'{request.method}' requests for "
                               f"'{_unknown_segment(path)}' of EdmType 'Entity' are not allowed "
                               "within Microsoft Dynamics NAV OData web services.",
                               headers=error.headers) from None
            if error.kind != "not_found":
                raise
            raise ApiError("resource_not_found", "Resource not found for the segment "
                                                 f"'{_unknown_segment(path)}'.") from None
        return getattr(self, route.handler)(request, **params)

    def _company_for(self, request: Request) -> str:
        named = request.args.get("company") or request.headers.get("Company")
        if named is None:
            return COMPANY_ID
        if named.strip("'").lower() in (COMPANY_ID, COMPANY_NAME.lower()):
            return COMPANY_ID
        raise ApiError("not_found", f"The company '{named}' does not exist.")

    def _issue_token(self, request: Request) -> Response:
        """Entra ID's client-credentials grant: a bearer token for the one client there is."""
        form = request.form
        if form.get("grant_type") != "client_credentials" or form.get("scope") != SCOPE:
            return self.respond(400, {"error": "invalid_request", "error_description":
                                      "AADSTS900144: grant_type client_credentials and scope "
                                      f"{SCOPE} are required."})
        if form.get("client_id") != CLIENT_ID or not constant_time_equal(
                form.get("client_secret"), self.api_key):
            return self.respond(401, {"error": "invalid_client", "error_description":
                                      "AADSTS7000215: Invalid client secret provided."})
        token = self._tokens.issue("eyJ0eXAiOiJKV1Qi.", TOKEN_LIFETIME_S)
        return self.respond(200, {"token_type": "Bearer", "expires_in": TOKEN_LIFETIME_S,
                                  "ext_expires_in": TOKEN_LIFETIME_S, "access_token": token})

    # -- helpers --------------------------------------------------------------------------

    def _edm(self, resource: str) -> EdmEntityType:
        return self.metadata.entity_set(resource)

    def _blank(self, resource: str) -> dict[str, Any]:
        return {name: type_default(prop) for name, prop in self._edm(resource).properties.items()}

    def _check_company(self, company: str) -> None:
        if company.lower() != COMPANY_ID:
            raise ApiError("not_found", f"The company '{company}' does not exist.")

    def _row(self, resource: str, key: str) -> Row:
        row = self.collections[resource].get(key.lower())
        if row is None:
            raise ApiError("not_found", f"The {self.singular[resource]} does not exist. "
                                        f"Identification fields and values: Id='{key}'")
        return row

    def _validate(self, resource: str, body: Mapping[str, Any], *, nested: tuple[str, ...] = ()
                  ) -> dict[str, Any]:
        """The body's values as stored, checked against ``$metadata`` and the read-only list."""
        edm = self._edm(resource)
        accepted: dict[str, Any] = {}
        for name, value in body.items():
            if name.startswith("@odata."):
                continue  # annotations (a client echoing @odata.etag) are ignored, as by BC
            if name in nested:
                accepted[name] = value
                continue
            prop = edm.properties.get(name)
            if prop is None:
                raise ApiError("bad_request", f"The property '{name}' does not exist on type "
                                              f"'Microsoft.NAV.{edm.name}'. Make sure to only "
                                              "use property names that are defined by the type.")
            if name in READ_ONLY[resource]:
                raise ApiError("read_only", f"The property '{name}' is read-only.")
            accepted[name] = check_value(prop, value)
        return accepted

    def _check_if_match(self, request: Request, entity_id: str, version: int) -> None:
        header = request.headers.get("If-Match")
        if header is None:
            raise ApiError("missing_etag", "Could not validate the client concurrency token "
                                           "required by the service. Please provide a valid "
                                           "token in the client request.")
        if header.strip() != "*" and format_etag(entity_id, version) not in (
                tag.strip() for tag in header.split(",")):
            raise ApiError("precondition_failed", "Another user has already changed the record.")

    def _next_number(self, resource: str) -> str:
        prefix = NUMBER_SERIES[resource]
        while True:
            self.counters[resource] += 1
            number = f"{prefix}{self.counters[resource]}"
            if not any(row.entity["number"] == number
                       for row in self.collections[resource].values()):
                return number

    # -- output ---------------------------------------------------------------------------

    def _served(self, resource: str, name: str, value: Any) -> Any:
        """A stored value as served: the blank enum member in the configured form."""
        if value == BLANK_MEMBER and self.blank_enum != BLANK_MEMBER and self._edm(
                resource).properties[name].is_enum:
            return self.blank_enum
        return value

    def _out(self, resource: str, row: Row, request: Request | None) -> dict[str, Any]:
        """An entity as BC sends it: ``@odata.etag`` first, lines only when expanded."""
        expand = self._expand(request, resource)
        select = self._select(request, resource)
        out: dict[str, Any] = {"@odata.etag": format_etag(row.entity["id"], row.version)}
        for name, value in row.entity.items():
            if name == LINES or (select and name not in select):
                continue
            out[name] = self._served(resource, name, value)
        if LINES in expand:
            out[LINES] = [self._line_out(line, select=expand[LINES])
                          for line in row.entity.get(LINES, [])]
        return out

    def _line_out(self, line: Mapping[str, Any], request: Request | None = None, *,
                  select: set[str] | None = None) -> dict[str, Any]:
        self._expand(request, LINES)
        select = select if select is not None else self._select(request, LINES)
        out = {"@odata.etag": format_etag(line["id"], line["_version"])}
        out.update((k, self._served(LINES, k, v)) for k, v in line.items()
                   if k != "_version" and (not select or k in select))
        return out

    def _expand(self, request: Request | None, resource: str) -> dict[str, set[str]]:
        """``$expand``'s navigation properties, each with the ``$select`` nested in it
        (``salesOrderLines($select=quantity)``, which BC recommends: MS Learn, "OData client
        performance"); other nested options are not emulated."""
        if request is None:
            return {}
        expanded: dict[str, set[str]] = {}
        for item in _top_level_split(request.args.get("$expand", "")):
            name, _, nested = item.partition("(")
            name, nested = name.strip(), nested.rstrip().removesuffix(")")
            if name == "*":
                raise not_emulated("$expand=*")
            if name != LINES or resource != "salesOrders":
                raise ApiError("bad_request", f"Could not find a property named '{name}' to "
                                              "expand.")
            option, _, value = nested.partition("=")
            if nested and (option.strip() != "$select" or ";" in value):
                raise not_emulated(f"The nested query option '{nested}' in $expand")
            expanded[name] = self._select_list(value, LINES) if nested else set()
        return expanded

    def _select(self, request: Request | None, resource: str) -> set[str]:
        if request is None or not request.args.get("$select"):
            return set()
        return self._select_list(request.args["$select"], resource)

    def _select_list(self, text: str, resource: str) -> set[str]:
        names = {name.strip() for name in text.split(",")}
        if "*" in names:
            return set()     # every property, as without $select
        unknown = names - set(self._edm(resource).properties)
        if unknown:
            raise ApiError("bad_request",
                           f"Could not find a property named '{sorted(unknown)[0]}'.")
        return names | {"id"}

    def _context(self, request: Request, path: str) -> str:
        return f"{request.host_url.rstrip('/')}{self.api_prefix}/$metadata#{path}"

    def _written(self, status: int, body: dict[str, Any], request: Request) -> Response:
        """A created or changed entity; with ``Prefer: return=minimal`` no body (204) but its
        ETag (OData v4 §8.2.8.7)."""
        headers = {"ETag": body["@odata.etag"], "OData-Version": "4.0"}
        if preferences(request).get("return") == "minimal":
            headers["Preference-Applied"] = "return=minimal"
            if status == 201:
                base = request.base_url.rstrip("/")
                headers["Location"] = headers["OData-EntityId"] = f"{base}({body['id']})"
            return self.respond(204, None, headers)
        if preferences(request).get("return") == "representation":
            headers["Preference-Applied"] = "return=representation"
        return self.respond(status, body, headers)

    def _entity_response(self, status: int, resource: str, row: Row, request: Request) -> Response:
        check_options(request, ENTITY_OPTIONS)
        body = {"@odata.context": self._context(request, f"companies({COMPANY_ID})/{resource}"
                                                        "/$entity"),
                **self._out(resource, row, request)}
        return self._written(status, body, request)

    # -- handlers: service documents ---------------------------------------------------------

    def service_document(self, request: Request) -> Response:
        """The OData service document: the entity sets served, no others."""
        check_options(request, NO_OPTIONS)
        return self.respond(200, {
            "@odata.context": self._context(request, "").rstrip("#"),
            "value": [{"name": name, "kind": "EntitySet", "url": name}
                      for name in sorted(SERVED_SETS)]})

    def _company(self) -> dict[str, Any]:
        return {"id": COMPANY_ID, "systemVersion": "25.0.23364.24603", "timestamp": 1,
                "name": COMPANY_NAME, "displayName": COMPANY_NAME, "businessProfileId": "",
                "systemCreatedAt": "2024-01-02T08:00:00Z", "systemCreatedBy": EMPTY_GUID,
                "systemModifiedAt": "2024-01-02T08:00:00Z", "systemModifiedBy": EMPTY_GUID}

    def list_companies(self, request: Request) -> Response:
        return self._listing(request, "companies", [self._company()], lambda c: c,
                             lambda c: self._plain_out("companies", c, request), "companies")

    def get_company(self, request: Request, company: str) -> Response:
        self._check_company(company)
        check_options(request, ENTITY_OPTIONS)
        self._expand(request, "companies")
        return self.respond(200, {"@odata.context": self._context(request, "companies/$entity"),
                                  **self._plain_out("companies", self._company(), request)})

    def _plain_out(self, resource: str, entity: Mapping[str, Any], request: Request
                   ) -> dict[str, Any]:
        select = self._select(request, resource)
        return {k: v for k, v in entity.items() if not select or k in select}

    def get_metadata(self, request: Request) -> Response:
        check_options(request, NO_OPTIONS)
        return Response(served_metadata(SERVED_SETS, SERVED_NAVIGATION), status=200,
                        content_type="application/xml; charset=utf-8")

    # -- handlers: collections ---------------------------------------------------------------

    def list_entities(self, request: Request, company: str, resource: str) -> Response:
        self._check_company(company)
        return self._listing(request, resource, list(self.collections[resource].values()),
                             lambda row: row.entity, lambda row: self._out(resource, row, request),
                             f"companies({COMPANY_ID})/{resource}")

    def count_entities(self, request: Request, company: str, resource: str) -> Response:
        self._check_company(company)
        return self._count(request, resource, [row.entity for row in
                                               self.collections[resource].values()])

    def _filtered(self, request: Request, resource: str, items: list[Any],
                  entity_of: Any) -> list[Any]:
        text = request.args.get("$filter")
        if not text:
            return items
        predicate = compile_filter(text, self._edm(resource).properties)
        return [item for item in items if predicate(entity_of(item))]

    def _count(self, request: Request, resource: str, entities: list[Mapping[str, Any]]
               ) -> Response:
        """``…/$count``: the number of entities the ``$filter`` matches, as plain text."""
        check_options(request, COUNT_OPTIONS)
        count = len(self._filtered(request, resource, entities, lambda e: e))
        return Response(str(count), status=200, content_type="text/plain; charset=utf-8",
                        headers={"OData-Version": "4.0"})

    def _listing(self, request: Request, resource: str, items: list[Any], entity_of: Any,
                 render: Any, context: str) -> Response:
        """A collection GET: ``$filter``, ``$orderby`` (``id`` last, so the order is total),
        ``$count=true``, ``$skiptoken`` (keyset), ``$skip``, ``$top``, server-driven paging
        (``Prefer: odata.maxpagesize``, at most 20,000) and an ``@odata.nextLink`` that carries
        the rest of the query."""
        check_options(request, COLLECTION_OPTIONS)
        props = self._edm(resource).properties
        items = self._filtered(request, resource, items, entity_of)
        order = parse_orderby(request.args.get("$orderby", ""), props)
        items = ordered(items, order, props, entity_of)
        count = len(items)
        token = request.args.get("$skiptoken")
        if token:
            after, directions = decode_skiptoken(token), [desc for _, desc in order]
            items = [item for item in items if compare_keys(
                directions, sort_key(entity_of(item), order, props), after) > 0]
        skip, top = non_negative(request, "$skip"), non_negative(request, "$top")
        items = items[skip or 0:]
        if top is not None:
            items = items[:top]
        wanted = preferences(request).get("odata.maxpagesize")
        page_size = max(1, min(int(wanted), MAX_PAGE_SIZE)) if wanted else MAX_PAGE_SIZE
        page, rest = items[:page_size], items[page_size:]
        body: dict[str, Any] = {"@odata.context": self._context(request, context)}
        if wants_count(request):
            body["@odata.count"] = count
        body["value"] = [render(item) for item in page]
        if rest:
            params = {k: v for k, v in request.args.items()
                      if k not in ("$skiptoken", "$top", "$skip")}
            if top is not None:
                params["$top"] = str(len(rest))
            params["$skiptoken"] = encode_skiptoken(sort_key(entity_of(page[-1]), order, props))
            body["@odata.nextLink"] = (f"{request.host_url.rstrip('/')}{request.path}?"
                                       f"{urlencode(params)}")
        headers = {"OData-Version": "4.0"}
        if wanted:
            headers["Preference-Applied"] = f"odata.maxpagesize={page_size}"
        return self.respond(200, body, headers)

    def get_entity(self, request: Request, company: str, resource: str, id: str) -> Response:
        self._check_company(company)
        return self._entity_response(200, resource, self._row(resource, id), request)

    def create_entity(self, request: Request, company: str, resource: str) -> Response:
        self._check_company(company)
        check_options(request, ENTITY_OPTIONS)
        self._expand(request, resource)
        body = self.json_body(request)
        row = self._create(resource, body)
        return self._entity_response(201, resource, row, request)

    def patch_entity(self, request: Request, company: str, resource: str, id: str) -> Response:
        self._check_company(company)
        check_options(request, ENTITY_OPTIONS)
        self._concurrent_edits(resource, id)
        row = self._row(resource, id)
        body = self.json_body(request)
        accepted = self._validate(resource, body)
        self._check_if_match(request, row.entity["id"], row.version)
        entity = {**row.entity, **accepted}
        self._apply_rules(resource, entity, accepted)
        row = self.commit(resource, entity["id"], self._with_totals(resource, entity))
        return self._entity_response(200, resource, row, request)

    def delete_entity(self, request: Request, company: str, resource: str, id: str) -> Response:
        self._check_company(company)
        check_options(request, NO_OPTIONS)
        self._concurrent_edits(resource, id)
        row = self._row(resource, id)
        self._check_if_match(request, row.entity["id"], row.version)
        self._check_deletable(resource, row.entity)
        self.remove(resource, row.entity["id"])
        return self.respond(204)

    # -- creating and rules -----------------------------------------------------------------

    def _create(self, resource: str, body: Mapping[str, Any]) -> Row:
        accepted = self._validate(resource, body, nested=(LINES,
                                                          ) if resource == "salesOrders" else ())
        lines_body = accepted.pop(LINES, None)
        entity = {**self._blank(resource), **accepted, "id": str(uuid.uuid4())}
        if not entity.get("number"):
            entity["number"] = self._next_number(resource)
        elif any(row.entity["number"] == entity["number"]
                 for row in self.collections[resource].values()):
            raise ApiError("conflict", f"The record in table {self.singular[resource]} already "
                                       f"exists. Identification fields and values: "
                                       f"No.='{entity['number']}'")
        self._apply_rules(resource, entity, accepted)
        if resource == "salesOrders":
            entity["status"] = "Draft"
            entity[LINES] = []
            if lines_body is not None:
                if not isinstance(lines_body, list):
                    raise ApiError("bad_request", f"'{LINES}' must be an array.")
                for line_body in lines_body:
                    if not isinstance(line_body, dict):
                        raise ApiError("bad_request", "A sales order line must be an object.")
                    entity[LINES].append(self._new_line(entity, line_body))
        return self.commit(resource, entity["id"], self._with_totals(resource, entity))

    def _apply_rules(self, resource: str, entity: dict[str, Any], written: Mapping[str,
                                                                                   Any]) -> None:
        """BC's validation beyond types: a sales order's customer (by id or number) must exist,
        and its number, name and bill-to customer come from it."""
        if resource != "salesOrders":
            return
        if ("customerId" in written or "customerNumber" in written
                or entity["customerId"] == EMPTY_GUID):
            customer = self._customer_for(entity, written)
            if customer.get("blocked") == "All":    # Customer table, label Text006
                raise ApiError("dialog", "You cannot create this type of document when Customer "
                                         f"{customer['number']} is blocked with type All")
            entity.update(customerId=customer["id"], customerNumber=customer["number"],
                          customerName=customer["displayName"], billToCustomerId=customer["id"],
                          billToCustomerNumber=customer["number"],
                          billToName=customer["displayName"])
            if not entity.get("currencyCode"):
                entity["currencyCode"] = customer.get("currencyCode") or ""

    def _customer_for(self, entity: Mapping[str, Any], written: Mapping[str, Any]) -> Mapping[str,
                                                                                              Any]:
        if "customerId" in written and entity["customerId"] != EMPTY_GUID:
            row = self.collections["customers"].get(entity["customerId"])
            if row is None:
                raise ApiError("record_not_found",
                               "The Customer does not exist. Identification fields and values: "
                               f"Id='{entity['customerId']}'")
            return row.entity
        number = entity.get("customerNumber")
        if not number:
            raise ApiError("dialog", "A customerNumber or a customerID must be provided.")
        for row in self.collections["customers"].values():
            if row.entity["number"] == number:
                return row.entity
        raise ApiError("record_not_found", "The Customer does not exist. Identification fields "
                                           f"and values: No.='{number}'")

    def _new_line(self, order: Mapping[str, Any], body: Mapping[str, Any]) -> dict[str, Any]:
        accepted = self._validate(LINES, body)
        line = {**self._blank(LINES), "lineType": "Item", **accepted, "id": str(uuid.uuid4()),
                "documentId": order["id"], "_version": 1}
        if not line.get("sequence"):
            line["sequence"] = max((other["sequence"] for other in order.get(LINES, [])),
                                   default=0) + 10000
        self._line_rules(line, accepted, new=True)
        return line

    def _line_rules(self, line: dict[str, Any], written: Mapping[str, Any], *, new: bool) -> None:
        """An item line takes its item's number, and description, price and unit where not
        given; amounts are recomputed."""
        if line["lineType"] == "Item" and (new or "itemId" in written
                                           or "lineObjectNumber" in written):
            item = self._item_for(line, written)
            line["itemId"], line["lineObjectNumber"] = item["id"], item["number"]
            line["unitOfMeasureCode"] = item["baseUnitOfMeasureCode"]
            if "description" not in written:
                line["description"] = item["displayName"]
            if "unitPrice" not in written:
                line["unitPrice"] = item["unitPrice"]
        line_amounts(line)

    def _item_for(self, line: Mapping[str, Any], written: Mapping[str, Any]) -> Mapping[str, Any]:
        if line.get("itemId") and line["itemId"] != EMPTY_GUID:
            row = self.collections["items"].get(line["itemId"])
            if row is None:
                raise ApiError("record_not_found", "The Item does not exist. Identification "
                                                   f"fields and values: Id='{line['itemId']}'")
            return row.entity
        number = line.get("lineObjectNumber")
        for row in self.collections["items"].values():
            if number and row.entity["number"] == number:
                return row.entity
        raise ApiError("dialog",
                       "You must specify an itemId or a lineObjectNumber for an item line.")

    def _with_totals(self, resource: str, entity: dict[str, Any]) -> dict[str, Any]:
        if resource != "salesOrders":
            return entity
        lines = entity.get(LINES, [])
        net = sum((decimal.Decimal(line["netAmount"]) for line in lines), decimal.Decimal(0))
        tax = sum((decimal.Decimal(line["totalTaxAmount"]) for line in lines), decimal.Decimal(0))
        net -= decimal.Decimal(entity.get("discountAmount") or 0)
        entity.update(totalAmountExcludingTax=round_cents(net), totalTaxAmount=round_cents(tax),
                      totalAmountIncludingTax=round_cents(net + tax))
        return entity

    # -- control endpoints ------------------------------------------------------------------

    def control_reset(self, request: Request) -> Response:
        self._gate = Gate()
        self.blank_enum = self._default_blank_enum
        self._armed.clear()
        return super().control_reset(request)


def _unknown_segment(path: str) -> str:
    """The first segment of a path the service has no resource for (BC's 404 names it)."""
    known = {"companies", *ENTITY_SETS, LINES, "$metadata", "$batch", "$count"}
    names = [segment.split("(")[0] for segment in path.strip("/").split("/")]
    return next((name for name in names if name not in known), names[-1])


def _top_level_split(text: str) -> list[str]:
    """``text`` split at the commas outside parentheses."""
    parts, depth, current = [], 0, ""
    for char in text:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    return [part.strip() for part in [*parts, current] if part.strip()]
