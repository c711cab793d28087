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
import math
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
class Transcript:
    """The words, and how far the recognizer itself believes them.

    ``confidence`` is the geometric mean per word of the best hypothesis' posterior
    probability (PocketSphinx's ``hyp().prob`` of each chunk, multiplied over chunks,
    to the power 1 / number of words): about 0.4-0.6 on clear read English, lower when
    the decoder had to force out-of-vocabulary or badly heard speech onto its
    vocabulary. 0.0 when speech-like audio produced no word at all, 1.0 for silence.
    """

    words: list
    confidence: float


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
    def load(cls) -> Transcriber:
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
        return self.transcribe_scored(samples, chunk_s, overlap_s).words

    def transcribe_scored(
        self, samples: np.ndarray, chunk_s: float = CHUNK_S, overlap_s: float = OVERLAP_S
    ) -> Transcript:
        """Words in mono float ``samples`` at 16 kHz and the transcript's confidence."""
        pcm = (np.clip(samples, -1.0, 1.0) * 32767.0).astype("<i2")
        chunk = int(chunk_s * SAMPLE_RATE)
        overlap = int(overlap_s * SAMPLE_RATE)
        step = chunk - overlap
        words: list[Word] = []
        log_prob = 0.0
        decoded = 0
        starts = list(range(0, max(len(pcm) - overlap, 1), step))
        for index, begin in enumerate(starts):
            end = min(begin + chunk, len(pcm))
            keep_from = begin / SAMPLE_RATE + (overlap_s / 2 if index > 0 else 0.0)
            last = index == len(starts) - 1
            keep_to = end / SAMPLE_RATE - (0.0 if last else overlap_s / 2)
            chunk_words, chunk_log_prob = self._decode(pcm[begin:end], begin / SAMPLE_RATE)
            log_prob += chunk_log_prob
            decoded += len(chunk_words)
            for word in chunk_words:
                middle = (word.start + word.end) / 2
                if keep_from <= middle < keep_to or (last and middle >= keep_to):
                    words.append(word)
        if decoded:
            confidence = math.exp(log_prob / decoded)
        else:
            confidence = 0.0 if _speech_like(samples) else 1.0
        return Transcript(words, confidence)

    def _decode(self, pcm: np.ndarray, offset_s: float) -> tuple[list[Word], float]:
        if len(pcm) < MIN_SAMPLES:
            return [], 0.0
        with self._lock:
            self._decoder.start_utt()
            try:
                self._decoder.process_raw(pcm.tobytes(), full_utt=True)
            finally:
                self._decoder.end_utt()  # never leave the shared decoder mid-utterance
            found = self._decoder.seg() or ()  # None when nothing was recognized
            segments = [(s.word, s.start_frame, s.end_frame) for s in found]
            hyp = self._decoder.hyp()
            prob = hyp.prob if hyp is not None else 0.0
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
        log_prob = math.log(max(prob, 1e-300)) if words else 0.0
        return words, log_prob


def _speech_like(samples: np.ndarray) -> bool:
    """Voiced audio (a fundamental found; see ``voice.median_f0``) loud enough to matter."""
    from veil.transforms.audio.voice import median_f0

    x = np.asarray(samples, dtype=np.float64)
    if x.size == 0 or np.sqrt(np.mean(x**2)) < 1e-3:  # below -60 dBFS
        return False
    return median_f0(x, SAMPLE_RATE) > 0
