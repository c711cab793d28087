"""The whole pipeline against the real broker: conservation, no leaks, restarts.

Runs ``veil run`` as a subprocess (as users do), so its logs can be searched for PII.
"""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from kafka import KafkaProducer

from veil.pipelines.cli import consume
from veil.pipelines.topics import topic_specs
from veil.schemas import HEADER
from veil.transforms.emit import TopicNames
from veil.transforms.kafkaio import ensure_topics
from veil.transforms.records import Modality
from veil_testing import framed, media_record

pytestmark = pytest.mark.integration

VEIL = str(Path(sys.executable).with_name("veil"))

# Direct identifiers that the baseline text branch detects (detection depth is the text
# issue's work; this test is about the pipeline never leaking what it handles).
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


def _pii_values():
    return [v for person in PEOPLE for v in person]


def _text_records(n, prefix="rec"):
    records = []
    for i in range(n):
        name, email, phone, card = PEOPLE[i % len(PEOPLE)]
        text = TEMPLATES[i % len(TEMPLATES)].format(name=name, email=email, phone=phone, card=card)
        records.append(media_record(f"{prefix}-{i}", f"subject-{i % 7}", text.encode()))
    return records


def _malformed(marker_text: bytes):
    """Bad inputs that carry PII, each with the code it must get."""
    good = framed(media_record("bad-truncated", "s", marker_text))
    return [
        (None, b"not avro " + marker_text, "BAD_FRAMING"),
        (None, HEADER.pack(0, 4242) + good[HEADER.size :], "UNKNOWN_SCHEMA_ID"),
        (None, good[:-5], "AVRO_DECODE_ERROR"),
        (b"s", framed(media_record("bad-empty", "s", b"")), "EMPTY_PAYLOAD"),
        (
            b"s",
            framed(media_record("bad-mismatch", "s", b"\x89PNG\r\n\x1a\n" + marker_text, modality="text")),
            "MODALITY_MISMATCH",
        ),
        (b"s", framed(media_record("bad-json", "s", b'{"name": "John Smith"}', content_type="application/json")),
         "UNSUPPORTED_MODALITY"),
        (b"s", framed(media_record("bad-utf8", "s", b"caf\xc3\x28 " + marker_text, modality="text")),
         "TEXT_DECODE_ERROR"),
        (b"other", framed(media_record("bad-key", "s", marker_text)), "INVALID_RECORD"),
    ]


def _produce(bootstrap, topic, items):
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    for key, value in items:
        producer.send(topic, key=key, value=value)
    producer.flush()
    producer.close()


def _veil_run(bootstrap, prefix, *flags, **popen):
    argv = [
        VEIL, "-v", "run",
        f"--veil_bootstrap_servers={bootstrap}",
        f"--veil_topic_prefix={prefix}",
        f"--veil_consumer_group={prefix}-pipeline",
        *flags,
    ]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **popen)


def _outputs(bootstrap, names):
    client = {"bootstrap_servers": bootstrap}
    sanitized = [
        (rec, value)
        for modality in Modality.ALL
        for rec, _, value in consume(client, names.sanitized(modality), idle_timeout_s=2)
    ]
    dead = [(rec, value) for rec, _, value in consume(client, names.dead_letter, idle_timeout_s=2)]
    audit = [(rec, value) for rec, _, value in consume(client, names.audit, idle_timeout_s=2)]
    return sanitized, dead, audit


def _raw_bytes(outputs):
    for records in outputs:
        for rec, _ in records:
            yield rec.value
            yield rec.key or b""
            for _, header in rec.headers or ():
                yield header


def test_mixed_batch_is_conserved_and_leaks_nothing(kafka_bootstrap, topic_prefix):
    names = TopicNames(topic_prefix)
    ensure_topics({"bootstrap_servers": kafka_bootstrap}, topic_specs(names))
    marker = b"Contact Maria Garcia at maria.garcia@example.org"
    texts = _text_records(24)
    bad = _malformed(marker)
    _produce(
        kafka_bootstrap,
        names.raw,
        [(r["subject_key"].encode(), framed(r)) for r in texts] + [(k, v) for k, v, _ in bad],
    )

    proc = _veil_run(kafka_bootstrap, topic_prefix, "--veil_read_mode=bounded")
    logs, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, logs.decode(errors="replace")[-3000:]

    sanitized, dead, audit = _outputs(kafka_bootstrap, names)
    # Conservation: one sanitized or one dead letter per input offset, never both.
    inputs = len(texts) + len(bad)
    coords = collections.Counter(
        (v["source"]["partition"], v["source"]["offset"]) for _, v in sanitized + dead
    )
    assert len(coords) == inputs and set(coords.values()) == {1}
    assert {v["record_id"] for _, v in sanitized} == {r["record_id"] for r in texts}
    assert sorted(v["error_code"] for _, v in dead) == sorted(code for _, _, code in bad)
    # Audit: at least one event per input, and every event's record is accounted for.
    audited = {(v["source"]["partition"], v["source"]["offset"]) for _, v in audit}
    assert audited == set(coords)
    # No raw PII anywhere downstream, nor in the pipeline's own logs.
    blobs = list(_raw_bytes([sanitized, dead, audit]))
    for value in _pii_values() + [marker.decode()]:
        needle = value.encode()
        assert not any(needle in blob for blob in blobs), f"leaked a {len(value)}-char value"
        assert needle not in logs
    for _, v in sanitized:
        assert v["classification"]["entity_counts"]
        assert v["policy_version"] and v["pipeline_version"]


def test_streaming_run_killed_mid_stream_resumes_without_loss(kafka_bootstrap, topic_prefix):
    """SIGKILL the streaming pipeline mid-stream, restart it: nothing lost, duplicates
    (allowed: at-least-once) carry the same key."""
    names = TopicNames(topic_prefix)
    ensure_topics({"bootstrap_servers": kafka_bootstrap}, topic_specs(names))
    first = _text_records(150, "first")
    _produce(kafka_bootstrap, names.raw, [(r["subject_key"].encode(), framed(r)) for r in first])

    client = {"bootstrap_servers": kafka_bootstrap}
    proc = _veil_run(
        kafka_bootstrap, topic_prefix, "--veil_read_mode=unbounded",
        "--veil_max_records_per_bundle=5", start_new_session=True,
    )
    deadline = time.monotonic() + 180
    seen = 0
    while time.monotonic() < deadline and proc.poll() is None:
        seen = len(list(consume(client, names.sanitized("text"), idle_timeout_s=0.5)))
        if seen >= 20:
            break
        time.sleep(0.5)
    assert proc.poll() is None, "the streaming pipeline exited on its own"
    assert 20 <= seen < len(first), f"could not catch the pipeline mid-stream ({seen})"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)

    second = _text_records(30, "second")
    _produce(kafka_bootstrap, names.raw, [(r["subject_key"].encode(), framed(r)) for r in second])
    proc = _veil_run(
        kafka_bootstrap, topic_prefix, "--veil_read_mode=unbounded", "--veil_idle_stop_s=4",
    )
    logs, _ = proc.communicate(timeout=400)
    assert proc.returncode == 0, logs.decode(errors="replace")[-3000:]

    sanitized, dead, _ = _outputs(kafka_bootstrap, names)
    assert not dead
    ids = collections.Counter(v["record_id"] for _, v in sanitized)
    assert set(ids) == {r["record_id"] for r in first + second}  # nothing lost
    by_id = collections.defaultdict(set)
    for rec, v in sanitized:
        by_id[v["record_id"]].add((rec.key, v["payload"]))
    assert all(len(variants) == 1 for variants in by_id.values())  # duplicates identical
