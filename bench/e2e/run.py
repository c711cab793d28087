"""End-to-end benchmark: Kafka -> Veil -> Kafka throughput and latency, per runner, in one run.

    .venv/bin/python bench/e2e/run.py [--records 1000] [--rate R] [--paced-seconds 20]
        [--runners fnapi,flink] [--workloads text,mixed] [--bootstrap HOST:PORT]

Starts its own broker (deploy/kafka/kafka.sh) unless --bootstrap is given, and stops
everything it started (pipelines with their job servers, the broker) on the way out,
also on failure or SIGTERM. Nothing is written into the repository.

Method
------
Ceiling: kafka-python alone on the same broker, same run: produce the text workload's
values (``acks=all``, idempotent, ``linger_ms=5``), then consume them back with a fresh
consumer. Ceiling records/s = N / (produce s + consume s): the rate at which a Python
process can move records through this broker once in and once out.

Pipeline: for each runner (``fnapi``: Beam's FnApiRunner, Veil's local default;
``flink``: ``--runner FlinkRunner --flink_master=[local]``, LOOPBACK SDK harness, the
Flink defaults of ``veil.pipelines.runners``: streaming, 10 s checkpoints) and each
workload, one ``veil run`` subprocess in UNBOUNDED mode with ``--veil_idle_stop_s``, on
fresh topics, goes through three phases:

1. warm-up: a few text records are produced before the start; the pipeline is "up" when
   their outputs appear (start-up = process start to first output);
2. burst (throughput): ``--records`` records produced at once, as a backlog. Throughput =
   records / (last output's timestamp - first output's timestamp) over the burst's
   outputs (one sanitized record or dead letter per input). CPU time of the pipeline's
   process tree (the Python process, plus the Flink job-server JVM; psutil, else
   /proc/<pid>/stat, children's reaped time included) is sampled at the burst's start
   and end: records per CPU-second, and cores busy = CPU s / wall s;
3. paced (latency): ``--paced-seconds`` of records at a fixed rate R (``--rate``, default
   60 % of the burst throughput just measured, so the pipeline is below capacity and
   latency is not backlog), one record at a time. Latency per record = output record's
   timestamp - input record's timestamp; p50 and p99.

All raw, sanitized and dead-letter topics are created by the benchmark with
``message.timestamp.type=LogAppendTime``: both timestamps are the broker's append time on
the same clock, so latency runs from "available to consumers" to "available to
consumers". Outputs are matched to inputs by their ``veil-source`` header
(topic/partition/offset); a replayed duplicate counts at its first append.

Records/s per core = burst records/s / the machine's cores (``os.cpu_count()``): the
pipeline, the broker and this script share them. Wall time is the pipeline process's
whole life (start-up, the three phases, the idle stop, shutdown). ``--idle-stop`` is long
(45 s) on purpose: the source counts the time a fetched batch spends in processing as
idleness, so a short idle stop can end a partition that still has a backlog.

Workloads: ``text`` = text records from bench/text/corpus.py (deterministic chat, e-mail,
support-desk sentences, 60 % with PII); ``mixed`` = per 50 records 30 text, 10 JSON
documents with PII, 4 PNG images, 2 half-second WAV clips (needs the voice key:
a throw-away key file in a temp dir, exported as VEIL_AUDIO_KEY_FILE), 1 AVI video and
3 malformed records (no framing, unknown schema id, truncated Avro, empty payload). Image
and video are dead-lettered UNSUPPORTED_MODALITY (no branch yet), malformed ones with
their decode codes: every input yields exactly one output either way.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
VEIL = str(Path(sys.executable).with_name("veil"))
KAFKA_SH = REPO / "deploy" / "kafka" / "kafka.sh"
FLINK_SH = REPO / "deploy" / "flink" / "flink.sh"

RUNNER_FLAGS = {
    "fnapi": [],
    "flink": ["--runner=FlinkRunner", "--flink_master=[local]"],
}
RUNNER_LABELS = {
    "fnapi": "FnApiRunner",
    "flink": "Flink [local] LOOPBACK",
}
WARMUP_RECORDS = 6
LOG_APPEND = {"message.timestamp.type": "LogAppendTime"}


# ------------------------------------------------------------------ workloads


def _corpus():
    spec = importlib.util.spec_from_file_location(
        "veil_bench_corpus", REPO / "bench" / "text" / "corpus.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _media_record(record_id, subject, payload, content_type, modality=None):
    return {
        "record_id": record_id,
        "subject_key": subject,
        "modality": modality,
        "content_type": content_type,
        "payload": payload,
        "attributes": {"source": "bench-e2e"},
        "event_time": None,
    }


def _encode(record):
    from veil.pipelines.files import encode_record

    return record["subject_key"].encode(), encode_record(record)


def text_messages(texts, prefix):
    return [
        _encode(_media_record(f"{prefix}-{i}", f"subject-{i % 50}", t.encode(), "text/plain"))
        for i, t in enumerate(texts)
    ]


def _structured(i, samples):
    first = ["Maria", "John", "Priya", "Kwame", "Olga", "Diego", "Mei", "Liam"][i % 8]
    last = ["Garcia", "Smith", "Patel", "Mensah", "Ivanova", "Lopez", "Chen", "Byrne"][i % 8]
    doc = {
        "customer": {
            "name": f"{first} {last}",
            "email": f"{first.lower()}.{last.lower()}@example.com",
            "phone": f"+1 415 555 {1000 + i % 9000:04d}",
            "ssn": f"{100 + i % 800:03d}-{10 + i % 80:02d}-{1000 + i % 9000:04d}",
        },
        "order": {"id": f"ORD-{i:06d}", "amount": round(10 + (i * 7.31) % 500, 2)},
        "note": samples[i % len(samples)],
    }
    return json.dumps(doc).encode()


def mixed_messages(texts, prefix):
    """Deterministic mix, per 50 records: 30 text, 10 JSON, 4 PNG, 2 WAV, 1 AVI, 3 bad."""
    from veil.pipelines import demo

    bad = [(k, v) for k, v, what in demo.sample_messages() if what.startswith("malformed")]
    png, wav, avi = demo._png(), demo._wav(), demo._avi()
    slots = ["text"] * 30 + ["json"] * 10 + ["png"] * 4 + ["wav"] * 2 + ["avi"] + ["bad"] * 3
    order = [slots[(i * 7) % 50] for i in range(50)]  # a fixed interleaving
    out = []
    t = b = 0
    for i in range(len(texts)):
        kind = order[i % 50]
        subject = f"subject-{i % 47}"  # 47, not 50: each kind spreads over all partitions
        rid = f"{prefix}-{i}"
        if kind == "text":
            rec = _media_record(rid, subject, texts[t % len(texts)].encode(), "text/plain")
            t += 1
        elif kind == "json":
            rec = _media_record(rid, subject, _structured(i, texts), "application/json")
        elif kind == "png":
            rec = _media_record(rid, subject, png, "image/png")
        elif kind == "wav":
            rec = _media_record(rid, subject, wav, "audio/wav")
        elif kind == "avi":
            rec = _media_record(rid, subject, avi, "video/x-msvideo")
        else:
            out.append(bad[b % len(bad)])
            b += 1
            continue
        out.append(_encode(rec))
    return out


# ------------------------------------------------------------------ processes


def start_broker():
    directory = tempfile.mkdtemp(prefix="veil-bench-e2e-kafka-")
    out = subprocess.run(
        ["bash", str(KAFKA_SH), "start", directory, "90"],
        check=True,
        capture_output=True,
        text=True,
    )
    return directory, out.stdout.strip().splitlines()[-1]


def stop_broker(directory):
    subprocess.run(["bash", str(KAFKA_SH), "stop", directory], capture_output=True)
    shutil.rmtree(directory, ignore_errors=True)


def flink_jar():
    out = subprocess.run(["bash", str(FLINK_SH), "jar"], check=True, capture_output=True, text=True)
    return out.stdout.strip().splitlines()[-1]


class Pipeline:
    """One ``veil run`` subprocess in its own session (so its job server dies with it)."""

    live: list = []

    def __init__(self, bootstrap, prefix, flags, env, workdir, idle_stop_s):
        argv = [
            VEIL,
            "-v",
            "run",
            f"--veil_bootstrap_servers={bootstrap}",
            f"--veil_topic_prefix={prefix}",
            f"--veil_consumer_group={prefix}-pipeline",
            "--veil_read_mode=unbounded",
            f"--veil_idle_stop_s={idle_stop_s}",
            *flags,
        ]
        self.log = tempfile.TemporaryFile(dir=workdir)
        self.started = time.time()
        self.proc = subprocess.Popen(
            argv,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=workdir,
            start_new_session=True,
        )
        self.ended = None
        Pipeline.live.append(self)

    def alive(self):
        return self.proc.poll() is None

    def wait(self, timeout_s):
        try:
            self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
        self.ended = time.time()
        return self.proc.returncode

    def kill(self):
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.proc.wait(timeout=15)
                break
            except subprocess.TimeoutExpired:
                continue
        # The session may outlive its leader (a job-server JVM): sweep it.
        for pid in _session_pids(self.proc.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def tail(self, n=3000):
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-n:]

    def close(self):
        if self.alive():
            self.kill()
        else:
            for pid in _session_pids(self.proc.pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self.log.close()
        if self in Pipeline.live:
            Pipeline.live.remove(self)


def _proc_stats():
    """``{pid: (ppid, session, cpu_seconds)}`` from /proc (children's reaped time included)."""
    tick = os.sysconf("SC_CLK_TCK")
    stats = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = raw[raw.rindex(")") + 2 :].split()
        # fields[0] is field 3 (state): ppid=4, session=6, utime..cstime=14..17
        ppid, session = int(fields[1]), int(fields[3])
        cpu = sum(int(v) for v in fields[11:15]) / tick
        stats[int(entry)] = (ppid, session, cpu)
    return stats


def _session_pids(root):
    return [
        pid for pid, (_, session, _) in _proc_stats().items() if session == root and pid != root
    ]


def tree_cpu_seconds(root):
    """User + system CPU seconds of ``root`` and its descendants (and its session)."""
    try:
        import psutil

        proc = psutil.Process(root)
        total = 0.0
        for p in [proc, *proc.children(recursive=True)]:
            try:
                t = p.cpu_times()
                total += t.user + t.system + t.children_user + t.children_system
            except psutil.NoSuchProcess:
                pass
        return total
    except ImportError:
        pass
    except Exception:  # the process is gone
        return 0.0
    stats = _proc_stats()
    tree, grew = {root}, True
    while grew:
        grew = False
        for pid, (ppid, session, _) in stats.items():
            if pid not in tree and (ppid in tree or session == root):
                tree.add(pid)
                grew = True
    return sum(stats[p][2] for p in tree if p in stats)


# ------------------------------------------------------------------ Kafka side


class OutputWatcher(threading.Thread):
    """Follows the sanitized, quarantine and dead-letter topics from the beginning;
    ``first[(partition, offset)]`` = the first output's timestamp (ms) per raw offset."""

    def __init__(self, bootstrap, topics, raw_topic):
        super().__init__(daemon=True)
        from kafka import KafkaConsumer, TopicPartition

        self._consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        parts = [
            TopicPartition(t, p)
            for t in topics
            for p in sorted(self._consumer.partitions_for_topic(t) or ())
        ]
        self._consumer.assign(parts)
        self._consumer.seek_to_beginning(*parts)
        self._raw = raw_topic
        self._halt = threading.Event()
        self.lock = threading.Lock()
        self.first = {}
        self.outputs = 0
        self.timestamp_types = set()
        self.error = None

    def run(self):
        try:
            while not self._halt.is_set():
                for records in self._consumer.poll(timeout_ms=100, max_records=2000).values():
                    with self.lock:
                        for rec in records:
                            self.outputs += 1
                            self.timestamp_types.add(rec.timestamp_type)
                            source = dict(rec.headers or ()).get("veil-source", b"").decode()
                            parts = source.rsplit("/", 2)
                            if len(parts) != 3 or parts[0] != self._raw:
                                continue
                            key = (int(parts[1]), int(parts[2]))
                            if key not in self.first:
                                self.first[key] = rec.timestamp
        except Exception as exc:  # reported by wait_for
            self.error = exc

    def seen(self, keys):
        with self.lock:
            return sum(1 for k in keys if k in self.first)

    def times(self, keys):
        with self.lock:
            return {k: self.first[k] for k in keys if k in self.first}

    def wait_for(self, keys, timeout_s, pipeline):
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.error:
                raise RuntimeError(f"output watcher failed: {self.error!r}")
            if self.seen(keys) >= len(keys):
                return True
            if not pipeline.alive():
                time.sleep(1.0)  # let the last outputs arrive
                return self.seen(keys) >= len(keys)
            time.sleep(0.05)
        return False

    def stop(self):
        self._halt.set()
        self.join(timeout=10)
        self._consumer.close()


def _producer(bootstrap, linger_ms):
    from kafka import KafkaProducer

    from veil.transforms.kafkaio import MAX_MESSAGE_BYTES

    return KafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=True,
        linger_ms=linger_ms,
        max_request_size=MAX_MESSAGE_BYTES,
    )


