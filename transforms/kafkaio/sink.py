"""``WriteToKafka``: produce ``KafkaWrite`` elements with an idempotent producer.

One producer per worker process (``apache_beam.utils.shared.Shared``): librdkafka's
(``veil.transforms.kafkaio.producer``), ``acks=all``, idempotence on, Java's partitioner.
Each DoFn instance remembers the futures of its bundle and
``finish_bundle`` flushes and checks them all, so no bundle completes (and no source
offset is committed) before the broker acknowledged every record it produced. A failed
send fails the bundle, which the runner retries: at-least-once, with deterministic keys.

With ``delivery="exactly_once"`` each write goes into the open Kafka transaction of the
source partition it derives from (``KafkaWrite.source``), which ``ReadFromKafka(...,
exactly_once=True)`` opened in the same bundle and commits on finalization; a write
with no source or no open transaction fails the bundle (fail closed).

The sink knows nothing about what it writes. A ``TopicWriter`` plugged in for a topic
(``topic_writers``) is handed that topic's writes and sends them itself on the producer
the sink gives it, e.g. the audit chainer (``veil.transforms.kafkaio.audit_chainer``),
which links each event into its hash chain as it is produced.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Protocol

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.utils.shared import Shared

from veil.transforms.kafkaio import transactions
from veil.transforms.kafkaio.producer import MAX_MESSAGE_BYTES, FlushTimeout, IdempotentProducer

_LOGGER = logging.getLogger(__name__)

__all__ = ["MAX_MESSAGE_BYTES", "TopicWriter", "WriteToKafka"]

# Per producer config (tag): how many times a failed bundle retired the shared producer.
# An idempotent producer whose batch the broker refused may be left in an error state
# (librdkafka: a fatal idempotence error); every DoFn instance of the process moves to a
# fresh producer at its next bundle.
_GENERATIONS: dict[str, int] = {}


class TopicWriter(Protocol):
    """Sends one topic's writes for the sink (one per process; thread-safe)."""

    topic: str

    def begin_bundle(self) -> None:
        """Called in every sink DoFn's ``start_bundle``."""

    def send(self, producer, write, txn=None):
        """Sends ``write`` on ``producer`` (in exactly-once mode: ``txn``'s); the future."""

    def settle(self) -> None:
        """Called after the bundle's flush, before its futures are checked."""


class _SharedProducer:
    """Weak-referenceable holder for one process-wide ``IdempotentProducer``."""

    def __init__(self, config: dict):
        # linger.ms and batch.size: client.LINGER_MS and BATCH_BYTES (a bundle's flush
        # sends at once whatever linger holds); requests up to MAX_MESSAGE_BYTES.
        self.producer = IdempotentProducer(config)


