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
import time

import cv2
import numpy as np

TESSERACT = "tesseract"


FIRST_PASS = "0@1"  # the image as is


class OcrError(Exception):
    """Tesseract missing, failed or timed out (content-free)."""


@dataclasses.dataclass(frozen=True)
class Word:
    text: str
    box: tuple  # x1, y1, x2, y2
    line: tuple  # block, paragraph, line (and the pass, for ``read_words_multi``)
    conf: float = 100.0  # Tesseract's word confidence (0-100)


@dataclasses.dataclass(frozen=True)
class OcrPasses:
    """Extra OCR passes for small and rotated text (issue 18).

    Attributes:
        upscale: factor for the upscaled passes (9 px text read at ~27 px); capped so
            the upscaled image stays within ``max_pixels``; below 1.5 no upscaled pass.
        max_pixels: pixel budget of one extra pass (larger images: the turned and
            skewed passes run downscaled to it).
        skew_angles: small rotations (degrees, counter-clockwise positive) read on the
            upscaled image; text within about 7 degrees of each is read.
        osd: ask Tesseract's orientation detection (OSD) which quarter turn the page
            has; when it cannot tell (too few characters, as in most photos) or is
            unsure, both quarter turns are read (fail closed).
        osd_min_confidence: OSD orientation confidence needed to trust it.
        min_confidence: words below it that look like part of an identifier (a digit
            or ``@``, 3+ characters) are covered anyway (fail closed per region).
    """

    upscale: float = 3.0
    max_pixels: int = 2_400_000
    skew_angles: tuple = (15.0, -15.0)
    osd: bool = True
    osd_min_confidence: float = 1.5
    min_confidence: float = 60.0


def available() -> bool:
    return shutil.which(TESSERACT) is not None


def version() -> str:
    try:
        out = subprocess.run([TESSERACT, "--version"], capture_output=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unavailable"
    first = (out.stdout or out.stderr).decode("utf-8", "replace").splitlines()
    return first[0].replace(" ", "-") if first else "unknown"


def _tesseract(pixels: np.ndarray, args: list, timeout_s: float) -> subprocess.CompletedProcess:
    ok, png = cv2.imencode(".png", pixels)
    if not ok:
        raise OcrError("encode")
    env = dict(os.environ, OMP_THREAD_LIMIT="1")
    try:
        return subprocess.run(
            [TESSERACT, "stdin", "stdout", *args],
            input=png.tobytes(),
            capture_output=True,
            timeout=max(timeout_s, 0.1),
            env=env,
        )
    except (OSError, subprocess.SubprocessError):
        raise OcrError("tesseract") from None


def read_words(pixels: np.ndarray, timeout_s: float = 20.0, language: str = "eng") -> list[Word]:
    """Word boxes from Tesseract (sparse-text mode), in ``pixels``' coordinates."""
    result = _tesseract(pixels, ["-l", language, "--psm", "11", "tsv"], timeout_s)
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
        try:
            conf = float(row.get("conf") or 0)
        except ValueError:
            conf = 0.0
        words.append(Word(text, box, (row["block_num"], row["par_num"], row["line_num"]), conf))
    return words


def osd_rotation(pixels: np.ndarray, timeout_s: float, min_confidence: float) -> int | None:
    """The clockwise quarter turn (0, 90, 180, 270) that makes the page upright
    according to Tesseract OSD, or None when OSD cannot tell or is unsure."""
    result = _tesseract(pixels, ["--psm", "0", "-c", "min_characters_to_try=10"], timeout_s)
    if result.returncode != 0:
        return None  # "Too few characters": no decision, not a failure
    rotate, confidence = None, 0.0
    for line in result.stdout.decode("utf-8", "replace").splitlines():
        key, _, value = line.partition(":")
        try:
            if key.strip() == "Rotate":
                rotate = int(value.strip())
            elif key.strip() == "Orientation confidence":
                confidence = float(value.strip())
        except ValueError:
            return None
    if rotate not in (0, 90, 180, 270) or confidence < min_confidence:
        return None
    return rotate


def _affine(shape, angle: float, scale: float):
    """(2x3 matrix, output size): rotate ``angle`` degrees counter-clockwise about the
    centre and scale, on a canvas that keeps every corner."""
    h, w = shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, scale)
    cos, sin = abs(m[0, 0]), abs(m[0, 1])
    nw, nh = int(round(h * sin + w * cos)), int(round(h * cos + w * sin))
    m[0, 2] += nw / 2 - w / 2
    m[1, 2] += nh / 2 - h / 2
    return m, (nw, nh)


def _read_transformed(pixels, angle, scale, timeout_s, tag) -> list[Word]:
    """Words read on ``pixels`` rotated and scaled, boxes mapped back (the axis-aligned
    box around each word's mapped corners)."""
    m, size = _affine(pixels.shape, angle, scale)
    flags = cv2.INTER_CUBIC if scale >= 1 else cv2.INTER_LINEAR
    view = cv2.warpAffine(pixels, m, size, flags=flags, borderValue=(255, 255, 255))
    inverse = cv2.invertAffineTransform(m)
    h, w = pixels.shape[:2]
    out = []
    for word in read_words(view, timeout_s):
        x1, y1, x2, y2 = word.box
        corners = np.array([[x1, y1], [x2, y1], [x1, y2], [x2, y2]], np.float64)
        mapped = corners @ inverse[:, :2].T + inverse[:, 2]
        bx1, by1 = np.floor(mapped.min(axis=0)).astype(int)
        bx2, by2 = np.ceil(mapped.max(axis=0)).astype(int)
        box = (max(int(bx1), 0), max(int(by1), 0), min(int(bx2), w), min(int(by2), h))
        if box[2] > box[0] and box[3] > box[1]:
            out.append(Word(word.text, box, word.line, word.conf))
    return out


