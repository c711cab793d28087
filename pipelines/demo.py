"""``veil demo``: the main job end to end against a running broker.

Creates the topics, produces a built-in sample (text records with PII, one record of
each other modality, a few malformed records), runs the pipeline in bounded mode until
the input is drained, reads the output topics back and prints a summary. ``make demo``
starts and stops the broker around it (``deploy/demo.sh``).
"""

from __future__ import annotations

import collections
import io
import json
import tempfile
import time
import wave
from importlib import resources
from pathlib import Path

import numpy as np

from veil.pipelines.files import encode_record, record_from_json
from veil.schemas import HEADER

SAMPLE = "demo-records.jsonl"


def _png() -> bytes:
    import cv2

    image = np.full((64, 96, 3), 200, np.uint8)
    cv2.circle(image, (48, 32), 20, (60, 120, 200), -1)
    ok, data = cv2.imencode(".png", image)
    assert ok
    return data.tobytes()


def _wav() -> bytes:
    rate = 16000
    t = np.arange(rate // 2) / rate
    samples = (0.3 * np.sin(2 * np.pi * 220 * t) * 32767).astype("<i2")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.tobytes())
    return buf.getvalue()


def _avi() -> bytes:
    import tempfile

    import cv2

    with tempfile.NamedTemporaryFile(suffix=".avi") as tmp:
        writer = cv2.VideoWriter(tmp.name, cv2.VideoWriter_fourcc(*"MJPG"), 5, (64, 48))
        for i in range(5):
            frame = np.full((48, 64, 3), 40 * i, np.uint8)
            writer.write(frame)
        writer.release()
        return open(tmp.name, "rb").read()


def sample_messages() -> list[tuple[bytes | None, bytes, str]]:
    """``(key, value, what)`` triples: the demo's input, valid and malformed."""
    out = []
    text = resources.files("veil.pipelines").joinpath("data", SAMPLE).read_text("utf-8")
    for line in text.splitlines():
        if line.strip():
            record = record_from_json(json.loads(line), None)
            out.append((record["subject_key"].encode(), encode_record(record), "text"))
    media = [
        (
            "structured",
            "application/json",
            json.dumps({"patient": {"name": "Maria Garcia", "ssn": "123-45-6789"}}).encode(),
        ),
        ("image", "image/png", _png()),
        ("audio", "audio/wav", _wav()),
        ("video", "video/x-msvideo", _avi()),
    ]
    for i, (what, content_type, payload) in enumerate(media):
        record = {
            "record_id": f"demo-{what}-{i}",
            "subject_key": f"subject-{what}",
            "modality": None,
            "content_type": content_type,
            "payload": payload,
            "attributes": {"source": "demo"},
            "event_time": None,
        }
        out.append((record["subject_key"].encode(), encode_record(record), what))
    good = encode_record(
        {
            "record_id": "demo-bad",
            "subject_key": "subject-bad",
            "modality": None,
            "content_type": "text/plain",
            "payload": b"truncated",
            "attributes": {},
            "event_time": None,
        }
    )
    unknown_id = HEADER.pack(0, 999) + good[HEADER.size :]
    out += [
        (None, b"this is not Avro", "malformed: no framing"),
        (None, unknown_id, "malformed: unknown schema id"),
        (None, good[: len(good) - 6], "malformed: truncated Avro"),
        (
            b"subject-empty",
            encode_record(
                {
                    "record_id": "demo-empty",
                    "subject_key": "subject-empty",
                    "modality": "text",
                    "content_type": "text/plain",
                    "payload": b"",
                    "attributes": {},
                    "event_time": None,
                }
            ),
            "malformed: empty payload",
        ),
    ]
    return out


