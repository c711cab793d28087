"""Chains audit events as the sink produces them (see ``veil.transforms.audit_chain``).

``WriteToKafka(..., topic_writers=[AuditChainSpec(...)])`` hands every write to the
audit topic to this process's ``AuditChainer`` (a ``TopicWriter``) instead of sending it
itself. The chainer
decodes the event, gives it the next link of its chain (one chain per source partition),
re-encodes it and sends it, under one lock, to the chain's audit partition: the link is
assigned in the order the records are produced, and the idempotent producer keeps that
order in the partition, so sequence order is log order.

Where the head of a chain comes from. The chainer is process-wide (shared by every sink
DoFn instance), caches each chain's head, and at the first event of a chain in each
bundle makes sure the cache is current:

1. it flushes the producer, so every link it handed out earlier is acknowledged (or
   failed: a failed send marks the chain's cached head unusable);
2. at-least-once: the cached head is current if every offset of the audit partition
   after it, up to the partition's end, was written by this process, i.e. no other
   worker wrote there since. Exactly-once: if the source partition's transactional
   producer wrote it and has aborted no transaction since (that producer's id fences
   any other writer of the partition);
3. otherwise it recovers the head by reading the audit partition backwards from its
   last stable offset (``read_committed``: aborted events do not count), in growing
   windows, for the newest event whose ``veil-chain`` header names the chain; none in
   the whole partition means a new chain (genesis). More than ``max_recover_records``
   read without finding it fails the bundle (fail closed).

A worker that crashed replays records: their events are chained again with new
sequence numbers and the same event ids, which ``veil audit verify`` counts as
duplicates. Other workers' records on the audit partition make step 2 fail; the bundle
then recovers (one small backwards read per chain).

Exactly-once caveat: the backwards read stops at the last stable offset. A transaction
that a crashed process left open on the audit partition (until the restarted pipeline
re-initializes that source partition, or the broker's transaction timeout) can hide
committed events written after it began; a chain recovered in that window forks, which
``veil audit verify`` reports (``CONFLICT``). Waiting for the partition to become stable
is no way out: this process's own open transactions (other source partitions of the same
bundle) only end when the bundle does.

Example::

    spec = AuditChainSpec(topic="veil.audit", key_ref="/etc/veil/audit.key")
    writes | WriteToKafka(producer_config, topic_writers=[spec])
"""

from __future__ import annotations

import bisect
import dataclasses
import json
import logging
import threading
import time

from veil.schemas import AUDIT_EVENT, HEADER
from veil.schemas.registry import codec
from veil.transforms.audit_chain import (
    CHAIN_HEADER,
    GENESIS_HASH,
    AuditKeyUnavailable,
    audit_partition,
    chain_id,
    decode_writer,
    event_hash,
    link_event,
    resolve_mac_key,
)
from veil.transforms.kafkaio import client

_LOGGER = logging.getLogger(__name__)

_MAX_INTERVALS = 256  # offset runs remembered per audit partition
_FLUSH_TIMEOUT_S = 60.0


class AuditChainError(RuntimeError):
    """The chain's head could not be established: the bundle fails and is retried."""


@dataclasses.dataclass(frozen=True)
class AuditChainSpec:
    """How the sink chains audit events; names of keys, never key material.

    Attributes:
        topic: the audit topic; writes to it are chained.
        key_ref: the audit MAC key: a key file path or a ``kms:`` URI (default:
            ``$VEIL_AUDIT_KEY_FILE`` on the worker, else ``key_service``'s ``audit`` key).
        key_service: a ``KeyServiceConfig`` or None.
        require_key: refuse to start without a MAC key (else: hash chain only).
        recover_window: records read in the first backwards step of a recovery.
        max_recover_records: give up (fail the bundle) after reading this many.
    """

    topic: str
    key_ref: str | None = None
    key_service: object = None
    require_key: bool = False
    schemas: object = None  # a RegistryBinding when audit events carry registry ids
    recover_window: int = 256
    max_recover_records: int = 1_000_000

    def open(self, client_config: dict) -> AuditChainer:
        """This process's chainer for this spec and cluster (created once)."""
        tag = (self, json.dumps(client_config, sort_keys=True, default=str))
        with _CHAINERS_LOCK:
            chainer = _CHAINERS.get(tag)
            if chainer is None:
                chainer = _CHAINERS[tag] = AuditChainer(self, client_config)
            return chainer


_CHAINERS: dict = {}
_CHAINERS_LOCK = threading.Lock()


@dataclasses.dataclass
class _Head:
    sequence: int
    digest: bytes
    offset: int | None = None  # acknowledged offset; None while in flight
    broken: bool = False  # its send failed: recover before extending the chain
    txn: object = None  # exactly-once: the PartitionTransaction that sent it
    aborts: int = 0  # that transaction's abort count when it was sent


def _aborts(txn) -> int:
    return getattr(txn, "aborts", 0) if txn is not None else 0


