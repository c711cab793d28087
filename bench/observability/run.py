"""What seeing costs: the step-time histogram, and the report.

1. ``Histogram.update`` (Beam distribution + cumulative bucket counters + sum + count)
   against the Beam distribution it replaced, over N elements in one FnApiRunner
   pipeline each (the privacy step calls it once per record).
2. ``veil report DIR`` (read + verify + charts + HTML) against ``veil audit verify`` on the
   same directory (the chain check the report contains), in process.

    python bench/observability/run.py [--n 20000] [--dir SANITIZE_OUT_DIR]

Prints both times and the ratios. The machine is shared: compare ratios.
"""

from __future__ import annotations

import argparse
import time

import apache_beam as beam
from apache_beam.metrics import Metrics

from veil.pipelines.options import LOCAL_RUNNER
from veil.transforms.metrics import Histogram


class _Dist(beam.DoFn):
    def setup(self):
        self._d = Metrics.distribution("bench", "latency_ms")

    def process(self, v):
        self._d.update(int(v))
        return ()


class _Hist(beam.DoFn):
    def setup(self):
        self._h = Histogram("bench", "latency_ms")

    def process(self, v):
        self._h.update(v)
        return ()

    def finish_bundle(self):
        self._h.flush()


class _Nothing(beam.DoFn):
    def process(self, v):
        return ()


def _pipeline_s(fn, n: int) -> float:
    started = time.perf_counter()
    with beam.Pipeline(runner=LOCAL_RUNNER) as p:
        _ = p | beam.Create([float(i % 700) / 7 for i in range(n)]) | beam.ParDo(fn)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--dir", default=None, help="a veil sanitize output directory")
    args = parser.parse_args()
    base = min(_pipeline_s(_Nothing(), args.n) for _ in range(2))
    dist = min(_pipeline_s(_Dist(), args.n) for _ in range(2))
    hist = min(_pipeline_s(_Hist(), args.n) for _ in range(2))
    print(
        f"metrics, {args.n} elements: no metric {base:.2f} s, distribution {dist:.2f} s, histogram {hist:.2f} s"
    )
    print(
        f"  histogram / distribution: {hist / dist:.2f}x; histogram over the distribution: "
        f"{(hist - dist) / args.n * 1e6:.1f} us per element"
    )
    if args.dir:
        from veil.pipelines.report import from_directory, write_report
        from veil.transforms.audit_chain import read_file, verify

        started = time.perf_counter()
        verify(list(read_file(f"{args.dir}/audit.jsonl")))
        verify_s = time.perf_counter() - started
        started = time.perf_counter()
        write_report("/tmp/veil-bench-report.html", from_directory(args.dir))
        report_s = time.perf_counter() - started
        print(
            f"report of {args.dir}: veil audit verify {verify_s:.3f} s, veil report {report_s:.3f} s "
            f"(ratio {report_s / verify_s:.0f}x)"
        )


if __name__ == "__main__":
    main()
