"""bench/text: the evaluation corpus is well-formed and deterministic, and Veil's text
branch keeps its leak targets on a slice of it (a quality regression test)."""

from __future__ import annotations

import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "text"
sys.path.insert(0, str(BENCH))

from corpus import DIRECT, generate  # noqa: E402
from run import run_veil, score  # noqa: E402


def test_corpus_is_deterministic_and_its_spans_are_exact():
    first, again = generate(300, seed=7), generate(300, seed=7)
    assert first == again
    assert generate(300, seed=8) != first
    labelled = [s for s in first if s.spans]
    assert 0.4 < len(labelled) / len(first) < 0.8  # PII and PII-free records both
    for sample in first:
        last_end = 0
        for start, end, _entity in sample.spans:
            value = sample.text[start:end]
            assert value and value == value.strip() and start >= last_end
            last_end = end
    kinds = {e for s in first for _, _, e in s.spans}
    assert set(DIRECT) <= kinds


def test_scoring_counts_leaks_and_over_redaction():
    sample = next(s for s in generate(50, seed=3) if s.spans)
    nothing = score([sample], [([], sample.text)])
    assert nothing["token_leak"] == 1.0 and nothing["all_exact_leak"] == 1.0
    assert nothing["over_redaction"] == 0.0
    everything = score([sample], [([(0, len(sample.text), "PERSON")], "<PERSON>")])
    assert everything["token_leak"] == 0.0 and everything["all_exact_leak"] == 0.0
    assert everything["over_redaction"] == 1.0


def test_veil_meets_the_leak_targets_on_a_corpus_slice():
    samples = generate(200, seed=99)
    outputs, _ = run_veil(samples, cache=True)
    result = score(samples, outputs)
    assert result["direct_exact_leak"] <= 0.01
    assert result["token_leak"] <= 0.03
    assert result["over_redaction"] <= 0.10
