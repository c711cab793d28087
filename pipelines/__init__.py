"""Veil's pipeline graphs, options and command line."""

__version__ = "0.1.0"
