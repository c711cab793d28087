"""Chaos: SIGKILL the pipeline and restart the broker mid-stream, then prove conservation.

Two ``veil run`` pipelines run side by side on this module's own broker (never the
session broker: it is restarted here), one at-least-once and one exactly-once, each on
its own topics and consumer group. A feeder produces a fixed set of mixed inputs (text,
JSON, malformed) at a steady rate but never more than ``WINDOW`` records ahead of the
slower pipeline, and holds the last part back until the chaos is over: input keeps
arriving while the pipelines run, so every event lands mid-stream. The schedule,
bounded in count and time:

    kill, broker restart, kill, broker restart, kill   (both pipelines at each kill)

Between events the test waits until each pipeline's group committed new offsets (it
recovered and made progress). A pipeline that dies by itself (e.g. while the broker is
down) is restarted, as a supervisor would. At the end the test waits until every input
offset is committed, then checks, per input offset:

* exactly one outcome, sanitized or dead letter, the one the input calls for, modulo
  duplicates; duplicates share topic and key and are identical (dead letters: but for
  their ``error_time``); every offset has audit events, duplicated ones equal but for
  their times;
* exactly-once, read ``read_committed``: no duplicate at all, of outputs or audit
  events (records of aborted transactions are still in the log: counted, not shown).
"""

from __future__ import annotations

import collections
import json
import os
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka_checks import PEOPLE, TEMPLATES, finish, kill_group, veil_run
from veil_testing import framed, media_record, opaque

from veil.pipelines.cli import consume
from veil.pipelines.topics import topic_specs
from veil.transforms.emit import TopicNames
from veil.transforms.kafkaio import ensure_topics
from veil.transforms.records import Modality

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
KAFKA_SH = REPO / "deploy" / "kafka" / "kafka.sh"

N_RECORDS = 2000
PARTITIONS = 3
HELD_BACK = 0.15  # share of inputs produced only once the chaos is over
FEED_RATE = 80.0  # records/s before that ...
WINDOW = 300  # ... and at most this many records ahead of the slower pipeline
SCHEDULE = ("kill", "broker", "kill", "broker", "kill")
PROGRESS = 40  # offsets each group must commit after an event before the next one
STEP_TIMEOUT_S = 150  # generous: start-up takes far longer on a loaded machine
MODES = ("at_least_once", "exactly_once")


# --- the broker ------------------------------------------------------------------------


@dataclass
class Broker:
    dir: Path
    bootstrap: str
    restarts: int = 0

    def _ports(self) -> dict:
        props = (self.dir / "server.properties").read_text()
        voters = next(l for l in props.splitlines() if l.startswith("controller.quorum.voters="))
        return {
            "KAFKA_PORT": self.bootstrap.rsplit(":", 1)[1],
            "KAFKA_CONTROLLER_PORT": voters.rsplit(":", 1)[1],
        }

    def restart(self) -> None:
        """kafka.sh stop + start on the same directory (data kept) and the same ports."""
        env = {**os.environ, **self._ports()}
        stop = ["bash", str(KAFKA_SH), "stop", str(self.dir)]
        subprocess.run(stop, check=True, capture_output=True)
        started = subprocess.run(
            ["bash", str(KAFKA_SH), "start", str(self.dir), "120"],
            capture_output=True, text=True, env=env,
        )  # fmt: skip
        assert started.returncode == 0, started.stderr[-3000:]
        assert started.stdout.strip().splitlines()[-1] == self.bootstrap
        self.restarts += 1


@pytest.fixture(scope="module")
def chaos_broker(tmp_path_factory):
    broker_dir = tmp_path_factory.mktemp("chaos-kafka")
    started = subprocess.run(
        ["bash", str(KAFKA_SH), "start", str(broker_dir), "120"], capture_output=True, text=True
    )
    if started.returncode != 0:
        pytest.fail(f"chaos broker did not start:\n{started.stderr[-3000:]}")
    try:
        yield Broker(broker_dir, started.stdout.strip().splitlines()[-1])
    finally:
        subprocess.run(["bash", str(KAFKA_SH), "stop", str(broker_dir)], capture_output=True)


# --- inputs ----------------------------------------------------------------------------


