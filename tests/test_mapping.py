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


# --- sharpened by mutation testing (docs/testing.md) -----------------------------------------

def _strict_links(pairs):
    """Like :func:`_links`, but refuses any direction other than the two the mapper may ask."""
    loose = _links(pairs)

    def resolve(pair, direction, entity_id):
        assert direction in ("to_target", "to_source"), direction
        return loose(pair, direction, entity_id)
    return resolve


ORDER_LINKS = {"customer": {"C10001": "cus_7"}, "product": {"IT-1": "prd_1"}}


def _problems(call):
    with pytest.raises(MappingError) as info:
        call()
    return info.value


def test_a_mapping_error_lists_every_problem_in_one_message():
    error = MappingError([("name", "a value is required", "validation"),
                          ("price", "'ten' is not a number", "validation")])
    assert str(error) == "name: a value is required; price: 'ten' is not a number"


def test_nested_target_paths_are_read_and_a_non_object_step_is_refused():
    mapper = PairMapper(SPEC.pair("customer"))
    view = mapper.target_view({"email": "a@b.no", "company_name": "AS",
                               "address": {"city": "Bergen", "country": "no"}})
    assert (view["address.city"], view["address.country"]) == ("Bergen", "NO")
    error = _problems(lambda: mapper.target_view({"email": "a@b.no", "company_name": "AS",
                                                  "address": "Bryggen 3"}))
    assert ("address.line1", "address is str 'Bryggen 3', not an object",
            "validation") in error.problems


@pytest.mark.parametrize("first,last,name", [
    ("Kari", None, "Kari"),                    # an empty part leaves no "None" and no space
    ("Xavier", "Xu", "Xavier Xu"),
    ("Kari\u00a0", None, "Kari\u00a0"),        # a no-break space in a value is kept
])
def test_target_fallback_template(first, last, name):
    mapper = PairMapper(SPEC.pair("customer"))
    view = mapper.target_view({"email": "a@b.no", "first_name": first, "last_name": last})
    assert view["company_name"] == name


def test_match_token_of_a_number_is_its_text():
    from core.mapping import match_token
    assert match_token(912345678) == "912345678"
    assert match_token("  Ola  Nordmann ") == "ola nordmann"


def test_view_and_fields_for_pick_the_side():
    mapper = PairMapper(SPEC.pair("product"))
    erp = {"ItemNo": "IT-1", "Description": "Kaffe", "SalesPrice": "10", "VatCode": "33"}
    shop = {"sku": "IT-1", "name": "Kaffe", "price": "10", "vat_rate": "12"}
    resolve = _strict_links({})
    assert mapper.view("source", erp, resolve) == mapper.source_view(erp, resolve)
    assert mapper.view("target", shop, resolve) == mapper.target_view(shop)
    changes = {"vat_rate": Decimal("12"), "name": "Te"}
    assert mapper.fields_for("source", changes, resolve) == {"VatCode": "33", "Description": "Te"}
    assert mapper.fields_for("target", changes, resolve) == {"vat_rate": Decimal("12"),
                                                             "name": "Te"}


def test_source_problems_are_labelled_with_both_names_and_all_are_collected():
    mapper = PairMapper(SPEC.pair("order"))
    erp = {"OrderNo": "SO-1", "CustomerNo": "C404", "Currency": "kroner", "Status": "Open",
           "Lines": ["not a line", {"ItemNo": "IT-404", "Qty": "two", "UnitPrice": 1},
                     {"ItemNo": "IT-1", "Qty": 1}]}
    error = _problems(lambda: mapper.source_view(erp, _strict_links(ORDER_LINKS)))
    assert error.problems == [
        ("customer_id (CustomerNo)",
         "customer C404 is not linked yet (retried on the next run)", "reference"),
        ("currency (Currency)", "'kroner' is not an ISO 4217 currency code", "validation"),
        ("lines (Lines)[0]", "a line must be an object", "validation"),
        ("lines (Lines)[1].product_id (ItemNo)",
         "product IT-404 is not linked yet (retried on the next run)", "reference"),
        ("lines (Lines)[1].quantity (Qty)", "'two' is not a number", "validation"),
        ("lines (Lines)[2].unit_price (UnitPrice)", "a value is required", "validation"),
    ]
    assert error.error_class == "validation"


def test_lines_that_are_not_a_list_are_refused():
    mapper = PairMapper(SPEC.pair("order"))
    error = _problems(lambda: mapper.target_view({"number": "1", "currency": "NOK",
                                                  "customer_id": "cus_7",
                                                  "lines": "two coffees"}))
    assert error.problems == [("lines", "expected a list of lines, got str", "validation")]


def test_source_value_maps_read_numbers_and_empty_values():
    mapper = PairMapper(SPEC.pair("product"))
    erp = {"ItemNo": "IT-1", "Description": "Kaffe", "SalesPrice": Decimal("10")}
    resolve = _strict_links({})
    assert mapper.source_view({**erp, "VatCode": 33}, resolve)["vat_rate"] == Decimal("12")
    assert mapper.source_view({**erp, "VatCode": ""}, resolve)["vat_rate"] is None
    error = _problems(lambda: mapper.source_view({**erp, "VatCode": "99"}, resolve))
    assert error.problems == [("vat_rate (VatCode)",
                               "'99' has no mapping; known values: 3, 31, 33, 5", "validation")]
    error = _problems(lambda: mapper.source_fields({"vat_rate": Decimal("8")}, resolve))
    assert error.problems == [("vat_rate (VatCode)", "Decimal('8') has no Product equivalent; "
                               "known values: 25.00, 15.00, 12.00, 0.00", "validation")]


def test_writing_lines_to_the_source_translates_references_and_skips_one_way_properties():
    mapper = PairMapper(SPEC.pair("order"))
    resolve = _strict_links(ORDER_LINKS)
    line = {"product_id": "prd_1", "sku": "SHOP-SKU", "quantity": Decimal("2")}
    assert mapper.source_fields({"customer_id": "cus_7", "lines": [line]}, resolve) == {
        "CustomerNo": "C10001", "Lines": [{"ItemNo": "IT-1", "Qty": Decimal("2")}]}
    error = _problems(lambda: mapper.source_fields(
        {"customer_id": "cus_404", "lines": [{**line, "product_id": "prd_404"}]}, resolve))
    assert error.problems == [
        ("customer_id (CustomerNo)",
         "customer cus_404 is not linked yet (retried on the next run)", "reference"),
        ("lines (Lines)[0].product_id",
         "product prd_404 is not linked yet (retried on the next run)", "reference"),
    ]
    assert error.error_class == "reference"


def test_get_path_follows_dots_and_stops_at_a_non_object():
    from core.mapping import get_path
    assert get_path({"address": {"city": "Bergen"}}, "address.city") == "Bergen"
    assert get_path({"address": "Bryggen 3"}, "address.city") is None


def test_view_and_fields_for_pass_the_resolver_on():
    mapper = PairMapper(SPEC.pair("order"))
    resolve = _strict_links(ORDER_LINKS)
    erp = {"OrderNo": "SO-1", "CustomerNo": "C10001", "Currency": "NOK", "Lines": []}
    assert mapper.view("source", erp, resolve)["customer_id"] == "cus_7"
    assert mapper.fields_for("source", {"customer_id": "cus_7"}, resolve) == {
        "CustomerNo": "C10001"}
