"""``ReadFromKafka``: a splittable DoFn over Kafka topic-partitions, with kafka-python.

One restriction per topic-partition, an ``OffsetRange`` of Kafka offsets:

* bounded mode: ``[start, end)`` with ``end`` the partition's end offset when the
  restriction was created (tests, backfills, the demo);
* unbounded mode: ``[start, inf)``, self-checkpointing every few hundred records or
  seconds, with a manual watermark that follows record timestamps and moves to
  processing time when the partition is caught up.

``start`` is the consumer group's committed offset, or the earliest/latest offset for a
partition the group never committed. Offsets are committed to the group only when the
runner finalizes a bundle, i.e. after everything the bundle produced downstream (fused
into the same stage, see ``veil.pipelines.sanitize``) was acknowledged by the broker. A
crash between the write and the commit replays records: delivery is at-least-once and
every output carries a deterministic key.

With ``exactly_once=True`` the source reads ``read_committed`` and, instead of a
consumer commit, commits the partition's Kafka transaction (which holds every write
derived from the bundle's records) together with the next offset; see
``veil.transforms.kafkaio.transactions``.
"""

from __future__ import annotations

import logging
import sys
import threading
import time

import apache_beam as beam
from apache_beam.io.restriction_trackers import OffsetRange, OffsetRestrictionTracker
from apache_beam.io.watermark_estimators import ManualWatermarkEstimator
from apache_beam.metrics import Metrics
from apache_beam.transforms.core import RestrictionProvider
from apache_beam.utils.timestamp import Timestamp

from veil.transforms.kafkaio import client, transactions
from veil.transforms.kafkaio.sink import MAX_MESSAGE_BYTES
from veil.transforms.records import KafkaMessage

_LOGGER = logging.getLogger(__name__)

UNBOUNDED_STOP = sys.maxsize


def _consumer(config: dict, group_id: str | None, read_committed: bool = False):
    from kafka import KafkaConsumer

    return KafkaConsumer(
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed" if read_committed else "read_uncommitted",
        max_partition_fetch_bytes=MAX_MESSAGE_BYTES,
        fetch_max_bytes=4 * MAX_MESSAGE_BYTES,
        **client.resolve(config),
    )


class _UnboundedOffsetTracker(OffsetRestrictionTracker):
    """An offset tracker over ``[start, inf)`` that only splits to checkpoint."""

    def is_bounded(self):
        return self.current_restriction().stop != UNBOUNDED_STOP

    def try_split(self, fraction_of_remainder):
        if fraction_of_remainder != 0 and not self.is_bounded():
            return None
        return super().try_split(fraction_of_remainder)


class _PartitionOffsets(RestrictionProvider):
    """Creates each partition's offset range from the group's committed offsets."""

    def __init__(
        self,
        consumer_config: dict,
        group_id: str,
        bounded: bool,
        start: str,
        exactly_once: bool = False,
    ):
        self._config = consumer_config
        self._group_id = group_id
        self._bounded = bounded
        self._start = start
        self._exactly_once = exactly_once
        self._client = None
        self._lock = threading.Lock()

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_client"] = None
        state["_lock"] = None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def initial_restriction(self, element):
        from kafka import TopicPartition

        tp = TopicPartition(*element)
        if self._exactly_once:
            # Fence a crashed run's producer first: its transaction is aborted, or
            # completed if its commit had begun, before the committed offset is read.
            transactions.open_partition(
                self._config, self._group_id, tp.topic, tp.partition, MAX_MESSAGE_BYTES
            )
        with self._lock:
            if self._client is None:
                self._client = _consumer(self._config, self._group_id, self._exactly_once)
            client = self._client
            first = client.beginning_offsets([tp])[tp]
            end = client.end_offsets([tp])[tp]
            committed = client.committed(tp)
        if committed is not None:
            start = min(max(committed, first), end)
        else:
            start = first if self._start == "earliest" else end
        stop = end if self._bounded else UNBOUNDED_STOP
        _LOGGER.info(
            "Partition %s-%d: reading offsets [%d, %s)",
            tp.topic,
            tp.partition,
            start,
            stop if self._bounded else "inf",
        )
        return OffsetRange(start, stop)

    def create_tracker(self, restriction):
        if self._bounded:
            return OffsetRestrictionTracker(restriction)
        return _UnboundedOffsetTracker(restriction)

    def split(self, element, restriction):
        # One restriction per partition keeps offsets in order, so commits only advance.
        yield restriction

    def restriction_size(self, element, restriction):
        if restriction.stop == UNBOUNDED_STOP:
            return 1
        return max(0, restriction.stop - restriction.start)

    def truncate(self, element, restriction):
        # On drain, an unbounded partition stops where it is; a bounded one finishes.
        if restriction.stop == UNBOUNDED_STOP:
            return None
        return restriction


