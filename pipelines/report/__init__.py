"""``veil report``: what Veil did, as one self-contained HTML file.

    veil report DIR                         # a `veil sanitize` output directory
    veil report --since 1h --bootstrap B    # the topics over a time window
    veil sanitize FILES --out DIR --report [--show-originals]   # plus a review gallery

Sections: records per modality and outcome, sensitivity levels and regimes, entities by
type, dead-letter codes, privacy-step time and record-size distributions, the audit
chain's verification result, and (``sanitize --report``) the review gallery. Charts are
matplotlib PNGs embedded in the page; the page loads nothing from anywhere.

The report never holds raw values unless ``show_originals`` is set, and then says so on
every page.
"""

from __future__ import annotations

import logging
from pathlib import Path

from veil.pipelines.report.data import ReportData, from_directory, from_topics
from veil.pipelines.report.render import RAW_WARNING, SECTIONS, render

_LOGGER = logging.getLogger(__name__)


def write_report(path, data: ReportData, gallery=None, show_originals: bool = False) -> Path:
    """Renders ``data`` (and the gallery items, if any) to ``path``; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(data, gallery, show_originals), encoding="utf-8")
    _LOGGER.info("Report written: %d record(s)", len(data.records))
    return path


def sanitize_report(
    paths, out_dir, subject, sanitized, policy_path, keys=(), show_originals=False
) -> Path:
    """The report ``veil sanitize --report`` writes to ``DIR/report.html``."""
    from veil.pipelines.report import gallery
    from veil.transforms.classification import load_policy

    sized = [{**record, "payload_bytes": len(record["payload"])} for record in sanitized]
    data = from_directory(out_dir, keys, policy_path, sanitized=sized)
    items = gallery.build(paths, subject, sanitized, load_policy(policy_path), show_originals)
    return write_report(Path(out_dir) / "report.html", data, items, show_originals)


__all__ = [
    "RAW_WARNING",
    "SECTIONS",
    "ReportData",
    "from_directory",
    "from_topics",
    "sanitize_report",
    "write_report",
]
