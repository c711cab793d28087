"""Deferred offset commits behind a redistribution (``_DeferredCommits``).

Beam's Flink operator finalizes every outstanding bundle when a checkpoint completes,
also bundles that finished after that checkpoint's barrier. Behind a redistribution
their records may not be written yet, so their offsets wait for the partition's next
round of finalizations (the next completed checkpoint of the subtask reading it)."""

from __future__ import annotations

from veil.transforms.kafkaio.source import _DeferredCommits, deferred_commits

P0, P1 = ("raw", 0), ("raw", 1)


def _finalize(commits, tp, offset, now):
    due = commits.finalized(tp, offset, now)
    commits.done(tp, now + 0.01)
    return due


def test_a_round_commits_only_what_the_partitions_earlier_rounds_finalized():
    commits = _DeferredCommits(gap_s=1.0)
    # Checkpoint 1 completes: bundles of both partitions are finalized. Either may have
    # finished after the checkpoint's barrier, so nothing is committed yet.
    assert _finalize(commits, P0, 10, now=100.0) is None
    assert _finalize(commits, P1, 7, now=100.05) is None
    # Checkpoint 2, an interval later: its barrier passed the read after both.
    assert _finalize(commits, P0, 20, now=102.0) == 10
    assert _finalize(commits, P1, 9, now=102.02) == 7
    # Checkpoint 3: the bundles finalized with checkpoint 2.
    assert _finalize(commits, P1, 9, now=104.0) == 9
    assert _finalize(commits, P0, 25, now=104.02) == 20


def test_another_partitions_round_proves_nothing():
    """Partitions read by different subtasks are notified separately (one may lag
    seconds behind while its task finishes a bundle): rounds are per partition."""
    commits = _DeferredCommits(gap_s=1.0)
    assert _finalize(commits, P0, 10, now=100.0) is None
    assert _finalize(commits, P1, 5, now=102.5) is None  # P1's subtask, same checkpoint
    assert _finalize(commits, P0, 12, now=102.6) == 10  # P0's own next round


def test_a_slow_round_is_still_one_round():
    """Finalizations closer together than the gap belong to one round, however long
    the round lasts in total: none of them commits another of the same round."""
    commits = _DeferredCommits(gap_s=1.0)
    now = 50.0
    for offset in range(1, 40):
        assert _finalize(commits, P0, offset, now) is None
        now += 0.3  # 39 finalizations over ~12 s, never 1 s apart
    assert _finalize(commits, P0, 40, now + 5) == 39


def test_a_partition_commits_its_highest_offset_of_the_round():
    commits = _DeferredCommits(gap_s=0.5)
    _finalize(commits, P0, 30, now=1.0)
    _finalize(commits, P0, 12, now=1.1)  # an older bundle's finalization, later
    assert _finalize(commits, P0, 31, now=3.0) == 30


def test_one_instance_per_process_and_group():
    """The SDK harness spreads a stage's bundles over several DoFn instances: they
    share the rounds."""
    assert deferred_commits("g", 1.0) is deferred_commits("g", 1.0)
    assert deferred_commits("g", 1.0) is not deferred_commits("other", 1.0)
