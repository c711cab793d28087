"""``mask``: ``*`` for all but the last N alphanumerics; separators kept."""

from __future__ import annotations

from veil.transforms.operators.base import Operator, OperatorError, register


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


@register
class Mask(Operator):
    name = "mask"
    params = {
        "keep_last": {
            "type": "integer",
            "minimum": 0,
            "maximum": 8,
            "x-message": "must be an integer in [0, 8]",
        },
        "char": {
            "type": "string",
            "minLength": 1,
            "maxLength": 1,
            "x-message": "must be one non-alphanumeric character",
        },
    }

    def validate(self, params, where):
        if params.get("char", "*").isalnum():
            raise OperatorError(f"{where}.char: must be one non-alphanumeric character")

    def operate(self, value, entity_type, params, ctx, field_path):
        return mask(value, params.get("keep_last", 4), params.get("char", "*"))
