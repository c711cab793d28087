"""One video record's FFmpeg work (open, decode, detect, track, cover, encode), written
once and run either in the Beam worker or in a sandbox worker (``veil.transforms.sandbox``).

Why a module of its own: FFmpeg's demuxers and decoders are native code fed with hostile
bytes. With isolation on (the default), ``VideoHandler`` sends the payload to
``sanitize_isolated`` in a resource-limited sandbox worker, so a segfault, a hang or a
runaway allocation there costs one dead letter (``DECODER_CRASHED`` / ``DECODER_TIMEOUT``
/ ``DECODER_MEMORY_LIMIT``), never the Beam worker. This module imports neither Beam nor
any key material: only JSON values and raw buffers cross the sandbox's pipe, the face
model is loaded in the worker (sha256-checked) on first use, and the audio track arrives
already anonymized (the voice key stays in the parent).

Example::

    reply = run_isolated(sandbox, sanitize_isolated, payload, params, wav_or_empty)
    reply["data"], reply["content_type"], reply["stats"], reply["has_audio"]
"""

from __future__ import annotations

import dataclasses
import io
import time
from pathlib import Path

import numpy as np

from veil.transforms.media.regions import RegionStyle
from veil.transforms.records import ErrorCode
from veil.transforms.video.container import (
    EncoderConfig,
    VideoError,
    VideoLimits,
    VideoReader,
    VideoWriter,
)
from veil.transforms.video.stream import StreamTimeout, anonymize_stream, detect_downscaled
from veil.transforms.video.tracker import TrackerConfig


def detect_side(width: int, height: int, scale: float, floor: int, cap: int) -> int:
    """The long side frames are scaled to for detection (see ``VideoConfig.detect_side``)."""
    long_side = max(width, height)
    side = round(long_side * scale)
    return min(long_side, max(floor, min(cap, side)))


@dataclasses.dataclass(frozen=True)
class FrameSettings:
    """What the frame loop needs from ``VideoConfig`` and the policy (JSON-able)."""

    threshold: float
    detect_scale: float
    min_detect_side: int
    max_detect_side: int
    tracking: TrackerConfig
    style: RegionStyle
    limits: VideoLimits
    encoder: EncoderConfig

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> FrameSettings:
        limits = dict(data["limits"])
        limits["containers"] = tuple(limits["containers"])
        limits["codecs"] = tuple(limits["codecs"])
        style = dict(data["style"])
        style["color"] = tuple(style["color"])
        return cls(
            threshold=float(data["threshold"]),
            detect_scale=float(data["detect_scale"]),
            min_detect_side=int(data["min_detect_side"]),
            max_detect_side=int(data["max_detect_side"]),
            tracking=TrackerConfig(**data["tracking"]),
            style=RegionStyle(**style),
            limits=VideoLimits(**limits),
            encoder=EncoderConfig(**data["encoder"]),
        )


def encode_covered(reader: VideoReader, detector, settings: FrameSettings, audio, deadline):
    """``(stats, data, content type)``: every frame covered and re-encoded, the audio
    track (``(samples, rate)`` or None) muxed in step. Raises ``VideoError`` or
    ``StreamTimeout``; the writer is aborted on any failure."""
    info = reader.info
    rate, channels = (audio[1], audio[0].shape[1]) if audio is not None else (None, 0)
    writer = VideoWriter(info, settings.encoder, settings.limits.max_output_bytes, rate, channels)
    feed = AudioFeed(writer, audio)
    side = detect_side(
        info.width,
        info.height,
        settings.detect_scale,
        settings.min_detect_side,
        settings.max_detect_side,
    )
    detect = detect_downscaled(detector, side, settings.threshold)

    def write(frame) -> None:
        feed.until(frame.pts, frame.time_base)
        writer.write(frame.pixels, frame.pts, frame.time_base)

    try:
        stats = anonymize_stream(
            reader.frames(), write, detect, settings.tracking, settings.style, deadline
        )
        feed.until(None, None)
        data, content_type = writer.finish()
    except BaseException:
        writer.abort()
        raise
    return stats, data, content_type


class AudioFeed:
    """Writes the audio track in step with the video, so the muxer interleaves them
    without buffering a whole track."""

    def __init__(self, writer: VideoWriter, audio):
        self._writer = writer
        self._samples, self._rate = audio if audio is not None else (None, None)
        self._done = 0

    def until(self, pts, time_base) -> None:
        if self._samples is None:
            return
        total = self._samples.shape[0]
        if pts is None or time_base is None:
            end = total
        else:
            end = min(total, int(float(pts * time_base) * self._rate) + self._rate // 2)
        if end > self._done:
            self._writer.write_audio(self._samples[self._done : end], self._rate)
            self._done = end


def read_wav(data: bytes) -> tuple[np.ndarray, int]:
    """The anonymized track the audio branch produced (our own WAV, float32 samples)."""
    import soundfile

    samples, rate = soundfile.read(io.BytesIO(data), dtype="float32", always_2d=True)
    return samples, int(rate)


# --- the sandbox side ---------------------------------------------------------------------

_DETECTORS: dict = {}  # (path, sha256) -> CenterFace or None, per sandbox worker


class _Coded(Exception):
    """A code the sandbox sends back as is (it accepts only ``ErrorCode`` values)."""

    def __init__(self, code: str):
        super().__init__(code)
        self.code = code


def _detector(model: dict):
    """The face model, loaded once per sandbox worker after its sha256 check."""
    from veil.transforms.media.faces import CenterFace
    from veil.transforms.media.models import ModelError

    key = (str(model["path"]), str(model["sha256"]))
    if key not in _DETECTORS:
        try:
            _DETECTORS[key] = CenterFace.load(Path(key[0]), key[1])
        except (ModelError, OSError):
            _DETECTORS[key] = None
    detector = _DETECTORS[key]
    if detector is None:
        raise _Coded(ErrorCode.VIDEO_MODEL_UNAVAILABLE)
    return detector


def probe_isolated(payload: bytes, params: dict) -> dict:
    """Header checks and the model check only: ``{"has_audio": bool}`` (used when the
    parent must anonymize the audio track before the frames are encoded)."""
    settings = FrameSettings.from_json(params["settings"])
    with VideoReader(payload, settings.limits) as reader:
        _detector(params["model"])
        return {"has_audio": bool(reader.info.has_audio)}


def sanitize_isolated(payload: bytes, params: dict, wav: bytes) -> dict:
    """The whole record in a sandbox worker: ``{"data", "content_type", "stats",
    "has_audio"}``; failures raise coded errors (``VIDEO_*``, ``PRIVACY_STEP_TIMEOUT``).

    ``wav``: the anonymized audio track to mux back (empty: no audio in the output).
    ``params["time_left_s"]``: what is left of the record's time limit.
    """
    settings = FrameSettings.from_json(params["settings"])
    deadline = time.monotonic() + float(params["time_left_s"])
    with VideoReader(payload, settings.limits) as reader:
        detector = _detector(params["model"])
        audio = read_wav(wav) if wav else None
        try:
            stats, data, content_type = encode_covered(reader, detector, settings, audio, deadline)
        except StreamTimeout:
            raise _Coded(ErrorCode.PRIVACY_STEP_TIMEOUT) from None
        return {
            "data": data,
            "content_type": content_type,
            "stats": dataclasses.asdict(stats),
            "has_audio": bool(reader.info.has_audio),
        }


__all__ = [
    "AudioFeed",
    "FrameSettings",
    "VideoError",
    "encode_covered",
    "probe_isolated",
    "read_wav",
    "sanitize_isolated",
]
