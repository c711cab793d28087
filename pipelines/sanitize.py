"""The main Veil pipeline: raw topic in; sanitized, audit and dead-letter topics out.

``build`` composes the graph; ``run`` parses flags, builds and runs it.

    read -> decode+validate -> route by modality -> per-modality classify+anonymize
         -> encode -> sanitized topic(s) + audit events
    every failure -> dead-letter topic + audit events

Every terminal branch writes through its own sink step, with no Flatten before it: on
the FnApiRunner a Flatten ends the fused stage, so the Kafka writes would run after the
source's bundle was finalized and its offsets committed. Kept fused, a bundle commits
its source offsets only after every record it produced was acknowledged.
"""

from __future__ import annotations

import logging
from typing import NamedTuple

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from veil.pipelines.options import VeilConfig, check_runner
from veil.transforms.classification import load_policy
from veil.transforms.codec import DecodeRecords
from veil.transforms.emit import PublishDeadLetters, PublishSanitized
from veil.transforms.kafkaio import MAX_MESSAGE_BYTES, ReadFromKafka, WriteToKafka
from veil.transforms.privacy import ApplyPrivacyStep
from veil.transforms.records import Modality
from veil.transforms.routing import RouteByModality
from veil.transforms.text import TextHandler

_LOGGER = logging.getLogger(__name__)

# Modalities whose branch has landed; the others are dead-lettered UNSUPPORTED_MODALITY.
SUPPORTED_MODALITIES = (Modality.TEXT,)


class VeilGraph(NamedTuple):
    """The terminal ``KafkaWrite`` collections by label, before the sink."""

    writes: dict
    config: VeilConfig
    policy_version: str


def build(pipeline: beam.Pipeline, options: PipelineOptions, source=None, sink=None) -> VeilGraph:
    """Adds Veil's graph to ``pipeline``.

    Args:
        pipeline: the pipeline to extend.
        options: pipeline options holding ``VeilOptions``; validated here, so a bad
            option or policy fails before anything runs.
        source: a PTransform from the pipeline root to ``KafkaMessage``s (default:
            ``ReadFromKafka`` on the input topics).
        sink: a PTransform applied to each terminal collection of ``KafkaWrite``s
            (default: ``WriteToKafka``); applied once per branch, with its own label.
    """
    config = VeilConfig.from_options(options)
    policy = load_policy(config.policy_path)
    client_config = config.client_config()
    if source is None:
        source = ReadFromKafka(
            client_config,
            list(config.input_topics),
            group_id=config.consumer_group,
            bounded=config.bounded,
            start=config.start_offset,
            max_records_per_bundle=config.max_records_per_bundle,
            idle_stop_seconds=config.idle_stop_s,
        )
    if sink is None:
        sink = WriteToKafka(client_config)

    messages = pipeline | "ReadRaw" >> source
    decoded = messages | "Decode" >> DecodeRecords(config.max_payload_bytes, MAX_MESSAGE_BYTES)
    routed = decoded.records | "Route" >> RouteByModality(SUPPORTED_MODALITIES)

    writes = {}
    topics, version = config.topics, policy.version
    writes["DecodeFailures"] = decoded.dead_letters | "DeadLetterDecode" >> PublishDeadLetters(
        topics, version
    )
    writes["RouteFailures"] = routed.dead_letters | "DeadLetterRoute" >> PublishDeadLetters(
        topics, version
    )
    text = routed.branches[Modality.TEXT] | "Text" >> ApplyPrivacyStep(
        TextHandler(policy), time_limit_s=config.step_time_limit_s
    )
    writes["TextSanitized"] = text.records | "PublishText" >> PublishSanitized(topics, version)
    writes["TextFailures"] = text.dead_letters | "DeadLetterText" >> PublishDeadLetters(
        topics, version
    )
    for label, pcoll in writes.items():
        pcoll | f"Write{label}" >> sink
    return VeilGraph(writes, config, version)


def run(argv=None) -> beam.runners.runner.PipelineResult:
    """Parses ``argv`` (Beam and ``--veil_*`` flags), builds and runs the pipeline."""
    options = PipelineOptions(argv)
    check_runner(options)
    pipeline = beam.Pipeline(options=options)
    build(pipeline, options)
    result = pipeline.run()
    result.wait_until_finish()
    return result
