"""Decoding and validation of raw Kafka values into ``WorkItem``s.

Example::

    decoded = messages | DecodeRecords(max_payload_bytes=8 << 20)
    decoded.records       # WorkItem
    decoded.dead_letters  # Failure (BAD_FRAMING, UNKNOWN_SCHEMA_ID, ...)

Record ids leave decoding opaque (``veil.transforms.ids``): the producer's id is
replaced by its keyed hash here, once, so no later stage and no output sees it.
"""

from __future__ import annotations

import logging
from typing import NamedTuple

import apache_beam as beam
from apache_beam import pvalue
from apache_beam.metrics import Metrics

from veil.schemas import MEDIA_RECORD, FramingError
from veil.schemas.registry import codec
from veil.transforms.ids import IdKeyUnavailable, RecordIds, resolve_id_key
from veil.transforms.records import AuditStep, ErrorCode, Failure, KafkaMessage, WorkItem

_LOGGER = logging.getLogger(__name__)

DEAD_LETTER = "dead_letter"
STAGE = "decode"
MAX_ID_CHARS = 256


class Decoded(NamedTuple):
    records: beam.PCollection
    dead_letters: beam.PCollection


class DecodeFn(beam.DoFn):
    """Framed Avro ``MediaRecord`` bytes to ``WorkItem``; anything else to a dead letter."""

    def __init__(
        self,
        max_payload_bytes: int,
        max_message_bytes: int,
        schemas=None,
        id_key=None,
        key_service=None,
    ):
        self._max_payload = max_payload_bytes
        self._max_message = max_message_bytes
        self._schemas = schemas  # a RegistryBinding, or None: the local catalog
        # Names of the record-id key (a file or kms: URI) and the key service; resolved
        # on the worker in setup.
        self._id_key_ref = id_key
        self._key_service = key_service
        self._received = Metrics.counter("veil.decode", "records_in")
        self._accepted = Metrics.counter("veil.decode", "records_out")
        self._bytes = Metrics.distribution("veil.decode", "payload_bytes")

    def setup(self):
        self._catalog = codec(self._schemas)
        try:
            self._ids = RecordIds(resolve_id_key(self._id_key_ref, self._key_service))
        except IdKeyUnavailable as exc:  # every record is then dead-lettered: fail closed
            _LOGGER.error("Record-id key unavailable: %s", exc)
            self._ids = None

    def process(self, message: KafkaMessage):
        self._received.inc()
        source = message.source
        value = message.value
        if value is not None and len(value) > self._max_message:
            yield self._reject(source, ErrorCode.PAYLOAD_TOO_LARGE, value)
            return
        try:
            _, record = self._catalog.decode(value, expect=MEDIA_RECORD)
        except FramingError as exc:
            yield self._reject(source, exc.code, value)
            return
        if self._ids is None:
            yield self._reject(source, ErrorCode.RECORD_ID_KEY_UNAVAILABLE, value)
            return
        raw_id = _safe_id(record["record_id"])
        record_id = self._ids.opaque(raw_id) if raw_id is not None else None
        problem = _validate(record, message.key, self._max_payload)
        if problem is None and record_id is None:
            problem = ErrorCode.INVALID_RECORD  # not opaque, and no key to make it so
        if problem is not None:
            yield self._reject(source, problem, value, record_id=record_id)
            return
        # From here on the record carries only the opaque id (the dead-letter original,
        # re-encoded from this record, too: replaying it keeps the same id).
        record["record_id"] = record_id
        self._accepted.inc()
        self._bytes.update(len(record["payload"]))
        item = WorkItem(source=source, record=record)
        item.trail.append(AuditStep(stage=STAGE, action="ACCEPTED"))
        yield item

    def _reject(self, source, code, value, record_id=None):
        Metrics.counter("veil.decode", f"dead_letter_{code}").inc()
        _LOGGER.debug("Dead letter %s at %s", code, source.dedup_key())
        return pvalue.TaggedOutput(
            DEAD_LETTER,
            Failure(source=source, stage=STAGE, error_code=code, record_id=record_id, raw=value),
        )


def _safe_id(record_id) -> str | None:
    if isinstance(record_id, str) and 0 < len(record_id) <= MAX_ID_CHARS:
        return record_id
    return None


def _validate(record: dict, kafka_key: bytes | None, max_payload: int) -> str | None:
    if _safe_id(record["record_id"]) is None:
        return ErrorCode.INVALID_RECORD
    subject = record["subject_key"]
    if not subject or len(subject) > MAX_ID_CHARS:
        return ErrorCode.INVALID_RECORD
    if kafka_key is not None and kafka_key != subject.encode("utf-8"):
        # The Kafka key decides the partition and the per-subject keys: they must agree.
        return ErrorCode.INVALID_RECORD
    payload = record["payload"]
    if not payload:
        return ErrorCode.EMPTY_PAYLOAD
    if len(payload) > max_payload:
        return ErrorCode.PAYLOAD_TOO_LARGE
    return None


class DecodeRecords(beam.PTransform):
    """Decodes and validates ``KafkaMessage``s; returns ``Decoded(records, dead_letters)``.

    ``id_key`` (a key file or ``kms:`` URI) / ``key_service`` (a ``KeyServiceConfig``)
    name the record-id key; see ``veil.transforms.ids``.
    """

    def __init__(
        self,
        max_payload_bytes: int,
        max_message_bytes: int,
        schemas=None,
        id_key=None,
        key_service=None,
    ):
        super().__init__()
        self._max_payload = max_payload_bytes
        self._max_message = max_message_bytes
        self._schemas = schemas
        self._id_key = id_key
        self._key_service = key_service

    def expand(self, messages):
        out = messages | "DecodeMediaRecords" >> beam.ParDo(
            DecodeFn(
                self._max_payload,
                self._max_message,
                self._schemas,
                self._id_key,
                self._key_service,
            )
        ).with_outputs(DEAD_LETTER, main="records")
        return Decoded(out.records, out[DEAD_LETTER])
