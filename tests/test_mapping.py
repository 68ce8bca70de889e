"""Typed mapping in both directions: canonical values, value maps, references, lines, errors."""

import datetime
from decimal import Decimal

import pytest

from core import types
from core.mapping import MappingError, PairMapper
from core.spec import DATAFLOWS_DIR, load_dataflow

SPEC = load_dataflow(DATAFLOWS_DIR / "customerp-customwebshop.yaml")


def _links(pairs):
    """A resolver over fixed id maps: {pair: {source id: target id}}."""
    def resolve(pair, direction, entity_id):
        forward = pairs.get(pair, {})
        if direction == "to_target":
            return forward.get(entity_id)
        return {t: s for s, t in forward.items()}.get(entity_id)
    return resolve


@pytest.mark.parametrize("type_,wire,canonical", [
    ("decimal", "199.00", Decimal("199.00")),
    ("decimal", Decimal("12.5"), Decimal("12.5")),
    ("decimal", 3, Decimal(3)),
    ("integer", Decimal("12"), 12),
    ("integer", "-4", -4),
    ("email", "  Ola.Nordmann@Example.NO ", "ola.nordmann@example.no"),
    ("date", "2026-11-21", datetime.date(2026, 11, 21)),
    ("datetime", "2026-11-21T10:00:00.5Z",
     datetime.datetime(2026, 11, 21, 10, 0, 0, 500000, tzinfo=datetime.UTC)),
    ("country", "no", "NO"),
    ("currency", "nok", "NOK"),
    ("boolean", "true", True),
    ("string", "Ærlig Østby 🙂", "Ærlig Østby 🙂"),
    ("string", "", None),
])
def test_to_canonical(type_, wire, canonical):
    assert types.to_canonical(type_, wire) == canonical


@pytest.mark.parametrize("type_,wire,reason", [
    ("decimal", "12,50", "is not a number"),
    ("decimal", "NaN", "not a finite number"),
    ("integer", Decimal("2.5"), "not a whole number"),
    ("integer", True, "boolean"),
    ("email", "not-an-address", "is not an e-mail address"),
    ("date", "21.11.2026", "is not a date"),
    ("country", "NOR", "ISO 3166-1"),
    ("string", "bell\x07", "control characters"),
    ("string", {"a": 1}, "expected text"),
])
def test_invalid_values_say_why(type_, wire, reason):
    with pytest.raises(types.InvalidValue, match=reason):
        types.to_canonical(type_, wire)


def test_max_length_is_enforced():
    with pytest.raises(types.InvalidValue, match="more than the maximum of 3"):
        types.to_canonical("string", "abcd", 3)


def test_customer_maps_both_ways_with_nested_address():
    mapper = PairMapper(SPEC.pair("customer"))
    erp = {"CustomerNo": "C10001", "Name": "Fjord Sjømat AS", "OrgNo": "912345678",
           "Email": "Post@Fjordsjomat.no", "Phone": "+47 55 12 34 56", "Street": "Bryggen 3",
           "Street2": "", "ZipCode": "5003", "City": "Bergen", "CountryCode": "NO"}
    view = mapper.source_view(erp, _links({}))
    assert view == {"email": "post@fjordsjomat.no", "company_name": "Fjord Sjømat AS",
                    "vat_number": "912345678", "phone": "+47 55 12 34 56",
                    "address.line1": "Bryggen 3", "address.line2": None,
                    "address.postal_code": "5003", "address.city": "Bergen",
                    "address.country": "NO"}
    assert mapper.target_fields(view)["address"] == {
        "line1": "Bryggen 3", "line2": None, "postal_code": "5003", "city": "Bergen",
        "country": "NO"}
    assert mapper.source_fields({"address.city": "Oslo", "phone": "1"}, _links({})) == {
        "City": "Oslo", "Phone": "1"}


def test_person_without_company_is_named_by_first_and_last_name():
    mapper = PairMapper(SPEC.pair("customer"))
    view = mapper.target_view({"email": "kari@example.no", "first_name": "Kari",
                               "last_name": "Nordmann", "company_name": None, "address": {}})
    assert view["company_name"] == "Kari Nordmann"


def test_value_maps_translate_both_ways_and_refuse_unknowns():
    mapper = PairMapper(SPEC.pair("product"))
    erp = {"ItemNo": "IT-1", "Description": "Kaffe", "SalesPrice": Decimal("10"),
           "VatCode": "33"}
    view = mapper.source_view(erp, _links({}))
    assert view["vat_rate"] == Decimal("12")
    assert mapper.source_fields({"vat_rate": Decimal("15.0")}, _links({})) == {"VatCode": "31"}
    with pytest.raises(MappingError, match=r"vat_rate \(VatCode\): Decimal\('8'\) has no "
                                           r"Product equivalent"):
        mapper.source_fields({"vat_rate": Decimal("8")}, _links({}))
    with pytest.raises(MappingError, match=r"'99' has no mapping"):
        mapper.source_view({**erp, "VatCode": "99"}, _links({}))


