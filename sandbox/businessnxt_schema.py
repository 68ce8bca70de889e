"""The Business NXT emulator's GraphQL schema: SDL generated from the table description, and the
resolvers that hand each field to the emulator (the ``root_value`` of every request).

Names follow the documented conventions (``docs/api/businessnxt.md``); the few the
documentation does not show are marked [I] there. What the schema has, the emulator serves;
what the real service has and the emulator does not (grouping, ``distinct``, ``useModel``,
processings...) is absent, so a request for it fails validation in the GraphQL error shape, and
arguments the schema must carry to stay call-compatible (``insertAtRow``, ``insertPosition``)
are refused by :func:`~sandbox.businessnxt_model.not_emulated` when given.
"""

from __future__ import annotations

import datetime
import decimal
import functools
from collections.abc import Callable, Mapping
from typing import Any

import graphql

from sandbox.businessnxt_model import (
    AGGREGATES,
    JOINDOWN,
    LINES,
    ORDER,
    ORDER_LINE,
    RowError,
    Table,
    aggregate_columns,
    not_emulated,
    parse_datetime,
    parse_datetime_literal,
    parse_decimal,
    parse_decimal_literal,
    tables_for,
)
from sandbox.wire import format_timestamp

_FILTER_OPERATORS = {
    "_eq": "{t}", "_not_eq": "{t}", "_gt": "{t}", "_gte": "{t}", "_lt": "{t}", "_lte": "{t}",
    "_in": "[{t}]", "_not_in": "[{t}]", "_between": "[{t}]", "_not_between": "[{t}]",
}


def _connection_args(table: Table) -> str:
    return (f"first: Int, after: String, last: Int, before: String, skip: Int, "
            f"filter: FilterExpression_{table.type}, orderBy: [OrderBy_{table.type}]")


def _scalars() -> list[str]:
    out = ["scalar Decimal", "scalar DateTime", "enum SortOrder { ASC DESC }",
           "enum InsertPosition { BEFORE AFTER }",
           "type PageInfo { hasNextPage: Boolean! hasPreviousPage: Boolean! "
           "startCursor: String endCursor: String }"]
    for scalar in ("Int", "String", "Decimal", "DateTime"):
        ops = " ".join(f"{op}: {shape.format(t=scalar)}" for op, shape in _FILTER_OPERATORS.items())
        if scalar == "String":
            ops += " _like: String _not_like: String"
        out.append(f"input FilterExpression_{scalar} {{ {ops} }}")
    return out


def _table_types(table: Table) -> list[str]:
    t = table.type
    extra = (f" {JOINDOWN}({_connection_args(ORDER_LINE)}): "
             f"Query_UseCompany_OrderLine_Connection" if table is ORDER else "")
    filters = " ".join(f"{c.name}: FilterExpression_{c.type}" for c in table.columns)
    inputs = " ".join(f"{c.name}: {c.type}" for c in table.input_columns)
    if table is ORDER:
        inputs += f" {LINES}: [OrderLine_Input!]"
    suggest = " ".join(f"{c.name}: Boolean" for c in table.input_columns)
    aggregates = " ".join(
        f"{name}: {t}_Aggregate_{'Count' if name.startswith('count') else 'Value'}"
        for name in AGGREGATES)
    return [
        f"type {t} {{ {' '.join(f'{c.name}: {c.type}' for c in table.columns)}{extra} }}",
        f"type Query_UseCompany_{t}_Connection {{ totalCount: Int! pageInfo: PageInfo! "
        f"items: [{t}!]! }}",
        f"input FilterExpression_{t} {{ {filters} _and: [FilterExpression_{t}] "
        f"_or: [FilterExpression_{t}] }}",
        f"input OrderBy_{t} {{ {' '.join(f'{c.name}: SortOrder' for c in table.columns)} }}",
        f"input {t}_Input {{ {inputs} }}",
        f"input Suggest_{t}_Input {{ {suggest} }}",
        f"type Mutation_UseCompany_{t}_Result {{ affectedRows: Int! items: [{t}!] }}",
        f"type Query_UseCompany_{t}_Aggregate {{ {aggregates} }}",
        f"type {t}_Aggregate_Count {{ "
        f"{' '.join(f'{c.name}: Int' for c in aggregate_columns(table, 'count'))} }}",
        f"type {t}_Aggregate_Value {{ "
        f"{' '.join(f'{c.name}: Decimal' for c in aggregate_columns(table, 'sum'))} }}",
    ]


