"""The Business Central emulator's own test controls (for :mod:`sandbox.businesscentral`):
a concurrent save of an entity (``/_sandbox/touch``), expiring tokens, the concurrency limits
and the form of the blank enum member served."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from werkzeug.wrappers import Request, Response

from sandbox.businesscentral_edm import BLANK_FORMS, MAX_CONCURRENT, MAX_QUEUED, Gate, format_etag
from sandbox.businesscentral_lines import LINES
from sandbox.validation import ApiError
from sandbox.wire import loads


class ControlsMixin:
    """``/_sandbox/*`` endpoints beyond the common ones."""

    key_fields: Mapping[str, str]
    _armed: set[str]
    blank_enum: str
    _gate: Any

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
            if resource not in (*self.key_fields, LINES):
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

    def control_blank_enum(self, request: Request) -> Response:
        """Which form the blank enum member is served in: ``{"form": "_x0020_"}`` (as
        ``$metadata`` names it) or ``{"form": " "}`` (as Microsoft's examples show it)."""
        body = loads(request.get_data() or b"{}")
        form = body.get("form") if isinstance(body, dict) else None
        if form not in BLANK_FORMS:
            raise ApiError("bad_request", f"form must be one of {list(BLANK_FORMS)}")
        self.blank_enum = form
        return self.respond(200, {"form": form})
