"""DecodeRecords: framed MediaRecords become WorkItems; everything else a dead letter."""

from __future__ import annotations

import dataclasses
import struct

import apache_beam as beam
import pytest
from apache_beam.testing.util import assert_that, equal_to
from veil_testing import beam_pipeline, framed, media_record, message, opaque

from veil.schemas import AUDIT_EVENT, catalog
from veil.transforms.codec import DecodeRecords
from veil.transforms.records import Failure

MAX_PAYLOAD = 64
MAX_MESSAGE = 1024


def _item_view(item):
    """record_id, source coordinates and the (stage, action, outcome) trail."""
    return (
        item.record_id,
        tuple(item.source),
        tuple((s.stage, s.action, s.outcome, s.reason_code) for s in item.trail),
    )


def _failure_view(failure):
    return (failure.record_id, failure.error_code, failure.stage, failure.error_class)


def _decode(messages, max_message=MAX_MESSAGE):
    """Runs DecodeRecords over ``messages``; returns the pipeline and both outputs."""
    pipeline = beam_pipeline()
    decoded = (
        pipeline
        | beam.Create(messages, reshuffle=False)
        | DecodeRecords(max_payload_bytes=MAX_PAYLOAD, max_message_bytes=max_message)
    )
    return pipeline, decoded


def test_valid_record_becomes_work_item():
    """Key None or equal to subject_key, payload at the limit: all accepted."""
    messages = [
        message(framed(media_record("r1", "alice")), offset=7, key=b"alice"),
        message(framed(media_record("r2", "bob")), offset=8, key=None),
        message(
            framed(media_record("r3", "zoë", payload=b"x" * MAX_PAYLOAD)),
            offset=9,
            key="zoë".encode(),
        ),
    ]
    pipeline, decoded = _decode(messages)
    with pipeline:
        assert_that(
            decoded.records | "ItemView" >> beam.Map(_item_view),
            equal_to(
                [
                    (opaque("r1"), ("veil.raw", 0, 7), (("decode", "ACCEPTED", "OK", None),)),
                    (opaque("r2"), ("veil.raw", 0, 8), (("decode", "ACCEPTED", "OK", None),)),
                    (opaque("r3"), ("veil.raw", 0, 9), (("decode", "ACCEPTED", "OK", None),)),
                ]
            ),
            label="records",
        )
        assert_that(decoded.dead_letters, equal_to([]), label="dead_letters")


def _framed_with_id(schema_id: int) -> bytes:
    return b"\x00" + struct.pack(">I", schema_id) + framed(media_record())[5:]


# (id, value, kafka key, expected record_id, expected code)
BAD_MESSAGES = [
    ("none-value", None, None, None, "BAD_FRAMING"),
    ("empty-bytes", b"", None, None, "BAD_FRAMING"),
    ("garbage", b"garbage", None, None, "BAD_FRAMING"),
    ("unknown-schema-id", _framed_with_id(4242), None, None, "UNKNOWN_SCHEMA_ID"),
    (
        "audit-event-not-media",
        catalog().encode(
            AUDIT_EVENT,
            {
                "event_id": "e",
                "event_time": 0,
                "source": {"topic": "t", "partition": 0, "offset": 0},
                "stage": "s",
                "action": "a",
                "outcome": "OK",
                "policy_version": "p",
                "pipeline_version": "v",
            },
        ),
        None,
        None,
        "UNEXPECTED_SCHEMA",
    ),
    ("truncated-avro", framed(media_record())[:-2], None, None, "AVRO_DECODE_ERROR"),
    (
        "empty-payload",
        framed(media_record("r-empty", payload=b"")),
        None,
        opaque("r-empty"),
        "EMPTY_PAYLOAD",
    ),
    (
        "payload-too-large",
        framed(media_record("r-big", payload=b"x" * (MAX_PAYLOAD + 1))),
        None,
        opaque("r-big"),
        "PAYLOAD_TOO_LARGE",
    ),
    (
        "message-too-large",
        framed(media_record("r-huge", attributes={"pad": "p" * MAX_MESSAGE})),
        None,
        None,
        "PAYLOAD_TOO_LARGE",
    ),
    ("empty-record-id", framed(media_record("")), None, None, "INVALID_RECORD"),
    ("long-record-id", framed(media_record("i" * 300)), None, None, "INVALID_RECORD"),
    (
        "empty-subject",
        framed(media_record("r-nosub", subject="")),
        None,
        opaque("r-nosub"),
        "INVALID_RECORD",
    ),
    (
        "long-subject",
        framed(media_record("r-longsub", subject="s" * 300)),
        None,
        opaque("r-longsub"),
        "INVALID_RECORD",
    ),
    (
        "key-mismatch",
        framed(media_record("r-key", subject="alice")),
        b"mallory",
        opaque("r-key"),
        "INVALID_RECORD",
    ),
]


@pytest.mark.parametrize(
    "value, key, record_id, code",
    [row[1:] for row in BAD_MESSAGES],
    ids=[row[0] for row in BAD_MESSAGES],
)
def test_bad_message_becomes_dead_letter(value, key, record_id, code):
    pipeline, decoded = _decode([message(value, offset=3, key=key)])
    with pipeline:
        assert_that(decoded.records, equal_to([]), label="records")
        assert_that(
            decoded.dead_letters
            | "FailureView" >> beam.Map(lambda f: (*_failure_view(f), tuple(f.source), f.raw)),
            equal_to([(record_id, code, "decode", None, ("veil.raw", 0, 3), value)]),
            label="dead_letters",
        )


def test_message_size_limit_is_inclusive():
    """A value exactly at max_message_bytes is accepted; one byte more is not."""
    at_limit = framed(media_record("r-edge"))
    over = framed(media_record("r-edge1"))
    assert len(over) == len(at_limit) + 1

    pipeline, decoded = _decode(
        [message(at_limit, offset=0), message(over, offset=1)], max_message=len(at_limit)
    )
    with pipeline:
        assert_that(
            decoded.records | "Ids" >> beam.Map(lambda i: i.record_id),
            equal_to([opaque("r-edge")]),
            label="records",
        )
        assert_that(
            decoded.dead_letters | "View" >> beam.Map(_failure_view),
            equal_to([(None, "PAYLOAD_TOO_LARGE", "decode", None)]),
            label="dead_letters",
        )


def test_dead_letters_never_carry_exception_text():
    """A Failure has no field for a message; only codes, ids, coordinates, and the raw
    value and decoded record that go out only inside the dead-letter envelope."""
    fields = {f.name for f in dataclasses.fields(Failure)}
    assert fields == {
        "source",
        "stage",
        "error_code",
        "error_class",
        "record_id",
        "modality",
        "raw",
        "trail",
        "record",
    }
    pipeline, decoded = _decode(
        [
            message(b"garbage", offset=0),
            message(framed(media_record("r-x", payload=b"")), offset=1),
            message(framed(media_record("r-y", subject="alice")), offset=2, key=b"eve"),
        ]
    )
    with pipeline:
        assert_that(decoded.records, equal_to([]), label="records")
        assert_that(
            decoded.dead_letters
            | "Classes" >> beam.Map(lambda f: (f.source.offset, f.error_class, f.trail)),
            equal_to([(0, None, []), (1, None, []), (2, None, [])]),
            label="dead_letters",
        )
