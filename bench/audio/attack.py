"""Speaker-verification attacks on Veil's voice modes, utility (WER) and speed, in one run.

    bash bench/audio/setup.sh        # resemblyzer's GE2E weights + Asterisk prompts (once)
    .venv/bin/python bench/audio/attack.py [--modes mcadams,pitch_shift,...] [--per-speaker 6]

The attacker is resemblyzer's pretrained GE2E speaker encoder (``ge2e.py``: the same
network and weights, run in numpy). Speech: ``corpus.py`` (five real speakers, several
utterances each, from Debian packages). Each speaker is one subject: Veil anonymizes
their utterances with that subject's keyed parameters, exactly as ``AudioHandler`` does
(``voice_params`` of a fixed bench key, the default ``AudioConfig`` ranges).

Per mode, as the VoicePrivacy Challenge measures:

* *Ignorant* attacker: enrolment = original utterances, trial = anonymized ones.
  Reported: mean / max cosine similarity of each anonymized utterance to the *other*
  original utterances of its own speaker, beside the different-speaker level (original
  vs original, different speakers), and the EER over all enrolment x trial pairs.
* *Lazy-informed* attacker: knows the system and anonymizes the enrolment utterances
  with Veil under *another* subject's key (a voice of their own choice); trial =
  anonymized by the real subject's key. EER over all pairs.
* Utility: PocketSphinx word error rate on the English utterances with transcripts,
  original vs anonymized.
* Speed: CPU seconds of one core for the voice transform of the LibriVox utterances
  (24.7 s), real-time factor = audio seconds / CPU seconds.

EER: the threshold where false acceptances (different speakers scoring above it) equal
false rejections (same speaker below it); 50 % is chance. Same-speaker pairs never pair
an utterance with itself.
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import hashlib  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

import corpus  # noqa: E402
import ge2e  # noqa: E402

BENCH_KEY = hashlib.sha256(b"veil bench/audio voice key").digest()


def weights_path() -> Path:
    cache = Path(os.environ.get("VEIL_CACHE", Path(__file__).resolve().parents[2] / ".cache"))
    path = cache / "bench" / "resemblyzer" / "pretrained.pt"
    if not path.exists():
        sys.exit(f"error: {path} missing: run `bash bench/audio/setup.sh`")
    return path


def eer(target: np.ndarray, nontarget: np.ndarray) -> float:
    """Equal error rate of scores (higher = same speaker)."""
    scores = np.concatenate([target, nontarget])
    labels = np.concatenate([np.ones(len(target)), np.zeros(len(nontarget))])
    order = np.argsort(scores)
    labels = labels[order]
    # threshold just above each sorted score: FRR = targets at or below, FAR = non-targets above
    frr = np.cumsum(labels) / len(target)
    far = 1.0 - np.cumsum(1 - labels) / len(nontarget)
    frr = np.concatenate([[0.0], frr])
    far = np.concatenate([[1.0], far])
    i = int(np.argmin(np.abs(frr - far)))
    return float((frr[i] + far[i]) / 2)


def pair_scores(enrol, trial, speakers, exclude_same_index=True):
    """Target and non-target cosine scores between two embedding sets (same order)."""
    sims = enrol @ trial.T
    same = speakers[:, None] == speakers[None, :]
    mask = np.ones_like(same, dtype=bool)
    if exclude_same_index:
        np.fill_diagonal(mask, False)
    return sims[same & mask], sims[~same]


def wer(reference: str, hypothesis: str) -> tuple[int, int]:
    ref, hyp = reference.split(), hypothesis.split()
    d = np.arange(len(hyp) + 1)
    for i, r in enumerate(ref, 1):
        prev, d[0] = d[0], i
        for j, h in enumerate(hyp, 1):
            prev, d[j] = d[j], min(d[j] + 1, d[j - 1] + 1, prev + (r != h))
    return int(d[-1]), len(ref)


def _wer_total(refs, hyps) -> float:
    errors = sum(wer(r, h)[0] for r, h in zip(refs, hyps))
    return errors / sum(len(r.split()) for r in refs)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--modes",
        default="mcadams,pitch_shift,warp",
        help="comma-separated; a mode may override AudioConfig ranges: "
        "'warp;warp_alpha_range=0.5:0.8;warp_range=0.1:0.2;f0_range=90:240'",
    )
    parser.add_argument("--per-speaker", type=int, default=6)
    parser.add_argument("--no-wer", action="store_true")
    args = parser.parse_args(argv)

    from veil.transforms.audio import AudioConfig, voice
    from veil.transforms.audio.asr import Transcriber
    from veil.transforms.audio.keys import voice_params

    encoder = ge2e.Ge2eEncoder.load(weights_path())
    speakers = corpus.load_speakers(args.per_speaker)
    utts = [u for group in speakers.values() for u in group]
    labels = np.array([u.speaker for u in utts])
    english = [u for u in utts if u.text]
    english += [u for u in corpus.asterisk("allison", args.per_speaker + 6) if u.text][
        len([u for u in english if u.speaker == "allison"]) :
    ]
    total_s = sum(len(u.samples) for u in utts) / corpus.RATE
    print(
        f"{len(speakers)} speakers, {len(utts)} utterances, {total_s:.0f} s; "
        f"{len(english)} English utterances with transcripts",
        file=sys.stderr,
    )
    librivox = np.concatenate([u.samples for u in speakers["librivox"]])

    def embed_all(waves):
        return np.stack([encoder.embed(w) for w in waves])

    started = time.perf_counter()
    original = embed_all([u.samples for u in utts])
    print(f"embedded originals in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    same_o, diff_o = pair_scores(original, original, labels)
    results = [
        {
            "mode": "original (no anonymization)",
            "same_mean": same_o.mean(),
            "same_max": same_o.max(),
            "diff_mean": diff_o.mean(),
            "diff_max": diff_o.max(),
            "eer_orig": eer(same_o, diff_o),
        }
    ]
    asr = None if args.no_wer else Transcriber.load()
    texts = {}
    if asr:
        texts["original"] = [" ".join(w.text for w in asr.transcribe(u.samples)) for u in english]

    for spec in [m for m in args.modes.split(",") if m]:
        mode, *overrides = spec.split(";")
        ranges = {
            name: tuple(float(v) for v in value.split(":"))
            for name, value in (o.split("=") for o in overrides)
        }
        config = AudioConfig(mode=mode, **ranges)
        mode_label = spec.replace(";", " ")
        voice.warm_up(mode)

        def anonymize(samples, subject, config=config, mode=mode):
            params = voice_params(
                BENCH_KEY,
                subject,
                config.warp_alpha_range if mode == "warp" else config.alpha_range,
                config.semitone_range,
                config.warp_range,
                config.f0_range,
            )
            return voice.anonymize_voice(samples[:, None], corpus.RATE, params, mode)[:, 0]

        times = []
        for _ in range(3):
            t0 = time.process_time()
            anonymize(librivox, "speaker-librivox")
            times.append(time.process_time() - t0)
        speed = len(librivox) / corpus.RATE / min(times)
        anon = [anonymize(u.samples, f"speaker-{u.speaker}") for u in utts]
        lazy = [anonymize(u.samples, f"attacker-for-{u.speaker}") for u in utts]
        e_anon = embed_all(anon)
        e_lazy = embed_all(lazy)
        # Ignorant: similarity of anonymized utterances to their speaker's other originals.
        same_i, diff_i = pair_scores(original, e_anon, labels)
        same_l, diff_l = pair_scores(e_lazy, e_anon, labels)
        row = {
            "mode": mode_label,
            "ign_mean": same_i.mean(),
            "ign_max": same_i.max(),
            "diff_mean": diff_o.mean(),
            "diff_max": diff_o.max(),
            "eer_ign": eer(same_i, diff_i),
            "eer_lazy": eer(same_l, diff_l),
            "speed": speed,
        }
        if asr:
            hyps = [
                " ".join(
                    w.text for w in asr.transcribe(anonymize(u.samples, f"speaker-{u.speaker}"))
                )
                for u in english
            ]
            texts[mode_label] = hyps
            row["wer"] = _wer_total([u.text for u in english], hyps)
            if "original" in texts and "wer_original" not in results[0]:
                results[0]["wer_original"] = _wer_total(
                    [u.text for u in english], texts["original"]
                )
        results.append(row)
        print(
            f"  {mode_label}: "
            + ", ".join(f"{k} {v:.3f}" for k, v in row.items() if k != "mode")
            + (f", wer_original {results[0].get('wer_original', 0):.3f}" if asr else ""),
            file=sys.stderr,
            flush=True,
        )

    print()
    print(
        "| Mode | Ignorant: sim. to own speaker, mean / max | Different speakers, mean / max "
        "| EER ignorant | EER lazy-informed | WER | Real time per core |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    ref = [u.text for u in english]

    def wer_of(hyps):
        errors = sum(wer(r, h)[0] for r, h in zip(ref, hyps))
        return errors / sum(len(r.split()) for r in ref)

    base = results[0]
    print(
        f"| original | {base['same_mean']:.3f} / {base['same_max']:.3f} (same speaker) "
        f"| {base['diff_mean']:.3f} / {base['diff_max']:.3f} | {base['eer_orig']:.1%} | - "
        f"| {wer_of(texts['original']):.1%} | - |"
        if asr
        else f"| original | {base['same_mean']:.3f} / {base['same_max']:.3f} | "
        f"{base['diff_mean']:.3f} / {base['diff_max']:.3f} | {base['eer_orig']:.1%} | - | - | - |"
    )
    for row in results[1:]:
        w = f"{wer_of(texts[row['mode']]):.1%}" if asr else "-"
        print(
            f"| {row['mode']} | {row['ign_mean']:.3f} / {row['ign_max']:.3f} "
            f"| {row['diff_mean']:.3f} / {row['diff_max']:.3f} | {row['eer_ign']:.1%} "
            f"| {row['eer_lazy']:.1%} | {w} | {row['speed']:.0f}x |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
