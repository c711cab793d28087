"""Terminal stages: sanitized records, dead letters and content-free audit events."""

from __future__ import annotations

import re

import apache_beam as beam
import pytest
from apache_beam.testing.util import assert_that, equal_to
from veil_testing import beam_pipeline, media_record

from veil.pipelines import __version__ as PIPELINE_VERSION
from veil.schemas import catalog
from veil.transforms.audit import event_id
from veil.transforms.emit import PublishDeadLetters, PublishSanitized, TopicNames
from veil.transforms.records import AuditStep, Classification, Failure, Source, WorkItem

PREFIX = "tst"
TOPICS = TopicNames(PREFIX)
POLICY = "policy-7"
MARKER = "MARKER-5f3a9c"  # content that must never reach an audit event or dead letter
SOURCE = Source("veil.raw", 2, 17)


def _trail(at_ms: int) -> list:
    return [
        AuditStep("decode", "ACCEPTED", at_ms=at_ms),
        AuditStep("route", "ROUTED", at_ms=at_ms + 1),
        AuditStep(
            "text",
            "ANONYMIZED",
            detectors={"spacy": "3.8"},
            entity_counts={"PERSON": 1},
            duration_ms=12.5,
            at_ms=at_ms + 2,
        ),
    ]


def _finished(record_id="r1", at_ms=1_000, sanitized=True) -> WorkItem:
    item = WorkItem(
        source=SOURCE,
        record=media_record(record_id, payload=f"Hi, I am {MARKER}".encode()),
        modality="text",
        trail=_trail(at_ms),
    )
    if sanitized:
        item.sanitized_payload = b"Hi, I am <PERSON>"
        item.sanitized_content_type = "text/plain; charset=utf-8"
        item.classification = Classification("CONFIDENTIAL", ["GDPR"], {"PERSON": 1})
    return item


def _view(write) -> tuple:
    """A write as (topic, key, headers, subject, summary of the decoded value)."""
    subject, record = catalog().decode(write.value)
    if subject == "SanitizedRecord":
        summary = (
            record["record_id"],
            record["modality"],
            record["content_type"],
            record["payload"],
            record["classification"],
            record["policy_version"],
            record["pipeline_version"],
            record["source"],
        )
    elif subject == "AuditEvent":
        summary = (
            record["event_id"],
            record["record_id"],
            record["stage"],
            record["action"],
            record["outcome"],
            record["reason_code"],
            record["policy_version"],
            record["source"],
            tuple(
                (st["stage"], st["action"], st["outcome"], st["reason_code"])
                for st in record["steps"]
            ),
        )
    else:
        summary = (
            record["record_id"],
            record["stage"],
            record["error_code"],
            record["error_class"],
            record["modality"],
            record["original"],
            record["original_key_id"],
            record["policy_version"],
            record["source"],
        )
    return (write.topic, write.key, write.headers, subject, summary)


SOURCE_DICT = {"topic": "veil.raw", "partition": 2, "offset": 17}


def _headers(record_id, schema):
    headers = (("veil-source", b"veil.raw/2/17"), ("veil-schema", schema.encode()))
    return ((("veil-record-id", record_id.encode()),) if record_id else ()) + headers


def _audit(record_id, steps, failed_step=None):
    """The expected audit write: one event for the whole trail ``steps`` ((stage, action)
    pairs in trail order), whose own stage/action/outcome are the last step's."""
    last = len(steps) - 1
    eid = event_id(SOURCE, last, AuditStep(*steps[-1]))
    failed = failed_step is not None
    listed = tuple(
        (stage, action, "FAILED" if failed and i == last else "OK",
         failed_step if failed and i == last else None)
        for i, (stage, action) in enumerate(steps)
    )  # fmt: skip
    return [
        (
            f"{PREFIX}.audit",
            eid.encode(),
            _headers(record_id, "AuditEvent"),
            "AuditEvent",
            (eid, record_id) + listed[-1][:2] + listed[-1][2:] + (POLICY, SOURCE_DICT, listed),
        )
    ]


TRAIL_STEPS = [("decode", "ACCEPTED"), ("route", "ROUTED"), ("text", "ANONYMIZED")]

