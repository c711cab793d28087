"""Writes Veil's hostile-input corpus (this folder) and its ``manifest.json``.

Every file is built here from constants, so the bytes are reproducible:
``python tests/data/hostile/make_corpus.py`` rewrites them and
``tests/hostile/test_hostile_corpus.py`` checks that the committed files match. Each
manifest entry names the file, the entry point it attacks and the dead-letter code
Veil must give it:

* ``framing``: the raw Kafka value (Confluent framing + Avro ``MediaRecord``);
* ``json``, ``image``, ``audio``, ``video``: the payload of a well-formed ``MediaRecord`` whose
  ``content_type`` is given and whose modality is declared (``structured``, ``image``,
  ``audio``, ``video``).

``graph_expect`` is the code through the whole graph, where routing runs first and
refuses a payload whose magic bytes contradict the declared modality.

Nothing here needs a library beyond the standard one (zlib, struct, json), so the corpus
does not change when OpenCV or FFmpeg do.
"""

from __future__ import annotations

import hashlib
import json
import struct
import sys
import zlib
from pathlib import Path

HERE = Path(__file__).resolve().parent
MEDIA_RECORD_ID = 1  # schemas/catalog.json: MediaRecord v1 (the writer schema)
AUDIT_EVENT_ID = 3


def zigzag(n: int) -> bytes:
    """An Avro long (zig-zag varint); no range check, so lengths can lie."""
    n = (n << 1) ^ (n >> 63) if n < 0 else n << 1
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def avro_string(value: bytes) -> bytes:
    return zigzag(len(value)) + value


def media_body(record_id=b"h1", subject=b"mallory", payload=b"hello", attributes=b"\x00") -> bytes:
    """A MediaRecord body field by field, so each field can be forged."""
    return (
        avro_string(record_id)
        + avro_string(subject)
        + zigzag(0)  # modality: null
        + avro_string(b"text/plain")
        + avro_string(payload)
        + attributes
        + zigzag(0)  # event_time: null
    )


def framed(body: bytes, schema_id: int = MEDIA_RECORD_ID, magic: int = 0) -> bytes:
    return struct.pack(">bI", magic, schema_id) + body


# --- images --------------------------------------------------------------------------


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png(width: int, height: int, idat: bytes, color_type: int = 2) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", idat)
        + png_chunk(b"IEND", b"")
    )


def png_rows(width: int, height: int) -> bytes:
    """A genuine grey RGB image's IDAT (filter byte 0 per row)."""
    row = b"\x00" + bytes([128]) * (3 * width)
    return zlib.compress(row * height, 9)


def zeros_deflate(size: int) -> bytes:
    """``size`` zero bytes, deflated: about 1000:1."""
    packer = zlib.compressobj(9)
    block = b"\x00" * (1 << 20)
    out = [packer.compress(block) for _ in range(size >> 20)]
    out.append(packer.compress(b"\x00" * (size & ((1 << 20) - 1))))
    out.append(packer.flush())
    return b"".join(out)


def jpeg_sof(width: int, height: int) -> bytes:
    sof = struct.pack(">BHHB", 8, height, width, 3) + b"\x01\x11\x00\x02\x11\x00\x03\x11\x00"
    return (
        b"\xff\xd8"
        + b"\xff\xc0"
        + struct.pack(">H", 2 + len(sof))
        + sof
        + b"\xff\xda\x00\x0c\x03\x01\x00\x02\x11\x03\x11\x00\x3f\x00"
        + b"\x00" * 64
        + b"\xff\xd9"
    )


def gif(width: int, height: int) -> bytes:
    return (
        b"GIF89a"
        + struct.pack("<HHBBB", width, height, 0x80, 0, 0)
        + b"\x00\x00\x00\xff\xff\xff"
        + b",\x00\x00\x00\x00"
        + struct.pack("<HH", width, height)
        + b"\x00\x02\x02\x44\x01\x00;"
    )


def tiff(width: int, height: int, ifd_offset: int = 8, strip: bytes = b"\x00" * 16) -> bytes:
    entries = [
        (256, 4, 1, width),
        (257, 4, 1, height),
        (258, 3, 1, 8),
        (259, 3, 1, 1),
        (262, 3, 1, 1),
        (273, 4, 1, 8 + 2 + 12 * 7 + 4),
        (279, 4, 1, len(strip)),
    ]
    ifd = struct.pack("<H", len(entries))
    for tag, kind, count, value in entries:
        ifd += struct.pack("<HHII", tag, kind, count, value)
    return b"II*\x00" + struct.pack("<I", ifd_offset) + ifd + b"\x00\x00\x00\x00" + strip


