"""The McAdams-coefficient voice transformation, vectorized over frames.

This is the signal processing of the VoicePrivacy Challenge baseline (Patino et al.,
"Speaker anonymisation using the McAdams coefficient", Interspeech 2021): the signal is
cut into 20 ms Hann-windowed frames with a 10 ms hop; each frame gets an all-pole
(LPC) model; every complex pole ``r·e^{iφ}`` moves to ``r·e^{i·sign(φ)·|φ|^α}`` (its
radius, and so its bandwidth, is kept; real poles stay); the frame's LPC residual is
filtered through the new all-pole filter, and the frames are overlap-added.
``α < 1`` moves the low formants up and the high ones down, so the voice no longer
matches its speaker while the words stay intelligible.

How it is fast (``bench/audio/run.py`` measures it against ``mcadams_frame_loop``, the
baseline's own frame-by-frame Python loop, in the same run):

* framing and windowing are one strided view of the padded signal, and overlap-add is
  a reshape plus ``ceil(window / hop)`` vector additions: numpy, no loop over frames;
* everything done per frame (Burg's LPC, the 20 polynomial roots, moving them,
  rebuilding the polynomial, the frame's own FIR + IIR filter pair) is one compiled
  numba kernel over the whole frame batch. Each frame has its own filters, so there is
  no batched numpy or scipy call for the filtering or the roots; a numpy Burg batched
  over frames measured 4.2 ms per second of audio here, the compiled one 0.5 ms, and
  ``numpy.linalg.eigvals`` on the batch of companion matrices 8 ms. Roots come from
  Aberth-Ehrlich iterations in real arithmetic, warm-started from the previous
  frame's roots (speech envelopes change slowly: about 6 iterations), with the
  companion matrix's eigenvalues as the fallback for a frame that does not converge.

Nothing loops over samples in Python. The kernel compiles on its first call; call
``warm_up()`` once per process (``AudioHandler.load`` does), not on the first record.

Example::

    y = mcadams(x, 16000, alpha=0.8)   # same length as x
"""

from __future__ import annotations

import logging
import math

import numba
import numpy as np

_LOGGER = logging.getLogger(__name__)

VERSION = "1"
WIN_MS = 20
HOP_MS = 10
_EPS = float(np.finfo(np.float32).eps)
# Frames whose energy is below this (a -100 dBFS sine) are silence: passed through.
_SILENT_ENERGY = 1e-10
_MAX_ITER = 80
_TOL = 1e-11


def _jit(**options):
    """``numba.njit`` without the GIL, cached on disk where numba finds a writable place.

    Without one (a read-only install and no writable home), numba refuses caching when
    the function is decorated; the kernel is then compiled in memory in ``warm_up``.
    """

    def decorate(function):
        try:
            return numba.njit(cache=True, nogil=True, **options)(function)
        except RuntimeError:
            return numba.njit(cache=False, nogil=True, **options)(function)

    return decorate


def lpc_order(sample_rate: int) -> int:
    """The baseline's model order at 16 kHz (20), scaled with the bandwidth."""
    return int(round(sample_rate / 1000)) + 4


@_jit(fastmath=True)
def _burg(frame, order, coeffs, fwd, bwd, prev):
    """Burg's LPC of one frame into ``coeffs`` (``[1, a1, ..., a_order]``).

    The recursion of ``librosa.lpc`` (Marple's description of Burg's method); ``fwd``,
    ``bwd`` and ``prev`` are scratch buffers.
    """
    width = frame.shape[0]
    coeffs[:] = 0.0
    coeffs[0] = 1.0
    for n in range(width - 1):
        fwd[n] = frame[n + 1] + _EPS
        bwd[n] = frame[n] + _EPS
    den = 0.0
    for n in range(width - 1):
        den += fwd[n] * fwd[n] + bwd[n] * bwd[n]
    length = width - 1
    for i in range(order):
        acc = 0.0
        for n in range(length):
            acc += bwd[n] * fwd[n]
        reflect = -2.0 * acc / (den + 1e-300)
        for j in range(i + 2):
            prev[j] = coeffs[j]
        for j in range(1, i + 2):
            coeffs[j] = prev[j] + reflect * prev[i - j + 1]
        for n in range(length):
            f_old = fwd[n]
            b_old = bwd[n]
            fwd[n] = f_old + reflect * b_old
            bwd[n] = b_old + reflect * f_old
        den = (1.0 - reflect * reflect) * den - bwd[length - 1] ** 2 - fwd[0] ** 2
        for n in range(length - 1):
            fwd[n] = fwd[n + 1]
        length -= 1


