"""``drop``: nothing (text: the span is removed; structured: the field)."""

from __future__ import annotations

from veil.transforms.operators.base import DROP, Operator, register


@register
class Drop(Operator):
    name = "drop"

    def operate(self, value, entity_type, params, ctx, field_path):
        return DROP
