"""Runs risky native decoders (OpenCV, libsndfile, FFmpeg) in a pool of worker processes
with resource limits, so a hostile input that crashes or exhausts a C library costs one
dead letter, never the Beam worker.

Why a subprocess: a segfault, an ``abort()`` or a runaway allocation inside a C library
cannot be caught in Python; it kills the whole SDK harness (and every record in its
bundle). In a sandbox worker the same failure ends one call, which the caller turns into
a stable dead-letter code:

* ``DECODER_CRASHED``: the worker died on a signal (SIGSEGV, SIGBUS, SIGABRT, ...);
* ``DECODER_TIMEOUT``: the call took longer than ``timeout_s`` (wall clock; the worker is
  killed) or its CPU time went over ``cpu_s`` (``RLIMIT_CPU``, SIGXCPU);
* ``DECODER_MEMORY_LIMIT``: the call ran out of address space (``RLIMIT_AS`` is the
  worker's size after start-up plus ``memory_mb``);
* ``DECODER_UNAVAILABLE``: no worker could be started (fail closed).

A crashed or timed-out worker is replaced on the next call; the pool is reused across
records (spawning a Python process per record costs about a second, see docs/security.md).

Trust goes one way. The parent never unpickles what a worker sends: replies are a JSON
header plus raw array buffers (allow-listed dtypes, sizes checked), error codes are
accepted only from ``ErrorCode`` and reply sizes are capped, so a decoder exploited by
its input cannot take over the Beam worker through the channel. Workers get no core dumps
(``RLIMIT_CORE=0``: a core would hold the content), may not write files
(``RLIMIT_FSIZE=0``) and their stdout/stderr go to ``/dev/null`` (native libraries print
messages built from content).

Targets are module-level functions named by ``module:qualname``; arguments after the
payload must be JSON values; results may be JSON values, ``bytes`` and numpy arrays,
nested in lists and dicts (tuples come back as lists).

Example::

    sandbox = sandbox_for(SandboxConfig(memory_mb=1024, preload=("cv2",)))
    pixels = sandbox.call(_cv_decode, payload)     # or raises SandboxError(code)
    run_isolated(None, _cv_decode, payload)         # the same call, in process
"""

from __future__ import annotations

import atexit
import dataclasses
import importlib
import json
import logging
import os
import queue
import resource
import select
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from veil.transforms.records import ErrorCode, PrivacyError

_LOGGER = logging.getLogger(__name__)

_LEN = struct.Struct(">Q")
MAX_HEADER_BYTES = 1 << 20
DTYPES = frozenset({"uint8", "int16", "int32", "float32", "float64"})
_CRASH_SIGNALS = {signal.SIGSEGV, signal.SIGBUS, signal.SIGILL, signal.SIGFPE, signal.SIGABRT}
_KNOWN_CODES = frozenset(
    v for k, v in vars(ErrorCode).items() if k.isupper() and isinstance(v, str)
)
_WORKER_ENV = {
    # One thread per library: fewer address-space reservations and a predictable CPU cost.
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "NUMBA_NUM_THREADS": "1",
    "OPENCV_FOR_THREADS_NUM": "1",
    "MALLOC_ARENA_MAX": "2",
}
_PASSED_ENV = ("PATH", "LANG", "LC_ALL", "TMPDIR", "LD_LIBRARY_PATH", "OPENCV_IO_MAX_IMAGE_PIXELS")


class SandboxError(PrivacyError):
    """A content-free sandbox failure with a stable dead-letter code (``.code``)."""


@dataclasses.dataclass(frozen=True)
class SandboxConfig:
    """How risky decoders are isolated.

    Attributes:
        enabled: run decoders in worker processes (True) or in the caller's process.
        workers: processes in the pool (calls beyond that wait for a free worker).
        memory_mb: address space a call may add to the worker's start-up size.
        cpu_s: CPU seconds one call may use.
        timeout_s: wall-clock seconds one call may take (the worker is then killed).
        max_calls: a worker is replaced after this many calls (bounds slow leaks).
        preload: modules each worker imports at start-up (before the limits apply).
        startup_s: how long a new worker may take to import ``preload`` (not counted
            in any record's ``timeout_s``).
    """

    enabled: bool = True
    workers: int = 2
    memory_mb: int = 1024
    cpu_s: float = 30.0
    timeout_s: float = 60.0
    max_calls: int = 2000
    preload: tuple = ()
    startup_s: float = 120.0

    def __post_init__(self):
        if not 1 <= self.workers <= 64:
            raise ValueError("sandbox workers must be in [1, 64]")
        if not 64 <= self.memory_mb <= 1 << 20:
            raise ValueError("sandbox memory_mb must be in [64, 2**20]")
        if not 0 < self.cpu_s <= 3600 or not 0 < self.timeout_s <= 3600:
            raise ValueError("sandbox cpu_s and timeout_s must be in (0, 3600]")
        if self.max_calls < 1:
            raise ValueError("sandbox max_calls must be positive")
        if not 0 < self.startup_s <= 3600:
            raise ValueError("sandbox startup_s must be in (0, 3600]")