def _long(n: int) -> bytes:
    """Avro ``long``: zig-zag, then base-128 varint."""
    n = (n << 1) ^ (n >> 63)
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _blob(data: bytes) -> bytes:
    return _long(len(data)) + data


def with_link(value: bytes, link: dict, schemas=None) -> bytes:
    """``value``, a framed AuditEvent whose ``chain`` is null, with ``link`` set.

    ``chain`` is the schema's last field and ``["null", ChainLink]``, so the unchained
    encoding ends in the union index 0; the chained one ends in index 1 followed by the
    ChainLink's fields. Splicing them gives the bytes a full re-encode gives (a test
    compares both) at a fraction of the cost: this runs for every audit event. Anything
    else (another schema version, a chain already set) is re-encoded in full.
    """
    cat = codec(schemas)  # schemas: a RegistryBinding, or None (local catalog)
    current = cat.latest(AUDIT_EVENT).schema_id
    if value[-1:] == b"\x00" and HEADER.unpack_from(value)[1] == current:
        return b"".join(
            (
                value[:-1],
                _long(1),
                _long(link["sequence"]),
                _blob(link["prev_hash"]),
                _blob(link["mac"]),
                _blob(link["mac_key_id"].encode("utf-8")),
            )
        )
    _, event = cat.decode(value, expect=AUDIT_EVENT)
    event["chain"] = link
    return cat.encode(AUDIT_EVENT, event)


