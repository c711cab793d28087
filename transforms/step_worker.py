"""A privacy step that can be preempted: the handler runs in a worker process that is
killed when a record goes over the step's time limit.

The text and structured steps run Python and C code (regular expressions, spaCy, the
policy's own field-name patterns) that a hostile record can keep busy for minutes: a
catastrophic-backtracking pattern holds the GIL inside ``re``, so no thread, signal or
timer in the Beam worker can interrupt it. Here the handler runs in a child process
(its model loaded there once, at start-up); the parent waits for the reply until the
record's deadline and otherwise kills the child, dead-letters the record
``PRIVACY_STEP_TIMEOUT`` and starts a fresh child for the next record. A child that dies
costs one ``PRIVACY_STEP_FAILED`` dead letter, never the Beam worker.

Trust goes one way, as in ``veil.transforms.sandbox``: the parent sends the handler and
each ``WorkItem`` pickled (its own objects); the child answers with a JSON header and
raw byte strings, which the parent checks field by field and never unpickles. Error
codes are accepted only from ``ErrorCode``.

Costs (see SECURITY.md "Side doors"): one extra process per step and worker process with
its own copy of the model; per record a pipe round trip; after a timeout the next record
waits for the new child's start-up (model load).

Example::

    runner = StepRunner(TextHandler(policy), startup_s=120)
    counts = runner.run(item, time_limit_s=10)   # or raises PrivacyError(code)
"""

from __future__ import annotations

import base64
import collections
import dataclasses
import json
import logging
import os
import select
import struct
import subprocess
import sys
import threading
import time
from typing import NamedTuple

from veil.transforms.records import AuditStep, Classification, ErrorCode, PrivacyError, WorkItem

_LOGGER = logging.getLogger(__name__)

_LEN = struct.Struct(">I")
MAX_REPLY_BYTES = 256 << 20
# Records written ahead of the child: below this many, ``submit`` writes at once.
_LOW_WATER = 4
_KNOWN_CODES = frozenset(
    v for k, v in vars(ErrorCode).items() if k.isupper() and isinstance(v, str)
)


class StepWorkerError(Exception):
    """The worker could not be started or broke the protocol (content-free)."""


# --- framing -----------------------------------------------------------------------------


