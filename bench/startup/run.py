"""Start-up benchmark: CPU seconds of `veil sanitize` on a one-line text file.

    .venv/bin/python bench/startup/run.py [--runs 5] [--reference /other/venv/bin/veil]

Runs ``veil sanitize --out DIR one.txt`` (a fresh DIR each time) and reports, per run,
the CPU seconds (user + sys) of every process of the run's tree: the parent (the Beam
pipeline on the FnApiRunner) and its step-worker child (the text step's handler and
spaCy). Each process's CPU comes from ``/proc/<pid>/stat``, polled every 5 ms while the
run lasts (a process that has exited but is not reaped yet still shows its totals
there); the sum over the tree is printed next to ``getrusage(RUSAGE_CHILDREN)``, which is
what ``/usr/bin/time`` reports and counts only the waited-for descendants. With
``--reference`` (another checkout's ``veil``, e.g. the main branch's venv) both are run
alternately, in the same run, and the ratio of the medians is printed. Prints the load
average before and after: the box is shared, and CPU seconds grow under load.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TEXT = "Contact John Smith at john.smith@example.com or +1 415 555 0100 about the invoice.\n"
_TICK = os.sysconf("SC_CLK_TCK")


def _snapshot(root: int, seen: dict) -> None:
    procs = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        procs[int(entry)] = (int(fields[1]), int(fields[11]) + int(fields[12]))
    tree, grew = {root}, True
    while grew:
        grew = False
        for pid, (ppid, _) in procs.items():
            if ppid in tree and pid not in tree:
                tree.add(pid)
                grew = True
    for pid in tree:
        if pid in procs:
            kind = seen.get(pid, (None, 0))[0]
            if kind is None:
                try:
                    cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
                except OSError:
                    cmd = b""
                kind = "step-worker" if b"_serve" in cmd else "parent" if pid == root else "other"
            seen[pid] = (kind, procs[pid][1])


def one_run(veil: str, text_file: Path) -> dict:
    out = Path(tempfile.mkdtemp(prefix="veil-startup-")) / "out"
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.Popen(
        [veil, "sanitize", "--out", str(out), str(text_file)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    seen: dict = {}
    started = time.monotonic()
    while proc.poll() is None:
        _snapshot(proc.pid, seen)
        time.sleep(0.005)
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{veil} sanitize exited {proc.returncode}")
    sanitized = (out / text_file.name).read_text()
    if "John" in sanitized or "example.com" in sanitized:
        raise SystemExit("the output still holds PII")
    by_kind: dict = {}
    for kind, ticks in seen.values():
        by_kind[kind] = by_kind.get(kind, 0.0) + ticks / _TICK
    rusage = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"tree": sum(by_kind.values()), "rusage": rusage, "wall": wall, **by_kind}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--veil", default=str(Path(sys.executable).parent / "veil"))
    parser.add_argument("--reference", help="another veil executable, run alternately")
    args = parser.parse_args()
    text_file = Path(tempfile.mkdtemp(prefix="veil-startup-in-")) / "one.txt"
    text_file.write_text(TEXT)
    subjects = [("this tree", args.veil)] + ([("reference", args.reference)] * bool(args.reference))
    results: dict = {name: [] for name, _ in subjects}
    print(f"load average before: {os.getloadavg()}")
    for _ in range(args.runs):
        for name, veil in subjects:
            results[name].append(one_run(veil, text_file))
    print(f"load average after:  {os.getloadavg()}")
    keys = ("tree", "rusage", "parent", "step-worker", "wall")
    print(f"{'':12s}" + "".join(f"{k:>14s}" for k in keys) + "   (median of runs, seconds)")
    medians = {}
    for name, runs in results.items():
        medians[name] = {k: statistics.median(r.get(k, 0.0) for r in runs) for k in keys}
        print(f"{name:12s}" + "".join(f"{medians[name][k]:14.2f}" for k in keys))
        for r in runs:
            print(f"{'':12s}" + "".join(f"{r.get(k, 0.0):14.2f}" for k in keys))
    if args.reference:
        ratio = medians["this tree"]["tree"] / medians["reference"]["tree"]
        print(f"CPU-s ratio this tree / reference (whole tree): {ratio:.2f}")


if __name__ == "__main__":
    main()
