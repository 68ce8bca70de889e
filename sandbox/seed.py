"""Deterministic seed data for the sandbox emulators: a pure function of the seed.

One imagined Nordic business is generated from ``random.Random(seed)`` and projected into both
systems' wire formats, so the two overlap the way a real webshop and ERP of one company do:

* ``SHARED_CUSTOMERS`` people and companies are in both, with the same e-mail (some fields are
  filled on one side only, phone numbers are sometimes formatted differently);
* ``SHARED_PRODUCTS`` products are in both, with webshop ``sku`` == ERP ``ItemNo`` and the same
  GTIN (ERP-only items are numbered ``IT-10001``…; a few shared prices differ);
* ``SHARED_ORDERS`` webshop orders are also in the ERP under the same number, for shared
  customers and products only.

Values are realistic for Norway, Sweden, Denmark, Finland, Germany and Poland (addresses,
phone numbers, organisation numbers with valid check digits, GTIN-13 with valid check digits),
with non-ASCII names, emoji in some product descriptions and one right-to-left name. Timestamps
are spread over the 90 days before :data:`SEED_END`.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime
import functools
import random
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

from sandbox.seed_countries import (
    COMPANY_ROLES,
    COUNTRIES,
    PERSON_DOMAINS,
    Country,
    ascii_slug,
    digits,
    random_address,
)

SEED_END = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
SEED_WINDOW = datetime.timedelta(days=90)

WEBSHOP_CUSTOMERS, ERP_CUSTOMERS, SHARED_CUSTOMERS = 300, 250, 40
WEBSHOP_PRODUCTS, ERP_PRODUCTS, SHARED_PRODUCTS = 200, 200, 30
WEBSHOP_ORDERS, ERP_ORDERS, SHARED_ORDERS = 250, 200, 5
#: Webshop rows seeded as soft-deleted (never shared, never referenced by an order).
DELETED_CUSTOMERS, DELETED_PRODUCTS, DELETED_ORDERS = 4, 3, 2

VAT_CODES = {25: "3", 15: "31", 12: "33", 0: "5"}
ORDER_STATUS_TO_ERP = {
    "pending": "Open",
    "processing": "Released",
    "shipped": "Shipped",
    "completed": "Invoiced",
    "cancelled": "Cancelled",
}


def webshop_seed(seed: int) -> dict[str, list[dict[str, Any]]]:
    """Custom Webshop entities per resource (orders without their computed ``total``)."""
    return copy.deepcopy(_generate(seed)[0])


def erp_seed(seed: int) -> dict[str, list[dict[str, Any]]]:
    """Custom ERP entities per resource."""
    return copy.deepcopy(_generate(seed)[1])

@dataclasses.dataclass(frozen=True)
class WebshopOverlap:
    """The webshop records another system's seed shares (same match keys): some orders, and
    the customers and products they use, topped up to the wanted counts."""

    orders: list
    customer_ids: list
    product_ids: list
    customers: dict      # every live webshop customer by id
    products: dict       # every live webshop product by id


def webshop_overlap(seed: int, *, orders: int, customers: int, products: int,
                    last_orders: bool = False) -> WebshopOverlap:
    """Which live webshop records (of ``webshop_seed(seed)``) an ERP seed also holds: the first
    (or, with ``last_orders``, the last) ``orders`` orders whose customer and products are live,
    their customers and products first, then more up to ``customers`` and ``products``."""
    live = {kind: [row for row in rows if not row["deleted"]]
            for kind, rows in webshop_seed(seed).items()}
    by_customer = {row["id"]: row for row in live["customers"]}
    by_product = {row["id"]: row for row in live["products"]}
    usable = [order for order in live["orders"]
              if order["customer_id"] in by_customer
              and all(line["product_id"] in by_product for line in order["lines"])]
    shared = usable[-orders:] if last_orders else usable[:orders]
    customer_ids = list(dict.fromkeys(o["customer_id"] for o in shared))
    product_ids = list(dict.fromkeys(line["product_id"] for o in shared for line in o["lines"]))
    for ids, rows, wanted in ((customer_ids, live["customers"], customers),
                              (product_ids, live["products"], products)):
        for row in rows:
            if len(ids) >= wanted:
                break
            if row["id"] not in ids:
                ids.append(row["id"])
    return WebshopOverlap(shared, customer_ids, product_ids, by_customer, by_product)


# --------------------------------------------------------------------------------------------
# Customers


@dataclasses.dataclass(eq=False)
class Party:
    """A customer as the business knows it, before it is written into either system."""

    first_name: str
    last_name: str
    email: str
    phone: str | None
    address: dict[str, Any]
    company: str | None = None
    org_no: str | None = None
    vat_no: str | None = None


def customer_name(row: dict[str, Any]) -> str:
    """A webshop customer's name as an ERP keeps it: the company, else first and last name."""
    return row["company_name"] or f"{row['first_name'] or ''} {row['last_name'] or ''}".strip()


