"""Business rules in the spec (issue 15, point 4): how a spec declares them, how a malformed one
is refused (file, pair, property, the key and the fix), and how a value breaking one becomes a
problem naming the rule, the property and the value, read from either side."""

from __future__ import annotations

import copy
from decimal import Decimal

import pytest
import yaml

from core.mapping import MappingError, PairMapper
from core.rules import RULE_KEYS, Rule
from core.spec import DATAFLOWS_DIR, SpecError, available_dataflows, parse_dataflow

SHIPPED = DATAFLOWS_DIR / "customerp-customwebshop.yaml"


def _doc():
    return yaml.safe_load(SHIPPED.read_text(encoding="utf-8"))


def _row(doc, pair: str, target: str) -> dict:
    [pair_row] = [p for p in doc["pairs"] if p["name"] == pair]
    [row] = [p for p in pair_row["properties"] if p["target"] == target]
    return row


def _line_row(doc, target: str) -> dict:
    [row] = [p for p in _row(doc, "order", "lines")["lines"] if p["target"] == target]
    return row


def _with(pair: str, target: str, **rules):
    """The shipped customerp-customwebshop spec with ``rules`` set on one property."""
    doc = _doc()
    row = _row(doc, pair, target)
    for key in RULE_KEYS:
        row.pop(key, None)
    row.update(rules)
    return parse_dataflow(doc, "flow.yaml")


def _error(doc) -> str:
    with pytest.raises(SpecError) as info:
        parse_dataflow(doc, "flow.yaml")
    return str(info.value)


# --- the spec --------------------------------------------------------------------------------

def test_shipped_dataflows_carry_the_rules_a_business_expects():
    """Prices and quantities never negative, order lines of something, e-mails well formed:
    in every shipped dataflow."""
    for spec in available_dataflows().values():
        rules = {}
        for pair in spec.pairs:
            for prop in pair.properties:
                rules[f"{pair.name}.{prop.target}"] = {r.kind: r.limit for r in prop.rules}
                for line in prop.lines:
                    rules[f"{pair.name}.{prop.target}.{line.target}"] = {
                        r.kind: r.limit for r in line.rules}
        customer = spec.pair("customer")
        email = next(p.target for p in customer.properties if p.type == "email")
        assert "pattern" in rules[f"customer.{email}"], spec.name
        prices = [name for name in rules if name.split(".")[-1].lower() in (
            "price", "unitprice", "salesprice1", "priceincurrency", "unit_price")]
        assert prices and all(rules[n] == {"minimum": Decimal(0)} for n in prices), (
            spec.name, {n: rules[n] for n in prices})
        quantity = rules[next(n for n in rules if n.startswith("order.")
                              and n.endswith(".quantity"))]
        assert quantity == {"greater_than": Decimal(0)}, spec.name


def test_rules_are_parsed_with_their_owner():
    spec = _with("product", "price", minimum=0, maximum="99999.99")
    price = spec.pair("product").property("price")
    assert price.rules == (Rule("minimum", Decimal(0), "product.price"),
                           Rule("maximum", Decimal("99999.99"), "product.price"))
    quantity = next(p for p in spec.pair("order").property("lines").lines
                    if p.target == "quantity")
    assert quantity.rules == (Rule("greater_than", Decimal(0), "order.lines.quantity"),)
    currency = _with("order", "currency", allowed=["nok", "eur"]).pair("order").property(
        "currency")
    assert currency.rules == (Rule("allowed", ("NOK", "EUR"), "order.currency"),)


