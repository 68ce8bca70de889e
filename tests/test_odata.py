"""The shared OData literals and ``$filter`` clauses (connectors/odata.py) Business Central and
Exact Online build their filters and keys with: a value never becomes filter syntax."""

from __future__ import annotations

import datetime

import pytest

from connectors import odata

GUID = "3fa85f64-5717-4562-b3fc-2c963f66afa6"


def test_text_literals_double_their_single_quotes():
    assert odata.string("O'Brien & Co") == "'O''Brien & Co'"
    assert odata.string("'") == "''''"
    assert odata.eq("name", odata.string("x' or 1 eq 1 or 'y")) == \
        "name eq 'x'' or 1 eq 1 or ''y'"


def test_guid_literals_in_both_versions_and_only_for_guids():
    assert odata.guid(GUID) == f"guid'{GUID}'"          # OData v2 (Exact)
    assert odata.guid_v4(GUID) == GUID                  # OData v4 (Business Central)
    assert odata.is_guid(GUID.upper()) and not odata.is_guid("nope") and not odata.is_guid(None)
    for bad in ("nope", GUID + "')", f"{GUID} or ID eq {GUID}", ""):
        with pytest.raises(ValueError, match="is not a GUID"):
            odata.guid(bad)
        with pytest.raises(ValueError, match="is not a GUID"):
            odata.guid_v4(bad)


def test_date_time_and_int64_literals():
    moment = datetime.datetime(2026, 1, 5, 11, 0, 0, 500000,
                               tzinfo=datetime.timezone(datetime.timedelta(hours=1)))
    assert odata.datetime_v4(moment) == "2026-01-05T10:00:00.500000Z"
    assert odata.datetime_v2(moment) == "datetime'2026-01-05T10:00:00.500000'"
    assert odata.int64(42) == "42L"
    assert odata.ge("lastModifiedDateTime", odata.datetime_v4(moment)) == \
        "lastModifiedDateTime ge 2026-01-05T10:00:00.500000Z"


def test_clauses_combine_with_or_inside_and():
    ids = odata.any_of("ID", [odata.guid(GUID), odata.guid(GUID.replace("3fa8", "4fa8"))])
    assert ids == f"ID eq guid'{GUID}' or ID eq guid'{GUID.replace('3fa8', '4fa8')}'"
    assert odata.all_of(odata.gt("Timestamp", odata.int64(7)), odata.eq("EntityType", "2")) == \
        "Timestamp gt 7L and EntityType eq 2"
    assert odata.all_of(odata.gt("Timestamp", "7L"), ids) == f"Timestamp gt 7L and ({ids})"
    assert odata.all_of(ids) == ids
