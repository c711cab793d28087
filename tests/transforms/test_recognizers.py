"""Recognizers: checksums, patterns with context, lexicons, names, allow- and deny-lists."""

from __future__ import annotations

import pytest

from veil.transforms.classification import TextPolicy
from veil.transforms.recognizers import (
    iban_ok,
    lexicon_findings,
    luhn_ok,
    name_candidates,
    pattern_findings,
    ssn_ok,
    vin_ok,
)
from veil.transforms.text import detect, load_text_model, redact, select_spans


@pytest.fixture(scope="module")
def model():
    return load_text_model()


@pytest.mark.parametrize(
    "check, value, ok",
    [
        (luhn_ok, "4111111111111111", True),
        (luhn_ok, "4111111111111112", False),
        (luhn_ok, "378282246310005", True),
        (iban_ok, "DE89370400440532013000", True),
        (iban_ok, "DE89 3704 0044 0532 0130 00", True),
        (iban_ok, "DE88370400440532013000", False),
        (iban_ok, "GB82WEST12345698765432", True),
        (vin_ok, "1M8GDM9AXKP042788", True),
        (vin_ok, "1M8GDM9A1KP042788", False),
    ],
)
def test_checksums(check, value, ok):
    assert check(value) is ok


@pytest.mark.parametrize(
    "area, group, serial, ok",
    [("123", "45", "6789", True), ("000", "45", "6789", False), ("666", "45", "6789", False),
     ("912", "45", "6789", False), ("123", "00", "6789", False), ("123", "45", "0000", False)],
)  # fmt: skip
def test_ssn_rules(area, group, serial, ok):
    assert ssn_ok(area, group, serial) is ok


def _found(text) -> list[tuple[str, str]]:
    """Merged spans at the default threshold, as (type, text)."""
    return [(t, text[s:e]) for s, e, t in select_spans(pattern_findings(text), 0.3)]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("mail ada.b+x@mail.example.org now", [("EMAIL_ADDRESS", "ada.b+x@mail.example.org")]),
        ("see https://example.com/a?b=1.", [("URL", "https://example.com/a?b=1")]),
        ("call (212) 555-0175 today", [("PHONE_NUMBER", "(212) 555-0175")]),
        ("call 212.555.0175.", [("PHONE_NUMBER", "212.555.0175")]),
        ("tel +1 212 555 0175", [("PHONE_NUMBER", "+1 212 555 0175")]),
        ("mobile +44 20 7946 0958", [("PHONE_NUMBER", "+44 20 7946 0958")]),
        ("my number is 2125550175.", [("PHONE_NUMBER", "2125550175")]),
        ("card 4111-1111-1111-1111", [("CREDIT_CARD", "4111-1111-1111-1111")]),
        ("part 4111-1111-1111-1112", []),  # fails Luhn, no card context
        ("visa 4111 1111 1111 1112", [("CREDIT_CARD", "4111 1111 1111 1112")]),  # context
        ("SSN 123-45-6789", [("US_SSN", "123-45-6789")]),
        ("part 666-45-6789", []),  # not a valid SSN, no context
        ("ssn: 123456789", [("US_SSN", "123456789")]),
        ("IBAN DE89 3704 0044 0532 0130 00.", [("IBAN_CODE", "DE89 3704 0044 0532 0130 00")]),
        ("IBAN DE88 3704 0044 0532 0130 00.", [("IBAN_CODE", "DE88 3704 0044 0532 0130 00")]),
        ("part DE88 3704 0044 0532 0130 00.", []),  # fails mod 97, no context
        ("from 10.20.30.40.", [("IP_ADDRESS", "10.20.30.40")]),
        # After an address cue the rest of the line is the address (fail closed).
        ("ship to 1482 West Maple Avenue, Apt 3B, Springfield, IL 62704 please",
         [("STREET_ADDRESS", "1482 West Maple Avenue, Apt 3B, Springfield, IL 62704 please")]),
        ("1482 West Maple Avenue, Apt 3B, Springfield, IL 62704 please",
         [("STREET_ADDRESS", "1482 West Maple Avenue, Apt 3B, Springfield, IL 62704")]),
        ("He lives at 42 Elm Street.", [("STREET_ADDRESS", "42 Elm Street")]),
        ("at 12 3rd St. now", [("STREET_ADDRESS", "12 3rd St.")]),
        ("PO Box 4411", [("STREET_ADDRESS", "PO Box 4411")]),
        ("zip code 02139", [("ZIP_CODE", "02139")]),
        ("born 1988-04-12", [("DATE_TIME", "1988-04-12")]),
        ("seen on March 3rd, 2021", [("DATE_TIME", "March 3rd, 2021")]),
        ("a 47-year-old man", [("AGE", "47")]),
        ("MRN: 00123456", [("MEDICAL_RECORD_NUMBER", "00123456")]),
        ("member id XJ-88812", [("HEALTH_PLAN_ID", "XJ-88812")]),
        ("account number 0012345678", [("ACCOUNT_NUMBER", "0012345678")]),
        ("VIN 1M8GDM9AXKP042788", [("VEHICLE_ID", "1M8GDM9AXKP042788")]),
        ("key AKIAIOSFODNN7EXAMPLE", [("CREDENTIAL", "AKIAIOSFODNN7EXAMPLE")]),
        ("ghp_" + "a1B2" * 9, [("CREDENTIAL", "ghp_" + "a1B2" * 9)]),
        ("password: hunter2!", [("CREDENTIAL", "hunter2!")]),
        ("my password is sunflower", [("CREDENTIAL", "sunflower")]),
        ("Password resets need a second factor.", []),
        ("the token is invalid", []),
        ("postgres://app:s3cr3t@db:5432/x", [("CREDENTIAL", "s3cr3t")]),
        ("Order 48213 shipped; version 3.2.1; total $1,249.00", []),
    ],
    ids=lambda v: v if isinstance(v, str) and len(v) < 40 else None,
)  # fmt: skip
def test_patterns(text, expected):
    assert _found(text) == expected


