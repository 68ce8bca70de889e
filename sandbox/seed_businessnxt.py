"""Deterministic seed data of the Business NXT emulator: a pure function of the seed.

One company with :data:`ADDRESSES` address rows (the customers), :data:`PRODUCTS` products and
:data:`ORDERS` orders with lines, overlapping the webshop seed (:func:`sandbox.seed.webshop_seed`)
the way an ERP and the webshop of one business do:

* :data:`SHARED_ADDRESSES` addresses have a webshop customer's e-mail (a person's address row
  is named after the person; some phone numbers are missing on one side);
* :data:`SHARED_PRODUCTS` products are numbered with a webshop product's SKU (a few prices
  differ);
* :data:`SHARED_ORDERS` orders carry a webshop order number as ``customerOrderNo``, for shared
  customers and products.

Rows are in BNXT's wire form: integer dates (``yyyymmdd``), ``countryNo`` numbers
(:data:`COUNTRY_NUMBERS`), money as ``Decimal``; the emulator adds the utility columns.

A company that keeps its customers in ``associate`` (decision 0014) has the same parties as
associates: associate *n* is customer ``10000 + n`` (orders name that number), and
:data:`SUPPLIERS` more associates are suppliers only (``customerNo`` 0), which a customer read
must leave out.
"""

from __future__ import annotations

import datetime
import random
from decimal import Decimal
from typing import Any

from sandbox import seed as webshop

ADDRESSES, PRODUCTS, ORDERS, SUPPLIERS = 200, 150, 150, 12
SHARED_ADDRESSES, SHARED_PRODUCTS, SHARED_ORDERS = 30, 25, 4
#: ISO 3166-1 alpha-2 → the company's country numbers (the international dialling code, as
#: Visma Business installations number their Country rows; the dataflow maps one to the other)
COUNTRY_NUMBERS = {"NO": 47, "SE": 46, "DK": 45, "FI": 358, "DE": 49, "PL": 48}
#: the company's currency numbers (ISO 4217 numeric)
CURRENCY_NUMBERS = {"NOK": 578, "SEK": 752, "DKK": 208, "EUR": 978}
_SEED_SALT = 0xB7
#: an associate's customer number: the first customer is 10001 (the first number a company
#: without customers gets suggested is 10000, sandbox.businessnxt_model.FIRST_NUMBER)
CUSTOMER_NUMBERS_FROM = 10000


def _date(text: str) -> int:
    day = datetime.date.fromisoformat(text)
    return day.year * 10000 + day.month * 100 + day.day


def _address(number: int, email: str, name: str, phone: str | None, address: dict,
             stamp: datetime.datetime, employees: int | None) -> dict[str, Any]:
    return {
        "addressNo": number, "name": name[:80], "emailAddress": email, "phone": phone,
        "mobilePhone": None, "addressLine1": address.get("line1"),
        "addressLine2": address.get("line2"), "postCode": address.get("postal_code"),
        "postalArea": address.get("city"), "countryNo": COUNTRY_NUMBERS[address["country"]],
        "noOfEmployees": employees, "changedTimestamp": webshop._stamp(stamp),
    }


def _product(number: str, name: str, price: Decimal, cost, stamp: datetime.datetime) -> dict:
    return {"productNo": number, "description": name[:80], "salesPrice1": Decimal(price),
            "costPrice": Decimal(cost) if cost is not None else None,
            "changedTimestamp": webshop._stamp(stamp)}


def _order(number: int, customer: dict, lines: list, external: str | None, order_date: str,
           stamp: datetime.datetime) -> dict[str, Any]:
    return {
        "orderNo": number, "orderDate": _date(order_date), "customerNo": customer["addressNo"],
        "customerOrderNo": external, "name": customer["name"], "currencyNo": 578,
        "changedTimestamp": webshop._stamp(stamp),
        "orderLines": [
            {"orderNo": number, "lineNo": index, "productNo": product["productNo"],
             "description": product["description"], "quantity": quantity,
             "priceInCurrency": product["salesPrice1"], "discountPercent1": discount}
            for index, (product, quantity, discount) in enumerate(lines, start=1)
        ],
    }


def _associate(address: dict[str, Any]) -> dict[str, Any]:
    """The party of an address row as an associate that is a customer."""
    number = address["addressNo"]
    row = {key: value for key, value in address.items()
           if key not in ("addressNo", "noOfEmployees")}
    return {"associateNo": number, "customerNo": CUSTOMER_NUMBERS_FROM + number,
            "supplierNo": 0, "shortName": address["name"][:30], **row}


