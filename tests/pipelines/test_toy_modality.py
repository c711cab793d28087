"""A modality is one registration: a toy modality, registered in this module only, runs
end to end through the whole graph (``build`` on the FnApiRunner, in-memory source and
sink), with its sanitized records, dead letters and audit events asserted.

This is the worked example of docs/extending.md: keep the two in step.
"""

from __future__ import annotations

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.util import assert_that, equal_to
from veil_testing import assert_step, framed, media_record, opaque

from veil.pipelines.options import LOCAL_RUNNER
from veil.pipelines.sanitize import build
from veil.schemas import catalog
from veil.transforms.audit import steps_of
from veil.transforms.classification import classify, load_policy
from veil.transforms.modality import MODALITIES, ModalitySpec, register
from veil.transforms.privacy import ApplyPrivacyStep, PrivacyError, PrivacyHandler, StepResult
from veil.transforms.records import ErrorCode, KafkaMessage, Source, WorkItem
from veil.transforms.routing import detect_modality

# --- the toy modality: one handler class and one registration ---------------------------

TOY_MAGIC = b"TOY1"


class ToyHandler(PrivacyHandler[None]):
    """ "Toy" records: ``TOY1`` then UTF-8 text in which every digit run is a phone number.

    No model (the ``load``, ``share_key`` and ``detectors`` defaults apply); the result is
    a ``StepResult``; known failures raise ``PrivacyError`` with an ``ErrorCode``.
    """

    version = "toy-digits-1"

    def __init__(self, policy):
        self._policy = policy

    def process(self, model, item) -> StepResult:
        payload = item.record["payload"]
        if not payload.startswith(TOY_MAGIC):
            raise PrivacyError(ErrorCode.INVALID_RECORD)
        try:
            body = payload[len(TOY_MAGIC) :].decode("utf-8")
        except UnicodeDecodeError:
            raise PrivacyError(ErrorCode.INVALID_RECORD) from None
        if "explode" in body:
            raise RuntimeError(body)  # an unexpected failure: its text must not leak
        out, runs, in_run = [], 0, False
        for char in body:
            if char.isdigit():
                runs += not in_run
                in_run = True
                out.append("#")
            else:
                in_run = False
                out.append(char)
        counts = {"PHONE_NUMBER": runs} if runs else {}
        return StepResult(
            payload=TOY_MAGIC + "".join(out).encode("utf-8"),
            content_type="application/x-toy",
            entity_counts=counts,
            classification=classify(counts, self._policy),
        )


def _is_toy(head: bytes) -> bool:
    return head.startswith(TOY_MAGIC)


TOY = ModalitySpec(
    name="toy",
    handler_factory=lambda policy, settings: ToyHandler(policy),
    sniffers=(_is_toy,),
    content_types=("application/x-toy",),
    time_limit=5.0,
)


@pytest.fixture
def toy_registered():
    register(TOY)
    try:
        yield TOY
    finally:
        MODALITIES.unregister(TOY.name)


# --- the tests --------------------------------------------------------------------------


def test_routing_knows_the_toy_only_while_it_is_registered(toy_registered):
    assert detect_modality(None, "", b"TOY1 hello") == ("toy", None)
    assert detect_modality(None, "application/x-toy; v=1", b"hello") == ("toy", None)
    assert detect_modality("toy", "", b"\x89PNG\r\n\x1a\n") == (None, "MODALITY_MISMATCH")
    MODALITIES.unregister("toy")
    try:
        assert detect_modality("toy", "", b"TOY1 hello") == (None, "UNKNOWN_MODALITY")
        assert detect_modality(None, "", b"TOY1 hello") == ("text", None)
    finally:
        register(TOY)


def test_toy_step_alone():
    """The handler under the generic step, without the graph (Create -> step -> assert)."""
    items = [
        WorkItem(Source("raw", 0, i), media_record(rid, payload=payload), "toy")
        for i, (rid, payload) in enumerate(
            [("a", b"TOY1 room 101"), ("b", b"TOY1 \xff"), ("c", b"TOY1 explode")]
        )
    ]
    assert_step(
        ApplyPrivacyStep(ToyHandler(load_policy()), time_limit_s=5.0),
        items,
        records=[("a", b"TOY1 room ###")],
        dead_letters=[
            ("b", "privacy", "INVALID_RECORD", None),  # no spec: the default stage name
            ("c", "privacy", "PRIVACY_STEP_FAILED", "RuntimeError"),
        ],
    )


def test_a_registration_twice_is_refused(toy_registered):
    with pytest.raises(ValueError, match="already registered"):
        register(TOY)


