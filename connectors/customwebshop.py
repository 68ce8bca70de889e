"""The Custom Webshop API (``docs/api/README.md``): customers, products and orders.

Reads page through ``updated_since`` with the opaque page token (stable while rows change).
Writes go through ``POST /{entity}:batch``, up to 100 operations per request; each operation
succeeds or fails on its own, and its failure becomes that operation's error. Creates carry
their idempotency key, so a batch whose creates all have one is safe to resend.

Money, rates and quantities are decimal strings on the wire: reads return them as such, writes
take them as strings or as ``Decimal`` (sent as decimal strings).
"""

from __future__ import annotations

import datetime
import decimal
from collections.abc import Mapping, Sequence
from typing import Any

from connectors.errors import ApiError, TransientApiError
from connectors.http import HttpConnector
from connectors.paging import PageRequest, PageToken
from connectors.rows import row_flag, row_key, row_timestamp
from connectors.wire import describe_error_body, format_timestamp
from core.model import Record, SystemConfig, WriteOp, WriteResult

#: operations per batch request (the API's limit)
_MAX_BATCH = 100
#: properties that describe the row rather than the entity
_META_FIELDS = frozenset({"id", "updated_at", "deleted"})
_METHODS = {"create": "POST", "update": "PATCH"}


def _to_wire(value: Any) -> Any:
    """A field value as the API takes it: a ``Decimal`` (money, rates, quantities) as a
    decimal string, the API's format for them, wherever it is nested."""
    if isinstance(value, decimal.Decimal):
        return format(value, "f")
    if isinstance(value, Mapping):
        return {key: _to_wire(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_wire(item) for item in value]
    return value


class CustomWebshopConnector(HttpConnector):
    """A client of the Custom Webshop API.

    Settings: ``api_key`` (a secret reference), ``page_size``, ``requests_per_second``,
    ``timeout_s``.
    """

    system_type = "customwebshop"
    entities = ("customers", "products", "orders")
    max_batch_size = _MAX_BATCH
    default_page_size = 500       # the API's largest page: fewest round trips
    credential_settings = ("api_key",)
    paginator = PageToken(rows="data", token="next_page_token", param="page_token")

    def __init__(self, config: SystemConfig):
        api_key = self._secret_setting(config, "api_key")
        super().__init__(config, headers={"X-Api-Key": api_key}, secret_values=(api_key,))

    @staticmethod
    def _describe_error(body: Any) -> str:
        """``code: message (field: issue; ...)`` from ``{"error": {code, message, details}}``
        (the details only when the message does not already say them)."""
        error = body.get("error") if isinstance(body, Mapping) else None
        if not isinstance(error, Mapping):
            return describe_error_body(body)
        text = f"{error.get('code')}: {error.get('message')}"
        details = "; ".join(f"{d.get('field')}: {d.get('issue')}"
                            for d in error.get("details") or ())
        return f"{text} ({details})" if details and details not in text else text

    def _first_page(self, entity: str, since: datetime.datetime | None) -> PageRequest:
        params: dict[str, Any] = {"page_size": self._page_size}
        if since is not None:
            params["updated_since"] = format_timestamp(since)
        return PageRequest(f"/{entity}", params)

    def write(self, ops: Sequence[WriteOp]) -> list[WriteResult]:
        """One batch request per entity and 100 creates and updates, one ``DELETE`` per
        delete (the batch takes no deletes); results in the order of ``ops``."""
        results: dict[int, WriteResult] = {}
        by_entity: dict[str, list[int]] = {}
        self._check_ops(ops)
        for index, op in enumerate(ops):
            if op.kind == "delete":
                results[index] = self._delete(op)
                continue
            by_entity.setdefault(op.entity, []).append(index)
        for entity, indexes in by_entity.items():
            for start in range(0, len(indexes), _MAX_BATCH):
                chunk = indexes[start:start + _MAX_BATCH]
                batch = [ops[i] for i in chunk]
                results.update(zip(chunk, self._write_batch(entity, batch), strict=True))
        return [results[i] for i in range(len(ops))]

    def _write_batch(self, entity: str, ops: Sequence[WriteOp]) -> list[WriteResult]:
        """One ``POST /{entity}:batch``; a failure of the whole request fails every op."""
        operations = [self._operation(op) for op in ops]
        # Resending is safe when no create can be duplicated: updates are merge patches (one
        # that had applied with if_match answers 412 when resent, and the engine re-reads it),
        # and a create with an idempotency key returns its first result.
        idempotent = all(op.kind == "update" or op.idempotency_key for op in ops)
        try:
            answer = self._http.request("POST", f"/{entity}:batch",
                                        json={"operations": operations},
                                        idempotent=idempotent).data
        except ApiError as exc:
            return [WriteResult(ref=op.ref, error=exc) for op in ops]
        results = answer.get("results") or []
        if len(results) != len(ops):
            error = TransientApiError(
                f"{self.name}: POST /{entity}:batch answered {len(results)} results for "
                f"{len(ops)} operations", system=self.name)
            return [WriteResult(ref=op.ref, error=error) for op in ops]
        return [self._result(entity, op, result) for op, result in zip(ops, results, strict=True)]

    def _delete(self, op: WriteOp) -> WriteResult:
        """``DELETE /{entity}/{id}`` with ``If-Match``: the webshop soft-deletes (the entity
        stays, ``deleted: true``). An entity already gone (404) is a success; one changed
        since it was read (412) is that op's error, like an update's."""
        headers = {"If-Match": op.if_match} if op.if_match is not None else None
        try:
            self._http.request("DELETE", self._entity_path(op.entity, op.id), headers=headers)
        except ApiError as exc:
            if exc.status != 404:
                return WriteResult(ref=op.ref, error=exc)
        return WriteResult(ref=op.ref)

    @staticmethod
    def _operation(op: WriteOp) -> dict:
        operation: dict[str, Any] = {"method": _METHODS[op.kind], "body": _to_wire(op.fields)}
        if op.kind == "update":
            operation["id"] = op.id
            if op.if_match is not None:
                operation["if_match"] = op.if_match
        elif op.idempotency_key is not None:
            operation["idempotency_key"] = op.idempotency_key
        return operation

    def _result(self, entity: str, op: WriteOp, result: Mapping[str, Any]) -> WriteResult:
        status = result["status"]
        if 200 <= status < 300:
            # "replayed": the idempotency key had made this create already; the body is the
            # entity as it is now, not necessarily the values sent.
            return WriteResult(ref=op.ref,
                               record=self._to_record(entity, result["body"], result.get("etag")),
                               adopted=result.get("replayed") is True)
        path = f"/{entity}" if op.kind == "create" else self._entity_path(entity, op.id)
        return WriteResult(ref=op.ref, error=self._http.error_for(
            status, result.get("body"), _METHODS[op.kind], f"{path} (in a batch)"))

    def _to_record(self, entity: str, data: Mapping[str, Any], etag: str | None) -> Record:
        entity_id = row_key(data, "id")
        return Record(system=self.name, entity=entity, id=entity_id,
                      fields={k: v for k, v in data.items() if k not in _META_FIELDS},
                      modified=row_timestamp(data, "updated_at"),
                      deleted=row_flag(data, "deleted"), etag=etag)
