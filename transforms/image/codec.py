"""Images in and out: header checks before decoding, bounded decoding, metadata-free
re-encoding.

* Formats are allow-listed by magic bytes (JPEG, PNG, GIF, BMP, TIFF, WebP; see
  ``FORMATS``); anything else is ``IMAGE_FORMAT_UNSUPPORTED``.
* Width and height are read from the header (JPEG SOF, PNG IHDR, GIF screen, BMP
  info header, WebP VP8/VP8L/VP8X, TIFF IFD0) and checked against ``ImageLimits``
  before a single pixel is decoded, so a decompression bomb costs a few bytes of
  parsing. A header that cannot be read is ``IMAGE_DECODE_ERROR``; one that declares
  too many pixels is ``IMAGE_TOO_LARGE``. The decoded size is checked again (a header
  that lies is ``IMAGE_DECODE_ERROR``).
* OpenCV decodes (8-bit, 3-channel BGR; alpha is dropped, multi-frame GIF and TIFF
  keep their first frame) and applies the EXIF orientation to the pixels.
* Output is re-encoded from the pixels alone, so no EXIF, GPS, XMP, IPTC, ICC profile,
  comment or maker note survives: JPEG stays JPEG (quality ``jpeg_quality``), every
  other format becomes PNG.

Example::

    image = decode_image(payload, ImageLimits(max_pixels=40_000_000))
    data, content_type = encode_image(image.pixels, image.format)
"""

from __future__ import annotations

import dataclasses
import os
import struct

# A backstop under the header checks: OpenCV's own decoder limit (read once, at the
# first decode in the process) lowered from 2**30 pixels.
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(1 << 28))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from veil.transforms.records import ErrorCode, PrivacyError  # noqa: E402
from veil.transforms.sandbox import SandboxError, run_isolated  # noqa: E402

FORMATS = ("jpeg", "png", "gif", "bmp", "tiff", "webp")
CONTENT_TYPES = {"jpeg": "image/jpeg", "png": "image/png"}


class ImageError(PrivacyError):
    """A content-free image failure with a stable dead-letter code (``.code``)."""


@dataclasses.dataclass(frozen=True)
class ImageLimits:
    """What the image branch accepts; anything else is dead-lettered before decoding."""

    max_pixels: int = 40_000_000
    max_side: int = 16384
    formats: tuple = FORMATS

    def __post_init__(self):
        if self.max_pixels <= 0 or self.max_side <= 0:
            raise ValueError("image limits must be positive")
        if not set(self.formats) <= set(FORMATS):
            raise ValueError(f"image formats must be among {FORMATS}")


@dataclasses.dataclass
class Image:
    """Decoded pixels (uint8 BGR, rows x columns x 3) and the input format."""

    pixels: np.ndarray
    format: str


def sniff_format(payload: bytes) -> str | None:
    head = payload[:16]
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if head[:2] == b"BM":
        return "bmp"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    return None


def _jpeg_size(data: bytes) -> tuple[int, int]:
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            raise ValueError("marker")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            pos += 2
            continue
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        if length < 2:
            raise ValueError("segment")
        if marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF):
            height, width = struct.unpack(">HH", data[pos + 5 : pos + 9])
            return width, height
        if marker in (0xD9, 0xDA):  # end of image or scan before any frame header
            break
        pos += 2 + length
    raise ValueError("no frame header")


def _tiff_size(data: bytes) -> tuple[int, int]:
    order = "<" if data[:2] == b"II" else ">"
    (ifd,) = struct.unpack(order + "I", data[4:8])
    (count,) = struct.unpack(order + "H", data[ifd : ifd + 2])
    size = {}
    for i in range(min(count, 512)):
        entry = data[ifd + 2 + 12 * i : ifd + 14 + 12 * i]
        tag, kind = struct.unpack(order + "HH", entry[:4])
        if tag in (256, 257):
            fmt = order + ("H" if kind == 3 else "I")
            size[tag] = struct.unpack(fmt, entry[8 : 8 + struct.calcsize(fmt)])[0]
    return size[256], size[257]