def _table_fields(table: Table) -> tuple[list[str], list[str]]:
    """The table's fields of ``Query_UseCompany`` and of ``Mutation_UseCompany``."""
    t, result = table.type, f"Mutation_UseCompany_{table.type}_Result"
    query = [f"{table.field}({_connection_args(table)}): Query_UseCompany_{t}_Connection",
             f"{table.field}_aggregate(filter: FilterExpression_{t}): "
             f"Query_UseCompany_{t}_Aggregate"]
    mutation = [
        f"{table.field}_create(values: [{t}_Input!]!, insertAtRow: FilterExpression_{t}, "
        f"insertPosition: InsertPosition, suggest: Suggest_{t}_Input): {result}",
        f"{table.field}_update(filter: FilterExpression_{t}, value: {t}_Input, "
        f"filters: [FilterExpression_{t}!], values: [{t}_Input!]): {result}",
        f"{table.field}_delete(filter: FilterExpression_{t}): {result}",
    ]
    return query, mutation


#: the lists of the signed-in user's customers and companies (docs "Fetching user's available
#: customers/companies"): connections without ``pageInfo``
_AVAILABLE = [
    "type AvailableCompany { name: String vismaNetCompanyId: Int vismaNetCustomerId: Int }",
    "input OrderBy_AvailableCompany { name: SortOrder vismaNetCompanyId: SortOrder "
    "vismaNetCustomerId: SortOrder }",
    "type Query_AvailableCompanies_Connection { totalCount: Int! items: [AvailableCompany!]! }",
    "type AvailableCustomer { name: String vismaNetCustomerId: Int }",
    "input OrderBy_AvailableCustomer { name: SortOrder vismaNetCustomerId: SortOrder }",
    "type Query_AvailableCustomers_Connection { totalCount: Int! items: [AvailableCustomer!]! }",
]
_ROOT_QUERY = ("type Query { useCompany(no: Int!): Query_UseCompany "
               "availableCompanies(customerNo: Int, first: Int, last: Int, "
               "orderBy: [OrderBy_AvailableCompany]): Query_AvailableCompanies_Connection "
               "availableCustomers(first: Int, last: Int, orderBy: [OrderBy_AvailableCustomer]): "
               "Query_AvailableCustomers_Connection }")


def schema_sdl(customer_table: str = "address") -> str:
    """The SDL of a company whose customers live in ``customer_table``, generated from the
    table description (one source of truth)."""
    out = _scalars() + _AVAILABLE
    query_fields: list[str] = []
    mutation_fields: list[str] = []
    for table in tables_for(customer_table).values():
        out += _table_types(table)
        query, mutation = _table_fields(table)
        query_fields += query
        mutation_fields += mutation
    out.append(f"type Query_UseCompany {{ {' '.join(query_fields)} }}")
    out.append(f"type Mutation_UseCompany {{ {' '.join(mutation_fields)} }}")
    out.append(_ROOT_QUERY)
    out.append("type Mutation { useCompany(no: Int!): Mutation_UseCompany }")
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------------------------
# Resolvers: each field hands over to the emulator, the request's root value


