"""Shared scaffolding for the red-team regression suite (tests/hostile/test_redteam_*.py).

``run_graph`` runs Veil's whole graph (``veil.pipelines.sanitize.build``) on the given
Kafka messages with an in-memory source and a file sink, and returns every write it
produced: sanitized records, dead letters and audit events, with their Kafka keys and
headers. ``leaks`` searches all of it (raw bytes and decoded fields) for a value.
"""

from __future__ import annotations

import base64
import json
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

import apache_beam as beam
import yaml
from apache_beam.options.pipeline_options import PipelineOptions

from veil.pipelines.options import LOCAL_RUNNER
from veil.pipelines.sanitize import build
from veil.schemas import catalog
from veil.transforms.classification import default_policy_path


class Written(NamedTuple):
    topic: str
    key: bytes
    headers: tuple
    value: bytes
    record: dict


class _ToFile(beam.PTransform):
    def __init__(self, path):
        super().__init__()
        self._path = str(path)

    def expand(self, writes):
        path = self._path

        def write(w):
            doc = {
                "topic": w.topic,
                "key": base64.b64encode(w.key).decode(),
                "headers": [[k, base64.b64encode(v).decode()] for k, v in w.headers],
                "value": base64.b64encode(w.value).decode(),
            }
            with open(path, "a") as fh:
                fh.write(json.dumps(doc) + "\n")

        return writes | beam.Map(write)


def policy_file(tmp: Path, edit=None) -> Path:
    """The packaged policy, edited by ``edit(dict)``, written under ``tmp``."""
    policy = yaml.safe_load(Path(default_policy_path()).read_text())
    if edit:
        edit(policy)
    path = Path(tmp) / "policy.yaml"
    path.write_text(yaml.safe_dump(policy))
    return path


def run_graph(messages, *flags, tmp: Path | None = None) -> tuple[list, float]:
    """(writes, seconds) of one run of the graph over ``messages``."""
    tmp = Path(tmp or tempfile.mkdtemp(prefix="veil-redteam-"))
    out = tmp / f"out-{time.monotonic_ns()}.jsonl"
    options = PipelineOptions([f"--runner={LOCAL_RUNNER}", *flags])
    pipeline = beam.Pipeline(options=options)
    build(pipeline, options, source=beam.Create(messages, reshuffle=False), sink=_ToFile(out))
    started = time.monotonic()
    pipeline.run().wait_until_finish()
    seconds = time.monotonic() - started
    writes = []
    cat = catalog()
    for line in out.read_text().splitlines() if out.exists() else []:
        doc = json.loads(line)
        value = base64.b64decode(doc["value"])
        writes.append(
            Written(
                doc["topic"],
                base64.b64decode(doc["key"]),
                tuple((k, base64.b64decode(v)) for k, v in doc["headers"]),
                value,
                cat.decode(value)[1],
            )
        )
    return writes, seconds


def leaks(writes, needle: str) -> list[str]:
    """Where ``needle`` appears in any output (keys, headers, values, decoded fields)."""
    raw = needle.encode("utf-8")
    found = []
    for w in writes:
        if raw in w.key:
            found.append(f"{w.topic}: key")
        for name, value in w.headers:
            if raw in value or needle in name:
                found.append(f"{w.topic}: header {name}")
        if raw in w.value:
            found.append(f"{w.topic}: value bytes")
        if needle in json.dumps(w.record, default=str, ensure_ascii=False):
            found.append(f"{w.topic}: decoded record")
    return found


def by_topic(writes, suffix: str) -> list:
    return [w for w in writes if w.topic.endswith(suffix)]
