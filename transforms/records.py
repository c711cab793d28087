"""The element types that flow between Veil's stages, and the stable error codes.

A ``WorkItem`` carries one decoded input record through routing and its modality branch,
collecting an audit trail (content-free ``AuditStep`` entries) on the way. A terminal
stage turns it into exactly one sanitized record or one dead letter, plus its audit
events; see ``veil.transforms.emit``.
"""

from __future__ import annotations

import dataclasses
import time
from typing import NamedTuple


class Modality:
    """The built-in modalities' names. Routing, the graph and the topic layout read the
    registry (``veil.transforms.modality``), which also holds modalities registered
    later; ``ALL`` is the built-ins only."""

    TEXT = "text"
    STRUCTURED = "structured"
    IMAGE = "image"
    AUDIO = "audio"
    VIDEO = "video"
    ALL = (TEXT, STRUCTURED, IMAGE, AUDIO, VIDEO)


class ErrorCode:
    """Stable dead-letter codes. Never rename one: consumers alert on them."""

    BAD_FRAMING = "BAD_FRAMING"
    UNKNOWN_SCHEMA_ID = "UNKNOWN_SCHEMA_ID"
    # The schema registry did not answer for an id Veil had not seen: replay the record
    # (its original is kept sealed) once the registry is back.
    SCHEMA_REGISTRY_UNAVAILABLE = "SCHEMA_REGISTRY_UNAVAILABLE"
    UNEXPECTED_SCHEMA = "UNEXPECTED_SCHEMA"
    AVRO_DECODE_ERROR = "AVRO_DECODE_ERROR"
    INVALID_RECORD = "INVALID_RECORD"
    EMPTY_PAYLOAD = "EMPTY_PAYLOAD"
    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
    UNKNOWN_MODALITY = "UNKNOWN_MODALITY"
    UNSUPPORTED_MODALITY = "UNSUPPORTED_MODALITY"
    MODALITY_MISMATCH = "MODALITY_MISMATCH"
    TEXT_DECODE_ERROR = "TEXT_DECODE_ERROR"
    PRIVACY_STEP_FAILED = "PRIVACY_STEP_FAILED"
    PRIVACY_STEP_TIMEOUT = "PRIVACY_STEP_TIMEOUT"
    ENCODE_ERROR = "ENCODE_ERROR"
    AUDIO_DECODE_ERROR = "AUDIO_DECODE_ERROR"  # corrupt, truncated or empty audio
    AUDIO_FORMAT_UNSUPPORTED = "AUDIO_FORMAT_UNSUPPORTED"  # container, rate or channels
    AUDIO_TOO_LONG = "AUDIO_TOO_LONG"  # longer than the audio branch's duration limit
    AUDIO_TOO_LARGE = "AUDIO_TOO_LARGE"  # decodes to far more than its size (bombs)
    AUDIO_KEY_UNAVAILABLE = "AUDIO_KEY_UNAVAILABLE"  # no voice key: fail closed
    # Not a dead-letter code: the quarantine reason of speech transcribed unreliably.
    AUDIO_TRANSCRIPT_UNRELIABLE = "AUDIO_TRANSCRIPT_UNRELIABLE"
    IMAGE_DECODE_ERROR = "IMAGE_DECODE_ERROR"  # corrupt, truncated or lying header
    IMAGE_FORMAT_UNSUPPORTED = "IMAGE_FORMAT_UNSUPPORTED"  # not an allow-listed format
    IMAGE_TOO_LARGE = "IMAGE_TOO_LARGE"  # header declares too many pixels (bombs)
    IMAGE_ENCODE_ERROR = "IMAGE_ENCODE_ERROR"
    IMAGE_MODEL_UNAVAILABLE = "IMAGE_MODEL_UNAVAILABLE"  # face model missing/altered
    IMAGE_OCR_FAILED = "IMAGE_OCR_FAILED"  # Tesseract missing, failed or timed out
    VIDEO_CORRUPT = "VIDEO_CORRUPT"  # unparsable, undecodable, cut off or size-changing
    VIDEO_UNSUPPORTED_FORMAT = "VIDEO_UNSUPPORTED_FORMAT"  # container or codec not allowed
    VIDEO_TOO_LARGE = "VIDEO_TOO_LARGE"  # bytes, frame size, frames, duration or output
    VIDEO_ENCODE_ERROR = "VIDEO_ENCODE_ERROR"
    VIDEO_MODEL_UNAVAILABLE = "VIDEO_MODEL_UNAVAILABLE"  # face model missing/altered
    STRUCTURED_DECODE_ERROR = "STRUCTURED_DECODE_ERROR"
    PSEUDONYM_KEY_UNAVAILABLE = "PSEUDONYM_KEY_UNAVAILABLE"
    PROTECTION_UNAVAILABLE = "PROTECTION_UNAVAILABLE"
    PROTECTION_FAILED = "PROTECTION_FAILED"  # the key service could not encrypt: fail closed
    SUBJECT_ERASED = "SUBJECT_ERASED"  # the subject's keys were crypto-shredded
    RECORD_ID_KEY_UNAVAILABLE = "RECORD_ID_KEY_UNAVAILABLE"  # configured, unreadable
    # Native decoders run in sandbox workers (veil.transforms.sandbox):
    DECODER_CRASHED = "DECODER_CRASHED"  # the worker died on a signal (segfault, abort)
    DECODER_TIMEOUT = "DECODER_TIMEOUT"  # over the call's wall-clock or CPU limit
    DECODER_MEMORY_LIMIT = "DECODER_MEMORY_LIMIT"  # over the call's address-space limit
    DECODER_FAILED = "DECODER_FAILED"  # an unexpected error inside the worker
    DECODER_UNAVAILABLE = "DECODER_UNAVAILABLE"  # no worker could start: fail closed


