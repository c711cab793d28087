"""The voice key door and per-subject parameters (keyed, deterministic, in range)."""

from __future__ import annotations

import os

import pytest

from veil.transforms.audio.keys import VOICE_SCOPE, voice_params
from veil.transforms.keys import FileKeys, KeyUnavailable, NoKeys, keys_from_config, write_key_file

ALPHAS = (0.6, 0.8)
SEMITONES = (4.0, 7.0)


def _key_file(path, content: bytes, mode: int = 0o600):
    path.write_bytes(content)
    os.chmod(path, mode)
    return path


@pytest.mark.parametrize(
    "content, mode, usable",
    [
        ((b"ab" * 32) + b"\n", 0o600, True),  # 32 bytes as hex
        (bytes(range(40)), 0o400, True),  # raw bytes
        (b"ab" * 16, 0o600, False),  # 16 bytes: too short
        (b"", 0o600, False),
        ((b"ab" * 32), 0o640, False),  # group-readable
        ((b"ab" * 32), 0o604, False),  # world-readable
    ],
    ids=["hex", "raw", "short", "empty", "group-readable", "world-readable"],
)
def test_key_file_rules(tmp_path, content, mode, usable):
    keys = FileKeys(_key_file(tmp_path / "k", content, mode))
    if usable:
        assert len(keys.key_for(VOICE_SCOPE)) == 32
        assert keys.key_id.startswith("file:")
    else:
        with pytest.raises(KeyUnavailable):
            keys.key_for(VOICE_SCOPE)


def test_missing_file_and_no_configuration_fail_closed(tmp_path, monkeypatch):
    with pytest.raises(KeyUnavailable):
        FileKeys(tmp_path / "absent").key_for(VOICE_SCOPE)
    with pytest.raises(KeyUnavailable):
        FileKeys(tmp_path).key_for(VOICE_SCOPE)  # a directory
    monkeypatch.delenv("VEIL_TEST_VOICE_KEY", raising=False)
    assert isinstance(keys_from_config(None, "VEIL_TEST_VOICE_KEY"), NoKeys)
    with pytest.raises(KeyUnavailable):
        keys_from_config(None, "VEIL_TEST_VOICE_KEY").key_for(VOICE_SCOPE)


def test_environment_variable_names_the_file(tmp_path, monkeypatch):
    path = write_key_file(tmp_path / "voice.key")
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    monkeypatch.setenv("VEIL_TEST_VOICE_KEY", str(path))
    from_env = keys_from_config(None, "VEIL_TEST_VOICE_KEY")
    assert from_env.key_for(VOICE_SCOPE) == FileKeys(path).key_for(VOICE_SCOPE)
    # The key id names the key without being it, and scopes give different keys.
    assert path.read_text().strip() not in from_env.key_id
    assert from_env.key_for(VOICE_SCOPE) != from_env.key_for("other-scope")


def test_parameters_are_deterministic_keyed_and_in_range():
    key_a, key_b = b"a" * 32, b"b" * 32
    subjects = [f"subject-{i}" for i in range(200)]
    params = [voice_params(key_a, s, ALPHAS, SEMITONES) for s in subjects]
    assert params == [voice_params(key_a, s, ALPHAS, SEMITONES) for s in subjects]
    assert all(ALPHAS[0] <= p.alpha <= ALPHAS[1] for p in params)
    assert all(SEMITONES[0] <= abs(p.semitones) <= SEMITONES[1] for p in params)
    # Spread over the range, both directions of pitch shift used.
    alphas = sorted(p.alpha for p in params)
    assert alphas[10] < 0.62 and alphas[-10] > 0.78
    assert {p.semitones > 0 for p in params} == {True, False}
    assert len({p.alpha for p in params}) == len(subjects)
    # Another key maps the same subjects elsewhere.
    other = [voice_params(key_b, s, ALPHAS, SEMITONES) for s in subjects]
    assert sum(a.alpha == b.alpha for a, b in zip(params, other)) == 0


