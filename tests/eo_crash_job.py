"""An exactly-once copy job that can SIGKILL itself in the middle of a transaction.

    python tests/eo_crash_job.py BOOTSTRAP IN_TOPIC OUT_TOPIC GROUP [CRASH_AT]

Reads IN_TOPIC (bounded) with ``ReadFromKafka(exactly_once=True)`` and writes each
record's value to OUT_TOPIC through ``WriteToKafka(delivery="exactly_once")``, bundles of
5 records. With CRASH_AT, the CRASH_AT-th element makes sure the writes before it are on
the broker (flushes the open transactions) and SIGKILLs the process: a crash after
records were written and before their transaction was committed.
"""

from __future__ import annotations

import os
import signal
import sys

import apache_beam as beam
from veil_testing import beam_pipeline

from veil.transforms.kafkaio import ReadFromKafka, WriteToKafka, transactions
from veil.transforms.records import KafkaWrite


class CrashAt(beam.DoFn):
    def __init__(self, group: str, crash_at: int):
        self._group = group
        self._crash_at = crash_at

    def setup(self):
        self._seen = 0

    def process(self, write):
        self._seen += 1
        if self._crash_at and self._seen == self._crash_at:
            for partition in range(16):  # the writes so far: on the broker, uncommitted
                txn = transactions.lookup(self._group, write.source.topic, partition)
                if txn is not None and txn.is_open:
                    txn.flush(30)
            os.kill(os.getpid(), signal.SIGKILL)
        yield write


def main(bootstrap: str, in_topic: str, out_topic: str, group: str, crash_at: int = 0) -> None:
    config = {"bootstrap_servers": bootstrap}
    with beam_pipeline() as p:
        (
            p
            | ReadFromKafka(
                config,
                [in_topic],
                group_id=group,
                bounded=True,
                max_records_per_bundle=5,
                exactly_once=True,
            )  # fmt: skip
            | beam.Map(lambda m: KafkaWrite(out_topic, m.key or b"", m.value, (), m.source))
            | beam.ParDo(CrashAt(group, crash_at))
            | WriteToKafka(config, delivery="exactly_once", group_id=group)
        )


if __name__ == "__main__":
    args = sys.argv[1:]
    main(*args[:4], *(int(a) for a in args[4:5]))
