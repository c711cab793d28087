"""Shared fixtures: one real Kafka broker per test session, Beam test pipelines, records.

The broker is Apache Kafka from Maven Central run by deploy/kafka/kafka.sh (KRaft, one
node, loopback, free ports), started on first use and stopped at the end of the session.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
KAFKA_SH = REPO / "deploy" / "kafka" / "kafka.sh"


def pytest_configure(config):
    """One record-id key for the session (inherited by subprocesses and job servers), so
    producer ids become opaque ids as in production; ``veil_testing.opaque`` maps them."""
    if not os.environ.get("VEIL_RECORD_ID_KEY_FILE"):
        import tempfile

        from veil.transforms.keys import write_key_file

        path = Path(tempfile.mkdtemp(prefix="veil-test-ids-")) / "record-id.key"
        os.environ["VEIL_RECORD_ID_KEY_FILE"] = str(write_key_file(path))


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory) -> str:
    """Starts a real broker for the session; yields ``127.0.0.1:PORT``."""
    existing = os.environ.get("VEIL_TEST_BOOTSTRAP")
    if existing:
        yield existing
        return
    broker_dir = tmp_path_factory.mktemp("kafka")
    started = subprocess.run(
        ["bash", str(KAFKA_SH), "start", str(broker_dir), "90"],
        capture_output=True,
        text=True,
    )
    if started.returncode != 0:
        pytest.fail(f"Kafka broker did not start:\n{started.stderr[-3000:]}")
    bootstrap = started.stdout.strip().splitlines()[-1]
    try:
        yield bootstrap
    finally:
        subprocess.run(["bash", str(KAFKA_SH), "stop", str(broker_dir)], capture_output=True)


@pytest.fixture
def topic_prefix() -> str:
    """A fresh topic prefix per test, so tests never see each other's records."""
    return f"t{uuid.uuid4().hex[:10]}"
