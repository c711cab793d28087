"""Decoder isolation benchmark: what the sandbox costs per record.

    make image-setup audio-testdata && .venv/bin/python bench/sandbox/run.py [--repeat 40]

Inputs: the astronaut photograph (512x512, PNG and JPEG) and a LibriVox utterance from
Debian's pocketsphinx-testdata (16 kHz mono, WAV and FLAC). For each, the time of

A. decoding in process (``decode_image`` / ``decode_audio`` with ``sandbox=None``);
B. decoding in the pipeline's sandbox pool (``NATIVE_DECODERS``, warm workers);
C. a fresh sandbox process per record (start, preload, decode, stop), the design the
   pool avoids;

(best of ``--repeat`` runs each) and the pool's start-up (``Sandbox.warm``) and its
workers' peak resident set.
"""

from __future__ import annotations

import argparse
import io
import os
import time
from pathlib import Path

import cv2
import soundfile

from veil.transforms.audio.codec import AudioLimits, decode_audio
from veil.transforms.image.codec import decode_image
from veil.transforms.sandbox import NATIVE_DECODERS, Sandbox, SandboxConfig

CACHE = Path(os.environ.get("VEIL_CACHE", Path(__file__).resolve().parents[2] / ".cache"))
PHOTO = CACHE / "testdata" / "image" / "astronaut.png"
SPEECH = Path("/usr/share/pocketsphinx/test/data/librivox")


def _inputs() -> dict:
    pixels = cv2.imread(str(PHOTO), cv2.IMREAD_COLOR)
    speech = sorted(SPEECH.glob("*.wav"))[0]
    samples, rate = soundfile.read(str(speech), dtype="float32")
    out = {
        "image png": cv2.imencode(".png", pixels)[1].tobytes(),
        "image jpeg": cv2.imencode(".jpg", pixels)[1].tobytes(),
    }
    for fmt in ("WAV", "FLAC"):
        buffer = io.BytesIO()
        soundfile.write(buffer, samples, rate, format=fmt)
        out[f"audio {fmt.lower()}"] = buffer.getvalue()
    return out


def _decode(name: str, payload: bytes, sandbox):
    if name.startswith("image"):
        return decode_image(payload, sandbox=sandbox)
    return decode_audio(payload, AudioLimits(), sandbox)


def _best_ms(fn, repeat: int) -> float:
    """Best of ``repeat`` runs: the least disturbed by other load on a shared machine."""
    fn()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=40)
    args = parser.parse_args()
    inputs = _inputs()
    started = time.perf_counter()
    pool = Sandbox(NATIVE_DECODERS).warm()
    warm_s = time.perf_counter() - started
    one = SandboxConfig(workers=1, preload=NATIVE_DECODERS.preload)

    def fresh(name, payload):
        sandbox = Sandbox(one)
        try:
            _decode(name, payload, sandbox)
        finally:
            sandbox.close()

    print(f"pool start-up ({NATIVE_DECODERS.workers} workers, preloaded): {warm_s:.2f} s")
    print("| input | bytes | in process | sandbox pool | overhead | process per record |")
    print("|---|---|---|---|---|---|")
    for name, payload in inputs.items():
        local = _best_ms(lambda: _decode(name, payload, None), args.repeat)
        pooled = _best_ms(lambda: _decode(name, payload, pool), args.repeat)
        spawned = _best_ms(lambda: fresh(name, payload), max(3, args.repeat // 10))
        print(
            f"| {name} | {len(payload):,} | {local:.2f} ms | {pooled:.2f} ms | "
            f"+{pooled - local:.2f} ms | {spawned:.0f} ms |"
        )
    print(f"sandbox worker peak RSS: {pool.peak_rss_mb():.0f} MiB")
    pool.close()


if __name__ == "__main__":
    main()
