"""``WriteToKafka``: produce ``KafkaWrite`` elements with an idempotent producer.

One producer per worker process (``apache_beam.utils.shared.Shared``), ``acks=all`` and
idempotence on. Each DoFn instance remembers the futures of its bundle and
``finish_bundle`` flushes and checks them all, so no bundle completes (and no source
offset is committed) before the broker acknowledged every record it produced. A failed
send fails the bundle, which the runner retries: at-least-once, with deterministic keys.
"""

from __future__ import annotations

import hashlib
import json
import logging

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.utils.shared import Shared

from veil.transforms.kafkaio import client

_LOGGER = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 16 * 1024 * 1024


class _SharedProducer:
    """Weak-referenceable holder for one kafka-python producer."""

    def __init__(self, config: dict):
        from kafka import KafkaProducer

        self.producer = KafkaProducer(
            acks="all",
            enable_idempotence=True,
            max_in_flight_requests_per_connection=5,
            linger_ms=5,
            max_request_size=MAX_MESSAGE_BYTES,
            **client.resolve(config),
        )


class _WriteFn(beam.DoFn):
    def __init__(self, producer_config: dict, shared: Shared, flush_timeout_s: float):
        self._config = producer_config
        self._shared = shared
        self._tag = hashlib.sha256(
            json.dumps(producer_config, sort_keys=True, default=str).encode()
        ).hexdigest()
        self._flush_timeout_s = flush_timeout_s
        self._written = Metrics.counter("veil.kafka", "records_written")
        self._bytes = Metrics.counter("veil.kafka", "bytes_written")

    def setup(self):
        self._holder = self._shared.acquire(lambda: _SharedProducer(self._config), self._tag)

    def start_bundle(self):
        self._pending = []

    def process(self, write):
        future = self._holder.producer.send(
            write.topic, key=write.key, value=write.value, headers=list(write.headers)
        )
        self._pending.append(future)
        self._written.inc()
        self._bytes.inc(len(write.value))
        return ()

    def finish_bundle(self):
        if not self._pending:
            return
        self._holder.producer.flush(timeout=self._flush_timeout_s)
        failed = [f for f in self._pending if not f.succeeded()]
        self._pending = []
        if failed:
            # kafka-python's errors name the broker condition, not the payload.
            error = failed[0].exception if failed[0].is_done else None
            raise RuntimeError(
                f"{len(failed)} record(s) not acknowledged by the broker: "
                f"{type(error).__name__ if error else 'flush timed out'}"
            )


class WriteToKafka(beam.PTransform):
    """Produces ``KafkaWrite(topic, key, value, headers)`` elements.

    Example::

        writes | WriteToKafka({"bootstrap_servers": "127.0.0.1:9092"})
    """

    _shared = Shared()

    def __init__(self, producer_config: dict, flush_timeout_s: float = 60.0):
        super().__init__()
        self._config = dict(producer_config)
        self._flush_timeout_s = flush_timeout_s

    def expand(self, pcoll):
        return pcoll | "Produce" >> beam.ParDo(
            _WriteFn(self._config, WriteToKafka._shared, self._flush_timeout_s)
        )
