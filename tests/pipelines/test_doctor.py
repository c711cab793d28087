"""``veil doctor`` / ``veil setup`` checks, and the fix named where a branch is not ready."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from veil.pipelines import doctor
from veil.transforms.fixes import FIXES, fix_for
from veil.transforms.records import ErrorCode

VEIL = str(Path(sys.executable).with_name("veil"))
CACHE = Path(os.environ.get("VEIL_CACHE", Path(__file__).resolve().parents[2] / ".cache"))
PHOTO = CACHE / "testdata" / "image" / "astronaut.png"


def _by_need(checks):
    return {c.need: c for c in checks}


def test_every_fix_names_a_real_error_code():
    codes = {v for k, v in vars(ErrorCode).items() if k.isupper()}
    assert set(FIXES) <= codes
    assert "veil setup" in fix_for(ErrorCode.IMAGE_MODEL_UNAVAILABLE)
    assert "veil doctor" in fix_for("SOMETHING_ELSE")


def test_a_missing_face_model_is_missing_with_its_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("VEIL_MODEL_DIR", str(tmp_path))
    check = _by_need(doctor.checks())["face model"]
    assert check.state == doctor.MISSING and "veil setup" in check.fix
    (tmp_path / "centerface.onnx").write_bytes(b"not the model")  # altered: still missing
    assert _by_need(doctor.checks())["face model"].state == doctor.MISSING


def test_keys_unreadable_broker_down_and_registry_down_name_their_fixes(tmp_path, monkeypatch):
    key = tmp_path / "audio.key"
    key.write_text("00" * 32)
    key.chmod(0o644)  # readable by others: refused by the key loader
    monkeypatch.setenv("VEIL_AUDIO_KEY_FILE", str(key))
    checks = _by_need(doctor.checks("127.0.0.1:1", "http://127.0.0.1:1/apis/ccompat/v7"))
    assert checks["key $VEIL_AUDIO_KEY_FILE"].state == doctor.MISSING
    assert "VEIL_AUDIO_KEY_FILE" in checks["key $VEIL_AUDIO_KEY_FILE"].fix
    assert checks["broker"].state == doctor.MISSING and "--bootstrap" in checks["broker"].fix
    registry = checks["schema registry"]
    assert registry.state == doctor.MISSING and "--veil_schema_registry none" in registry.fix
    key.chmod(0o600)
    assert _by_need(doctor.checks())["key $VEIL_AUDIO_KEY_FILE"].state == doctor.OK
    monkeypatch.setenv("VEIL_AUDIO_KEY_FILE", f"file:{key}")  # a key URI works the same
    assert _by_need(doctor.checks())["key $VEIL_AUDIO_KEY_FILE"].state == doctor.OK
    monkeypatch.setenv("VEIL_AUDIO_KEY_FILE", "s3:bucket/key")  # an unknown scheme is named
    assert _by_need(doctor.checks())["key $VEIL_AUDIO_KEY_FILE"].state == doctor.MISSING


def test_sanitize_without_the_face_model_says_what_to_do(tmp_path):
    """The issue's first try: a photo dead-lettered IMAGE_MODEL_UNAVAILABLE, fix named."""
    if not PHOTO.is_file():
        pytest.fail(f"{PHOTO} missing: run `make image-setup`")
    shutil.copy(PHOTO, tmp_path / "photo.png")
    env = {**os.environ, "VEIL_MODEL_DIR": str(tmp_path / "empty")}
    done = subprocess.run(
        [VEIL, "sanitize", "photo.png", "--out", "out"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 3, done.stderr  # a dead letter: exit 3 (docs/cli.md)
    assert "0 sanitized, 1 dead-lettered" in done.stdout
    assert "(IMAGE_MODEL_UNAVAILABLE: no verified face model in" in done.stderr
    assert "fix: run `veil setup`" in done.stderr
    assert not (tmp_path / "out" / "photo.png").exists()
