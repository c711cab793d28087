"""Flink scale-out: Veil on a standalone Flink session cluster with Python SDK workers in
a worker pool (``--environment_type EXTERNAL``), parallelism 1 then 2, same input.

    .venv/bin/python bench/platform/flink_scale.py [--records 3000] [--bootstrap HOST:PORT]
        [--cases 1 2:off 2]   # P[:REDISTRIBUTE[:SDK_WORKERS]]; the first is the base

Starts (and stops) its own broker unless ``--bootstrap`` is given, a Flink session cluster
(``deploy/flink/flink.sh cluster-start``, slots = the largest parallelism) and one SDK
worker pool (``python -m apache_beam.runners.worker.worker_pool_main``, with a record-id
key in its environment), which starts ``--sdk_worker_parallelism`` SDK worker processes
for each job (default: one per operator instance, ``stage_workers``). For each case it
produces ``--records`` text records to a fresh 3-partition raw topic, runs ``veil run``
bounded, checks conservation (every source offset exactly one sanitized record or dead
letter) and the committed offsets, and prints:

* job seconds: submit to finish (includes the job server start, the ~160 MB jar upload,
  task deployment and the workers' model loads);
* steady records/s: the middle 80 % of the sanitized records over the span of their
  Kafka timestamps (10th to 90th percentile), i.e. the processing rate once every worker
  is running;
* records per subtask into the task that runs the text step (Flink's REST API), the CPU
  seconds of each SDK worker process (with its children), of the Flink JVMs and the
  broker, and how busy the machine was: whether the work was spread, over how many
  Python processes, and what else took the CPU.

Run on 2 cores shared with the broker and both JVMs: compare the ratio, not the rates.
"""

from __future__ import annotations

import argparse
import collections
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FLINK_SH = REPO / "deploy" / "flink" / "flink.sh"


def _platform_run():
    """bench/platform/run.py, by path: another bench's ``run`` module (bench/text) may
    already sit in ``sys.modules`` under that name when tests import both."""
    import importlib.util

    name = "veil_bench_platform_run"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("run.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


_run = _platform_run()
bench_broker, text_corpus = _run.bench_broker, _run.text_corpus


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stage_workers(parallelism: int, redistribute: str = "auto") -> int:
    """SDK workers for one TaskManager holding every subtask: one per operator instance
    (fused stage x subtask). Beam's Flink runner binds operator instances to the pool's
    workers round robin in the order they open, so with fewer workers two subtasks of
    the privacy stage can share one Python process (measured: 10.9 and 2.0 CPU s with 2
    workers at parallelism 2). Veil's graph has 2 fused stages (partition listing; read
    to sink), 4 when redistributed (listing; read; decode to emit; sink)."""
    redistributed = redistribute == "on" or (redistribute == "auto" and parallelism != 1)
    return (4 if redistributed else 2) * parallelism


class FlinkSession:
    """A standalone Flink cluster plus one Python SDK worker pool, stopped on exit."""

    def __init__(self, slots: int = 2):
        self.dir = tempfile.mkdtemp(prefix="veil-flink-")
        self.slots = slots
        self.pool_port = free_port()
        self.master = None
        self.pool = None
        self.pool_log = Path(self.dir) / "worker-pool.log"
        self.broker_hint = ""  # a string in the broker's command line (its directory)

    def __enter__(self):
        env = dict(os.environ, FLINK_REST_PORT=str(free_port()), FLINK_TM_SLOTS=str(self.slots))
        out = subprocess.run(
            ["bash", str(FLINK_SH), "cluster-start", self.dir],
            capture_output=True,
            text=True,
            env=env,
        )
        if out.returncode != 0:
            raise RuntimeError(f"Flink cluster did not start: {out.stderr[-2000:]}")
        self.master = out.stdout.strip().splitlines()[-1]
        try:
            self.pool = start_worker_pool(self.pool_port, self.pool_log)
        except Exception:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc):
        if self.pool is not None:
            stop_worker_pool(self.pool)
        subprocess.run(["bash", str(FLINK_SH), "cluster-stop", self.dir], capture_output=True)

    def workers_started(self) -> int:
        """SDK worker processes the pool has started so far."""
        return self.pool_log.read_text(errors="replace").count("Starting worker")

    def flags(self, parallelism: int, redistribute: str = "auto", workers: int = 0) -> list[str]:
        """``workers``: ``--sdk_worker_parallelism`` (0: ``stage_workers``)."""
        workers = workers or stage_workers(parallelism, redistribute)
        return [
            "--runner=FlinkRunner",
            f"--flink_master={self.master}",
            "--environment_type=EXTERNAL",
            f"--environment_config=localhost:{self.pool_port}",
            f"--parallelism={parallelism}",
            f"--sdk_worker_parallelism={workers}",
            f"--veil_redistribute={redistribute}",
        ]

    def jvms(self) -> dict:
        """The cluster's JVMs and the broker: name -> pid (those found)."""
        pids = {}
        for name, pidfile in (("jobmanager", "jm.pid"), ("taskmanager", "tm.pid")):
            path = Path(self.dir) / pidfile
            if path.exists():
                pids[name] = int(path.read_text().strip())
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            hint = self.broker_hint.encode()
            if hint and b"kafka.Kafka\x00" in cmdline and hint in cmdline:
                pids["broker"] = int(entry)
        return pids

    def last_job_subtasks(self) -> list[tuple[str, list[int]]]:
        """Records each subtask of each task of the newest job read, from Flink's REST
        API: ``[(task name, [records of subtask 0, 1, ...]), ...]``."""
        import json
        import urllib.request

        def get(path):
            with urllib.request.urlopen(f"http://{self.master}{path}", timeout=30) as resp:
                return json.load(resp)

        jobs = get("/jobs/overview")["jobs"]
        if not jobs:
            return []
        job = max(jobs, key=lambda j: j["start-time"])["jid"]
        tasks = []
        for vertex in get(f"/jobs/{job}")["vertices"]:
            detail = get(f"/jobs/{job}/vertices/{vertex['id']}")
            counts = [st["metrics"]["read-records"] for st in detail["subtasks"]]
            tasks.append((vertex["name"], counts))
        return tasks


