"""Test audio for the audio branch: real recordings, synthesized speech, containers.

Real human speech comes from Debian's ``pocketsphinx-testdata`` (LibriVox and CMU
recordings, installed and sha256-checked by ``deploy/setup-audio.sh``); synthesized
speech from ``espeak-ng``. Nothing is downloaded.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile

DATA = Path("/usr/share/pocketsphinx/test/data")
LIBRIVOX = sorted((DATA / "librivox").glob("sense_and_sensibility_01_austen_64kb-*.wav"))
#: Other speakers, raw 16 kHz 16-bit little-endian mono.
OTHER_SPEAKERS = ("goforward.raw", "numbers.raw", "something.raw")
RATE = 16000

# Spoken-PII sentence: espeak-ng's en-us+f2 voice at 150 wpm with 80 ms word gaps is
# one PocketSphinx transcribes word for word.
PII_SENTENCE = (
    "my name is john smith and my phone number is two one two five five five zero one seven five"
)
PII_WORDS = {"john", "smith", "two", "one", "five", "zero", "seven"}
CLEAN_WORDS = {"name", "phone", "number"}


def require_test_audio() -> None:
    missing = [str(p) for p in [DATA / "librivox"] if not p.exists()]
    if missing or len(LIBRIVOX) != 5 or shutil.which("espeak-ng") is None:
        raise AssertionError(
            "audio test data missing: run `bash deploy/setup-audio.sh` "
            "(Debian packages espeak-ng and pocketsphinx-testdata)"
        )


def librivox(index: int) -> tuple[np.ndarray, int]:
    """One utterance of the LibriVox reader (float64 mono, 16 kHz)."""
    samples, rate = soundfile.read(LIBRIVOX[index], dtype="float64")
    return samples, rate


def other_speaker(name: str) -> np.ndarray:
    raw = np.frombuffer((DATA / name).read_bytes(), dtype="<i2")
    return raw.astype(np.float64) / 32768.0


def espeak(text: str) -> tuple[np.ndarray, int, bytes]:
    """``text`` spoken by espeak-ng: (float64 mono samples, rate, WAV bytes)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "speech.wav"
        subprocess.run(
            ["espeak-ng", "-v", "en-us+f2", "-s", "150", "-g", "8", "-w", str(path), text],
            check=True,
            capture_output=True,
        )
        data = path.read_bytes()
    samples, rate = soundfile.read(io.BytesIO(data), dtype="float64")
    return samples, rate, data


def encode_soundfile(samples: np.ndarray, rate: int, fmt: str, subtype: str, **tags) -> bytes:
    """Samples as WAV/FLAC/OGG bytes via libsndfile, with optional tags (title, artist)."""
    buffer = io.BytesIO()
    data = np.asarray(samples, dtype=np.float32)
    channels = 1 if data.ndim == 1 else data.shape[1]
    with soundfile.SoundFile(buffer, "w", rate, channels, format=fmt, subtype=subtype) as f:
        for name, value in tags.items():
            setattr(f, name, value)
        f.write(data)
    return buffer.getvalue()


def encode_pyav(
    samples: np.ndarray, rate: int, fmt: str, codec: str, title: str | None = None
) -> bytes:
    """Mono samples through FFmpeg (PyAV): MP3 (with an ID3 title), M4A/AAC, Matroska."""
    import av

    buffer = io.BytesIO()
    with av.open(buffer, "w", format=fmt) as box:
        if title is not None:
            box.metadata["title"] = title
        stream = box.add_stream(codec, rate=rate, layout="mono")
        frame = av.AudioFrame.from_ndarray(
            np.asarray(samples, dtype=np.float32)[None, :], format="flt", layout="mono"
        )
        frame.sample_rate = rate
        frame.pts = 0
        for packet in stream.encode(frame):
            box.mux(packet)
        for packet in stream.encode(None):
            box.mux(packet)
    return buffer.getvalue()


def decode_wav(data: bytes) -> tuple[np.ndarray, int]:
    samples, rate = soundfile.read(io.BytesIO(data), dtype="float64", always_2d=True)
    return samples, rate
