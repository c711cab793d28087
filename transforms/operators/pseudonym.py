"""``pseudonym``: ``<TYPE_1a2b3c4d5e6f>``, HMAC-SHA256 of the normalized value.

Same value, same output in every record, topic and modality; not reversible; per
subject when the key service holds the keys (``SecretKeys.key_for_subject``).
"""

from __future__ import annotations

import hashlib
import hmac

from veil.transforms.keys import SecretKeys
from veil.transforms.operators.base import Operator, register


def normalize(value: str) -> str:
    """Case- and spacing-insensitive form, so ``John  Smith`` and ``john smith`` match."""
    return " ".join(value.casefold().split())


def pseudonym(value: str, keys: SecretKeys, length: int = 12, subject_key=None) -> str:
    """HMAC-SHA256 of the normalized value; per subject when the keys are (key service)."""
    key = (
        keys.key_for("pseudonym")
        if subject_key is None
        else keys.key_for_subject("pseudonym", subject_key)
    )
    digest = hmac.new(key, normalize(value).encode(), hashlib.sha256)
    return digest.hexdigest()[:length]


@register
class Pseudonym(Operator):
    name = "pseudonym"
    keyed = True
    params = {
        "length": {
            "type": "integer",
            "minimum": 8,
            "maximum": 64,
            "x-message": "must be an integer in [8, 64]",
        }
    }

    def operate(self, value, entity_type, params, ctx, field_path):
        digest = pseudonym(value, ctx.keys, params.get("length", 12), ctx.subject_key)
        return f"<{entity_type}_{digest}>"