def party_name(party: Party) -> str:
    """A party's name as an ERP keeps it: the company, else first and last name."""
    return party.company or f"{party.first_name} {party.last_name}"


def parties_not_in_shop(rng: random.Random, shop: dict[str, Any],
                        company_share: float) -> Iterator[Party]:
    """New parties (endless) whose e-mails no customer of the webshop seed ``shop`` has: the
    ERP-only customers of an ERP seed."""
    shop_emails = {row["email"].lower() for row in shop["customers"]}
    parties = _Parties(rng)
    while True:
        party = parties.make(company_share=company_share)
        if party.email.lower() not in shop_emails:
            yield party


def items_not_in_shop(rng: random.Random, shop: dict[str, Any], count: int) -> Iterator[Item]:
    """New products whose GTINs no product of the webshop seed ``shop`` has, from a pool of
    ``2 × count`` drawn at once: the ERP-only items of an ERP seed."""
    shop_gtins = {row["gtin"] for row in shop["products"] if row["gtin"]}
    return (item for item in _items(rng, count * 2) if item.gtin not in shop_gtins)


class _Parties:
    """Generates distinct people and companies (unique e-mails and company names)."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.emails: set[str] = set()
        self.companies: set[str] = set()

    def _unique_email(self, local: str, domain: str) -> str:
        email, suffix = f"{local}@{domain}", 1
        while email in self.emails:
            suffix += 1
            email = f"{local}{suffix}@{domain}"
        self.emails.add(email)
        return email

    def _company_name(self, country: Country, city: str) -> tuple[str, str]:
        """A new company name and its e-mail domain; the city is added once names run short."""
        rng = self.rng
        for attempt in range(40):
            parts = {
                "prefix": rng.choice(country.company_prefixes),
                "trade": rng.choice(country.company_trades),
                "where": f" {city}" if attempt >= 10 else "",
            }
            name = country.company_pattern.format(**parts)
            if name not in self.companies:
                self.companies.add(name)
                return name, ascii_slug("{prefix} {trade}{where}".format(**parts), "") + ".example"
        raise RuntimeError(f"ran out of company names for {country.code}")

    def make(self, company_share: float) -> Party:
        rng = self.rng
        country = rng.choices(COUNTRIES, weights=[c.weight for c in COUNTRIES])[0]
        female = rng.random() < 0.5
        first = rng.choice(country.female if female else country.male)
        last = rng.choice(country.surnames_female if female and country.surnames_female
                          else country.surnames_male)
        address = random_address(rng, country)
        phone = country.phone(rng) if rng.random() < 0.85 else None
        if rng.random() >= company_share:
            email = self._unique_email(ascii_slug(f"{first} {last}"), rng.choice(PERSON_DOMAINS))
            return Party(first, last, email, phone, address)
        company, domain = self._company_name(country, address["city"])
        org_no = country.org_no(rng)
        email = self._unique_email(rng.choice(COMPANY_ROLES), domain)
        return Party(first, last, email, phone, address, company, org_no, country.vat_no(rng,
                                                                                         org_no))

    def rtl_person(self) -> Party:
        """One customer whose name is written right to left."""
        address = {"line1": "Tøyengata 31", "line2": None, "postal_code": "0578", "city": "Oslo",
                   "country": "NO"}
        return Party("ليلى", "حداد", self._unique_email("laila.haddad", "example.com"),
                     "+47 934 12 870", address)


# --------------------------------------------------------------------------------------------
# Products


@dataclasses.dataclass(eq=False)
class Item:
    """A product as the business knows it."""

    category: str
    name: str
    description: str
    price: Decimal
    cost: Decimal | None
    vat_rate: int
    unit: str
    gtin: str = ""
    sku: str = ""


@dataclasses.dataclass(frozen=True)
class Group:
    """Products of one kind: their names, price range (whole NOK) and sales unit."""

    names: tuple[str, ...]
    price_range: tuple[int, int]
    unit: str = "pcs"


@dataclasses.dataclass(frozen=True)
class Category:
    """A product category: SKU prefix, VAT rate, description sentences and its emoji."""

    code: str
    vat_rate: int
    lines: tuple[str, ...]
    emoji: str
    groups: tuple[Group, ...]


def _expand(template: str, *choices: tuple[str, ...]) -> tuple[str, ...]:
    """Every combination of ``choices`` put into ``template`` (``{0}``, ``{1}``, …)."""
    names = [template]
    for index, options in enumerate(choices):
        names = [name.replace(f"{{{index}}}", option) for name in names for option in options]
    return tuple(names)


_COLOURS = ("grå", "rød", "blå", "natur", "skogsgrønn", "sennepsgul")
_PATTERNS = ("Fjellrype", "Rosemaling", "Marius", "Selbu", "Nordlys", "Fjord")
_ORIGINS = ("Etiopia Yirgacheffe", "Colombia Huila", "Kenya Nyeri AA", "Brasil Cerrado",
            "Guatemala Antigua",
            "Rwanda Huye", "Costa Rica Tarrazú", "Peru Cajamarca")
_ROASTS = ("lysbrent", "mellombrent", "mørkbrent")

CATEGORIES: tuple[Category, ...] = (
    Category(
        "KAF", 15,
        ("Ferskbrent i Oslo hver uke.", "Smaker av karamell, nøtter og mørk sjokolade.",
         "Passer til filter og presskanne.", "Direkte handel med små gårder.",
         "Økologisk sertifisert."),
        "☕",
        (
            Group(_expand("Kaffe {0}, {1}, 250 g", _ORIGINS, _ROASTS), (119, 189)),
            Group(_expand("Kaffe {0}, {1}, 500 g", _ORIGINS, _ROASTS), (219, 329)),
            Group(_expand("Kaffe {0}, {1}, 1 kg", _ORIGINS, _ROASTS), (389, 549)),
            Group(_expand("{0} {1}", ("Grønn te Sencha", "Earl Grey øko", "Rooibos vanilje",
                                      "Chai krydderte",
                                      "Hvit te Pai Mu Tan", "Fjellte med blåbær"), ("100 g",
                                                                                    "250 g")), (69,
                                                                                                199)),
        ),
    ),
    Category(
        "MAT", 15,
        ("Laget etter tradisjonell oppskrift.", "Uten tilsetningsstoffer.",
         "Fra små produsenter i Norge.",
         "Perfekt til frokostbordet.", "Holdbar i 12 måneder uåpnet."),
        "🍫",
        (
            Group(("Brunost Gudbrandsdalen 500 g", "Flatbrød tynt 300 g", "Multebærsyltetøy 350 g",
                   "Müsli økologisk 750 g", "Sjokolade 70 % kakao 100 g", "Salt lakris 150 g",
                   "Tyttebærsyltetøy 400 g", "Knekkebrød rug 280 g", "Honning fra Hardanger 350 g",
                   "Sennep grov 200 g", "Krumkaker 12 stk", "Lefser med kanel 6 stk",
                   "Fenalår skivet 100 g",
                   "Jordbærsaft 0,5 l", "Havregryn lettkokt 1 kg", "Rømmegrøt 450 g",
                   "Geitost mild 250 g",
                   "Kanelboller 6 stk", "Sild i tomat 160 g", "Tørrfisk fra Lofoten 200 g",
                   "Æbleskiver 20 stk"),
                  (29, 189)),
            Group(("Brunost Gudbrandsdalen, løsvekt", "Røkelaks skivet, løsvekt",
                   "Spekemat fra Voss, løsvekt"),
                  (189, 459), unit="kg"),
        ),
    ),
    Category(
        "TEX", 25,
        ("Strikket av 100 % norsk ull.", "Vaskes på ullprogram, 30 °C.", "Myk og varm, klør ikke.",
         "Designet i Bergen.", "Tåler vær og vind."),
        "🧶",
        (
            Group(_expand("Ullpledd {0} 130×170 cm, {1}", _PATTERNS, _COLOURS), (899, 1899)),
            Group(_expand("Strikket lue {0}, {1}", _PATTERNS, _COLOURS), (249, 549)),
            Group(_expand("Genser {0}, {1}, str. {2}", ("Marius", "Setesdal", "Fana"), ("dame",
                                                                                        "herre"),
                          ("XS", "S", "M", "L", "XL", "XXL")), (1299, 2499)),
            Group(_expand("Ullsokker {0}, str. {1}", ("tursokk", "hyttesokk", "lett"), ("36–40",
                                                                                        "41–45")),
                  (149, 299)),
            Group(_expand("Ullstoff metervare, {0}", _COLOURS), (149, 329), unit="m"),
        ),
    ),
    Category(
        "KJK", 25,
        ("Håndlaget i Norge.", "Tåler oppvaskmaskin.", "Livstidsgaranti.",
         "Oljes jevnlig med matolje.",
         "Gir perfekt resultat hver gang."),
        "🔥",
        (
            Group(_expand("Kaffekopp håndlaget {0}, {1}", ("20 cl", "30 cl"),
                          ("hvit", "skiferblå", "mosegrønn", "sand")), (149, 299)),
            Group(_expand("Støpejernsgryte {0}", ("2,5 l", "4 l", "6 l")), (1299, 2499)),
            Group(_expand("Skjærebrett {0} {1}", ("eik", "bjørk", "valnøtt"), ("30×20 cm",
                                                                               "40×25 cm")), (299,
                                                                                              699)),
            Group(_expand("Kokkekniv {0} {1}", ("Santoku", "Gyuto", "Nakiri"), ("16 cm", "18 cm",
                                                                                "21 cm")),
                  (799, 1999)),
            Group(_expand("Ostehøvel {0}", ("stål", "messing",
                                            "eik")) + ("Kaffefilter nr. 4, 100 stk",), (39, 399)),
            Group(_expand("Kaffekjele emalje {0}", ("1,5 l", "2,5 l")) + _expand("Presskanne {0}",
                                                                                 ("0,35 l", "1 l"))
                  + ("Kaffekvern manuell, stål",), (299, 899)),
        ),
    ),
    Category(
        "TUR", 25,
        ("Testet på Hardangervidda.", "Lett og robust.", "Laget for nordisk klima.",
         "Perfekt til hytta og fjellet.", "Vekt oppgitt uten emballasje."),
        "🏔️",
        (
            Group(_expand("Bålpanne Ø{0} cm", ("50", "60", "70", "80")), (799, 1999)),
            Group(_expand("Sovepose dun {0}, {1}", ("−5 °C", "−10 °C", "−20 °C"), ("regular",
                                                                                   "long")),
                  (1999, 4999)),
            Group(_expand("Termos {0}, {1}", ("0,5 l", "0,75 l", "1 l"), ("svart", "grønn",
                                                                          "oransje"))
                  + _expand("Turstol lett, {0}", ("svart", "grønn", "blå"))
                  + _expand("Kuksa bjørk, {0}", ("liten", "stor")), (249, 599)),
            Group(_expand("Hodelykt {0} lm", ("200", "400", "750")), (399, 1299)),
            Group(_expand("Ryggsekk {0} l, {1}", ("20", "30", "45", "65"), ("svart", "grønn",
                                                                            "rød")), (799, 2999)),
            Group(_expand("Ullundertøy {0}, {1}, str. {2}", ("trøye", "bukse"), ("dame", "herre"),
                          ("S", "M", "L")),
                  (499, 899)),
        ),
    ),
    Category(
        "INT", 25,
        ("Skaper hygge i hjemmet.", "Munnblåst og unik.", "Naturlige materialer.",
         "Lages i små serier."),
        "🕯️",
        (
            Group(_expand("Lysestake {0}, {1}", ("messing", "jern", "eik"), ("15 cm", "25 cm")),
                  (199, 699)),
            Group(_expand("Putetrekk {0} 50×50 cm, {1}", _PATTERNS, ("grå", "natur", "blå", "rød")),
                  (249, 449)),
            Group(_expand("Saueskinn {0}", ("hvit", "grå", "brun", "sort")), (899, 1499)),
            Group(_expand("Vase munnblåst, {0}", ("klar", "røyk", "grønn", "rav")), (399, 999)),
            Group(_expand("Duftlys {0}", ("einer", "bjørk", "lyng", "tyttebær", "havbris")), (99,
                                                                                              249)),
        ),
    ),
    Category(
        "BOK", 0,
        ("Innbundet, 240 sider.", "Rikt illustrert.", "På norsk.", "Signert av forfatteren."),
        "📚",
        (
            Group(_expand("Kokebok: {0}", ("Nordisk hverdagsmat", "Fra fjord til bord",
                                           "Bakst fra bestemor",
                                           "Sopp i norsk natur", "Kaffe og kaker"))
                  + _expand("Turguide: {0}", ("Jotunheimen", "Lofoten", "Rondane", "Hardangervidda",
                                              "Trollheimen", "Femundsmarka"))
                  + _expand("Barnebok: {0}", ("Trollskogen", "Månen og reven"))
                  + ("Strikkebok: Mønstre fra Selbu",), (199, 449)),
        ),
    ),
    Category(
        "OPL", 12,
        ("Gyldig i 12 måneder.", "Leveres som e-billett.", "Kan ikke refunderes."),
        "🎟️",
        (
            Group(("Kinobillett gavekort", "Museumsbillett Vikingtidsmuseet, voksen",
                   "Fjordcruise Nærøyfjorden, voksen", "Fjordcruise Nærøyfjorden, barn",
                   "Gavekort hurtigbåt Bergen–Stavanger", "Flåmsbana tur/retur, voksen",
                   "Fornøyelsespark dagspass, barn", "Museumsbillett Munchmuseet, voksen"), (99,
                                                                                             899)),
        ),
    ),
)

_GTIN_PREFIXES = ("70", "73", "57", "64", "40", "59")


def gtin13(body12: str) -> str:
    """A GTIN-13 with its check digit."""
    total = sum(int(digit) * (3 if index % 2 else 1) for index, digit in enumerate(body12))
    return body12 + str((10 - total % 10) % 10)


def _price(rng: random.Random, low: int, high: int) -> Decimal:
    """Shop-like prices: 249.00, 89.90, 129.50."""
    whole = rng.randrange(low, high + 1)
    return Decimal(f"{whole}.{rng.choice(['00', '00', '00', '50', '90'])}")


def _items(rng: random.Random, count: int) -> list[Item]:
    """``count`` distinct products with unique GTINs, in random order."""
    pool = [(category, group,
             name) for category in CATEGORIES for group in category.groups for name in group.names]
    chosen = rng.sample(pool, count)
    gtins: set[str] = set()
    items = []
    for category, group, name in chosen:
        sentences = rng.sample(category.lines, min(len(category.lines), rng.randrange(2, 4)))
        description = " ".join(sentences)
        if rng.random() < 0.12:
            description = f"{category.emoji} {description}"
        price = _price(rng, *group.price_range)
        cost = (price * Decimal(rng.randrange(35, 65)) / 100).quantize(Decimal("0.01"))
        gtin = ""
        while not gtin or gtin in gtins:
            gtin = gtin13(rng.choice(_GTIN_PREFIXES) + digits(rng, 10))
        gtins.add(gtin)
        items.append(Item(category.code, name, description, price, cost, category.vat_rate,
                          group.unit, gtin))
    return items


# --------------------------------------------------------------------------------------------
# Timestamps and orders


def _timestamps(rng: random.Random, count: int) -> list[datetime.datetime]:
    """``count`` distinct instants in the seed window, in random order."""
    span = int(SEED_WINDOW.total_seconds() * 1_000_000)
    offsets = rng.sample(range(span), count)
    start = SEED_END - SEED_WINDOW
    return [start + datetime.timedelta(microseconds=offset) for offset in offsets]


def _stamp(moment: datetime.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


WEBSHOP_STATUSES = ("pending", "processing", "shipped", "completed", "cancelled")
ERP_STATUSES = ("Open", "Released", "Shipped", "Invoiced", "Cancelled")


def _status_for_age(rng: random.Random, modified: datetime.datetime, statuses: tuple[str,
                                                                                     ...]) -> str:
    """Orders move one stage on about every ten days; 5 % are cancelled. ``statuses`` runs
    from new to done, then "cancelled"."""
    if rng.random() < 0.05:
        return statuses[-1]
    age_days = (SEED_END - modified).total_seconds() / 86400
    return statuses[min(len(statuses) - 2, int(age_days / 10 + rng.random()))]


@dataclasses.dataclass(eq=False)
class Sale:
    """An order as the business knows it: lines of (item, quantity, discount percent)."""

    party: Party
    lines: list[tuple[Item, int, Decimal]]
    modified: datetime.datetime
    order_date: datetime.date
    discount_total: Decimal
    number: str = ""
    status: str = ""


def _sale(rng: random.Random, party: Party, items: list[Item], modified: datetime.datetime,
          max_qty: int) -> Sale:
    chosen = rng.sample(items, rng.randrange(1, 6))
    lines = [
        (item, rng.randrange(1, max_qty + 1), Decimal(rng.choice(["0", "0", "0", "0", "10", "15"])))
        for item in chosen
    ]
    subtotal = sum(item.price * qty for item, qty, _ in lines)
    discount = (Decimal(rng.choice(["50.00", "100.00"])) if subtotal > 800 and rng.random() < 0.1
                else Decimal("0.00"))
    placed = max(modified - datetime.timedelta(hours=rng.randrange(0, 72)), SEED_END - SEED_WINDOW)
    order_date = placed.date()
    return Sale(party, lines, modified, order_date, discount)


# --------------------------------------------------------------------------------------------
# The business, and its projection into the two systems


@dataclasses.dataclass
class _Business:
    """Everything generated from one seed, before projection."""

    shared_parties: list[Party]
    shop_parties: list[Party]
    erp_parties: list[Party]
    shared_items: list[Item]
    shop_items: list[Item]  # the shared ones first
    erp_items: list[Item]  # the shared ones first


def _business(rng: random.Random) -> _Business:
    parties = _Parties(rng)
    shared = [parties.make(company_share=0.25) for _ in range(SHARED_CUSTOMERS)]
    for index, party in enumerate(shared):  # see _shared_variant
        country = next(c for c in COUNTRIES if c.code == party.address["country"])
        party.phone = party.phone or country.phone(rng)
        if index % 7 == 3:
            party.address["line2"] = party.address["line2"] or rng.choice(country.line2)
    shop = [parties.make(company_share=0.15)
            for _ in range(WEBSHOP_CUSTOMERS - SHARED_CUSTOMERS - 1)]
    shop.insert(rng.randrange(DELETED_CUSTOMERS, len(shop)), parties.rtl_person())
    erp = [parties.make(company_share=0.55) for _ in range(ERP_CUSTOMERS - SHARED_CUSTOMERS)]

    items = _items(rng, WEBSHOP_PRODUCTS + ERP_PRODUCTS - SHARED_PRODUCTS)
    shop_items, erp_only = items[:WEBSHOP_PRODUCTS], items[WEBSHOP_PRODUCTS:]
    serial: dict[str, int] = {}
    for item in shop_items:
        serial[item.category] = serial.get(item.category, 1000) + 1
        item.sku = f"{item.category}-{serial[item.category]}"
    for number, item in enumerate(erp_only, start=10001):
        item.sku = f"IT-{number}"
    shared_items = shop_items[:SHARED_PRODUCTS]
    return _Business(shared, shop, erp, shared_items, shop_items, shared_items + erp_only)


def _shared_variant(index: int) -> set[str]:
    """How the two systems' copies of shared customer ``index`` differ."""
    variant = {
        0: {"phone only in webshop"},
        1: {"phone only in erp"},
        2: {"erp phone without spaces"},
    }.get(index % 5, set())
    if index % 7 == 3:
        variant.add("line2 only in webshop")
    if index % 3 == 0:
        variant.add("vat number only in erp")
    return variant


