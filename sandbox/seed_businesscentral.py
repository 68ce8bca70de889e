"""Deterministic seed data of the Business Central emulator: a pure function of the seed.

One company with :data:`CUSTOMERS` customers, :data:`ITEMS` items and :data:`ORDERS` sales
orders with lines, overlapping the webshop seed (:func:`sandbox.seed.webshop_seed`) the way an
ERP and the webshop of one business do:

* :data:`SHARED_CUSTOMERS` customers have a webshop customer's e-mail (their other fields are
  the webshop's, cut to BC's lengths; some phone numbers are missing on one side);
* :data:`SHARED_ITEMS` items are numbered with a webshop product's SKU and carry its GTIN (a few
  prices differ);
* :data:`SHARED_ORDERS` sales orders carry a webshop order number as ``externalDocumentNumber``,
  for shared customers and items.

Everything else is generated with the webshop seed's own generators (Nordic names, addresses,
GTIN-13 with check digits), so every value fits the ``$metadata`` (types and ``MaxLength``).
Entities hold only the properties seeded; the emulator fills in the rest and the amounts.
"""

from __future__ import annotations

import datetime
import random
import uuid
from decimal import Decimal
from typing import Any

from sandbox import seed as webshop

CUSTOMERS, ITEMS, ORDERS = 200, 150, 150
SHARED_CUSTOMERS, SHARED_ITEMS, SHARED_ORDERS = 30, 25, 4
#: BC's tax group for each webshop VAT rate (the dataflow maps one to the other)
TAX_GROUPS = {"25.00": "VAT25", "15.00": "VAT15", "12.00": "VAT12", "0.00": "VAT0"}
_LENGTHS = {"displayName": 100, "addressLine1": 100, "addressLine2": 50, "city": 30,
            "postalCode": 20, "country": 10, "phoneNumber": 30, "email": 80}
_SEED_SALT = 0xBC


def _guid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _fit(entity: dict[str, Any]) -> dict[str, Any]:
    """Cut strings to BC's MaxLength (BC would refuse longer ones) and blank ``None``s."""
    return {name: ("" if value is None else value[:_LENGTHS[name]] if name in _LENGTHS else value)
            for name, value in entity.items()}


def _customer(rng: random.Random, number: int, email: str, name: str, phone, address,
              stamp: datetime.datetime) -> dict[str, Any]:
    return _fit({
        "id": _guid(rng), "number": f"C{number}", "displayName": name, "type": "Company",
        "addressLine1": address.get("line1"), "addressLine2": address.get("line2"),
        "city": address.get("city"), "postalCode": address.get("postal_code"),
        "country": address.get("country"), "phoneNumber": phone, "email": email,
        "currencyCode": "NOK", "blocked": "_x0020_",
        "lastModifiedDateTime": webshop._stamp(stamp),
    })


