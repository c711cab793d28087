"""The data-key store for a cluster: a compacted Kafka topic of wrapped data keys.

Many workers on many hosts may see the same new subject at the same moment; exactly one
data key must win and every worker must use it. ``KafkaKeyStore`` gets that from the
total order of one partition, on the broker Veil already runs (no new infrastructure):

* Every record about a key id goes to one partition, ``sha256(key id) mod N`` (chosen
  by the store, not by the client's partitioner). Each value records ``N``; a topic
  whose partition count changed is refused (fail closed), since the mapping would break.
* **First use.** A worker proposes a freshly wrapped key as a *candidate* record whose
  Kafka key is unique to that proposal (``["k", key id, version, random tag]``), then
  reads the partition up to its own record. The candidate with the lowest offset for
  (key id, version) wins; every reader of the partition sees the same order, so every
  worker agrees. Losers tombstone their own candidate.
* **Compaction keeps the winner.** Compaction keeps the newest value per Kafka key and
  never renumbers offsets. No record ever reuses a candidate's key, so the winning
  candidate survives compaction at its original offset; deleting a loser cannot change
  the lowest offset. Changes to a version live under their own keys, latest wins:
  ``["w", id, v]`` a rewrap under a new KEK, ``["s", id, v]`` its state (retired),
  ``["u", id, v, writer]`` that writer's cumulative usage (the version's usage is the
  sum over writers, so nonce budgets hold across hosts).
* **Erasure.** ``erase`` writes a *forgotten* marker ``["f", id]`` (never deleted:
  a forgotten key id stays forgotten through replays and compaction), then tombstones
  every record of the key id (after catching up past the marker, so candidates that
  raced it go too). From the marker on, every reader drops the key id's versions,
  ignores any candidate for it, and refuses to create one (``SubjectErased``): a new
  record of a forgotten subject is dead-lettered, there is no new key generation.
  The wrapped keys leave the broker's disk when the log cleaner compacts their
  segment: bounded by the topic's ``max.compaction.lag.ms`` (see docs/keys.md "Data-key
  store"); until then they sit wrapped under a KEK, like a backup.

Each worker keeps an index of the topic in memory (a background consumer that started
at the beginning and keeps following the end), so reads cost no round trip; only
writes (first use of a key id, usage leases, rotation, erasure) wait for their own
record to come back. Erasures seen by the index are reported to listeners at once (the
key service evicts its cache, see ``KeyService``).

URL: ``kafka://HOST:PORT[,HOST:PORT]/TOPIC[?partitions=N&...]``; ``kafka://TOPIC`` takes
the bootstrap servers from the pipeline (``--veil_bootstrap_servers``).

Example::

    store = KafkaKeyStore.open_url("kafka://127.0.0.1:9092/veil.keys")
    store.insert_if_absent(candidate)   # the winner, whoever proposed it
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import logging
import queue
import threading
import time
import uuid
from urllib.parse import parse_qsl, urlsplit

from veil.transforms.crypto.kms import KmsError
from veil.transforms.crypto.store import ACTIVE, StoredKey, SubjectErased

_LOGGER = logging.getLogger(__name__)

CANDIDATE, WRAP, STATE, USES, FORGOTTEN = "k", "w", "s", "u", "f"
DAY_MS = 24 * 3600 * 1000
# Topic settings used when the store creates its topic (URL query parameters override).
TOPIC_DEFAULTS = {
    "partitions": 3,
    "segment_ms": 3600 * 1000,  # roll segments hourly so the cleaner can reach them
    "max_compaction_lag_ms": 6 * 3600 * 1000,  # a tombstoned wrapped key is gone by then
    "delete_retention_ms": DAY_MS,  # tombstones stay a day for lagging readers
    "min_cleanable_dirty_ratio": 0.01,
}
WAIT_S = 30.0
CHECK_S = 2.0  # how often the index thread proves the broker still answers


@dataclasses.dataclass(frozen=True)
class KafkaStoreUrl:
    bootstrap: tuple
    topic: str
    settings: tuple = ()  # (name, value) pairs from the query: topic creation settings

    @classmethod
    def parse(cls, url: str, default_bootstrap: str | None = None) -> KafkaStoreUrl:
        """``kafka://HOSTS/TOPIC?...`` or ``kafka://TOPIC`` (hosts from the default)."""
        parts = urlsplit(url)
        if parts.scheme != "kafka":
            raise KmsError("a Kafka key store URL starts with kafka://")
        path = parts.path.strip("/")
        hosts, topic = (parts.netloc, path) if path else ("", parts.netloc)
        hosts = hosts or default_bootstrap or ""
        if not topic or "/" in topic or not hosts:
            raise KmsError("a Kafka key store needs kafka://HOST:PORT/TOPIC (or a bootstrap)")
        settings = []
        for name, value in parse_qsl(parts.query):
            if name not in TOPIC_DEFAULTS:
                raise KmsError(f"unknown Kafka key store setting {name!r}")
            settings.append((name, float(value) if "ratio" in name else int(value)))
        return cls(tuple(h for h in hosts.split(",") if h), topic, tuple(settings))

    def topic_configs(self) -> tuple[int, dict]:
        s = {**TOPIC_DEFAULTS, **dict(self.settings)}
        return s["partitions"], {
            "cleanup.policy": "compact",
            "segment.ms": s["segment_ms"],
            "max.compaction.lag.ms": s["max_compaction_lag_ms"],
            "min.compaction.lag.ms": 0,
            "delete.retention.ms": s["delete_retention_ms"],
            "min.cleanable.dirty.ratio": s["min_cleanable_dirty_ratio"],
            "min.insync.replicas": 1,
        }


