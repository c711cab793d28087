"""Spoken-PII recall: what the audio branch finds, silences and flags, per identifier kind.

    .venv/bin/python bench/audio/spoken_pii.py [--clips 8] [--mode warp]

Speech nobody on this project recorded, in two sets:

* synthesized: espeak-ng (four English voices) saying one identifier per sentence:
  a person's name, a phone number, a street address with its city, an e-mail address.
  Names, streets and cities are drawn (seeded) from ``bench/text/corpus.py``'s lists,
  which no detector uses;
* real: Allison Smith's recorded digit prompts (Debian ``asterisk-core-sounds-en-g722``)
  joined into ten-digit phone numbers (a real voice reading digits, as on a voicemail).

Per identifier kind, measured through ``AudioHandler.process`` (the pipeline's code):

* *ASR word recall*: identifier words PocketSphinx recognized in the original;
* *detection recall*: clips whose identifier the handler reported (entity count of the
  expected type > 0);
* *left after Veil*: identifier words still recognized when the handler's output is
  transcribed again (voice change plus silenced spans), beside the voice change alone
  (no silencing) as the baseline;
* *flagged*: clips whose transcript confidence was below the default policy's threshold,
  i.e. that go to the quarantine topic (``UNRELIABLE_TRANSCRIPT``).
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import importlib.util  # noqa: E402
import io  # noqa: E402
import random  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import soundfile  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import corpus as speech  # noqa: E402

_spec = importlib.util.spec_from_file_location("text_corpus", HERE.parent / "text" / "corpus.py")
text_corpus = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(text_corpus)

VOICES = ("en-us+f2", "en-us+m3", "en-gb+m1", "en-gb-scotland+f3")
DIGITS = "zero one two three four five six seven eight nine".split()
EXPECTED = {
    "name": "PERSON",
    "phone": "PHONE_NUMBER",
    "address": "STREET_ADDRESS",
    "email": "EMAIL_ADDRESS",
    "phone (real voice)": "PHONE_NUMBER",
}


def espeak(text: str, voice: str) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "s.wav"
        subprocess.run(
            ["espeak-ng", "-v", voice, "-s", "150", "-g", "6", "-w", str(path), text],
            check=True,
            capture_output=True,
        )
        return path.read_bytes()


def synthesized(clips: int, rng: random.Random):
    """(kind, identifier words, wav bytes) per clip."""
    out = []
    for i in range(clips):
        voice = VOICES[i % len(VOICES)]
        first, last = rng.choice(text_corpus.FIRST), rng.choice(text_corpus.LAST)
        digits = [rng.choice(DIGITS) for _ in range(10)]
        number = [rng.choice(DIGITS[1:]), rng.choice(DIGITS)]
        street = rng.choice(text_corpus.STREET_NAMES)
        kind = rng.choice(["Street", "Avenue", "Road", "Lane", "Drive"])
        city = rng.choice(text_corpus.CITIES)[0]
        cases = [
            ("name", f"hello my name is {first} {last} and i am calling about my order",
             [first, last]),
            ("phone", f"you can call me back on {' '.join(digits)} after five",
             digits),
            ("address", f"please send it to {' '.join(number)} {street} {kind} in {city}",
             number + [street, kind, city]),
            ("email", f"my email is {first} at example dot com thank you",
             [first, "example"]),
        ]  # fmt: skip
        for case, sentence, words in cases:
            out.append((case, [w.lower() for w in words], espeak(sentence.lower(), voice)))
    return out


def real_phone_numbers(clips: int, rng: random.Random):
    folder = speech.ASTERISK / "en_US_f_Allison" / "digits"
    gap = np.zeros(int(0.12 * speech.RATE))
    out = []
    for _ in range(clips):
        digits = [rng.randrange(10) for _ in range(10)]
        parts = []
        for d in digits:
            parts += [speech._g722(folder / f"{d}.g722"), gap]
        buffer = io.BytesIO()
        soundfile.write(buffer, np.concatenate(parts), speech.RATE, format="WAV")
        out.append(("phone (real voice)", [DIGITS[d] for d in digits], buffer.getvalue()))
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=8, help="sentences per kind")
    parser.add_argument("--mode", default="warp", help="AudioConfig.mode")
    args = parser.parse_args(argv)

    from veil.transforms.audio import AudioConfig, AudioHandler, voice
    from veil.transforms.audio.asr import Transcriber
    from veil.transforms.audio.keys import voice_params
    from veil.transforms.classification import load_policy
    from veil.transforms.keys import write_key_file
    from veil.transforms.privacy import settle
    from veil.transforms.records import Source, WorkItem

    rng = random.Random(20261204)
    clips = synthesized(args.clips, rng) + real_phone_numbers(args.clips, rng)
    policy = load_policy()
    asr = Transcriber.load()
    rows: dict[str, list] = {}
    with tempfile.TemporaryDirectory() as tmp:
        key_path = write_key_file(Path(tmp) / "voice.key")
        config = AudioConfig(mode=args.mode, key_file=str(key_path))
        handler = AudioHandler(policy, config)
        model = handler.load()
        for n, (case, words, wav) in enumerate(clips):
            item = WorkItem(
                Source("bench", 0, n),
                {"record_id": f"c{n}", "subject_key": f"s{n}", "payload": wav},
                "audio",
            )
            counts = settle(item, handler.process(model, item))
            samples, rate = soundfile.read(io.BytesIO(wav), dtype="float64")
            x16 = voice.resample(samples, rate, 16000)
            heard = {w.text for w in asr.transcribe(x16)}
            out, out_rate = soundfile.read(io.BytesIO(item.sanitized_payload), dtype="float64")
            after = {w.text for w in asr.transcribe(voice.resample(out, out_rate, 16000))}
            params = voice_params(
                model.key,
                f"s{n}",
                config.warp_alpha_range if config.mode == "warp" else config.alpha_range,
                config.semitone_range,
                config.warp_range,
                config.f0_range,
            )
            changed = voice.anonymize_voice(samples[:, None], rate, params, config.mode)[:, 0]
            base = {w.text for w in asr.transcribe(voice.resample(changed, rate, 16000))}
            wanted = set(words)
            rows.setdefault(case, []).append(
                (
                    len(wanted & heard) / len(wanted),
                    counts.get(EXPECTED[case], 0) > 0,
                    len(wanted & after) / len(wanted),
                    len(wanted & base) / len(wanted),
                    counts.get("UNRELIABLE_TRANSCRIPT", 0) > 0,
                )
            )
    print()
    print(
        "| Identifier | Clips | ASR word recall | Detection recall | Words left after Veil "
        "| Words left, voice change only | Flagged unreliable (quarantined) |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for case, values in rows.items():
        v = np.array(values, dtype=float)
        print(
            f"| {case} | {len(values)} | {v[:, 0].mean():.0%} | {v[:, 1].mean():.0%} "
            f"| {v[:, 2].mean():.0%} | {v[:, 3].mean():.0%} | {v[:, 4].mean():.0%} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
