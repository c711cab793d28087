"""``generalize``: an age band (``30-39``, ``90+``), a 3-digit ZIP, or a date's year.

HIPAA Safe Harbor: ages over 89 aggregate into ``90+``; 3-digit ZIP areas of 20,000
people or fewer become ``000``. A value that does not parse becomes ``<ENTITY_TYPE>``.
"""

from __future__ import annotations

import re

from veil.transforms.operators._dates import parse_date
from veil.transforms.operators.base import Operator, register

GENERALIZE_KINDS = ("age_band", "zip3", "date_year")

#: 3-digit ZIP prefixes whose areas hold 20,000 people or fewer (HHS de-identification
#: guidance, Safe Harbor, 2000 census): they must become ``000``.
HIPAA_RESTRICTED_ZIP3 = frozenset(
    {
        "036", "059", "063", "102", "203", "556", "692", "790", "821",
        "823", "830", "831", "878", "879", "884", "890", "893",
    }
)  # fmt: skip

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


@register
class Generalize(Operator):
    name = "generalize"
    required = ("kind",)
    params = {
        "kind": {
            "enum": list(GENERALIZE_KINDS),
            "x-message": f"must be one of {', '.join(GENERALIZE_KINDS)}",
        },
        "width": {
            "type": "integer",
            "minimum": 1,
            "maximum": 50,
            "x-message": "must be an integer in [1, 50]",
        },
    }

    def operate(self, value, entity_type, params, ctx, field_path):
        out = generalize(value, params["kind"], params.get("width", 10))
        return out if out is not None else f"<{entity_type}>"
