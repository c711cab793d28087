"""Video in and out: header checks before decoding, frame-by-frame decoding, and a
metadata-free re-encoding into the same container.

* Containers are allow-listed by magic bytes (``ftyp``: MP4/QuickTime; EBML:
  Matroska/WebM; ``RIFF....AVI ``: AVI) and PyAV only ever opens the demuxer named
  here, never a probed one.
  Video codecs are allow-listed too (``VIDEO_CODECS``). Anything else is
  ``VIDEO_UNSUPPORTED_FORMAT``.
* Width, height, frame count and duration come from the container header and are
  checked against ``VideoLimits`` before a frame is decoded (``VIDEO_TOO_LARGE``).
  Decoding then counts frames and checks every frame's size against the header, so a
  header that lies costs at most ``max_frames`` frames of work. A file that cannot be
  parsed, fails to decode, changes size mid-stream or holds fewer frames than its
  header declares (cut off) is ``VIDEO_CORRUPT``.
* Frames are yielded one at a time (``VideoReader.frames``): a long video never sits
  in memory whole.
* ``VideoWriter`` builds a new container from the pixels (and, if given, samples)
  alone: no title, location, creation time, comment or encoder tag of the input is
  copied, and FFmpeg's own ``encoder`` tag is suppressed (``fflags=+bitexact``).
  MP4/QuickTime and Matroska give H.264 (libx264) in MP4 / Matroska with AAC audio;
  WebM gives VP8 (libvpx) with Opus audio, so a WebM stays a valid WebM; AVI gives
  MPEG-4 Part 2 with 16-bit PCM audio (what AVI players expect).

Errors carry stable dead-letter codes (``VideoError.code``); their text never holds
content, and FFmpeg's log lines are silenced.

Example::

    with VideoReader(payload, VideoLimits()) as reader:
        writer = VideoWriter(reader.info, EncoderConfig())
        for frame in reader.frames():
            writer.write(frame.pixels, frame.pts, frame.time_base)
        data, content_type = writer.finish()
"""

from __future__ import annotations

import dataclasses
import io
from fractions import Fraction

import numpy as np

from veil.transforms.records import ErrorCode, PrivacyError

# Our name -> the FFmpeg demuxer PyAV is allowed to open for it.
DEMUXERS = {"mp4": "mp4", "matroska": "matroska", "avi": "avi"}
VIDEO_CODECS = ("h264", "hevc", "mpeg4", "vp8", "vp9", "av1", "mjpeg")
# Output container -> (FFmpeg muxer, video encoder, audio encoder, MIME type).
OUTPUTS = {
    "mp4": ("mp4", "libx264", "aac", "video/mp4"),
    "matroska": ("matroska", "libx264", "aac", "video/x-matroska"),
    "webm": ("webm", "libvpx", "libopus", "video/webm"),
    "avi": ("avi", "mpeg4", "pcm_s16le", "video/x-msvideo"),
}


class VideoError(PrivacyError):
    """A content-free video failure with a stable dead-letter code (``.code``)."""


@dataclasses.dataclass(frozen=True)
class VideoLimits:
    """What the video branch accepts; anything else is dead-lettered before decoding.

    Attributes:
        max_bytes: payload size (the pipeline's ``--veil_max_payload_bytes`` applies
            first; this is the video branch's own bound).
        max_output_bytes: the sanitized video must fit in one Kafka message.
        max_width, max_height, max_pixels: per frame, from the header.
        max_frames: frames decoded (header and stream).
        max_duration_s: declared duration.
        containers, codecs: allow-lists.
    """

    max_bytes: int = 64 * 1024 * 1024
    max_output_bytes: int = 15 * 1024 * 1024
    max_width: int = 3840
    max_height: int = 2160
    max_pixels: int = 3840 * 2160
    max_frames: int = 18_000
    max_duration_s: float = 600.0
    containers: tuple = tuple(DEMUXERS)
    codecs: tuple = VIDEO_CODECS

    def __post_init__(self):
        numbers = (self.max_bytes, self.max_output_bytes, self.max_width, self.max_height)
        if min(numbers + (self.max_pixels, self.max_frames)) <= 0 or self.max_duration_s <= 0:
            raise ValueError("video limits must be positive")
        if not set(self.containers) <= set(DEMUXERS):
            raise ValueError(f"video containers must be among {tuple(DEMUXERS)}")
        if not set(self.codecs) <= set(VIDEO_CODECS):
            raise ValueError(f"video codecs must be among {VIDEO_CODECS}")