#: The pool the image, audio and video decoders share (one per worker process): each
#: worker has OpenCV, libsndfile and FFmpeg loaded before its limits apply.
NATIVE_DECODERS = SandboxConfig(
    workers=2,
    memory_mb=1024,
    cpu_s=20.0,
    timeout_s=30.0,
    preload=("veil.transforms.image.codec", "veil.transforms.audio.codec", "soundfile", "av"),
)


# --- wire format: [u64 header length][JSON header] then [u64 length][bytes] per blob ---


def _pack(value: Any, blobs: list) -> Any:
    """JSON-able structure with arrays and bytes moved to ``blobs``."""
    if isinstance(value, np.ndarray):
        if value.dtype.name not in DTYPES:
            raise TypeError("sandbox: array dtype not allowed")
        blobs.append(np.ascontiguousarray(value).tobytes())
        return {"__nd__": len(blobs) - 1, "dtype": value.dtype.name, "shape": list(value.shape)}
    if isinstance(value, (bytes, bytearray, memoryview)):
        blobs.append(bytes(value))
        return {"__bytes__": len(blobs) - 1}
    if isinstance(value, dict):
        return {"__map__": [[str(k), _pack(v, blobs)] for k, v in value.items()]}
    if isinstance(value, (list, tuple)):
        return [_pack(v, blobs) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"sandbox: cannot send {type(value).__name__}")


def _unpack(value: Any, blobs: list) -> Any:
    if isinstance(value, list):
        return [_unpack(v, blobs) for v in value]
    if not isinstance(value, dict):
        return value
    if "__map__" in value:
        return {str(k): _unpack(v, blobs) for k, v in value["__map__"]}
    if "__bytes__" in value:
        return blobs[int(value["__bytes__"])]
    dtype, shape = value["dtype"], tuple(int(n) for n in value["shape"])
    if dtype not in DTYPES or any(n < 0 for n in shape):
        raise ValueError("bad array")
    blob = blobs[int(value["__nd__"])]
    if int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize != len(blob):
        raise ValueError("bad array size")
    return np.frombuffer(blob, dtype=dtype).reshape(shape).copy()


def _write_message(fd: int, header: dict, blobs: list) -> None:
    head = json.dumps({**header, "blobs": len(blobs)}).encode("utf-8")
    parts = [_LEN.pack(len(head)), head]
    for blob in blobs:
        parts += [_LEN.pack(len(blob)), blob]
    data = memoryview(b"".join(parts))
    while data:
        data = data[os.write(fd, data) :]


class _Reader:
    """Reads one message from a pipe with a deadline and a size cap."""

    def __init__(self, fd: int, deadline: float | None, cap: int):
        self._fd, self._deadline, self._cap = fd, deadline, cap

    def exact(self, n: int) -> bytes:
        chunks, left = [], n
        while left:
            if self._deadline is not None:
                wait = self._deadline - time.monotonic()
                if wait <= 0 or not select.select([self._fd], [], [], wait)[0]:
                    raise TimeoutError()
            chunk = os.read(self._fd, min(left, 1 << 20))
            if not chunk:
                raise EOFError()
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)

    def message(self) -> tuple[dict, list]:
        (size,) = _LEN.unpack(self.exact(_LEN.size))
        if size > MAX_HEADER_BYTES:
            raise ValueError("header too large")
        header = json.loads(self.exact(size))
        if not isinstance(header, dict):
            raise ValueError("header")
        blobs, total = [], 0
        for _ in range(int(header["blobs"])):
            (size,) = _LEN.unpack(self.exact(_LEN.size))
            total += size
            if total > self._cap:
                raise ValueError("reply too large")
            blobs.append(self.exact(size))
        return header, blobs


# --- the worker process -----------------------------------------------------------------


def _vm_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


