"""The video branch: faces covered on every frame, the audio track anonymized or
dropped, container metadata stripped, hostile files refused.

Modules:

* ``container``: container and codec allow-lists, header limits before decoding,
  frame-by-frame decoding, metadata-free re-encoding (PyAV / FFmpeg from its wheel);
* ``tracker``: boxes held, interpolated and back-filled across frames;
* ``stream``: the decode -> detect -> track -> cover -> encode loop;
* ``record``: one record's FFmpeg and detector work, run in a sandbox worker
  (``veil.transforms.sandbox``) when decoder isolation is on, the default;
* ``handler``: ``VideoHandler`` and ``VideoConfig`` for ``ApplyPrivacyStep``.

The face detector and the covering modes are the image branch's
(``veil.transforms.image``); the audio track goes through the audio branch's
``AudioHandler``.

Example::

    videos = routed.branches["video"] | "Video" >> ApplyPrivacyStep(
        VideoHandler(policy, VideoConfig()), time_limit_s=120
    )
"""

from veil.transforms.video.container import EncoderConfig, VideoLimits
from veil.transforms.video.handler import VIDEO_DECODERS, VideoConfig, VideoHandler
from veil.transforms.video.tracker import TrackerConfig

__all__ = [
    "VIDEO_DECODERS",
    "EncoderConfig",
    "TrackerConfig",
    "VideoConfig",
    "VideoHandler",
    "VideoLimits",
]
