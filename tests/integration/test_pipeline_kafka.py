"""The whole pipeline against the real broker: conservation, no leaks, restarts.

Runs ``veil run`` as a subprocess (as users do), so its logs can be searched for PII.
"""

from __future__ import annotations

import collections
import json

import pytest
from kafka_checks import (
    PEOPLE,
    finish,
    kill_group,
    pii_values,
    produce,
    raw_bytes,
    read_outputs,
    text_records,
    veil_run,
    wait_mid_stream,
)
from veil_testing import framed, media_record, opaque

from veil.pipelines.topics import topic_specs
from veil.schemas import HEADER
from veil.transforms.emit import TopicNames
from veil.transforms.kafkaio import ensure_topics

pytestmark = pytest.mark.integration


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
            framed(
                media_record(
                    "bad-mismatch", "s", b"\x89PNG\r\n\x1a\n" + marker_text, modality="text"
                )
            ),
            "MODALITY_MISMATCH",
        ),
        (
            b"s",
            framed(
                media_record(
                    "bad-json", "s", b'{"name": "John Smith"', content_type="application/json"
                )
            ),
            "STRUCTURED_DECODE_ERROR",
        ),
        (
            b"s",
            framed(media_record("bad-image", "s", b"\x89PNG\r\n\x1a\n" + marker_text)),
            "IMAGE_DECODE_ERROR",
        ),
        (
            b"s",
            framed(media_record("bad-utf8", "s", b"caf\xc3\x28 " + marker_text, modality="text")),
            "TEXT_DECODE_ERROR",
        ),
        (b"other", framed(media_record("bad-key", "s", marker_text)), "INVALID_RECORD"),
    ]


def test_mixed_batch_is_conserved_and_leaks_nothing(kafka_bootstrap, topic_prefix):
    names = TopicNames(topic_prefix)
    ensure_topics({"bootstrap_servers": kafka_bootstrap}, topic_specs(names))
    marker = b"Contact Maria Garcia at maria.garcia@example.org"
    texts = text_records(24)
    person = PEOPLE[1]
    texts.append(
        media_record(
            "json-1",
            "subject-json",
            json.dumps(
                {"customer": {"name": person[0], "email": person[1]},
                 "notes": f"call {person[2]}", "card": person[3], "items": 3}
            ).encode(),
            content_type="application/json",
        )
    )  # fmt: skip
    bad = _malformed(marker)
    produce(kafka_bootstrap, names.raw, texts + [(k, v) for k, v, _ in bad])

    proc = veil_run(kafka_bootstrap, topic_prefix, "--veil_read_mode=bounded")
    code, logs = finish(proc, 300)
    assert code == 0, logs.decode(errors="replace")[-3000:]

    sanitized, dead, audit = read_outputs(kafka_bootstrap, names)
    # Conservation: one sanitized or one dead letter per input offset, never both.
    inputs = len(texts) + len(bad)
    coords = collections.Counter(
        (v["source"]["partition"], v["source"]["offset"]) for _, v in sanitized + dead
    )
    assert len(coords) == inputs and set(coords.values()) == {1}
    assert {v["record_id"] for _, v in sanitized} == {opaque(r["record_id"]) for r in texts}
    assert sorted(v["error_code"] for _, v in dead) == sorted(code for _, _, code in bad)
    # Audit: at least one event per input, and every event's record is accounted for.
    audited = {(v["source"]["partition"], v["source"]["offset"]) for _, v in audit}
    assert audited == set(coords)
    # No raw PII anywhere downstream, nor in the pipeline's own logs.
    blobs = list(raw_bytes(sanitized, dead, audit))
    for value in pii_values() + [marker.decode()]:
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
    first = text_records(150, "first")
    produce(kafka_bootstrap, names.raw, first)

    proc = veil_run(
        kafka_bootstrap,
        topic_prefix,
        "--veil_read_mode=unbounded",
        "--veil_max_records_per_bundle=5",
        start_new_session=True,
    )
    try:
        wait_mid_stream(proc, kafka_bootstrap, names, at_least=20, total=len(first), timeout_s=180)
    finally:
        kill_group(proc)

    second = text_records(30, "second")
    produce(kafka_bootstrap, names.raw, second)
    proc = veil_run(
        kafka_bootstrap,
        topic_prefix,
        "--veil_read_mode=unbounded",
        "--veil_idle_stop_s=4",
    )
    code, logs = finish(proc, 400)
    assert code == 0, logs.decode(errors="replace")[-3000:]

    sanitized, dead, _ = read_outputs(kafka_bootstrap, names)
    assert not dead
    ids = collections.Counter(v["record_id"] for _, v in sanitized)
    assert set(ids) == {opaque(r["record_id"]) for r in first + second}  # nothing lost
    by_id = collections.defaultdict(set)
    for rec, v in sanitized:
        by_id[v["record_id"]].add((rec.key, v["payload"]))
    assert all(len(variants) == 1 for variants in by_id.values())  # duplicates identical
