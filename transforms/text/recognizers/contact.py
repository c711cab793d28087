"""Contact details: e-mail (internationalised), URLs, phone numbers, IPs, usernames.

Phone numbers: a linear candidate regex finds digit runs shaped like a phone number
(``+``/``00`` prefixes, brackets, spaces, dots, dashes, slashes), then libphonenumber's
metadata (``phonenumbers``) validates each for the policy's regions: an international
number by its country code, a national one (``0871415292``, ``(07477) 139212``,
``08-41 14 46``) by the first listed region where it is a valid number. A number no
region validates is still a phone after a phone word (``tel``, ``mobile``, ``Telefon``...).
Numbers spelled out in words (``four one five five five ...``, as speech transcripts and
some chat write them) are phones from seven digit words on.

Example::

    findings(text, text.lower(), {}, regions=("DE", "GB", "US"))
"""

from __future__ import annotations

import re

from veil.transforms.text.recognizers.base import Finding, Pattern, context_hit

#: EU/EEA, UK, US, CA, IN, BR, AU, CH: the default phone regions (policy: text.phone_regions).
DEFAULT_PHONE_REGIONS = (
    "US", "GB", "DE", "FR", "IT", "ES", "PL", "NL", "SE", "CZ", "PT", "BE", "AT", "CH",
    "DK", "FI", "NO", "IE", "GR", "HU", "RO", "SK", "SI", "HR", "BG", "LT", "LV", "EE",
    "LU", "MT", "CY", "IS", "LI", "CA", "IN", "BR", "AU",
)  # fmt: skip
PHONE_WORDS = (
    "phone", "call", "tel", "mobile", "cell", "fax", "text me", "reach", "contact", "whatsapp",
    "telefon", "téléphone", "telephone", "portable", "handy", "teléfono", "telefono",
    "cellulare", "telefone", "celular", "tlf", "puhelin", "mob", "ph.", "ph:", "nr tel",
    "sms", "landline", "hotline",
)  # fmt: skip

# Local part and domain labels are bounded, and the match can only start where a run
# of local-part characters starts: linear on "a%a%a%..." (was quadratic).
_EMAIL = re.compile(
    r"(?<![\w.%+\-])[\w.%+\-]{1,64}@(?:[^\W_](?:[\w\-]{0,61}[^\W_])?\.){1,8}[^\W\d_]{2,24}(?![\w\-])"
)
_URL = re.compile(r"\b(?:https?://|www\.)[^\s<>\"'()]{0,2000}[^\s<>\"'().,;:!?]")
_PHONE_CANDIDATE = re.compile(
    r"(?<![\w+/=:@.\-])(?<!\d,)(?:\+|00)?\(?\d{1,15}\)?(?:(?:[ .\-/]{1,3}|(?<=\))|(?=\())\(?\d{1,8}\)?){0,7}"
    r"(?:\s*(?:x|ext\.?|extension|#)\s*\d{1,5})?(?![\w@]|[.,]\d|-\d|/\d)"
)
#: Candidates validated with libphonenumber per record (each costs up to one parse per
#: region); the rest are kept as phones without validation.
PHONE_VALIDATION_BUDGET = 500
_DIGIT_WORDS = {
    "zero": "0", "oh": "0", "o": "0", "one": "1", "two": "2", "three": "3", "four": "4",
    "five": "5", "six": "6", "seven": "7", "eight": "8", "nine": "9", "double": "", "triple": "",
}  # fmt: skip
_SPOKEN_DIGITS = re.compile(
    r"(?i)\b(?:(?:zero|oh|one|two|three|four|five|six|seven|eight|nine|double|triple)"
    r"(?:[\s,\-]{1,3}|$)){7,20}"
)
_DATE_LIKE = re.compile(
    r"^(?:\d{1,2}[./\-]\d{1,2}[./\-](?:\d{2}|\d{4})|\d{4}[./\-]\d{1,2}[./\-]\d{1,2})$"
)
_IPV4_LIKE = re.compile(r"^\d{1,3}(?:\.\d{1,3}){3}$|^\d{3}([ \-])\d{2}\1\d{4}$")
_HANDLE = re.compile(r"(?<![\w@.])@(?P<v>[A-Za-z0-9_](?:[\w.\-]{0,38}\w)?)(?![\w@])")
_USER_FIELD = re.compile(
    r"(?i)\b(?:user(?:[_\- ]?name)?|login|uid|nick(?:name)?|handle|screen[_\- ]?name|"
    r"author|owner|assignee|reporter|account)\s*[=:]\s*[\"'<]?(?P<v>[\w.\-@]{2,64})"
)
_USER_PHRASE = re.compile(r"(?i)\b(?:for|by|as)\s+user\s+[\"'<]?(?P<v>[\w.\-@]{2,64})")
# Chat and log lines: "[12:01] anna_k: hi", "<anna_k> hi", "2026-01-02 10:00 anna_k: hi".
_CHAT_NICK = re.compile(
    r"(?m)^[ \t]*(?:\[[^\]\n]{1,40}\][ \t]*|\d[\d:\-./T ]{4,30}[ \t]+)?<(?P<v>@?[\w.\-]{2,32})>"
    r"|^[ \t]*(?:\[[^\]\n]{1,40}\]|\d[\d:\-./T]{4,30})[ \t]+(?P<w>@?[\w.\-]{2,32}):[ \t]"
)

