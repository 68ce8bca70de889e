"""The Custom ERP API (``docs/api/README.md``): Customers, Products and Orders.

An ERP-style API: PascalCase, each entity named by its key (``CustomerNo``, ``ItemNo``,
``OrderNo``, which is :attr:`Record.id`; it stays in ``fields`` too, being business data),
money as JSON numbers (decoded as ``Decimal``), offset paging and no batch endpoint.

Offset paging skips or repeats rows when rows change during the read, so reads page by keyset:
from the last ``ModifiedAt`` seen, skipping the rows already seen with exactly that timestamp
(:class:`~connectors.paging.KeysetOffset`). A create whose key exists (``409``, e.g. our
own earlier create whose answer was lost) adopts the existing entity.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from typing import Any

from connectors.errors import ApiError, PreconditionFailedError
from connectors.http import HttpConnector
from connectors.paging import KeysetOffset, PageRequest, Paginator
from connectors.rows import UnreadableRow, row_key, row_object, row_timestamp
from connectors.wire import describe_error_body, format_timestamp
from core.model import Record, SystemConfig, WriteOp, WriteResult

#: entity -> its key property
_KEYS = {"Customers": "CustomerNo", "Products": "ItemNo", "Orders": "OrderNo"}
_MODIFIED = "ModifiedAt"


class CustomErpConnector(HttpConnector):
    """A client of the Custom ERP API.

    Settings: ``api_key`` (a secret reference), ``page_size``, ``requests_per_second``,
    ``timeout_s``.
    """

    system_type = "customerp"
    entities = tuple(_KEYS)
    max_batch_size = 1
    decimal_numbers = True
    default_page_size = 1000      # the API's largest page: fewest round trips
    credential_settings = ("api_key",)

    def __init__(self, config: SystemConfig):
        api_key = self._secret_setting(config, "api_key")
        super().__init__(config, headers={"Authorization": f"ApiKey {api_key}"},
                         secret_values=(api_key,))

    @staticmethod
    def _describe_error(body: Any) -> str:
        """``Code: Message (field Field)`` from ``{"Error": {Code, Message, Field}}``."""
        error = body.get("Error") if isinstance(body, Mapping) else None
        if not isinstance(error, Mapping):
            return describe_error_body(body)
        text = f"{error.get('Code')}: {error.get('Message')}"
        return f"{text} (field {error['Field']})" if error.get("Field") else text

    def _first_page(self, entity: str, since: datetime.datetime | None) -> PageRequest:
        params: dict[str, Any] = {"limit": self._page_size}
        if since is not None:
            params["modifiedSince"] = format_timestamp(since)
        return PageRequest(f"/{entity}", params)

    def _paginator(self, entity: str) -> Paginator:
        key = _KEYS[entity]

        def position(row: Any) -> tuple[datetime.datetime, str] | None:
            try:
                return row_timestamp(row_object(row), _MODIFIED), row_key(row, key)
            except UnreadableRow:
                return None
        return KeysetOffset(rows="items", position=position, since_param="modifiedSince")

    def write(self, ops: Sequence[WriteOp]) -> list[WriteResult]:
        """One request per op (the API has no batch); failures become the op's result."""
        self._check_ops(ops)
        return [self._write(op) for op in ops]

    def _write(self, op: WriteOp) -> WriteResult:
        try:
            if op.kind == "delete":
                return self._delete(op)
            return self._create(op) if op.kind == "create" else self._update(op)
        except ApiError as exc:
            return WriteResult(ref=op.ref, error=exc)

    def _delete(self, op: WriteOp) -> WriteResult:
        """``DELETE`` (the ERP deletes for good), guarded by ``If-Match`` when the op has an
        ETag; an entity already gone (404) is a success."""
        headers = {"If-Match": op.if_match} if op.if_match is not None else None
        try:
            self._http.request("DELETE", self._entity_path(op.entity, op.id), headers=headers)
        except ApiError as exc:
            if exc.status != 404:
                raise
        return WriteResult(ref=op.ref)

    def _create(self, op: WriteOp) -> WriteResult:
        """``POST``; on ``409`` (the key exists) the existing entity, adopted."""
        try:
            response = self._http.request("POST", f"/{op.entity}", json=op.fields)
        except PreconditionFailedError as exc:
            key = op.fields.get(_KEYS[op.entity])
            existing = [record for record in (self.get(op.entity, [key])
                                              if exc.status == 409 and key else [])
                        if isinstance(record, Record)]
            if not existing:
                raise
            return WriteResult(ref=op.ref, record=existing[0], adopted=True)
        return WriteResult(ref=op.ref,
                           record=self._to_record(op.entity, response.data, response.etag))

    def _update(self, op: WriteOp) -> WriteResult:
        """``PUT`` of the changed fields, guarded by ``If-Match`` when the op has an ETag."""
        headers = {"If-Match": op.if_match} if op.if_match is not None else None
        response = self._http.request("PUT", self._entity_path(op.entity, op.id),
                                      json=op.fields, headers=headers)
        return WriteResult(ref=op.ref,
                           record=self._to_record(op.entity, response.data, response.etag))

    def _key_field(self, entity: str) -> str:
        return _KEYS[entity]

    def _to_record(self, entity: str, data: Mapping[str, Any], etag: str | None) -> Record:
        entity_id = row_key(data, _KEYS[entity])
        return Record(system=self.name, entity=entity, id=entity_id,
                      fields={k: v for k, v in data.items() if k != _MODIFIED},
                      modified=row_timestamp(data, _MODIFIED), etag=etag)