class _ReadPartitionFn(beam.DoFn, RestrictionProvider):
    """Reads one topic-partition's offset range; commits offsets on finalization.

    The DoFn is its own restriction provider (``RestrictionParam()`` without argument),
    delegating to ``_PartitionOffsets``, since the provider needs the consumer config.
    """

    def __init__(
        self,
        consumer_config: dict,
        group_id: str,
        bounded: bool,
        start: str,
        max_records_per_bundle: int,
        max_bundle_seconds: float,
        idle_stop_seconds: float,
        poll_timeout_ms: int,
        exactly_once: bool = False,
        commit_lag_s: float = 0.0,
    ):
        self._config = consumer_config
        self._group_id = group_id
        self._bounded = bounded
        self._exactly_once = exactly_once
        self._commit_lag_s = commit_lag_s
        self._offsets = _PartitionOffsets(consumer_config, group_id, bounded, start, exactly_once)
        self._max_records = max_records_per_bundle
        self._max_seconds = max_bundle_seconds
        self._idle_stop = idle_stop_seconds
        self._poll_timeout_ms = poll_timeout_ms
        self._records = Metrics.counter("veil.kafka", "records_read")
        self._bytes = Metrics.counter("veil.kafka", "bytes_read")
        self._commits = Metrics.counter("veil.kafka", "offset_commits")

    def initial_restriction(self, element):
        return self._offsets.initial_restriction(element)

    def create_tracker(self, restriction):
        return self._offsets.create_tracker(restriction)

    def split(self, element, restriction):
        return self._offsets.split(element, restriction)

    def restriction_size(self, element, restriction):
        return self._offsets.restriction_size(element, restriction)

    def truncate(self, element, restriction):
        return self._offsets.truncate(element, restriction)

    def setup(self):
        self._fetcher = _consumer(self._config, None, self._exactly_once)
        self._committer = _consumer(self._config, self._group_id)
        self._topics_read = set()
        self._commit_lock = threading.Lock()
        self._deferred = None
        if self._commit_lag_s:
            self._deferred = deferred_commits(self._group_id, self._commit_lag_s)
        # Seconds spent polling a caught-up partition without getting a record, summed
        # across calls: time the runner spends elsewhere between calls does not count.
        self._idle_s = {}

    def teardown(self):
        for consumer in (getattr(self, "_fetcher", None), getattr(self, "_committer", None)):
            if consumer is not None:
                consumer.close(autocommit=False)
        if self._exactly_once and getattr(self, "_topics_read", None):
            transactions.close_group(self._group_id, self._topics_read)

    def _begin_transaction(self, tp, first_offset: int) -> transactions.PartitionTransaction:
        """Opens ``tp``'s transaction for this bundle (aborting a failed bundle's)."""
        txn = transactions.open_partition(
            self._config, self._group_id, tp.topic, tp.partition, MAX_MESSAGE_BYTES
        )
        self._topics_read.add(tp.topic)
        try:
            txn.begin(first_offset)
        except Exception as exc:  # fenced or timed out by the broker: start afresh
            _LOGGER.warning(
                "Transactional producer %s unusable (%s): replacing it",
                txn.transactional_id,
                type(exc).__name__,
            )
            txn = transactions.replace(txn, self._config, MAX_MESSAGE_BYTES)
            txn.begin(first_offset)
        return txn

    def _commit_transaction(self, txn, next_offset: int) -> None:
        txn.commit(next_offset)
        self._commits.inc()

    def _commit(self, tp, next_offset: int) -> None:
        """Commits ``tp`` up to ``next_offset`` on finalization (deferred: what an
        earlier round finalized, ``_DeferredCommits``)."""
        from kafka.structs import OffsetAndMetadata

        deferred = self._deferred
        with self._commit_lock if deferred is None else deferred.lock:
            due = next_offset
            if deferred is not None:
                due = deferred.finalized(tp, next_offset, time.monotonic())
            if due is not None:
                self._committer.commit({tp: OffsetAndMetadata(due, "", -1)})
                self._commits.inc()
            if deferred is not None:
                deferred.done(tp, time.monotonic())

    def _report_lag(self, tp, next_offset: int) -> None:
        """Records behind the partition's high-water mark (gauge ``consumer_lag_p<N>``)."""
        high = self._fetcher.highwater(tp)
        if high is not None:
            Metrics.gauge("veil.kafka", f"consumer_lag_p{tp.partition}").set(
                max(0, high - next_offset)
            )

    def _idle_stopped(self, tp, position: int, empty_poll_s: float) -> bool:
        """True once the partition is caught up and has been idle for ``idle_stop``."""
        idle = self._idle_s.get(tp, 0.0) + empty_poll_s
        self._idle_s[tp] = idle
        if idle < self._idle_stop or position < self._fetcher.end_offsets([tp])[tp]:
            return False
        _LOGGER.info("Partition %s-%d idle for %.0f s: stopping", tp.topic, tp.partition, idle)
        return True

    def process(
        self,
        element,
        bundle_finalizer=beam.DoFn.BundleFinalizerParam,
        watermark_estimator=beam.DoFn.WatermarkEstimatorParam(
            ManualWatermarkEstimator.default_provider()
        ),
        tracker=beam.DoFn.RestrictionParam(),
    ):
        # Beam binds this signature positionally: the tracker must come last here.
        from kafka import TopicPartition

        tp = TopicPartition(*element)
        restriction = tracker.current_restriction()
        if restriction.start >= restriction.stop:
            return
        fetcher = self._fetcher
        fetcher.assign([tp])
        fetcher.seek(tp, restriction.start)
        started = time.monotonic()
        emitted = 0
        next_offset = None
        txn = None
        try:
            while True:
                polled_at = time.monotonic()
                batch = fetcher.poll(
                    timeout_ms=self._poll_timeout_ms, max_records=self._max_records
                )
                records = batch.get(tp, [])
                now = time.monotonic()
                if not records:
                    position = fetcher.position(tp)
                    self._report_lag(tp, position)
                    if position >= restriction.stop:
                        tracker.try_claim(restriction.stop)  # done: nothing is left
                        return
                    if not self._bounded:
                        _advance(watermark_estimator, Timestamp.now())
                        if self._idle_stop and self._idle_stopped(tp, position, now - polled_at):
                            tracker.try_claim(restriction.stop)
                            return
                    if now - started >= self._max_seconds:
                        tracker.defer_remainder()
                        return
                    continue
                self._idle_s[tp] = 0.0
                self._report_lag(tp, records[-1].offset + 1)
                for rec in records:
                    if not tracker.try_claim(rec.offset):
                        return
                    if self._exactly_once:
                        if txn is None:
                            txn = self._begin_transaction(tp, rec.offset)
                        txn.claim(rec.offset)
                    next_offset = rec.offset + 1
                    size = len(rec.value or b"")
                    self._records.inc()
                    self._bytes.inc(size)
                    ts = Timestamp(micros=max(0, rec.timestamp) * 1000)
                    _advance(watermark_estimator, ts)
                    yield beam.window.TimestampedValue(
                        KafkaMessage(
                            topic=rec.topic,
                            partition=rec.partition,
                            offset=rec.offset,
                            timestamp_ms=rec.timestamp,
                            key=rec.key,
                            value=rec.value,
                            headers=tuple(rec.headers or ()),
                        ),
                        ts,
                    )
                    emitted += 1
                if next_offset is not None and next_offset >= restriction.stop:
                    tracker.try_claim(restriction.stop)
                    return
                if emitted >= self._max_records or now - started >= self._max_seconds:
                    tracker.defer_remainder()
                    return
        finally:
            if txn is not None:
                bundle_finalizer.register(
                    lambda txn=txn, offset=next_offset: self._commit_transaction(txn, offset)
                )
            elif next_offset is not None:
                bundle_finalizer.register(
                    lambda tp=tp, offset=next_offset: self._commit(tp, offset)
                )


