"""``redact``: a fixed marker (``[REDACTED]``; structured non-string values become null)."""

from __future__ import annotations

from veil.transforms.operators.base import Operator, register


@register
class Redact(Operator):
    name = "redact"
    params = {"marker": {"type": "string", "x-message": "must be a string"}}

    def operate(self, value, entity_type, params, ctx, field_path):
        return params.get("marker", "[REDACTED]")
