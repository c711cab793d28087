"""Topic administration with kafka-python's admin client."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from veil.transforms.kafkaio import client

_LOGGER = logging.getLogger(__name__)

_TOPIC_ALREADY_EXISTS = 36


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    configs: dict = field(default_factory=dict)
    replication_factor: int = 1


def ensure_topics(client_config: dict, specs: list[TopicSpec], timeout_s: float = 30) -> list[str]:
    """Creates the topics that do not exist yet; returns the names it created.

    Existing topics are left as they are (their configs are not altered).
    """
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(**client.resolve(client_config))
    try:
        existing = set(admin.list_topics())
        wanted = {
            s.name: {
                "num_partitions": s.partitions,
                "replication_factor": s.replication_factor,
                "configs": {k: str(v) for k, v in s.configs.items()},
            }
            for s in specs
            if s.name not in existing
        }
        if wanted:
            admin.create_topics(wanted, timeout_ms=int(timeout_s * 1000), raise_errors=False)
        _wait_for_leaders(client_config, [s.name for s in specs], timeout_s)
        return sorted(wanted)
    finally:
        admin.close()


def _wait_for_leaders(client_config: dict, topics: list[str], timeout_s: float) -> None:
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(**client.resolve(client_config))
    try:
        deadline = time.monotonic() + timeout_s
        missing = list(topics)
        while missing and time.monotonic() < deadline:
            known = consumer.topics()  # refreshes cluster metadata
            missing = [t for t in topics if t not in known or not consumer.partitions_for_topic(t)]
            if missing:
                time.sleep(0.2)
        if missing:
            raise TimeoutError(f"topics not ready after {timeout_s:.0f} s: {missing}")
    finally:
        consumer.close()


def delete_topics(client_config: dict, names: list[str]) -> None:
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(**client.resolve(client_config))
    try:
        present = set(admin.list_topics())
        doomed = [n for n in names if n in present]
        if doomed:
            admin.delete_topics(doomed, raise_errors=False)
    finally:
        admin.close()
