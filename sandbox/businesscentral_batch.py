"""Business Central's JSON ``$batch`` for :mod:`sandbox.businesscentral`: up to 100 requests, each
answered on its own; ``dependsOn`` (a request after a failed one is not run: 424); and
``Isolation: snapshot``, under which a batch with a failed request leaves nothing changed
(MS Learn, "Using OData transactional $batch requests":
https://learn.microsoft.com/en-us/dynamics365/business-central/dev-itpro/webservices/use-odata-batch).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request, Response

from sandbox.businesscentral_query import NO_OPTIONS, check_headers, check_options, not_emulated
from sandbox.emulator import Row
from sandbox.validation import ApiError
from sandbox.wire import dumps, loads

#: the most requests in one ``$batch``
MAX_BATCH_REQUESTS = 100


class BatchMixin:
    """``POST /$batch`` for the emulator class it is mixed into."""

    api_prefix: str
    collections: dict[str, dict[str, Row]]
    counters: dict[str, int]

    def batch(self, request: Request) -> Response:
        """JSON ``$batch``: each request runs as if sent alone and is answered on its own; with
        ``Isolation: snapshot`` a failure anywhere rolls every change of the batch back."""
        check_options(request, NO_OPTIONS)
        if request.mimetype.startswith("multipart/"):
            raise not_emulated("A multipart/mixed $batch (the JSON format is)")
        body = self.json_body(request)  # type: ignore[attr-defined]
        requests = body.get("requests")
        if not isinstance(requests, list):
            raise ApiError("bad_request", "The batch request body must have a 'requests' array.")
        if len(requests) > MAX_BATCH_REQUESTS:
            raise ApiError("bad_request", f"The batch has {len(requests)} operations; the maximum "
                                          f"is {MAX_BATCH_REQUESTS}.")
        if any(isinstance(item, dict) and "atomicityGroup" in item for item in requests):
            raise not_emulated("atomicityGroup in a $batch")
        snapshot = request.headers.get("Isolation", "").lower() == "snapshot"
        saved = ({name: dict(rows) for name, rows in self.collections.items()},
                 dict(self.counters)) if snapshot else None
        statuses: dict[str, int] = {}
        responses = []
        for item in requests:
            response = self._batch_one(request, item, statuses)
            if response["id"] is not None:
                statuses[str(response["id"])] = response["status"]
            responses.append(response)
        if saved is not None and any(r["status"] >= 400 for r in responses):
            self.collections, self.counters = saved
            self._changed()  # type: ignore[attr-defined]
        return self.respond(200, {"responses": responses},  # type: ignore[attr-defined]
                            {"OData-Version": "4.0"})

    def _batch_one(self, outer: Request, item: Any, statuses: Mapping[str, int]) -> dict[str, Any]:
        """One request of a batch; one that ``dependsOn`` a failed request is not run (424)."""
        ident = item.get("id") if isinstance(item, dict) else None
        depends = item.get("dependsOn") or [] if isinstance(item, dict) else []
        failed = [d for d in depends if not 200 <= statuses.get(str(d), 0) < 300]
        if failed:
            error = ApiError("failed_dependency", f"The request depends on request "
                                                  f"'{failed[0]}', which failed or was not found.")
            return {"id": ident, "status": 424, "headers": {},
                    "body": self.error_payload(error)}  # type: ignore[attr-defined]
        try:
            inner = self._inner_request(outer, item)
            if not inner.path.startswith(self.api_prefix) or inner.path.rstrip("/").endswith(
                    "/$batch"):
                raise ApiError("bad_request", f"The batch request URL '{item.get('url')}' is not "
                                              "a resource of this service.")
            check_headers(inner)
            response = self._route(inner)  # type: ignore[attr-defined]
        except ApiError as error:
            response = self.error_response(error)  # type: ignore[attr-defined]
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
        split = urlsplit(item["url"])
        path = split.path if split.scheme else self.api_prefix + "/" + split.path.lstrip("/")
        headers = {str(k): str(v) for k, v in (item.get("headers") or {}).items()}
        data = dumps(item["body"]).encode() if item.get("body") is not None else None
        builder = EnvironBuilder(path=path, query_string=split.query, method=item["method"].upper(),
                                 headers=headers, data=data, base_url=outer.host_url)
        try:
            return builder.get_request()
        finally:
            builder.close()
