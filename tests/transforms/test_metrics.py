"""``Histogram``: cumulative buckets, sum and count as plain Beam counters."""

from __future__ import annotations

import apache_beam as beam
from apache_beam.metrics.metric import MetricsFilter
from veil_testing import beam_pipeline

from veil.transforms.metrics import Histogram


class _ObserveFn(beam.DoFn):
    def setup(self):
        self._h = Histogram("veil.test", "latency_ms", (10, 100))

    def process(self, value):
        self._h.update(value)
        yield value

    def finish_bundle(self):
        self._h.flush()


def test_histogram_counts_cumulative_buckets_sum_and_count():
    pipeline = beam_pipeline()
    values = [3.0, 10.0, 55.5, 250.0] + [0.25] * 4  # four sub-millisecond steps add 1 ms
    _ = pipeline | beam.Create(values) | beam.ParDo(_ObserveFn())
    result = pipeline.run()
    counters = {
        c.key.metric.name: c.committed
        for c in result.metrics().query(MetricsFilter().with_namespace("veil.test"))["counters"]
    }
    assert counters == {
        "latency_ms_bucket_le_10": 6,  # 0.25 x 4, 3 and 10 (le: inclusive)
        "latency_ms_bucket_le_100": 7,
        "latency_ms_bucket_le_inf": 8,
        "latency_ms_sum": 319,  # 3 + 10 + 55.5 + 250 + 4 x 0.25, fractions carried
        "latency_ms_count": 8,
    }
    dists = result.metrics().query(MetricsFilter().with_namespace("veil.test"))["distributions"]
    assert dists[0].committed.count == 8