def chaos_inputs(n: int) -> list[tuple]:
    """``(key, value, expected)`` with expected ``("sanitized", record_id)`` or
    ``("dead", error_code)``: 40 % text, 40 % JSON, 20 % malformed of four kinds."""
    inputs = []
    for i in range(n):
        name, email, phone, card = PEOPLE[i % len(PEOPLE)]
        subject = f"subject-{i % 13}"
        kind = i % 10
        if kind < 4:
            template = TEMPLATES[i % len(TEMPLATES)]
            text = template.format(name=name, email=email, phone=phone, card=card)
            record = media_record(f"chaos-{i}", subject, f"{text} Ticket {i}.".encode())
            inputs.append(
                (subject.encode(), framed(record), ("sanitized", opaque(record["record_id"])))
            )
        elif kind < 8:
            body = {"customer": {"name": name, "email": email}, "phone": phone, "n": i}
            record = media_record(
                f"chaos-{i}", subject, json.dumps(body).encode(), content_type="application/json"
            )
            inputs.append(
                (subject.encode(), framed(record), ("sanitized", opaque(record["record_id"])))
            )
        elif kind == 8 and i % 20 == 8:
            inputs.append((None, f"not avro {i} {email}".encode(), ("dead", "BAD_FRAMING")))
        elif kind == 8:
            record = media_record(f"chaos-{i}", subject, b"")
            inputs.append((subject.encode(), framed(record), ("dead", "EMPTY_PAYLOAD")))
        elif i % 20 == 9:
            record = media_record(
                f"chaos-{i}", subject, f'{{"name": "{name}", "n": {i}'.encode(),
                content_type="application/json",
            )  # fmt: skip
            inputs.append((subject.encode(), framed(record), ("dead", "STRUCTURED_DECODE_ERROR")))
        else:
            record = media_record(
                f"chaos-{i}", subject, b"caf\xc3\x28 " + name.encode(), modality="text"
            )
            inputs.append((subject.encode(), framed(record), ("dead", "TEXT_DECODE_ERROR")))
    return inputs


class Feeder(threading.Thread):
    """Produces the inputs to every raw topic at up to ``FEED_RATE``, at most ``WINDOW``
    ahead of the slower group's committed offsets; the held-back tail follows once
    ``release`` is set. Survives broker restarts (the producer retries)."""

    def __init__(self, bootstrap: str, topics: dict, groups: dict, inputs: list[tuple]):
        super().__init__(daemon=True)
        self.bootstrap, self.topics, self.groups, self.inputs = bootstrap, topics, groups, inputs
        self.release = threading.Event()
        self.held_from = int(len(inputs) * (1 - HELD_BACK))
        self.errors: list[str] = []
        self.sent = 0

    def _throttle(self, i: int, offsets: dict) -> None:
        if self.release.is_set():  # the chaos is over: the rest at full speed
            return
        time.sleep(1 / FEED_RATE)
        while not self.release.is_set():
            done = [o.committed() for o in offsets.values()]
            if all(d is not None and i - d < WINDOW for d in done):
                return
            time.sleep(0.2)

    def run(self):
        producer = KafkaProducer(
            bootstrap_servers=self.bootstrap, acks="all", enable_idempotence=True,
            linger_ms=5, max_block_ms=180_000, delivery_timeout_ms=180_000,
        )  # fmt: skip
        offsets = {m: Offsets(self.bootstrap, self.groups[m], self.topics[m]) for m in self.topics}
        futures = []
        try:
            for i, (key, value, _) in enumerate(self.inputs):
                if i == self.held_from:
                    self.release.wait(900)
                elif i < self.held_from:
                    self._throttle(i, offsets)
                for topic in self.topics.values():
                    futures.append(producer.send(topic, key=key, value=value))
                self.sent = i + 1
            producer.flush(timeout=180)
            self.errors += [type(f.exception).__name__ for f in futures if not f.succeeded()]
        except Exception as exc:  # reported by the test, which then fails
            self.errors.append(type(exc).__name__)
        finally:
            producer.close(timeout=10)
            for o in offsets.values():
                o.consumer.close()


# --- the pipelines ---------------------------------------------------------------------


@dataclass
class Pipeline:
    """One ``veil run`` under supervision: restarted whenever it exits by itself."""

    bootstrap: str
    prefix: str
    mode: str
    log_dir: Path
    proc: object = None
    starts: int = 0
    kills: int = 0
    self_exits: list = field(default_factory=list)
    last_log: bytes = b""

    @property
    def group(self) -> str:
        return f"{self.prefix}-pipeline"

    def start(self) -> None:
        self.proc = veil_run(
            self.bootstrap, self.prefix, "--veil_read_mode=unbounded",
            "--veil_max_records_per_bundle=50", f"--veil_delivery={self.mode}",
            start_new_session=True,
        )  # fmt: skip
        self.starts += 1

    def _keep_log(self, how: str) -> None:
        (self.log_dir / f"{self.mode}-{self.starts}-{how}.log").write_bytes(self.last_log)

    def supervise(self) -> None:
        if self.proc.poll() is not None:
            code, self.last_log = finish(self.proc, 5)
            self._keep_log(f"exit{code}")
            self.self_exits.append(code)
            time.sleep(1)
            self.start()

    def kill(self, restart: bool = True) -> None:
        kill_group(self.proc)
        _, self.last_log = finish(self.proc, 5)
        self._keep_log("killed")
        self.kills += restart
        if restart:
            self.start()


