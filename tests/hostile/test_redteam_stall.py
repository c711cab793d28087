"""Red team: a record that would stall its step is dead-lettered within the step time
limit and the records behind it flow (issue 18 item 5 / issue 17 item 4).

Two hostile detectors, both running inside ``re`` with the GIL held, which no thread or
timer in the Beam worker could interrupt:

* the policy's own pattern: a structured field rule ``match: '^(a+)+$'`` (a user-supplied
  regex) against a JSON key ``"a" * 40 + "!"``;
* an injected slow detector in the text step (``redteam_targets``).

The step worker (``veil.transforms.step_worker``) is killed at the limit.
"""

from __future__ import annotations

import json
import time

import pytest
from redteam import by_topic, leaks, policy_file, run_graph
from redteam_targets import SlowDetectorTextHandler
from veil_testing import framed, media_record, message

from veil.transforms.classification import load_policy
from veil.transforms.privacy import PrivacyError
from veil.transforms.records import ErrorCode, Source, WorkItem
from veil.transforms.step_worker import StepRunner

LIMIT_S = 3.0
KILL_SLACK_S = 3.0  # kill + reply; ~0.1 s idle, more when the CI box is loaded
EVIL_KEY = "a" * 40 + "!"


def _evil_policy(policy):
    policy["structured"]["fields"].insert(0, {"match": "^(a+)+$", "entity": "PERSON"})


def _json(body, rid):
    return media_record(rid, "alice", json.dumps(body).encode(), content_type="application/json")


@pytest.fixture(scope="module")
def stalled_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("stall")
    policy = policy_file(tmp, _evil_policy)
    records = [_json({EVIL_KEY: "john.smith@example.com"}, "evil-1")]
    records += [_json({"email": f"user{i}@example.com", "n": i}, f"ok-{i}") for i in range(5)]
    records.append(_json({EVIL_KEY: "jane.doe@example.com"}, "evil-2"))
    records += [
        media_record(f"t-{i}", "alice", b"Mail john.smith@example.com now.") for i in range(3)
    ]
    msgs = [message(framed(r), offset=i, key=b"alice") for i, r in enumerate(records)]
    writes, seconds = run_graph(
        msgs, f"--veil_policy={policy}", f"--veil_step_time_limit_s={LIMIT_S}", tmp=tmp
    )
    return writes, seconds


def test_stalling_records_dead_lettered_with_timeout(stalled_run):
    writes, _ = stalled_run
    dead = by_topic(writes, ".dead-letter")
    assert sorted((d.record["stage"], d.record["error_code"]) for d in dead) == [
        ("structured", "PRIVACY_STEP_TIMEOUT"),
        ("structured", "PRIVACY_STEP_TIMEOUT"),
    ]
    for value in ("john.smith@example.com", "jane.doe@example.com", "user0@example.com"):
        assert leaks(writes, value) == []


def test_records_behind_them_flow(stalled_run):
    writes, _ = stalled_run
    assert len(by_topic(writes, ".sanitized.structured")) == 5
    assert len(by_topic(writes, ".sanitized.text")) == 3


def test_run_bounded_by_the_limit(stalled_run):
    """Two stalls cost about two limits plus two worker restarts, not hours."""
    _, seconds = stalled_run
    assert seconds < 2 * LIMIT_S + 90, seconds


def test_injected_slow_detector_preempted_and_next_record_flows():
    runner = StepRunner(SlowDetectorTextHandler(load_policy(None)))
    runner.start()
    try:
        evil = WorkItem(Source("veil.raw", 0, 0), media_record("e", "a", EVIL_KEY.encode()))
        started = time.monotonic()
        with pytest.raises(PrivacyError) as caught:
            runner.run(evil, LIMIT_S)
        elapsed = time.monotonic() - started
        assert caught.value.code == ErrorCode.PRIVACY_STEP_TIMEOUT
        assert LIMIT_S <= elapsed < LIMIT_S + KILL_SLACK_S, elapsed
        assert evil.sanitized_payload is None and evil.classification is None
        ok = WorkItem(
            Source("veil.raw", 0, 1), media_record("o", "a", b"Call john.smith@example.com.")
        )
        counts = runner.run(ok, 120.0)  # includes the new worker's start-up
        assert counts == {"EMAIL_ADDRESS": 1}
        assert b"john.smith@example.com" not in ok.sanitized_payload
        assert runner.restarts == 1
    finally:
        runner.close()


@pytest.mark.parametrize(
    "payload",
    [
        "a%" * 100000,  # once 28 s in the e-mail pattern
        " ".join(f"Word{i}x." for i in range(25000)),  # 25k capitalised one-word sentences
    ],
    ids=["email-quadratic", "ner-per-sentence"],
)
def test_issue_inputs_bounded_by_the_limit(payload):
    """The issue's 200 KB stalling inputs: whatever the detectors cost, the step ends
    within the limit (sanitized, or dead-lettered PRIVACY_STEP_TIMEOUT)."""
    from veil.transforms.text import TextHandler

    policy = load_policy(None)
    runner = StepRunner(TextHandler(policy))
    runner.start()
    try:
        item = WorkItem(Source("veil.raw", 0, 0), media_record("s", "a", payload.encode()))
        started = time.monotonic()
        try:
            runner.run(item, LIMIT_S)
            outcome = "sanitized"
        except PrivacyError as exc:
            outcome = exc.code
        elapsed = time.monotonic() - started
        assert outcome in ("sanitized", ErrorCode.PRIVACY_STEP_TIMEOUT, ErrorCode.PAYLOAD_TOO_LARGE)
        assert elapsed < LIMIT_S + KILL_SLACK_S, elapsed
    finally:
        runner.close()
