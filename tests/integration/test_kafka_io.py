"""ReadFromKafka / WriteToKafka against the real broker."""

from __future__ import annotations

import apache_beam as beam
import pytest
from apache_beam.testing.util import assert_that, equal_to
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from veil_testing import beam_pipeline

from veil.pipelines.cli import consume
from veil.transforms.kafkaio import ReadFromKafka, TopicSpec, WriteToKafka, ensure_topics
from veil.transforms.records import KafkaWrite

pytestmark = pytest.mark.integration


def _produce(bootstrap, topic, n, partitions=3):
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    for i in range(n):
        producer.send(topic, key=f"k{i}".encode(), value=f"v{i}".encode(), partition=i % partitions)
    producer.flush()
    producer.close()


def _committed(bootstrap, group, topic, partitions=3):
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    try:
        return {p: consumer.committed(TopicPartition(topic, p)) for p in range(partitions)}
    finally:
        consumer.close()


@pytest.mark.parametrize("bounded", [True, False], ids=["bounded", "unbounded-idle-stop"])
def test_read_reads_every_offset_once_and_commits_on_finalization(
    kafka_bootstrap, topic_prefix, bounded
):
    client = {"bootstrap_servers": kafka_bootstrap}
    topic = f"{topic_prefix}.in"
    ensure_topics(client, [TopicSpec(topic, 3)])
    _produce(kafka_bootstrap, topic, 45)
    group = f"{topic_prefix}-group"

    with beam_pipeline() as p:
        messages = p | ReadFromKafka(
            client,
            [topic],
            group_id=group,
            bounded=bounded,
            max_records_per_bundle=4,  # forces several self-checkpoints per partition
            idle_stop_seconds=3,
        )
        assert_that(
            messages | "Values" >> beam.Map(lambda m: m.value.decode()),
            equal_to([f"v{i}" for i in range(45)]),
        )

    assert _committed(kafka_bootstrap, group, topic) == {0: 15, 1: 15, 2: 15}


def test_read_resumes_from_committed_offsets(kafka_bootstrap, topic_prefix):
    client = {"bootstrap_servers": kafka_bootstrap}
    topic = f"{topic_prefix}.in"
    ensure_topics(client, [TopicSpec(topic, 3)])
    group = f"{topic_prefix}-group"
    _produce(kafka_bootstrap, topic, 9)
    with beam_pipeline() as p:
        first = p | ReadFromKafka(client, [topic], group_id=group, bounded=True)
        assert_that(
            first | beam.Map(lambda m: m.value), equal_to([f"v{i}".encode() for i in range(9)])
        )

    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap)
    for i in range(9, 12):
        producer.send(topic, value=f"v{i}".encode(), partition=i % 3)
    producer.flush()
    producer.close()
    with beam_pipeline() as p:
        second = p | ReadFromKafka(client, [topic], group_id=group, bounded=True)
        assert_that(second | beam.Map(lambda m: m.value), equal_to([b"v9", b"v10", b"v11"]))


def test_write_produces_keys_values_and_headers(kafka_bootstrap, topic_prefix):
    client = {"bootstrap_servers": kafka_bootstrap}
    topic = f"{topic_prefix}.out"
    ensure_topics(client, [TopicSpec(topic, 2)])
    writes = [
        KafkaWrite(
            topic,
            f"key-{i}".encode(),
            f"value-{i}".encode(),
            (("veil-record-id", f"r{i}".encode()),),
        )
        for i in range(20)
    ]
    with beam_pipeline() as p:
        p | beam.Create(writes) | WriteToKafka(client)

    consumer = KafkaConsumer(
        bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest", consumer_timeout_ms=5000
    )
    consumer.subscribe([topic])
    got = {(r.key, r.value, tuple(r.headers)) for r in consumer}
    consumer.close()
    assert got == {(w.key, w.value, w.headers) for w in writes}


def test_write_partitions_keys_as_java_and_kafka_python_do(kafka_bootstrap, topic_prefix):
    """librdkafka's default partitioner is CRC32; the sink's must be murmur2 (Java's), so a
    key lands where every other producer of the topic puts it (per-key order)."""
    client = {"bootstrap_servers": kafka_bootstrap}
    ours, theirs = f"{topic_prefix}.keyed-veil", f"{topic_prefix}.keyed-kafka-python"
    ensure_topics(client, [TopicSpec(ours, 7), TopicSpec(theirs, 7)])
    keys = [f"subject-{i}".encode() for i in range(60)] + [b"", b"\xff" * 33]
    with beam_pipeline() as p:
        p | beam.Create([KafkaWrite(ours, k, b"v") for k in keys]) | WriteToKafka(client)
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")  # DefaultPartitioner
    for key in keys:
        producer.send(theirs, key=key, value=b"v")
    producer.flush()
    producer.close()

    def partitions(topic):
        consumer = KafkaConsumer(
            bootstrap_servers=kafka_bootstrap,
            auto_offset_reset="earliest",
            consumer_timeout_ms=5000,
        )
        consumer.subscribe([topic])
        got = {rec.key: rec.partition for rec in consumer}
        consumer.close()
        return got

    got = partitions(ours)
    assert set(got) == set(keys)
    assert got == partitions(theirs)
    assert len(set(got.values())) == 7  # spread over every partition, not all on one


