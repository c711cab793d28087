"""Veil's topics and their explicit configs (``veil topics create`` applies them).

One sanitized and one quarantine topic per registered modality (``veil.transforms.modality``).
"""

from __future__ import annotations

from veil.schemas import AUDIT_EVENT, DEAD_LETTER, MEDIA_RECORD, SANITIZED_RECORD
from veil.transforms.emit import TopicNames
from veil.transforms.kafkaio import MAX_MESSAGE_BYTES, TopicSpec
from veil.transforms.modality import registered

DAY_MS = 24 * 3600 * 1000


def topic_specs(names: TopicNames, partitions: int = 3) -> list[TopicSpec]:
    """Raw and sanitized topics share the partition count, so parallelism follows Kafka."""
    common = {"max.message.bytes": MAX_MESSAGE_BYTES, "min.insync.replicas": 1}
    specs = [
        # Raw input holds PII: short retention, delete policy.
        TopicSpec(
            names.raw,
            partitions,
            {**common, "cleanup.policy": "delete", "retention.ms": 7 * DAY_MS},
        ),
        TopicSpec(
            names.dead_letter,
            partitions,
            {**common, "cleanup.policy": "delete", "retention.ms": 30 * DAY_MS},
        ),
        # The audit log is append-only and kept forever.
        TopicSpec(
            names.audit, partitions, {**common, "cleanup.policy": "delete", "retention.ms": -1}
        ),
        # Erasure requests are keyed by subject: compaction keeps the latest per subject.
        TopicSpec(names.erasure, 1, {**common, "cleanup.policy": "compact"}),
    ]
    for modality in registered():
        specs.append(
            TopicSpec(
                names.sanitized(modality),
                partitions,
                {**common, "cleanup.policy": "delete", "retention.ms": 30 * DAY_MS},
            )
        )
    # Sanitized records the policy routes away from analysts (routing.quarantine).
    for modality in registered():
        specs.append(
            TopicSpec(
                names.quarantine(modality),
                partitions,
                {**common, "cleanup.policy": "delete", "retention.ms": 30 * DAY_MS},
            )
        )
    return specs


def topic_schemas(names: TopicNames) -> list[tuple[str, str]]:
    """``(topic, record type)`` of every Avro topic: the registry subjects ``<topic>-value``.

    The erasure topic is left out: its values are not Veil Avro records.
    """
    pairs = [
        (names.raw, MEDIA_RECORD),
        (names.audit, AUDIT_EVENT),
        (names.dead_letter, DEAD_LETTER),
    ]
    for modality in registered():
        pairs.append((names.sanitized(modality), SANITIZED_RECORD))
        pairs.append((names.quarantine(modality), SANITIZED_RECORD))
    return pairs


def register_schemas(url: str | None, names: TopicNames, input_topics=()):
    """Registers Veil's schemas for ``names`` (and extra input topics) with the registry
    at ``url``; the ``RegistryBinding``, or None offline (``url`` None).

    Raises:
        RegistryError: the registry is unreachable or refused a schema (fail fast).
    """
    if url is None:
        return None
    from veil.schemas.registry import register

    pairs = topic_schemas(names)
    pairs += [(t, MEDIA_RECORD) for t in input_topics if t != names.raw]
    return register(url, pairs)
