"""Rule-based PII recognizers, by family (no model; every regex linear-time).

* ``contact``: e-mail (internationalised), URLs, phones (libphonenumber), IPs, usernames.
* ``address``: street lines (US and European), PO boxes, postcodes, cities after them.
* ``identity``: cards, SSNs, IBANs, numbers after cue words, VINs, dates, ages.
* ``secrets``: keys, tokens, passwords.
* ``names``: capitalised runs, titles, cues, lower-case cues, speaker labels.
* ``categories``: GDPR special categories and NRP lexicons.

Example::

    findings = pattern_findings("Call 212-555-0175 or mail a@b.io")
    # [Finding("PHONE_NUMBER", 0.7, 5, 17, "phone:libphonenumber"), Finding("EMAIL_ADDRESS", ...)]
"""

from __future__ import annotations

from veil.transforms.text.recognizers import address, contact, identity, secrets
from veil.transforms.text.recognizers.base import (
    CONTEXT_BOOST,
    CONTEXT_WINDOW,
    Finding,
    Pattern,
    iban_ok,
    luhn_ok,
    run_patterns,
    ssn_ok,
    vin_ok,
)
from veil.transforms.text.recognizers.categories import LEXICONS, lexicon_findings
from veil.transforms.text.recognizers.contact import DEFAULT_PHONE_REGIONS
from veil.transforms.text.recognizers.names import (
    NameCandidate,
    cue_name_findings,
    name_candidates,
)

PATTERNS: tuple[Pattern, ...] = (
    contact.PATTERNS + identity.PATTERNS + address.PATTERNS + secrets.PATTERNS
)


def pattern_findings(
    text: str, extra_context: dict | None = None, phone_regions=DEFAULT_PHONE_REGIONS
) -> list[Finding]:
    """Every pattern recognizer over ``text`` (context boosts applied, scores capped at 1)."""
    has_digit = any(c.isdigit() for c in text)
    lowered = text.lower()
    out = contact.email_findings(text)
    out += run_patterns(PATTERNS, text, lowered, has_digit, extra_context)
    out += contact.chat_nick_findings(text)
    out += contact.spoken_phone_findings(text)
    if has_digit:
        extra = (extra_context or {}).get("PHONE_NUMBER", ())
        out += contact.phone_findings(text, lowered, phone_regions, extra)
        out += address.postcode_findings(text)
    return out


__all__ = [
    "CONTEXT_BOOST",
    "CONTEXT_WINDOW",
    "DEFAULT_PHONE_REGIONS",
    "Finding",
    "LEXICONS",
    "NameCandidate",
    "PATTERNS",
    "Pattern",
    "cue_name_findings",
    "iban_ok",
    "lexicon_findings",
    "luhn_ok",
    "name_candidates",
    "pattern_findings",
    "ssn_ok",
    "vin_ok",
]
