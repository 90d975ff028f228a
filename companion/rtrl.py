"""Real-time recurrent learning (Williams & Zipser 1989): the gradient carried forward in time.

Chapter "Real-time recurrent learning". BPTT needs the whole sequence before it returns a gradient; RTRL
carries the *sensitivities* Pi_t = d s_t / d theta of the state s_t forward with the state, by the
recursion (eq-rt-recursion)

    Pi_t = J_t Pi_{t-1} + J^theta_t,        Pi_0 = 0,

where J_t = d s_t / d s_{t-1} and J^theta_t = d s_t / d theta with s_{t-1} held fixed (the immediate
Jacobian), and adds dL/dtheta += Pi_t^T g_t as each loss arrives (g_t: the direct gradient on s_t,
``dhs`` on the hidden part). It is forward-mode differentiation with one direction per parameter entry:
``rtrl`` pushes all P directions through each step in one call of the cell's ``_step_jvp`` (tangents
with a leading direction axis), so one step costs P Jacobian-vector products, O(n^4) for a fully
connected network of n units, and the memory is the (P, B, width) sensitivities, O(n^3), whatever the
length of the sequence.

* ``rtrl`` returns BPTT's gradients (parameters and initial state) for a whole sequence, computed online.
* ``online_rtrl`` trains on a long stream, updating the parameters every ``k1`` steps from the carried
  sensitivities, without ever looking back.

The input gradients dL/dx_t are not computed: forward mode would need one more set of directions for
every x_t, so that their number, and the cost of a step, would grow with t (use ``companion.bptt``).

The identity directions (the tangent of the parameters: direction k is a unit tangent on entry k) are a
P x P matrix, too large to hold at O(n^4) entries. Each parameter's block is instead a read-only strided
view of one vector with a single 1 (``_identity_blocks``), O(P) memory; the cell's products read it as
the identity.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .bptt import check_dhs, check_inputs, start_state
from .cells.base import Cell, check_cell
from .model import check_loss, output_loss_and_grads, split_params
from .optim import Optimizer
from .train import History, apply_update, check_optimizer_and_clip, check_stream
from .types import Array, Params, State
from .validation import check_positive_int


class RTRLResult(NamedTuple):
    """What ``rtrl`` returns.

    Attributes
    ----------
    hs : array, shape (T, B, n_hidden)
        The output h_t of every step.
    final_state : State
        The state after step T.
    grads : dict
        dL/dtheta for every key of ``params``, equal to full BPTT's up to rounding.
    dstate0 : State
        dL/d(state0), with the structure of the state, from the sensitivities to the initial state.
    """

    hs: Array
    final_state: State
    grads: Params
    dstate0: State


class Directions(NamedTuple):
    """The tangents that forward mode pushes through every step: K directions, one per entry of the
    initial state (optional, first) and one per parameter entry (in ``param_shapes()`` order, each array
    flattened in C order).

    Attributes
    ----------
    sensitivities : State
        The sensitivities before step 1, Pi_0, parts ``(K, B, width)``: a unit tangent on coordinate j of
        state0 (for every sequence at once) for the state directions, zero for the parameter directions.
    d_params : dict of arrays
        ``[key]`` ``(K, *shape)``: direction ``n_state + offset(key) + i`` is 1 on entry i of ``params[key]``,
        every other direction 0; read-only strided views, O(K) memory each.
    d_x : array, shape (K, B, n_in)
        Zeros: no direction moves the inputs.
    n_state : int
        How many leading directions belong to the initial state: sum(state_widths), or 0.
    """

    sensitivities: State
    d_params: Params
    d_x: Array
    n_state: int


def rtrl(
    cell: Cell,
    params: Params,
    xs: Array,
    dhs: Array,
    *,
    state0: State | None = None,
    d_final_state: State | None = None,
) -> RTRLResult:
    """The gradient of L = sum_t <dhs[t-1], h_t> (+ <d_final_state, state_T>) by real-time recurrent learning.

    Every step runs forward, advances the sensitivities Pi_t = J_t Pi_{t-1} + J^theta_t (one ``_step_jvp``
    with all directions) and adds ``dhs[t - 1]``'s share Pi_t^T g_t at once, so the gradient is complete
    after the last step with nothing stored from earlier steps (chapter "Real-time recurrent learning",
    the theorem of that name). The directions include the initial state's, whose sensitivities
    d s_t / d s_0 start at the identity and give dL/d(state0).

    Parameters
    ----------
    cell : Cell
        Any cell of ``companion.cells``.
    params : dict
        The cell's parameters (see ``cell.param_shapes()``).
    xs : array, shape (T, B, n_in)
        Inputs, time-major.
    dhs : array, shape (T, B, n_hidden)
        ``dhs[t - 1]`` is the direct gradient dL/dh_t, as for ``companion.bptt.backward``.
    state0 : State, optional, keyword-only
        Initial state, ``(B, width)`` per part; zeros if omitted.
    d_final_state : State, optional, keyword-only
        Gradient of a loss on the final state; it meets the sensitivities of the last step.

    Returns
    -------
    RTRLResult
        No dL/dx_t: see the module docstring.
    """
    cell = check_cell(cell)
    params = cell.check_params(params)
    xs = check_inputs(cell, xs)
    T, B = xs.shape[:2]
    dhs = check_dhs(cell, dhs, T, B)
    state = start_state(cell, params, xs, state0)
    if d_final_state is not None:
        d_final_state = cell.check_state(d_final_state, B, "d_final_state")
    directions = unit_directions(cell, B, dtype=np.result_type(xs, *_parts(state), *params.values()), state0=True)
    sens = directions.sensitivities                                          # Pi_0, parts (K, B, width)
    hs = np.empty((T, B, cell.output_width), dtype=np.result_type(xs, cell.hidden(state), *params.values()))
    totals = np.zeros(directions.d_x.shape[:2], dtype=np.result_type(dhs, directions.d_x))   # (K, B)
    for t in range(T):
        state, cache = cell._step(params, xs[t], state)                      # state_t from x_t, state_{t-1}
        sens = cell._step_jvp(params, cache, sens, directions.d_params, directions.d_x)   # J_t Pi_{t-1} + J^theta_t
        hs[t] = cell.hidden(state)
        totals += _contract(cell.hidden(sens), dhs[t])                       # += Pi_t^T g_t, per sequence
    if d_final_state is None:
        d_final_state = cell.zero_state_grad(state)
    for part, d_part in zip(_parts(sens), _parts(d_final_state)):
        totals += _contract(part, d_part)                                    # += Pi_T^T d_final_state
    dtype = np.result_type(dhs, cell.hidden(d_final_state), *params.values())   # as bptt.backward's
    totals = totals.astype(dtype, copy=False)
    grads = _unflatten(cell, totals[directions.n_state:].sum(axis=1))        # summed over the batch
    return RTRLResult(hs, state, grads, _split_state(cell, totals[:directions.n_state].T))


def unit_directions(cell: Cell, batch: int, *, dtype: np.dtype | type = np.float64, state0: bool = True) -> Directions:
    """The directions of forward mode for ``rtrl``: one per parameter entry, and per state coordinate.

    Parameters
    ----------
    cell : Cell
        Any cell of ``companion.cells``.
    batch : int
        B, the number of sequences.
    dtype : floating dtype, keyword-only
        Of every tangent.
    state0 : bool, keyword-only
        Also carry the sensitivities to the initial state (``sum(state_widths)`` more directions, first).

    Returns
    -------
    Directions
        K = ``n_state`` + P directions, P the number of parameter entries.
    """
    cell = check_cell(cell)
    batch = check_positive_int(batch, "batch")
    if np.dtype(dtype).kind != "f":
        raise ValueError(f"dtype must be a floating-point dtype, got {np.dtype(dtype)}")
    S = sum(cell.state_widths)
    n_state = S if state0 else 0
    K = n_state + sum(math.prod(shape) for shape in cell.param_shapes().values())
    unit = np.zeros((K, S), dtype=dtype)
    unit[np.arange(n_state), np.arange(n_state)] = 1.0                       # direction j moves coordinate j
    sensitivities = _split_state(cell, np.repeat(unit[:, None, :], batch, axis=1))  # (K, B, S) in parts
    d_x = np.zeros((K, batch, cell.n_in), dtype=dtype)
    return Directions(sensitivities, _identity_blocks(cell, K, n_state, dtype), d_x, n_state)


def online_rtrl(
    cell: Cell,
    params: Params,
    xs: Array,
    targets: Array,
    optimizer: Optimizer,
    *,
    k1: int = 1,
    loss: str = "mse",
    readout: bool = True,
    state0: State | None = None,
    clip: float | None = None,
) -> History:
    """Train on one long stream by real-time recurrent learning, updating the parameters as it runs.

    The stream runs forward once. Every step advances the state and the sensitivities with the current
    parameters and adds the step's loss gradient, Pi_t^T g_t (and the readout's), to the update;
    after every ``k1`` steps (and after step T) one optimizer step follows, on the mean loss of those
    steps. The sensitivities are carried on across updates unchanged, so after the first update they
    mix derivatives taken at older parameters: they are then an approximation of the current
    parameters' sensitivities, good while the parameters change slowly next to the network's memory
    (Williams & Zipser's real-time variant). Until the first update, and with an optimizer that does
    not move the parameters, every update's gradient is exact: that of its steps' mean loss through the
    whole stream so far, which ``truncation.online_tbptt`` with ``k2 >= T`` also computes.

    Parameters
    ----------
    cell : Cell
        Any cell of ``companion.cells``.
    params : dict
        The cell's parameters and, with ``readout``, ``W_hy`` and ``b_y`` (``companion.model.init_model``);
        updated in place.
    xs : array, shape (T, B, n_in)
        The stream, time-major (B streams side by side).
    targets : array
        ``(T, B, n_out)`` for ``loss="mse"``, ``(T, B)`` integer class ids for ``loss="cross_entropy"``.
    optimizer : Optimizer
        From ``companion.optim`` (anything with ``step(params, grads)``).
    k1 : int, keyword-only
        How often the parameters are updated: after every ``k1`` steps, as the ``k1`` of ``online_tbptt``.
    loss : {"mse", "cross_entropy"}, keyword-only
        As for ``companion.model.sequence_loss_and_grads``.
    readout : bool, keyword-only
        As for ``companion.model.sequence_loss_and_grads``.
    state0 : State, optional, keyword-only
        The state before the stream; zeros if omitted.
    clip : float, optional, keyword-only
        Maximum global gradient norm of each update.

    Returns
    -------
    History
        One entry per update: the mean loss of its steps (before the update) and its gradient norm.
    """
    cell = check_cell(cell)
    check_loss(loss)
    clip = check_optimizer_and_clip(optimizer, clip)
    k1 = check_positive_int(k1, "k1")
    xs, targets = check_stream(cell, xs, targets)
    T, B = xs.shape[:2]
    cell_params, readout_params = _checked_split(cell, params, readout)
    state = start_state(cell, cell_params, xs, state0)
    directions = unit_directions(cell, B, dtype=np.result_type(xs, *_parts(state), *cell_params.values()),
                                 state0=False)
    sens = directions.sensitivities                                          # Pi_0 = 0, parts (P, B, width)
    history = History()
    for start in range(0, T, k1):
        end = min(start + k1, T)
        value, flat, readout_grads = 0.0, 0.0, {}
        for t in range(start, end):
            state, cache = cell._step(cell_params, xs[t], state)            # state_t, current parameters
            sens = cell._step_jvp(cell_params, cache, sens, directions.d_params, directions.d_x)  # Pi_t, carried
            step_value, step_readout, dh = output_loss_and_grads(
                readout_params, cell.hidden(state)[None], targets[t][None], loss=loss)   # l_t, dl_t/dh_t
            weight = 1.0 / (end - start)                                     # the mean over this update's steps
            value += weight * step_value
            flat = flat + weight * _contract(cell.hidden(sens), dh[0]).sum(axis=1)   # += Pi_t^T g_t
            readout_grads = {key: readout_grads.get(key, 0.0) + weight * grad for key, grad in step_readout.items()}
        grads = {**_unflatten(cell, flat), **readout_grads}
        apply_update(params, {key: grads[key] for key in params}, optimizer, history, value, clip=clip)
        cell_params, readout_params = _checked_split(cell, params, readout)  # the updated parameters
    return history


def _identity_blocks(cell: Cell, count: int, offset: int, dtype: np.dtype | type) -> Params:
    """``[key]`` ``(count, *shape)``: direction ``offset + position`` is 1 on the entry at that position of
    the flattened parameters (``param_shapes()`` order), every other direction 0.

    Each block is a read-only view of one vector with a single 1: window r of the reversed sliding windows
    holds ``line[count - 1 - r : count - 1 - r + size]``, so its column c is 1 exactly when r = start + c.
    """
    directions, start = {}, offset
    for key, shape in cell.param_shapes().items():
        size = math.prod(shape)
        line = np.zeros(count + size - 1, dtype=dtype)
        line[count - 1 - start] = 1.0
        windows = sliding_window_view(line, size)[::-1]                     # (count, size), a view
        directions[key] = windows.reshape(count, *shape)                     # splits the last axis: still a view
        start += size
    return directions


def _contract(part: Array, d_part: Array) -> Array:
    """``(K, B)``: sum_i part[k, b, i] * d_part[b, i], the gradient's share per direction and sequence."""
    return np.einsum("kbi,bi->kb", part, d_part)


def _unflatten(cell: Cell, flat: Array) -> Params:
    """A vector over the parameter directions as a dict of ``param_shapes()`` (copies, not views)."""
    grads, start = {}, 0
    for key, shape in cell.param_shapes().items():
        size = math.prod(shape)
        grads[key] = flat[start:start + size].reshape(shape).copy()
        start += size
    return grads


def _split_state(cell: Cell, joined: Array) -> State:
    """An array ``(..., S)`` as a state of ``cell``: parts split along the last axis, each contiguous."""
    parts = np.split(joined, np.cumsum(cell.state_widths)[:-1], axis=-1)
    parts = tuple(np.ascontiguousarray(part) for part in parts)
    return parts[0] if len(parts) == 1 else parts


def _checked_split(cell: Cell, params: object, readout: bool) -> tuple[Params, Params | None]:
    """``split_params`` with the cell's part checked (finite, the right shapes); the arrays are not copied."""
    cell_params, readout_params = split_params(cell, params, readout)
    return cell.check_params(cell_params), readout_params


def _parts(state: State) -> tuple[Array, ...]:
    return state if isinstance(state, tuple) else (state,)