@dataclasses.dataclass(frozen=True)
class EncoderConfig:
    """How sanitized video is encoded.

    Attributes:
        preset: libx264 preset (speed against size).
        crf: libx264 constant rate factor (quality; lower is better).
        bitrate: target bit rate for the encoders without a quality mode (VP8 for
            WebM, MPEG-4 Part 2 for AVI).
        audio_bitrate: AAC/Opus bit rate when the audio track is kept.
        threads: encoder and decoder threads per record (1: one core per record,
            Beam's parallelism supplies the rest).
    """

    preset: str = "veryfast"
    crf: int = 20
    bitrate: int = 4_000_000
    audio_bitrate: int = 96_000
    threads: int = 1

    def __post_init__(self):
        if not 0 <= self.crf <= 51:
            raise ValueError("crf must be in [0, 51]")
        if not 1 <= self.threads <= 16:
            raise ValueError("threads must be in [1, 16]")


@dataclasses.dataclass(frozen=True)
class VideoInfo:
    """What the header says (checked against the limits before decoding)."""

    container: str  # "mp4", "matroska" or "webm" (the output container)
    codec: str
    width: int
    height: int
    frames: int | None  # None: the container does not say
    duration_s: float | None
    rate: Fraction
    time_base: Fraction
    has_audio: bool


@dataclasses.dataclass
class Frame:
    pixels: np.ndarray  # uint8 BGR, height x width x 3
    pts: int | None
    time_base: Fraction | None


def container_of(payload: bytes) -> str | None:
    """The container the magic bytes prove (None: not one the video branch reads)."""
    head = payload[:16]
    if head[4:8] == b"ftyp":
        return "mp4"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "matroska"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "avi"
    return None


def _quiet() -> None:
    import av.logging

    av.logging.set_level(av.logging.PANIC)  # FFmpeg's own log lines stay out of ours