def is_kafka_url(store: str) -> bool:
    return str(store).startswith("kafka:")


def record_key(kind: str, key_id: str, version: int = 0, tag: str = "") -> bytes:
    return json.dumps([kind, key_id, version, tag], separators=(",", ":")).encode()


def partition_for(key_id: str, partitions: int) -> int:
    """The one partition holding every record of ``key_id`` (total order per key id)."""
    return int.from_bytes(hashlib.sha256(key_id.encode()).digest()[:8], "big") % partitions


@dataclasses.dataclass
class _Version:
    """What the index knows about one (key id, version): the winner and its changes."""

    record: bytes  # the winning candidate's Kafka key (first in the partition)
    kek_id: str
    kek_version: int
    wrapped: bytes
    created_ms: int
    state: str = ACTIVE
    uses: dict = dataclasses.field(default_factory=dict)  # writer -> cumulative uses

    def stored(self, key_id: str, version: int) -> StoredKey:
        return StoredKey(
            key_id, version, self.kek_id, self.kek_version, self.wrapped, self.state,
            sum(self.uses.values()), self.created_ms,
        )  # fmt: skip


class _Index:
    """The topic folded into per-key-id state; fed in offset order per partition."""

    def __init__(self, partitions: int):
        self.partitions = partitions
        self.versions: dict = {}  # key_id -> {version: _Version}
        self.erased: dict = {}  # key_id -> erased_ms
        self.live: dict = {}  # key_id -> {record key: partition} holding a value
        self.broken = False

    def apply(self, key: bytes, value: bytes | None) -> str | None:
        """Folds one record in; returns a key id this record erased, if any."""
        try:
            kind, key_id, version, _tag = json.loads(key)
        except (ValueError, TypeError):
            return None  # not ours: ignore
        live = self.live.setdefault(key_id, {})
        if value is None:  # tombstone
            live.pop(key, None)
            return None
        doc = json.loads(value)
        if doc.get("n", self.partitions) != self.partitions:
            self.broken = True  # partition count changed: the key -> partition map broke
        live[key] = True
        if kind == FORGOTTEN:
            self.erased[key_id] = doc.get("at", 0)
            self.versions.pop(key_id, None)
            return key_id
        if key_id in self.erased:
            return None
        versions = self.versions.setdefault(key_id, {})
        entry = versions.get(version)
        if kind == CANDIDATE and entry is None:
            versions[version] = _Version(
                key, doc["kek"], doc["kv"], base64.b64decode(doc["w"]), doc["c"]
            )
        elif entry is not None and kind == WRAP:
            entry.kek_version, entry.wrapped = doc["kv"], base64.b64decode(doc["w"])
        elif entry is not None and kind == STATE:
            entry.state = doc["state"]
        elif entry is not None and kind == USES:
            entry.uses[_tag] = max(entry.uses.get(_tag, 0), doc["u"])
        return None