class _DeferredCommits:
    """Holds each finalized bundle's offsets until the *next* completed checkpoint.

    Beam's portable Flink runner finalizes every outstanding bundle when a checkpoint
    completes (``ExecutableStageDoFnOperator.notifyCheckpointComplete`` calls
    ``finalizeAllOutstandingBundles``), including bundles that finished after that
    checkpoint's barrier had passed the read. When the read is fused with the sink that
    is harmless: a bundle finishes only once its writes were acknowledged. Behind a
    redistribution it is not: such a bundle's records may still be on their way to
    another subtask, and committing their offsets then would lose them if the job died
    and was submitted afresh (a fresh job starts from the committed offsets, not from
    Flink's state).

    Rounds are counted per partition: a partition is read by one subtask, and that
    subtask's finalizations for one completed checkpoint arrive together, those for the
    next one a checkpoint interval later (or later still). A finalization of a partition
    more than ``gap_s`` after its previous one (``gap_s`` well under the interval) proves
    a later checkpoint completed on that subtask, whose barrier passed the read after
    every bundle finalized before: the offset held from the earlier round is committed
    then. Finalizations closer together than ``gap_s`` count as one round, which only
    commits later. One instance serves the whole process (``deferred_commits``): the
    SDK harness spreads a stage's bundles over several DoFn instances. The offsets of a
    partition's last round before the stream goes quiet wait for its next records (or,
    in bounded runs, for the commit after the job is done); a job that stops before
    then reads them again (at-least-once). (Finalizing empty bundles to mark rounds
    stalled an embedded Flink job after a few rounds; not done.)
    """

    def __init__(self, gap_s: float):
        self._gap_s = gap_s
        self.lock = threading.Lock()  # held across the commit: commits only advance
        self._held: dict = {}  # tp -> next offset, finalized in tp's current round
        self._last: dict = {}  # tp -> when tp's previous finalization ended (monotonic)

    def finalized(self, tp, next_offset: int, now: float) -> int | None:
        """Records a finalization of ``tp`` up to ``next_offset``; returns the offset
        now safe to commit for ``tp``, if any."""
        due = None
        last = self._last.get(tp)
        if last is not None and now - last >= self._gap_s:
            due = self._held.pop(tp, None)  # a later checkpoint completed
        self._held[tp] = max(next_offset, self._held.get(tp, next_offset))
        return due

    def done(self, tp, now: float) -> None:
        self._last[tp] = now


