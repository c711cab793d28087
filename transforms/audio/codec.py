"""Audio in and out: header checks, bounded decoding, metadata-free re-encoding.

* WAV, FLAC and OGG (Vorbis, Opus) decode through soundfile (libsndfile, bundled in
  its wheel); MP3, M4A/AAC and the audio track of MP4, Matroska or WebM (what the
  video branch hands over) through PyAV (FFmpeg, bundled in its wheel). The container
  is chosen from the magic bytes, never guessed by probing: PyAV only ever opens the
  demuxer named here.
* The header is checked before anything is decoded: sample rate, channel count and
  declared duration (``AudioLimits``). Decoding then reads at most ``max_duration_s``
  worth of frames, whatever the header said, so memory and time stay bounded even for
  a file whose header lies.
* Output is re-encoded from the samples alone, so no tag (ID3, RIFF INFO, Vorbis
  comments, iTunes atoms, cover art) survives: WAV in gives 16-bit PCM WAV out, FLAC
  gives FLAC, and the lossy formats give OGG Vorbis, so outputs stay about as compact
  as their inputs. Sample rate, channel count and length in frames are kept.

Errors carry stable dead-letter codes (``AudioError.code``); their text never holds
content.

Example::

    audio = decode_audio(payload, AudioLimits(max_duration_s=120))
    data, content_type = encode_audio(audio.samples, audio.sample_rate, audio.container)
"""

from __future__ import annotations

import dataclasses
import io
import logging

import numpy as np

from veil.transforms.records import ErrorCode, PrivacyError
from veil.transforms.sandbox import SandboxError, run_isolated

_LOGGER = logging.getLogger(__name__)

SOUNDFILE_CONTAINERS = {"wav": "WAV", "flac": "FLAC", "ogg": "OGG"}
# Our name -> the FFmpeg demuxer PyAV is allowed to open for it.
PYAV_CONTAINERS = {"mp3": "mp3", "m4a": "mp4", "mp4": "mp4", "matroska": "matroska"}
LOSSLESS = ("wav", "flac")
CONTENT_TYPES = {"wav": "audio/wav", "flac": "audio/flac", "ogg": "audio/ogg"}


class AudioError(PrivacyError):
    """A content-free audio failure with a stable dead-letter code (``.code``)."""


@dataclasses.dataclass(frozen=True)
class AudioLimits:
    """What the audio branch accepts; anything else is dead-lettered before decoding."""

    max_duration_s: float = 300.0
    min_sample_rate: int = 8000
    max_sample_rate: int = 96000
    max_channels: int = 2
    # Decoded 16-bit PCM per payload byte: bounds decompression bombs (minutes of
    # silence in a few KB of FLAC); real recordings compress by well under 10x.
    max_expansion: float = 256.0

    def __post_init__(self):
        if self.max_duration_s <= 0 or self.max_channels < 1:
            raise ValueError("audio limits must be positive")
        if not 0 < self.min_sample_rate <= self.max_sample_rate:
            raise ValueError("audio sample-rate limits are inconsistent")


@dataclasses.dataclass(frozen=True)
class Header:
    container: str
    sample_rate: int
    channels: int
    duration_s: float | None  # None: the container does not say


@dataclasses.dataclass
class Audio:
    """Decoded audio: ``samples`` is float32 (frames, channels), in [-1, 1]."""

    samples: np.ndarray
    sample_rate: int
    container: str

    @property
    def duration_s(self) -> float:
        return self.samples.shape[0] / self.sample_rate


def container_of(payload: bytes) -> str | None:
    """The container the magic bytes prove (None: not an audio container we read)."""
    head = payload[:16]
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "wav"
    if head[:4] == b"fLaC":
        return "flac"
    if head[:4] == b"OggS":
        return "ogg"
    if head[:3] == b"ID3":
        return "mp3"
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0 and head[1] & 0x06:
        return "mp3"
    if head[4:8] == b"ftyp":
        return "m4a" if head[8:12] in (b"M4A ", b"M4B ", b"M4P ") else "mp4"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "matroska"
    return None


