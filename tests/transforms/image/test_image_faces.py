"""Face detection and covering on real photographs (CenterFace through OpenCV DNN)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from image_testing import ASTRONAUT, CAMERA, photo, require_photos_and_model

from veil.transforms.media.faces import CenterFace, DetectorConfig
from veil.transforms.media.models import CENTERFACE, ModelError, model_path
from veil.transforms.media.regions import RegionStyle, cover, expand

# Where the faces are (x1, y1, x2, y2), checked by eye once; the detector must agree.
FACES = {"astronaut": (181, 58, 270, 178), "camera": (202, 119, 258, 197)}


@pytest.fixture(scope="module")
def detector() -> CenterFace:
    require_photos_and_model()
    return CenterFace.load(model_path(), CENTERFACE.sha256)


def _iou(a, b) -> float:
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    area = lambda r: (r[2] - r[0]) * (r[3] - r[1])  # noqa: E731
    return inter / (area(a) + area(b) - inter)


def _photos():
    return {"astronaut": photo(ASTRONAUT), "camera": photo(CAMERA)}


@pytest.mark.parametrize("name", ["astronaut", "camera"])
def test_the_face_in_a_real_photograph_is_found(detector, name):
    boxes = detector.detect(_photos()[name])
    best = max(boxes, key=lambda b: _iou(b, FACES[name]))
    assert _iou(best, FACES[name]) > 0.6
    assert best[4] > 0.8


@pytest.mark.parametrize("mode", ["fill", "pixelate", "blur"])
@pytest.mark.parametrize("shape", ["ellipse", "rectangle"])
def test_covering_changes_the_face_and_nothing_else(detector, mode, shape):
    original = _photos()["astronaut"]
    boxes = detector.detect(original)
    style = RegionStyle(mode=mode, shape=shape, margin=0.2)
    out = original.copy()
    assert cover(out, boxes, style) == len(boxes)
    inside = np.zeros(out.shape[:2], bool)
    for box in boxes:
        x1, y1, x2, y2 = expand(box, style.margin, out.shape[1], out.shape[0])
        inside[y1:y2, x1:x2] = True
    assert np.array_equal(out[~inside], original[~inside])  # away from faces: untouched
    fx1, fy1, fx2, fy2 = FACES["astronaut"]
    core = (slice(fy1 + 20, fy2 - 20), slice(fx1 + 20, fx2 - 20))  # eyes, nose, mouth
    diff = np.abs(out[core].astype(int) - original[core].astype(int)).mean()
    assert diff > 10
    if mode == "fill":
        assert (out[core] == 0).all()


def test_after_covering_the_detector_finds_no_face_where_the_face_was(detector):
    original = _photos()["astronaut"]
    out = original.copy()
    cover(out, detector.detect(original))
    # At the branch's own threshold nothing remains on the face; at a lower one only
    # weak responses to the head's outline do.
    again = detector.detect(out, DetectorConfig(threshold=0.2))
    assert all(_iou(b, FACES["astronaut"]) < 0.3 for b in again)
    weak = detector.detect(out, DetectorConfig(threshold=0.05))
    assert all(b[4] < 0.2 for b in weak if _iou(b, FACES["astronaut"]) >= 0.3)


def test_camera_face_score_collapses_after_covering(detector):
    original = _photos()["camera"]
    out = original.copy()
    cover(out, detector.detect(original))
    again = detector.detect(out, DetectorConfig(threshold=0.05))
    on_face = [b[4] for b in again if _iou(b, FACES["camera"]) >= 0.3]
    assert max(on_face, default=0.0) < 0.5  # was > 0.8; the dark hair outline remains


@pytest.mark.parametrize("max_pass_pixels", [1920 * 1088, 640 * 640])  # one pass; tiles
def test_the_fine_pass_finds_a_small_face_that_one_pass_misses(detector, max_pass_pixels):
    small = cv2.resize(_photos()["astronaut"], (96, 96), interpolation=cv2.INTER_AREA)
    canvas = np.full((1200, 1600, 3), 200, np.uint8)
    canvas[700:796, 1100:1196] = small  # the face is about 18 x 22 pixels
    face = (1100 + 181 * 96 / 512, 700 + 58 * 96 / 512, 1100 + 270 * 96 / 512, 700 + 178 * 96 / 512)
    tiled = detector.detect(canvas, DetectorConfig(max_pass_pixels=max_pass_pixels))
    assert any(_iou(b, face) > 0.4 and b[4] > 0.5 for b in tiled)
    one_pass = detector.single_scale(canvas, 640, 0.2)
    assert not any(_iou(b, face) > 0.4 and b[4] > 0.5 for b in one_pass)


def test_an_altered_model_is_refused(tmp_path):
    require_photos_and_model()
    bad = tmp_path / "centerface.onnx"
    data = bytearray(model_path().read_bytes())
    data[-1] ^= 0xFF
    bad.write_bytes(bytes(data))
    with pytest.raises(ModelError):
        CenterFace.load(bad, CENTERFACE.sha256)
    with pytest.raises(ModelError):
        model_path(directory=tmp_path / "empty")


def test_style_and_detector_options_are_validated():
    with pytest.raises(ValueError):
        RegionStyle(mode="swirl")
    with pytest.raises(ValueError):
        RegionStyle(shape="star")
    with pytest.raises(ValueError):
        DetectorConfig(threshold=0.0)


def test_the_set_up_command_verifies_the_cached_model(capsys):
    from veil.transforms.media.models import main

    require_photos_and_model()
    assert main(["verify"]) == 0
    assert "sha256 ok" in capsys.readouterr().out
    assert main(["download-everything"]) == 2
