"""Redistribution on Flink: the privacy steps balanced across subtasks, whatever the
partition assignment, with each source partition's writes kept on one subtask.

Without it, Veil's whole graph is fused into the stage that reads a partition, so a
subtask does all the work of the partitions it reads. On Flink the read (a splittable
DoFn) is keyed by partition: 3 partitions over 2 subtasks split 2:1 at best, and 3:0
for about one topic name in four (Flink hashes the partition's element to a subtask).
``--veil_redistribute on`` (or ``auto``, the default: on Flink above parallelism 1)
composes::

    read -> Redistribute (round robin) -> decode -> route -> privacy steps -> emit
         -> KeyBySinkSlot (source partition -> slot) -> sink

* ``Redistribute`` is ``beam.Reshuffle``, which Flink's portable runner turns into a
  ``rebalance()`` (round robin, no state): the decode, privacy and emit steps of every
  partition spread evenly over the subtasks.
* The sink stays one subtask per source partition: the audit chain is per source
  partition, and two processes extending one chain would fork it
  (``veil.transforms.kafkaio.audit_chainer``). ``PinToSinkSlot`` keys each write by a
  slot derived from its source partition and passes it through a stateful DoFn (state
  declared, never read or written), which makes Flink ``keyBy`` the slot; the sink fuses
  after it. Slots are chosen (``sink_slot``) so that partition ``p`` lands on subtask
  ``p % parallelism`` by Flink's key-group hashing: the sinks are as even as the
  partitions allow (a wrong guess would only unbalance them, never split a chain).

Delivery stays at-least-once: a source offset is committed when a checkpoint
completes, and Flink's aligned checkpoints complete only after every operator has
processed the records before the barrier (``--finish_bundle_before_checkpointing``
finishes the sink's bundle, i.e. the broker acknowledged its writes, before its
snapshot). Unaligned checkpoints would store in-flight records in the checkpoint
instead, and a restart from the committed offsets (not from the checkpoint) would skip
them: ``veil run`` refuses the combination. Local runners finalize the read's bundle
once its output reached the shuffle, before anything was written, so redistribution is
Flink-only; exactly-once is refused on Flink anyway (``veil.pipelines.delivery``).

One more step is needed for that argument to hold: Beam's Flink operator finalizes
*every* outstanding bundle when a checkpoint completes, also bundles of the read that
finished after that checkpoint's barrier had passed it, whose records may still be on
their way to the sink. Committing those offsets at once lost records when a job was
killed and submitted afresh (seen once in ``test_flink_streaming_job_killed_mid_stream_
resumes_without_loss``). With redistribution the read therefore holds each finalized
bundle's offsets until the next round of finalizations, i.e. the next completed
checkpoint, whose barrier passed the read after that bundle (``veil.pipelines.runners.
commit_lag_s``;
``veil.transforms.kafkaio.source._DeferredCommits``).
"""

from __future__ import annotations

import logging
from typing import Any

import apache_beam as beam
from apache_beam.coders import BooleanCoder
from apache_beam.options.pipeline_options import FlinkRunnerOptions, PipelineOptions
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec

from veil.pipelines.options import ConfigError

_LOGGER = logging.getLogger(__name__)

REDISTRIBUTE_CHOICES = ("auto", "on", "off")
FLINK_DEFAULT_MAX_PARALLELISM = 128  # Flink's default for parallelism <= 85


def check_redistribute(options: PipelineOptions, choice: str, runner: str, delivery: str) -> bool:
    """Whether to redistribute; raises ``ConfigError`` where it would lose records.

    ``auto``: on Flink at a parallelism other than 1 (unset: the cluster's default).
    """
    if choice not in REDISTRIBUTE_CHOICES:
        raise ConfigError(f"--veil_redistribute must be one of {', '.join(REDISTRIBUTE_CHOICES)}")
    if choice == "off":
        return False
    flink = runner == "FlinkRunner"
    if choice == "auto":
        if not flink or delivery != "at_least_once":
            return False
        return options.view_as(FlinkRunnerOptions).parallelism != 1
    if not flink:
        raise ConfigError(
            f"--veil_redistribute on needs the FlinkRunner: {runner} would commit source "
            "offsets before the redistributed records were written"
        )
    if delivery != "at_least_once":
        raise ConfigError("--veil_redistribute on needs --veil_delivery at_least_once")
    unaligned = options.get_all_options(retain_unknown_options=True).get(
        "unaligned_checkpoint_enabled"
    )
    if str(unaligned).lower() in ("true", "1"):
        raise ConfigError(
            "--veil_redistribute with unaligned checkpoints would commit offsets of records "
            "still in flight: drop --unaligned_checkpoint_enabled"
        )
    return True


