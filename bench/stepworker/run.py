"""Step-worker benchmark: the cost of a preemptible text/structured step.

    .venv/bin/python bench/stepworker/run.py [--records 400]

Runs the same records through the text and structured handlers in process (the
reference: what the step cost before) and through ``StepRunner`` (the handler in a child
process killed at the time limit), in the same run, and prints per-record medians, the
ratio and the added µs; then the cost of a timeout (kill + restart with model load) and
the child's resident memory.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from veil.transforms.classification import load_policy
from veil.transforms.privacy import PrivacyError
from veil.transforms.records import Source, WorkItem
from veil.transforms.step_worker import StepRunner
from veil.transforms.structured import StructuredHandler
from veil.transforms.text import TextHandler

TEXTS = [
    "Call John Smith at 212-555-0175 or write to john.smith@example.com.",
    "Ticket 4411 closed; no customer data attached.",
    "Card 4111 1111 1111 1111 was charged by Maria Garcia in Berlin on 3 March.",
    "Patient Ann Lee (MRN 99812) was seen for asthma; follow up in two weeks.",
]
DOCS = [
    {"name": "John Smith", "email": "john.smith@example.com", "n": 3},
    {"order": 17, "items": [{"sku": "A-1", "qty": 2}], "note": "leave at door"},
]


def _item(i, payload, content_type):
    record = {
        "record_id": f"{i:032x}",
        "subject_key": "alice",
        "modality": None,
        "content_type": content_type,
        "payload": payload,
        "attributes": {},
        "event_time": None,
    }
    return WorkItem(Source("bench", 0, i), record)


def _items(kind, n):
    if kind == "text":
        return [_item(i, TEXTS[i % len(TEXTS)].encode(), "text/plain") for i in range(n)]
    return [
        _item(i, json.dumps(DOCS[i % len(DOCS)]).encode(), "application/json") for i in range(n)
    ]


def _rss_mb(pid):
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=400)
    args = parser.parse_args()
    policy = load_policy(None)
    results = {}
    for kind, handler in (("text", TextHandler(policy)), ("structured", StructuredHandler(policy))):
        model = handler.load()
        inproc = []
        for item in _items(kind, args.records):
            t = time.perf_counter()
            handler.process(model, item)
            inproc.append(time.perf_counter() - t)
        runner = StepRunner(handler)
        t = time.perf_counter()
        runner.start()
        startup = time.perf_counter() - t
        worker = []
        for item in _items(kind, args.records):
            t = time.perf_counter()
            runner.run(item, 10.0)
            worker.append(time.perf_counter() - t)
        rss = _rss_mb(runner._child.proc.pid)
        # One timeout: the record's limit, then the next record waits for the restart.
        slow = _item(0, b"x", "text/plain")
        t = time.perf_counter()
        try:
            runner.run(slow, 0.0)
        except PrivacyError:
            pass
        runner.run(_items(kind, 1)[0], 120.0)
        restart = time.perf_counter() - t
        runner.close()
        a, b = statistics.median(inproc) * 1e6, statistics.median(worker) * 1e6
        results[kind] = {
            "in_process_us": round(a, 1),
            "step_worker_us": round(b, 1),
            "ratio": round(b / a, 2),
            "added_us": round(b - a, 1),
            "startup_s": round(startup, 2),
            "restart_after_timeout_s": round(restart, 2),
            "child_rss_mb": round(rss, 1),
        }
        print(kind, json.dumps(results[kind]))
    print(json.dumps(results))


if __name__ == "__main__":
    main()