def _webp_size(data: bytes) -> tuple[int, int]:
    chunk = data[12:16]
    if chunk == b"VP8X":
        width = 1 + int.from_bytes(data[24:27], "little")
        height = 1 + int.from_bytes(data[27:30], "little")
        return width, height
    if chunk == b"VP8L":
        bits = int.from_bytes(data[21:25], "little")
        return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
    if chunk == b"VP8 ":
        width, height = struct.unpack("<HH", data[26:30])
        return width & 0x3FFF, height & 0x3FFF
    raise ValueError("webp chunk")


def header_size(payload: bytes, fmt: str) -> tuple[int, int]:
    """``(width, height)`` from the header alone; raises ``ValueError`` or
    ``struct.error``/``KeyError`` when it cannot be read."""
    if fmt == "jpeg":
        return _jpeg_size(payload)
    if fmt == "png":
        if payload[12:16] != b"IHDR":
            raise ValueError("IHDR")
        return struct.unpack(">II", payload[16:24])
    if fmt == "gif":
        return struct.unpack("<HH", payload[6:10])
    if fmt == "bmp":
        width, height = struct.unpack("<ii", payload[18:26])
        return abs(width), abs(height)
    if fmt == "tiff":
        return _tiff_size(payload)
    return _webp_size(payload)


def check_header(payload: bytes, limits: ImageLimits) -> tuple[str, int, int]:
    """The format, width and height, checked against ``limits`` before decoding."""
    fmt = sniff_format(payload)
    if fmt is None or fmt not in limits.formats:
        raise ImageError(ErrorCode.IMAGE_FORMAT_UNSUPPORTED)
    try:
        width, height = header_size(payload, fmt)
    except (ValueError, KeyError, IndexError, struct.error):
        raise ImageError(ErrorCode.IMAGE_DECODE_ERROR) from None
    if width <= 0 or height <= 0:
        raise ImageError(ErrorCode.IMAGE_DECODE_ERROR)
    if width > limits.max_side or height > limits.max_side or width * height > limits.max_pixels:
        raise ImageError(ErrorCode.IMAGE_TOO_LARGE)
    return fmt, width, height


def _cv_decode(payload: bytes) -> np.ndarray | None:
    """OpenCV's decoder, the part that runs in a sandbox worker when isolation is on."""
    try:
        return cv2.imdecode(np.frombuffer(payload, dtype=np.uint8), cv2.IMREAD_COLOR)
    except cv2.error:
        return None


def decode_image(payload: bytes, limits: ImageLimits = ImageLimits(), sandbox=None) -> Image:
    """Header checks, then decoding with the EXIF orientation applied to the pixels.

    With a ``veil.transforms.sandbox.Sandbox``, OpenCV runs in its worker process (a
    crash, hang or memory blow-up there is ``DECODER_*``); the header checks stay here.
    """
    fmt, width, height = check_header(payload, limits)
    try:
        pixels = run_isolated(sandbox, _cv_decode, payload)
    except SandboxError as exc:
        raise ImageError(exc.code) from None
    if not isinstance(pixels, np.ndarray) or pixels.dtype != np.uint8:
        pixels = None
    if pixels is None or pixels.ndim != 3 or pixels.shape[2] != 3:
        raise ImageError(ErrorCode.IMAGE_DECODE_ERROR)
    # Orientation may swap the sides; anything else means the header lied.
    if sorted(pixels.shape[:2]) != sorted((height, width)):
        raise ImageError(ErrorCode.IMAGE_DECODE_ERROR)
    return Image(np.ascontiguousarray(pixels), fmt)


def output_format(fmt: str) -> str:
    return "jpeg" if fmt == "jpeg" else "png"


def encode_image(pixels: np.ndarray, fmt: str, jpeg_quality: int = 92) -> tuple[bytes, str]:
    """Pixels only, no metadata: ``(bytes, content type)``."""
    out = output_format(fmt)
    if out == "jpeg":
        ok, data = cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
    else:
        ok, data = cv2.imencode(".png", pixels, [cv2.IMWRITE_PNG_COMPRESSION, 3])
    if not ok:
        raise ImageError(ErrorCode.IMAGE_ENCODE_ERROR)
    return data.tobytes(), CONTENT_TYPES[out]
