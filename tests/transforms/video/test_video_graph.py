"""Videos through ``veil sanitize`` (the whole graph from ``build``, local files)."""

from __future__ import annotations

import json

import pytest
from video_testing import CARPHONE, SECRET, TAGS, build_video, frames_of, require_footage_and_model

from veil.pipelines.local import sanitize_files
from veil.transforms.audit import steps_of
from veil.transforms.classification import load_policy
from veil.transforms.privacy import ApplyPrivacyStep, _ModelHolder
from veil.transforms.video import VideoHandler


@pytest.fixture(scope="module")
def loaded():
    """The graph's video handler, loaded once and held so the pipeline reuses it."""
    require_footage_and_model()
    handler = VideoHandler(load_policy())
    yield ApplyPrivacyStep.shared_for(handler).acquire(
        lambda: _ModelHolder(handler.load()), handler.share_key()
    )


def test_veil_sanitize_covers_faces_strips_metadata_and_dead_letters_bad_video(loaded, tmp_path):
    clip = frames_of(CARPHONE, limit=30)
    good, webm, cut = tmp_path / "drive.mp4", tmp_path / "drive.webm", tmp_path / "cut.mp4"
    good.write_bytes(build_video(clip, "mp4", tags=TAGS))
    webm.write_bytes(build_video(clip, "webm", tags=TAGS))
    whole = build_video(clip, "mkv", tags=TAGS)
    cut.write_bytes(whole[: len(whole) // 3])
    out = tmp_path / "out"
    summary = sanitize_files([str(good), str(webm), str(cut)], out, subject="driver")
    assert (summary["records"], summary["sanitized"], summary["dead_letters"]) == (3, 2, 1)
    for name in ("drive.mp4", "drive.webm"):
        written = (out / name).read_bytes()
        assert SECRET.encode() not in written
        frames = frames_of(written)
        assert len(frames) == 30
        # The face (around x 66-112, y 37-95 in the first frame) is filled.
        assert (frames[0][50:85, 75:105].max(axis=2) < 40).mean() > 0.99
    assert (out / "drive.webm").read_bytes()[:4] == b"\x1a\x45\xdf\xa3"
    audit = [json.loads(line) for line in (out / "audit.jsonl").read_text().splitlines()]
    steps = [s for e in audit for s in steps_of(e)]  # one event per record, its steps listed
    anonymized = [s for s in steps if (s["stage"], s["action"]) == ("video", "ANONYMIZED")]
    assert len(anonymized) == 2
    assert all(e["entity_counts"] == {"FACE": 1} for e in anonymized)
    text = (out / "audit.jsonl").read_text() + (out / "dead-letter.jsonl").read_text()
    assert SECRET not in text and "48.8584" not in text
    dead = [json.loads(line) for line in (out / "dead-letter.jsonl").read_text().splitlines()]
    assert [(d["stage"], d["error_code"]) for d in dead] == [("video", "VIDEO_CORRUPT")]
