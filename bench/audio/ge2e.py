"""The attacker: resemblyzer's pretrained GE2E speaker encoder, run in numpy (no torch).

resemblyzer's wheel (pinned in ``bench/audio/setup.sh``: version and sha256) ships the
encoder's weights as ``resemblyzer/pretrained.pt``: a file in PyTorch's legacy
serialization format (a magic number, a protocol version, system info, one pickle
whose tensors point to storages by key, the list of storage keys, then each storage's
raw bytes). PyTorch from PyPI brings gigabytes of CUDA wheels, so this module reads the
file with a *restricted* unpickler: it accepts only ``collections.OrderedDict``,
``torch._utils._rebuild_tensor_v2`` and the float/long storage types, and rebuilds
each tensor as a numpy view of its storage's bytes. Anything else in the pickle is
refused (no code from the file runs).

The network is resemblyzer's ``VoiceEncoder``: 40 mel bands -> 3-layer LSTM (256) ->
linear 256 -> ReLU -> L2 norm, on partial utterances of 160 frames (1.6 s) taken at 1.3
partials per second, averaged and L2-normed per utterance. Preprocessing follows
resemblyzer's ``audio.py``: 16 kHz, volume normalized to -30 dBFS (increase only), mel
power spectrogram with a 25 ms window and 10 ms hop (librosa, as resemblyzer calls it).
One difference: resemblyzer trims long silences with webrtcvad; this module can drop
low-energy 30 ms windows instead (``trim=True``), because webrtcvad has no wheel here.

Example::

    encoder = Ge2eEncoder.load(path_to_pretrained_pt)
    e1, e2 = encoder.embed(wav1), encoder.embed(wav2)
    similarity = float(e1 @ e2)
"""

from __future__ import annotations

import pickle
import struct
from collections import OrderedDict
from pathlib import Path

import numpy as np

RATE = 16000
N_MELS = 40
WINDOW = 400  # 25 ms
HOP = 160  # 10 ms
PARTIAL_FRAMES = 160
PARTIAL_RATE = 1.3
MIN_COVERAGE = 0.75
TARGET_DBFS = -30.0
_MAGIC = 0x1950A86A20F9469CFC6C
_DTYPES = {"FloatStorage": np.float32, "LongStorage": np.int64, "IntStorage": np.int32}


class _Tensor:
    """A tensor waiting for its storage's bytes: (storage key, offset, size, stride)."""

    def __init__(self, storage, offset, size, stride):
        self.key, self.dtype = storage
        self.offset, self.size, self.stride = offset, tuple(size), tuple(stride)


def _rebuild_tensor_v2(storage, offset, size, stride, requires_grad=False, hooks=None):
    return _Tensor(storage, offset, size, stride)


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) == ("collections", "OrderedDict"):
            return OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor_v2
        if module == "torch" and name in _DTYPES:
            return name
        raise pickle.UnpicklingError(f"refused global {module}.{name}")

    def persistent_load(self, pid):
        kind, storage_type, key, _location, _size, view = pid
        if kind != "storage" or view is not None or storage_type not in _DTYPES:
            raise pickle.UnpicklingError("unsupported storage")
        return (key, _DTYPES[storage_type])


def load_legacy_torch(path: Path) -> dict:
    """The object in a legacy-format ``.pt`` file, tensors as numpy arrays."""
    tensors: list[_Tensor] = []

    def collect(obj):
        if isinstance(obj, _Tensor):
            tensors.append(obj)
        elif isinstance(obj, dict):
            for value in obj.values():
                collect(value)
        elif isinstance(obj, (list, tuple)):
            for value in obj:
                collect(value)

    with open(path, "rb") as f:
        if _RestrictedUnpickler(f).load() != _MAGIC:
            raise ValueError("not a legacy PyTorch file")
        if _RestrictedUnpickler(f).load() != 1001:
            raise ValueError("unknown PyTorch protocol version")
        info = _RestrictedUnpickler(f).load()
        if not info.get("little_endian", False):
            raise ValueError("big-endian file")
        obj = _RestrictedUnpickler(f).load()
        keys = _RestrictedUnpickler(f).load()
        dtypes = {}
        collect(obj)
        for t in tensors:
            dtypes[t.key] = t.dtype
        storages = {}
        for key in keys:
            (count,) = struct.unpack("<q", f.read(8))
            dtype = np.dtype(dtypes.get(key, np.float32))
            storages[key] = np.frombuffer(f.read(count * dtype.itemsize), dtype=dtype)

    def resolve(value):
        if isinstance(value, _Tensor):
            base = storages[value.key]
            item = base.dtype.itemsize
            return np.lib.stride_tricks.as_strided(
                base[value.offset :],
                shape=value.size,
                strides=tuple(s * item for s in value.stride),
            ).copy()
        if isinstance(value, dict):
            return type(value)((k, resolve(v)) for k, v in value.items())
        return value

    return resolve(obj)


def _sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))


