"""The text package's detectors, by family, and the normaliser (pytest tables)."""

from __future__ import annotations

import pytest

from veil.transforms.classification import TextPolicy
from veil.transforms.text import detect, load_text_model, redact, select_spans
from veil.transforms.text.normalize import normalize


@pytest.fixture(scope="module")
def model():
    return load_text_model()


def _out(model, text, policy=None):
    return redact(text, select_spans(detect(model, text, policy), 0.3))


@pytest.mark.parametrize(
    "text, expected",
    [
        ("plain ascii stays", "plain ascii stays"),
        ("a\u200bb", "ab"),
        ("x\u00a0y\u2013z", "x y-z"),
        ("\uff4a\uff4f\uff48\uff4e\uff20x.io", "john@x.io"),
        ("j&#64;x.io and j%40x.io", "j@x.io and j@x.io"),
        ("4111 1111\n1111 1111", "4111 1111 1111 1111"),
        ("13/90\n74-600 Otwock", "13/90\n74-600 Otwock"),  # short groups stay apart
        ("j\u043ehn", "john"),  # mixed-script word folded
        (
            "\u043c\u043e\u0441\u043a\u0432\u0430",
            "\u043c\u043e\u0441\u043a\u0432\u0430",
        ),  # Cyrillic word kept
        ("line\\nbreak", "line\nbreak"),
    ],
)
def test_normalize(text, expected):
    assert normalize(text).text == expected


def test_normalize_maps_spans_back_to_the_original():
    original = "mail: jo\u200bhn\uff20example\uff0ecom!"
    norm = normalize(original)
    start = norm.text.index("john")
    end = norm.text.index("!")
    assert norm.span(start, end) == (6, original.index("!"))


@pytest.mark.parametrize(
    "text, expected",
    [
        # Phones, national formats validated with libphonenumber.
        ("ring 0871415292 now", "ring <PHONE_NUMBER> now"),
        ("Tel. (07477) 139212", "Tel. <PHONE_NUMBER>"),
        ("tel 08-41 14 46", "tel <PHONE_NUMBER>"),
        ("call +46 (0)8 123 45 67", "call <PHONE_NUMBER>"),
        ("call 00420 702 741 855", "call <PHONE_NUMBER>"),
        ("phone 55 4706-7338", "phone <PHONE_NUMBER>"),
        ("costs 1,250,000 in total", "costs 1,250,000 in total"),
        ("from 2019-05-04 on", "from <DATE_TIME> on"),
        # Postcodes and European street lines.
        ("Schulzstr. 690, 10115 Berlin", "<STREET_ADDRESS>, <ZIP_CODE> <LOCATION>"),
        ("ul. Konopnickiej 268, 62-300 Września", "<STREET_ADDRESS>, <ZIP_CODE> <LOCATION>"),
        ("Järnvägsgatan 228, 123 45 Stockholm", "<STREET_ADDRESS>, <ZIP_CODE> <LOCATION>"),
        ("12 rue de la Paix, 75002 Paris", "<STREET_ADDRESS> <LOCATION>"),
        ("post to KW77 1UF please", "post to <ZIP_CODE> please"),
        ("Flat 84f Jordan Circles", "<STREET_ADDRESS>"),
        # Names beyond capitalised English.
        ("patient tola chachaj was seen", "patient <PERSON> was seen"),
        ("hi anna, thanks", "hi <PERSON>, thanks"),
        ("hi there, thanks", "hi there, thanks"),
        ("Magdalena: hey\nPiotr: yes", "<PERSON>: hey\n<PERSON>: yes"),
        ("Subject: hello", "Subject: hello"),
        ("Sehr geehrte Frau Żółć-Łęcka,", "Sehr geehrte <PERSON> <PERSON>,"),
        # Usernames in chat and log shapes.
        ("[12:01] anna_k: hi", "[12:01] <USERNAME>: hi"),
        ("login failed for user jdoe", "login failed for user <USERNAME>"),
        ("ping @ada_b now", "ping @<USERNAME> now"),
        # Dates and ages.
        ("born 15. März 1985", "born <DATE_TIME>"),
        ("DOB 03-04-1985", "DOB <DATE_TIME>"),
        ("le 3 janvier 1990", "le <DATE_TIME>"),
        ("a 45-year-old man", "a <AGE>-year-old man"),
        ("paciente de 34 años", "paciente de <AGE> años"),
        ("I just turned 41", "I just turned <AGE>"),
        ("worked 5 years here", "worked 5 years here"),
    ],
)
def test_detectors(model, text, expected):
    assert _out(model, text) == expected


