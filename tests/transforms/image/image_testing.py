"""Shared helpers for the image branch's tests: the real photographs, metadata builders.

The photographs (``astronaut.png``: Eileen Collins, NASA, public domain; ``camera.png``:
the "cameraman") come out of the pinned scikit-image wheel; ``deploy/setup-image.sh``
(``make image-setup``) extracts them into ``$VEIL_CACHE/testdata/image`` and fetches the
face model into ``$VEIL_CACHE/models``, all checked against their sha256.
"""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[3]
os.environ.setdefault("VEIL_CACHE", str(REPO / ".cache"))
PHOTOS = Path(os.environ["VEIL_CACHE"]) / "testdata" / "image"
ASTRONAUT = PHOTOS / "astronaut.png"
CAMERA = PHOTOS / "camera.png"


def require_photos_and_model() -> None:
    from veil.transforms.media.models import ModelError, model_path

    try:
        model_path()
    except ModelError:
        raise AssertionError("face model missing: run `make image-setup`") from None
    if not (ASTRONAUT.is_file() and CAMERA.is_file()):
        raise AssertionError("test photographs missing: run `make image-setup`")


def photo(path: Path) -> np.ndarray:
    return cv2.imread(str(path), cv2.IMREAD_COLOR)


def decode(data: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)


def png(pixels: np.ndarray) -> bytes:
    return cv2.imencode(".png", pixels)[1].tobytes()


def jpeg(pixels: np.ndarray) -> bytes:
    return cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()


SECRET = b"GPS 48.8584N 2.2945E Serial-CAM-0042"


def _exif(orientation: int) -> bytes:
    """A little-endian TIFF block: Orientation, ImageDescription, and a GPS IFD."""
    desc = SECRET + b"\x00"
    entries = 3
    ifd0 = 8
    desc_at = ifd0 + 2 + entries * 12 + 4
    gps_at = desc_at + len(desc)
    body = b"II*\x00" + struct.pack("<I", ifd0) + struct.pack("<H", entries)
    body += struct.pack("<HHII", 0x010E, 2, len(desc), desc_at)  # ImageDescription
    body += struct.pack("<HHIHH", 0x0112, 3, 1, orientation, 0)  # Orientation
    body += struct.pack("<HHII", 0x8825, 4, 1, gps_at)  # GPS IFD pointer
    body += struct.pack("<I", 0) + desc
    body += struct.pack("<H", 1) + struct.pack("<HHI4s", 0x0001, 2, 2, b"N\x00\x00\x00")
    body += struct.pack("<I", 0)
    return b"Exif\x00\x00" + body


def _segment(marker: int, payload: bytes) -> bytes:
    return bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload


def jpeg_with_metadata(pixels: np.ndarray, orientation: int = 1) -> bytes:
    """A JPEG carrying EXIF (with GPS and orientation), XMP, an ICC profile, IPTC and a
    comment, every one holding ``SECRET``."""
    plain = jpeg(pixels)
    segments = (
        _segment(0xE1, _exif(orientation))
        + _segment(0xE1, b"http://ns.adobe.com/xap/1.0/\x00<x:xmpmeta>" + SECRET + b"</x:xmpmeta>")
        + _segment(0xE2, b"ICC_PROFILE\x00\x01\x01" + SECRET)
        + _segment(0xED, b"Photoshop 3.0\x008BIM" + SECRET)
        + _segment(0xFE, SECRET)
    )
    return plain[:2] + segments + plain[2:]


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_with_metadata(pixels: np.ndarray) -> bytes:
    """A PNG with tEXt, iTXt, eXIf and iCCP chunks holding ``SECRET``."""
    plain = png(pixels)
    extra = (
        _chunk(b"tEXt", b"Comment\x00" + SECRET)
        + _chunk(b"iTXt", b"XML:com.adobe.xmp\x00\x00\x00\x00\x00" + SECRET)
        + _chunk(b"eXIf", _exif(1)[6:])
        + _chunk(b"iCCP", b"icc\x00\x00" + zlib.compress(SECRET))
    )
    return plain[:33] + extra + plain[33:]  # after the signature and IHDR


def png_header(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` x ``height`` and holds a few bytes of data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return (
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")
    )


def markers(data: bytes) -> list[int]:
    """The JPEG segment markers before the scan."""
    found, pos = [], 2
    while pos + 4 <= len(data) and data[pos] == 0xFF:
        marker = data[pos + 1]
        found.append(marker)
        if marker == 0xDA:
            break
        pos += 2 + struct.unpack(">H", data[pos + 2 : pos + 4])[0]
    return found


def png_chunks(data: bytes) -> list[bytes]:
    kinds, pos = [], 8
    while pos + 8 <= len(data):
        length = struct.unpack(">I", data[pos : pos + 4])[0]
        kinds.append(data[pos + 4 : pos + 8])
        pos += 12 + length
    return kinds
