"""Images through ``veil sanitize`` (the whole graph from ``build``, local files)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from image_testing import (
    ASTRONAUT,
    SECRET,
    decode,
    jpeg_with_metadata,
    photo,
    png_header,
    require_photos_and_model,
)

from veil.pipelines.local import sanitize_files
from veil.transforms.audit import steps_of
from veil.transforms.classification import load_policy
from veil.transforms.image import ImageHandler
from veil.transforms.privacy import ApplyPrivacyStep, _ModelHolder


@pytest.fixture(scope="module")
def loaded():
    """The graph's image handler, loaded once and held so the pipeline reuses it."""
    require_photos_and_model()
    handler = ImageHandler(load_policy())
    yield ApplyPrivacyStep.shared_for(handler).acquire(
        lambda: _ModelHolder(handler.load()), handler.share_key()
    )


def test_veil_sanitize_covers_the_face_and_strips_metadata(loaded, tmp_path):
    photo_path, bomb_path = tmp_path / "visit.jpg", tmp_path / "bomb.png"
    photo_path.write_bytes(jpeg_with_metadata(photo(ASTRONAUT), orientation=1))
    bomb_path.write_bytes(png_header(50_000, 50_000))
    out = tmp_path / "out"
    summary = sanitize_files([str(photo_path), str(bomb_path)], out, subject="visitor")
    assert (summary["records"], summary["sanitized"], summary["dead_letters"]) == (2, 1, 1)
    written = (out / "visit.jpg").read_bytes()
    assert SECRET not in written and b"Exif" not in written
    pixels = decode(written)
    assert pixels.shape == (512, 512, 3)
    assert (pixels[90:150, 205:245] < 8).all()  # the face is filled
    # Away from the face (and from the suit's patch, where OCR reads noise that the
    # detectors flag: fail closed) only JPEG re-encoding changes pixels.
    before = decode(photo_path.read_bytes())
    assert np.abs(pixels[230:340, 0:150].astype(int) - before[230:340, 0:150]).mean() < 3
    audit = [json.loads(line) for line in (out / "audit.jsonl").read_text().splitlines()]
    steps = [s for e in audit for s in steps_of(e)]  # one event per record, its steps listed
    anonymized = [s for s in steps if (s["stage"], s["action"]) == ("image", "ANONYMIZED")]
    assert len(anonymized) == 1 and anonymized[0]["entity_counts"].get("FACE") == 1
    text = (out / "audit.jsonl").read_text()
    assert SECRET.decode() not in text  # no content
    # No coordinates of the face box: the fields that hold digits by nature (hashes,
    # times, the opaque record id and topic, the chain link) are left out of the check.
    hashed = ("event_id", "event_time", "record_id", "source", "duration_ms", "chain")
    for event in audit + steps:
        assert "181" not in json.dumps(
            {k: v for k, v in event.items() if k not in hashed + ("steps", "at_ms")}
        )
    dead = [json.loads(line) for line in (out / "dead-letter.jsonl").read_text().splitlines()]
    assert [d["error_code"] for d in dead] == ["IMAGE_TOO_LARGE"]
    reasons = [e["reason_code"] for e in audit if e["action"] == "DEAD_LETTERED"]
    assert reasons == ["image:IMAGE_TOO_LARGE"]
