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