def _limit_self(memory_mb: int) -> None:
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))
    limit = _vm_bytes() + memory_mb * (1 << 20)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def _cpu_budget(cpu_s: float) -> None:
    """Soft CPU limit = CPU used so far + this call's budget (the hard limit stays)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    used = usage.ru_utime + usage.ru_stime
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    soft = int(used + cpu_s) + 1
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))


def _resolve(name: str) -> Callable:
    module, _, qualname = name.partition(":")
    target: Any = importlib.import_module(module)
    for part in qualname.split("."):
        target = getattr(target, part)
    return target


def _error_reply(exc: BaseException) -> dict:
    if isinstance(exc, MemoryError):
        return {"ok": False, "code": ErrorCode.DECODER_MEMORY_LIMIT}
    code = getattr(exc, "code", None)
    return {"ok": False, "code": code if code in _KNOWN_CODES else ErrorCode.DECODER_FAILED}


def _ping() -> int:
    return os.getpid()


def _peak_rss_kb() -> int:
    """This worker's own peak RSS (``VmHWM``).

    Not ``ru_maxrss``: Linux keeps that across ``execve``, so a worker spawned by a
    large Beam worker would report its parent's peak, not its own.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _serve() -> None:
    """The worker loop: one request in, one reply out, until the parent closes the pipe."""
    channel_in, channel_out = os.dup(0), os.dup(1)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):  # native libraries print; nothing of theirs reaches a log
        os.dup2(devnull, fd)
    config = json.loads(os.environ["VEIL_SANDBOX_CONFIG"])
    for module in config["preload"]:
        importlib.import_module(module)
    _limit_self(int(config["memory_mb"]))
    reader = _Reader(channel_in, None, 1 << 62)
    while True:
        try:
            request, blobs = reader.message()
        except EOFError:
            return
        _cpu_budget(float(config["cpu_s"]))
        out: list = []
        try:
            fn = _resolve(request["fn"])
            value = fn(*_unpack(request["args"], blobs))
            reply = {"ok": True, "value": _pack(value, out)}
        except BaseException as exc:  # noqa: BLE001 - every failure becomes a code
            out, reply = [], _error_reply(exc)
        try:
            _write_message(channel_out, reply, out)
        except MemoryError:
            _write_message(channel_out, _error_reply(MemoryError()), [])


# --- the parent side --------------------------------------------------------------------


def _worker_env() -> dict:
    """A minimal environment: no secrets (key files, passwords) reach a decoder.

    ``PYTHONPATH`` is the parent's ``sys.path``, so a worker imports what the parent can.
    """
    env = {k: os.environ[k] for k in _PASSED_ENV if k in os.environ}
    env.update(_WORKER_ENV)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    return env


