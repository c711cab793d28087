"""Packaging: the veil import root, and an sdist fit for Beam's --setup_file."""

from __future__ import annotations

import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def dist_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "setup.py", "-q", "sdist", "-d", str(out)],
        cwd=REPO,
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(out),
            str(REPO),
        ],
        check=True,
        capture_output=True,
    )
    return out


def test_sdist_carries_schemas_catalog_policy_and_demo_data(dist_dir):
    (sdist,) = dist_dir.glob("veil-*.tar.gz")
    names = {n.split("/", 1)[1] for n in tarfile.open(sdist).getnames() if "/" in n}
    for avsc in ("media_record", "sanitized_record", "audit_event", "dead_letter"):
        assert f"schemas/{avsc}.avsc" in names
    assert "schemas/catalog.json" in names
    assert "pipelines/data/policy-default.yaml" in names
    assert "pipelines/data/demo-records.jsonl" in names
    assert "requirements/models.txt" in names


def test_wheel_installs_everything_under_the_veil_root(dist_dir):
    (wheel,) = dist_dir.glob("veil-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/", 1)[0] for n in names if not n.startswith("veil-")}
    assert tops == {"veil"}, tops  # no bare top-level transforms / pipelines / schemas
    assert "veil/schemas/catalog.json" in names
    assert "veil/transforms/kafkaio/source.py" in names
    assert "veil/transforms/operators/mask.py" in names  # the operator registry's files
    assert "veil/__init__.py" not in names  # veil is a namespace package
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "veil = veil.pipelines.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