class AuditChainer:
    """Process-wide, thread-safe: assigns links and sends chained audit events."""

    def __init__(self, spec: AuditChainSpec, client_config: dict):
        self.topic = spec.topic
        self._spec = spec
        self._config = client_config
        self._lock = threading.RLock()
        self._local = threading.local()
        self._heads: dict = {}  # (audit partition, chain id) -> _Head
        self._ours: dict = {}  # audit partition -> sorted [start, end) offset runs we wrote
        self._pending: list = []  # (chain key, sequence, future)
        self._partitions: int | None = None
        self._readers: dict = {}  # isolation level -> KafkaConsumer
        self.recoveries = 0
        try:
            self.key = resolve_mac_key(spec.key_ref, spec.key_service)
        except AuditKeyUnavailable:
            _LOGGER.error("Audit MAC key configured but unavailable: refusing to chain")
            raise
        if self.key.key is None:
            if spec.require_key:
                raise AuditKeyUnavailable("AUDIT_KEY_REQUIRED")
            _LOGGER.warning("No audit MAC key: audit events are hash-chained without a MAC")

    # --- called by the sink -------------------------------------------------------------

    def begin_bundle(self) -> None:
        """Every sink DoFn calls this in start_bundle: before any element of the bundle
        reaches a sink, so the bundle's first event of each chain re-checks the head."""
        self._local.checked = set()

    def send(self, producer, write, txn=None):
        """Chains ``write`` (a ``KafkaWrite`` of an AuditEvent) and sends it; the future.

        ``producer`` is the one the sink uses for this write; in exactly-once mode
        ``txn`` is the source partition's ``PartitionTransaction`` that owns it. Only
        the thread that owns the write's source partition extends its chain.
        """
        # emit hands over the event dict it encoded (``write.event``): hashing that
        # saves decoding every audit event again. Other writers' events are decoded.
        if write.event is not None:
            event = dict(write.event)
        else:
            event = decode_writer(write.value, self._spec.schemas)
        label = chain_id(event)
        with self._lock:
            key = (audit_partition(label, self._partition_count(producer)), label)
            head = self._heads.get(key)
        checked = getattr(self._local, "checked", None)
        if checked is None:
            checked = self._local.checked = set()
        if key not in checked or head is None or head.broken:
            self._ensure_current(producer, key, txn)
            checked.add(key)
        with self._lock:
            head = self._heads.get(key)
            sequence = 0 if head is None else head.sequence + 1
            prev_hash = GENESIS_HASH if head is None else head.digest
            digest = link_event(event, sequence, prev_hash, self.key)
            value = with_link(write.value, event["chain"], self._spec.schemas)
            headers = list(write.headers) + [(CHAIN_HEADER, label.encode("utf-8"))]
            future = producer.send(
                self.topic, key=write.key, value=value, headers=headers, partition=key[0]
            )
            self._heads[key] = _Head(sequence, digest, txn=txn, aborts=_aborts(txn))
            self._pending.append((key, sequence, future))
            return future

    def settle(self) -> None:
        """Records acknowledged offsets (after a flush); marks failed chains broken."""
        with self._lock:
            still = []
            for key, sequence, future in self._pending:
                if not future.is_done:
                    still.append((key, sequence, future))
                    continue
                head = self._heads.get(key)
                if future.succeeded():
                    offset = future.value.offset
                    self._add_ours(key[0], offset)
                    if head is not None and head.sequence == sequence:
                        head.offset = offset
                elif head is not None:
                    head.broken = True
            self._pending = still

    # --- head currency ------------------------------------------------------------------

    def _ensure_current(self, producer, key, txn=None) -> None:
        """Makes ``self._heads[key]`` the chain's real head (absent: a new chain)."""
        producer.flush(timeout=_FLUSH_TIMEOUT_S)
        self.settle()
        partition, label = key
        with self._lock:
            head = self._heads.get(key)
            usable = head is not None and not head.broken
            if txn is not None:
                # Exactly-once: the head is current if this partition's transactional
                # producer (which fences any other writer) wrote it and has aborted
                # nothing since: it was committed, or is in the open transaction.
                if usable and head.txn is txn and head.aborts == _aborts(txn):
                    return
                stable = self._end_offsets(partition)[0]
            else:
                stable, high = self._end_offsets(partition)
                if usable and head.offset is not None and stable == high:
                    if self._covered(partition, head.offset, high):
                        return
            head = self._recover(partition, label, stable)
            self.recoveries += 1
            if head is None:
                self._heads.pop(key, None)
            else:
                self._heads[key] = head

    def _covered(self, partition: int, offset: int, end: int) -> bool:
        """True if this process wrote every offset from ``offset`` up to ``end``."""
        for start, stop in self._ours.get(partition, ()):
            if start <= offset < stop:
                return stop >= end
        return False

    def _add_ours(self, partition: int, offset: int) -> None:
        runs = self._ours.setdefault(partition, [])
        if runs and runs[-1][1] == offset:
            runs[-1][1] = offset + 1
        elif not runs or offset > runs[-1][1]:
            runs.append([offset, offset + 1])
        else:
            index = bisect.bisect_left(runs, [offset, offset + 1])
            runs.insert(index, [offset, offset + 1])
            merged = []
            for run in runs:
                if merged and run[0] <= merged[-1][1]:
                    merged[-1][1] = max(merged[-1][1], run[1])
                else:
                    merged.append(run)
            runs[:] = merged
        del runs[:-_MAX_INTERVALS]

    # --- Kafka reads --------------------------------------------------------------------

    def _partition_count(self, producer) -> int:
        if self._partitions is None:
            partitions = producer.partitions_for(self.topic)
            if not partitions:
                raise AuditChainError(f"audit topic {self.topic} has no partitions")
            self._partitions = len(partitions)
        return self._partitions

    def _consumer(self, isolation: str = "read_committed"):
        reader = self._readers.get(isolation)
        if reader is None:
            from kafka import KafkaConsumer

            from veil.transforms.kafkaio.sink import MAX_MESSAGE_BYTES

            reader = self._readers[isolation] = KafkaConsumer(
                enable_auto_commit=False,
                isolation_level=isolation,
                max_partition_fetch_bytes=MAX_MESSAGE_BYTES,
                **client.resolve(self._config),
            )
        return reader

    def _end_offsets(self, partition: int) -> tuple[int, int]:
        """(last stable offset, high watermark): they differ while a transaction is open."""
        from kafka import TopicPartition

        tp = TopicPartition(self.topic, partition)
        stable = self._consumer().end_offsets([tp])[tp]
        return stable, self._consumer("read_uncommitted").end_offsets([tp])[tp]

    def _recover(self, partition: int, label: str, end: int) -> _Head | None:
        """The newest event of chain ``label`` before ``end``, read backwards."""
        from kafka import TopicPartition

        consumer = self._consumer()
        tp = TopicPartition(self.topic, partition)
        begin = consumer.beginning_offsets([tp])[tp]
        consumer.assign([tp])
        wanted = label.encode("utf-8")
        high, window, scanned = end, self._spec.recover_window, 0
        while high > begin:
            low = max(begin, high - window)
            newest = self._scan(consumer, tp, low, high, wanted)
            if newest is not None:
                event = decode_writer(newest.value, self._spec.schemas)
                link = event.get("chain") or {}
                if "sequence" not in link:
                    raise AuditChainError("AUDIT_CHAIN_HEAD_UNCHAINED")
                return _Head(int(link["sequence"]), event_hash(event), newest.offset)
            scanned += high - low
            if scanned >= self._spec.max_recover_records:
                raise AuditChainError("AUDIT_CHAIN_HEAD_NOT_FOUND")
            high, window = low, min(window * 4, 65536)
        _LOGGER.info("Audit chain %s: new chain on audit partition %d", label, partition)
        return None

    @staticmethod
    def _scan(consumer, tp, low: int, high: int, wanted: bytes):
        """The last record in ``[low, high)`` whose chain header is ``wanted``."""
        consumer.seek(tp, low)
        newest = None
        deadline = time.monotonic() + 30.0
        while consumer.position(tp) < high:
            if time.monotonic() > deadline:
                raise AuditChainError("AUDIT_CHAIN_READ_TIMEOUT")
            for rec in consumer.poll(timeout_ms=500).get(tp, []):
                if low <= rec.offset < high and (CHAIN_HEADER, wanted) in (rec.headers or ()):
                    newest = rec
        return newest
