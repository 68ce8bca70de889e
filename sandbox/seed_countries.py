"""The countries of the sandbox's imagined Nordic business: names, streets, cities, postal
codes and phone numbers, organisation numbers with valid check digits, and addresses, for
:mod:`sandbox.seed`."""

from __future__ import annotations

import dataclasses
import random
import unicodedata
from collections.abc import Callable
from typing import Any


@dataclasses.dataclass(frozen=True)
class Country:
    code: str
    weight: int
    male: tuple[str, ...]
    female: tuple[str, ...]
    surnames_male: tuple[str, ...]
    surnames_female: tuple[str, ...]
    streets: tuple[str, ...]
    places: tuple[tuple[str, str], ...]  # (postal code, city)
    line2: tuple[str, ...]
    company_prefixes: tuple[str, ...]
    company_trades: tuple[str, ...]
    company_pattern: str  # with {prefix}, {trade} and {where} (empty, or " <city>")
    phone: Callable[[random.Random], str]
    org_no: Callable[[random.Random], str]
    vat_no: Callable[[random.Random, str], str]  # from the organisation number
    house: Callable[[random.Random, str], str]


def digits(rng: random.Random, count: int) -> str:
    return "".join(str(rng.randrange(10)) for _ in range(count))


def _weighted_mod11(numbers: str, weights: tuple[int, ...]) -> int:
    return sum(int(digit) * weight
               for digit, weight in zip(numbers, weights, strict=False)) % 11


def _norwegian_org_no(rng: random.Random) -> str:
    while True:
        body = rng.choice("89") + digits(rng, 7)
        check = (11 - _weighted_mod11(body, (3, 2, 7, 6, 5, 4, 3, 2))) % 11
        if check != 10:
            return body + str(check)


def _luhn_check(body: str) -> str:
    total = 0
    for index, digit in enumerate(reversed(body)):
        value = int(digit) * (2 if index % 2 == 0 else 1)
        total += value - 9 if value > 9 else value
    return str((10 - total % 10) % 10)


def _swedish_org_no(rng: random.Random) -> str:
    body = "556" + digits(rng, 6)
    number = body + _luhn_check(body)
    return f"{number[:6]}-{number[6:]}"


def _danish_cvr(rng: random.Random) -> str:
    while True:
        body = str(rng.randrange(1, 10)) + digits(rng, 6)
        check = (-_weighted_mod11(body, (2, 7, 6, 5, 4, 3, 2))) % 11
        if check != 10:
            return body + str(check)


def _finnish_business_id(rng: random.Random) -> str:
    while True:
        body = str(rng.randrange(1, 4)) + digits(rng, 6)
        remainder = _weighted_mod11(body, (7, 9, 10, 5, 8, 4, 2))
        if remainder != 1:
            return f"{body}-{0 if remainder == 0 else 11 - remainder}"


def _german_register_no(rng: random.Random) -> str:
    return f"HRB {rng.randrange(10000, 250000)}"


def _polish_nip(rng: random.Random) -> str:
    while True:
        body = str(rng.randrange(1, 10)) + digits(rng, 8)
        check = _weighted_mod11(body, (6, 5, 7, 2, 3, 4, 5, 6, 7))
        if check != 10:
            number = body + str(check)
            return f"{number[:3]}-{number[3:6]}-{number[6:8]}-{number[8:]}"