def _metadata(futures):
    """``{(partition, offset): append timestamp ms}`` of produced records."""
    out = {}
    for f in futures:
        md = f.get(timeout=60)
        out[(md.partition, md.offset)] = md.timestamp
    return out


def produce_burst(bootstrap, topic, messages):
    producer = _producer(bootstrap, 5)
    try:
        futures = [producer.send(topic, key=k, value=v) for k, v in messages]
        producer.flush(timeout=120)
        return _metadata(futures)
    finally:
        producer.close()


def produce_paced(bootstrap, topic, messages, rate):
    """One record every 1/rate s on a fixed schedule (no catch-up bursts beyond lag)."""
    producer = _producer(bootstrap, 0)
    try:
        futures = []
        t0 = time.monotonic()
        for i, (k, v) in enumerate(messages):
            delay = t0 + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            futures.append(producer.send(topic, key=k, value=v))
        producer.flush(timeout=120)
        achieved = len(messages) / max(time.monotonic() - t0, 1e-9)
        return _metadata(futures), achieved
    finally:
        producer.close()


def create_topics(bootstrap, names):
    from veil.pipelines.topics import topic_specs
    from veil.transforms.kafkaio import TopicSpec, ensure_topics

    stamped = {names.raw, names.dead_letter}
    specs = []
    for spec in topic_specs(names):
        if spec.name in stamped or ".sanitized." in spec.name or ".quarantine." in spec.name:
            spec = TopicSpec(spec.name, spec.partitions, {**spec.configs, **LOG_APPEND})
        specs.append(spec)
    ensure_topics({"bootstrap_servers": bootstrap}, specs)
    return [s.name for s in specs if s.name != names.raw and s.name in _output_topics(names)]


