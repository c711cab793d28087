"""Date parsing and formatting shared by ``generalize`` (``date_year``) and ``date_shift``."""

from __future__ import annotations

import datetime as dt
import re

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
