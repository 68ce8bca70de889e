"""Canonical values (core/types.py): each converter's accepted forms, its refusals and the
reason each refusal gives (the reason is what a dead letter shows the user)."""

import datetime
import time
from decimal import Decimal

import pytest

from core import types

OSLO = datetime.timezone(datetime.timedelta(hours=1))


@pytest.mark.parametrize("type_,wire,canonical", [
    ("string", "abc", "abc"),                     # exactly max_length (3) is allowed
    ("string", 12, "12"),
    ("email", "First@Last@Example.NO", "first@last@example.no"),   # the last @ splits
    ("integer", 7.0, 7),
    ("integer", " 12 ", 12),
    ("decimal", 0.1, Decimal("0.1")),             # the float's shortest repr, not its binary
    ("decimal", " 2.50 ", Decimal("2.50")),
    ("boolean", False, False),
    ("boolean", " FALSE ", False),
    ("boolean", "True", True),
    ("date", "2026-11-21T10:00:00Z", datetime.date(2026, 11, 21)),
    ("date", datetime.datetime(2026, 11, 21, 23, 0), datetime.date(2026, 11, 21)),
    ("date", datetime.date(2026, 11, 21), datetime.date(2026, 11, 21)),
    ("country", " no ", "NO"),
    ("currency", "eur", "EUR"),
    ("reference", " C10001 ", "C10001"),
])
def test_accepted_forms(type_, wire, canonical):
    value = types.to_canonical(type_, wire, 3 if type_ == "string" else None)
    assert value == canonical and type(value) is type(canonical)


@pytest.mark.parametrize("type_,wire,reason", [
    ("money", "1", "no conversion for type 'money'"),
    ("string", True, "expected text, got bool"),
    ("string", {"a": 1}, "expected text, got dict"),
    ("string", "bell\x07", "contains control characters"),
    ("email", "a@b.no@host", "'a@b.no@host' is not an e-mail address"),
    ("email", "ola@localhost", "is not an e-mail address"),
    ("email", "@example.no", "is not an e-mail address"),
    ("email", "ola.example.no", "is not an e-mail address"),
    ("email", "ola nordmann@example.no", "is not an e-mail address"),
    ("integer", True, "expected an integer, got a boolean"),
    ("integer", 2.5, "2.5 is not a whole number"),
    ("integer", Decimal("2.5"), "2.5 is not a whole number"),
    ("integer", "2.5", "'2.5' is not an integer"),
    ("decimal", True, "expected a number, got a boolean"),
    ("decimal", [1], "expected a number, got list"),
    ("decimal", "ten", "'ten' is not a number"),
    ("decimal", "Infinity", "'Infinity' is not a finite number"),
    ("boolean", 1, "1 is not true or false"),
    ("boolean", "yes", "'yes' is not true or false"),
    ("date", "2026-13-01", "'2026-13-01' is not a date"),
    ("datetime", "yesterday", "'yesterday' is not an ISO 8601 timestamp"),
    ("datetime", 1700000000, "1700000000 is not a timestamp"),
    ("country", "NOR", "'NOR' is not an ISO 3166-1 alpha-2 country code"),
    ("currency", "kr", "'kr' is not an ISO 4217 currency code"),
])
def test_refusals_say_why(type_, wire, reason):
    with pytest.raises(types.InvalidValue) as info:
        types.to_canonical(type_, wire)
    assert reason in str(info.value)


def test_max_length_counts_characters_and_refuses_one_more():
    assert types.to_canonical("string", "Østby", 5) == "Østby"
    with pytest.raises(types.InvalidValue, match="6 characters, more than the maximum of 5"):
        types.to_canonical("string", "Østbyø", 5)


def test_datetimes_become_aware_utc():
    parsed = types.parse_datetime("2026-11-21T10:00:00+01:00")
    assert parsed == datetime.datetime(2026, 11, 21, 9, 0, tzinfo=datetime.UTC)
    assert parsed.tzinfo is datetime.UTC
    assert types.parse_datetime("2026-11-21T10:00:00z") == datetime.datetime(
        2026, 11, 21, 10, 0, tzinfo=datetime.UTC)
    aware = datetime.datetime(2026, 11, 21, 10, 0, tzinfo=OSLO)
    assert types.parse_datetime(aware) == aware and types.parse_datetime(aware).tzinfo \
        is datetime.UTC


@pytest.fixture
def oslo_local_time(monkeypatch):
    """The machine's local time zone set to Oslo, so "taken as local" differs from UTC."""
    monkeypatch.setenv("TZ", "Europe/Oslo")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_naive_timestamps_are_utc_not_the_machines_local_time(oslo_local_time):
    expected = datetime.datetime(2026, 11, 21, 10, 0, tzinfo=datetime.UTC)
    assert types.parse_datetime("2026-11-21T10:00:00") == expected
    assert types.parse_datetime(datetime.datetime(2026, 11, 21, 10, 0)) == expected
    assert types.parse_datetime("2026-11-21T11:00:00+01:00").tzinfo is datetime.UTC
    assert types.to_wire(datetime.datetime(2026, 11, 21, 11, 0, tzinfo=OSLO)) == \
        "2026-11-21T10:00:00Z"


def test_to_wire_writes_iso_8601_in_utc_and_leaves_other_values():
    assert types.to_wire(datetime.datetime(2026, 11, 21, 10, 0, 0, 500000,
                                           tzinfo=datetime.UTC)) == "2026-11-21T10:00:00.500000Z"
    assert types.to_wire(datetime.date(2026, 11, 21)) == "2026-11-21"
    assert types.to_wire(Decimal("1.50")) == Decimal("1.50")
    assert types.to_wire("NOK") == "NOK"


@pytest.mark.parametrize("value,empty", [(None, True), ("", True), ((), True), (0, False),
                                         (" ", False), (False, False)])
def test_is_empty(value, empty):
    assert types.is_empty(value) is empty


@pytest.mark.parametrize("type_,wire,message", [
    ("string", "bell\x07", "contains control characters"),
    ("integer", True, "expected an integer, got a boolean"),
    ("decimal", True, "expected a number, got a boolean"),
])
def test_whole_messages(type_, wire, message):
    with pytest.raises(types.InvalidValue) as info:
        types.to_canonical(type_, wire)
    assert str(info.value) == message