class PrivacyError(Exception):
    """A known, content-free failure of a record, with a stable dead-letter code.

    The one error type a privacy handler raises on purpose (``veil.transforms.privacy``
    re-exports it); the step catches it once and dead-letters the record with ``code``
    (an ``ErrorCode``). The decoders' errors (``ImageError``, ``AudioError``,
    ``VideoError``, ``SandboxError``) are subclasses, so they need no re-wrapping.
    Anything else a handler raises is dead-lettered ``PRIVACY_STEP_FAILED`` with its
    class name only. The message is the code: never build one from content.
    """

    def __init__(self, code: str):
        super().__init__(code)
        self.code = code


class Source(NamedTuple):
    """Where an input record came from (Kafka coordinates, or a file and line)."""

    topic: str
    partition: int
    offset: int

    def as_dict(self) -> dict:
        return {"topic": self.topic, "partition": self.partition, "offset": self.offset}

    def dedup_key(self) -> str:
        return f"{self.topic}/{self.partition}/{self.offset}"


class KafkaMessage(NamedTuple):
    """One consumed Kafka record, as the source hands it to the pipeline."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: tuple = ()

    @property
    def source(self) -> Source:
        return Source(self.topic, self.partition, self.offset)


class KafkaWrite(NamedTuple):
    """One record to produce. Keys are deterministic so replays can be de-duplicated.

    ``source`` names the input record the write derives from: in exactly-once mode the
    sink puts the write into that source partition's open Kafka transaction (see
    ``veil.transforms.kafkaio.transactions``), so it must be set there.
    """

    topic: str
    key: bytes
    value: bytes
    headers: tuple = ()
    source: Source | None = None
    # Audit writes only: the AuditEvent dict ``value`` encodes, as ``emit`` built it, so
    # the sink's audit chainer hashes it without decoding ``value`` again. It must be
    # the very event ``value`` holds (a mismatch breaks the chain's MAC and links).
    event: dict | None = None


@dataclasses.dataclass
class AuditStep:
    """One stage's content-free account of what it did to a record."""

    stage: str
    action: str
    outcome: str = "OK"
    reason_code: str | None = None
    detectors: dict = dataclasses.field(default_factory=dict)
    entity_counts: dict = dataclasses.field(default_factory=dict)
    duration_ms: float | None = None
    key_id: str | None = None  # the key used (an id, never key material)
    key_version: int | None = None
    at_ms: int = dataclasses.field(default_factory=lambda: int(time.time() * 1000))


@dataclasses.dataclass
class Classification:
    sensitivity: str = "RESTRICTED"
    regimes: list = dataclasses.field(default_factory=list)
    entity_counts: dict = dataclasses.field(default_factory=dict)
    # A reason code that sends the record to the quarantine topic whatever its
    # sensitivity (e.g. AUDIO_TRANSCRIPT_UNRELIABLE); not serialized: the regimes say it.
    quarantine_reason: str | None = None

    def as_dict(self) -> dict:
        return {
            "sensitivity": self.sensitivity,
            "regimes": sorted(self.regimes),
            "entity_counts": dict(sorted(self.entity_counts.items())),
        }


@dataclasses.dataclass
class WorkItem:
    """A decoded input record on its way through the pipeline."""

    source: Source
    record: dict
    modality: str | None = None
    sanitized_payload: bytes | None = None
    sanitized_content_type: str | None = None
    classification: Classification | None = None
    protected: list = dataclasses.field(default_factory=list)
    trail: list = dataclasses.field(default_factory=list)
    # (field_path, original bytes) that an ``encrypt`` operator handed to the protection
    # stage; emit refuses to publish a record while this is not empty.
    pending_protection: list = dataclasses.field(default_factory=list)

    @property
    def record_id(self) -> str:
        return self.record["record_id"]


@dataclasses.dataclass
class Failure:
    """A record that leaves the pipeline as a dead letter.

    Holds only ids, coordinates, codes and class names: nothing built from content.
    ``raw`` is the original value, and ``record`` the decoded ``MediaRecord`` of a failure
    after decoding; both are kept only for the dead-letter envelope (encrypted under the
    dead-letter key or left out, never written in clear). A crypto-shredded subject's
    failures keep neither.
    """

    source: Source
    stage: str
    error_code: str
    error_class: str | None = None
    record_id: str | None = None
    modality: str | None = None
    raw: bytes | None = None
    trail: list = dataclasses.field(default_factory=list)
    record: dict | None = dataclasses.field(default=None, repr=False)

    @classmethod
    def of(
        cls,
        item: WorkItem,
        stage: str,
        error_code: str,
        error_class: str | None = None,
        raw: bytes | None = None,
    ) -> Failure:
        return cls(
            source=item.source,
            stage=stage,
            error_code=error_code,
            error_class=error_class,
            record_id=item.record.get("record_id"),
            modality=item.modality,
            raw=raw,
            record=None if error_code == ErrorCode.SUBJECT_ERASED else item.record,
            trail=list(item.trail),
        )
