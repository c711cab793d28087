"""ApplyPrivacyStep / PrivacyStepFn with test-double handlers: audit, fail closed, timeout."""

from __future__ import annotations

import dataclasses
import logging

import apache_beam as beam
import pytest
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.utils.shared import Shared
from veil_testing import beam_pipeline, media_record

from veil.transforms.privacy import (
    DEAD_LETTER,
    ApplyPrivacyStep,
    PrivacyError,
    PrivacyHandler,
    PrivacyStepFn,
    StepResult,
    entity_counts,
)
from veil.transforms.records import AuditStep, Classification, Source, WorkItem

SECRET = "555-0132"


class UpperHandler(PrivacyHandler):
    """Sanitizes by upper-casing the payload; reports fixed detectors and counts."""

    stage = "fake"

    def load(self):
        return {"version": "1.2.3"}

    def share_key(self) -> str:
        return "test-upper"

    def detectors(self, model) -> dict:
        return {"upper-detector": model["version"]}

    def process(self, model, item: WorkItem) -> StepResult:
        return StepResult(
            payload=item.record["payload"].upper(),
            content_type="text/plain",
            entity_counts={"EMAIL_ADDRESS": 1, "PERSON": 2},
            classification=Classification("CONFIDENTIAL", ["GDPR"], {"PERSON": 2}),
        )


class RaisingHandler(UpperHandler):
    """Raises ``error`` from ``process`` after touching the item."""

    def __init__(self, error: Exception):
        self._error = error

    def share_key(self) -> str:
        return f"test-raise-{type(self._error).__name__}"

    def process(self, model, item: WorkItem) -> dict:
        item.sanitized_payload = b"half done " + item.record["payload"]
        raise self._error


class SteppingClock:
    """A monotonic clock that advances ``step`` seconds on every reading."""

    def __init__(self, step: float):
        self._step = step
        self._now = 100.0

    def __call__(self) -> float:
        now = self._now
        self._now += self._step
        return now


def _item(record_id: str, offset: int, payload: bytes) -> WorkItem:
    item = WorkItem(
        source=Source("veil.raw", 0, offset),
        record=media_record(record_id, payload=payload),
        modality="text",
    )
    item.trail += [AuditStep("decode", "ACCEPTED"), AuditStep("route", "ROUTED")]
    return item


def _trail(trail) -> list:
    return [
        (s.stage, s.action, s.outcome, s.detectors, s.entity_counts, s.duration_ms is None)
        for s in trail
    ]


PRIOR = [
    ("decode", "ACCEPTED", "OK", {}, {}, True),
    ("route", "ROUTED", "OK", {}, {}, True),
]


def _failure_view(failure) -> tuple:
    return (
        failure.record_id,
        failure.stage,
        failure.error_code,
        failure.error_class,
        failure.modality,
        failure.source.offset,
        _trail(failure.trail),
    )


def test_sanitizing_handler_yields_records_with_anonymized_step():
    items = [_item("r1", 0, b"alice@example.com"), _item("r2", 1, b"bob")]
    pipeline = beam_pipeline()
    with pipeline:
        result = pipeline | beam.Create(items, reshuffle=False) | ApplyPrivacyStep(UpperHandler())
        assert_that(
            result.records
            | "View"
            >> beam.Map(
                lambda i: (
                    i.record_id,
                    i.sanitized_payload,
                    i.classification.sensitivity,
                    _trail(i.trail),
                    i.trail[-1].duration_ms >= 0,
                )
            ),
            equal_to(
                [
                    (
                        rid,
                        payload,
                        "CONFIDENTIAL",
                        PRIOR
                        + [
                            (
                                "fake",
                                "ANONYMIZED",
                                "OK",
                                {"upper-detector": "1.2.3"},
                                {"EMAIL_ADDRESS": 1, "PERSON": 2},
                                False,
                            )
                        ],
                        True,
                    )
                    for rid, payload in (("r1", b"ALICE@EXAMPLE.COM"), ("r2", b"BOB"))
                ]
            ),
            label="records",
        )
        assert_that(result.dead_letters, equal_to([]), label="dead_letters")


