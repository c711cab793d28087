"""Bounded, reproducible fuzzing of every decoder entry point (hypothesis, derandomized).

Targets: Confluent framing + Avro (``DecodeFn``), JSON (``StructuredHandler``), images
(``decode_image`` through the sandbox, as in the pipeline), audio (``decode_audio``
through the sandbox) and video containers (``VideoReader``, the video branch's entry).

Inputs are random bytes and mutated valid seeds: bit flips, truncation, inserted and
deleted runs, length fields overwritten with huge values (4 bytes, either byte order, or
an Avro varint), duplicated runs and splices of two seeds. Every case must end in a
valid decode or a known ``ErrorCode``: any other exception fails the test, a case
slower than ``CASE_LIMIT_S`` fails it, pytest-timeout bounds a hang, and a native crash
can only show up as ``DECODER_CRASHED`` (counted, and printed in the summary).

``derandomize=True`` and no example database: the same cases run on every machine.
Case counts per target are printed at the end of the run (``veil fuzz cases``).
"""

from __future__ import annotations

import io
import json
import os
import struct
import time

import cv2
import numpy as np
import pytest
import soundfile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from veil_testing import framed, media_record, message

from veil.transforms.audio.codec import Audio, AudioError, AudioLimits, decode_audio
from veil.transforms.classification import load_policy
from veil.transforms.codec import DecodeFn
from veil.transforms.image.codec import Image, ImageError, ImageLimits, decode_image
from veil.transforms.privacy import ApplyPrivacyStep, PrivacyError, _ModelHolder, settle
from veil.transforms.records import ErrorCode, Source, WorkItem
from veil.transforms.sandbox import NATIVE_DECODERS, sandbox_for
from veil.transforms.structured import StructuredHandler

CODES = frozenset(v for k, v in vars(ErrorCode).items() if k.isupper())
CASE_LIMIT_S = 5.0  # generous: the CPU is shared in CI; typical cases take milliseconds
# `make fuzz` runs many more cases (VEIL_FUZZ_SCALE=20); `make test` keeps the default.
SCALE = max(1, int(os.environ.get("VEIL_FUZZ_SCALE", "1")))


def fuzz_settings(examples: int):
    return settings(
        max_examples=examples * SCALE,
        deadline=None,  # timed per case below (CASE_LIMIT_S) instead of flaky deadlines
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )


# --- mutations ------------------------------------------------------------------------

HUGE = (0xFFFFFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFF, 0x10000, 0)


def _zigzag(n: int) -> bytes:
    n <<= 1
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _apply(data: bytearray, op: tuple, other: bytes) -> bytearray:
    kind, a, b = op
    n = len(data)
    at = a % (n + 1)
    if kind == "flip" and n:
        data[a % n] ^= 1 << (b % 8)
    elif kind == "truncate":
        del data[at:]
    elif kind == "insert":
        data[at:at] = bytes([b % 256]) * (1 + b % 64)
    elif kind == "delete":
        del data[at : at + 1 + b % 256]
    elif kind == "inflate":  # a length field claims far more than is there
        value = HUGE[b % len(HUGE)]
        data[at : at + 4] = struct.pack(">I" if b & 64 else "<I", value)
    elif kind == "varint":
        data[at : at + 1] = _zigzag(1 << (20 + b % 43))
    elif kind == "duplicate":
        data[at:at] = data[at : at + 1 + b % 512]
    elif kind == "splice":
        cut = b % (len(other) + 1)
        data[at:] = other[cut:]
    return data


OPS = st.tuples(
    st.sampled_from(
        ("flip", "flip", "truncate", "insert", "delete", "inflate", "varint", "duplicate", "splice")
    ),
    st.integers(0, 1 << 20),
    st.integers(0, 1 << 16),
)


def mutated(seeds: list[bytes]):
    """A seed with 1-6 mutations; or random bytes; or a seed's magic + random bytes."""
    mutate = st.builds(
        lambda seed, other, ops: bytes(_reduce(bytearray(seed), ops, other)),
        st.sampled_from(seeds),
        st.sampled_from(seeds),
        st.lists(OPS, min_size=1, max_size=6),
    )
    prefixed = st.builds(
        lambda seed, tail: seed[:16] + tail, st.sampled_from(seeds), st.binary(max_size=2048)
    )
    return st.one_of(mutate, mutate, mutate, prefixed, st.binary(max_size=4096))


def _reduce(data: bytearray, ops, other: bytes) -> bytearray:
    for op in ops:
        data = _apply(data, op, other)
    return data


def _check(fuzz_record, target: str, started: float, outcome: str) -> None:
    elapsed = time.perf_counter() - started
    fuzz_record(target, outcome, elapsed)
    assert outcome == "DECODED" or outcome in CODES, outcome
    assert elapsed < CASE_LIMIT_S, f"{target} case took {elapsed:.1f} s"