_DEFERRED: dict = {}
_DEFERRED_LOCK = threading.Lock()


def deferred_commits(group_id: str, gap_s: float) -> _DeferredCommits:
    """The process's ``_DeferredCommits`` for a consumer group."""
    with _DEFERRED_LOCK:
        return _DEFERRED.setdefault((group_id, gap_s), _DeferredCommits(gap_s))


def _advance(estimator, ts: Timestamp) -> None:
    current = estimator.current_watermark()
    if current is None or ts > current:
        estimator.set_watermark(ts)


class _ListPartitionsFn(beam.DoFn):
    """Expands a topic name into its ``(topic, partition)`` pairs at run time."""

    def __init__(self, consumer_config: dict):
        self._config = consumer_config

    def setup(self):
        self._client = _consumer(self._config, None)

    def teardown(self):
        if getattr(self, "_client", None) is not None:
            self._client.close(autocommit=False)

    def process(self, topic):
        partitions = None
        deadline = time.monotonic() + 30
        while not partitions and time.monotonic() < deadline:
            partitions = self._client.partitions_for_topic(topic)
            if not partitions:
                time.sleep(0.5)
        if not partitions:
            raise RuntimeError(f"topic {topic!r} does not exist or has no partitions")
        for partition in sorted(partitions):
            yield (topic, partition)