def check_header(header: Header, limits: AudioLimits) -> None:
    """Raises ``AudioError`` when the header alone shows the audio is out of bounds."""
    if header.channels < 1 or header.sample_rate <= 0:
        raise AudioError(ErrorCode.AUDIO_DECODE_ERROR)
    if not limits.min_sample_rate <= header.sample_rate <= limits.max_sample_rate:
        raise AudioError(ErrorCode.AUDIO_FORMAT_UNSUPPORTED)
    if header.channels > limits.max_channels:
        raise AudioError(ErrorCode.AUDIO_FORMAT_UNSUPPORTED)
    if header.duration_s is not None and header.duration_s > limits.max_duration_s:
        raise AudioError(ErrorCode.AUDIO_TOO_LONG)


# Below this much decoded PCM, no expansion check: short silent clips compress past 256x.
_FLOOR = 32 << 20


def _check_expansion(frames, channels: int, payload_bytes: int, limits: AudioLimits) -> None:
    """``AUDIO_TOO_LARGE`` when the declared length decodes to more than
    ``max_expansion`` times the payload (as 16-bit PCM) and more than 32 MiB."""
    if frames and frames * channels * 2 > max(limits.max_expansion * payload_bytes, _FLOOR):
        raise AudioError(ErrorCode.AUDIO_TOO_LARGE)


def decode_audio(payload: bytes, limits: AudioLimits, sandbox=None) -> Audio:
    """Checks the header, then decodes at most ``limits.max_duration_s`` of audio.

    With a ``veil.transforms.sandbox.Sandbox``, libsndfile and FFmpeg run in its worker
    process (a crash, hang or memory blow-up there is ``DECODER_*``).
    """
    container = container_of(payload)
    if container is None:
        raise AudioError(ErrorCode.AUDIO_FORMAT_UNSUPPORTED)
    try:
        samples, rate = run_isolated(
            sandbox, _decode_container, payload, container, dataclasses.asdict(limits)
        )
    except SandboxError as exc:
        raise AudioError(exc.code) from None
    if not (isinstance(samples, np.ndarray) and samples.ndim == 2 and samples.dtype == np.float32):
        raise AudioError(ErrorCode.AUDIO_DECODE_ERROR)
    audio = Audio(samples, int(rate), container)
    if audio.samples.shape[0] == 0:
        raise AudioError(ErrorCode.AUDIO_DECODE_ERROR)
    samples = audio.samples
    if not np.isfinite(samples).all():
        samples = np.nan_to_num(samples, nan=0.0, posinf=1.0, neginf=-1.0)
    audio.samples = np.clip(samples, -1.0, 1.0, out=samples)
    return audio


def _decode_container(payload: bytes, container: str, limits: dict) -> tuple:
    """``(samples, sample rate)``: the native part, run in a sandbox worker when isolated."""
    bounds = AudioLimits(**limits)
    if container in SOUNDFILE_CONTAINERS:
        audio = _decode_soundfile(payload, container, bounds)
    else:
        audio = _decode_pyav(payload, container, bounds)
    return audio.samples, audio.sample_rate


def _decode_soundfile(payload: bytes, container: str, limits: AudioLimits) -> Audio:
    import soundfile

    try:
        with soundfile.SoundFile(io.BytesIO(payload)) as f:
            frames = f.frames if 0 < f.frames < 2**62 else None
            header = Header(
                container,
                f.samplerate,
                f.channels,
                frames / f.samplerate if frames and f.samplerate > 0 else None,
            )
            check_header(header, limits)
            _check_expansion(frames, f.channels, len(payload), limits)
            cap = int(limits.max_duration_s * f.samplerate)
            samples = f.read(frames=cap + 1, dtype="float32", always_2d=True)
    except AudioError:
        raise
    except Exception:  # libsndfile's messages are not kept
        raise AudioError(ErrorCode.AUDIO_DECODE_ERROR) from None
    if samples.shape[0] > cap:
        raise AudioError(ErrorCode.AUDIO_TOO_LONG)
    if frames and samples.shape[0] < frames:
        raise AudioError(ErrorCode.AUDIO_DECODE_ERROR)  # fewer frames than declared
    if container == "wav" and _wav_truncated(payload):
        raise AudioError(ErrorCode.AUDIO_DECODE_ERROR)
    return Audio(samples, header.sample_rate, container)


