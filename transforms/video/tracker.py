"""Carrying face boxes across frames, so a face is covered on every frame even where
the detector blinks or is not run.

The detector runs on every ``detect_every``-th frame (and on the last one). Between two
detection frames the frames wait in a short buffer (at most ``detect_every`` frames),
and ``FaceTracker.update`` returns the boxes to cover on each of them:

* a face found on both detection frames: its box **interpolated** linearly between
  the two, grown a little with the distance to the nearer detection;
* a face found before but not now (the detector blinked, or the face left): its last
  box **held** for up to ``hold_frames`` frames after its last detection, growing
  with every frame (``growth_per_frame``, up to ``max_growth``) to follow motion;
* a face found now but not before: its box **back-filled** onto the buffered frames
  before it (it may have come into view between two detections), grown likewise.

When in doubt the tracker covers: an ambiguous match leaves both the held box and the
new one. It keeps boxes only for the frames in flight; nothing of them leaves the
process (counts only).

Example::

    tracker = FaceTracker(TrackerConfig(detect_every=2, hold_frames=15))
    per_frame = tracker.update(index, detections)  # boxes for frames since the last call
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class TrackerConfig:
    """How boxes are carried between detections.

    Attributes:
        detect_every: run the detector on every k-th frame (1: every frame).
        hold_frames: frames a box is held after its face's last detection.
        growth_per_frame: fraction of the box's width/height added on every side per
            frame away from a detection.
        max_growth: cap on that growth.
        match_iou: overlap needed to call a detection the same face as a track (with
            the track's box widened by half its size).
    """

    detect_every: int = 2
    hold_frames: int = 15
    growth_per_frame: float = 0.1
    max_growth: float = 0.6
    match_iou: float = 0.1

    def __post_init__(self):
        if not 1 <= self.detect_every <= 30:
            raise ValueError("detect_every must be in [1, 30]")
        if self.hold_frames < self.detect_every:
            raise ValueError("hold_frames must be at least detect_every (fail closed)")
        if not 0.0 <= self.growth_per_frame <= 1.0 or not 0.0 <= self.max_growth <= 3.0:
            raise ValueError("growth_per_frame must be in [0, 1] and max_growth in [0, 3]")
        if not 0.0 < self.match_iou < 1.0:
            raise ValueError("match_iou must be in (0, 1)")


_MATCH_GROWTH = 0.5


@dataclasses.dataclass
class _Track:
    box: np.ndarray  # x1, y1, x2, y2 at frame ``seen``
    seen: int


@dataclasses.dataclass
class FrameBoxes:
    """Boxes to cover on one frame; ``tracked`` says whether any came from the tracker
    (held, interpolated or back-filled) rather than a detection on this frame."""

    index: int
    boxes: list
    tracked: bool


def grow(box, fraction: float) -> np.ndarray:
    x1, y1, x2, y2 = (float(v) for v in box[:4])
    dx, dy = (x2 - x1) * fraction, (y2 - y1) * fraction
    return np.array([x1 - dx, y1 - dy, x2 + dx, y2 + dy], np.float32)


def iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


class FaceTracker:
    """Hold, interpolate and back-fill (see the module). One instance per video."""

    def __init__(self, config: TrackerConfig = TrackerConfig()):
        self._config = config
        self._tracks: list[_Track] = []
        self._last = -1
        self.faces = 0  # tracks started: distinct faces, as far as the tracker can tell

    def _growth(self, frames: int) -> float:
        c = self._config
        return min(c.max_growth, c.growth_per_frame * frames)

    def _match(self, detections: np.ndarray) -> dict:
        """Greedy best-overlap matching: detection index -> track.

        The track's box is widened by half its size first, so a face that moved about
        its own width since the last detection still matches (and is interpolated)."""
        pairs = []
        for d, det in enumerate(detections):
            for track in self._tracks:
                score = iou(det, grow(track.box, _MATCH_GROWTH))
                if score >= self._config.match_iou:
                    pairs.append((score, d, id(track), track))
        pairs.sort(key=lambda p: -p[0])
        matched, used = {}, set()
        for _, d, key, track in pairs:
            if d not in matched and key not in used:
                matched[d] = track
                used.add(key)
        return matched

    def update(self, index: int, detections) -> list[FrameBoxes]:
        """Detections on frame ``index``; boxes for every frame since the last call."""
        if index <= self._last:
            raise ValueError("frames must come in order")
        detections = np.asarray(detections, np.float32).reshape(-1, 5)[:, :4]
        frames = range(self._last + 1, index + 1)
        out = {j: FrameBoxes(j, [], False) for j in frames}
        matched = self._match(detections)
        matched_tracks = {id(t) for t in matched.values()}
        for d, det in enumerate(detections):
            out[index].boxes.append(det)
            track = matched.get(d)
            for j in frames[:-1]:
                if track is not None:  # interpolate from its last detection
                    span = index - track.seen
                    t = (j - track.seen) / span
                    box = track.box * (1 - t) + det * t
                    box = grow(box, self._growth(min(j - track.seen, index - j)))
                else:  # back-fill: it may have come into view after the last detection
                    box = grow(det, self._growth(index - j))
                out[j].boxes.append(box)
                out[j].tracked = True
            if track is not None:
                track.box, track.seen = det, index
            else:
                self._tracks.append(_Track(det, index))
                self.faces += 1
        hold = self._config.hold_frames
        for track in self._tracks:
            if id(track) in matched_tracks or track.seen == index:
                continue
            for j in frames:
                if j - track.seen <= hold:
                    out[j].boxes.append(grow(track.box, self._growth(j - track.seen)))
                    out[j].tracked = True
        self._tracks = [t for t in self._tracks if index - t.seen <= hold]
        self._last = index
        return [out[j] for j in frames]
