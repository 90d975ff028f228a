"""Drawn diagrams of one step of the LSTM and of the GRU, labelled with the book's symbols.

``draw_lstm_cell()`` and ``draw_gru_cell()`` draw the data flow of one step in the style of the
standard tutorials: the inputs enter on the left and from below, the gates are boxes (their
nonlinearity written inside, their output's symbol beside the wire that leaves them), the pointwise
operations are circles, and the path along which the state's adjoint flows from step to step without a
weight matrix in the way (the LSTM's constant error carousel, the GRU's direct path) is drawn thick in
the highlight colour. A wire that crosses another without joining it is drawn with a small gap; a dot
marks where a wire branches.

Coordinates are inches: a figure made here is ``FIGURE_WIDTH`` inches wide, the width of a one-panel
figure of the house style (``plots.FIGSIZE``), and taller than wide, and its smallest text is 11 pt,
so the labels stay readable where a phone shows it 360 CSS pixels wide. matplotlib is imported inside
the functions only, so ``import companion`` does not need it.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from .cells.gru import VARIANTS

if TYPE_CHECKING:
    from matplotlib.axes import Axes

FIGURE_WIDTH = 6.0
"""Width, in inches, of a figure made here (the house one-panel width)."""

GATE_COLOR = "#cfe2f3"
"""Fill of the gates (an affine map of the inputs, then sigma or tanh) and of the GRU's W_hn box."""

POINTWISE_COLOR = "#fff2cc"
"""Fill of the pointwise operations."""

HIGHLIGHT_COLOR = "#c2410c"
"""The LSTM's carousel and the GRU's direct path."""

WIRE_COLOR = "0.25"
"""Every other wire."""

CELL_COLOR = "#f2f2f2"
"""The cell's background."""

FONT_SIZE = 12.0
"""Points, for every label (the notes under a diagram are 11 pt)."""

_BOX_W, _BOX_H = 0.58, 0.42     # a gate box, inches
_RADIUS = 0.18                  # a pointwise circle
_SYMBOL_SIZE = 14.0             # points, for the symbol in a pointwise circle
_WIRE_LW, _HIGHLIGHT_LW = 1.6, 4.0
_GAP = 0.07                     # between a wire and its label


class _Node(NamedTuple):
    """The centre and half extents of a drawn box or circle: where wires attach."""

    x: float
    y: float
    half_w: float
    half_h: float

    @property
    def top(self) -> tuple[float, float]:
        return self.x, self.y + self.half_h

    @property
    def bottom(self) -> tuple[float, float]:
        return self.x, self.y - self.half_h

    @property
    def left(self) -> tuple[float, float]:
        return self.x - self.half_w, self.y

    @property
    def right(self) -> tuple[float, float]:
        return self.x + self.half_w, self.y


def _axes(ax: Axes | None, height: float) -> Axes:
    """A new figure's Axes, or ``ax``, set up for a drawing in inches ``FIGURE_WIDTH`` by ``height``."""
    if ax is None:
        import matplotlib.pyplot as plt

        fig = plt.figure(figsize=(FIGURE_WIDTH, height), layout="none")
        ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))
    ax.set_xlim(0.0, FIGURE_WIDTH)
    ax.set_ylim(0.0, height)
    ax.set_aspect("equal")
    ax.axis("off")
    return ax


def _cell(ax: Axes, x0: float, y0: float, x1: float, y1: float) -> None:
    """The cell's rounded background, from ``(x0, y0)`` to ``(x1, y1)``."""
    from matplotlib.patches import FancyBboxPatch

    ax.add_patch(FancyBboxPatch((x0, y0), x1 - x0, y1 - y0, boxstyle="round,pad=0,rounding_size=0.18",
                                facecolor=CELL_COLOR, edgecolor="0.6", linewidth=1.0, zorder=0))


def _box(ax: Axes, x: float, y: float, text: str, width: float = _BOX_W, color: str = GATE_COLOR) -> _Node:
    """A gate: a box centred at ``(x, y)`` with ``text`` inside."""
    from matplotlib.patches import FancyBboxPatch

    ax.add_patch(FancyBboxPatch((x - width / 2, y - _BOX_H / 2), width, _BOX_H,
                                boxstyle="round,pad=0,rounding_size=0.06",
                                facecolor=color, edgecolor=WIRE_COLOR, linewidth=1.2, zorder=3))
    ax.text(x, y, text, ha="center", va="center", fontsize=FONT_SIZE, zorder=4)
    return _Node(x, y, width / 2, _BOX_H / 2)


