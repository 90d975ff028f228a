"""Unbiased online recurrent optimization (UORO, Tallec & Ollivier 2018), for any cell of the protocol.

Chapter "Approximate online learning: e-prop and UORO". Real-time recurrent learning (``companion.rtrl``)
carries the sensitivity Pi_t = d state_t / d theta forward, Pi_t = J_t Pi_{t-1} + Jth_t, where J_t is the
step's Jacobian with respect to the previous state and Jth_t (the chapters' J^theta_t) its *immediate*
Jacobian with respect to the parameters, the previous state held fixed; the gradient of the loss of step
t is then Pi_t^T g_t with g_t = dl_t/d state_t. Pi_t has one row per state entry and one column per
parameter, too large to carry for a large network. UORO carries a random rank-one estimate
s~_t theta~_t^T of it:

    nu_t      random signs, one per state entry (every sequence of the batch)
    s~_t      = rho0 J_t s~_{t-1} + rho1 nu_t            one ``step_jvp``: a forward-mode tangent
    theta~_t  = theta~_{t-1} / rho0 + Jth_t^T nu_t / rho1   one ``step_backward`` with nu_t as d state_t
    rho0      = sqrt(||theta~_{t-1}|| / ||J_t s~_{t-1}||)
    rho1      = sqrt(||Jth_t^T nu_t|| / ||nu_t||)

and estimates the gradient of the step-t loss by <g_t, s~_t> theta~_t. For fixed parameters
E[s~_t theta~_t^T] = Pi_t at every step, so the estimate is unbiased for the gradient of the loss so far
(the chapter proves it); the rho only reduce the variance (``variance_reduction=False`` sets them to 1).
Each step costs one forward step, one tangent step and one backward step: the cost of the forward pass
up to a constant, for any cell.

The B sequences of a batch are treated as one system whose state is the whole ``(B, width)`` array: one
nu, one s~ of the state's shape and one theta~ for all of them. Its sensitivity is the sequences' stacked,
so the estimate is unbiased for the summed gradient, as the batch loss needs.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from .bptt import check_dhs, check_inputs
from .cells.base import Cache, Cell, check_cell
from .model import check_loss, output_loss_and_grads, split_params
from .optim import Optimizer
from .train import History, apply_update, check_optimizer_and_clip, check_stream
from .types import Array, Params, State
from .validation import as_rng, check_positive_int


class UOROTangents(NamedTuple):
    """The rank-one estimate s~_t theta~_t^T of the sensitivity d state_t / d theta.

    Attributes
    ----------
    s_tilde : State
        s~_t, shaped like the state: ``(B, width)``, or a tuple of such arrays for a multi-part state.
    theta_tilde : dict
        theta~_t, shaped like the cell's parameters.
    """

    s_tilde: State
    theta_tilde: Params


def initial_tangents(cell: Cell, params: Params, state: State) -> UOROTangents:
    """Zero tangents, s~_0 = 0 and theta~_0 = 0: the initial state does not depend on the parameters (Pi_0 = 0).

    Parameters
    ----------
    cell : Cell
    params : dict
        The cell's parameters (theta~ takes their shapes and dtypes).
    state : State
        The initial state (s~ takes its structure, ``(B, width)`` parts).

    Returns
    -------
    UOROTangents
    """
    zero_state = cell.zero_state_grad(state)
    return UOROTangents(zero_state, {key: np.zeros_like(value) for key, value in params.items()})


def tangent_step(
    cell: Cell,
    params: Params,
    cache: Cache,
    tangents: UOROTangents,
    rng: np.random.Generator,
    *,
    variance_reduction: bool = True,
) -> UOROTangents:
    """One step of UORO's tangents at the point ``cache`` recorded, on trusted inputs.

    Parameters
    ----------
    cell : Cell
        Any cell of the protocol.
    params : dict
        The parameters the step ran with.
    cache : cell.cache_type
        What ``cell.step`` returned for step t.
    tangents : UOROTangents
        s~_{t-1} and theta~_{t-1}.
    rng : np.random.Generator
        Draws nu_t: one sign per state entry, parts in order.
    variance_reduction : bool, keyword-only
        Use the rho above, or rho0 = rho1 = 1.

    Returns
    -------
    UOROTangents
        s~_t and theta~_t.
    """
    s_prev, theta_prev = tangents
    zero_params = {key: np.zeros_like(value) for key, value in theta_prev.items()}
    zero_x = np.zeros_like(cache.x_t)
    forward = cell._step_jvp(params, cache, s_prev, zero_params, zero_x)      # J_t s~_{t-1}
    nu = _signs(rng, s_prev)                                                   # nu_t, E[nu nu^T] = I
    immediate = cell._step_backward(params, cache, nu)[0]                      # Jth_t^T nu_t
    rho0 = rho1 = 1.0
    if variance_reduction:
        rho0 = _ratio_root(_params_norm(theta_prev), _state_norm(forward))
        rho1 = _ratio_root(_params_norm(immediate), _state_norm(nu))
    s_tilde = _combine_states(rho0, forward, rho1, nu)                        # rho0 J s~ + rho1 nu
    theta_tilde = {key: theta_prev[key] / rho0 + immediate[key] / rho1 for key in theta_prev}
    return UOROTangents(s_tilde, theta_tilde)


def estimate(cell: Cell, tangents: UOROTangents, d_h: Array) -> Params:
    """The step's gradient estimate <dl_t/dh_t, h~_t> theta~_t, with h~_t the hidden part of s~_t.

    Parameters
    ----------
    cell : Cell
    tangents : UOROTangents
        After ``tangent_step`` of step t.
    d_h : array, shape (B, output_width)
        dl_t/dh_t, the direct gradient of the step's loss.

    Returns
    -------
    dict
        Keyed like the cell's parameters.
    """
    weight = float(np.sum(d_h * cell.hidden(tangents.s_tilde)))               # <dl_t/dh_t, h~_t>
    return {key: weight * value for key, value in tangents.theta_tilde.items()}


def uoro(
    cell: Cell,
    params: Params,
    xs: Array,
    dhs: Array,
    *,
    rng: np.random.Generator | int,
    state0: State | None = None,
    variance_reduction: bool = True,
) -> Params:
    """One draw of UORO's estimate of the gradient of L = sum_t <dhs[t - 1], h_t>, parameters fixed.

    Unbiased: its mean over the draws is ``companion.bptt.backward``'s gradient (chapter "Approximate
    online learning" proves it; the tests check it by Monte Carlo).

    Parameters
    ----------
    cell : Cell
        Any cell of ``companion.cells``.
    params : dict
        The cell's parameters.
    xs : array, shape (T, B, n_in)
        Inputs, time-major.
    dhs : array, shape (T, B, output_width)
        ``dhs[t - 1]`` is the direct gradient of the loss with respect to h_t.
    rng : np.random.Generator or int, keyword-only
        The source of the signs nu_t (drawn step by step, parts of the state in order).
    state0 : State, optional, keyword-only
        The initial state; zeros if omitted.
    variance_reduction : bool, keyword-only
        As for ``tangent_step``.

    Returns
    -------
    dict
        One draw of the estimate, keyed like ``params``.
    """
    cell = check_cell(cell)
    params = cell.check_params(params)
    rng = as_rng(rng)
    xs = check_inputs(cell, xs)
    T, B = xs.shape[:2]
    dhs = check_dhs(cell, dhs, T, B)
    state = cell.initial_state(B) if state0 is None else cell.check_state(state0, B, "state0")
    tangents = initial_tangents(cell, params, state)
    grads = {key: np.zeros_like(value) for key, value in params.items()}
    for t in range(T):
        state, cache = cell._step(params, xs[t], state)                        # state_t
        tangents = tangent_step(cell, params, cache, tangents, rng, variance_reduction=variance_reduction)
        for key, value in estimate(cell, tangents, dhs[t]).items():           # sum over the steps
            grads[key] += value
    return grads


def online_uoro(
    cell: Cell,
    params: Params,
    xs: Array,
    targets: Array,
    optimizer: Optimizer,
    *,
    rng: np.random.Generator | int,
    k1: int = 1,
    loss: str = "mse",
    readout: bool = True,
    state0: State | None = None,
    clip: float | None = None,
    variance_reduction: bool = True,
) -> History:
    """Train on one long stream with UORO, updating the parameters every ``k1`` steps (and at the end).

    The state and the tangents run on across updates; each step's tangents use that step's parameters.
    An update's gradient is UORO's estimate of the gradient of the mean loss of the steps since the
    previous update (the readout's exactly). With ``k1 = T`` and a no-op optimizer it is ``uoro``'s draw,
    for the same ``rng``, of the gradient of the mean loss.

    Parameters
    ----------
    cell : Cell
        Any cell of ``companion.cells``.
    params : dict
        The cell's parameters and, with ``readout``, ``W_hy`` and ``b_y``; updated in place.
    xs : array, shape (T, B, n_in)
        The stream (B streams side by side).
    targets : array
        ``(T, B, n_out)`` for ``loss="mse"``, ``(T, B)`` class ids for ``loss="cross_entropy"``.
    optimizer : Optimizer
        From ``companion.optim`` (anything with ``step(params, grads)``).
    rng : np.random.Generator or int, keyword-only
        The source of the signs.
    k1 : int, keyword-only
        How often the parameters are updated: after every ``k1`` steps, as in ``companion.rtrl.online_rtrl``.
    loss : {"mse", "cross_entropy"}, keyword-only
    readout : bool, keyword-only
        As for ``companion.model.sequence_loss_and_grads``.
    state0 : State, optional, keyword-only
        The state before the stream; zeros if omitted.
    clip : float, optional, keyword-only
        Maximum global gradient norm of each update.
    variance_reduction : bool, keyword-only
        As for ``tangent_step``.

    Returns
    -------
    History
        One entry per update: the mean loss of its steps (before the update) and its gradient norm.
    """
    cell = check_cell(cell)
    check_loss(loss)
    k1 = check_positive_int(k1, "k1")
    rng = as_rng(rng)
    clip = check_optimizer_and_clip(optimizer, clip)
    cell_params, readout_params = split_params(cell, params, readout)   # views: the updates show in both
    cell.check_params(cell_params)
    xs, targets = check_stream(cell, xs, targets)
    T, B = xs.shape[:2]
    state = cell.initial_state(B) if state0 is None else cell.check_state(state0, B, "state0")
    tangents = initial_tangents(cell, cell_params, state)
    history = History()
    total, value_sum, count = None, 0.0, 0
    for t in range(T):
        state, cache = cell._step(cell_params, xs[t], state)                  # state_t
        tangents = tangent_step(cell, cell_params, cache, tangents, rng, variance_reduction=variance_reduction)
        value, grads, d_h = output_loss_and_grads(readout_params, cell.hidden(state)[None], targets[t:t + 1],
                                                  loss=loss)
        grads.update(estimate(cell, tangents, d_h[0]))
        total = grads if total is None else {key: total[key] + grads[key] for key in grads}
        value_sum, count = value_sum + value, count + 1
        if count == k1 or t == T - 1:                                          # the mean over the new steps
            apply_update(params, {key: total[key] / count for key in params}, optimizer, history,
                         value_sum / count, clip=clip)
            total, value_sum, count = None, 0.0, 0
    return history


def _signs(rng: np.random.Generator, like: State) -> State:
    """Independent random signs +-1 with the structure and dtype of ``like``, parts in order."""
    if isinstance(like, np.ndarray):
        return (2 * rng.integers(0, 2, size=like.shape) - 1).astype(like.dtype)
    return tuple((2 * rng.integers(0, 2, size=part.shape) - 1).astype(part.dtype) for part in like)


def _ratio_root(numerator: float, denominator: float) -> float:
    """sqrt(numerator / denominator), or 1 when either is zero (the scaled term is zero then)."""
    if numerator == 0.0 or denominator == 0.0:
        return 1.0
    return math.sqrt(numerator / denominator)


def _params_norm(params: Params) -> float:
    return math.sqrt(sum(float(np.sum(value * value)) for value in params.values()))


def _state_norm(state: State) -> float:
    parts = (state,) if isinstance(state, np.ndarray) else state
    return math.sqrt(sum(float(np.sum(part * part)) for part in parts))


def _combine_states(a: float, x: State, b: float, y: State) -> State:
    """a x + b y for two states of the same structure."""
    if isinstance(x, np.ndarray):
        return a * x + b * y
    return tuple(a * p + b * q for p, q in zip(x, y))
