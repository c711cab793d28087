"""Deferred offset commits behind a redistribution (``_DeferredCommits``).

Beam's Flink operator finalizes every outstanding bundle when a checkpoint completes,
also bundles that finished after that checkpoint's barrier. Behind a redistribution
their records may not be written yet, so their offsets wait for the next round of
finalizations (the next completed checkpoint)."""

from __future__ import annotations

from veil.transforms.kafkaio.source import _DeferredCommits

P0, P1 = ("raw", 0), ("raw", 1)


def _finalize(commits, tp, offset, now):
    due = commits.finalized(tp, offset, now)
    commits.done(now + 0.01)
    return due


def test_a_round_commits_only_what_earlier_rounds_finalized():
    commits = _DeferredCommits(gap_s=1.0)
    # Checkpoint 1 completes: two bundles are finalized together. Either may have
    # finished after the checkpoint's barrier, so nothing is committed yet.
    assert _finalize(commits, P0, 10, now=100.0) == {}
    assert _finalize(commits, P1, 7, now=100.05) == {}
    # Checkpoint 2, an interval later: its barrier passed the read after both.
    assert _finalize(commits, P0, 20, now=102.0) == {P0: 10, P1: 7}
    # Checkpoint 3: the bundle finalized with checkpoint 2.
    assert _finalize(commits, P1, 9, now=104.0) == {P0: 20}
    assert _finalize(commits, P0, 25, now=104.02) == {}


def test_a_slow_round_is_still_one_round():
    """Finalizations closer together than the gap belong to one round, however long
    the round lasts in total: none of them commits another of the same round."""
    commits = _DeferredCommits(gap_s=1.0)
    now = 50.0
    for offset in range(1, 40):
        assert _finalize(commits, P0, offset, now) == {}
        now += 0.3  # 39 finalizations over ~12 s, never 1 s apart
    assert _finalize(commits, P1, 3, now + 5) == {P0: 39}


def test_a_partition_commits_its_highest_offset_of_the_round():
    commits = _DeferredCommits(gap_s=0.5)
    _finalize(commits, P0, 30, now=1.0)
    _finalize(commits, P0, 12, now=1.1)  # an older bundle's finalization, later
    assert _finalize(commits, P1, 1, now=3.0) == {P0: 30}