class WorkerCpu:
    """Samples the CPU seconds of each SDK worker the pool started (with its own child
    processes, e.g. the text step's worker) while a job runs: whether the subtasks'
    Python work really ran in separate processes, and how evenly."""

    def __init__(self, pool_pid: int, others: dict | None = None, interval_s: float = 0.5):
        import threading

        self._pool = pool_pid
        # Other processes to account (name -> pid): the Flink JVMs, the broker.
        self._others = dict(others or {})
        self._other_cpu: dict[str, float] = {}
        self._machine = None  # (busy, total) jiffies at start, from /proc/stat
        self._interval = interval_s
        self._seen: dict[int, float] = {}  # pid -> CPU seconds (self + descendants)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._machine = self._proc_stat()
        self._start = {name: (self._stat(pid) or (0, 0.0))[1] for name, pid in self._others.items()}
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        busy, total = self._proc_stat()
        cores = os.cpu_count() or 1
        self.machine_busy_cores = round(
            cores * (busy - self._machine[0]) / max(1, total - self._machine[1]), 2
        )
        for name, pid in self._others.items():
            stat = self._stat(pid)
            if stat is not None:
                self._other_cpu[name] = round(stat[1] - self._start[name], 1)

    @staticmethod
    def _proc_stat() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = fields[3] + fields[4]  # idle + iowait
        return sum(fields) - idle, sum(fields)

    def others(self) -> dict:
        """CPU seconds of the other processes during the job."""
        return dict(self._other_cpu)

    @staticmethod
    def _stat(pid: int):
        """(ppid, CPU seconds) of ``pid``, or None once it is gone."""
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            return None
        return int(fields[1]), (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def _sample(self):
        stats = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                stat = self._stat(int(entry))
                if stat is not None:
                    stats[int(entry)] = stat
        children = collections.defaultdict(list)
        for pid, (ppid, _) in stats.items():
            children[ppid].append(pid)

        def total(pid):
            return stats[pid][1] + sum(total(c) for c in children.get(pid, ()))

        for worker in children.get(self._pool, ()):
            self._seen[worker] = max(self._seen.get(worker, 0.0), total(worker))

    def _run(self):
        while not self._stop.wait(self._interval):
            self._sample()

    def seconds(self) -> list[float]:
        """CPU seconds per SDK worker process, largest first."""
        return sorted((round(v, 1) for v in self._seen.values()), reverse=True)


def start_worker_pool(port: int, log_path: Path) -> subprocess.Popen:
    """``worker_pool_main`` starts each SDK worker as ``python`` from PATH: the venv's."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    log = open(log_path, "wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "apache_beam.runners.worker.worker_pool_main",
            f"--service_port={port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    deadline = time.monotonic() + 180  # importing Beam on a loaded 2-core box is slow
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("the SDK worker pool exited at start-up")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc
        time.sleep(0.5)
    stop_worker_pool(proc)
    raise RuntimeError("the SDK worker pool did not listen within 180 s")


def stop_worker_pool(proc: subprocess.Popen) -> None:
    """Stops the pool and the SDK workers it started (its own process group)."""
    import signal

    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


def outcomes(bootstrap: str, names) -> tuple[collections.Counter, list[int], collections.Counter]:
    """Outcomes per source coordinate, the sanitized records' Kafka timestamps, and the
    dead letters' error codes."""
    from veil.pipelines.cli import consume
    from veil.transforms.records import Modality

    client = {"bootstrap_servers": bootstrap}
    coords, stamps, dead = collections.Counter(), [], collections.Counter()
    for topic in [names.sanitized(m) for m in Modality.ALL] + [names.dead_letter]:
        for rec, _, value in consume(client, topic, idle_timeout_s=2):
            coords[(value["source"]["partition"], value["source"]["offset"])] += 1
            if topic != names.dead_letter:
                stamps.append(rec.timestamp)
            else:
                dead[value["error_code"]] += 1
    return coords, stamps, dead


def committed_total(bootstrap: str, group: str, topic: str, partitions: int = 3) -> int:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    try:
        return sum(consumer.committed(TopicPartition(topic, p)) or 0 for p in range(partitions))
    finally:
        consumer.close()


def run_case(
    bootstrap: str,
    session: FlinkSession,
    parallelism: int,
    n: int,
    redistribute: str = "auto",
    workers: int = 0,
) -> dict:
    from veil.pipelines.topics import topic_specs
    from veil.transforms.emit import TopicNames
    from veil.transforms.kafkaio import ensure_topics

    names = TopicNames(f"fs{parallelism}{uuid.uuid4().hex[:6]}")
    ensure_topics({"bootstrap_servers": bootstrap}, topic_specs(names))
    _run.produce_media_records(bootstrap, names.raw, _run.text_media_records(text_corpus(n)))
    group = f"{names.prefix}-pipeline"
    workers_before = session.workers_started()
    veil = str(Path(sys.executable).with_name("veil"))
    started = time.perf_counter()
    with tempfile.TemporaryFile() as log, WorkerCpu(session.pool.pid, session.jvms()) as cpu:
        proc = subprocess.run(
            [
                veil,
                "-v",
                "run",
                *session.flags(parallelism, redistribute, workers),
                f"--veil_bootstrap_servers={bootstrap}",
                f"--veil_topic_prefix={names.prefix}",
                f"--veil_consumer_group={group}",
                "--veil_read_mode=bounded",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            timeout=1200,
        )
        if proc.returncode != 0:
            log.seek(0)
            raise RuntimeError(f"veil run failed:\n{log.read()[-3000:].decode(errors='replace')}")
    seconds = time.perf_counter() - started
    tasks = session.last_job_subtasks()
    coords, stamps, dead = outcomes(bootstrap, names)
    # Steady state: the middle 80 % of the outputs (10th to 90th percentile of their
    # Kafka timestamps), so neither the workers' start (model loads, the first bundles)
    # nor a straggling last bundle counts.
    stamps.sort()
    lo, hi = int(0.1 * len(stamps)), int(0.9 * len(stamps)) - 1
    span_s = (stamps[hi] - stamps[lo]) / 1000 if hi > lo else float("nan")
    return {
        "case": f"p{parallelism}"
        + ("" if redistribute == "auto" else f" {redistribute}")
        + f" w{workers or stage_workers(parallelism, redistribute)}",
        "parallelism": parallelism,
        "records": n,
        "seconds": seconds,
        "steady_rps": (hi - lo) / span_s if span_s > 0 else float("nan"),
        "conserved": len(coords) == n and set(coords.values()) == {1},
        "sanitized": len(stamps),
        "dead_letters": dict(dead),
        "committed": committed_total(bootstrap, group, names.raw),
        "workers": session.workers_started() - workers_before,
        "worker_cpu_s": cpu.seconds(),
        "other_cpu_s": cpu.others(),
        "machine_busy_cores": cpu.machine_busy_cores,
        # Records read per subtask by the task that runs the text step.
        "step_subtasks": next((c for name, c in tasks if "Text" in name), None),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=2000)
    parser.add_argument("--bootstrap", default=None)
    parser.add_argument(
        "--cases",
        nargs="+",
        default=["1", "2:off", "2"],
        help="P[:REDISTRIBUTE[:WORKERS]]: parallelism P, --veil_redistribute auto/on/off "
        "(auto: on at P > 1), --sdk_worker_parallelism (default P); the first case is "
        "the base of the ratios",
    )
    args = parser.parse_args()
    cases = []
    for case in args.cases:
        parts = case.split(":")
        parts += ["auto", "0"][len(parts) - 1 :]
        cases.append((int(parts[0]), parts[1] or "auto", int(parts[2] or 0)))

    if not os.environ.get("VEIL_RECORD_ID_KEY_FILE"):
        # Decode turns producer ids into opaque ids with this key; without one every
        # record is dead-lettered INVALID_RECORD (fail closed) and nothing is measured.
        # Set before the worker pool starts: its SDK workers inherit the environment.
        from veil.transforms.keys import write_key_file

        key = Path(tempfile.mkdtemp(prefix="veil-bench-ids-")) / "record-id.key"
        os.environ["VEIL_RECORD_ID_KEY_FILE"] = str(write_key_file(key))
    results = []
    with bench_broker(args.bootstrap) as (bootstrap, broker_dir):
        with FlinkSession(slots=max(p for p, _, _ in cases)) as session:
            session.broker_hint = broker_dir or ""
            for parallelism, redistribute, workers in cases:
                results.append(
                    run_case(bootstrap, session, parallelism, args.records, redistribute, workers)
                )
    print(
        f"{'case':>11} {'records':>8} {'job s':>7} {'steady rec/s':>13} "
        f"{'workers':>8} {'conserved':>9} {'committed':>9}"
    )
    for r in results:
        print(
            f"{r['case']:>11} {r['records']:>8} {r['seconds']:>7.1f} "
            f"{r['steady_rps']:>13.0f} {r['workers']:>8} {str(r['conserved']):>9} "
            f"{r['committed']:>9}"
        )
        print(
            f"  {r['case']}: records per subtask into the text step's task: "
            f"{r['step_subtasks']}; CPU s per SDK worker: {r['worker_cpu_s']}; other CPU s: "
            f"{r['other_cpu_s']}; machine busy: {r['machine_busy_cores']} of "
            f"{os.cpu_count()} cores (all processes, other sessions' too)"
        )
        if r["dead_letters"]:
            print(f"  {r['case']}: {r['sanitized']} sanitized, dead letters {r['dead_letters']}")
    if len(results) >= 2:
        base = results[0]
        for r in results[1:]:
            print(
                f"ratio {r['case']} / {base['case']}: steady "
                f"{r['steady_rps'] / base['steady_rps']:.2f}x, job time "
                f"{base['seconds'] / r['seconds']:.2f}x"
            )


if __name__ == "__main__":
    main()