def _field_resolver(action: Callable[..., dict], table: Table) -> Callable[..., Any]:
    """A mutation field: the emulator's action, its :class:`RowError` as the field's error."""
    def resolve(emulator: Any, info: Any, **args: Any) -> Any:
        try:
            return action(emulator, table, args)
        except RowError as exc:
            raise graphql.GraphQLError(str(exc)) from None
    return resolve


def _create(emulator: Any, table: Table, args: Mapping[str, Any]) -> dict:
    for name in ("insertAtRow", "insertPosition"):
        if args.get(name) is not None:
            raise not_emulated(f"'{name}' of {table.field}_create (inserting between rows)")
    return emulator.create(table, args["values"], args.get("suggest") or {})


def _update(emulator: Any, table: Table, args: Mapping[str, Any]) -> dict:
    if args.get("filters") is not None or args.get("values") is not None:
        filters, values = args.get("filters") or [], args.get("values") or []
        if len(filters) != len(values):
            raise RowError("'filters' and 'values' must have the same number of elements.")
        pairs = list(zip(filters, values, strict=True))
    else:
        if args.get("value") is None:
            raise RowError("Give 'filter' and 'value', or 'filters' and 'values'.")
        pairs = [(args.get("filter"), args["value"])]
    return emulator.update(table, pairs)


def _serialize_datetime(value: Any) -> Any:
    return format_timestamp(value) if isinstance(value, datetime.datetime) else value


@functools.lru_cache(maxsize=len(("address", "associate")))
def build_schema(customer_table: str = "address") -> graphql.GraphQLSchema:
    """The executable schema of a company whose customers live in ``customer_table``."""
    schema = graphql.build_schema(schema_sdl(customer_table))
    decimal_type = schema.type_map["Decimal"]
    decimal_type.serialize = lambda value: decimal.Decimal(value)  # type: ignore[attr-defined]
    decimal_type.parse_value = parse_decimal  # type: ignore[attr-defined]
    decimal_type.parse_literal = parse_decimal_literal  # type: ignore[attr-defined]
    datetime_type = schema.type_map["DateTime"]
    datetime_type.serialize = _serialize_datetime  # type: ignore[attr-defined]
    datetime_type.parse_value = parse_datetime  # type: ignore[attr-defined]
    datetime_type.parse_literal = parse_datetime_literal  # type: ignore[attr-defined]
    query_root, mutation_root = schema.query_type, schema.mutation_type
    assert query_root is not None and mutation_root is not None
    for root in (query_root, mutation_root):
        root.fields["useCompany"].resolve = lambda emulator, info, no: emulator.use_company(no)
    query_root.fields["availableCompanies"].resolve = (
        lambda emulator, info, **args: emulator.available("companies", args))
    query_root.fields["availableCustomers"].resolve = (
        lambda emulator, info, **args: emulator.available("customers", args))
    query = schema.type_map["Query_UseCompany"]
    mutation = schema.type_map["Mutation_UseCompany"]
    assert isinstance(query, graphql.GraphQLObjectType)
    assert isinstance(mutation, graphql.GraphQLObjectType)
    for table in tables_for(customer_table).values():
        query.fields[table.field].resolve = (
            lambda emulator, info, _t=table, **args: emulator.connection(_t, emulator.rows(_t),
                                                                         args))
        query.fields[f"{table.field}_aggregate"].resolve = (
            lambda emulator, info, _t=table, **args: emulator.aggregates(_t, args.get("filter")))
        mutation.fields[f"{table.field}_create"].resolve = _field_resolver(_create, table)
        mutation.fields[f"{table.field}_update"].resolve = _field_resolver(_update, table)
        mutation.fields[f"{table.field}_delete"].resolve = _field_resolver(
            lambda e, t, args: e.delete(t, args.get("filter")), table)
    order = schema.type_map["Order"]
    assert isinstance(order, graphql.GraphQLObjectType)
    order.fields[JOINDOWN].resolve = (
        lambda row, info, **args: info.root_value.connection(ORDER_LINE, row["_lines"], args))
    return schema
