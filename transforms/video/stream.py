"""The frame loop: decode -> detect (every k-th frame, downscaled) -> track -> cover ->
encode, one frame at a time.

At most ``detect_every`` decoded frames wait for their boxes (the tracker needs the
next detection to interpolate), so memory per record is a few frames plus the encoder's
look-ahead, whatever the video's length. Every frame is covered with the boxes the
tracker gives it, so a face is covered on frames the detector skipped or blinked on.

Example::

    stats = anonymize_stream(reader.frames(), writer, detect, TrackerConfig(), RegionStyle())
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

import numpy as np

from veil.transforms.media.faces import nms
from veil.transforms.media.regions import RegionStyle, cover
from veil.transforms.video.tracker import FaceTracker, TrackerConfig


class StreamTimeout(Exception):
    """The record ran past its deadline; the loop stopped early (no content)."""


@dataclasses.dataclass
class VideoStats:
    """Counts only (no coordinates): what the loop did to one video."""

    frames: int = 0
    detector_runs: int = 0
    detections: int = 0
    faces: int = 0  # distinct tracks
    frames_with_faces: int = 0
    frames_tracked: int = 0  # frames with a box from hold/interpolation/back-fill


def detect_downscaled(detector, side: int, threshold: float, nms_iou: float = 0.3) -> Callable:
    """CenterFace on the frame scaled so its long side is at most ``side``, one box per
    face (non-maximum suppression over the heatmap's neighbouring peaks)."""

    def detect(pixels: np.ndarray) -> np.ndarray:
        return nms(detector.single_scale(pixels, side, threshold), nms_iou)

    return detect


def anonymize_stream(
    frames,
    write: Callable,
    detect: Callable,
    tracking: TrackerConfig = TrackerConfig(),
    style: RegionStyle = RegionStyle(),
    deadline: float | None = None,
    clock: Callable[[], float] = time.monotonic,
    on_boxes: Callable | None = None,
) -> VideoStats:
    """Covers faces on every frame of ``frames`` and hands each to ``write(frame)``.

    Args:
        frames: iterable of ``Frame`` (pixels are covered in place).
        write: called once per frame, in order, after covering.
        detect: pixels -> ``(n, 5)`` boxes in the frame's pixels.
        tracking: detection interval, hold, growth.
        style: how boxes are covered.
        deadline: ``clock()`` value after which ``StreamTimeout`` is raised.
        on_boxes: test and benchmark hook, called with ``(frame, boxes)`` before covering.
    """
    tracker = FaceTracker(tracking)
    stats = VideoStats()
    pending = []
    index = -1

    def flush(at: int) -> None:
        boxes = detect(pending[-1].pixels)
        stats.detector_runs += 1
        stats.detections += len(boxes)
        for frame, planned in zip(pending, tracker.update(at, boxes)):
            if on_boxes is not None:
                on_boxes(frame, planned.boxes)
            cover(frame.pixels, planned.boxes, style)
            stats.frames_with_faces += bool(planned.boxes)
            stats.frames_tracked += planned.tracked
            write(frame)
        pending.clear()

    for index, frame in enumerate(frames):
        if deadline is not None and clock() > deadline:
            raise StreamTimeout()
        stats.frames += 1
        pending.append(frame)
        if index % tracking.detect_every == 0:
            flush(index)
    if pending:  # the last frames: detect on the last one, never leave them uncovered
        flush(index)
    stats.faces = tracker.faces
    return stats
