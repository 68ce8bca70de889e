"""Where the Firestore link store keeps what: its URL, and its documents' ids and paths.

The layout is drawn in :mod:`connectors.firestore_store`'s docstring (and
docs/decisions/0005-firestore-link-store.md); this module is the one place that builds it.
"""

from __future__ import annotations

import dataclasses
import re
import urllib.parse

from google.cloud import firestore
from google.cloud.firestore_v1.collection import CollectionReference
from google.cloud.firestore_v1.document import DocumentReference

from core.model import Link

_SCHEME = "firestore://"
_DEFAULT_DATABASE = "(default)"
_DEFAULT_PREFIX = "talksync_"
_PREFIX_PATTERN = re.compile(r"^[A-Za-z0-9_-]{0,64}$")
_DATABASE_PATTERN = re.compile(r"^(\(default\)|[a-z][a-z0-9-]{0,61}[a-z0-9])$")

#: Firestore's limit on the size of a document id
_MAX_ID_BYTES = 1500
#: characters kept as they are in document ids; "|" (the separator), "/" and the rest are
#: percent-encoded, so an id never contains "/" and the parts of an id never run together
_ID_SAFE = ":@"


def doc_id(*parts: str) -> str:
    """A document id made of ``parts``: percent-encoded, joined with ``|``."""
    joined = "|".join(urllib.parse.quote(part, safe=_ID_SAFE) for part in parts)
    if joined.startswith("__") and joined.endswith("__"):
        joined = "%5F" + joined[1:]           # Firestore reserves ids of the form __.*__
    if len(joined.encode("utf-8")) > _MAX_ID_BYTES:
        raise ValueError(f"link store: id too long for a Firestore document id "
                         f"({len(joined)} bytes encoded): {parts[-1][:80]!r}...")
    return joined


def entity_ids(link: Link) -> dict[str, str | None]:
    """The ids a link holds (and claims), by side."""
    return {"source": link.source_id, "target": link.target_id}


@dataclasses.dataclass(frozen=True)
class FirestoreLocation:
    """Where the store lives: a project, a database in it, a prefix for collection names."""

    project: str
    database: str = _DEFAULT_DATABASE
    prefix: str = _DEFAULT_PREFIX

    @classmethod
    def parse(cls, url: str) -> FirestoreLocation:
        """``firestore://PROJECT[/DATABASE][?prefix=PREFIX]``."""
        usage = "expected firestore://PROJECT[/DATABASE][?prefix=PREFIX]"
        if not url.startswith(_SCHEME):
            raise ValueError(f"link_store: {usage}, not {url!r}")
        parts = urllib.parse.urlsplit(url)
        project, database = parts.netloc, parts.path.strip("/") or _DEFAULT_DATABASE
        if not project or "/" in database or parts.fragment:
            raise ValueError(f"link_store: {usage}, not {url!r}")
        if not _DATABASE_PATTERN.match(database):
            raise ValueError(f"link_store: {url!r}: {database!r} is not a Firestore "
                             "database id (lower-case letters, digits and '-')")
        options = urllib.parse.parse_qs(parts.query, keep_blank_values=True)
        unknown = sorted(set(options) - {"prefix"})
        if unknown or any(len(values) > 1 for values in options.values()):
            raise ValueError(f"link_store: {url!r}: the only option is prefix=NAME, "
                             f"given once (found {', '.join(unknown or options)})")
        prefix = options["prefix"][0] if "prefix" in options else _DEFAULT_PREFIX
        if not _PREFIX_PATTERN.match(prefix):
            raise ValueError(f"link_store: {url!r}: prefix {prefix!r} may hold only letters, "
                             "digits, '_' and '-' (at most 64)")
        return cls(project=project, database=database, prefix=prefix)

    @property
    def url(self) -> str:
        database = "" if self.database == _DEFAULT_DATABASE else f"/{self.database}"
        prefix = "" if self.prefix == _DEFAULT_PREFIX else f"?prefix={self.prefix}"
        return f"{_SCHEME}{self.project}{database}{prefix}"


class Layout:
    """The document references of the store: one place that knows the layout."""

    def __init__(self, client: firestore.Client, prefix: str):
        self.links = client.collection(f"{prefix}links")
        self.link_ids = client.collection(f"{prefix}link_ids")
        self.watermarks = client.collection(f"{prefix}watermarks")
        self.dead_letters = client.collection(f"{prefix}dead_letters")
        self.states = client.collection(f"{prefix}state")
        self.record_origins = client.collection(f"{prefix}record_origins")

    def link(self, pair: str, link_id: str) -> DocumentReference:
        return self.links.document(doc_id(pair, link_id))

    def claim(self, pair: str, side: str, entity_id: str) -> DocumentReference:
        return self.link_ids.document(doc_id(pair, side, entity_id))

    def claims(self, link: Link) -> list[DocumentReference]:
        """The claims ``link`` needs: one per side that has an id, source first."""
        return [self.claim(link.pair, side, entity_id)
                for side, entity_id in entity_ids(link).items() if entity_id is not None]

    def watermark(self, dataflow: str, pair: str, system: str) -> DocumentReference:
        return self.watermarks.document(doc_id(dataflow, pair, system))

    def letters_head(self, dataflow: str, pair: str) -> DocumentReference:
        return self.dead_letters.document(doc_id(dataflow, pair))

    def letters(self, dataflow: str, pair: str) -> CollectionReference:
        return self.letters_head(dataflow, pair).collection("letters")

    def state(self, key: str) -> DocumentReference:
        return self.states.document(doc_id(key))

    def origins(self, system: str, entity: str, record_id: str) -> DocumentReference:
        return self.record_origins.document(doc_id(system, entity, record_id))