class ReadFromKafka(beam.PTransform):
    """Reads Kafka topics into ``KafkaMessage`` elements, one restriction per partition.

    Example::

        messages = pipeline | ReadFromKafka(
            {"bootstrap_servers": "127.0.0.1:9092"}, ["veil.raw"], group_id="veil",
            bounded=True)

    Args:
        consumer_config: kafka-python consumer settings (bootstrap servers, security).
        topics: topics to read.
        group_id: the consumer group whose committed offsets set where to start, and
            which receives commits on bundle finalization.
        bounded: read to the end offsets seen at start, then finish.
        start: ``earliest`` or ``latest``, for partitions the group never committed.
        idle_stop_seconds: unbounded mode only; finish a partition after this long
            without records (0: never, the streaming default).
        exactly_once: read ``read_committed`` and commit offsets inside each source
            partition's Kafka transaction; the sink must be a ``WriteToKafka`` with
            ``delivery="exactly_once"`` and the same group, fused into this stage.
        commit_lag_s: 0 (default): commit a bundle's offsets when it is finalized,
            right for a sink fused into this stage. Above 0: hold them until a later
            round of finalizations, at least this many seconds after the previous one,
            i.e. until the next completed Flink checkpoint; for a read whose records
            are redistributed before they are written (``_DeferredCommits``).
    """

    def __init__(
        self,
        consumer_config: dict,
        topics: list[str],
        group_id: str,
        bounded: bool = False,
        start: str = "earliest",
        max_records_per_bundle: int = 500,
        max_bundle_seconds: float = 2.0,
        idle_stop_seconds: float = 0.0,
        poll_timeout_ms: int = 250,
        exactly_once: bool = False,
        commit_lag_s: float = 0.0,
    ):
        super().__init__()
        self._exactly_once = exactly_once
        self._commit_lag_s = commit_lag_s
        if start not in ("earliest", "latest"):
            raise ValueError("start must be 'earliest' or 'latest'")
        self._config = dict(consumer_config)
        self._topics = list(topics)
        self._group_id = group_id
        self._bounded = bounded
        self._start = start
        self._fn_args = (
            max_records_per_bundle,
            max_bundle_seconds,
            idle_stop_seconds,
            poll_timeout_ms,
        )

    def expand(self, pbegin):
        fn_class = _ReadPartitionFn
        if not self._bounded:
            fn_class = beam.DoFn.unbounded_per_element()(_UnboundedReadPartitionFn)
        read_fn = fn_class(
            self._config,
            self._group_id,
            self._bounded,
            self._start,
            *self._fn_args,
            exactly_once=self._exactly_once,
            commit_lag_s=self._commit_lag_s,
        )
        return (
            pbegin
            | "Topics" >> beam.Create(self._topics)
            | "Partitions" >> beam.ParDo(_ListPartitionsFn(self._config))
            | "ReadPartitions" >> beam.ParDo(read_fn)
        )


class _UnboundedReadPartitionFn(_ReadPartitionFn):
    """The same reader, declared unbounded per element for streaming runners."""


def end_offsets_now(consumer_config: dict, topics: list[str]) -> dict:
    """``{(topic, partition): end offset}`` of ``topics`` at this moment."""
    from kafka import TopicPartition

    consumer = _consumer(consumer_config, None)
    try:
        tps = [
            TopicPartition(topic, p)
            for topic in topics
            for p in sorted(consumer.partitions_for_topic(topic) or ())
        ]
        return {(tp.topic, tp.partition): off for tp, off in consumer.end_offsets(tps).items()}
    finally:
        consumer.close(autocommit=False)


def commit_completed_bounded_run(consumer_config: dict, group_id: str, ends: dict) -> int:
    """After a bounded, at-least-once job has *succeeded*: commits ``ends`` (taken by
    ``end_offsets_now`` before the job was submitted) where the group is behind.

    Safe because such a job only succeeds once every record below its restrictions' stop
    offsets (at least ``ends``, end offsets only grow) has its outcome acknowledged by
    the broker. Needed on Flink, whose last checkpoints can be declined while a drained
    job's tasks close, leaving the last bundles unfinalized and their offsets uncommitted
    (the next run would replay them). Never used for exactly-once delivery, whose offsets
    must commit inside the output transactions. Returns the partitions it moved.
    """
    from kafka import TopicPartition
    from kafka.structs import OffsetAndMetadata

    consumer = _consumer(consumer_config, group_id)
    try:
        behind = {}
        for (topic, partition), end in ends.items():
            tp = TopicPartition(topic, partition)
            current = consumer.committed(tp)
            if current is None or current < end:
                behind[tp] = OffsetAndMetadata(end, "", -1)
        if behind:
            consumer.commit(behind)
        return len(behind)
    finally:
        consumer.close(autocommit=False)