def _output_topics(names):
    from veil.transforms.records import Modality

    return {names.dead_letter} | {
        t for m in Modality.ALL for t in (names.sanitized(m), names.quarantine(m))
    }


def ceiling(bootstrap, messages):
    """kafka-python produce (acks=all, idempotent) then consume: seconds of each."""
    from kafka import KafkaConsumer, TopicPartition

    from veil.transforms.kafkaio import TopicSpec, ensure_topics

    topic = f"e2e-ceiling-{uuid.uuid4().hex[:8]}"
    ensure_topics({"bootstrap_servers": bootstrap}, [TopicSpec(topic, 3)])
    started = time.perf_counter()
    produce_burst(bootstrap, topic, messages)
    produce_s = time.perf_counter() - started

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    parts = [TopicPartition(topic, p) for p in range(3)]
    consumer.assign(parts)
    consumer.seek_to_beginning(*parts)
    started = time.perf_counter()
    got = 0
    while got < len(messages):
        for records in consumer.poll(timeout_ms=500, max_records=2000).values():
            got += len(records)
    consume_s = time.perf_counter() - started
    consumer.close()
    return produce_s, consume_s


# ------------------------------------------------------------------ one case


def _pct(values, q):
    values = sorted(values)
    if not values:
        return float("nan")
    k = (len(values) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def run_case(args, bootstrap, runner, workload, env, workdir):
    from veil.transforms.emit import TopicNames

    prefix = f"e2e{uuid.uuid4().hex[:8]}"
    names = TopicNames(prefix)
    outputs = create_topics(bootstrap, names)
    watcher = OutputWatcher(bootstrap, outputs, names.raw)
    watcher.start()

    make = text_messages if workload == "text" else mixed_messages
    warm = text_messages(args.texts[:WARMUP_RECORDS], f"{prefix}-warm")
    burst = make(args.texts[: args.records], f"{prefix}-burst")
    row = {"runner": runner, "workload": workload, "records": len(burst)}
    pipeline = None
    try:
        warm_md = produce_burst(bootstrap, names.raw, warm)
        pipeline = Pipeline(bootstrap, prefix, RUNNER_FLAGS[runner], env, workdir, args.idle_stop)
        if not watcher.wait_for(list(warm_md), args.startup_timeout, pipeline):
            raise RuntimeError("no warm-up output (pipeline did not start)\n" + pipeline.tail())
        row["startup_s"] = min(watcher.times(warm_md).values()) / 1000 - pipeline.started

        cpu0, t0 = tree_cpu_seconds(pipeline.proc.pid), time.time()
        burst_md = produce_burst(bootstrap, names.raw, burst)
        if not watcher.wait_for(list(burst_md), args.burst_timeout, pipeline):
            seen = watcher.seen(burst_md)
            raise RuntimeError(f"burst: {seen}/{len(burst_md)} outputs\n" + pipeline.tail())
        cpu1, t1 = tree_cpu_seconds(pipeline.proc.pid), time.time()
        out = watcher.times(burst_md).values()
        span = (max(out) - min(out)) / 1000
        row["burst_rps"] = len(burst_md) / span
        row["burst_span_s"] = span
        row["cpu_s"] = cpu1 - cpu0
        row["cores_busy"] = (cpu1 - cpu0) / (t1 - t0)
        row["rec_per_cpu_s"] = len(burst_md) / max(cpu1 - cpu0, 1e-9)

        rate = args.rate or round(0.6 * row["burst_rps"], 1)
        n_paced = max(30, int(rate * args.paced_seconds))
        pool = args.texts[args.records :] or args.texts
        paced = make((pool * (n_paced // len(pool) + 1))[:n_paced], f"{prefix}-paced")
        paced_md, achieved = produce_paced(bootstrap, names.raw, paced, rate)
        if not watcher.wait_for(list(paced_md), args.burst_timeout, pipeline):
            seen = watcher.seen(paced_md)
            raise RuntimeError(f"paced: {seen}/{len(paced_md)} outputs\n" + pipeline.tail())
        out = watcher.times(paced_md)
        latency = [out[k] - paced_md[k] for k in paced_md]
        row.update(
            rate=rate,
            achieved_rate=achieved,
            paced=len(paced_md),
            p50_ms=_pct(latency, 0.5),
            p99_ms=_pct(latency, 0.99),
            max_ms=max(latency),
        )
        code = pipeline.wait(args.idle_stop + 120)
        row["wall_s"] = pipeline.ended - pipeline.started
        row["exit"] = code
        total_in = len(warm_md) + len(burst_md) + len(paced_md)
        time.sleep(1.0)
        row["conserved"] = watcher.seen(list(warm_md) + list(burst_md) + list(paced_md)) == total_in
        row["ts_types"] = sorted(watcher.timestamp_types)
        if code != 0:
            row["error"] = f"exit {code}: " + pipeline.tail(800)
    except Exception as exc:
        row["error"] = str(exc).splitlines()[0] if str(exc) else repr(exc)
        if pipeline is not None:
            stops = [line for line in pipeline.tail(10**6).splitlines() if "idle for" in line]
            row["error"] += "".join(f"\n    {line}" for line in stops[-3:])
    finally:
        if pipeline is not None:
            pipeline.close()
        watcher.stop()
    return row


# ------------------------------------------------------------------ main


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=1000, help="burst records per case")
    parser.add_argument(
        "--rate",
        type=float,
        default=None,
        help="paced rate, records/s (default: 60%% of the burst throughput)",
    )
    parser.add_argument("--paced-seconds", type=float, default=20.0)
    parser.add_argument("--runners", default="fnapi,flink")
    parser.add_argument("--workloads", default="text,mixed")
    parser.add_argument("--ceiling-records", type=int, default=20000)
    parser.add_argument(
        "--idle-stop",
        type=float,
        default=45.0,
        help="--veil_idle_stop_s; must exceed the time one 500-record bundle takes",
    )
    parser.add_argument("--startup-timeout", type=float, default=240.0)
    parser.add_argument("--burst-timeout", type=float, default=300.0)
    parser.add_argument("--bootstrap", default=None)
    args = parser.parse_args()
    runners = [r.strip() for r in args.runners.split(",") if r.strip()]
    workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    if set(runners) - set(RUNNER_FLAGS) or set(workloads) - {"text", "mixed"}:
        parser.error("--runners from fnapi,flink; --workloads from text,mixed")

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    from veil.transforms.keys import write_key_file

    started, load_start = time.time(), os.getloadavg()[0]
    workdir = tempfile.mkdtemp(prefix="veil-bench-e2e-")
    env = dict(os.environ)
    env["VEIL_AUDIO_KEY_FILE"] = str(write_key_file(Path(workdir) / "voice.key"))
    broker_dir = None
    bootstrap = args.bootstrap
    rows = []
    try:
        if "flink" in runners:
            env["VEIL_FLINK_JOB_SERVER_JAR"] = flink_jar()
        if bootstrap is None:
            broker_dir, bootstrap = start_broker()
        samples = _corpus().generate(args.records + 4000)
        args.texts = [s.text for s in samples]

        ceiling_msgs = text_messages(
            (args.texts * (args.ceiling_records // len(args.texts) + 1))[: args.ceiling_records],
            "ceiling",
        )
        produce_s, consume_s = ceiling(bootstrap, ceiling_msgs)
        ceiling_rps = args.ceiling_records / (produce_s + consume_s)

        for runner in runners:
            for workload in workloads:
                print(f"... {RUNNER_LABELS[runner]} / {workload}", file=sys.stderr, flush=True)
                rows.append(run_case(args, bootstrap, runner, workload, env, workdir))
    finally:
        for pipeline in list(Pipeline.live):
            pipeline.close()
        if broker_dir:
            stop_broker(broker_dir)
        shutil.rmtree(workdir, ignore_errors=True)

    cores = os.cpu_count() or 1
    n = args.ceiling_records
    print(
        f"\nCeiling, kafka-python on this broker, {n} text records (avg "
        f"{sum(len(v) for _, v in ceiling_msgs) / n:.0f} B):"
    )
    print(
        f"  produce acks=all idempotent {n / produce_s:8.0f} rec/s   consume "
        f"{n / consume_s:8.0f} rec/s   produce+consume {ceiling_rps:8.0f} rec/s"
    )
    print(
        f"\n{cores} cores; total run {time.time() - started:.0f} s; 1-min load average "
        f"{load_start:.1f} at start, {os.getloadavg()[0]:.1f} at end\n"
    )
    header = (
        "| Runner | Workload | Burst records | Start-up s | Records/s | vs ceiling "
        "| Records/s per core | Records per CPU-s | Cores busy | Paced rate | Paced records "
        "| p50 ms | p99 ms | Wall s |"
    )
    print(header)
    print("|" + " --- |" * 2 + " ---: |" * 12)
    for r in rows:
        label = RUNNER_LABELS[r["runner"]]
        if "burst_rps" not in r or "p50_ms" not in r:
            print(
                f"| {label} | {r['workload']} | {r['records']} | FAILED: "
                f"{r.get('error', '?').splitlines()[0][:120]} |"
            )
            continue
        print(
            f"| {label} | {r['workload']} | {r['records']} | {r['startup_s']:.1f} "
            f"| {r['burst_rps']:.0f} | {r['burst_rps'] / ceiling_rps:.3f} "
            f"| {r['burst_rps'] / cores:.0f} | {r['rec_per_cpu_s']:.0f} | {r['cores_busy']:.2f} "
            f"| {r['rate']:.0f} ({r['achieved_rate']:.0f}) | {r['paced']} "
            f"| {r['p50_ms']:.0f} | {r['p99_ms']:.0f} | {r['wall_s']:.0f} |"
        )
    for r in rows:
        notes = []
        if r.get("error"):
            notes.append("error: " + r["error"])
        if "conserved" in r and not r["conserved"]:
            notes.append("not every input has an output")
        if r.get("ts_types") and r["ts_types"] != [1]:
            notes.append(f"output timestamp types {r['ts_types']} (1 = LogAppendTime)")
        if "max_ms" in r:
            notes.append(f"latency max {r['max_ms']:.0f} ms, burst span {r['burst_span_s']:.1f} s")
        print(f"- {RUNNER_LABELS[r['runner']]} / {r['workload']}: " + "; ".join(notes))
    return 1 if any(r.get("error") for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
