"""Veil's DoFns and PTransforms, one module or folder per concern."""
