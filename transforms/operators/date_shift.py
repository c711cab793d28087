"""``date_shift``: the date moved by a per-subject offset, format kept.

The offset is derived from the subject key under the pseudonym key (consistent for a
subject, different between subjects); a value that does not parse as a date becomes
``<ENTITY_TYPE>`` (fail closed).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac

from veil.transforms.keys import SecretKeys
from veil.transforms.operators._dates import format_date, parse_date
from veil.transforms.operators.base import Operator, register


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


@register
class DateShift(Operator):
    name = "date_shift"
    keyed = True
    params = {
        "max_days": {
            "type": "integer",
            "minimum": 1,
            "maximum": 3650,
            "x-message": "must be an integer in [1, 3650]",
        }
    }

    def operate(self, value, entity_type, params, ctx, field_path):
        out = date_shift(value, ctx.subject_key, ctx.keys, params.get("max_days", 365))
        return out if out is not None else f"<{entity_type}>"
