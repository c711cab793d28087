"""Video records run FFmpeg and the face detector in a sandbox worker by default: a
crash there is one ``DECODER_CRASHED`` dead letter, the next record is sanitized, and
``isolation=None`` (``--veil_decoder_isolation off``) keeps the in-process path."""

from __future__ import annotations

import dataclasses
import os

import apache_beam as beam
import pytest
import sandbox_targets
from apache_beam.testing.util import assert_that, equal_to
from veil_testing import beam_pipeline, media_record
from video_testing import CARPHONE, build_video, frames_of, require_footage_and_model

from veil.pipelines.sanitize import _handlers
from veil.transforms.classification import load_policy
from veil.transforms.privacy import ApplyPrivacyStep, settle
from veil.transforms.records import Modality, Source, WorkItem
from veil.transforms.sandbox import sandbox_for
from veil.transforms.video import VIDEO_DECODERS, VideoConfig, VideoHandler
from veil.transforms.video import handler as video_handler
from veil.transforms.video.record import FrameSettings


def _item(record_id: str, offset: int, payload: bytes) -> WorkItem:
    return WorkItem(
        source=Source("veil.raw", 0, offset),
        record=media_record(record_id, "driver", payload, content_type="video/mp4"),
        modality="video",
    )


@pytest.fixture(scope="module")
def clip() -> bytes:
    require_footage_and_model()
    return build_video(frames_of(CARPHONE, limit=12), "mp4")


def test_a_crash_in_the_sandbox_is_one_dead_letter_and_the_next_video_is_sanitized(
    clip, monkeypatch
):
    # One worker: the record after the crash must be served by its replacement.
    isolation = dataclasses.replace(VIDEO_DECODERS, workers=1)
    handler = VideoHandler(load_policy(), VideoConfig(isolation=isolation))
    monkeypatch.setattr(video_handler, "sanitize_isolated", sandbox_targets.crashing_video)
    items = [
        _item("crashes", 0, clip + sandbox_targets.CRASH_MARKER),
        _item("after", 1, clip),
        _item("bomb", 2, clip + sandbox_targets.BOMB_MARKER),
    ]
    pipeline = beam_pipeline()
    result = pipeline | beam.Create(items, reshuffle=False) | ApplyPrivacyStep(handler, 120)
    assert_that(
        result.records
        | "Good"
        >> beam.Map(lambda i: (i.record_id, i.sanitized_content_type, i.trail[-1].entity_counts)),
        equal_to([("after", "video/mp4", {"FACE": 1})]),
        label="records",
    )
    assert_that(
        result.dead_letters | "Dead" >> beam.Map(lambda f: (f.record_id, f.stage, f.error_code)),
        equal_to(
            [("crashes", "video", "DECODER_CRASHED"), ("bomb", "video", "DECODER_MEMORY_LIMIT")]
        ),
        label="dead_letters",
    )
    pipeline.run().wait_until_finish()
    pool = sandbox_for(handler._config.sandbox())
    assert pool is not None and pool.pids() and os.getpid() not in pool.pids()


def test_the_worker_does_the_ffmpeg_work_and_isolation_off_keeps_it_in_process(clip):
    policy = load_policy()
    outputs = {}
    for name, isolation in (("on", VIDEO_DECODERS), ("off", None)):
        handler = VideoHandler(policy, VideoConfig(isolation=isolation))
        model = handler.load()
        item = _item(name, 0, clip)
        counts = settle(item, handler.process(model, item))
        frames = len(frames_of(item.sanitized_payload))
        outputs[name] = (counts, item.sanitized_content_type, frames)
        if isolation is None:
            assert model.sandbox is None and model.detector is not None
            assert handler.share_key().endswith(":in-process")
        else:
            # The parent never loads the face model: the sandbox workers do.
            assert model.detector is None and model.sandbox.pids()
            assert model.versions["face-detector"] != "unavailable"
    assert outputs["on"] == outputs["off"] == ({"FACE": 1}, "video/mp4", 12)


def test_the_pipeline_flag_reaches_the_video_handler():
    policy = load_policy()
    isolated = _handlers(policy)[Modality.VIDEO]._config
    in_process = _handlers(policy, None)[Modality.VIDEO]._config
    assert isolated.isolation == VIDEO_DECODERS and isolated.sandbox() is not None
    assert in_process.isolation is None and in_process.sandbox() is None


def test_the_sandbox_limits_follow_the_record_time_limit():
    config = VideoConfig(time_limit_s=600)
    assert config.sandbox().timeout_s == 630 and config.sandbox().cpu_s == 630
    assert VideoConfig().sandbox().timeout_s == VIDEO_DECODERS.timeout_s
    disabled = dataclasses.replace(VIDEO_DECODERS, enabled=False)
    assert VideoConfig(isolation=disabled).sandbox() is None


def test_frame_settings_survive_the_json_pipe():
    handler = VideoHandler(load_policy())
    settings = handler._settings()
    assert FrameSettings.from_json(settings.to_json()) == settings
