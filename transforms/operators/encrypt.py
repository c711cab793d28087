"""``encrypt``: ``<TYPE:protected>``; the original goes to the protection stage.

The original value is handed over in ``OperatorContext.pending_protection`` (envelope
encryption per subject, ``veil.transforms.crypto.protect``), never to the output.
"""

from __future__ import annotations

from veil.transforms.operators.base import Operator, register


@register
class Encrypt(Operator):
    name = "encrypt"

    def operate(self, value, entity_type, params, ctx, field_path):
        ctx.pending_protection.append((field_path, value.encode("utf-8")))
        return f"<{entity_type}:protected>"
