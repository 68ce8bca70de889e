"""The emulator base: a WSGI app over in-memory, persisted collections.

An emulator is a subclass of :class:`Emulator` that declares its routes, its error vocabulary
and its seed data, and implements the resource handlers. The request pipeline (faults, API-key
check, rate limit, routing, error bodies, request log, lost responses) and the ``/_sandbox/*``
control endpoints (request log, faults, reset, raw records, malformed rows) are the same for
every emulated API and live here, once; the pieces they use are in :mod:`sandbox.wire`,
:mod:`sandbox.validation`, :mod:`sandbox.limits`, :mod:`sandbox.faults`, :mod:`sandbox.state`
and :mod:`sandbox.routing`.
"""

from __future__ import annotations

import dataclasses
import hmac
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from werkzeug.wrappers import Request, Response

from sandbox.faults import FAULT_STATUSES, Faults, FaultSettings
from sandbox.limits import RateLimit, RateStatus, RequestLog
from sandbox.routing import CONTROL_ROUTES, Route, Router, drop_connection
from sandbox.state import StateFile
from sandbox.validation import ApiError, etag, if_match_ok, validation_error
from sandbox.wire import MonotonicClock, dumps, format_timestamp, loads, parse_timestamp

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class Row:
    """One stored entity (wire-format dict) with its version, the number its ETag carries."""

    version: int
    entity: dict[str, Any]


