"""Terminal stages: each record leaves as one sanitized record or one dead letter, plus
its one audit event (its whole trail, ``veil.transforms.audit``), all as ``KafkaWrite``s
for one sink.

Keys are deterministic (the record id, or the source coordinates when the id is
unknown), and headers carry the record id and source coordinates, so a replay can be
de-duplicated downstream.

Example::

    writes = text.records | PublishSanitized(topics, policy_version="p1")
    writes | WriteToKafka(producer_config)
"""

from __future__ import annotations

import logging
import time

import apache_beam as beam
from apache_beam.metrics import Metrics

from veil.schemas import AUDIT_EVENT, DEAD_LETTER, MEDIA_RECORD, SANITIZED_RECORD
from veil.schemas.registry import codec
from veil.transforms.audit import record_event
from veil.transforms.kafkaio import MAX_MESSAGE_BYTES
from veil.transforms.records import AuditStep, ErrorCode, Failure, KafkaWrite, Source, WorkItem
from veil.transforms.version import __version__ as PIPELINE_VERSION

_LOGGER = logging.getLogger(__name__)

STAGE = "emit"


class TopicNames:
    """The topic layout: ``<prefix>.raw``, ``<prefix>.sanitized.<modality>``, ..."""

    def __init__(self, prefix: str = "veil"):
        self.prefix = prefix
        self.raw = f"{prefix}.raw"
        self.audit = f"{prefix}.audit"
        self.dead_letter = f"{prefix}.dead-letter"
        self.erasure = f"{prefix}.erasure"

    def sanitized(self, modality: str) -> str:
        return f"{self.prefix}.sanitized.{modality}"

    def quarantine(self, modality: str) -> str:
        """Sanitized records whose sensitivity the policy routes away from analysts."""
        return f"{self.prefix}.quarantine.{modality}"


def _headers(record_id: str | None, source: Source, subject: str) -> tuple:
    headers = [
        ("veil-source", source.dedup_key().encode()),
        ("veil-schema", subject.encode()),
    ]
    if record_id:
        headers.insert(0, ("veil-record-id", record_id.encode()))
    return tuple(headers)


_ERROR_CODES = tuple(v for k, v in vars(ErrorCode).items() if k.isupper())


def _key(record_id: str | None, source: Source) -> bytes:
    return (record_id or f"src:{source.dedup_key()}").encode()


class _Emitter(beam.DoFn):
    def __init__(
        self,
        topics: TopicNames,
        policy_version: str,
        quarantine=frozenset(),
        key_service=None,
        step: str | None = None,
        schemas=None,
    ):
        # Dead-letter counters are named per graph step (veil.dead_letter.<step>/<CODE>):
        # Beam's Flink runner keeps one Flink metric per name in a fused operator, so
        # steps sharing a name would overwrite each other's counts.
        self._dead_letter_ns = f"veil.dead_letter.{step}" if step else "veil.dead_letter"
        self._step = step
        self._topics = topics
        self._schemas = schemas  # a RegistryBinding (registry ids), or None: local catalog
        self._policy_version = policy_version
        self._quarantine = frozenset(quarantine)
        # A ``KeyServiceConfig`` (names of key files and variables, no secrets) or None.
        self._key_config = key_service

    def setup(self):
        self._catalog = codec(self._schemas)
        self._keys = None
        if self._key_config is not None:
            try:
                self._keys = self._key_config.open()
            except Exception as exc:  # originals are then left out, never kept in clear
                _LOGGER.error("Key service unavailable for dead letters: %s", type(exc).__name__)

    def _seal_original(self, failure: Failure):
        """(envelope, key id, key version) of the original under the dead-letter key.

        The original is the Kafka value for decode-stage failures, and the decoded
        ``MediaRecord`` re-encoded (framed Avro, so ``veil produce`` can replay it) for
        failures after decoding.
        """
        if self._keys is None or not (failure.raw or failure.record):
            return None, None, None
        try:
            original = failure.raw or self._catalog.encode(MEDIA_RECORD, failure.record)
            # Decoded records: under the subject's key, so erasure reaches dead letters.
            subject = None if failure.raw else (failure.record or {}).get("subject_key")
            context = self._keys.dead_letter_context(failure.source.dedup_key(), subject)
            return self._keys.encrypt_with_key(original, context)
        except Exception as exc:  # leave the original out: fail closed
            _LOGGER.warning("Dead-letter original not kept: %s", type(exc).__name__)
            return None, None, None

    def _audit_writes(self, source, record_id, modality, trail) -> list[KafkaWrite]:
        """The record's one audit event (its whole trail as ``steps``)."""
        event = record_event(
            source, record_id, modality, trail, self._policy_version, PIPELINE_VERSION
        )
        return [
            KafkaWrite(
                self._topics.audit,
                event["event_id"].encode(),
                self._catalog.encode(AUDIT_EVENT, event),
                _headers(record_id, source, AUDIT_EVENT),
                source,
                event,  # the chainer links this dict; no decode of the bytes
            )
        ]

    def _dead_letter_writes(self, failure: Failure) -> list[KafkaWrite]:
        now = int(time.time() * 1000)
        original, key_id, key_version = self._seal_original(failure)
        record = {
            "record_id": failure.record_id,
            "source": failure.source.as_dict(),
            "stage": failure.stage,
            "error_code": failure.error_code,
            "error_class": failure.error_class,
            "modality": failure.modality,
            "error_time": now,
            "policy_version": self._policy_version,
            "pipeline_version": PIPELINE_VERSION,
            # Originals are kept only as an envelope under the dead-letter key; without a
            # key service they are not kept at all.
            "original": original,
            "original_key_id": key_id,
        }
        Metrics.counter(self._dead_letter_ns, failure.error_code).inc()
        if failure.modality:
            Metrics.counter(f"veil.{failure.modality}", "dead_letters").inc()
        trail = list(failure.trail)
        trail.append(
            AuditStep(
                stage=STAGE,
                action="DEAD_LETTERED",
                outcome="FAILED",
                reason_code=f"{failure.stage}:{failure.error_code}",
                key_id=key_id,
                key_version=key_version,
                at_ms=now,
            )
        )
        return [
            KafkaWrite(
                self._topics.dead_letter,
                _key(failure.record_id, failure.source),
                self._catalog.encode(DEAD_LETTER, record),
                _headers(failure.record_id, failure.source, DEAD_LETTER),
                failure.source,
            )
        ] + self._audit_writes(failure.source, failure.record_id, failure.modality, trail)


