"""Full backpropagation through time for any cell of the protocol (Werbos 1990).

Forward runs the cell over the whole sequence and keeps what the backward pass needs; backward walks
the steps in reverse, carrying dL/d(state) from step t to step t-1 and summing the tied parameters'
gradients over time (chapter "BPTT for the Elman network", the recursion for dL/dh_t).

Two paths compute the same numbers:

* the **step loop** (``forward_steps`` / ``backward_steps``) calls the cell's one-step protocol T times
  and works for every cell;
* the **fused path** of ``companion.fused``, registered for the exact classes ``Elman``, ``LSTM`` and
  ``GRU``, does the time-parallel work (input projections, parameter-gradient sums over time) as single
  large matrix products and keeps only the true recurrence in a Python loop. ``forward`` uses it when
  one is registered for ``type(cell)`` (``fused=True``, the default); a subclass or any other cell runs
  the step loop, so a cell whose step a reader changed is always differentiated through that step.
  ``backward`` follows whichever path its cache came from.

``state_adjoints`` returns dL/d(state_t) at every step, the quantity that the chapters on vanishing
gradients, truncation and continuous time plot.

``check_inputs``, ``check_dhs`` and ``start_state`` check a sequence's inputs, its output gradients and its
initial state once; the other sequence algorithms (truncation, checkpointing, RTRL, UORO, the online
loops) call them too, so every algorithm refuses the same bad input with the same message.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .cells.base import Cell, check_cell
from .fused import FusedPath, fused_path
from .types import Array, Params, State
from .validation import as_float_array, check_shape


@dataclass(frozen=True)
class SequenceCache:
    """What ``forward`` keeps for ``backward``.

    Attributes
    ----------
    cell : Cell
        The cell that ran the sequence; ``backward`` refuses the cache for a different cell.
    xs : array, shape (T, B, n_in)
        The inputs.
    state0 : State
        The initial state the sequence started from.
    final_state : State
        The state after the last step (to carry into the next chunk of a longer sequence).
    steps : list or None
        The step loop's cache: the cell's cache of every step, in time order (``steps[t - 1]`` is step t).
    fused : FusedPath or None
        The fused path that ran, if one did.
    fused_cache : object or None
        What that fused path's forward returned for its backward.
    """

    cell: Cell
    xs: Array
    state0: State
    final_state: State
    steps: list[Any] | None = None
    fused: FusedPath | None = None
    fused_cache: Any = None

    @property
    def length(self) -> int:
        """T, the number of steps."""
        return self.xs.shape[0]

    @property
    def batch(self) -> int:
        """B, the number of sequences."""
        return self.xs.shape[1]


def forward(
    cell: Cell, params: Params, xs: Array, state0: State | None = None, *, fused: bool = True
) -> tuple[Array, SequenceCache]:
    """Run ``cell`` over a sequence.

    Parameters
    ----------
    cell : Cell
        Any cell of ``companion.cells``.
    params : dict
        The cell's parameters (see ``cell.param_shapes()``).
    xs : array, shape (T, B, n_in)
        Inputs, time-major.
    state0 : State, optional
        Initial state, ``(B, n_hidden)`` (or a tuple for multi-part states); zeros if omitted.
    fused : bool, keyword-only
        Use the fused path registered for ``type(cell)`` in ``companion.fused`` if there is one (never for a
        subclass); ``False`` forces the step loop.

    Returns
    -------
    hs : array, shape (T, B, n_hidden)
        The output h_t of every step (``hs[t - 1]`` is h_t in the book's 1-based time).
    cache : SequenceCache
        What ``backward`` needs, with the initial and the final state.
    """
    cell, params = _check_cell_and_params(cell, params)
    xs = check_inputs(cell, xs)
    state0 = start_state(cell, params, xs, state0)
    path = fused_path(cell) if fused else None
    if path is not None:
        hs, final_state, fused_cache = path.forward(cell, params, xs, state0)
        return hs, SequenceCache(cell, xs, state0, final_state, fused=path, fused_cache=fused_cache)
    hs, final_state, steps = forward_steps(cell, params, xs, state0)
    # the last step's cache holds the final state too: the caller's copy must not alias it
    final_state = final_state.copy() if isinstance(final_state, np.ndarray) else tuple(p.copy() for p in final_state)
    return hs, SequenceCache(cell, xs, state0, final_state, steps=steps)


def backward(
    cell: Cell,
    params: Params,
    cache: SequenceCache,
    dhs: Array,
    *,
    d_final_state: State | None = None,
    carry: Array | None = None,
) -> tuple[Params, Array, State]:
    """Backpropagate through the whole sequence that ``forward`` ran.

    Parameters
    ----------
    cell, params
        As given to ``forward``.
    cache : SequenceCache
        Returned by ``forward``.
    dhs : array, shape (T, B, n_hidden)
        ``dhs[t - 1]`` is the direct gradient of the loss with respect to h_t (for example through a
        readout at step t); zero where the loss does not look at h_t.
    d_final_state : State, optional, keyword-only
        Gradient arriving at the final state from beyond the sequence (truncated BPTT passes it on).
    carry : array, shape (T,), optional, keyword-only
        A weight on every recurrent edge: what step t sends back to state_{t-1} is multiplied by
        ``carry[t - 1]`` (0 cuts the graph there; randomized truncation, ``companion.truncation``). Runs
        the step loop, recomputing the steps first if the cache comes from a fused path.

    Returns
    -------
    grads : dict
        dL/dtheta for every key of ``params``: the sum over time of every step's contribution.
    dxs : array, shape (T, B, n_in)
        dL/dx_t for every step.
    dstate0 : State
        dL/d(state0), with the structure of the state.
    """
    cell, params, cache, dhs, d_final_state = _check_backward_arguments(cell, params, cache, dhs, d_final_state)
    if carry is not None:
        carry = as_float_array(carry, "carry")
        check_shape(carry, (cache.length,), "carry", "(T,)")
        return backward_steps(cell, params, _step_caches(cell, params, cache), dhs, d_final_state, carry=carry)
    if cache.fused is not None:
        return cache.fused.backward(cell, params, cache.fused_cache, dhs, d_final_state)
    return backward_steps(cell, params, cache.steps, dhs, d_final_state)


def state_adjoints(
    cell: Cell,
    params: Params,
    cache: SequenceCache,
    dhs: Array,
    *,
    d_final_state: State | None = None,
) -> State:
    """dL/d(state_t) for every step t = 0, 1, ..., T, by the step loop's backward recursion.

    The adjoint of step t's state collects every path from state_t to the loss: the direct gradient
    ``dhs[t - 1]`` on its hidden part and everything that flows back from step t + 1 (for the LSTM, the
    pair (hbar_t, the carried cbar) of the cell protocol). With a fused cache the steps are recomputed
    by the step loop first (one more forward pass), so any cache of ``forward`` works.

    Parameters
    ----------
    cell, params, cache, dhs, d_final_state
        As for ``backward``.

    Returns
    -------
    State
        Stacked over time: an array ``(T + 1, B, width)`` whose entry ``t`` is dL/d(state_t) (entry 0 is
        dL/d(state0), entry T is ``d_final_state`` plus ``dhs[T - 1]``), or for a multi-part state a tuple
        of such arrays, one per part.
    """
    cell, params, cache, dhs, d_final_state = _check_backward_arguments(cell, params, cache, dhs, d_final_state)
    adjoints: list[State] = []
    backward_steps(cell, params, _step_caches(cell, params, cache), dhs, d_final_state, adjoints=adjoints)
    adjoints.reverse()                       # recorded from t = T down to t = 0
    if len(cell.state_widths) == 1:
        return np.stack(adjoints)
    return tuple(np.stack(parts) for parts in zip(*adjoints))


def forward_steps(cell: Cell, params: Params, xs: Array, state0: State) -> tuple[Array, State, list[Any]]:
    """The step loop forward, on checked inputs: ``(hs, final_state, step_caches)``."""
    T, B = xs.shape[:2]
    hs = np.empty((T, B, cell.output_width), dtype=np.result_type(xs, cell.hidden(state0), *params.values()))
    state, steps = state0, []
    for t in range(T):
        state, step_cache = cell._step(params, xs[t], state)     # state_t from x_t and state_{t-1}
        hs[t] = cell.hidden(state)
        steps.append(step_cache)
    return hs, state, steps


def backward_steps(
    cell: Cell,
    params: Params,
    steps: list[Any],
    dhs: Array,
    d_final_state: State,
    *,
    adjoints: list[State] | None = None,
    carry: Array | None = None,
) -> tuple[Params, Array, State]:
    """The step loop backward, on checked inputs: ``(grads, dxs, dstate0)``.

    If ``adjoints`` is a list, dL/d(state_t) is appended to it for t = T, T - 1, ..., 0. If ``carry``, an
    array ``(T,)``, is given, what step t sends back to state_{t-1} is multiplied by ``carry[t - 1]``: 0
    cuts the graph there, and any other value reweights every path that crosses it (randomized
    truncation, ``companion.truncation``); without it every factor is 1, full BPTT.
    """
    T, B = dhs.shape[:2]
    dtype = np.result_type(dhs, cell.hidden(d_final_state), *params.values())
    if carry is not None:
        carry = carry.astype(dtype, copy=False)   # the weights do not change the gradients' dtype
    grads = {key: np.zeros(value.shape, dtype=dtype) for key, value in params.items()}
    dxs = np.empty((T, B, cell.n_in), dtype=dtype)
    d_state = d_final_state                  # dL/d(state_T) from beyond the sequence
    for t in reversed(range(T)):
        # dL/dh_t: the direct gradient plus what came back from step t+1
        d_state = cell.add_to_hidden(d_state, dhs[t])
        if adjoints is not None:
            adjoints.append(d_state)
        d_params, d_state, dxs[t] = cell._step_backward(params, steps[t], d_state)
        if carry is not None:
            d_state = d_state * carry[t] if isinstance(d_state, np.ndarray) else tuple(p * carry[t] for p in d_state)
        for key, value in d_params.items():  # tied weights: sum over time
            grads[key] += value
    if adjoints is not None:
        adjoints.append(d_state)
    return grads, dxs, d_state


def check_inputs(cell: Cell, xs: object) -> Array:
    """``xs`` as a floating-point array ``(T, B, n_in)`` of ``cell``'s input width with T, B >= 1, else a
    ``ValueError`` naming ``xs``. Every sequence algorithm of the companion checks its inputs with it."""
    xs = as_float_array(xs, "xs")
    check_shape(xs, (None, None, cell.n_in), "xs", "(T, B, n_in)")
    if xs.shape[0] == 0 or xs.shape[1] == 0:
        raise ValueError(f"xs must have T >= 1 and B >= 1, got shape {xs.shape}")
    return xs


def check_dhs(cell: Cell, dhs: object, T: int, B: int) -> Array:
    """``dhs`` (dL/dh_t of every step) as a floating-point array ``(T, B, output_width)``, else a
    ``ValueError`` naming ``dhs``."""
    dhs = as_float_array(dhs, "dhs")
    check_shape(dhs, (T, B, cell.output_width), "dhs", "(T, B, n_hidden)")
    return dhs


def start_state(cell: Cell, params: Params, xs: Array, state0: object) -> State:
    """``state0`` checked for the batch of ``xs`` ``(T, B, n_in)``, or, if it is ``None``, the zero state in
    the dtype of the forward pass (that of ``xs`` and ``params`` together)."""
    if state0 is None:
        return cell.initial_state(xs.shape[1], dtype=np.result_type(xs, *params.values()))
    return cell.check_state(state0, xs.shape[1], "state0")


def _step_caches(cell: Cell, params: Params, cache: SequenceCache) -> list[Any]:
    """The step loop's caches of a sequence: kept by the step loop, recomputed for a fused cache."""
    if cache.steps is not None:
        return cache.steps
    return forward_steps(cell, params, cache.xs, cache.state0)[2]


def _check_cell_and_params(cell: object, params: object) -> tuple[Cell, Params]:
    cell = check_cell(cell)
    return cell, cell.check_params(params)


def _check_backward_arguments(
    cell: object, params: object, cache: object, dhs: object, d_final_state: object
) -> tuple[Cell, Params, SequenceCache, Array, State]:
    """Check what ``backward`` and ``state_adjoints`` receive; a zero ``d_final_state`` if it is None."""
    cell, params = _check_cell_and_params(cell, params)
    if not isinstance(cache, SequenceCache):
        raise ValueError(f"cache must be the SequenceCache returned by companion.bptt.forward, got {type(cache).__name__}")
    if type(cache.cell) is not type(cell) or repr(cache.cell) != repr(cell):
        raise ValueError(f"cache comes from bptt.forward with the cell {cache.cell!r}, not with {cell!r}")
    T, B = cache.length, cache.batch
    dhs = check_dhs(cell, dhs, T, B)
    if d_final_state is None:
        d_final_state = cell.zero_state_grad(cache.final_state)
    else:
        d_final_state = cell.check_state(d_final_state, B, "d_final_state")
    return cell, params, cache, dhs, d_final_state
