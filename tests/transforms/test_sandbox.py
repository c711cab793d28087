"""The decoder sandbox: crashes, hangs and memory blow-ups in a worker process become
dead-letter codes, the pool replaces the worker and the next records go through."""

from __future__ import annotations

import os
import threading
import time

import apache_beam as beam
import cv2
import numpy as np
import pytest
import sandbox_targets as targets
from apache_beam.testing.util import assert_that, equal_to
from veil_testing import beam_pipeline, media_record

from veil.transforms.image.codec import decode_image, encode_image
from veil.transforms.privacy import ApplyPrivacyStep, PrivacyHandler, StepResult
from veil.transforms.records import Classification, ErrorCode, Source, WorkItem
from veil.transforms.sandbox import (
    NATIVE_DECODERS,
    Sandbox,
    SandboxConfig,
    SandboxError,
    _Reader,
    run_isolated,
    sandbox_for,
)

FAST = SandboxConfig(workers=1, memory_mb=256, cpu_s=2, timeout_s=3, preload=("numpy",))


@pytest.fixture(scope="module")
def sandbox():
    pool = Sandbox(FAST).warm()
    yield pool
    pool.close()


def _code(sandbox, fn, *args) -> str:
    with pytest.raises(SandboxError) as raised:
        sandbox.call(fn, b"John Smith 212-555-0175", *args)
    assert str(raised.value) == raised.value.code  # nothing from the content
    return raised.value.code


def test_values_travel_both_ways_and_the_worker_is_reused(sandbox):
    first = sandbox.call(targets.echo, b"\x01\x02\x03", 2)
    assert first["pixels"].tolist() == [[2], [4], [6]] and first["pixels"].dtype == np.uint8
    assert first["raw"] == b"\x01\x02\x03" and first["n"] == 3
    assert first["pid"] != os.getpid()
    again = sandbox.call(targets.echo, b"\x00", 1)
    assert again["pid"] == first["pid"]  # one process serves many records
    assert run_isolated(None, targets.echo, b"\x05", 1)["pid"] == os.getpid()


@pytest.mark.parametrize("target", [targets.segfault, targets.kill_self, targets.abort])
def test_a_crash_is_a_code_and_the_worker_is_replaced(sandbox, target):
    before = sandbox.call(targets.echo, b"", 1)["pid"]
    assert _code(sandbox, target) == ErrorCode.DECODER_CRASHED
    after = sandbox.call(targets.echo, b"\x07", 1)
    assert after["pid"] != before and after["n"] == 1


def test_a_hang_is_a_timeout_after_the_wall_clock_limit(sandbox):
    started = time.monotonic()
    assert _code(sandbox, targets.hang) == ErrorCode.DECODER_TIMEOUT
    assert FAST.timeout_s <= time.monotonic() - started < FAST.timeout_s + 5
    assert sandbox.call(targets.echo, b"\x01", 1)["n"] == 1


def test_a_cpu_spin_is_stopped_by_rlimit_cpu():
    pool = Sandbox(SandboxConfig(workers=1, cpu_s=1, timeout_s=60))
    try:
        started = time.monotonic()
        assert _code(pool, targets.spin) == ErrorCode.DECODER_TIMEOUT
        assert time.monotonic() - started < 15  # SIGXCPU, long before the wall clock
    finally:
        pool.close()


@pytest.mark.parametrize("target", [targets.allocate, targets.native_allocate])
def test_memory_over_the_limit_is_a_code_and_within_it_works(sandbox, target):
    assert _code(sandbox, target, 1024) == ErrorCode.DECODER_MEMORY_LIMIT
    assert sandbox.call(target, b"", 64) in (0, 1)


def test_only_known_codes_cross_the_boundary(sandbox):
    assert _code(sandbox, targets.coded, ErrorCode.IMAGE_TOO_LARGE) == ErrorCode.IMAGE_TOO_LARGE
    # A code a compromised worker makes up (it could spell content) is not passed on.
    assert _code(sandbox, targets.coded, "JOHN_SMITH") == ErrorCode.DECODER_FAILED
    assert _code(sandbox, targets.fail) == ErrorCode.DECODER_FAILED


def test_workers_get_no_secrets_no_files_and_no_core_dumps(sandbox, monkeypatch, tmp_path):
    monkeypatch.setenv("VEIL_MASTER_KEY", "top-secret")
    pool = Sandbox(FAST)
    try:
        assert pool.call(targets.env, b"", "VEIL_MASTER_KEY") is None
        assert pool.call(targets.env, b"", "OMP_NUM_THREADS") == "1"
        target = tmp_path / "leak.bin"
        assert _code(pool, targets.write_file, str(target)) == ErrorCode.DECODER_FAILED
        assert not target.exists() or target.stat().st_size == 0
        assert pool.call(targets.core_limit, b"") == [0, 0]
    finally:
        pool.close()


