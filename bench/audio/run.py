"""Audio benchmark: real-time factor per core of each voice mode, in one run.

    make audio-testdata && .venv/bin/python bench/audio/run.py [--repeat 5]

Input: the five LibriVox utterances of Debian's pocketsphinx-testdata (real speech,
16 kHz mono, 24.7 s in all), concatenated. One thread per library (BLAS, numba, soxr),
so the numbers are per core. Measured in the same run:

A. McAdams, Veil's vectorized transform (``veil.transforms.audio.mcadams.mcadams``).
A2. The ``warp`` mode (same kernel plus the all-pass warp and the SOLA pitch shift,
   plus the F0 estimate), at 16 kHz.
B. McAdams, the VoicePrivacy baseline's straightforward frame-by-frame Python loop
   (``mcadams_frame_loop``), after its numba JIT warm-up.
C. The pitch-shift mode (librosa, soxr resampling), after its JIT warm-up.
D. McAdams on the same speech at 44.1 kHz (resampled to 16 kHz and back inside).
E. PocketSphinx alone (the spoken-PII recognizer), 16 kHz.
F. ``AudioHandler.process`` per record, end to end (WAV decode, recognition, text
   detectors, voice, blanking, WAV encode), for each mode, and McAdams without the
   spoken-PII step.

Real-time factor = seconds of audio per second of one core's time (best of
``--repeat`` runs; the median is printed too). Machines here have 2 noisy cores:
compare ratios measured in the same run.
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import io  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import soundfile  # noqa: E402

DATA = Path("/usr/share/pocketsphinx/test/data/librivox")


def speech() -> tuple[np.ndarray, int]:
    files = sorted(DATA.glob("sense_and_sensibility_01_austen_64kb-*.wav"))
    if len(files) != 5:
        sys.exit("error: run `make audio-testdata` (Debian pocketsphinx-testdata) first")
    parts = [soundfile.read(f, dtype="float64")[0] for f in files]
    return np.concatenate(parts), 16000


def timed(fn, repeat: int) -> tuple[float, float]:
    times = []
    for _ in range(repeat):
        started = time.process_time()
        fn()
        times.append(time.process_time() - started)
    return min(times), statistics.median(times)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)

    from veil.transforms.audio import AudioConfig, AudioHandler, voice
    from veil.transforms.audio import mcadams as mc
    from veil.transforms.audio.asr import Transcriber
    from veil.transforms.audio.keys import VoiceParams
    from veil.transforms.classification import load_policy
    from veil.transforms.keys import write_key_file
    from veil.transforms.records import Source, WorkItem

    x, rate = speech()
    seconds = len(x) / rate
    x44 = voice.resample(x[:, None], rate, 44100)
    params = VoiceParams(alpha=0.7, semitones=5.0)

    # Warm-ups (JIT) outside the timings.
    started = time.perf_counter()
    mc.warm_up()
    jit_s = time.perf_counter() - started
    mc.mcadams_frame_loop(x[:8000], rate, 0.7)
    voice.warm_up("pitch_shift")
    voice.warm_up("warp")
    asr = Transcriber.load()

    rows = []

    def row(label, audio_s, fn, repeat=args.repeat):
        best, median = timed(fn, repeat)
        rows.append((label, audio_s, best, median))
        print(f"  {label}: best {audio_s / best:.1f}x", file=sys.stderr)

    print(f"{seconds:.1f} s of speech; McAdams JIT warm-up {jit_s:.1f} s", file=sys.stderr)
    row("A McAdams, vectorized (Veil), 16 kHz", seconds, lambda: mc.mcadams(x, rate, 0.7))
    warp_params = VoiceParams(alpha=0.85, semitones=0.0, warp=0.12, f0=180.0)
    row(
        "A2 Warp mode (McAdams + VTLN warp + SOLA pitch to target F0, F0 estimate), 16 kHz",
        seconds,
        lambda: voice.anonymize_voice(x[:, None], rate, warp_params, "warp"),
    )
    row(
        "B McAdams, frame-by-frame Python loop (baseline), 16 kHz",
        seconds,
        lambda: mc.mcadams_frame_loop(x, rate, 0.7),
        repeat=max(2, args.repeat // 2),
    )
    row(
        "C Pitch shift (librosa), 16 kHz",
        seconds,
        lambda: voice.anonymize_voice(x[:, None], rate, params, "pitch_shift"),
    )
    row(
        "D McAdams, 44.1 kHz in and out (resampling included)",
        seconds,
        lambda: voice.anonymize_voice(x44, 44100, params, "mcadams"),
    )
    row("E PocketSphinx recognition alone, 16 kHz", seconds, lambda: asr.transcribe(x), repeat=2)

    wav = io.BytesIO()
    soundfile.write(wav, x, rate, format="WAV", subtype="PCM_16")
    payload = wav.getvalue()
    policy = load_policy()
    with tempfile.TemporaryDirectory() as tmp:
        key = write_key_file(Path(tmp) / "voice.key")
        for mode, pii in (
            ("warp", True),
            ("mcadams", True),
            ("pitch_shift", True),
            ("warp", False),
            ("mcadams", False),
        ):
            config = AudioConfig(mode=mode, spoken_pii=pii, key_file=str(key))
            handler = AudioHandler(policy, config)
            model = handler.load()

            def one_record(handler=handler, model=model):
                item = WorkItem(
                    Source("bench", 0, 0),
                    {"record_id": "b", "subject_key": "s", "payload": payload},
                    "audio",
                )
                handler.process(model, item)

            what = "with spoken PII" if pii else "voice only (spoken_pii=False)"
            row(f"F AudioHandler.process, {mode}, {what}", seconds, one_record, repeat=2)

    print()
    print("| Case | Audio s | Best CPU s | Real-time factor (best) | Median |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for label, audio_s, best, median in rows:
        print(
            f"| {label} | {audio_s:.1f} | {best:.3f} | {audio_s / best:.0f}x | {audio_s / median:.0f}x |"
        )
    a, b = rows[0], rows[2]
    print()
    print(f"A/B: the vectorized McAdams is {b[2] / a[2]:.1f}x faster than the frame loop.")
    print(f"A2/A: the warp mode costs {rows[1][2] / a[2]:.2f}x the McAdams mode's CPU time.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
