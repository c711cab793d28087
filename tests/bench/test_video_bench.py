"""bench/video: its recall measure counts covered and uncovered faces, and Veil's loop
covers every reference face on a slice of the real footage."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

# Loaded under its own name: bench/text also has a ``run`` module.
_SPEC = importlib.util.spec_from_file_location(
    "veil_video_bench", Path(__file__).resolve().parents[2] / "bench" / "video" / "run.py"
)
video_bench = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(video_bench)


@pytest.fixture(scope="module")
def detector():
    from veil.transforms.media.faces import CenterFace
    from veil.transforms.media.models import CENTERFACE, ModelError, model_path

    try:
        return CenterFace.load(model_path(), CENTERFACE.sha256)
    except ModelError:
        raise AssertionError("face model missing: run `make image-setup`") from None


def test_recall_counts_what_the_cover_leaves_out():
    from veil.transforms.media.regions import RegionStyle

    style = RegionStyle(margin=0.2)
    faces = [np.array([[10, 10, 30, 40, 0.9], [60, 10, 80, 40, 0.9]])]
    assert video_bench.recall(faces, [[faces[0][0]]], style, (100, 100)) == (1, 2)
    assert video_bench.recall(faces, [list(faces[0])], style, (100, 100)) == (2, 2)
    assert video_bench.recall(faces, [[]], style, (100, 100)) == (0, 2)


def test_veil_covers_every_reference_face_on_the_real_clip(detector):
    from veil.transforms.media.faces import DetectorConfig
    from veil.transforms.media.regions import RegionStyle
    from veil.transforms.video import EncoderConfig, VideoConfig
    from veil.transforms.video.stream import detect_downscaled

    clip = video_bench.FOOTAGE / video_bench.CLIPS[0]
    if not clip.is_file():
        raise AssertionError("test footage missing: run `make video-setup`")
    payload, frames = video_bench.scaled_clip(clip, (320, 240), 12)
    config = VideoConfig()
    detect = detect_downscaled(detector, config.detect_side(320, 240), config.threshold)
    style = RegionStyle(margin=config.margin)
    seconds, covered = video_bench.run_pipeline(
        payload, detect, config.tracking, style, EncoderConfig()
    )
    assert len(covered) == 12 and seconds > 0
    truth = [detector.detect(f, DetectorConfig(threshold=0.5)) for f in frames]
    hits, total = video_bench.recall(truth, covered, style, (240, 320))
    assert total >= 12 and hits == total