PATTERNS: tuple[Pattern, ...] = (
    Pattern("url", "URL", _URL, 0.6, needs_digit=False),
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
    Pattern("handle", "USERNAME", _HANDLE, 0.6, group="v", needs_digit=False),
    Pattern("user-field", "USERNAME", _USER_FIELD, 0.8, group="v", needs_digit=False),
    Pattern("user-phrase", "USERNAME", _USER_PHRASE, 0.8, group="v", needs_digit=False),
)


def email_findings(text: str) -> list[Finding]:
    if "@" not in text:
        return []
    out = []
    for match in _EMAIL.finditer(text):
        start, end = match.span()
        while start < end and text[start] in ".%+-":
            start += 1
        out.append(Finding("EMAIL_ADDRESS", 1.0, start, end, "pattern:email"))
    return out


def chat_nick_findings(text: str) -> list[Finding]:
    out = []
    for match in _CHAT_NICK.finditer(text):
        group = "v" if match.group("v") else "w"
        start, end = match.span(group)
        out.append(Finding("USERNAME", 0.7, start, end, "pattern:chat-nick"))
    return out


_PHONE_LIB = None


def _phonenumbers():
    global _PHONE_LIB
    if _PHONE_LIB is None:
        import phonenumbers

        _PHONE_LIB = phonenumbers
    return _PHONE_LIB


def _valid_phone(candidate: str, regions) -> bool:
    lib = _phonenumbers()
    compact = re.sub(r"(?i)\s*(?:x|ext\.?|extension|#)\s*\d{1,5}$", "", candidate)
    if compact.startswith("00"):
        compact = "+" + compact[2:]
    try:
        if compact.startswith("+"):
            return lib.is_valid_number(lib.parse(compact, None))
        for region in regions:
            number = lib.parse(compact, region)
            if lib.is_valid_number(number):
                return True
    except lib.NumberParseException:
        return False
    return False


def phone_findings(
    text: str, lowered: str, regions=DEFAULT_PHONE_REGIONS, extra_words=()
) -> list[Finding]:
    """Phone numbers validated with libphonenumber over ``regions`` (see module doc)."""
    out = []
    words = PHONE_WORDS + tuple(extra_words)
    budget = PHONE_VALIDATION_BUDGET
    for match in _PHONE_CANDIDATE.finditer(text):
        candidate = match.group().rstrip(" .-/")
        while candidate.endswith(")") and candidate.count(")") > candidate.count("("):
            candidate = candidate[:-1].rstrip(" .-/")
        digits = sum(c.isdigit() for c in candidate)
        if not 7 <= digits <= 15 or _DATE_LIKE.match(candidate) or _IPV4_LIKE.match(candidate):
            continue
        start = match.start()
        end = start + len(candidate)
        if candidate.startswith("(") and ")" not in candidate:
            start += 1
            candidate = candidate[1:]
        cued = context_hit(lowered, start, words)
        plain = candidate.isdigit()
        budget -= 1
        if budget < 0:
            # Past the budget a record is hostile or a table of numbers: every
            # candidate stays a phone unvalidated (fail closed, linear time).
            score = 0.5
        elif _valid_phone(candidate, regions):
            # A bare digit run is a weaker sign than a formatted number.
            score = 0.45 if plain and not cued else 0.7
        elif (cued or candidate.startswith(("+", "00"))) and digits >= 7:
            # A phone word before it, or an international prefix: a phone even where
            # libphonenumber's metadata does not know the number range.
            score = 0.5
        else:
            continue
        if cued:
            score = min(1.0, score + 0.35)
        out.append(Finding("PHONE_NUMBER", score, start, end, "phone:libphonenumber"))
    return out


def spoken_phone_findings(text: str) -> list[Finding]:
    """Seven or more digit words in a row (``four one five five ...``)."""
    out = []
    for match in _SPOKEN_DIGITS.finditer(text):
        value = match.group().rstrip(" ,-")
        digits = sum(1 for w in re.split(r"[\s,\-]+", value.lower()) if _DIGIT_WORDS.get(w))
        if digits >= 7:
            start = match.start()
            out.append(
                Finding("PHONE_NUMBER", 0.6, start, start + len(value), "phone:spoken-digits")
            )
    return out
