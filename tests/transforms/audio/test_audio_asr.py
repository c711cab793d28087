"""PocketSphinx with its packaged model: offline, word times, chunking of long audio."""

from __future__ import annotations

import socket

import numpy as np
import pytest
from audio_testing import librivox, other_speaker, require_test_audio

from veil.transforms.audio.asr import Transcriber


def _no_network(*args, **kwargs):
    raise OSError("network access is disabled in unit tests")


@pytest.fixture(scope="module")
def asr():
    require_test_audio()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket, "getaddrinfo", _no_network)
        patch.setattr(socket, "create_connection", _no_network)
        patch.setattr(socket.socket, "connect", _no_network)
        yield Transcriber.load()


def test_recognizes_real_speech_with_word_times(asr):
    x = other_speaker("goforward.raw")  # a CMU recording: "go forward ten meters"
    words = asr.transcribe(x)
    assert [w.text for w in words] == ["go", "forward", "ten", "meters"]
    starts = [w.start for w in words]
    assert starts == sorted(starts)
    assert all(0.0 <= w.start < w.end <= len(x) / 16000 + 0.01 for w in words)
    assert asr.versions == {"pocketsphinx": "5.1.1", "pocketsphinx-model": "en-us"}


def test_too_little_audio_gives_no_words(asr):
    # PocketSphinx returns no segmentation at all here (None), not an empty one.
    assert asr.transcribe(np.zeros(100)) == []
    assert asr.transcribe(np.zeros(0)) == []


def test_long_audio_is_chunked_without_losing_or_doubling_words(asr):
    x, _ = librivox(0)  # 7.1 s: "and mister john dashwood had then leisure to consider ..."
    whole = asr.transcribe(x)
    chunked = asr.transcribe(x, chunk_s=3.0, overlap_s=1.0)  # four chunks
    starts = [w.start for w in chunked]
    assert starts == sorted(starts)
    # No word twice from two chunks: consecutive words do not overlap in time.
    assert all(a.end <= b.start + 0.05 for a, b in zip(chunked, chunked[1:]))
    assert all(0.0 <= w.start < w.end <= len(x) / 16000 + 0.01 for w in chunked)
    # Cutting costs the recognizer some context, not whole stretches of speech.
    assert abs(len(chunked) - len(whole)) <= 0.3 * len(whole)
    shared = {w.text for w in whole} & {w.text for w in chunked}
    assert len(shared) >= 0.6 * len({w.text for w in whole})