@_jit(fastmath=True)
def _aberth(coeffs, re, im, max_iter, tol):
    """Refines the roots ``re + i·im`` (in place) of monic ``coeffs``; True if converged.

    Aberth-Ehrlich iterations in real arithmetic (complex division through one real
    reciprocal), updating each root as soon as it moves.
    """
    order = coeffs.shape[0] - 1
    for _ in range(max_iter):
        largest = 0.0
        for i in range(order):
            zr = re[i]
            zi = im[i]
            vr = coeffs[0]
            vi = 0.0
            dr = 0.0
            di = 0.0
            for k in range(1, order + 1):
                t = dr * zr - di * zi + vr
                di = dr * zi + di * zr + vi
                dr = t
                t = vr * zr - vi * zi + coeffs[k]
                vi = vr * zi + vi * zr
                vr = t
            rr = 0.0
            ri = 0.0
            for j in range(order):
                if j != i:
                    xr = zr - re[j]
                    xi = zi - im[j]
                    inv = 1.0 / (xr * xr + xi * xi + 1e-300)
                    rr += xr * inv
                    ri -= xi * inv
            inv = 1.0 / (dr * dr + di * di + 1e-300)
            qr = (vr * dr + vi * di) * inv
            qi = (vi * dr - vr * di) * inv
            xr = 1.0 - (qr * rr - qi * ri)
            xi = -(qr * ri + qi * rr)
            inv = 1.0 / (xr * xr + xi * xi + 1e-300)
            sr = (qr * xr + qi * xi) * inv
            si = (qi * xr - qr * xi) * inv
            re[i] = zr - sr
            im[i] = zi - si
            size = sr * sr + si * si
            if size > largest:
                largest = size
        if not np.isfinite(largest):
            return False
        if largest < tol * tol:
            return True
    return False


@_jit()
def _fresh_roots(order, re, im):
    for i in range(order):
        angle = (2.0 * np.pi * i + 0.7) / order
        re[i] = 0.9 * np.cos(angle)
        im[i] = 0.9 * np.sin(angle)


@_jit()
def _eig_roots(coeffs, re, im):
    order = coeffs.shape[0] - 1
    companion = np.zeros((order, order), np.complex128)
    for k in range(order):
        companion[0, k] = -coeffs[k + 1]
    for k in range(1, order):
        companion[k, k - 1] = 1.0
    roots = np.linalg.eigvals(companion)
    for k in range(order):
        re[k] = roots[k].real
        im[k] = roots[k].imag


@_jit()
def _warped_polynomial(re, im, alpha, warp, out):
    """``out = [1, b1, ...]``: every complex root's angle φ moved to sign(φ)·|φ|^α.

    With ``warp`` (β) the moved angle is then warped along the frequency axis by the
    first-order all-pass map ``θ + 2·atan(β·sin θ / (1 - β·cos θ))``: the classic
    vocal-tract-length normalization warp, β > 0 moving every resonance up (a shorter
    vocal tract), β < 0 down. Radii are kept; real roots stay where they are.
    """
    order = re.shape[0]
    poly = np.zeros(order + 1, np.complex128)
    poly[0] = 1.0
    for n in range(order):
        radius = math.hypot(re[n], im[n])
        if abs(im[n]) > 1e-9 * max(radius, 1e-300):
            angle = math.atan2(im[n], re[n])
            moved = min(abs(angle) ** alpha, np.pi)
            if warp != 0.0:
                moved = moved + 2.0 * math.atan2(
                    warp * math.sin(moved), 1.0 - warp * math.cos(moved)
                )
                moved = min(max(moved, 1e-4), np.pi - 1e-4)
            if angle < 0:
                moved = -moved
            z = radius * complex(math.cos(moved), math.sin(moved))
        else:
            z = complex(re[n], 0.0)
        for k in range(n + 1, 0, -1):
            poly[k] = poly[k] - z * poly[k - 1]
    for k in range(order + 1):
        out[k] = poly[k].real


