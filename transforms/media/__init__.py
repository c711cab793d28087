"""Media code the image and video branches share.

* ``models``: the face model's pinned files (fetched at set-up, sha256-checked on load).
* ``faces``: the CenterFace detector (``cv2.dnn``), its configuration and NMS.
* ``regions``: covering regions (blur, pixelate, fill; ellipse or rectangle) and box
  expansion.

Neither branch imports the other: ``veil.transforms.image`` and ``veil.transforms.video``
both build on this package.
"""
