"""The schema catalog: Confluent framing, round trips and stable framing error codes."""

from __future__ import annotations

import datetime
import json
import struct
from importlib import resources

import pytest

from veil.schemas import (
    AUDIT_EVENT,
    DEAD_LETTER,
    MEDIA_RECORD,
    SANITIZED_RECORD,
    FramingError,
    catalog,
)

UTC = datetime.UTC
T_MS = 1_767_225_600_123  # 2026-01-01T00:00:00.123Z
T_DT = datetime.datetime(2026, 1, 1, 0, 0, 0, 123000, tzinfo=UTC)
SOURCE = {"topic": "veil.raw", "partition": 2, "offset": 41}

MEDIA = {
    "record_id": "r-1",
    "subject_key": "alice",
    "modality": "text",
    "content_type": "text/plain",
    "payload": b"hello \x00\xff",
    "attributes": {"filename": "a.txt"},
    "event_time": T_MS,
}
SANITIZED = {
    "record_id": "r-1",
    "modality": "text",
    "content_type": "text/plain; charset=utf-8",
    "payload": b"<PERSON> says hi",
    "classification": {
        "sensitivity": "CONFIDENTIAL",
        "regimes": ["GDPR"],
        "entity_counts": {"PERSON": 1},
    },
    "protected": [{"field_path": "payload", "envelope": b"\x01\x02"}],
    "policy_version": "p1",
    "pipeline_version": "0.1.0",
    "source": SOURCE,
}
AUDIT = {
    "event_id": "e" * 32,
    "event_time": T_MS,
    "record_id": "r-1",
    "source": SOURCE,
    "stage": "text",
    "action": "ANONYMIZED",
    "reason_code": None,
    "outcome": "OK",
    "modality": "text",
    "detectors": {"spacy": "3.8"},
    "policy_version": "p1",
    "pipeline_version": "0.1.0",
    "entity_counts": {"PERSON": 1},
    "key_id": None,
    "key_version": None,
    "duration_ms": 1.5,
    "steps": [
        {
            "stage": "decode",
            "action": "ACCEPTED",
            "outcome": "OK",
            "reason_code": None,
            "detectors": {},
            "entity_counts": {},
            "key_id": None,
            "key_version": None,
            "duration_ms": None,
            "at_ms": T_MS - 2,
        },
        {
            "stage": "text",
            "action": "ANONYMIZED",
            "outcome": "OK",
            "reason_code": None,
            "detectors": {"spacy": "3.8"},
            "entity_counts": {"PERSON": 1},
            "key_id": "k",
            "key_version": 2,
            "duration_ms": 1.5,
            "at_ms": T_MS,
        },
    ],
    "chain": {"sequence": 3, "prev_hash": b"\x00" * 4, "mac": b"\x01" * 4, "mac_key_id": "k1"},
}
DEAD = {
    "record_id": None,
    "source": SOURCE,
    "stage": "decode",
    "error_code": "BAD_FRAMING",
    "error_class": None,
    "modality": None,
    "error_time": T_MS,
    "policy_version": "p1",
    "pipeline_version": "0.1.0",
    "original": None,
    "original_key_id": None,
}


def _catalog_json_ids() -> dict:
    """Latest schema id per subject, read straight from catalog.json."""
    raw = json.loads(resources.files("veil.schemas").joinpath("catalog.json").read_text())
    latest = {}
    for item in sorted(raw["schemas"], key=lambda i: i["version"]):
        latest[item["subject"]] = item["id"]
    return latest


def _as_decoded(record: dict, time_field: str | None) -> dict:
    """``record`` as fastavro decodes it: timestamp-millis becomes an aware datetime."""
    expected = dict(record)
    if time_field:
        expected[time_field] = T_DT
    return expected


@pytest.mark.parametrize(
    "subject, record, time_field",
    [
        (MEDIA_RECORD, MEDIA, "event_time"),
        (MEDIA_RECORD, {**MEDIA, "modality": None, "event_time": None}, None),
        (SANITIZED_RECORD, SANITIZED, None),
        (AUDIT_EVENT, AUDIT, "event_time"),
        (AUDIT_EVENT, {**AUDIT, "chain": None, "duration_ms": None}, "event_time"),
        (DEAD_LETTER, DEAD, "error_time"),
    ],
    ids=["media", "media-nulls", "sanitized", "audit", "audit-nulls", "dead-letter"],
)
def test_round_trip_with_confluent_framing(subject, record, time_field):
    """Encode frames with magic 0 and the catalog.json id; decode gives the record back."""
    data = catalog().encode(subject, record)

    assert data[0] == 0
    assert struct.unpack(">I", data[1:5])[0] == _catalog_json_ids()[subject]
    assert catalog().decode(data) == (subject, _as_decoded(record, time_field))
    assert catalog().decode(data, expect=subject)[0] == subject


def test_catalog_knows_every_subject():
    assert catalog().subjects() == sorted(
        [AUDIT_EVENT, DEAD_LETTER, MEDIA_RECORD, SANITIZED_RECORD]
    )
    assert {s: catalog().latest(s).schema_id for s in catalog().subjects()} == _catalog_json_ids()


GOOD_MEDIA = catalog().encode(MEDIA_RECORD, MEDIA)
AUDIT_FRAMED = catalog().encode(AUDIT_EVENT, AUDIT)


@pytest.mark.parametrize(
    "data, expect, code",
    [
        (b"", None, "BAD_FRAMING"),
        (None, None, "BAD_FRAMING"),
        ("not bytes at all", None, "BAD_FRAMING"),
        (b"\x00\x00\x00\x01", None, "BAD_FRAMING"),
        (b"\x01" + GOOD_MEDIA[1:], None, "BAD_FRAMING"),
        (b"garbage", None, "BAD_FRAMING"),
        (b"\x00" + struct.pack(">I", 99) + GOOD_MEDIA[5:], None, "UNKNOWN_SCHEMA_ID"),
        (AUDIT_FRAMED, MEDIA_RECORD, "UNEXPECTED_SCHEMA"),
        (GOOD_MEDIA, AUDIT_EVENT, "UNEXPECTED_SCHEMA"),
        (GOOD_MEDIA[:5], None, "AVRO_DECODE_ERROR"),
        (GOOD_MEDIA[:-3], None, "AVRO_DECODE_ERROR"),
        (GOOD_MEDIA + b"trailing", None, "AVRO_DECODE_ERROR"),
        (GOOD_MEDIA + b"\x00", MEDIA_RECORD, "AVRO_DECODE_ERROR"),
    ],
    ids=[
        "empty",
        "none",
        "str",
        "short",
        "magic-1",
        "garbage",
        "unknown-id",
        "audit-expected-media",
        "media-expected-audit",
        "header-only",
        "truncated-body",
        "trailing-garbage",
        "trailing-zero",
    ],
)
def test_bad_input_raises_framing_error_with_code(data, expect, code):
    with pytest.raises(FramingError) as caught:
        catalog().decode(data, expect=expect)

    assert caught.value.code == code
    # The message is content-free: no payload bytes, no record id.
    assert "hello" not in str(caught.value)
    assert "r-1" not in str(caught.value)


def test_catalog_is_parsed_once():
    assert catalog() is catalog()
