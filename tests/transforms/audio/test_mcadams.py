"""The vectorized McAdams transform against the baseline's frame loop, and its properties."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.signal
from audio_testing import librivox, require_test_audio

from veil.transforms.audio import mcadams as mc


@pytest.fixture(scope="module", autouse=True)
def compiled():
    require_test_audio()
    mc.warm_up()


def _snr_db(reference: np.ndarray, test: np.ndarray) -> float:
    gain = np.dot(test, reference) / np.dot(test, test)
    return float(10 * np.log10(np.sum(reference**2) / np.sum((reference - gain * test) ** 2)))


@pytest.mark.parametrize("alpha", [0.6, 0.8])
def test_matches_the_baseline_frame_loop_on_real_speech(alpha):
    x, rate = librivox(1)
    ours = mc.mcadams(x, rate, alpha)
    baseline = mc.mcadams_frame_loop(x, rate, alpha)
    # The baseline skips frame 0 and leaves the last partial frame empty: compare inside.
    inner = slice(640, len(x) - 640)
    assert _snr_db(baseline[inner], ours[inner]) > 60.0


def test_alpha_one_reconstructs_the_input():
    x, rate = librivox(4)
    y = mc.mcadams(x, rate, 1.0)
    assert len(y) == len(x)
    assert _snr_db(x[320:-320], y[320:-320]) > 30.0


def test_moves_a_resonance_as_the_mcadams_coefficient_says():
    rate, f0, alpha = 16000, 500.0, 0.8
    rng = np.random.default_rng(7)
    theta = 2 * np.pi * f0 / rate
    resonator = [1.0, -2 * 0.97 * np.cos(theta), 0.97**2]
    x = scipy.signal.lfilter([1.0], resonator, rng.standard_normal(rate * 2)) * 0.01

    def peak_hz(signal):
        freqs, power = scipy.signal.welch(signal, rate, nperseg=2048)
        return freqs[np.argmax(power)]

    expected = theta**alpha * rate / (2 * np.pi)  # ~692 Hz
    assert abs(peak_hz(x) - f0) < 30
    # The 20-pole model of noise + resonance moves as a whole: within 10 % of theory.
    assert abs(peak_hz(mc.mcadams(x, rate, alpha)) - expected) < 70


@pytest.mark.parametrize("length", [0, 100, 319, 320, 321, 16000, 16001, 44100])
def test_length_is_kept_and_output_finite(length):
    rng = np.random.default_rng(length)
    x = rng.standard_normal(length) * 0.1
    y = mc.mcadams(x, 16000, 0.7)
    assert y.shape == (length,)
    assert np.isfinite(y).all()
    if length < 320:
        assert not y.any()  # shorter than one window: no voice to keep


def test_silence_stays_silence_and_peak_is_kept():
    x, rate = librivox(1)
    padded = np.concatenate([np.zeros(8000), x, np.zeros(8000)])
    y = mc.mcadams(padded, rate, 0.7)
    assert np.max(np.abs(y[:7000])) < 1e-6
    assert np.max(np.abs(y[-7000:])) < 1e-6
    assert np.max(np.abs(y)) == pytest.approx(np.max(np.abs(padded)))


@pytest.mark.parametrize("alpha", [0.0, -0.5, 2.0, 3.0])
def test_rejects_alpha_out_of_range(alpha):
    with pytest.raises(ValueError):
        mc.mcadams(np.zeros(1000), 16000, alpha)


@pytest.mark.parametrize(
    "frames, hop, expected",
    [
        ([[1, 1, 1, 1]], 2, [1, 1, 1, 1]),
        ([[1, 1, 1, 1], [1, 1, 1, 1]], 2, [1, 1, 2, 2, 1, 1]),
        ([[1, 2, 3], [4, 5, 6]], 2, [1, 2, 7, 5, 6]),
        ([[1, 2, 3], [4, 5, 6], [7, 8, 9]], 1, [1, 6, 15, 14, 9]),
        ([[1, 2], [3, 4]], 2, [1, 2, 3, 4]),
    ],
    ids=["one", "half-overlap", "uneven", "hop-one", "no-overlap"],
)
def test_overlap_add(frames, hop, expected):
    out = mc.overlap_add(np.array(frames, dtype=float), hop)
    assert out.tolist() == expected


@pytest.mark.parametrize("rate, order", [(8000, 12), (16000, 20), (11025, 15)])
def test_lpc_order_scales_with_bandwidth(rate, order):
    assert mc.lpc_order(rate) == order


def test_warp_and_pitch_off_is_the_baseline_transform():
    x, rate = librivox(2)
    assert np.array_equal(mc.mcadams(x, rate, 0.7), mc.mcadams(x, rate, 0.7, warp=0.0, pitch=1.0))


@pytest.mark.parametrize("warp", [0.1, -0.1])
def test_warp_moves_a_resonance_as_the_allpass_map_says(warp):
    rate, f0 = 16000, 1000.0
    rng = np.random.default_rng(11)
    theta = 2 * np.pi * f0 / rate
    resonator = [1.0, -2 * 0.97 * np.cos(theta), 0.97**2]
    x = scipy.signal.lfilter([1.0], resonator, rng.standard_normal(rate * 2)) * 0.01

    def peak_hz(signal):
        freqs, power = scipy.signal.welch(signal, rate, nperseg=2048)
        return freqs[np.argmax(power)]

    moved = theta + 2 * np.arctan(warp * np.sin(theta) / (1 - warp * np.cos(theta)))
    expected = moved * rate / (2 * np.pi)  # ~1190 Hz up, ~840 Hz down
    assert abs(peak_hz(mc.mcadams(x, rate, 1.0, warp=warp)) - expected) < 80


@pytest.mark.parametrize("ratio", [0.75, 1.4])
def test_pitch_ratio_moves_the_fundamental_of_real_speech(ratio):
    from veil.transforms.audio.voice import median_f0

    x, rate = librivox(0)
    before = median_f0(x, rate)
    after = median_f0(mc.mcadams(x, rate, 0.9, pitch=ratio), rate)
    assert 60 < before < 200
    assert abs(after / before - ratio) < 0.12 * ratio


@pytest.mark.parametrize("kwargs", [{"warp": 0.5}, {"warp": -0.6}, {"pitch": 0.4}, {"pitch": 2.5}])
def test_rejects_warp_and_pitch_out_of_range(kwargs):
    with pytest.raises(ValueError):
        mc.mcadams(np.zeros(1000), 16000, 0.8, **kwargs)
