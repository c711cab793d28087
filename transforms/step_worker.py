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

from veil.transforms.records import AuditStep, Classification, ErrorCode, WorkItem

_LOGGER = logging.getLogger(__name__)

_LEN = struct.Struct(">I")
MAX_REPLY_BYTES = 256 << 20
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

    from veil.transforms.privacy import PrivacyError, settle

    rfd, wfd = sys.stdin.fileno(), sys.stdout.fileno()
    # Nothing the handler prints may reach the parent's channel.
    devnull = os.open(os.devnull, os.O_WRONLY)
    rfd, wfd = os.dup(rfd), os.dup(wfd)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    from apache_beam.internal import pickler

    handler = pickler.loads(_read_frame(rfd, None, 1 << 30))
    model = handler.load()
    _write_frame(wfd, json.dumps({"ready": True, "detectors": handler.detectors(model)}).encode())
    while True:
        try:
            item = pickle.loads(_read_frame(rfd, None, 1 << 30))
        except EOFError:
            return
        first = len(item.trail)
        try:
            reply = _reply(item, settle(item, handler.process(model, item)), first)
        except PrivacyError as exc:
            reply = {"ok": False, "code": exc.code, "error_class": None}
        except Exception as exc:  # the class name only: its text may hold content
            reply = {"ok": False, "code": None, "error_class": type(exc).__name__}
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
    """One child process: spawned at once, its model load awaited by ``wait_ready``."""

    def __init__(self, handler_blob: bytes, startup_s: float):
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from veil.transforms.step_worker import _serve; _serve()"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
            close_fds=True,
        )
        self.detectors: dict | None = None
        self._deadline = time.monotonic() + startup_s
        try:
            _write_frame(self.proc.stdin.fileno(), handler_blob)
        except OSError:
            self.kill()
            raise StepWorkerError("STEP_WORKER_UNAVAILABLE") from None

    def wait_ready(self) -> dict:
        if self.detectors is not None:
            return self.detectors
        try:
            ready = json.loads(_read_frame(self.proc.stdout.fileno(), self._deadline))
            if not isinstance(ready, dict) or ready.get("ready") is not True:
                raise ValueError("not ready")
            self.detectors = {str(k): str(v) for k, v in dict(ready["detectors"]).items()}
        except (OSError, EOFError, TimeoutError, ValueError, KeyError, TypeError):
            self.kill()
            raise StepWorkerError("STEP_WORKER_UNAVAILABLE") from None
        return self.detectors

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                stream.close()
            except OSError:
                pass


class StepRunner:
    """Runs one handler in a child process, one record at a time, under a deadline."""

    def __init__(self, handler, startup_s: float = 300.0):
        from apache_beam.internal import pickler

        self._blob = pickler.dumps(handler)  # Beam's pickler: handlers hold policies
        self._startup_s = startup_s
        self._child: _Child | None = None
        self._lock = threading.Lock()
        self.restarts = 0

    def launch(self) -> None:
        """Spawns the child without waiting for its model load (steps start in parallel)."""
        with self._lock:
            if self._child is None:
                self._child = _Child(self._blob, self._startup_s)

    def start(self) -> dict:
        """Starts the child and waits for its model load; returns its detectors."""
        with self._lock:
            if self._child is None:
                self._child = _Child(self._blob, self._startup_s)
            try:
                return dict(self._child.wait_ready())
            except StepWorkerError:
                self._child = None
                raise

    def run(self, item: WorkItem, time_limit_s: float) -> dict:
        """Processes ``item`` in the child; returns entity counts.

        Raises ``PrivacyError`` with ``PRIVACY_STEP_TIMEOUT`` (over the limit: the child
        is killed), ``PRIVACY_STEP_FAILED`` (the child died or broke the protocol) or the
        handler's own code.
        """
        import pickle

        from veil.transforms.privacy import PrivacyError

        with self._lock:
            try:
                if self._child is None:
                    self._child = _Child(self._blob, self._startup_s)
                self._child.wait_ready()  # start-up is not the record's time
            except StepWorkerError:
                self._child = None
                raise PrivacyError(ErrorCode.PRIVACY_STEP_FAILED) from None
            child = self._child
            deadline = time.monotonic() + time_limit_s
            try:
                _write_frame(child.proc.stdin.fileno(), pickle.dumps(item, protocol=5))
                reply = json.loads(_read_frame(child.proc.stdout.fileno(), deadline))
            except TimeoutError:
                self._replace()
                raise PrivacyError(ErrorCode.PRIVACY_STEP_TIMEOUT) from None
            except (OSError, EOFError, ValueError):
                self._replace()
                raise PrivacyError(ErrorCode.PRIVACY_STEP_FAILED) from None
        try:
            if reply.get("ok") is True:
                return _apply(item, reply)
            code = reply.get("code")
        except (AttributeError, KeyError, TypeError, ValueError):
            code = None
        if code in _KNOWN_CODES:
            raise PrivacyError(code)
        error_class = reply.get("error_class") if isinstance(reply, dict) else None
        if not (isinstance(error_class, str) and error_class.isidentifier()):
            error_class = "StepWorkerProtocolError"
        raise StepFailed(error_class[:64])

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