class VideoReader:
    """Opens a payload after the magic-byte check and reads its header (see module)."""

    def __init__(self, payload: bytes, limits: VideoLimits = VideoLimits()):
        import av

        _quiet()
        if len(payload) > limits.max_bytes:
            raise VideoError(ErrorCode.VIDEO_TOO_LARGE)
        kind = container_of(payload)
        if kind is None or kind not in limits.containers:
            raise VideoError(ErrorCode.VIDEO_UNSUPPORTED_FORMAT)
        self._limits = limits
        try:
            self._box = av.open(io.BytesIO(payload), mode="r", format=DEMUXERS[kind])
        except Exception:  # FFmpeg's messages are not kept
            raise VideoError(ErrorCode.VIDEO_CORRUPT) from None
        try:
            self.info = self._header(kind)
        except Exception:
            self.close()
            raise

    def _header(self, kind: str) -> VideoInfo:
        box, limits = self._box, self._limits
        if not box.streams.video:
            raise VideoError(ErrorCode.VIDEO_UNSUPPORTED_FORMAT)
        stream = box.streams.video[0]
        ctx = stream.codec_context
        codec = ctx.name if ctx is not None else None
        if codec not in limits.codecs:
            raise VideoError(ErrorCode.VIDEO_UNSUPPORTED_FORMAT)
        width, height = int(ctx.width or 0), int(ctx.height or 0)
        if width <= 0 or height <= 0:
            raise VideoError(ErrorCode.VIDEO_CORRUPT)
        if width > limits.max_width or height > limits.max_height:
            raise VideoError(ErrorCode.VIDEO_TOO_LARGE)
        if width * height > limits.max_pixels:
            raise VideoError(ErrorCode.VIDEO_TOO_LARGE)
        frames = int(stream.frames) if stream.frames and stream.frames > 0 else None
        if frames is not None and frames > limits.max_frames:
            raise VideoError(ErrorCode.VIDEO_TOO_LARGE)
        duration = _duration(box, stream)
        if duration is not None and duration > limits.max_duration_s:
            raise VideoError(ErrorCode.VIDEO_TOO_LARGE)
        rate = stream.average_rate or stream.guessed_rate or Fraction(25)
        doctype = "webm" if kind == "matroska" and _is_webm(box) else kind
        return VideoInfo(
            container=doctype,
            codec=codec,
            width=width,
            height=height,
            frames=frames,
            duration_s=duration,
            rate=Fraction(rate),
            time_base=Fraction(stream.time_base) if stream.time_base else Fraction(1, 90000),
            has_audio=bool(box.streams.audio),
        )

    def frames(self):
        """Yields ``Frame``s one at a time; raises ``VideoError`` on any problem."""
        limits, info = self._limits, self.info
        stream = self._box.streams.video[0]
        stream.codec_context.thread_count = 1
        count = 0
        try:
            for frame in self._box.decode(stream):
                count += 1
                if count > limits.max_frames:
                    raise VideoError(ErrorCode.VIDEO_TOO_LARGE)
                if (frame.width, frame.height) != (info.width, info.height):
                    raise VideoError(ErrorCode.VIDEO_CORRUPT)
                pixels = frame.to_ndarray(format="bgr24")
                yield Frame(pixels, frame.pts, frame.time_base)
        except VideoError:
            raise
        except Exception:  # FFmpeg's messages are not kept
            raise VideoError(ErrorCode.VIDEO_CORRUPT) from None
        # A cut-off file is corrupt, not short; so is one without a single frame.
        if count == 0 or (info.frames is not None and count < info.frames):
            raise VideoError(ErrorCode.VIDEO_CORRUPT)

    def close(self) -> None:
        self._box.close()

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _duration(box, stream) -> float | None:
    import av

    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if box.duration is not None:
        return box.duration / av.time_base
    return None


def _is_webm(box) -> bool:
    """WebM is Matroska restricted to VP8/VP9/AV1 and Vorbis/Opus; FFmpeg's matroska
    demuxer reads both, so the codecs decide which output keeps the input's type."""
    video = {s.codec_context.name for s in box.streams.video}
    audio = {s.codec_context.name for s in box.streams.audio}
    return video <= {"vp8", "vp9", "av1"} and audio <= {"vorbis", "opus"}


