"""Microsoft Dynamics 365 Business Central, API v2.0 (OData v4): customers, items, sales orders.

* Auth: Entra ID client credentials from the process's one token cache
  (:func:`connectors.auth.client_credentials`), renewed shortly before it expires and once on
  a ``401``; tokens and the client secret are masked in every message.
* Reads: ``$filter=lastModifiedDateTime ge …`` (all when no watermark), ordered by
  ``lastModifiedDateTime,id`` so a row changed during the read moves to the end instead of being
  missed; pages of ``Prefer: odata.maxpagesize`` followed through ``@odata.nextLink``; sales
  orders with ``$expand=salesOrderLines``. ``get`` reads up to 100 ids in one ``$batch``.
* Writes: JSON ``$batch`` of at most 100 requests, the requests of one op chained with
  ``dependsOn``. Creates are ``POST`` (orders with their lines: deep insert); a create whose
  ``number`` exists (``Internal_EntityWithSameKeyExists``, e.g. our own earlier create whose
  answer was lost) adopts that entity. Updates are ``PATCH`` with ``If-Match`` = the ETag the
  change was planned against (never ``*``). A stale ETag (409 ``Request_EntityChanged``) becomes
  that op's :class:`~connectors.errors.PreconditionFailedError`: the engine dead-letters it, then
  re-reads and re-plans the entity next run; nothing is overwritten blindly.
* Deletes, the way BC removes each entity (API v2.0 reference; ``docs/api/businesscentral.md``):
  a customer is deactivated with ``PATCH {"blocked": "All"}`` (the customer ``blocked`` enum:
  "All" blocks every transaction; a hard ``DELETE`` fails once the customer has outstanding
  documents or ledger entries), an item with ``PATCH {"blocked": true}``; a sales order is
  deleted (``DELETE``, 204). Each with ``If-Match`` like an update, in the same ``$batch``.
  The result of a deactivation is the entity as BC now has it, marked ``deleted``; of a
  ``DELETE`` none. An entity already gone (404) is a success.
* Order lines: BC does not replace a collection with one PATCH, so an update carrying
  ``salesOrderLines`` reads the order's current lines and sends line operations (PATCH of the
  changed fields with each line's own ETag, POST of new lines, DELETE of surplus ones) in the
  same ``$batch``, after the order's own PATCH, then reads the order back. If the order's ETag
  moved since the plan, nothing is sent and the op fails as a conflict.
* Wire quirks stay here: enum members are XML-escaped on the wire (``Non_x002D_Inventory``) and
  plain text in records; money is JSON numbers (``Decimal``). The blank member has two spellings
  in Microsoft's own material: ``_x0020_`` (``$metadata``) and ``" "`` (the API v2.0 examples,
  ``"blocked": " "``). Both read as ``" "``; writes use the form the tenant was last seen to
  serve, else the ``blank_enum`` setting, else ``$metadata``'s ``_x0020_``.
* BC's own errors (``{"error": {"code", "message"}}``) are the messages of the errors, so they
  reach the dead letters as ``Code: message``.
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from connectors import auth, odata
from connectors.errors import (
    ApiError,
    PermanentApiError,
    PreconditionFailedError,
    TransientApiError,
)
from connectors.http import HttpConnector
from connectors.paging import ODATA_NEXT_LINK, PageRequest
from connectors.rows import row_key, row_list, row_object, row_timestamp
from connectors.wire import describe_error_body
from core.model import Record, SystemConfig, UnreadableRecord, WriteOp, WriteResult

ORDERS, LINES = "salesOrders", "salesOrderLines"
#: requests per ``$batch`` (BC's limit)
MAX_BATCH = 100
SCOPE = "https://api.businesscentral.dynamics.com/.default"
DEFAULT_TOKEN_URL = "https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token"
#: enum properties per entity set (``$metadata`` EnumType members travel XML-escaped)
ENUMS: Mapping[str, frozenset[str]] = {
    "customers": frozenset({"type", "blocked"}),
    "items": frozenset({"type"}),
    ORDERS: frozenset({"status"}),
    LINES: frozenset({"lineType"}),
}
#: how a delete deactivates an entity instead of deleting it: customers get ``blocked: "All"``
#: ("No transactions are allowed for the customer", Microsoft Learn, "Blocked Field, Customer
#: Table"; enum ``Customer Blocked``), items ``blocked: true`` (resource type item,
#: api-reference/v2.0/resources/dynamics_item). Sales orders are deleted
#: (api-reference/v2.0/api/dynamics_salesorder_delete: ``DELETE``, If-Match, 204).
DEACTIVATE: Mapping[str, Mapping[str, Any]] = {
    "customers": {"blocked": "All"},
    "items": {"blocked": True},
}
#: the blank enum member as ``$metadata`` names it, and as Microsoft's examples write it
BLANK_ENUM_FORMS = ("_x0020_", " ")
#: the BC error code of a create whose key (``number``) exists already
_DUPLICATE_KEY = "Internal_EntityWithSameKeyExists"
#: properties of a line a line PATCH may carry (the rest are computed by BC)
_LINE_WRITABLE = frozenset({"itemId", "lineType", "lineObjectNumber", "description",
                            "description2", "quantity", "unitPrice", "discountPercent",
                            "discountAmount", "unitOfMeasureCode", "taxCode", "shipmentDate"})
_ESCAPED = re.compile(r"_x([0-9A-Fa-f]{4})_")


def escape_enum(value: str) -> str:
    """An enum member as BC names it on the wire: every character that cannot be part of an
    XML name becomes ``_xHHHH_`` (``" "`` → ``_x0020_``, ``"Non-Inventory"`` →
    ``Non_x002D_Inventory``)."""
    return "".join(c if c.isalnum() or c == "_" else f"_x{ord(c):04X}_" for c in value)


def unescape_enum(value: str) -> str:
    """The member's plain text: ``_x0020_`` → ``" "``, ``In_x0020_Review`` → ``In Review``."""
    return _ESCAPED.sub(lambda m: chr(int(m.group(1), 16)), value)


