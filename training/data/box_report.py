"""Box statistics (`training.data.box_stats`) as console tables and lines: what `search check` prints
for a detection task's data, in the order a reader wants it (anchors, per-class ratios, histogram,
sizes, coverage, then a search range to paste)."""

from __future__ import annotations

import numpy as np
from rich.console import RenderableType
from rich.table import Table
from rich.text import Text

from training.data.box_stats import MATCH_IOU, RATIO_EDGES, BoxStats

BAR_WIDTH = 30  # characters of the histogram's longest bar


def ratio_bins() -> list[str]:
    """Labels of the h/w histogram bins."""
    edges = [f"{e:.2g}" for e in RATIO_EDGES]
    return [f"< {edges[0]}", *(f"{a} - {b}" for a, b in zip(edges, edges[1:])), f">= {edges[-1]}"]


def ratio_table(stats: BoxStats) -> Table:
    """Per class: boxes, median h/w, spread, and the share no anchor matches."""
    table = Table(title=f"box aspect ratios (h/w) after the resize to {stats.image_size}x{stats.image_size}")
    for column in ("class", "boxes", "median h/w", "p5 - p95", "h/w < 0.5", f"no anchor IoU >= {MATCH_IOU:g}"):
        table.add_column(column, justify="left" if column == "class" else "right")
    for row in [*stats.classes, stats.overall]:
        p5, p95 = np.percentile(row.ratios, [5, 95])
        spread, flat = f"{p5:.2f} - {p95:.2f}", f"{np.mean(row.ratios < 0.5):.0%}"
        table.add_row(row.name, str(row.count), f"{row.median_ratio:.2f}", spread, flat, f"{row.miss_share:.0%}")
    return table


def ratio_histogram(stats: BoxStats) -> Table:
    """Boxes per h/w bin: a bar for all classes, then the count of each class."""
    counts = [c.histogram() for c in stats.classes]
    total = np.sum(counts, axis=0)
    table = Table(title="h/w histogram")
    table.add_column("h/w")
    table.add_column("all", justify="left")
    for c in stats.classes:
        table.add_column(c.name, justify="right")
    for i, label in enumerate(ratio_bins()):
        bar = "█" * round(BAR_WIDTH * total[i] / max(total.max(), 1))
        table.add_row(label, f"{bar} {total[i]}", *(str(c[i]) for c in counts))
    return table


def box_report(stats: BoxStats, ratios_searched: bool) -> list[RenderableType]:
    """The statistics in print order; `ratios_searched`: the search varies model.anchor_ratios, so the
    coverage shown (for the base anchors) is not every trial's."""
    sizes = ", ".join(f"p{p} {v:.3g} px ({v / stats.image_size:.2f})" for p, v in stats.size_percentiles().items())
    suggestion = stats.suggestion()
    note = "[yellow]note:[/] model.anchor_ratios is searched: coverage below is for its base value"
    return [
        f"box statistics: {stats.count} boxes; anchors: ratios {stats.anchor_ratios} x sizes {stats.anchor_sizes}",
        *([note] if ratios_searched else []),
        ratio_table(stats),
        ratio_histogram(stats),
        f"box size sqrt(area), px (share of the image side): {sizes}",
        f"anchor coverage: {stats.miss_share:.0%} of boxes have no anchor with IoU >= {MATCH_IOU:g}"
        " (shape-only IoU, anchor centred on the box: an upper bound for grid anchors)",
        "suggested anchor-ratio search (paste under space:):",
        Text(f"  {suggestion.space_entry()}"),  # a Text: its braces and brackets are not markup
        f"  (h/w p5 to p95 in steps of at most 2x: {suggestion.centre})",
    ]