def _circle(ax: Axes, x: float, y: float, text: str, width: float = 2 * _RADIUS,
            edgecolor: str = WIRE_COLOR, fontsize: float = _SYMBOL_SIZE) -> _Node:
    """A pointwise operation: a circle (an ellipse when ``width`` is larger) centred at ``(x, y)``."""
    from matplotlib.patches import Ellipse

    ax.add_patch(Ellipse((x, y), width, 2 * _RADIUS, facecolor=POINTWISE_COLOR, edgecolor=edgecolor,
                         linewidth=1.2, zorder=3))
    ax.text(x, y, text, ha="center", va="center_baseline", fontsize=fontsize, zorder=4)
    return _Node(x, y, width / 2, _RADIUS)


def _wire(ax: Axes, *points: tuple[float, float], head: bool = True, highlight: bool = False,
          bridge: bool = False) -> None:
    """A wire along ``points`` (horizontal and vertical segments), with an arrow head at the last one.

    ``bridge`` lays it over a band of the background colour, so that where it crosses a wire drawn
    earlier the crossing shows a gap: the two do not join.
    """
    from matplotlib.patches import FancyArrowPatch
    from matplotlib.path import Path

    color, lw, head_size = (HIGHLIGHT_COLOR, _HIGHLIGHT_LW, 12) if highlight else (WIRE_COLOR, _WIRE_LW, 15)
    if bridge:
        xs, ys = zip(*points)
        ax.plot(xs, ys, color=CELL_COLOR, linewidth=lw + 6, solid_capstyle="butt", zorder=2.4)
    ax.add_patch(FancyArrowPatch(path=Path(points), arrowstyle="-|>" if head else "-",
                                 mutation_scale=head_size, color=color, linewidth=lw,
                                 joinstyle="miter", capstyle="butt", zorder=2.5 if bridge else 2))


def _dot(ax: Axes, x: float, y: float) -> None:
    """A junction: the wire branches at ``(x, y)``."""
    ax.plot([x], [y], marker="o", markersize=6, color=WIRE_COLOR, zorder=2.6)


def _label(ax: Axes, x: float, y: float, text: str, ha: str = "left", va: str = "center",
           color: str = "black", fontsize: float = FONT_SIZE) -> None:
    """A symbol or note at ``(x, y)``."""
    ax.text(x, y, text, ha=ha, va=va, fontsize=fontsize, color=color, zorder=5)