class _Discard(beam.PTransform):
    """The sink: nothing leaves the test (the assertions read ``graph.writes``)."""

    def expand(self, writes):
        return writes | beam.Filter(lambda w: False)


def _message(offset, record):
    return KafkaMessage("raw", 0, offset, 0, record["subject_key"].encode(), framed(record))


def test_toy_modality_end_to_end(toy_registered):
    inputs = [
        media_record("toy-1", "alice", b"TOY1 call 555 0175 now", content_type=""),
        media_record("toy-2", "bob", b"TOY1 nothing here", modality="toy"),
        # Routed to the toy by its MIME type, then refused by the handler.
        media_record("toy-3", "bob", b"no magic", content_type="application/x-toy"),
        # Declared toy, but the bytes are a PNG: dead-lettered by routing.
        media_record("toy-4", "carol", b"\x89PNG\r\n\x1a\n....", modality="toy"),
        media_record("toy-5", "carol", b"TOY1 explode 42"),  # the handler crashes
        media_record("txt-1", "dave", b"Nothing to see.", content_type="text/plain"),
    ]
    options = PipelineOptions([f"--runner={LOCAL_RUNNER}", "--veil_topic_prefix=unit"])
    pipeline = beam.Pipeline(options=options)
    source = beam.Create([_message(i, r) for i, r in enumerate(inputs)])
    graph = build(pipeline, options, source=source, sink=_Discard())
    assert {"ToySanitized", "ToyFailures"} <= set(graph.writes)  # the toy got a branch
    # The KafkaWrites before the sink, decoded (a Flatten is fine here: no offsets).
    out = (
        [graph.writes[label] for label in sorted(graph.writes)]
        | "AllWrites" >> beam.Flatten()
        | "DecodeWrites" >> beam.Map(lambda w: (w.topic, catalog().decode(w.value)[1]))
    )

    sanitized = out | "Sanitized" >> beam.Filter(lambda tv: tv[0] == "unit.sanitized.toy")
    assert_that(
        sanitized
        | "SanitizedView"
        >> beam.Map(
            lambda tv: (
                tv[1]["record_id"],
                tv[1]["modality"],
                tv[1]["content_type"],
                tv[1]["payload"],
                tv[1]["classification"]["entity_counts"],
            )
        ),
        equal_to(
            [
                (
                    opaque("toy-1"),
                    "toy",
                    "application/x-toy",
                    b"TOY1 call ### #### now",
                    {"PHONE_NUMBER": 2},
                ),
                (opaque("toy-2"), "toy", "application/x-toy", b"TOY1 nothing here", {}),
            ]
        ),
        label="toy_sanitized",
    )
    dead = out | "Dead" >> beam.Filter(lambda tv: tv[0] == "unit.dead-letter")
    assert_that(
        dead
        | "DeadView"
        >> beam.Map(
            lambda tv: (
                tv[1]["record_id"],
                tv[1]["stage"],
                tv[1]["error_code"],
                tv[1]["error_class"],
            )
        ),
        equal_to(
            [
                (opaque("toy-3"), "toy", "INVALID_RECORD", None),
                (opaque("toy-4"), "route", "MODALITY_MISMATCH", None),
                (opaque("toy-5"), "toy", "PRIVACY_STEP_FAILED", "RuntimeError"),
            ]
        ),
        label="toy_dead_letters",
    )
    # Conservation: every input is one sanitized record or one dead letter, and each has
    # audit events; the toy's own step is audited with its detector version.
    terminal = (
        out
        | "Terminal" >> beam.Filter(lambda tv: not tv[0].endswith(".audit"))
        | "TerminalId" >> beam.Map(lambda tv: tv[1]["record_id"])
    )
    assert_that(terminal, equal_to([opaque(r["record_id"]) for r in inputs]), label="conservation")
    audits = out | "Audits" >> beam.Filter(lambda tv: tv[0].endswith(".audit"))
    assert_that(
        audits
        # One event per record; its steps list the stages (veil.transforms.audit).
        | "ToySteps"
        >> beam.FlatMap(
            lambda tv: [
                (tv[1]["record_id"], step["action"], step["detectors"])
                for step in steps_of(tv[1])
                if step["stage"] == "toy" and step["outcome"] == "OK"
            ]
        ),
        equal_to(
            [
                (opaque("toy-1"), "ANONYMIZED", {"toy": "toy-digits-1"}),
                (opaque("toy-2"), "ANONYMIZED", {"toy": "toy-digits-1"}),
            ]
        ),
        label="toy_audit",
    )
    leaked = out | "Leaks" >> beam.Filter(lambda tv: b"explode" in repr(tv[1]).encode())
    assert_that(leaked, equal_to([]), label="no_exception_text")
    result = pipeline.run()
    result.wait_until_finish()
