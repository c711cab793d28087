"""Moved to ``veil.transforms.text.recognizers`` (kept so old imports still work)."""

from veil.transforms.text.recognizers import *  # noqa: F401,F403
from veil.transforms.text.recognizers import __all__  # noqa: F401
