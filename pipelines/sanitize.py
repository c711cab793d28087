"""The main Veil pipeline: raw topic in; sanitized, audit and dead-letter topics out.

``build`` composes the graph; ``run`` parses flags, builds and runs it.

    read -> decode+validate -> route by modality -> per-modality classify+anonymize
         -> encode -> sanitized topic(s) + audit events
    every failure -> dead-letter topic + audit events

Every terminal branch writes through its own sink step, with no Flatten before it: on
the FnApiRunner a Flatten ends the fused stage, so the Kafka writes would run after the
source's bundle was finalized and its offsets committed. Kept fused, a bundle commits
its source offsets only after every record it produced was acknowledged. On Flink,
where offsets commit on completed checkpoints, ``--veil_redistribute`` breaks the fusion
on purpose to balance the privacy steps (``veil.pipelines.scaleout``).
"""

from __future__ import annotations

import logging
from typing import NamedTuple

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.runner import PipelineState

from veil.pipelines.options import VeilConfig
from veil.pipelines.runners import commit_lag_s, prepare_argv
from veil.pipelines.scaleout import PinToSinkSlot, sink_slots
from veil.pipelines.topics import register_schemas
from veil.transforms.classification import load_policy
from veil.transforms.codec import DecodeRecords
from veil.transforms.crypto.protect import ProtectOriginals
from veil.transforms.crypto.reveal import RevealPolicy
from veil.transforms.emit import PublishDeadLetters, PublishSanitized
from veil.transforms.kafkaio import MAX_MESSAGE_BYTES, ReadFromKafka, WriteToKafka
from veil.transforms.kafkaio.source import commit_completed_bounded_run, end_offsets_now
from veil.transforms.modality import MODALITIES, HandlerSettings
from veil.transforms.privacy import ApplyPrivacyStep
from veil.transforms.routing import RouteByModality
from veil.transforms.sandbox import NATIVE_DECODERS

_LOGGER = logging.getLogger(__name__)


def _handlers(
    policy, isolation=NATIVE_DECODERS, audio_key_file=None, modalities=None, names=None
) -> dict:
    """One privacy handler per registered modality (models load later, in setup).

    Each comes from its ``ModalitySpec``'s factory (``veil.transforms.modality``).
    ``isolation``: the sandbox the native decoders (images, audio) run in, or None to
    decode in the worker's own process (``--veil_decoder_isolation off``); video records
    then run in ``VIDEO_DECODERS`` (FFmpeg and the face model) or in process as well.

    Audio's voice key is named on the worker ($VEIL_AUDIO_KEY_FILE); without one every
    audio record is dead-lettered AUDIO_KEY_UNAVAILABLE. Images need the face model in
    the model cache and Tesseract on the worker, else IMAGE_MODEL_UNAVAILABLE /
    IMAGE_OCR_FAILED. ``audio_key_file`` (``--veil_audio_key_file``) names the voice key
    file instead of the variable. ``names``: only these modalities' handlers (the
    branches the graph builds): a text-only graph never imports the image, audio or
    video packages (OpenCV, librosa, FFmpeg; about 0.1 CPU-second).
    """
    settings = HandlerSettings(isolation=isolation, audio_key_file=audio_key_file)
    registry = MODALITIES if modalities is None else modalities
    return {spec.name: spec.handler(policy, settings) for spec in registry.specs(names)}


class VeilGraph(NamedTuple):
    """The terminal ``KafkaWrite`` collections by label, before the sink."""

    writes: dict
    config: VeilConfig
    policy_version: str