@_jit(fastmath=True)
def _transform_frames(frames, order, alpha, window, padded, hop, warp, pitch):
    """Per frame: Burg LPC, roots, moved poles, residual, resynthesis, window.

    With ``pitch`` != 1 the residual (the excitation) is read from the unwindowed
    ``padded`` signal around the frame's centre at ``pitch`` times the rate (linear
    interpolation): each 20 ms grain of excitation then repeats ``pitch`` times faster,
    so the fundamental moves by that ratio while the new all-pole filter sets the
    formants (a granular, LPC-domain pitch shift; no pitch marks, one pass). Each
    grain's source is shifted by up to about half a pitch period so that it continues
    the previous grain in phase (SOLA), which removes the hop-rate buzz.

    Returns the output frames and how many frames needed the eigenvalue fallback.
    Silent or degenerate frames pass through (windowed).
    """
    n_frames, width = frames.shape
    n_padded = padded.shape[0]
    out = np.zeros((n_frames, width))
    a = np.empty(order + 1)
    b = np.empty(order + 1)
    prev = np.empty(order + 1)
    fwd = np.empty(width)
    bwd = np.empty(width)
    residual = np.empty(width)
    excitation = np.empty(2 * width + 4)
    re = np.empty(order)
    im = np.empty(order)
    trial_re = np.empty(order)
    trial_im = np.empty(order)
    warm = False
    fallbacks = 0
    search = max(2, int(width / 2.8))  # ~114 samples at 16 kHz: half a 70 Hz period
    have_prev = False
    prev_centre = 0.0
    for m in range(n_frames):
        frame = frames[m]
        energy = 0.0
        for n in range(width):
            energy += frame[n] * frame[n]
        energy /= width
        finite = np.isfinite(energy)
        if finite and energy >= _SILENT_ENERGY:
            _burg(frame, order, a, fwd, bwd, prev)
            for k in range(order + 1):
                if not np.isfinite(a[k]):
                    finite = False
        if not finite or energy < _SILENT_ENERGY:
            if finite:
                for n in range(width):
                    out[m, n] = frame[n] * window[n]
            warm = False
            have_prev = False
            continue
        if warm:
            trial_re[:] = re
            trial_im[:] = im
        else:
            _fresh_roots(order, trial_re, trial_im)
        if not _aberth(a, trial_re, trial_im, _MAX_ITER, _TOL):
            _fresh_roots(order, trial_re, trial_im)
            if not _aberth(a, trial_re, trial_im, _MAX_ITER, _TOL):
                _eig_roots(a, trial_re, trial_im)
                fallbacks += 1
        re[:] = trial_re
        im[:] = trial_im
        warm = True
        _warped_polynomial(re, im, alpha, warp, b)
        if pitch == 1.0:
            for n in range(width):
                acc = 0.0
                for k in range(min(n, order) + 1):
                    acc += a[k] * frame[n - k]
                residual[n] = acc
        else:
            centre = m * hop + 0.5 * width
            if have_prev:
                # SOLA: shift this grain's source (within about half a pitch period)
                # so its start lines up with the end of the previous grain, which
                # it overlaps; otherwise grains join out of phase and buzz at the
                # hop rate. Correlation on the raw signal: every other shift, every
                # fourth sample.
                best = -1e300
                best_shift = 0
                for shift in range(-search, search + 1, 2):
                    acc = 0.0
                    norm = 1e-12
                    for j in range(0, width - hop, 4):
                        q = int(centre + shift + (j - 0.5 * width) * pitch)
                        q = min(max(q, 0), n_padded - 1)
                        r = int(prev_centre + (hop + j - 0.5 * width) * pitch)
                        r = min(max(r, 0), n_padded - 1)
                        acc += padded[q] * padded[r]
                        norm += padded[q] * padded[q]
                    score = acc / math.sqrt(norm)
                    if score > best:
                        best = score
                        best_shift = shift
                centre += best_shift
            prev_centre = centre
            have_prev = True
            # The excitation at every integer position the grain reads, once.
            low = int(math.floor(centre - 0.5 * width * pitch))
            count = min(int(width * pitch) + 3, excitation.shape[0])
            for i in range(count):
                q = low + i
                acc = 0.0
                if q - order >= 0 and q < n_padded:
                    for k in range(order + 1):
                        acc += a[k] * padded[q - k]
                else:
                    for k in range(order + 1):
                        if 0 <= q - k < n_padded:
                            acc += a[k] * padded[q - k]
                excitation[i] = acc
            for n in range(width):
                pos = centre + (n - 0.5 * width) * pitch - low
                i = min(max(int(pos), 0), count - 2)
                frac = pos - i
                residual[n] = ((1.0 - frac) * excitation[i] + frac * excitation[i + 1]) * window[n]
        for n in range(width):
            acc = residual[n]
            for k in range(1, min(n, order) + 1):
                acc -= b[k] * out[m, n - k]
            out[m, n] = acc
        for n in range(width):
            out[m, n] *= window[n]
    return out, fallbacks