# --- framing and Avro -----------------------------------------------------------------


def _framing_seeds() -> list[bytes]:
    records = [
        media_record("r1", "alice", b"Call John at 212-555-0175"),
        media_record(
            "r-2",
            "bob",
            b"\x89PNG\r\n\x1a\n" + bytes(range(64)),
            modality="image",
            content_type="image/png",
            attributes={"veil.hints": '{"$.a": "PERSON"}'},
            event_time=1_700_000_000_000,
        ),
        media_record(
            "x" * 40,
            "carol",
            b"{}",
            content_type="application/json",
            attributes={f"k{i}": "v" * i for i in range(8)},
        ),
    ]
    return [framed(r) for r in records]


@pytest.fixture(scope="module")
def decode_fn():
    fn = DecodeFn(max_payload_bytes=1 << 20, max_message_bytes=2 << 20)
    fn.setup()
    return fn


@pytest.mark.timeout(300 * SCALE)
@fuzz_settings(2500)
@given(value=mutated(_framing_seeds()), keyed=st.booleans())
def test_framing_and_avro(decode_fn, fuzz_record, value, keyed):
    started = time.perf_counter()
    outputs = list(decode_fn.process(message(value, key=b"alice" if keyed else None)))
    assert len(outputs) == 1  # exactly one record or one dead letter
    out = outputs[0]
    if isinstance(out, WorkItem):
        outcome = "DECODED"
        assert isinstance(out.record["payload"], bytes) and out.record["payload"]
    else:
        assert out.tag == "dead_letter"
        outcome = out.value.error_code
        assert out.value.record_id is None or len(out.value.record_id) <= 256
    _check(fuzz_record, "framing", started, outcome)


# --- JSON -----------------------------------------------------------------------------

JSON_SEEDS = [
    json.dumps(
        {
            "patient": {
                "name": "Jane Doe",
                "email": "jane@example.com",
                "age": 47,
                "visits": [{"date": "2024-03-01", "note": "BP 120/80"}],
            },
            "ok": True,
            "score": 1.5e3,
            "tags": ["a", None],
        }
    ).encode(),
    b'[1, -2.5e-7, "x", {"\\u00e9\\ud83d\\ude00": [[[]]]}, false]',
    b'{"a": 1}\n{"b": [2, 3]}\n',
]


def _json_values():
    scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=40))
    return st.recursive(
        scalars,
        lambda inner: st.one_of(
            st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=12), inner, max_size=5)
        ),
        max_leaves=30,
    )


@pytest.fixture(scope="module")
def structured():
    handler = StructuredHandler(load_policy())
    holder = ApplyPrivacyStep.shared_for(handler).acquire(
        lambda: _ModelHolder(handler.load()), handler.share_key()
    )
    return handler, holder.model


@pytest.mark.timeout(300 * SCALE)
@fuzz_settings(600)
@given(
    payload=st.one_of(
        mutated(JSON_SEEDS),
        _json_values().map(lambda v: json.dumps(v).encode()),  # NaN/Infinity included
        st.integers(1, 3000).map(lambda n: b"[" * n + b"]" * n),
    ),
    ndjson=st.booleans(),
)
def test_json(structured, fuzz_record, payload, ndjson):
    handler, model = structured
    content_type = "application/x-ndjson" if ndjson else "application/json"
    item = WorkItem(
        Source("veil.raw", 0, 0),
        media_record("j1", "subject-1", payload, content_type=content_type),
        modality="structured",
    )
    started = time.perf_counter()
    try:
        settle(item, handler.process(model, item))
    except PrivacyError as exc:
        outcome = exc.code
    else:
        outcome = "DECODED"
        text = item.sanitized_payload.decode("utf-8")
        lines = [line for line in text.split("\n") if line] if ndjson else [text]
        for line in lines:  # the output is strict JSON again
            json.loads(line, parse_constant=lambda name: pytest.fail(f"{name} in output"))
    _check(fuzz_record, "json", started, outcome)


# --- images (through the sandbox, as in the pipeline) ---------------------------------


def _image_seeds() -> list[bytes]:
    rows = np.arange(24 * 32 * 3, dtype=np.uint32).reshape(24, 32, 3)
    pixels = (rows * 7 % 251).astype(np.uint8)
    seeds = [
        cv2.imencode(ext, pixels, params)[1].tobytes()
        for ext, params in (
            (".png", []),
            (".jpg", [cv2.IMWRITE_JPEG_QUALITY, 80]),
            (".jpg", [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]),
            (".gif", []),
            (".bmp", []),
            (".tiff", []),
            (".webp", [cv2.IMWRITE_WEBP_QUALITY, 80]),
            (".webp", [cv2.IMWRITE_WEBP_QUALITY, 101]),  # lossless (VP8L)
        )
    ]
    return seeds


@pytest.fixture(scope="module")
def sandbox():
    return sandbox_for(NATIVE_DECODERS).warm()


