"""Delivery modes: option validation, the runner x mode table, and what the graph's
writes carry for either mode (deterministic keys; the source partition of each write)."""

from __future__ import annotations

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.util import assert_that, equal_to
from veil_testing import beam_pipeline, media_record

from veil.pipelines.delivery import check_delivery, runner_name
from veil.pipelines.options import LOCAL_RUNNER, ConfigError, VeilConfig
from veil.transforms.emit import PublishDeadLetters, PublishSanitized, TopicNames
from veil.transforms.kafkaio import WriteToKafka
from veil.transforms.kafkaio.transactions import transactional_id
from veil.transforms.records import AuditStep, Classification, Failure, Source, WorkItem

TOPICS = TopicNames("tst")
SOURCE = Source("tst.raw", 1, 41)


def _options(*flags) -> PipelineOptions:
    return PipelineOptions(["--veil_bootstrap_servers=127.0.0.1:9092", *flags])


def test_at_least_once_is_the_default():
    assert VeilConfig.from_options(_options()).delivery == "at_least_once"


@pytest.mark.parametrize("runner", [None, LOCAL_RUNNER, "FnApiRunner"])
def test_exactly_once_on_the_local_runner(runner):
    flags = ["--veil_delivery=exactly_once"] + ([f"--runner={runner}"] if runner else [])
    assert VeilConfig.from_options(_options(*flags)).delivery == "exactly_once"


@pytest.mark.parametrize(
    "flags, words",
    [
        (["--runner=FlinkRunner"], "not supported on FlinkRunner"),
        (["--runner=DataflowRunner"], "not supported on DataflowRunner"),
        (["--runner=PrismRunner"], "not supported on PrismRunner"),
        (["--direct_running_mode=multi_processing"], "in one process"),
    ],
    ids=["flink", "dataflow", "prism", "multi-processing"],
)
def test_exactly_once_is_refused_where_the_runner_cannot_give_it(flags, words):
    with pytest.raises(ConfigError, match=words):
        VeilConfig.from_options(_options("--veil_delivery=exactly_once", *flags))


@pytest.mark.parametrize("runner", ["FlinkRunner", "DataflowRunner"])
def test_at_least_once_everywhere(runner):
    options = _options(f"--runner={runner}")
    assert check_delivery(options, "at_least_once") == "at_least_once"
    assert runner_name(options) == runner


def test_unknown_mode_is_a_config_error():
    with pytest.raises(ConfigError, match="--veil_delivery"):
        check_delivery(_options(), "twice")


def test_sink_needs_the_group_for_exactly_once():
    with pytest.raises(ValueError, match="group_id"):
        WriteToKafka({"bootstrap_servers": "x:1"}, delivery="exactly_once")
    with pytest.raises(ValueError, match="delivery"):
        WriteToKafka({"bootstrap_servers": "x:1"}, delivery="maybe")


def test_transactional_ids_are_stable_per_group_topic_partition():
    assert transactional_id("veil-pipeline", "veil.raw", 2) == "veil-pipeline-veil.raw-2"
    assert transactional_id("g", "t", 0) != transactional_id("g", "t", 1)


# --- what the terminal stages hand the sink -------------------------------------------


def _sanitized_item(at_ms: int) -> WorkItem:
    item = WorkItem(
        source=SOURCE,
        record=media_record("r-9", payload=b"Call Ada"),
        modality="text",
        trail=[
            AuditStep("decode", "ACCEPTED", at_ms=at_ms),
            AuditStep("text", "ANONYMIZED", at_ms=at_ms),
        ],
    )
    item.sanitized_payload = b"Call <PERSON>"
    item.classification = Classification("CONFIDENTIAL", ["GDPR"], {"PERSON": 1})
    return item


def _failures(at_ms: int) -> list:
    trail = [AuditStep("decode", "REJECTED", outcome="FAILED", at_ms=at_ms)]
    return [
        Failure(SOURCE, "decode", "BAD_FRAMING", trail=list(trail)),  # no record id
        Failure(
            SOURCE._replace(offset=42),
            "text",
            "TEXT_DECODE_ERROR",
            record_id="r-10",
            trail=list(trail),
        ),
    ]


def _identity(write) -> tuple:
    """What must be equal between a record's first run and its replay."""
    value = write.value if write.topic.startswith("tst.sanitized") else None
    return (write.topic, write.key, write.headers, write.source, value)


@pytest.mark.parametrize("at_ms", [1_000, 5_000_000], ids=["first-run", "replay"])
def test_every_write_names_its_source_and_has_a_deterministic_key(at_ms):
    """Sanitized, dead-letter and audit writes: keys, headers and the source partition
    do not depend on when the record ran, so a replay's duplicates share them."""
    expected_keys = {
        ("tst.sanitized.text", b"r-9"),
        ("tst.dead-letter", b"src:tst.raw/1/41"),
        ("tst.dead-letter", b"r-10"),
    }
    pipeline = beam_pipeline()
    with pipeline:
        sanitized = (
            pipeline
            | "Items" >> beam.Create([_sanitized_item(at_ms)], reshuffle=False)
            | PublishSanitized(TOPICS, "p1")
        )
        dead = (
            pipeline
            | "Failures" >> beam.Create(_failures(at_ms), reshuffle=False)
            | PublishDeadLetters(TOPICS, "p1")
        )
        writes = (sanitized, dead) | beam.Flatten()
        assert_that(
            writes | "Sources" >> beam.Map(lambda w: (w.source.topic, w.source.partition)),
            equal_to([("tst.raw", 1)] * 6),  # 3 outcomes, one audit event each
            label="sources",
        )
        assert_that(
            writes
            | "Outcomes" >> beam.Filter(lambda w: w.topic != TOPICS.audit)
            | "Keys" >> beam.Map(lambda w: (w.topic, w.key)),
            equal_to(sorted(expected_keys)),
            label="keys",
        )
        # Equal to a first run's (computed directly at another time), so to a replay's.
        assert_that(
            writes | "Identity" >> beam.Map(_identity),
            equal_to(_identities_of_a_direct_run(at_ms=1_000)),
            label="identities",
        )


def _identities_of_a_direct_run(at_ms: int) -> list:
    from veil.transforms.emit import PublishDeadLettersFn, PublishSanitizedFn

    sanitized_fn = PublishSanitizedFn(TOPICS, "p1")
    dead_fn = PublishDeadLettersFn(TOPICS, "p1")
    sanitized_fn.setup()
    dead_fn.setup()
    writes = list(sanitized_fn.process(_sanitized_item(at_ms)))
    for failure in _failures(at_ms):
        writes += list(dead_fn.process(failure))
    return [_identity(w) for w in writes]
