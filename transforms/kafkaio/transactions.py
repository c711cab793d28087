"""Exactly-once delivery: one Kafka transaction per source partition, per process.

In ``exactly_once`` mode every write derived from a record of source partition ``p``
goes into ``p``'s open transaction, and the source commits that transaction together
with ``p``'s next offset (``send_offsets_to_transaction``) when the runner finalizes the
bundle. Records and offsets become visible to ``read_committed`` readers atomically:
either both or neither.

Why one transactional producer per source partition, with the stable id
``{group}-{topic}-{partition}``:

* a transaction must cover exactly the writes of the offsets it commits; partitions
  are processed (and finalized) independently, so each needs its own transaction;
* a restarted process calls ``init_transactions`` with the same id before it reads the
  partition's committed offset: the broker fences the crashed (zombie) producer, aborts
  its open transaction, or waits for a commit that had already begun to complete;
* a bundle that failed is never finalized; its transaction stays open and ``begin``
  aborts it before the partition is processed again.

This relies on the runner finalizing a bundle before it processes the partition's next
bundle, and on the source and every sink of the fused stage sharing one process. Beam's
FnApiRunner does both (in memory or multi-threaded); other runners are refused, see
``veil.pipelines.delivery``.

Example::

    txn = open_partition(config, "veil-pipeline", "veil.raw", 0)  # fences a zombie
    txn.begin()
    txn.send(write)
    txn.commit(next_offset=42)
"""

from __future__ import annotations

import logging
import threading

from veil.transforms.kafkaio import client

_LOGGER = logging.getLogger(__name__)

AT_LEAST_ONCE = "at_least_once"
EXACTLY_ONCE = "exactly_once"
DELIVERY_MODES = (AT_LEAST_ONCE, EXACTLY_ONCE)

# Longer than any bundle plus its finalization, even on a loaded machine: on the
# FnApiRunner one bundle holds every partition's transaction open while it processes all
# of them, and the first bundle of a run warms every branch up. The broker aborts (and
# fences) a transaction older than this. The price: a crashed process that nobody
# restarts holds read_committed readers of its output partitions back (at the last
# stable offset) for up to this long; a restart fences it at once.
TRANSACTION_TIMEOUT_MS = 300_000

# kafka-python waits for transactional requests (AddOffsetsToTxn, EndTxn) without a
# bound, and after a broker restart its transactional producer can stay stuck (records
# behind an AddPartitionsToTxn that never completes). Veil waits this long for each
# step (flush, offsets, commit, abort), then fails the bundle and marks the producer
# broken: the pipeline exits, and its restart fences the transaction and resumes.
REQUEST_TIMEOUT_S = 30.0


class TransactionError(RuntimeError):
    """A write or commit outside the protocol (e.g. no open transaction): fail closed.

    Messages carry codes and ids only, never record content.
    """


