"""The preemptible privacy step: ``ApplyPrivacyStep(..., preempt=True)`` and
``StepRunner`` (the handler in a child process killed at the time limit)."""

from __future__ import annotations

import time

import apache_beam as beam
import pytest
from apache_beam.testing.util import assert_that, equal_to
from step_targets import ToyHandler
from veil_testing import beam_pipeline, media_record

from veil.transforms.privacy import ApplyPrivacyStep, PrivacyError
from veil.transforms.records import Source, WorkItem
from veil.transforms.step_worker import StepFailed, StepRunner


def _item(payload: bytes, offset=0) -> WorkItem:
    return WorkItem(Source("veil.raw", 0, offset), media_record(f"r{offset}", "a", payload))


def test_step_routes_each_misbehaviour_and_the_next_record_flows():
    items = [
        _item(b"ok one", 0),
        _item(b"sleep", 1),
        _item(b"ok two", 2),
        _item(b"crash", 3),
        _item(b"raise", 4),
        _item(b"coded", 5),
        _item(b"ok three", 6),
    ]
    pipeline = beam_pipeline()
    with pipeline:
        out = (
            pipeline
            | beam.Create(items, reshuffle=False)
            | ApplyPrivacyStep(ToyHandler(), time_limit_s=2.0, preempt=True)
        )
        assert_that(
            out.records
            | "Ok"
            >> beam.Map(
                lambda i: (
                    i.source.offset,
                    i.sanitized_payload,
                    i.classification.sensitivity,
                    tuple(i.pending_protection),
                    i.trail[-1].action,
                )
            ),
            equal_to(
                [
                    (0, b"OK ONE", "INTERNAL", (("payload[0:1]", b"o"),), "ANONYMIZED"),
                    (2, b"OK TWO", "INTERNAL", (("payload[0:1]", b"o"),), "ANONYMIZED"),
                    (6, b"OK THREE", "INTERNAL", (("payload[0:1]", b"o"),), "ANONYMIZED"),
                ]
            ),
            label="records",
        )
        assert_that(
            out.dead_letters
            | "Dead" >> beam.Map(lambda f: (f.source.offset, f.error_code, f.error_class)),
            equal_to(
                [
                    (1, "PRIVACY_STEP_TIMEOUT", None),
                    (3, "PRIVACY_STEP_FAILED", None),
                    (4, "PRIVACY_STEP_FAILED", "ValueError"),
                    (5, "TEXT_DECODE_ERROR", None),
                ]
            ),
            label="dead_letters",
        )


def test_runner_kills_at_the_limit_and_restarts():
    runner = StepRunner(ToyHandler())
    assert runner.start() == {"toy": "1"}
    try:
        started = time.monotonic()
        with pytest.raises(PrivacyError) as caught:
            runner.run(_item(b"sleep"), 1.0)
        assert caught.value.code == "PRIVACY_STEP_TIMEOUT"
        assert 1.0 <= time.monotonic() - started < 2.0
        with pytest.raises(StepFailed) as failed:
            runner.run(_item(b"raise"), 30.0)
        assert failed.value.error_class == "ValueError" and "john" not in str(failed.value)
        item = _item(b"fine")
        assert runner.run(item, 30.0) == {"TOY": 1} and item.sanitized_payload == b"FINE"
        assert runner.restarts == 1
    finally:
        runner.close()
