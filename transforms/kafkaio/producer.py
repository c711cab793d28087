"""An idempotent librdkafka (confluent-kafka) producer with the calls the sink relies on.

The at-least-once sink and the audit chainer were written against kafka-python's
``KafkaProducer``: ``send(topic, key=, value=, headers=, partition=)`` returning a
future (``is_done``, ``succeeded()``, ``exception``, ``value.offset``), ``flush(timeout=)``
raising on a timeout, ``partitions_for(topic)`` and ``close(timeout=)``.
``IdempotentProducer`` keeps those calls on confluent-kafka's ``Producer``, whose record
accumulator and network I/O run in librdkafka's C threads: producing a record takes no
Python lock that an I/O thread contends and wakes no Python thread (kafka-python's
``send`` was the largest platform cost per record, see docs/performance.md).

Same guarantees as before: ``acks=all``, idempotence, at most 5 requests in flight, and
the partition of a keyed record is Java's and kafka-python's (murmur2 of the key;
librdkafka's own default is CRC32, hence ``partitioner=murmur2_random``). Delivery
reports run in whichever thread polls or flushes the producer; each sets its own
future. Errors name the broker condition (librdkafka's error name), never a payload.

Example::

    producer = IdempotentProducer({"bootstrap_servers": ["127.0.0.1:9092"]})
    future = producer.send("veil.sanitized", key=b"k", value=b"v", headers=[])
    producer.flush(timeout=60)
    assert future.succeeded(), future.exception
"""

from __future__ import annotations

import logging

from veil.transforms.kafkaio import client

_LOGGER = logging.getLogger(__name__)
# librdkafka's own log lines (connection state, retries; never payloads), warnings up.
_RDKAFKA_LOGGER = logging.getLogger("veil.transforms.kafkaio.librdkafka")

MAX_MESSAGE_BYTES = 16 * 1024 * 1024
# Delivery reports are served by poll(); sends call poll(0) this often so that the
# report queue of a long bundle stays short.
POLL_EVERY = 1000
# kafka-python's delivery_timeout_ms: a record not acknowledged by then fails.
DELIVERY_TIMEOUT_MS = 120_000


class DeliveryError(RuntimeError):
    """A record the broker (or librdkafka) refused; ``condition`` is the error's name."""

    def __init__(self, condition: str):
        super().__init__(condition)
        self.condition = condition


class FlushTimeout(RuntimeError):
    """``flush`` returned with records still unacknowledged (kafka-python raises too)."""


class Delivery:
    """The future of one ``send``: set by its delivery report, in ``poll``/``flush``."""

    __slots__ = ("is_done", "exception", "offset")

    def __init__(self):
        self.is_done = False
        self.exception = None
        self.offset = -1

    def __call__(self, err, msg):
        if err is not None:
            self.exception = DeliveryError(err.name())
        else:
            self.offset = msg.offset()
        self.is_done = True

    @property
    def value(self) -> Delivery:
        """kafka-python's ``RecordMetadata``: only ``offset`` is read."""
        return self

    def succeeded(self) -> bool:
        return self.is_done and self.exception is None

    @classmethod
    def failed(cls, condition: str) -> Delivery:
        future = cls()
        future.exception = DeliveryError(condition)
        future.is_done = True
        return future


def producer_config(config: dict) -> dict:
    """librdkafka properties of Veil's idempotent producer for client ``config``."""
    return {
        **client.librdkafka_config(config),
        "acks": "all",
        "enable.idempotence": True,
        "max.in.flight.requests.per.connection": 5,
        # Java's and kafka-python's partition for a keyed record (murmur2), random for
        # a record without a key (kafka-python's choice too).
        "partitioner": "murmur2_random",
        # Every bundle ends in a flush, which sends at once whatever linger holds.
        "linger.ms": client.LINGER_MS,
        "batch.size": client.BATCH_BYTES,
        "message.max.bytes": MAX_MESSAGE_BYTES,
        "message.timeout.ms": DELIVERY_TIMEOUT_MS,
        "logger": _RDKAFKA_LOGGER,
        "log_level": 4,  # syslog warning
        "error_cb": _error,
    }


def _error(err) -> None:
    # Client-wide conditions (brokers down, authentication refused): logged, while
    # the records they concern fail through their own delivery reports.
    _LOGGER.warning("Kafka producer: %s (%s)", err.name(), "fatal" if err.fatal() else "retried")


class IdempotentProducer:
    """confluent-kafka's ``Producer`` behind kafka-python's producer calls (thread-safe)."""

    def __init__(self, config: dict):
        from confluent_kafka import KafkaException, Producer

        self._producer = Producer(producer_config(config))
        self._refused = KafkaException
        self._unpolled = 0

    def send(self, topic, key=None, value=None, headers=None, partition=None) -> Delivery:
        """Queues one record; its ``Delivery`` completes at a later poll or flush."""
        future = Delivery()
        produce = self._producer.produce
        while True:
            try:
                if partition is None:
                    produce(topic, value, key, on_delivery=future, headers=headers)
                else:
                    produce(topic, value, key, partition, on_delivery=future, headers=headers)
                break
            except BufferError:  # the local queue is full: let deliveries drain it
                self._producer.poll(0.1)
            except self._refused as exc:  # e.g. larger than message.max.bytes, fatal state
                return Delivery.failed(exc.args[0].name())
        self._unpolled += 1
        if self._unpolled >= POLL_EVERY:
            self._unpolled = 0
            self._producer.poll(0)
        return future

    def flush(self, timeout: float | None = None) -> None:
        """Waits for every queued record's delivery report; ``FlushTimeout`` if not all came."""
        left = self._producer.flush(-1 if timeout is None else timeout)
        if left:
            raise FlushTimeout(f"{left} record(s) still unacknowledged after {timeout} s")

    def partitions_for(self, topic: str):
        """The topic's partition ids, or None if the cluster does not know the topic."""
        metadata = self._producer.list_topics(topic, timeout=60)
        found = metadata.topics.get(topic)
        if found is None or found.error is not None:
            return None
        return set(found.partitions)

    def close(self, timeout: float = 0) -> None:
        """Drops what is still queued or in flight (its futures fail) and serves reports."""
        self._producer.purge(in_queue=True, in_flight=True, blocking=False)
        self._producer.flush(timeout)