def test_warp_parameters_are_keyed_spread_and_leave_the_others_unchanged():
    key = b"k" * 32
    subjects = [f"subject-{i}" for i in range(200)]
    warps, f0s = (0.05, 0.1), (90.0, 240.0)
    params = [voice_params(key, s, ALPHAS, SEMITONES, warps, f0s) for s in subjects]
    assert params == [voice_params(key, s, ALPHAS, SEMITONES, warps, f0s) for s in subjects]
    # Adding the warp mode's parameters moved no subject's McAdams or pitch-shift voice.
    plain = [voice_params(key, s, ALPHAS, SEMITONES) for s in subjects]
    assert [(p.alpha, p.semitones) for p in params] == [(p.alpha, p.semitones) for p in plain]
    assert all(p.warp == 0.0 and p.f0 == 0.0 for p in plain)
    assert all(warps[0] <= abs(p.warp) <= warps[1] for p in params)
    assert {p.warp > 0 for p in params} == {True, False}
    assert all(f0s[0] <= p.f0 <= f0s[1] for p in params)
    f0 = sorted(p.f0 for p in params)
    assert f0[10] < 105 and f0[-10] > 205 and len(set(f0)) > 190
    other = [voice_params(b"o" * 32, s, ALPHAS, SEMITONES, warps, f0s) for s in subjects]
    assert sum(a.f0 == b.f0 for a, b in zip(params, other)) == 0


def test_key_service_gives_per_subject_voices_that_erasure_destroys(tmp_path, monkeypatch):
    """With a kms: URI as the voice key, each subject's pseudo-voice key is its own
    secret: forgetting the subject makes its audio SUBJECT_ERASED, others go on."""
    import io

    import apache_beam as beam
    import numpy as np
    import soundfile
    from apache_beam.testing.util import assert_that, equal_to
    from veil_testing import beam_pipeline

    from veil.transforms.audio import AudioConfig, AudioHandler
    from veil.transforms.classification import load_policy
    from veil.transforms.crypto import KeyServiceConfig, LocalKeyring
    from veil.transforms.keys import SubjectKeyErased
    from veil.transforms.privacy import ApplyPrivacyStep
    from veil.transforms.records import Source, WorkItem

    monkeypatch.setenv("VEIL_TEST_VOICE_MASTER", "22" * 32)
    LocalKeyring.create(tmp_path / "keyring.json", "VEIL_TEST_VOICE_MASTER")
    uri = (
        f"kms:local?store={tmp_path / 'keys.db'}&keyring={tmp_path / 'keyring.json'}"
        "&master_key_env=VEIL_TEST_VOICE_MASTER"
    )
    keys = KeyServiceConfig.from_uri(uri).open().secret_keys()
    assert keys.key_for_subject(VOICE_SCOPE, "s1") != keys.key_for_subject(VOICE_SCOPE, "s2")

    buf = io.BytesIO()
    tone = 0.3 * np.sin(2 * np.pi * 220 * np.arange(16000) / 16000)
    soundfile.write(buf, tone, 16000, format="WAV", subtype="PCM_16")

    def item(record_id, offset, subject):
        record = {"record_id": record_id, "subject_key": subject, "payload": buf.getvalue()}
        return WorkItem(Source("veil.raw", 0, offset), record, modality="audio")

    config = AudioConfig(key_file=uri, spoken_pii=False, isolation=None)

    def run(items, want_ok, want_dead):
        pipeline = beam_pipeline()
        out = (
            pipeline
            | beam.Create(items, reshuffle=False)
            | ApplyPrivacyStep(AudioHandler(load_policy(), config))
        )
        assert_that(out.records | beam.Map(lambda i: i.record_id), equal_to(want_ok), "ok")
        dead = out.dead_letters | "Codes" >> beam.Map(lambda f: (f.record_id, f.error_code))
        assert_that(dead, equal_to(want_dead), label="dead")
        pipeline.run()

    run([item("a1", 0, "s1"), item("a2", 1, "s2")], ["a1", "a2"], [])
    KeyServiceConfig.from_uri(uri).open().forget("s1")
    with pytest.raises(SubjectKeyErased):
        keys.key_for_subject(VOICE_SCOPE, "s1")
    run([item("a3", 2, "s1"), item("a4", 3, "s2")], ["a4"], [("a3", "SUBJECT_ERASED")])
