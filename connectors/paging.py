"""Pluggable paginators: how each system pages a list, apart from what a row means.

A connector declares its :class:`Paginator` and the request of the first page
(:class:`PageRequest`); the one row reader (:meth:`connectors.http.HttpConnector._read_rows`)
walks the pages and turns each row into a :class:`~core.model.Record`, or, when the row is not
one, into an :class:`~core.model.UnreadableRecord` (a dead letter), so one bad row never fails
the read in any connector. A page that cannot be read at all (not an object, its rows not a
list) fails the read as :class:`~connectors.errors.TransientApiError`, worded by the
:class:`PageSource`.

The paginators of the five systems:

* :class:`PageToken`: an opaque token in the answer, sent back as a query parameter (the
  custom webshop's ``next_page_token``);
* :class:`KeysetOffset`: ``offset``/``limit`` paging made stable by a timestamp keyset (the
  custom ERP, whose offsets shift while rows change);
* :class:`NextLink`: a link to the next page in the answer: OData v4's ``@odata.nextLink``
  (Business Central, :data:`ODATA_NEXT_LINK`) and OData v2's ``d.__next`` (Exact Online,
  :data:`EXACT_NEXT`);
* :class:`GraphQLCursor`: Relay-style ``first``/``after`` cursors with ``pageInfo``
  (Business NXT).
"""

from __future__ import annotations

import abc
import dataclasses
import datetime
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Protocol

from connectors.errors import ApiError
from connectors.rows import value_kind
from connectors.wire import format_timestamp


@dataclasses.dataclass(frozen=True)
class PageRequest:
    """The request of one page: ``method path`` relative to the system's base URL, with its
    query ``params``, extra ``headers`` and JSON body (a GraphQL query). A read changes
    nothing, so it is ``idempotent`` (asked again after a failure) even as a ``POST``."""

    path: str
    params: Mapping[str, Any] | None = None
    method: str = "GET"
    headers: Mapping[str, str] | None = None
    json: Any = None
    idempotent: bool = True

    def with_params(self, **params: Any) -> PageRequest:
        """This request with ``params`` added to (or replacing) its query parameters."""
        return dataclasses.replace(self, params={**(self.params or {}), **params})


class PageSource(Protocol):
    """What a paginator needs of its connector: pages fetched, bad pages worded, next-page
    links checked (:class:`~connectors.http.HttpConnector` is one)."""

    def fetch_page(self, request: PageRequest) -> Any:
        """The decoded answer to ``request`` (an :class:`ApiError` when it failed)."""

    def malformed_page(self, request: PageRequest, problem: str, page: Any) -> ApiError:
        """The error for a page that is not what the API promises (``problem`` says why)."""

    def relative_link(self, link: str) -> str:
        """A next-page link as a path under the base URL (a link elsewhere is refused)."""


class Paginator(abc.ABC):
    """How a system pages a list: from the first page's request, the rows of every page."""

    @abc.abstractmethod
    def pages(self, source: PageSource, first: PageRequest) -> Iterator[list[Any]]:
        """The rows of each page, in order, fetched through ``source``."""


def member(page: Any, path: Sequence[str]) -> Any:
    """The value at ``path`` in nested objects (None where one is missing)."""
    for name in path:
        if not isinstance(page, Mapping):
            return None
        page = page.get(name)
    return page


def page_rows(source: PageSource, request: PageRequest, page: Any,
              path: Sequence[str]) -> list[Any]:
    """The rows of ``page``, the list at ``path``, or the error naming what is wrong: a page
    that cannot be read fails the read, not one row."""
    if not isinstance(page, Mapping):
        raise source.malformed_page(request, f"{value_kind(page)} instead of a page object",
                                    page)
    rows = member(page, path)
    if not isinstance(rows, list):
        name = ".".join(path)
        problem = (f"a page without its {name!r} list" if rows is None else
                   f"a page whose {name!r} is {value_kind(rows)}, not a list")
        raise source.malformed_page(request, problem, page)
    return rows


@dataclasses.dataclass(frozen=True)
class PageToken(Paginator):
    """The answer's ``token`` member, sent back as the ``param`` query parameter, until the
    answer has none."""

    rows: str = "data"
    token: str = "next_page_token"
    param: str = "page_token"

    def pages(self, source: PageSource, first: PageRequest) -> Iterator[list[Any]]:
        request = first
        while True:
            page = source.fetch_page(request)
            yield page_rows(source, request, page, (self.rows,))
            token = page.get(self.token)
            if not token:
                return
            request = request.with_params(**{self.param: token})


