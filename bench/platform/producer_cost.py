"""What producing one record costs: the sink's producer against kafka-python's, one run.

    .venv/bin/python bench/platform/producer_cost.py [--records 100000] [--bootstrap H:P]

Starts its own broker (deploy/kafka/kafka.sh) unless --bootstrap is given. Sends the same
200-byte keyed records in bundles of 1,000 (send each, then flush, then check every
future, as ``WriteToKafka`` does) through

K. kafka-python's ``KafkaProducer`` with the settings the sink had (acks=all,
   idempotence, linger 500 ms, 1 MiB batches);
R. ``IdempotentProducer`` (librdkafka), the sink's producer now.

and prints, per record: CPU microseconds of the whole process (every thread: the
client's I/O threads included), CPU microseconds of the sending thread alone (the Beam
worker's thread, which holds the GIL), and wall-clock microseconds. Rounds alternate
K and R to spread the machine's load over both.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import bench_broker  # noqa: E402

BUNDLE = 1000


def _kafka_python(bootstrap):
    from kafka import KafkaProducer

    from veil.transforms.kafkaio import client
    from veil.transforms.kafkaio.producer import MAX_MESSAGE_BYTES

    return KafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=True,
        max_in_flight_requests_per_connection=5,
        linger_ms=client.LINGER_MS,
        batch_size=client.BATCH_BYTES,
        max_request_size=MAX_MESSAGE_BYTES,
    )


def _librdkafka(bootstrap):
    from veil.transforms.kafkaio.producer import IdempotentProducer

    return IdempotentProducer({"bootstrap_servers": bootstrap})


def _round(producer, topic, records) -> tuple[float, float, float]:
    wall, cpu, own = time.perf_counter(), time.process_time(), time.thread_time()
    for start in range(0, len(records), BUNDLE):
        futures = [
            producer.send(topic, key=k, value=v, headers=[("veil-record-id", k)])
            for k, v in records[start : start + BUNDLE]
        ]
        producer.flush(timeout=60)
        if not all(f.succeeded() for f in futures):
            raise SystemExit("a record was not acknowledged")
    return (
        time.process_time() - cpu,
        time.thread_time() - own,
        time.perf_counter() - wall,
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--bootstrap", default=None)
    args = parser.parse_args()

    from veil.transforms.kafkaio import TopicSpec, ensure_topics

    with bench_broker(args.bootstrap) as (bootstrap, _):
        topic = f"p{uuid.uuid4().hex[:8]}.cost"
        ensure_topics({"bootstrap_servers": bootstrap}, [TopicSpec(topic, 3)])
        records = [(f"subject-{i % 500}".encode(), b"x" * 200) for i in range(args.records)]
        producers = {
            "K kafka-python": _kafka_python(bootstrap),
            "R librdkafka": _librdkafka(bootstrap),
        }
        for producer in producers.values():  # connections, producer ids, metadata
            _round(producer, topic, records[:BUNDLE])
        totals = {name: [0.0, 0.0, 0.0] for name in producers}
        for _ in range(args.rounds):
            for name, producer in producers.items():
                for i, value in enumerate(_round(producer, topic, records)):
                    totals[name][i] += value
        n = args.records * args.rounds
        print(f"{'producer':<16} {'CPU us/rec':>11} {'thread us/rec':>14} {'wall us/rec':>12}")
        for name, (cpu, own, wall) in totals.items():
            print(
                f"{name:<16} {cpu / n * 1e6:>11.2f} {own / n * 1e6:>14.2f} {wall / n * 1e6:>12.2f}"
            )
        k, r = totals["K kafka-python"], totals["R librdkafka"]
        print(f"ratio CPU K/R: {k[0] / r[0]:.2f}, sending thread K/R: {k[1] / r[1]:.2f}")


if __name__ == "__main__":
    main()
