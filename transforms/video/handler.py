"""The video branch's ``PrivacyHandler``: header checks, frame-by-frame face covering
with tracking, the audio track anonymized or dropped, a metadata-free re-encoding.

Per record (``VideoHandler.process``):

1. container and codec allow-lists and header limits before any decoding
   (``VIDEO_UNSUPPORTED_FORMAT``, ``VIDEO_TOO_LARGE``, ``VIDEO_CORRUPT``);
2. the face model must have loaded, else ``VIDEO_MODEL_UNAVAILABLE`` (fail closed);
3. the audio track, per policy (``video.audio``): ``drop`` (default) leaves it out,
   with an audit step ``video.audio`` / ``AUDIO_DROPPED``; ``anonymize`` runs the audio
   branch's ``AudioHandler`` on it (voice change, spoken PII blanked; its dead-letter
   codes, e.g. ``AUDIO_KEY_UNAVAILABLE``, apply) and muxes the result back;
4. frames stream through decode -> CenterFace on downscaled frames every k-th frame
   -> tracker (hold, interpolate, back-fill) -> cover -> encode, so a long video never
   sits in memory whole and every frame is covered;
5. the output is a new container of the same family (MP4, Matroska, WebM) with no
   metadata of the input (title, location, creation time, comments, encoder tags).

With isolation on (``VideoConfig.isolation``, the default; ``--veil_decoder_isolation
off`` turns it off), steps 1, 2, 4 and 5 run in a sandbox worker
(``veil.transforms.video.record.sanitize_isolated``): a crash, hang or memory blow-up in
FFmpeg is ``DECODER_CRASHED`` / ``DECODER_TIMEOUT`` / ``DECODER_MEMORY_LIMIT`` for that
record only. Step 3's anonymization stays in the Beam worker (the voice key never enters
the sandbox): a first sandbox call checks the header and says whether there is a track,
the audio branch anonymizes it (decoding in its own sandbox), and its WAV goes into the
second call, which muxes it back.

Counts only leave the function: ``FACE`` (distinct tracks) in the audit trail and
classification, metrics for frames, detector runs, faces and tracked frames. Box
coordinates never do.

Example::

    videos = items | "Video" >> ApplyPrivacyStep(VideoHandler(policy), time_limit_s=120)
    videos.records, videos.dead_letters
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

from apache_beam.metrics import Metrics

from veil.transforms.classification import Policy, classify_speech
from veil.transforms.fixes import fix_for
from veil.transforms.media.faces import CenterFace
from veil.transforms.media.models import CENTERFACE, ModelError, model_path, verify
from veil.transforms.media.regions import RegionStyle
from veil.transforms.privacy_handler import PrivacyError, PrivacyHandler, StepResult
from veil.transforms.records import AuditStep, ErrorCode, WorkItem
from veil.transforms.sandbox import SandboxConfig, run_isolated, sandbox_for
from veil.transforms.video.container import (
    OUTPUTS,
    EncoderConfig,
    VideoLimits,
    VideoReader,
)
from veil.transforms.video.record import (
    FrameSettings,
    detect_side,
    encode_covered,
    probe_isolated,
    read_wav,
    sanitize_isolated,
)
from veil.transforms.video.stream import StreamTimeout, VideoStats
from veil.transforms.video.tracker import TrackerConfig

_LOGGER = logging.getLogger(__name__)

FACE = "FACE"
NAMESPACE = "veil.video"

#: The sandbox video records run in (``--veil_decoder_isolation on``, the default): FFmpeg
#: and the face model in worker processes of their own, with room for a decoder, an
#: encoder and a few frames of 4K. Its wall-clock and CPU limits follow the record's time
#: limit (``VideoConfig.sandbox``), so the frame loop's own deadline fires first.
VIDEO_DECODERS = SandboxConfig(
    workers=2,
    memory_mb=2048,
    cpu_s=150.0,
    timeout_s=150.0,
    preload=("av", "soundfile", "veil.transforms.video.record"),
)
_SANDBOX_MARGIN_S = 30.0
_CONTENT_TYPES = frozenset(spec[3] for spec in OUTPUTS.values())


@dataclasses.dataclass(frozen=True)
class VideoConfig:
    """How the video branch works (code defaults; faces and audio modes come from the
    policy's ``video`` section).

    Attributes:
        threshold: CenterFace score threshold (low: fail closed).
        detect_scale: frames are downscaled by this factor for detection...
        min_detect_side, max_detect_side: ...but their long side stays within these
            bounds (never upscaled): see ``detect_side``.
        tracking: detection interval, hold and growth (``TrackerConfig``).
        shape, margin: how boxes are covered (the mode is the policy's).
        limits: allow-lists and header, decode and output limits.
        encoder: output codec settings.
        time_limit_s: the frame loop stops once a record has run this long
            (``PRIVACY_STEP_TIMEOUT``); the step's own limit is checked afterwards too.
        model_path, model_sha256: a production detector with CenterFace's interface.
        audio: the audio branch's settings for ``video.audio: anonymize``.
        isolation: FFmpeg and the face detector run in a sandbox worker pool
            (``veil.transforms.sandbox``; a crash, hang or memory blow-up there is
            ``DECODER_*``); None: in the Beam worker's own process.
    """

    threshold: float = 0.2
    detect_scale: float = 0.75
    min_detect_side: int = 480
    max_detect_side: int = 1920
    tracking: TrackerConfig = TrackerConfig()
    shape: str = "ellipse"
    margin: float = 0.2
    limits: VideoLimits = VideoLimits()
    encoder: EncoderConfig = EncoderConfig()
    time_limit_s: float = 120.0
    model_path: str | None = None
    model_sha256: str | None = None
    audio: object = None  # veil.transforms.audio.AudioConfig, None: its defaults
    isolation: SandboxConfig | None = VIDEO_DECODERS

    def __post_init__(self):
        if not 0.0 < self.threshold < 1.0:
            raise ValueError("threshold must be in (0, 1)")
        if not 0.1 <= self.detect_scale <= 1.0:
            raise ValueError("detect_scale must be in [0.1, 1]")
        if not 64 <= self.min_detect_side <= self.max_detect_side:
            raise ValueError("detect sides must satisfy 64 <= min <= max")
        if self.model_path and not self.model_sha256:
            raise ValueError("a configured face model needs its sha256")
        if self.time_limit_s <= 0:
            raise ValueError("time_limit_s must be positive")
        RegionStyle(shape=self.shape, margin=self.margin)  # validates both

    def detect_side(self, width: int, height: int) -> int:
        """The long side frames are scaled to for detection.

        Relative to the frame (small faces stay detectable in large frames), with a
        floor (small frames are barely scaled down) and a cap (time stays bounded).
        """
        return detect_side(
            width, height, self.detect_scale, self.min_detect_side, self.max_detect_side
        )

    def sandbox(self) -> SandboxConfig | None:
        """The isolation pool, its limits stretched past the record's time limit."""
        base = self.isolation
        if base is None or not base.enabled:
            return None
        limit = min(3600.0, max(base.timeout_s, self.time_limit_s + _SANDBOX_MARGIN_S))
        return dataclasses.replace(base, timeout_s=limit, cpu_s=max(base.cpu_s, limit))


@dataclasses.dataclass
class VideoModel:
    detector: CenterFace | None  # in-process only; a sandbox worker loads its own
    audio_handler: object | None
    audio_model: object | None
    versions: dict
    reported: bool = False
    sandbox: object | None = None  # veil.transforms.sandbox.Sandbox, None: in process
    model_ref: dict | None = None  # {"path", "sha256"} for the sandbox workers


class VideoHandler(PrivacyHandler[VideoModel]):
    """Covers faces on every frame, handles the audio track and strips metadata in
    ``video`` records (see the module).

    Args:
        policy: the validated policy (``video`` section, classification rules, and the
            text section when the audio track's spoken PII is anonymized).
        config: detector, tracker, limits and encoder settings.

    Example::

        videos = routed.branches["video"] | "Video" >> ApplyPrivacyStep(
            VideoHandler(policy, VideoConfig(detect_scale=1.0)), time_limit_s=120
        )
        videos.records | PublishSanitized(topics, policy.version)
        videos.dead_letters | PublishDeadLetters(topics, policy.version)
    """

    stage = "video"

    def __init__(self, policy: Policy, config: VideoConfig = VideoConfig()):
        self._policy = policy
        self._config = config
        self._style = RegionStyle(mode=policy.video.faces, shape=config.shape, margin=config.margin)

    def share_key(self) -> str:
        c = self._config
        key = f"video:{c.model_path or CENTERFACE.name}:audio={self._policy.video.audio}"
        if c.sandbox() is None:
            key += ":in-process"
        if self._policy.video.audio == "anonymize":  # the voice key is part of the model
            key += "|" + self._audio_handler().share_key()
        return key

    def _audio_handler(self):
        from veil.transforms.audio import AudioConfig, AudioHandler

        base = self._config.audio or AudioConfig()
        # WAV out: lossless hand-over; the video's own audio encoder compresses it.
        return AudioHandler(self._policy, dataclasses.replace(base, output="wav"))

    def load(self) -> VideoModel:
        config = self._config
        sandbox = sandbox_for(config.sandbox())
        if sandbox is not None:
            sandbox.spawn()  # its processes start while the models below load
        versions = {}
        if config.model_path:
            path, sha256 = Path(config.model_path), config.model_sha256
            name = f"configured-sha256:{sha256[:12]}"
        else:
            path, sha256, name = None, CENTERFACE.sha256, CenterFace.version
        detector = model_ref = None
        try:
            path = path or model_path(CENTERFACE)
            if sandbox is None:
                detector = CenterFace.load(path, sha256)
            else:  # the sandbox workers load (and check) it themselves, on first use
                verify(path, sha256)
                model_ref = {"path": str(path), "sha256": sha256}
            versions["face-detector"] = name
        except (ModelError, OSError):
            versions["face-detector"] = "unavailable"  # reported on the first video record
        if sandbox is not None and model_ref is None:
            # Header checks still come first in the worker; the model check then fails.
            model_ref = {"path": str(path or ""), "sha256": sha256}
        versions["face-tracker"] = "veil-hold-interpolate-1"
        audio_handler = audio_model = None
        if self._policy.video.audio == "anonymize":
            audio_handler = self._audio_handler()
            audio_model = audio_handler.load()
            versions.update(audio_handler.detectors(audio_model))
        if sandbox is not None:
            sandbox.warm()
        _LOGGER.info("Video handler loaded: %s", sorted(versions))
        return VideoModel(
            detector, audio_handler, audio_model, versions, sandbox=sandbox, model_ref=model_ref
        )

    def process(self, model: VideoModel, item: WorkItem) -> StepResult:
        deadline = time.monotonic() + self._config.time_limit_s
        # This handler's pool (handlers that share a model may differ in their limits).
        sandbox = sandbox_for(self._config.sandbox())
        steps: list = []  # the audio track's audit steps
        try:
            if sandbox is None:
                counts, stats, data, content_type = self._in_process(model, item, deadline, steps)
            else:
                counts, stats, data, content_type = self._isolated(
                    sandbox, model, item, deadline, steps
                )
        except PrivacyError as exc:
            if exc.code == ErrorCode.VIDEO_MODEL_UNAVAILABLE and not model.reported:
                model.reported = True
                _LOGGER.error(
                    "Video branch not ready: video records are dead-lettered %s. Fix: %s",
                    ErrorCode.VIDEO_MODEL_UNAVAILABLE,
                    fix_for(ErrorCode.VIDEO_MODEL_UNAVAILABLE),
                )
            raise
        if stats.faces:
            counts[FACE] = counts.get(FACE, 0) + stats.faces
        _metrics(stats)
        counts = dict(sorted(counts.items()))
        return StepResult(
            payload=data,
            content_type=content_type,
            entity_counts=counts,
            # An anonymized track whose speech could not be transcribed reliably
            # quarantines the video as it would the audio record (fail closed).
            classification=classify_speech(counts, self._policy),
            audit_steps=tuple(steps),
        )

    def _in_process(self, model: VideoModel, item: WorkItem, deadline: float, steps: list):
        """``--veil_decoder_isolation off``: FFmpeg in the Beam worker's own process.

        ``VideoError`` is a ``PrivacyError``: the step dead-letters its code."""
        reader = VideoReader(item.record["payload"], self._config.limits)
        with reader:
            if model.detector is None:
                raise PrivacyError(ErrorCode.VIDEO_MODEL_UNAVAILABLE)
            counts, wav = self._audio(model, item, reader.info.has_audio, steps)
            audio = read_wav(wav) if wav else None
            try:
                stats, data, content_type = encode_covered(
                    reader, model.detector, self._settings(), audio, deadline
                )
            except StreamTimeout:
                raise PrivacyError(ErrorCode.PRIVACY_STEP_TIMEOUT) from None
        return counts, stats, data, content_type

    def _isolated(self, sandbox, model: VideoModel, item: WorkItem, deadline: float, steps: list):
        """The record's FFmpeg and detector work in a sandbox worker; the audio track's
        anonymization (voice key, transcriber) stays here and only its WAV goes in."""
        if model.model_ref is None:  # a model loaded for in-process use: fail closed
            raise PrivacyError(ErrorCode.VIDEO_MODEL_UNAVAILABLE)
        payload = item.record["payload"]
        params = {"settings": self._settings().to_json(), "model": model.model_ref}
        counts, wav = {}, b""
        if model.audio_handler is not None:  # the track is needed before the frames
            probe = _sandboxed(sandbox, probe_isolated, payload, params)
            counts, wav = self._audio(model, item, probe.get("has_audio") is True, steps)
        params["time_left_s"] = max(0.0, deadline - time.monotonic())
        reply = _sandboxed(sandbox, sanitize_isolated, payload, params, wav)
        stats, data, content_type = _checked(reply, self._config.limits.max_output_bytes)
        if model.audio_handler is None and reply.get("has_audio") is True:
            steps.append(_dropped())
        return counts, stats, data, content_type

    def _settings(self) -> FrameSettings:
        c = self._config
        return FrameSettings(
            threshold=c.threshold,
            detect_scale=c.detect_scale,
            min_detect_side=c.min_detect_side,
            max_detect_side=c.max_detect_side,
            tracking=c.tracking,
            style=self._style,
            limits=c.limits,
            encoder=c.encoder,
        )

    def _audio(self, model: VideoModel, item: WorkItem, has_audio: bool, steps: list):
        """``(entity counts, anonymized WAV bytes or b"")`` for the audio track, per policy;
        its audit steps go to ``steps``."""
        if not has_audio:
            return {}, b""
        if model.audio_handler is None:
            steps.append(_dropped())
            return {}, b""
        # The audio branch reads the record and returns the track's result.
        track = model.audio_handler.process(model.audio_model, item)
        steps.extend(track.audit_steps)
        steps.append(AuditStep(stage="video.audio", action="AUDIO_ANONYMIZED"))
        return dict(track.entity_counts), track.payload


def _dropped() -> AuditStep:
    return AuditStep(stage="video.audio", action="AUDIO_DROPPED", reason_code="POLICY")


def _sandboxed(sandbox, fn, *args) -> dict:
    """``fn(*args)`` in the sandbox; its failures become the record's dead-letter code
    (``DECODER_*`` for a lost worker, the worker's own ``VIDEO_*`` codes as they are):
    ``SandboxError`` is a ``PrivacyError``."""
    reply = run_isolated(sandbox, fn, *args)
    if not isinstance(reply, dict):
        raise PrivacyError(ErrorCode.DECODER_FAILED)
    return reply


_STAT_FIELDS = tuple(f.name for f in dataclasses.fields(VideoStats))


def _checked(reply: dict, max_output_bytes: int):
    """The worker's reply, trusted no further than its types and bounds."""
    data, content_type, raw = reply.get("data"), reply.get("content_type"), reply.get("stats")
    if not isinstance(data, bytes) or not 0 < len(data) <= max_output_bytes:
        raise PrivacyError(ErrorCode.DECODER_FAILED)
    if content_type not in _CONTENT_TYPES or not isinstance(raw, dict):
        raise PrivacyError(ErrorCode.DECODER_FAILED)
    values = {name: raw.get(name) for name in _STAT_FIELDS}
    if not all(type(v) is int and v >= 0 for v in values.values()):
        raise PrivacyError(ErrorCode.DECODER_FAILED)
    return VideoStats(**values), data, content_type


def _metrics(stats) -> None:
    Metrics.counter(NAMESPACE, "frames_processed").inc(stats.frames)
    Metrics.counter(NAMESPACE, "detector_runs").inc(stats.detector_runs)
    Metrics.counter(NAMESPACE, "frames_covered_by_tracking").inc(stats.frames_tracked)
    Metrics.counter(NAMESPACE, "frames_with_faces").inc(stats.frames_with_faces)
    Metrics.distribution(NAMESPACE, "faces_per_record").update(stats.faces)
