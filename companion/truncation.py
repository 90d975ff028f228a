"""Truncated backpropagation through time, and the randomized truncation that removes its bias.

Chapter "Truncated BPTT". Every function here is written against the cell protocol and reuses
``companion.bptt``'s forward and backward passes: a window of the unrolled graph is back-propagated by
``bptt.backward`` on the caches of the segments it spans, chained through ``d_final_state``.

* ``tbptt`` is Williams & Peng's BPTT(k2; k1) (Sutskever's TBPTT(k1, k2)) with the parameters held
  fixed: at every step t that is a multiple of ``k1``, and at t = T, the losses of the steps since the
  previous such point are back-propagated through the steps max(1, t - k2 + 1) .. t, and the state before
  that window is a constant. ``truncated_gradients`` returns the same with the outputs and the input and
  initial-state gradients of that truncated graph.
* ``online_tbptt`` trains on a long stream the way a training loop does: the same windows, one optimizer
  step after each backward pass, the state carried forward.
* ``randomized_tbptt`` cuts the graph at random places and scales every path that survives a possible
  cut by the inverse of its survival probability (the compensation of Tallec & Ollivier's ARTBP), which
  makes the estimate unbiased for the full BPTT gradient.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from . import bptt
from .cells.base import Cell, check_cell
from .model import check_loss, output_loss_and_grads, split_params
from .optim import Optimizer
from .train import History, apply_update, check_optimizer_and_clip, check_stream
from .types import Array, Params, State
from .validation import as_rng, check_positive_float, check_positive_int


class TruncatedResult(NamedTuple):
    """What ``truncated_gradients`` returns.

    Attributes
    ----------
    hs : array, shape (T, B, n_hidden)
        The output of every step (the forward pass is not truncated).
    final_state : State
        The state after step T.
    grads : dict
        The truncated gradient for every key of ``params``.
    dxs : array, shape (T, B, n_in)
        The truncated gradient with respect to every input x_t: the sum over the windows that contain step t.
    dstate0 : State
        The truncated gradient with respect to the initial state: only windows that start at step 1 reach it.
    """

    hs: Array
    final_state: State
    grads: Params
    dxs: Array
    dstate0: State


def backward_points(T: int, k1: int, k2: int) -> list[tuple[int, int, int]]:
    """The backward passes of BPTT(k2; k1) over T steps, in the book's 1-based time.

    Returns
    -------
    list of (start, first_loss, end)
        One triple per backward pass, in time order: at step ``end`` (a multiple of ``k1``, or T) the losses
        of the steps ``first_loss .. end`` are back-propagated through the steps ``start .. end``, with
        ``start = max(1, end - k2 + 1)``; ``first_loss`` is one past the previous pass's ``end``.
    """
    T = check_positive_int(T, "T")
    k1, k2 = _check_window(k1, k2)
    ends = list(range(k1, T + 1, k1))
    if not ends or ends[-1] != T:
        ends.append(T)
    firsts = [1] + [end + 1 for end in ends[:-1]]
    return [(max(1, end - k2 + 1), first, end) for first, end in zip(firsts, ends)]


def tbptt(
    cell: Cell, params: Params, xs: Array, dhs: Array, k1: int, k2: int, *, state0: State | None = None
) -> Params:
    """The gradient of truncated BPTT(k2; k1) with the parameters held fixed over the sequence.

    Parameters
    ----------
    cell : Cell
        Any cell of ``companion.cells``.
    params : dict
        The cell's parameters.
    xs : array, shape (T, B, n_in)
        Inputs, time-major.
    dhs : array, shape (T, B, n_hidden)
        ``dhs[t - 1]`` is the direct gradient dL_t/dh_t, as for ``companion.bptt.backward``.
    k1 : int
        How often a backward pass runs: after every ``k1`` steps (and after step T).
    k2 : int
        How far back each pass goes: through the last ``k2`` steps; ``1 <= k1 <= k2``.
    state0 : State, optional, keyword-only
        Initial state; zeros if omitted.

    Returns
    -------
    dict
        The truncated gradient, keyed like ``params``. With ``k1 = k2 = T`` (or any ``k2 >= T``) it is
        the full BPTT gradient; with ``k1 = k2 = k`` and k dividing T it is what a loop that carries the
        state and cuts the graph (``detach()``) every k steps computes (if k does not divide T, the pass
        at T still reaches back k steps, past the loop's last, shorter chunk).
    """
    return truncated_gradients(cell, params, xs, dhs, k1, k2, state0=state0).grads


def truncated_gradients(
    cell: Cell,
    params: Params,
    xs: Array,
    dhs: Array,
    k1: int,
    k2: int,
    *,
    state0: State | None = None,
    d_final_state: State | None = None,
) -> TruncatedResult:
    """``tbptt`` with everything the truncated graph gives: outputs, final state, and the gradients with
    respect to the parameters, the inputs and the initial state.

    Parameters
    ----------
    cell, params, xs, dhs, k1, k2, state0
        As for ``tbptt``.
    d_final_state : State, optional, keyword-only
        Gradient of a loss on the final state; it joins the last backward pass, with ``dhs[T - 1]``.

    Returns
    -------
    TruncatedResult
    """
    cell = check_cell(cell)
    params = cell.check_params(params)
    xs = bptt.check_inputs(cell, xs)
    T, B = xs.shape[:2]
    dhs = bptt.check_dhs(cell, dhs, T, B)
    if d_final_state is not None:
        d_final_state = cell.check_state(d_final_state, B, "d_final_state")
    passes = backward_points(T, k1, k2)
    # one forward pass, in segments: a segment ends wherever a window starts or ends
    cuts = sorted({0, T, *(start - 1 for start, _, _ in passes), *(end for _, _, end in passes)})
    hs, segments = _forward_segments(cell, params, xs, cuts, state0)
    grads: Params | None = None
    dxs = np.zeros(xs.shape, dtype=np.result_type(dhs, hs))
    dstate0 = cell.zero_state_grad(segments[0][2].state0)
    for start, first_loss, end in passes:
        window = [segment for segment in segments if start - 1 <= segment[0] < end]
        window_dhs = np.zeros_like(dhs[start - 1:end])
        window_dhs[first_loss - start:] = dhs[first_loss - 1:end]           # this pass's losses only
        window_grads, window_dxs, d_state = _backward_window(
            cell, params, window, window_dhs, d_final_state if end == T else None
        )
        dxs[start - 1:end] += window_dxs
        grads = window_grads if grads is None else _add(grads, window_grads)
        if start == 1:
            dstate0 = _add_state(dstate0, d_state)
    final_state = segments[-1][2].final_state
    return TruncatedResult(hs, final_state, grads, dxs.astype(np.result_type(*grads.values()), copy=False), dstate0)


def truncation_weights(
    T: int,
    *,
    rng: np.random.Generator | int,
    keep_probability: float | Sequence[float] = 0.9,
    compensate: bool = True,
) -> Array:
    """Draw where randomized truncation cuts a graph of T steps, and the weight of each edge.

    Going forward in time, the edge from state_{t-1} to step t (t = 2 .. T) is kept with probability
    ``p_d``, where d counts the edges since the last cut (the first edge after a cut has d = 1): a
    renewal process, as in Tallec & Ollivier's ARTBP. A kept edge gets the weight ``1 / p_d`` (with
    ``compensate``, the default) or 1; a cut edge gets 0.

    Parameters
    ----------
    T : int
        The number of steps.
    rng : numpy Generator or int, keyword-only
        The source of the draws.
    keep_probability : float or sequence of float, keyword-only
        ``p_d`` in (0, 1]: one number for every d (cut lengths are then geometric with mean ``1 / (1 - p)``
        steps), or a sequence whose entry ``d - 1`` is ``p_d`` and whose last entry serves every larger d
        (``[1] * K + [p]`` never cuts within K edges of the last cut).
    compensate : bool, keyword-only
        Weight kept edges by ``1 / p_d`` (unbiased) or by 1 (the plain random truncation, biased).

    Returns
    -------
    array, shape (T,)
        ``weights[t - 1]`` multiplies what step t sends back to state_{t-1}; ``weights[0]`` is 1 (the edge
        to the initial state is never cut).
    """
    T = check_positive_int(T, "T")
    rng = as_rng(rng)
    probabilities = _check_keep_probability(keep_probability)
    weights = np.ones(T)
    since_cut = 0
    for t in range(1, T):
        since_cut += 1
        p = probabilities[min(since_cut, len(probabilities)) - 1]
        if rng.random() < p:
            weights[t] = 1.0 / p if compensate else 1.0
        else:
            weights[t] = 0.0
            since_cut = 0
    return weights


def randomized_tbptt(
    cell: Cell,
    params: Params,
    xs: Array,
    dhs: Array,
    *,
    rng: np.random.Generator | int,
    state0: State | None = None,
    keep_probability: float | Sequence[float] = 0.9,
    compensate: bool = True,
) -> Params:
    """One draw of the randomized truncated gradient; unbiased for full BPTT with ``compensate=True``.

    The graph is cut where ``truncation_weights`` says; every kept edge multiplies the adjoint that
    crosses it by ``1 / p_d``. A path from the loss at step s back to step t crosses the edges t+1 .. s,
    and its weight (the product of theirs) has expectation 1, so the expected estimate is the full gradient
    (chapter "Truncated BPTT" derives it). Its variance grows with the number of edges a path crosses.

    Parameters
    ----------
    cell, params, xs, dhs, state0
        As for ``tbptt``.
    rng, keep_probability, compensate
        As for ``truncation_weights``.

    Returns
    -------
    dict
        One draw of the estimate, keyed like ``params``.
    """
    _, cache = bptt.forward(cell, params, xs, state0, fused=False)
    weights = truncation_weights(cache.length, rng=rng, keep_probability=keep_probability, compensate=compensate)
    return bptt.backward(cell, params, cache, dhs, carry=weights)[0]


class TruncationChoice(NamedTuple):
    """What ``choose_k2`` found.

    Attributes
    ----------
    k2 : int
        The smallest window whose predicted relative bias is at most the tolerance (T if none is).
    decay : float
        beta, the fitted factor by which the adjoint's norm shrinks per step back (>= 1: it does not decay).
    adjoint_norms : array, shape (T,)
        phi_k = the mean over the batch of ||dL_T/d(state_{T-k})||, for k = 0 .. T - 1.
    predicted_bias : array, shape (T,)
        ``predicted_bias[K - 1]``: the relative bias rho(K) that the fit predicts for k2 = K.
    """

    k2: int
    decay: float
    adjoint_norms: Array
    predicted_bias: Array


def choose_k2(
    cell: Cell,
    params: Params,
    xs: Array,
    dhs: Array,
    *,
    tolerance: float,
    state0: State | None = None,
    burn_in: int = 1,
) -> TruncationChoice:
    """Choose the truncation window from how fast the adjoint decays (after Aicher, Foti & Fox 2019).

    The loss at the last step, ``dhs[T - 1]``, is back-propagated through the whole sequence
    (``bptt.state_adjoints``); phi_k is the norm of its adjoint k steps back. A straight line fitted to
    log phi_k over k = ``burn_in`` .. T - 1 gives the decay factor beta; if beta < 1 the part of the sum
    of phi_k that a window of K steps leaves out is predicted as the geometric tail
    phi_burn_in * beta**(K - burn_in) / (1 - beta) (plus the measured phi_k for K <= k < burn_in), and the relative bias as
    rho(K) = tail(K) / (sum_{k < K} phi_k + tail(K)). The choice is the smallest K with rho(K) <= ``tolerance``.
    This is a heuristic: the chapter measures the true bias of the window it picks.

    Parameters
    ----------
    cell, params, xs, dhs, state0
        As for ``tbptt``; only ``dhs[T - 1]`` is used.
    tolerance : float, keyword-only
        The largest acceptable relative bias, in (0, 1).
    burn_in : int, keyword-only
        The first lag of the fit (the decay is often not geometric at the first few lags); at most T - 2.

    Returns
    -------
    TruncationChoice
    """
    cell = check_cell(cell)
    tolerance = check_positive_float(tolerance, "tolerance")
    if tolerance >= 1:
        raise ValueError(f"tolerance must lie in (0, 1), got {tolerance!r}")
    xs = bptt.check_inputs(cell, xs)
    T, B = xs.shape[:2]
    dhs = bptt.check_dhs(cell, dhs, T, B)
    burn_in = check_positive_int(burn_in, "burn_in")
    if burn_in > T - 2:
        raise ValueError(f"burn_in must be at most T - 2 = {T - 2} (the fit needs two lags), got {burn_in}")
    last_loss = np.zeros_like(dhs)
    last_loss[-1] = dhs[-1]
    _, cache = bptt.forward(cell, params, xs, state0, fused=False)
    adjoints = bptt.state_adjoints(cell, params, cache, last_loss)          # (T + 1, B, width) or parts
    parts = adjoints if isinstance(adjoints, tuple) else (adjoints,)
    joined = np.concatenate(parts, axis=-1)[1:][::-1]                        # entry k: state_{T-k}
    norms = np.linalg.norm(joined, axis=-1).mean(axis=1)                     # phi_k, k = 0 .. T - 1
    lags = np.arange(burn_in, T)
    if np.any(norms[lags] <= 0):
        raise ValueError("the last step's loss must reach every state: dhs[T - 1] is zero or an adjoint vanished")
    slope = np.polyfit(lags, np.log(norms[lags]), 1)[0]
    decay = float(np.exp(slope))
    sizes = np.arange(1, T + 1)
    kept = np.cumsum(norms)[sizes - 1]                                       # sum_{k < K} phi_k
    if decay < 1:
        geometric = norms[burn_in] * decay ** (np.maximum(sizes, burn_in) - burn_in) / (1 - decay)
        measured = np.concatenate([np.cumsum(norms[:burn_in][::-1])[::-1], np.zeros(T - burn_in + 1)])
        tail = geometric + measured[sizes]                  # sum_{k >= K} phi_k: measured below burn_in
        bias = tail / (kept + tail)
        meets = np.flatnonzero(bias <= tolerance)
        k2 = int(sizes[meets[0]]) if meets.size else T
    else:
        bias = np.ones(T)
        k2 = T
    return TruncationChoice(k2, decay, norms, bias)


def adaptive_tbptt(
    cell: Cell,
    params: Params,
    xs: Array,
    dhs: Array,
    k1: int,
    *,
    tolerance: float,
    state0: State | None = None,
    burn_in: int = 1,
) -> tuple[Params, TruncationChoice]:
    """``tbptt`` with k2 chosen by ``choose_k2`` (at least ``k1``): ``(grads, choice)``."""
    k1 = check_positive_int(k1, "k1")
    choice = choose_k2(cell, params, xs, dhs, tolerance=tolerance, state0=state0, burn_in=burn_in)
    return tbptt(cell, params, xs, dhs, k1, max(k1, choice.k2), state0=state0), choice


def online_tbptt(
    cell: Cell,
    params: Params,
    xs: Array,
    targets: Array,
    k1: int,
    k2: int,
    optimizer: Optimizer,
    *,
    loss: str = "mse",
    readout: bool = True,
    state0: State | None = None,
    clip: float | None = None,
) -> History:
    """Train on one long stream with BPTT(k2; k1), updating the parameters after every backward pass.

    The windows are those of ``tbptt`` (``backward_points``). At the end of each window the steps since the
    previous update are new; the window's forward pass runs with the current parameters from the state
    before it (as the most recent forward pass through that step computed it, never differentiated), its
    loss is the mean loss of the new steps, and one optimizer step follows its backward pass. With
    ``k1 = k2 = k`` and k dividing T this is the loop that feeds consecutive windows of k steps to a
    stateful network (``companion.train.train`` with ``carry_state=True``); with ``k1 < k2`` each update
    looks further back than the steps it learns from. Each update's gradient is that of its window in
    ``tbptt``, for the direct gradients of its mean loss.

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
    k1, k2 : int
        As for ``tbptt``.
    optimizer : Optimizer
        From ``companion.optim``.
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
        One entry per update: the mean loss of its new steps (before the update) and its gradient norm.
    """
    cell = check_cell(cell)
    check_loss(loss)
    clip = check_optimizer_and_clip(optimizer, clip)
    xs, targets = check_stream(cell, xs, targets)
    T = xs.shape[0]
    history = History()
    passes = backward_points(T, k1, k2)
    state = state0                             # the state before the window's first step
    for j, (start, first_loss, end) in enumerate(passes):
        next_start = passes[j + 1][0] if j + 1 < len(passes) else end + 1
        cell_params, readout_params = split_params(cell, params, readout)
        # the next window starts inside this one: cut the forward pass there to keep that state
        cuts = sorted({start - 1, first_loss - 1, next_start - 1, end})
        hs, segments = _forward_segments(cell, cell_params, xs, cuts, state)
        state = next(cache.state0 for a, _, cache in segments if a == next_start - 1) \
            if next_start - 1 < end else segments[-1][2].final_state
        hs_new = hs[first_loss - start:]                         # the steps first_loss .. end
        value, grads, d_new = output_loss_and_grads(readout_params, hs_new, targets[first_loss - 1:end], loss=loss)
        window_dhs = np.zeros(hs.shape, dtype=d_new.dtype)
        window_dhs[first_loss - start:] = d_new
        cell_grads, _, _ = _backward_window(cell, cell_params, segments, window_dhs, None)
        grads.update(cell_grads)
        grads = {key: grads[key] for key in params}
        apply_update(params, grads, optimizer, history, value, clip=clip)
    return history


def _forward_segments(
    cell: Cell, params: Params, xs: Array, cuts: list[int], state0: State | None
) -> tuple[Array, list[tuple[int, int, bptt.SequenceCache]]]:
    """``bptt.forward`` over the steps ``cuts[0] + 1 .. cuts[-1]``, one call per segment between
    consecutive cuts, each starting from the previous one's final state.

    Returns the outputs ``(cuts[-1] - cuts[0], B, n_hidden)`` and, in time order, ``(a, b, cache)`` for the
    segment of the steps ``a + 1 .. b``.
    """
    outputs, segments, state = [], [], state0
    for a, b in zip(cuts[:-1], cuts[1:]):
        hs, cache = bptt.forward(cell, params, xs[a:b], state)
        outputs.append(hs)
        segments.append((a, b, cache))
        state = cache.final_state
    return np.concatenate(outputs), segments


def _backward_window(
    cell: Cell,
    params: Params,
    segments: list[tuple[int, int, bptt.SequenceCache]],
    dhs: Array,
    d_final_state: State | None,
) -> tuple[Params, Array, State]:
    """``bptt.backward`` through consecutive segments, last to first, chained through ``d_final_state``.

    ``dhs`` covers the steps of all the segments, ``(b_last - a_first, B, n_hidden)``. Returns the summed
    parameter gradients, dL/dx for those steps and dL/d(the state before the first segment).
    """
    offset = segments[0][0]
    grads: Params | None = None
    dxs = np.empty((dhs.shape[0],) + segments[0][2].xs.shape[1:], dtype=np.result_type(dhs, *params.values()))
    d_state = d_final_state
    for a, b, cache in reversed(segments):
        segment_grads, dxs[a - offset:b - offset], d_state = bptt.backward(
            cell, params, cache, dhs[a - offset:b - offset], d_final_state=d_state
        )
        grads = segment_grads if grads is None else _add(grads, segment_grads)
    return grads, dxs, d_state


def _check_window(k1: object, k2: object) -> tuple[int, int]:
    k1 = check_positive_int(k1, "k1")
    k2 = check_positive_int(k2, "k2")
    if k2 < k1:
        raise ValueError(f"k2 must be at least k1 (each backward pass must reach the losses it carries), got k1={k1}, k2={k2}")
    return k1, k2


def _check_keep_probability(value: object) -> list[float]:
    values = np.atleast_1d(np.asarray(value, dtype=object))
    if values.ndim != 1 or values.size == 0:
        raise ValueError(f"keep_probability must be a number or a non-empty 1-D sequence of numbers in (0, 1], got {value!r}")
    probabilities = []
    for entry in values:
        if isinstance(entry, (bool, np.bool_)) or not isinstance(entry, (int, float, np.integer, np.floating)):
            raise ValueError(f"keep_probability must hold numbers in (0, 1], got {value!r}")
        if not 0.0 < float(entry) <= 1.0:
            raise ValueError(f"keep_probability must lie in (0, 1] (the probability of not cutting), got {value!r}")
        probabilities.append(float(entry))
    return probabilities


def _add(total: Params, more: Params) -> Params:
    for key, value in more.items():
        total[key] = total[key] + value
    return total


def _add_state(total: State, more: State) -> State:
    if isinstance(total, np.ndarray):
        return total + more
    return tuple(a + b for a, b in zip(total, more))
