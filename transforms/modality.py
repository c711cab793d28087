"""A modality is one registration: a ``ModalitySpec`` that routing, the graph builder and
the topic layout all read.

A spec names the modality, how to recognize its records (magic-byte sniffers, MIME
types, a content check of last resort), how to build its privacy handler, and which
time limit its step runs under. ``veil.transforms.routing`` sniffs with every registered
spec, ``veil.pipelines.sanitize`` builds one branch per registered spec and
``veil.pipelines.topics`` creates one sanitized and one quarantine topic per spec.

The built-in modalities (structured, text, image, audio, video) are registered below, in
sniffing order; a handler factory imports its package only when the graph is built, so
routing never loads OpenCV, librosa or FFmpeg.

Example (see ``docs/extending.md``)::

    register(
        ModalitySpec(
            name="pdf",
            handler_factory=lambda policy, settings: PdfHandler(policy),
            sniffers=(lambda head: head.startswith(b"%PDF-"),),
            content_types=("application/pdf",),
        )
    )
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable, Iterable

from veil.transforms.records import Modality

#: ``ModalitySpec.time_limit`` values naming a configured limit rather than seconds.
STEP_LIMIT = "step"  # --veil_step_time_limit_s
MEDIA_LIMIT = "media"  # --veil_audio_time_limit_s (long recordings and videos)

SNIFF_BYTES = 16  # sniffers see this many leading bytes
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


@dataclasses.dataclass(frozen=True)
class HandlerSettings:
    """Worker-side settings a handler factory may need, resolved from the pipeline options.

    Attributes:
        isolation: the sandbox native decoders run in (``veil.transforms.sandbox``), or
            None to decode in the worker's own process (``--veil_decoder_isolation off``).
        audio_key_file: the voice key file (``--veil_audio_key_file``), or None for
            ``$VEIL_AUDIO_KEY_FILE`` on the worker.
    """

    isolation: object | None = None
    audio_key_file: str | None = None


@dataclasses.dataclass(frozen=True)
class ModalitySpec:
    """Everything Veil needs to know about one modality.

    Attributes:
        name: lower-case identifier; the branch, the step's stage and metrics namespace
            (``veil.<name>``) and the topics ``<prefix>.sanitized.<name>`` /
            ``<prefix>.quarantine.<name>``.
        handler_factory: ``(policy, HandlerSettings) -> PrivacyHandler``; called when the
            graph is built (models load later, on the worker).
        sniffers: predicates over a payload's first ``SNIFF_BYTES`` bytes; one that
            answers True proves the modality (a declared modality that contradicts it
            is dead-lettered ``MODALITY_MISMATCH``). Checked in registration order.
        content_types: MIME types that route here when no sniffer matched: exact
            (``"application/json"``), prefixes ending in ``/`` (``"image/"``) or
            structured-syntax suffixes starting with ``+`` (``"+json"``). Exact and
            suffix matches win over prefixes.
        content_check: last resort for records with neither a signature nor a known MIME
            type: a predicate over the whole payload (e.g. "parses as JSON").
        time_limit: seconds, or ``STEP_LIMIT`` / ``MEDIA_LIMIT`` to use the configured
            per-record step or media limit.
        preempt: run the handler in a child process killed at the time limit
            (``veil.transforms.step_worker``) when ``--veil_preempt_steps`` is on; for
            in-process Python code a record could stall (regexes, user recognizers).
    """

    name: str
    handler_factory: Callable
    sniffers: tuple = ()
    content_types: tuple = ()
    content_check: Callable[[bytes], bool] | None = None
    time_limit: float | str = STEP_LIMIT
    preempt: bool = False

    def __post_init__(self):
        if not _NAME.match(self.name):
            raise ValueError(f"modality name {self.name!r}: lower-case letters, digits, _")
        if not callable(self.handler_factory):
            raise TypeError(f"modality {self.name}: handler_factory must be callable")
        object.__setattr__(self, "sniffers", tuple(self.sniffers))
        object.__setattr__(self, "content_types", tuple(t.lower() for t in self.content_types))
        if isinstance(self.time_limit, str) and self.time_limit not in (STEP_LIMIT, MEDIA_LIMIT):
            raise ValueError(f"modality {self.name}: time_limit {self.time_limit!r}")

    def limit_s(self, step_limit_s: float, media_limit_s: float) -> float:
        """This modality's per-record time limit, given the configured ones."""
        if self.time_limit == STEP_LIMIT:
            return step_limit_s
        if self.time_limit == MEDIA_LIMIT:
            return media_limit_s
        return float(self.time_limit)

    def handler(self, policy, settings: HandlerSettings | None = None):
        """Builds this modality's ``PrivacyHandler`` (its stage is the modality name)."""
        handler = self.handler_factory(policy, settings or HandlerSettings())
        if getattr(handler, "stage", None) in (None, "privacy"):
            handler.stage = self.name
        return handler