EXPECTED_SANITIZED = [
    (
        f"{PREFIX}.sanitized.text",
        b"r1",
        _headers("r1", "SanitizedRecord"),
        "SanitizedRecord",
        (
            "r1",
            "text",
            "text/plain; charset=utf-8",
            b"Hi, I am <PERSON>",
            {"sensitivity": "CONFIDENTIAL", "regimes": ["GDPR"], "entity_counts": {"PERSON": 1}},
            POLICY,
            PIPELINE_VERSION,
            SOURCE_DICT,
        ),
    )
] + _audit("r1", TRAIL_STEPS + [("emit", "PUBLISHED")])


@pytest.mark.parametrize("at_ms", [1_000, 9_999_999], ids=["first-run", "replay-later"])
def test_publish_sanitized(at_ms):
    """One sanitized write plus one audit write listing every step; ids do not depend
    on time."""
    pipeline = beam_pipeline()
    with pipeline:
        writes = (
            pipeline
            | beam.Create([_finished(at_ms=at_ms)], reshuffle=False)
            | PublishSanitized(TOPICS, POLICY)
        )
        assert_that(
            writes | "View" >> beam.Map(_view), equal_to(EXPECTED_SANITIZED), label="writes"
        )
        assert_that(
            writes
            | "DeadLetterTopics" >> beam.Filter(lambda w: w.topic == TOPICS.dead_letter)
            | "DeadLetterView" >> beam.Map(_view),
            equal_to([]),
            label="no_dead_letters",
        )


def test_audit_event_ids_are_distinct_hex():
    published = _audit("r1", TRAIL_STEPS + [("emit", "PUBLISHED")])[0][1].decode()
    dead = _audit("r1", TRAIL_STEPS + [("emit", "DEAD_LETTERED")], "x")[0][1].decode()
    shorter = _audit("r1", [("emit", "DEAD_LETTERED")], "x")[0][1].decode()
    assert len({published, dead, shorter}) == 3
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in (published, dead, shorter))


def test_unsanitized_item_fails_closed():
    """No sanitized payload: a dead letter and its audit trail, never a sanitized write."""
    pipeline = beam_pipeline()
    with pipeline:
        writes = (
            pipeline
            | beam.Create([_finished(sanitized=False)], reshuffle=False)
            | PublishSanitized(TOPICS, POLICY)
        )
        assert_that(
            writes | beam.Map(_view),
            equal_to(
                [
                    (
                        f"{PREFIX}.dead-letter",
                        b"r1",
                        _headers("r1", "DeadLetter"),
                        "DeadLetter",
                        (
                            "r1",
                            "emit",
                            "PRIVACY_STEP_FAILED",
                            None,
                            "text",
                            None,
                            None,
                            POLICY,
                            SOURCE_DICT,
                        ),
                    )
                ]
                + _audit(
                    "r1",
                    TRAIL_STEPS + [("emit", "DEAD_LETTERED")],
                    failed_step="emit:PRIVACY_STEP_FAILED",
                )
            ),
            label="writes",
        )
        assert_that(
            writes | "Sanitized" >> beam.Filter(lambda w: ".sanitized." in w.topic),
            equal_to([]),
            label="no_sanitized",
        )


def test_unencodable_item_is_an_encode_error():
    item = _finished()
    item.classification = Classification("TOP_SECRET", [], {})
    pipeline = beam_pipeline()
    with pipeline:
        writes = pipeline | beam.Create([item], reshuffle=False) | PublishSanitized(TOPICS, POLICY)
        assert_that(
            writes | beam.Map(lambda w: (w.topic, w.key)),
            equal_to(
                [(f"{PREFIX}.dead-letter", b"r1")]
                + [
                    (f"{PREFIX}.audit", e[1])
                    for e in _audit("r1", TRAIL_STEPS + [("emit", "DEAD_LETTERED")])
                ]
            ),
            label="writes",
        )
        assert_that(
            writes
            | "DeadLetters" >> beam.Filter(lambda w: w.topic == TOPICS.dead_letter)
            | "Codes" >> beam.Map(lambda w: catalog().decode(w.value)[1]["error_code"]),
            equal_to(["ENCODE_ERROR"]),
            label="code",
        )