class Offsets:
    """The committed and end offsets of a group on its raw topic (stable reads only)."""

    def __init__(self, bootstrap: str, group: str, topic: str):
        self.tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        self.consumer = KafkaConsumer(
            bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False,
            isolation_level="read_committed", request_timeout_ms=5000,
        )  # fmt: skip

    def committed(self) -> int | None:
        try:
            return sum(self.consumer.committed(tp) or 0 for tp in self.tps)
        except Exception:  # broker restarting
            return None

    def end(self) -> int | None:
        try:
            return sum(self.consumer.end_offsets(self.tps).values())
        except Exception:
            return None


def _wait(condition, pipelines, what: str, timeout_s: float = STEP_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for pipeline in pipelines:
            pipeline.supervise()
        if condition():
            return
        time.sleep(0.5)
    logs = "\n".join(p.last_log.decode(errors="replace")[-2000:] for p in pipelines)
    pytest.fail(f"timed out waiting for {what} (logs: {pipelines[0].log_dir})\n{logs}")


def _wait_progress(pipelines, offsets, since: dict, what: str) -> None:
    def progressed():
        now = {p.mode: offsets[p.mode].committed() for p in pipelines}
        return all(now[m] is not None and now[m] >= since[m] + PROGRESS for m in now)

    _wait(progressed, pipelines, what)


# --- checks ----------------------------------------------------------------------------


def _read(bootstrap: str, topic: str, read_committed: bool) -> list:
    return [
        (rec, value)
        for rec, _, value in consume(
            {"bootstrap_servers": bootstrap},
            topic,
            idle_timeout_s=10,
            read_committed=read_committed,
        )
    ]


def _outputs(bootstrap: str, names: TopicNames, read_committed: bool):
    sanitized = []
    for modality in Modality.ALL:
        sanitized += _read(bootstrap, names.sanitized(modality), read_committed)
        sanitized += _read(bootstrap, names.quarantine(modality), read_committed)
    dead = _read(bootstrap, names.dead_letter, read_committed)
    audit = _read(bootstrap, names.audit, read_committed)
    return sanitized, dead, audit


def _without(value: dict, *fields) -> str:
    """``value`` without ``fields``, also inside an audit event's ``steps``."""
    kept = {k: v for k, v in value.items() if k not in fields}
    if isinstance(kept.get("steps"), list):
        kept["steps"] = [
            {k: v for k, v in step.items() if k not in fields} for step in kept["steps"]
        ]
    return json.dumps(kept, sort_keys=True, default=str)


def check_conservation(bootstrap: str, names: TopicNames, inputs: list, mode: str) -> dict:
    """Asserts the invariants above for one pipeline; returns its figures."""
    expected_by_value = {value: expected for _, value, expected in inputs}
    raw = _read(bootstrap, names.raw, read_committed=False)
    assert sorted(rec.value for rec, _ in raw) == sorted(expected_by_value), "raw input set differs"
    expected = {(rec.partition, rec.offset): expected_by_value[rec.value] for rec, _ in raw}

    sanitized, dead, audit = _outputs(bootstrap, names, read_committed=True)
    outcomes = collections.defaultdict(list)
    for kind, records in (("sanitized", sanitized), ("dead", dead)):
        for rec, value in records:
            coord = (value["source"]["partition"], value["source"]["offset"])
            outcomes[coord].append((kind, rec, value))
    assert set(outcomes) == set(expected), (
        f"lost: {len(set(expected) - set(outcomes))}, unknown: {len(set(outcomes) - set(expected))}"
    )
    duplicates = 0
    for coord, found in outcomes.items():
        kind, want = expected[coord]
        first = found[0][1]
        variants = {(k, rec.topic, rec.key) for k, rec, _ in found}
        assert variants == {(kind, first.topic, first.key)}, (
            f"{coord}: more than one outcome, or duplicates with different keys"
        )
        if kind == "sanitized":
            assert found[0][2]["record_id"] == want
            assert len({rec.value for _, rec, _ in found}) == 1, f"{coord}: duplicates differ"
        else:
            assert found[0][2]["error_code"] == want
            assert len({_without(v, "error_time") for _, _, v in found}) == 1
        duplicates += len(found) - 1

    audit_by_key = collections.defaultdict(list)
    for rec, value in audit:
        audit_by_key[rec.key].append(value)
    audited = {(v["source"]["partition"], v["source"]["offset"]) for _, v in audit}
    assert audited == set(expected), "an input offset has no audit event"
    audit_duplicates = 0
    for _key, copies in audit_by_key.items():
        # A replayed event is re-chained where it lands again: its chain fields differ.
        times = ("event_time", "duration_ms", "at_ms", "chain")  # the steps' times too
        assert len({_without(v, *times) for v in copies}) == 1
        audit_duplicates += len(copies) - 1

    figures = {
        "inputs": len(expected),
        "sanitized": sum(1 for found in outcomes.values() if found[0][0] == "sanitized"),
        "dead_letters": sum(1 for found in outcomes.values() if found[0][0] == "dead"),
        "audit_events": len(audit_by_key),
        "duplicate_outcomes": duplicates,
        "duplicate_audit_events": audit_duplicates,
    }
    if mode == "exactly_once":
        assert duplicates == 0 and audit_duplicates == 0, figures
        # Aborted transactions' records are in the log, hidden from read_committed.
        raw_sanitized, raw_dead, raw_audit = _outputs(bootstrap, names, read_committed=False)
        in_log = len(raw_sanitized) + len(raw_dead) + len(raw_audit)
        figures["aborted_records_hidden"] = in_log - len(sanitized) - len(dead) - len(audit)
    return figures


# --- the test --------------------------------------------------------------------------


def test_kills_and_broker_restarts_lose_nothing(chaos_broker, tmp_path):
    began = time.monotonic()
    bootstrap = chaos_broker.bootstrap
    client = {"bootstrap_servers": bootstrap}
    run_id = f"c{int(time.time())}"
    names = {mode: TopicNames(f"{run_id}{mode[:3]}") for mode in MODES}
    for topics in names.values():
        ensure_topics(client, topic_specs(topics, PARTITIONS))
    inputs = chaos_inputs(N_RECORDS)

    pipelines = [Pipeline(bootstrap, names[mode].prefix, mode, tmp_path) for mode in MODES]
    offsets = {p.mode: Offsets(bootstrap, p.group, names[p.mode].raw) for p in pipelines}
    feeder = Feeder(
        bootstrap,
        {m: names[m].raw for m in MODES},
        {p.mode: p.group for p in pipelines},
        inputs,
    )
    events = []
    try:
        for pipeline in pipelines:
            pipeline.start()
        feeder.start()
        since = dict.fromkeys(MODES, 0)
        for event in SCHEDULE:
            _wait_progress(pipelines, offsets, since, f"progress before {event} #{len(events) + 1}")
            assert feeder.sent < feeder.held_from, "paced inputs ran out before the chaos ended"
            since = {m: offsets[m].committed() for m in MODES}
            backlog = {m: feeder.sent - (since[m] or 0) for m in MODES}
            if event == "kill":
                for pipeline in pipelines:
                    pipeline.kill()
            else:
                chaos_broker.restart()
            events.append((event, round(time.monotonic() - began, 1), feeder.sent, backlog))
            print(f"chaos: {events[-1]}", flush=True)
        _wait_progress(pipelines, offsets, since, "progress after the last event")
        feeder.release.set()
        feeder.join(timeout=STEP_TIMEOUT_S)
        assert not feeder.is_alive() and not feeder.errors, feeder.errors

        def drained():
            for mode in MODES:
                end, done = offsets[mode].end(), offsets[mode].committed()
                if end is None or done != end:
                    return False
            return True

        released_s = time.monotonic() - began
        _wait(drained, pipelines, "every input offset to be committed")
        chaos_s = time.monotonic() - began
    finally:
        feeder.release.set()
        for pipeline in pipelines:
            if pipeline.proc is not None:
                pipeline.kill(restart=False)
        for o in offsets.values():
            o.consumer.close()

    figures = {mode: check_conservation(bootstrap, names[mode], inputs, mode) for mode in MODES}
    summary = {
        "events": events,
        "broker_restarts": chaos_broker.restarts,
        "pipeline_kills": {p.mode: p.kills for p in pipelines},
        "pipeline_self_exits": {p.mode: p.self_exits for p in pipelines},
        "pipeline_starts": {p.mode: p.starts for p in pipelines},
        "figures": figures,
        "released_at_s": round(released_s, 1),
        "drained_at_s": round(chaos_s, 1),
        "total_seconds": round(time.monotonic() - began, 1),
    }
    print("CHAOS SUMMARY " + json.dumps(summary))
    assert chaos_broker.restarts == SCHEDULE.count("broker")
    assert all(p.kills == SCHEDULE.count("kill") for p in pipelines)