@pytest.mark.parametrize(
    "error, code, error_class",
    [
        (ValueError(f"secret PII {SECRET}"), "PRIVACY_STEP_FAILED", "ValueError"),
        (KeyError(f"call {SECRET}"), "PRIVACY_STEP_FAILED", "KeyError"),
        (PrivacyError("TEXT_DECODE_ERROR"), "TEXT_DECODE_ERROR", None),
        (PrivacyError("PAYLOAD_TOO_LARGE"), "PAYLOAD_TOO_LARGE", None),
    ],
    ids=["value-error", "key-error", "privacy-error-decode", "privacy-error-too-large"],
)
def test_failing_handler_fails_closed(error, code, error_class, caplog):
    items = [_item("r1", 5, f"my number is {SECRET}".encode())]
    pipeline = beam_pipeline()
    with caplog.at_level(logging.DEBUG), pipeline:
        result = (
            pipeline | beam.Create(items, reshuffle=False) | ApplyPrivacyStep(RaisingHandler(error))
        )
        assert_that(result.records, equal_to([]), label="records")
        assert_that(
            result.dead_letters | "View" >> beam.Map(_failure_view),
            equal_to([("r1", "fake", code, error_class, "text", 5, PRIOR)]),
            label="dead_letters",
        )
        assert_that(
            result.dead_letters
            | "Leaks"
            >> beam.Map(lambda f: (f.raw, SECRET in repr(dataclasses.replace(f, raw=None)))),
            equal_to([(None, False)]),
            label="no_content",
        )
    assert SECRET not in caplog.text


def test_exception_text_is_not_logged(caplog):
    """The warning names the class and coordinates only."""
    pipeline = beam_pipeline()
    with caplog.at_level(logging.WARNING, logger="veil.transforms.privacy"), pipeline:
        result = (
            pipeline
            | beam.Create([_item("r1", 9, b"x")], reshuffle=False)
            | ApplyPrivacyStep(RaisingHandler(ValueError(f"secret PII {SECRET}")))
        )
        assert_that(result.records, equal_to([]), label="records")
        assert_that(
            result.dead_letters | beam.Map(lambda f: f.error_code),
            equal_to(["PRIVACY_STEP_FAILED"]),
            label="dead_letters",
        )
    messages = [r.getMessage() for r in caplog.records if r.name == "veil.transforms.privacy"]
    assert messages == ["fake step failed for record at veil.raw/0/9: ValueError"]


@pytest.mark.parametrize(
    "step_s, limit_s, code, duration_ms",
    [
        (0.25, 1.0, None, 250.0),
        (1.0, 1.0, None, 1000.0),
        (1.5, 1.0, "PRIVACY_STEP_TIMEOUT", None),
        (30.0, 10.0, "PRIVACY_STEP_TIMEOUT", None),
    ],
    ids=["fast", "exactly-at-limit", "over-limit", "way-over"],
)
def test_time_limit_with_injected_clock(step_s, limit_s, code, duration_ms):
    fn = PrivacyStepFn(UpperHandler(), Shared(), time_limit_s=limit_s, clock=SteppingClock(step_s))
    pipeline = beam_pipeline()
    with pipeline:
        out = (
            pipeline
            | beam.Create([_item("r1", 0, b"abc")], reshuffle=False)
            | beam.ParDo(fn).with_outputs(DEAD_LETTER, main="records")
        )
        assert_that(
            out.records
            | "Records"
            >> beam.Map(lambda i: (i.record_id, i.trail[-1].action, i.trail[-1].duration_ms)),
            equal_to([] if code else [("r1", "ANONYMIZED", duration_ms)]),
            label="records",
        )
        assert_that(
            out[DEAD_LETTER] | "Dead" >> beam.Map(_failure_view),
            equal_to([("r1", "fake", code, None, "text", 0, PRIOR)] if code else []),
            label="dead_letters",
        )


@pytest.mark.parametrize(
    "types, expected",
    [
        ([], {}),
        (["PERSON"], {"PERSON": 1}),
        (["URL", "PERSON", "URL"], {"PERSON": 1, "URL": 2}),
    ],
)
def test_entity_counts(types, expected):
    counts = entity_counts(types)
    assert counts == expected
    assert list(counts) == sorted(counts)


LOADS: list = []


class CountingHandler(UpperHandler):
    """Records every ``load`` (FnApiRunner runs the DoFns in this process)."""

    def __init__(self, key: str):
        self._key = key

    def share_key(self) -> str:
        return self._key

    def load(self):
        LOADS.append(self._key)
        return super().load()


@pytest.mark.parametrize("records, loads", [(0, 0), (3, 1)], ids=["no-records", "three"])
def test_model_loads_on_first_record_only(records, loads):
    """A modality with no records never loads its model; one with records loads it once
    (the step's time limit does not include the load: see the injected-clock test)."""
    key = f"test-counting-{records}"
    pipeline = beam_pipeline()
    with pipeline:
        items = pipeline | beam.Create(
            [_item(f"r{i}", i, b"abc") for i in range(records)], reshuffle=False
        )
        out = items | ApplyPrivacyStep(CountingHandler(key), time_limit_s=10)
        assert_that(
            out.records | beam.Map(lambda i: i.record_id),
            equal_to([f"r{i}" for i in range(records)]),
        )
    assert LOADS.count(key) == loads
