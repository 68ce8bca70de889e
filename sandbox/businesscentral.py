"""Emulator of the Business Central API v2.0 (OData v4), driven by BC's real ``$metadata``.

What it reproduces (``docs/api/businesscentral.md`` has the full list, and what it leaves out):

* the service root ``/v2.0/{tenant}/{environment}/api/v2.0`` with one company,
  ``companies({id})/customers|items|salesOrders`` and ``salesOrders({id})/salesOrderLines``;
* an Entra ID style token endpoint ``/{tenant}/oauth2/v2.0/token`` (client credentials) and
  BC's 401 body for a missing, unknown or expired bearer token;
* every write checked against the ``$metadata`` (property names, Edm types, ``MaxLength``, enum
  member names, ``Nullable``), read-only properties refused, BC's error body
  ``{"error": {"code", "message"}}`` with BC's codes;
* ``@odata.etag`` on every entity, changing on every write; ``If-Match`` required on PATCH and
  DELETE, a stale one answered ``409 Request_EntityChanged``;
* server-driven paging (``Prefer: odata.maxpagesize``, ``@odata.nextLink`` with an opaque
  ``$skiptoken``), ``$filter`` (:mod:`sandbox.odata`), ``$orderby``, ``$top``, ``$select``,
  ``$expand=salesOrderLines``, deep insert of lines, recomputed read-only amounts;
* JSON ``$batch`` of up to 100 requests, each answered on its own;
* throttling: 6,000 requests per 5 minutes (``rate_limit: true`` of ``/_sandbox/faults``) and
  5 concurrent requests plus 95 queued (``POST /_sandbox/limits``), ``429
  Application_TooManyRequests`` beyond.

Test controls beyond the common ones: ``POST /_sandbox/touch/{set}/{id}`` saves an entity
unchanged, so its ETag moves (a concurrent edit, for conflict tests; ``{"when": "next_write"}``
does it just before the next write of it arrives), ``POST /_sandbox/expire-tokens`` and
``POST /_sandbox/limits``.
"""

from __future__ import annotations

import decimal
import re
import uuid
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode, urlsplit

from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request, Response

from sandbox.businesscentral_edm import (
    EMPTY_GUID,
    MAX_CONCURRENT,
    MAX_QUEUED,
    METADATA_PATH,
    EdmEntityType,
    Gate,
    check_value,
    comparable,
    decode_skiptoken,
    encode_skiptoken,
    format_etag,
    line_amounts,
    metadata,
    round_cents,
    sort_key,
    type_default,
)
from sandbox.emulator import Emulator, Row, constant_time_equal
from sandbox.limits import BearerTokens, RateLimit
from sandbox.odata import FilterError, parse_filter
from sandbox.routing import CONTROL_ROUTES, Route, Router
from sandbox.seed_businesscentral import businesscentral_seed
from sandbox.validation import ApiError
from sandbox.wire import dumps, loads

TENANT_ID = "7c4c2f8e-3d0a-4b8e-9c55-0f1d2e3a4b5c"
ENVIRONMENT = "sandbox"
COMPANY_ID = "a1b2c3d4-0000-4000-8000-00000000c0de"
COMPANY_NAME = "CRONUS Norge AS"
CLIENT_ID = "5f0e6d2a-1b3c-4d5e-8f90-a1b2c3d4e5f6"
SCOPE = "https://api.businesscentral.dynamics.com/.default"
TOKEN_PATH = f"/{TENANT_ID}/oauth2/v2.0/token"

#: the entity sets served under the company, and their lines
ENTITY_SETS = ("customers", "items", "salesOrders")
LINES = "salesOrderLines"
#: the biggest page BC online serves, and the most requests in one ``$batch``
MAX_PAGE_SIZE = 20_000
MAX_BATCH_REQUESTS = 100
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
_MAXPAGESIZE = re.compile(r"odata\.maxpagesize=(\d+)")


# --------------------------------------------------------------------------------------------
# The emulator


