"""Text inside images: Tesseract word boxes, the text branch's detectors, PII boxes.

Tesseract (Debian ``tesseract-ocr`` + ``tesseract-ocr-eng``, installed by
``deploy/setup-image.sh``) runs as a subprocess with a time limit, reading a
metadata-free PNG of the pixels on stdin and writing TSV word boxes on stdout. The
words are joined into lines; ``veil.transforms.text.detect`` finds the PII spans; every
word that a span touches is returned for covering. Words and text stay in this module:
nothing of them is logged or audited.

Example::

    words = read_words(pixels, timeout_s=20)
    boxes, types = pii_boxes(text_model, words, policy)
"""

from __future__ import annotations

import csv
import dataclasses
import io
import os
import shutil
import subprocess

import cv2
import numpy as np

TESSERACT = "tesseract"


class OcrError(Exception):
    """Tesseract missing, failed or timed out (content-free)."""


@dataclasses.dataclass(frozen=True)
class Word:
    text: str
    box: tuple  # x1, y1, x2, y2
    line: tuple  # block, paragraph, line


def available() -> bool:
    return shutil.which(TESSERACT) is not None


def version() -> str:
    try:
        out = subprocess.run([TESSERACT, "--version"], capture_output=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unavailable"
    first = (out.stdout or out.stderr).decode("utf-8", "replace").splitlines()
    return first[0].replace(" ", "-") if first else "unknown"


def read_words(pixels: np.ndarray, timeout_s: float = 20.0, language: str = "eng") -> list[Word]:
    """Word boxes from Tesseract (sparse-text mode), in ``pixels``' coordinates."""
    ok, png = cv2.imencode(".png", pixels)
    if not ok:
        raise OcrError("encode")
    env = dict(os.environ, OMP_THREAD_LIMIT="1")
    try:
        result = subprocess.run(
            [TESSERACT, "stdin", "stdout", "-l", language, "--psm", "11", "tsv"],
            input=png.tobytes(),
            capture_output=True,
            timeout=timeout_s,
            env=env,
        )
    except (OSError, subprocess.SubprocessError):
        raise OcrError("tesseract") from None
    if result.returncode != 0:
        raise OcrError("tesseract")
    words = []
    reader = csv.DictReader(
        io.StringIO(result.stdout.decode("utf-8", "replace")),
        delimiter="\t",
        quoting=csv.QUOTE_NONE,
    )
    for row in reader:
        text = (row.get("text") or "").strip()
        if row.get("level") != "5" or not text:
            continue
        left, top = int(row["left"]), int(row["top"])
        box = (left, top, left + int(row["width"]), top + int(row["height"]))
        words.append(Word(text, box, (row["block_num"], row["par_num"], row["line_num"])))
    return words


def join_words(words: list[Word]) -> tuple[str, list[tuple[int, int]]]:
    """The words as text (a space between words, a newline between lines) and each
    word's character span in it."""
    parts, spans, pos, previous = [], [], 0, None
    for word in words:
        if previous is not None:
            sep = " " if word.line == previous else "\n"
            parts.append(sep)
            pos += 1
        spans.append((pos, pos + len(word.text)))
        parts.append(word.text)
        pos += len(word.text)
        previous = word.line
    return "".join(parts), spans


def pii_words(words: list[Word], spans: list[tuple[int, int, str]]) -> list[tuple[Word, str]]:
    """The words that any ``(start, end, entity type)`` span touches, with the type."""
    _, word_spans = join_words(words)
    hits = []
    for word, (start, end) in zip(words, word_spans):
        for span_start, span_end, entity in spans:
            if start < span_end and span_start < end:
                hits.append((word, entity))
                break
    return hits
