"""What to do about each "not ready" dead-letter code: one line a user can act on.

Log lines that report a branch not ready, ``veil sanitize``'s summary and ``veil doctor``
quote these, so every such reason names its fix.

Example::

    _LOGGER.error("Image branch not ready (%s). Fix: %s", code, fix_for(code))
"""

from __future__ import annotations

TESSERACT_PACKAGES = "tesseract-ocr tesseract-ocr-eng"

FIXES = {
    "IMAGE_MODEL_UNAVAILABLE": (
        "run `veil setup` (fetches the pinned face model into the model cache: "
        "$VEIL_MODEL_DIR, else $VEIL_CACHE/models, else ~/.cache/veil/models) on every worker"
    ),
    "VIDEO_MODEL_UNAVAILABLE": (
        "run `veil setup` (the video branch uses the image branch's face model) on every worker"
    ),
    "IMAGE_OCR_FAILED": (
        f"install Tesseract with English data on every worker "
        f"(Debian/Ubuntu: apt-get install {TESSERACT_PACKAGES}); `veil doctor` checks it"
    ),
    "AUDIO_KEY_UNAVAILABLE": (
        "create a voice key with `veil keys init PATH` and pass --veil_audio_key_file PATH "
        "(or set $VEIL_AUDIO_KEY_FILE=PATH, mode 0600, on every worker)"
    ),
    "PSEUDONYM_KEY_UNAVAILABLE": (
        "create a key with `veil keys init PATH` and set $VEIL_PSEUDONYM_KEY_FILE=PATH "
        "(mode 0600) on every worker, or name it in the policy's keys settings"
    ),
    "PROTECTION_UNAVAILABLE": (
        "run with --veil_key_store (and its KMS flags) so originals the policy encrypts "
        "can be protected"
    ),
    "SCHEMA_REGISTRY_UNAVAILABLE": (
        "restore the schema registry (--veil_schema_registry), then replay the dead "
        "letters' sealed originals"
    ),
    "UNKNOWN_SCHEMA_ID": (
        "the producer framed the value with an id this registry (or, offline, the local "
        "catalog) does not know: point producer and Veil at the same registry"
    ),
}


def fix_for(code: str) -> str:
    """The fix for ``code``; a pointer to ``veil doctor`` for codes without one."""
    return FIXES.get(code, "see `veil doctor` and the dead-letter codes in the README")
