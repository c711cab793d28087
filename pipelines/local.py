"""``veil sanitize``: the pipeline's graph on local files, without Kafka.

The graph is the one ``veil run`` builds (``veil.pipelines.sanitize.build``) with a file
source and a spool sink: each terminal write lands in a spool directory, and once the
pipeline finished, the spool is sorted into the outputs:

* ``DIR/<name>`` for each plain input file: the sanitized payload, same name and type;
* ``DIR/<name>.jsonl`` for each ``.jsonl`` input: SanitizedRecords in JSON form;
* ``DIR/audit.jsonl`` and ``DIR/dead-letter.jsonl``.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import tempfile
import uuid
from pathlib import Path

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from veil.pipelines.files import file_messages, to_json
from veil.pipelines.runners import prepare_argv
from veil.pipelines.sanitize import build
from veil.schemas import AUDIT_EVENT, DEAD_LETTER, SANITIZED_RECORD, catalog
from veil.transforms.audit_chain import chain_events, resolve_mac_key
from veil.transforms.ids import ID_KEY_ENV
from veil.transforms.keys import write_key_file


class _SpoolFn(beam.DoFn):
    """Appends each ``KafkaWrite`` to a per-bundle file in the spool directory."""

    def __init__(self, spool: str):
        self._spool = spool

    def start_bundle(self):
        self._file = None

    def process(self, write):
        if self._file is None:
            self._file = open(Path(self._spool) / f"{uuid.uuid4().hex}.jsonl", "w")
        self._file.write(
            json.dumps({"topic": write.topic, "value": base64.b64encode(write.value).decode()})
            + "\n"
        )
        return ()

    def finish_bundle(self):
        if self._file is not None:
            self._file.close()
            self._file = None


class SpoolWrites(beam.PTransform):
    def __init__(self, spool: str):
        super().__init__()
        self._spool = spool

    def expand(self, writes):
        return writes | "Spool" >> beam.ParDo(_SpoolFn(self._spool))


def sanitize_files(paths, out_dir, subject=None, policy=None, beam_argv=()) -> dict:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    input_errors: list[str] = []
    messages = file_messages(paths, subject, input_errors)
    argv = list(beam_argv) + ["--veil_topic_prefix=veil"]
    if policy:
        argv.append(f"--veil_policy={policy}")
    spool = tempfile.mkdtemp(prefix="veil-spool-")
    if not any(str(a).startswith("--veil_erasure_listener") for a in argv):
        # Local files: the key store's erasure listener would dial a broker (by default
        # 127.0.0.1:9092) that nobody asked for.
        argv.append("--veil_erasure_listener=off")
    if not _has_id_key(argv):
        # Ids (file names, or a .jsonl's record_id) must leave opaque: with no record-id
        # key configured, this run gets its own random one (ids then differ between runs).
        argv.append(f"--veil_record_id_key={write_key_file(Path(spool) / 'record-id.key')}")
    options = PipelineOptions(prepare_argv(argv))
    try:
        with beam.Pipeline(options=options) as pipeline:
            build(pipeline, options, source=beam.Create(messages), sink=SpoolWrites(spool))
        return _sort_spool(spool, out, paths, len(messages), input_errors)
    finally:
        shutil.rmtree(spool, ignore_errors=True)


def _has_id_key(argv) -> bool:
    flags = ("--veil_record_id_key", "--veil_key_store")
    return bool(os.environ.get(ID_KEY_ENV)) or any(
        str(a).split("=", 1)[0] in flags for a in argv
    )


def _sort_spool(spool: str, out: Path, paths, total: int, input_errors) -> dict:
    cat = catalog()
    sanitized, audit, dead = [], [], []
    for spool_file in sorted(Path(spool).glob("*.jsonl")):
        for line in spool_file.read_text().splitlines():
            entry = json.loads(line)
            subject, record = cat.decode(base64.b64decode(entry["value"]))
            {SANITIZED_RECORD: sanitized, AUDIT_EVENT: audit, DEAD_LETTER: dead}[subject].append(
                record
            )
    by_input: dict[str, list] = {}
    for record in sanitized:
        by_input.setdefault(record["source"]["topic"], []).append(record)
    for path in map(Path, paths):
        records = sorted(by_input.get(str(path), []), key=lambda r: r["source"]["offset"])
        if path.suffix == ".jsonl":
            with (out / path.name).open("w", encoding="utf-8") as f:
                for record in records:
                    f.write(json.dumps(to_json(SANITIZED_RECORD, record), ensure_ascii=False) + "\n")
        elif records:
            (out / path.name).write_bytes(records[0]["payload"])
    order = lambda e: (e["source"]["topic"], e["source"]["offset"], e["event_time"])  # noqa: E731
    # Hash-chained (and MACed under $VEIL_AUDIT_KEY_FILE, if set) in file order, so
    # `veil audit verify --file DIR/audit.jsonl` checks it like the audit topic.
    audit = chain_events(sorted(audit, key=order), resolve_mac_key())
    _write_jsonl(out / "audit.jsonl", AUDIT_EVENT, audit, key=order)
    _write_jsonl(out / "dead-letter.jsonl", DEAD_LETTER, dead, key=lambda d: (d["source"]["topic"], d["source"]["offset"]))
    return {
        "records": total,
        "sanitized": len(sanitized),
        "dead_letters": len(dead),
        "audit_events": len(audit),
        "input_errors": input_errors,
    }


def _write_jsonl(path: Path, subject: str, records: list, key) -> None:
    with path.open("w", encoding="utf-8") as f:
        for record in sorted(records, key=key):
            f.write(json.dumps(to_json(subject, record), ensure_ascii=False, default=str) + "\n")
