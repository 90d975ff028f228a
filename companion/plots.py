"""The house style for the book's figures: one call at the top of a chapter.

``apply_style()`` sets matplotlib's defaults so that every figure of the course has the same look:
readable labels (also on a phone, where a figure is shown at about a third of its size), light grids,
PNG output at a resolution that stays sharp when zoomed. matplotlib is imported here only, so
``import companion`` does not need it.
"""
from __future__ import annotations

FIGSIZE = (6.4, 3.6)
"""Width and height, in inches, of a one-panel figure."""

FIGSIZE_WIDE = (11.0, 3.8)
"""Width and height, in inches, of a two-panel figure."""

STYLE = {
    "figure.figsize": FIGSIZE,
    "figure.dpi": 110,
    "savefig.dpi": 150,
    "font.size": 11,
    "axes.titlesize": 12,
    "axes.labelsize": 11,
    "legend.fontsize": 9,
    "xtick.labelsize": 10,
    "ytick.labelsize": 10,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "lines.linewidth": 1.6,
    "figure.autolayout": True,
}
"""The matplotlib rcParams the course uses."""


def apply_style() -> None:
    """Set matplotlib's defaults to the course's house style (``STYLE``)."""
    import matplotlib

    matplotlib.rcParams.update(STYLE)