def draw_lstm_cell(ax: Axes | None = None) -> Axes:
    """Draw one step of the LSTM cell (``companion.cells.LSTM``) as a data-flow diagram.

    The cell state runs along the top, ``c_{t-1} -> (* f_t) -> (+ i_t * g_t) -> c_t``: the constant
    error carousel, drawn thick in ``HIGHLIGHT_COLOR``. ``h_{t-1}`` enters at the lower left, joined by
    ``x_t`` from below, and feeds the four gates ``f_t, i_t, g_t, o_t`` (left to right; torch orders
    them i, f, g, o); ``h_t = o_t * tanh(c_t)`` leaves at the lower right.

    Parameters
    ----------
    ax : matplotlib Axes, optional
        Where to draw. Default: a new figure ``FIGURE_WIDTH`` inches wide and 5.15 inches tall.

    Returns
    -------
    matplotlib Axes
        The Axes drawn in, its coordinates in inches and its axis turned off.
    """
    ax = _axes(ax, 5.15)
    y_note, y_x, y_bus, y_gate, y_oh, y_ig, y_tanh, y_top, y_title = 0.2, 0.75, 1.45, 2.3, 2.9, 3.35, 3.6, 4.4, 4.8
    x_in, x_x, x_f, x_i, x_ig, x_g, x_o, x_h, x_out = 0.8, 1.3, 1.85, 2.6, 3.1, 3.6, 4.3, 4.95, 5.45
    _cell(ax, 1.0, 1.0, 5.25, 4.75)

    # the gates, fed by the wire that carries h_{t-1} and x_t
    f = _box(ax, x_f, y_gate, r"$\sigma$")
    i = _box(ax, x_i, y_gate, r"$\sigma$")
    g = _box(ax, x_g, y_gate, r"$\tanh$")
    o = _box(ax, x_o, y_gate, r"$\sigma$")
    _wire(ax, (x_in, y_bus), (x_o, y_bus), o.bottom)
    _wire(ax, (x_x, y_x), (x_x, y_bus), head=False)
    _dot(ax, x_x, y_bus)
    for gate in (f, i, g):
        _wire(ax, (gate.x, y_bus), gate.bottom)
        _dot(ax, gate.x, y_bus)
    _label(ax, x_in - _GAP, y_bus, r"$h_{t-1}$", ha="right")
    _label(ax, x_x, y_x - _GAP, r"$x_t$", ha="center", va="top")

    # the cell state: forget, then add the gated candidate
    forget = _circle(ax, x_f, y_top, r"$\odot$", edgecolor=HIGHLIGHT_COLOR)
    add = _circle(ax, x_ig, y_top, r"$+$", edgecolor=HIGHLIGHT_COLOR)
    write = _circle(ax, x_ig, y_ig, r"$\odot$")
    _wire(ax, (x_in, y_top), forget.left, highlight=True)
    _wire(ax, forget.right, add.left, highlight=True)
    _wire(ax, add.right, (x_out, y_top), highlight=True)
    _wire(ax, f.top, forget.bottom)
    _wire(ax, i.top, (x_i, y_ig), write.left)
    _wire(ax, g.top, (x_g, y_ig), write.right)
    _wire(ax, write.top, add.bottom)
    _label(ax, x_in - _GAP, y_top, r"$c_{t-1}$", ha="right")
    _label(ax, x_out + _GAP, y_top, r"$c_t$")
    _label(ax, (x_in + x_out) / 2, y_title, "constant error carousel", va="bottom", ha="center",
           color=HIGHLIGHT_COLOR, fontsize=11)
    _label(ax, x_f + _GAP, (f.top[1] + forget.bottom[1]) / 2, r"$f_t$")
    _label(ax, x_i + _GAP, (i.top[1] + y_ig) / 2, r"$i_t$")
    _label(ax, x_g + _GAP, (g.top[1] + y_ig) / 2, r"$g_t$")

    # the output: h_t = o_t * tanh(c_t)
    squash = _circle(ax, x_h, y_tanh, r"$\tanh$", width=0.62, fontsize=FONT_SIZE)
    out = _circle(ax, x_h, y_oh, r"$\odot$")
    _wire(ax, (x_h, y_top), squash.top)
    _dot(ax, x_h, y_top)
    _wire(ax, squash.bottom, out.top)
    _wire(ax, o.top, (x_o, y_oh), out.left)
    _wire(ax, out.bottom, (x_h, y_bus), (x_out, y_bus))
    _label(ax, x_o + _GAP, (o.top[1] + y_oh) / 2, r"$o_t$")
    _label(ax, x_out + _GAP, y_bus, r"$h_t$")

    _label(ax, FIGURE_WIDTH / 2, y_note,
           r"each gate: $\sigma$ or tanh of $W_{xq}\,x_t + W_{hq}\,h_{t-1} + b_q$",
           ha="center", va="bottom", fontsize=11)
    return ax


