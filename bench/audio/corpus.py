"""Real recorded speech from Debian packages, grouped by speaker, for the attacker bench.

Sources (installed and pinned by ``bench/audio/setup.sh``; nothing is downloaded at run
time and none of it was recorded or written by this project):

* ``pocketsphinx-testdata`` 0.8+5prealpha+1-15: five utterances of one LibriVox reader
  (Sense and Sensibility, public domain), 16 kHz, with transcriptions.
* ``asterisk-core-sounds-{en,es,fr,it,ru}-g722`` 1.6.1-1: the Asterisk PBX prompts
  recorded by professional voice talents, G.722 (16 kHz wideband), CC-BY-SA 3.0. The
  directories name the speakers: ``en_US_f_Allison`` and ``es_MX_f_Allison`` (the same
  speaker, Allison Smith, in two languages), ``fr_CA_f_June``, ``it_IT_m_Carlo``,
  ``ru_RU_f_IvrvoiceRU``. English transcripts: ``asterisk-core-sounds-en``'s
  ``core-sounds-en.txt``.

The prompts are short (0.5-5 s), so an *utterance* here is consecutive prompts of one
speaker (sorted by file name, tones and prompts under 0.6 s skipped) joined with 0.2 s
of silence until it lasts at least ``MIN_UTTERANCE_S``: the speaker encoder then sees
several partial windows per utterance, as on real calls.

Example::

    speakers = load_speakers(per_speaker=8)
    for utt in speakers["allison"]: utt.samples, utt.text
"""

from __future__ import annotations

import dataclasses
import gzip
import re
from pathlib import Path

import numpy as np

RATE = 16000
MIN_UTTERANCE_S = 4.0
GAP_S = 0.2
POCKETSPHINX = Path("/usr/share/pocketsphinx/test/data/librivox")
ASTERISK = Path("/usr/share/asterisk/sounds")
ASTERISK_EN_TEXT = Path("/usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz")
#: speaker -> Asterisk sound directories of that speaker
ASTERISK_SPEAKERS = {
    "allison": ("en_US_f_Allison", "es_MX_f_Allison"),
    "june": ("fr_CA_f_June",),
    "carlo": ("it_IT_m_Carlo",),
    "ru-ivrvoice": ("ru_RU_f_IvrvoiceRU",),
}
_SKIP = re.compile(r"beep|tone|silence|dtmf", re.I)


@dataclasses.dataclass
class Utterance:
    speaker: str
    name: str
    samples: np.ndarray  # float64 mono, 16 kHz
    text: str | None  # lower-case words when the transcript is known (English only)


def _words(text: str) -> str | None:
    if "[" in text or re.search(r"\d", text):
        return None
    return " ".join(re.sub(r"[^a-z' ]", " ", text.lower().replace("-", " ")).split())


def _g722(path: Path) -> np.ndarray:
    import av

    with av.open(str(path)) as box:
        parts = [f.to_ndarray().reshape(-1) for f in box.decode(audio=0)]
    return np.concatenate(parts).astype(np.float64) / 32768.0


def librivox() -> list[Utterance]:
    import soundfile

    texts = {}
    for line in (POCKETSPHINX / "transcription").read_text().splitlines():
        match = re.match(r"<s> (.*) </s> \((.*)\)", line.strip())
        if match:
            texts[match.group(2)] = match.group(1).strip()
    out = []
    for path in sorted(POCKETSPHINX.glob("sense_and_sensibility_01_austen_64kb-*.wav")):
        samples, rate = soundfile.read(path, dtype="float64")
        assert rate == RATE
        out.append(Utterance("librivox", path.stem, samples, texts.get(path.stem)))
    return out


def asterisk(speaker: str, per_speaker: int, english_text: bool = True) -> list[Utterance]:
    texts = {}
    if english_text and ASTERISK_EN_TEXT.exists():
        for line in gzip.decompress(ASTERISK_EN_TEXT.read_bytes()).decode().splitlines():
            if ":" in line and not line.startswith(";"):
                name, text = line.split(":", 1)
                texts[name.strip()] = _words(text.strip())
    out: list[Utterance] = []
    gap = np.zeros(int(GAP_S * RATE))
    for directory in ASTERISK_SPEAKERS[speaker]:
        files = sorted((ASTERISK / directory).glob("*.g722"))
        english = directory.startswith("en_")
        parts, words, names = [], [], []
        for path in files:
            if _SKIP.search(path.stem):
                continue
            text = texts.get(path.stem) if english else None
            if english and not text:
                continue  # keep English utterances fully transcribed
            x = _g722(path)
            if len(x) < 0.6 * RATE:
                continue
            parts += [x, gap]
            words.append(text or "")
            names.append(path.stem)
            if sum(len(p) for p in parts) >= MIN_UTTERANCE_S * RATE:
                out.append(
                    Utterance(
                        speaker,
                        f"{directory}:{names[0]}+{len(names) - 1}",
                        np.concatenate(parts),
                        " ".join(words) if english else None,
                    )
                )
                parts, words, names = [], [], []
                if len(out) >= per_speaker * (ASTERISK_SPEAKERS[speaker].index(directory) + 1):
                    break
    return out


def load_speakers(per_speaker: int = 6) -> dict[str, list[Utterance]]:
    """Every speaker's utterances (Allison's split over English and Spanish)."""
    speakers = {"librivox": librivox()}
    for speaker, dirs in ASTERISK_SPEAKERS.items():
        per_dir = max(1, per_speaker // len(dirs))
        speakers[speaker] = asterisk(speaker, per_dir)
    return speakers
