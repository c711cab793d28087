"""Helpers for Veil's tests (importable from every test module: pytest.ini pythonpath)."""

from __future__ import annotations

from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_pipeline import TestPipeline

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


def message(value: bytes | None, offset=0, key: bytes | None = None, topic="veil.raw") -> KafkaMessage:
    return KafkaMessage(topic, 0, offset, 0, key, value)


def framed(record: dict) -> bytes:
    return catalog().encode(MEDIA_RECORD, record)
