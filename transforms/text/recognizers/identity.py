"""Identity and account numbers, dates and ages.

Cards (Luhn; spaces, dashes or dots between digits), US SSNs (SSA rules), IBANs (mod
97, grouped or not), numbers after record/account/licence/passport cue words, VINs
(check digit); dates in day-month-year, month-day-year and year-month-day orders with
``/ . -`` separators and month names of the main European languages; ages (``45 years
old``, ``45-year-old``, ``aged 45``, ``45 y/o``, ``age: 45``, ``45 Jahre``, ``45 ans``...).
"""

from __future__ import annotations

import re

from veil.transforms.text.recognizers.base import Pattern, iban_ok, luhn_ok, ssn_ok, vin_ok


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


def _id_value(match):
    value = match.group("v")
    if not any(c.isdigit() for c in value):
        return None
    return (0.7, _id_type(match.group("cue")), "v")


def _age(match):
    group = next(g for g in ("v", "w", "y", "z", "x") if match.group(g))
    age = int(match.group(group))
    return (0.7, "AGE", group) if age <= 125 else None


# Month names (and their common abbreviations and inflections) in English, German,
# French, Spanish, Italian, Portuguese, Dutch, Polish, Czech, Swedish, Danish/Norwegian,
# Finnish, Hungarian: language data, not a value list.
MONTHS = (
    "january|february|march|april|may|june|july|august|september|october|november|december|"
    "jan|feb|mar|apr|jun|jul|aug|sep|sept|oct|nov|dec|"
    "januar|jänner|februar|märz|maerz|mai|juni|juli|oktober|dezember|okt|dez|mär|"
    "janvier|février|fevrier|mars|avril|juin|juillet|août|aout|septembre|octobre|novembre|"
    "décembre|decembre|janv|févr|avr|juil|déc|"
    "enero|febrero|marzo|abril|mayo|junio|julio|agosto|septiembre|setiembre|octubre|"
    "noviembre|diciembre|ene|dic|"
    "gennaio|febbraio|aprile|maggio|giugno|luglio|settembre|ottobre|dicembre|gen|mag|giu|"
    "lug|ott|"
    "janeiro|fevereiro|março|marco|maio|junho|julho|setembro|outubro|dezembro|fev|set|out|"
    "januari|februari|maart|mei|augustus|okt|"
    "stycznia|styczeń|lutego|luty|marca|marzec|kwietnia|kwiecień|maja|czerwca|czerwiec|"
    "lipca|lipiec|sierpnia|sierpień|września|wrzesień|października|październik|"
    "listopada|listopad|grudnia|grudzień|"
    "ledna|leden|února|únor|března|březen|dubna|duben|května|květen|června|červen|"
    "července|červenec|srpna|srpen|září|října|říjen|prosince|prosinec|"
    "augusti|maj|marts|desember|"
    "tammikuuta|helmikuuta|maaliskuuta|huhtikuuta|toukokuuta|kesäkuuta|heinäkuuta|"
    "elokuuta|syyskuuta|lokakuuta|marraskuuta|joulukuuta|"
    "január|február|március|április|május|június|július|augusztus|szeptember|október|"
    "december"
)
_M = r"(?:" + MONTHS + r")"
_DAY = r"(?:0?[1-9]|[12]\d|3[01])"
_MON = r"(?:0?[1-9]|1[0-2])"
_YEAR = r"(?:1[89]\d\d|20\d\d)"
_DATE_WORDS = re.compile(
    r"(?i)(?<!\w)(?:"
    + _DAY + r"(?:st|nd|rd|th|er|\.|º)?\s{0,3}(?:of\s+|de\s+|di\s+)?" + _M
    + r"\.?(?:,?\s{0,3}(?:de\s+|del\s+)?(?:" + _YEAR + r"|'?\d\d)\b)?"
    + r"|" + _M + r"\.?\s{1,3}" + _DAY + r"(?:st|nd|rd|th)?(?:,?\s{1,3}" + _YEAR + r")?"
    + r"|" + _M + r"\.?,?\s{1,3}" + _YEAR
    + r")(?!\w)"
)  # fmt: skip
_DATE_NUMERIC = re.compile(
    r"(?<![\w./\-])(?:"
    + _DAY + r"([./\-])" + _MON + r"\1(?:" + _YEAR + r"|\d\d)"
    + r"|" + _MON + r"([./\-])" + _DAY + r"\2(?:" + _YEAR + r"|\d\d)"
    + r"|" + _YEAR + r"([./\-])" + _MON + r"\3" + _DAY
    + r"|" + _DAY + r"\.\s" + _MON + r"\.\s" + _YEAR
    + r")(?![\w/\-]|\.\d)"
)  # fmt: skip
_AGE = re.compile(
    r"(?i)(?<![\w.,])(?P<v>\d{1,3})[\s\-]{0,3}(?:(?:years?|yrs?)[\s\-]{1,3}old|y\.?o\.?|y/o|yo|"
    r"jahre?\s+alt|år\s+gammal|jaar\s+oud|éves|let\s+(?:starý|stará))(?!\w)"
    r"|\b(?:aged?|âgée?\s+de|alter|edad|età|idade|leeftijd|wiek|věk|ålder|alder)"
    r"\s{0,3}[:=]?\s{0,3}(?:of\s+)?(?P<w>\d{1,3})(?!\d|[.,]\d)"
    r"|\b(?:de|di|ha|tiene|tem|a|j'ai)\s{1,3}(?P<y>\d{1,3})\s{1,3}"
    r"(?:ans|años|anos|anni|lat|år|jahre)(?!\s+(?:ago|fa|depuis|de\s+experiencia))(?!\w)"
    r"|\b(?:turn(?:ed|s|ing)?|turning|age of|(?:he|she|i|they|you|we)\s+(?:was|is|am|were|are|'m|'s))"
    r"\s{1,3}(?P<z>\d{1,3})(?=\s{0,2}(?:[.,;!?)]|$|\n|years|yrs|on|in|next|this|last|today|soon))"
    r"|\b(?:patient|pt|male|female|man|woman|boy|girl)\s{0,2}[,(]?\s{0,2}(?P<x>\d{1,3})"
    r"\s{0,2}(?:[mfMF]\b|\)|,)"
)  # fmt: skip

