"""Veil's release version, stamped into sanitized records, audit events and envelopes.

It lives at the bottom layer so that ``veil.transforms`` never imports ``veil.pipelines``
(the import-linter contracts in ``.importlinter`` enforce that); ``veil.pipelines``
re-exports it as ``veil.pipelines.__version__`` and ``setup.py`` reads it from here.
"""

__version__ = "0.1.0"
