"""OCR passes for small and rotated text (issue 18): OSD, upscaling, fail closed."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from image_testing import decode, png, require_photos_and_model
from veil_testing import media_record

from veil.transforms.classification import load_policy
from veil.transforms.image import ImageConfig, ImageHandler, ocr
from veil.transforms.privacy import ApplyPrivacyStep, _ModelHolder, settle
from veil.transforms.records import Source, WorkItem

EMAIL = "jane.doe@example.com"


def _sign() -> np.ndarray:
    pixels = np.full((260, 900, 3), 255, np.uint8)
    cv2.putText(pixels, f"Contact: {EMAIL}", (20, 80), cv2.FONT_HERSHEY_SIMPLEX, 1.2, 0, 2)
    cv2.putText(pixels, "Opening hours daily", (20, 190), cv2.FONT_HERSHEY_SIMPLEX, 1.2, 0, 2)
    return pixels


@pytest.fixture(scope="module")
def model():
    require_photos_and_model()
    handler = ImageHandler(load_policy())
    holder = ApplyPrivacyStep.shared_for(handler).acquire(
        lambda: _ModelHolder(handler.load()), handler.share_key()
    )
    yield holder.model


def test_osd_decides_the_quarter_turn_of_a_document():
    sideways = cv2.rotate(_sign(), cv2.ROTATE_90_CLOCKWISE)
    assert ocr.osd_rotation(sideways, 30, 1.5) == 270
    assert ocr.osd_rotation(_sign(), 30, 1.5) == 0
    words, stats = ocr.read_words_multi(sideways, 60)
    assert stats["turns"] == 1  # OSD sure: one quarter turn, not both
    turned = [w for w in words if w.line[0] == "-270@3" and EMAIL in w.text]  # 270 cw
    assert turned and turned[0].box[2] - turned[0].box[0] < 60  # mapped back: tall, narrow


def test_osd_unsure_reads_both_quarter_turns():
    blank = np.full((200, 300, 3), 255, np.uint8)
    assert ocr.osd_rotation(blank, 30, 1.5) is None
    _, stats = ocr.read_words_multi(blank, 60)
    assert stats["turns"] == 2 and stats["scale"] == 3.0 and stats["passes"] == 6


def test_large_images_get_downscaled_extra_passes():
    _, stats = ocr.read_words_multi(np.full((2000, 2000, 3), 255, np.uint8), 120)
    assert stats["scale"] < 1 and stats["passes"] == 5  # no upscaled 0-degree pass


def test_sideways_sign_is_covered(model):
    sideways = cv2.rotate(_sign(), cv2.ROTATE_90_COUNTERCLOCKWISE)
    item = WorkItem(Source("raw", 0, 0), media_record("r", "s", png(sideways)), modality="image")
    counts = settle(item, ImageHandler(load_policy()).process(model, item))
    assert counts.get("EMAIL_ADDRESS") == 1
    single = WorkItem(Source("raw", 0, 0), media_record("r", "s", png(sideways)), modality="image")
    single_pass = ImageHandler(load_policy(), ImageConfig(ocr_passes=None))
    assert "EMAIL_ADDRESS" not in settle(single, single_pass.process(model, single))
    # the single pass alone misses it
    out = decode(item.sanitized_payload)
    assert (out == 0).any()


@pytest.mark.parametrize(
    "text,conf,covered",
    [
        ("867-5309", 95, True),  # identifier-shaped: covered whatever the confidence
        ("a@b.cd", 95, True),
        ("(558)", 40, True),  # low confidence, a digit
        ("(558)", 90, False),
        ("hours", 10, False),  # low confidence, no digit or @
        ("12", 10, False),  # too short
        ("2024", 95, False),
    ],
)
def test_uncertain_words(text, conf, covered):
    word = ocr.Word(text, (0, 0, 10, 10), ("x", "1", "1", "1"), conf)
    assert (ocr.uncertain_words([word], 60) == [word]) is covered


def test_best_readings_drops_junk_lines_over_better_ones():
    first = [ocr.Word("Opening", (20, 160, 150, 200), ("0@1", "1", "1", "1"), 96)]
    junk = [
        ocr.Word("Urs", (200, 160, 260, 200), ("-15@3", "3", "1", "1"), 81),
        ocr.Word("dai", (20, 150, 150, 205), ("-15@3", "3", "1", "1"), 25),
    ]
    elsewhere = [ocr.Word("Tel", (400, 10, 440, 30), ("-90@3", "1", "1", "1"), 40)]
    kept = ocr.best_readings(first + junk + elsewhere)
    assert kept == first + elsewhere
