"""A real schema registry for the tests: Apicurio Registry (Maven Central, in memory),
run by deploy/registry/registry.sh on a free loopback port."""

from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
REGISTRY_SH = REPO / "deploy" / "registry" / "registry.sh"


@contextlib.contextmanager
def running_registry(directory: Path):
    """Starts the registry in ``directory``; yields its Confluent-compatible URL."""
    existing = os.environ.get("VEIL_TEST_SCHEMA_REGISTRY")
    if existing:
        yield existing
        return
    started = subprocess.run(
        ["bash", str(REGISTRY_SH), "start", str(directory), "120"],
        capture_output=True,
        text=True,
    )
    if started.returncode != 0:
        raise RuntimeError(f"schema registry did not start:\n{started.stderr[-3000:]}")
    try:
        yield started.stdout.strip().splitlines()[-1]
    finally:
        subprocess.run(["bash", str(REGISTRY_SH), "stop", str(directory)], capture_output=True)
