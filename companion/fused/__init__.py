"""Fused sequence paths: the same numbers as the step loop of ``companion.bptt``, computed faster.

A cell (``companion.cells``) holds the math of one step; the book reads it line by line. This
subpackage holds the speed: for a few cells, a *fused path* runs a whole sequence forward and backward
with the time-parallel work done as single large matrix products (the input projections of all steps,
the sums over time of the parameter gradients) and only the true recurrence left in a Python loop.

**The rule.** A fused path is registered for one exact cell class (``Elman``, ``LSTM``, ``GRU``) and is
used only for a cell whose type *is* that class. A subclass, which may change any part of the step
(a student's variant, a peephole LSTM, a deliberately broken cell in an exercise), and any cell without
an entry (``Jordan``, a new cell) run the cell's own ``step`` / ``step_backward`` through the step loop.
So the fused layer can never bypass math that a reader changed.

Each fused path is a pair of functions:

* ``forward(cell, params, xs, state0) -> (hs, final_state, cache)``, with ``xs`` (T, B, n_in), ``state0``
  the cell's state for B sequences, ``hs`` (T, B, output width);
* ``backward(cell, params, cache, dhs, d_final_state) -> (grads, dxs, dstate0)``, on the cache of
  ``forward``, with ``dhs`` (T, B, output width).

Both trust their inputs: ``companion.bptt`` checks them once.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from ..cells import GRU, LSTM, Cell, Elman
from . import elman, gru, lstm


class FusedPath(NamedTuple):
    """A cell class's fused sequence functions (see the module docstring for their signatures)."""

    forward: Callable[..., tuple[Any, Any, Any]]
    backward: Callable[..., tuple[Any, Any, Any]]


REGISTRY: dict[type, FusedPath] = {
    Elman: FusedPath(elman.forward_sequence, elman.backward_sequence),
    LSTM: FusedPath(lstm.forward_sequence, lstm.backward_sequence),
    GRU: FusedPath(gru.forward_sequence, gru.backward_sequence),
}
"""Exact cell class -> its fused path. Subclasses are deliberately not looked up."""


def fused_path(cell: Cell) -> FusedPath | None:
    """The fused path registered for ``type(cell)`` itself, or ``None`` (then the step loop runs)."""
    return REGISTRY.get(type(cell))