@pytest.mark.parametrize("pair,target,rules,expected", [
    ("customer", "phone", {"minimum": 0},
     "pair customer: property phone: minimum: a bound is a rule of a number (type integer or "
     "decimal), and this property is of type string; remove minimum, or use pattern or allowed"),
    ("product", "price", {"pattern": "[0-9]+"},
     "pair product: property price: pattern: a pattern is a rule of text (type string or "
     "email), and this property is of type decimal; remove pattern, or use minimum, maximum "
     "or allowed"),
    ("customer", "phone", {"pattern": "[0-9"},
     "pair customer: property phone: pattern: '[0-9' does not compile (unterminated character "
     "set at position 0); write a Python regular expression the whole value must match"),
    ("customer", "phone", {"pattern": 12},
     "pattern: expected a regular expression in quotes"),
    ("product", "price", {"minimum": "zero"},
     "pair product: property price: minimum: 'zero' is not a number; write e.g. minimum: 0"),
    ("product", "price", {"minimum": True}, "minimum: expected a number, e.g. minimum: 0"),
    ("product", "price", {"maximum": ".nan"}, "maximum: '.nan' is not a number"),
    ("product", "price", {"minimum": 10, "maximum": 5},
     "minimum 10 and maximum 5: no value keeps both; make minimum smaller than maximum"),
    ("product", "price", {"greater_than": 5, "less_than": 5},
     "greater_than 5 and less_than 5: no value keeps both"),
    ("product", "price", {"minimum": 0, "greater_than": 0},
     "minimum and greater_than: one bound per side"),
    ("order", "currency", {"allowed": "NOK"}, "allowed: expected a non-empty list of values"),
    ("order", "currency", {"allowed": ["NOK", "kroner"]},
     "allowed: 'kroner' is not a value of type currency ('kroner' is not an ISO 4217 "
     "currency code)"),
    ("order", "currency", {"allowed": ["NOK", ""]}, "allowed: an empty value cannot be allowed"),
    ("order", "customer_id", {"allowed": ["C1"]},
     "pair order: property customer_id: allowed: a list of allowed values is a rule of type "
     "string, email, integer, decimal, country, currency, and this property is of type "
     "reference; remove allowed"),
    ("order", "lines", {"minimum": 1}, "property lines: minimum: a bound is a rule of a number"),
])
def test_a_malformed_rule_names_the_property_the_key_and_the_fix(pair, target, rules, expected):
    doc = _doc()
    row = _row(doc, pair, target)
    for key in RULE_KEYS:
        row.pop(key, None)
    row.update(rules)
    message = _error(doc)
    assert message.startswith("flow.yaml: pair "), message
    assert expected in message, message


def test_a_malformed_rule_of_a_line_names_the_line_property():
    doc = _doc()
    _line_row(doc, "quantity")["greater_than"] = "nothing"
    assert _error(doc) == ("flow.yaml: pair order: property lines: lines: property quantity: "
                           "greater_than: 'nothing' is not a number; write e.g. greater_than: 0")


