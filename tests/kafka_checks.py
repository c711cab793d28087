"""Helpers for end-to-end tests that run ``veil run`` against the real broker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from veil_testing import framed, media_record

from veil.pipelines.cli import consume
from veil.transforms.kafkaio.client import resolve
from veil.transforms.records import Modality

VEIL = str(Path(sys.executable).with_name("veil"))

# Direct identifiers that the text branch detects; the tests check the pipeline never
# leaks them (detection depth itself is tested in tests/transforms and bench/text).
PEOPLE = [
    ("John Smith", "john.smith@example.com", "212-555-0175", "4111 1111 1111 1111"),
    ("Maria Garcia", "maria.garcia@example.org", "415-555-0132", "5555 5555 5555 4444"),
    ("Robert Johnson", "rjohnson@example.net", "617-555-0199", "3782 822463 10005"),
    ("Emily Chen", "emily.chen@example.com", "312-555-0148", "6011 1111 1111 1117"),
]
TEMPLATES = [
    "Customer {name} can be reached at {email} or {phone}.",
    "Please charge card {card} for {name}, receipt to {email}.",
    "Call {name} back on {phone} about the refund.",
]


def pii_values() -> list[str]:
    return [value for person in PEOPLE for value in person]


def text_records(n: int, prefix: str = "rec") -> list[dict]:
    records = []
    for i in range(n):
        name, email, phone, card = PEOPLE[i % len(PEOPLE)]
        text = TEMPLATES[i % len(TEMPLATES)].format(name=name, email=email, phone=phone, card=card)
        records.append(media_record(f"{prefix}-{i}", f"subject-{i % 7}", text.encode()))
    return records


def produce(bootstrap: str, topic: str, items, client: dict | None = None) -> None:
    """Produces ``(key, value)`` pairs, or MediaRecord dicts keyed by subject.

    ``client``: extra kafka-python settings, e.g. security (a password by
    ``sasl_password_env``), as in every helper here."""
    producer = KafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, **resolve(client or {})
    )
    for item in items:
        if isinstance(item, dict):
            item = (item["subject_key"].encode(), framed(item))
        producer.send(topic, key=item[0], value=item[1])
    producer.flush()
    producer.close()


def veil_run(bootstrap: str, prefix: str, *flags: str, **popen) -> subprocess.Popen:
    """Starts ``veil -v run``; its output goes to a temporary file (a pipe nobody reads
    would fill up and stall the pipeline). Collect it with ``finish``."""
    argv = [
        VEIL,
        "-v",
        "run",
        f"--veil_bootstrap_servers={bootstrap}",
        f"--veil_topic_prefix={prefix}",
        f"--veil_consumer_group={prefix}-pipeline",
        *flags,
    ]
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, **popen)
    proc.log = log
    return proc


def finish(proc: subprocess.Popen, timeout_s: float) -> tuple[int, bytes]:
    """Waits for a ``veil_run`` process; returns its exit code and everything it logged."""
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        if os.getpgid(proc.pid) == proc.pid:  # its own session: take its children too
            kill_group(proc)
        else:
            proc.kill()
            proc.wait()
    proc.log.seek(0)
    logs = proc.log.read()
    proc.log.close()
    return proc.returncode, logs


def read_outputs(bootstrap: str, names, client: dict | None = None):
    """``(sanitized, dead_letters, audit)`` as lists of ``(ConsumerRecord, value)``.

    ``sanitized`` includes the quarantine topics: a quarantined record (policy routing,
    or speech that could not be transcribed reliably) is its input's one outcome too.
    """
    client = {"bootstrap_servers": bootstrap, **(client or {})}
    sanitized = [
        (rec, value)
        for modality in Modality.ALL
        for rec, _, value in consume(client, names.sanitized(modality), idle_timeout_s=10)
    ] + [
        (rec, value)
        for modality in Modality.ALL
        for rec, _, value in consume(client, names.quarantine(modality), idle_timeout_s=10)
    ]
    dead = [(rec, value) for rec, _, value in consume(client, names.dead_letter, idle_timeout_s=10)]
    audit = [(rec, value) for rec, _, value in consume(client, names.audit, idle_timeout_s=10)]
    return sanitized, dead, audit


def raw_bytes(*outputs):
    """Every key, value and header byte string of the given outputs."""
    for records in outputs:
        for rec, _ in records:
            yield rec.value
            yield rec.key or b""
            for _, header in rec.headers or ():
                yield header


def count_sanitized(
    bootstrap: str, names, modality: str = "text", client: dict | None = None
) -> int:
    client = {"bootstrap_servers": bootstrap, **(client or {})}
    return len(list(consume(client, names.sanitized(modality), idle_timeout_s=2)))


def wait_mid_stream(proc, bootstrap, names, at_least: int, total: int, timeout_s: float) -> int:
    """Waits until ``at_least`` records were sanitized (but not all); returns the count."""
    deadline = time.monotonic() + timeout_s
    seen = 0
    while time.monotonic() < deadline and proc.poll() is None:
        seen = count_sanitized(bootstrap, names)
        if seen >= at_least:
            break
        time.sleep(0.5)
    assert proc.poll() is None, "the streaming pipeline exited on its own"
    assert at_least <= seen < total, f"could not catch the pipeline mid-stream ({seen})"
    return seen


def kill_group(proc) -> None:
    """SIGKILL a ``start_new_session`` process and everything it started (job servers)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=30)


def committed(
    bootstrap: str, group: str, topic: str, partitions: int, client: dict | None = None
) -> dict:
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        **resolve(client or {}),
    )
    try:
        return {p: consumer.committed(TopicPartition(topic, p)) for p in range(partitions)}
    finally:
        consumer.close()
