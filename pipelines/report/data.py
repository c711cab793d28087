"""What a report is made of, read from a ``veil sanitize`` directory or from the topics.

Only content-free fields are kept: record ids, modalities, outcomes, codes, counts,
classification, sizes and durations. Sanitized payloads are read for their size only
(the review gallery, ``veil.pipelines.report.gallery``, is the one place that shows
content, and only sanitized content unless ``--show-originals``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
from collections import Counter
from pathlib import Path

from veil.transforms.audit import steps_of
from veil.transforms.audit_chain import read_file, read_topic, verify
from veil.transforms.classification import classify, load_policy

_LOGGER = logging.getLogger(__name__)

PRIVACY_STAGES = ("text", "structured", "image", "audio", "video")
OUTCOMES = ("sanitized", "quarantined", "dead-lettered", "in flight")


@dataclasses.dataclass
class RecordView:
    """One input record as the report sees it (no content)."""

    key: str  # source topic/partition/offset
    record_id: str | None = None
    modality: str | None = None
    outcome: str = "in flight"
    error_code: str | None = None
    stage: str | None = None
    sensitivity: str | None = None
    regimes: tuple = ()
    entity_counts: dict = dataclasses.field(default_factory=dict)
    step_ms: float | None = None
    sanitized_bytes: int | None = None
    input_bytes: int | None = None


@dataclasses.dataclass
class ChainResult:
    ok: bool
    summary: str
    chains: dict
    problems: list
    macs_checked: int
    unsigned: int


@dataclasses.dataclass
class ReportData:
    source: str
    generated: dt.datetime
    records: list
    audit_events: int
    policy_versions: list
    pipeline_versions: list
    chain: ChainResult | None
    window: tuple | None = None
    notes: list = dataclasses.field(default_factory=list)

    def by_outcome(self) -> Counter:
        return Counter(r.outcome for r in self.records)


def _key(source: dict) -> str:
    return f"{source['topic']}/{source['partition']}@{source['offset']}"


def _fold_audit(events: list, views: dict) -> None:
    for event in events:
        view = views.setdefault(_key(event["source"]), RecordView(_key(event["source"])))
        view.record_id = view.record_id or event.get("record_id")
        view.modality = event.get("modality") or view.modality
        for step in steps_of(event):  # v2: one event per record, listing its stages
            if step.get("stage") in PRIVACY_STAGES and step.get("action") == "ANONYMIZED":
                view.entity_counts = dict(step.get("entity_counts") or {})
                view.step_ms = step.get("duration_ms")
        action = event.get("action")
        if action == "PUBLISHED":
            view.outcome = "sanitized"
        elif action == "QUARANTINED":
            view.outcome = "quarantined"
        elif action == "DEAD_LETTERED":
            view.outcome = "dead-lettered"
            view.stage, _, code = (event.get("reason_code") or ":").partition(":")
            view.error_code = code or view.error_code


def _fold_dead_letters(dead: list, views: dict) -> None:
    for letter in dead:
        view = views.setdefault(_key(letter["source"]), RecordView(_key(letter["source"])))
        view.outcome = "dead-lettered"
        view.error_code = letter.get("error_code")
        view.stage = letter.get("stage")
        view.modality = view.modality or letter.get("modality")
        view.record_id = view.record_id or letter.get("record_id")


def _fold_sanitized(sanitized: list, views: dict) -> None:
    for record in sanitized:
        view = views.setdefault(_key(record["source"]), RecordView(_key(record["source"])))
        view.record_id = record.get("record_id")
        view.modality = record.get("modality") or view.modality
        if view.outcome == "in flight":
            view.outcome = "sanitized"
        classification = record.get("classification") or {}
        view.sensitivity = classification.get("sensitivity")
        view.regimes = tuple(classification.get("regimes") or ())
        view.entity_counts = dict(classification.get("entity_counts") or view.entity_counts)
        view.sanitized_bytes = record.get("payload_bytes")


def _chain(located: list, keys: list) -> ChainResult:
    report = verify(located, keys)
    return ChainResult(
        ok=report.ok,
        summary=report.summary(),
        chains={name: seq for name, (seq, _) in sorted(report.chains.items())},
        problems=[str(p) for p in report.problems[:50]],
        macs_checked=report.macs_checked,
        unsigned=report.unsigned,
    )


def _read_jsonl(path: Path) -> list:
    if not path.is_file():
        return []
    out = []
    with path.open("r", encoding="utf-8") as lines:
        for line in lines:
            if line.strip():
                out.append(json.loads(line))
    return out


def _payload_bytes(record: dict) -> int | None:
    if "payload" in record and isinstance(record["payload"], str):
        return len(record["payload"].encode("utf-8"))
    if "payload_base64" in record:
        return len(record["payload_base64"]) * 3 // 4
    return None


def from_directory(out_dir, keys=(), policy_path=None, sanitized=None) -> ReportData:
    """Reads ``DIR/audit.jsonl``, ``DIR/dead-letter.jsonl`` and the sanitized files.

    ``sanitized``: the SanitizedRecords themselves, when the caller has them (``veil
    sanitize --report``); otherwise they are read from ``DIR/*.jsonl`` and, for plain
    files, their classification is recomputed from the audited entity counts with the
    policy (only when its version is the one the audit events name).
    """
    out = Path(out_dir)
    audit_path = out / "audit.jsonl"
    if not audit_path.is_file():
        raise FileNotFoundError(f"{audit_path}: no audit.jsonl (not a veil sanitize directory?)")
    located = list(read_file(str(audit_path)))
    events = [loc.event for loc in located if loc.event is not None]
    dead = _read_jsonl(out / "dead-letter.jsonl")
    views: dict[str, RecordView] = {}
    _fold_audit(events, views)
    _fold_dead_letters(dead, views)
    if sanitized is None:
        sanitized = []
        for path in sorted(out.glob("*.jsonl")):
            if path.name in ("audit.jsonl", "dead-letter.jsonl"):
                continue
            for record in _read_jsonl(path):
                if "classification" in record and "source" in record:
                    record["payload_bytes"] = _payload_bytes(record)
                    sanitized.append(record)
    _fold_sanitized(sanitized, views)
    notes = []
    policy_versions = sorted({e["policy_version"] for e in events if e.get("policy_version")})
    policy = load_policy(policy_path)
    for view in views.values():
        if view.outcome in ("sanitized", "quarantined") and view.sensitivity is None:
            if policy_versions == [policy.version]:
                level = classify(view.entity_counts, policy)
                view.sensitivity, view.regimes = level.sensitivity, tuple(level.regimes)
        if view.sanitized_bytes is None and view.outcome == "sanitized" and view.record_id:
            name = view.key.rsplit("@", 1)[0].rsplit("/", 1)[0]
            candidate = out / Path(name).name
            if candidate.is_file() and candidate.suffix != ".jsonl":
                view.sanitized_bytes = candidate.stat().st_size
    if any(v.sensitivity is None for v in views.values() if v.outcome == "sanitized"):
        notes.append(
            "Some sanitized files carry no classification and the policy given is not the "
            "one the audit events name: their sensitivity is shown as 'not recorded'."
        )
    return ReportData(
        source=f"veil sanitize output {out.name}/",
        generated=dt.datetime.now(dt.UTC),
        records=sorted(views.values(), key=lambda v: v.key),
        audit_events=len(events),
        policy_versions=policy_versions,
        pipeline_versions=sorted(
            {e["pipeline_version"] for e in events if e.get("pipeline_version")}
        ),
        chain=_chain(located, list(keys)),
        notes=notes,
    )


def _millis(when: dt.datetime) -> int:
    return int(when.timestamp() * 1000)


def _read_window(consumer, topic: str, since_ms: int, until_ms: int):
    """(timestamp_ms, value) of every committed record of ``topic`` in the window."""
    from kafka import TopicPartition

    partitions = consumer.partitions_for_topic(topic)
    if not partitions:
        return
    tps = [TopicPartition(topic, p) for p in sorted(partitions)]
    starts = consumer.offsets_for_times(dict.fromkeys(tps, since_ms))
    ends = consumer.end_offsets(tps)
    for tp in tps:
        start = starts.get(tp)
        if start is None or start.offset >= ends[tp]:
            continue
        consumer.assign([tp])
        consumer.seek(tp, start.offset)
        idle = 0
        while consumer.position(tp) < ends[tp] and idle < 20:
            batch = consumer.poll(timeout_ms=500).get(tp, [])
            idle = 0 if batch else idle + 1
            for rec in batch:
                if rec.offset >= ends[tp] or rec.timestamp > until_ms:
                    break
                yield rec.timestamp, rec.value
            if batch and batch[-1].timestamp > until_ms:
                break


def from_topics(
    client_config: dict, prefix: str, since: dt.datetime, until: dt.datetime, keys=()
) -> ReportData:
    """The records whose outcomes were written to the topics between ``since`` and ``until``.

    The audit chain is verified over the whole audit topic (chains start at genesis).
    """
    from kafka import KafkaConsumer

    from veil.schemas import catalog
    from veil.transforms.kafkaio import MAX_MESSAGE_BYTES, client

    cat = catalog()
    consumer = KafkaConsumer(
        enable_auto_commit=False,
        isolation_level="read_committed",
        max_partition_fetch_bytes=MAX_MESSAGE_BYTES,
        **client.resolve(client_config),
    )
    since_ms, until_ms = _millis(since), _millis(until)
    events, dead, sanitized = [], [], []
    try:
        topics = sorted(t for t in consumer.topics() if t.startswith(prefix + "."))
        for topic in topics:
            suffix = topic[len(prefix) + 1 :]
            if suffix in ("raw", "erasure") or suffix.startswith("keys"):
                continue  # raw content, or not an outcome
            for _, value in _read_window(consumer, topic, since_ms, until_ms):
                try:
                    subject, record = cat.decode(value)
                except Exception:  # noqa: BLE001 - foreign or broken bytes: skip, count
                    continue
                if subject.endswith("AuditEvent"):
                    events.append(record)
                elif subject.endswith("DeadLetter"):
                    dead.append(record)
                elif subject.endswith("SanitizedRecord"):
                    record["payload_bytes"] = len(record.pop("payload", b""))
                    sanitized.append(record)
    finally:
        consumer.close(autocommit=False)
    views: dict[str, RecordView] = {}
    _fold_audit(events, views)
    _fold_dead_letters(dead, views)
    _fold_sanitized(sanitized, views)
    audit_topic = f"{prefix}.audit"
    chain = _chain(list(read_topic(client_config, audit_topic)), list(keys))
    return ReportData(
        source=f"topics {prefix}.* on {client_config.get('bootstrap_servers')}",
        generated=dt.datetime.now(dt.UTC),
        records=sorted(views.values(), key=lambda v: v.key),
        audit_events=len(events),
        policy_versions=sorted({e["policy_version"] for e in events if e.get("policy_version")}),
        pipeline_versions=sorted(
            {e["pipeline_version"] for e in events if e.get("pipeline_version")}
        ),
        chain=chain,
        window=(since, until),
    )


__all__ = ["ChainResult", "RecordView", "ReportData", "from_directory", "from_topics"]