@dataclasses.dataclass(frozen=True)
class NextLink(Paginator):
    """The rows at ``rows``, and the next page at the link at ``link`` (under the base URL; the
    first request's headers are sent with every page, its query is the link's)."""

    rows: tuple[str, ...]
    link: tuple[str, ...]

    def pages(self, source: PageSource, first: PageRequest) -> Iterator[list[Any]]:
        request = first
        while True:
            page = source.fetch_page(request)
            yield page_rows(source, request, page, self.rows)
            link = member(page, self.link)
            if not link:
                return
            if not isinstance(link, str):
                raise source.malformed_page(request, f"a next link that is {value_kind(link)}",
                                            page)
            request = dataclasses.replace(request, path=source.relative_link(link), params=None)


#: OData v4 (Business Central): ``{"value": [...], "@odata.nextLink": "…"}``
ODATA_NEXT_LINK = NextLink(("value",), ("@odata.nextLink",))
#: OData v2 as Exact Online answers it: ``{"d": {"results": [...], "__next": "…"}}``
EXACT_NEXT = NextLink(("d", "results"), ("d", "__next"))


@dataclasses.dataclass(frozen=True)
class GraphQLCursor(Paginator):
    """Relay-style cursors: the request's JSON body is a GraphQL query whose ``$after``
    variable is set to the connection's ``pageInfo.endCursor`` until ``hasNextPage`` is
    false; ``connection`` is the path from the answer to the connection object (``data``,
    ``useCompany``, the table)."""

    connection: tuple[str, ...]

    def pages(self, source: PageSource, first: PageRequest) -> Iterator[list[Any]]:
        request = first
        while True:
            page = source.fetch_page(request)
            connection = member(page, self.connection)
            yield page_rows(source, request, connection, ("items",))
            info = member(connection, ("pageInfo",))
            if not isinstance(info, Mapping):
                raise source.malformed_page(request, "a connection without its pageInfo", page)
            if not info.get("hasNextPage"):
                return
            body = dict(request.json)
            body["variables"] = {**body.get("variables", {}), "after": info.get("endCursor")}
            request = dataclasses.replace(request, json=body)


#: where a row stands in a keyset: (its modified time, its key), or None for a row that has
#: no usable one (an unreadable row)
Position = Callable[[Any], "tuple[datetime.datetime, str] | None"]


@dataclasses.dataclass(frozen=True)
class KeysetOffset(Paginator):
    """``offset``/``limit`` paging from the last modified time seen (a timestamp keyset).

    Offset paging skips or repeats rows when rows change during the read, so each page starts
    at the last modified time seen (the cursor, sent as ``since_param``) and skips the rows
    already seen with exactly that time, less one: that overlapping row must come back first.
    If it does not, a row at the cursor changed meanwhile (it moved to the end), the offset no
    longer lines up, and the page is read again from the cursor without a skip. A short page
    is the last. A row without a ``position`` leaves the cursor as it is. The first request
    carries ``limit_param`` (the page size) and, for an incremental read, ``since_param``.
    """

    rows: str
    position: Position
    since_param: str
    offset_param: str = "offset"
    limit_param: str = "limit"

    def pages(self, source: PageSource, first: PageRequest) -> Iterator[list[Any]]:
        page_size = int((first.params or {})[self.limit_param])
        since = (first.params or {}).get(self.since_param)
        cursor: Any = since
        at_cursor = 0
        last_id: str | None = None
        while True:
            overlap = 1 if at_cursor else 0
            rows = self._page(source, first, cursor, at_cursor - overlap)
            expected: tuple[Any, str | None] = (cursor, last_id)
            if overlap and (not rows or self.position(rows[0]) != expected):
                rows = self._page(source, first, cursor, 0)
                overlap = at_cursor = 0
            for row in rows[overlap:]:
                position = self.position(row)
                if position is not None:
                    modified, last_id = position
                    if modified == cursor:
                        at_cursor += 1
                    else:
                        cursor, at_cursor = modified, 1
            yield rows[overlap:]
            if len(rows) < page_size:
                return

    def _page(self, source: PageSource, first: PageRequest, cursor: Any,
              offset: int) -> list[Any]:
        params: dict[str, Any] = {self.offset_param: offset}
        if isinstance(cursor, datetime.datetime):
            params[self.since_param] = format_timestamp(cursor)
        request = first.with_params(**params)
        return page_rows(source, request, source.fetch_page(request), (self.rows,))
