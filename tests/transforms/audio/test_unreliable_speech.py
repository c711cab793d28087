"""Speech Veil could not transcribe reliably is quarantined, never published as clean.

Spoken-PII removal is only as good as the recognizer: a name PocketSphinx did not
recognize cannot be silenced. The transcript's confidence (``Transcript.confidence``)
below the policy's ``audio.min_transcript_confidence`` marks the record
(``UNRELIABLE_TRANSCRIPT`` count, ``UNVERIFIED_SPEECH`` regime) and, under the default
policy, routes it to ``<prefix>.quarantine.audio`` with audit reason
``AUDIO_TRANSCRIPT_UNRELIABLE``. Real read English (the LibriVox reader) stays on the
sanitized topic.
"""

from __future__ import annotations

import apache_beam as beam
import pytest
from apache_beam.testing.util import assert_that, equal_to
from audio_testing import LIBRIVOX, espeak, require_test_audio
from veil_testing import beam_pipeline, media_record

from veil.transforms.audio import AudioConfig, AudioHandler
from veil.transforms.audio.asr import Transcriber
from veil.transforms.classification import PolicyError, load_policy, parse_policy
from veil.transforms.emit import PublishSanitized, TopicNames
from veil.transforms.privacy import ApplyPrivacyStep, settle
from veil.transforms.records import Source, WorkItem

# A Dutch name and a French street: words outside PocketSphinx's English vocabulary,
# which it forces onto English words ("eating a great vendor learned ...").
FOREIGN_PII = "my name is ingrid van der berg and i live at forty two rue de la paix in strasbourg"


@pytest.fixture(scope="module")
def key_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("keys") / "voice.key"
    path.write_text(bytes(range(32)).hex() + "\n")
    path.chmod(0o600)
    return path


@pytest.fixture(scope="module", autouse=True)
def data():
    require_test_audio()


def _item(record_id: str, payload: bytes, subject: str, offset: int) -> WorkItem:
    record = media_record(record_id, subject, payload, modality="audio", content_type="audio/wav")
    return WorkItem(Source("veil.raw", 0, offset), record, "audio")


def test_confidence_separates_real_english_from_forced_words():
    import soundfile

    asr = Transcriber.load()
    samples, _ = soundfile.read(LIBRIVOX[0], dtype="float64")
    assert asr.transcribe_scored(samples).confidence >= 0.3
    x, rate, _ = espeak(FOREIGN_PII)
    from veil.transforms.audio.voice import resample

    assert asr.transcribe_scored(resample(x, rate, 16000)).confidence < 0.3
    assert asr.transcribe_scored(samples * 0.0).confidence == 1.0  # silence: nothing missed


def test_unreliable_speech_is_quarantined_under_the_default_policy(key_file):
    policy = load_policy()
    assert policy.audio.unreliable_speech == "quarantine"
    handler = AudioHandler(policy, AudioConfig(key_file=str(key_file)))
    topics = TopicNames("veil")
    reader = LIBRIVOX[0].read_bytes()
    _, _, foreign = espeak(FOREIGN_PII)
    items = [_item("reader", reader, "a", 0), _item("foreign", foreign, "b", 1)]
    pipeline = beam_pipeline()
    result = pipeline | beam.Create(items, reshuffle=False) | ApplyPrivacyStep(handler, 120)
    writes = result.records | PublishSanitized(topics, policy.version, policy.quarantine_levels)
    marks = result.records | "Marks" >> beam.Map(
        lambda i: (
            i.record_id,
            i.classification.quarantine_reason,
            "UNVERIFIED_SPEECH" in i.classification.regimes,
            i.classification.entity_counts.get("UNRELIABLE_TRANSCRIPT", 0),
            i.trail[-1].entity_counts.get("UNRELIABLE_TRANSCRIPT", 0),
        )
    )
    data_topics = (
        writes | beam.Filter(lambda w: w.topic != topics.audit) | beam.Map(lambda w: w.topic)
    )
    with pipeline:
        assert_that(
            marks,
            equal_to(
                [
                    ("reader", None, False, 0, 0),
                    ("foreign", "AUDIO_TRANSCRIPT_UNRELIABLE", True, 1, 1),
                ]
            ),
            label="marks",
        )
        # The reliable one is published; the unreliable one never reaches a sanitized topic.
        assert_that(
            data_topics,
            equal_to(["veil.sanitized.audio", "veil.quarantine.audio"]),
            label="topics",
        )
        assert_that(result.dead_letters, equal_to([]), label="dead_letters")


def test_policy_can_publish_unreliable_speech_still_marked(key_file):
    raw = _raw_default()
    raw["audio"] = {"unreliable_speech": "publish"}
    policy = parse_policy(raw)
    handler = AudioHandler(policy, AudioConfig(key_file=str(key_file)))
    model = handler.load()
    _, _, foreign = espeak(FOREIGN_PII)
    item = _item("foreign", foreign, "b", 0)
    counts = settle(item, handler.process(model, item))
    assert counts["UNRELIABLE_TRANSCRIPT"] == 1
    assert item.classification.quarantine_reason is None
    assert "UNVERIFIED_SPEECH" in item.classification.regimes


@pytest.mark.parametrize(
    "audio",
    [
        {"unreliable_speech": "drop"},
        {"min_transcript_confidence": 1.5},
        {"min_transcript_confidence": "high"},
        {"other": 1},
    ],
    ids=["action", "range", "type", "unknown-key"],
)
def test_policy_audio_section_validates(audio):
    raw = _raw_default()
    raw["audio"] = audio
    with pytest.raises(PolicyError):
        parse_policy(raw)


def _raw_default() -> dict:
    import yaml

    from veil.transforms.classification import default_policy_path

    return yaml.safe_load(default_policy_path().read_text())