def build(
    pipeline: beam.Pipeline, options: PipelineOptions, source=None, sink=None, modalities=None
) -> VeilGraph:
    """Adds Veil's graph to ``pipeline``.

    Args:
        pipeline: the pipeline to extend.
        options: pipeline options holding ``VeilOptions``; validated here, so a bad
            option or policy fails before anything runs.
        source: a PTransform from the pipeline root to ``KafkaMessage``s (default:
            ``ReadFromKafka`` on the input topics).
        sink: a PTransform applied to each terminal collection of ``KafkaWrite``s
            (default: ``WriteToKafka``); applied once per branch, with its own label.
        modalities: the registered modalities that get a branch (default: all). A
            caller that knows its input (``veil sanitize``) builds only those it needs, so
            no other branch's models or sandbox start; a record of another registered
            modality is dead-lettered ``UNSUPPORTED_MODALITY``, never lost.
    """
    config = VeilConfig.from_options(options)
    policy = load_policy(config.policy_path)
    client_config = config.client_config()
    # With a schema registry: register Veil's schemas now (fails fast, naming the fix,
    # when the registry is unreachable) and frame every output with its ids.
    schemas = register_schemas(config.schema_registry, config.topics, config.input_topics)
    if source is None:
        source = ReadFromKafka(
            client_config,
            list(config.input_topics),
            group_id=config.consumer_group,
            bounded=config.bounded,
            start=config.start_offset,
            max_records_per_bundle=config.max_records_per_bundle,
            idle_stop_seconds=config.idle_stop_s,
            exactly_once=config.delivery == "exactly_once",
            # Redistributed: commit a bundle's offsets one completed checkpoint later.
            commit_lag_s=commit_lag_s(options) if config.redistribute else 0.0,
        )
    if sink is None:
        # exactly_once: every write joins its source partition's transaction, which the
        # source commits with the offsets (the sinks stay fused into its stage, above).
        sink = WriteToKafka(
            client_config,
            delivery=config.delivery,
            group_id=config.consumer_group,
            topic_writers=[config.audit_chain(schemas)],  # audit events chained as produced
        )

    messages = pipeline | "ReadRaw" >> source
    if config.redistribute:
        _LOGGER.info("Redistributing after the read (Flink): offsets commit one checkpoint later")
        # Flink: the steps below run round robin on every subtask, not where the
        # partition was read; the writes come back to one subtask per source partition
        # (its audit chain's single writer) before the sink. See veil.pipelines.scaleout.
        messages = messages | "Redistribute" >> beam.Reshuffle()
    decoded = messages | "Decode" >> DecodeRecords(
        config.max_payload_bytes,
        MAX_MESSAGE_BYTES,
        schemas,
        id_key=config.record_id_key,
        key_service=config.key_service,
    )
    # Every registered modality gets a branch (veil.transforms.modality), unless told.
    branches = MODALITIES.names() if modalities is None else tuple(modalities)
    routed = decoded.records | "Route" >> RouteByModality(branches, MODALITIES)

    writes = {}
    topics, version, keys = config.topics, policy.version, config.key_service
    writes["DecodeFailures"] = decoded.dead_letters | "DeadLetterDecode" >> PublishDeadLetters(
        topics, version, keys, schemas, step="decode"
    )
    writes["RouteFailures"] = routed.dead_letters | "DeadLetterRoute" >> PublishDeadLetters(
        topics, version, keys, schemas, step="route"
    )
    quarantine = policy.quarantine_levels
    # Envelopes are bound to this policy: `veil reveal` must be given the same file.
    # (version, digest, reveal roles): envelopes are role-sealed once roles have keys.
    pinned = (version, *RevealPolicy.load(config.policy_path).pins()[1:])
    isolation = NATIVE_DECODERS if config.decoder_isolation else None
    handlers = _handlers(policy, isolation, config.audio_key_file, names=branches)
    for spec in MODALITIES.specs(branches):
        modality, handler = spec.name, handlers[spec.name]
        name = modality.capitalize()
        limit = spec.limit_s(config.step_time_limit_s, config.audio_time_limit_s)
        branch = routed.branches[modality] | name >> ApplyPrivacyStep(
            handler, time_limit_s=limit, preempt=spec.preempt and config.preempt_steps
        )
        records = branch.records
        if keys is not None:  # encrypt originals set aside by `encrypt` operators
            protected = records | f"Protect{name}" >> ProtectOriginals(keys, pinned)
            records = protected.records
            writes[f"{name}ProtectFailures"] = protected.dead_letters | (
                f"DeadLetterProtect{name}"
                >> PublishDeadLetters(topics, version, keys, schemas, step=f"protect_{modality}")
            )
        writes[f"{name}Sanitized"] = records | f"Publish{name}" >> PublishSanitized(
            topics, version, quarantine, keys, step=f"publish_{modality}", schemas=schemas
        )
        writes[f"{name}Failures"] = branch.dead_letters | f"DeadLetter{name}" >> (
            PublishDeadLetters(topics, version, keys, schemas, step=modality)
        )
    if config.redistribute:
        merged = tuple(writes.values()) | "AllWrites" >> beam.Flatten()
        pinned = merged | "PinToSinkSlot" >> PinToSinkSlot(sink_slots(options))
        pinned | "WriteAll" >> sink
    else:
        for label, pcoll in writes.items():
            pcoll | f"Write{label}" >> sink
    return VeilGraph(writes, config, version)


def run(argv=None, wait: bool = True) -> beam.runners.runner.PipelineResult:
    """Parses ``argv`` (Beam and ``--veil_*`` flags), builds and runs the pipeline.

    ``wait=False`` returns once the job is submitted (Dataflow's Flex Template launcher).
    """
    options = PipelineOptions(prepare_argv(argv))
    pipeline = beam.Pipeline(options=options)
    graph = build(pipeline, options)
    config = graph.config
    settle = None
    if wait and config.bounded and config.delivery == "at_least_once":
        # Before submitting: these ends are at most the job's stop offsets.
        ends = end_offsets_now(config.client_config(), list(config.input_topics))
        settle = lambda: commit_completed_bounded_run(  # noqa: E731
            config.client_config(), config.consumer_group, ends
        )
    result = pipeline.run()
    if wait:
        result.wait_until_finish()
        if settle is not None and result.state == PipelineState.DONE:
            moved = settle()
            if moved:
                _LOGGER.info("Bounded run done: committed %d partition(s) left behind", moved)
    return result
