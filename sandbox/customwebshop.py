"""Emulator of the Custom Webshop API (``/api/v1``), as specified in ``docs/api/README.md``.

A REST API in the style of modern webshops: snake_case JSON, money as decimal strings, opaque
cursor paging ordered by (``updated_at``, ``id``), soft delete, JSON merge patch, ETags with
``If-Match``, ``Idempotency-Key`` on creates and a ``:batch`` endpoint of independent operations.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Mapping, Sequence
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from werkzeug.wrappers import Request, Response

from sandbox import seed as seed_data
from sandbox.emulator import Emulator, Row, constant_time_equal
from sandbox.limits import RateLimit
from sandbox.routing import Route
from sandbox.validation import (
    ApiError,
    FieldSpec,
    blank_entity,
    etag,
    parse_int_param,
    parse_since_param,
    validate_fields,
    validation_error,
)

_COUNTRY = dict(pattern=r"^[A-Z]{2}$", pattern_issue="must be an ISO 3166-1 alpha-2 country code")
_CURRENCY = dict(pattern=r"^[A-Z]{3}$", pattern_issue="must be an ISO 4217 currency code")

ADDRESS_FIELDS = (
    FieldSpec("line1", max_length=200),
    FieldSpec("line2", max_length=200),
    FieldSpec("postal_code", max_length=20),
    FieldSpec("city", max_length=100),
    FieldSpec("country", **_COUNTRY),
)

_READ_ONLY_TAIL = (
    FieldSpec("updated_at", read_only=True),
    FieldSpec("deleted", read_only=True, default=False),
)

CUSTOMER_FIELDS = (
    FieldSpec("id", read_only=True),
    FieldSpec("email", required=True, max_length=254, pattern="@", pattern_issue="must contain @"),
    FieldSpec("first_name", max_length=100),
    FieldSpec("last_name", max_length=100),
    FieldSpec("company_name", max_length=200),
    FieldSpec("phone", max_length=40),
    FieldSpec("vat_number", max_length=40),
    FieldSpec("address", "object", fields=ADDRESS_FIELDS),
    *_READ_ONLY_TAIL,
)

PRODUCT_FIELDS = (
    FieldSpec("id", read_only=True),
    FieldSpec("sku", required=True, max_length=64),
    FieldSpec("gtin", max_length=14, pattern=r"^\d+$", pattern_issue="must contain only digits"),
    FieldSpec("name", required=True, max_length=200),
    FieldSpec("description", max_length=4000),
    FieldSpec("price", "decimal", required=True),
    FieldSpec("cost", "decimal"),
    FieldSpec("currency", default="NOK", **_CURRENCY),
    FieldSpec("vat_rate", "decimal"),
    FieldSpec("stock_quantity", "integer"),
    *_READ_ONLY_TAIL,
)

ORDER_STATUSES = ("pending", "processing", "shipped", "completed", "cancelled")

LINE_FIELDS = (
    FieldSpec("product_id", required=True),
    FieldSpec("sku", max_length=64),
    FieldSpec("name", max_length=200),
    FieldSpec("quantity", "decimal", required=True),
    FieldSpec("unit_price", "decimal", required=True),
    FieldSpec("discount_percent", "decimal"),
    FieldSpec("vat_rate", "decimal"),
)

ORDER_FIELDS = (
    FieldSpec("id", read_only=True),
    FieldSpec("number", required=True, max_length=40),
    FieldSpec("customer_id", required=True),
    FieldSpec("status", "enum", choices=ORDER_STATUSES, default="pending"),
    FieldSpec("currency", required=True, **_CURRENCY),
    FieldSpec("order_date", "date"),
    FieldSpec("billing_address", "object", fields=ADDRESS_FIELDS),
    FieldSpec("shipping_address", "object", fields=ADDRESS_FIELDS),
    FieldSpec("lines", "array", fields=LINE_FIELDS),
    FieldSpec("discount_total", "decimal", default="0.00"),
    FieldSpec("total", read_only=True),
    *_READ_ONLY_TAIL,
)

FIELDS: Mapping[str, tuple[FieldSpec, ...]] = {
    "customers": CUSTOMER_FIELDS,
    "products": PRODUCT_FIELDS,
    "orders": ORDER_FIELDS,
}
ID_PREFIXES = {"customers": "cus", "products": "prd", "orders": "ord"}
#: Fields that must be unique among a resource's entities that are not deleted.
UNIQUE_FIELDS = {"products": "sku", "orders": "number"}

MAX_BATCH_OPERATIONS = 100
MAX_IDEMPOTENCY_KEY = 255
_BATCH_OPERATION_KEYS = {"method", "id", "body", "idempotency_key", "if_match"}


def order_total(order: Mapping[str, Any]) -> str:
    """Σ quantity × unit_price × (1 − discount_percent/100) − discount_total, to 2 decimals."""
    total = Decimal(0)
    for line in order["lines"]:
        discount = Decimal(line.get("discount_percent") or 0)
        total += Decimal(line["quantity"]) * Decimal(line["unit_price"]) * (1 - discount / 100)
    total -= Decimal(order.get("discount_total") or 0)
    total = total.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    return f"{total + 0:.2f}"  # "+ 0" turns -0.00 into 0.00


def merge_patch(entity: dict[str, Any], patch: Mapping[str, Any],
                specs: Sequence[FieldSpec]) -> dict[str, Any]:
    """RFC 7396 on a validated patch: nested objects merge, lists and scalars replace, ``null``
    clears. Objects always keep every declared sub-field (absent ones are ``null``)."""
    merged = dict(entity)
    kinds = {spec.name: spec for spec in specs}
    for name, value in patch.items():
        spec = kinds[name]
        if spec.type == "object" and value is not None:
            merged[name] = {
                **blank_entity(spec.fields),
                **(entity.get(name) or {}),
                **value,
            }
        else:
            merged[name] = value
    return merged


def _complete_objects(entity: dict[str, Any], specs: Sequence[FieldSpec]) -> None:
    """Give every object field of a new entity all its declared sub-fields."""
    for spec in specs:
        if spec.type == "object" and entity.get(spec.name) is not None:
            entity[spec.name] = {**blank_entity(spec.fields), **entity[spec.name]}


def encode_page_token(sort_key: tuple[str, str]) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(sort_key)).encode()).decode().rstrip("=")


def decode_page_token(token: str) -> tuple[str, str]:
    try:
        padded = token + "=" * (-len(token) % 4)
        timestamp, key = json.loads(base64.urlsafe_b64decode(padded.encode()))
        if not isinstance(timestamp, str) or not isinstance(key, str):
            raise ValueError
    except (ValueError, TypeError, binascii.Error):
        raise validation_error([("page_token", "is not a valid page token")]) from None
    return timestamp, key


class CustomWebshop(Emulator):
    """The Custom Webshop API."""

    system = "customwebshop"
    api_prefix = "/api/v1"
    timestamp_field = "updated_at"
    key_fields = {resource: "id" for resource in FIELDS}
    singular = {"customers": "customer", "products": "product", "orders": "order"}
    system_rate_limit = RateLimit(20, 1.0)
    errors = {
        "unauthorized": (401, "unauthorized"),
        "not_found": (404, "not_found"),
        "method_not_allowed": (405, "method_not_allowed"),
        "precondition_failed": (412, "precondition_failed"),
        "conflict": (409, "conflict"),
        "validation_failed": (422, "validation_failed"),
        "too_many_operations": (422, "too_many_operations"),
        "rate_limited": (429, "rate_limited"),
        "internal": (500, "internal"),
        "unavailable": (503, "unavailable"),
    }
    routes = tuple(
        route
        for resource in FIELDS
        for route in (
            Route("GET", f"/{resource}", "list_entities", {"resource": resource}),
            Route("POST", f"/{resource}", "create_entity", {"resource": resource}),
            Route("POST", f"/{resource}:batch", "batch", {"resource": resource}),
            Route("GET", f"/{resource}/{{id}}", "get_entity", {"resource": resource}),
            Route("PATCH", f"/{resource}/{{id}}", "patch_entity", {"resource": resource}),
            Route("DELETE", f"/{resource}/{{id}}", "delete_entity", {"resource": resource}),
        )
    )

    # -- hooks ----------------------------------------------------------------------------

    def authenticate(self, request: Request) -> bool:
        return constant_time_equal(request.headers.get("X-Api-Key"), self.api_key)

    def error_body(self, code: str, message: str, details: Sequence[tuple[str, str]]) -> Any:
        return {
            "error": {
                "code": code,
                "message": message,
                "details": [{"field": field, "issue": issue} for field, issue in details],
            }
        }

    def seed_collections(self) -> Mapping[str, list[dict[str, Any]]]:
        data = seed_data.webshop_seed(self.seed)
        for order in data["orders"]:
            order["total"] = order_total(order)
        return data

    def initial_counters(self) -> dict[str, int]:
        return {
            resource: max((int(key.rsplit("_", 1)[1]) for key in self.collections[resource]),
                          default=0)
            for resource in FIELDS
        }

    # -- handlers -------------------------------------------------------------------------

    def list_entities(self, request: Request, resource: str) -> Response:
        since = parse_since_param(request, "updated_since")
        page_size = parse_int_param(request, "page_size", 100, 1, 500)
        token = request.args.get("page_token")
        after = decode_page_token(token) if token else None
        rows = self.keyed_rows(resource, since, after)
        page = rows[:page_size]
        next_token = None
        if len(rows) > page_size:
            # the last row's sort key, also when it is a raw row without a usable updated_at
            next_token = encode_page_token(page[-1][0])
        return self.respond(200, {"data": [row.entity for _, row in page],
                                  "next_page_token": next_token})

    def get_entity(self, request: Request, resource: str, id: str) -> Response:
        return self.entity_response(200, self.row(resource, id))

    def create_entity(self, request: Request, resource: str) -> Response:
        key = request.headers.get("Idempotency-Key")
        if key is not None:
            self._check_idempotency_key(key, "Idempotency-Key")
        row, replayed = self._create_or_replay(resource, key, lambda: self.json_body(request))
        headers = {"Location": f"{self.api_prefix}/{resource}/{row.entity['id']}"}
        if replayed:
            headers["Idempotent-Replayed"] = "true"
        return self.entity_response(201, row, headers)

    def patch_entity(self, request: Request, resource: str, id: str) -> Response:
        self.row(resource, id)  # 404 before looking at the body
        body = self.json_body(request)
        return self.entity_response(200, self._update(resource, id, body,
                                                      request.headers.get("If-Match")))

    def delete_entity(self, request: Request, resource: str, id: str) -> Response:
        row = self.row(resource, id)
        self.check_if_match(resource, id, row, request.headers.get("If-Match"))
        if not row.entity["deleted"]:
            self.commit(resource, id, {**row.entity, "deleted": True})
        return self.respond(204)

    def batch(self, request: Request, resource: str) -> Response:
        body = self.json_body(request)
        unknown = [(name, "unknown field") for name in body if name != "operations"]
        operations = body.get("operations")
        if not isinstance(operations, list):
            raise validation_error(unknown + [("operations", "must be an array")])
        if unknown:
            raise validation_error(unknown)
        if len(operations) > MAX_BATCH_OPERATIONS:
            raise ApiError(
                "too_many_operations",
                f"a batch holds at most {MAX_BATCH_OPERATIONS} operations, got {len(operations)}",
                [("operations", f"must have at most {MAX_BATCH_OPERATIONS} items")],
            )
        return self.respond(200, {"results": [self._apply_operation(resource,
                                                                    op) for op in operations]})

    # -- operations -----------------------------------------------------------------------

    def _apply_operation(self, resource: str, operation: Any) -> dict[str, Any]:
        """One batch operation, applied as if it were sent alone; its result or error."""
        try:
            method, body, key, if_match, entity_id = self._read_operation(operation)
            if method == "POST":
                status = 201
                row, replayed = self._create_or_replay(resource, key, lambda: body)
            else:
                status, row, replayed = 200, self._update(resource, entity_id, body,
                                                          if_match), False
        except ApiError as error:
            return {"status": self.error_status(error), "etag": None,
                    "body": self.error_payload(error)}
        result: dict[str, Any] = {"status": status, "etag": etag(row.version), "body": row.entity}
        if replayed:
            result["replayed"] = True
        return result

    def _read_operation(self, operation: Any) -> tuple[str, dict[str, Any], str | None, str | None,
                                                       str | None]:
        if not isinstance(operation, dict):
            raise validation_error([("", "operation must be an object")])
        problems = [(name,
                     "unknown field") for name in operation if name not in _BATCH_OPERATION_KEYS]
        method = operation.get("method")
        if method not in ("POST", "PATCH"):
            problems.append(("method", 'must be "POST" or "PATCH"'))
        body = operation.get("body")
        if not isinstance(body, dict):
            problems.append(("body", "must be an object"))
        entity_id = operation.get("id")
        key = operation.get("idempotency_key")
        if_match = operation.get("if_match")
        if method == "PATCH":
            if not isinstance(entity_id, str):
                problems.append(("id", "is required for PATCH"))
            if key is not None:
                problems.append(("idempotency_key", "is only allowed for POST"))
        if method == "POST":
            if entity_id is not None:
                problems.append(("id", "is only allowed for PATCH"))
            if if_match is not None:
                problems.append(("if_match", "is only allowed for PATCH"))
        if if_match is not None and not isinstance(if_match, str):
            problems.append(("if_match", "must be a string"))
        if problems:
            raise validation_error(problems)
        if key is not None:
            self._check_idempotency_key(key, "idempotency_key")
        return method, body, key, if_match, entity_id

    @staticmethod
    def _check_idempotency_key(key: Any, field: str) -> None:
        if not isinstance(key, str) or not 1 <= len(key) <= MAX_IDEMPOTENCY_KEY:
            raise validation_error([(field, f"must be 1 to {MAX_IDEMPOTENCY_KEY} characters")])

    def _create_or_replay(
        self, resource: str, key: str | None, body: Callable[[], dict[str, Any]]
    ) -> tuple[Row, bool]:
        """The entity (as it is now) an earlier create with this idempotency key made, and
        ``True``; else create one from ``body()`` (not read for a replay), and ``False``."""
        existing = self.remembered(resource, key) if key is not None else None
        if existing is not None:
            return self.collections[resource][existing], True
        return self._create(resource, body(), key), False

    def _create(self, resource: str, body: dict[str, Any], key: str | None) -> Row:
        """Create an entity and remember the idempotency key that made it."""
        specs = FIELDS[resource]
        accepted, problems = validate_fields(body, specs, partial=False)
        if problems:
            raise validation_error(problems)
        entity = {**blank_entity(specs), **accepted}
        _complete_objects(entity, specs)
        self._finish(resource, entity, accepted)
        self._check_unique(resource, entity, accepted, None)
        self.counters[resource] += 1
        entity["id"] = f"{ID_PREFIXES[resource]}_{self.counters[resource]:06d}"
        row = self.commit(resource, entity["id"], entity)
        if key is not None:
            self.remember(resource, key, entity["id"])
        return row

    def _update(self, resource: str, entity_id: str, patch: dict[str, Any],
                if_match: str | None) -> Row:
        """Merge-patch an entity. A patch that changes nothing writes nothing."""
        row = self.row(resource, entity_id)
        if row.entity["deleted"]:
            raise ApiError("conflict", f"{self.singular[resource]} {entity_id} is deleted")
        specs = FIELDS[resource]
        accepted, problems = validate_fields(patch, specs, partial=True)
        if problems:
            raise validation_error(problems)
        entity = merge_patch(row.entity, accepted, specs)
        self._finish(resource, entity, accepted)
        self.check_if_match(resource, entity_id, row, if_match)
        self._check_unique(resource, entity, accepted, entity_id)
        if entity == row.entity:
            return row
        return self.commit(resource, entity_id, entity)

    def _finish(self, resource: str, entity: dict[str, Any], written: Mapping[str, Any]) -> None:
        """Order rules beyond field types, for the fields just ``written``: the customer and the
        products referenced must exist (and not be deleted), line fields left out come from the
        product; then the total is computed."""
        if resource != "orders":
            return
        problems: list[tuple[str, str]] = []
        if "customer_id" in written:
            customer = self.collections["customers"].get(entity["customer_id"])
            if customer is None or customer.entity["deleted"]:
                problems.append(("customer_id", f"no customer {entity['customer_id']}"))
        lines = []
        for index, line in enumerate(entity["lines"] if "lines" in written else ()):
            product = self.collections["products"].get(line["product_id"])
            if product is None or product.entity["deleted"]:
                problems.append((f"lines.{index}.product_id", f"no product {line['product_id']}"))
                continue
            defaults = {
                "sku": product.entity["sku"],
                "name": product.entity["name"],
                "discount_percent": "0",
                "vat_rate": product.entity["vat_rate"],
            }
            lines.append({spec.name: line.get(spec.name,
                                              defaults.get(spec.name)) for spec in LINE_FIELDS})
        if problems:
            raise validation_error(problems)
        if "lines" in written:
            entity["lines"] = lines
        entity["total"] = order_total(entity)

    def _check_unique(
        self, resource: str, entity: Mapping[str, Any], written: Mapping[str, Any],
        own_id: str | None
    ) -> None:
        field = UNIQUE_FIELDS.get(resource)
        if field is None or field not in written:
            return
        for key, row in self.collections[resource].items():
            if key != own_id and not row.entity["deleted"] and row.entity[field] == entity[field]:
                raise ApiError(
                    "conflict",
                    f"{self.singular[resource]} {key} already has {field} {entity[field]!r}",
                    [(field, "must be unique")],
                )
