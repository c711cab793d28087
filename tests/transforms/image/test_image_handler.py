"""``ImageHandler`` alone and inside ``ApplyPrivacyStep`` on the FnApiRunner."""

from __future__ import annotations

import logging

import apache_beam as beam
import cv2
import numpy as np
import pytest
from apache_beam.testing.util import assert_that, equal_to
from image_testing import (
    ASTRONAUT,
    SECRET,
    decode,
    jpeg_with_metadata,
    photo,
    png,
    png_header,
    png_with_metadata,
    require_photos_and_model,
)
from veil_testing import beam_pipeline, media_record

from veil.transforms.classification import load_policy
from veil.transforms.image import ImageConfig, ImageHandler
from veil.transforms.image.handler import FACE, NO_TEXT
from veil.transforms.privacy import ApplyPrivacyStep, _ModelHolder, settle
from veil.transforms.records import ErrorCode, Source, WorkItem

EMAIL = "jane.doe@example.com"


@pytest.fixture(scope="module")
def model():
    """The default handler's model, loaded once and held in the step's Shared handle."""
    require_photos_and_model()
    handler = ImageHandler(load_policy())
    holder = ApplyPrivacyStep.shared_for(handler).acquire(
        lambda: _ModelHolder(handler.load()), handler.share_key()
    )
    assert holder.model.detector is not None and holder.model.ocr_ready
    yield holder


def _sign() -> np.ndarray:
    pixels = np.full((260, 900, 3), 255, np.uint8)
    cv2.putText(pixels, f"Contact: {EMAIL}", (20, 80), cv2.FONT_HERSHEY_SIMPLEX, 1.2, 0, 2)
    cv2.putText(pixels, "Opening hours daily", (20, 190), cv2.FONT_HERSHEY_SIMPLEX, 1.2, 0, 2)
    return pixels


def _item(payload: bytes, record_id="r1") -> WorkItem:
    return WorkItem(Source("raw", 0, 0), media_record(record_id, "s", payload), modality="image")


def test_pii_words_are_covered_and_other_words_kept(model):
    handler = ImageHandler(load_policy())
    original = _sign()
    item = _item(png(original))
    counts = settle(item, handler.process(model.model, item))
    assert counts == {"EMAIL_ADDRESS": 1}
    out = decode(item.sanitized_payload)
    font = cv2.FONT_HERSHEY_SIMPLEX
    start = 20 + cv2.getTextSize("Contact: ", font, 1.2, 2)[0][0]
    end = 20 + cv2.getTextSize(f"Contact: {EMAIL}", font, 1.2, 2)[0][0]
    email = (slice(58, 82), slice(start + 5, end - 5))
    assert (out[email] == 0).all()  # the address is under a solid fill
    hours_row = (slice(150, 200), slice(0, 900))
    assert np.array_equal(out[hours_row], original[hours_row])  # no PII: untouched
    assert item.classification.entity_counts == counts


def test_an_image_without_text_is_audited_as_skipped(model):
    handler = ImageHandler(load_policy())
    item = _item(png(np.full((120, 160, 3), 90, np.uint8)))
    assert settle(item, handler.process(model.model, item)) == {}
    skipped = [s for s in item.trail if s.action == "OCR_SKIPPED"]
    assert [s.reason_code for s in skipped] == [NO_TEXT]


def test_a_photo_loses_its_face_and_its_metadata(model, caplog):
    handler = ImageHandler(load_policy(), ImageConfig(ocr=False))
    original = photo(ASTRONAUT)
    payload = jpeg_with_metadata(original)
    item = _item(payload)
    with caplog.at_level(logging.DEBUG):
        counts = settle(item, handler.process(model.model, item))
    assert counts == {FACE: 1}
    assert item.sanitized_content_type == "image/jpeg"
    assert SECRET not in item.sanitized_payload and b"Exif" not in item.sanitized_payload
    out = decode(item.sanitized_payload)
    assert (out[90:150, 205:245] < 8).all()  # the face is filled
    before = decode(payload)  # away from the face only JPEG re-encoding changes pixels
    assert np.abs(out[300:500, 0:150].astype(int) - before[300:500, 0:150]).mean() < 3
    assert SECRET.decode() not in caplog.text and "181" not in caplog.text


def test_without_a_model_images_fail_closed(model, tmp_path, monkeypatch):
    monkeypatch.setenv("VEIL_MODEL_DIR", str(tmp_path))  # an empty model cache
    handler = ImageHandler(load_policy(), ImageConfig(ocr=False))
    loaded = handler.load()
    assert loaded.detector is None
    from veil.transforms.privacy import PrivacyError

    with pytest.raises(PrivacyError) as raised:
        handler.process(loaded, _item(png(photo(ASTRONAUT))))
    assert raised.value.code == ErrorCode.IMAGE_MODEL_UNAVAILABLE
    missing = ImageConfig(ocr=False, model_path=str(tmp_path / "yunet.onnx"), model_sha256="0" * 64)
    assert ImageHandler(load_policy(), missing).load().detector is None
    from veil.transforms.media.models import CENTERFACE, cache_dir

    monkeypatch.delenv("VEIL_MODEL_DIR")
    configured = ImageConfig(
        ocr=False, model_path=str(cache_dir() / CENTERFACE.name), model_sha256=CENTERFACE.sha256
    )
    loaded = ImageHandler(load_policy(), configured).load()
    assert loaded.detector is not None
    assert loaded.versions["face-detector"] == f"configured-sha256:{CENTERFACE.sha256[:12]}"


def test_image_step_routes_records_and_dead_letters(model):
    records = [
        media_record("face", "s", png_with_metadata(photo(ASTRONAUT))),
        media_record("sign", "s", png(_sign())),
        media_record("bomb", "s", png_header(60_000, 60_000)),
        media_record("corrupt", "s", b"\x89PNG\r\n\x1a\n" + b"\x00" * 40),
        media_record("pdf", "s", b"%PDF-1.7 " + EMAIL.encode(), modality="image"),
    ]
    items = [WorkItem(Source("raw", 0, i), r, modality="image") for i, r in enumerate(records)]
    with beam_pipeline() as p:
        # Routing, not timing: OCR's extra passes take seconds per image on a loaded box.
        step = ApplyPrivacyStep(ImageHandler(load_policy()), time_limit_s=120)
        result = p | beam.Create(items) | step
        assert_that(
            result.records
            | "Out"
            >> beam.Map(
                lambda i: (
                    i.record_id,
                    i.sanitized_content_type,
                    i.classification.entity_counts.get("FACE", 0),
                    i.classification.entity_counts.get("EMAIL_ADDRESS", 0),
                    SECRET in i.sanitized_payload,
                )
            ),
            equal_to([("face", "image/png", 1, 0, False), ("sign", "image/png", 0, 1, False)]),
            label="Records",
        )
        assert_that(
            result.dead_letters | "Codes" >> beam.Map(lambda f: (f.record_id, f.error_code, f.raw)),
            equal_to(
                [
                    ("bomb", ErrorCode.IMAGE_TOO_LARGE, None),
                    ("corrupt", ErrorCode.IMAGE_DECODE_ERROR, None),
                    ("pdf", ErrorCode.IMAGE_FORMAT_UNSUPPORTED, None),
                ]
            ),
            label="DeadLetters",
        )
