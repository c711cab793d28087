"""Workers react to erasure requests at once, instead of waiting for their cache TTL.

``ErasureListener`` is a light background consumer of ``<prefix>.erasure`` that runs
inside every worker process with a key service (``KeyServiceConfig.erasure_topic``; the
pipeline sets it whenever ``--veil_key_store`` is set). For each request (Kafka key: a
subject key id ``s:...`` or a raw subject key) it calls ``KeyService.evict``: the
subject's unwrapped keys leave the cache, and for one TTL every use re-checks the store.
So once the store holds the erasure (``veil keys forget`` erases first, then publishes;
``veil keys watch-erasures`` applies raw requests from upstream), the worker refuses the
subject's keys at its next use.

Deadline: the request is typically seen within ~0.1-0.5 s (one poll); the cache TTL
(``--veil_key_cache_ttl_s``, 60 s) stays the upper bound when the erasure topic is not
reachable. The listener reads from the end of the topic when it starts: a process that
starts later has no cached keys to evict. It never applies requests to the store (that
is ``veil keys forget`` / ``watch-erasures``, which write the audit events), and it logs
key ids and error class names only, never a raw subject key.

Example::

    config = KeyServiceConfig(store="keys.db", keyring="k.json",
                              bootstrap="127.0.0.1:9092", erasure_topic="veil.erasure")
    service = config.open()        # starts the listener once per process
"""

from __future__ import annotations

import logging
import threading
import time

_LOGGER = logging.getLogger(__name__)

POLL_MS = 100
RETRY_S = 2.0


class ErasureListener:
    """Follows the erasure topic and evicts requested subjects from one key service."""

    def __init__(self, service, config):
        self._service = service
        self._config = config
        self._closed = threading.Event()
        self.ready = threading.Event()  # set once positioned at the end of the topic
        self.seen = 0
        self.connected = False  # positioned on the topic and polling without error
        self._thread = threading.Thread(target=self._run, name="veil-erasure", daemon=True)

    @classmethod
    def start(cls, service, config) -> ErasureListener:
        listener = cls(service, config)
        service.erasure_listener = listener
        listener._thread.start()
        return listener

    def close(self) -> None:
        self._closed.set()
        self._thread.join(timeout=5)

    def _consumer(self):
        from kafka import KafkaConsumer, TopicPartition

        from veil.transforms.kafkaio import client

        settings = {"bootstrap_servers": self._config.bootstrap.split(",")}
        settings.update(dict(self._config.kafka_client))
        consumer = KafkaConsumer(
            **client.resolve(settings), enable_auto_commit=False, group_id=None
        )
        topic = self._config.erasure_topic
        parts = consumer.partitions_for_topic(topic)
        if not parts:
            consumer.close()
            return None
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        consumer.seek_to_end(*tps)
        for tp in tps:
            consumer.position(tp)  # resolve "end" now, so later requests are not missed
        return consumer

    def _run(self) -> None:
        consumer = None
        while not self._closed.is_set():
            try:
                if consumer is None:
                    consumer = self._consumer()
                    if consumer is None:  # topic not there yet
                        self._closed.wait(RETRY_S)
                        continue
                    self.ready.set()
                    self.connected = True
                for records in consumer.poll(timeout_ms=POLL_MS).values():
                    for rec in records:
                        self._apply(rec.key)
                self.connected = _connections(consumer) > 0
            except Exception as exc:  # keep going; the TTL remains the upper bound
                self.connected = False
                _LOGGER.warning("Erasure listener error: %s", type(exc).__name__)
                if consumer is not None:
                    try:
                        consumer.close()
                    except Exception:
                        pass
                consumer = None
                self._closed.wait(RETRY_S)
        if consumer is not None:
            consumer.close()

    def _apply(self, key: bytes | None) -> None:
        if not key:
            return
        subject = key.decode("utf-8", "replace")
        key_id = subject if subject.startswith("s:") else self._service.subject_key_id(subject)
        self._service.evict(key_id)
        self.seen += 1
        _LOGGER.info("Erasure request for %s: evicted from the key cache", key_id)


def _connections(consumer) -> float:
    """Open broker connections (poll() does not raise while kafka-python reconnects)."""
    try:
        return float(consumer.metrics().get("consumer-metrics", {}).get("connection-count", 0))
    except Exception:  # noqa: BLE001 - metrics unavailable: assume connected
        return 1.0


def wait_ready(service, timeout_s: float = 30.0) -> bool:
    """True once ``service``'s erasure listener follows the topic (for tests and tools)."""
    listener = getattr(service, "erasure_listener", None)
    if listener is None:
        return False
    deadline = time.monotonic() + timeout_s
    return listener.ready.wait(max(0.0, deadline - time.monotonic()))
