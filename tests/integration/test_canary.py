"""Canary test: known PII values seeded into every modality never reach the audit or
dead-letter topics, nor the pipeline's logs, stdout or stderr at DEBUG level.

This widens ``test_pipeline_kafka``'s no-leak check (text and JSON, raw values, INFO
logs) to images, audio, video and malformed records of every kind, to the subject key,
attributes and metadata, to DEBUG logs, and to simple encodings of each value (lower
and upper case, digits only, base64 at every alignment, hex).
"""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from kafka_checks import finish, produce, raw_bytes, read_outputs
from veil_testing import framed, media_record

from veil.pipelines.topics import topic_specs
from veil.schemas import HEADER
from veil.transforms.emit import TopicNames
from veil.transforms.kafkaio import ensure_topics
from veil.transforms.keys import write_key_file

pytestmark = pytest.mark.integration

CANARIES = {
    "name": "Quentin Marwood",
    "email": "quentin.marwood@canary-mail.example",
    "ssn": "536-22-8146",
    "card": "4539 1488 0343 6467",
    "phone": "650-555-0143",
    "address": "1427 Larkspur Canary Lane",
}
SUBJECT = "patient:" + CANARIES["email"]  # subject keys are personal data too
SENTENCE = (
    f"Patient {CANARIES['name']} (SSN {CANARIES['ssn']}) lives at {CANARIES['address']}; "
    f"call {CANARIES['phone']}, mail {CANARIES['email']}, card {CANARIES['card']}."
).encode()


def encodings(value: str) -> set[bytes]:
    """``value`` and the simple encodings a careless log line or field could hold."""
    raw = value.encode()
    forms = {raw, raw.lower(), raw.upper(), raw.hex().encode(), raw.hex().upper().encode()}
    digits = "".join(ch for ch in value if ch.isdigit())
    if len(digits) >= 9:
        forms.add(digits.encode())
    for shift in range(3):  # base64 of the value wherever it sits in a larger blob
        encoded = base64.b64encode(b"\0" * shift + raw)
        forms.add(encoded[4 if shift else 0 : -4])
    return forms


def _png(text: bytes) -> bytes:
    """A small PNG whose tEXt and iTXt chunks hold ``text`` (pixels: a grey square)."""
    import cv2

    plain = cv2.imencode(".png", np.full((48, 48, 3), 128, np.uint8))[1].tobytes()

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    extra = chunk(b"tEXt", b"Author\x00" + text) + chunk(
        b"iTXt", b"Comment\x00\x00\x00\x00\x00" + text
    )
    return plain[:33] + extra + plain[33:]


def _jpeg(text: bytes) -> bytes:
    import cv2

    plain = cv2.imencode(".jpg", np.full((32, 32, 3), 90, np.uint8))[1].tobytes()
    comment = b"\xff\xfe" + struct.pack(">H", len(text) + 2) + text  # a COM segment
    return plain[:2] + comment + plain[2:]


def _wav(text: str) -> bytes:
    """``text`` spoken by espeak-ng when it is installed, else a tone; either way with
    ``text`` in the WAV's title tag."""
    import soundfile

    samples, rate = 0.2 * np.sin(np.linspace(0, 2000, 16000)), 16000
    if shutil.which("espeak-ng"):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "speech.wav")
            subprocess.run(["espeak-ng", "-w", path, text], check=True, capture_output=True)
            samples, rate = soundfile.read(path, dtype="float64")
    buffer = io.BytesIO()
    with soundfile.SoundFile(buffer, "w", rate, 1, format="WAV", subtype="PCM_16") as f:
        f.title = text
        f.write(samples.astype(np.float32))
    return buffer.getvalue()


def _inputs() -> list:
    """``(key, value)`` pairs: every modality, plus malformed records carrying canaries."""
    attrs = {"patient": CANARIES["name"], "contact": CANARIES["email"]}
    spoken = f"my name is {CANARIES['name']} and my phone number is six five zero five five five"
    good = [
        media_record("c-text", SUBJECT, SENTENCE, attributes=attrs),
        media_record("c-text-2", SUBJECT, CANARIES["card"].encode() + b" " + CANARIES["ssn"].encode()),
        media_record(
            "c-json", SUBJECT,
            json.dumps({"patient": dict(CANARIES), "visits": 2}).encode(),
            content_type="application/json",
        ),
        media_record("c-png", SUBJECT, _png(SENTENCE), content_type="image/png"),
        media_record("c-jpeg", SUBJECT, _jpeg(SENTENCE), content_type="image/jpeg"),
        media_record("c-wav", SUBJECT, _wav(spoken), content_type="audio/wav"),
        media_record("c-video", SUBJECT, b"\x00\x00\x00\x18ftypmp42" + SENTENCE, content_type="video/mp4"),
    ]  # fmt: skip
    full = framed(media_record("c-cut", SUBJECT, SENTENCE))
    key = SUBJECT.encode()
    bad = [
        (key, b"not avro at all: " + SENTENCE),  # BAD_FRAMING
        (key, HEADER.pack(0, 4242) + full[HEADER.size :]),  # UNKNOWN_SCHEMA_ID
        (key, full[:-7]),  # AVRO_DECODE_ERROR, PII in the body
        (key, framed(media_record("c-utf8", SUBJECT, b"\xc3\x28" + SENTENCE, modality="text"))),
        (key, framed(media_record("c-badjson", SUBJECT, b'{"ssn": "' + SENTENCE,
                                  content_type="application/json"))),
        (key, framed(media_record("c-badpng", SUBJECT, b"\x89PNG\r\n\x1a\n" + SENTENCE))),
        (key, framed(media_record("c-badwav", SUBJECT, b"RIFF\x10\x00\x00\x00WAVE" + SENTENCE))),
        (key, framed(media_record("c-mismatch", SUBJECT, b"\x89PNG\r\n\x1a\n" + SENTENCE,
                                  modality="text"))),
        (CANARIES["phone"].encode(), framed(media_record("c-key", SUBJECT, SENTENCE))),  # INVALID_RECORD
        (key, framed(media_record("c-unknown", SUBJECT, SENTENCE, modality="hologram"))),
    ]  # fmt: skip
    return [(r["subject_key"].encode(), framed(r)) for r in good] + bad


