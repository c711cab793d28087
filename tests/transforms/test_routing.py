"""Modality detection (magic bytes, MIME type, declared) and RouteByModality."""

from __future__ import annotations

import apache_beam as beam
import pytest
from apache_beam.testing.util import assert_that, equal_to
from veil_testing import beam_pipeline, media_record

from veil.transforms.records import AuditStep, Source, WorkItem
from veil.transforms.routing import RouteByModality, detect_modality, sniff_magic

JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01"
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"
GIF = b"GIF89a\x01\x00\x01\x00\x80\x00"
WEBP = b"RIFF\x24\x00\x00\x00WEBPVP8 "
WAV = b"RIFF\x24\x08\x00\x00WAVEfmt "
FLAC = b"fLaC\x00\x00\x00\x22\x10\x00"
OGG = b"OggS\x00\x02\x00\x00\x00\x00"
ID3 = b"ID3\x04\x00\x00\x00\x00\x00\x23TSSE"
MP3_FRAME = b"\xff\xfb\x90\x64\x00\x00\x00\x00"
MP4_ISOM = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00"
M4A = b"\x00\x00\x00\x20ftypM4A \x00\x00\x00\x00"
MKV = b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01"
AVI = b"RIFF\x24\x00\x00\x00AVI LIST"
JSON_OBJECT = b'{"name": "Ada", "age": 36}'
TEXT = b"Call me tomorrow about the invoice.\n"
JUNK = b"\x00\x01\x02\x03\xfe\xfd\xfc\x80\x81"


@pytest.mark.parametrize(
    "payload, expected",
    [
        (JPEG, "image"),
        (PNG, "image"),
        (GIF, "image"),
        (b"GIF87a\x01\x00", "image"),
        (b"II*\x00\x08\x00\x00\x00", "image"),
        (b"BM\x36\x00\x0c\x00\x00\x00\x00\x00\x36\x00\x00\x00", "image"),
        (WEBP, "image"),
        (WAV, "audio"),
        (FLAC, "audio"),
        (OGG, "audio"),
        (ID3, "audio"),
        (MP3_FRAME, "audio"),
        (MP4_ISOM, "video"),
        (M4A, "audio"),
        (MKV, "video"),
        (AVI, "video"),
        (JSON_OBJECT, None),
        (TEXT, None),
        (JUNK, None),
        (b"", None),
    ],
    ids=[
        "jpeg",
        "png",
        "gif89a",
        "gif87a",
        "tiff",
        "bmp",
        "webp",
        "wav",
        "flac",
        "ogg",
        "id3",
        "mp3-frame",
        "mp4-isom",
        "m4a",
        "matroska",
        "avi",
        "json",
        "text",
        "junk",
        "empty",
    ],
)
def test_sniff_magic(payload, expected):
    assert sniff_magic(payload) == expected


@pytest.mark.parametrize(
    "declared, content_type, payload, expected",
    [
        (None, "application/octet-stream", JPEG, ("image", None)),
        (None, "application/octet-stream", PNG, ("image", None)),
        (None, "text/plain", GIF, ("image", None)),
        (None, "", WEBP, ("image", None)),
        (None, "", WAV, ("audio", None)),
        (None, "", FLAC, ("audio", None)),
        (None, "", OGG, ("audio", None)),
        (None, "", ID3, ("audio", None)),
        (None, "", MP4_ISOM, ("video", None)),
        (None, "", M4A, ("audio", None)),
        (None, "", MKV, ("video", None)),
        (None, "", AVI, ("video", None)),
        (None, "application/json", JSON_OBJECT, ("structured", None)),
        (None, "application/json; charset=utf-8", b"not json at all", ("structured", None)),
        (None, "application/ld+json", JSON_OBJECT, ("structured", None)),
        (None, "", JSON_OBJECT, ("structured", None)),
        (None, "application/octet-stream", b"[1, 2, 3]", ("structured", None)),
        (None, "application/octet-stream", b"{not json", ("text", None)),
        (None, "text/plain", TEXT, ("text", None)),
        (None, "", TEXT, ("text", None)),
        (None, "text/plain", JSON_OBJECT, ("text", None)),
        (None, "image/heic", b"\x00\x00\x00\x00heic", ("image", None)),
        (None, "application/octet-stream", JUNK, (None, "UNKNOWN_MODALITY")),
        (None, "", b"\x00\x00\x00\x00", (None, "UNKNOWN_MODALITY")),
        ("TEXT", "", TEXT, ("text", None)),
        (" Text ", "application/octet-stream", TEXT, ("text", None)),
        ("image", "text/plain", JPEG, ("image", None)),
        ("hologram", "text/plain", TEXT, (None, "UNKNOWN_MODALITY")),
        ("text", "text/plain", PNG, (None, "MODALITY_MISMATCH")),
        ("text", "text/plain", WAV, (None, "MODALITY_MISMATCH")),
        ("image", "image/png", MP4_ISOM, (None, "MODALITY_MISMATCH")),
    ],
    ids=[
        "jpeg",
        "png",
        "gif-magic-beats-mime",
        "webp",
        "wav",
        "flac",
        "ogg",
        "id3-mp3",
        "mp4-isom-video",
        "m4a-audio",
        "matroska",
        "avi",
        "json-with-mime",
        "json-mime-wins",
        "json-suffix-mime",
        "json-without-mime",
        "json-array-octet-stream",
        "broken-json-is-text",
        "text-plain",
        "text-without-mime",
        "json-declared-text-mime",
        "media-mime-without-magic",
        "binary-junk",
        "nul-bytes",
        "declared-upper-case",
        "declared-padded",
        "declared-matches-magic",
        "declared-unknown",
        "declared-text-png-magic",
        "declared-text-wav-magic",
        "declared-image-video-magic",
    ],
)
def test_detect_modality(declared, content_type, payload, expected):
    assert detect_modality(declared, content_type, payload) == expected