def test_a_malformed_rule_stops_the_cli_with_exit_2(tmp_path, monkeypatch, capsys):
    """The spec is read before anything runs: a rule that does not compile is a config error
    (exit 2, one line naming the field and the fix), never a traceback."""
    from pipelines import cli, commands
    folder = tmp_path / "dataflows"
    folder.mkdir()
    doc = _doc()
    _row(doc, "customer", "phone")["pattern"] = "(+47"
    (folder / "customerp-customwebshop.yaml").write_text(yaml.safe_dump(doc))
    monkeypatch.setattr(commands, "available_dataflows", lambda: available_dataflows(folder))
    assert cli.main(["dataflows"]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("talksync: error: ") and "property phone: pattern: '(+47' does " \
        "not compile (nothing to repeat at position 1)" in line, line


# --- the values ------------------------------------------------------------------------------

def _problems(spec, pair: str, side: str, fields: dict) -> list[str]:
    mapper = PairMapper(spec.pair(pair))
    try:
        mapper.view(side, fields, lambda p, d, i: f"linked-{i}")
    except MappingError as exc:
        return [f"{label}: {reason}" for label, reason, _ in exc.problems]
    return []


ERP_PRODUCT = {"ItemNo": "IT-1", "Description": "Kaffe", "SalesPrice": 100, "CostPrice": 50,
               "VatCode": "3", "StockQty": 4}
SHOP_PRODUCT = {"sku": "IT-1", "name": "Kaffe", "price": "100.00", "cost": "50.00",
                "vat_rate": "25.00", "stock_quantity": 4}


def test_a_value_below_the_minimum_names_the_rule_the_property_and_the_value():
    spec = _with("product", "price", minimum=0)
    assert _problems(spec, "product", "source", {**ERP_PRODUCT, "SalesPrice": -10}) == [
        "price (SalesPrice): -10 is below the minimum 0 (rule minimum of product.price)"]
    assert _problems(spec, "product", "source", {**ERP_PRODUCT, "SalesPrice": 0}) == []


def test_a_rule_holds_for_a_record_read_from_the_target_too():
    spec = _with("product", "price", minimum=0)
    assert _problems(spec, "product", "target", {**SHOP_PRODUCT, "price": "-0.01"}) == [
        "price: -0.01 is below the minimum 0 (rule minimum of product.price)"]


@pytest.mark.parametrize("rules,value,reason", [
    ({"maximum": 1000}, "1000.01", "1000.01 is above the maximum 1000 (rule maximum of "
                                   "product.price)"),
    ({"greater_than": 0}, "0", "0 is not greater than 0 (rule greater_than of product.price)"),
    ({"less_than": "500"}, "500.00", "500.00 is not less than 500 (rule less_than of "
                                     "product.price)"),
])
def test_each_bound(rules, value, reason):
    spec = _with("product", "price", **rules)
    assert _problems(spec, "product", "target", {**SHOP_PRODUCT, "price": value}) == [
        f"price: {reason}"]


@pytest.mark.parametrize("rules,value", [
    ({"maximum": 1000}, "1000"), ({"greater_than": 0}, "0.01"), ({"less_than": 500}, "499.99"),
    ({"minimum": 0, "maximum": 0}, "0")])
def test_a_value_on_the_right_side_of_a_bound_keeps_it(rules, value):
    spec = _with("product", "price", **rules)
    assert _problems(spec, "product", "target", {**SHOP_PRODUCT, "price": value}) == []


def test_a_pattern_must_match_the_whole_value():
    spec = _with("customer", "vat_number", pattern="[0-9]{9}")
    customer = {"email": "a@b.no", "vat_number": "912345678"}
    assert _problems(spec, "customer", "target", customer) == []
    assert _problems(spec, "customer", "target", {**customer, "vat_number": "NO912345678MVA"}) \
        == ["vat_number: 'NO912345678MVA' does not match the pattern '[0-9]{9}' "
            "(rule pattern of customer.vat_number)"]


def test_allowed_values_are_compared_as_canonical_values():
    spec = _with("order", "currency", allowed=["nok", "EUR"])
    order = {"OrderNo": "1", "CustomerNo": "C1", "Currency": "eur", "Status": "Open",
             "Lines": [{"ItemNo": "IT-1", "Qty": 1, "UnitPrice": 10}]}
    assert _problems(spec, "order", "source", order) == []
    assert _problems(spec, "order", "source", {**order, "Currency": "SEK"}) == [
        "currency (Currency): 'SEK' is not one of the allowed values NOK, EUR "
        "(rule allowed of order.currency)"]


def test_an_empty_value_keeps_every_rule_and_required_asks_for_one():
    spec = _with("product", "cost", minimum=0)
    assert _problems(spec, "product", "source", {**ERP_PRODUCT, "CostPrice": None}) == []
    spec = _with("product", "price", minimum=0)
    assert _problems(spec, "product", "source", {**ERP_PRODUCT, "SalesPrice": None}) == [
        "price (SalesPrice): a value is required"]


def test_the_shipped_rules_on_an_order_line_and_an_e_mail():
    """The seed rules: a line of quantity 0, a negative unit price, a discount over 100 and a
    malformed e-mail address are each named; every problem of the record at once."""
    spec = available_dataflows()["customerp-customwebshop"]
    order = {"OrderNo": "1", "CustomerNo": "C1", "Currency": "NOK", "Status": "Open",
             "Lines": [{"ItemNo": "IT-1", "Qty": 2, "UnitPrice": 10, "DiscountPct": 0},
                       {"ItemNo": "IT-2", "Qty": 0, "UnitPrice": -1, "DiscountPct": 150}]}
    assert _problems(spec, "order", "source", order) == [
        "lines (Lines)[1].quantity (Qty): 0 is not greater than 0 "
        "(rule greater_than of order.lines.quantity)",
        "lines (Lines)[1].unit_price (UnitPrice): -1 is below the minimum 0 "
        "(rule minimum of order.lines.unit_price)",
        "lines (Lines)[1].discount_percent (DiscountPct): 150 is above the maximum 100 "
        "(rule maximum of order.lines.discount_percent)"]
    customer = {"Email": "ola..nordmann@example.no", "Name": "Ola"}
    [problem] = _problems(spec, "customer", "source", customer)
    assert problem.startswith("email (Email): 'ola..nordmann@example.no' does not match the "
                              "pattern ") and problem.endswith("(rule pattern of customer.email)")


@pytest.mark.parametrize("address,well_formed", [
    ("ola.nordmann@example.no", True), ("post+ordre@fjord-sjomat.co.uk", True),
    ("o'brien@example.ie", True), ("a@b.no", True),
    ("ola..nordmann@example.no", False), (".ola@example.no", False),
    ("ola@example", False), ("ola@example.n", False), ("ola@exa_mple.no", False),
    ("ola@@example.no", False)])
def test_the_shipped_e_mail_pattern(address, well_formed):
    spec = available_dataflows()["customerp-customwebshop"]
    rules = spec.pair("customer").property("email").rules
    assert all(rule.broken_by(address) is None for rule in rules) is well_formed


def test_rules_survive_pickling_as_beam_ships_the_spec_to_workers():
    import pickle
    spec = available_dataflows()["customerp-customwebshop"]
    assert pickle.loads(pickle.dumps(spec)) == spec
    assert copy.deepcopy(spec) == spec