def businesscentral_seed(seed: int) -> dict[str, list[dict[str, Any]]]:
    """The company's customers, items and sales orders (lines under ``salesOrderLines``)."""
    rng = random.Random(seed * 1000 + _SEED_SALT)
    shop = webshop.webshop_seed(seed)
    stamps = iter(webshop._timestamps(rng, CUSTOMERS + ITEMS + ORDERS))
    overlap = webshop.webshop_overlap(seed, orders=SHARED_ORDERS, customers=SHARED_CUSTOMERS,
                                      products=SHARED_ITEMS)
    shared_orders, shop_customers, shop_products = (overlap.orders, overlap.customers,
                                                    overlap.products)
    shared_customer_ids, shared_product_ids = overlap.customer_ids, overlap.product_ids

    customers, by_shop_customer = [], {}
    for index, shop_id in enumerate(shared_customer_ids):
        row = shop_customers[shop_id]
        name = webshop.customer_name(row)
        phone = None if index % 5 == 1 else row["phone"]
        customer = _customer(rng, 10000 + index + 1, row["email"], name, phone,
                             row["address"] or {},
                             next(stamps))
        customers.append(customer)
        by_shop_customer[shop_id] = customer
    parties = webshop.parties_not_in_shop(rng, shop, company_share=0.7)
    while len(customers) < CUSTOMERS:
        party = next(parties)
        customers.append(_customer(rng, 10000 + len(customers) + 1, party.email,
                                   webshop.party_name(party), party.phone, party.address,
                                   next(stamps)))

    items, by_shop_product = [], {}
    for index, shop_id in enumerate(shared_product_ids):
        row = shop_products[shop_id]
        price = Decimal(row["price"]) + (Decimal(10) if index % 6 == 5 else 0)
        item = _item(rng, row["sku"], row["name"], price, row["cost"], row["gtin"],
                     TAX_GROUPS[row["vat_rate"]], Decimal(row["stock_quantity"] or 0), next(stamps))
        items.append(item)
        by_shop_product[shop_id] = item
    for generated in webshop.items_not_in_shop(rng, shop, ITEMS):
        if len(items) >= ITEMS:
            break
        items.append(_item(rng, str(1000 + len(items)), generated.name, generated.price,
                           generated.cost, generated.gtin, TAX_GROUPS[f"{generated.vat_rate}.00"],
                           Decimal(rng.randrange(0, 300)), next(stamps)))

    orders = []
    for index, shop_order in enumerate(shared_orders):
        lines = [(by_shop_product[line["product_id"]], Decimal(line["quantity"]),
                  Decimal(line["discount_percent"] or 0)) for line in shop_order["lines"]]
        orders.append(_order(rng, 101001 + index, by_shop_customer[shop_order["customer_id"]],
                             lines, shop_order["number"], shop_order["order_date"], next(stamps)))
    while len(orders) < ORDERS:
        customer = rng.choice(customers[SHARED_CUSTOMERS:])
        chosen = rng.sample(items[SHARED_ITEMS:], rng.randrange(1, 5))
        lines = [(item, Decimal(rng.randrange(1, 6)), Decimal(rng.choice(["0", "0", "5", "10"])))
                 for item in chosen]
        stamp = next(stamps)
        orders.append(_order(rng, 101001 + len(orders), customer, lines, "",
                             (stamp - datetime.timedelta(days=rng.randrange(0,
                                                                            5))).date().isoformat(),
                             stamp))
    return {"customers": customers, "items": items, "salesOrders": orders}


def _item(rng: random.Random, number: str, name: str, price: Decimal, cost, gtin,
          tax_group: str, inventory: Decimal, stamp: datetime.datetime) -> dict[str, Any]:
    return {
        "id": _guid(rng), "number": number, "displayName": name[:100], "type": "Inventory",
        "gtin": gtin or "", "unitPrice": Decimal(price), "unitCost": Decimal(cost or 0),
        "inventory": inventory, "taxGroupCode": tax_group, "baseUnitOfMeasureCode": "STK",
        "lastModifiedDateTime": webshop._stamp(stamp),
    }


def _order(rng: random.Random, number: int, customer: dict[str, Any], lines, external: str,
           order_date: str, stamp: datetime.datetime) -> dict[str, Any]:
    order_id = _guid(rng)
    return {
        "id": order_id, "number": f"S-ORD{number}", "externalDocumentNumber": external,
        "orderDate": order_date, "postingDate": order_date,
        "customerId": customer["id"], "customerNumber": customer["number"],
        "customerName": customer["displayName"], "billToCustomerId": customer["id"],
        "billToCustomerNumber": customer["number"], "billToName": customer["displayName"],
        **{f"{prefix}{suffix}": customer[source]
           for prefix in ("sellTo", "billTo", "shipTo")
           for suffix, source in (("AddressLine1", "addressLine1"), ("AddressLine2",
                                                                     "addressLine2"),
                                  ("City", "city"), ("Country", "country"),
                                  ("PostCode", "postalCode"))},
        "currencyCode": "NOK", "status": "Open", "email": customer["email"],
        "lastModifiedDateTime": webshop._stamp(stamp),
        "salesOrderLines": [
            {"id": _guid(rng), "documentId": order_id, "sequence": 10000 * (index + 1),
             "lineType": "Item", "itemId": item["id"], "lineObjectNumber": item["number"],
             "description": item["displayName"], "unitOfMeasureCode": "STK",
             "quantity": quantity, "unitPrice": item["unitPrice"], "discountPercent": discount,
             "taxPercent": Decimal(25), "_version": 1}
            for index, (item, quantity, discount) in enumerate(lines)
        ],
    }
