"""bench/text on third-party text: the corpora build from the pinned presidio-evaluator
wheel, and Veil keeps the issue's targets on a slice of both sources (quality
regression; the full table with Presidio side by side is bench/text/run_thirdparty.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "text"
sys.path.insert(0, str(BENCH))

from run import run_veil  # noqa: E402
from run_thirdparty import score, summary  # noqa: E402
from thirdparty import LOCALES, faker_samples, fng_samples, templates  # noqa: E402


def test_templates_come_from_the_pinned_wheel():
    assert len(templates()) > 200  # presidio-evaluator 0.3.2 ships 209


@pytest.mark.parametrize("source", [faker_samples, fng_samples])
def test_samples_are_deterministic_with_exact_spans(source):
    first = source(60, 3)
    assert first == source(60, 3)
    for sample in first:
        for start, end, _ in sample.spans:
            assert 0 <= start < end <= len(sample.text)


@pytest.mark.parametrize("source", [faker_samples, fng_samples])
def test_veil_meets_the_targets_on_a_slice(source):
    samples = source(240, 11)
    outputs, _ = run_veil(samples, cache=True)
    result = summary(score(samples, outputs, lambda s: "all"), ["all"])["all"]
    assert result["direct_exact_leak"] <= 0.02
    assert result["direct_token_leak"] <= 0.06
    assert result["over_redaction"] <= 0.10
    assert result["quasi_removed"] >= 0.90


def test_every_locale_is_in_the_faker_source():
    assert {s.locale for s in faker_samples(24, 1)} == set(LOCALES)
