"""Audit events: content-free by construction.

The pipeline writes one ``AuditEvent`` per input record, when its outcome is decided
(``veil.transforms.emit``): the event's ``stage``/``action``/``outcome``/``reason_code``
are the outcome's (``emit``: ``PUBLISHED``, ``QUARANTINED`` or ``DEAD_LETTERED``) and
``steps`` lists every ``AuditStep`` of the record's trail (decode, route, the privacy
step, protect, emit) with its codes, detectors, counts, key ids and timings. Until
schema v2 each step was an event of its own; ``steps_of`` reads both shapes.

An event is built only from ``AuditStep``s and the record's coordinates and id; no
field takes content. ``event_id`` is deterministic, so a replayed record yields the same
id and consumers can de-duplicate. The tamper-evidence chain (``chain``) is filled where
the events are produced to Kafka (``veil.transforms.kafkaio.audit_chainer``; format and
verifier in ``veil.transforms.audit_chain``).

Example::

    event = record_event(source, "r1", "text", item.trail, "p1", "0.1.0")
    [step["action"] for step in steps_of(event)]  # ['ACCEPTED', 'ROUTED', ...]
"""

from __future__ import annotations

import hashlib

from veil.transforms.records import AuditStep, Source


def event_id(source: Source, index: int, step: AuditStep) -> str:
    """The id of the event closing a trail at ``index`` with ``step`` (unchanged from
    schema v1, where it was the id of that step's own event)."""
    material = f"{source.dedup_key()}|{index}|{step.stage}|{step.action}".encode()
    return hashlib.sha256(material).hexdigest()[:32]


def _step(step: AuditStep) -> dict:
    """An ``AuditStepRecord``, typed as its Avro decoding gives it back (the chain hashes
    this dict, and a verifier the decoded one: they must be equal)."""
    return {
        "stage": step.stage,
        "action": step.action,
        "outcome": step.outcome,
        "reason_code": step.reason_code,
        "detectors": {str(k): str(v) for k, v in step.detectors.items()},
        "entity_counts": {str(k): int(v) for k, v in step.entity_counts.items()},
        "key_id": step.key_id,
        "key_version": None if step.key_version is None else int(step.key_version),
        "duration_ms": None if step.duration_ms is None else float(step.duration_ms),
        "at_ms": int(step.at_ms),
    }


def record_event(
    source: Source,
    record_id: str | None,
    modality: str | None,
    trail: list,
    policy_version: str,
    pipeline_version: str,
) -> dict:
    """The one ``AuditEvent`` of a record whose trail ends in its outcome step."""
    if not trail:
        raise ValueError("an audit event needs at least the outcome step")
    steps = [_step(step) for step in trail]
    last = trail[-1]
    detectors: dict = {}
    counts: dict = {}
    timed = [s["duration_ms"] for s in steps if s["duration_ms"] is not None]
    key_id = key_version = None
    for step in steps:
        detectors.update(step["detectors"])
        for entity, count in step["entity_counts"].items():
            counts[entity] = counts.get(entity, 0) + count
        if step["key_id"] is not None:
            key_id, key_version = step["key_id"], step["key_version"]
    return {
        "event_id": event_id(source, len(trail) - 1, last),
        "event_time": int(last.at_ms),
        "record_id": record_id,
        "source": source.as_dict(),
        "stage": last.stage,
        "action": last.action,
        "reason_code": last.reason_code,
        "outcome": last.outcome,
        "modality": modality,
        "detectors": detectors,
        "policy_version": policy_version,
        "pipeline_version": pipeline_version,
        "entity_counts": counts,
        "key_id": key_id,
        "key_version": key_version,
        "duration_ms": float(sum(timed)) if timed else None,
        "steps": steps,
        "chain": None,
    }


def steps_of(event: dict) -> list[dict]:
    """The stages an event accounts for: its ``steps`` (schema v2 record events), else
    the event itself (v1 events, and events about no pipeline run: reveal, erasure)."""
    return list(event.get("steps") or ()) or [event]