def _bounded(call, what: str, timeout_s: float = REQUEST_TIMEOUT_S):
    """Runs a blocking transactional call, raising ``TransactionError`` after ``timeout_s``.

    The call runs in a daemon thread that is abandoned on timeout: the producer is then
    unusable (``PartitionTransaction.broken``) and is replaced or dies with the process.
    """
    outcome = {}

    def run():
        try:
            outcome["value"] = call()
        except BaseException as exc:  # re-raised in the caller's thread
            outcome["error"] = exc

    thread = threading.Thread(target=run, name=f"veil-txn-{what}", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        raise TransactionError(f"TRANSACTION_TIMEOUT: {what} unanswered after {timeout_s:.0f} s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


def transactional_id(group: str, topic: str, partition: int) -> str:
    """The stable transactional id of a source partition within a consumer group."""
    return f"{group}-{topic}-{partition}"


class PartitionTransaction:
    """One source partition's transactional producer and its open transaction."""

    def __init__(self, config: dict, group: str, topic: str, partition: int, max_request_size: int):
        from kafka import KafkaProducer

        self.group = group
        self.topic = topic
        self.partition = partition
        self.transactional_id = transactional_id(group, topic, partition)
        self._lock = threading.RLock()
        self._open = False
        self._sent = 0
        self.broken = False  # a transactional request timed out: replace the producer
        # Source offsets [first, last] whose writes this transaction may hold.
        self.first_offset: int | None = None
        self.last_offset: int | None = None
        self.commits = 0
        self.aborts = 0
        self.producer = KafkaProducer(
            transactional_id=self.transactional_id,
            transaction_timeout_ms=TRANSACTION_TIMEOUT_MS,
            acks="all",
            enable_idempotence=True,
            # Bundles end in a flush, which sends at once whatever linger holds: a
            # longer linger only batches more records per request (fewer wake-ups of
            # kafka-python's I/O thread, which competes for the GIL), never delays a commit.
            linger_ms=client.LINGER_MS,
            batch_size=client.BATCH_BYTES,
            max_request_size=max_request_size,
            **client.resolve(config),
        )
        # Fences any earlier producer with this id and settles its transaction.
        self.producer.init_transactions()

    @property
    def is_open(self) -> bool:
        return self._open

    def begin(self, first_offset: int | None = None) -> None:
        """Starts a transaction, aborting one a failed (unfinalized) bundle left open.

        ``first_offset``: the first source offset of the bundle; writes derived from
        earlier offsets (already committed) are then refused, see ``covers``.
        """
        with self._lock:
            if self.broken:
                raise TransactionError(f"TRANSACTION_BROKEN for {self.transactional_id}")
            if self._open:
                _LOGGER.warning(
                    "Aborting the unfinalized transaction of %s (%d write(s))",
                    self.transactional_id,
                    self._sent,
                )
                self.abort()
            self.producer.begin_transaction()
            self._open = True
            self._sent = 0
            self.first_offset = self.last_offset = first_offset

    def claim(self, offset: int) -> None:
        """The source handed the record at ``offset`` downstream in this transaction."""
        self.last_offset = offset

    def covers(self, offset: int) -> bool:
        """True if a write derived from source ``offset`` belongs in the open transaction.

        A write from outside the bundle's offsets would be committed with offsets that
        do not cover it (e.g. after a fusion break, a later stage writing an earlier
        bundle's records): refusing it keeps records and offsets atomic.
        """
        if not self._open:
            return False
        if self.first_offset is None:
            return True
        return self.first_offset <= offset <= self.last_offset

    def send(self, write):
        """Sends ``write`` inside the open transaction; returns the send future."""
        with self._lock:
            if not self._open:
                raise TransactionError(f"NO_OPEN_TRANSACTION for {self.transactional_id}")
            self._sent += 1
            return self.producer.send(
                write.topic, key=write.key, value=write.value, headers=list(write.headers)
            )

    def flush(self, timeout_s: float) -> None:
        try:
            self.producer.flush(timeout=min(timeout_s, REQUEST_TIMEOUT_S))
        except Exception:
            self.broken = True
            raise

    def commit(self, next_offset: int) -> None:
        """Commits the open transaction with the partition's next offset for the group."""
        from kafka import TopicPartition
        from kafka.structs import OffsetAndMetadata

        with self._lock:
            if not self._open:
                raise TransactionError(f"NO_OPEN_TRANSACTION for {self.transactional_id}")
            tp = TopicPartition(self.topic, self.partition)
            offsets = {tp: OffsetAndMetadata(next_offset, "", -1)}
            try:
                _bounded(
                    lambda: self.producer.send_offsets_to_transaction(offsets, self.group),
                    "send_offsets",
                )
                # Flushes this transaction's records first, then ends it.
                _bounded(self.producer.commit_transaction, "commit")
            except TransactionError:
                self.broken = True
                raise
            self._open = False
            self.commits += 1

    def abort(self) -> None:
        with self._lock:
            try:
                _bounded(self.producer.abort_transaction, "abort")
            except TransactionError:
                self.broken = True
                raise
            finally:
                self._open = False
                self.aborts += 1

    def close(self, timeout_s: float = 10) -> None:
        with self._lock:
            if self._open and not self.broken:  # never finalized: abort it now
                try:
                    self.abort()
                except Exception as exc:  # the next init_transactions aborts it anyway
                    _LOGGER.warning(
                        "Abort on close failed for %s: %s",
                        self.transactional_id,
                        type(exc).__name__,
                    )
            # A broken producer's buffered records must not be waited for (nor sent).
            self.producer.close(timeout=1 if self.broken else timeout_s)


_REGISTRY: dict[tuple, PartitionTransaction] = {}  # by (group, topic, partition)
_REGISTRY_LOCK = threading.Lock()


def open_partition(
    config: dict, group: str, topic: str, partition: int, max_request_size: int
) -> PartitionTransaction:
    """This process's transaction for a source partition, created (and fencing) on first use."""
    with _REGISTRY_LOCK:
        txn = _REGISTRY.get((group, topic, partition))
        if txn is None:
            txn = PartitionTransaction(config, group, topic, partition, max_request_size)
            _REGISTRY[(group, topic, partition)] = txn
            _LOGGER.info("Transactional producer %s initialized", txn.transactional_id)
        return txn


def lookup(group: str, topic: str, partition: int) -> PartitionTransaction | None:
    """The partition's transaction in this process, or None if the source never opened it."""
    with _REGISTRY_LOCK:
        return _REGISTRY.get((group, topic, partition))


def replace(txn: PartitionTransaction, config: dict, max_request_size: int) -> PartitionTransaction:
    """Closes a producer in a fatal state (e.g. fenced) and opens a fresh one in its place."""
    key = (txn.group, txn.topic, txn.partition)
    with _REGISTRY_LOCK:
        if _REGISTRY.get(key) is txn:
            del _REGISTRY[key]
    try:
        txn.producer.close(timeout=5)
    except Exception as exc:
        _LOGGER.warning("Closing %s failed: %s", txn.transactional_id, type(exc).__name__)
    return open_partition(config, txn.group, txn.topic, txn.partition, max_request_size)


def close_group(group: str, topics) -> int:
    """Closes this process's transactions of ``group`` on ``topics``; returns how many."""
    topics = set(topics)
    with _REGISTRY_LOCK:
        doomed = [key for key in _REGISTRY if key[0] == group and key[1] in topics]
        txns = [_REGISTRY.pop(key) for key in doomed]
    for txn in txns:
        try:
            txn.close()
        except Exception as exc:  # closing must not fail a teardown
            _LOGGER.warning("Closing %s failed: %s", txn.transactional_id, type(exc).__name__)
    return len(txns)
