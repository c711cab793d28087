"""``veil sanitize``: the pipeline's graph on local files, without Kafka.

The graph is the one ``veil run`` builds (``veil.pipelines.sanitize.build``) with a file
source and a spool sink: each terminal write lands in a spool directory, and once the
pipeline finished, the spool is sorted into the outputs. Inputs keep their paths
relative to their common directory (``veil.pipelines.files.collect_inputs``):

* ``DIR/<path>`` for each plain input file: the sanitized payload, same name and type,
  and ``DIR/<path>.veil.json`` beside it, its sidecar: the SanitizedRecord without the
  payload (classification, protected envelopes, versions), one JSON line that
  ``veil reveal`` reads;
* ``DIR/<path>.jsonl`` for each ``.jsonl`` input: SanitizedRecords in JSON form;
* ``DIR/audit.jsonl`` and ``DIR/dead-letter.jsonl``.

Nothing is written before the inputs, the output directory, the options and the policy
were checked (``UsageError``, ``ConfigError``, ``PolicyError``). Inputs are named in every
written file by opaque ids only (``InputIds``); ``id_map`` writes the id -> path table.

Example::

    summary = sanitize_files(["notes/"], "out", subject="alice")
    summary["dead_letters"]  # 0 when every record was sanitized
"""

from __future__ import annotations

import base64
import collections
import json
import logging
import os
import shutil
import sys
import tempfile
import threading
import uuid
from pathlib import Path

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from veil.pipelines.files import (
    InputIds,
    UsageError,
    check_output_dir,
    collect_inputs,
    file_messages,
    sidecar_path,
    to_json,
)
from veil.pipelines.options import ConfigError, VeilConfig
from veil.pipelines.runners import prepare_argv
from veil.pipelines.sanitize import build
from veil.schemas import AUDIT_EVENT, DEAD_LETTER, SANITIZED_RECORD, catalog
from veil.transforms.audit_chain import (
    NO_KEY,
    AuditKeyUnavailable,
    chain_events,
    chain_id,
    resolve_mac_key,
)
from veil.transforms.classification import load_policy
from veil.transforms.ids import ID_KEY_ENV
from veil.transforms.keys import write_key_file

_LOGGER = logging.getLogger(__name__)

# Progress callbacks of running ``sanitize_files`` calls, by run id. The spool DoFn runs
# in this process on the local FnApiRunner; elsewhere it finds nothing and stays quiet.
_PROGRESS: dict[str, object] = {}
_PROGRESS_LOCK = threading.Lock()


class _SpoolFn(beam.DoFn):
    """Appends each ``KafkaWrite`` to a per-bundle file in the spool directory."""

    def __init__(self, spool: str, run_id: str = "", audit_topic: str = "veil.audit"):
        self._spool = spool
        self._run_id = run_id
        self._audit_topic = audit_topic

    def start_bundle(self):
        self._file = None

    def process(self, write):
        if self._file is None:
            self._file = open(Path(self._spool) / f"{uuid.uuid4().hex}.jsonl", "w")
        self._file.write(
            json.dumps({"topic": write.topic, "value": base64.b64encode(write.value).decode()})
            + "\n"
        )
        if write.topic != self._audit_topic:  # one sanitized record or dead letter
            with _PROGRESS_LOCK:
                tick = _PROGRESS.get(self._run_id)
                if tick is not None:
                    tick(1)
        return ()

    def finish_bundle(self):
        if self._file is not None:
            self._file.close()
            self._file = None


class SpoolWrites(beam.PTransform):
    def __init__(self, spool: str, run_id: str = ""):
        super().__init__()
        self._spool = spool
        self._run_id = run_id

    def expand(self, writes):
        return writes | "Spool" >> beam.ParDo(_SpoolFn(self._spool, self._run_id))


def progress_bar(total: int, stream=None):
    """A tqdm bar (records/s, ETA) on ``stream`` when it is a terminal, else None."""
    stream = sys.stderr if stream is None else stream
    if not (hasattr(stream, "isatty") and stream.isatty()):
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="rec", desc="sanitize", file=stream, smoothing=0.1)


