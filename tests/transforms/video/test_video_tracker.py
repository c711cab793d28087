"""The tracker: a face is covered on every frame between, after and before detections."""

from __future__ import annotations

import numpy as np
import pytest

from veil.transforms.video.stream import anonymize_stream
from veil.transforms.video.tracker import FaceTracker, TrackerConfig, grow, iou

FACE = [100.0, 100.0, 140.0, 150.0, 0.9]


def _contains(outer, inner) -> bool:
    outer, inner = np.asarray(outer[:4]), np.asarray(inner[:4])
    return bool((outer[:2] <= inner[:2]).all() and (outer[2:] >= inner[2:]).all())


def test_boxes_are_interpolated_between_two_detections():
    tracker = FaceTracker(TrackerConfig(detect_every=4, hold_frames=8, growth_per_frame=0.0))
    assert [f.boxes for f in tracker.update(0, [FACE])][0][0].tolist() == FACE[:4]
    moved = [140.0, 100.0, 180.0, 150.0, 0.8]
    frames = tracker.update(4, [moved])
    assert [f.index for f in frames] == [1, 2, 3, 4]
    assert [f.tracked for f in frames] == [True, True, True, False]
    lefts = [float(f.boxes[0][0]) for f in frames]
    assert lefts == [110.0, 120.0, 130.0, 140.0]  # linear in between
    assert all(len(f.boxes) == 1 for f in frames)  # matched: one face, not two
    assert tracker.faces == 1


def test_a_box_is_held_where_detection_blinks_then_dropped_after_the_hold():
    config = TrackerConfig(detect_every=1, hold_frames=3, growth_per_frame=0.1, max_growth=0.25)
    tracker = FaceTracker(config)
    tracker.update(0, [FACE])
    held = [tracker.update(i, [])[0] for i in (1, 2, 3, 4)]
    assert [len(f.boxes) for f in held] == [1, 1, 1, 0]
    assert all(f.tracked for f in held[:3])
    # The held box grows with each frame (motion), up to the cap.
    widths = [float(f.boxes[0][2] - f.boxes[0][0]) for f in held[:3]]
    assert widths == pytest.approx([48.0, 56.0, 60.0])
    assert all(_contains(f.boxes[0], FACE) for f in held[:3])


def test_a_new_face_is_back_filled_onto_the_frames_before_its_detection():
    tracker = FaceTracker(TrackerConfig(detect_every=3, hold_frames=6, growth_per_frame=0.05))
    tracker.update(0, [])
    frames = tracker.update(3, [FACE])
    assert [len(f.boxes) for f in frames] == [1, 1, 1]
    assert [f.tracked for f in frames] == [True, True, False]
    assert _contains(frames[0].boxes[0], frames[1].boxes[0])  # further back, bigger
    assert _contains(frames[1].boxes[0], FACE)


def test_a_jump_too_far_to_match_keeps_both_boxes():
    tracker = FaceTracker(TrackerConfig(detect_every=2, hold_frames=4))
    tracker.update(0, [FACE])
    far = [400.0, 300.0, 440.0, 350.0, 0.9]
    frames = tracker.update(2, [far])
    assert [len(f.boxes) for f in frames] == [2, 2]  # held old + back-filled new
    assert tracker.faces == 2


def test_frames_must_come_in_order_and_config_is_validated():
    tracker = FaceTracker()
    tracker.update(2, [])
    with pytest.raises(ValueError):
        tracker.update(2, [])
    with pytest.raises(ValueError):
        TrackerConfig(detect_every=4, hold_frames=2)  # could leave frames uncovered
    with pytest.raises(ValueError):
        TrackerConfig(detect_every=0)
    with pytest.raises(ValueError):
        TrackerConfig(match_iou=0.0)


def test_helpers():
    assert iou(FACE, FACE) == pytest.approx(1.0)
    assert iou(FACE, [0, 0, 10, 10]) == 0.0
    assert grow(FACE, 0.5).tolist() == [80.0, 75.0, 160.0, 175.0]


class _Frame:
    def __init__(self, index):
        self.pixels = np.full((240, 320, 3), 200, np.uint8)
        self.index = index


@pytest.mark.parametrize("every", [1, 2, 3, 5])
def test_the_stream_covers_every_frame_even_when_the_detector_runs_on_few(every):
    """A detector that sees the face only on frames 0 and 9 (it blinks on the rest):
    every frame 0..11 still gets the face covered, whatever the interval."""
    seen = {0, 9}
    calls = []

    def detect(pixels):
        index = int(pixels[0, 0, 1])  # the test stamps the frame index in a pixel
        calls.append(index)
        return np.array([FACE]) if index in seen else np.empty((0, 5), np.float32)

    frames = []
    for i in range(12):
        frame = _Frame(i)
        frame.pixels[0, 0, 1] = i
        frames.append(frame)
    written = []
    stats = anonymize_stream(
        frames,
        written.append,
        detect,
        TrackerConfig(detect_every=every, hold_frames=max(every, 12)),
    )
    assert [f.index for f in written] == list(range(12))
    assert stats.frames == 12 and stats.detector_runs == len(calls)
    assert calls[-1] == 11  # the last frame is always looked at
    for frame in written:
        face = frame.pixels[110:140, 110:130]
        assert (face == 0).all(), f"frame {frame.index} left the face uncovered"
    assert stats.frames_tracked >= 12 - len(seen & set(calls))