@functools.lru_cache(maxsize=8)
def _generate(seed: int) -> tuple[dict[str, list[dict[str, Any]]], dict[str, list[dict[str, Any]]]]:
    rng = random.Random(seed)
    business = _business(rng)
    webshop, shared_sales = _webshop_data(rng, business)
    return webshop, _erp_data(rng, business, shared_sales)


def _webshop_data(rng: random.Random, business: _Business) -> tuple[dict[str, list[dict[str, Any]]],
                                                                    list[Sale]]:
    """The webshop's entities, and the sales that are also in the ERP."""
    stamps = iter(_timestamps(rng, WEBSHOP_CUSTOMERS + WEBSHOP_PRODUCTS + WEBSHOP_ORDERS))
    variants = {party: _shared_variant(index) for index,
                party in enumerate(business.shared_parties)}
    deleted_parties = set(business.shop_parties[:DELETED_CUSTOMERS])
    parties = business.shared_parties + business.shop_parties
    rng.shuffle(parties)
    customer_ids = {party: f"cus_{index:06d}" for index, party in enumerate(parties, start=1)}
    customers = []
    for party in parties:
        variant = variants.get(party, set())
        customers.append({
            "id": customer_ids[party],
            "email": party.email,
            "first_name": party.first_name,
            "last_name": party.last_name,
            "company_name": party.company,
            "phone": None if "phone only in erp" in variant else party.phone,
            "vat_number": None if "vat number only in erp" in variant else party.vat_no,
            "address": dict(party.address),
            "updated_at": _stamp(next(stamps)),
            "deleted": party in deleted_parties,
        })

    deleted_items = set(business.shop_items[-DELETED_PRODUCTS:])
    items = list(business.shop_items)
    rng.shuffle(items)
    product_ids = {item: f"prd_{index:06d}" for index, item in enumerate(items, start=1)}
    products = []
    for item in items:
        own = item not in business.shared_items  # shared ones always have GTIN and cost
        products.append({
            "id": product_ids[item],
            "sku": item.sku,
            "gtin": None if own and rng.random() < 0.08 else item.gtin,
            "name": item.name,
            "description": item.description,
            "price": str(item.price),
            "cost": None if own and rng.random() < 0.15 else str(item.cost),
            "currency": "NOK",
            "vat_rate": f"{item.vat_rate}.00",
            "stock_quantity": rng.randrange(0, 250),
            "updated_at": _stamp(next(stamps)),
            "deleted": item in deleted_items,
        })

    live_parties = [party for party in parties if party not in deleted_parties]
    live_items = [item for item in business.shop_items if item not in deleted_items]
    shared_sales = [
        _sale(rng, rng.choice(business.shared_parties), business.shared_items, next(stamps), 3)
        for _ in range(SHARED_ORDERS)
    ]
    own_sales = [
        _sale(rng, rng.choice(live_parties), live_items, next(stamps), 4)
        for _ in range(WEBSHOP_ORDERS - SHARED_ORDERS)
    ]
    deleted_sales = set(own_sales[-DELETED_ORDERS:])
    sales = sorted(shared_sales + own_sales, key=lambda sale: (sale.order_date, sale.modified))
    orders = []
    for index, sale in enumerate(sales, start=1):
        sale.number = str(10000 + index)
        sale.status = _status_for_age(rng, sale.modified, WEBSHOP_STATUSES)
        shipping = dict(sale.party.address)
        if rng.random() < 0.15:  # sent to another address in the same country
            country = next(c for c in COUNTRIES if c.code == shipping["country"])
            shipping = random_address(rng, country)
        orders.append({
            "id": f"ord_{index:06d}",
            "number": sale.number,
            "customer_id": customer_ids[sale.party],
            "status": sale.status,
            "currency": "NOK",
            "order_date": sale.order_date.isoformat(),
            "billing_address": dict(sale.party.address),
            "shipping_address": shipping,
            "lines": [
                {
                    "product_id": product_ids[item],
                    "sku": item.sku,
                    "name": item.name,
                    "quantity": str(qty),
                    "unit_price": str(item.price),
                    "discount_percent": str(discount),
                    "vat_rate": f"{item.vat_rate}.00",
                }
                for item, qty, discount in sale.lines
            ],
            "discount_total": str(sale.discount_total),
            "total": None,  # computed by the emulator, as for any write
            "updated_at": _stamp(sale.modified),
            "deleted": sale in deleted_sales,
        })
    return {"customers": customers, "products": products, "orders": orders}, shared_sales


