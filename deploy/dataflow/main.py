"""Dataflow Flex Template entry point (``FLEX_TEMPLATE_PYTHON_PY_FILE``).

The template launcher runs ``python main.py --veil_...=... --runner=DataflowRunner ...``
with the job's parameters. It calls ``veil.pipelines.sanitize.run`` with ``wait=False``:
a Flex Template launcher must exit once the job is submitted (Google's Flex Template
docs: do not call ``wait_until_finish``), and a streaming job never finishes.

Streaming follows ``--veil_read_mode`` (``veil.pipelines.runners``): an unbounded read
is submitted as a streaming job. (Beam's ``--streaming`` is a bare switch; a template
parameter ``streaming=true`` would reach Beam as ``--streaming=true``, which its parser
rejects.)
"""

from __future__ import annotations

import logging
import sys

from veil.pipelines.options import ConfigError
from veil.pipelines.sanitize import run
from veil.transforms.classification import PolicyError


def main(argv=None) -> int:
    logging.getLogger().setLevel(logging.INFO)
    # kafka-python narrates every connection at INFO; keep its warnings only.
    logging.getLogger("kafka").setLevel(logging.WARNING)
    try:
        run(sys.argv[1:] if argv is None else argv, wait=False)
    except (ConfigError, PolicyError) as exc:
        # One line, shown in the launcher log: the message names the flag.
        print(f"veil: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