def test_order_references_and_lines_translate_through_links():
    mapper = PairMapper(SPEC.pair("order"))
    resolve = _links({"customer": {"C10001": "cus_000007"},
                      "product": {"IT-1": "prd_000001", "IT-2": "prd_000002"}})
    erp = {"OrderNo": "SO-100001", "CustomerNo": "C10001", "OrderDate": "2026-11-20",
           "Currency": "NOK", "Status": "Released",
           "Lines": [{"ItemNo": "IT-1", "Description": "Kaffe", "Qty": Decimal("2"),
                      "UnitPrice": Decimal("99.5"), "DiscountPct": Decimal("0")},
                     {"ItemNo": "IT-2", "Description": "Te", "Qty": Decimal("1"),
                      "UnitPrice": Decimal("45"), "DiscountPct": None}]}
    view = mapper.source_view(erp, resolve)
    assert view["customer_id"] == "cus_000007"
    assert view["status"] == "processing"
    assert view["order_date"] == datetime.date(2026, 11, 20)
    assert view["lines"][0] == {"product_id": "prd_000001", "sku": "IT-1", "name": "Kaffe",
                                "quantity": Decimal("2"), "unit_price": Decimal("99.5"),
                                "discount_percent": Decimal("0")}
    shop = mapper.target_fields(view)
    assert shop["lines"][1] == {"product_id": "prd_000002", "sku": "IT-2", "name": "Te",
                                "quantity": Decimal("1"), "unit_price": Decimal("45"),
                                "discount_percent": None}
    assert shop["order_date"] == "2026-11-20"
    back = mapper.source_fields(view, resolve)
    assert back["CustomerNo"] == "C10001"
    assert back["Status"] == "Released"
    assert back["Lines"][0] == {"ItemNo": "IT-1", "Description": "Kaffe", "Qty": Decimal("2"),
                                "UnitPrice": Decimal("99.5"), "DiscountPct": Decimal("0")}


def test_unlinked_reference_is_a_reference_error_not_a_validation_error():
    mapper = PairMapper(SPEC.pair("order"))
    erp = {"OrderNo": "SO-1", "CustomerNo": "C404", "Currency": "NOK",
           "Lines": [{"ItemNo": "IT-1", "Qty": 1, "UnitPrice": 1}]}
    with pytest.raises(MappingError) as info:
        mapper.source_view(erp, _links({"product": {"IT-1": "prd_1"}}))
    assert info.value.error_class == "reference"
    assert "customer C404 is not linked yet" in str(info.value)


def test_every_problem_of_a_record_is_reported_at_once():
    mapper = PairMapper(SPEC.pair("product"))
    with pytest.raises(MappingError) as info:
        mapper.target_view({"sku": "A", "name": "x" * 101, "price": "ten",
                            "stock_quantity": "2.5"})
    assert info.value.error_class == "validation"
    props = [prop for prop, _, _ in info.value.problems]
    assert props == ["name", "price", "stock_quantity"]


def test_match_key_uses_the_first_key_with_a_value():
    mapper = PairMapper(SPEC.pair("customer"))
    assert mapper.match_key({"email": "a@b.no", "vat_number": "1"}) == ("email", "a@b.no")
    assert mapper.match_key({"email": None, "vat_number": "NO 1 "}) == ("vat_number", "no 1")
    assert mapper.match_key({"email": None, "vat_number": None}) is None


def test_source_fallback_stands_in_for_an_empty_source_value():
    import yaml

    from core.spec import parse_dataflow
    doc = yaml.safe_load((DATAFLOWS_DIR / "customerp-customwebshop.yaml").read_text())
    row = doc["pairs"][0]["properties"][1]
    row.pop("target_fallback")
    row["source_fallback"] = "{OrgNo} {City}"
    mapper = PairMapper(parse_dataflow(doc, "flow.yaml").pair("customer"))
    view = mapper.source_view({"Email": "a@b.no", "Name": "", "OrgNo": "912", "City": "Bodø"},
                              _links({}))
    assert view["company_name"] == "912 Bodø"
    assert mapper.source_view({"Email": "a@b.no", "Name": "AS"}, _links({}))["company_name"] \
        == "AS"
