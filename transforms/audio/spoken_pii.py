"""Spoken PII: a transcript the text detectors can read, and the audio spans to blank.

Speech recognizers write numbers and addresses as words ("two one two five five five
..."), which a phone-number or card recognizer cannot match, and write everything in
lower case, which hides names from detectors that look for capitalized runs.
``normalize`` rewrites the recognized words into written form (digit runs, "double
five", "john at example dot com" -> "john@example.com") and capitalizes the words right
after a spoken name cue ("my name is john smith" -> "my name is John Smith"; cues:
``NAME_CUES``), while remembering which words each piece of text came from. A
finding's character span then maps back to words, and the words to time spans, padded
a little on both sides because word boundaries from the recognizer are approximate.

``blank`` replaces those time spans in the output audio with silence or a 1 kHz tone.
It runs after the voice transformation, so nothing of the original words leaks back
through the overlap-add of neighbouring frames.

Example::

    text, pieces = normalize(words)
    spans = time_spans(pieces, merged_findings, words, pad_s=0.15)
    blank(samples, sample_rate, spans, "silence")
"""

from __future__ import annotations

import dataclasses

import numpy as np

from veil.transforms.audio.asr import Word

UNITS = {
    "zero": "0",
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
}
TEENS = {
    "ten": "10",
    "eleven": "11",
    "twelve": "12",
    "thirteen": "13",
    "fourteen": "14",
    "fifteen": "15",
    "sixteen": "16",
    "seventeen": "17",
    "eighteen": "18",
    "nineteen": "19",
}
TENS = {
    "twenty": "2",
    "thirty": "3",
    "forty": "4",
    "fifty": "5",
    "sixty": "6",
    "seventy": "7",
    "eighty": "8",
    "ninety": "9",
}
REPEATS = {"double": 2, "triple": 3}
#: Spoken phrases after which the next words (up to ``NAME_WORDS``, up to the first
#: function word) are taken as a name and capitalized for the text detectors.
NAME_CUES = (
    ("name", "is"),
    ("name's",),
    ("named",),
    ("called",),
    ("this", "is"),
    ("speaking", "with"),
    ("speak", "to"),
    ("spoke", "to"),
    ("spoke", "with"),
    ("ask", "for"),
    ("mister",),
    ("missus",),
    ("mr",),
    ("mrs",),
    ("ms",),
    ("miss",),
    ("doctor",),
    ("dr",),
    ("professor",),
)
NAME_WORDS = 3
FUNCTION_WORDS = frozenset(
    """
    a an the and or but if of to in on at by for from with about as is are was were be
    been am i you he she it we they me him her us them my your his its our their this
    that these those here there what which who how when where why not no yes so just
    very really calling going here's there's it's i'm you're we're they're that's
    please thanks thank hello hi hey okay ok um uh
    """.split()
)
TONE_HZ = 1000.0
TONE_LEVEL = 0.1  # -20 dBFS


@dataclasses.dataclass(frozen=True)
class Piece:
    """A piece of the normalized transcript: its characters and the words it came from."""

    start: int
    end: int
    first_word: int
    last_word: int


def _number_at(texts: list[str], i: int) -> tuple[str, int] | None:
    """Digits spelled by the words from ``i`` on, and how many words they use."""
    word = texts[i]
    nxt = texts[i + 1] if i + 1 < len(texts) else None
    if word in UNITS:
        return UNITS[word], 1
    if word in TEENS:
        return TEENS[word], 1
    if word in TENS:
        if nxt in UNITS and nxt != "zero":
            return TENS[word] + UNITS[nxt], 2
        return TENS[word] + "0", 1
    if word in REPEATS and nxt in UNITS:
        return UNITS[nxt] * REPEATS[word], 2
    return None


def _is_number_word(text: str | None) -> bool:
    return text in UNITS or text in TEENS or text in TENS or text in REPEATS


def normalize(words: list[Word]) -> tuple[str, list[Piece]]:
    """The transcript in written form, and where each piece of it came from.

    Runs of number words become one digit string ("two one two" -> "212"; "oh" counts
    as zero inside a run); "X at Y dot Z" becomes "X@Y.Z"; words after a name cue are
    capitalized. Other words stay as they are.
    """
    texts = [w.text for w in words]
    cased = _truecase(texts)
    tokens: list[list] = []  # [text, first_word, last_word, is_number]
    i = 0
    while i < len(texts):
        number = _number_at(texts, i)
        in_run = bool(tokens) and tokens[-1][3]
        if number is None and texts[i] == "oh" and (in_run or _is_number_word(_get(texts, i + 1))):
            number = ("0", 1)
        if number is not None:
            digits, used = number
            if in_run:
                tokens[-1][0] += digits
                tokens[-1][2] = i + used - 1
            else:
                tokens.append([digits, i, i + used - 1, True])
            i += used
            continue
        if texts[i] == "at" and tokens and _get(texts, i + 2) == "dot" and _get(texts, i + 3):
            local = tokens.pop()
            address = f"{local[0].lower()}@{texts[i + 1]}"
            j = i + 2
            while _get(texts, j) == "dot" and _get(texts, j + 1):
                address += "." + texts[j + 1]
                j += 2
            tokens.append([address, local[1], j - 1, False])
            i = j
            continue
        tokens.append([cased[i], i, i, False])
        i += 1
    pieces, parts, cursor = [], [], 0
    for text, first, last, _ in tokens:
        if parts:
            cursor += 1
        pieces.append(Piece(cursor, cursor + len(text), first, last))
        parts.append(text)
        cursor += len(text)
    return " ".join(parts), pieces


def _truecase(texts: list[str]) -> list[str]:
    """Capitalizes the words that follow a name cue (see ``NAME_CUES``)."""
    out = list(texts)
    for i in range(len(texts)):
        for cue in NAME_CUES:
            if tuple(texts[i : i + len(cue)]) != cue:
                continue
            j = i + len(cue)
            while j < len(texts) and j < i + len(cue) + NAME_WORDS:
                word = texts[j]
                if word in FUNCTION_WORDS or _is_number_word(word) or not word.isalpha():
                    break
                out[j] = word.capitalize()
                j += 1
    return out


def _get(texts: list[str], i: int) -> str | None:
    return texts[i] if 0 <= i < len(texts) else None


def time_spans(
    pieces: list[Piece], spans: list[tuple[int, int, str]], words: list[Word], pad_s: float
) -> list[tuple[float, float]]:
    """The padded time spans (seconds) of the words behind each character span."""
    out = []
    for start, end, _ in spans:
        hit = [p for p in pieces if p.start < end and start < p.end]
        if not hit:
            continue
        first = min(p.first_word for p in hit)
        last = max(p.last_word for p in hit)
        out.append((max(0.0, words[first].start - pad_s), words[last].end + pad_s))
    return out


def blank(samples: np.ndarray, sample_rate: int, spans, replacement: str) -> int:
    """Overwrites ``spans`` (seconds) of ``samples`` (frames, channels) in place.

    ``replacement`` is ``"silence"`` or ``"tone"`` (1 kHz at -20 dBFS). Returns the
    number of frames replaced.
    """
    total = 0
    length = samples.shape[0]
    for start_s, end_s in spans:
        start = max(0, int(np.floor(start_s * sample_rate)))
        end = min(length, int(np.ceil(end_s * sample_rate)))
        if end <= start:
            continue
        if replacement == "tone":
            t = np.arange(start, end) / sample_rate
            samples[start:end] = (TONE_LEVEL * np.sin(2 * np.pi * TONE_HZ * t))[:, None]
        else:
            samples[start:end] = 0.0
        total += end - start
    return total