class Emulator:
    """Base of every emulator: a thread-safe WSGI app over in-memory, persisted collections.

    A subclass declares:

    * ``system``, ``api_prefix`` (``/api/v1``), ``timestamp_field``, ``key_fields``
      (resource → key field of its entities) and ``singular`` (resource → noun for messages),
    * ``system_rate_limit``: what ``rate_limit: true`` turns on,
    * ``errors``: error kind → ``(status, wire code)``; the kinds used here are
      ``unauthorized``, ``not_found``, ``method_not_allowed``, ``validation_failed``,
      ``precondition_failed``, ``conflict``, ``rate_limited``, ``internal`` and ``unavailable``,
    * ``routes``: its API as :class:`Route` values relative to ``api_prefix``; handlers are
      methods called as ``handler(request, **path_params)`` with the emulator lock held and
      returning a :class:`Response` (or raising :class:`ApiError`),

    and implements :meth:`authenticate`, :meth:`error_body`, :meth:`seed_collections` and
    :meth:`initial_counters` (and, if it has one, :meth:`challenge_headers`).

    One lock (``self.lock``) serialises every handler, so a request sees and leaves the state
    consistent. Faults, latency and the rate limit are applied outside it. A stored entity dict
    is never changed in place: a write stores a new dict (see :meth:`commit`), which is what lets
    the state be serialised outside the lock.
    """

    system: ClassVar[str]
    api_prefix: ClassVar[str]
    timestamp_field: ClassVar[str]
    key_fields: ClassVar[Mapping[str, str]]
    singular: ClassVar[Mapping[str, str]]
    system_rate_limit: ClassVar[RateLimit]
    errors: ClassVar[Mapping[str, tuple[int, str]]]
    routes: ClassVar[tuple[Route, ...]]

    #: State file layout version, checked on load.
    STATE_FORMAT = 1

    def __init__(self, *, api_key: str, seed: int,
                 state_path: os.PathLike[str] | str | None = None,
                 state_flush_s: float = 2.0):
        """``state_flush_s``: how often written state is flushed to ``state_path`` in the
        background (each flush dumps the whole state, so not much more often than this while a
        sync writes; a benchmark over a million rows sets it past its run, so the emulator's
        own JSON dump does not stall the answers it measures; the state is flushed on
        :meth:`close` in any case)."""
        self.api_key = api_key
        self.seed = seed
        self.lock = threading.RLock()
        self.clock = MonotonicClock()
        self.log = RequestLog()
        self.faults = Faults(default_seed=seed)
        self._router = Router(self.routes)
        self._control_router = Router(CONTROL_ROUTES)
        #: ``/_sandbox/malformed-rows``: (match, set, drop) applied to every answer's rows
        self.malformed_rows: list[tuple[dict[str, Any], dict[str, Any], list[str]]] = []
        self.collections: dict[str, dict[str, Row]] = {}
        self.counters: dict[str, int] = {}
        self.idempotency: dict[str, dict[str, dict[str, Any]]] = {}
        self._state = (StateFile(Path(state_path), self._snapshot, state_flush_s)
                       if state_path else None)
        saved = self._state.load() if self._state else None
        if saved is None:
            self._seed()
        else:
            self._restore(saved)

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Start flushing state in the background (no-op without a state file)."""
        if self._state:
            self._state.start()

    def close(self) -> None:
        """Stop the background flush and write the state one last time."""
        if self._state:
            self._state.stop()

    # -- subclass hooks -------------------------------------------------------------------

    def authenticate(self, request: Request) -> bool:
        """Whether the request carries this emulator's API key."""
        raise NotImplementedError

    def rate_key(self, request: Request) -> str:
        """Who a request counts against under the rate limit: the API key, unless the API
        limits each token (or user) on its own."""
        return self.api_key

    def error_body(self, code: str, message: str, details: Sequence[tuple[str, str]]) -> Any:
        """The API's error body for a wire ``code``."""
        raise NotImplementedError

    def seed_collections(self) -> Mapping[str, list[dict[str, Any]]]:
        """The seed entities per resource, complete with timestamps (a function of ``seed``)."""
        raise NotImplementedError

    def initial_counters(self) -> dict[str, int]:
        """Counters of server-assigned keys, derived from the collections just seeded."""
        raise NotImplementedError

    # -- state ----------------------------------------------------------------------------

    def _seed(self) -> None:
        self.collections = {
            resource: {entity[self.key_fields[resource]]: Row(1, entity) for entity in entities}
            for resource, entities in self.seed_collections().items()
        }
        self.counters = self.initial_counters()
        self.idempotency = {}
        self._observe_timestamps()
        self._changed()

    def _restore(self, saved: Mapping[str, Any]) -> None:
        if saved.get("format") != self.STATE_FORMAT or saved.get("system") != self.system:
            raise ValueError(f"not a format-{self.STATE_FORMAT} {self.system} sandbox state file")
        self.collections = {
            resource: {
                row.get("key", row["entity"].get(self.key_fields[resource])):
                    Row(row["version"], row["entity"])
                for row in rows
            }
            for resource, rows in saved["collections"].items()
        }
        self.counters = dict(saved["counters"])
        self.idempotency = {resource: dict(keys) for resource, keys in saved["idempotency"].items()}
        self.clock.observe(parse_timestamp(saved["clock"]))
        self._observe_timestamps()

    def _observe_timestamps(self) -> None:
        for rows in self.collections.values():
            for row in rows.values():
                try:
                    self.clock.observe(parse_timestamp(row.entity.get(self.timestamp_field)))
                except (TypeError, ValueError):
                    pass  # a raw record's missing or broken timestamp (/_sandbox/raw)

    def _snapshot(self) -> dict[str, Any]:
        """The persistent state; taken under the lock, serialised by the caller outside it."""
        with self.lock:
            self._expire_idempotency_keys()
            return {
                "format": self.STATE_FORMAT,
                "system": self.system,
                "seed": self.seed,
                "clock": format_timestamp(self.clock.last),
                "counters": dict(self.counters),
                "collections": {
                    resource: [{"key": key, "version": row.version, "entity": row.entity}
                               for key, row in rows.items()]
                    for resource, rows in self.collections.items()
                },
                "idempotency": {resource: dict(keys) for resource,
                                keys in self.idempotency.items()},
            }

    def _changed(self) -> None:
        if self._state:
            self._state.mark_dirty()

    def commit(self, resource: str, key: str, entity: dict[str, Any]) -> Row:
        """Store a created or changed entity: next version, next timestamp, state marked dirty.

        ``entity`` must be a new dict (never the stored one changed in place).
        """
        previous = self.collections[resource].get(key)
        entity[self.timestamp_field] = format_timestamp(self.clock.tick())
        row = Row(previous.version + 1 if previous else 1, entity)
        self.collections[resource][key] = row
        self._changed()
        return row

    def row(self, resource: str, key: str) -> Row:
        """The stored row, or ``not_found``."""
        row = self.collections[resource].get(key)
        if row is None:
            raise ApiError("not_found", f"no {self.singular[resource]} {key}")
        return row

    def check_if_match(self, resource: str, key: str, row: Row, header: str | None) -> None:
        """Raise ``precondition_failed`` unless ``header`` (an ``If-Match`` value) matches."""
        if not if_match_ok(header, row.version):
            raise ApiError(
                "precondition_failed",
                f"{self.singular[resource]} {key} is at version {etag(row.version)}; "
                "If-Match does not match",
            )

    def remove(self, resource: str, key: str) -> None:
        del self.collections[resource][key]
        self._changed()

    def ordered_rows(
        self, resource: str, since: str | None = None, after: tuple[str, str] | None = None
    ) -> list[Row]:
        """Rows ordered by (timestamp, key), from ``since`` (inclusive) and after ``after``."""
        return [row for _, row in self.keyed_rows(resource, since, after)]

    def keyed_rows(
        self, resource: str, since: str | None = None, after: tuple[str, str] | None = None
    ) -> list[tuple[tuple[str, str], Row]]:
        """:meth:`ordered_rows` with each row's (timestamp, key): where a page after it starts."""
        # Rows stored through /_sandbox/raw may lack a timestamp (or hold one that is not
        # text): they sort first and only a full read (no ``since``) returns them.
        ts_field = self.timestamp_field
        keyed = []
        for key, row in self.collections[resource].items():
            stamp = row.entity.get(ts_field)
            sort_key = (stamp if isinstance(stamp, str) else "", key)
            if (since is None or sort_key[0] >= since) and (after is None or sort_key > after):
                keyed.append((sort_key, row))
        keyed.sort(key=lambda item: item[0])
        return keyed

    # Idempotency keys: resource → key → {"id": entity key, "at": epoch seconds}. Kept 24 hours.

    IDEMPOTENCY_TTL_S = 24 * 3600

    def remembered(self, resource: str, idempotency_key: str) -> str | None:
        """The entity key a create with this idempotency key made, if within the TTL."""
        entry = self.idempotency.get(resource, {}).get(idempotency_key)
        if entry is None or time.time() - entry["at"] > self.IDEMPOTENCY_TTL_S:
            return None
        return entry["id"]

    def remember(self, resource: str, idempotency_key: str, key: str) -> None:
        self.idempotency.setdefault(resource, {})[idempotency_key] = {
            "id": key,
            "at": int(time.time()),
        }
        self._changed()

    def _expire_idempotency_keys(self) -> None:
        horizon = time.time() - self.IDEMPOTENCY_TTL_S
        for keys in self.idempotency.values():
            for stale in [key for key, entry in keys.items() if entry["at"] < horizon]:
                del keys[stale]

    # -- responses ------------------------------------------------------------------------

    def respond(
        self, status: int, body: Any = None, headers: Mapping[str, str] | None = None
    ) -> Response:
        if status == 204:
            return Response(status=204, headers=dict(headers or {}))
        return Response(
            dumps(body),
            status=status,
            headers=dict(headers or {}),
            content_type="application/json; charset=utf-8",
        )

    def entity_response(
        self, status: int, row: Row, headers: Mapping[str, str] | None = None
    ) -> Response:
        return self.respond(status, row.entity, {"ETag": etag(row.version), **(headers or {})})

    def error_status(self, error: ApiError) -> int:
        return error.status or self.errors[error.kind][0]

    def error_payload(self, error: ApiError) -> Any:
        return self.error_body(self.errors[error.kind][1], error.message, error.details)

    def error_response(self, error: ApiError) -> Response:
        return self.respond(self.error_status(error), self.error_payload(error), error.headers)

    @staticmethod
    def json_body(request: Request) -> dict[str, Any]:
        """The request body as a JSON object, or ``validation_failed``."""
        try:
            body = loads(request.get_data())
        except ValueError:
            raise validation_error([("", "request body is not valid JSON")]) from None
        if not isinstance(body, dict):
            raise validation_error([("", "request body must be a JSON object")])
        return body

    # -- the WSGI pipeline ----------------------------------------------------------------

    def __call__(self, environ: dict[str, Any], start_response: Callable[...,
                                                                         Any]) -> Iterable[bytes]:
        request = Request(environ)
        if request.path.startswith("/_sandbox/"):
            return self._control(request)(environ, start_response)
        response, lost = self._serve(request)
        corruption = self.faults.settings.corruption(request.method, request.path)
        if corruption is not None:
            response = corruption.apply(response)
        elif self.malformed_rows and response.mimetype == "application/json":
            response = self._malform_rows(response)
        self.log.record(request.method, request.path, response.status_code, lost=lost)
        if lost:
            drop_connection(environ)
        return response(environ, start_response)

    def _serve(self, request: Request) -> tuple[Response, bool]:
        """Apply faults, auth and the rate limit, then the handler. Returns the response and
        whether it is to be lost."""
        verdict = self.faults.judge(request.method)
        if verdict.latency_s:
            time.sleep(verdict.latency_s)
        if verdict.fail_status is not None:  # fails before anything is done, and is not also lost
            status = verdict.fail_status
            error = ApiError(
                FAULT_STATUSES[status],
                f"sandbox fault: injected {status}",
                status=status,
                headers={"Retry-After": "1"} if status == 429 else None,
            )
            return self.error_response(error), False
        rate: RateStatus | None = None
        try:
            if not self.authenticate(request):
                raise ApiError("unauthorized", "missing or invalid API key")
            rate = self.faults.admit(self.rate_key(request), request.method)
            if rate is not None and not rate.allowed:
                raise ApiError(
                    "rate_limited",
                    f"rate limit of {rate.limit} requests exceeded; retry later",
                )
            response = self._dispatch(request)
        except ApiError as error:
            response = self.error_response(error)
        except Exception:
            logger.exception("%s: unhandled error in %s %s", self.system, request.method,
                             request.path)
            response = self.error_response(ApiError("internal", "unexpected server error"))
        if rate is not None:
            response.headers.update(rate.headers())
        if response.status_code == 401:
            response.headers.update(self.challenge_headers())
        return response, verdict.lose_response

    def challenge_headers(self) -> Mapping[str, str]:
        """Headers added to every 401 (e.g. ``WWW-Authenticate``)."""
        return {}

    def _dispatch(self, request: Request) -> Response:
        path = request.path
        if not (path == self.api_prefix or path.startswith(self.api_prefix + "/")):
            raise ApiError("not_found", f"no such endpoint: {path}")
        route, params = self._router.match(request.method, path[len(self.api_prefix):] or "/")
        with self.lock:
            return getattr(self, route.handler)(request, **params)

    # -- control endpoints (never faulted, rate limited, logged or authenticated) ----------

    def _control(self, request: Request) -> Response:
        try:
            route, params = self._control_router.match(request.method, request.path)
            return getattr(self, route.handler)(request, **params)
        except ApiError as error:
            return self.error_response(error)

    def control_requests(self, request: Request) -> Response:
        return self.respond(200, self.log.to_json())

    def control_clear_requests(self, request: Request) -> Response:
        self.log.clear()
        return self.respond(204)

    def control_faults(self, request: Request) -> Response:
        return self.respond(200, self.faults.settings.to_json())

    def control_set_faults(self, request: Request) -> Response:
        try:
            body = loads(request.get_data() or b"{}")
        except ValueError:
            raise validation_error([("", "request body is not valid JSON")]) from None
        settings = FaultSettings.parse(body, self.system_rate_limit)
        self.faults.configure(settings)
        return self.respond(200, settings.to_json())

    def control_reset(self, request: Request) -> Response:
        with self.lock:
            self._seed()
            counts = {resource: len(rows) for resource, rows in self.collections.items()}
        self.log.clear()
        self.faults.configure(FaultSettings())
        return self.respond(200, {"reset": True, "counts": counts})


    def control_raw(self, request: Request, resource: str) -> Response:
        """Store records exactly as given, without the API's validation: data the system holds
        although its own API would refuse it (imports, old versions, direct database edits).

        The body is a JSON array of objects. A record is stored under its key field when that
        is non-empty text, else under a generated ``raw-N`` key; its timestamp is kept as
        given (parseable ones move the emulator's clock past them).
        """
        if resource not in self.key_fields:
            raise ApiError("not_found", f"no resource {resource}")
        try:
            records = loads(request.get_data())
        except ValueError:
            raise validation_error([("", "request body is not valid JSON")]) from None
        if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
            raise validation_error([("", "request body must be a JSON array of objects")])
        keys = []
        with self.lock:
            rows = self.collections[resource]
            for record in records:
                key = record.get(self.key_fields[resource])
                if not isinstance(key, str) or not key:
                    key = f"raw-{len(rows) + 1}"
                    while key in rows:
                        key += "+"
                previous = rows.get(key)
                rows[key] = Row(previous.version + 1 if previous else 1, dict(record))
                keys.append(key)
            self._observe_timestamps()
            self._changed()
        return self.respond(200, {"stored": keys})

    def control_malformed_rows(self, request: Request) -> Response:
        """Serve some rows malformed, as the API's own validation would never let them be
        stored (tests of a connector's row reader). The body is a JSON array of rules
        ``{"match": {...}, "set": {...}, "drop": [...]}``: in every JSON answer of the API, each
        object holding all of ``match``'s members gets ``set``'s members (any JSON value) and
        loses ``drop``'s. An empty array turns it off."""
        try:
            rules = loads(request.get_data() or b"[]")
        except ValueError:
            raise validation_error([("", "request body is not valid JSON")]) from None
        if not isinstance(rules, list) or not all(
                isinstance(r, dict) and isinstance(r.get("match"), dict) and r["match"]
                and isinstance(r.get("set", {}), dict) and isinstance(r.get("drop", []), list)
                for r in rules):
            raise validation_error([("", 'the body is [{"match": {...}, "set": {...}, '
                                         '"drop": [...]}, ...]')])
        self.malformed_rows = [(r["match"], r.get("set", {}), r.get("drop", [])) for r in rules]
        return self.respond(200, {"rules": len(self.malformed_rows)})

    def _malform_rows(self, response: Response) -> Response:
        def walk(value: Any) -> Any:
            if isinstance(value, list):
                return [walk(item) for item in value]
            if not isinstance(value, dict):
                return value
            value = {key: walk(item) for key, item in value.items()}
            for match, changes, drop in self.malformed_rows:
                if all(value.get(key) == want for key, want in match.items()):
                    value = {k: v for k, v in value.items() if k not in drop}
                    value.update(changes)
            return value
        try:
            body = loads(response.get_data())
        except ValueError:
            return response
        headers = {k: v for k, v in response.headers.items() if k.lower() != "content-length"}
        return Response(dumps(walk(body)), status=response.status_code, headers=headers)


def constant_time_equal(presented: str | None, expected: str) -> bool:
    """Compare a presented secret in constant time (no timing hint of how much matched)."""
    return presented is not None and hmac.compare_digest(presented.encode(), expected.encode())
