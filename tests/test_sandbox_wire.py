"""The emulators' JSON (sandbox/wire.py): decimals exact both ways, the standard library's C
encoder for the rest, and the walk in Python where the C encoder cannot take a value."""

from __future__ import annotations

import types
from decimal import Decimal

import pytest

from sandbox import wire

VALUES = [
    {"price": Decimal("199.50"), "rate": Decimal("-0.0001"), "thousand": Decimal("1E+3"),
     "big": Decimal("12345678901234567890.123456789"),
     "rest": [1, 2.5, None, True, False, "quote \" backslash \\ æ"]},
    {"text": "\ue000123\ue000", "price": Decimal("1.10")},    # a string holding the mark
    {"text": 'x"\ue0001\ue000"', "price": Decimal("2")},       # and across an escaped quote
    types.MappingProxyType({"price": Decimal("2.00")}),      # not a dict
    {1: "a key that is a number", "pair": (1, 2)},
    [], {}, "text", Decimal("5"), 7,
]


@pytest.mark.parametrize("value", VALUES)
def test_the_fast_encoder_writes_what_the_walk_writes(value):
    assert wire.dumps(value) == wire._dumps_walking(value)


def test_decimals_are_written_as_the_exact_numbers_they_hold_and_read_back_exactly():
    text = wire.dumps({"price": Decimal("199.50"), "lines": [Decimal("0.1"), 3]})
    assert text == '{"price":199.50,"lines":[0.1,3]}'
    assert wire.loads(text) == {"price": Decimal("199.50"), "lines": [Decimal("0.1"), 3]}


def test_a_string_holding_the_mark_is_kept_as_it_was():
    text = wire.dumps({"text": "\ue000123\ue000", "price": Decimal("1.10")})
    assert wire.loads(text) == {"text": "\ue000123\ue000", "price": Decimal("1.10")}


@pytest.mark.parametrize("value", [float("nan"), Decimal("NaN"), Decimal("-Infinity")])
def test_what_json_cannot_hold_is_refused(value):
    with pytest.raises(ValueError):
        wire.dumps({"number": value})


def test_a_value_of_another_type_is_refused_by_name():
    with pytest.raises(TypeError, match="cannot serialise object as JSON"):
        wire.dumps({"x": object()})
