"""Dataflow specs: the shipped ones load; every kind of mistake names file, pair and field."""

import copy

import pytest
import yaml

from core.spec import DATAFLOWS_DIR, SpecError, available_dataflows, load_dataflow, parse_dataflow

SHIPPED = DATAFLOWS_DIR / "customerp-customwebshop.yaml"


def _doc():
    return yaml.safe_load(SHIPPED.read_text(encoding="utf-8"))


def _error(doc) -> str:
    with pytest.raises(SpecError) as info:
        parse_dataflow(doc, "flow.yaml")
    return str(info.value)


def test_shipped_dataflow_loads_in_dependency_order():
    spec = load_dataflow(SHIPPED)
    assert spec.name == "customerp-customwebshop"
    assert [p.name for p in spec.pairs] == ["customer", "product", "order"]
    assert spec.pair("order").depends_on == ("customer", "product")
    assert spec.pair("customer").match == ("email", "vat_number")
    lines = spec.pair("order").property("lines")
    assert [p.target for p in lines.lines] == ["product_id", "sku", "name", "quantity",
                                                "unit_price", "discount_percent"]
    assert set(available_dataflows()) >= {"customerp-customwebshop"}


def test_customer_table_covers_every_erp_customer_field():
    spec = load_dataflow(SHIPPED)
    sources = {p.source for p in spec.pair("customer").properties}
    # CustomerNo is the link id and ModifiedAt the change time: neither is a synced property.
    assert sources == {"Email", "Name", "OrgNo", "Phone", "Street", "Street2", "ZipCode",
                       "City", "CountryCode"}


def test_unknown_key_names_file_pair_and_field():
    doc = _doc()
    doc["pairs"][1]["properties"][0]["colour"] = "red"
    message = _error(doc)
    assert message.startswith("flow.yaml: pair product: property sku: unknown key(s) colour")


def test_unknown_type_is_refused_with_the_allowed_types():
    doc = _doc()
    doc["pairs"][0]["properties"][2]["type"] = "text"
    message = _error(doc)
    assert "flow.yaml: pair customer: property vat_number: type: 'text' is not one of" in message
    assert "decimal" in message


def test_duplicate_target_property_is_refused():
    doc = _doc()
    doc["pairs"][0]["properties"].append(copy.deepcopy(doc["pairs"][0]["properties"][3]))
    assert "pair customer: property phone: duplicate target property" in _error(doc)


def test_duplicate_source_property_written_twice_is_refused():
    doc = _doc()
    doc["pairs"][0]["properties"].append(
        {"source": "Phone", "target": "first_name", "type": "string"})
    message = _error(doc)
    assert "pair customer: property first_name: duplicate source property 'Phone'" in message
    assert "direction: to_target" in message


def test_missing_match_keys_are_refused():
    doc = _doc()
    del doc["pairs"][2]["match"]
    assert "pair order: missing required key 'match'" in _error(doc)


def test_match_key_must_be_a_target_property():
    doc = _doc()
    doc["pairs"][0]["match"] = ["e_mail"]
    message = _error(doc)
    assert "pair customer: match: 'e_mail' is not a target property of this pair" in message


def test_reference_to_unknown_pair_is_refused():
    doc = _doc()
    doc["pairs"][2]["properties"][1]["pair"] = "client"
    assert "pair order: a reference names pair 'client'" in _error(doc)


def test_reference_cycle_is_refused():
    doc = _doc()
    doc["pairs"][0]["properties"].append(
        {"source": "LastOrder", "target": "last_order", "type": "reference", "pair": "order"})
    assert "references form a cycle" in _error(doc)


def test_value_map_must_be_one_to_one():
    doc = _doc()
    doc["pairs"][1]["properties"][5]["values"]["6"] = "0.00"
    assert "property vat_rate: values: two source values map to the same target value" in \
        _error(doc)


def test_bad_policy_values_are_refused():
    doc = _doc()
    doc["pairs"][0]["conflict"] = "newest"
    assert "pair customer: conflict: 'newest' is not one of latest, source, target" in \
        _error(doc)
    doc = _doc()
    doc["pairs"][0]["delete"] = "cascade"
    assert ("pair customer: delete: 'cascade' is not one of ignore, unlink, propagate"
            in _error(doc))


def test_every_delete_policy_is_accepted_and_ignore_is_the_default():
    for policy in ("ignore", "unlink", "propagate"):
        doc = _doc()
        doc["pairs"][0]["delete"] = policy
        assert parse_dataflow(doc).pairs[0].delete == policy
    doc = _doc()
    del doc["pairs"][0]["delete"]
    assert parse_dataflow(doc).pairs[0].delete == "ignore"


def test_invalid_yaml_names_the_file(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("name: [unclosed", encoding="utf-8")
    with pytest.raises(SpecError, match=r"broken.yaml: not valid YAML"):
        load_dataflow(path)