def run_demo(bootstrap: str, prefix: str, beam_argv) -> int:
    from apache_beam.options.pipeline_options import PipelineOptions
    from kafka import KafkaProducer

    from veil.pipelines.cli import consume
    from veil.pipelines.local import _has_id_key
    from veil.pipelines.options import VeilConfig
    from veil.pipelines.runners import prepare_argv
    from veil.pipelines.sanitize import run
    from veil.pipelines.topics import topic_specs
    from veil.transforms.emit import TopicNames
    from veil.transforms.kafkaio import MAX_MESSAGE_BYTES, ensure_topics
    from veil.transforms.kafkaio import client as kafka_client
    from veil.transforms.keys import write_key_file
    from veil.transforms.modality import registered
    from veil.transforms.records import Modality

    names = TopicNames(prefix)
    argv = list(beam_argv) + [
        f"--veil_bootstrap_servers={bootstrap}",
        f"--veil_topic_prefix={prefix}",
        "--veil_read_mode=bounded",
        f"--veil_consumer_group={prefix}-demo-{int(time.time())}",
    ]
    if not _has_id_key(argv):
        # Producer ids such as "demo-text-1" are accepted only with a record-id key (they
        # leave Veil as its keyed hash): without one configured, a key for this run only.
        key_dir = Path(tempfile.mkdtemp(prefix="veil-demo-"))
        argv.append(f"--veil_record_id_key={write_key_file(key_dir / 'record-id.key')}")
    prepare_argv(argv)  # fail fast, before producing anything
    # The demo's own clients use the pipeline's settings (security included). On a
    # secured broker it plays every role (topics, producer, pipeline, reader): run it as
    # a super user, or see deploy/kafka/README.md for the per-role commands.
    client = VeilConfig.from_options(PipelineOptions(argv)).client_config()

    started = time.monotonic()
    print(f"[1/4] creating topics on {bootstrap}")
    ensure_topics(client, topic_specs(names))

    messages = sample_messages()
    print(f"[2/4] producing {len(messages)} sample records to {names.raw}")
    producer = KafkaProducer(
        acks="all",
        enable_idempotence=True,
        max_request_size=MAX_MESSAGE_BYTES,
        **kafka_client.resolve(client),
    )
    for key, value, _ in messages:
        producer.send(names.raw, key=key, value=value)
    producer.flush(timeout=60)
    producer.close()

    print("[3/4] running the pipeline (bounded: until the input is drained)")
    t0 = time.monotonic()
    run(argv)
    pipeline_s = time.monotonic() - t0

    print("[4/4] reading the output topics back\n")
    sanitized = {
        m: list(consume(client, names.sanitized(m), idle_timeout_s=10)) for m in registered()
    }
    dead = list(consume(client, names.dead_letter, idle_timeout_s=10))
    audit = list(consume(client, names.audit, idle_timeout_s=10))

    entities = collections.Counter()
    for records in sanitized.values():
        for _, _, value in records:
            entities.update(value["classification"]["entity_counts"])
    codes = collections.Counter(v["error_code"] for _, _, v in dead)
    actions = collections.Counter(v["action"] for _, _, v in audit)
    total_out = sum(len(r) for r in sanitized.values()) + len(dead)

    print("Veil demo summary")
    print("=================")
    print(f"records in                 {len(messages)}")
    for modality, records in sanitized.items():
        if records:
            print(f"sanitized ({modality:10})    {len(records)}")
    print(f"dead-lettered              {len(dead)}")
    for code, n in sorted(codes.items()):
        print(f"  {code:24} {n}")
    print(f"entities found             {sum(entities.values())}")
    for entity, n in sorted(entities.items()):
        print(f"  {entity:24} {n}")
    print(f"audit events               {len(audit)}")
    for action, n in sorted(actions.items()):
        print(f"  {action:24} {n}")
    print(
        f"conservation               {'OK' if total_out == len(messages) else 'BROKEN'}"
        f" ({total_out} out for {len(messages)} in)"
    )
    print(
        f"pipeline time              {pipeline_s:.1f} s (demo total {time.monotonic() - started:.1f} s)"
    )
    print("\nSanitized text, as analysts see it:")
    for _, _, value in sanitized[Modality.TEXT][:5]:
        print(f"  [{value['classification']['sensitivity']:12}] {value['payload'].decode()}")
    return 0 if total_out == len(messages) else 1