def test_publish_dead_letter_without_record_id():
    failure = Failure(
        source=SOURCE,
        stage="decode",
        error_code="BAD_FRAMING",
        raw=f"not avro {MARKER}".encode(),
    )
    pipeline = beam_pipeline()
    with pipeline:
        writes = (
            pipeline | beam.Create([failure], reshuffle=False) | PublishDeadLetters(TOPICS, POLICY)
        )
        assert_that(
            writes | beam.Map(_view),
            equal_to(
                [
                    (
                        f"{PREFIX}.dead-letter",
                        b"src:veil.raw/2/17",
                        _headers(None, "DeadLetter"),
                        "DeadLetter",
                        (
                            None,
                            "decode",
                            "BAD_FRAMING",
                            None,
                            None,
                            None,
                            None,
                            POLICY,
                            SOURCE_DICT,
                        ),
                    )
                ]
                + _audit(None, [("emit", "DEAD_LETTERED")], failed_step="decode:BAD_FRAMING")
            ),
            label="writes",
        )
        assert_that(
            writes | "Leaks" >> beam.Filter(lambda w: MARKER.encode() in w.value),
            equal_to([]),
            label="no_content",
        )


def test_audit_and_dead_letter_values_hold_no_content():
    """The marker is in every input payload; no audit or dead-letter value holds it."""
    failure = Failure.of(_finished("r2"), "text", "PRIVACY_STEP_FAILED", "ValueError")
    failure.raw = MARKER.encode()
    pipeline = beam_pipeline()
    with pipeline:
        items = pipeline | "Items" >> beam.Create(
            [_finished("r1"), _finished("r3", sanitized=False)], reshuffle=False
        )
        failures = pipeline | "Failures" >> beam.Create([failure], reshuffle=False)
        sanitized = items | PublishSanitized(TOPICS, POLICY)
        dead = failures | PublishDeadLetters(TOPICS, POLICY)
        writes = (sanitized, dead) | beam.Flatten()
        non_sanitized = writes | "NotSanitized" >> beam.Filter(
            lambda w: ".sanitized." not in w.topic
        )
        assert_that(
            non_sanitized
            | "Counts" >> beam.Map(lambda w: w.topic)
            | beam.combiners.Count.PerElement(),
            equal_to([(f"{PREFIX}.audit", 3), (f"{PREFIX}.dead-letter", 2)]),  # one event each
            label="counts",
        )
        assert_that(
            non_sanitized
            | "Leaks"
            >> beam.Filter(
                lambda w: (
                    MARKER.encode() in w.value or any(MARKER.encode() in v for _, v in w.headers)
                )
            )
            | "LeakTopics" >> beam.Map(lambda w: w.topic),
            equal_to([]),
            label="no_content",
        )


def test_quarantined_sensitivity_goes_to_the_quarantine_topic():
    restricted = _finished("r-restricted")
    restricted.classification = Classification("RESTRICTED", ["PCI"], {"CREDIT_CARD": 1})
    confidential = _finished("r-confidential")
    pipeline = beam_pipeline()
    writes = (
        pipeline
        | beam.Create([restricted, confidential], reshuffle=False)
        | PublishSanitized(TOPICS, POLICY, quarantine=frozenset({"RESTRICTED"}))
    )
    assert_that(
        writes
        | beam.Map(lambda w: (w.topic, catalog().decode(w.value)[1]))
        | beam.Map(lambda tr: (tr[0], tr[1]["record_id"], tr[1].get("action"))),
        equal_to(
            [
                (f"{PREFIX}.quarantine.text", "r-restricted", None),
                (f"{PREFIX}.sanitized.text", "r-confidential", None),
            ]
            + [(f"{PREFIX}.audit", "r-restricted", "QUARANTINED"),
               (f"{PREFIX}.audit", "r-confidential", "PUBLISHED")]
        ),
    )  # fmt: skip
    pipeline.run()


@pytest.mark.parametrize("duration_ms", [12.5, 3, None], ids=["float", "int", "none"])
def test_audit_writes_carry_the_event_their_bytes_encode(duration_ms):
    """The chainer hashes ``write.event`` instead of decoding ``write.value``: both must
    give the same canonical bytes (what ``veil audit verify`` rebuilds from the topic)."""
    from veil.transforms.audit_chain import canonical, decode_writer
    from veil.transforms.emit import PublishSanitizedFn

    item = _finished()
    item.trail[-1].duration_ms = duration_ms
    fn = PublishSanitizedFn(TOPICS, POLICY)
    fn.setup()
    audits = [w for w in fn.process(item) if w.topic == TOPICS.audit]
    assert len(audits) == 1  # one event per record, listing its steps
    assert len(audits[0].event["steps"]) == len(item.trail) + 1
    for write in audits:
        assert write.event is not None
        assert canonical(write.event) == canonical(decode_writer(write.value))