def _frame_geometry(sample_rate: int) -> tuple[int, int, np.ndarray]:
    width = int(math.floor(WIN_MS * 0.001 * sample_rate))
    hop = int(math.floor(HOP_MS * 0.001 * sample_rate))
    hann = np.hanning(width)
    window = np.sqrt(hann / (hann.sum() / hop))
    return width, hop, window


def mcadams(
    signal: np.ndarray,
    sample_rate: int,
    alpha: float,
    order: int | None = None,
    warp: float = 0.0,
    pitch: float = 1.0,
) -> np.ndarray:
    """Anonymizes one channel with McAdams coefficient ``alpha``; same length, float64.

    Args:
        signal: mono samples (any float or int dtype; scaled as given).
        sample_rate: the signal's rate (the baseline works at 16 kHz; see ``lpc_order``).
        alpha: the McAdams coefficient, ``0 < alpha < 2``; about 0.5-0.9 anonymizes.
        order: LPC order (default ``lpc_order(sample_rate)``).
        warp: the all-pass frequency warp β applied after the McAdams move, ``|β| < 0.5``
            (0: none, the baseline).
        pitch: the fundamental-frequency ratio of the granular excitation shift,
            0.5-2 (1: none, the baseline).

    The output's peak level is set to the input's; silence stays silence. A signal
    shorter than one window (20 ms) carries no voice to keep: it comes back as zeros.
    """
    if not 0.0 < alpha < 2.0:
        raise ValueError("alpha must be in (0, 2)")
    if not -0.5 < warp < 0.5:
        raise ValueError("warp must be in (-0.5, 0.5)")
    if not 0.5 <= pitch <= 2.0:
        raise ValueError("pitch must be in [0.5, 2]")
    x = np.asarray(signal, dtype=np.float64)
    length = x.shape[0]
    width, hop, window = _frame_geometry(sample_rate)
    order = order or lpc_order(sample_rate)
    if length < width:
        return np.zeros(length)
    # Pad by a window on the left and to a whole number of hops (plus a window) on the
    # right, so every input sample gets the full overlap-add; trimmed at the end.
    n_frames = int(math.ceil((length + width) / hop)) + 1
    padded = np.zeros((n_frames - 1) * hop + width)
    padded[width : width + length] = x
    frames = np.lib.stride_tricks.sliding_window_view(padded, width)[::hop][:n_frames]
    frames = frames * window
    out_frames, fallbacks = _transform_frames(
        np.ascontiguousarray(frames),
        order,
        float(alpha),
        window,
        padded,
        hop,
        float(warp),
        float(pitch),
    )
    if fallbacks:
        _LOGGER.debug("mcadams: %d frames needed the eigenvalue fallback", fallbacks)
    out = overlap_add(out_frames, hop)[width : width + length]
    peak_in = float(np.max(np.abs(x)))
    peak_out = float(np.max(np.abs(out)))
    if peak_out > 0.0 and np.isfinite(peak_out):
        out *= peak_in / peak_out
    return out