class _Worker:
    """One worker process; started lazily, replaced after a failure or ``max_calls``."""

    def __init__(self, config: SandboxConfig):
        self._config = config
        self._proc: subprocess.Popen | None = None
        self._ready = False  # answered its first ping (preload done)
        self._calls = 0
        self.pid: int | None = None

    def spawn(self) -> None:
        """Starts the process without waiting for it (``start`` waits for its preload)."""
        if self._proc is not None and self._proc.poll() is None:
            return
        self._ready = False
        env = _worker_env()
        env["VEIL_SANDBOX_CONFIG"] = json.dumps(
            {
                "preload": list(self._config.preload),
                "memory_mb": self._config.memory_mb,
                "cpu_s": self._config.cpu_s,
            }
        )
        self._proc = subprocess.Popen(
            [sys.executable, "-c", "from veil.transforms.sandbox import _serve; _serve()"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
            close_fds=True,
        )
        self._calls = 0
        self.pid = self._proc.pid

    def start(self) -> None:
        """Spawns the process if needed and waits until it has loaded its modules."""
        self.spawn()
        if self._ready:
            return
        try:  # wait for the preload here, so it never counts against a record's limits
            self._exchange(f"{__name__}:_ping", (), self._config.startup_s)
        except SandboxError:
            if self._proc is not None:
                self._kill()
            raise SandboxError(ErrorCode.DECODER_UNAVAILABLE) from None
        self._ready = True

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        for stream in (proc.stdin, proc.stdout):
            try:
                stream.close()
            except OSError:
                pass
        try:
            proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def _kill(self) -> int:
        proc, self._proc = self._proc, None
        if proc.poll() is None:
            proc.kill()
        code = proc.wait()
        proc.stdin.close()
        proc.stdout.close()
        return code

    def call(self, name: str, args: tuple) -> Any:
        try:
            self.start()
        except OSError:
            raise SandboxError(ErrorCode.DECODER_UNAVAILABLE) from None
        return self._exchange(name, args, self._config.timeout_s)

    def _exchange(self, name: str, args: tuple, timeout_s: float) -> Any:
        proc, config = self._proc, self._config
        blobs: list = []
        request = {"fn": name, "args": _pack(list(args), blobs)}
        deadline = time.monotonic() + timeout_s
        try:
            _write_message(proc.stdin.fileno(), request, blobs)
            reader = _Reader(proc.stdout.fileno(), deadline, config.memory_mb << 20)
            header, out = reader.message()
        except TimeoutError:
            self._kill()
            raise SandboxError(ErrorCode.DECODER_TIMEOUT) from None
        except (EOFError, BrokenPipeError, ConnectionResetError):
            raise SandboxError(_death_code(self._kill())) from None
        except (ValueError, KeyError, TypeError):  # a worker that breaks the protocol
            self._kill()
            raise SandboxError(ErrorCode.DECODER_CRASHED) from None
        self._calls += 1
        if self._calls >= config.max_calls:
            self.stop()
        if not header.get("ok"):
            code = header.get("code")
            raise SandboxError(code if code in _KNOWN_CODES else ErrorCode.DECODER_FAILED)
        try:
            return _unpack(header["value"], out)
        except (ValueError, KeyError, TypeError, IndexError):
            raise SandboxError(ErrorCode.DECODER_CRASHED) from None


def _death_code(returncode: int) -> str:
    if returncode == -signal.SIGXCPU:
        return ErrorCode.DECODER_TIMEOUT  # over RLIMIT_CPU
    if returncode == -signal.SIGKILL:
        # Not us (a timeout is handled before): the kernel's OOM killer, under a
        # container's memory limit, is the usual sender.
        return ErrorCode.DECODER_MEMORY_LIMIT
    return ErrorCode.DECODER_CRASHED


class Sandbox:
    """A pool of sandbox workers; thread-safe. Prefer ``sandbox_for`` (one per process)."""

    def __init__(self, config: SandboxConfig):
        self.config = config
        self._idle: queue.LifoQueue = queue.LifoQueue()
        self._workers = [_Worker(config) for _ in range(config.workers)]
        for worker in self._workers:
            self._idle.put(worker)
        self._crashes = 0

    def spawn(self) -> Sandbox:
        """Starts every worker process without waiting for them: a handler calls this
        first and ``warm`` after loading its own models, so the two overlap."""
        workers = [self._idle.get() for _ in self._workers]
        try:
            for worker in workers:
                worker.spawn()
        except OSError:
            _LOGGER.error("A sandbox worker could not start: its calls fail closed")
        finally:
            for worker in workers:
                self._idle.put(worker)
        return self

    def warm(self) -> Sandbox:
        """Starts every worker and waits until each has loaded its modules, so that the
        model load pays the start-up (about a second) rather than a record's time limit.
        All processes are spawned before the first is waited for: they start in parallel."""
        workers = [self._idle.get() for _ in self._workers]
        try:
            for worker in workers:
                try:
                    worker.spawn()
                except OSError:
                    pass  # start() below retries and reports it
            for worker in workers:
                worker.start()
        except (SandboxError, OSError):
            _LOGGER.error("A sandbox worker could not start: its calls fail closed")
        finally:
            for worker in workers:
                self._idle.put(worker)
        return self

    def call(self, fn: Callable, *args) -> Any:
        """``fn(*args)`` in a worker; raises ``SandboxError`` with a stable code."""
        name = f"{fn.__module__}:{fn.__qualname__}"
        worker = self._idle.get()
        try:
            return worker.call(name, args)
        except SandboxError as exc:
            if exc.code in (ErrorCode.DECODER_CRASHED, ErrorCode.DECODER_TIMEOUT):
                self._crashes += 1
                _LOGGER.warning("Sandbox worker lost: %s (replaced)", exc.code)
            raise
        finally:
            self._idle.put(worker)

    def peak_rss_mb(self) -> float:
        """The largest resident set any live worker has had (for tests and benchmarks)."""
        workers = [self._idle.get() for _ in self._workers]
        try:
            return max(worker.call(f"{__name__}:_peak_rss_kb", ()) for worker in workers) / 1024
        finally:
            for worker in workers:
                self._idle.put(worker)

    def pids(self) -> list[int]:
        return [w.pid for w in self._workers if w.pid is not None]

    def close(self) -> None:
        for worker in self._workers:
            worker.stop()


_POOLS: dict = {}
_POOLS_LOCK = threading.Lock()


def sandbox_for(config: SandboxConfig | None) -> Sandbox | None:
    """The process-wide pool for ``config`` (None when isolation is off)."""
    if config is None or not config.enabled:
        return None
    key = (os.getpid(), config)
    with _POOLS_LOCK:
        pool = _POOLS.get(key)
        if pool is None:
            pool = _POOLS[key] = Sandbox(config)
        return pool


def run_isolated(sandbox: Sandbox | None, fn: Callable, *args) -> Any:
    """``fn(*args)`` in ``sandbox``, or in this process when ``sandbox`` is None."""
    return fn(*args) if sandbox is None else sandbox.call(fn, *args)


@atexit.register
def _close_all() -> None:
    with _POOLS_LOCK:
        for (pid, _), pool in list(_POOLS.items()):
            if pid == os.getpid():
                pool.close()
        _POOLS.clear()


__all__ = [
    "NATIVE_DECODERS",
    "Sandbox",
    "SandboxConfig",
    "SandboxError",
    "run_isolated",
    "sandbox_for",
]
