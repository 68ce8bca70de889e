"""Sales order lines for :mod:`sandbox.businesscentral`, under their order
(``companies({id})/salesOrders({id})/salesOrderLines``) and in the company-level set
(``companies({id})/salesOrderLines``), both documented by Microsoft (MS Learn, "Get
salesOrderLines", "Create salesOrderLines", "Update salesOrderLines", "Delete
salesOrderLines", API v2.0). A line is stored inside its order, so a line write moves the
order's ETag and ``lastModifiedDateTime`` too."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from werkzeug.wrappers import Request, Response

from sandbox.businesscentral_query import ENTITY_OPTIONS, NO_OPTIONS, check_options
from sandbox.emulator import Row
from sandbox.validation import ApiError

LINES = "salesOrderLines"
#: the one company the emulator serves
COMPANY_ID = "a1b2c3d4-0000-4000-8000-00000000c0de"


class LinesMixin:
    """The sales order line handlers of the emulator class this is mixed into (which supplies
    ``_row``, ``_check_company``, ``_listing``, ``_count``, ``_line_out``, ``_written``,
    ``_new_line``, ``_line_rules``, ``_validate``, ``_with_totals`` and the concurrency
    helpers)."""

    collections: dict[str, dict[str, Row]]

    def _line(self, order: Row, line_id: str) -> tuple[int, dict[str, Any]]:
        for index, line in enumerate(order.entity[LINES]):
            if line["id"] == line_id.lower():
                return index, line
        raise ApiError("not_found", "The Sales Line does not exist. Identification fields and "
                                    f"values: Id='{line_id}'")

    def _check_deletable(self, resource: str, entity: Mapping[str, Any]) -> None:
        """BC's refusal to delete a customer or an item that an outstanding sales order still
        uses (the ``OnDelete`` triggers of the Customer and Item tables, labels ``Text000``
        "You cannot delete %1 %2 because there is at least one outstanding Sales %3 for this
        customer." and ``Text001`` "… that includes this item.", microsoft/BCApps
        ``Customer.Table.al`` / ``Item.Table.al``): why a sync deactivates them instead."""
        orders = [row.entity for row in self.collections["salesOrders"].values()]
        if resource == "customers" and any(
                entity["id"] in (order["customerId"], order.get("billToCustomerId"))
                for order in orders):
            raise ApiError("dialog", f"You cannot delete Customer {entity['number']} because "
                                     "there is at least one outstanding Sales Order for this "
                                     "customer.")
        if resource == "items" and any(line.get("itemId") == entity["id"]
                                       for order in orders for line in order[LINES]):
            raise ApiError("dialog", f"You cannot delete Item {entity['number']} because there "
                                     "is at least one outstanding Sales Order that includes "
                                     "this item.")

    def _order_of_line(self, line_id: str) -> str:
        """The id of the sales order a line belongs to (for the company-level line set)."""
        for order in self.collections["salesOrders"].values():
            if any(line["id"] == line_id.lower() for line in order.entity[LINES]):
                return str(order.entity["id"])
        raise ApiError("not_found", "The Sales Line does not exist. Identification fields and "
                                    f"values: Id='{line_id}'")

    def _commit_lines(self, order: Row, lines: list[dict[str, Any]]) -> Row:
        """Store an order with new lines: the order's ETag and modified time move too."""
        entity = {**order.entity, LINES: lines}
        return self.commit("salesOrders", entity["id"], self._with_totals("salesOrders", entity))

    def _line_response(self, status: int, line: Mapping[str, Any], request: Request) -> Response:
        check_options(request, ENTITY_OPTIONS)
        body = {"@odata.context": self._context(request, f"companies({COMPANY_ID})/{LINES}"
                                                        "/$entity"),
                **self._line_out(line, request)}
        return self._written(status, body, request)

    def list_lines(self, request: Request, company: str, id: str) -> Response:
        self._check_company(company)
        order = self._row("salesOrders", id)
        return self._listing(request, LINES, list(order.entity[LINES]), lambda line: line,
                             lambda line: self._line_out(line, request),
                             f"companies({COMPANY_ID})/salesOrders({order.entity['id']})/{LINES}")

    def count_lines(self, request: Request, company: str, id: str) -> Response:
        self._check_company(company)
        return self._count(request, LINES, list(self._row("salesOrders", id).entity[LINES]))

    def _every_line(self) -> list[dict[str, Any]]:
        return [line for order in self.collections["salesOrders"].values()
                for line in order.entity[LINES]]

    def list_company_lines(self, request: Request, company: str) -> Response:
        self._check_company(company)
        return self._listing(request, LINES, self._every_line(), lambda line: line,
                             lambda line: self._line_out(line, request),
                             f"companies({COMPANY_ID})/{LINES}")

    def count_company_lines(self, request: Request, company: str) -> Response:
        self._check_company(company)
        return self._count(request, LINES, self._every_line())

    def get_line(self, request: Request, company: str, id: str, line: str) -> Response:
        self._check_company(company)
        _, found = self._line(self._row("salesOrders", id), line)
        return self._line_response(200, found, request)

    def get_company_line(self, request: Request, company: str, line: str) -> Response:
        return self.get_line(request, company, self._order_of_line(line), line)

    def create_line(self, request: Request, company: str, id: str,
                    body: Mapping[str, Any] | None = None) -> Response:
        self._check_company(company)
        order = self._row("salesOrders", id)
        line = self._new_line(order.entity, self.json_body(request) if body is None else body)
        self._commit_lines(order, [*order.entity[LINES], line])
        return self._line_response(201, line, request)

    def create_company_line(self, request: Request, company: str) -> Response:
        """``POST companies({id})/salesOrderLines``: the body's ``documentId`` names the order
        (MS Learn, "Create salesOrderLines")."""
        body = dict(self.json_body(request))
        document = body.pop("documentId", None)
        if not document:
            raise ApiError("required", "Field 'documentId' must not be blank or empty.")
        if not isinstance(document, str):
            raise ApiError("invalid_guid", f"The value '{document}' of 'documentId' is not a "
                                           "valid GUID.")
        return self.create_line(request, company, document, body)

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
        return self._line_response(200, changed, request)

    def patch_company_line(self, request: Request, company: str, line: str) -> Response:
        return self.patch_line(request, company, self._order_of_line(line), line)

    def delete_line(self, request: Request, company: str, id: str, line: str) -> Response:
        self._check_company(company)
        check_options(request, NO_OPTIONS)
        self._concurrent_edits(LINES, line)
        order = self._row("salesOrders", id)
        index, current = self._line(order, line)
        self._check_if_match(request, current["id"], current["_version"])
        self._commit_lines(order, [line for i,
                                   line in enumerate(order.entity[LINES]) if i != index])
        return self.respond(204)

    def delete_company_line(self, request: Request, company: str, line: str) -> Response:
        return self.delete_line(request, company, self._order_of_line(line), line)
