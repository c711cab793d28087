"""Routing by modality: declared by the producer, or sniffed from magic bytes and MIME type.

A declared modality that contradicts the payload's magic bytes is a dead letter
(``MODALITY_MISMATCH``), not a guess: a hostile producer must not steer an image past
face anonymization by calling it text.

Example::

    routed = records | RouteByModality(supported={"text"})
    routed.branches["text"]   # WorkItems with item.modality == "text"
    routed.dead_letters       # UNKNOWN_MODALITY, UNSUPPORTED_MODALITY, MODALITY_MISMATCH
"""

from __future__ import annotations

import json
from typing import NamedTuple

import apache_beam as beam
from apache_beam import pvalue
from apache_beam.metrics import Metrics

from veil.transforms.records import AuditStep, ErrorCode, Failure, Modality, WorkItem

DEAD_LETTER = "dead_letter"
STAGE = "route"


def sniff_magic(payload: bytes) -> str | None:
    """The modality that a payload's leading bytes prove, or None."""
    head = payload[:16]
    if head.startswith(b"\xff\xd8\xff") or head.startswith(b"\x89PNG\r\n\x1a\n"):
        return Modality.IMAGE
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return Modality.IMAGE
    if head[:2] == b"BM" and len(head) >= 14 and head[6:10] == b"\x00\x00\x00\x00":
        return Modality.IMAGE  # BMP: "BM", file size, then four reserved zero bytes
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return Modality.IMAGE
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return Modality.IMAGE
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return Modality.AUDIO
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return Modality.VIDEO
    if head[:4] in (b"fLaC", b"OggS") or head[:3] == b"ID3":
        return Modality.AUDIO
    if head[:2] in (b"\xff\xfe", b"\xfe\xff"):
        # UTF-16 text with a byte-order mark (FF FE also reads as an MPEG Layer I frame
        # sync, which no encoder in use writes): text, never audio.
        return Modality.TEXT
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0 and head[1] & 0x06:
        return Modality.AUDIO  # MPEG audio frame sync with a layer set
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return Modality.VIDEO  # Matroska / WebM
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        return Modality.AUDIO if brand in (b"M4A ", b"M4B ", b"M4P ") else Modality.VIDEO
    return None


def _mime_modality(content_type: str) -> str | None:
    mime = (content_type or "").split(";", 1)[0].strip().lower()
    if mime in ("application/json", "application/x-ndjson") or mime.endswith("+json"):
        return Modality.STRUCTURED
    if mime.startswith("text/"):
        return Modality.TEXT
    for prefix, modality in (
        ("image/", Modality.IMAGE),
        ("audio/", Modality.AUDIO),
        ("video/", Modality.VIDEO),
    ):
        if mime.startswith(prefix):
            return modality
    return None


def _looks_like_text(payload: bytes) -> bool:
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return not any(ord(c) < 32 and c not in "\t\n\r\f" for c in text[:4096])


def _looks_like_json(payload: bytes) -> bool:
    stripped = payload.lstrip()[:1]
    if stripped not in (b"{", b"["):
        return False
    try:
        json.loads(payload)
    except (ValueError, RecursionError):
        return False
    return True


def detect_modality(declared: str | None, content_type: str, payload: bytes) -> tuple[str | None, str | None]:
    """Returns ``(modality, error_code)``; exactly one of them is None."""
    magic = sniff_magic(payload)
    if declared is not None:
        declared = declared.strip().lower()
        if declared not in Modality.ALL:
            return None, ErrorCode.UNKNOWN_MODALITY
        if magic is not None and magic != declared:
            return None, ErrorCode.MODALITY_MISMATCH
        return declared, None
    if magic is not None:
        return magic, None
    by_mime = _mime_modality(content_type)
    if by_mime in (Modality.IMAGE, Modality.AUDIO, Modality.VIDEO):
        # Media by MIME type but no known signature: the media branch decides.
        return by_mime, None
    if by_mime == Modality.STRUCTURED or (by_mime is None and _looks_like_json(payload)):
        return Modality.STRUCTURED, None
    if by_mime == Modality.TEXT or _looks_like_text(payload):
        return Modality.TEXT, None
    return None, ErrorCode.UNKNOWN_MODALITY


class RouteFn(beam.DoFn):
    def __init__(self, supported: frozenset):
        self._supported = supported

    def process(self, item: WorkItem):
        record = item.record
        modality, error = detect_modality(
            record.get("modality"), record.get("content_type", ""), record["payload"]
        )
        if error is not None:
            Metrics.counter("veil.route", f"dead_letter_{error}").inc()
            yield pvalue.TaggedOutput(DEAD_LETTER, Failure.of(item, STAGE, error))
            return
        item.modality = modality
        Metrics.counter("veil.route", f"records_{modality}").inc()
        if modality not in self._supported:
            Metrics.counter("veil.route", f"dead_letter_{ErrorCode.UNSUPPORTED_MODALITY}").inc()
            yield pvalue.TaggedOutput(
                DEAD_LETTER, Failure.of(item, STAGE, ErrorCode.UNSUPPORTED_MODALITY)
            )
            return
        item.trail.append(AuditStep(stage=STAGE, action="ROUTED"))
        yield pvalue.TaggedOutput(modality, item)


class Routed(NamedTuple):
    branches: dict
    dead_letters: beam.PCollection


class RouteByModality(beam.PTransform):
    """Splits ``WorkItem``s into one branch per supported modality plus dead letters."""

    def __init__(self, supported):
        super().__init__()
        self._supported = frozenset(supported)

    def expand(self, items):
        tags = sorted(self._supported)
        out = items | "SniffAndRoute" >> beam.ParDo(RouteFn(self._supported)).with_outputs(
            DEAD_LETTER, *tags
        )
        return Routed({tag: out[tag] for tag in tags}, out[DEAD_LETTER])