def _item(record_id, offset, **record):
    item = WorkItem(source=Source("veil.raw", 1, offset), record=media_record(record_id, **record))
    item.trail.append(AuditStep(stage="decode", action="ACCEPTED"))
    return item


def test_route_by_modality_splits_supported_and_dead_letters():
    items = [
        _item("t1", 0, payload=TEXT),
        _item("t2", 1, payload=b"Hi there", modality="TEXT"),
        _item("i1", 2, payload=PNG, content_type="image/png"),
        _item("m1", 3, payload=PNG, modality="text"),
        _item("u1", 4, payload=JUNK, content_type="application/octet-stream"),
        _item("h1", 5, payload=TEXT, modality="hologram"),
    ]
    pipeline = beam_pipeline()
    with pipeline:
        routed = pipeline | beam.Create(items, reshuffle=False) | RouteByModality({"text"})
        assert sorted(routed.branches) == ["text"]
        assert_that(
            routed.branches["text"]
            | "TextView"
            >> beam.Map(
                lambda i: (i.record_id, i.modality, [(s.stage, s.action) for s in i.trail])
            ),
            equal_to(
                [
                    ("t1", "text", [("decode", "ACCEPTED"), ("route", "ROUTED")]),
                    ("t2", "text", [("decode", "ACCEPTED"), ("route", "ROUTED")]),
                ]
            ),
            label="text",
        )
        assert_that(
            routed.dead_letters
            | "DeadView"
            >> beam.Map(
                lambda f: (
                    f.record_id,
                    f.stage,
                    f.error_code,
                    f.modality,
                    f.source.offset,
                    f.error_class,
                    [(s.stage, s.action) for s in f.trail],
                )
            ),
            equal_to(
                [
                    (
                        "i1",
                        "route",
                        "UNSUPPORTED_MODALITY",
                        "image",
                        2,
                        None,
                        [("decode", "ACCEPTED")],
                    ),
                    ("m1", "route", "MODALITY_MISMATCH", None, 3, None, [("decode", "ACCEPTED")]),
                    ("u1", "route", "UNKNOWN_MODALITY", None, 4, None, [("decode", "ACCEPTED")]),
                    ("h1", "route", "UNKNOWN_MODALITY", None, 5, None, [("decode", "ACCEPTED")]),
                ]
            ),
            label="dead_letters",
        )


def test_route_by_modality_one_branch_per_supported_modality():
    items = [
        _item("a1", 0, payload=WAV),
        _item("t1", 1, payload=TEXT),
        _item("v1", 2, payload=MKV),
    ]
    pipeline = beam_pipeline()
    with pipeline:
        routed = pipeline | beam.Create(items, reshuffle=False) | RouteByModality(["audio", "text"])
        assert sorted(routed.branches) == ["audio", "text"]
        assert_that(
            routed.branches["audio"] | "Audio" >> beam.Map(lambda i: i.record_id),
            equal_to(["a1"]),
            label="audio",
        )
        assert_that(
            routed.branches["text"] | "Text" >> beam.Map(lambda i: i.record_id),
            equal_to(["t1"]),
            label="text",
        )
        assert_that(
            routed.dead_letters
            | "Dead" >> beam.Map(lambda f: (f.record_id, f.error_code, f.modality)),
            equal_to([("v1", "UNSUPPORTED_MODALITY", "video")]),
            label="dead_letters",
        )


@pytest.mark.parametrize(
    "declared, payload",
    [(None, b"BMW called about the recall."), ("text", b"BMI 23.4, see notes.")],
    ids=["sniffed", "declared-text"],
)
def test_text_starting_with_bm_is_text(declared, payload):
    assert detect_modality(declared, "text/plain", payload) == ("text", None)
