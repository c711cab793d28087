"""Red-team regression cases for the text branch (issue 18, items 3 and 5).

Evasions (accidental or not) that detection must see through, and inputs that used to
stall a partition. Each case runs the real text step (``TextHandler`` with the packaged
default policy, spaCy NER on) and asserts the value is absent from the sanitized output;
the stalling cases also assert a time bound (CPU seconds, so a loaded machine does not
make them flaky; generous against the 28-66 s they used to take).
"""

from __future__ import annotations

import time

import pytest

from veil.transforms.classification import load_policy
from veil.transforms.text import TextHandler, detect, load_text_model, redact, select_spans


@pytest.fixture(scope="module")
def policy():
    return load_policy()


@pytest.fixture(scope="module")
def model(policy):
    return load_text_model(policy.text.ner)


def _sanitize(model, policy, text: str) -> str:
    spans = select_spans(detect(model, text, policy.text), policy.text.score_threshold)
    return redact(text, spans)


def _digits(value: str) -> str:
    return "".join(c for c in value if c.isdigit())


# (case, text, values that must not survive in any spelling)
EVASIONS = [
    ("nbsp in card", "card 4111\u00a01111\u00a01111\u00a01111 thanks", ["4111", "1111"]),
    ("tab in card", "card 4111\t1111\t1111\t1111 thanks", ["4111", "1111"]),
    ("line break in card", "card 4111 1111\n1111 1111 thanks", ["4111", "1111"]),
    ("dots in card", "paid with 4111.1111.1111.1111 yesterday", ["4111", "1111"]),
    ("nbsp in ssn", "SSN 123\u00a045\u00a06789 on file", ["6789"]),
    ("en dash in ssn", "SSN 123\u201345\u20136789 on file", ["6789"]),
    ("non-breaking hyphen in ssn", "SSN 123\u201145\u20116789 on file", ["6789"]),
    ("line break in ssn", "SSN 123-45-\n6789 on file", ["6789"]),
    ("nbsp in e-mail", "mail john.smith\u00a0@example.com now", ["john.smith", "example.com"]),
    ("zero-width in e-mail", "mail john\u200b.smith@exam\u200bple.com", ["smith", "ple.com"]),
    ("zero-width in phone", "call 415\u200b-555-0123 today", ["0123"]),
    ("fullwidth at", "mail john.smith\uff20example.com now", ["john.smith"]),
    ("fullwidth digits", "call \uff14\uff11\uff15-\uff15\uff15\uff15-\uff10\uff11\uff12\uff13", ["\uff10\uff11\uff12\uff13"]),
    ("cyrillic look-alike", "mail j\u043ehn.sm\u0456th@example.com", ["sm\u0456th", "example.com"]),
    ("html entity at", "mail john.smith&#64;example.com now", ["john.smith", "example.com"]),
    ("html named at", "mail john.smith&commat;example.com now", ["john.smith"]),
    ("url-encoded at", "mail john.smith%40example.com now", ["john.smith"]),
    ("combining marks", "mail jo\u0301hn.smith@example.com", ["smith@", "example.com"]),
    ("rtl override", "mail \u202ejohn.smith@example.com\u202c now", ["john.smith", "example.com"]),
    ("idn local part", "schreib an müller@gmx.de bitte", ["müller", "gmx.de"]),
    ("idn diaeresis", "mail zoë@example.com", ["zoë"]),
    ("idn domain", "mail user@bücher.de", ["bücher"]),
    ("spelled-out phone", "my number is four one five five five five one two three four",
     ["one two three four"]),
]  # fmt: skip


@pytest.mark.parametrize("case, text, values", EVASIONS, ids=[c[0] for c in EVASIONS])
def test_evasion_is_anonymized(model, policy, case, text, values):
    out = _sanitize(model, policy, text)
    for value in values:
        assert value not in out, case
    # No run of four or more digits of a number survives in any spelling.
    if any(c.isdigit() for c in "".join(values)):
        assert not any(_digits(v) and _digits(v) in _digits(out) for v in values), case


def test_invisible_characters_inside_a_value_are_redacted_with_it(model, policy):
    text = "call 415-555-0123\u200b\u200b now"
    out = _sanitize(model, policy, text)
    assert "\u200b" not in out and "0123" not in out


STALLING = [
    ("e-mail backtracking", "a%" * 100_000),
    ("e-mail many ats", "a@" * 50_000),
    ("digits and spaces", "1 " * 100_000),
    ("capitalised one-word sentences", "".join(f"Word{i:05d}x. " for i in range(25_000))),
    ("dots and dashes", "-." * 100_000),
]


@pytest.mark.parametrize("case, text", STALLING, ids=[c[0] for c in STALLING])
def test_stalling_input_is_bounded(model, policy, case, text):
    handler_limit_s = 15.0
    started = time.process_time()
    _sanitize(model, policy, text)
    assert time.process_time() - started < handler_limit_s, case


def test_ner_is_batched_per_record_and_budgeted(model, policy):
    """25k unique capitalised sentences: NER runs on at most NER_MAX_CHARS of windows;
    the words past the budget are kept as names (fail closed), not left in clear."""
    text = " ".join(f"Zor{_letters(i)}. and more" for i in range(25_000))
    started = time.process_time()
    out = _sanitize(model, policy, text)
    assert time.process_time() - started < 15.0
    assert f"Zor{_letters(24_999)}" not in out


def _letters(number: int) -> str:
    out = ""
    for _ in range(4):
        number, digit = divmod(number, 26)
        out += chr(ord("a") + digit)
    return out


def test_text_handler_is_used_by_the_pipeline_step(policy):
    """The same detect() runs inside TextHandler (smoke: the handler loads it)."""
    handler = TextHandler(policy)
    assert handler.load().versions["veil-recognizers"].startswith("veil-text-")