def sanitize_files(
    paths,
    out_dir,
    subject=None,
    policy=None,
    beam_argv=(),
    *,
    overwrite: bool = False,
    id_key: str | None = None,
    id_map: str | None = None,
    progress_stream=None,
) -> dict:
    """Sanitizes local files into ``out_dir``; returns the summary (counts, dead-letter
    codes, the inputs that were dead-lettered). Raises ``UsageError``, ``ConfigError`` or
    ``PolicyError`` before writing anything."""
    out = Path(out_dir)
    if policy and not os.path.isfile(policy):
        raise UsageError(f"--policy {policy}: no such file")
    ids = InputIds.from_key_file(id_key or os.environ.get("VEIL_ID_KEY_FILE"))
    inputs = collect_inputs(paths, ids)
    check_output_dir(inputs, out, overwrite)
    if id_map and Path(id_map).resolve().is_relative_to(out.resolve()):
        raise UsageError(f"--id-map {id_map}: keep the id map outside --out (it names the inputs)")
    # Local files never touch a schema registry ($VEIL_SCHEMA_REGISTRY_URL or not).
    argv = list(beam_argv) + ["--veil_topic_prefix=veil", "--veil_schema_registry=none"]
    if not any(a.startswith("--veil_erasure_listener") for a in argv):
        argv.append("--veil_erasure_listener=off")  # no broker here (issue 18 item 7)
    if policy:
        argv.append(f"--veil_policy={policy}")
    run_id = uuid.uuid4().hex
    spool = tempfile.mkdtemp(prefix="veil-spool-")
    if not _has_id_key(argv):
        # Ids (file names, or a .jsonl's record_id) must leave opaque: with no record-id
        # key configured, this run gets its own random one (ids then differ between runs).
        argv.append(f"--veil_record_id_key={write_key_file(Path(spool) / 'record-id.key')}")
    try:
        options = PipelineOptions(prepare_argv(argv))
        config = VeilConfig.from_options(options)  # a config error writes nothing
        load_policy(config.policy_path)
        mac_key = _audit_key(config)
        input_errors: list[str] = []
        needed: set = set()
        messages = file_messages(inputs, subject, input_errors, modalities=needed)
        pipeline = beam.Pipeline(options=options)
        # Only the branches these files need: a text file never starts the face model,
        # PocketSphinx or the decoder sandbox (records routing cannot place are dead
        # letters from the route step either way).
        build(
            pipeline,
            options,
            source=beam.Create(messages),
            sink=SpoolWrites(spool, run_id),
            modalities=sorted(needed),
        )
        bar = progress_bar(len(messages), progress_stream)
        if bar is not None:
            with _PROGRESS_LOCK:
                _PROGRESS[run_id] = bar.update
        try:
            pipeline.run().wait_until_finish()
        finally:
            with _PROGRESS_LOCK:
                _PROGRESS.pop(run_id, None)
            if bar is not None:
                bar.close()
        out.mkdir(parents=True, exist_ok=True)
        summary = _sort_spool(spool, out, inputs, len(messages), input_errors, mac_key)
        if id_map:
            _write_id_map(id_map, inputs)
        summary["inputs"] = inputs  # in memory only (they name paths): for --report
        return summary
    finally:
        shutil.rmtree(spool, ignore_errors=True)


def _audit_key(config):
    """The audit MAC key as ``--veil_audit_key`` / ``$VEIL_AUDIT_KEY_FILE`` / the key
    service name it; ``--veil_audit_require_key`` without one is a configuration error."""
    try:
        key = resolve_mac_key(config.audit_key, config.key_service)
    except AuditKeyUnavailable:
        raise ConfigError(
            "the audit MAC key (--veil_audit_key or $VEIL_AUDIT_KEY_FILE) cannot be read: "
            "it must be a key file from `veil keys init` (mode 0600) or a kms: URI"
        ) from None
    if config.audit_require_key and key == NO_KEY:
        raise ConfigError(
            "--veil_audit_require_key: no audit MAC key configured: pass --veil_audit_key "
            "KEYFILE or set $VEIL_AUDIT_KEY_FILE (create one with `veil keys init PATH`)"
        )
    return key


def _write_id_map(path: str, inputs) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        for item in inputs:
            f.write(json.dumps({"input_id": item.input_id, "path": str(item.path)}) + "\n")


