"""The house style for the book's figures: one call at the top of a chapter.

``apply_style()`` sets matplotlib's defaults so that every figure of the course has the same look:
readable labels, light grids, and PNG output at a resolution that stays sharp on a high-density screen.
matplotlib is imported here only, so ``import companion`` does not need it.

Sizes are chosen for a phone. The site shows a figure at the width of its text column: about 670 CSS
pixels on a desktop, about 360 on a phone. A one-panel figure ``FIGSIZE`` wide is therefore shown at
about 60 pixels per inch on a phone, and its smallest text (11 pt tick labels) at about 9 pixels, the
least that stays readable. A two-panel figure ``FIGSIZE_WIDE`` wide shrinks its text to about 5 pixels
on a phone, so prefer two one-panel figures, or stack the panels: ``plt.subplots(2, 1,
figsize=FIGSIZE_STACKED)``. Label axes with the quantity and its unit, ``"time (ms)"``.
"""
from __future__ import annotations

FIGSIZE = (6.0, 3.5)
"""Width and height, in inches, of a one-panel figure."""

FIGSIZE_WIDE = (11.0, 3.8)
"""Width and height, in inches, of a two-panel figure side by side (small on a phone)."""

FIGSIZE_STACKED = (6.0, 6.4)
"""Width and height, in inches, of two panels one above the other (readable on a phone)."""

PHONE_COLUMN_PX = 360
"""Width, in CSS pixels, of the site's text column on a phone: the width a figure is shown at there."""

STYLE = {
    "figure.figsize": FIGSIZE,
    # IPython's inline backend stores PNGs at figure.dpi: 900 pixels across for a one-panel figure, which
    # the site shows at 670 CSS pixels on a desktop and 360 on a phone, sharp on 2x and 3x screens.
    "figure.dpi": 150,
    "savefig.dpi": 200,
    "figure.facecolor": "white",
    "savefig.facecolor": "white",
    "font.size": 12,
    "axes.titlesize": 12.5,
    "axes.labelsize": 12,
    "legend.fontsize": 11,
    "legend.framealpha": 0.9,
    "xtick.labelsize": 11,
    "ytick.labelsize": 11,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "lines.linewidth": 2.0,
    "lines.markersize": 6.5,
    "figure.autolayout": True,
}
"""The matplotlib rcParams the course uses."""


def apply_style() -> None:
    """Set matplotlib's defaults to the course's house style (``STYLE``)."""
    import matplotlib

    matplotlib.rcParams.update(STYLE)