class Modalities:
    """The registered ``ModalitySpec``s, in registration (= sniffing) order.

    What routing needs (sniffers, MIME types, content checks) is read from the specs a
    transform is built with and pickled into it, so a modality registered in the
    driver also routes on remote workers.
    """

    def __init__(self, specs: Iterable[ModalitySpec] = ()):
        self._specs: dict[str, ModalitySpec] = {}
        for spec in specs:
            self.register(spec)

    def register(self, spec: ModalitySpec, replace: bool = False) -> ModalitySpec:
        if spec.name in self._specs and not replace:
            raise ValueError(f"modality {spec.name!r} is already registered")
        self._specs[spec.name] = spec
        return spec

    def unregister(self, name: str) -> None:
        self._specs.pop(name, None)

    def names(self) -> tuple[str, ...]:
        return tuple(self._specs)

    def specs(self, names: Iterable[str] | None = None) -> tuple[ModalitySpec, ...]:
        """All specs, or those named (in registration order); unknown names raise."""
        if names is None:
            return tuple(self._specs.values())
        wanted = set(names)
        unknown = wanted - set(self._specs)
        if unknown:
            raise KeyError(f"unregistered modalities: {sorted(unknown)}")
        return tuple(s for s in self._specs.values() if s.name in wanted)

    def __getitem__(self, name: str) -> ModalitySpec:
        return self._specs[name]

    def __contains__(self, name: object) -> bool:
        return name in self._specs


def sniff(specs: Iterable[ModalitySpec], payload: bytes) -> str | None:
    """The modality whose signature ``payload`` starts with, or None."""
    head = payload[:SNIFF_BYTES]
    for spec in specs:
        if any(sniffer(head) for sniffer in spec.sniffers):
            return spec.name
    return None


def by_content_type(specs: Iterable[ModalitySpec], content_type: str) -> str | None:
    """The modality a MIME type names (exact or ``+suffix`` first, then ``prefix/``)."""
    mime = (content_type or "").split(";", 1)[0].strip().lower()
    if not mime:
        return None
    specs = tuple(specs)
    for spec in specs:
        for pattern in spec.content_types:
            if mime == pattern or (pattern.startswith("+") and mime.endswith(pattern)):
                return spec.name
    for spec in specs:
        for pattern in spec.content_types:
            if pattern.endswith("/") and mime.startswith(pattern):
                return spec.name
    return None


def by_content(specs: Iterable[ModalitySpec], payload: bytes) -> str | None:
    """The first modality whose content check accepts ``payload``, or None."""
    for spec in specs:
        if spec.content_check is not None and spec.content_check(payload):
            return spec.name
    return None


# --- the built-in modalities --------------------------------------------------------------


def _utf16_bom(head: bytes) -> bool:
    # UTF-16 text with a byte-order mark (FF FE also reads as an MPEG Layer I frame sync,
    # which no encoder in use writes): text, never audio. Checked before audio's sniffers.
    return head[:2] in (b"\xff\xfe", b"\xfe\xff")


def _looks_like_text(payload: bytes) -> bool:
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return not any(ord(c) < 32 and c not in "\t\n\r\f" for c in text[:4096])


def _looks_like_json(payload: bytes) -> bool:
    if payload.lstrip()[:1] not in (b"{", b"["):
        return False
    try:
        json.loads(payload)
    except (ValueError, RecursionError):
        return False
    return True