class _WriteFn(beam.DoFn):
    def __init__(
        self,
        producer_config: dict,
        shared: Shared,
        flush_timeout_s: float,
        transactional_group: str | None = None,
        topic_writers=(),
    ):
        self._config = producer_config
        # Specs (``.topic``, ``.open(client_config)`` -> ``TopicWriter``) of the topics
        # whose writes a plugged-in writer sends.
        self._writer_specs = tuple(topic_writers)
        # Set in exactly-once mode: the consumer group whose source-partition
        # transactions the writes join.
        self._group = transactional_group
        self._shared = shared
        self._tag = hashlib.sha256(
            json.dumps(producer_config, sort_keys=True, default=str).encode()
        ).hexdigest()
        self._flush_timeout_s = flush_timeout_s
        self._written = Metrics.counter("veil.kafka", "records_written")
        self._bytes = Metrics.counter("veil.kafka", "bytes_written")

    def _acquire(self):
        generation = _GENERATIONS.get(self._tag, 0)
        self._generation = generation
        self._holder = self._shared.acquire(
            lambda: _SharedProducer(self._config), f"{self._tag}/{generation}"
        )

    def _retire_producer(self):
        """After a refused write: later bundles use a new producer, this one is closed."""
        if _GENERATIONS.get(self._tag, 0) == self._generation:
            _GENERATIONS[self._tag] = self._generation + 1
            try:
                self._holder.producer.close(timeout=0)
            except Exception:  # noqa: BLE001 - closing a broken producer is best effort
                pass

    def setup(self):
        if self._group is None:
            self._acquire()
        self._writers = {spec.topic: spec.open(self._config) for spec in self._writer_specs}

    def start_bundle(self):
        self._pending = []
        self._transactions = {}
        if self._group is None and _GENERATIONS.get(self._tag, 0) != self._generation:
            self._acquire()
        for writer in self._writers.values():
            writer.begin_bundle()

    def _transaction(self, write) -> transactions.PartitionTransaction:
        if write.source is None:
            raise transactions.TransactionError(
                f"NO_SOURCE_PARTITION: a write to {write.topic} does not name its source"
            )
        topic, partition = write.source.topic, write.source.partition
        txn = transactions.lookup(self._group, topic, partition)
        if txn is None or not txn.is_open:
            tid = transactions.transactional_id(self._group, topic, partition)
            raise transactions.TransactionError(f"NO_OPEN_TRANSACTION for {tid}")
        if not txn.covers(write.source.offset):
            raise transactions.TransactionError(
                f"WRITE_OUTSIDE_TRANSACTION: source offset {write.source.offset} is not in "
                f"the open transaction of {txn.transactional_id}"
            )
        self._transactions[txn.transactional_id] = txn
        return txn

    def process(self, write):
        writer = self._writers.get(write.topic) if self._writers else None
        if writer is not None:  # e.g. audit events: chained in the order they are produced
            txn = self._transaction(write) if self._group is not None else None
            producer = txn.producer if txn is not None else self._holder.producer
            future = writer.send(producer, write, txn)
        elif self._group is not None:
            future = self._transaction(write).send(write)
        else:
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
        if self._group is not None:
            for txn in self._transactions.values():
                txn.flush(self._flush_timeout_s)
            self._transactions = {}
        else:
            try:
                self._holder.producer.flush(timeout=self._flush_timeout_s)
            except FlushTimeout:
                pass  # the records still unacknowledged fail the bundle below
        for writer in self._writers.values():
            writer.settle()
        failed = [f for f in self._pending if not f.succeeded()]
        self._pending = []
        if failed:
            if self._group is None:
                self._retire_producer()
            # Errors name the broker condition (librdkafka's error name, kafka-python's
            # error class), never the payload.
            error = failed[0].exception if failed[0].is_done else None
            condition = getattr(error, "condition", None) or type(error).__name__
            raise RuntimeError(
                f"{len(failed)} record(s) not acknowledged by the broker: "
                f"{condition if error else 'flush timed out'}"
            )


class WriteToKafka(beam.PTransform):
    """Produces ``KafkaWrite(topic, key, value, headers, source)`` elements.

    Example::

        writes | WriteToKafka({"bootstrap_servers": "127.0.0.1:9092"})
        # exactly once, with ReadFromKafka(..., group_id="veil", exactly_once=True):
        writes | WriteToKafka(config, delivery="exactly_once", group_id="veil")
        # audit events hash-chained as they are produced:
        writes | WriteToKafka(config, topic_writers=[AuditChainSpec("veil.audit")])

    Args:
        producer_config: client settings, kafka-python names (bootstrap servers,
            security; ``veil.transforms.kafkaio.client``).
        flush_timeout_s: how long ``finish_bundle`` waits for acknowledgements.
        delivery: ``at_least_once`` (the shared idempotent producer) or
            ``exactly_once`` (the source partitions' transactions).
        group_id: exactly-once only: the source's consumer group.
        topic_writers: specs of ``TopicWriter``s (``.topic`` and ``.open(client_config)``),
            each handed the writes to its topic to send.
    """

    _shared = Shared()

    def __init__(
        self,
        producer_config: dict,
        flush_timeout_s: float = 60.0,
        delivery: str = transactions.AT_LEAST_ONCE,
        group_id: str | None = None,
        topic_writers=(),
    ):
        super().__init__()
        if delivery not in transactions.DELIVERY_MODES:
            raise ValueError(f"delivery must be one of {transactions.DELIVERY_MODES}")
        if delivery == transactions.EXACTLY_ONCE and not group_id:
            raise ValueError("exactly_once delivery needs the source's group_id")
        self._config = dict(producer_config)
        self._flush_timeout_s = flush_timeout_s
        self._group = group_id if delivery == transactions.EXACTLY_ONCE else None
        self._topic_writers = tuple(topic_writers)

    def expand(self, pcoll):
        return pcoll | "Produce" >> beam.ParDo(
            _WriteFn(
                self._config,
                WriteToKafka._shared,
                self._flush_timeout_s,
                self._group,
                topic_writers=self._topic_writers,
            )
        )