def test_replies_are_parsed_without_pickle_and_capped():
    read_fd, write_fd = os.pipe()
    try:
        os.write(write_fd, (1 << 40).to_bytes(8, "big"))  # a header claiming a terabyte
        with pytest.raises(ValueError):
            _Reader(read_fd, time.monotonic() + 1, 1 << 20).message()
        head = b'{"ok": true, "blobs": 1}'
        os.write(write_fd, len(head).to_bytes(8, "big") + head + (1 << 30).to_bytes(8, "big"))
        with pytest.raises(ValueError):
            _Reader(read_fd, time.monotonic() + 1, 1 << 20).message()
    finally:
        os.close(read_fd)
        os.close(write_fd)


def test_threads_share_the_pool():
    pool = Sandbox(SandboxConfig(workers=2, preload=("numpy",)))
    results, errors = [], []

    def work(i):
        try:
            results.append(pool.call(targets.echo, bytes([i]), 1)["n"])
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(12)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert not errors and results == [1] * 12
        assert len(set(pool.pids())) == 2
    finally:
        pool.close()


def test_a_worker_that_cannot_start_fails_closed():
    pool = Sandbox(SandboxConfig(workers=1, preload=("veil_no_such_module",), startup_s=20))
    try:
        assert _code(pool, targets.echo, 1) == ErrorCode.DECODER_UNAVAILABLE
        assert pool.warm() is pool  # logged, not raised: records fail closed one by one
    finally:
        pool.close()


def test_one_pool_per_process_and_config():
    assert sandbox_for(NATIVE_DECODERS) is sandbox_for(NATIVE_DECODERS)
    assert sandbox_for(None) is None
    assert sandbox_for(SandboxConfig(enabled=False)) is None
    with pytest.raises(ValueError):
        SandboxConfig(workers=0)


# --- through a DoFn: the Beam worker survives and keeps processing ---------------------


def _png(value: int) -> bytes:
    return cv2.imencode(".png", np.full((8, 8, 3), value, np.uint8))[1].tobytes()


class _DecoderHandler(PrivacyHandler):
    """Decodes images in the sandbox; payloads named after a target misbehave instead."""

    stage = "image"
    MISBEHAVE = {b"SEGV": targets.segfault, b"KILL": targets.kill_self, b"HANG": targets.hang}

    def __init__(self, config: SandboxConfig):
        self._config = config

    def share_key(self) -> str:
        return "sandbox-test"

    def load(self):
        return sandbox_for(self._config).warm()

    def detectors(self, model) -> dict:
        return {}

    def process(self, model, item: WorkItem) -> StepResult:
        payload = item.record["payload"]
        # SandboxError and ImageError are PrivacyErrors: the step dead-letters their code.
        if payload in self.MISBEHAVE:
            model.call(self.MISBEHAVE[payload], payload)
        image = decode_image(payload, sandbox=model)
        data, content_type = encode_image(image.pixels, "png")
        return StepResult(data, content_type, {}, Classification("PUBLIC"))


def test_crashing_decoders_are_dead_letters_and_the_pipeline_keeps_going():
    config = SandboxConfig(
        workers=1, timeout_s=3, preload=("veil.transforms.image.codec",), memory_mb=512
    )
    payloads = [_png(10), b"SEGV", _png(20), b"HANG", _png(30), b"KILL", _png(40)]
    payloads[3:3] = [b"\x89PNG\r\n\x1a\n" + b"\x00" * 40]  # corrupt, not a crash
    items = [
        WorkItem(Source("raw", 0, i), media_record(f"r{i}", "s", p), modality="image")
        for i, p in enumerate(payloads)
    ]
    with beam_pipeline() as pipeline:
        out = (
            pipeline
            | beam.Create(items)
            | ApplyPrivacyStep(_DecoderHandler(config), time_limit_s=60)
        )
        assert_that(
            out.records | "Ids" >> beam.Map(lambda item: item.record_id),
            equal_to(["r0", "r2", "r5", "r7"]),
            label="Sanitized",
        )
        assert_that(
            out.dead_letters | "Codes" >> beam.Map(lambda f: (f.record_id, f.error_code)),
            equal_to(
                [
                    ("r1", ErrorCode.DECODER_CRASHED),
                    ("r3", ErrorCode.IMAGE_DECODE_ERROR),
                    ("r4", ErrorCode.DECODER_TIMEOUT),
                    ("r6", ErrorCode.DECODER_CRASHED),
                ]
            ),
            label="DeadLetters",
        )


def test_isolation_is_on_by_default_in_the_pipeline_and_can_be_turned_off():
    from apache_beam.options.pipeline_options import PipelineOptions

    from veil.pipelines.options import VeilConfig
    from veil.pipelines.sanitize import _handlers
    from veil.transforms.classification import load_policy

    assert VeilConfig.from_options(PipelineOptions([])).decoder_isolation is True
    off = VeilConfig.from_options(PipelineOptions(["--veil_decoder_isolation=off"]))
    assert off.decoder_isolation is False
    on = _handlers(load_policy())
    assert on["image"]._config.isolation == NATIVE_DECODERS
    assert on["audio"]._config.isolation == NATIVE_DECODERS
    plain = _handlers(load_policy(), None)
    assert plain["image"]._config.isolation is None and plain["audio"]._config.isolation is None
    assert plain["image"].share_key() != on["image"].share_key()  # models are not mixed up
