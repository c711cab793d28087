"""Addresses: street lines (US and European), PO boxes, postcodes, cities next to them.

* Street lines: a number and up to four words ending in a street suffix (US/UK postal
  abbreviations: ``Street``, ``Ave``, ``Mews``...); European shapes with the street word
  first or fused (``ul. Konopnickiej 268``, ``Schulzstr. 690``, ``Järnvägsgatan 228``,
  ``12 rue de la Paix``, ``C/ Mayor 5``, ``Via Roma 12``), flats and floors before them
  (``Flat 84f``); any line after an address cue word (``Address:``, ``Adresse``...).
* Postcodes per country shape (UK, CA, NL, PL, PT, BR, SE/CZ/SK/GR, 4- and 5-digit) next
  to a city word, a street line or a postcode cue; the city after a postcode is a
  ``LOCATION``.

Suffixes and street words are the postal vocabulary of each language, not a list of
street names (nothing here knows any street, city or person).
"""

from __future__ import annotations

import re

from veil.transforms.text.recognizers.base import LOWER, UPPER, Finding, Pattern

_U, _L = f"[{UPPER}]", f"[{LOWER}]"
_WORD = f"{_U}[{LOWER}{UPPER}'’.\\-]{{0,30}}"

_STREET_SUFFIX = (
    r"(?:(?:Street|Avenue|Road|Boulevard|Lane|Drive|Court|Place|Way|Terrace|Circle|Circles|"
    r"Parkway|Highway|Square|Trail|Loop|Alley|Row|Crescent|Close|Plaza|Path|Pike|Run|Walk|"
    r"Point|Ridge|Heights|Hollow|Mews|Gardens|Grove|Green|Hill|Rise|View|Vale|Park|Gate|"
    r"Wharf|Yard|Parade|Drove|Wynd|Brae|Fields|Meadow|Meadows|Glen|Cove|Creek|Crossing|"
    r"Estate|Estates|Junction|Pass|Port|Ports|Shores?|Springs?|Station|Summit|Turnpike|"
    r"Valley|Vista|Villages?|Wells?|Manor|Lodge|Bank|Side|End|Common|Passage|Causeway|"
    r"Embankment|Quay|Broadway|Freeway|Expressway|Bypass|Circus|Hills|Islands?|Lakes?|"
    r"Landing|Mills?|Orchard|Pines|Plains|Ranch|Squares|Streets|Tunnel|Union|Viaduct|"
    r"Falls|Ferry|Fork|Forks|Harbou?r|Haven|Isle|Keys?|Knolls?|Locks?|Mountains?|Neck|"
    r"Oval|Prairie|Radial|Rapids?|Rest|Route|Shoals?|Spur|Stream|Throughway|Trace|"
    r"Track|Trafficway|Underpass|Ville|Wall)\b"
    r"|(?:St|Ave|Rd|Blvd|Ln|Dr|Ct|Pl|Ter|Cir|Pkwy|Hwy|Sq|Trl|Cres|Gdns|Gr|Pde|Esp)\b\.?)"
)
_STATES = (
    "AL|AK|AZ|AR|CA|CO|CT|DE|DC|FL|GA|HI|ID|IL|IN|IA|KS|KY|LA|ME|MD|MA|MI|MN|MS|MO|MT|NE|NV|"
    "NH|NJ|NM|NY|NC|ND|OH|OK|OR|PA|RI|SC|SD|TN|TX|UT|VT|VA|WA|WV|WI|WY|PR"
)
_UNIT = (
    r"(?:Flat|Apartment|Apt|Unit|Suite|Ste|Studio|Room|Floor|Fl|Wohnung|Whg|Etage|"
    r"Appartement|Appt|Piso|Puerta|Interno|Int|Scala|lok|m|#)\.?\s{0,2}#?[A-Za-z0-9\-/]{1,8}"
)
_HOUSE = r"\d{1,6}[A-Za-z]?(?:[\-/]\d{1,5}[A-Za-z]?)?"
_US_STREET = re.compile(
    r"(?:\b" + _UNIT + r",?\s{1,3})?"
    r"\b" + _HOUSE + r"\s{1,3}"
    r"(?:(?:N|S|E|W|NE|NW|SE|SW|North|South|East|West)\.?\s{1,3})?"
    r"(?:(?:\d{1,3}(?:st|nd|rd|th)|"
    + _WORD
    + r")\s{1,3}){1,4}"
    + _STREET_SUFFIX
    + r"(?:\s{1,3}(?:N|S|E|W|NE|NW|SE|SW)\b\.?)?"
    r"(?:,?\s{1,3}" + _UNIT + r")?"
    r"(?:,\s{0,3}" + _U + _L + r"+(?:\s" + _U + _L + r"+){0,2})?"
    r"(?:,?\s{1,3}(?:" + _STATES + r")\b)?"
    r"(?:,?\s{1,3}\d{5}(?:-\d{4})?)?"
)
# "Schulzstr. 690", "Järnvägsgatan 228", "Kerkstraat 12", "Nørregade 4", "Hauptstraße 5a".
_FUSED_STREET = re.compile(
    r"\b" + _U + r"[" + LOWER + UPPER + r"\-]{1,40} ?"
    r"(?i:straße|strasse|str\.|weg|gasse|platz|allee|ring|damm|ufer|steig|chaussee|"
    r"gatan|gata|vägen|väg|gränd|torget|stigen|backen|gade|vej|veien|vegen|gate|gaten|"
    r"straat|laan|plein|gracht|kade|singel|dijk|steeg|pad|"
    r"katu|tie|kuja|polku|utca|ulica|ulice|ulici|iela|gatvė|tänav|boulevard|alléen|allé)"
    r"\s{0,3}(?:Nr\.?\s{0,2})?" + _HOUSE + r"\b"
)
# Street word first: "ul. Konopnickiej 268", "Via Roma 12", "C/ Mayor, 5", "Rua Augusta 27".
_WORD_FIRST_STREET = re.compile(
    r"(?i:\b(?:ul|al|os|pl|ulica|aleja|osiedle|plac|skwer|rondo|calle|c/|avda|avenida|av|plaza|pza|paseo|"
    r"camino|carrer|carretera|ronda|travesía|via|viale|piazza|piazzale|corso|vicolo|largo|"
    r"strada|contrada|rua|travessa|estrada|praça|praca|alameda|rue|avenue|boulevard|bd|"
    r"chemin|impasse|allée|allee|quai|route|cours|place|square|straße|strasse|"
    r"náměstí|namesti|třída|trida|nábřeží|utca|út|tér|odos|leoforos)\b\.?|C/)"
    r"\s{0,3}(?:(?:de|del|de la|de las|de los|da|do|dos|das|di|della|delle|dei|degli|du|"
    r"des|de l'|d'|la|le|les|san|santa|sant'|st\.?|ste\.?)\s{1,3})?"
    r"(?:"
    + _WORD
    + r"|\d{1,2}\.?)(?:[ \-](?:(?:de|del|da|do|di|du|la|le|des|dos)\s)?"
    + _WORD
    + r"){0,4},?\s{0,3}(?:(?:n[º°o]\.?|nr\.?|no\.?|num\.?|#)\s{0,2})?"
    + _HOUSE
    + r"\b"
    r"(?:\s{0,3}(?:bis|ter|[a-z]\b))?(?:,?\s{1,3}" + _UNIT + r")?"
)
# House number first with the street word after it: "12 rue de la Paix", "5, Avenue Foch".
_NUMBER_FIRST_STREET = re.compile(
    r"\b" + _HOUSE + r"(?:\s{0,2}(?:bis|ter))?,?\s{1,3}"
    r"(?i:rue|avenue|av\.|boulevard|bd|chemin|impasse|allée|quai|route|cours|place|"
    r"via|viale|piazza|calle|rua|ulica|ul\.)"
    r"\s{1,3}(?:(?:de la|de l'|du|des|de|d'|di|della|del|da|do)\s{0,3})?"
    + _WORD
    + r"(?:[ \-]"
    + _WORD
    + r"){0,3}"
)
_FUSED_WORD = (
    r"\b" + _U + r"[" + LOWER + UPPER + r"\-]{1,40} ?"
    r"(?i:straße|strasse|str\.|weg|gasse|platz|allee|ring|damm|ufer|steig|chaussee|"
    r"gatan|gata|vägen|väg|gränd|torget|stigen|backen|gade|vej|veien|vegen|gate|gaten|"
    r"straat|laan|plein|gracht|kade|singel|dijk|steeg|pad|"
    r"katu|tie|kuja|polku|utca|ulica|ulice|ulici|iela|gatvė|tänav|boulevard|alléen|allé)\b\.?"
)
# "09 Idrottsgränd", "12 Hauptstraße": the number before a fused street word.
_NUMBER_FUSED_STREET = re.compile(r"\b" + _HOUSE + r",?\s{1,3}" + _FUSED_WORD)
# A flat, suite or floor on its own ("Suite 862", "Apt. 923", "Flat 8").
_UNIT_ALONE = re.compile(
    r"\b(?:Flat|Apartment|Apt|Unit|Suite|Ste|Studio|Wohnung|Whg|Appartement|Appt|Piso|"
    r"Puerta|Interno|Lokal|Piano|Appartamento|H\.\s?No|House\s+No|m\.)\.?\s{0,2}#?\d{1,5}[A-Za-z]?\b"
)
# US-style "City ST 12345" and a postcode ending an address line after a place name.
_STATE_ZIP = re.compile(r"(?<=\b[A-Z]{2} )\d{5}(?:-\d{4})?\b")
_LINE_END_POSTCODE = re.compile(
    r"(?m)(?<=[" + LOWER + r")] )(?:\d{4,6}|\d{2}-\d{3}|\d{3} \d{2}|\d{4} ?[A-Z]{2}|"
    r"\d{5}-\d{3}|\d{4}-\d{3})(?=[ \t]*(?:$|\\n))"
)
# "Iklanberény 9634", "LYCKSELE 921 61", "Apeldoorn 7312 RH": a place, then a postcode.
_CITY_POSTCODE = re.compile(
    r"(?<![\w\-])(?P<city>" + _U + r"[" + LOWER + UPPER + r"'\-]{1,40}"
    r"(?:[ \-](?:" + _U + r"|de|la|le|del|am|an|der)[" + LOWER + UPPER + r"'\-]{0,40}){0,3})"
    r"(?:[ ,]{1,2}|-(?=\d{6}))(?P<v>\d{5}-\d{3}|\d{4}-\d{3}|\d{2}-\d{3}|\d{3} \d{2}|\d{4} ?[A-Z]{2}|\d{3,6})"
    r"(?=[ \t]*(?:$|[\n,;:)]|\\n|\.(?:\s|$)|\s[" + LOWER + r"]))"
)
_PO_BOX = re.compile(
    r"(?i)\b(?:P\.?\s?O\.?\s*Box|Post Office Box|Postfach|BP|Boîte postale|Apartado|"
    r"Casella postale|Skrytka pocztowa|Box)\s{1,3}\d{1,7}\b"
)
# After an address cue, the rest of the line (up to 100 characters) is the address.
_ADDRESS_LINE = re.compile(
    r"(?im)\b(?:address|addr|adresse|anschrift|wohnort|indirizzo|dirección|direccion|"
    r"domicilio|endereço|endereco|morada|adres|adress|osoite|cím|bydliště|adresa|"
    r"lives at|living at|resides at|residing at|ship to|deliver to|shipping to|"
    r"mailing address|home address|billing address)\b\s{0,3}[:\-]?\s{0,3}"
    r"(?P<v>[^\s:][^\n;|]{4,100}?)(?=\s*(?:\n|;|\||\.?\s*$|\.\s|,\s*(?:and|or|phone|tel|e-?mail)\b))"
)
_CITY_STATE = re.compile(
    r"\b" + _U + _L + r"+(?:[ \-]" + _U + _L + r"+){0,2},\s{0,3}(?:" + _STATES + r")\b"
    r"(?:\s{1,3}\d{5}(?:-\d{4})?)?"
)
_CITY = (
    r"(?P<city>" + _U + r"[" + LOWER + r"\-]{1,30}(?:[ \-](?:am|an|der|sur|en|upon|on|"
    r"nad|pod)?\s?" + _U + r"[" + LOWER + r"\-]{1,30}){0,2})"
)
# Postcode shapes that name a country on their own: UK, Canada, the Netherlands.
_POSTCODE_STRONG = re.compile(
    r"\b(?:[A-Z]{1,2}\d[A-Z\d]?\s?\d[ABD-HJLNP-UW-Z]{2}"  # UK
    r"|[ABCEGHJ-NPRSTVXY]\d[ABCEGHJ-NPRSTV-Z]\s?\d[ABCEGHJ-NPRSTV-Z]\d"  # Canada
    r"|[1-9]\d{3}\s?(?!SA|SD|SS)[A-Z]{2}(?=\s{1,3}" + _U + r"))\b"  # NL before a city
)
# Digit postcodes need a city after them, a street line or comma before, or a cue.
_POSTCODE_CITY = re.compile(
    r"(?<![\w\-./,])(?:(?:[A-Z]{1,2}|[A-Z]{2}-)?-?)(?P<v>"
    r"\d{2}-\d{3}"  # PL
    r"|\d{4}-\d{3}"  # PT
    r"|\d{5}-\d{3}"  # BR
    r"|\d{3}\s\d{2}"  # SE, CZ, SK, GR
    r"|\d{4,6}"  # AT BE CH DK NO HU LU AU (4), DE FR IT ES FI HR EE US (5), IN (6)
    r")\s{1,3}" + _CITY + r"(?![\w])"
)
_POSTCODE_CUE = re.compile(
    r"(?i)\b(?:zip(?:\s*code)?|postal\s*code|post\s*code|postcode|plz|cep|cap|code postal|"
    r"c\.?p\.?|kod pocztowy|psč|postnummer|postinumero|pin(?:\s*code)?|irsz)"
    r"\s{0,3}[:#]?\s{0,3}(?P<v>[A-Z0-9]{2,6}(?:[ \-][A-Z0-9]{2,4})?)\b"
)
_STREET_BEFORE = re.compile(r"(?:\d[A-Za-z]?|\b[A-Z][a-z]+\.?),\s{0,3}$")