class Ge2eEncoder:
    """resemblyzer's ``VoiceEncoder`` forward pass in numpy (float32)."""

    def __init__(self, state: dict):
        self.layers = []
        for layer in range(3):
            w_ih = state[f"lstm.weight_ih_l{layer}"]
            w_hh = state[f"lstm.weight_hh_l{layer}"]
            bias = state[f"lstm.bias_ih_l{layer}"] + state[f"lstm.bias_hh_l{layer}"]
            self.layers.append((w_ih.T.copy(), w_hh.T.copy(), bias))
        self.w_out = state["linear.weight"].T.copy()
        self.b_out = state["linear.bias"]
        import librosa

        self.mel_basis = librosa.filters.mel(sr=RATE, n_fft=WINDOW, n_mels=N_MELS).astype(
            np.float32
        )

    @classmethod
    def load(cls, path: Path) -> Ge2eEncoder:
        return cls(load_legacy_torch(path)["model_state"])

    def forward(self, mels: np.ndarray) -> np.ndarray:
        """(batch, frames, 40) mel power frames -> (batch, 256) L2-normed embeddings."""
        x = mels.astype(np.float32)
        batch, steps, _ = x.shape
        for w_ih, w_hh, bias in self.layers:
            hidden = w_hh.shape[0]
            pre = x @ w_ih + bias  # (batch, steps, 4 * hidden)
            h = np.zeros((batch, hidden), np.float32)
            c = np.zeros((batch, hidden), np.float32)
            outputs = np.empty((batch, steps, hidden), np.float32)
            for t in range(steps):
                gates = pre[:, t] + h @ w_hh
                i = _sigmoid(gates[:, :hidden])
                f = _sigmoid(gates[:, hidden : 2 * hidden])
                g = np.tanh(gates[:, 2 * hidden : 3 * hidden])
                o = _sigmoid(gates[:, 3 * hidden :])
                c = f * c + i * g
                h = o * np.tanh(c)
                outputs[:, t] = h
            x = outputs
        raw = np.maximum(h @ self.w_out + self.b_out, 0.0)
        return raw / np.maximum(np.linalg.norm(raw, axis=1, keepdims=True), 1e-12)

    def mel(self, wav: np.ndarray) -> np.ndarray:
        import librosa

        spec = (
            np.abs(librosa.stft(wav.astype(np.float32), n_fft=WINDOW, hop_length=HOP, center=True))
            ** 2
        )
        return (self.mel_basis @ spec).T  # (frames, 40)

    def embed(self, wav: np.ndarray, rate: int = RATE, trim: bool = True) -> np.ndarray:
        """The utterance embedding of mono float ``wav``."""
        wav = preprocess(wav, rate, trim)
        samples_per_frame = HOP
        n_frames = int(np.ceil((len(wav) + 1) / samples_per_frame))
        frame_step = int(np.round((RATE / PARTIAL_RATE) / samples_per_frame))
        starts = list(range(0, max(1, n_frames - PARTIAL_FRAMES + frame_step + 1), frame_step))
        last = starts[-1] * samples_per_frame
        coverage = (len(wav) - last) / (PARTIAL_FRAMES * samples_per_frame)
        if coverage < MIN_COVERAGE and len(starts) > 1:
            starts = starts[:-1]
        need = (starts[-1] + PARTIAL_FRAMES) * samples_per_frame
        if need >= len(wav):
            wav = np.pad(wav, (0, need - len(wav)))
        mel = self.mel(wav)
        mels = np.stack([mel[s : s + PARTIAL_FRAMES] for s in starts])
        partials = self.forward(mels)
        raw = partials.mean(axis=0)
        return raw / np.linalg.norm(raw)


def preprocess(wav: np.ndarray, rate: int, trim: bool = True) -> np.ndarray:
    """16 kHz, -30 dBFS (increase only), optionally without long low-energy stretches."""
    x = np.asarray(wav, dtype=np.float64)
    if rate != RATE:
        import soxr

        x = soxr.resample(x, rate, RATE, quality="HQ")
    rms = np.sqrt(np.mean(x**2)) + 1e-12
    change = TARGET_DBFS - 20 * np.log10(rms)
    if change > 0:
        x = x * 10 ** (change / 20)
    if trim:
        x = trim_silences(x)
    return x.astype(np.float32)


def trim_silences(x: np.ndarray, window: int = 480, floor_db: float = -35.0) -> np.ndarray:
    """Drops 30 ms windows more than ``floor_db`` below the loudest, keeping 6 around speech.

    A stand-in for resemblyzer's webrtcvad trimming (which keeps voiced windows and up
    to 6 silent ones between them).
    """
    n = len(x) // window
    if n == 0:
        return x
    frames = x[: n * window].reshape(n, window)
    level = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-12)
    voiced = level > level.max() + floor_db
    keep = voiced.copy()
    for shift in range(1, 4):
        keep[shift:] |= voiced[:-shift]
        keep[:-shift] |= voiced[shift:]
    return frames[keep].reshape(-1)