def _enums(entity: str, fields: Mapping[str, Any],
           convert: Callable[[str], str]) -> dict[str, Any]:
    """``fields`` with the enum properties (and those of lines) passed through ``convert``."""
    out = {}
    for name, value in fields.items():
        if name in ENUMS.get(entity, ()) and isinstance(value, str):
            value = convert(value)
        elif name == LINES and isinstance(value, list):
            value = [_enums(LINES, line, convert) for line in value]
        out[name] = value
    return out


class _Call:
    """One request of a ``$batch``, and the op it belongs to."""

    def __init__(self, op_index: int, method: str, url: str, body: Any = None,
                 if_match: str | None = None, result: bool = False):
        self.op_index, self.method, self.url, self.body = op_index, method, url, body
        self.if_match = if_match
        #: this call's answer is the op's record
        self.result = result

    def request(self, ident: int, depends_on: Sequence[int] = ()) -> dict[str, Any]:
        headers = {"Content-Type": "application/json"}
        if self.if_match is not None:
            headers["If-Match"] = self.if_match
        request = {"id": str(ident), "method": self.method, "url": self.url, "headers": headers}
        if depends_on:
            request["dependsOn"] = [str(i) for i in depends_on]
        if self.body is not None:
            request["body"] = self.body
        return request


class BusinessCentralConnector(HttpConnector):
    """A client of one BC company through API v2.0.

    Settings: ``tenant_id``, ``client_id``, ``client_secret`` (a secret reference),
    ``token_url`` (default Entra ID's for the tenant), ``company_id`` or ``company_name``,
    ``page_size`` (``Prefer: odata.maxpagesize``), ``requests_per_second``, ``timeout_s``.
    ``base_url`` is the service root,
    ``https://api.businesscentral.dynamics.com/v2.0/{tenant}/{environment}/api/v2.0``.
    """

    system_type = "businesscentral"
    entities = ("customers", "items", ORDERS)
    max_batch_size = MAX_BATCH
    decimal_numbers = True
    default_page_size = 1000
    credential_settings = ("tenant_id", "client_id", "client_secret")
    paginator = ODATA_NEXT_LINK

    def __init__(self, config: SystemConfig):
        settings = config.settings
        for name in ("tenant_id", "client_id"):
            if not settings.get(name):
                raise ValueError(f"system {config.name!r} (businesscentral): setting {name!r} "
                                 "is required")
        if not settings.get("company_id") and not settings.get("company_name"):
            raise ValueError(f"system {config.name!r} (businesscentral): set company_id or "
                             "company_name")
        secret = self._secret_setting(config, "client_secret")
        self._token = auth.client_credentials(
            settings.get("token_url") or DEFAULT_TOKEN_URL.format(tenant=settings["tenant_id"]),
            settings["client_id"], secret, settings.get("scope", SCOPE), system=config.name)
        super().__init__(config, headers={"Accept": "application/json"}, secret_values=(secret,),
                         auth=self._token)
        self._company_id: str | None = settings.get("company_id")
        # BC leaves a sales order's currency blank when it is the company's own (LCY)
        self._local_currency: str | None = settings.get("local_currency") or None
        blank = settings.get("blank_enum", BLANK_ENUM_FORMS[0])
        if blank not in BLANK_ENUM_FORMS:
            raise ValueError(f"system {config.name!r} (businesscentral): setting 'blank_enum' "
                             f"must be '_x0020_' or ' ' (the blank enum member as the tenant "
                             f"spells it), not {blank!r}")
        #: how the blank enum member is written: as the tenant serves it once seen
        self._blank_enum: str = blank

    @staticmethod
    def _describe_error(body: Any) -> str:
        """``code: message`` from BC's ``{"error": {"code", "message"}}``."""
        error = body.get("error") if isinstance(body, Mapping) else None
        if not isinstance(error, Mapping):
            return describe_error_body(body)
        return f"{error.get('code')}: {error.get('message')}"

    # -- paths ------------------------------------------------------------------------------

    def _company(self) -> str:
        """``companies(<id>)``, looking the company up by name once if only that is set."""
        if self._company_id is None:
            name = odata.string(self.config.settings["company_name"])
            found = self._http.request("GET", "/companies",
                                       params={"$filter": odata.eq("name", name)}).data["value"]
            if not found:
                raise ValueError(f"system {self.name!r}: no company named "
                                 f"{self.config.settings['company_name']!r}")
            self._company_id = found[0]["id"]
        return f"companies({self._company_id})"

    def _set_url(self, entity: str) -> str:
        return f"{self._company()}/{entity}"

    def _entity_url(self, entity: str, entity_id: str | None) -> str:
        if entity_id is None or not odata.is_guid(entity_id):
            raise PermanentApiError(f"{self.name}: {entity} id {entity_id!r} is not a GUID",
                                    status=404, system=self.name)
        return f"{self._company()}/{entity}({odata.guid_v4(entity_id)})"

    @staticmethod
    def _expand(entity: str) -> str:
        return f"?$expand={LINES}" if entity == ORDERS else ""

    # -- reading ----------------------------------------------------------------------------

    def _first_page(self, entity: str, since: datetime.datetime | None) -> PageRequest:
        params = {"$orderby": "lastModifiedDateTime,id"}
        if since is not None:
            params["$filter"] = odata.ge("lastModifiedDateTime", odata.datetime_v4(since))
        if entity == ORDERS:
            params["$expand"] = LINES
        return PageRequest("/" + self._set_url(entity), params,
                           headers={"Prefer": f"odata.maxpagesize={self._page_size}"})

    def get(self, entity: str, ids: Iterable[str]) -> list[Record | UnreadableRecord]:
        """The entities in ``$batch`` GETs of 100; unknown ids (404) are left out."""
        self._check_entity(entity)
        return [self._read_row(entity, body) for body in self._get_bodies(entity, ids)]

    def _get_bodies(self, entity: str, ids: Iterable[str]) -> list[Mapping[str, Any]]:
        """The entities as BC sends them (ETags of order lines included)."""
        ids = [i for i in ids if odata.is_guid(i)]     # others cannot exist
        bodies = []
        for start in range(0, len(ids), MAX_BATCH):
            calls = [_Call(i, "GET", self._entity_url(entity, entity_id) + self._expand(entity))
                     for i, entity_id in enumerate(ids[start:start + MAX_BATCH])]
            for call, response in zip(calls, self._batch(calls), strict=True):
                if response["status"] == 404:
                    continue
                if response["status"] != 200:
                    raise self._call_error(call, response)
                bodies.append(response["body"])
        return bodies

    def _to_record(self, entity: str, data: Mapping[str, Any], etag: str | None) -> Record:
        entity_id = row_key(data, "id")
        fields = {k: v for k, v in data.items() if not k.startswith("@odata.")}
        if LINES in fields:
            fields[LINES] = [{k: v for k, v in row_object(line).items()
                              if not k.startswith("@odata.")} for line in row_list(data, LINES)]
        if entity == ORDERS and self._local_currency and not fields.get("currencyCode"):
            fields["currencyCode"] = self._local_currency
        return Record(system=self.name, entity=entity, id=entity_id,
                      fields=_enums(entity, fields, self._from_wire_enum),
                      modified=row_timestamp(data, "lastModifiedDateTime", required=False),
                      etag=data.get("@odata.etag") or etag)

    def _from_wire_enum(self, value: str) -> str:
        """An enum member as plain text; a blank served either way is ``" "``, and the way the
        tenant spells it is remembered for writing."""
        if value in BLANK_ENUM_FORMS:
            self._blank_enum = value
        return unescape_enum(value)

    def _to_wire_enum(self, value: str) -> str:
        escaped = escape_enum(value)
        return self._blank_enum if escaped == BLANK_ENUM_FORMS[0] else escaped

    # -- writing ----------------------------------------------------------------------------

    def write(self, ops: Sequence[WriteOp]) -> list[WriteResult]:
        """The ops in ``$batch`` requests of at most 100 calls; one result per op, in order."""
        self._check_ops(ops)
        results: dict[int, WriteResult] = {}
        try:
            current, current_error = self._current_orders(ops), None
        except ApiError as exc:
            current, current_error = {}, exc
        calls: list[_Call] = []
        for index, op in enumerate(ops):
            try:
                if current_error is not None and op.id in self._line_updates(ops):
                    raise current_error
                op_calls = self._calls(index, op,
                                       current.get(op.id) if op.entity == ORDERS and op.id
                                       else None)
            except ApiError as exc:
                results[index] = WriteResult(ref=op.ref, error=exc)
                continue
            if len(calls) + len(op_calls) > MAX_BATCH:
                results.update(self._send(ops, calls))
                calls = []
            calls += op_calls
        if calls:
            results.update(self._send(ops, calls))
        return [results[i] for i in range(len(ops))]

    @staticmethod
    def _line_updates(ops: Sequence[WriteOp]) -> list[str]:
        """Ids of the orders whose lines the ops replace."""
        return [op.id for op in ops if op.kind == "update" and op.entity == ORDERS
                and LINES in op.fields and op.id is not None]

    def _current_orders(self, ops: Sequence[WriteOp]) -> dict[str, Mapping[str, Any]]:
        """The orders whose lines an update replaces, as they are now (their lines' ids and
        ETags are needed to change them)."""
        ids = self._line_updates(ops)
        return {body["id"]: body for body in self._get_bodies(ORDERS, ids)} if ids else {}

    def _calls(self, index: int, op: WriteOp, order: Mapping[str, Any] | None) -> list[_Call]:
        body = _enums(op.entity, op.fields, self._to_wire_enum)
        if op.entity == ORDERS and self._local_currency \
                and body.get("currencyCode") == self._local_currency:
            body["currencyCode"] = ""       # BC's way of saying "the local currency"
        if op.kind == "create":
            if op.entity == ORDERS and LINES in body:
                body[LINES] = [self._new_line(line) for line in body[LINES]]
            return [_Call(index, "POST", self._set_url(op.entity) + self._expand(op.entity),
                          body, result=True)]
        url = self._entity_url(op.entity, op.id)
        if op.if_match is None:
            # BC answers every read with an ETag, so a plan without one is a caller's slip;
            # "If-Match: *" would overwrite blindly. Refused as a conflict: re-read, re-plan.
            method = "DELETE" if op.kind == "delete" and op.entity not in DEACTIVATE else "PATCH"
            raise PreconditionFailedError(f"{self.name}: {method} /{url}: no ETag to send in "
                                          "If-Match; the entity is read again next run",
                                          status=409, system=self.name)
        if op.kind == "delete":
            return [self._delete_call(index, op, url)]
        if op.entity != ORDERS:
            return [_Call(index, "PATCH", url, body, op.if_match, result=True)]
        lines = body.pop(LINES, None)
        calls = [_Call(index, "PATCH", url, body, op.if_match)] if body else []
        if lines is not None:
            if order is None:
                raise PermanentApiError(f"{self.name}: sales order {op.id} was not found",
                                        status=404, system=self.name)
            if order.get("@odata.etag") != op.if_match:
                raise PreconditionFailedError(
                    f"{self.name}: PATCH /{url} -> HTTP 409: Request_EntityChanged: the order "
                    "changed since it was read (ETag moved); re-read and planned again",
                    status=409, system=self.name)
            calls += self._line_calls(index, url, order, lines)
        calls.append(_Call(index, "GET", url + self._expand(ORDERS), result=True))
        return calls

    def _delete_call(self, index: int, op: WriteOp, url: str) -> _Call:
        """The one call of a delete: the deactivating PATCH of a customer or an item, else a
        ``DELETE`` (a sales order's lines go with it)."""
        if op.entity in DEACTIVATE:
            body = _enums(op.entity, DEACTIVATE[op.entity], self._to_wire_enum)
            return _Call(index, "PATCH", url, body, op.if_match, result=True)
        return _Call(index, "DELETE", url, if_match=op.if_match, result=True)

    @staticmethod
    def _new_line(line: Mapping[str, Any]) -> dict[str, Any]:
        """A line to insert: an item line unless it says otherwise."""
        return {"lineType": "Item", **line} if "itemId" in line else dict(line)

    def _line_calls(self, index: int, url: str, order: Mapping[str, Any],
                    lines: list) -> list[_Call]:
        """Line operations that turn the order's lines into ``lines``, position by position,
        each PATCH and DELETE with the line's own ETag."""
        current = order.get(LINES) or []
        calls = []
        for position, wanted in enumerate(lines):
            if position < len(current):
                line = current[position]
                changed = {k: v for k, v in wanted.items()
                           if k in _LINE_WRITABLE and not _same(line.get(k), v)}
                if "itemId" in changed:
                    # BC revalidates a line whose item changes (price, description and unit
                    # come from the new item), so every wanted value is sent with it
                    changed = {k: v for k, v in wanted.items() if k in _LINE_WRITABLE}
                if changed:
                    calls.append(_Call(index, "PATCH", f"{url}/{LINES}({line['id']})",
                                       _enums(LINES, changed, self._to_wire_enum),
                                       line.get("@odata.etag", "*")))
            else:
                calls.append(_Call(index, "POST", f"{url}/{LINES}",
                                   _enums(LINES, self._new_line(wanted), self._to_wire_enum)))
        for line in current[len(lines):]:
            calls.append(_Call(index, "DELETE", f"{url}/{LINES}({line['id']})",
                               if_match=line.get("@odata.etag", "*")))
        return calls

    def _send(self, ops: Sequence[WriteOp], calls: list[_Call]) -> dict[int, WriteResult]:
        """One ``$batch``; each op's result is its first failed call, else its result call."""
        indexes = list(dict.fromkeys(call.op_index for call in calls))
        try:
            responses = self._batch(calls)
        except ApiError as exc:
            return {i: WriteResult(ref=ops[i].ref, error=exc) for i in indexes}
        results: dict[int, WriteResult] = {}
        for call, response in zip(calls, responses, strict=True):
            op = ops[call.op_index]
            if call.op_index in results and not results[call.op_index].ok:
                continue
            if op.kind == "delete":
                results[call.op_index] = self._deleted(op, call, response)
            elif not 200 <= response["status"] < 300:
                results[call.op_index] = self._failed(op, call, response)
            elif call.result:
                body = response["body"]
                results[call.op_index] = WriteResult(
                    ref=op.ref, record=self._to_record(op.entity, body, None))
        return results

    def _deleted(self, op: WriteOp, call: _Call, response: Mapping[str, Any]) -> WriteResult:
        """A delete's result: gone (204, or 404: gone already) or deactivated (the entity as it
        now stands, marked deleted); else the call's error."""
        status = response["status"]
        if status == 404 or (status == 204 and call.method == "DELETE"):
            return WriteResult(ref=op.ref)
        if not 200 <= status < 300:
            return WriteResult(ref=op.ref, error=self._call_error(call, response))
        record = self._to_record(op.entity, response["body"], None)
        return WriteResult(ref=op.ref, record=dataclasses.replace(record, deleted=True))

    def _failed(self, op: WriteOp, call: _Call, response: Mapping[str, Any]) -> WriteResult:
        """A failed call's result; a create whose number exists adopts that entity."""
        error = self._call_error(call, response)
        code = ((response.get("body") or {}).get("error") or {}).get("code") if isinstance(
            response.get("body"), Mapping) else None
        if op.kind == "create" and code == _DUPLICATE_KEY and op.fields.get("number"):
            existing = self._find_by_number(op.entity, op.fields["number"])
            if existing is not None:
                return WriteResult(ref=op.ref, record=existing, adopted=True)
        return WriteResult(ref=op.ref, error=error)

    def _find_by_number(self, entity: str, number: str) -> Record | None:
        params = {"$filter": odata.eq("number", odata.string(number))}
        if entity == ORDERS:
            params["$expand"] = LINES
        found = self._http.request("GET", "/" + self._set_url(entity), params=params).data["value"]
        return self._to_record(entity, found[0], None) if found else None

    def _call_error(self, call: _Call, response: Mapping[str, Any]) -> ApiError:
        return self._http.error_for(response["status"], response.get("body"), call.method,
                                    f"/{call.url} (in a batch)")

    def _batch(self, calls: Sequence[_Call]) -> list[Mapping[str, Any]]:
        """``POST /$batch`` of ``calls``; the responses in the order of the calls."""
        # Resending is safe without creates: a PATCH that had applied answers 409 (its ETag
        # moved), which the engine re-reads and re-plans.
        idempotent = all(call.method != "POST" for call in calls)
        # The calls of one op run in order, each only if the one before it succeeded
        # (``dependsOn``): no line is changed when the order's PATCH met a stale ETag.
        requests = []
        for i, call in enumerate(calls):
            before = [i - 1] if i and calls[i - 1].op_index == call.op_index else []
            requests.append(call.request(i, before))
        answer = self._http.request("POST", "/$batch", json={"requests": requests},
                                    idempotent=idempotent).data
        by_id = {str(r.get("id")): r for r in answer.get("responses") or []}
        if len(by_id) != len(calls):
            raise TransientApiError(f"{self.name}: POST /$batch answered {len(by_id)} responses "
                                    f"for {len(calls)} requests", system=self.name)
        return [by_id[str(i)] for i in range(len(calls))]


def _same(current: Any, wanted: Any) -> bool:
    """Whether a line's wire value already equals the wanted one (numbers by value)."""
    if isinstance(current, (int, decimal.Decimal)) and not isinstance(current, bool) and \
            isinstance(wanted, (int, decimal.Decimal, str)) and not isinstance(wanted, bool):
        try:
            return decimal.Decimal(str(wanted)) == decimal.Decimal(current)
        except ArithmeticError:
            return False
    return current == wanted