PATTERNS: tuple[Pattern, ...] = (
    Pattern("street", "STREET_ADDRESS", _US_STREET, 0.9),
    Pattern("street-fused", "STREET_ADDRESS", _FUSED_STREET, 0.85),
    Pattern("street-word-first", "STREET_ADDRESS", _WORD_FIRST_STREET, 0.8),
    Pattern("street-number-first", "STREET_ADDRESS", _NUMBER_FIRST_STREET, 0.8),
    Pattern("po-box", "STREET_ADDRESS", _PO_BOX, 0.8),
    Pattern("street-number-fused", "STREET_ADDRESS", _NUMBER_FUSED_STREET, 0.8),
    Pattern("unit", "STREET_ADDRESS", _UNIT_ALONE, 0.6),
    # A postcode alone on its line (the last line of an address block).
    Pattern(
        "postcode-line",
        "ZIP_CODE",
        re.compile(
            r"(?m)^[ \t>]*(?!(?:19|20)\d\d[ \t]*$)(?P<v>\d{4,6}|\d{2}-\d{3}|\d{3} \d{2}|\d{4}-\d{3}|\d{5}-\d{3}|"
            r"\d{4} ?[A-Z]{2}|[A-Z]{1,2}\d[A-Z\d]? ?\d[A-Z]{2})[ \t]*$"
        ),
        0.4,
        group="v",
    ),
    # A place in capitals after a locative word ("grew up in HUNDVÅG", "from CAIRNESS").
    Pattern(
        "place-capitals",
        "LOCATION",
        re.compile(
            r"\b(?:in|from|to|near|at|of|city)\s{1,3}(?P<v>[" + UPPER + r"]{4,}"
            r"(?:[ \-'][" + UPPER + r"]{2,}){0,3})(?![" + LOWER + r"])"
        ),
        0.4,
        group="v",
        needs_digit=False,
    ),
    # A region code after a city: "Saronno (VA)", "Machado / MG".
    Pattern(
        "region-code",
        "LOCATION",
        re.compile(r"(?<=[" + LOWER + r"] )(?:\((?P<v>[A-Z]{2})\)|/ (?P<w>[A-Z]{2})(?![\w/]))"),
        0.4,
        validate=lambda m: (0.4, "LOCATION", "v" if m.group("v") else "w"),
        needs_digit=False,
    ),
    Pattern("state-zip", "ZIP_CODE", _STATE_ZIP, 0.6),
    Pattern("postcode-line-end", "ZIP_CODE", _LINE_END_POSTCODE, 0.5),
    Pattern("address-line", "STREET_ADDRESS", _ADDRESS_LINE, 0.6, group="v", needs_digit=False),
    Pattern("city-state", "LOCATION", _CITY_STATE, 0.6, needs_digit=False),
    Pattern("postcode", "ZIP_CODE", _POSTCODE_STRONG, 0.6),
    Pattern("postcode-cue", "ZIP_CODE", _POSTCODE_CUE, 0.8, group="v"),
)

