"""The preemptible privacy step: ``ApplyPrivacyStep(..., preempt=True)`` and
``StepRunner`` (the handler in a child process killed at the time limit)."""

from __future__ import annotations

import json
import os
import time

import apache_beam as beam
import pytest
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.shared import Shared
from apache_beam.utils.timestamp import Timestamp
from apache_beam.utils.windowed_value import PANE_INFO_UNKNOWN as PANE
from step_targets import ToyHandler
from veil_testing import beam_pipeline, media_record

from veil.transforms.privacy import ApplyPrivacyStep, PrivacyError, PrivacyStepFn
from veil.transforms.records import Source, WorkItem
from veil.transforms.step_worker import StepFailed, StepRunner, dump_handler


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


def test_pipelined_records_around_a_stall_flow_and_each_gets_its_limit():
    """Several records in flight at once: the one that stalls is timed out (after its
    full limit, not less), the ones queued behind it go to a fresh child, and every
    outcome comes back, in submission order."""
    runner = StepRunner(ToyHandler())
    runner.start()
    try:
        payloads = [b"a", b"b", b"sleep", b"c", b"crash", b"d"]
        items = [_item(p, i) for i, p in enumerate(payloads)]
        started = time.monotonic()
        for item in items:
            runner.submit(item, token=item.source.offset)
        assert runner.pending == len(items)
        outcomes = runner.collect(1.0, until=None)  # never blocks
        outcomes += runner.collect(1.0, until=0)
        assert time.monotonic() - started >= 1.0
        assert runner.pending == 0
        assert [o.token for o in outcomes] == list(range(len(items)))
        codes = [getattr(o.error, "code", None) for o in outcomes]
        assert codes == [None, None, "PRIVACY_STEP_TIMEOUT", None, "PRIVACY_STEP_FAILED", None]
        assert [o.item.sanitized_payload for o in outcomes if o.error is None] == [
            b"A", b"B", b"C", b"D"
        ]  # fmt: skip
        assert all(o.elapsed_ms is not None and o.elapsed_ms < 1000 for o in outcomes
                   if o.error is None)  # fmt: skip
        assert runner.restarts == 2
    finally:
        runner.close()


def test_pipelined_step_keeps_each_records_timestamp():
    from apache_beam.transforms.window import TimestampedValue

    items = [_item(b"one", 0), _item(b"sleep", 1), _item(b"two", 2)]
    pipeline = beam_pipeline()
    with pipeline:
        out = (
            pipeline
            | beam.Create(items, reshuffle=False)
            | beam.Map(lambda i: TimestampedValue(i, 1000 + i.source.offset))
            | ApplyPrivacyStep(ToyHandler(), time_limit_s=1.0, preempt=True)
        )
        stamp = lambda x, ts=beam.DoFn.TimestampParam: (x.source.offset, int(ts))  # noqa: E731
        assert_that(out.records | "R" >> beam.Map(stamp), equal_to([(0, 1000), (2, 1002)]),
                    label="records")  # fmt: skip
        assert_that(out.dead_letters | "D" >> beam.Map(stamp), equal_to([(1, 1001)]),
                    label="dead_letters")  # fmt: skip


def test_a_reply_that_breaks_the_protocol_fails_its_record_only():
    """A reply that is not JSON fails the record it answers (the child is replaced);
    the record queued behind it is answered by the fresh child: none is left out."""
    import struct

    runner = StepRunner(ToyHandler())
    runner.start()
    try:
        first, second = _item(b"one", 0), _item(b"two", 1)
        runner.submit(first, token=0)
        runner.submit(second, token=1)
        runner._child.rbuf += struct.pack(">I", 3) + b"{x]"  # arrives before any reply
        outcomes = runner.collect(30.0, until=0)
        assert [(o.token, getattr(o.error, "code", None)) for o in outcomes] == [
            (0, "PRIVACY_STEP_FAILED"),
            (1, None),
        ]
        assert second.sanitized_payload == b"TWO" and first.sanitized_payload is None
        assert runner.restarts == 1
    finally:
        runner.close()


def _bundle(fn: PrivacyStepFn, offsets) -> list:
    """One bundle through ``fn`` (as the SDK harness drives it): the child pids."""
    fn.start_bundle()
    out = [o for offset in offsets for o in _process(fn, offset)]
    out += list(fn.finish_bundle())
    return _pids(out)


def _process(fn: PrivacyStepFn, offset: int):
    return fn.process(
        _item(b"pid", offset), timestamp=Timestamp(0), window=GlobalWindow(), pane_info=PANE
    )


def _pids(outputs) -> list:
    return [int(o.value.sanitized_payload) for o in outputs]


def test_step_instances_share_a_step_worker_one_bundle_at_a_time():
    """Beam keeps a bundle's DoFn instances until the bundle is finalized (on Flink: a
    checkpoint), so a step has several instances per process: they borrow one step
    worker (one model load) per bundle instead of starting a child each."""

    def step():
        fn = PrivacyStepFn(ToyHandler(), Shared(), time_limit_s=30.0, preempt=True)
        fn.setup()
        return fn

    first, second = step(), step()
    try:
        pids = _bundle(first, range(3)) + _bundle(second, range(3, 6))
        assert len(set(pids)) == 1  # the second instance reused the first one's child
        # Two bundles in progress at once: each has a worker of its own.
        first.start_bundle()
        held = list(_process(first, 6))
        other = _bundle(second, [7])
        held += list(first.finish_bundle())
        assert other != _pids(held) and pids[0] in other + _pids(held)
    finally:
        for fn in (first, second):
            fn.teardown()
    # The last instance's teardown stopped (and reaped) the idle workers.
    for pid in set(pids + other):
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_the_text_step_workers_child_imports_no_beam_and_no_presidio():
    """The child unpickles the text handler and loads spaCy without importing Apache
    Beam (the handler travels as plain pickle; the handler interface lives apart from
    the Beam transform) or Presidio (spaCy's entry-point factories are skipped), nor any
    other modality's decoders: each is start-up CPU a text record does not need."""
    from step_import_probe import HEAVY_MODULES, ImportProbeHandler

    from veil.transforms.classification import load_policy

    handler = ImportProbeHandler(load_policy())
    assert dump_handler(handler)[:1] == b"P"
    runner = StepRunner(handler)
    try:
        runner.start()
        item = _item(b"Contact John Smith at john.smith@example.com about the invoice.")
        runner.run(item, 120.0)
    finally:
        runner.close()
    report = json.loads(item.sanitized_payload)
    assert report["sanitized"] == "Contact <PERSON> at <EMAIL_ADDRESS> about the invoice."
    assert report["modules"] == {**dict.fromkeys(HEAVY_MODULES, False), "spacy": True}


class _LambdaHandler(ToyHandler):
    """A handler plain pickle cannot carry (it holds a lambda)."""

    def __init__(self):
        self.shout = lambda data: data.upper() + b"!"

    def process(self, model, item):
        result = super().process(model, item)
        return result.__class__(**{**vars(result), "payload": self.shout(item.record["payload"])})


def test_a_handler_plain_pickle_cannot_carry_still_runs_through_beams_pickler():
    handler = _LambdaHandler()
    assert dump_handler(handler)[:1] == b"B"
    runner = StepRunner(handler)
    try:
        item = _item(b"hey")
        assert runner.run(item, 60.0) == {"TOY": 1}
        assert item.sanitized_payload == b"HEY!"
    finally:
        runner.close()