COUNTRIES: tuple[Country, ...] = (
    Country(
        code="NO",
        weight=45,
        male=("Ola", "Håkon", "Øystein", "Bjørn", "Sigurd", "Jørgen", "Lars", "Eirik", "Anders",
              "Trond", "Magnus", "Sindre"),
        female=("Kari", "Solveig", "Åse", "Ingrid", "Ragnhild", "Tuva", "Mari", "Siri", "Nora",
                "Marte", "Hege", "Sølvi"),
        surnames_male=("Hansen", "Johansen", "Olsen", "Larsen", "Andersen", "Pedersen", "Nilsen",
                       "Berg", "Haugen",
                       "Hagen", "Bakken", "Sæther", "Løken", "Strøm", "Dahl", "Sørensen", "Ødegård",
                       "Aasen", "Brække"),
        surnames_female=(),
        streets=("Storgata", "Kongens gate", "Thorvald Meyers gate", "Bogstadveien", "Markveien",
                 "Løkkeveien",
                 "Kirkegata", "Torggata", "Strandgaten", "Øvre Holmegate", "Fjordveien",
                 "Skippergata",
                 "Bjørnstjerne Bjørnsons gate", "Kjøpmannsgata", "Sjøgata"),
        places=(("0150", "Oslo"), ("0557", "Oslo"), ("0361", "Oslo"), ("5003", "Bergen"), ("5014",
                                                                                           "Bergen"),
                ("7010", "Trondheim"), ("4006", "Stavanger"), ("9008", "Tromsø"), ("3015",
                                                                                   "Drammen"),
                ("4612", "Kristiansand"), ("2317", "Hamar"), ("1606", "Fredrikstad"), ("6004",
                                                                                       "Ålesund"),
                ("8006", "Bodø"), ("2609", "Lillehammer")),
        line2=("Leilighet H0203", "Leilighet H0101", "2. etasje", "c/o Hansen",
               "Inngang bakgården"),
        company_prefixes=("Fjord", "Nordlys", "Bjørke", "Havgløtt", "Sørlands", "Fjell", "Øyrane",
                          "Trollheimen", "Skårdal",
             "Måkeskjær", "Lysaker", "Vestkyst", "Bakkebø", "Granli", "Stølen", "Åsen"),
        company_trades=("Kaffe", "Interiør", "Bygg", "Bakeri", "Turutstyr", "Sjømat", "Regnskap",
                        "Rør", "Elektro",
             "Design", "Trelast", "Catering"),
        company_pattern="{prefix} {trade}{where} AS",
        phone=lambda rng: (f"+47 {rng.choice('49')}{digits(rng, 2)} {digits(rng, 2)} "
                           f"{digits(rng, 3)}"),
        org_no=_norwegian_org_no,
        vat_no=lambda rng, org: f"NO{org}MVA",
        house=lambda rng,
        street: f"{street} {rng.randrange(1, 120)}{rng.choice(['', '', '', 'A', 'B'])}",
    ),
    Country(
        code="SE",
        weight=20,
        male=("Erik", "Björn", "Lars", "Mikael", "Johan", "Gustav", "Oskar", "Nils", "Sören",
              "Måns"),
        female=("Anna", "Åsa", "Karin", "Elin", "Sofia", "Maja", "Ebba", "Linnéa", "Märta", "Ylva"),
        surnames_male=("Andersson", "Johansson", "Karlsson", "Nilsson", "Eriksson", "Larsson",
                       "Olsson",
                       "Persson", "Svensson", "Gustafsson", "Lindström", "Åkesson", "Sjöberg",
                       "Bergqvist",
                       "Holmgren", "Lindqvist"),
        surnames_female=(),
        streets=("Drottninggatan", "Kungsgatan", "Götgatan", "Storgatan", "Vasagatan", "Sveavägen",
                 "Hornsgatan", "Östra Hamngatan", "Linnégatan", "Södra Förstadsgatan"),
        places=(("111 52", "Stockholm"), ("118 46", "Stockholm"), ("411 05", "Göteborg"), ("211 22",
                                                                                           "Malmö"),
                ("753 20", "Uppsala"), ("702 10", "Örebro"), ("903 26", "Umeå"), ("582 24",
                                                                                  "Linköping")),
        line2=("Lgh 1102", "Lgh 1201", "c/o Lindqvist", "Port 2"),
        company_prefixes=("Bergström & Söner", "Göteborgs", "Älvdalens", "Skärgårdens", "Norrlands",
                          "Åkessons",
             "Lindqvists", "Sjöbergs", "Österlens", "Vänerns"),
        company_trades=("Kafferosteri", "Trä", "Delikatesser", "Friluft", "Blommor", "Design",
                        "Bygg", "Elteknik"),
        company_pattern="{prefix} {trade}{where} AB",
        phone=lambda rng: (f"+46 7{rng.choice('0236')} {digits(rng, 3)} {digits(rng, 2)} "
                           f"{digits(rng, 2)}"),
        org_no=_swedish_org_no,
        vat_no=lambda rng, org: f"SE{org.replace('-', '')}01",
        house=lambda rng, street: f"{street} {rng.randrange(1, 90)}",
    ),
    Country(
        code="DK",
        weight=12,
        male=("Søren", "Frederik", "Rasmus", "Mads", "Jens", "Mikkel", "Anders", "Bjørn"),
        female=("Mette", "Sofie", "Ida", "Freja", "Line", "Signe", "Birthe", "Maja"),
        surnames_male=("Nielsen", "Jensen", "Hansen", "Pedersen", "Andersen", "Christensen",
                       "Larsen",
                       "Sørensen", "Rasmussen", "Jørgensen", "Møller", "Madsen", "Kjær",
                       "Østergaard"),
        surnames_female=(),
        streets=("Nørrebrogade", "Vesterbrogade", "Østerbrogade", "Amagerbrogade", "Jægersborggade",
                 "Søndergade", "Vestergade", "Åboulevard", "Frederiksberg Allé"),
        places=(("2200", "København N"), ("1620", "København V"), ("2100", "København Ø"),
                ("8000", "Aarhus C"),
                ("5000", "Odense C"), ("9000", "Aalborg"), ("6700", "Esbjerg"), ("7100", "Vejle"),
                ("5970", "Ærøskøbing")),
        line2=("2. th.", "st. tv.", "3. mf.", "1. tv."),
        company_prefixes=("Kjær", "Østerbro", "Nørre Vold", "Søndergaard", "Aarhus", "Fyns",
                          "Jyllands", "Møllers"),
        company_trades=("Møbler", "Kaffebar", "Tryk", "Bageri", "Cykler", "Gartneri", "Smørrebrød"),
        company_pattern="{prefix} {trade}{where} ApS",
        phone=lambda rng: (f"+45 {rng.randrange(2, 10)}{digits(rng, 1)} {digits(rng, 2)} "
                           f"{digits(rng, 2)} {digits(rng, 2)}"),
        org_no=_danish_cvr,
        vat_no=lambda rng, org: f"DK{org}",
        house=lambda rng, street: f"{street} {rng.randrange(1, 150)}",
    ),
    Country(
        code="FI",
        weight=8,
        male=("Mikko", "Juha", "Matti", "Jussi", "Ville", "Pekka", "Jyrki"),
        female=("Aino", "Sanna", "Elina", "Päivi", "Hanna", "Tiina", "Sari"),
        surnames_male=("Korhonen", "Virtanen", "Mäkinen", "Nieminen", "Mäkelä", "Hämäläinen",
                       "Laine",
                       "Heikkinen", "Koskinen", "Järvinen"),
        surnames_female=(),
        streets=("Mannerheimintie", "Aleksanterinkatu", "Hämeenkatu", "Läntinen Pitkäkatu",
                 "Kauppakatu",
                 "Yliopistonkatu", "Kyläsaarenkatu"),
        places=(("00100", "Helsinki"), ("00530", "Helsinki"), ("33100", "Tampere"), ("20100",
                                                                                     "Turku"),
                ("90100", "Oulu"), ("40100", "Jyväskylä"), ("02150", "Espoo")),
        line2=("as. 12", "B 22", "A 4"),
        company_prefixes=("Mäkelän", "Järvisen", "Hämeen", "Lapin", "Saariston", "Pohjolan",
                          "Kärkkäisen"),
        company_trades=("Kahvila", "Puutyö", "Retkeily", "Kala", "Leipomo", "Sisustus"),
        company_pattern="{prefix} {trade}{where} Oy",
        phone=lambda rng: f"+358 4{rng.choice('0145')} {digits(rng, 3)} {digits(rng, 4)}",
        org_no=_finnish_business_id,
        vat_no=lambda rng, org: f"FI{org.replace('-', '')}",
        house=lambda rng, street: f"{street} {rng.randrange(1, 80)}",
    ),
    Country(
        code="DE",
        weight=10,
        male=("Jürgen", "Lukas", "Maximilian", "Jörg", "Felix", "Günther", "René", "Björn"),
        female=("Sophie", "Anja", "Katrin", "Lena", "Bärbel", "Jördis", "Renée", "Ute"),
        surnames_male=("Müller", "Schmidt", "Schneider", "Fischer", "Weiß", "Meyer", "Wagner",
                       "Becker",
                       "Schäfer", "Groß", "Köhler", "Strauß", "Krüger", "Hoffmann"),
        surnames_female=(),
        streets=("Hauptstraße", "Schloßstraße", "Bahnhofstraße", "Kurfürstendamm",
                 "Friedrichstraße",
                 "Königsallee", "Maximilianstraße", "Lindenstraße", "Gartenstraße"),
        places=(("10115", "Berlin"), ("10719", "Berlin"), ("80331", "München"), ("20095",
                                                                                 "Hamburg"),
                ("50667", "Köln"), ("60311", "Frankfurt am Main"), ("70173", "Stuttgart"),
                ("40213", "Düsseldorf"), ("01067", "Dresden"), ("04109", "Leipzig")),
        line2=("Hinterhaus", "2. OG", "c/o Müller", "Aufgang B"),
        company_prefixes=("Groß", "Müller & Weiß", "Schäfer", "Köhler", "Strauß", "Krüger",
                          "Weißmann", "Bäcker"),
        company_trades=("Feinkost", "Holzbau", "Outdoor", "Kaffeerösterei", "Möbelwerkstatt",
                        "Gartenbau"),
        company_pattern="{prefix} {trade}{where} GmbH",
        phone=lambda rng: f"+49 1{rng.choice('567')}{digits(rng, 1)} {digits(rng, 8)}",
        org_no=_german_register_no,
        # not derived from HRB
        vat_no=lambda rng, org: f"DE{rng.randrange(1, 10)}{digits(rng, 8)}",
        house=lambda rng, street: f"{street} {rng.randrange(1, 200)}",
    ),
    Country(
        code="PL",
        weight=5,
        male=("Łukasz", "Paweł", "Wojciech", "Michał", "Grzegorz", "Tomasz"),
        female=("Małgorzata", "Agnieszka", "Katarzyna", "Zofia", "Joanna", "Magdalena"),
        surnames_male=("Nowak", "Wiśniewski", "Wójcik", "Kowalczyk", "Kamiński", "Lewandowski",
                       "Zieliński",
                       "Woźniak", "Dąbrowski"),
        surnames_female=("Nowak", "Wiśniewska", "Wójcik", "Kowalczyk", "Kamińska", "Lewandowska",
                         "Zielińska",
                         "Woźniak", "Dąbrowska"),
        streets=("ul. Floriańska", "ul. Marszałkowska", "ul. Długa", "ul. Piotrkowska",
                 "ul. Świętojańska",
                 "ul. Grodzka"),
        places=(("31-019", "Kraków"), ("00-001", "Warszawa"), ("80-831", "Gdańsk"), ("90-001",
                                                                                     "Łódź"),
                ("81-001", "Gdynia"), ("50-001", "Wrocław"), ("61-001", "Poznań")),
        line2=("lok. 4", "lok. 12", "II piętro"),
        company_prefixes=("Łódzka", "Gdańska", "Krakowska", "Wrocławska", "Poznańska"),
        company_trades=("Drukarnia", "Piekarnia", "Kawiarnia", "Stolarnia", "Hurtownia"),
        company_pattern="{trade} {prefix}{where} Sp. z o.o.",
        phone=lambda rng: (f"+48 {rng.choice('5678')}{digits(rng, 2)} {digits(rng, 3)} "
                           f"{digits(rng, 3)}"),
        org_no=_polish_nip,
        vat_no=lambda rng, org: f"PL{org.replace('-', '')}",
        house=lambda rng, street: f"{street} {rng.randrange(1, 60)}/{rng.randrange(1, 30)}",
    ),
)

PERSON_DOMAINS = ("example.com", "example.net", "example.org")
COMPANY_ROLES = ("post", "ordre", "faktura", "kontakt", "innkjop")
_TRANSLITERATION = str.maketrans(
    {"æ": "ae", "ø": "o", "å": "a", "ä": "a", "ö": "o", "ü": "u", "ß": "ss", "ł": "l", "&": "og"}
)


def ascii_slug(text: str, separator: str = ".") -> str:
    """``Bjørn Sæther`` → ``bjorn.saether``: what people do to their names in e-mail addresses."""
    text = unicodedata.normalize("NFKD", text.lower().translate(_TRANSLITERATION))
    text = "".join(char for char in text if not unicodedata.combining(char))
    words = "".join(char if char.isalnum() and char.isascii() else " " for char in text).split()
    return separator.join(words)


def random_address(rng: random.Random, country: Country) -> dict[str, Any]:
    postal_code, city = rng.choice(country.places)
    return {
        "line1": country.house(rng, rng.choice(country.streets)),
        "line2": rng.choice(country.line2) if rng.random() < 0.2 else None,
        "postal_code": postal_code,
        "city": city,
        "country": country.code,
    }
