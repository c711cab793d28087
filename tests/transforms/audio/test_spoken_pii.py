"""Transcript normalization for the text detectors, findings to time spans, blanking."""

from __future__ import annotations

import numpy as np
import pytest

from veil.transforms.audio.asr import Word
from veil.transforms.audio.spoken_pii import blank, normalize, time_spans


def _words(text: str) -> list[Word]:
    return [Word(w, i * 0.5, i * 0.5 + 0.4) for i, w in enumerate(text.split())]


@pytest.mark.parametrize(
    "spoken, written",
    [
        ("", ""),
        ("hello there", "hello there"),
        ("call two one two five five five zero one seven five", "call 2125550175"),
        ("room four oh two please", "room 402 please"),
        ("oh well", "oh well"),
        ("oh five", "05"),
        ("double five one triple two", "551222"),
        ("twenty one fifty nineteen", "215019"),
        ("forty zero", "400"),
        ("ten", "10"),
        ("one more thing", "1 more thing"),
        ("mail john at example dot com today", "mail john@example.com today"),
        ("x at y dot co dot uk", "x@y.co.uk"),
        ("meet at noon", "meet at noon"),
        ("my name is john smith and", "my name is John Smith and"),
        ("this is mary jones calling", "this is Mary Jones calling"),
        ("this is a test", "this is a test"),
        ("spoke to doctor ada byron today", "spoke to Doctor Ada Byron Today"),
        ("my name is two", "my name is 2"),
    ],
    ids=[
        "empty",
        "plain",
        "digit-run",
        "oh-in-run",
        "oh-alone",
        "oh-before-digit",
        "double-triple",
        "tens-units",
        "tens-then-zero",
        "teen",
        "lone-digit",
        "email",
        "email-multi-dot",
        "at-not-email",
        "name-cue",
        "this-is-cue",
        "cue-then-function-word",
        "title-cue-three-words",
        "cue-then-number",
    ],
)
def test_normalize(spoken, written):
    text, pieces = normalize(_words(spoken))
    assert text == written
    for piece in pieces:  # every piece maps back to the words it came from
        assert 0 <= piece.first_word <= piece.last_word < len(spoken.split())
        assert text[piece.start : piece.end].strip() == text[piece.start : piece.end]


@pytest.mark.parametrize(
    "spoken, span_text, words",
    [
        ("call two one two five five five zero one seven five now", "2125550175", (1, 10)),
        ("my name is john smith and", "John Smith", (3, 4)),
        ("mail john at example dot com today", "john@example.com", (1, 5)),
        ("my name is john smith and", "Smith", (4, 4)),
    ],
    ids=["phone", "name", "email", "partial"],
)
def test_findings_map_to_padded_word_times(spoken, span_text, words):
    w = _words(spoken)
    text, pieces = normalize(w)
    start = text.index(span_text)
    spans = time_spans(pieces, [(start, start + len(span_text), "X")], w, pad_s=0.1)
    first, last = words
    assert spans == [(pytest.approx(w[first].start - 0.1), pytest.approx(w[last].end + 0.1))]


def test_time_spans_clip_at_zero_and_skip_unmapped():
    w = _words("john smith")
    text, pieces = normalize(w)
    assert time_spans(pieces, [(0, 4, "PERSON")], w, pad_s=0.3) == [(0.0, pytest.approx(0.7))]
    assert time_spans(pieces, [(50, 60, "PERSON")], w, pad_s=0.3) == []


@pytest.mark.parametrize("replacement", ["silence", "tone"])
def test_blank_replaces_only_the_spans(replacement):
    rate = 8000
    samples = np.full((rate * 2, 2), 0.5, dtype=np.float32)
    replaced = blank(samples, rate, [(0.5, 1.0), (1.9, 5.0)], replacement)
    assert replaced == 4000 + 800
    assert (samples[: rate // 2] == 0.5).all() and (samples[rate : int(1.9 * rate)] == 0.5).all()
    span = samples[rate // 2 : rate]
    if replacement == "silence":
        assert not span.any() and not samples[int(1.9 * rate) :].any()
    else:
        assert np.max(np.abs(span)) == pytest.approx(0.1, abs=1e-3)
        spectrum = np.abs(np.fft.rfft(span[:, 0]))
        assert np.argmax(spectrum) * rate / len(span) == pytest.approx(1000, abs=5)
        assert (span[:, 0] == span[:, 1]).all()
