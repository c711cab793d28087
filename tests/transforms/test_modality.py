"""ModalitySpec and the registry: validation, limits, MIME precedence, handler stages."""

from __future__ import annotations

import pytest

from veil.transforms.modality import (
    BUILTIN,
    MEDIA_LIMIT,
    MODALITIES,
    HandlerSettings,
    Modalities,
    ModalitySpec,
    by_content,
    by_content_type,
    registered,
)
from veil.transforms.privacy import PrivacyHandler, StepResult


class _Plain(PrivacyHandler[None]):
    def process(self, model, item) -> StepResult:  # pragma: no cover - never run here
        raise NotImplementedError


def _spec(name="plain", **kw):
    return ModalitySpec(name, lambda policy, settings: _Plain(), **kw)


def test_builtins_in_sniffing_order():
    assert registered()[:5] == ("structured", "text", "image", "audio", "video")
    assert [s.name for s in BUILTIN] == list(registered()[:5])
    assert {s.name for s in BUILTIN if s.preempt} == {"text", "structured"}
    assert {s.name for s in BUILTIN if s.time_limit == MEDIA_LIMIT} == {"image", "audio", "video"}


@pytest.mark.parametrize("name", ["", "PDF", "1pdf", "pdf-x", "a" * 33])
def test_bad_names_are_refused(name):
    with pytest.raises(ValueError, match="modality name"):
        _spec(name)


def test_bad_time_limit_and_factory_are_refused():
    with pytest.raises(ValueError, match="time_limit"):
        _spec(time_limit="forever")
    with pytest.raises(TypeError, match="callable"):
        ModalitySpec("plain", handler_factory=None)


@pytest.mark.parametrize("time_limit, expected", [("step", 10.0), ("media", 600.0), (2.5, 2.5)])
def test_limit_s(time_limit, expected):
    assert _spec(time_limit=time_limit).limit_s(10.0, 600.0) == expected


@pytest.mark.parametrize(
    "content_type, expected",
    [
        ("text/plain; charset=utf-8", "text"),
        ("application/json", "structured"),
        ("application/x-ndjson", "structured"),
        ("application/ld+json", "structured"),
        ("text/x-custom+json", "structured"),  # exact and +suffix win over prefixes
        ("IMAGE/HEIC", "image"),
        ("audio/mpeg", "audio"),
        ("video/mp4", "video"),
        ("application/octet-stream", None),
        ("", None),
    ],
)
def test_mime_precedence(content_type, expected):
    assert by_content_type(BUILTIN, content_type) == expected


def test_content_checks_run_in_registration_order():
    assert by_content(BUILTIN, b'{"a": 1}') == "structured"
    assert by_content(BUILTIN, b"plain words") == "text"
    assert by_content(BUILTIN, b"\x00\x01binary") is None


def test_the_factory_builds_a_handler_named_after_its_modality():
    handler = _spec().handler(policy=None, settings=HandlerSettings())
    assert handler.stage == "plain"
    assert handler.share_key().endswith("_Plain")
    assert handler.detectors(None) == {"plain": "1"}


def test_a_private_registry_is_independent():
    mine = Modalities([_spec()])
    assert mine.names() == ("plain",)
    assert "plain" not in MODALITIES
    with pytest.raises(KeyError, match="unregistered"):
        mine.specs(["plain", "pdf"])
