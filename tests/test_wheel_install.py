"""Veil installed as a user would, outside the checkout: the built wheel into a fresh
venv, ``veil setup`` into a fresh home's cache, ``veil doctor``, then ``veil sanitize``
on a real photograph and a text file.

Dependencies come from a wheelhouse in ``$VEIL_CACHE/wheelhouse`` (built once per
constraints file from pip's cache) and install with ``--no-index``; nothing of the
checkout is importable from the venv (it runs in a temporary directory, with a temporary
``$HOME`` and without ``$VEIL_CACHE``). Takes a few minutes: marked ``integration`` so
``make unit`` skips it; ``make test`` runs it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("VEIL_CACHE", REPO / ".cache"))
PHOTO = CACHE / "testdata" / "image" / "astronaut.png"  # scikit-image's public-domain photo
TEXT = "Please call John Smith on 212-555-0175 or write to john.smith@example.com today.\n"


def _run(argv, **kwargs):
    done = subprocess.run(argv, capture_output=True, text=True, **kwargs)
    assert done.returncode == 0, f"{argv[:3]}: {done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done


def _wheelhouse(wheel: Path) -> Path:
    """Every dependency as a wheel, built once per constraints + setup.py."""
    digest = hashlib.sha256()
    for name in ("requirements/constraints.txt", "requirements/models.txt", "setup.py"):
        digest.update((REPO / name).read_bytes())
    house = CACHE / "wheelhouse" / digest.hexdigest()[:16]
    if not (house / ".complete").is_file():
        house.mkdir(parents=True, exist_ok=True)
        _run([sys.executable, "-m", "pip", "wheel", "-q", "-w", str(house),
              "-c", str(REPO / "requirements" / "constraints.txt"), str(wheel)])  # fmt: skip
        (house / ".complete").touch()
    return house


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    if not PHOTO.is_file():
        pytest.fail(f"{PHOTO} missing: run `make image-setup`")
    root = tmp_path_factory.mktemp("wheel-install")
    dist = root / "dist"
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
          "-w", str(dist), str(REPO)])  # fmt: skip
    (wheel,) = dist.glob("veil-*.whl")
    house = _wheelhouse(wheel)
    venv = root / "venv"
    _run([sys.executable, "-m", "venv", str(venv)])
    pip_cache = _run([sys.executable, "-m", "pip", "cache", "dir"]).stdout.strip()
    _run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-index",
          "--find-links", str(house), str(wheel)])  # fmt: skip
    home = root / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("VEIL_", "PYTHON", "VIRTUAL_ENV"))}  # fmt: skip
    env.update(HOME=str(home), PIP_CACHE_DIR=pip_cache, PATH=f"{venv / 'bin'}:{env['PATH']}")
    work = root / "work"
    work.mkdir()
    yield {"veil": str(venv / "bin" / "veil"), "env": env, "home": home, "work": work,
           "python": str(venv / "bin" / "python")}  # fmt: skip
    shutil.rmtree(venv, ignore_errors=True)  # ~1.5 GB: not left for pytest's basetemp


def test_the_venv_does_not_see_the_checkout(installed):
    where = _run([installed["python"], "-c", "import veil.pipelines; print(veil.pipelines.__file__)"],
                 cwd=installed["work"], env=installed["env"]).stdout  # fmt: skip
    assert "site-packages" in where and str(REPO) not in where


def test_doctor_names_the_fix_before_setup_and_is_ready_after(installed):
    veil, env, work = installed["veil"], installed["env"], installed["work"]
    before = subprocess.run([veil, "doctor", "--no-broker"], cwd=work, env=env,
                            capture_output=True, text=True)  # fmt: skip
    assert before.returncode == 1, before.stdout
    assert "face model" in before.stdout and "fix: run `veil setup`" in before.stdout
    setup = _run([veil, "setup"], cwd=work, env=env, timeout=600)
    model = installed["home"] / ".cache" / "veil" / "models" / "centerface.onnx"
    assert model.is_file() and "sha256 verified" in setup.stdout
    after = _run([veil, "doctor", "--no-broker"], cwd=work, env=env)
    assert "MISSING" not in after.stdout


def test_sanitizes_a_photo_and_a_text_file(installed):
    veil, env, work = installed["veil"], installed["env"], installed["work"]
    model = installed["home"] / ".cache" / "veil" / "models" / "centerface.onnx"
    if not model.is_file():
        _run([veil, "setup"], cwd=work, env=env, timeout=600)
    shutil.copy(PHOTO, work / "photo.png")
    (work / "notes.txt").write_text(TEXT)
    done = _run([veil, "sanitize", "photo.png", "notes.txt", "--out", "out"],
                cwd=work, env=env, timeout=600)  # fmt: skip
    assert "2 sanitized, 0 dead-lettered" in done.stdout, done.stdout + done.stderr
    out = work / "out"
    assert (out / "dead-letter.jsonl").read_text() == ""
    text = (out / "notes.txt").read_text()
    for pii in ("212-555-0175", "john.smith@example.com", "John Smith"):
        assert pii not in text
    original = cv2.imread(str(PHOTO))
    sanitized = cv2.imread(str(out / "photo.png"))
    assert sanitized is not None and sanitized.shape == original.shape
    changed = np.any(sanitized != original, axis=2)
    assert 0.005 < changed.mean() < 0.5  # the face covered, not the whole picture
    events = [json.loads(line) for line in (out / "audit.jsonl").read_text().splitlines()]
    assert {e["action"] for e in events} >= {"PUBLISHED"}
