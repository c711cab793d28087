"""Platform benchmark: Veil's Kafka IO and full pipeline against their ceilings, in one run.

    .venv/bin/python bench/platform/run.py [--records 20000] [--text-records 400]

Starts its own broker (deploy/kafka/kafka.sh) unless --bootstrap is given. Measures, on
this machine and in the same run:

A. kafka-python copy loop (consume N, produce N with acks=all + idempotence): the
   ceiling for any Python Kafka -> Kafka job.
B. Veil's ReadFromKafka -> WriteToKafka on the FnApiRunner, same N records.
C. Veil's text step alone (TextHandler.process in a plain loop, no Beam, no Kafka): the
   ceiling for the text stage.
D. The whole Veil pipeline (veil run, bounded) over the same text records, Kafka to Kafka.
E. The same pipeline over the first 200 of them: its start-up; (N - 200) / (D - E) is the
   pipeline's steady-state rate.

Prints records/s and the ratios B/A and D/C, and the CPU seconds per record of C, D and
E (user + system of every process of the case): on a shared machine the load moves the
wall-clock rates a lot, CPU time little. Machines here have 2 noisy cores: compare
ratios, not absolute numbers.
"""

from __future__ import annotations

import argparse
import contextlib
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SMALL = 200  # records in case E (start-up)


NAMES = ["John Smith", "Maria Garcia", "Robert Johnson", "Emily Chen", "David Brown"]
TEMPLATES = [
    "Customer {name} can be reached at {email} or {phone}.",
    "Please charge card 4111 1111 1111 1111 for {name}; receipt to {email}.",
    "Call {name} back on {phone} about the refund for order {i}.",
    "The quarterly report {i} is attached. No changes to the schedule this week.",
]


def text_corpus(n):
    out = []
    for i in range(n):
        name = NAMES[i % len(NAMES)]
        email = name.lower().replace(" ", ".") + "@example.com"
        phone = f"212-555-{i % 10000:04d}"
        out.append(TEMPLATES[i % len(TEMPLATES)].format(name=name, email=email, phone=phone, i=i))
    return out


def start_broker():
    directory = tempfile.mkdtemp(prefix="veil-bench-kafka-")
    out = subprocess.run(
        ["bash", str(REPO / "deploy/kafka/kafka.sh"), "start", directory, "90"],
        check=True,
        capture_output=True,
        text=True,
    )
    return directory, out.stdout.strip().splitlines()[-1]


@contextlib.contextmanager
def bench_broker(bootstrap=None):
    """Yields ``(bootstrap, broker_dir)``: the broker given, or one started here (in a
    temporary directory, ``broker_dir``) and stopped on the way out."""
    if bootstrap is not None:
        yield bootstrap, None
        return
    directory, bootstrap = start_broker()
    try:
        yield bootstrap, directory
    finally:
        subprocess.run(
            ["bash", str(REPO / "deploy/kafka/kafka.sh"), "stop", directory],
            capture_output=True,
        )


def produce(bootstrap, topic, values, keys=None):
    from kafka import KafkaProducer

    producer = KafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5
    )
    for i, value in enumerate(values):
        producer.send(topic, key=keys[i] if keys else None, value=value)
    producer.flush()
    producer.close()


def bench_copy_loop(bootstrap, src, dst, n):
    from kafka import KafkaConsumer, KafkaProducer

    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=f"bench-{uuid.uuid4().hex}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    consumer.subscribe([src])
    producer = KafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5
    )
    started = time.perf_counter()
    copied = 0
    while copied < n:
        for records in consumer.poll(timeout_ms=500, max_records=500).values():
            for rec in records:
                producer.send(dst, key=rec.key, value=rec.value)
                copied += 1
        producer.flush()
        consumer.commit()
    elapsed = time.perf_counter() - started
    consumer.close()
    producer.close()
    return elapsed