#: Capitalised words after a number that are not cities ("5 Minutes", "2024 Annual").
_NOT_CITY = frozenset(
    "minutes minute hours hour days day weeks week months month years year people persons "
    "items units pieces times euro euros eur usd dollars pounds gbp chf sek pln czk kr mg ml "
    "kg km cm mm tablets pills doses annual report results january february march april may "
    "june july august september october november december mon tue wed thu fri sat sun "
    "monday tuesday wednesday thursday friday saturday sunday gmt utc cet cest pm am".split()
)


_NOT_CITY_BEFORE = frozenset(
    "room page chapter section table figure version v step item line flight gate order "
    "invoice ticket case the a an in on at of and or no nr number total top windows iphone "
    "suite flat apt apartment unit studio floor piano appartamento "
    "python java model type level grade class phase stage round".split()
)


def postcode_findings(text: str) -> list[Finding]:
    """Digit postcodes next to a city (the city becomes a ``LOCATION``)."""
    out = []
    for match in _CITY_POSTCODE.finditer(text):
        city, value = match.group("city"), match.group("v")
        first = city.split()[0].lower()
        if first in _NOT_CITY or first in _NOT_CITY_BEFORE:
            continue
        if (
            re.fullmatch(r"(?:19|20)\d\d", value)
            and "," not in text[match.start() - 2 : match.start()]
        ):
            continue  # "in Summer 2019." is a year
        s, e = match.span("v")
        out.append(Finding("ZIP_CODE", 0.5, s, e, "pattern:city-postcode"))
        cs, ce = match.span("city")
        out.append(Finding("LOCATION", 0.4, cs, ce, "pattern:city-postcode"))
    for match in _POSTCODE_CITY.finditer(text):
        city = match.group("city")
        if city.split()[0].lower().strip("-") in _NOT_CITY:
            continue
        value = match.group("v")
        start, end = match.span("v")
        line_start = text.rfind("\n", 0, start) + 1
        before = text[line_start:start]
        # A bare 4-6 digit number needs an address shape: line start, a comma after a
        # street, or a country prefix ("D-10115").
        strong = "-" in value or " " in value
        shaped = (
            not before.strip()
            or _STREET_BEFORE.search(before)
            or match.start() != start
            or before.rstrip().endswith(",")
        )
        if not (strong or shaped):
            continue
        score = 0.7 if shaped else 0.5
        out.append(Finding("ZIP_CODE", score, match.start(), end, "pattern:postcode-city"))
        cs, ce = match.span("city")
        out.append(Finding("LOCATION", 0.5, cs, ce, "pattern:postcode-city"))
    return out
