"""Anonymization operators and the keys they use, shared by every modality.

An operator turns one detected value into its replacement, as the policy says:

=============  ==========================================================  ============
operator       what it outputs                                             parameters
=============  ==========================================================  ============
``redact``     ``[REDACTED]`` (text) / ``null`` (structured)               ``marker``
``replace``    ``<ENTITY_TYPE>``                                           ``label``
``mask``       ``*`` for all but the last N characters (separators kept)   ``keep_last``, ``char``
``pseudonym``  ``<TYPE_1a2b3c4d5e6f>``: HMAC-SHA256 of the normalized      ``length``
               value under the pseudonym key (same value, same output,
               in every record, topic and modality; not reversible;
               per subject when the key service holds the keys)
``generalize`` age band (``30-39``, ``90+``), 3-digit ZIP (HIPAA small     ``kind``, ``width``
               areas become ``000``), or a date's year
``date_shift`` the date moved by a per-subject offset derived from the     ``max_days``
               subject key under the pseudonym key (consistent for a
               subject; the format is kept)
``drop``       nothing (text: the span is removed; structured: the field)
``encrypt``    ``<TYPE:protected>``; the original goes to the protection  -
               stage (``WorkItem.pending_protection``), never to output
=============  ==========================================================  ============

Fail closed: a value an operator cannot handle (a ZIP code without five digits, a date
it cannot parse) becomes ``<ENTITY_TYPE>``, never the original.

Keys come through ``veil.transforms.keys`` (``SecretKeys.key_for(scope)``), the one
door to key material. The local implementation (``FileKeys``) reads a key file created
by ``veil keys init PATH`` with owner-only permissions; the file is named by the policy (``keys.pseudonym_key_file``) or by an environment variable
on the worker (``keys.pseudonym_key_env``, default ``VEIL_PSEUDONYM_KEY_FILE``). Key
values never travel in pipeline options or in the policy. Keyed operators ask
``keys.key_for_subject(scope, subject_key)``: one key for all subjects with a key file;
with the key service (a ``kms:`` URI in place of the file) a secret per subject that
``veil keys forget`` destroys, so an erased subject's pseudonyms cannot be recomputed or
linked to new data (its new records are dead-lettered ``SUBJECT_ERASED``).

Example::

    ctx = OperatorContext(subject_key="patient-7", keys=FileKeys(path))
    apply_operator(OperatorSpec("mask", {"keep_last": 4}), "4111 1111 1111 1111",
                   "CREDIT_CARD", ctx)
    # '**** **** **** 1111'
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import hmac
import logging
import re

from veil.transforms.keys import SecretKeys

_LOGGER = logging.getLogger(__name__)

OPERATORS = (
    "redact",
    "replace",
    "mask",
    "pseudonym",
    "generalize",
    "date_shift",
    "drop",
    "encrypt",
)
GENERALIZE_KINDS = ("age_band", "zip3", "date_year")
DEFAULT_KEY_ENV = "VEIL_PSEUDONYM_KEY_FILE"

#: 3-digit ZIP prefixes whose areas hold 20,000 people or fewer (HHS de-identification
#: guidance, Safe Harbor, 2000 census): they must become ``000``.
HIPAA_RESTRICTED_ZIP3 = frozenset(
    {
        "036", "059", "063", "102", "203", "556", "692", "790", "821",
        "823", "830", "831", "878", "879", "884", "890", "893",
    }
)  # fmt: skip


class OperatorError(ValueError):
    """An operator name or parameter in the policy is invalid."""


@dataclasses.dataclass(frozen=True)
class OperatorSpec:
    """One operator and its parameters, as validated from the policy."""

    name: str
    params: tuple = ()  # sorted (key, value) pairs, hashable

    @classmethod
    def of(cls, name: str, params: dict | None = None) -> "OperatorSpec":
        return cls(name, tuple(sorted((params or {}).items())))

    def param(self, key: str, default=None):
        return dict(self.params).get(key, default)

    @property
    def keyed(self) -> bool:
        return self.name in ("pseudonym", "date_shift")


def parse_operator(raw, where: str) -> OperatorSpec:
    """Validates ``{"operator": name, ...params}`` (or a bare name) from the policy."""
    if isinstance(raw, str):
        raw = {"operator": raw}
    if not isinstance(raw, dict) or not isinstance(raw.get("operator"), str):
        raise OperatorError(f"{where} must be an operator name or {{operator: NAME, ...}}")
    name = raw["operator"]
    params = {k: v for k, v in raw.items() if k != "operator"}
    if name not in OPERATORS:
        raise OperatorError(f"{where}: unknown operator {name!r} (known: {', '.join(OPERATORS)})")
    allowed = {
        "redact": {"marker"},
        "replace": {"label"},
        "mask": {"keep_last", "char"},
        "pseudonym": {"length"},
        "generalize": {"kind", "width"},
        "date_shift": {"max_days"},
        "drop": set(),
        "encrypt": set(),
    }[name]
    extra = set(params) - allowed
    if extra:
        raise OperatorError(f"{where}: operator {name} takes no parameter {sorted(extra)}")
    if name == "mask":
        keep = params.get("keep_last", 4)
        if not isinstance(keep, int) or isinstance(keep, bool) or not 0 <= keep <= 8:
            raise OperatorError(f"{where}: mask.keep_last must be an integer in [0, 8]")
        char = params.get("char", "*")
        if not isinstance(char, str) or len(char) != 1 or char.isalnum():
            raise OperatorError(f"{where}: mask.char must be one non-alphanumeric character")
    if name == "pseudonym":
        length = params.get("length", 12)
        if not isinstance(length, int) or isinstance(length, bool) or not 8 <= length <= 64:
            raise OperatorError(f"{where}: pseudonym.length must be an integer in [8, 64]")
    if name == "generalize":
        kind = params.get("kind")
        if kind not in GENERALIZE_KINDS:
            raise OperatorError(
                f"{where}: generalize.kind must be one of {', '.join(GENERALIZE_KINDS)}"
            )
        width = params.get("width", 10)
        if not isinstance(width, int) or isinstance(width, bool) or not 1 <= width <= 50:
            raise OperatorError(f"{where}: generalize.width must be an integer in [1, 50]")
    if name == "date_shift":
        days = params.get("max_days", 365)
        if not isinstance(days, int) or isinstance(days, bool) or not 1 <= days <= 3650:
            raise OperatorError(f"{where}: date_shift.max_days must be an integer in [1, 3650]")
    for key in ("marker", "label"):
        if key in params and not isinstance(params[key], str):
            raise OperatorError(f"{where}: {name}.{key} must be a string")
    return OperatorSpec.of(name, params)


@dataclasses.dataclass
class OperatorContext:
    """What keyed and protecting operators need about the record being processed."""

    subject_key: str
    keys: SecretKeys
    pending_protection: list = dataclasses.field(default_factory=list)


class Drop:
    """Sentinel result: remove the value (text span or structured field)."""

    def __repr__(self):
        return "DROP"


DROP = Drop()


def apply_operator(
    spec: OperatorSpec,
    value: str,
    entity_type: str,
    ctx: OperatorContext,
    field_path: str = "payload",
):
    """Applies ``spec`` to ``value``; returns the replacement string or ``DROP``.

    Raises ``KeyUnavailable`` when a keyed operator has no key (the caller dead-letters).
    """
    name = spec.name
    if name == "replace":
        return f"<{spec.param('label') or entity_type}>"
    if name == "redact":
        return spec.param("marker", "[REDACTED]")
    if name == "drop":
        return DROP
    if name == "mask":
        return mask(value, spec.param("keep_last", 4), spec.param("char", "*"))
    if name == "pseudonym":
        digest = pseudonym(value, ctx.keys, spec.param("length", 12), ctx.subject_key)
        return f"<{entity_type}_{digest}>"
    if name == "generalize":
        out = generalize(value, spec.param("kind"), spec.param("width", 10))
        return out if out is not None else f"<{entity_type}>"
    if name == "date_shift":
        out = date_shift(value, ctx.subject_key, ctx.keys, spec.param("max_days", 365))
        return out if out is not None else f"<{entity_type}>"
    if name == "encrypt":
        ctx.pending_protection.append((field_path, value.encode("utf-8")))
        return f"<{entity_type}:protected>"
    raise OperatorError(f"unknown operator {name!r}")  # parse_operator prevents this


def mask(value: str, keep_last: int = 4, char: str = "*") -> str:
    """Masks every alphanumeric character but the last ``keep_last`` ones.

    Separators stay, so ``4111-1111-1111-1111`` gives ``****-****-****-1111``. Values
    with no more than ``2 * keep_last`` alphanumerics are masked whole (fail closed: a
    short value must not be half visible).
    """
    alnum = sum(c.isalnum() for c in value)
    keep = keep_last if alnum > 2 * keep_last else 0
    out, seen = [], 0
    for c in value:
        if c.isalnum():
            seen += 1
            out.append(c if seen > alnum - keep else char)
        else:
            out.append(c)
    return "".join(out)


def normalize(value: str) -> str:
    """Case- and spacing-insensitive form, so ``John  Smith`` and ``john smith`` match."""
    return " ".join(value.casefold().split())


def pseudonym(value: str, keys: SecretKeys, length: int = 12, subject_key=None) -> str:
    """HMAC-SHA256 of the normalized value; per subject when the keys are (key service)."""
    key = keys.key_for("pseudonym") if subject_key is None else keys.key_for_subject(
        "pseudonym", subject_key
    )
    digest = hmac.new(key, normalize(value).encode(), hashlib.sha256)
    return digest.hexdigest()[:length]


# --- generalization -------------------------------------------------------------------

_INT = re.compile(r"\d+")


def generalize(value, kind: str, width: int = 10):
    """Age band, 3-digit ZIP or year; None when the value does not parse."""
    text = str(value)
    if kind == "age_band":
        match = _INT.search(text)
        if not match:
            return None
        return age_band(int(match.group()), width)
    if kind == "zip3":
        return zip3(text)
    if kind == "date_year":
        parsed = parse_date(text)
        if parsed is None:
            match = re.search(r"\b(1[89]\d\d|20\d\d)\b", text)
            return match.group(1) if match else None
        return str(parsed[0].year)
    return None


def age_band(age: int, width: int = 10) -> str:
    """``37 -> "30-39"``; ages over 89 aggregate into ``"90+"`` (HIPAA Safe Harbor)."""
    if age >= 90:
        return "90+"
    low = (age // width) * width
    return f"{low}-{min(low + width - 1, 89)}"


def zip3(value: str) -> str | None:
    """First three digits of a US ZIP code, ``000`` for HIPAA's restricted prefixes."""
    digits = re.sub(r"\D", "", value)
    if len(digits) not in (5, 9):
        return None
    prefix = digits[:3]
    return "000" if prefix in HIPAA_RESTRICTED_ZIP3 else prefix


