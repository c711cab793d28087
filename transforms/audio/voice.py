"""Voice anonymization modes, at a working rate of at most 16 kHz.

``mcadams`` (default): the VoicePrivacy baseline's McAdams-coefficient transform (see
``veil.transforms.audio.mcadams``), with the subject's ``alpha``.

``pitch_shift``: librosa's pitch shift (phase-vocoder time stretch, then resampling
back to the original length) by the subject's number of semitones. It moves pitch and
formants together; weaker than McAdams by Veil's speaker-distance measure (see
docs/audio.md), kept for material where McAdams' formant warping sounds too unnatural.

Audio above 16 kHz is resampled to 16 kHz (soxr, high quality) for the transform and
back to its own rate afterwards, so the sample rate and length are kept while content
above 8 kHz, which carries speaker detail and no words, is removed.

Example::

    y = anonymize_voice(samples, 44100, VoiceParams(alpha=0.7, semitones=-4.0), "mcadams")
"""

from __future__ import annotations

import logging

import numpy as np

from veil.transforms.audio.keys import VoiceParams

_LOGGER = logging.getLogger(__name__)

MODES = ("mcadams", "pitch_shift")
WORK_RATE = 16000


def resample(samples: np.ndarray, rate_in: int, rate_out: int, length: int | None = None):
    """Resamples along axis 0 with soxr; ``length`` pads or trims the result exactly."""
    if rate_in == rate_out:
        out = samples
    else:
        import soxr

        out = soxr.resample(samples, rate_in, rate_out, quality="HQ")
    if length is not None and out.shape[0] != length:
        if out.shape[0] > length:
            out = out[:length]
        else:
            pad = [(0, length - out.shape[0])] + [(0, 0)] * (out.ndim - 1)
            out = np.pad(out, pad)
    return out


def _transform(channel: np.ndarray, rate: int, params: VoiceParams, mode: str) -> np.ndarray:
    if mode == "mcadams":
        from veil.transforms.audio.mcadams import mcadams  # numba: imported on use

        return mcadams(channel, rate, params.alpha)
    import librosa

    if channel.shape[0] < 2048:
        return np.zeros_like(channel)  # too short to carry a voice (and for an STFT)
    return librosa.effects.pitch_shift(
        np.ascontiguousarray(channel, dtype=np.float32),
        sr=rate,
        n_steps=params.semitones,
        res_type="soxr_hq",
    )


def anonymize_voice(
    samples: np.ndarray, sample_rate: int, params: VoiceParams, mode: str = "mcadams"
) -> np.ndarray:
    """Transforms every channel of ``samples`` (frames, channels); same shape, float32."""
    if mode not in MODES:
        raise ValueError(f"unknown voice mode {mode!r}; expected one of {MODES}")
    frames = samples.shape[0]
    rate = min(sample_rate, WORK_RATE)
    work = resample(samples, sample_rate, rate)
    out = np.empty(work.shape, dtype=np.float32)
    for c in range(work.shape[1]):
        out[:, c] = _transform(np.asarray(work[:, c], dtype=np.float64), rate, params, mode)
    return np.asarray(resample(out, rate, sample_rate, length=frames), dtype=np.float32)


def warm_up(mode: str) -> None:
    """Compiles what the mode JIT-compiles (numba), once per process, in setup."""
    rng = np.random.default_rng(0)
    noise = (rng.standard_normal((8000, 1)) * 0.1).astype(np.float32)
    anonymize_voice(noise, WORK_RATE, VoiceParams(alpha=0.8, semitones=3.0), mode)
    anonymize_voice(noise, 44100, VoiceParams(alpha=0.8, semitones=3.0), mode)


def versions(mode: str) -> dict:
    if mode == "mcadams":
        from veil.transforms.audio.mcadams import VERSION

        return {"voice-mcadams": VERSION}
    import librosa

    return {"voice-librosa-pitch-shift": librosa.__version__}
