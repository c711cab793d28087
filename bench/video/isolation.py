"""What running video records in the sandbox costs: ``VideoHandler.process`` with
decoder isolation on (``VIDEO_DECODERS``, warm workers) and off (in process).

    make image-setup video-setup && .venv/bin/python bench/video/isolation.py [--runs 6]

Input: the test footage at its own size ("Carphone" 176x144, 120 frames; the street
scene 640x272, 250 frames), H.264 MP4. Each record is the whole video step (header
checks, decode, CenterFace, tracking, cover, libx264 encode, and with isolation the
pipe both ways). OpenCV runs one thread in both cases (the sandbox workers always do;
``--threads`` changes the parent's), so the difference is the isolation itself. Reported:
the first record (the worker loads the face model then), then the median of the
others: wall time, CPU time of this process plus its sandbox workers, frames/s.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import time
from pathlib import Path

import av
import cv2

REPO = Path(__file__).resolve().parents[2]
os.environ.setdefault("VEIL_CACHE", str(REPO / ".cache"))
FOOTAGE = Path(os.environ["VEIL_CACHE"]) / "testdata" / "video"
CLIPS = ("carphone_pristine.mp4", "bikes.mp4")


def _cpu_s(pids) -> float:
    """CPU seconds of this process and of the given children (from /proc)."""
    total = time.process_time()
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def _frames(payload: bytes) -> int:
    with av.open(io.BytesIO(payload)) as box:
        return sum(1 for _ in box.decode(video=0))


def _item(payload: bytes, offset: int):
    from veil.transforms.records import Source, WorkItem

    record = {
        "record_id": f"bench-{offset}",
        "subject_key": "bench",
        "modality": "video",
        "content_type": "video/mp4",
        "payload": payload,
        "attributes": {},
        "event_time": None,
    }
    return WorkItem(Source("veil.raw", 0, offset), record, "video")


def measure(payload: bytes, isolated: bool, runs: int) -> dict:
    from veil.transforms.classification import load_policy
    from veil.transforms.video import VIDEO_DECODERS, VideoConfig, VideoHandler

    config = VideoConfig(isolation=VIDEO_DECODERS if isolated else None)
    handler = VideoHandler(load_policy(), config)
    started = time.monotonic()
    model = handler.load()
    load_s = time.monotonic() - started
    walls, cpus = [], []
    for run in range(runs):
        pids = model.sandbox.pids() if model.sandbox else []
        cpu, wall = _cpu_s(pids), time.monotonic()
        handler.process(model, _item(payload, run))
        walls.append(time.monotonic() - wall)
        cpus.append(_cpu_s(pids) - cpu)
    return {
        "load_s": load_s,
        "first_s": walls[0],
        "wall_s": statistics.median(walls[1:]),
        "cpu_s": statistics.median(cpus[1:]),
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=6, help="records per setting (>= 2)")
    parser.add_argument("--threads", type=int, default=1, help="OpenCV threads in process")
    args = parser.parse_args()
    cv2.setNumThreads(args.threads)
    print(
        f"{'clip':<22} {'isolation':<9} {'load s':>7} {'1st s':>6} {'wall s':>7} "
        f"{'frames/s':>8} {'CPU s':>6} {'frames/CPU-s':>12}"
    )
    for name in CLIPS:
        payload = (FOOTAGE / name).read_bytes()
        frames = _frames(payload)
        for isolated in (True, False):
            m = measure(payload, isolated, max(2, args.runs))
            print(
                f"{name:<22} {'on' if isolated else 'off':<9} {m['load_s']:7.2f} "
                f"{m['first_s']:6.2f} {m['wall_s']:7.3f} {frames / m['wall_s']:8.0f} "
                f"{m['cpu_s']:6.3f} {frames / m['cpu_s']:12.0f}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
