"""Exactly-once delivery against the real broker: transactions per source partition.

Outputs are read ``read_committed`` (as ``veil consume`` does) unless a test shows what
an uncommitted reader would see.
"""

from __future__ import annotations

import collections
import signal
import subprocess
import sys
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.io.restriction_trackers import OffsetRange
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError
from kafka_checks import committed
from veil_testing import beam_pipeline

from veil.pipelines.cli import consume
from veil.transforms.kafkaio import (
    ReadFromKafka,
    TopicSpec,
    WriteToKafka,
    ensure_topics,
    transactions,
)
from veil.transforms.kafkaio.source import _ReadPartitionFn
from veil.transforms.records import KafkaWrite, Source

pytestmark = pytest.mark.integration

JOB = Path(__file__).resolve().parents[1] / "eo_crash_job.py"


def _produce(bootstrap, topic, n, partitions=3):
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    for i in range(n):
        producer.send(topic, key=f"k{i}".encode(), value=f"v{i}".encode(), partition=i % partitions)
    producer.flush()
    producer.close()


def _values(bootstrap, topic, read_committed=True) -> collections.Counter:
    client = {"bootstrap_servers": bootstrap}
    records = consume(client, topic, idle_timeout_s=10, read_committed=read_committed)
    return collections.Counter(rec.value for rec, _, _ in records)


@pytest.fixture
def topics(kafka_bootstrap, topic_prefix):
    names = (f"{topic_prefix}.in", f"{topic_prefix}.out")
    ensure_topics({"bootstrap_servers": kafka_bootstrap}, [TopicSpec(n, 3) for n in names])
    yield names
    transactions.close_group(f"{topic_prefix}-group", [names[0]])


def test_records_and_offsets_commit_together(kafka_bootstrap, topic_prefix, topics):
    """Many small transactions (4 records per bundle): every record once, offsets at end."""
    client = {"bootstrap_servers": kafka_bootstrap}
    source, out = topics
    group = f"{topic_prefix}-group"
    _produce(kafka_bootstrap, source, 45)
    with beam_pipeline() as p:
        (
            p
            | ReadFromKafka(
                client,
                [source],
                group_id=group,
                bounded=True,
                max_records_per_bundle=4,
                exactly_once=True,
            )  # fmt: skip
            | beam.Map(lambda m: KafkaWrite(out, m.key, m.value, (), m.source))
            | WriteToKafka(client, delivery="exactly_once", group_id=group)
        )
    assert _values(kafka_bootstrap, out) == collections.Counter(f"v{i}".encode() for i in range(45))
    assert committed(kafka_bootstrap, group, source, 3) == {0: 15, 1: 15, 2: 15}
    # Each committed transaction leaves a commit marker (an offset) in the partitions it
    # wrote: 15 records per source partition, 4 per bundle, so at least 12 transactions.
    consumer = KafkaConsumer(bootstrap_servers=kafka_bootstrap)
    ends = consumer.end_offsets([TopicPartition(out, p) for p in range(3)])
    consumer.close()
    assert sum(ends.values()) - 45 >= 12


@pytest.mark.parametrize(
    "write, code",
    [
        (KafkaWrite("OUT", b"k", b"v"), "NO_SOURCE_PARTITION"),
        (KafkaWrite("OUT", b"k", b"v", (), Source("IN", 0, 0)), "NO_OPEN_TRANSACTION"),
    ],
    ids=["no-source", "no-transaction"],
)
def test_sink_fails_closed_outside_a_transaction(
    kafka_bootstrap, topic_prefix, topics, write, code
):
    """A write that cannot join its source partition's transaction fails the bundle."""
    client = {"bootstrap_servers": kafka_bootstrap}
    source, out = topics
    write = write._replace(topic=out)
    if write.source is not None:
        write = write._replace(source=write.source._replace(topic=source))
    with pytest.raises(Exception, match=code):
        with beam_pipeline() as p:
            (
                p
                | beam.Create([write])
                | WriteToKafka(client, delivery="exactly_once", group_id=f"{topic_prefix}-group")
            )
    assert _values(kafka_bootstrap, out, read_committed=False) == collections.Counter()


def test_sink_refuses_a_write_from_outside_the_open_transaction(
    kafka_bootstrap, topic_prefix, topics
):
    """A write derived from an offset the open transaction does not hold (an earlier,
    already committed bundle's) would be committed with offsets that don't cover it."""
    client = {"bootstrap_servers": kafka_bootstrap}
    source, out = topics
    group = f"{topic_prefix}-group"
    txn = transactions.open_partition(client, group, source, 0, 1 << 20)
    txn.begin(first_offset=10)
    txn.claim(12)
    late = KafkaWrite(out, b"k", b"late", (), Source(source, 0, 3))
    try:
        with pytest.raises(Exception, match="WRITE_OUTSIDE_TRANSACTION"):
            with beam_pipeline() as p:
                sink = WriteToKafka(client, delivery="exactly_once", group_id=group)
                p | beam.Create([late]) | sink
    finally:
        txn.abort()
    assert _values(kafka_bootstrap, out, read_committed=False) == collections.Counter()


class _Finalizer:
    def __init__(self):
        self.callbacks = []

    def register(self, callback):
        self.callbacks.append(callback)


