"""Covering regions of an image: solid fill (default), pixelate or strong blur.

Blur can be partly undone and pixelation leaks coarse shape, so solid fill is the
default; the others are for readers who need to see that a face was there.

Example::

    cover(pixels, boxes, RegionStyle(mode="pixelate", shape="ellipse", margin=0.2))
"""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np

MODES = ("fill", "pixelate", "blur")
SHAPES = ("ellipse", "rectangle")


@dataclasses.dataclass(frozen=True)
class RegionStyle:
    """How a region is covered.

    Attributes:
        mode: ``"fill"``, ``"pixelate"`` or ``"blur"``.
        shape: ``"ellipse"`` or ``"rectangle"``.
        margin: extra fraction of the box's width/height added on every side.
        color: BGR fill colour.
        blocks: pixelation cells across the region's longer side.
    """

    mode: str = "fill"
    shape: str = "ellipse"
    margin: float = 0.2
    color: tuple = (0, 0, 0)
    blocks: int = 8

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        if self.shape not in SHAPES:
            raise ValueError(f"shape must be one of {SHAPES}")
        if not 0.0 <= self.margin <= 1.0:
            raise ValueError("margin must be in [0, 1]")
        if not 2 <= self.blocks <= 64:
            raise ValueError("blocks must be in [2, 64]")


def expand(box, margin: float, width: int, height: int) -> tuple[int, int, int, int]:
    """``box`` grown by ``margin`` on every side, clipped to the image, as ints."""
    x1, y1, x2, y2 = (float(v) for v in box[:4])
    dx, dy = (x2 - x1) * margin, (y2 - y1) * margin
    return (
        max(0, int(np.floor(x1 - dx))),
        max(0, int(np.floor(y1 - dy))),
        min(width, int(np.ceil(x2 + dx))),
        min(height, int(np.ceil(y2 + dy))),
    )


def _covered(region: np.ndarray, style: RegionStyle) -> np.ndarray:
    height, width = region.shape[:2]
    if style.mode == "fill":
        return np.broadcast_to(np.array(style.color, np.uint8), region.shape).copy()
    if style.mode == "pixelate":
        cells = max(1, style.blocks * min(width, height) // max(width, height))
        small = cv2.resize(
            region,
            (
                style.blocks if width >= height else cells,
                cells if width >= height else style.blocks,
            ),
            interpolation=cv2.INTER_AREA,
        )
        return cv2.resize(small, (width, height), interpolation=cv2.INTER_NEAREST)
    # Strong blur: downscale hard, then smooth, so no detail survives at face scale.
    small = cv2.resize(
        region, (max(1, width // 16), max(1, height // 16)), interpolation=cv2.INTER_AREA
    )
    up = cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)
    kernel = max(3, (min(width, height) // 4) | 1)
    return cv2.GaussianBlur(up, (kernel, kernel), 0)


def cover(pixels: np.ndarray, boxes, style: RegionStyle = RegionStyle()) -> int:
    """Covers each ``(x1, y1, x2, y2, ...)`` box in place; returns how many."""
    height, width = pixels.shape[:2]
    count = 0
    for box in boxes:
        x1, y1, x2, y2 = expand(box, style.margin, width, height)
        if x2 <= x1 or y2 <= y1:
            continue
        region = pixels[y1:y2, x1:x2]
        covered = _covered(region, style)
        if style.shape == "rectangle":
            region[...] = covered
        else:
            mask = np.zeros(region.shape[:2], np.uint8)
            center = ((x2 - x1 - 1) / 2, (y2 - y1 - 1) / 2)
            axes = ((x2 - x1) / 2, (y2 - y1) / 2)
            cv2.ellipse(mask, (center, (axes[0] * 2, axes[1] * 2), 0), 255, -1)
            region[mask > 0] = covered[mask > 0]
        count += 1
    return count