def overlap_add(frames: np.ndarray, hop: int) -> np.ndarray:
    """Sums ``frames`` (n, width) placed ``hop`` apart; length ``(n - 1) * hop + width``."""
    n_frames, width = frames.shape
    blocks = int(math.ceil(width / hop))
    padded = np.zeros((n_frames, blocks * hop))
    padded[:, :width] = frames
    split = padded.reshape(n_frames, blocks, hop)
    out = np.zeros((n_frames + blocks - 1, hop))
    for j in range(blocks):
        out[j : j + n_frames] += split[:, j, :]
    return out.reshape(-1)[: (n_frames - 1) * hop + width]


def mcadams_frame_loop(
    signal: np.ndarray, sample_rate: int, alpha: float, order: int = 20
) -> np.ndarray:
    """The VoicePrivacy baseline's straightforward frame-by-frame implementation.

    Kept as the reference that ``mcadams`` is tested and benchmarked against: one
    Python iteration per frame, ``librosa.lpc`` and ``scipy.signal.tf2zpk`` per frame,
    two ``lfilter`` calls per frame. It starts at frame 1 and peak-normalizes to 1.0,
    as the baseline does; not used by the pipeline.
    """
    import librosa
    import scipy.signal

    samples = np.asarray(signal, dtype=np.float64) + _EPS
    width, hop, window = _frame_geometry(sample_rate)
    length = len(samples)
    n_frames = 1 + (length - width) // hop
    out = np.zeros(length)
    for m in range(1, n_frames):
        index = np.arange(m * hop, min(m * hop + width, length))
        frame = samples[index] * window
        a_lpc = librosa.lpc(frame + _EPS, order=order)
        poles = scipy.signal.tf2zpk(np.array([1]), a_lpc)[1]
        ind_imag = np.where(np.isreal(poles) == False)[0]  # noqa: E712 (the baseline's test)
        ind_imag_con = ind_imag[np.arange(0, np.size(ind_imag), 2)]
        new_angles = np.angle(poles[ind_imag_con]) ** alpha
        new_angles[np.where(new_angles >= np.pi)] = np.pi
        new_angles[np.where(new_angles <= 0)] = 0
        new_poles = poles
        for k in np.arange(np.size(ind_imag_con)):
            new_poles[ind_imag_con[k]] = np.abs(poles[ind_imag_con[k]]) * np.exp(1j * new_angles[k])
            new_poles[ind_imag_con[k] + 1] = np.abs(poles[ind_imag_con[k] + 1]) * np.exp(
                -1j * new_angles[k]
            )
        a_lpc_new = np.real(np.poly(new_poles))
        res = scipy.signal.lfilter(a_lpc, np.array(1), frame)
        frame_rec = scipy.signal.lfilter(np.array([1]), a_lpc_new, res) * window
        out_index = np.arange(m * hop, m * hop + len(frame_rec))
        out[out_index] = out[out_index] + frame_rec
    return out / np.max(np.abs(out))


def warm_up() -> None:
    """Compiles the numba kernel (a few seconds, once per process)."""
    rng = np.random.default_rng(0)
    mcadams(rng.standard_normal(1600) * 0.1, 16000, 0.8)
    mcadams(rng.standard_normal(1600) * 0.1, 16000, 0.8, warp=0.1, pitch=1.2)