def test_context_words_raise_scores():
    plain = pattern_findings("ref 2125550175")
    boosted = pattern_findings("phone 2125550175")
    assert plain[0].score < boosted[0].score
    extra = pattern_findings("ext-id 2125550175", {"PHONE_NUMBER": ("ext-id",)})
    assert extra[0].score == boosted[0].score


@pytest.mark.parametrize(
    "text, expected",
    [
        (
            "She is a Muslim and a Democrat.",
            [("POLITICAL_AFFILIATION", "Democrat"), ("RELIGION", "Muslim")],
        ),
        ("He was diagnosed with diabetes.", [("HEALTH", "diabetes"), ("HEALTH", "diagnosed with")]),
        ("The Nigerian applicant.", [("NRP", "Nigerian")]),
        ("My partner is gay.", [("SEXUAL_ORIENTATION", "gay")]),
        ("A conservative estimate of the democratic process.", []),
    ],
)
def test_lexicons(text, expected):
    assert (
        sorted((f.entity_type, text[f.start : f.end]) for f in lexicon_findings(text)) == expected
    )


def test_name_candidates_cues_titles_and_stop_words():
    text = "Please ask Dr. Ada O. Byron-King. Thanks, Zoe! Monday we meet Ravi Patel."
    got = [(text[c.start : c.end], c.cued, c.sentence_initial) for c in name_candidates(text)]
    assert got == [
        ("Ada O. Byron-King", True, False),
        ("Zoe", True, False),
        ("Ravi Patel", True, False),
    ]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Patient John Smith (john.smith@example.com, 212-555-0175) paid with "
         "4111 1111 1111 1111.",
         "Patient <PERSON> (<EMAIL_ADDRESS>, <PHONE_NUMBER>) paid with <CREDIT_CARD>."),
        ("Hello, my name is Priya Ramanathan and I live at 1482 West Maple Avenue.",
         "Hello, my name is <PERSON> and I live at <STREET_ADDRESS>."),
        ("Dr. O'Connor saw Mrs. Alvarez on March 3, 2021.",
         "<PERSON> <PERSON> saw <PERSON> <PERSON> on <DATE_TIME>."),  # titles too
        ("Santiago Dlamini signed the lease.", "<PERSON> signed the lease."),
        ("Please review the attached invoice before the meeting on Friday.",
         "Please review the attached invoice before the meeting on Friday."),
        ("The quarterly report is attached. No changes to the schedule this week.",
         "The quarterly report is attached. No changes to the schedule this week."),
    ],
)  # fmt: skip
def test_detect_end_to_end(model, text, expected):
    assert redact(text, select_spans(detect(model, text), 0.3)) == expected


def test_allow_and_deny_lists_and_entity_filter(model):
    text = "Ask Ada Byron about Project Nightjar at ada@example.com."
    policy = TextPolicy(
        "en",
        0.3,
        (),
        1000,
        allow_list=frozenset({"ada byron"}),
        deny_list=(("PROJECT", ("nightjar",)),),
    )
    spans = select_spans(detect(model, text, policy), 0.3)
    assert redact(text, spans) == "Ask Ada Byron about Project <PROJECT> at <EMAIL_ADDRESS>."
    only_email = TextPolicy("en", 0.3, ("EMAIL_ADDRESS",), 1000)
    assert redact(text, select_spans(detect(model, text, only_email), 0.3)) == (
        "Ask Ada Byron about Project Nightjar at <EMAIL_ADDRESS>."
    )


def test_detect_without_ner_still_fails_closed():
    model = load_text_model(ner=False)
    assert model.nlp is None and "spacy" not in model.versions
    text = "Thanks Maria Lopez, the Kafka upgrade is done."
    assert redact(text, select_spans(detect(model, text), 0.3)) == (
        "Thanks <PERSON>, the <PERSON> upgrade is done."
    )
