"""e-prop for the Elman network: the gradient as eligibility traces times learning signals.

Chapter "Approximate online learning: e-prop and UORO". Bellec et al. (2020) write the gradient of a
recurrent network as a sum over time of a *learning signal* lambda_t, one number per unit, times an
*eligibility trace* e_t, one number per synapse, that the synapse can compute forward in time from what
its two units see. For the Elman network a_t = W_xh x_t + W_hh h_{t-1} + b_h, h_t = phi(a_t), with the
*presynaptic vector* u_t = [x_t; h_{t-1}; 1] that the weight matrix [W_xh | W_hh | b_h] multiplies:

* the eligibility trace of the weight from j to unit i follows unit i's own state alone,

      e_{t,ij} = phi'(a_{t,i}) (w_i e_{t-1,ij} + u_{t,j}),    e_0 = 0,

  with w_i = W_hh[i, i], the unit's self-connection (``self_loop=True``), or w_i = 0 (``self_loop=False``:
  the self-connection is treated like any other recurrent connection);
* the gradient estimate is sum_t sum_i lambda_{t,i} e_{t,ij}.

With the *exact* learning signal (every path from h_{t,i} to the loss except through the unit's own
self-loop) this sum is the true gradient; e-prop uses the direct one, lambda_t = dl_t/dh_t, which a linear
readout gives as W_hy^T dl_t/dy_t (symmetric e-prop) or, with a fixed random matrix in place of W_hy^T,
as B dl_t/dy_t (random e-prop). ``eprop`` takes the learning signals as an argument, so both, and the
exact one, run through the same code. Every step costs O(H (n_in + H)) per sequence, the size of the
weights, like the forward step, and each synapse uses only its own trace and its unit's signal.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from . import bptt
from .cells.activations import ACTIVATIONS
from .cells.elman import Elman
from .model import check_loss, output_loss_and_grads, split_params
from .optim import Optimizer
from .readout import readout_backward, readout_forward
from .train import History, apply_update, check_optimizer_and_clip, check_stream
from .types import Array, Params
from .validation import as_float_array, as_rng, check_positive_int, check_shape


class EligibilityTraces(NamedTuple):
    """The eligibility traces e_t of every weight, for each sequence of a batch.

    Attributes
    ----------
    W_xh : array, shape (B, H, n_in)
        ``[b, i, j]``: the trace of W_xh[i, j] in sequence b.
    W_hh : array, shape (B, H, H)
        ``[b, i, j]``: the trace of W_hh[i, j].
    b_h : array, shape (B, H)
        ``[b, i]``: the trace of b_h[i].
    """

    W_xh: Array
    W_hh: Array
    b_h: Array


def check_elman(cell: object) -> Elman:
    """Return ``cell`` if it is an ``Elman`` cell (not a subclass), else raise ``ValueError`` naming ``cell``.

    The traces are derived from the Elman equations; a subclass may have changed them.
    """
    if type(cell) is not Elman:
        raise ValueError(f"cell must be a companion.cells.Elman (e-prop's traces are derived for its equations), "
                         f"got {type(cell).__name__}")
    return cell


def initial_traces(cell: Elman, batch: int, *, dtype: np.dtype | type = np.float64) -> EligibilityTraces:
    """Zero traces, e_0 = 0: the initial state does not depend on the weights.

    Parameters
    ----------
    cell : Elman
    batch : int
        B, the number of sequences.
    dtype : numpy dtype, keyword-only
        The traces' dtype.

    Returns
    -------
    EligibilityTraces
        ``W_xh`` ``(B, H, n_in)``, ``W_hh`` ``(B, H, H)``, ``b_h`` ``(B, H)``, all zero.
    """
    cell = check_elman(cell)
    batch = check_positive_int(batch, "batch")
    H = cell.n_hidden
    return EligibilityTraces(np.zeros((batch, H, cell.n_in), dtype), np.zeros((batch, H, H), dtype),
                             np.zeros((batch, H), dtype))


def trace_step(
    cell: Elman, params: Params, traces: EligibilityTraces, x_t: Array, h_prev: Array, h: Array, *,
    self_loop: bool = True,
) -> EligibilityTraces:
    """One step of the traces, on trusted inputs: e_t = phi'(a_t) (w e_{t-1} + u_t), entry by entry.

    Parameters
    ----------
    cell : Elman
        The cell (its nonlinearity gives phi').
    params : dict
        ``W_xh``, ``W_hh``, ``b_h``.
    traces : EligibilityTraces
        e_{t-1}.
    x_t : array, shape (B, n_in)
    h_prev : array, shape (B, H)
        h_{t-1}.
    h : array, shape (B, H)
        h_t = phi(a_t); phi'(a_t) is computed from it.
    self_loop : bool, keyword-only
        w = diag(W_hh) if true, else 0.

    Returns
    -------
    EligibilityTraces
        e_t.
    """
    slope = ACTIVATIONS[cell.nonlinearity][1](h)                       # phi'(a_t): (B, H)
    decay = slope * np.diag(params["W_hh"]) if self_loop else np.zeros_like(slope)   # phi'(a_t,i) w_i
    return EligibilityTraces(
        W_xh=decay[:, :, None] * traces.W_xh + slope[:, :, None] * x_t[:, None, :],     # u_t = x_t part
        W_hh=decay[:, :, None] * traces.W_hh + slope[:, :, None] * h_prev[:, None, :],  # u_t = h_{t-1} part
        b_h=decay * traces.b_h + slope,                                                  # u_t = 1 part
    )


def combine(traces: EligibilityTraces, signal: Array) -> Params:
    """The step's gradient estimate: sum over the batch of lambda_{t,i} e_{t,ij}.

    Parameters
    ----------
    traces : EligibilityTraces
        e_t.
    signal : array, shape (B, H)
        lambda_t, the learning signal of every unit.

    Returns
    -------
    dict
        ``W_xh`` ``(H, n_in)``, ``W_hh`` ``(H, H)``, ``b_h`` ``(H,)``.
    """
    return {
        "W_xh": np.einsum("bi,bij->ij", signal, traces.W_xh),
        "W_hh": np.einsum("bi,bij->ij", signal, traces.W_hh),
        "b_h": np.einsum("bi,bi->i", signal, traces.b_h),
    }


def eprop(
    cell: Elman, params: Params, xs: Array, signals: Array, *, state0: Array | None = None, self_loop: bool = True,
) -> Params:
    """The e-prop sum over a sequence, sum_t sum_i lambda_{t,i} e_{t,ij}, with the parameters held fixed.

    With ``signals`` the direct gradients dl_t/dh_t (the ``dhs`` of ``companion.bptt.backward``) this is
    symmetric e-prop's estimate of the gradient; with signals from random feedback (``learning_signals``)
    random e-prop's; with the exact learning signals it is the true gradient (chapter "Approximate online
    learning", the factorization theorem).

    Parameters
    ----------
    cell : Elman
        An ``Elman`` cell (any nonlinearity).
    params : dict
        ``W_xh`` ``(H, n_in)``, ``W_hh`` ``(H, H)``, ``b_h`` ``(H,)``.
    xs : array, shape (T, B, n_in)
        Inputs, time-major.
    signals : array, shape (T, B, H)
        ``signals[t - 1]`` is lambda_t.
    state0 : array, shape (B, H), optional, keyword-only
        h_0; zeros if omitted.
    self_loop : bool, keyword-only
        Keep the unit's self-connection in its trace (see the module docstring).

    Returns
    -------
    dict
        The estimate for ``W_xh``, ``W_hh`` and ``b_h``.
    """
    cell = check_elman(cell)
    hs, cache = bptt.forward(cell, params, xs, state0)                 # checks params, xs, state0
    signals = as_float_array(signals, "signals")
    check_shape(signals, hs.shape, "signals", "(T, B, H)")
    return _eprop_sum(cell, cell.check_params(params), cache, hs, signals, self_loop)


def _eprop_sum(
    cell: Elman, params: Params, cache: bptt.SequenceCache, hs: Array, signals: Array, self_loop: bool
) -> Params:
    """sum_t lambda_t e_t over the sequence ``bptt.forward`` ran (``cache``, outputs ``hs``), on checked inputs."""
    traces = initial_traces(cell, cache.batch, dtype=hs.dtype)
    grads = {key: np.zeros(value.shape, dtype=hs.dtype) for key, value in params.items()}
    h_prev = cache.state0
    for t in range(cache.length):
        traces = trace_step(cell, params, traces, cache.xs[t], h_prev, hs[t], self_loop=self_loop)   # e_t
        for key, value in combine(traces, signals[t]).items():        # sum_t lambda_t e_t
            grads[key] += value
        h_prev = hs[t]
    return grads


def random_feedback(n_hidden: int, n_out: int, rng: np.random.Generator | int) -> Array:
    """A fixed random feedback matrix B for random e-prop, drawn as ``init_readout`` draws W_hy^T.

    Parameters
    ----------
    n_hidden, n_out : int
        H and the readout's width.
    rng : np.random.Generator or int

    Returns
    -------
    array, shape (H, n_out)
        Uniform in [-1/sqrt(H), 1/sqrt(H)], the scale of the readout's weights.
    """
    n_hidden = check_positive_int(n_hidden, "n_hidden")
    n_out = check_positive_int(n_out, "n_out")
    scale = 1.0 / np.sqrt(n_hidden)
    return as_rng(rng).uniform(-scale, scale, size=(n_hidden, n_out))


def learning_signals(
    readout_params: Params, hs: Array, targets: Array, *, loss: str = "mse", feedback: Array | None = None,
) -> tuple[float, Params, Array]:
    """The loss of some steps through the readout, its exact readout gradients and e-prop's learning signals.

    Parameters
    ----------
    readout_params : dict
        ``W_hy`` ``(n_out, H)`` and ``b_y`` ``(n_out,)``.
    hs : array, shape (S, B, H)
        The outputs of the S steps with a loss.
    targets : array
        As for ``companion.model.output_loss_and_grads``.
    loss : {"mse", "cross_entropy"}, keyword-only
    feedback : array, shape (H, n_out), optional, keyword-only
        B of random e-prop: lambda_t = B dl/dy_t. ``None`` is symmetric e-prop, lambda_t = W_hy^T dl/dy_t = dl/dh_t.

    Returns
    -------
    loss : float
    readout_grads : dict
        dL/dW_hy and dL/db_y, exact.
    signals : array, shape (S, B, H)
        lambda_t of every step.
    """
    if feedback is None:
        return output_loss_and_grads(readout_params, hs, targets, loss=loss)
    ys = readout_forward(readout_params, hs)                           # y_t: (S, B, n_out); checks hs
    feedback = _check_feedback(feedback, np.shape(hs)[-1], ys.shape[-1])
    value, dys = check_loss(loss)(ys, targets)                         # dl/dy_t
    readout_grads, _ = readout_backward(readout_params, hs, dys)
    return value, readout_grads, dys @ feedback.T                      # B dl/dy_t: (S, B, H)


def model_gradients(
    cell: Elman,
    params: Params,
    xs: Array,
    targets: Array,
    *,
    feedback: Array | None = None,
    loss: str = "mse",
    state0: Array | None = None,
    self_loop: bool = True,
) -> tuple[float, Params]:
    """e-prop for a model (Elman cell + linear readout), parameters fixed: the counterpart of
    ``companion.model.sequence_loss_and_grads``.

    Parameters
    ----------
    cell : Elman
    params : dict
        The cell's parameters and ``W_hy``, ``b_y`` (``companion.model.init_model``).
    xs : array, shape (T, B, n_in)
    targets : array
        ``(T, B, n_out)`` for ``loss="mse"``, ``(T, B)`` class ids for ``loss="cross_entropy"``.
    feedback : array, shape (H, n_out), optional, keyword-only
        Random e-prop's B; ``None``: symmetric e-prop.
    loss : {"mse", "cross_entropy"}, keyword-only
    state0 : array, shape (B, H), optional, keyword-only
    self_loop : bool, keyword-only
        As for ``eprop``.

    Returns
    -------
    loss : float
        The mean loss over all steps.
    grads : dict
        The readout's exact gradients and e-prop's estimate for the cell's, keyed like ``params``.
    """
    cell = check_elman(cell)
    cell_params, readout_params = split_params(cell, params, True)
    hs, cache = bptt.forward(cell, cell_params, xs, state0)            # checks params, xs, state0
    value, grads, signals = learning_signals(readout_params, hs, targets, loss=loss, feedback=feedback)
    grads.update(_eprop_sum(cell, cell.check_params(cell_params), cache, hs, signals, self_loop))
    return value, {key: grads[key] for key in params}


def online_eprop(
    cell: Elman,
    params: Params,
    xs: Array,
    targets: Array,
    optimizer: Optimizer,
    *,
    k1: int = 1,
    feedback: Array | None = None,
    loss: str = "mse",
    state0: Array | None = None,
    clip: float | None = None,
    self_loop: bool = True,
) -> History:
    """Train on one long stream with e-prop, updating the parameters every ``k1`` steps (and at the end).

    The state and the traces run on across updates; each step's traces use the parameters of that step.
    An update's gradient is the e-prop estimate of the gradient of the mean loss of the steps since the
    previous update (with ``k1 = T`` and a no-op optimizer, ``model_gradients``'s), the readout's exact.

    Parameters
    ----------
    cell : Elman
    params : dict
        The cell's parameters and ``W_hy``, ``b_y``; updated in place.
    xs : array, shape (T, B, n_in)
        The stream (B streams side by side).
    targets : array
        ``(T, B, n_out)`` for ``loss="mse"``, ``(T, B)`` class ids for ``loss="cross_entropy"``.
    optimizer : Optimizer
        From ``companion.optim`` (anything with ``step(params, grads)``).
    k1 : int, keyword-only
        How often the parameters are updated: after every ``k1`` steps, as in ``companion.rtrl.online_rtrl``.
    feedback, loss, state0, self_loop
        As for ``model_gradients``.
    clip : float, optional, keyword-only
        Maximum global gradient norm of each update.

    Returns
    -------
    History
        One entry per update: the mean loss of its steps (before the update) and its gradient norm.
    """
    cell = check_elman(cell)
    check_loss(loss)
    k1 = check_positive_int(k1, "k1")
    clip = check_optimizer_and_clip(optimizer, clip)
    cell_params, readout_params = split_params(cell, params, True)   # views: the updates show in both
    cell.check_params(cell_params)
    if feedback is not None:                                          # refused before the first step
        feedback = _check_feedback(feedback, cell.n_hidden, np.shape(readout_params["W_hy"])[0])
    xs, targets = check_stream(cell, xs, targets)
    T, B = xs.shape[:2]
    h = cell.initial_state(B) if state0 is None else cell.check_state(state0, B, "state0")
    traces = initial_traces(cell, B)
    history = History()
    total, value_sum, count = None, 0.0, 0
    for t in range(T):
        h_prev = h
        h, _ = cell._step(cell_params, xs[t], h_prev)                 # h_t with this step's parameters
        traces = trace_step(cell, cell_params, traces, xs[t], h_prev, h, self_loop=self_loop)
        value, grads, signal = learning_signals(readout_params, h[None], targets[t:t + 1], loss=loss,
                                                feedback=feedback)
        grads.update(combine(traces, signal[0]))                      # lambda_t e_t
        total = grads if total is None else {key: total[key] + grads[key] for key in grads}
        value_sum, count = value_sum + value, count + 1
        if count == k1 or t == T - 1:                                  # the mean over the new steps
            apply_update(params, {key: total[key] / count for key in params}, optimizer, history,
                         value_sum / count, clip=clip)
            total, value_sum, count = None, 0.0, 0
    return history


def _check_feedback(feedback: object, n_hidden: int, n_out: int) -> Array:
    """``feedback`` as a finite ``(H, n_out)`` array, or ``ValueError`` naming ``feedback``."""
    feedback = as_float_array(feedback, "feedback")
    check_shape(feedback, (n_hidden, n_out), "feedback", "(H, n_out)")
    return feedback