# --- dates ----------------------------------------------------------------------------

_MONTHS = {
    name: index
    for index, names in enumerate(
        [
            ("january", "jan"), ("february", "feb"), ("march", "mar"), ("april", "apr"),
            ("may",), ("june", "jun"), ("july", "jul"), ("august", "aug"),
            ("september", "sep", "sept"), ("october", "oct"), ("november", "nov"),
            ("december", "dec"),
        ],
        1,
    )
    for name in names
}  # fmt: skip
_MONTH_RE = "|".join(sorted(_MONTHS, key=len, reverse=True))
_DATE_FORMS = [
    ("iso", re.compile(r"^(\d{4})-(\d{1,2})-(\d{1,2})$")),
    ("us", re.compile(r"^(\d{1,2})/(\d{1,2})/(\d{4})$")),
    ("us2", re.compile(r"^(\d{1,2})/(\d{1,2})/(\d{2})$")),
    ("mdy", re.compile(rf"^({_MONTH_RE})\.?\s+(\d{{1,2}})(?:st|nd|rd|th)?,?\s+(\d{{4}})$", re.I)),
    ("dmy", re.compile(rf"^(\d{{1,2}})(?:st|nd|rd|th)?\s+({_MONTH_RE})\.?,?\s+(\d{{4}})$", re.I)),
]