@pytest.mark.timeout(300 * SCALE)
@fuzz_settings(1200)
@given(payload=mutated(_image_seeds()))
def test_image(sandbox, fuzz_record, payload):
    started = time.perf_counter()
    try:
        image = decode_image(payload, ImageLimits(), sandbox)
    except ImageError as exc:
        outcome = exc.code
    else:
        outcome = "DECODED"
        assert isinstance(image, Image) and image.pixels.dtype == np.uint8
        assert image.pixels.ndim == 3 and image.pixels.shape[2] == 3
        assert image.pixels.shape[0] * image.pixels.shape[1] <= ImageLimits().max_pixels
    _check(fuzz_record, "image", started, outcome)


# --- audio (through the sandbox) ------------------------------------------------------


def _pyav(samples: np.ndarray, rate: int, fmt: str, codec: str) -> bytes:
    import av

    buffer = io.BytesIO()
    with av.open(buffer, "w", format=fmt) as box:
        stream = box.add_stream(codec, rate=rate, layout="mono")
        frame = av.AudioFrame.from_ndarray(samples[None, :], format="flt", layout="mono")
        frame.sample_rate, frame.pts = rate, 0
        for packet in stream.encode(frame):
            box.mux(packet)
        for packet in stream.encode(None):
            box.mux(packet)
    return buffer.getvalue()


def _audio_seeds() -> list[bytes]:
    rate = 16000
    t = np.arange(rate // 5, dtype=np.float32) / rate
    tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    seeds = []
    formats = (("WAV", "PCM_16"), ("WAV", "FLOAT"), ("FLAC", "PCM_16"), ("OGG", "VORBIS"))
    for fmt, subtype in formats:
        buffer = io.BytesIO()
        soundfile.write(buffer, tone, rate, format=fmt, subtype=subtype)
        seeds.append(buffer.getvalue())
    seeds.append(_pyav(tone, rate, "mp3", "libmp3lame"))
    seeds.append(_pyav(tone, rate, "ipod", "aac"))
    return seeds


@pytest.mark.timeout(300 * SCALE)
@fuzz_settings(1000)
@given(payload=mutated(_audio_seeds()))
def test_audio(sandbox, fuzz_record, payload):
    limits = AudioLimits(max_duration_s=30)
    started = time.perf_counter()
    try:
        audio = decode_audio(payload, limits, sandbox)
    except AudioError as exc:
        outcome = exc.code
    else:
        outcome = "DECODED"
        assert isinstance(audio, Audio) and audio.samples.dtype == np.float32
        assert 0 < audio.duration_s <= limits.max_duration_s
        assert np.isfinite(audio.samples).all()
    _check(fuzz_record, "audio", started, outcome)


# --- video containers (the video branch's VideoReader, run in the sandbox) -------------


def _video_seeds() -> list[bytes]:
    import av

    rows = np.arange(32 * 48 * 3, dtype=np.uint32).reshape(32, 48, 3)
    seeds = []
    kinds = (("mp4", "libx264"), ("mp4", "mpeg4"), ("matroska", "mjpeg"), ("avi", "mpeg4"))
    for fmt, codec in kinds:
        buffer = io.BytesIO()
        with av.open(buffer, "w", format=fmt) as box:
            stream = box.add_stream(codec, rate=10)
            stream.width, stream.height, stream.pix_fmt = (
                48,
                32,
                ("yuvj420p" if codec == "mjpeg" else "yuv420p"),
            )
            for i in range(4):
                pixels = ((rows + 40 * i) % 251).astype(np.uint8)
                frame = av.VideoFrame.from_ndarray(pixels, "bgr24")
                for packet in stream.encode(frame):
                    box.mux(packet)
            for packet in stream.encode(None):
                box.mux(packet)
        seeds.append(buffer.getvalue())
    return seeds


@pytest.fixture(scope="module")
def video_sandbox():
    pytest.importorskip("veil.transforms.video.container")
    import sandbox_targets

    from veil.transforms.sandbox import SandboxConfig

    config = SandboxConfig(
        workers=1,
        memory_mb=1024,
        cpu_s=20,
        timeout_s=30,
        preload=("av", "veil.transforms.video.container", "sandbox_targets"),
    )
    return sandbox_for(config).warm(), sandbox_targets.read_video


@pytest.mark.timeout(300 * SCALE)
@fuzz_settings(400)
@given(payload=mutated(_video_seeds()))
def test_video_containers(video_sandbox, fuzz_record, payload):
    from veil.transforms.sandbox import SandboxError

    pool, read_video = video_sandbox
    started = time.perf_counter()
    try:
        info = pool.call(read_video, payload, 64)
    except SandboxError as exc:
        outcome = exc.code
    else:
        outcome = "DECODED"
        assert 0 < info["frames"] <= 64 and info["width"] * info["height"] > 0
    _check(fuzz_record, "video", started, outcome)
