"""Beam metrics that survive the trip to Prometheus.

Beam's distributions reach Flink as gauges holding a ``DistributionResult`` object, which
Flink's Prometheus reporter exports as 0. ``Histogram`` therefore also keeps cumulative
bucket counters, a sum and a count, plain Beam counters that every runner exports as
numbers. ``deploy/monitoring/prometheus.yml`` turns
``veil_<stage>_<name>_bucket_le_<bound>`` into a Prometheus histogram
(``veil_<name>_bucket{stage, le}``, ``_sum``, ``_count``), so ``histogram_quantile``
works on it.

Example::

    latency = Histogram("veil.text", "latency_ms", LATENCY_BUCKETS_MS)
    latency.update(12.5)
"""

from __future__ import annotations

from apache_beam.metrics import Metrics

#: Privacy-step time buckets (ms): text and JSON take milliseconds, media seconds.
LATENCY_BUCKETS_MS = (
    1,
    2,
    5,
    10,
    25,
    50,
    100,
    250,
    500,
    1000,
    2500,
    5000,
    10000,
    30000,
    60000,
    120000,
)


def bucket_name(name: str, bound) -> str:
    return f"{name}_bucket_le_{'inf' if bound is None else bound}"


class Histogram:
    """A distribution plus cumulative bucket counters (``le`` semantics), sum and count.

    ``update`` only counts locally; ``flush`` (call it in ``finish_bundle``) adds the
    bundle's counts to the Beam counters, one increment per counter and bundle: Beam's
    counter increments cost microseconds each, 19 of them per record would not.
    """

    def __init__(self, namespace: str, name: str, bounds=LATENCY_BUCKETS_MS):
        self._distribution = Metrics.distribution(namespace, name)
        self._bounds = tuple(sorted(bounds))
        self._buckets = [Metrics.counter(namespace, bucket_name(name, b)) for b in self._bounds]
        self._inf = Metrics.counter(namespace, bucket_name(name, None))
        self._sum = Metrics.counter(namespace, f"{name}_sum")
        self._count = Metrics.counter(namespace, f"{name}_count")
        self._carry = 0.0  # counters are integers: fractions of a millisecond carry over
        self._pending = [0] * len(self._bounds)
        self._pending_count = 0

    def update(self, value: float) -> None:
        self._distribution.update(int(value))
        for i, bound in enumerate(self._bounds):
            if value <= bound:
                self._pending[i] += 1
                break  # made cumulative in flush
        self._pending_count += 1
        self._carry += value

    def flush(self) -> None:
        if not self._pending_count:
            return
        running = 0
        for i, counter in enumerate(self._buckets):
            running += self._pending[i]
            if running:
                counter.inc(running)
        self._inf.inc(self._pending_count)
        self._count.inc(self._pending_count)
        whole = int(self._carry)
        if whole:
            self._sum.inc(whole)
            self._carry -= whole
        self._pending = [0] * len(self._bounds)
        self._pending_count = 0


__all__ = ["LATENCY_BUCKETS_MS", "Histogram", "bucket_name"]
