"""Audit events: content-free by construction.

An ``AuditEvent`` is built only from an ``AuditStep`` (stage, action, codes, counts,
versions, timings) and the record's coordinates and id. No field takes content, and
``event_id`` is deterministic, so a replayed record yields the same ids and consumers can
de-duplicate. The tamper-evidence chain (``chain``) is filled where the events are
produced to Kafka (``veil.transforms.kafkaio.audit_chainer``; format and verifier in
``veil.transforms.audit_chain``).
"""

from __future__ import annotations

import hashlib

from veil.transforms.records import AuditStep, Source


def event_id(source: Source, index: int, step: AuditStep) -> str:
    material = f"{source.dedup_key()}|{index}|{step.stage}|{step.action}".encode()
    return hashlib.sha256(material).hexdigest()[:32]


def audit_events(
    source: Source,
    record_id: str | None,
    modality: str | None,
    trail: list,
    policy_version: str,
    pipeline_version: str,
) -> list[dict]:
    events = []
    for index, step in enumerate(trail):
        events.append(
            {
                "event_id": event_id(source, index, step),
                "event_time": step.at_ms,
                "record_id": record_id,
                "source": source.as_dict(),
                "stage": step.stage,
                "action": step.action,
                "reason_code": step.reason_code,
                "outcome": step.outcome,
                "modality": modality,
                "detectors": dict(step.detectors),
                "policy_version": policy_version,
                "pipeline_version": pipeline_version,
                "entity_counts": dict(step.entity_counts),
                "key_id": step.key_id,
                "key_version": step.key_version,
                "duration_ms": step.duration_ms,
                "chain": None,
            }
        )
    return events
