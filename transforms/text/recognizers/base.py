"""What every recognizer family shares: ``Finding``, ``Pattern``, validators, context.

A recognizer family module (``contact``, ``address``, ``identity``, ``secrets``) exposes
a tuple ``PATTERNS`` of ``Pattern``s and, where a regex is not enough, a function
``findings(text, lowered, context) -> list[Finding]``. ``pattern_findings`` in the
package runs them all.

Every regex here must run in linear time on any input: bounded repetitions where a
pattern could start at many positions, no nested unbounded quantifiers
(``tests/hostile/test_redteam_text.py`` holds the stalling inputs).
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable
from typing import NamedTuple

CONTEXT_BOOST = 0.35
CONTEXT_WINDOW = 48

#: Upper- and lower-case letters of the Latin, Greek and Cyrillic blocks (``re`` has
#: no ``\p{Lu}``): names, streets and cities outside ASCII.
UPPER = "A-Z" + "".join(chr(c) for c in range(0xC0, 0x530) if chr(c).isupper() and chr(c).isalpha())
LOWER = "a-z" + "".join(chr(c) for c in range(0xC0, 0x530) if chr(c).islower() and chr(c).isalpha())


class Finding(NamedTuple):
    """One detected entity: type, confidence, character span ``[start, end)``, detector."""

    entity_type: str
    score: float
    start: int
    end: int
    detector: str


@dataclasses.dataclass(frozen=True)
class Pattern:
    """A regex recognizer. ``group`` selects the reported span; ``validate`` returns a
    score (None: reject) from the match."""

    name: str
    entity_type: str
    regex: re.Pattern
    score: float
    context: tuple = ()
    validate: Callable | None = None
    group: int | str = 0
    needs_digit: bool = True


def context_hit(lowered: str, start: int, words) -> bool:
    """Whether one of ``words`` occurs in the ``CONTEXT_WINDOW`` characters before ``start``."""
    window = lowered[max(0, start - CONTEXT_WINDOW) : start]
    return any(word in window for word in words)


def run_patterns(
    patterns, text: str, lowered: str, has_digit: bool, extra_context: dict | None
) -> list[Finding]:
    """Runs ``patterns`` over ``text`` (context boosts applied, scores capped at 1)."""
    out = []
    for pattern in patterns:
        if pattern.needs_digit and not has_digit:
            continue
        context = pattern.context + tuple((extra_context or {}).get(pattern.entity_type, ()))
        for match in pattern.regex.finditer(text):
            score = pattern.score
            entity = pattern.entity_type
            if pattern.validate is not None:
                verdict = pattern.validate(match)
                if verdict is None:
                    continue
                if isinstance(verdict, tuple):  # (score, entity type, group)
                    score, entity, group = verdict
                    start, end = match.span(group)
                else:
                    score = verdict
                    start, end = match.span(pattern.group)
            else:
                start, end = match.span(pattern.group)
            if start < 0 or end <= start:
                continue
            if context and context_hit(lowered, match.start(), context):
                score = min(1.0, score + CONTEXT_BOOST)
            if score <= 0:
                continue
            out.append(Finding(entity, score, start, end, f"pattern:{pattern.name}"))
    return out


# --- validators -----------------------------------------------------------------------


def luhn_ok(digits: str) -> bool:
    total, parity = 0, len(digits) % 2
    for index, char in enumerate(digits):
        value = ord(char) - 48
        if index % 2 == parity:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def iban_ok(value: str) -> bool:
    compact = re.sub(r"[\s\-]", "", value).upper()
    if not 15 <= len(compact) <= 34:
        return False
    moved = compact[4:] + compact[:4]
    try:
        number = int("".join(str(int(c, 36)) for c in moved))
    except ValueError:
        return False
    return number % 97 == 1


def ssn_ok(area: str, group: str, serial: str) -> bool:
    """SSA rules: no area 000, 666 or 9xx; no group 00; no serial 0000."""
    return (
        area not in ("000", "666")
        and not area.startswith("9")
        and group != "00"
        and serial != "0000"
    )


_VIN_VALUES = {
    **{str(d): d for d in range(10)},
    **dict(zip("ABCDEFGH", range(1, 9))),
    **dict(zip("JKLMN", range(1, 6))),
    "P": 7,
    "R": 9,
    **dict(zip("STUVWXYZ", range(2, 10))),
}
_VIN_WEIGHTS = (8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2)


def vin_ok(vin: str) -> bool:
    vin = vin.upper()
    if len(vin) != 17 or not any(c.isalpha() for c in vin):
        return False
    try:
        total = sum(_VIN_VALUES[c] * w for c, w in zip(vin, _VIN_WEIGHTS))
    except KeyError:
        return False
    check = total % 11
    return vin[8] == ("X" if check == 10 else str(check))


def entropy(value: str) -> float:
    counts: dict[str, int] = {}
    for char in value:
        counts[char] = counts.get(char, 0) + 1
    return -sum(n / len(value) * math.log2(n / len(value)) for n in counts.values())