def bench_veil_io(bootstrap, src, dst, n):
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    from veil.pipelines.options import LOCAL_RUNNER
    from veil.transforms.kafkaio import ReadFromKafka, WriteToKafka
    from veil.transforms.records import KafkaWrite

    client = {"bootstrap_servers": bootstrap}
    started = time.perf_counter()
    with beam.Pipeline(options=PipelineOptions([f"--runner={LOCAL_RUNNER}"])) as p:
        (
            p
            | ReadFromKafka(client, [src], group_id=f"bench-{uuid.uuid4().hex}", bounded=True)
            | beam.Map(lambda m: KafkaWrite(dst, m.key or b"", m.value))
            | WriteToKafka(client)
        )
    return time.perf_counter() - started


def bench_text_step_alone(texts):
    """Veil's text step (detect + classify + anonymize) in a plain loop, no Beam, no Kafka."""
    from veil.transforms.classification import load_policy
    from veil.transforms.records import Source, WorkItem
    from veil.transforms.text import TextHandler

    handler = TextHandler(load_policy())
    model = handler.load()
    items = [
        WorkItem(
            source=Source("bench", 0, i),
            record={
                "record_id": f"r{i}",
                "subject_key": f"s{i % 50}",
                "payload": t.encode(),
                "content_type": "text/plain",
                "attributes": {},
            },
            modality="text",
        )
        for i, t in enumerate(texts)
    ]
    handler.process(model, items[0])  # warm-up
    started, cpu = time.perf_counter(), time.process_time()
    for item in items:
        handler.process(model, item)
    return time.perf_counter() - started, time.process_time() - cpu


def text_media_records(texts) -> list[dict]:
    """One text/plain MediaRecord per text, over 50 subjects."""
    return [
        {
            "record_id": f"r{i}",
            "subject_key": f"s{i % 50}",
            "modality": None,
            "content_type": "text/plain",
            "payload": t.encode(),
            "attributes": {},
            "event_time": None,
        }
        for i, t in enumerate(texts)
    ]


def produce_media_records(bootstrap, topic, records) -> None:
    """Produces MediaRecords (Avro, Veil's framing), keyed by subject."""
    from veil.schemas import MEDIA_RECORD, catalog

    cat = catalog()
    produce(
        bootstrap,
        topic,
        [cat.encode(MEDIA_RECORD, r) for r in records],
        [r["subject_key"].encode() for r in records],
    )


def record_id_key() -> str:
    """A fresh record-id key file: producer ids such as ``r7`` are accepted only with one
    (without, every record is dead-lettered INVALID_RECORD and the case measures nothing)."""
    from veil.transforms.keys import write_key_file

    return str(write_key_file(Path(tempfile.mkdtemp(prefix="veil-bench-key-")) / "id.key"))