def read_words_multi(
    pixels: np.ndarray, timeout_s: float = 20.0, passes: OcrPasses = OcrPasses()
) -> tuple[list[Word], dict]:
    """Words from several passes, boxes in ``pixels``' coordinates.

    Passes: the image as is; upscaled (small text); upscaled and turned by each small
    skew angle; upscaled and turned by the quarter turn OSD reports, or by both quarter
    turns when OSD cannot tell (fail closed). The passes are separate Tesseract
    processes run side by side (at most one per CPU); ``timeout_s`` bounds them all.

    Returns:
        (words, stats): each word's ``line`` starts with its pass, so lines of different
        passes never join; ``stats`` counts passes (content-free).
    """
    from concurrent.futures import ThreadPoolExecutor

    deadline = time.monotonic() + timeout_s

    def left():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise OcrError("timeout")
        return remaining

    h, w = pixels.shape[:2]
    # Upscaled within the pixel budget; an image above the budget gets its turned and
    # skewed passes downscaled to it (its small text is then read by the first pass only).
    scale = min(passes.upscale, (passes.max_pixels / max(h * w, 1)) ** 0.5)
    if 1.0 <= scale < 1.5:
        scale = 1.0
    views = [(0.0, scale)] if scale >= 1.5 else []
    views += [(float(a), scale) for a in passes.skew_angles]

    def read(view):
        angle, factor = view
        if view == (0.0, 1.0):  # FIRST_PASS
            found = read_words(pixels, left())
        else:
            found = _read_transformed(pixels, angle, factor, left(), None)
        return [Word(x.text, x.box, (f"{angle:g}@{factor:g}", *x.line[-3:]), x.conf) for x in found]

    def osd():
        if not passes.osd:
            return None
        m, size = _affine(pixels.shape, 0.0, scale)
        upscaled = cv2.warpAffine(pixels, m, size, flags=cv2.INTER_CUBIC) if scale != 1 else pixels
        return osd_rotation(upscaled, left(), passes.osd_min_confidence)

    workers = max(1, min(len(views) + 2, os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        rotation = pool.submit(osd)
        first = [pool.submit(read, v) for v in [(0.0, 1.0), *views]]
        turn = rotation.result()
        # OSD's "Rotate" is clockwise; warpAffine angles are counter-clockwise.
        turns = [90, 270] if turn is None else ([turn] if turn else [])
        second = [pool.submit(read, (-float(t), scale)) for t in turns]
        words = [word for job in (*first, *second) for word in job.result()]
    return words, {"passes": len(first) + len(second), "scale": scale, "turns": len(turns)}


def best_readings(words: list[Word]) -> list[Word]:
    """Drops the lines of extra passes that cover the same text as a line another pass
    read with higher mean confidence (at least half of the line's words overlap a word
    of the other by 30 % of their area): a horizontal sign read again at a 15-degree
    skew gives junk ("Urs dai") that a name detector may take for a name. Lines of the
    first pass (the image as is) are always kept."""
    lines: dict = {}
    for word in words:
        lines.setdefault(word.line, []).append(word)
    conf = {key: float(np.mean([m.conf for m in members])) for key, members in lines.items()}

    def overlaps(a, b) -> bool:
        w = min(a[2], b[2]) - max(a[0], b[0])
        h = min(a[3], b[3]) - max(a[1], b[1])
        area = max((a[2] - a[0]) * (a[3] - a[1]), 1)
        return w > 0 and h > 0 and w * h >= 0.3 * area

    dropped = set()
    for key, members in lines.items():
        if key[0] == FIRST_PASS:
            continue
        for other, others in lines.items():
            if other[0] == key[0] or conf[other] <= conf[key]:
                continue
            shared = sum(any(overlaps(m.box, o.box) for o in others) for m in members)
            if 2 * shared >= len(members):
                dropped.add(key)
                break
    return [w for w in words if w.line not in dropped]


def uncertain_words(words: list[Word], min_confidence: float) -> list[Word]:
    """Words covered without a detection (fail closed per region): low-confidence words
    that may be part of an identifier (a digit or ``@``, three or more characters), and
    identifier-shaped words at any confidence (six or more digits, or an ``@`` inside
    five or more characters) that no detector matched, e.g. a phone number whose area
    code was misread."""

    def shaped(text: str) -> bool:
        digits = sum(c.isdigit() for c in text)
        return digits >= 6 or ("@" in text[1:-1] and len(text) >= 5)

    return [
        w
        for w in words
        if shaped(w.text)
        or (
            w.conf < min_confidence
            and len(w.text) >= 3
            and any(c.isdigit() or c == "@" for c in w.text)
        )
    ]


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
