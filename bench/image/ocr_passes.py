"""OCR passes for small and rotated text: cost per image and what an attacker reads.

    make image-setup && .venv/bin/python bench/image/ocr_passes.py [--repeat 1]

Measured in the same run, on the same images, ``ImageHandler.process`` (decode, faces,
OCR, covering, encode) with the single sparse-text pass (the reference: Veil before
issue 18) and with the extra passes (``OcrPasses()``: 3x upscaled, quarter turns from
Tesseract OSD, +/-15 degree skews, low-confidence/identifier-shaped words covered).

Images: ``astronaut.png`` (scikit-image's public-domain NASA photo, 512x512) as is and
with an e-mail and a phone number rendered by OpenCV at ~9 px cap height, horizontal,
turned 15 and 90 degrees (``tests/hostile/test_redteam_ocr.py``); and the 1280x720 and
1920x1080 scenes of ``bench/image/run.py``. The attacker is Tesseract at 1x and 3x,
turned 0/90/270/+15/-15 degrees; it is run on the variants' outputs.

Wall time (the passes run side by side, one Tesseract per CPU) and CPU time (this
process and Tesseract's), best of ``--repeat``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
os.environ.setdefault("VEIL_CACHE", str(REPO / ".cache"))
sys.path[:0] = [str(REPO / "tests" / "hostile"), str(REPO / "tests" / "transforms" / "image"),
                str(REPO / "tests"), str(REPO / "bench" / "image")]  # fmt: skip

from run import cpu, scene  # noqa: E402
from test_redteam_ocr import ASTRONAUT, attack, photo, png, variant  # noqa: E402
from veil_testing import media_record  # noqa: E402

from veil.transforms.classification import load_policy  # noqa: E402
from veil.transforms.image import ImageConfig, ImageHandler  # noqa: E402
from veil.transforms.privacy import ApplyPrivacyStep, _ModelHolder  # noqa: E402
from veil.transforms.records import Source, WorkItem  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    handler = ImageHandler(load_policy())
    model = (
        ApplyPrivacyStep.shared_for(handler)
        .acquire(lambda: _ModelHolder(handler.load()), handler.share_key())
        .model
    )
    configs = {"single": ImageConfig(ocr_passes=None), "passes": ImageConfig()}
    images = {
        "astronaut": photo(ASTRONAUT),
        "9px-0deg": variant(0),
        "9px-15deg": variant(15),
        "9px-90deg": variant(90),
        "1280x720": scene(1280, 720)[0],
        "1920x1080": scene(1920, 1080)[0],
    }
    print(f"cpus={os.cpu_count()} load={os.getloadavg()[0]:.1f}")
    print(f"{'image':<11} {'single s':>9} {'passes s':>9} {'ratio':>6} {'single cpu':>10} "
          f"{'passes cpu':>10} {'extra s':>8}  attacker reads (single / passes)")  # fmt: skip
    total = {"single": 0.0, "passes": 0.0}
    for name, pixels in images.items():
        data = png(pixels)
        best, outs = {}, {}
        for label, config in configs.items():
            runs = []
            for _ in range(args.repeat):
                item = WorkItem(Source("raw", 0, 0), media_record("b", "s", data), modality="image")
                c0, t0 = cpu(), time.perf_counter()
                ImageHandler(load_policy(), config).process(model, item)
                runs.append((time.perf_counter() - t0, cpu() - c0))
            best[label] = min(runs)
            outs[label] = item.sanitized_payload
            total[label] += best[label][0]
        reads = ""
        if name.startswith("9px"):
            import cv2
            import numpy as np

            def dec(b):
                return cv2.imdecode(np.frombuffer(b, np.uint8), cv2.IMREAD_COLOR)

            reads = " / ".join(
                ",".join(sorted(attack(dec(outs[k])))) or "-" for k in ("single", "passes")
            )
        (s, sc), (p, pc) = best["single"], best["passes"]
        print(
            f"{name:<11} {s:9.2f} {p:9.2f} {p / s:6.1f} {sc:10.2f} {pc:10.2f} {p - s:8.2f}  {reads}"
        )
    print(
        f"total wall: single {total['single']:.1f} s, passes {total['passes']:.1f} s, "
        f"ratio {total['passes'] / total['single']:.1f}x; load={os.getloadavg()[0]:.1f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