def webp_vp8x(width: int, height: int) -> bytes:
    body = b"VP8X" + struct.pack("<I", 10) + b"\x00\x00\x00\x00"
    body += (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    return b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WEBP" + body


def bmp(width: int, height: int, pixels: bytes = b"") -> bytes:
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, len(pixels), 2835, 2835, 0, 0)
    head = b"BM" + struct.pack("<IHHI", 14 + len(info) + len(pixels), 0, 0, 14 + len(info))
    return head + info + pixels


# --- audio ---------------------------------------------------------------------------


def wav(rate=16000, channels=1, bits=16, data=b"\x00\x00" * 1600, data_size=None, fmt_tag=1):
    block = channels * bits // 8
    fmt = struct.pack(
        "<HHIIHH", fmt_tag, channels, rate, (rate * block) & 0xFFFFFFFF, block & 0xFFFF, bits
    )
    size = len(data) if data_size is None else data_size
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"data" + struct.pack("<I", size) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


def flac_streaminfo(rate: int, channels: int, total_samples: int) -> bytes:
    """A FLAC stream: STREAMINFO claiming ``total_samples``, then no frames."""
    packed = (rate << 44) | ((channels - 1) << 41) | ((16 - 1) << 36) | total_samples
    info = struct.pack(">HH", 4096, 4096) + b"\x00\x00\x00" + b"\x00\x00\x00"
    info += packed.to_bytes(8, "big") + b"\x00" * 16
    return b"fLaC" + b"\x80" + len(info).to_bytes(3, "big") + info


def ogg_page(payload: bytes, serial=1, seq=0, flags=2) -> bytes:
    segments = []
    left = len(payload)
    while left >= 255:
        segments.append(255)
        left -= 255
    segments.append(left)
    head = b"OggS\x00" + bytes([flags]) + struct.pack("<qIII", 0, serial, seq, 0)
    return head + bytes([len(segments)]) + bytes(segments) + payload


def ebml_huge() -> bytes:
    """An EBML header whose element size claims 2**56 - 2 bytes."""
    return b"\x1a\x45\xdf\xa3" + b"\x01\xff\xff\xff\xff\xff\xff\xfe" + b"\x42\x86\x81\x01" * 8


def mp4_huge_atoms() -> bytes:
    ftyp = b"\x00\x00\x00\x18ftypM4A \x00\x00\x00\x00M4A mp42"
    moov = struct.pack(">I", 1) + b"moov" + struct.pack(">Q", (1 << 63) - 1) + b"\x00" * 32
    return ftyp + moov


def id3_huge() -> bytes:
    # ID3v2 with a tag size of 2**28 - 1 (sync-safe), then a few MPEG frame headers.
    return b"ID3\x04\x00\x00\x7f\x7f\x7f\x7f" + b"\xff\xfb\x90\x64" + b"\x00" * 60


# --- video ---------------------------------------------------------------------------


def riff_chunk(tag: bytes, data: bytes) -> bytes:
    return tag + struct.pack("<I", len(data)) + data + (b"\x00" if len(data) & 1 else b"")


def riff_list(kind: bytes, data: bytes) -> bytes:
    return b"LIST" + struct.pack("<I", 4 + len(data)) + kind + data


def avi(width: int, height: int, frames: int = 10, codec: bytes = b"FMP4") -> bytes:
    """An AVI header (avih, strh, strf) with one garbage video chunk."""
    avih = struct.pack("<IIIIIIIIII", 100000, 0, 0, 0x10, frames, 0, 1, 0, width, height)
    strh = (
        b"vids"
        + codec
        + struct.pack(
            "<IHHIIIIIIIIHHHH",
            0,
            0,
            0,
            0,
            1,
            10,
            0,
            frames,
            0,
            0xFFFFFFFF,
            0,
            0,
            0,
            width & 0xFFFF,
            height & 0xFFFF,
        )
    )
    size = (width * height * 3) & 0xFFFFFFFF
    strf = struct.pack("<IiiHH4sIiiII", 40, width, height, 1, 24, codec, size, 0, 0, 0, 0)
    hdrl = riff_list(
        b"hdrl",
        riff_chunk(b"avih", avih + b"\x00" * 16)
        + riff_list(b"strl", riff_chunk(b"strh", strh) + riff_chunk(b"strf", strf)),
    )
    body = b"AVI " + hdrl + riff_list(b"movi", riff_chunk(b"00dc", b"\x00" * 64))
    return b"RIFF" + struct.pack("<I", len(body)) + body


FTYP_ISOM = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2"


