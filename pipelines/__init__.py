"""Veil's pipeline graphs, options and command line."""

from veil.transforms.version import __version__  # noqa: F401  (one version, read by setup.py)