PATTERNS: tuple[Pattern, ...] = (
    Pattern(
        "credit-card",
        "CREDIT_CARD",
        re.compile(r"(?<![\d\-.])\d(?:[ \-.]?\d){12,18}(?![\d\-]|\.\d)"),
        1.0,
        ("card", "visa", "mastercard", "amex", "discover", "credit", "debit", "cc", "charge",
         "karte", "carte", "tarjeta", "carta", "cartão", "karta", "kort"),
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
        re.compile(r"(?i)\b[A-Z]{2}\d{2}(?:[ \-]?[A-Z0-9]{4}){2,7}(?:[ \-]?[A-Z0-9]{1,3})?\b"),
        1.0,
        ("iban", "account", "wire", "transfer", "bank", "konto", "compte", "cuenta", "conto"),
        _iban,
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
            r"employee\s+(?:id|number|no\.?)|customer\s+(?:id|number|no\.?)|routing(?:\s+number)?|"
            r"driver'?s\s+licen[cs]e(?:\s+(?:number|no\.?|#))?|national\s+id|id\s+(?:number|no\.?|card)|tax\s+id|"
            r"ssn|ss#|social\s+security(?:\s+(?:number|no\.?|#))?|national\s+insurance(?:\s+(?:number|no\.?|#))?|"
            r"personal\s+(?:id|number|code)|insurance\s+(?:number|no\.?)|nhs(?:\s+number)?|"
            r"nino|ni\s+number|personnummer|pesel|nif|nie|dni|codice\s+fiscale|bsn|"
            r"steuer-?id|sozialversicherungsnummer|case\s+(?:id|number|no\.?)|"
            r"claim\s+(?:id|number|no\.?)|invoice\s+(?:number|no\.?)|order\s+(?:id|number|no\.?)|"
            r"ticket\s+(?:id|number|no\.?)|reference(?:\s+(?:number|no\.?))?|ref\.?(?:\s+no\.?)?)"
            r"\s{0,3}[:#]?\s{0,3}(?:(?:number|no\.?)\s+)?(?:is\s+|was\s+|:\s*)?(?P<v>[A-Z0-9](?:[A-Z0-9\-/.]{0,24}[A-Z0-9])(?: \d{2,6}){0,3})\b"
        ),
        0.7,
        validate=_id_value,
        group="v",
    ),
    Pattern(
        "uk-nino",
        "NATIONAL_ID",
        re.compile(r"\b[A-CEGHJ-PR-TW-Z]{2} ?\d{2} ?\d{2} ?\d{2} ?[A-D]\b"),
        0.7,
    ),
    Pattern("vin", "VEHICLE_ID", re.compile(r"\b[A-HJ-NPR-Z0-9]{17}\b"), 0.9, validate=_vin),
    Pattern("date-numeric", "DATE_TIME", _DATE_NUMERIC, 0.6,
            ("born", "birth", "dob", "geb", "né", "nacido", "nato", "urodzon")),
    Pattern("date-words", "DATE_TIME", _DATE_WORDS, 0.6,
            ("born", "birth", "dob", "admitted", "discharged", "visit", "seen"),
            needs_digit=True),
    Pattern("age", "AGE", _AGE, 0.7, validate=_age),
)  # fmt: skip


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
        ("insurance", "HEALTH_PLAN_ID"),
        ("passport", "US_PASSPORT"),
        ("driver", "US_DRIVER_LICENSE"),
        ("licen", "LICENSE_NUMBER"),
        ("certificate", "LICENSE_NUMBER"),
        ("serial", "DEVICE_ID"),
        ("device", "DEVICE_ID"),
        ("plate", "VEHICLE_ID"),
        ("vin", "VEHICLE_ID"),
        ("national", "NATIONAL_ID"),
        ("social", "NATIONAL_ID"),
        ("ss", "US_SSN"),
        ("personnummer", "NATIONAL_ID"),
        ("pesel", "NATIONAL_ID"),
        ("nif", "NATIONAL_ID"),
        ("nie", "NATIONAL_ID"),
        ("dni", "NATIONAL_ID"),
        ("codice", "NATIONAL_ID"),
        ("bsn", "NATIONAL_ID"),
        ("nhs", "NATIONAL_ID"),
        ("nino", "NATIONAL_ID"),
        ("ni ", "NATIONAL_ID"),
        ("tax", "NATIONAL_ID"),
        ("steuer", "NATIONAL_ID"),
        ("sozial", "NATIONAL_ID"),
        ("personal", "NATIONAL_ID"),
    ):
        if cue.startswith(prefix):
            return entity
    return "ID_NUMBER"