class PublishDeadLettersFn(_Emitter):
    def start_bundle(self):
        # Every code's counter exists from the first bundle on, at 0: Prometheus' rate()
        # cannot see a first burst in a series that is born at its burst's value.
        if self._step:
            for code in _ERROR_CODES:
                Metrics.counter(self._dead_letter_ns, code).inc(0)

    def process(self, failure: Failure):
        yield from self._dead_letter_writes(failure)


class PublishSanitizedFn(_Emitter):
    def process(self, item: WorkItem):
        if item.sanitized_payload is None or item.classification is None:
            # A branch that did not sanitize must never publish: fail closed.
            yield from self._dead_letter_writes(
                Failure.of(item, STAGE, ErrorCode.PRIVACY_STEP_FAILED)
            )
            return
        if item.pending_protection:
            # Originals an encrypt operator set aside, and no protection stage ran: never
            # publish the record (its originals must not be lost silently either).
            yield from self._dead_letter_writes(
                Failure.of(item, STAGE, ErrorCode.PROTECTION_UNAVAILABLE)
            )
            return
        record = {
            "record_id": item.record_id,
            "modality": item.modality,
            "content_type": item.sanitized_content_type or item.record["content_type"],
            "payload": item.sanitized_payload,
            "classification": item.classification.as_dict(),
            "protected": list(item.protected),
            "policy_version": self._policy_version,
            "pipeline_version": PIPELINE_VERSION,
            "source": item.source.as_dict(),
        }
        try:
            value = self._catalog.encode(SANITIZED_RECORD, record)
        except Exception as exc:  # fastavro validation; its text is not kept
            yield from self._dead_letter_writes(
                Failure.of(item, STAGE, ErrorCode.ENCODE_ERROR, type(exc).__name__)
            )
            return
        if len(value) > MAX_MESSAGE_BYTES:
            yield from self._dead_letter_writes(
                Failure.of(item, STAGE, ErrorCode.PAYLOAD_TOO_LARGE)
            )
            return
        Metrics.counter(f"veil.{item.modality}", "sanitized").inc()
        Metrics.counter("veil.emit", f"sensitivity_{item.classification.sensitivity}").inc()
        trail = list(item.trail)
        reason = item.classification.quarantine_reason  # e.g. unreliable transcript
        quarantined = item.classification.sensitivity in self._quarantine or reason is not None
        trail.append(
            AuditStep(
                stage=STAGE,
                action="QUARANTINED" if quarantined else "PUBLISHED",
                reason_code=reason,
            )
        )
        topic = (self._topics.quarantine if quarantined else self._topics.sanitized)(item.modality)
        yield KafkaWrite(
            topic,
            _key(item.record_id, item.source),
            value,
            _headers(item.record_id, item.source, SANITIZED_RECORD),
            item.source,
        )
        yield from self._audit_writes(item.source, item.record_id, item.modality, trail)


class PublishSanitized(beam.PTransform):
    """``WorkItem``s to sanitized-record and audit ``KafkaWrite``s (or dead letters).

    Records whose sensitivity is in ``quarantine`` go to ``<prefix>.quarantine.<modality>``
    instead of the sanitized topic (the policy's ``routing.quarantine``).
    """

    def __init__(
        self,
        topics: TopicNames,
        policy_version: str,
        quarantine=frozenset(),
        key_service=None,
        step: str | None = None,
        schemas=None,
    ):
        super().__init__()
        self._fn = PublishSanitizedFn(
            topics, policy_version, quarantine, key_service, step=step, schemas=schemas
        )

    def expand(self, items):
        return items | "EncodeSanitized" >> beam.ParDo(self._fn)


class PublishDeadLetters(beam.PTransform):
    """``Failure``s to dead-letter and audit ``KafkaWrite``s.

    With ``key_service`` (a ``KeyServiceConfig``), a failure's original bytes are kept as
    an envelope under the dead-letter key (``original``, ``original_key_id``).
    """

    def __init__(
        self, topics: TopicNames, policy_version: str, key_service=None, schemas=None, step=None
    ):
        """``step``: names the dead-letter counters (``veil.dead_letter.<step>/<CODE>``);
        ``schemas``: a RegistryBinding (registry ids), or None: the local catalog."""
        super().__init__()
        self._fn = PublishDeadLettersFn(
            topics, policy_version, key_service=key_service, step=step, schemas=schemas
        )

    def expand(self, failures):
        return failures | "EncodeDeadLetters" >> beam.ParDo(self._fn)
