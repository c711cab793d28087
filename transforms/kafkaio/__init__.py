"""Kafka IO for Beam: source, sink and topic administration.

kafka-python for the source, the exactly-once transactions and the admin client;
librdkafka (confluent-kafka) for the at-least-once sink's producer.
"""

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