class VideoWriter:
    """Encodes frames (and optionally one audio track) into a fresh container.

    Nothing of the input's container is copied: only dimensions, frame timing and the
    samples handed over. Output larger than ``max_output_bytes`` raises
    ``VIDEO_TOO_LARGE`` as soon as it is exceeded.
    """

    def __init__(
        self,
        info: VideoInfo,
        config: EncoderConfig = EncoderConfig(),
        max_output_bytes: int = VideoLimits().max_output_bytes,
        audio_rate: int | None = None,
        audio_channels: int = 0,
    ):
        import av

        _quiet()
        muxer, video_codec, audio_codec, self.content_type = OUTPUTS[info.container]
        self._buffer = io.BytesIO()
        self._max = max_output_bytes
        # Even sides for 4:2:0 chroma: an odd last row or column is cut (never shown
        # content beyond one pixel).
        self.width, self.height = info.width & ~1, info.height & ~1
        if self.width == 0 or self.height == 0:
            raise VideoError(ErrorCode.VIDEO_UNSUPPORTED_FORMAT)
        try:
            self._box = av.open(
                self._buffer, mode="w", format=muxer, options={"fflags": "+bitexact"}
            )
            options = {
                "libx264": {"preset": config.preset, "crf": str(config.crf)},
                "libvpx": {"deadline": "realtime", "cpu-used": "8"},
            }.get(video_codec, {})
            stream = self._box.add_stream(video_codec, rate=info.rate, options=options)
            stream.width, stream.height, stream.pix_fmt = self.width, self.height, "yuv420p"
            stream.time_base = info.time_base
            stream.codec_context.thread_count = config.threads
            if video_codec != "libx264":
                stream.codec_context.bit_rate = config.bitrate
            self._video = stream
            self._audio = None
            if audio_rate:
                audio = self._box.add_stream(audio_codec, rate=_audio_rate(audio_codec, audio_rate))
                audio.layout = "stereo" if audio_channels >= 2 else "mono"
                audio.codec_context.bit_rate = config.audio_bitrate
                self._audio = audio
        except VideoError:
            raise
        except Exception:
            raise VideoError(ErrorCode.VIDEO_ENCODE_ERROR) from None
        self._audio_resampler = None
        self._audio_pts = 0
        self.frames_written = 0

    def write(self, pixels: np.ndarray, pts: int | None, time_base: Fraction | None) -> None:
        import av

        try:
            frame = av.VideoFrame.from_ndarray(
                np.ascontiguousarray(pixels[: self.height, : self.width]), format="bgr24"
            )
            if pts is not None:
                frame.pts, frame.time_base = pts, time_base
            self._mux(self._video.encode(frame))
        except VideoError:
            raise
        except Exception:
            raise VideoError(ErrorCode.VIDEO_ENCODE_ERROR) from None
        self.frames_written += 1

    def write_audio(self, samples: np.ndarray, rate: int) -> None:
        """Appends float32 samples (frames, channels) in [-1, 1] to the audio track."""
        import av

        if self._audio is None or samples.shape[0] == 0:
            return
        try:
            planar = np.ascontiguousarray(samples.T, dtype=np.float32)
            layout = "stereo" if planar.shape[0] >= 2 else "mono"
            frame = av.AudioFrame.from_ndarray(planar[:2], format="fltp", layout=layout)
            frame.sample_rate = rate
            frame.pts, frame.time_base = self._audio_pts, Fraction(1, rate)
            self._audio_pts += samples.shape[0]
            if self._audio_resampler is None:
                self._audio_resampler = av.AudioResampler(
                    format=self._audio.codec_context.format,
                    layout=self._audio.layout,
                    rate=self._audio.codec_context.sample_rate,
                    frame_size=self._audio.codec_context.frame_size or None,
                )
            for out in self._audio_resampler.resample(frame):
                self._mux(self._audio.encode(out))
        except VideoError:
            raise
        except Exception:
            raise VideoError(ErrorCode.VIDEO_ENCODE_ERROR) from None

    def _mux(self, packets) -> None:
        for packet in packets:
            self._box.mux(packet)
        if self._buffer.tell() > self._max:
            raise VideoError(ErrorCode.VIDEO_TOO_LARGE)

    def finish(self) -> tuple[bytes, str]:
        """Flushes the encoders and closes the container: ``(bytes, MIME type)``."""
        try:
            if self._audio is not None and self._audio_resampler is not None:
                for out in self._audio_resampler.resample(None):
                    self._mux(self._audio.encode(out))
                self._mux(self._audio.encode(None))
            self._mux(self._video.encode(None))
            self._box.close()
        except VideoError:
            raise
        except Exception:
            raise VideoError(ErrorCode.VIDEO_ENCODE_ERROR) from None
        data = self._buffer.getvalue()
        if len(data) > self._max:
            raise VideoError(ErrorCode.VIDEO_TOO_LARGE)
        return data, self.content_type

    def abort(self) -> None:
        try:
            self._box.close()
        except Exception:  # already failed; nothing of it is kept
            pass


def _audio_rate(codec: str, rate: int) -> int:
    """Opus encodes at 48 kHz only; AAC keeps the track's rate."""
    return 48000 if codec == "libopus" else rate
