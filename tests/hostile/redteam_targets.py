"""Handlers the red-team stall tests inject (importable by the step worker's child)."""

from __future__ import annotations

import re

from veil.transforms.text import TextHandler


class SlowDetectorTextHandler(TextHandler):
    """The text step plus one user detector with a catastrophic-backtracking pattern
    (``(a+)+$``): on ``"a" * 40 + "!"`` it runs for hours inside ``re`` (GIL held)."""

    _EVIL = re.compile(r"(a+)+$")

    def process(self, model, item):
        self._EVIL.search(item.record["payload"].decode("utf-8", "replace"))
        return super().process(model, item)