def _has_id_key(argv) -> bool:
    flags = ("--veil_record_id_key", "--veil_key_store")
    return bool(os.environ.get(ID_KEY_ENV)) or any(str(a).split("=", 1)[0] in flags for a in argv)


def _sort_spool(spool: str, out: Path, inputs, total: int, input_errors, mac_key) -> dict:
    cat = catalog()
    sanitized, audit, dead = [], [], []
    for spool_file in sorted(Path(spool).glob("*.jsonl")):
        for line in spool_file.read_text().splitlines():
            entry = json.loads(line)
            subject, record = cat.decode(base64.b64decode(entry["value"]))
            {SANITIZED_RECORD: sanitized, AUDIT_EVENT: audit, DEAD_LETTER: dead}[subject].append(
                record
            )
    if len(sanitized) + len(dead) != total:
        # Conservation failed: say so rather than report a partial result as complete.
        raise RuntimeError(
            f"{total - len(sanitized) - len(dead)} record(s) neither sanitized nor dead-lettered"
        )
    by_input: dict[str, list] = {}
    for record in sanitized:
        by_input.setdefault(record["source"]["topic"], []).append(record)
    written = []
    for item in inputs:
        records = sorted(by_input.get(item.input_id, []), key=lambda r: r["source"]["offset"])
        target = out / item.relative
        if item.jsonl:
            target.parent.mkdir(parents=True, exist_ok=True)
            with target.open("w", encoding="utf-8") as f:
                for record in records:
                    line = json.dumps(to_json(SANITIZED_RECORD, record), ensure_ascii=False)
                    f.write(line + "\n")
            written.append(target)
        elif records:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(records[0]["payload"])
            sidecar = to_json(SANITIZED_RECORD, records[0])
            sidecar.pop("payload", None)
            sidecar.pop("payload_base64", None)
            sidecar_path(target).write_text(
                json.dumps(sidecar, ensure_ascii=False, default=str) + "\n", encoding="utf-8"
            )
            written.append(target)
        else:  # dead-lettered: no output, and none left over from an --overwrite'd run
            for stale in (target, sidecar_path(target)):
                if stale.is_file():
                    stale.unlink()
    order = lambda e: (e["source"]["topic"], e["source"]["offset"], e["event_time"])  # noqa: E731
    # Hash-chained (and MACed with the configured audit key) in file order, so
    # `veil audit verify --file DIR/audit.jsonl` checks it like the audit topic.
    audit = chain_events(sorted(audit, key=order), mac_key)
    _write_jsonl(out / "audit.jsonl", AUDIT_EVENT, audit, key=order)
    dead_order = lambda d: (d["source"]["topic"], d["source"]["offset"])  # noqa: E731
    _write_jsonl(out / "dead-letter.jsonl", DEAD_LETTER, dead, key=dead_order)
    paths = {item.input_id: item for item in inputs}
    failed = []
    for letter in sorted(dead, key=dead_order):
        item = paths.get(letter["source"]["topic"])
        line = letter["source"]["offset"] + 1 if item is not None and item.jsonl else None
        failed.append((str(item.path) if item else "?", line, letter["error_code"]))
    return {
        "records": total,
        "sanitized": len(sanitized),
        "dead_letters": len(dead),
        "dead_letter_codes": dict(collections.Counter(d["error_code"] for d in dead)),
        "dead_lettered_inputs": failed,  # (path, line or None, code): for the console
        "audit_events": len(audit),
        "audit_mac_key_id": mac_key.key_id,
        # The last sequence number of each audit chain: kept by the user, it lets
        # `veil audit verify --expect-head` notice a truncated or vanished audit trail.
        "chain_heads": {chain_id(e): e["chain"]["sequence"] for e in audit},
        "input_errors": input_errors,
        "outputs": [str(p) for p in written],
        "sanitized_records": sanitized,  # decoded, for veil sanitize --report
    }


def _write_jsonl(path: Path, subject: str, records: list, key) -> None:
    with path.open("w", encoding="utf-8") as f:
        for record in sorted(records, key=key):
            f.write(json.dumps(to_json(subject, record), ensure_ascii=False, default=str) + "\n")
