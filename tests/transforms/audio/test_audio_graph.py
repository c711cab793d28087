"""Audio through the whole graph (``build``) and through ``veil sanitize``."""

from __future__ import annotations

import io
import json

import apache_beam as beam
import pytest
import soundfile
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.util import assert_that, equal_to
from audio_testing import LIBRIVOX, require_test_audio
from veil_testing import framed, media_record, opaque

from veil.pipelines.local import sanitize_files
from veil.pipelines.options import LOCAL_RUNNER
from veil.pipelines.sanitize import build
from veil.schemas import catalog
from veil.transforms.audio import AudioHandler
from veil.transforms.audio.keys import DEFAULT_KEY_ENV
from veil.transforms.audit import steps_of
from veil.transforms.classification import load_policy
from veil.transforms.keys import write_key_file
from veil.transforms.privacy import ApplyPrivacyStep, _ModelHolder
from veil.transforms.records import KafkaMessage

SPEECH = LIBRIVOX[1]  # "he was not an ill disposed young man", 16 kHz mono


@pytest.fixture(scope="module")
def keyed_model(tmp_path_factory):
    """The voice key named by the worker's environment, as in production.

    The graph's handler is loaded once here and held, so both pipelines reuse it.
    """
    require_test_audio()
    key = write_key_file(tmp_path_factory.mktemp("keys") / "voice.key")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(DEFAULT_KEY_ENV, str(key))
        handler = AudioHandler(load_policy())
        holder = ApplyPrivacyStep.shared_for(handler).acquire(
            lambda: _ModelHolder(handler.load()), handler.share_key()
        )
        assert holder.model.key is not None
        yield holder


class _Discard(beam.PTransform):
    """The sink: the test reads ``graph.writes`` (the KafkaWrites before the sink)."""

    def expand(self, writes):
        return writes | beam.Filter(lambda w: False)


def _message(offset: int, record: dict) -> KafkaMessage:
    return KafkaMessage("raw", 0, offset, 0, record["subject_key"].encode(), framed(record))


def _summary(write) -> tuple:
    topic, record = write.topic, catalog().decode(write.value)[1]
    if topic.endswith(".audit"):
        return (topic, record["record_id"], "audit")
    if "error_code" in record:
        return (topic, record["record_id"], record["error_code"])
    info = soundfile.info(io.BytesIO(record["payload"]))
    return (topic, record["record_id"], record["content_type"], info.samplerate, info.frames)


def test_graph_routes_audio_to_its_branch_and_topic(keyed_model):
    speech = SPEECH.read_bytes()
    frames = soundfile.info(SPEECH).frames
    records = [
        media_record("a1", "reader", speech, content_type="audio/wav"),
        media_record("a2", "reader", b"ID3\x04\x00\x00\x00\x00\x00\x23" + b"\x00" * 64),
        media_record("a3", "reader", b"not audio at all", modality="audio"),
    ]
    options = PipelineOptions([f"--runner={LOCAL_RUNNER}", "--veil_topic_prefix=unit"])
    pipeline = beam.Pipeline(options=options)
    source = beam.Create([_message(i, r) for i, r in enumerate(records)])
    graph = build(pipeline, options, source=source, sink=_Discard())
    assert {"AudioSanitized", "AudioFailures"} <= set(graph.writes)
    outputs = [graph.writes[k] for k in sorted(graph.writes)] | beam.Flatten()
    assert_that(
        outputs | "Summary" >> beam.Map(_summary) | beam.Filter(lambda s: s[2] != "audit"),
        equal_to(
            [
                ("unit.sanitized.audio", opaque("a1"), "audio/wav", 16000, frames),
                ("unit.dead-letter", opaque("a2"), "AUDIO_DECODE_ERROR"),
                ("unit.dead-letter", opaque("a3"), "AUDIO_FORMAT_UNSUPPORTED"),
            ]
        ),
    )
    pipeline.run().wait_until_finish()


def test_veil_sanitize_writes_an_anonymized_wav(keyed_model, tmp_path):
    source = tmp_path / "call.wav"
    source.write_bytes(SPEECH.read_bytes())
    out = tmp_path / "out"
    summary = sanitize_files([str(source)], out, subject="reader")
    assert (summary["records"], summary["sanitized"], summary["dead_letters"]) == (1, 1, 0)
    written = (out / "call.wav").read_bytes()
    assert written != source.read_bytes()
    original, anonymized = soundfile.info(source), soundfile.info(out / "call.wav")
    assert (anonymized.samplerate, anonymized.frames, anonymized.channels) == (
        original.samplerate,
        original.frames,
        original.channels,
    )
    audit = [json.loads(line) for line in (out / "audit.jsonl").read_text().splitlines()]
    stages = [(s["stage"], s["action"]) for e in audit for s in steps_of(e)]
    assert ("audio", "ANONYMIZED") in stages and ("emit", "PUBLISHED") in stages