def draw_gru_cell(ax: Axes | None = None, variant: str = "torch") -> Axes:
    """Draw one step of the GRU cell (``companion.cells.GRU``) as a data-flow diagram.

    The state runs along the top, ``h_{t-1} -> (* z_t) -> (+ (1 - z_t) * n_t) -> h_t``: the direct path
    of ``h_t = (1 - z_t) * n_t + z_t * h_{t-1}``, drawn thick in ``HIGHLIGHT_COLOR``. A branch of
    ``h_{t-1}``, joined by ``x_t`` from below, feeds the gates ``r_t`` and ``z_t``; ``x_t`` alone and the
    reset state feed the candidate ``n_t``.

    Parameters
    ----------
    ax : matplotlib Axes, optional
        Where to draw. Default: a new figure ``FIGURE_WIDTH`` inches wide and 5.75 inches tall.
    variant : {"torch", "cho"}
        Where the reset gate acts, as in ``companion.cells.GRU``: ``"torch"`` after the recurrent
        product, ``r_t * m_t`` with ``m_t = W_hn h_{t-1} + b_hn``; ``"cho"`` before it, on
        ``s_t = r_t * h_{t-1}``.

    Returns
    -------
    matplotlib Axes
        The Axes drawn in, its coordinates in inches and its axis turned off.

    Raises
    ------
    ValueError
        If ``variant`` is not one of ``"torch"``, ``"cho"``.
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    ax = _axes(ax, 5.75)
    y_note, y_x, y_xn, y_bus, y_gate, y_reset, y_mix, y_top, y_title = 0.15, 1.1, 1.45, 1.9, 2.7, 3.5, 4.3, 4.95, 5.35
    x_in, x_left, x_x, x_r, x_reset, x_z, x_one, x_n, x_out = 0.8, 1.25, 1.55, 2.1, 2.95, 3.8, 4.28, 4.88, 5.45
    _cell(ax, 1.0, 1.25, 5.25, 5.3)

    # the direct path: h_t = z_t * h_{t-1} + (1 - z_t) * n_t
    keep = _circle(ax, x_z, y_top, r"$\odot$", edgecolor=HIGHLIGHT_COLOR)
    add = _circle(ax, x_n, y_top, r"$+$", edgecolor=HIGHLIGHT_COLOR)
    _wire(ax, (x_in, y_top), keep.left, highlight=True)
    _wire(ax, keep.right, add.left, highlight=True)
    _wire(ax, add.right, (x_out, y_top), highlight=True)
    _label(ax, x_in - _GAP, y_top, r"$h_{t-1}$", ha="right")
    _label(ax, x_out + _GAP, y_top, r"$h_t$")
    _label(ax, (x_in + x_out) / 2, y_title, "direct path", va="bottom", ha="center", color=HIGHLIGHT_COLOR,
           fontsize=11)

    # the gates, fed by a branch of h_{t-1} joined by x_t
    r = _box(ax, x_r, y_gate, r"$\sigma$")
    z = _box(ax, x_z, y_gate, r"$\sigma$")
    _wire(ax, (x_left, y_top), (x_left, y_bus), (x_z, y_bus), z.bottom)
    _dot(ax, x_left, y_top)
    _wire(ax, (x_r, y_bus), r.bottom)
    _dot(ax, x_r, y_bus)
    _wire(ax, (x_x, y_x), (x_x, y_bus), head=False)
    _dot(ax, x_x, y_bus)
    _label(ax, x_x, y_x - _GAP, r"$x_t$", ha="center", va="top")

    # the update gate: z_t keeps the old state, 1 - z_t lets in the candidate
    one_minus = _circle(ax, x_one, y_mix, r"$1-$", width=0.46, fontsize=FONT_SIZE)
    mix = _circle(ax, x_n, y_mix, r"$\odot$")
    _wire(ax, z.top, keep.bottom)
    _dot(ax, x_z, y_mix)
    _wire(ax, (x_z, y_mix), one_minus.left)
    _wire(ax, one_minus.right, mix.left)
    _wire(ax, mix.top, add.bottom)
    _label(ax, x_z + _GAP, (z.top[1] + y_reset) / 2, r"$z_t$")

    # the candidate n_t, from x_t alone and the reset state
    n = _box(ax, x_n, y_reset, r"$\tanh$")
    reset = _circle(ax, x_reset, y_reset, r"$\odot$")
    _wire(ax, (x_x, y_xn), (x_n, y_xn), n.bottom)
    _dot(ax, x_x, y_xn)
    _wire(ax, r.top, (x_r, y_reset), reset.left)
    _wire(ax, reset.right, n.left, bridge=True)
    _wire(ax, n.top, mix.bottom)
    _label(ax, x_r + _GAP, (r.top[1] + y_reset) / 2, r"$r_t$")
    _label(ax, x_n + _GAP, (n.top[1] + mix.bottom[1]) / 2, r"$n_t$")
    if variant == "torch":
        linear = _box(ax, x_reset, y_mix, r"$W_{hn}$", width=0.7)
        _wire(ax, (x_reset, y_top), linear.top)
        _wire(ax, linear.bottom, reset.top)
        _label(ax, x_reset + _GAP, (linear.bottom[1] + reset.top[1]) / 2, r"$m_t$")
        notes = r"$n_t = \tanh(W_{xn}\,x_t + b_{xn} + r_t \odot m_t)$,  $m_t = W_{hn}\,h_{t-1} + b_{hn}$"
    else:
        _wire(ax, (x_reset, y_top), reset.top)
        _label(ax, (reset.right[0] + x_z) / 2, y_reset + _GAP, r"$s_t$", ha="center", va="bottom")
        notes = r"$n_t = \tanh(W_{xn}\,x_t + W_{hn}\,s_t + b_n)$,  $s_t = r_t \odot h_{t-1}$"
    _dot(ax, x_reset, y_top)
    _label(ax, FIGURE_WIDTH / 2, y_note + 0.32, r"gates $r_t, z_t$: $\sigma(W_{xq}\,x_t + W_{hq}\,h_{t-1} + b_q)$",
           ha="center", va="bottom", fontsize=11)
    _label(ax, FIGURE_WIDTH / 2, y_note, notes, ha="center", va="bottom", fontsize=11)
    return ax