def parse_date(text: str):
    """``(date, form)`` for the supported forms, or None."""
    text = text.strip()
    for form, pattern in _DATE_FORMS:
        match = pattern.match(text)
        if not match:
            continue
        try:
            if form == "iso":
                y, m, d = (int(g) for g in match.groups())
            elif form == "us":
                m, d, y = (int(g) for g in match.groups())
            elif form == "us2":
                m, d, y = (int(g) for g in match.groups())
                y += 2000 if y < 50 else 1900
            elif form == "mdy":
                m, d, y = _MONTHS[match.group(1).lower()], int(match.group(2)), int(match.group(3))
            else:
                d, m, y = int(match.group(1)), _MONTHS[match.group(2).lower()], int(match.group(3))
            return dt.date(y, m, d), form
        except ValueError:
            return None
    return None


def format_date(date: dt.date, form: str) -> str:
    if form == "iso":
        return date.isoformat()
    if form == "us":
        return f"{date.month:02d}/{date.day:02d}/{date.year}"
    if form == "us2":
        return f"{date.month:02d}/{date.day:02d}/{date.year % 100:02d}"
    month = date.strftime("%B")
    if form == "mdy":
        return f"{month} {date.day}, {date.year}"
    return f"{date.day} {month} {date.year}"


def subject_offset_days(subject_key: str, keys: SecretKeys, max_days: int) -> int:
    """A non-zero offset in ``[-max_days, max_days]`` from a keyed hash of the subject."""
    key = keys.key_for_subject("date-shift", subject_key)
    digest = hmac.new(key, subject_key.encode(), hashlib.sha256).digest()
    magnitude = int.from_bytes(digest[:8], "big") % max_days + 1
    return magnitude if digest[8] & 1 else -magnitude


def date_shift(text: str, subject_key: str, keys: SecretKeys, max_days: int = 365):
    parsed = parse_date(str(text))
    if parsed is None:
        return None
    date, form = parsed
    offset = subject_offset_days(subject_key, keys, max_days)
    return format_date(date + dt.timedelta(days=offset), form)


__all__ = [
    "DROP",
    "HIPAA_RESTRICTED_ZIP3",
    "OPERATORS",
    "OperatorContext",
    "OperatorError",
    "OperatorSpec",
    "age_band",
    "apply_operator",
    "date_shift",
    "generalize",
    "mask",
    "parse_date",
    "parse_operator",
    "pseudonym",
    "zip3",
]

