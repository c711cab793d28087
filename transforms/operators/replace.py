"""``replace``: ``<ENTITY_TYPE>`` (or ``<label>``)."""

from __future__ import annotations

from veil.transforms.operators.base import Operator, register


@register
class Replace(Operator):
    name = "replace"
    params = {"label": {"type": "string", "x-message": "must be a string"}}

    def operate(self, value, entity_type, params, ctx, field_path):
        return f"<{params.get('label') or entity_type}>"
