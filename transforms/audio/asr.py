"""Offline speech recognition with word timestamps: PocketSphinx and its English model.

The ``pocketsphinx`` wheel from PyPI carries the US English acoustic model, language
model and pronunciation dictionary inside the package (``pocketsphinx/model/en-us``),
so nothing downloads at run time; the version is pinned in ``setup.py`` and
``requirements/constraints.txt``. The decoder loads once per worker process (about a
second and 60 MB) in ``AudioHandler.load``.

The transcript is for the spoken-PII step on the same worker only: it is never logged,
put in an audit event or a dead letter, or published.

Long recordings are decoded in 30 s chunks that overlap by 2 s; a word is kept from the
chunk whose middle part holds its midpoint, so a word cut by one chunk edge comes
whole from its neighbour.

Example::

    asr = Transcriber.load()
    words = asr.transcribe(samples_16k)   # [Word("go", 0.46, 0.64), ...]
"""

from __future__ import annotations

import dataclasses
import logging
import re
import threading
from importlib.metadata import version

import numpy as np

_LOGGER = logging.getLogger(__name__)

SAMPLE_RATE = 16000
FRAME_RATE = 100  # PocketSphinx's default: timestamps in 10 ms frames
CHUNK_S = 30.0
OVERLAP_S = 2.0
MIN_SAMPLES = 1600  # 0.1 s: less holds no word (and PocketSphinx rejects empty input)
_VARIANT = re.compile(r"\(\d+\)$")


@dataclasses.dataclass(frozen=True)
class Word:
    """A recognized word and where it is, in seconds from the start of the audio."""

    text: str
    start: float
    end: float


class Transcriber:
    """A PocketSphinx decoder with a lock: one decoder serves all threads of a worker."""

    def __init__(self, decoder, versions: dict):
        self._decoder = decoder
        self._lock = threading.Lock()
        self.versions = versions

    @classmethod
    def load(cls) -> "Transcriber":
        from pocketsphinx import Decoder

        # fwdflat off: the second flat-lexicon pass costs ~15 % and changed nothing on
        # the test recordings; the best-path rescoring stays on.
        decoder = Decoder(samprate=SAMPLE_RATE, loglevel="FATAL", fwdflat=False)
        return cls(
            decoder, {"pocketsphinx": version("pocketsphinx"), "pocketsphinx-model": "en-us"}
        )

    def transcribe(
        self, samples: np.ndarray, chunk_s: float = CHUNK_S, overlap_s: float = OVERLAP_S
    ) -> list[Word]:
        """Words in mono float ``samples`` at 16 kHz, with start and end times."""
        pcm = (np.clip(samples, -1.0, 1.0) * 32767.0).astype("<i2")
        chunk = int(chunk_s * SAMPLE_RATE)
        overlap = int(overlap_s * SAMPLE_RATE)
        step = chunk - overlap
        words: list[Word] = []
        starts = list(range(0, max(len(pcm) - overlap, 1), step))
        for index, begin in enumerate(starts):
            end = min(begin + chunk, len(pcm))
            keep_from = begin / SAMPLE_RATE + (overlap_s / 2 if index > 0 else 0.0)
            last = index == len(starts) - 1
            keep_to = end / SAMPLE_RATE - (0.0 if last else overlap_s / 2)
            for word in self._decode(pcm[begin:end], begin / SAMPLE_RATE):
                middle = (word.start + word.end) / 2
                if keep_from <= middle < keep_to or (last and middle >= keep_to):
                    words.append(word)
        return words

    def _decode(self, pcm: np.ndarray, offset_s: float) -> list[Word]:
        if len(pcm) < MIN_SAMPLES:
            return []
        with self._lock:
            self._decoder.start_utt()
            try:
                self._decoder.process_raw(pcm.tobytes(), full_utt=True)
            finally:
                self._decoder.end_utt()  # never leave the shared decoder mid-utterance
            found = self._decoder.seg() or ()  # None when nothing was recognized
            segments = [(s.word, s.start_frame, s.end_frame) for s in found]
        words = []
        for text, start, end in segments:
            if not text or text[0] in "<[+":  # <s>, </s>, <sil>, [NOISE], ++BREATH++
                continue
            words.append(
                Word(
                    _VARIANT.sub("", text).lower(),
                    offset_s + start / FRAME_RATE,
                    offset_s + (end + 1) / FRAME_RATE,
                )
            )
        return words