def test_write_fails_the_bundle_when_the_broker_refuses(kafka_bootstrap, topic_prefix):
    """A record the broker rejects fails the bundle (so offsets are never committed)."""
    client = {"bootstrap_servers": kafka_bootstrap}
    topic = f"{topic_prefix}.small"
    ensure_topics(client, [TopicSpec(topic, 1, {"max.message.bytes": 1024})])
    with pytest.raises(Exception) as caught:
        with beam_pipeline() as p:
            p | beam.Create([KafkaWrite(topic, b"k", b"x" * 4096)]) | WriteToKafka(client)
    assert "not acknowledged" in str(caught.value) or "MessageSizeTooLarge" in str(caught.value)
    assert list(consume(client, topic, idle_timeout_s=10)) == []
    # The process's shared producer was retired: later bundles write again (a
    # kafka-python producer whose batch was refused can stay broken).
    fine = f"{topic_prefix}.fine"
    ensure_topics(client, [TopicSpec(fine, 1, {})])
    with beam_pipeline() as p:
        p | beam.Create([KafkaWrite(fine, b"k", b"ok")]) | WriteToKafka(client)
    assert [rec.value for rec, _, _ in list(consume(client, fine, idle_timeout_s=10))] == [b"ok"]


class _Finalizer:
    def __init__(self):
        self.callbacks = []

    def register(self, callback):
        self.callbacks.append(callback)


def _read_once(fn, element, restriction):
    """One ``process`` call as the runner makes it; returns (values, residual)."""
    from apache_beam.io.watermark_estimators import ManualWatermarkEstimator
    from apache_beam.runners.sdf_utils import RestrictionTrackerView, ThreadsafeRestrictionTracker

    tracker = ThreadsafeRestrictionTracker(fn.create_tracker(restriction))
    values = [
        tv.value.value
        for tv in fn.process(
            element, _Finalizer(), ManualWatermarkEstimator(None), RestrictionTrackerView(tracker)
        )
    ]
    status = tracker.deferred_status()
    return values, (status[0] if status else None)


def test_idle_stop_counts_only_empty_polls_not_time_between_calls(kafka_bootstrap, topic_prefix):
    """A partition with records left must not idle-stop because the runner came back
    late to its residual (under load, rounds of other partitions take seconds)."""
    import time

    from apache_beam.io.restriction_trackers import OffsetRange

    from veil.transforms.kafkaio.source import UNBOUNDED_STOP, _consumer, _ReadPartitionFn

    client = {"bootstrap_servers": kafka_bootstrap}
    topic = f"{topic_prefix}.in"
    ensure_topics(client, [TopicSpec(topic, 1)])
    _produce(kafka_bootstrap, topic, 10, partitions=1)
    fn = _ReadPartitionFn(client, f"{topic_prefix}-g", False, "earliest", 4, 30.0, 1.0, 1)
    fn.setup()
    try:
        element = (topic, 0)
        restriction = OffsetRange(0, UNBOUNDED_STOP)
        seen = []
        while restriction is not None:
            values, restriction = _read_once(fn, element, restriction)
            seen += values
            time.sleep(1.5)  # the runner is busy elsewhere for longer than idle_stop
            # ... and the next call starts with nothing buffered (its fetch in flight).
            fn._fetcher.close(autocommit=False)
            fn._fetcher = _consumer(client, None)
        assert seen == [f"v{i}".encode() for i in range(10)]
    finally:
        fn.teardown()


def test_completed_bounded_run_commits_the_ends_taken_before_it_never_backwards(
    kafka_bootstrap, topic_prefix
):
    """``veil run`` (bounded, at-least-once) commits the end offsets it saw before
    submitting once the job is DONE; a group already further along is left alone."""
    from veil.transforms.kafkaio.source import commit_completed_bounded_run, end_offsets_now

    topic, group = f"{topic_prefix}.ends", f"{topic_prefix}-g"
    client = {"bootstrap_servers": kafka_bootstrap}
    ensure_topics(client, [TopicSpec(topic, 3)])
    _produce(kafka_bootstrap, topic, 9)
    ends = end_offsets_now(client, [topic])
    assert sum(ends.values()) == 9 and len(ends) == 3
    _produce(kafka_bootstrap, topic, 6)  # arrives after the snapshot: not committed
    assert commit_completed_bounded_run(client, group, ends) == 3
    assert _committed(kafka_bootstrap, group, topic) == {p: ends[(topic, p)] for p in range(3)}
    ahead = end_offsets_now(client, [topic])
    assert commit_completed_bounded_run(client, group, ahead) == 3
    assert commit_completed_bounded_run(client, group, ends) == 0  # never backwards
    assert sum(_committed(kafka_bootstrap, group, topic).values()) == 15