def _image_magic(head: bytes) -> bool:
    return (
        head.startswith((b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n"))
        or head[:6] in (b"GIF87a", b"GIF89a")
        # BMP: "BM", file size, then four reserved zero bytes
        or (head[:2] == b"BM" and len(head) >= 14 and head[6:10] == b"\x00\x00\x00\x00")
        or head[:4] in (b"II*\x00", b"MM\x00*")
        or (head[:4] == b"RIFF" and head[8:12] == b"WEBP")
    )


def _audio_magic(head: bytes) -> bool:
    return (
        (head[:4] == b"RIFF" and head[8:12] == b"WAVE")
        or head[:4] in (b"fLaC", b"OggS")
        or head[:3] == b"ID3"
        # MPEG audio frame sync with a layer set
        or (len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0 and head[1] & 0x06)
        or (head[4:8] == b"ftyp" and head[8:12] in (b"M4A ", b"M4B ", b"M4P "))
    )


def _video_magic(head: bytes) -> bool:
    return (
        (head[:4] == b"RIFF" and head[8:12] == b"AVI ")
        or head[:4] == b"\x1a\x45\xdf\xa3"  # Matroska / WebM
        or head[4:8] == b"ftyp"  # ISO BMFF that is not an audio brand (checked first)
    )


def _text_handler(policy, settings):
    from veil.transforms.text import TextHandler

    return TextHandler(policy)


def _structured_handler(policy, settings):
    from veil.transforms.structured import StructuredHandler

    return StructuredHandler(policy)


def _image_handler(policy, settings):
    from veil.transforms.image import ImageConfig, ImageHandler

    return ImageHandler(policy, ImageConfig(isolation=settings.isolation))


def _audio_config(settings):
    from veil.transforms.audio import AudioConfig

    return AudioConfig(isolation=settings.isolation, key_file=settings.audio_key_file)


def _audio_handler(policy, settings):
    from veil.transforms.audio import AudioHandler

    return AudioHandler(policy, _audio_config(settings))


def _video_handler(policy, settings):
    # The face model as for images; the audio track per the policy's video.audio (drop,
    # or the audio branch with its voice key). FFmpeg and the face model run in the video
    # sandbox whenever native decoders are isolated.
    from veil.transforms.video import VIDEO_DECODERS, VideoConfig, VideoHandler

    isolation = VIDEO_DECODERS if settings.isolation is not None else None
    return VideoHandler(policy, VideoConfig(audio=_audio_config(settings), isolation=isolation))


BUILTIN = (
    # Structured first: its JSON check must run before text's "decodes as text" (content
    # checks run in registration order; it has no sniffers, so sniffing is unaffected).
    # Text and structured run in-process code a record can stall (regexes, the policy's
    # own patterns, NER): their step worker is killed at the limit.
    ModalitySpec(
        Modality.STRUCTURED,
        _structured_handler,
        content_types=("application/json", "application/x-ndjson", "+json"),
        content_check=_looks_like_json,
        preempt=True,
    ),
    # Text's byte-order-mark sniffer runs before audio's MPEG frame sync.
    ModalitySpec(
        Modality.TEXT,
        _text_handler,
        sniffers=(_utf16_bom,),
        content_types=("text/",),
        content_check=_looks_like_text,
        preempt=True,
    ),
    # Images, audio and video share the long media limit (--veil_audio_time_limit_s):
    # OCR's extra passes for small and rotated text take seconds per image.
    ModalitySpec(
        Modality.IMAGE, _image_handler, (_image_magic,), ("image/",), time_limit=MEDIA_LIMIT
    ),
    # Audio before video: an ISO BMFF file with an M4A brand is audio, any other video.
    ModalitySpec(
        Modality.AUDIO, _audio_handler, (_audio_magic,), ("audio/",), time_limit=MEDIA_LIMIT
    ),
    ModalitySpec(
        Modality.VIDEO, _video_handler, (_video_magic,), ("video/",), time_limit=MEDIA_LIMIT
    ),
)

#: The process-wide registry; ``register`` adds to it.
MODALITIES = Modalities(BUILTIN)


def register(spec: ModalitySpec, replace: bool = False) -> ModalitySpec:
    """Registers ``spec`` in the process-wide registry (the graph reads it at build time)."""
    return MODALITIES.register(spec, replace=replace)


def registered() -> tuple[str, ...]:
    """The registered modality names, built-ins first."""
    return MODALITIES.names()
