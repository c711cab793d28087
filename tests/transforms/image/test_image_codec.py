"""Header checks, hostile files, orientation and metadata stripping (``codec``)."""

from __future__ import annotations

import struct

import cv2
import numpy as np
import pytest
from image_testing import (
    SECRET,
    jpeg,
    jpeg_with_metadata,
    markers,
    png,
    png_chunks,
    png_header,
    png_with_metadata,
)

from veil.transforms.image.codec import (
    ImageError,
    ImageLimits,
    check_header,
    decode_image,
    encode_image,
)
from veil.transforms.records import ErrorCode


def _banded(height=40, width=60) -> np.ndarray:
    pixels = np.zeros((height, width, 3), np.uint8)
    pixels[: height // 4] = 255  # a white band at the top
    return pixels


@pytest.mark.parametrize("ext", [".png", ".jpg", ".gif", ".bmp", ".tiff", ".webp"])
def test_header_size_is_read_for_every_allowed_format(ext):
    data = cv2.imencode(ext, _banded(37, 53))[1].tobytes()
    _, width, height = check_header(data, ImageLimits())
    assert (width, height) == (53, 37)


def test_gif_header_size():
    gif = b"GIF89a" + struct.pack("<HH", 320, 200) + b"\x00" * 8
    assert check_header(gif, ImageLimits()) == ("gif", 320, 200)


@pytest.mark.parametrize(
    "payload, code",
    [
        (png_header(100_000, 100_000), ErrorCode.IMAGE_TOO_LARGE),  # 10 gigapixels
        (png_header(20_000, 1), ErrorCode.IMAGE_TOO_LARGE),  # one side too long
        (b"GIF89a" + struct.pack("<HH", 65535, 65535) + b"\x00" * 8, ErrorCode.IMAGE_TOO_LARGE),
        (png_header(0, 10), ErrorCode.IMAGE_DECODE_ERROR),
        (b"\x89PNG\r\n\x1a\n....", ErrorCode.IMAGE_DECODE_ERROR),  # no IHDR
        (b"\xff\xd8\xff\xe0\x00\x10JFIF", ErrorCode.IMAGE_DECODE_ERROR),  # no frame header
        (b"%PDF-1.7 not an image", ErrorCode.IMAGE_FORMAT_UNSUPPORTED),
    ],
)
def test_hostile_headers_are_refused_before_decoding(payload, code):
    with pytest.raises(ImageError) as raised:
        decode_image(payload, ImageLimits())
    assert raised.value.code == code
    assert str(raised.value) == code  # nothing from the content


def test_truncated_and_lying_files_are_decode_errors():
    data = jpeg(_banded(200, 300))
    with pytest.raises(ImageError) as raised:
        decode_image(data[: len(data) // 3] + b"\x00" * 4)
    assert raised.value.code in (ErrorCode.IMAGE_DECODE_ERROR,)
    lying = bytearray(png(_banded(40, 60)))
    lying[16:24] = struct.pack(">II", 600, 400)  # header says 600x400
    with pytest.raises(ImageError) as raised:
        decode_image(bytes(lying))
    assert raised.value.code == ErrorCode.IMAGE_DECODE_ERROR


def test_format_allow_list_is_configurable():
    with pytest.raises(ImageError) as raised:
        decode_image(cv2.imencode(".bmp", _banded())[1].tobytes(), ImageLimits(formats=("png",)))
    assert raised.value.code == ErrorCode.IMAGE_FORMAT_UNSUPPORTED
    with pytest.raises(ValueError):
        ImageLimits(formats=("svg",))


@pytest.mark.parametrize(
    "orientation, shape, white",
    [
        (1, (40, 60), "top"),
        (3, (40, 60), "bottom"),  # rotated 180
        (6, (60, 40), "right"),  # rotated 90 clockwise
        (8, (60, 40), "left"),  # rotated 90 counter-clockwise
    ],
)
def test_orientation_is_applied_to_the_pixels(orientation, shape, white):
    image = decode_image(jpeg_with_metadata(_banded(), orientation))
    pixels = image.pixels[..., 0].astype(int)
    assert pixels.shape == shape
    edges = {
        "top": pixels[:3].mean(),
        "bottom": pixels[-3:].mean(),
        "left": pixels[:, :3].mean(),
        "right": pixels[:, -3:].mean(),
    }
    assert max(edges, key=edges.get) == white


def test_jpeg_metadata_is_gone_after_reencoding():
    data = jpeg_with_metadata(_banded(), orientation=6)
    assert {0xE1, 0xE2, 0xED, 0xFE} <= set(markers(data)) and SECRET in data
    image = decode_image(data)
    out, content_type = encode_image(image.pixels, image.format)
    assert content_type == "image/jpeg"
    assert not {0xE1, 0xE2, 0xED, 0xFE} & set(markers(out))  # no EXIF/XMP, ICC, IPTC, COM
    assert SECRET not in out and b"Exif" not in out
    assert decode_image(out).pixels.shape == (60, 40, 3)  # orientation baked in


def test_png_metadata_is_gone_and_other_formats_become_png():
    data = png_with_metadata(_banded())
    assert {b"tEXt", b"iTXt", b"eXIf", b"iCCP"} <= set(png_chunks(data))
    image = decode_image(data)
    out, content_type = encode_image(image.pixels, image.format)
    assert content_type == "image/png"
    assert png_chunks(out) == [b"IHDR", b"IDAT", b"IEND"]
    assert np.array_equal(decode_image(out).pixels, _banded())  # lossless
    bmp = decode_image(cv2.imencode(".bmp", _banded())[1].tobytes())
    assert encode_image(bmp.pixels, bmp.format)[1] == "image/png"
