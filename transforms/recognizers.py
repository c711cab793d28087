"""Rule-based PII recognizers: patterns with checksums and context, lexicons, names.

Everything here is pure Python over ``re`` (no model): the text branch runs these on
every record and adds spaCy's NER only where a capitalized word is ambiguous (see
``veil.transforms.text``). Each recognizer yields ``Finding``s with character spans.

* Patterns carry a base score, an optional validator (Luhn for cards, mod-97 for IBANs,
  SSA rules for SSNs, the VIN check digit) and context words: a context word in the 48
  characters before a match raises its score by ``CONTEXT_BOOST``. A cheap pre-filter
  skips the numeric patterns on text without digits.
* Lexicons (nationalities, religions, political groups, health conditions, sexual
  orientation) run as one merged, case-insensitive alternation.
* Names: runs of capitalized words, typed by titles (``Dr.``, ``Mrs.``) and cue words
  (``my name is``, ``Dear``, ``patient``) before them; runs without a cue are left to NER
  and, when NER does not type them, kept as a low-score ``PERSON`` (fail closed).

Example::

    findings = pattern_findings("Call 212-555-0175 or mail a@b.io")
    # [Finding("PHONE_NUMBER", 0.7, 5, 17, "pattern:phone"), Finding("EMAIL_ADDRESS", ...)]
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Callable, NamedTuple

CONTEXT_BOOST = 0.35
CONTEXT_WINDOW = 48


class Finding(NamedTuple):
    """One detected entity: type, confidence, character span ``[start, end)``, detector."""

    entity_type: str
    score: float
    start: int
    end: int
    detector: str


# --- validators -----------------------------------------------------------------------


def luhn_ok(digits: str) -> bool:
    total, parity = 0, len(digits) % 2
    for index, char in enumerate(digits):
        value = ord(char) - 48
        if index % 2 == parity:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def iban_ok(value: str) -> bool:
    compact = value.replace(" ", "").upper()
    if not 15 <= len(compact) <= 34:
        return False
    moved = compact[4:] + compact[:4]
    try:
        number = int("".join(str(int(c, 36)) for c in moved))
    except ValueError:
        return False
    return number % 97 == 1


def ssn_ok(area: str, group: str, serial: str) -> bool:
    """SSA rules: no area 000, 666 or 9xx; no group 00; no serial 0000."""
    return (
        area not in ("000", "666")
        and not area.startswith("9")
        and group != "00"
        and serial != "0000"
    )


_VIN_VALUES = {
    **{str(d): d for d in range(10)},
    **dict(zip("ABCDEFGH", range(1, 9))),
    **dict(zip("JKLMN", range(1, 6))),
    "P": 7,
    "R": 9,
    **dict(zip("STUVWXYZ", range(2, 10))),
}
_VIN_WEIGHTS = (8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2)


def vin_ok(vin: str) -> bool:
    vin = vin.upper()
    if len(vin) != 17 or not any(c.isalpha() for c in vin):
        return False
    try:
        total = sum(_VIN_VALUES[c] * w for c, w in zip(vin, _VIN_WEIGHTS))
    except KeyError:
        return False
    check = total % 11
    return vin[8] == ("X" if check == 10 else str(check))


def entropy(value: str) -> float:
    counts: dict[str, int] = {}
    for char in value:
        counts[char] = counts.get(char, 0) + 1
    return -sum(n / len(value) * math.log2(n / len(value)) for n in counts.values())


# --- patterns -------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Pattern:
    """A regex recognizer. ``group`` selects the reported span; ``validate`` returns a
    score (None: reject) from the match."""

    name: str
    entity_type: str
    regex: re.Pattern
    score: float
    context: tuple = ()
    validate: Callable | None = None
    group: int = 0
    needs_digit: bool = True


def _card(match) -> float | None:
    digits = re.sub(r"\D", "", match.group())
    if not 13 <= len(digits) <= 19 or len(set(digits)) == 1:
        return None
    return 1.0 if luhn_ok(digits) else 0.0  # 0.0: only context can make it a card


def _ssn(match) -> float | None:
    area, group, serial = match.group("a"), match.group("g"), match.group("s")
    return 0.85 if ssn_ok(area, group, serial) else 0.0


def _iban(match) -> float | None:
    return 1.0 if iban_ok(match.group()) else 0.0  # 0.0: only context can keep it


def _vin(match) -> float | None:
    return 0.9 if vin_ok(match.group()) else None


def _id_value(match) -> float | None:
    value = match.group("v")
    return 0.7 if any(c.isdigit() for c in value) else None


def _secret_value(match) -> float | None:
    value = match.group("v")
    if value.lower() in _NOT_SECRETS:
        return None
    return 0.8


def _high_entropy(match) -> float | None:
    value = match.group()
    if not (re.search(r"[a-z]", value) and re.search(r"[A-Z]", value) and re.search(r"\d", value)):
        return None
    return 0.6 if entropy(value) >= 3.5 else None


_NOT_SECRETS = frozenset(
    "is was the a an to be required needed invalid valid expired reset changed incorrect "
    "wrong correct missing set updated protected hidden redacted strong weak".split()
)

_STREET_SUFFIX = (
    r"(?:(?:Street|Avenue|Road|Boulevard|Lane|Drive|Court|Place|Way|Terrace|Circle|Parkway|"
    r"Highway|Square|Trail|Loop|Alley|Row|Crescent|Close|Plaza|Path|Pike|Run|Walk|Point|"
    r"Ridge|Heights|Hollow)\b"
    r"|(?:St|Ave|Rd|Blvd|Ln|Dr|Ct|Pl|Ter|Cir|Pkwy|Hwy|Sq|Trl)\b\.?)"
)
_STATES = (
    "AL|AK|AZ|AR|CA|CO|CT|DE|DC|FL|GA|HI|ID|IL|IN|IA|KS|KY|LA|ME|MD|MA|MI|MN|MS|MO|MT|NE|NV|"
    "NH|NJ|NM|NY|NC|ND|OH|OK|OR|PA|RI|SC|SD|TN|TX|UT|VT|VA|WA|WV|WI|WY|PR"
)
_STREET = re.compile(
    r"\b\d{1,6}[A-Za-z]?(?:-\d{1,4})?\s+"
    r"(?:(?:N|S|E|W|NE|NW|SE|SW|North|South|East|West)\.?\s+)?"
    r"(?:(?:\d{1,3}(?:st|nd|rd|th)|[A-Z][A-Za-z'.\-]*)\s+){1,4}"
    + _STREET_SUFFIX
    + r"(?:\s+(?:N|S|E|W|NE|NW|SE|SW)\b\.?)?"
    r"(?:,?\s+(?:Apt|Apartment|Suite|Ste|Unit|Fl|Floor|#)\.?\s*#?[A-Za-z0-9\-]+)?"
    r"(?:,\s*[A-Z][A-Za-z]*(?:\s+[A-Z][A-Za-z]*){0,2})?"
    r"(?:,?\s+(?:" + _STATES + r")\b)?"
    r"(?:,?\s+\d{5}(?:-\d{4})?)?"
)
_PO_BOX = re.compile(r"\b(?:P\.?\s?O\.?\s*Box|Post Office Box)\s+\d{1,7}\b", re.I)
_CITY_STATE = re.compile(
    r"\b[A-Z][a-z]+(?:\s+[A-Z][a-z]+){0,2},\s*(?:" + _STATES + r")\b(?:\s+\d{5}(?:-\d{4})?)?"
)
_ZIP_CTX = re.compile(
    r"(?i)\b(?:zip(?:\s*code)?|postal\s*code)\s*[:#]?\s*(?P<v>\d{5}(?:-\d{4})?)\b"
)

_MONTH = (
    r"(?:January|February|March|April|May|June|July|August|September|October|November|"
    r"December|Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec)"
)

PATTERNS: tuple[Pattern, ...] = (
    Pattern(
        "email",
        "EMAIL_ADDRESS",
        re.compile(
            r"(?<![\w.+-])[A-Za-z0-9][A-Za-z0-9._%+\-]*@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,24}\b"
        ),
        1.0,
        needs_digit=False,
    ),
    Pattern(
        "url",
        "URL",
        re.compile(r"\b(?:https?://|www\.)[^\s<>\"'()]+[^\s<>\"'().,;:!?]"),
        0.6,
        needs_digit=False,
    ),
    Pattern(
        "phone-nanp",
        "PHONE_NUMBER",
        re.compile(
            r"(?<![\w+])(?:\+?1[\s.\-]?)?(?:\(\d{3}\)\s?|\d{3}[\s.\-])\d{3}[\s.\-]\d{4}"
            r"(?:\s*(?:x|ext\.?|extension)\s*\d{1,5})?(?!\w)"
        ),
        0.7,
        ("phone", "call", "tel", "mobile", "cell", "fax", "text", "reach", "contact"),
    ),
    Pattern(
        "phone-intl",
        "PHONE_NUMBER",
        re.compile(r"(?<![\w+])\+[2-9]\d{0,2}[\s.\-]?\(?\d{1,4}\)?(?:[\s.\-]?\d{2,4}){2,4}(?!\w)"),
        0.6,
        ("phone", "call", "tel", "mobile", "cell", "fax", "whatsapp"),
    ),
    Pattern(
        "phone-local",
        "PHONE_NUMBER",
        re.compile(r"(?<![\w+])(?<!\d )0\d{2,4}[\s\-]\d{3,4}[\s\-]\d{3,4}(?!\w|\s\d)"),
        0.5,
        ("phone", "call", "tel", "mobile", "cell", "fax"),
    ),
    Pattern(
        "phone-digits",
        "PHONE_NUMBER",
        re.compile(r"(?<![\w.\-])[2-9]\d{9}(?!\w|\.\d)"),
        0.35,
        ("phone", "call", "tel", "mobile", "cell", "fax", "text", "reach"),
    ),
    Pattern(
        "credit-card",
        "CREDIT_CARD",
        re.compile(r"(?<![\d\-])\d(?:[ \-]?\d){12,18}(?![\d\-])"),
        1.0,
        ("card", "visa", "mastercard", "amex", "discover", "credit", "debit", "cc", "charge"),
        _card,
    ),
    Pattern(
        "ssn",
        "US_SSN",
        re.compile(r"(?<![\d\-])(?P<a>\d{3})([\- ])(?P<g>\d{2})\2(?P<s>\d{4})(?![\d\-])"),
        0.85,
        ("ssn", "social security", "social", "ss#", "tin"),
        _ssn,
    ),
    Pattern(
        "ssn-digits",
        "US_SSN",
        re.compile(
            r"(?i)\b(?:ssn|social security(?: number| no\.?)?|ss#)\s*[:#]?\s*(?:is\s+)?(?P<v>\d{9})\b"
        ),
        0.85,
        group="v",
    ),
    Pattern(
        "iban",
        "IBAN_CODE",
        re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b"),
        1.0,
        ("iban", "account", "wire", "transfer", "bank"),
        _iban,
    ),
    Pattern(
        "ipv4",
        "IP_ADDRESS",
        re.compile(
            r"(?<![\d.])(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?!\d|\.\d)"
        ),
        0.6,
        ("ip", "address", "host", "server", "login", "from"),
    ),
    Pattern(
        "ipv6",
        "IP_ADDRESS",
        re.compile(r"(?<![\w:])(?:[0-9a-fA-F]{1,4}:){2,7}[0-9a-fA-F]{1,4}(?![\w:])"),
        0.6,
        needs_digit=False,
    ),
    Pattern("street", "STREET_ADDRESS", _STREET, 0.9),
    Pattern("po-box", "STREET_ADDRESS", _PO_BOX, 0.8),
    Pattern("city-state", "LOCATION", _CITY_STATE, 0.6, needs_digit=False),
    Pattern("zip", "ZIP_CODE", _ZIP_CTX, 0.8, group="v"),
    Pattern(
        "date-iso",
        "DATE_TIME",
        re.compile(r"\b(?:19|20)\d\d-(?:0?[1-9]|1[0-2])-(?:0?[1-9]|[12]\d|3[01])\b"),
        0.6,
    ),
    Pattern(
        "date-numeric",
        "DATE_TIME",
        re.compile(r"\b(?:0?[1-9]|[12]\d|3[01])[/.](?:0?[1-9]|[12]\d|3[01])[/.](?:\d{4}|\d{2})\b"),
        0.6,
    ),
    Pattern(
        "date-words",
        "DATE_TIME",
        re.compile(
            r"\b(?:" + _MONTH + r"\.?\s+\d{1,2}(?:st|nd|rd|th)?(?:,?\s+\d{4})?"
            r"|\d{1,2}(?:st|nd|rd|th)?\s+(?:of\s+)?" + _MONTH + r"\.?(?:,?\s+\d{4})?"
            r"|" + _MONTH + r"\.?\s+\d{4})\b"
        ),
        0.6,
        ("born", "birth", "dob", "admitted", "discharged", "visit", "seen"),
    ),
    Pattern(
        "age",
        "AGE",
        re.compile(
            r"(?i)\b(?:(?P<v>\d{1,3})[\s\-]*(?:years?|yrs?)[\s\-]*old\b"
            r"|aged?\s*[:]?\s*(?P<w>\d{1,3})\b)"
        ),
        0.7,
    ),
    Pattern(
        "id-with-context",
        "ID_NUMBER",
        re.compile(
            r"(?i)\b(?P<cue>mrn|medical record(?:\s+(?:number|no\.?|#))?|patient\s+id|"
            r"account(?:\s+(?:number|no\.?|#))?|acct\.?(?:\s+(?:number|no\.?|#))?|"
            r"member\s+id|policy\s+(?:number|no\.?|#)|health\s+plan(?:\s+(?:id|number))?|"
            r"beneficiary(?:\s+(?:id|number))?|licen[cs]e(?:\s+(?:number|no\.?|#))?|"
            r"passport(?:\s+(?:number|no\.?|#))?|serial(?:\s+(?:number|no\.?|#))?|"
            r"device\s+id|plate(?:\s+number)?|vin|certificate(?:\s+(?:number|no\.?|#))?|"
            r"employee\s+id|customer\s+id|routing(?:\s+number)?|driver'?s\s+licen[cs]e)"
            r"\s*[:#]?\s*(?:is\s+|number\s+|no\.?\s+)?(?P<v>[A-Z0-9][A-Z0-9\-]{3,24})\b"
        ),
        0.7,
        validate=_id_value,
        group="v",
    ),
    Pattern(
        "vin",
        "VEHICLE_ID",
        re.compile(r"\b[A-HJ-NPR-Z0-9]{17}\b"),
        0.9,
        validate=_vin,
    ),
    # --- secrets and credentials
    Pattern(
        "aws-access-key",
        "CREDENTIAL",
        re.compile(r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA)[0-9A-Z]{16}\b"),
        1.0,
    ),
    Pattern(
        "github-token",
        "CREDENTIAL",
        re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{22,})\b"),
        1.0,
    ),
    Pattern("slack-token", "CREDENTIAL", re.compile(r"\bxox[abposr]-[A-Za-z0-9\-]{10,}"), 1.0),
    Pattern(
        "stripe-key",
        "CREDENTIAL",
        re.compile(r"\b[sr]k_(?:live|test)_[A-Za-z0-9]{16,}\b"),
        1.0,
        needs_digit=False,
    ),
    Pattern("google-api-key", "CREDENTIAL", re.compile(r"\bAIza[0-9A-Za-z_\-]{35}\b"), 1.0),
    Pattern(
        "jwt",
        "CREDENTIAL",
        re.compile(r"\beyJ[A-Za-z0-9_\-]{5,}\.eyJ[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]{5,}"),
        1.0,
        needs_digit=False,
    ),
    Pattern(
        "private-key",
        "CREDENTIAL",
        re.compile(
            r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?(?:-----END [A-Z ]*PRIVATE KEY-----|$)"
        ),
        1.0,
        needs_digit=False,
    ),
    Pattern(
        "url-credentials",
        "CREDENTIAL",
        re.compile(r"(?<=://)[^\s:/@]+:(?P<v>[^\s@/]+)(?=@)"),
        0.9,
        group="v",
        needs_digit=False,
    ),
    Pattern(
        "secret-assignment",
        "CREDENTIAL",
        re.compile(
            r"(?i)\b(?:password|passwd|pwd|passcode|passphrase|pin|secret|client[_\- ]?secret|"
            r"api[_\- ]?key|access[_\- ]?key|secret[_\- ]?key|access[_\- ]?token|auth[_\- ]?token|"
            r"token)\b[\"']?\s*(?:[:=]|\bis\b|\bto\b|\bwas\b)\s*[\"']?"
            r"(?P<v>[^\s\"',;]{4,})"
        ),
        0.8,
        validate=_secret_value,
        group="v",
        needs_digit=False,
    ),
    Pattern(
        "high-entropy",
        "CREDENTIAL",
        re.compile(r"(?<![\w/+=\-])[A-Za-z0-9_\-+/=]{24,}(?![\w/+=\-])"),
        0.6,
        validate=_high_entropy,
    ),
)

# --- lexicons (GDPR special categories and NRP) ---------------------------------------

LEXICONS = {
    "NRP": (
        "American|Mexican|Canadian|Brazilian|Argentinian|Colombian|Peruvian|Chilean|Cuban|"
        "Haitian|Jamaican|Dominican|Puerto Rican|Salvadoran|Guatemalan|British|English|Irish|"
        "Scottish|Welsh|French|German|Italian|Spanish|Portuguese|Dutch|Belgian|Swiss|Austrian|"
        "Swedish|Norwegian|Danish|Finnish|Polish|Czech|Hungarian|Romanian|Bulgarian|Greek|"
        "Turkish|Russian|Ukrainian|Serbian|Croatian|Albanian|Chinese|Japanese|Korean|"
        "Vietnamese|Thai|Filipino|Filipina|Indonesian|Malaysian|Indian|Pakistani|"
        "Bangladeshi|Sri Lankan|Nepali|Afghan|Iranian|Iraqi|Syrian|Lebanese|Israeli|"
        "Palestinian|Saudi|Egyptian|Moroccan|Algerian|Tunisian|Nigerian|Ghanaian|Kenyan|"
        "Ethiopian|Somali|Sudanese|South African|Australian|New Zealander|Hispanic|Latino|"
        "Latina|Latinx|African American|Asian American|Native American|Caucasian|"
        "Pacific Islander|Indigenous|Aboriginal|Roma|Kurdish|Arab"
    ),
    "RELIGION": (
        "Christian|Christianity|Catholic|Roman Catholic|Protestant|Baptist|Methodist|"
        "Lutheran|Presbyterian|Anglican|Evangelical|Pentecostal|Mormon|Jehovah's Witness|"
        "Orthodox Christian|Muslim|Islam|Islamic|Sunni|Shia|Jewish|Judaism|Hindu|Hinduism|"
        "Buddhist|Buddhism|Sikh|Sikhism|Jain|Taoist|Atheist|Agnostic|Quaker|Amish|"
        "synagogue|mosque|church|temple|Ramadan|Shabbat|kosher|halal"
    ),
    "POLITICAL_AFFILIATION": (
        "Democrat|Democrats|Democratic Party|Republican|Republicans|Republican Party|GOP|"
        "Libertarian|Green Party|Labour Party|Labour|Conservative Party|Tory|Tories|"
        "Liberal Democrats|Socialist|Communist|Communist Party|trade union|union member"
    ),
    "HEALTH": (
        "diabetes|diabetic|HIV|AIDS|cancer|tumou?r|leukemia|lymphoma|depression|depressive|"
        "anxiety disorder|bipolar|schizophrenia|PTSD|ADHD|autism|autistic|asthma|"
        "hypertension|heart disease|heart attack|stroke|epilepsy|seizures?|dementia|"
        "Alzheimer'?s|Parkinson'?s|multiple sclerosis|hepatitis [ABC]|hepatitis|"
        "tuberculosis|COVID-19|pneumonia|pregnant|pregnancy|miscarriage|abortion|"
        "chemotherapy|radiotherapy|dialysis|insulin|antidepressants?|opioid|methadone|"
        "rehab|addiction|alcoholism|eating disorder|anorexia|bulimia|obesity|"
        "disability|disabled|wheelchair|prescription|diagnosed with|diagnosis|"
        "blood pressure|cholesterol|allergy to|allergic to|surgery|fracture|"
        "therapy sessions|psychiatric|mental health|STD|STI|chlamydia|HPV|infertility|IVF"
    ),
    "SEXUAL_ORIENTATION": (
        "gay|lesbian|bisexual|transgender|homosexual|heterosexual|queer|LGBTQ\\+?|"
        "LGBT|non-binary|nonbinary|pansexual|asexual|same-sex partner|sex life"
    ),
}
_CASE_SENSITIVE_LEXICONS = ("NRP", "POLITICAL_AFFILIATION")


def _lexicon_regex(case_sensitive: bool) -> re.Pattern:
    parts = []
    for entity, words in LEXICONS.items():
        if (entity in _CASE_SENSITIVE_LEXICONS) == case_sensitive:
            parts.append(f"(?P<{entity}>{words})")
    flags = 0 if case_sensitive else re.IGNORECASE
    return re.compile(r"(?<![\w\-])(?:" + "|".join(parts) + r")(?![\w\-])", flags)


_LEXICON_CS = _lexicon_regex(True)
_LEXICON_CI = _lexicon_regex(False)
LEXICON_SCORES = {
    "NRP": 0.6,
    "RELIGION": 0.6,
    "POLITICAL_AFFILIATION": 0.6,
    "HEALTH": 0.5,
    "SEXUAL_ORIENTATION": 0.6,
}


def lexicon_findings(text: str) -> list[Finding]:
    out = []
    for regex in (_LEXICON_CS, _LEXICON_CI):
        for match in regex.finditer(text):
            entity = match.lastgroup
            out.append(
                Finding(entity, LEXICON_SCORES[entity], match.start(), match.end(), "lexicon")
            )
    return out


def _context_hit(lowered: str, start: int, words) -> bool:
    window = lowered[max(0, start - CONTEXT_WINDOW) : start]
    return any(word in window for word in words)


def pattern_findings(text: str, extra_context: dict | None = None) -> list[Finding]:
    """Every pattern recognizer over ``text`` (context boosts applied, scores capped at 1)."""
    has_digit = any(c.isdigit() for c in text)
    lowered = text.lower()
    out = []
    for pattern in PATTERNS:
        if pattern.needs_digit and not has_digit:
            continue
        context = pattern.context + tuple((extra_context or {}).get(pattern.entity_type, ()))
        for match in pattern.regex.finditer(text):
            score = pattern.score
            if pattern.validate is not None:
                score = pattern.validate(match)
                if score is None:
                    continue
            if pattern.name == "age":
                group = "v" if match.group("v") else "w"
                start, end = match.span(group)
            else:
                start, end = match.span(pattern.group)
            if context and _context_hit(lowered, match.start(), context):
                score = min(1.0, score + CONTEXT_BOOST)
            if score <= 0:
                continue
            entity = pattern.entity_type
            if pattern.name == "id-with-context":
                entity = _id_type(match.group("cue"))
            out.append(Finding(entity, score, start, end, f"pattern:{pattern.name}"))
    return out


def _id_type(cue: str) -> str:
    cue = cue.lower()
    for prefix, entity in (
        ("mrn", "MEDICAL_RECORD_NUMBER"),
        ("medical", "MEDICAL_RECORD_NUMBER"),
        ("patient", "MEDICAL_RECORD_NUMBER"),
        ("acc", "ACCOUNT_NUMBER"),
        ("routing", "ACCOUNT_NUMBER"),
        ("member", "HEALTH_PLAN_ID"),
        ("policy", "HEALTH_PLAN_ID"),
        ("health", "HEALTH_PLAN_ID"),
        ("benef", "HEALTH_PLAN_ID"),
        ("passport", "US_PASSPORT"),
        ("driver", "US_DRIVER_LICENSE"),
        ("licen", "LICENSE_NUMBER"),
        ("certificate", "LICENSE_NUMBER"),
        ("serial", "DEVICE_ID"),
        ("device", "DEVICE_ID"),
        ("plate", "VEHICLE_ID"),
        ("vin", "VEHICLE_ID"),
    ):
        if cue.startswith(prefix):
            return entity
    return "ID_NUMBER"


# --- names ----------------------------------------------------------------------------

TITLES = frozenset(
    "mr mrs ms miss mx dr prof professor sir madam dame lord lady rev reverend fr father "
    "sister brother capt captain sgt sergeant lt lieutenant col colonel gen general "
    "officer det detective judge nurse".split()
)
#: Words after which a capitalized run is a person's name.
PERSON_CUES = (
    "name is", "name's", "named", "i am", "i'm", "this is", "dear", "hi", "hello", "hey",
    "thanks", "thank you", "regards", "sincerely", "cheers", "signed", "patient",
    "client", "customer", "employee", "tenant", "applicant", "contact", "call", "ask",
    "ask for", "attn", "attention", "from", "with", "by", "cc", "to", "spoke to",
    "spoke with", "met", "visited", "husband", "wife", "son", "daughter", "mother",
    "father", "brother", "sister", "partner", "colleague", "manager", "friend", "mr",
    "mrs", "ms", "dr", "and", "holder", "owner", "name:", "name", "user", "author",
    "reviewer", "assignee", "reporter", "agent", "physician", "doctor", "nurse", "meet",
    "meeting with", "invite", "email", "tell", "remind", "forward to", "ping",
)  # fmt: skip
_PERSON_CUE_RE = re.compile(
    r"(?:^|[^\w'])(?:"
    + "|".join(re.escape(c) for c in sorted(PERSON_CUES, key=len, reverse=True))
    + r")[\s,:]*$",
    re.IGNORECASE,
)
#: Capitalized words that are not names at the start of a sentence or anywhere.
STOP_CAPITALIZED = frozenset(
    """
    a about above after again against all also am an and any are as at be because been
    before being below between both but by can could did do does doing down during each
    few for from further had has have having he her here hers herself him himself his how
    i if in into is it its itself just let me more most my myself no nor not now of off
    on once only or other our ours ourselves out over own same she should so some such
    than that the their theirs them themselves then there these they this those through
    to too under until up very was we were what when where which while who whom why will
    with would you your yours yourself yourselves yes ok okay please thanks thank hello hi
    hey dear regards best sincerely cheers note notes update updates today tomorrow
    yesterday tonight monday tuesday wednesday thursday friday saturday sunday january
    february march april may june july august september october november december jan feb
    mar apr jun jul aug sep sept oct nov dec q1 q2 q3 q4 our per re fw fwd subject
    attached attachment see call send sent check make take give get got keep let lets
    new old next last first second third final one two three four five six seven eight
    nine ten every many much several most however therefore meanwhile also although
    though unless since until whether after before during please kindly could would
    should might must shall may can will customer client patient user team staff manager
    support service services sales account accounts billing invoice order orders payment
    payments refund report reports review meeting meetings project projects product
    products release version build deploy deployment server database cluster system
    systems data file files document documents page pages section chapter table figure
    item items issue issues ticket tickets request requests error errors warning status
    summary overview background purpose scope goal goals action actions agenda minutes
    office department company committee board group division unit north south east west
    street avenue road city county state country national international global local
    general public private internal external annual quarterly monthly weekly daily
    morning afternoon evening night week month year quarter day hour minute time date
    no yes none total amount price cost budget revenue profit loss tax fee fees rate
    discount offer plan plans policy policies terms conditions agreement contract
    welcome congratulations sorry unfortunately fortunately great good thanks thank
    reminder important urgent fyi asap eta faq api ui ux id ip url pdf csv json sql
    ask tell contact email forward meet invite remind help cc bcc attn spoke met
    visa mastercard amex discover paypal venmo zelle iban swift ach
    """.split()
)
_CALENDAR_WORDS = frozenset(
    "monday tuesday wednesday thursday friday saturday sunday january february march "
    "april june july august september october november december today tomorrow".split()
)
_NAME_WORD = r"(?:[A-Z]\.|[A-Z][a-zà-ÿ]*(?:[A-Z][a-zà-ÿ]+)?(?:['’\-][A-Za-zà-ÿ]+)*)"
_PARTICLE = r"(?:van|von|der|den|de|da|das|dos|del|della|di|du|le|la|bin|ibn|al|el|ter|ten|st\.)"
_NAME_RUN = re.compile(
    r"(?<![\w@.\-/])" + _NAME_WORD + r"(?:\s+(?:" + _PARTICLE + r"\s+)?" + _NAME_WORD + r"){0,3}"
    r"(?![\w@\-/])"
)
_SENTENCE_END = re.compile(r"(?:[.!?:;\"(\[\n\r\t•*>\-]|^)\s*$")


class NameCandidate(NamedTuple):
    start: int
    end: int
    cued: bool  # a title or cue word precedes it
    sentence_initial: bool
    words: int


def name_candidates(text: str) -> list[NameCandidate]:
    """Runs of capitalized words that may be names (stop words trimmed off)."""
    out = []
    for match in _NAME_RUN.finditer(text):
        start, end = match.span()
        words = [
            (m.start() + start, m.end() + start, m.group())
            for m in re.finditer(r"\S+", match.group())
        ]
        # Trim stop words and titles off the front; a title becomes the cue.
        cued = False
        while words:
            bare = words[0][2].rstrip(".").lower()
            if bare in TITLES:
                cued = True
                words.pop(0)
            elif bare in STOP_CAPITALIZED:
                words.pop(0)
            else:
                break
        while words and words[-1][2].rstrip(".").lower() in _CALENDAR_WORDS:
            words.pop()
        if not words:
            continue
        first_start = words[0][0]
        before = text[max(0, first_start - 40) : first_start]
        prev = text[max(0, first_start - 12) : first_start].rstrip().lower().rstrip(".")
        after_title = bool(prev.split()) and prev.split()[-1] in TITLES
        cued = cued or after_title
        initial = bool(_SENTENCE_END.search(before)) and first_start == start and not after_title
        if not cued and _PERSON_CUE_RE.search(before):
            cued = True
        end = words[-1][1]
        if text[end - 1] == "." and not re.fullmatch(r"[A-Z]\.", words[-1][2]):
            end -= 1
        out.append(NameCandidate(first_start, end, cued, initial, len(words)))
    return out


__all__ = [
    "Finding",
    "LEXICONS",
    "NameCandidate",
    "PATTERNS",
    "iban_ok",
    "lexicon_findings",
    "luhn_ok",
    "name_candidates",
    "pattern_findings",
    "ssn_ok",
    "vin_ok",
]
