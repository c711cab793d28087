"""Voice anonymization modes, at a working rate of at most 16 kHz.

``mcadams``: the VoicePrivacy baseline's McAdams-coefficient transform (see
``veil.transforms.audio.mcadams``), with the subject's ``alpha``.

``warp`` (default): McAdams with the subject's milder ``alpha``, the subject's
vocal-tract-length warp of the same poles, and the excitation moved to the subject's
target F0 (SOLA-aligned grains), in one pass of the McAdams kernel. Against a GE2E
speaker encoder it is the only mode that meets both the privacy and the WER targets
(``docs/audio.md``, BENCHMARKS.md).

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

MODES = ("mcadams", "pitch_shift", "warp")
#: The ``warp`` mode's F0 search range (Hz) and voicing threshold (normalized
#: autocorrelation peak).
F0_MIN, F0_MAX, VOICED = 60.0, 400.0, 0.5
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


def median_f0(x: np.ndarray, rate: int) -> float:
    """The median fundamental frequency (Hz) of the voiced 40 ms frames, 0 if none.

    Normalized autocorrelation of Hann-windowed frames (one every 50 ms; the window's own
    autocorrelation divided out) through one batched
    FFT; a frame is voiced when it is among the louder half and its autocorrelation peak
    in the 60-400 Hz lag range exceeds ``VOICED``. Cheap (well under 1 ms per second of
    audio) and only used to pick the pitch ratio that brings a recording to its
    subject's target F0.
    """
    width, hop = int(0.04 * rate), int(0.05 * rate)
    if len(x) < width:
        return 0.0
    hann = np.hanning(width)
    frames = np.lib.stride_tricks.sliding_window_view(x, width)[::hop] * hann
    energy = np.einsum("ij,ij->i", frames, frames)
    loud = energy > max(np.median(energy), 1e-10)
    if not loud.any():
        return 0.0
    frames = frames[loud]
    nfft = 2 * width
    spectrum = np.fft.rfft(frames, nfft)
    acf = np.fft.irfft(spectrum * spectrum.conj(), nfft)[:, :width]
    acf /= np.maximum(acf[:, :1], 1e-12)
    # Divide out the window's own autocorrelation (Boersma 1993), which otherwise
    # favours short lags and halves low voices' peaks.
    window_acf = np.fft.irfft(np.abs(np.fft.rfft(hann, nfft)) ** 2, nfft)[:width]
    acf /= np.maximum(window_acf / window_acf[0], 0.1)
    lo, hi = int(rate / F0_MAX), min(int(rate / F0_MIN), width - 1)
    lags = lo + np.argmax(acf[:, lo:hi], axis=1)
    peaks = acf[np.arange(len(lags)), lags]
    voiced = peaks > VOICED
    if voiced.sum() < 3:
        return 0.0
    return float(rate / np.median(lags[voiced]))


def _transform(channel: np.ndarray, rate: int, params: VoiceParams, mode: str) -> np.ndarray:
    if mode == "mcadams":
        from veil.transforms.audio.mcadams import mcadams  # numba: imported on use

        return mcadams(channel, rate, params.alpha)
    if mode == "warp":
        from veil.transforms.audio.mcadams import mcadams

        f0 = median_f0(channel, rate)
        ratio = float(np.clip(params.f0 / f0, 0.6, 1.8)) if f0 > 0 and params.f0 > 0 else 1.0
        return mcadams(channel, rate, params.alpha, warp=params.warp, pitch=ratio)
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
    params = VoiceParams(alpha=0.8, semitones=3.0, warp=0.1, f0=150.0)
    anonymize_voice(noise, WORK_RATE, params, mode)
    anonymize_voice(noise, 44100, params, mode)


def versions(mode: str) -> dict:
    if mode in ("mcadams", "warp"):
        from veil.transforms.audio.mcadams import VERSION

        return {f"voice-{mode}": VERSION}
    import librosa

    return {"voice-librosa-pitch-shift": librosa.__version__}
