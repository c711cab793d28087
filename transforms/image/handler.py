"""The image branch's ``PrivacyHandler``: header checks, decode, faces, text, re-encode.

Per record (``ImageHandler.process``):

1. format allow-list and header size checks before decoding, then decoding with the
   EXIF orientation applied (``IMAGE_FORMAT_UNSUPPORTED``, ``IMAGE_TOO_LARGE``,
   ``IMAGE_DECODE_ERROR``);
2. the face model (and Tesseract, when OCR is on) must have loaded, else
   ``IMAGE_MODEL_UNAVAILABLE`` / ``IMAGE_OCR_FAILED``: fail closed;
3. faces: CenterFace, multi-scale and tiled, low threshold; every box is covered
   (fill, pixelate or blur; ellipse or rectangle; with a margin);
4. text: Tesseract word boxes, the text branch's detectors on the words, PII words
   covered with a solid fill. An image without text gets an ``OCR_SKIPPED`` audit step
   with reason ``NO_TEXT``; OCR failure or timeout is ``IMAGE_OCR_FAILED``;
5. re-encoding from the pixels alone (no EXIF, GPS, XMP, IPTC, ICC, comments).

Entity counts (``FACE`` plus the text entity types of PII words) go to the audit trail
and metrics; box coordinates, words and text never leave this function.

Example::

    images = items | "Image" >> ApplyPrivacyStep(ImageHandler(policy, ImageConfig()))
    images.records, images.dead_letters
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from apache_beam.metrics import Metrics

from veil.transforms.classification import Policy, classify
from veil.transforms.fixes import fix_for
from veil.transforms.image import ocr
from veil.transforms.image.codec import ImageLimits, decode_image, encode_image
from veil.transforms.image.ocr import OcrPasses
from veil.transforms.media.faces import CenterFace, DetectorConfig
from veil.transforms.media.models import CENTERFACE, ModelError, model_path
from veil.transforms.media.regions import RegionStyle, cover
from veil.transforms.privacy_handler import PrivacyError, PrivacyHandler, StepResult
from veil.transforms.records import AuditStep, ErrorCode, WorkItem
from veil.transforms.sandbox import NATIVE_DECODERS, SandboxConfig, sandbox_for

_LOGGER = logging.getLogger(__name__)

FACE = "FACE"
NO_TEXT = "NO_TEXT"


@dataclasses.dataclass(frozen=True)
class ImageConfig:
    """How the image branch works (code defaults; the policy file is not involved).

    Attributes:
        faces: how faces are searched for (threshold, scales, tiles).
        style: how faces are covered (mode, shape, margin).
        ocr: find text with Tesseract and cover PII words (on by default).
        ocr_timeout_s: Tesseract's time limit per image, all passes together (60 s: the
            extra passes take several seconds on a loaded machine; within the media
            step limit).
        ocr_margin: extra fraction of a word box's height covered around PII words.
        ocr_passes: extra passes for small and rotated text (upscaled, quarter turns
            by Tesseract OSD, small skews; low-confidence identifier-like words covered:
            ``veil.transforms.image.ocr.OcrPasses``); None: the single pass only.
        limits: format allow-list and size limits checked before decoding.
        model_path: a production detector file with CenterFace's interface, or None
            for the cached CenterFace (``veil.transforms.media.models``).
        model_sha256: the configured file's sha256 (required with ``model_path``).
        jpeg_quality: quality of re-encoded JPEGs.
        isolation: OpenCV decodes in a sandbox worker pool (``veil.transforms.sandbox``);
            ``None`` or ``enabled=False`` decodes in the worker's own process.
    """

    faces: DetectorConfig = DetectorConfig()
    style: RegionStyle = RegionStyle()
    ocr: bool = True
    ocr_timeout_s: float = 60.0
    ocr_margin: float = 0.15
    ocr_passes: OcrPasses | None = OcrPasses()
    limits: ImageLimits = ImageLimits()
    model_path: str | None = None
    model_sha256: str | None = None
    jpeg_quality: int = 92
    isolation: SandboxConfig | None = NATIVE_DECODERS

    def __post_init__(self):
        if self.model_path and not self.model_sha256:
            raise ValueError("a configured face model needs its sha256")
        if not 0 < self.ocr_timeout_s <= 300:
            raise ValueError("ocr_timeout_s must be in (0, 300]")
        if not 50 <= self.jpeg_quality <= 100:
            raise ValueError("jpeg_quality must be in [50, 100]")


@dataclasses.dataclass
class ImageModel:
    detector: CenterFace | None
    text_model: object | None
    ocr_ready: bool
    versions: dict
    reported: bool = False
    sandbox: object | None = None  # veil.transforms.sandbox.Sandbox, None: in process


class ImageHandler(PrivacyHandler[ImageModel]):
    """Covers faces and PII text and strips metadata in ``image`` records.

    Args:
        policy: the validated policy (text section for the OCR detectors,
            classification rules).
        config: detector, covering style, OCR, limits and model path.

    Example::

        images = routed.branches["image"] | "Image" >> ApplyPrivacyStep(
            ImageHandler(policy, ImageConfig(style=RegionStyle(mode="pixelate"))),
            time_limit_s=30,
        )
        images.records | PublishSanitized(topics, policy.version)
        images.dead_letters | PublishDeadLetters(topics, policy.version)
    """

    stage = "image"

    def __init__(self, policy: Policy, config: ImageConfig = ImageConfig()):
        self._policy = policy
        self._config = config

    def share_key(self) -> str:
        c = self._config
        isolated = c.isolation is not None and c.isolation.enabled
        return f"image:{c.model_path or CENTERFACE.name}:ocr={c.ocr}" + (
            "" if isolated else ":in-process"
        )

    def load(self) -> ImageModel:
        config = self._config
        versions = {}
        sandbox = sandbox_for(config.isolation)
        if sandbox is not None:
            sandbox.spawn()  # its processes start while the models below load
        try:
            if config.model_path:
                path, sha256 = Path(config.model_path), config.model_sha256
                name = f"configured-sha256:{sha256[:12]}"
            else:
                path, sha256, name = model_path(CENTERFACE), CENTERFACE.sha256, CenterFace.version
            detector = CenterFace.load(path, sha256)
            versions["face-detector"] = name
        except (ModelError, OSError):
            detector = None  # reported on the first image record, not here
            versions["face-detector"] = "unavailable"
        text_model, ocr_ready = None, False
        if config.ocr:
            ocr_ready = ocr.available()
            versions["ocr"] = ocr.version() if ocr_ready else "unavailable"
            from veil.transforms.text import load_text_model

            text_model = load_text_model(self._policy.text.ner)
            versions.update(text_model.versions)
        if sandbox is not None:
            sandbox.warm()
        _LOGGER.info("Image handler loaded: %s", sorted(versions))
        return ImageModel(detector, text_model, ocr_ready, versions, sandbox=sandbox)

    def process(self, model: ImageModel, item: WorkItem) -> StepResult:
        config = self._config
        # Hostile or corrupt input gets its own code whatever the worker's state
        # (ImageError and SandboxError are PrivacyErrors: the step dead-letters the code).
        image = decode_image(item.record["payload"], config.limits, model.sandbox)
        if model.detector is None or (config.ocr and not model.ocr_ready):
            code = (
                ErrorCode.IMAGE_MODEL_UNAVAILABLE
                if model.detector is None
                else ErrorCode.IMAGE_OCR_FAILED
            )
            if not model.reported:
                model.reported = True
                _LOGGER.error(
                    "Image branch not ready: image records are dead-lettered %s. Fix: %s",
                    code,
                    fix_for(code),
                )
            raise PrivacyError(code)
        pixels = image.pixels
        boxes = model.detector.detect(pixels, config.faces)
        counts = {}
        if len(boxes):
            counts[FACE] = len(boxes)
        Metrics.distribution("veil.image", "faces_per_record").update(len(boxes))
        steps: tuple = ()
        if config.ocr:
            text_counts, steps = self._text(model, pixels)
            counts.update(text_counts)
        # Faces are covered after OCR read the original pixels, so a name next to a
        # face is still found.
        cover(pixels, boxes, config.style)
        payload, content_type = encode_image(pixels, image.format, config.jpeg_quality)
        counts = dict(sorted(counts.items()))
        return StepResult(
            payload=payload,
            content_type=content_type,
            entity_counts=counts,
            classification=classify(counts, self._policy),
            audit_steps=steps,
        )

    def _text(self, model: ImageModel, pixels) -> tuple[dict, tuple]:
        """Covers PII words the OCR reads; returns their counts and any audit steps."""
        from veil.transforms.text import detect, select_spans

        passes = self._config.ocr_passes
        try:
            if passes is None:
                words = ocr.read_words(pixels, self._config.ocr_timeout_s)
            else:
                words, stats = ocr.read_words_multi(pixels, self._config.ocr_timeout_s, passes)
                Metrics.distribution("veil.image", "ocr_passes").update(stats["passes"])
        except ocr.OcrError:
            raise PrivacyError(ErrorCode.IMAGE_OCR_FAILED) from None
        if not words:
            return {}, (AuditStep(stage="image.ocr", action="OCR_SKIPPED", reason_code=NO_TEXT),)
        read = ocr.best_readings(words) if passes is not None else words
        text, _ = ocr.join_words(read)
        policy = self._policy.text
        spans = select_spans(detect(model.text_model, text, policy), policy.score_threshold)
        hits = ocr.pii_words(read, spans)
        style = RegionStyle(mode="fill", shape="rectangle", margin=self._config.ocr_margin)
        cover(pixels, [word.box for word, _ in hits], style)
        Metrics.counter("veil.image", "ocr_words_redacted").inc(len(hits))
        steps = []
        if passes is not None:
            # Fail closed per region: words read with low confidence that look like part
            # of an identifier are covered although no detector matched them.
            unsure = ocr.uncertain_words(words, passes.min_confidence)
            if unsure:
                cover(pixels, [word.box for word in unsure], style)
                Metrics.counter("veil.image", "ocr_uncertain_covered").inc(len(unsure))
                steps.append(
                    AuditStep(
                        stage="image.ocr",
                        action="OCR_UNCERTAIN_COVERED",
                        entity_counts={"regions": len(unsure)},
                    )
                )
        # One count per entity and pass; the same text read by several passes counts once.
        per_pass: dict = {}
        for word, entity in hits:
            key = (word.line[0] if passes is not None else "", entity)
            per_pass[key] = per_pass.get(key, 0) + 1
        counts: dict = {}
        for (_, entity), n in per_pass.items():
            counts[entity] = max(counts.get(entity, 0), n)
        return counts, tuple(steps)
