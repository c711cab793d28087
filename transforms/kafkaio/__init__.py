"""Kafka IO for Beam with kafka-python: source, sink and topic administration."""

from veil.transforms.kafkaio.admin import TopicSpec, delete_topics, ensure_topics
from veil.transforms.kafkaio.sink import MAX_MESSAGE_BYTES, WriteToKafka
from veil.transforms.kafkaio.source import ReadFromKafka

__all__ = [
    "MAX_MESSAGE_BYTES",
    "ReadFromKafka",
    "TopicSpec",
    "WriteToKafka",
    "delete_topics",
    "ensure_topics",
]
