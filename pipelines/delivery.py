"""Delivery modes (``--veil_delivery``) and which runner can give which guarantee.

==================  ===============================  ====================================
runner              at_least_once (default)          exactly_once
==================  ===============================  ====================================
FnApiRunner         yes: offsets committed after     yes: one Kafka transaction per source
(local default,     every write of the bundle was    partition, committed with its offsets
in memory or        acknowledged; replays carry the  on bundle finalization; readers use
multi_threading)    same deterministic keys          ``read_committed``
FnApiRunner         yes                              refused: a partition's bundles move
multi_processing                                     between worker processes, so its
                                                     transaction would not stay with it
FlinkRunner         yes: offsets committed when a    refused: bundles are finalized only
                    checkpoint completes             on checkpoints, while later bundles of
                                                     the same partition are already writing
DataflowRunner      yes                              refused: Dataflow retries and
                                                     finalizes on its own schedule; use its
                                                     own exactly-once Kafka IO instead
==================  ===============================  ====================================

Why refuse rather than degrade: a transaction must cover exactly the writes of the
offsets it commits. Where the runner can process a partition's next bundle before the
previous one is finalized, the writes of both would land in one transaction committed
with the first bundle's offsets (duplicates after a crash), or the second bundle would
have to abort the first one's writes (loss). ``veil run`` fails with a ``ConfigError``
before anything runs instead.
"""

from __future__ import annotations

from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions

from veil.pipelines.options import ConfigError
from veil.transforms.kafkaio.transactions import AT_LEAST_ONCE, DELIVERY_MODES, EXACTLY_ONCE

__all__ = ["AT_LEAST_ONCE", "DELIVERY_MODES", "EXACTLY_ONCE", "check_delivery", "runner_name"]

EXACTLY_ONCE_RUNNERS = ("FnApiRunner",)


def runner_name(options: PipelineOptions) -> str:
    """The runner's class name (``FnApiRunner`` when none is set: Veil's local default)."""
    runner = options.view_as(StandardOptions).runner
    if runner is None:
        return "FnApiRunner"
    if not isinstance(runner, str):
        runner = type(runner).__name__
    return runner.rsplit(".", 1)[-1]


def check_delivery(options: PipelineOptions, delivery: str) -> str:
    """Returns ``delivery`` if the runner can give it; raises ``ConfigError`` otherwise."""
    if delivery not in DELIVERY_MODES:
        raise ConfigError(f"--veil_delivery must be one of {', '.join(DELIVERY_MODES)}")
    if delivery != EXACTLY_ONCE:
        return delivery
    name = runner_name(options)
    if name not in EXACTLY_ONCE_RUNNERS:
        raise ConfigError(
            f"--veil_delivery exactly_once is not supported on {name}: it finalizes bundles "
            "out of step with Kafka transactions (see docs/delivery.md); use "
            "at_least_once there, or the local FnApiRunner"
        )
    if options.view_as(DirectOptions).direct_running_mode == "multi_processing":
        raise ConfigError(
            "--veil_delivery exactly_once needs every bundle of a partition in one process: "
            "use --direct_running_mode in_memory or multi_threading"
        )
    return delivery