def _erp_data(rng: random.Random, business: _Business, shared_sales: list[Sale]
              ) -> dict[str, list[dict[str, Any]]]:
    stamps = iter(_timestamps(rng, ERP_CUSTOMERS + ERP_PRODUCTS + ERP_ORDERS))
    variants = {party: _shared_variant(index) for index,
                party in enumerate(business.shared_parties)}
    parties = business.shared_parties + business.erp_parties
    rng.shuffle(parties)
    customer_nos = {party: f"C{number}" for number, party in enumerate(parties, start=10001)}
    customers = []
    for party in parties:
        variant = variants.get(party, set())
        phone = party.phone
        if "phone only in webshop" in variant:
            phone = None
        elif "erp phone without spaces" in variant:
            phone = phone.replace(" ", "")
        address = party.address
        customers.append({
            "CustomerNo": customer_nos[party],
            "Name": party_name(party),
            "OrgNo": party.org_no,
            "Email": party.email,
            "Phone": phone,
            "Street": address["line1"],
            "Street2": None if "line2 only in webshop" in variant else address["line2"],
            "ZipCode": address["postal_code"],
            "City": address["city"],
            "CountryCode": address["country"],
            "ModifiedAt": _stamp(next(stamps)),
        })

    repriced = set(rng.sample(business.shared_items, 5))  # the ERP has a newer price
    items = list(business.erp_items)
    rng.shuffle(items)
    products = []
    for item in items:
        price = item.price
        if item in repriced:
            price = (price * Decimal("1.1")).quantize(Decimal("1")) - Decimal("0.10")
        products.append({
            "ItemNo": item.sku,
            "Description": item.name,
            "Gtin": None if item not in business.shared_items and rng.random() < 0.2 else item.gtin,
            "SalesPrice": price,
            "CostPrice": item.cost,
            "VatCode": VAT_CODES[item.vat_rate],
            "StockQty": rng.randrange(0, 500),
            "Unit": item.unit,
            "ModifiedAt": _stamp(next(stamps)),
        })
    prices = {product["ItemNo"]: product["SalesPrice"] for product in products}

    orders = []
    for sale in shared_sales:  # imported from the webshop some minutes after it was placed
        delay = datetime.timedelta(minutes=rng.randrange(5, 120))
        modified = (sale.modified + delay if sale.modified + delay < SEED_END
                    else sale.modified - delay)
        webshop_prices = {item.sku: item.price for item, _, _ in sale.lines}
        orders.append(_erp_order(sale, sale.number, customer_nos[sale.party], modified,
                                 f"Nettbutikk {sale.number}", ORDER_STATUS_TO_ERP[sale.status],
                                 webshop_prices))
    own_sales = sorted(
        (_sale(rng, rng.choice(parties), business.erp_items, next(stamps), 20)
         for _ in range(ERP_ORDERS - SHARED_ORDERS)),
        key=lambda sale: (sale.order_date, sale.modified),
    )
    for number, sale in enumerate(own_sales, start=100001):
        reference = rng.choice([None, None, f"PO {rng.randrange(1000, 9999)}",
                                f"Bestilling {sale.order_date:%Y-%m}"])
        status = _status_for_age(rng, sale.modified, ERP_STATUSES)
        orders.append(_erp_order(sale, f"SO-{number}", customer_nos[sale.party], sale.modified,
                                 reference, status, prices))
    return {"Customers": customers, "Products": products, "Orders": orders}


def _erp_order(
    sale: Sale,
    order_no: str,
    customer_no: str,
    modified: datetime.datetime,
    reference: str | None,
    status: str,
    prices: dict[str, Decimal],
) -> dict[str, Any]:
    return {
        "OrderNo": order_no,
        "CustomerNo": customer_no,
        "OrderDate": sale.order_date.isoformat(),
        "Currency": "NOK",
        "Reference": reference,
        "Status": status,
        "Lines": [
            {
                "ItemNo": item.sku,
                "Description": item.name,
                "Qty": qty,
                "UnitPrice": prices[item.sku],
                "DiscountPct": int(discount),
            }
            for item, qty, discount in sale.lines
        ],
        "ModifiedAt": _stamp(modified),
    }
