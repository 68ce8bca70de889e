"""Opening a link store by URL.

The factory lives apart from :mod:`connectors.linkstore` (the interface) so that the stores
import the interface and the interface imports no store: no import cycle. The Firestore store
is imported only when asked for, so its Google packages are needed only by runs that use it.
"""

from __future__ import annotations

from connectors.linkstore import LinkStore
from connectors.sqlite_store import SqliteLinkStore


def open_link_store(url: str) -> LinkStore:
    """The link store at ``url``: ``sqlite:///path/to/links.db`` (or ``sqlite:///:memory:``),
    or ``firestore://PROJECT[/DATABASE][?prefix=PREFIX]`` (Cloud Firestore)."""
    return link_store_class(url).from_url(url)


def link_store_class(url: str) -> type[LinkStore]:
    """The class of the store at ``url``, without opening it (e.g. to ask whether workers on
    several machines can share it)."""
    if url.startswith("sqlite://"):
        return SqliteLinkStore
    if url.startswith("firestore://"):
        try:
            from connectors.firestore_store import FirestoreLinkStore
        except ImportError as exc:
            raise ValueError(
                f"link_store: {url!r} needs the google-cloud-firestore package ({exc}); "
                "install the locked versions, which include it: "
                "pip install --require-hashes --no-deps -r requirements.txt") from exc
        return FirestoreLinkStore
    scheme = url.split(":", 1)[0] if ":" in url else url
    raise ValueError(
        f"link_store: unsupported URL scheme {scheme!r} in {url!r}; "
        "use sqlite:///PATH (e.g. sqlite:///.talksync/links.db) or firestore://PROJECT")
