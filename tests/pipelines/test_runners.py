"""The Flink flags ``veil run`` adds: checkpoints complete before a drained job stops."""

from __future__ import annotations

import pytest

from veil.pipelines.runners import prepare_argv

JAR = "--flink_job_server_jar=/nonexistent/job-server.jar"


def _flag(argv, name):
    values = [a.split("=", 1)[1] for a in argv if a.startswith(f"--{name}=")]
    return int(values[-1]) if values else None


@pytest.mark.parametrize(
    "extra, interval, idle",
    [
        (["--veil_read_mode=bounded"], 2000, 5000),
        (["--veil_read_mode=bounded", "--checkpointing_interval", "5000"], None, 11000),
        (["--veil_read_mode=unbounded", "--veil_idle_stop_s=30"], 10000, 30000),
        (["--veil_read_mode=unbounded"], 10000, None),
    ],
    ids=["bounded", "bounded-own-interval", "idle-stop", "streaming"],
)
def test_sources_stay_idle_for_two_checkpoint_intervals(extra, interval, idle):
    argv = prepare_argv(["--runner=FlinkRunner", JAR, *extra])
    assert _flag(argv, "checkpointing_interval") == interval  # None: the user's, kept
    assert _flag(argv, "shutdown_sources_after_idle_ms") == idle
    given = interval or 5000
    if idle is not None:
        assert idle >= 2 * given
