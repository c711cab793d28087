"""The report's charts: matplotlib (Agg, offline), embedded as PNG data URIs.

Every function takes plain counts or numbers (never content) and returns a
``data:image/png;base64,...`` string, or None when there is nothing to plot.
"""

from __future__ import annotations

import base64
import io
from collections import Counter

import matplotlib

matplotlib.use("Agg")  # no display, no GUI toolkit
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FuncFormatter, MaxNLocator  # noqa: E402

# One palette for the whole report (also used by the HTML for entity labels).
OUTCOME_COLOURS = {
    "sanitized": "#2e7d5b",
    "quarantined": "#c9a227",
    "dead-lettered": "#c0392b",
    "in flight": "#8a8f98",
}
SENSITIVITY_COLOURS = {
    "PUBLIC": "#6fa8dc",
    "INTERNAL": "#2e7d5b",
    "CONFIDENTIAL": "#e69138",
    "RESTRICTED": "#c0392b",
    "not recorded": "#b7b7b7",
}
MODALITY_ORDER = ("text", "structured", "image", "audio", "video", "unknown")
_INK = "#1f2430"
_GRID = "#e3e6eb"


def _style(ax) -> None:
    ax.spines[["top", "right"]].set_visible(False)
    ax.spines[["left", "bottom"]].set_color("#9aa0a6")
    ax.tick_params(colors=_INK, labelsize=9)
    ax.grid(axis="x", color=_GRID, linewidth=0.8)
    ax.set_axisbelow(True)


def _png(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=144, bbox_inches="tight", facecolor="white")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


FULL, HALF = 10.5, 5.2  # figure widths (inches) for a full-width and a half-width chart


def _figure(rows: float, width: float = FULL):
    height = max(1.5, 0.3 * rows + 0.8)
    fig, ax = plt.subplots(figsize=(width, height))
    _style(ax)
    return fig, ax


def outcomes_by_modality(pairs: list[tuple[str, str]], width: float = FULL) -> str | None:
    """Stacked horizontal bars: records per modality, split by outcome."""
    if not pairs:
        return None
    counts = Counter(pairs)
    modalities = [m for m in MODALITY_ORDER if any(p[0] == m for p in counts)]
    modalities += sorted({p[0] for p in counts} - set(modalities))
    fig, ax = _figure(len(modalities), width)
    left = [0] * len(modalities)
    for outcome, colour in OUTCOME_COLOURS.items():
        widths = [counts.get((m, outcome), 0) for m in modalities]
        if not any(widths):
            continue
        bars = ax.barh(modalities, widths, left=left, color=colour, label=outcome, height=0.6)
        ax.bar_label(
            bars,
            labels=[str(w) if w else "" for w in widths],
            label_type="center",
            color="white",
            fontsize=8,
            fontweight="bold",
        )
        left = [a + b for a, b in zip(left, widths)]
    ax.invert_yaxis()
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("records", color=_INK, fontsize=9)
    ax.legend(frameon=False, fontsize=8, ncols=4, loc="lower center", bbox_to_anchor=(0.5, 1.0))
    return _png(fig)


def bars(
    counts: dict,
    xlabel: str,
    colours: dict | None = None,
    default="#3d6fb6",
    top=20,
    width=FULL,
    order: tuple | None = None,
) -> str | None:
    """Horizontal bars, largest first (at most ``top``), or in ``order``."""
    items = [(k, v) for k, v in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if v]
    if order is not None:
        rank = {k: i for i, k in enumerate(order)}
        items.sort(key=lambda kv: (rank.get(kv[0], len(rank)), kv[0]))
    if not items:
        return None
    items = items[:top]
    fig, ax = _figure(len(items), width)
    labels = [k for k, _ in items]
    values = [v for _, v in items]
    colour = [(colours or {}).get(k, default) for k in labels]
    drawn = ax.barh(labels, values, color=colour, height=0.6)
    ax.bar_label(drawn, padding=3, fontsize=8, color=_INK)
    ax.invert_yaxis()
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel(xlabel, color=_INK, fontsize=9)
    ax.margins(x=0.12)
    return _png(fig)


def _human(unit: str):
    def label(value, _):
        if unit == "bytes":
            for step, name in ((1e9, "GB"), (1e6, "MB"), (1e3, "kB")):
                if value >= step:
                    return f"{value / step:.3g} {name}"
            return f"{value:.3g} B"
        return f"{value:g}"

    return FuncFormatter(label)


def distributions(
    series: dict[str, list[float]],
    xlabel: str,
    log: bool = False,
    width: float = HALF,
    unit: str = "",
) -> str | None:
    """One row of points per group over a box plot: a distribution people can read
    with a handful of records as well as with thousands."""
    series = {k: [float(v) for v in vs if v is not None] for k, vs in series.items()}
    series = {k: vs for k, vs in series.items() if vs}
    if not series:
        return None
    names = [m for m in MODALITY_ORDER if m in series] + sorted(set(series) - set(MODALITY_ORDER))
    fig, ax = _figure(len(names) + 0.5, width)
    data = [series[n] for n in names]
    ax.boxplot(
        data,
        vert=False,
        widths=0.5,
        showfliers=False,
        medianprops={"color": "#c0392b", "linewidth": 1.6},
        boxprops={"color": "#5f6670"},
        whiskerprops={"color": "#5f6670"},
        capprops={"color": "#5f6670"},
    )
    for row, values in enumerate(data, 1):
        jitter = [row + ((i * 0.6180339) % 1 - 0.5) * 0.3 for i in range(len(values))]
        ax.scatter(values, jitter, s=14, color="#3d6fb6", alpha=0.65, linewidths=0, zorder=3)
    ax.set_yticks(range(1, len(names) + 1), [f"{n} (n={len(series[n])})" for n in names])
    ax.invert_yaxis()
    if log:
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(_human(unit))
    ax.set_xlabel(xlabel, color=_INK, fontsize=9)
    return _png(fig)


__all__ = [
    "OUTCOME_COLOURS",
    "SENSITIVITY_COLOURS",
    "bars",
    "distributions",
    "outcomes_by_modality",
]