# --- Flink's key-group assignment, for VarIntCoder keys below 128 (one byte) ------------


def _int32(x: int) -> int:
    x &= 0xFFFFFFFF
    return x - (1 << 32) if x & 0x80000000 else x


def _rotl32(x: int, r: int) -> int:
    x &= 0xFFFFFFFF
    return ((x << r) | (x >> (32 - r))) & 0xFFFFFFFF


def _flink_murmur(code: int) -> int:
    """``org.apache.flink.util.MathUtils.murmurHash(int)``."""
    code = (code * 0xCC9E2D51) & 0xFFFFFFFF
    code = _rotl32(code, 15)
    code = (code * 0x1B873593) & 0xFFFFFFFF
    code = _rotl32(code, 13)
    code = (code * 5 + 0xE6546B64) & 0xFFFFFFFF
    code ^= 4
    code ^= code >> 16
    code = (code * 0x85EBCA6B) & 0xFFFFFFFF
    code ^= code >> 13
    code = (code * 0xC2B2AE35) & 0xFFFFFFFF
    code ^= code >> 16
    code = _int32(code)
    if code >= 0:
        return code
    return -code if code != -(1 << 31) else 0


def flink_subtask(encoded_key: bytes, parallelism: int, max_parallelism: int) -> int:
    """The subtask Flink sends a key to: Beam keys a stateful stage by the
    ``ByteBuffer`` of the encoded key (``KvToByteBufferKeySelector``), whose
    ``hashCode`` goes through ``KeyGroupRangeAssignment``."""
    h = 1
    for b in reversed(encoded_key):
        h = _int32(31 * h + (b - 256 if b > 127 else b))
    key_group = _flink_murmur(h) % max_parallelism
    return key_group * parallelism // max_parallelism


def sink_slot(partition: int, parallelism: int, max_parallelism: int) -> int:
    """A key (0..127) that Flink sends to subtask ``partition % parallelism``."""
    if parallelism <= 1:
        return 0
    target = partition % parallelism
    for key in range(128):
        if flink_subtask(bytes([key]), parallelism, max_parallelism) == target:
            return key
    return partition % 128  # no one-byte key lands there: still one slot per partition


SLOT_TABLE_PARTITIONS = 512  # partitions beyond: slot = partition % 128 (still one each)


def sink_slots(options: PipelineOptions) -> dict:
    """``sink_slot`` of partitions 0..511 at this job's parallelism, computed once."""
    flink = options.view_as(FlinkRunnerOptions)
    parallelism = flink.parallelism if flink.parallelism and flink.parallelism > 0 else 1
    max_parallelism = flink.max_parallelism
    if not max_parallelism or max_parallelism <= 0:
        max_parallelism = FLINK_DEFAULT_MAX_PARALLELISM
    by_subtask = {}  # the first one-byte key of each subtask: sink_slot, in one scan
    for key in range(128):
        by_subtask.setdefault(flink_subtask(bytes([key]), parallelism, max_parallelism), key)
    if parallelism <= 1:
        by_subtask = {0: 0}
    return {p: by_subtask.get(p % parallelism, p % 128) for p in range(SLOT_TABLE_PARTITIONS)}


class _PinToSlotFn(beam.DoFn):
    """Passes ``(slot, write)`` through as ``write``; the declared state makes the
    runner key the stage by slot (Flink: ``keyBy``). The state is never touched."""

    _UNUSED = ReadModifyWriteStateSpec("keyed", BooleanCoder())

    def process(self, element, unused=beam.DoFn.StateParam(_UNUSED)):
        yield element[1]


class PinToSinkSlot(beam.PTransform):
    """Keys ``KafkaWrite``s by their source partition's sink slot, so that every write
    of one source partition (one audit chain) is produced by one subtask.

    Example::

        writes | PinToSinkSlot(sink_slots(options)) | WriteToKafka(config)
    """

    def __init__(self, slots: dict):
        super().__init__()
        self._slots = dict(slots)

    def expand(self, writes):
        slots = self._slots

        def slot(write):
            partition = write.source.partition if write.source is not None else 0
            return slots.get(partition, partition % 128), write

        return (
            writes
            | "KeyBySlot" >> beam.Map(slot).with_output_types(tuple[int, Any])
            | "Pin" >> beam.ParDo(_PinToSlotFn())
        )