def _entity_routes() -> tuple[Route, ...]:
    company = "/companies({company})"
    routes = [Route("GET", "/companies", "list_companies"),
              Route("GET", "/$metadata", "get_metadata"),
              Route("POST", "/$batch", "batch")]
    for resource in ENTITY_SETS:
        args = {"resource": resource}
        routes += [
            Route("GET", f"{company}/{resource}", "list_entities", args),
            Route("POST", f"{company}/{resource}", "create_entity", args),
            Route("GET", f"{company}/{resource}({{id}})", "get_entity", args),
            Route("PATCH", f"{company}/{resource}({{id}})", "patch_entity", args),
            Route("DELETE", f"{company}/{resource}({{id}})", "delete_entity", args),
        ]
    lines = f"{company}/salesOrders({{id}})/{LINES}"
    routes += [
        Route("GET", lines, "list_lines"),
        Route("POST", lines, "create_line"),
        Route("GET", f"{lines}({{line}})", "get_line"),
        Route("PATCH", f"{lines}({{line}})", "patch_line"),
        Route("DELETE", f"{lines}({{line}})", "delete_line"),
    ]
    return tuple(routes)


class BusinessCentral(Emulator):
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
        "method_not_allowed": (405, "BadRequest_MethodNotAllowed"),
        "validation_failed": (400, "BadRequest"),
        "bad_request": (400, "BadRequest"),
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
    )

    def __init__(self, **kwargs: Any):
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
        return super()._dispatch(request)

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

    def _out(self, resource: str, row: Row, request: Request | None) -> dict[str, Any]:
        """An entity as BC sends it: ``@odata.etag`` first, lines only when expanded."""
        expand = self._expand(request)
        select = self._select(request, resource)
        out: dict[str, Any] = {"@odata.etag": format_etag(row.entity["id"], row.version)}
        for name, value in row.entity.items():
            if name == LINES or (select and name not in select):
                continue
            out[name] = value
        if LINES in expand:
            out[LINES] = [self._line_out(line) for line in row.entity.get(LINES, [])]
        return out

    @staticmethod
    def _line_out(line: Mapping[str, Any]) -> dict[str, Any]:
        out = {"@odata.etag": format_etag(line["id"], line["_version"])}
        out.update((k, v) for k, v in line.items() if k != "_version")
        return out

    @staticmethod
    def _expand(request: Request | None) -> set[str]:
        if request is None:
            return set()
        names = {name.strip() for name in request.args.get("$expand",
                                                           "").split(",") if name.strip()}
        unknown = names - {LINES}
        if unknown:
            raise ApiError("bad_request", f"Could not find a property named '{sorted(unknown)[0]}' "
                                          "to expand.")
        return names

    def _select(self, request: Request | None, resource: str) -> set[str]:
        if request is None or not request.args.get("$select"):
            return set()
        names = {name.strip() for name in request.args["$select"].split(",")}
        unknown = names - set(self._edm(resource).properties)
        if unknown:
            raise ApiError("bad_request",
                           f"Could not find a property named '{sorted(unknown)[0]}'.")
        return names | {"id"}

    def _entity_response(self, status: int, resource: str, row: Row, request: Request) -> Response:
        body = {"@odata.context": f"{request.host_url.rstrip('/')}{self.api_prefix}/$metadata"
                                  f"#companies({COMPANY_ID})/{resource}/$entity",
                **self._out(resource, row, request)}
        return self.respond(status, body, {"ETag": body["@odata.etag"], "OData-Version": "4.0"})

    # -- handlers: service documents ---------------------------------------------------------

    def list_companies(self, request: Request) -> Response:
        company = {"id": COMPANY_ID, "systemVersion": "25.0.23364.24603", "timestamp": 1,
                   "name": COMPANY_NAME, "displayName": COMPANY_NAME, "businessProfileId": ""}
        filter_text = request.args.get("$filter")
        value = [company]
        if filter_text:
            props = self.metadata.entity_set("companies").properties
            try:
                predicate = parse_filter(filter_text, lambda n, v: comparable(props.get(n), v),
                                         frozenset(props))
            except FilterError as exc:
                raise ApiError("bad_request", str(exc)) from None
            value = [c for c in value if predicate(c)]
        return self.respond(200, {"@odata.context": f"{request.host_url.rstrip('/')}"
                                                    f"{self.api_prefix}/$metadata#companies",
                                  "value": value})

    def get_metadata(self, request: Request) -> Response:
        return Response(METADATA_PATH.read_bytes(), status=200,
                        content_type="application/xml; charset=utf-8")

    # -- handlers: collections ---------------------------------------------------------------

    def list_entities(self, request: Request, company: str, resource: str) -> Response:
        self._check_company(company)
        rows = self._query(request, resource, list(self.collections[resource].values()))
        return self._page(request, resource, rows)

    def _query(self, request: Request, resource: str, rows: list[Row]) -> list[Row]:
        """``$filter`` then ``$orderby`` (always ending with ``id``, so the order is total)."""
        props = self._edm(resource).properties
        filter_text = request.args.get("$filter")
        if filter_text:
            try:
                predicate = parse_filter(filter_text, lambda n, v: comparable(props.get(n), v),
                                         frozenset(props))
            except FilterError as exc:
                raise ApiError("bad_request", str(exc)) from None
            rows = [row for row in rows if predicate(row.entity)]
        order = self._order(request, resource)
        rows.sort(key=lambda row: sort_key(row.entity, order, props))
        return rows

    def _order(self, request: Request, resource: str) -> list[tuple[str, bool]]:
        order: list[tuple[str, bool]] = []
        for part in filter(None, (p.strip() for p in request.args.get("$orderby", "").split(","))):
            name, _, direction = part.partition(" ")
            if name not in self._edm(resource).properties or direction not in ("", "asc", "desc"):
                raise ApiError("bad_request", f"$orderby: '{part}' is not a sortable property.")
            order.append((name, direction == "desc"))
        if "id" not in (name for name, _ in order):
            order.append(("id", False))
        return order

    def _page(self, request: Request, resource: str, rows: list[Row]) -> Response:
        """Server-driven paging: ``$top``, ``Prefer: odata.maxpagesize`` and ``$skiptoken``."""
        props = self._edm(resource).properties
        order = self._order(request, resource)
        token = request.args.get("$skiptoken")
        if token:
            after = decode_skiptoken(token)
            try:
                rows = [row for row in rows if sort_key(row.entity, order, props) > after]
            except TypeError:
                raise ApiError("bad_request", "The skip token is not valid.") from None
        top = request.args.get("$top")
        if top is not None:
            if not top.isdigit():
                raise ApiError("bad_request", "$top must be a non-negative integer.")
            rows = rows[:int(top)]
        prefer = _MAXPAGESIZE.search(request.headers.get("Prefer", ""))
        page_size = max(1, min(int(prefer.group(1)), MAX_PAGE_SIZE)) if prefer else MAX_PAGE_SIZE
        page, rest = rows[:page_size], rows[page_size:]
        root = request.host_url.rstrip("/")
        body: dict[str, Any] = {
            "@odata.context":
                f"{root}{self.api_prefix}/$metadata#companies({COMPANY_ID})/{resource}",
            "value": [self._out(resource, row, request) for row in page],
        }
        if rest:
            params = {k: v for k, v in request.args.items() if k not in ("$skiptoken", "$top")}
            if top is not None:
                params["$top"] = str(len(rest))
            params["$skiptoken"] = encode_skiptoken(sort_key(page[-1].entity, order, props))
            body["@odata.nextLink"] = f"{root}{request.path}?{urlencode(params)}"
        headers = {"OData-Version": "4.0"}
        if prefer:
            headers["Preference-Applied"] = f"odata.maxpagesize={page_size}"
        return self.respond(200, body, headers)

    def get_entity(self, request: Request, company: str, resource: str, id: str) -> Response:
        self._check_company(company)
        return self._entity_response(200, resource, self._row(resource, id), request)

    def create_entity(self, request: Request, company: str, resource: str) -> Response:
        self._check_company(company)
        body = self.json_body(request)
        row = self._create(resource, body)
        return self._entity_response(201, resource, row, request)

    def patch_entity(self, request: Request, company: str, resource: str, id: str) -> Response:
        self._check_company(company)
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
        self._concurrent_edits(resource, id)
        row = self._row(resource, id)
        self._check_if_match(request, row.entity["id"], row.version)
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

    # -- handlers: lines --------------------------------------------------------------------

    def _line(self, order: Row, line_id: str) -> tuple[int, dict[str, Any]]:
        for index, line in enumerate(order.entity[LINES]):
            if line["id"] == line_id.lower():
                return index, line
        raise ApiError("not_found", "The Sales Line does not exist. Identification fields and "
                                    f"values: Id='{line_id}'")

    def _commit_lines(self, order: Row, lines: list[dict[str, Any]]) -> Row:
        """Store an order with new lines: the order's ETag and modified time move too."""
        entity = {**order.entity, LINES: lines}
        return self.commit("salesOrders", entity["id"], self._with_totals("salesOrders", entity))

    def _lines_page(self, request: Request, order: Row) -> Response:
        root = request.host_url.rstrip("/")
        return self.respond(200, {
            "@odata.context": f"{root}{self.api_prefix}/$metadata#companies({COMPANY_ID})/"
                              f"salesOrders({order.entity['id']})/{LINES}",
            "value": [self._line_out(line) for line in order.entity[LINES]]})

    def list_lines(self, request: Request, company: str, id: str) -> Response:
        self._check_company(company)
        return self._lines_page(request, self._row("salesOrders", id))

    def get_line(self, request: Request, company: str, id: str, line: str) -> Response:
        self._check_company(company)
        _, found = self._line(self._row("salesOrders", id), line)
        body = self._line_out(found)
        return self.respond(200, body, {"ETag": body["@odata.etag"]})

    def create_line(self, request: Request, company: str, id: str) -> Response:
        self._check_company(company)
        order = self._row("salesOrders", id)
        line = self._new_line(order.entity, self.json_body(request))
        self._commit_lines(order, [*order.entity[LINES], line])
        body = self._line_out(line)
        return self.respond(201, body, {"ETag": body["@odata.etag"]})

    def patch_line(self, request: Request, company: str, id: str, line: str) -> Response:
        self._check_company(company)
        self._concurrent_edits(LINES, line)
        order = self._row("salesOrders", id)
        index, current = self._line(order, line)
        accepted = self._validate(LINES, self.json_body(request))
        self._check_if_match(request, current["id"], current["_version"])
        changed = {**current, **accepted, "_version": current["_version"] + 1}
        self._line_rules(changed, accepted, new=False)
        lines = list(order.entity[LINES])
        lines[index] = changed
        self._commit_lines(order, lines)
        body = self._line_out(changed)
        return self.respond(200, body, {"ETag": body["@odata.etag"]})

    def delete_line(self, request: Request, company: str, id: str, line: str) -> Response:
        self._check_company(company)
        self._concurrent_edits(LINES, line)
        order = self._row("salesOrders", id)
        index, current = self._line(order, line)
        self._check_if_match(request, current["id"], current["_version"])
        self._commit_lines(order, [line for i,
                                   line in enumerate(order.entity[LINES]) if i != index])
        return self.respond(204)

    # -- $batch -----------------------------------------------------------------------------

    def batch(self, request: Request) -> Response:
        """JSON ``$batch``: each request runs as if sent alone and is answered on its own."""
        body = self.json_body(request)
        requests = body.get("requests")
        if not isinstance(requests, list):
            raise ApiError("bad_request", "The batch request body must have a 'requests' array.")
        if len(requests) > MAX_BATCH_REQUESTS:
            raise ApiError("bad_request", f"The batch has {len(requests)} operations; the maximum "
                                          f"is {MAX_BATCH_REQUESTS}.")
        statuses: dict[str, int] = {}
        responses = []
        for item in requests:
            response = self._batch_one(request, item, statuses)
            if response["id"] is not None:
                statuses[str(response["id"])] = response["status"]
            responses.append(response)
        return self.respond(200, {"responses": responses}, {"OData-Version": "4.0"})

    def _batch_one(self, outer: Request, item: Any, statuses: Mapping[str, int]) -> dict[str, Any]:
        """One request of a batch; one that ``dependsOn`` a failed request is not run (424)."""
        ident = item.get("id") if isinstance(item, dict) else None
        depends = item.get("dependsOn") or [] if isinstance(item, dict) else []
        failed = [d for d in depends if not 200 <= statuses.get(str(d), 0) < 300]
        if failed:
            error = ApiError("failed_dependency", f"The request depends on request "
                                                  f"'{failed[0]}', which failed or was not found.")
            return {"id": ident, "status": 424, "headers": {},
                    "body": self.error_payload(error)}
        try:
            inner = self._inner_request(outer, item)
            path = (inner.path[len(self.api_prefix):] if inner.path.startswith(self.api_prefix)
                    else None)
            if path is None or path == "/$batch":
                raise ApiError("bad_request", f"The batch request URL '{item.get('url')}' is not "
                                              "a resource of this service.")
            route, params = self._router.match(inner.method, path)
            response = getattr(self, route.handler)(inner, **params)
        except ApiError as error:
            response = self.error_response(error)
        headers = {"content-type": "application/json; odata.metadata=minimal"}
        if response.headers.get("ETag"):
            headers["etag"] = response.headers["ETag"]
        data = response.get_data()
        return {"id": ident, "status": response.status_code, "headers": headers,
                "body": loads(data) if data else None}

    def _inner_request(self, outer: Request, item: Any) -> Request:
        if not isinstance(item, dict) or not isinstance(item.get("method"), str) or not isinstance(
                item.get("url"), str):
            raise ApiError("bad_request", "Each batch request needs a method and a url.")
        url = item["url"]
        split = urlsplit(url)
        if split.scheme:
            path = split.path
        else:
            path = self.api_prefix + "/" + split.path.lstrip("/")
        headers = {str(k): str(v) for k, v in (item.get("headers") or {}).items()}
        data = dumps(item["body"]).encode() if item.get("body") is not None else None
        builder = EnvironBuilder(path=path, query_string=split.query, method=item["method"].upper(),
                                 headers=headers, data=data, base_url=outer.host_url)
        try:
            return builder.get_request()
        finally:
            builder.close()

    # -- control endpoints ------------------------------------------------------------------

    def control_touch(self, request: Request, resource: str, id: str) -> Response:
        """Someone saves the entity (or line) in BC without changing it: its ETag (and an
        entity's ``lastModifiedDateTime``) move. With ``{"when": "next_write"}`` that happens
        just before the next PATCH or DELETE of it arrives, i.e. between a client's read and
        its write, deterministically."""
        body = loads(request.get_data() or b"{}")
        when = body.get("when", "now") if isinstance(body, dict) else None
        if when not in ("now", "next_write"):
            raise ApiError("bad_request", 'when must be "now" or "next_write"')
        with self.lock:
            if resource not in (*ENTITY_SETS, LINES):
                raise ApiError("not_found", f"no entity set {resource}")
            if when == "next_write":
                self._armed.add(id.lower())
                return self.respond(200, {"armed": id.lower()})
            return self.respond(200, {"@odata.etag": self._touch(resource, id)})

    def _touch(self, resource: str, key: str) -> str:
        """The concurrent save itself; returns the new ETag."""
        key = key.lower()
        if resource == LINES:
            for order in list(self.collections["salesOrders"].values()):
                for index, line in enumerate(order.entity[LINES]):
                    if line["id"] == key:
                        lines = list(order.entity[LINES])
                        lines[index] = {**line, "_version": line["_version"] + 1}
                        self._commit_lines(order, lines)
                        return format_etag(key, lines[index]["_version"])
            raise ApiError("not_found", f"no sales order line {key}")
        row = self._row(resource, key)
        return format_etag(key, self.commit(resource, key, dict(row.entity)).version)

    def _concurrent_edits(self, resource: str, *keys: str) -> None:
        """Carry out the touches armed for these entities (see :meth:`control_touch`)."""
        for key in keys:
            if key.lower() in self._armed:
                self._armed.discard(key.lower())
                self._touch(resource, key)

    def control_expire_tokens(self, request: Request) -> Response:
        return self.respond(200, {"expired": self._tokens.expire_all()})

    def control_limits(self, request: Request) -> Response:
        body = loads(request.get_data() or b"{}")
        concurrent = body.get("max_concurrent", MAX_CONCURRENT)
        queued = body.get("max_queued", MAX_QUEUED)
        if not all(isinstance(n, int) and not isinstance(n, bool) and n >= bound
                   for n, bound in ((concurrent, 1), (queued, 0))):
            raise ApiError("bad_request", "max_concurrent must be >= 1 and max_queued >= 0.")
        self._gate = Gate(concurrent, queued)
        return self.respond(200, {"max_concurrent": concurrent, "max_queued": queued})

    def control_reset(self, request: Request) -> Response:
        self._gate = Gate()
        self._armed.clear()
        return super().control_reset(request)
