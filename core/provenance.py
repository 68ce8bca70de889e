"""Edit-time provenance: when and where a person made the edit a value talksync wrote came from.

A value often reaches a system through another one (ERP → webshop → Business Central). The
webshop's modified time then says when talksync copied the value in, not when a person edited
it, and "latest change wins" would compare the wrong times. So every write talksync makes is
remembered per record (:class:`RecordOrigins`, kept in the link store under system, entity and
id, shared by every dataflow on that store): the version the write left the record at, and per
field of that system the :class:`EditOrigin` of the value in it. A later read of the record, in
any dataflow, takes those origins as the values' edit times as long as the record is still at
that version (:meth:`Version.same_as`); once anybody else changed it, the record's own modified
time counts again, as before. docs/decisions/0015-edit-time-provenance.md explains the model.

Pure values and functions: the stores keep them, the transforms look them up, the planner
compares their times.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Mapping
from typing import Any


@dataclasses.dataclass(frozen=True)
class EditOrigin:
    """The edit a value comes from: the system a person made it in, and when."""

    system: str
    at: datetime.datetime

    def to_json(self) -> dict[str, str]:
        return {"system": self.system, "at": self.at.isoformat()}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> EditOrigin:
        return cls(system=str(data["system"]), at=_instant(str(data["at"])))


@dataclasses.dataclass(frozen=True)
class Version:
    """What tells one version of a record from the next: its ETag, else its modified time."""

    etag: str | None = None
    modified: datetime.datetime | None = None

    def same_as(self, other: Version | None) -> bool:
        """Whether ``other`` is this very version. ETags decide when both sides have one (a
        read without ETags falls back to the modified times); with neither, it is not known,
        and an unknown version is never the same (the safe answer: the record's own time)."""
        if other is None:
            return False
        if self.etag and other.etag:
            return self.etag == other.etag
        if self.modified is not None and other.modified is not None:
            return self.modified == other.modified
        return False

    def to_json(self) -> dict[str, str | None]:
        return {"etag": self.etag,
                "modified": self.modified.isoformat() if self.modified else None}

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> Version | None:
        if data is None:
            return None
        modified = data.get("modified")
        return cls(etag=data.get("etag"), modified=_instant(modified) if modified else None)


@dataclasses.dataclass(frozen=True)
class RecordOrigins:
    """What talksync's last write into one record left there, as the link store keeps it.

    ``version`` is the record's version as the system answered the write. ``origins`` maps a
    field of that system (a dotted path, as in the dataflow specs, the same in every dataflow)
    to the edit its value came from. ``others_edited`` is when someone last edited the record's
    other fields before talksync wrote it (None: not known); while the record is at ``version``
    it stands for their edit time instead of the modified time talksync's write gave it.
    """

    system: str
    entity: str
    id: str
    version: Version
    origins: Mapping[str, EditOrigin] = dataclasses.field(default_factory=dict)
    others_edited: datetime.datetime | None = None

    def valid_for(self, read: Version) -> bool:
        """Whether a record read at ``read`` is still as talksync's write left it."""
        return self.version.same_as(read)

    def to_json(self) -> dict[str, Any]:
        return {"version": self.version.to_json(),
                "origins": {path: origin.to_json() for path, origin in self.origins.items()},
                "others_edited": self.others_edited.isoformat() if self.others_edited else None}

    @classmethod
    def from_json(cls, system: str, entity: str, record_id: str,
                  data: Mapping[str, Any]) -> RecordOrigins:
        others = data.get("others_edited")
        return cls(system=system, entity=entity, id=record_id,
                   version=Version.from_json(data["version"]) or Version(),
                   origins={path: EditOrigin.from_json(origin)
                            for path, origin in data.get("origins", {}).items()},
                   others_edited=_instant(others) if others else None)


@dataclasses.dataclass(frozen=True)
class OriginWrite:
    """One successful write to remember: the record's origins as this write leaves them
    (``written.origins``: only the fields it carried) and the version of the record it replaced
    (``replaced``: as talksync read it; None for a create)."""

    written: RecordOrigins
    replaced: Version | None = None

    @property
    def key(self) -> tuple[str, str, str]:
        return self.written.system, self.written.entity, self.written.id


def merged_origins(stored: RecordOrigins | None, write: OriginWrite) -> RecordOrigins:
    """The record's origins after ``write``, given what the store held (``stored``).

    When the write replaced the very version ``stored`` describes, the fields the write did not
    carry keep their origins and ``others_edited``: nobody touched them in between. Otherwise
    someone edited the record after talksync's earlier write, so only this write's fields have
    a known origin, and the other fields were last edited when the replaced version was made.
    """
    new = write.written
    if stored is not None and write.replaced is not None and stored.valid_for(write.replaced):
        return dataclasses.replace(new, origins={**stored.origins, **new.origins},
                                   others_edited=stored.others_edited)
    others = write.replaced.modified if write.replaced is not None else None
    return dataclasses.replace(new, others_edited=others)


def _instant(text: str) -> datetime.datetime:
    moment = datetime.datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=datetime.UTC)