def test_phone_regions_come_from_the_policy(model):
    us_only = TextPolicy("en", 0.3, (), 1000, phone_regions=("US",))
    assert _out(model, "ring 0871415292 now", us_only) == "ring 0871415292 now"
    assert _out(model, "ring 0871415292 now") == "ring <PHONE_NUMBER> now"


def _out_default(model, text):
    """With the packaged policy's threshold (0.35), as ``veil sanitize`` runs."""
    return redact(text, select_spans(detect(model, text), 0.35))


@pytest.mark.parametrize(
    "text, expected",
    [
        # A title before or inside a name is redacted with it (a span of its own, so
        # that the name's pseudonym does not depend on it).
        ("the file of Mr Olu Adeyemi is here", "the file of <PERSON> <PERSON> is here"),
        ("Mrs. Greta Voss\nHead of Sales", "<PERSON> <PERSON>\nHead of Sales"),
        ("please ask Prof Ilse Brandt first", "please ask <PERSON> <PERSON> first"),
        ("Ms Wanjiru Kamau called", "<PERSON> <PERSON> called"),
        ("Dr. Tomasz Wrona", "<PERSON> <PERSON>"),
        # After a title or a naming cue, common words in the name are kept in it.
        ("Miss June Okafor", "<PERSON> <PERSON>"),
        ("my sister's name Eta Vollmer", "my sister's name <PERSON>"),
        ("Dear Summer Lindqvist,", "Dear <PERSON>,"),
        ("Dear Customer Support,", "Dear Customer Support,"),
        # A sentence-initial word that is also an English word, as the subject of a
        # past-tense verb or joined by "and" to a name: a name.
        ("Weaver drove home on Monday.", "<PERSON> drove home on Monday."),
        (
            "Any news? Baker and Tshabalala were partners.",
            "Any news? <PERSON> and <PERSON> were partners.",
        ),
        ("Sales dropped in March.", "Sales dropped in March."),
        ("Time passed slowly.", "Time passed slowly."),
    ],
)
def test_names_keep_titles_and_common_words(model, text, expected):
    assert _out_default(model, text) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        # A compass word, New, Lake, Port before a place belongs to the place.
        ("Unit 4\nMill Row\nNorth Kestrelton\nZZ9 9ZZ", "<STREET_ADDRESS>\n<PERSON>\n<ZIP_CODE>"),
        ("we moved to East Varnholm last year", "we moved to <PERSON> last year"),
        ("she sails from Port Quillan", "she sails from <PERSON>"),
        ("the wind came from the North.", "the wind came from the North."),
        ("Report: Lake levels rose.", "Report: Lake levels rose."),
        # A house number ending the line before the street line.
        (
            "We are based at 14/2\nKowalczyk Marg\nPune 411001",
            "We are based at <STREET_ADDRESS>\n<PERSON>\n<LOCATION> <ZIP_CODE>",
        ),
        ("see page 12\nThe results", "see page 12\nThe results"),
        ("Total: 42\nThe results", "Total: 42\nThe results"),
        # A postcode ending an address line after a closing parenthesis.
        (
            "Harbour Town\nIsland (outer territory) 48213",
            "<PERSON>\nIsland (outer territory) <ZIP_CODE>",
        ),
    ],
)
def test_places_and_postcodes(model, text, expected):
    assert _out_default(model, text) == expected
