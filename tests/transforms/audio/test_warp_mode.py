"""The ``warp`` voice mode: one pseudo-voice per subject, keyed, through the pipeline step.

Same subject, same output; another subject, another voice (its own warp and target
F0); the output's fundamental sits at the subject's target F0 whatever the input's.
"""

from __future__ import annotations

import hashlib
import io

import apache_beam as beam
import numpy as np
import pytest
import soundfile
from apache_beam.testing.util import assert_that, equal_to
from audio_testing import LIBRIVOX, librivox, require_test_audio
from veil_testing import beam_pipeline

from veil.transforms.audio import AudioConfig, AudioHandler
from veil.transforms.audio.keys import VoiceParams
from veil.transforms.audio.voice import anonymize_voice, median_f0
from veil.transforms.classification import load_policy
from veil.transforms.privacy import ApplyPrivacyStep
from veil.transforms.records import Source, WorkItem


@pytest.fixture(scope="module", autouse=True)
def data():
    require_test_audio()


@pytest.fixture(scope="module")
def key_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("keys") / "voice.key"
    path.write_text(bytes(range(32)).hex() + "\n")
    path.chmod(0o600)
    return path


def test_same_subject_same_voice_other_subject_other_voice(key_file):
    config = AudioConfig(mode="warp", spoken_pii=False, key_file=str(key_file), isolation=None)
    speech = LIBRIVOX[1].read_bytes()

    def item(record_id, offset, subject, payload=speech):
        record = {"record_id": record_id, "subject_key": subject, "payload": payload}
        return WorkItem(Source("veil.raw", 0, offset), record, modality="audio")

    items = [item("a", 0, "s1"), item("b", 1, "s1"), item("c", 2, "s2"), item("bad", 3, "s1", b"x")]
    pipeline = beam_pipeline()
    out = (
        pipeline
        | beam.Create(items, reshuffle=False)
        | ApplyPrivacyStep(AudioHandler(load_policy(), config), 60)
    )
    digests = (
        out.records
        | beam.Map(lambda i: ("all", (i.record_id, hashlib.sha256(i.sanitized_payload).digest())))
        | beam.GroupByKey()
        | beam.Map(
            lambda kv: (dict(kv[1])["a"] == dict(kv[1])["b"], dict(kv[1])["a"] == dict(kv[1])["c"])
        )
    )
    with pipeline:
        assert_that(digests, equal_to([(True, False)]), label="voices")
        assert_that(
            out.dead_letters | beam.Map(lambda f: (f.record_id, f.error_code)),
            equal_to([("bad", "AUDIO_FORMAT_UNSUPPORTED")]),
            label="dead",
        )


@pytest.mark.parametrize("target", [80.0, 170.0])
def test_output_fundamental_is_the_subject_target(target):
    x, rate = librivox(3)
    params = VoiceParams(alpha=0.9, semitones=0.0, warp=0.05, f0=target)
    y = anonymize_voice(x[:, None], rate, params, "warp")[:, 0]
    assert y.shape == x.shape and np.isfinite(y).all()
    assert abs(median_f0(y, rate) / target - 1.0) < 0.15
    buffer = io.BytesIO()
    soundfile.write(buffer, y, rate, format="WAV")  # encodable as the pipeline does