# --- the corpus ----------------------------------------------------------------------


def cases() -> list[tuple[str, str, str, str, bytes]]:
    """``(file, kind, content_type, expected code, bytes)`` for every hostile input."""
    good_png = png(8, 8, png_rows(8, 8))
    good_wav = wav()
    nested = 50_000
    # A table, one case per line:
    # fmt: off
    out = [
        # Confluent framing and Avro.
        ("frame-empty.bin", "framing", "", "BAD_FRAMING", b""),
        ("frame-short.bin", "framing", "", "BAD_FRAMING", b"\x00\x00\x00"),
        ("frame-bad-magic.bin", "framing", "", "BAD_FRAMING", framed(media_body(), magic=7)),
        (
            "frame-huge-schema-id.bin",
            "framing",
            "",
            "UNKNOWN_SCHEMA_ID",
            framed(media_body(), schema_id=0xFFFFFFFF),
        ),
        (
            "frame-wrong-schema.bin",
            "framing",
            "",
            "UNEXPECTED_SCHEMA",
            framed(media_body(), schema_id=AUDIT_EVENT_ID),
        ),
        (
            "avro-string-length-2e62.bin",
            "framing",
            "",
            "AVRO_DECODE_ERROR",
            framed(zigzag(1 << 62) + b"h1"),
        ),
        (
            "avro-negative-length.bin",
            "framing",
            "",
            "AVRO_DECODE_ERROR",
            framed(zigzag(-9) + b"h1"),
        ),
        (
            "avro-bytes-length-4g.bin",
            "framing",
            "",
            "AVRO_DECODE_ERROR",
            framed(
                avro_string(b"h1")
                + avro_string(b"mallory")
                + zigzag(0)
                + avro_string(b"text/plain")
                + zigzag(4 << 30)
                + b"x" * 64
            ),
        ),
        (
            "avro-map-count-2e62.bin",
            "framing",
            "",
            "AVRO_DECODE_ERROR",
            framed(media_body(attributes=zigzag(1 << 62) + b"\x00\x00" * 32)),
        ),
        (
            "avro-map-negative-block.bin",
            "framing",
            "",
            "AVRO_DECODE_ERROR",
            framed(media_body(attributes=zigzag(-(1 << 62)) + zigzag(1 << 62) + b"\x00" * 32)),
        ),
        (
            "avro-union-index.bin",
            "framing",
            "",
            "AVRO_DECODE_ERROR",
            framed(avro_string(b"h1") + avro_string(b"mallory") + zigzag(9)),
        ),
        ("avro-overlong-varint.bin", "framing", "", "AVRO_DECODE_ERROR", framed(b"\xff" * 32)),
        ("avro-bad-utf8.bin", "framing", "", "AVRO_DECODE_ERROR", framed(media_body(b"\xff\xfe"))),
        ("avro-truncated.bin", "framing", "", "AVRO_DECODE_ERROR", framed(media_body())[:-6]),
        ("avro-trailing.bin", "framing", "", "AVRO_DECODE_ERROR", framed(media_body()) + b"\x00"),
        ("avro-empty-id.bin", "framing", "", "INVALID_RECORD", framed(media_body(b""))),
        ("avro-long-id.bin", "framing", "", "INVALID_RECORD", framed(media_body(b"i" * 5000))),
        ("avro-empty-payload.bin", "framing", "", "EMPTY_PAYLOAD", framed(media_body(payload=b""))),
        # JSON, zip-bomb-like and otherwise.
        ("json-deep-arrays.json", "json", "application/json", "STRUCTURED_DECODE_ERROR",
         b"[" * nested + b"]" * nested),
        ("json-deep-objects.json", "json", "application/json", "STRUCTURED_DECODE_ERROR",
         b'{"a":' * nested + b"1" + b"}" * nested),
        ("json-depth-past-policy.json", "json", "application/json", "STRUCTURED_DECODE_ERROR",
         b"[" * 100 + b"]" * 100),
        ("json-huge-integer.json", "json", "application/json", "STRUCTURED_DECODE_ERROR",
         b'{"n": ' + b"9" * 100_000 + b"}"),
        ("json-float-overflow.json", "json", "application/json", "STRUCTURED_DECODE_ERROR",
         b'{"n": 1e999999}'),
        ("json-nan.json", "json", "application/json", "STRUCTURED_DECODE_ERROR",
         b'{"n": NaN, "m": -Infinity}'),
        ("json-long-string.json", "json", "application/json", "PAYLOAD_TOO_LARGE",
         b'{"s": "' + b"A" * 900_000 + b'"}'),
        ("json-many-keys.json", "json", "application/json", "PAYLOAD_TOO_LARGE",
         b"{" + b",".join(b'"k%d":0' % i for i in range(120_000)) + b"}"),
        ("json-bad-utf8.json", "json", "application/json", "STRUCTURED_DECODE_ERROR",
         b'{"s": "\xff\xfe"}'),
        ("json-truncated.json", "json", "application/json", "STRUCTURED_DECODE_ERROR",
         b'{"patient": {"name": "Ja'),
        ("json-lone-surrogate.json", "json", "application/json", "STRUCTURED_DECODE_ERROR",
         b'{"s": "\\ud800"}'),
        ("ndjson-one-bad-line.ndjson", "json", "application/x-ndjson", "STRUCTURED_DECODE_ERROR",
         b'{"a": 1}\n{"b": \n{"c": 3}\n'),
        # Images: bombs are refused from the header, before a pixel is decoded.
        ("png-100k-square.png", "image", "image/png", "IMAGE_TOO_LARGE",
         png(100_000, 100_000, zeros_deflate(1 << 16))),
        ("png-deflate-bomb-49mpx.png", "image", "image/png", "IMAGE_TOO_LARGE",
         png(7000, 7000, zeros_deflate(7000 * (1 + 3 * 7000)))),
        ("png-zero-width.png", "image", "image/png", "IMAGE_DECODE_ERROR", png(0, 16, png_rows(1, 16))),
        ("png-no-ihdr.png", "image", "image/png", "IMAGE_DECODE_ERROR", b"\x89PNG\r\n\x1a\n" + b"\x00" * 32),
        ("png-truncated.png", "image", "image/png", "IMAGE_DECODE_ERROR", good_png[: len(good_png) // 2]),
        ("png-bad-zlib.png", "image", "image/png", "IMAGE_DECODE_ERROR", png(8, 8, b"\x78\x9c" + b"\xff" * 40)),
        ("jpeg-sof-65535.jpg", "image", "image/jpeg", "IMAGE_TOO_LARGE", jpeg_sof(65535, 65535)),
        ("jpeg-sof-zero.jpg", "image", "image/jpeg", "IMAGE_DECODE_ERROR", jpeg_sof(0, 0)),
        ("jpeg-no-sof.jpg", "image", "image/jpeg", "IMAGE_DECODE_ERROR", b"\xff\xd8\xff\xd9" + b"\x00" * 8),
        ("jpeg-garbage-scan.jpg", "image", "image/jpeg", "IMAGE_DECODE_ERROR", jpeg_sof(64, 64)),
        ("gif-65535.gif", "image", "image/gif", "IMAGE_TOO_LARGE", gif(65535, 65535)),
        ("tiff-100k.tif", "image", "image/tiff", "IMAGE_TOO_LARGE", tiff(100_000, 100_000)),
        ("tiff-ifd-past-end.tif", "image", "image/tiff", "IMAGE_DECODE_ERROR", tiff(8, 8, ifd_offset=1 << 30)),
        ("webp-vp8x-16m.webp", "image", "image/webp", "IMAGE_TOO_LARGE", webp_vp8x(1 << 24, 1 << 24)),
        ("bmp-int-min-height.bmp", "image", "image/bmp", "IMAGE_TOO_LARGE", bmp(64, -(1 << 31))),
        ("bmp-no-pixels.bmp", "image", "image/bmp", "IMAGE_DECODE_ERROR", bmp(64, 64)),
        ("ppm-not-allowed.ppm", "image", "image/x-portable-pixmap", "IMAGE_FORMAT_UNSUPPORTED",
         b"P6\n4 4\n255\n" + b"\x00" * 48),
        ("svg-not-allowed.svg", "image", "image/svg+xml", "IMAGE_FORMAT_UNSUPPORTED",
         b'<svg xmlns="http://www.w3.org/2000/svg" width="99999999" height="99999999"/>'),
        # Wrong types: the payload is not what the record says.
        ("wrong-wav-as-png.png", "image", "image/png", "IMAGE_FORMAT_UNSUPPORTED", good_wav),
        ("wrong-png-as-wav.wav", "audio", "audio/wav", "AUDIO_FORMAT_UNSUPPORTED", good_png),
        ("wrong-png-as-json.json", "json", "application/json", "STRUCTURED_DECODE_ERROR", good_png),
        # Video containers (the video branch's VideoReader).
        ("avi-claims-2e31-frames.avi", "video", "video/x-msvideo", "VIDEO_TOO_LARGE",
         avi(64, 48, frames=0x7FFFFFFF)),
        ("avi-65535-square.avi", "video", "video/x-msvideo", "VIDEO_CORRUPT", avi(65535, 65535)),
        ("mp4-moov-2e63.mp4", "video", "video/mp4", "VIDEO_UNSUPPORTED_FORMAT",
         FTYP_ISOM + struct.pack(">I", 1) + b"moov" + struct.pack(">Q", (1 << 63) - 1) + b"\x00" * 32),
        ("mp4-ftyp-only.mp4", "video", "video/mp4", "VIDEO_CORRUPT", FTYP_ISOM),
        ("mkv-ebml-2e56.mkv", "video", "video/x-matroska", "VIDEO_CORRUPT", ebml_huge()),
        # Audio: lying headers, giant declared lengths, truncation.
        ("wav-data-4gb.wav", "audio", "audio/wav", "AUDIO_DECODE_ERROR", wav(data_size=0xFFFFFFF0)),
        ("wav-rate-4ghz.wav", "audio", "audio/wav", "AUDIO_FORMAT_UNSUPPORTED", wav(rate=4_000_000_000 // 2)),
        ("wav-65534-channels.wav", "audio", "audio/wav", "AUDIO_DECODE_ERROR",
         wav(channels=65534, data=b"\x00" * 65534 * 2)),
        ("wav-8-channels.wav", "audio", "audio/wav", "AUDIO_FORMAT_UNSUPPORTED",
         wav(channels=8, data=b"\x00" * 16 * 800)),
        ("wav-301s-length-unknown.wav", "audio", "audio/wav", "AUDIO_TOO_LONG",
         wav(rate=8000, data=b"\x00\x00" * 8000 * 301, data_size=0xFFFFFFFF)),
        ("wav-zero-channels.wav", "audio", "audio/wav", "AUDIO_DECODE_ERROR", wav(channels=0)),
        ("wav-no-frames.wav", "audio", "audio/wav", "AUDIO_DECODE_ERROR", wav(data=b"")),
        ("wav-truncated.wav", "audio", "audio/wav", "AUDIO_DECODE_ERROR", good_wav[: len(good_wav) // 2]),
        ("wav-unknown-codec.wav", "audio", "audio/wav", "AUDIO_DECODE_ERROR", wav(fmt_tag=0x7777)),
        ("flac-claims-2e36-samples.flac", "audio", "audio/flac", "AUDIO_TOO_LONG",
         flac_streaminfo(8000, 1, (1 << 36) - 1)),
        ("flac-no-frames.flac", "audio", "audio/flac", "AUDIO_DECODE_ERROR", flac_streaminfo(16000, 1, 16000)),
        ("flac-magic-only.flac", "audio", "audio/flac", "AUDIO_DECODE_ERROR", b"fLaC"),
        ("ogg-garbage-page.ogg", "audio", "audio/ogg", "AUDIO_DECODE_ERROR", ogg_page(b"\x01vorbis" + b"\xff" * 400)),
        ("mp3-id3-256mb.mp3", "audio", "audio/mpeg", "AUDIO_DECODE_ERROR", id3_huge()),
        ("m4a-atom-2e63.m4a", "audio", "audio/mp4", "AUDIO_DECODE_ERROR", mp4_huge_atoms()),
        ("mka-ebml-2e56.mka", "audio", "audio/x-matroska", "AUDIO_DECODE_ERROR", ebml_huge()),
    ]
    # fmt: on
    return out


MODALITY = {
    "json": "structured",
    "image": "image",
    "audio": "audio",
    "video": "video",
    "framing": None,
}
# Routing sees these first: the magic bytes contradict the declared modality.
GRAPH_EXPECT = {
    "wrong-wav-as-png.png": "MODALITY_MISMATCH",
    "wrong-png-as-wav.wav": "MODALITY_MISMATCH",
    "wrong-png-as-json.json": "MODALITY_MISMATCH",
    "mka-ebml-2e56.mka": "MODALITY_MISMATCH",  # Matroska's magic says video
}


def write(folder: Path = HERE) -> list[dict]:
    """Writes the files and ``manifest.json`` into ``folder``; returns the manifest."""
    manifest = []
    for name, kind, content_type, code, data in cases():
        (folder / name).write_bytes(data)
        manifest.append(
            {
                "file": name,
                "kind": kind,
                "content_type": content_type,
                "modality": MODALITY[kind],
                "expect": code,
                "graph_expect": GRAPH_EXPECT.get(name, code),
                "bytes": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
            }
        )
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


if __name__ == "__main__":
    written = write(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE)
    print(f"{len(written)} files, {sum(e['bytes'] for e in written)} bytes")
