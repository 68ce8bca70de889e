"""Deterministic seed data of the Exact Online emulator: a pure function of the seed.

One division with :data:`ACCOUNTS` customer accounts, :data:`ITEMS` items and :data:`ORDERS`
sales orders with lines, overlapping the webshop seed (:func:`sandbox.seed.webshop_seed`) the
way an ERP and the webshop of one business do:

* :data:`SHARED_ACCOUNTS` accounts have a webshop customer's e-mail (a few without the phone);
* :data:`SHARED_ITEMS` items are coded with a webshop product's SKU and carry its GTIN as the
  barcode (a few prices differ);
* :data:`SHARED_ORDERS` sales orders carry a webshop order number as ``YourRef``, for shared
  accounts and items.

Entities hold only the properties seeded, in the emulator's stored form (money as ``Decimal``,
date-times as ISO 8601 UTC); the emulator fills in the rest and pads the codes.
"""

from __future__ import annotations

import datetime
import random
import uuid
from decimal import Decimal
from typing import Any

from sandbox import seed as webshop

ACCOUNTS, ITEMS, ORDERS = 40, 30, 20
SHARED_ACCOUNTS, SHARED_ITEMS, SHARED_ORDERS = 12, 10, 3
#: the division's sales VAT code for each webshop VAT rate (the dataflow maps one to the other)
VAT_CODES = {"25.00": "1", "15.00": "2", "12.00": "3", "0.00": "0"}
#: sales order numbers the division has used up to (Exact numbers orders itself)
FIRST_ORDER_NUMBER = 500001
_SEED_SALT = 0xE7AC


def _guid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _account(rng: random.Random, code: int, email: str, name: str, phone, vat, address,
             stamp: datetime.datetime) -> dict[str, Any]:
    return {
        "ID": _guid(rng), "Code": str(code), "Name": name[:50], "Status": "C",
        "Email": email, "Phone": phone or None, "VATNumber": vat or None,
        "AddressLine1": address.get("line1"), "AddressLine2": address.get("line2"),
        "Postcode": address.get("postal_code"), "City": address.get("city"),
        "Country": address.get("country"), "SalesCurrency": "NOK",
        "Created": webshop._stamp(stamp), "Modified": webshop._stamp(stamp),
    }


def _item(rng: random.Random, code: str, name: str, extra, price, cost, barcode, vat: str,
          stock: Decimal, stamp: datetime.datetime) -> dict[str, Any]:
    return {
        "ID": _guid(rng), "Code": code, "Description": name[:60], "ExtraDescription": extra,
        "Barcode": barcode or None, "StandardSalesPrice": Decimal(price),
        "CostPriceStandard": Decimal(cost or 0), "SalesVatCode": vat, "Stock": stock,
        "IsSalesItem": True, "IsStockItem": True, "Unit": "pc",
        "Created": webshop._stamp(stamp), "Modified": webshop._stamp(stamp),
    }


def exact_seed(seed: int) -> dict[str, list[dict[str, Any]]]:
    """The division's accounts, items and sales orders (lines under ``SalesOrderLines``)."""
    rng = random.Random(seed * 1000 + _SEED_SALT)
    shop = webshop.webshop_seed(seed)
    stamps = iter(webshop._timestamps(rng, ACCOUNTS + ITEMS + ORDERS))
    overlap = webshop.webshop_overlap(seed, orders=SHARED_ORDERS, customers=SHARED_ACCOUNTS,
                                      products=SHARED_ITEMS, last_orders=True)

    accounts, by_shop_customer = [], {}
    for index, shop_id in enumerate(overlap.customer_ids):
        row = overlap.customers[shop_id]
        name = webshop.customer_name(row)
        phone = None if index % 4 == 1 else row["phone"]
        account = _account(rng, 1000 + index + 1, row["email"], name, phone, row["vat_number"],
                           row["address"] or {}, next(stamps))
        accounts.append(account)
        by_shop_customer[shop_id] = account
    parties = webshop.parties_not_in_shop(rng, shop, company_share=0.8)
    while len(accounts) < ACCOUNTS:
        party = next(parties)
        accounts.append(_account(rng, 1000 + len(accounts) + 1, party.email,
                                 webshop.party_name(party), party.phone, None, party.address,
                                 next(stamps)))

    items, by_shop_product = [], {}
    for index, shop_id in enumerate(overlap.product_ids):
        row = overlap.products[shop_id]
        price = Decimal(row["price"]) + (Decimal(10) if index % 5 == 4 else 0)
        item = _item(rng, row["sku"], row["name"], row["description"], price, row["cost"],
                     row["gtin"], VAT_CODES[row["vat_rate"]], Decimal(row["stock_quantity"] or 0),
                     next(stamps))
        items.append(item)
        by_shop_product[shop_id] = item
    for generated in webshop.items_not_in_shop(rng, shop, ITEMS):
        if len(items) >= ITEMS:
            break
        items.append(_item(rng, str(70000 + len(items)), generated.name, None, generated.price,
                           generated.cost, generated.gtin, VAT_CODES[f"{generated.vat_rate}.00"],
                           Decimal(rng.randrange(0, 300)), next(stamps)))

    orders = []
    for shop_order in overlap.orders:
        lines = [(by_shop_product[line["product_id"]], Decimal(line["quantity"]),
                  Decimal(line["unit_price"])) for line in shop_order["lines"]]
        orders.append(_order(rng, FIRST_ORDER_NUMBER + len(orders),
                             by_shop_customer[shop_order["customer_id"]], lines,
                             shop_order["number"], shop_order["order_date"], next(stamps)))
    while len(orders) < ORDERS:
        account = rng.choice(accounts[SHARED_ACCOUNTS:])
        chosen = rng.sample(items[SHARED_ITEMS:], rng.randrange(1, 4))
        lines = [(item, Decimal(rng.randrange(1, 6)), item["StandardSalesPrice"])
                 for item in chosen]
        stamp = next(stamps)
        ordered = (stamp - datetime.timedelta(days=rng.randrange(0, 5))).date().isoformat()
        orders.append(_order(rng, FIRST_ORDER_NUMBER + len(orders), account, lines, None,
                             ordered, stamp))
    return {"Accounts": accounts, "Items": items, "SalesOrders": orders}


def _order(rng: random.Random, number: int, account: dict[str, Any], lines, your_ref,
           order_date: str, stamp: datetime.datetime) -> dict[str, Any]:
    order_id = _guid(rng)
    return {
        "OrderID": order_id, "OrderNumber": number, "YourRef": your_ref,
        "OrderDate": f"{order_date}T00:00:00.000000Z", "OrderedBy": account["ID"],
        "DeliverTo": account["ID"], "InvoiceTo": account["ID"], "Currency": "NOK",
        "Created": webshop._stamp(stamp), "Modified": webshop._stamp(stamp),
        "SalesOrderLines": [
            {"ID": _guid(rng), "OrderID": order_id, "LineNumber": index + 1, "Item": item["ID"],
             "Description": item["Description"], "Quantity": quantity, "UnitPrice": price,
             "VATCode": item["SalesVatCode"]}
            for index, (item, quantity, price) in enumerate(lines)
        ],
    }