def _wav_truncated(payload: bytes) -> bool:
    """True when the WAV data chunk declares more bytes than the payload holds.

    libsndfile quietly reads what is there; a cut-off upload must not pass as a short
    recording. A size of 0 or 0xFFFFFFFF (streaming writers: length unknown) is
    accepted.
    """
    offset = 12
    while offset + 8 <= len(payload):
        chunk, size = (
            payload[offset : offset + 4],
            int.from_bytes(payload[offset + 4 : offset + 8], "little"),
        )
        if chunk == b"data":
            return size not in (0, 0xFFFFFFFF) and size > len(payload) - offset - 8
        offset += 8 + size + (size & 1)
    return True  # no data chunk at all


def _decode_pyav(payload: bytes, container: str, limits: AudioLimits) -> Audio:
    import av
    import av.logging

    av.logging.set_level(av.logging.PANIC)  # FFmpeg's own log lines stay out of ours
    try:
        with av.open(io.BytesIO(payload), mode="r", format=PYAV_CONTAINERS[container]) as box:
            if not box.streams.audio:
                raise AudioError(ErrorCode.AUDIO_DECODE_ERROR)
            stream = box.streams.audio[0]
            ctx = stream.codec_context
            channels = ctx.layout.nb_channels if ctx.layout else 0
            duration = None
            if stream.duration is not None and stream.time_base is not None:
                duration = float(stream.duration * stream.time_base)
            elif box.duration is not None:
                duration = box.duration / av.time_base
            header = Header(container, int(ctx.sample_rate or 0), int(channels), duration)
            check_header(header, limits)
            rate = header.sample_rate
            cap = int(limits.max_duration_s * rate)
            if duration is not None:
                _check_expansion(int(duration * rate), header.channels, len(payload), limits)
            bound = max(limits.max_expansion * len(payload), _FLOOR)
            cap = min(cap, int(bound / (2 * header.channels)))
            resampler = av.AudioResampler(format="fltp", layout=ctx.layout, rate=rate)
            chunks, total = [], 0
            for frame in box.decode(stream):
                for out in resampler.resample(frame):
                    chunk = out.to_ndarray()
                    chunks.append(chunk)
                    total += chunk.shape[1]
                if total > cap:
                    raise AudioError(ErrorCode.AUDIO_TOO_LONG)
            for out in resampler.resample(None):
                chunk = out.to_ndarray()
                chunks.append(chunk)
                total += chunk.shape[1]
            if total > cap:
                raise AudioError(ErrorCode.AUDIO_TOO_LONG)
    except AudioError:
        raise
    except Exception:  # FFmpeg's messages are not kept
        raise AudioError(ErrorCode.AUDIO_DECODE_ERROR) from None
    if not chunks:
        raise AudioError(ErrorCode.AUDIO_DECODE_ERROR)
    samples = np.ascontiguousarray(np.concatenate(chunks, axis=1).T, dtype=np.float32)
    return Audio(samples, rate, container)


def output_container(input_container: str, output: str = "auto") -> str:
    """``auto``: WAV stays WAV, FLAC stays FLAC, lossy formats become OGG Vorbis."""
    if output != "auto":
        return output
    return input_container if input_container in LOSSLESS else "ogg"


def encode_audio(samples: np.ndarray, sample_rate: int, container: str) -> tuple[bytes, str]:
    """Encodes float samples (frames, channels) with no metadata; ``(bytes, MIME type)``."""
    import soundfile

    subtype = {"wav": "PCM_16", "flac": "PCM_16", "ogg": "VORBIS"}[container]
    buffer = io.BytesIO()
    data = np.clip(np.asarray(samples, dtype=np.float32), -1.0, 1.0)
    soundfile.write(
        buffer, data, sample_rate, format=SOUNDFILE_CONTAINERS[container], subtype=subtype
    )
    return buffer.getvalue(), CONTENT_TYPES[container]
