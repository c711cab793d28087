"""Profiles the whole Veil pipeline on text records (FnApiRunner, in process, cProfile).

    .venv/bin/python bench/platform/profile_pipeline.py --bootstrap HOST:PORT [--records 3000] [--top 25]

Produces ``--records`` text MediaRecords (bench/platform/run.py's corpus) to a fresh topic
prefix, runs ``veil run`` in bounded mode in this process under cProfile, and prints the
top entries by own time and by cumulative time, plus records/s (profiling slows
everything by roughly 1.5-2x: compare entries, not the rate). Needs a running broker
(``deploy/kafka/kafka.sh start DIR``).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import (  # noqa: E402
    outcome_counts,
    produce_media_records,
    record_id_key,
    text_corpus,
    text_media_records,
)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--records", type=int, default=3000)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--out", default=None, help="also save the raw profile here")
    args = parser.parse_args()

    from veil.pipelines import sanitize
    from veil.pipelines.topics import topic_specs
    from veil.transforms.emit import TopicNames
    from veil.transforms.kafkaio import ensure_topics

    client = {"bootstrap_servers": args.bootstrap}
    names = TopicNames(f"prof{uuid.uuid4().hex[:8]}")
    ensure_topics(client, topic_specs(names))
    produce_media_records(args.bootstrap, names.raw, text_media_records(text_corpus(args.records)))
    argv = [
        f"--veil_bootstrap_servers={args.bootstrap}",
        f"--veil_topic_prefix={names.prefix}",
        "--veil_read_mode=bounded",
        f"--veil_consumer_group={names.prefix}-prof",
        f"--veil_record_id_key={record_id_key()}",
    ]
    profiler = cProfile.Profile()
    started = time.perf_counter()
    profiler.enable()
    sanitize.run(argv)
    profiler.disable()
    elapsed = time.perf_counter() - started
    if args.out:
        profiler.dump_stats(args.out)
    print(f"outcomes: {outcome_counts(args.bootstrap, names)}")
    print(
        f"{args.records} records in {elapsed:.1f} s under cProfile "
        f"({args.records / elapsed:.0f} records/s)"
    )
    for order in ("tottime", "cumulative"):
        buf = io.StringIO()
        pstats.Stats(profiler, stream=buf).strip_dirs().sort_stats(order).print_stats(args.top)
        print(f"--- top {args.top} by {order} ---")
        print("\n".join(buf.getvalue().splitlines()[6:]))


if __name__ == "__main__":
    main()
