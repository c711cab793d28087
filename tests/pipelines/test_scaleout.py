"""Redistribution on Flink (veil.pipelines.scaleout): when it is allowed, the sink slots
Flink's key-group hashing gives each source partition (checked against Flink's own
classes in the job-server jar), and the pin transform passing every write through."""

from __future__ import annotations

import subprocess
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.util import assert_that, equal_to
from veil_testing import beam_pipeline

from veil.pipelines.options import ConfigError, VeilConfig
from veil.pipelines.runners import commit_lag_s, flink_job_server_jar
from veil.pipelines.scaleout import (
    PinToSinkSlot,
    flink_subtask,
    sink_slot,
    sink_slots,
)
from veil.transforms.records import KafkaWrite, Source

REPO = Path(__file__).resolve().parents[2]


def _config(*flags) -> VeilConfig:
    return VeilConfig.from_options(
        PipelineOptions(["--veil_bootstrap_servers=127.0.0.1:9092", *flags])
    )


@pytest.mark.parametrize(
    "flags, expected",
    [
        ([], False),  # the local FnApiRunner: offsets must commit after the writes
        (["--runner=FlinkRunner", "--parallelism=2"], True),  # auto, the default
        (["--runner=FlinkRunner", "--parallelism=1"], False),
        (["--runner=FlinkRunner", "--veil_redistribute=auto"], True),  # cluster default
        (["--runner=FlinkRunner", "--parallelism=2", "--veil_redistribute=auto"], True),
        (["--runner=FlinkRunner", "--parallelism=1", "--veil_redistribute=auto"], False),
        (["--runner=FlinkRunner", "--parallelism=2", "--veil_redistribute=off"], False),
        (["--runner=FlinkRunner", "--parallelism=1", "--veil_redistribute=on"], True),
        (["--runner=DataflowRunner"], False),
    ],
)
def test_auto_redistributes_on_flink_above_parallelism_one(flags, expected):
    assert _config(*flags).redistribute is expected


@pytest.mark.parametrize(
    "flags, words",
    [
        (["--veil_redistribute=on"], "needs the FlinkRunner"),
        (["--runner=DataflowRunner", "--veil_redistribute=on"], "needs the FlinkRunner"),
        (
            ["--runner=FlinkRunner", "--veil_redistribute=on", "--unaligned_checkpoint_enabled"],
            "unaligned",
        ),
    ],
    ids=["local", "dataflow", "unaligned-checkpoints"],
)
def test_redistribution_is_refused_where_it_would_lose_records(flags, words):
    with pytest.raises(ConfigError, match=words):
        _config(*flags)


def test_unknown_choice_is_a_config_error():
    with pytest.raises((ConfigError, SystemExit)):
        _config("--runner=FlinkRunner", "--veil_redistribute=maybe")


@pytest.mark.parametrize("parallelism", [1, 2, 3, 4, 8])
def test_sink_slots_land_partition_p_on_subtask_p_mod_parallelism(parallelism):
    for partition in range(3 * parallelism):
        slot = sink_slot(partition, parallelism, 128)
        assert flink_subtask(bytes([slot]), parallelism, 128) == partition % parallelism


def test_sink_slots_follow_the_job_parallelism():
    slots = sink_slots(PipelineOptions(["--parallelism=2"]))
    assert [flink_subtask(bytes([slots[p]]), 2, 128) for p in range(4)] == [0, 1, 0, 1]
    assert set(sink_slots(PipelineOptions([])).values()) == {0}


_JAVA_CHECK = """
import java.nio.ByteBuffer;
import org.apache.flink.runtime.state.KeyGroupRangeAssignment;
public class KeyGroups {
  public static void main(String[] args) {
    for (int p = 1; p <= 4; p++) {
      StringBuilder line = new StringBuilder();
      for (int k = 0; k < 128; k++) {
        ByteBuffer key = ByteBuffer.wrap(new byte[] {(byte) k});
        line.append(KeyGroupRangeAssignment.assignKeyToParallelOperator(key, 128, p));
        line.append(k < 127 ? " " : "");
      }
      System.out.println(line);
    }
  }
}
"""


@pytest.mark.flink
def test_key_group_hashing_matches_flink(tmp_path):
    """The Python replica against Flink's ``KeyGroupRangeAssignment`` (the jar's): a
    drift would only unbalance the sinks, but the benchmark's numbers rely on it."""
    jar = flink_job_server_jar()
    if jar is None:
        built = subprocess.run(
            ["bash", str(REPO / "deploy/flink/flink.sh"), "jar"], capture_output=True, text=True
        )
        assert built.returncode == 0, built.stderr[-2000:]
        jar = built.stdout.strip().splitlines()[-1]
    source = tmp_path / "KeyGroups.java"
    source.write_text(_JAVA_CHECK)
    out = subprocess.run(
        ["java", "-cp", str(jar), str(source)], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    rows = [list(map(int, line.split())) for line in out.stdout.strip().splitlines()]
    expected = [[flink_subtask(bytes([k]), p, 128) for k in range(128)] for p in range(1, 5)]
    assert rows == expected


def test_pin_passes_every_write_through_once():
    writes = [
        KafkaWrite("t.sanitized", f"k{i}".encode(), b"v", (), Source("t.raw", i % 3, i))
        for i in range(12)
    ] + [KafkaWrite("t.dead-letter", b"x", b"v", (), None)]
    with beam_pipeline() as p:
        out = (
            p
            | beam.Create(writes)
            | PinToSinkSlot(sink_slots(PipelineOptions(["--parallelism=2"])))
        )
        assert_that(out, equal_to(writes))


@pytest.mark.parametrize("parallelism", [1, 2, 3, 5])
def test_slot_table_agrees_with_sink_slot(parallelism):
    slots = sink_slots(PipelineOptions([f"--parallelism={parallelism}"]))
    assert all(slots[p] == sink_slot(p, parallelism, 128) for p in range(64))


@pytest.mark.parametrize(
    "flags, expected",
    [
        ([], 5.0),  # FLINK_CHECKPOINT_MS: 10 s
        (["--checkpointing_interval=2000"], 1.0),
        (["--checkpointing_interval=400"], 0.5),
        (["--checkpointing_interval=-1"], 5.0),
    ],
)
def test_commit_lag_is_half_the_checkpoint_interval(flags, expected):
    assert commit_lag_s(PipelineOptions(["--runner=FlinkRunner", *flags])) == expected
