"""Routing: OpenAPI-style route templates, the ``/_sandbox/*`` control routes, and the
dropped connection of a "lost response"."""

from __future__ import annotations

import dataclasses
import re
import socket
from collections.abc import Iterable, Mapping
from typing import Any

from sandbox.validation import ApiError


@dataclasses.dataclass(frozen=True)
class Route:
    """``method`` + OpenAPI-style ``template`` (``/customers/{id}``) → handler method name,
    called with the path parameters and the fixed keyword arguments ``args``."""

    method: str
    template: str
    handler: str
    args: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def pattern(self) -> re.Pattern[str]:
        regex = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(self.template))
        return re.compile(f"^{regex}$")


class Router:
    """Matches a method and path against :class:`Route` templates."""

    def __init__(self, routes: Iterable[Route]) -> None:
        self._routes = [(route, route.pattern()) for route in routes]

    def match(self, method: str, path: str) -> tuple[Route, dict[str, str]]:
        """The route and path parameters; ``not_found`` or ``method_not_allowed`` otherwise."""
        if method == "HEAD":
            method = "GET"
        allowed: list[str] = []
        for route, pattern in self._routes:
            found = pattern.match(path)
            if found is None:
                continue
            if route.method == method:
                return route, {**route.args, **found.groupdict()}
            allowed.append(route.method)
        if allowed:
            raise ApiError(
                "method_not_allowed",
                f"{method} is not allowed on {path}",
                headers={"Allow": ", ".join(allowed)},
            )
        raise ApiError("not_found", f"no such endpoint: {path}")


CONTROL_ROUTES: tuple[Route, ...] = (
    Route("GET", "/_sandbox/requests", "control_requests"),
    Route("DELETE", "/_sandbox/requests", "control_clear_requests"),
    Route("GET", "/_sandbox/faults", "control_faults"),
    Route("POST", "/_sandbox/faults", "control_set_faults"),
    Route("POST", "/_sandbox/reset", "control_reset"),
    Route("POST", "/_sandbox/raw/{resource}", "control_raw"),
    Route("POST", "/_sandbox/malformed-rows", "control_malformed_rows"),
)


class ResponseLost(ConnectionAbortedError):
    """Raised to the WSGI server after a lost response's connection was dropped; the server
    treats it as a connection the client went away from and writes nothing."""


def drop_connection(environ: Mapping[str, Any]) -> None:
    """Close the client's TCP connection without a response, then raise :class:`ResponseLost`."""
    connection: socket.socket | None = environ.get("werkzeug.socket")
    if connection is not None:
        try:
            connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        connection.close()
    raise ResponseLost("sandbox fault: response dropped")
