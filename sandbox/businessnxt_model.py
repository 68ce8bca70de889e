"""The Business NXT emulator's data model: tables, scalars, cursors, filters, order, aggregates.

One table description (:data:`TABLES`) is the source of truth: the schema
(:mod:`sandbox.businessnxt_schema`) is generated from it, and the emulator
(:mod:`sandbox.businessnxt`) validates and stores rows by it. What the public documentation
does not say is marked [I] here and in ``docs/api/businessnxt.md``.

A company keeps its customers in one of two tables (decision 0014): Visma's documented
``associate`` (a customer is an associate with a non-zero ``customerNo``, and an order's
``customerNo`` is that number) or the seed's ``address`` (``addressNo``, unverified against a
real schema). :data:`CUSTOMER_TABLES` names them; :func:`tables_for` is the set one company has.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import decimal
import json
import math
import re
import statistics
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import graphql

from sandbox.wire import parse_timestamp

# --------------------------------------------------------------------------------------------
# The tables


@dataclasses.dataclass(frozen=True)
class Column:
    """One column: its GraphQL scalar, and for strings the length the data model allows.

    ``auto`` marks the auto-numbered last key column (left out of ``<Table>_Input``)."""

    name: str
    type: str = "String"
    max_length: int | None = None
    auto: bool = False


@dataclasses.dataclass(frozen=True)
class Table:
    """A company table: ``field`` is its GraphQL field (camelCase), ``type`` its PascalCase
    identifier, ``key`` its primary key column. ``numbers`` are the columns the server can
    suggest the next free value of on insert (Visma's "suggested values")."""

    field: str
    type: str
    key: str
    columns: tuple[Column, ...]
    numbers: tuple[str, ...] = ()

    @property
    def primary_key(self) -> tuple[str, ...]:
        """All key columns: a line is keyed by its order's number and its own."""
        return ("orderNo", self.key) if self.field == "orderLine" else (self.key,)

    def column(self, name: str) -> Column:
        return next(c for c in self.columns if c.name == name)

    @property
    def input_columns(self) -> tuple[Column, ...]:
        """The columns of ``<Table>_Input``: all but the auto key and the utility columns."""
        return tuple(c for c in self.columns if not c.auto and c.name not in UTILITY)


UTILITY_COLUMNS = (
    Column("createdDate", "Int"), Column("createdTime", "Int"),
    Column("createdTimestamp", "DateTime"), Column("createdByUser", "String"),
    Column("changedDate", "Int"), Column("changedTime", "Int"),
    Column("changedTimestamp", "DateTime"), Column("changedByUser", "String"),
)
UTILITY = frozenset(c.name for c in UTILITY_COLUMNS)

ADDRESS = Table("address", "Address", "addressNo", (
    Column("addressNo", "Int", auto=True),
    Column("name", max_length=80), Column("emailAddress", max_length=80),
    Column("phone", max_length=30), Column("mobilePhone", max_length=30),
    Column("addressLine1", max_length=80), Column("addressLine2", max_length=80),
    Column("postCode", max_length=20), Column("postalArea", max_length=80),
    Column("countryNo", "Int"), Column("noOfEmployees", "Int"),
    *UTILITY_COLUMNS))
#: table 152, "Aktør": one row per customer, supplier or other party; a customer has a
#: non-zero ``customerNo`` (Visma's app template ``createassociate.py``; apis.md §3.7)
ASSOCIATE = Table("associate", "Associate", "associateNo", (
    Column("associateNo", "Int", auto=True),
    Column("customerNo", "Int"), Column("supplierNo", "Int"),
    Column("name", max_length=80), Column("shortName", max_length=30),
    Column("emailAddress", max_length=80),
    Column("phone", max_length=30), Column("mobilePhone", max_length=30),
    Column("addressLine1", max_length=80), Column("addressLine2", max_length=80),
    Column("postCode", max_length=20), Column("postalArea", max_length=80),
    Column("countryNo", "Int"),
    *UTILITY_COLUMNS), numbers=("customerNo", "supplierNo"))
PRODUCT = Table("product", "Product", "productNo", (
    Column("productNo", max_length=20), Column("description", max_length=80),
    Column("salesPrice1", "Decimal"), Column("costPrice", "Decimal"),
    *UTILITY_COLUMNS))
ORDER = Table("order", "Order", "orderNo", (
    Column("orderNo", "Int", auto=True), Column("orderDate", "Int"),
    Column("customerNo", "Int"), Column("customerOrderNo", max_length=40),
    Column("name", max_length=80), Column("currencyNo", "Int"),
    Column("transactionType", "Int"), Column("supplierNo", "Int"), Column("employeeNo", "Int"),
    *UTILITY_COLUMNS))
ORDER_LINE = Table("orderLine", "OrderLine", "lineNo", (
    Column("orderNo", "Int"), Column("lineNo", "Int", auto=True),
    Column("productNo", max_length=20), Column("description", max_length=80),
    Column("quantity", "Decimal"), Column("priceInCurrency", "Decimal"),
    Column("discountPercent1", "Decimal"),
    *UTILITY_COLUMNS))
#: every table the emulator knows, by GraphQL field name
TABLES: Mapping[str, Table] = {t.field: t for t in (ADDRESS, ASSOCIATE, ORDER, ORDER_LINE,
                                                    PRODUCT)}
#: where a company may keep its customers -> the customer-number column an order refers to
CUSTOMER_TABLES: Mapping[str, str] = {"associate": "customerNo", "address": "addressNo"}
#: where an order keeps its lines (create input, storage, and the alias clients use on read)
LINES = "orderLines"
JOINDOWN = "joindown_OrderLine_via_Order"
#: the first customer or supplier number a company without any gets suggested [I]
FIRST_NUMBER = 10000


def tables_for(customer_table: str) -> Mapping[str, Table]:
    """The tables of a company whose customers live in ``customer_table``."""
    if customer_table not in CUSTOMER_TABLES:
        raise ValueError(f"customer_table must be one of {', '.join(CUSTOMER_TABLES)}, "
                         f"not {customer_table!r}")
    other = next(name for name in CUSTOMER_TABLES if name != customer_table)
    return {name: table for name, table in TABLES.items() if name != other}


# --------------------------------------------------------------------------------------------
# Scalars, dates, cursors


def parse_decimal(value: Any) -> decimal.Decimal:
    if isinstance(value, bool) or not isinstance(value, (int, float, decimal.Decimal)):
        raise graphql.GraphQLError(f"Decimal cannot represent a non-numeric value: {value!r}")
    return decimal.Decimal(str(value)) if isinstance(value, float) else decimal.Decimal(value)


def parse_decimal_literal(node: Any, _variables: Any = None) -> decimal.Decimal:
    if not isinstance(node, (graphql.IntValueNode, graphql.FloatValueNode)):
        raise graphql.GraphQLError("Decimal cannot represent a non-numeric value")
    return decimal.Decimal(node.value)


def parse_datetime(value: Any) -> datetime.datetime:
    """``2025-10-01T12:00:00Z``, or without a zone (taken as the server's local time, UTC)."""
    if not isinstance(value, str):
        raise graphql.GraphQLError(f"DateTime cannot represent {value!r}")
    try:
        return parse_timestamp(value.replace(" ", "T"))
    except ValueError:
        raise graphql.GraphQLError(f"DateTime cannot represent {value!r}") from None


def parse_datetime_literal(node: Any, _variables: Any = None) -> datetime.datetime:
    if not isinstance(node, graphql.StringValueNode):
        raise graphql.GraphQLError("DateTime must be a string")
    return parse_datetime(node.value)


def int_date(moment: datetime.datetime) -> int:
    """``yyyymmdd`` as BNXT stores a date."""
    return moment.year * 10000 + moment.month * 100 + moment.day


def int_time(moment: datetime.datetime) -> int:
    """``hhmm`` as BNXT stores a time of day."""
    return moment.hour * 100 + moment.minute


def encode_cursor(position: list[Any]) -> str:
    """An opaque cursor: the row's sort position (its ``orderBy`` values and key)."""
    raw = json.dumps(position, default=str, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> list[Any]:
    try:
        position = json.loads(
            base64.urlsafe_b64decode((cursor + "=" * (-len(cursor) % 4)).encode()))
    except ValueError:
        raise graphql.GraphQLError(f"Invalid cursor: {cursor}") from None
    if not isinstance(position, list):
        raise graphql.GraphQLError(f"Invalid cursor: {cursor}")
    return position


# --------------------------------------------------------------------------------------------
# Filtering and ordering


def comparable(column: Column, value: Any) -> Any:
    if value is None:
        return None
    if column.type == "DateTime":
        return value if isinstance(value, datetime.datetime) else parse_timestamp(value)
    if column.type == "Decimal":
        return decimal.Decimal(value)
    return value


def _like(pattern: str, text: Any) -> bool:
    regex = "".join(".*" if ch == "%" else "." if ch == "_" else re.escape(ch) for ch in pattern)
    return isinstance(text, str) and re.fullmatch(regex, text,
                                                  re.IGNORECASE | re.DOTALL) is not None


def _check(op: str, value: Any, arg: Any) -> bool:
    if op == "_eq":
        return value == arg
    if op == "_not_eq":
        return value != arg
    if op in ("_in", "_not_in"):
        return (value in (arg or [])) == (op == "_in")
    if op in ("_like", "_not_like"):
        return _like(arg, value) == (op == "_like")
    if value is None or arg is None:
        return False
    if op in ("_between", "_not_between"):
        if not isinstance(arg, list) or len(arg) != 2:
            raise graphql.GraphQLError(f"{op} takes a list of two values")
        return (arg[0] <= value <= arg[1]) == (op == "_between")
    return {"_gt": value > arg, "_gte": value >= arg, "_lt": value < arg, "_lte": value <= arg}[op]


def matches(table: Table, row: Mapping[str, Any], expression: Mapping[str, Any] | None) -> bool:
    """Whether ``row`` satisfies a ``FilterExpression_<Table>`` (all its parts: AND)."""
    for name, condition in (expression or {}).items():
        if name == "_and":
            if not all(matches(table, row, part) for part in condition or []):
                return False
        elif name == "_or":
            if not any(matches(table, row, part) for part in condition or []):
                return False
        else:
            column = table.column(name)
            value = comparable(column, row.get(name))
            for op, arg in (condition or {}).items():
                arg = ([comparable(column, a) for a in arg] if isinstance(arg, list)
                       else arg if op in ("_like", "_not_like") else comparable(column, arg))
                if not _check(op, value, arg):
                    return False
    return True


def order_spec(table: Table, order_by: Sequence[Mapping[str, str]] | None) -> list[tuple[str,
                                                                                         bool]]:
    """``[(column, descending)]`` from ``orderBy``, always ending with the key (a total order)."""
    spec = [(name, direction == "DESC") for item in order_by or [] for name,
            direction in item.items()]
    for key in table.primary_key:
        if key not in [name for name, _ in spec]:
            spec.append((key, False))
    return spec


def compare(spec: list[tuple[str, bool]], a: Sequence[Any], b: Sequence[Any]) -> int:
    for (_, descending), x, y in zip(spec, a, b, strict=False):
        if x == y:
            continue
        if x is None or y is None:  # nulls first
            result = -1 if x is None else 1
        else:
            result = -1 if x < y else 1
        return -result if descending else result
    return 0


# --------------------------------------------------------------------------------------------
# Aggregates (docs "Aggregates": ``<table>_aggregate(filter:)``, nulls ignored)


def _sample_variance(values: list) -> Any:
    return statistics.variance(values) if len(values) > 1 else None


def _population_variance(values: list) -> Any:
    return statistics.pvariance(values) if values else None


def _sqrt(value: Any) -> Any:
    return None if value is None else decimal.Decimal(value).sqrt()


_STATISTICS: Mapping[str, Callable[[list], Any]] = {
    "sum": lambda values: sum(values) if values else None,
    "average": lambda values: statistics.mean(values) if values else None,
    "count": len,
    "minimum": lambda values: min(values, default=None),
    "maximum": lambda values: max(values, default=None),
    "variance": _sample_variance,
    "variancePopulation": _population_variance,
    "standardDeviation": lambda values: _sqrt(_sample_variance(values)),
    "standardDeviationPopulation": lambda values: _sqrt(_population_variance(values)),
}
#: every documented aggregate -> (how it is computed, whether over distinct values)
AGGREGATES: Mapping[str, tuple[Callable[[list], Any], bool]] = {
    name + suffix: (function, bool(suffix))
    for name, function in _STATISTICS.items()
    for suffix in (("",) if name in ("minimum", "maximum") else ("", "Distinct"))
}
#: the column types an aggregate other than ``count`` applies to
NUMERIC = ("Int", "Decimal")


def aggregate_columns(table: Table, function: str) -> tuple[Column, ...]:
    """The columns ``function`` has a field for: ``count`` every column (release note
    2026-06-22), the others the numeric ones."""
    if function.startswith("count"):
        return table.columns
    return tuple(c for c in table.columns if c.type in NUMERIC)


def aggregate(table: Table, rows: Sequence[Mapping[str, Any]], function: str) -> dict[str, Any]:
    """One aggregate over ``rows``: a value per column (null where no row has a value)."""
    compute, distinct = AGGREGATES[function]
    out = {}
    for column in aggregate_columns(table, function):
        values = [comparable(column, row.get(column.name)) for row in rows
                  if row.get(column.name) is not None]
        if distinct:
            values = list(dict.fromkeys(values))
        if column.type in NUMERIC and not function.startswith("count"):
            values = [decimal.Decimal(value) for value in values]
        result = compute(values)
        if isinstance(result, decimal.Decimal) and not math.isfinite(result):
            result = None
        out[column.name] = result
    return out


# --------------------------------------------------------------------------------------------
# Refusals


class RowError(Exception):
    """A row a mutation cannot apply: fails the whole mutation field."""


#: ``extensions.code`` of what the emulator does not emulate (the real service would act)
NOT_EMULATED = "NOT_EMULATED"


def not_emulated(what: str) -> graphql.GraphQLError:
    """A loud refusal of something the real service honours and the emulator does not."""
    return graphql.GraphQLError(f"{what} is not emulated by the talksync sandbox.",
                                extensions={"code": NOT_EMULATED, "codes": [NOT_EMULATED]})