class KafkaKeyStore:
    """Wrapped data keys in a compacted Kafka topic shared by every worker of a cluster.

    Same interface as ``SqliteKeyStore``; see the module docstring for the protocol.
    """

    def __init__(self, url: KafkaStoreUrl, client_config: dict | None = None, max_staleness_s=60.0):
        self._url = url
        self._max_staleness_s = max_staleness_s
        self._fresh_at = 0.0  # when the index last proved it follows the live topic
        self._client_config = {"bootstrap_servers": list(url.bootstrap), **(client_config or {})}
        self._writer = uuid.uuid4().hex[:16]  # this process's usage-counter identity
        self._cond = threading.Condition()
        self._uses: dict = {}  # (key_id, version) -> this writer's cumulative uses
        self._listeners: list = []
        self._erasures: queue.SimpleQueue = queue.SimpleQueue()
        self._closed = False
        self._error: str | None = None
        self._ensure_topic()
        self._start()

    @classmethod
    def open_url(
        cls, url: str, default_bootstrap=None, client_config=None, max_staleness_s=60.0
    ) -> KafkaKeyStore:
        return cls(KafkaStoreUrl.parse(url, default_bootstrap), client_config, max_staleness_s)

    # --- plumbing -------------------------------------------------------------------

    def _resolved(self) -> dict:
        from veil.transforms.kafkaio import client

        return client.resolve(self._client_config)

    def _ensure_topic(self) -> None:
        from veil.transforms.kafkaio.admin import TopicSpec, ensure_topics

        partitions, configs = self._url.topic_configs()
        try:
            ensure_topics(self._client_config, [TopicSpec(self._url.topic, partitions, configs)])
        except Exception as exc:  # no broker: the key service is unavailable (fail closed)
            raise KmsError(f"Kafka key store unavailable ({type(exc).__name__})") from None

    def _start(self) -> None:
        from kafka import KafkaConsumer, KafkaProducer, TopicPartition

        config = self._resolved()
        try:
            self._producer = KafkaProducer(**config, acks="all", linger_ms=0, retries=5)
            self._consumer = KafkaConsumer(**config, enable_auto_commit=False, group_id=None)
            parts = sorted(self._consumer.partitions_for_topic(self._url.topic) or ())
            if not parts:
                raise KmsError("Kafka key store topic has no partitions")
            self._tps = [TopicPartition(self._url.topic, p) for p in parts]
            self._consumer.assign(self._tps)
            self._consumer.seek_to_beginning(*self._tps)
            ends = self._consumer.end_offsets(self._tps)
        except KmsError:
            raise
        except Exception as exc:
            raise KmsError(f"Kafka key store unavailable ({type(exc).__name__})") from None
        self._index = _Index(len(parts))
        self._positions = {tp.partition: 0 for tp in self._tps}
        self._thread = threading.Thread(target=self._follow, name="veil-key-store", daemon=True)
        self._thread.start()
        # Listeners run on their own thread: one that waits for the index while holding
        # its own lock must never block the index thread.
        threading.Thread(target=self._notify, name="veil-key-erasures", daemon=True).start()
        for tp, end in ends.items():  # serve nothing before the index caught up
            self._wait_position(tp.partition, end)
        self._fresh_at = time.monotonic()

    def _follow(self) -> None:
        """Background consumer: folds every record into the index, in offset order.

        Every ``CHECK_S`` it asks the broker for the end offsets; while that works the
        index is fresh. If it stops working (broker unreachable), reads fail closed
        after ``max_staleness_s``, so a cut-off worker never outlives an erasure.
        """
        checked = 0.0
        while not self._closed:
            try:
                if time.monotonic() - checked >= CHECK_S:
                    self._consumer.end_offsets(self._tps)
                    checked = self._fresh_at = time.monotonic()
                batch = self._consumer.poll(timeout_ms=100)
                with self._cond:
                    for records in batch.values():
                        for rec in records:
                            hit = self._index.apply(rec.key, rec.value)
                            if hit:
                                self._erasures.put(hit)
                    for tp in self._tps:
                        self._positions[tp.partition] = self._consumer.position(tp)
                    self._error = None
                    self._cond.notify_all()
            except Exception as exc:  # keep following; waiters time out and fail closed
                if self._closed:
                    return
                self._error = type(exc).__name__
                _LOGGER.warning("Kafka key store consumer error: %s", self._error)
                time.sleep(0.5)

    def _notify(self) -> None:
        while not self._closed:
            try:
                key_id = self._erasures.get(timeout=0.5)
            except queue.Empty:
                continue
            for listener in list(self._listeners):
                try:
                    listener(key_id)
                except Exception as exc:
                    _LOGGER.warning("Erasure listener failed: %s", type(exc).__name__)

    def _wait_position(self, partition: int, offset: int, timeout_s: float = WAIT_S) -> None:
        """Blocks until the index has folded every record below ``offset``."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while self._positions.get(partition, 0) < offset:
                left = deadline - time.monotonic()
                if left <= 0 or self._closed:
                    raise KmsError("Kafka key store did not catch up")
                self._cond.wait(min(left, 0.5))
            if self._index.broken:
                raise KmsError("Kafka key store topic changed its partition count")

    def _send(self, key: bytes, key_id: str, doc: dict | None) -> tuple[int, int]:
        """Produces one record for ``key_id``; returns (partition, offset) once acked."""
        partition = partition_for(key_id, self._index.partitions)
        value = None if doc is None else json.dumps({**doc, "n": self._index.partitions}).encode()
        try:
            meta = self._producer.send(
                self._url.topic, key=key, value=value, partition=partition
            ).get(timeout=WAIT_S)
        except Exception as exc:
            raise KmsError(f"Kafka key store write failed ({type(exc).__name__})") from None
        return partition, meta.offset

    def _write(self, key: bytes, key_id: str, doc: dict | None) -> None:
        """Produces and waits until the index has read the record back."""
        partition, offset = self._send(key, key_id, doc)
        self._wait_position(partition, offset + 1)

    def add_erasure_listener(self, listener) -> None:
        """``listener(key_id)`` runs on the index thread when a key id is forgotten."""
        self._listeners.append(listener)

    def sync(self) -> None:
        """Waits until the index has read everything written so far (for admin tools)."""
        ends = self._consumer_end_offsets()
        for partition, end in ends.items():
            self._wait_position(partition, end)

    def _consumer_end_offsets(self) -> dict:
        from kafka import KafkaConsumer

        consumer = KafkaConsumer(**self._resolved(), enable_auto_commit=False, group_id=None)
        try:
            return {tp.partition: end for tp, end in consumer.end_offsets(self._tps).items()}
        finally:
            consumer.close()

    def close(self) -> None:
        self._closed = True
        self._thread.join(timeout=5)
        for client in (self._consumer, self._producer):
            try:
                client.close()
            except Exception:
                pass

    def __getstate__(self):
        raise TypeError("a KafkaKeyStore is per process; pickle its KeyServiceConfig instead")

    # --- the store interface (same as SqliteKeyStore) -------------------------------

    def _entry(self, key_id: str, version: int) -> _Version | None:
        return self._index.versions.get(key_id, {}).get(version)

    def _check_fresh(self) -> None:
        if time.monotonic() - self._fresh_at > self._max_staleness_s:
            raise KmsError("Kafka key store index is stale (broker unreachable)")

    def get(self, key_id: str, version: int) -> StoredKey | None:
        self._check_fresh()
        with self._cond:
            entry = self._entry(key_id, version)
            return entry.stored(key_id, version) if entry else None

    def primary(self, key_id: str) -> StoredKey | None:
        """The newest active version of ``key_id``."""
        self._check_fresh()
        with self._cond:
            versions = self._index.versions.get(key_id, {})
            active = [v for v, e in versions.items() if e.state == ACTIVE]
            return versions[max(active)].stored(key_id, max(active)) if active else None

    def latest_version(self, key_id: str) -> int:
        with self._cond:
            return max(self._index.versions.get(key_id, {}) or [0])

    def insert_if_absent(self, key: StoredKey) -> StoredKey:
        """Proposes ``key``; returns the winner for its (key id, version), ours or not."""
        if self.is_erased(key.key_id):
            raise SubjectErased()
        mine = record_key(CANDIDATE, key.key_id, key.version, uuid.uuid4().hex)
        doc = {
            "kek": key.kek_id,
            "kv": key.kek_version,
            "w": base64.b64encode(key.wrapped).decode(),
            "c": key.created_ms,
        }
        self._write(mine, key.key_id, doc)
        with self._cond:
            erased = key.key_id in self._index.erased
            entry = self._entry(key.key_id, key.version)
            won = entry is not None and entry.record == mine
            winner = entry.stored(key.key_id, key.version) if entry else None
        if not won:  # a lost or ignored proposal leaves nothing behind
            self._send(mine, key.key_id, None)
        if erased:
            raise SubjectErased()
        if winner is None:
            raise KmsError("no data key won")
        return winner

    def reserve(self, key_id: str, version: int, count: int) -> int:
        """Adds ``count`` to this writer's usage of the version; returns the total so far.

        The total is read after this writer's record came back, so it counts every lease
        written before it (and maybe some after: a conservative total).
        """
        with self._cond:
            if self._entry(key_id, version) is None:
                return -1
            mine = self._uses[(key_id, version)] = self._uses.get((key_id, version), 0) + count
        self._write(record_key(USES, key_id, version, self._writer), key_id, {"u": mine})
        with self._cond:
            entry = self._entry(key_id, version)
            return sum(entry.uses.values()) if entry else -1

    def set_state(self, key_id: str, version: int, state: str) -> None:
        if self.get(key_id, version) is not None:
            self._write(record_key(STATE, key_id, version), key_id, {"state": state})

    def rewrap(self, key: StoredKey, kek_version: int, wrapped: bytes) -> bool:
        """Replaces the wrapping if it is still the one ``key`` holds."""
        current = self.get(key.key_id, key.version)
        if current is None or (current.kek_version, current.wrapped) != (
            key.kek_version,
            key.wrapped,
        ):
            return False
        doc = {"kv": kek_version, "w": base64.b64encode(wrapped).decode()}
        self._write(record_key(WRAP, key.key_id, key.version), key.key_id, doc)
        return True

    def erase(self, key_id: str) -> int:
        """Forgets ``key_id`` for good; returns how many versions it destroyed."""
        with self._cond:
            before = len(self._index.versions.get(key_id, {}))
        self._write(record_key(FORGOTTEN, key_id), key_id, {"at": int(time.time() * 1000)})
        # Caught up past the marker: every record of the key id written before it (and
        # any candidate that raced it) is known now; tombstone all but the marker.
        marker = record_key(FORGOTTEN, key_id)
        with self._cond:
            doomed = [k for k in self._index.live.get(key_id, {}) if k != marker]
        last = None
        for key in doomed:
            last = self._send(key, key_id, None)
        if last:
            self._wait_position(last[0], last[1] + 1)
        return before

    def is_erased(self, key_id: str) -> bool:
        with self._cond:
            return key_id in self._index.erased

    def all_keys(self) -> list[StoredKey]:
        with self._cond:
            return [
                entry.stored(key_id, version)
                for key_id, versions in sorted(self._index.versions.items())
                for version, entry in sorted(versions.items())
            ]

    def erased_ids(self) -> list[str]:
        with self._cond:
            return sorted(self._index.erased)