def _supplier(number: int, index: int, stamp: str) -> dict[str, Any]:
    """An associate that is a supplier only (not a customer: ``customerNo`` 0)."""
    return {"associateNo": number, "customerNo": 0, "supplierNo": 50001 + index,
            "name": f"Leverandør {index + 1} AS", "shortName": f"LEV{index + 1}",
            "emailAddress": f"post@leverandor{index + 1}.example", "phone": None,
            "mobilePhone": None, "addressLine1": f"Industriveien {index + 1}",
            "addressLine2": None, "postCode": "0581", "postalArea": "Oslo", "countryNo": 47,
            "changedTimestamp": stamp}


def businessnxt_seed(seed: int, customer_table: str = "address") -> dict[str, list[dict[str,
                                                                                       Any]]]:
    """The company's customers (``address`` rows, or ``associate`` rows), products and orders
    (lines under ``orderLines``)."""
    rng = random.Random(seed * 1000 + _SEED_SALT)
    shop = webshop.webshop_seed(seed)
    stamps = iter(webshop._timestamps(rng, ADDRESSES + PRODUCTS + ORDERS))
    overlap = webshop.webshop_overlap(seed, orders=SHARED_ORDERS, customers=SHARED_ADDRESSES,
                                      products=SHARED_PRODUCTS, last_orders=True)
    shared_orders, shop_customers, shop_products = (overlap.orders, overlap.customers,
                                                    overlap.products)
    shared_customers, shared_products = overlap.customer_ids, overlap.product_ids

    addresses, by_customer = [], {}
    for index, shop_id in enumerate(shared_customers):
        row = shop_customers[shop_id]
        name = webshop.customer_name(row)
        phone = None if index % 6 == 2 else row["phone"]
        address = _address(1 + index, row["email"], name, phone, row["address"], next(stamps),
                           rng.choice([None, 5, 12, 40]) if row["company_name"] else None)
        addresses.append(address)
        by_customer[shop_id] = address
    parties = webshop.parties_not_in_shop(rng, shop, company_share=0.6)
    while len(addresses) < ADDRESSES:
        party = next(parties)
        addresses.append(_address(
            len(addresses) + 1, party.email, webshop.party_name(party),
            party.phone, party.address, next(stamps),
            rng.randrange(1, 250) if party.company else None))

    products, by_product = [], {}
    for index, shop_id in enumerate(shared_products):
        row = shop_products[shop_id]
        price = Decimal(row["price"]) + (Decimal(20) if index % 7 == 6 else 0)
        product = _product(row["sku"], row["name"], price, row["cost"], next(stamps))
        products.append(product)
        by_product[shop_id] = product
    shop_skus = {row["sku"] for row in shop["products"]}
    for item in webshop._items(rng, PRODUCTS * 2):
        if len(products) >= PRODUCTS:
            break
        number = f"V{5000 + len(products)}"
        if number not in shop_skus:
            products.append(_product(number, item.name, item.price, item.cost, next(stamps)))

    orders = []
    for shop_order in shared_orders:
        lines = [(by_product[line["product_id"]], Decimal(line["quantity"]),
                  Decimal(line["discount_percent"] or 0)) for line in shop_order["lines"]]
        orders.append(_order(1001 + len(orders), by_customer[shop_order["customer_id"]], lines,
                             shop_order["number"], shop_order["order_date"], next(stamps)))
    while len(orders) < ORDERS:
        customer = rng.choice(addresses[SHARED_ADDRESSES:])
        chosen = rng.sample(products[SHARED_PRODUCTS:], rng.randrange(1, 5))
        lines = [(p, Decimal(rng.randrange(1, 8)), Decimal(rng.choice(["0", "0", "5", "10"])))
                 for p in chosen]
        stamp = next(stamps)
        order_date = (stamp - datetime.timedelta(days=rng.randrange(0, 5))).date().isoformat()
        orders.append(_order(1001 + len(orders), customer, lines, None, order_date, stamp))
    if customer_table == "associate":
        associates = [_associate(row) for row in addresses]
        associates += [_supplier(len(associates) + 1 + index, index, row["changedTimestamp"])
                       for index, row in enumerate(addresses[:SUPPLIERS])]
        for order in orders:
            order["customerNo"] += CUSTOMER_NUMBERS_FROM
        return {"associate": associates, "product": products, "order": orders}
    return {"address": addresses, "product": products, "order": orders}
