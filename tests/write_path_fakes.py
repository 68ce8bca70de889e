"""Fakes for the write path's fast unit tests (and its mutation testing, docs/testing.md).

:class:`FakeHttp` answers every HTTP request of the process (``requests.Session.get_adapter``
is replaced for the test), so a connector's write encoding is checked on the requests it
really sends, without a server or a thread. :func:`recording_context` is a
:class:`~transforms.common.PairContext` whose counters are kept in a dict the test reads.
"""

from __future__ import annotations

import collections
import dataclasses
import decimal
import json
import urllib.parse
from collections.abc import Callable
from typing import Any

import requests
import requests.adapters

from connectors.wire import dumps_json
from core.model import SystemConfig
from core.spec import get_dataflow
from transforms.common import PairContext


@dataclasses.dataclass
class Sent:
    """One request as the fake server received it."""

    method: str
    url: str
    headers: dict[str, str]
    body: Any

    @property
    def path(self) -> str:
        return urllib.parse.urlsplit(self.url).path

    @property
    def query(self) -> dict[str, str]:
        return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.url).query))


#: what a handler returns: (status, JSON body) or (status, JSON body, headers)
Answer = tuple


class FakeHttp(requests.adapters.BaseAdapter):
    """Answers each request with ``handler(sent)``; keeps every request in :attr:`sent`."""

    def __init__(self, handler: Callable[[Sent], Answer]):
        super().__init__()
        self.handler = handler
        self.sent: list[Sent] = []

    def send(self, request, **kwargs):
        body = request.body
        if isinstance(body, bytes):
            body = body.decode("utf-8")
        content_type = request.headers.get("Content-Type", "")
        if body and "json" in content_type:
            body = json.loads(body, parse_float=decimal.Decimal)
        elif body and "form" in content_type:
            body = dict(urllib.parse.parse_qsl(body))
        sent = Sent(request.method, request.url, dict(request.headers), body)
        self.sent.append(sent)
        status, payload, *rest = self.handler(sent)
        response = requests.Response()
        response.status_code = status
        response.headers.update({"Content-Type": "application/json", **(rest[0] if rest else {})})
        response._content = b"" if payload is None else dumps_json(payload).encode("utf-8")
        response.request = request
        response.url = request.url
        return response

    def close(self):
        pass

    def not_tokens(self) -> list[Sent]:
        """The requests other than token requests."""
        return [s for s in self.sent if "token" not in s.path]


def fake_http(monkeypatch, handler: Callable[[Sent], Answer]) -> FakeHttp:
    """Every HTTP request of the test answered by ``handler``."""
    fake = FakeHttp(handler)
    monkeypatch.setattr(requests.Session, "get_adapter", lambda self, url: fake)
    return fake


class CounterBook(collections.Counter):
    """The counters a :class:`RecordingContext` incremented, by name."""


class _Counter:
    def __init__(self, book: CounterBook, name: str):
        self._book, self._name = book, name

    def inc(self, n: int = 1) -> None:
        self._book[self._name] += n


@dataclasses.dataclass(frozen=True)
class RecordingContext(PairContext):
    """A pair context whose counters land in :attr:`counters` (no Beam metrics container)."""

    counters: CounterBook = dataclasses.field(default_factory=CounterBook)

    def counter(self, name: str):
        return _Counter(self.counters, name)


def recording_context(tmp_path, dataflow: str = "customerp-customwebshop",
                      run_id: str = "run-1") -> RecordingContext:
    """The first pair of ``dataflow`` between two systems that are never called, its link
    store a SQLite file in ``tmp_path``."""
    spec = get_dataflow(dataflow)
    return RecordingContext(
        dataflow=spec.name, pair=spec.pairs[0],
        source_system=SystemConfig("erp", "customerp", "http://erp.invalid"),
        target_system=SystemConfig("shop", "customwebshop", "http://shop.invalid"),
        link_store=f"sqlite:///{tmp_path}/links.db", run_id=run_id)
