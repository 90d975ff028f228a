"""The house figure style: apply_style sets it, and its text stays readable where a phone shows the figure."""
from __future__ import annotations

import matplotlib
import matplotlib.colors
import pytest
from matplotlib.figure import Figure

from companion import plots

MIN_PHONE_TEXT_PX = 9.0  # CSS pixels: smaller text is hard to read on a phone
TEXT_SIZES = ["font.size", "axes.titlesize", "axes.labelsize", "legend.fontsize", "xtick.labelsize", "ytick.labelsize"]


def test_apply_style_sets_the_house_rcparams():
    with matplotlib.rc_context():
        plots.apply_style()
        for key, value in plots.STYLE.items():
            current = matplotlib.rcParams[key]
            expected = list(value) if isinstance(value, tuple) else value
            assert current == expected or matplotlib.colors.same_color(current, value), key
        figure = Figure()
        assert tuple(figure.get_size_inches()) == plots.FIGSIZE
        assert figure.dpi == plots.STYLE["figure.dpi"]


@pytest.mark.parametrize("size", ["FIGSIZE", "FIGSIZE_STACKED"])
@pytest.mark.parametrize("key", TEXT_SIZES)
def test_text_is_readable_on_a_phone(size, key):
    width_inches = getattr(plots, size)[0]
    points = plots.STYLE[key]
    css_pixels = points / 72 * plots.PHONE_COLUMN_PX / width_inches
    assert css_pixels >= MIN_PHONE_TEXT_PX, f"{key} {points} pt in a {size} figure: {css_pixels:.1f} px on a phone"


def test_the_stored_png_is_sharp_on_a_phone():
    """A one-panel PNG has at least 2.5 image pixels per CSS pixel of the phone column."""
    assert plots.FIGSIZE[0] * plots.STYLE["figure.dpi"] >= 2.5 * plots.PHONE_COLUMN_PX