def _write_frame(fd: int, data: bytes) -> None:
    view = memoryview(_LEN.pack(len(data)) + data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _read_exact(fd: int, size: int, deadline: float | None) -> bytes:
    chunks, left = [], size
    while left:
        if deadline is not None:
            wait = deadline - time.monotonic()
            if wait <= 0 or not select.select([fd], [], [], wait)[0]:
                raise TimeoutError()
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            raise EOFError()
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _read_frame(fd: int, deadline: float | None, limit: int = MAX_REPLY_BYTES) -> bytes:
    (size,) = _LEN.unpack(_read_exact(fd, _LEN.size, deadline))
    if size > limit:
        raise ValueError("frame too large")
    return _read_exact(fd, size, deadline)


# --- the handler's journey ---------------------------------------------------------------

# The first byte of the handler frame: how the rest was pickled.
_PLAIN = b"P"  # the standard library's pickle: classes by reference, no Beam needed
_BEAM = b"B"  # Beam's pickler (dill), for what plain pickle cannot carry


def dump_handler(handler) -> bytes:
    """``handler`` as the child's first frame.

    Plain pickle when it can carry the handler (module-level classes, policies, compiled
    patterns: every handler of the graph), so the child unpickles it without importing
    Beam; otherwise (a lambda, a local class, anything defined in ``__main__``, which
    the child's ``__main__`` does not hold) Beam's pickler, as before.
    """
    import pickle
    import pickletools

    try:
        blob = pickle.dumps(handler, protocol=5)
    except Exception:  # noqa: BLE001 - whatever it is, Beam's pickler gets its turn
        blob = None
    if blob is not None and not any(arg == "__main__" for _, arg, _ in pickletools.genops(blob)):
        return _PLAIN + blob
    from apache_beam.internal import pickler

    return _BEAM + pickler.dumps(handler)


def load_handler(frame: bytes):
    """The handler from ``dump_handler``'s frame (in the child)."""
    import pickle

    kind, blob = frame[:1], frame[1:]
    if kind == _PLAIN:
        return pickle.loads(blob)
    if kind == _BEAM:
        from apache_beam.internal import pickler

        return pickler.loads(blob)
    raise ValueError("unknown handler encoding")


# --- the child ---------------------------------------------------------------------------


def _b64(data) -> str | None:
    return None if data is None else base64.b64encode(bytes(data)).decode("ascii")


def _reply(item: WorkItem, counts: dict, first_new_step: int) -> dict:
    classification = item.classification
    return {
        "ok": True,
        "counts": {str(k): int(v) for k, v in counts.items()},
        "payload": _b64(item.sanitized_payload),
        "content_type": item.sanitized_content_type,
        "modality": item.modality,
        "classification": None if classification is None else classification.as_dict(),
        "pending": [[str(path), _b64(original)] for path, original in item.pending_protection],
        "trail": [dataclasses.asdict(step) for step in item.trail[first_new_step:]],
    }


def _serve() -> None:  # pragma: no cover - runs in the child process
    """The child's loop: load the handler's model once, then one record per request."""
    import pickle

    # Not ``veil.transforms.privacy``: that module is the Beam transform, and importing
    # Beam would cost this process about a CPU-second for nothing.
    from veil.transforms.privacy_handler import settle

    rfd, wfd = sys.stdin.fileno(), sys.stdout.fileno()
    # Nothing the handler prints may reach the parent's channel.
    devnull = os.open(os.devnull, os.O_WRONLY)
    rfd, wfd = os.dup(rfd), os.dup(wfd)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    handler = load_handler(_read_frame(rfd, None, 1 << 30))
    model = handler.load()
    _write_frame(wfd, json.dumps({"ready": True, "detectors": handler.detectors(model)}).encode())
    while True:
        try:
            item = pickle.loads(_read_frame(rfd, None, 1 << 30))
        except EOFError:
            return
        first = len(item.trail)
        started = time.monotonic()
        try:
            reply = _reply(item, settle(item, handler.process(model, item)), first)
        except PrivacyError as exc:
            reply = {"ok": False, "code": exc.code, "error_class": None}
        except Exception as exc:  # the class name only: its text may hold content
            reply = {"ok": False, "code": None, "error_class": type(exc).__name__}
        reply["elapsed_ms"] = (time.monotonic() - started) * 1000
        _write_frame(wfd, json.dumps(reply).encode())


# --- the parent --------------------------------------------------------------------------


def _bytes(value) -> bytes | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError("not base64 text")
    return base64.b64decode(value, validate=True)


def _str(value) -> str | None:
    if value is not None and not isinstance(value, str):
        raise TypeError("not text")
    return value


def _apply(item: WorkItem, reply: dict) -> dict:
    """Copies a checked reply onto ``item``; returns the entity counts."""
    counts = {str(k): int(v) for k, v in dict(reply["counts"]).items()}
    classification = reply["classification"]
    if classification is not None:
        classification = Classification(
            sensitivity=str(classification["sensitivity"]),
            regimes=[str(r) for r in classification["regimes"]],
            entity_counts={str(k): int(v) for k, v in classification["entity_counts"].items()},
        )
    pending = [(str(path), _bytes(original)) for path, original in reply["pending"]]
    fields = {f.name for f in dataclasses.fields(AuditStep)}
    steps = [AuditStep(**{k: v for k, v in dict(s).items() if k in fields}) for s in reply["trail"]]
    item.sanitized_payload = _bytes(reply["payload"])
    item.sanitized_content_type = _str(reply["content_type"])
    item.modality = _str(reply["modality"]) or item.modality
    item.classification = classification
    item.pending_protection = pending
    item.trail.extend(steps)
    return counts


class _Child:
    """One child process: spawned at once; its pipes non-blocking once the handler is
    sent, with a read buffer (replies arrive in order, several at a time) and a write
    buffer (records queued ahead of the one being processed)."""

    def __init__(self, handler_blob: bytes, startup_s: float):
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        # One record at a time: OpenBLAS's thread pool (started, one thread per core, when
        # numpy loads) only costs the child CPU at start-up (~0.04 CPU-s here).
        env.setdefault("OPENBLAS_NUM_THREADS", "1")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from veil.transforms.step_worker import _serve; _serve()"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
            close_fds=True,
        )
        self.detectors: dict | None = None
        self.ready_at: float | None = None
        self.last_reply_at = 0.0
        self.startup_deadline = time.monotonic() + startup_s
        self.rfd, self.wfd = self.proc.stdout.fileno(), self.proc.stdin.fileno()
        self.rbuf = bytearray()
        self.wbuf = bytearray()
        self.queued = 0  # bytes of record frames queued for this child
        self.written = 0  # ... and written to its pipe
        try:
            _write_frame(self.wfd, handler_blob)
            os.set_blocking(self.wfd, False)
            os.set_blocking(self.rfd, False)
        except OSError:
            self.kill()
            raise StepWorkerError("STEP_WORKER_UNAVAILABLE") from None

    def flush(self) -> None:
        """Writes what the pipe takes now; never blocks."""
        while self.wbuf:
            try:
                written = os.write(self.wfd, self.wbuf)
            except BlockingIOError:
                return
            del self.wbuf[:written]
            self.written += written

    def fill(self) -> bool:
        """Reads what the pipe holds now; False at end of file. Never blocks."""
        while True:
            try:
                chunk = os.read(self.rfd, 1 << 20)
            except BlockingIOError:
                return True
            if not chunk:
                return False
            self.rbuf += chunk
            if len(chunk) < 1 << 20:
                return True

    def frame(self) -> bytes | None:
        """The next complete reply frame in the read buffer, or None."""
        if len(self.rbuf) < _LEN.size:
            return None
        (size,) = _LEN.unpack_from(self.rbuf)
        if size > MAX_REPLY_BYTES:
            raise ValueError("frame too large")
        if len(self.rbuf) < _LEN.size + size:
            return None
        data = bytes(self.rbuf[_LEN.size : _LEN.size + size])
        del self.rbuf[: _LEN.size + size]
        return data

    def accept_ready(self, data: bytes) -> None:
        ready = json.loads(data)
        if not isinstance(ready, dict) or ready.get("ready") is not True:
            raise ValueError("not ready")
        self.detectors = {str(k): str(v) for k, v in dict(ready["detectors"]).items()}
        self.ready_at = self.last_reply_at = time.monotonic()

    def wait(self, deadline: float | None) -> None:
        """Blocks until the child has written something (or takes more), or ``deadline``."""
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        select.select([self.rfd], [self.wfd] if self.wbuf else [], [], timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                stream.close()
            except OSError:
                pass


class _InFlight:
    """A record handed to the step worker, until its reply (or its time-out)."""

    __slots__ = ("token", "item", "frame", "end", "sent_at")

    def __init__(self, token, item: WorkItem, frame: bytes):
        self.token, self.item, self.frame = token, item, frame
        self.end = 0  # its last byte's position in the current child's input
        self.sent_at: float | None = None  # when the current child could read it all


class StepOutcome(NamedTuple):
    """One record's result: ``error`` None and ``counts`` set, or the error to route."""

    token: object
    item: WorkItem
    counts: dict | None
    error: Exception | None
    elapsed_ms: float | None


class StepRunner:
    """Runs one handler in a child process under a per-record deadline.

    Records are pipelined: ``submit`` queues a record (up to ``window`` are in flight, so
    the child works while the Beam worker does everything else) and ``collect`` returns
    the outcomes that are in, in submission order. Each record still has the child to
    itself for at most the limit: its clock starts when the child could begin it (its
    bytes written, the previous reply in, the child started), and a record over it
    kills the child; the record is dead-lettered ``PRIVACY_STEP_TIMEOUT`` and the records
    queued behind it go to a fresh child, so a hostile record never takes its neighbours
    down. ``run`` is the one-record form.
    """

    def __init__(self, handler, startup_s: float = 300.0, window: int = 32):
        self._blob = dump_handler(handler)
        self._startup_s = startup_s
        self._child: _Child | None = None
        self._lock = threading.Lock()
        self._inflight: collections.deque = collections.deque()
        self.window = window
        self.restarts = 0

    @property
    def detectors(self) -> dict | None:
        """The running child's detectors (None until one has started)."""
        child = self._child
        return None if child is None or child.detectors is None else dict(child.detectors)

    @property
    def pending(self) -> int:
        """Records submitted whose outcome has not been collected."""
        return len(self._inflight)

    def launch(self) -> None:
        """Spawns the child without waiting for its model load (steps start in parallel)."""
        with self._lock:
            if self._child is None:
                self._spawn()

    def start(self) -> dict:
        """Starts the child and waits for its model load; returns its detectors."""
        with self._lock:
            if self._child is None:
                self._spawn()
            child = self._child
            try:
                while child.detectors is None:
                    if not child.fill():
                        raise EOFError()
                    data = child.frame()
                    if data is not None:
                        child.accept_ready(data)
                        break
                    if time.monotonic() > child.startup_deadline:
                        raise TimeoutError()
                    child.flush()
                    child.wait(child.startup_deadline)
            except (OSError, EOFError, TimeoutError, ValueError, KeyError, TypeError):
                child.kill()
                self._child = None
                raise StepWorkerError("STEP_WORKER_UNAVAILABLE") from None
            return dict(child.detectors)

    def run(self, item: WorkItem, time_limit_s: float) -> dict:
        """Processes ``item`` in the child; returns entity counts.

        Raises ``PrivacyError`` with ``PRIVACY_STEP_TIMEOUT`` (over the limit: the child
        is killed), ``PRIVACY_STEP_FAILED`` (the child died or broke the protocol) or the
        handler's own code; ``StepFailed`` for another exception in the handler.
        """
        self.submit(item)
        outcomes = self.collect(time_limit_s, until=0)
        outcome = next(o for o in outcomes if o.item is item)
        if outcome.error is not None:
            raise outcome.error
        return outcome.counts

    def submit(self, item: WorkItem, token=None) -> None:
        """Queues ``item`` for the child (written at once as far as the pipe takes it)."""
        import pickle

        blob = pickle.dumps(item, protocol=5)
        entry = _InFlight(token, item, _LEN.pack(len(blob)) + blob)
        with self._lock:
            self._inflight.append(entry)
            child = self._child
            if child is not None:
                self._queue(child, entry)
                # Written at once only when the child is about to run out of work: each
                # write lets other threads take the GIL, so records go in batches.
                if sum(1 for e in self._inflight if e.sent_at is not None) < _LOW_WATER:
                    try:
                        child.flush()
                    except OSError:  # the child died: ``collect`` finds out, replaces it
                        return
                    self._mark_sent(child)

    def collect(self, time_limit_s: float, until: int | None = None) -> list:
        """Outcomes (``StepOutcome``) of the records that are done, in submission order.

        ``until=None``: only what is in now (never blocks, but a record past its limit
        is timed out here); ``until=n``: blocks until at most ``n`` records are in flight.
        """
        out: list = []
        with self._lock:
            while self._inflight:
                if self._child is None:
                    try:
                        self._spawn()
                    except StepWorkerError:
                        self._fail_head(out, ErrorCode.PRIVACY_STEP_FAILED)
                        continue
                child = self._child
                try:
                    child.flush()
                    alive = child.fill()
                    self._mark_sent(child)
                    while self._inflight:
                        data = child.frame()
                        if data is None:
                            break
                        if child.detectors is None:
                            child.accept_ready(data)
                        else:
                            self._settle(child, data, out)
                    if not alive:
                        raise EOFError()
                except (OSError, EOFError, ValueError, KeyError, TypeError):
                    self._replace()  # died, or broke the protocol: the record it had fails
                    self._fail_head(out, ErrorCode.PRIVACY_STEP_FAILED)
                    continue
                if not self._inflight:
                    break
                now = time.monotonic()
                if child.detectors is None:  # start-up is not a record's time
                    if now > child.startup_deadline:
                        self._replace()
                        self._fail_head(out, ErrorCode.PRIVACY_STEP_FAILED)
                        continue
                    deadline = child.startup_deadline
                else:
                    head = self._inflight[0]
                    deadline = None
                    if head.sent_at is not None:
                        deadline = max(head.sent_at, child.last_reply_at) + time_limit_s
                        if now >= deadline:
                            self._replace()
                            self._fail_head(out, ErrorCode.PRIVACY_STEP_TIMEOUT)
                            continue
                if until is None or len(self._inflight) <= until:
                    break
                child.wait(deadline)
        return out

    def _spawn(self) -> None:
        self._child = child = _Child(self._blob, self._startup_s)
        for entry in self._inflight:  # records a killed child left: in order, again
            self._queue(child, entry)

    @staticmethod
    def _queue(child: _Child, entry: _InFlight) -> None:
        child.wbuf += entry.frame
        child.queued += len(entry.frame)
        entry.end, entry.sent_at = child.queued, None

    def _mark_sent(self, child: _Child) -> None:
        now = None
        for entry in self._inflight:
            if entry.sent_at is not None:
                continue
            if entry.end > child.written:
                break
            now = now or time.monotonic()
            entry.sent_at = now

    def _settle(self, child: _Child, data: bytes, out: list) -> None:
        """The head record's reply: checked field by field, never unpickled."""
        # Not JSON: a protocol break; the caller replaces the child and fails the head
        # record (this one, still in flight), so no record is left without an outcome.
        reply = json.loads(data)
        entry = self._inflight.popleft()
        started = max(entry.sent_at or 0.0, child.last_reply_at)
        child.last_reply_at = now = time.monotonic()
        elapsed = reply.get("elapsed_ms") if isinstance(reply, dict) else None
        if not isinstance(elapsed, (int, float)) or not 0 <= elapsed < 1e9:
            elapsed = (now - started) * 1000
        error: Exception | None = None
        counts = None
        try:
            if reply.get("ok") is True:
                counts = _apply(entry.item, reply)
            code = reply.get("code")
        except (AttributeError, KeyError, TypeError, ValueError):
            code, counts = None, None
        if counts is None:
            if code in _KNOWN_CODES:
                error = PrivacyError(code)
            else:
                error_class = reply.get("error_class") if isinstance(reply, dict) else None
                if not (isinstance(error_class, str) and error_class.isidentifier()):
                    error_class = "StepWorkerProtocolError"
                error = StepFailed(error_class[:64])
        out.append(StepOutcome(entry.token, entry.item, counts, error, float(elapsed)))

    def _fail_head(self, out: list, code: str) -> None:
        entry = self._inflight.popleft()
        out.append(StepOutcome(entry.token, entry.item, None, PrivacyError(code), None))

    def _replace(self) -> None:
        child, self._child = self._child, None
        if child is not None:
            child.kill()
            self.restarts += 1

    def close(self) -> None:
        with self._lock:
            child, self._child = self._child, None
        if child is not None:
            child.kill()


class StepFailed(Exception):
    """The handler raised in the child; ``error_class`` is its class name only."""

    def __init__(self, error_class: str):
        super().__init__(error_class)
        self.error_class = error_class
