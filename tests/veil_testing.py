"""Helpers for Veil's tests (importable from every test module: pytest.ini pythonpath)."""

from __future__ import annotations

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from veil.pipelines.options import LOCAL_RUNNER
from veil.schemas import MEDIA_RECORD, catalog
from veil.transforms.records import KafkaMessage


def beam_pipeline(*flags: str) -> TestPipeline:
    """A TestPipeline on the local FnApiRunner (DirectRunner would fetch Prism)."""
    options = PipelineOptions([f"--runner={LOCAL_RUNNER}", *flags])
    return TestPipeline(runner=LOCAL_RUNNER, options=options, blocking=True)


def opaque(record_id: str) -> str:
    """The opaque id decoding gives ``record_id`` under the session's record-id key."""
    from veil.transforms.ids import opaque_id, resolve_id_key

    return opaque_id(resolve_id_key().key, record_id)


def media_record(record_id="r1", subject="alice", payload=b"hello", **overrides) -> dict:
    record = {
        "record_id": record_id,
        "subject_key": subject,
        "modality": None,
        "content_type": "text/plain",
        "payload": payload,
        "attributes": {},
        "event_time": None,
    }
    record.update(overrides)
    return record


def message(
    value: bytes | None, offset=0, key: bytes | None = None, topic="veil.raw"
) -> KafkaMessage:
    return KafkaMessage(topic, 0, offset, 0, key, value)


def framed(record: dict) -> bytes:
    return catalog().encode(MEDIA_RECORD, record)


def _record_view(item) -> tuple:
    return item.record["record_id"], item.sanitized_payload


def _failure_view(failure) -> tuple:
    return failure.record_id, failure.stage, failure.error_code, failure.error_class


def assert_step(
    step: beam.PTransform,
    items: list,
    records: list,
    dead_letters: list,
    record_view=_record_view,
    failure_view=_failure_view,
) -> None:
    """The Create -> step -> assert pattern: runs ``step`` (a transform returning
    ``.records`` and ``.dead_letters``, e.g. ``ApplyPrivacyStep``) over ``items`` on the
    FnApiRunner and asserts both outputs, so an empty output never passes silently.

    Records are compared as ``record_view(item)`` (default: record id and sanitized
    payload), dead letters as ``failure_view(failure)`` (default: record id, stage, code
    and error class).

    Example::

        assert_step(
            ApplyPrivacyStep(ToyHandler(policy)),
            [item("t1", b"TOY1 555")],
            records=[("t1", b"TOY1 ###")],
            dead_letters=[],
        )
    """
    pipeline = beam_pipeline()
    with pipeline:
        out = pipeline | "Items" >> beam.Create(items, reshuffle=False) | "Step" >> step
        assert_that(
            out.records | "RecordView" >> beam.Map(record_view),
            equal_to(records),
            label="records",
        )
        assert_that(
            out.dead_letters | "DeadLetterView" >> beam.Map(failure_view),
            equal_to(dead_letters),
            label="dead_letters",
        )