def outcome_counts(bootstrap, names) -> dict:
    """Records on each output topic (end offsets): sanitized, dead letters, audit events."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        counts = {}
        for label, topic in (
            ("sanitized", names.sanitized("text")),
            ("dead_letters", names.dead_letter),
            ("audit", names.audit),
        ):
            tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
            counts[label] = sum(consumer.end_offsets(tps).values()) if tps else 0
        return counts
    finally:
        consumer.close()


def bench_veil_pipeline(bootstrap, names, expected):
    """``veil run`` (bounded) over ``names.raw``; fails unless every record was sanitized."""
    veil = str(Path(sys.executable).with_name("veil"))
    started, cpu = time.perf_counter(), _children_cpu()
    subprocess.run(
        [
            veil,
            "run",
            f"--veil_bootstrap_servers={bootstrap}",
            f"--veil_topic_prefix={names.prefix}",
            "--veil_read_mode=bounded",
            f"--veil_consumer_group={names.prefix}-bench",
            f"--veil_record_id_key={record_id_key()}",
        ],
        check=True,
        capture_output=True,
    )
    elapsed, cpu = time.perf_counter() - started, _children_cpu() - cpu
    counts = outcome_counts(bootstrap, names)
    print(f"{names.prefix}: {counts}", flush=True)
    if counts["sanitized"] != expected:
        raise SystemExit(
            f"{names.prefix}: {counts['sanitized']} of {expected} sanitized: "
            "the case did not measure the text pipeline"
        )
    return elapsed, cpu


def _children_cpu() -> float:
    """User + system CPU seconds of waited-for children (``veil run`` and its step
    workers): what a run costs in CPU, which the machine's load barely changes."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=20000)
    parser.add_argument("--text-records", type=int, default=400)
    parser.add_argument("--bootstrap", default=None)
    args = parser.parse_args()

    from veil.pipelines.topics import topic_specs
    from veil.transforms.emit import TopicNames
    from veil.transforms.kafkaio import TopicSpec, ensure_topics

    with bench_broker(args.bootstrap) as (bootstrap, _):
        client = {"bootstrap_servers": bootstrap}
        run = uuid.uuid4().hex[:8]
        src, dst_a, dst_b = f"b{run}.src", f"b{run}.a", f"b{run}.b"
        ensure_topics(client, [TopicSpec(t, 3) for t in (src, dst_a, dst_b)])
        values = [b"x" * 200 for _ in range(args.records)]
        produce(bootstrap, src, values)

        a = bench_copy_loop(bootstrap, src, dst_a, args.records)
        b = bench_veil_io(bootstrap, src, dst_b, args.records)

        texts = text_corpus(args.text_records)
        c, c_cpu = bench_text_step_alone(texts)
        names = TopicNames(f"p{run}")
        ensure_topics(client, topic_specs(names))
        records = text_media_records(texts)
        produce_media_records(bootstrap, names.raw, records)
        d, d_cpu = bench_veil_pipeline(bootstrap, names, len(records))
        # E: the same pipeline on the first SMALL records only; D - E is what the other
        # records cost once everything has started: the steady state.
        small = min(SMALL, len(records))
        names_e = TopicNames(f"e{run}")
        ensure_topics(client, topic_specs(names_e))
        produce_media_records(bootstrap, names_e.raw, records[:small])
        e, e_cpu = bench_veil_pipeline(bootstrap, names_e, small)

    n, t = args.records, args.text_records
    print(f"{'case':58} {'records':>8} {'seconds':>8} {'rec/s':>9}")
    for label, count, secs in (
        ("A kafka-python copy loop (ceiling)", n, a),
        ("B Veil ReadFromKafka -> WriteToKafka (FnApiRunner)", n, b),
        ("C Veil text step alone, plain loop (text ceiling)", t, c),
        ("D Veil pipeline, text, Kafka -> Kafka (incl. start-up)", t, d),
        (f"E Veil pipeline, first {small} records only (start-up)", small, e),
        ("D-E Veil pipeline, steady state (D minus E)", t - small, max(d - e, 1e-9)),
    ):
        print(f"{label:58} {count:8d} {secs:8.2f} {count / secs:9.0f}")
    c_rate = t / c
    print(f"ratio B/A (Kafka IO vs copy loop): {a / b:.2f}")
    print(f"ratio D/C (whole pipeline incl. start-up vs its text step alone): {c / d:.2f}")
    print(
        f"ratio (D-E)/C (whole pipeline, steady state, vs its text step alone): "
        f"{(t - small) / max(d - e, 1e-9) / c_rate:.2f}"
    )
    # CPU per record (user + system, all processes of the case): the machine's load
    # changes wall-clock rates a lot and CPU time little.
    steady_cpu = (d_cpu - e_cpu) / (t - small)
    print(
        f"CPU ms/record: C {1000 * c_cpu / t:.2f}, D {1000 * d_cpu / t:.2f}, "
        f"E {1000 * e_cpu / small:.2f}, D-E {1000 * steady_cpu:.2f}"
    )
    print(
        f"ratio C/(D-E) CPU per record (text step's share of the steady state's CPU): "
        f"{c_cpu / t / max(steady_cpu, 1e-9):.2f}"
    )
    print(f"ratio C/D CPU per record, incl. start-up: {c_cpu / max(d_cpu, 1e-9):.2f}")


if __name__ == "__main__":
    main()
