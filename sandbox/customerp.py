"""Emulator of the Custom ERP API (``/erp/v1``), as specified in ``docs/api/README.md``.

An API in the style of classic ERPs: PascalCase fields, business keys (``CustomerNo``,
``ItemNo``, ``OrderNo``) in the URL, offset paging with a ``total``, money and quantities as JSON
numbers (kept exact as :class:`~decimal.Decimal`), ``PUT`` of the fields to change, hard delete,
``409`` on a duplicate key and ``400`` naming the first offending field.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from werkzeug.wrappers import Request, Response

from sandbox import seed as seed_data
from sandbox.emulator import Emulator, constant_time_equal
from sandbox.limits import RateLimit
from sandbox.routing import Route
from sandbox.validation import (
    ApiError,
    FieldSpec,
    blank_entity,
    parse_int_param,
    parse_since_param,
    validate_fields,
    validation_error,
)

#: Keys are used in URLs, so they may not be empty or hold URL delimiters.
_KEY = dict(pattern=r"^[^/?#]+$", pattern_issue="must not be empty or contain / ? #")

CUSTOMER_FIELDS = (
    FieldSpec("CustomerNo", read_only=True),
    FieldSpec("Name", required=True, max_length=100),
    FieldSpec("OrgNo", max_length=20),
    FieldSpec("Email", max_length=80),
    FieldSpec("Phone", max_length=30),
    FieldSpec("Street", max_length=100),
    FieldSpec("Street2", max_length=100),
    FieldSpec("ZipCode", max_length=20),
    FieldSpec("City", max_length=50),
    FieldSpec("CountryCode", pattern=r"^[A-Z]{2}$", pattern_issue="must be 2 capital letters"),
    FieldSpec("ModifiedAt", read_only=True),
)

VAT_CODES = {"3": 25, "31": 15, "33": 12, "5": 0}

PRODUCT_FIELDS = (
    FieldSpec("ItemNo", required=True, max_length=20, **_KEY),
    FieldSpec("Description", required=True, max_length=100),
    FieldSpec("Gtin", max_length=14),
    FieldSpec("SalesPrice", "number"),
    FieldSpec("CostPrice", "number"),
    FieldSpec("VatCode", "enum", choices=tuple(VAT_CODES)),
    FieldSpec("StockQty", "number"),
    FieldSpec("Unit", max_length=10, default="pcs"),
    FieldSpec("ModifiedAt", read_only=True),
)

ORDER_STATUSES = ("Open", "Released", "Shipped", "Invoiced", "Cancelled")

LINE_FIELDS = (
    FieldSpec("ItemNo", required=True),
    FieldSpec("Description", max_length=100),
    FieldSpec("Qty", "number", required=True),
    FieldSpec("UnitPrice", "number"),
    FieldSpec("DiscountPct", "number"),
)

ORDER_FIELDS = (
    FieldSpec("OrderNo", max_length=40, **_KEY),
    FieldSpec("CustomerNo", required=True),
    FieldSpec("OrderDate", "date"),
    FieldSpec("Currency", default="NOK", pattern=r"^[A-Z]{3}$",
              pattern_issue="must be 3 capital letters"),
    FieldSpec("Reference", max_length=80),
    FieldSpec("Status", "enum", choices=ORDER_STATUSES, default="Open"),
    FieldSpec("Lines", "array", fields=LINE_FIELDS),
    FieldSpec("ModifiedAt", read_only=True),
)

FIELDS: Mapping[str, tuple[FieldSpec, ...]] = {
    "Customers": CUSTOMER_FIELDS,
    "Products": PRODUCT_FIELDS,
    "Orders": ORDER_FIELDS,
}
KEY_FIELDS = {"Customers": "CustomerNo", "Products": "ItemNo", "Orders": "OrderNo"}
#: Server-assigned key series: resource → (prefix, number before the first one).
KEY_SERIES = {"Customers": ("C", 10000), "Orders": ("SO-", 100000)}


class CustomErp(Emulator):
    """The Custom ERP API."""

    system = "customerp"
    api_prefix = "/erp/v1"
    timestamp_field = "ModifiedAt"
    key_fields = KEY_FIELDS
    singular = {"Customers": "customer", "Products": "product", "Orders": "order"}
    system_rate_limit = RateLimit(600, 60.0)
    errors = {
        "unauthorized": (401, "Unauthorized"),
        "not_found": (404, "NotFound"),
        "method_not_allowed": (405, "MethodNotAllowed"),
        "validation_failed": (400, "ValidationError"),
        "conflict": (409, "Conflict"),
        "precondition_failed": (412, "PreconditionFailed"),
        "rate_limited": (429, "TooManyRequests"),
        "internal": (500, "InternalError"),
        "unavailable": (503, "ServiceUnavailable"),
    }
    routes = tuple(
        route
        for resource in FIELDS
        for route in (
            Route("GET", f"/{resource}", "list_entities", {"resource": resource}),
            Route("POST", f"/{resource}", "create_entity", {"resource": resource}),
            Route("GET", f"/{resource}/{{{KEY_FIELDS[resource]}}}", "get_entity",
                  {"resource": resource}),
            Route("PUT", f"/{resource}/{{{KEY_FIELDS[resource]}}}", "put_entity",
                  {"resource": resource}),
            Route("DELETE", f"/{resource}/{{{KEY_FIELDS[resource]}}}", "delete_entity",
                  {"resource": resource}),
        )
    )

    # -- hooks ----------------------------------------------------------------------------

    def authenticate(self, request: Request) -> bool:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        return scheme.lower() == "apikey" and constant_time_equal(token.strip(), self.api_key)

    def challenge_headers(self) -> Mapping[str, str]:
        return {"WWW-Authenticate": 'ApiKey realm="erp"'}

    def error_body(self, code: str, message: str, details: Sequence[tuple[str, str]]) -> Any:
        return {"Error": {"Code": code, "Message": message,
                          "Field": (details[0][0] or None) if details else None}}

    def seed_collections(self) -> Mapping[str, list[dict[str, Any]]]:
        return seed_data.erp_seed(self.seed)

    def initial_counters(self) -> dict[str, int]:
        counters = {}
        for resource, (prefix, start) in KEY_SERIES.items():
            numbers = [
                int(key[len(prefix):])
                for key in self.collections[resource]
                if key.startswith(prefix) and key[len(prefix):].isdigit()
            ]
            counters[resource] = max(numbers, default=start)
        return counters

    # -- handlers -------------------------------------------------------------------------

    def list_entities(self, request: Request, resource: str) -> Response:
        since = parse_since_param(request, "modifiedSince")
        offset = parse_int_param(request, "offset", 0, 0)
        limit = parse_int_param(request, "limit", 100, 1, 1000)
        rows = self.ordered_rows(resource, since)
        items = [row.entity for row in rows[offset:offset + limit]]
        return self.respond(200, {"items": items, "total": len(rows)})

    # Entity paths name their key parameter after the key field (/Customers/{CustomerNo}).

    def get_entity(self, request: Request, resource: str, **path: str) -> Response:
        return self.entity_response(200, self.row(resource, path[KEY_FIELDS[resource]]))

    def create_entity(self, request: Request, resource: str) -> Response:
        specs = FIELDS[resource]
        accepted, problems = validate_fields(self.json_body(request), specs, partial=False)
        if problems:
            raise validation_error(problems)
        entity = {**blank_entity(specs), **accepted}
        self._finish(resource, entity, accepted)
        key_field = KEY_FIELDS[resource]
        if entity[key_field] is None:
            entity[key_field] = self._next_key(resource)
        elif entity[key_field] in self.collections[resource]:
            raise ApiError(
                "conflict",
                f"{self.singular[resource]} {entity[key_field]} already exists",
                [(key_field, "already exists")],
            )
        row = self.commit(resource, entity[key_field], entity)
        location = f"{self.api_prefix}/{resource}/{entity[key_field]}"
        return self.entity_response(201, row, {"Location": location})

    def put_entity(self, request: Request, resource: str, **path: str) -> Response:
        """Change the fields sent; the others keep their value. A change to nothing writes
        nothing."""
        key = path[KEY_FIELDS[resource]]
        row = self.row(resource, key)
        body = self.json_body(request)
        key_field = KEY_FIELDS[resource]
        problems: list[tuple[str, str]] = []
        if key_field in body:
            if body.pop(key_field) != key:
                problems.append((key_field, "cannot change"))
        accepted, field_problems = validate_fields(body, FIELDS[resource], partial=True)
        problems += field_problems
        if problems:
            raise validation_error(problems)
        entity = {**row.entity, **accepted}
        self._finish(resource, entity, accepted)
        self.check_if_match(resource, key, row, request.headers.get("If-Match"))
        if entity != row.entity:
            row = self.commit(resource, key, entity)
        return self.entity_response(200, row)

    def delete_entity(self, request: Request, resource: str, **path: str) -> Response:
        key = path[KEY_FIELDS[resource]]
        row = self.row(resource, key)
        self.check_if_match(resource, key, row, request.headers.get("If-Match"))
        self.remove(resource, key)
        return self.respond(204)

    # -- rules ----------------------------------------------------------------------------

    def _finish(self, resource: str, entity: dict[str, Any], written: Mapping[str, Any]) -> None:
        """Order rules beyond field types, for the fields just ``written``: the customer and the
        items must exist; line fields left out come from the item."""
        if resource != "Orders":
            return
        problems: list[tuple[str, str]] = []
        if "CustomerNo" in written and entity["CustomerNo"] not in self.collections["Customers"]:
            problems.append(("CustomerNo", f"no customer {entity['CustomerNo']}"))
        lines = []
        for index, line in enumerate(entity["Lines"] if "Lines" in written else ()):
            product = self.collections["Products"].get(line["ItemNo"])
            if product is None:
                problems.append((f"Lines.{index}.ItemNo", f"no item {line['ItemNo']}"))
                continue
            defaults = {
                "Description": product.entity["Description"],
                "UnitPrice": product.entity["SalesPrice"],
                "DiscountPct": 0,
            }
            lines.append({spec.name: line.get(spec.name,
                                              defaults.get(spec.name)) for spec in LINE_FIELDS})
        if problems:
            raise validation_error(problems)
        if "Lines" in written:
            entity["Lines"] = lines

    def _next_key(self, resource: str) -> str:
        """The next free key of the resource's number series (numbers are never reused)."""
        prefix, _ = KEY_SERIES[resource]
        while True:
            self.counters[resource] += 1
            key = f"{prefix}{self.counters[resource]}"
            if key not in self.collections[resource]:
                return key
