"""The drawn LSTM and GRU cells: labelled with the book's symbols, nothing overlapping, readable on a phone."""
from __future__ import annotations

import itertools

import matplotlib
import matplotlib.pyplot as plt
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.text import Text

from companion import diagrams, plots

MIN_FONT_PT = 11.0  # at a figure width of about 6 in: 9 CSS px on a phone (see companion.plots)

DRAWINGS = {
    "lstm": (diagrams.draw_lstm_cell, {},
             [r"$x_t$", r"$h_{t-1}$", r"$c_{t-1}$", r"$i_t$", r"$f_t$", r"$g_t$", r"$o_t$", r"$c_t$", r"$h_t$",
              r"$\sigma$", r"$\tanh$", r"$\odot$", r"$+$"]),
    "gru-torch": (diagrams.draw_gru_cell, {"variant": "torch"},
                  [r"$x_t$", r"$h_{t-1}$", r"$r_t$", r"$z_t$", r"$n_t$", r"$m_t$", r"$W_{hn}$", r"$h_t$",
                   r"$\sigma$", r"$\tanh$", r"$\odot$", r"$+$", r"$1-$"]),
    "gru-cho": (diagrams.draw_gru_cell, {"variant": "cho"},
                [r"$x_t$", r"$h_{t-1}$", r"$r_t$", r"$z_t$", r"$n_t$", r"$s_t$", r"$h_t$",
                 r"$\sigma$", r"$\tanh$", r"$\odot$", r"$+$", r"$1-$"]),
}


@pytest.fixture(params=list(DRAWINGS), scope="module")
def drawing(request):
    """(the Axes drawn in, its text artists, the symbols it must show), rendered once by Agg."""
    draw, kwargs, symbols = DRAWINGS[request.param]
    with matplotlib.rc_context():
        plots.apply_style()
        ax = draw(**kwargs)
        FigureCanvasAgg(ax.figure).draw()
    yield ax, [text for text in ax.figure.findobj(Text) if text.get_text()], symbols
    plt.close(ax.figure)


def test_the_books_symbols_label_the_diagram(drawing):
    ax, texts, symbols = drawing
    labels = {text.get_text() for text in texts}
    assert not set(symbols) - labels
    assert ax.figure.get_size_inches()[0] == pytest.approx(plots.FIGSIZE[0])


def test_the_variants_differ_where_the_reset_gate_acts(drawing):
    ax, texts, symbols = drawing
    labels = {text.get_text() for text in texts}
    assert (r"$m_t$" in labels) == (r"$m_t$" in symbols)
    assert (r"$s_t$" in labels) == (r"$s_t$" in symbols)


def test_no_two_labels_overlap(drawing):
    ax, texts, _ = drawing
    renderer = ax.figure.canvas.get_renderer()
    boxes = [(text.get_text(), text.get_window_extent(renderer)) for text in texts]
    overlapping = [(a, b) for (a, box_a), (b, box_b) in itertools.combinations(boxes, 2) if box_a.overlaps(box_b)]
    assert not overlapping


def test_everything_lies_inside_the_figure(drawing):
    ax, texts, _ = drawing
    renderer = ax.figure.canvas.get_renderer()
    figure_box = ax.figure.bbox
    artists = texts + list(ax.patches) + list(ax.lines)
    for artist in artists:
        box = artist.get_window_extent(renderer)
        assert figure_box.x0 <= box.x0 and box.x1 <= figure_box.x1, artist
        assert figure_box.y0 <= box.y0 and box.y1 <= figure_box.y1, artist


def test_the_smallest_text_is_readable_on_a_phone(drawing):
    ax, texts, _ = drawing
    width_inches = ax.figure.get_size_inches()[0]
    smallest = min(text.get_fontsize() for text in texts)
    assert smallest >= MIN_FONT_PT
    assert smallest / 72 * plots.PHONE_COLUMN_PX / width_inches >= 9.0


def test_a_bad_variant_is_refused():
    with pytest.raises(ValueError, match="variant"):
        diagrams.draw_gru_cell(variant="keras")


def test_a_given_axes_is_drawn_in():
    fig, ax = plt.subplots()
    try:
        assert diagrams.draw_gru_cell(ax, variant="cho") is ax
        assert not ax.axison and ax.texts
    finally:
        plt.close(fig)