def _bundle(fn, element, restriction, out):
    """One ``process`` call, with the fused sink's sends; returns its finalizer."""
    from apache_beam.io.watermark_estimators import ManualWatermarkEstimator
    from apache_beam.runners.sdf_utils import RestrictionTrackerView, ThreadsafeRestrictionTracker

    tracker = ThreadsafeRestrictionTracker(fn.create_tracker(restriction))
    finalizer = _Finalizer()
    for tv in fn.process(
        element, finalizer, ManualWatermarkEstimator(None), RestrictionTrackerView(tracker)
    ):
        message = tv.value
        txn = transactions.lookup(fn._group_id, message.topic, message.partition)
        txn.send(KafkaWrite(out, b"", message.value, (), message.source))
        txn.flush(10)
    return finalizer


def test_unfinalized_bundle_is_aborted_before_its_partition_is_read_again(
    kafka_bootstrap, topic_prefix, topics
):
    """A bundle that failed is never finalized: its writes stay invisible, and the
    partition's next bundle aborts them before writing its own."""
    client = {"bootstrap_servers": kafka_bootstrap}
    source, out = topics
    group = f"{topic_prefix}-group"
    _produce(kafka_bootstrap, source, 6, partitions=1)
    fn = _ReadPartitionFn(client, group, True, "earliest", 100, 30.0, 0.0, 250, exactly_once=True)
    fn.setup()
    try:
        restriction = fn.initial_restriction((source, 0))
        assert restriction == OffsetRange(0, 6)
        failed = _bundle(fn, (source, 0), restriction, out)  # ... and never finalized
        assert len(failed.callbacks) == 1
        assert _values(kafka_bootstrap, out) == collections.Counter()  # nothing visible

        retried = _bundle(fn, (source, 0), restriction, out)  # the runner's retry
        txn = transactions.lookup(group, source, 0)
        assert txn.aborts == 1
        for callback in retried.callbacks:
            callback()
        assert txn.commits == 1 and not txn.is_open
    finally:
        fn.teardown()
    expected = collections.Counter(f"v{i}".encode() for i in range(6))
    assert _values(kafka_bootstrap, out) == expected
    assert _values(kafka_bootstrap, out, read_committed=False) == expected + expected
    assert committed(kafka_bootstrap, group, source, 1) == {0: 6}


def test_a_restarted_process_fences_the_zombie(kafka_bootstrap, topic_prefix, topics):
    """Same transactional id: the newcomer aborts the zombie's open transaction, and the
    zombie can no longer commit (its records and offsets never become visible)."""
    client = {"bootstrap_servers": kafka_bootstrap}
    source, out = topics
    group = f"{topic_prefix}-zombie"
    zombie = transactions.PartitionTransaction(client, group, source, 0, 1 << 20)
    zombie.begin()
    zombie.send(KafkaWrite(out, b"", b"zombie"))
    zombie.flush(10)
    fresh = transactions.PartitionTransaction(client, group, source, 0, 1 << 20)
    try:
        with pytest.raises(KafkaError):
            zombie.commit(next_offset=1)
        fresh.begin()
        fresh.send(KafkaWrite(out, b"", b"fresh"))
        fresh.commit(next_offset=1)
    finally:
        fresh.close()
        zombie.producer.close(timeout=5)
    assert _values(kafka_bootstrap, out) == collections.Counter([b"fresh"])
    assert committed(kafka_bootstrap, group, source, 1) == {0: 1}


def _fence(bootstrap: str, group: str, topic: str) -> None:
    """What a restart does first: take over the transactional ids (aborting)."""
    for partition in range(3):
        transactions.PartitionTransaction(
            {"bootstrap_servers": bootstrap}, group, topic, partition, 1 << 20
        ).close()


def test_crash_mid_transaction_then_restart(kafka_bootstrap, topic_prefix, topics):
    """SIGKILL with written, uncommitted records: read_committed readers see exactly the
    records whose offsets were committed, never part of a transaction; the restart
    completes the output with no duplicate."""
    source, out = topics
    group = f"{topic_prefix}-group"
    _produce(kafka_bootstrap, source, 60)
    argv = [sys.executable, str(JOB), kafka_bootstrap, source, out, group]
    crashed = subprocess.run(argv + ["23"], capture_output=True, timeout=300)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr.decode(errors="replace")[-3000:]

    offsets = committed(kafka_bootstrap, group, source, 3)
    covered = collections.Counter(
        f"v{i}".encode() for i in range(60) if i // 3 < (offsets[i % 3] or 0)
    )  # input i sits at offset i // 3 of partition i % 3
    assert 0 < sum(covered.values()) < 60
    visible = _values(kafka_bootstrap, out)
    assert not visible - covered  # nothing beyond the committed offsets: no partial output
    _fence(kafka_bootstrap, group, source)
    assert _values(kafka_bootstrap, out) == covered
    written = _values(kafka_bootstrap, out, read_committed=False)
    assert sum(written.values()) > sum(covered.values())  # the crash left uncommitted writes

    restarted = subprocess.run(argv, capture_output=True, timeout=300)
    assert restarted.returncode == 0, restarted.stderr.decode(errors="replace")[-3000:]
    assert _values(kafka_bootstrap, out) == collections.Counter(f"v{i}".encode() for i in range(60))
    assert committed(kafka_bootstrap, group, source, 3) == {0: 20, 1: 20, 2: 20}