_DEBUG_RUN = (
    "import logging, sys\n"
    "logging.basicConfig(level=logging.DEBUG, format='%(levelname)s %(name)s: %(message)s')\n"
    "from veil.pipelines.cli import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)


def test_canary_values_never_reach_audit_dead_letters_or_logs(
    kafka_bootstrap, topic_prefix, tmp_path
):
    names = TopicNames(topic_prefix)
    ensure_topics({"bootstrap_servers": kafka_bootstrap}, topic_specs(names))
    inputs = _inputs()
    produce(kafka_bootstrap, names.raw, inputs)
    env = {
        **os.environ,
        # the image branch's face model lives in the cache `make test` fills
        "VEIL_CACHE": os.environ.get(
            "VEIL_CACHE", str(Path(__file__).resolve().parents[2] / ".cache")
        ),
        "VEIL_AUDIO_KEY_FILE": str(write_key_file(tmp_path / "audio.key")),
        "VEIL_AUDIT_KEY_FILE": str(write_key_file(tmp_path / "audit.key")),
        "VEIL_PSEUDONYM_KEY_FILE": str(write_key_file(tmp_path / "pseudonym.key")),
    }
    argv = [
        sys.executable, "-c", _DEBUG_RUN, "-v", "run",
        f"--veil_bootstrap_servers={kafka_bootstrap}",
        f"--veil_topic_prefix={topic_prefix}",
        f"--veil_consumer_group={topic_prefix}-pipeline",
        "--veil_read_mode=bounded",
        "--veil_max_records_per_bundle=3",
    ]  # fmt: skip
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
    proc.log = log
    code, logs = finish(proc, 600)
    assert code == 0, logs.decode(errors="replace")[-3000:]
    assert b"DEBUG" in logs  # the run really logged at DEBUG

    sanitized, dead, audit = read_outputs(kafka_bootstrap, names)
    # Every input came out (so every path above was exercised), with audit events.
    outcomes = {(v["source"]["partition"], v["source"]["offset"]) for _, v in sanitized + dead}
    assert len(outcomes) == len(inputs) == len(sanitized) + len(dead)
    assert {(v["source"]["partition"], v["source"]["offset"]) for _, v in audit} == outcomes
    codes = {v["error_code"] for _, v in dead}
    modalities = {v["modality"] for _, v in sanitized}
    print("dead-letter codes:", sorted(codes), "sanitized:", sorted(modalities))
    # Every branch really ran on its canary input (not dead-lettered for a missing model).
    assert {"text", "structured", "image", "audio"} <= modalities
    assert "IMAGE_MODEL_UNAVAILABLE" not in codes
    assert {
        "BAD_FRAMING", "UNKNOWN_SCHEMA_ID", "AVRO_DECODE_ERROR", "TEXT_DECODE_ERROR",
        "STRUCTURED_DECODE_ERROR", "IMAGE_DECODE_ERROR", "MODALITY_MISMATCH", "INVALID_RECORD",
    } <= codes  # fmt: skip
    # The check itself works: the same forms are found in the raw topic.
    raw = [value for _, value in inputs] + [key for key, _ in inputs]
    for value in CANARIES.values():
        assert any(any(form in blob for blob in raw) for form in encodings(value))

    blobs = {"audit": list(raw_bytes(audit)), "dead-letter": list(raw_bytes(dead)), "logs": [logs]}
    readable = [json.dumps(v, default=str).encode() for _, v in audit + dead]
    blobs["decoded"] = readable
    for label, value in CANARIES.items():
        for needle in encodings(value) | encodings(SUBJECT):
            for where, chunks in blobs.items():
                assert not any(needle in chunk for chunk in chunks), (
                    f"canary {label} (form of {len(needle)} bytes) leaked into {where}"
                )
