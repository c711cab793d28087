"""Targets that misbehave on purpose, for the sandbox tests (imported by its workers)."""

from __future__ import annotations

import ctypes
import os
import signal
import time

import numpy as np


def echo(payload: bytes, scale: int) -> dict:
    """A well-behaved target: arrays, bytes and JSON values travel back."""
    data = np.frombuffer(payload, dtype=np.uint8)
    pixels = data.reshape(-1, 1) * scale
    return {"pixels": pixels, "raw": payload, "n": len(payload), "pid": os.getpid()}


def segfault(payload: bytes) -> None:
    """What a native decoder does with a wild pointer."""
    ctypes.string_at(0)


def kill_self(payload: bytes) -> None:
    os.kill(os.getpid(), signal.SIGSEGV)


def abort(payload: bytes) -> None:
    os.abort()


def hang(payload: bytes) -> None:
    time.sleep(3600)


def spin(payload: bytes) -> None:
    while True:
        pass


def allocate(payload: bytes, megabytes: int) -> int:
    """Touches ``megabytes`` of memory (a decompression bomb's effect)."""
    block = np.ones(megabytes << 20, dtype=np.uint8)
    return int(block[-1])


def native_allocate(payload: bytes, megabytes: int) -> int:
    """malloc in C, as a native decoder would; None back means the allocation failed."""
    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    pointer = libc.malloc(ctypes.c_size_t(megabytes << 20))
    if not pointer:
        raise MemoryError()
    libc.free(ctypes.c_void_p(pointer))
    return 0


def fail(payload: bytes) -> None:
    raise RuntimeError(payload.decode("utf-8", "replace"))


class Coded(Exception):
    def __init__(self, code):
        super().__init__(code)
        self.code = code


def coded(payload: bytes, code: str) -> None:
    raise Coded(code)


def env(payload: bytes, name: str) -> str | None:
    return os.environ.get(name)


def write_file(payload: bytes, path: str) -> int:
    with open(path, "wb") as f:
        return f.write(payload)


def core_limit(payload: bytes) -> list:
    import resource

    return list(resource.getrlimit(resource.RLIMIT_CORE))


def read_video(payload: bytes, max_frames: int) -> dict:
    """The video branch's decoder entry (``VideoReader``): header, then every frame."""
    from veil.transforms.video.container import VideoLimits, VideoReader

    with VideoReader(payload, VideoLimits(max_frames=max_frames)) as reader:
        count = sum(1 for _ in reader.frames())
        return {"frames": count, "width": reader.info.width, "height": reader.info.height}


#: Payloads carrying these make ``crashing_video`` segfault or exhaust its memory (a
#: stand-in for files that do so to FFmpeg; none is known for the pinned PyAV build).
CRASH_MARKER = b"VEIL-CRASH-FFMPEG"
BOMB_MARKER = b"VEIL-BOMB-FFMPEG"


def crashing_video(payload: bytes, params: dict, wav: bytes) -> dict:
    """The video branch's sandboxed record, except that a payload carrying
    ``CRASH_MARKER`` segfaults first, as FFmpeg would on a wild pointer, and one carrying
    ``BOMB_MARKER`` allocates 8 GiB, as a decompression bomb would."""
    if CRASH_MARKER in payload:
        ctypes.string_at(0)
    if BOMB_MARKER in payload:
        native_allocate(payload, 8 << 10)
    from veil.transforms.video.record import sanitize_isolated

    return sanitize_isolated(payload, params, wav)
