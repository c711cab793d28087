"""Counts what the fuzz and hostile-corpus tests ran and prints it at the end.

Each case calls ``record(target, outcome, seconds)`` once; the summary
(cases, outcomes, slowest case, per target) is printed after the run and written to
``$VEIL_CACHE/fuzz/summary.json`` so CI keeps the figures.
"""

from __future__ import annotations

import json
import os
from collections import Counter, defaultdict
from pathlib import Path

import pytest

_CASES: dict = defaultdict(
    lambda: {"cases": 0, "outcomes": Counter(), "slowest_s": 0.0, "total_s": 0.0}
)


def record(target: str, outcome: str, seconds: float) -> None:
    entry = _CASES[target]
    entry["cases"] += 1
    entry["outcomes"][outcome] += 1
    entry["slowest_s"] = max(entry["slowest_s"], seconds)
    entry["total_s"] += seconds


@pytest.fixture
def fuzz_record():
    return record


def pytest_terminal_summary(terminalreporter):
    if not _CASES:
        return
    summary = {
        target: {
            "cases": e["cases"],
            "slowest_s": round(e["slowest_s"], 3),
            "total_s": round(e["total_s"], 2),
            "outcomes": dict(e["outcomes"].most_common()),
        }
        for target, e in sorted(_CASES.items())
    }
    terminalreporter.section("veil fuzz cases")
    for target, e in summary.items():
        top = ", ".join(f"{k} {v}" for k, v in list(e["outcomes"].items())[:6])
        terminalreporter.write_line(
            f"{target:15} {e['cases']:5} cases, {e['total_s']:6.2f} s, "
            f"slowest {e['slowest_s']:.3f} s: {top}"
        )
    out = Path(os.environ.get("VEIL_CACHE", ".cache")) / "fuzz" / "summary.json"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(summary, indent=1) + "\n")
    except OSError:
        pass
