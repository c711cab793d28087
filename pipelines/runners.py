"""Runner set-up: the flags Veil adds so each runner works here out of the box.

``prepare_argv`` is applied to ``veil run``'s arguments before Beam parses them. It
never overrides a flag the user gave; it fills what Veil needs:

* no ``--runner``: the local ``FnApiRunner`` (Beam's DirectRunner would first download
  the Prism binary at run time, which Veil refuses — see ``check_runner``);
* ``DataflowRunner``: ``--streaming`` when the read is unbounded;
* ``FlinkRunner``:
  - ``--flink_job_server_jar``: the job server built by ``deploy/flink/flink.sh jar``
    (Maven Central serves no prebuilt one), found through ``$VEIL_FLINK_JOB_SERVER_JAR``
    or ``$VEIL_CACHE/flink``;
  - ``--environment_type=LOOPBACK`` (no Docker engine; use EXTERNAL/PROCESS on a cluster);
  - ``--streaming`` with checkpointing (every 10 s; 2 s in bounded mode): Beam's
    portable Flink runner finalizes bundles (and so commits source offsets) only in
    streaming mode, on completed checkpoints;
  - ``--finish_bundle_before_checkpointing``: without it the first checkpoint can hold
    the partition-listing step's output forever;
  - ``--shutdown_sources_after_idle_ms`` in bounded mode or with ``--veil_idle_stop_s``,
    so a drained job finishes instead of idling with its checkpoints; at least two
    checkpoint intervals, so the last bundles' offsets are committed first.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from veil.pipelines.options import LOCAL_RUNNER, ConfigError, VeilOptions, check_runner

_LOGGER = logging.getLogger(__name__)

FLINK_VERSION = "1.19"
FLINK_JOB_SERVER_JAR = "beam-runners-flink-1.19-job-server-veil-2.62.0.jar"
FLINK_CHECKPOINT_MS = 10_000
FLINK_BOUNDED_CHECKPOINT_MS = 2_000  # bounded runs: commit soon, finish soon
FLINK_IDLE_SHUTDOWN_MS = 5_000


def _has(argv: list[str], flag: str) -> bool:
    return any(a == f"--{flag}" or a.startswith(f"--{flag}=") for a in argv)


def _flag_int(argv: list[str], flag: str) -> int | None:
    """The integer value of ``--flag=N`` or ``--flag N`` in ``argv``, if given."""
    for i, arg in enumerate(argv):
        if arg.startswith(f"--{flag}="):
            return int(arg.split("=", 1)[1])
        if arg == f"--{flag}" and i + 1 < len(argv):
            return int(argv[i + 1])
    return None


def flink_job_server_jar() -> Path | None:
    """The locally built job-server jar, if there is one."""
    explicit = os.environ.get("VEIL_FLINK_JOB_SERVER_JAR")
    candidates = [Path(explicit)] if explicit else []
    cache = os.environ.get("VEIL_CACHE")
    if cache:
        candidates.append(Path(cache) / "flink" / FLINK_JOB_SERVER_JAR)
    candidates.append(
        Path(__file__).resolve().parents[1] / ".cache" / "flink" / FLINK_JOB_SERVER_JAR
    )
    return next((c for c in candidates if c.is_file()), None)


def prepare_argv(argv) -> list[str]:
    """Returns ``argv`` with the runner defaults above; raises ``ConfigError``."""
    argv = list(argv or [])
    options = PipelineOptions(argv)
    runner = options.view_as(StandardOptions).runner
    if runner is None:
        argv.append(f"--runner={LOCAL_RUNNER}")
    check_runner(PipelineOptions(argv))
    name = str(runner or "").rsplit(".", 1)[-1]
    if name == "FlinkRunner":
        argv = _flink_defaults(argv, options)
    elif name == "DataflowRunner" and not _has(argv, "streaming"):
        if options.view_as(VeilOptions).veil_read_mode == "unbounded":
            argv.append("--streaming")  # an unbounded read is a streaming job
    return argv


def _flink_defaults(argv: list[str], options: PipelineOptions) -> list[str]:
    added = []

    def add(flag: str, value=None):
        if not _has(argv, flag):
            added.append(f"--{flag}" if value is None else f"--{flag}={value}")

    add("flink_version", FLINK_VERSION)
    if not _has(argv, "flink_job_server_jar") and not _has(argv, "flink_submit_uber_jar"):
        jar = flink_job_server_jar()
        if jar is None:
            raise ConfigError(
                "--runner FlinkRunner needs the Beam Flink job server: build it with "
                "'deploy/flink/flink.sh jar' (or pass --flink_job_server_jar)"
            )
        added.append(f"--flink_job_server_jar={jar}")
    add("environment_type", "LOOPBACK")
    add("streaming")
    veil = options.view_as(VeilOptions)
    bounded = veil.veil_read_mode == "bounded"
    interval = _flag_int(argv, "checkpointing_interval")
    if interval is None:
        interval = FLINK_BOUNDED_CHECKPOINT_MS if bounded else FLINK_CHECKPOINT_MS
        add("checkpointing_interval", interval)
    add("finish_bundle_before_checkpointing")
    if bounded or veil.veil_idle_stop_s:
        # A drained job's last bundles are finalized (offsets committed) only by a
        # checkpoint that completes before the sources shut down: stay idle for two
        # checkpoint intervals. (At parallelism 2 a 5 s idle under a 10 s interval
        # ended jobs with one partition's last offsets uncommitted.) Redistributed, a
        # partition's last offsets wait for its next records instead (or for the commit
        # after a bounded job is done): idling longer would not commit them.
        idle_ms = max(
            FLINK_IDLE_SHUTDOWN_MS, int(veil.veil_idle_stop_s * 1000), 2 * interval + 1000
        )
        add("shutdown_sources_after_idle_ms", idle_ms)
    if added:
        _LOGGER.info("FlinkRunner defaults added: %s", " ".join(added))
    return argv + added


def commit_lag_s(options: PipelineOptions) -> float:
    """The pause that separates two rounds of bundle finalization on Flink: half the
    checkpoint interval (``--checkpointing_interval``, ms), at least half a second."""
    given = options.get_all_options(retain_unknown_options=True).get("checkpointing_interval")
    try:
        interval_ms = int(given) if given is not None else FLINK_CHECKPOINT_MS
    except (TypeError, ValueError):
        interval_ms = FLINK_CHECKPOINT_MS
    if interval_ms <= 0:
        interval_ms = FLINK_CHECKPOINT_MS
    return max(0.5, interval_ms / 2000)
