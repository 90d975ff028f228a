"""A cell with a readout and a loss: the whole model that a sequence task trains.

The model's parameters are one flat dict, the cell's keys (``cell.param_shapes()``) plus the readout's
``W_hy`` and ``b_y``, so an optimizer sees a single dict and the keys stay the book's symbols. The
forward pass is cell -> readout -> loss; the backward pass runs the same chain in reverse, handing the
readout's dL/dh_t to ``companion.bptt.backward`` as ``dhs``.

A cell whose own output is already the prediction (the Jordan cell, which has ``W_hy`` and ``b_y``
inside it) is used with ``readout=False``: the loss then looks at h_t directly.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from . import bptt
from .cells.base import Cell, check_cell
from .losses import mse, sigmoid_mse, softmax_cross_entropy
from .readout import init_readout, readout_backward, readout_forward
from .types import Array, Params, State
from .validation import as_rng, check_step_mask

LOSSES = {"mse": mse, "sigmoid_mse": sigmoid_mse, "cross_entropy": softmax_cross_entropy}
"""name -> loss function ``(ys, targets) -> (loss, dys)``."""


def check_loss(loss: object) -> Callable[[Array, Array], tuple[float, Array]]:
    """The loss function named ``loss`` (a key of ``LOSSES``), or ``ValueError`` naming ``loss``."""
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {sorted(LOSSES)}, got {loss!r}")
    return LOSSES[loss]


def _check_no_clash(cell: Cell) -> None:
    """Raise ``ValueError`` naming ``cell`` if its parameter names collide with the readout's."""
    clash = sorted({"W_hy", "b_y"} & set(cell.param_shapes()))
    if clash:
        raise ValueError(
            f"cell {cell!r} already has parameters named {clash}, so a readout cannot join it in one dict; "
            "use the cell's own output as the prediction (readout=False)"
        )


def _check_last_step_targets(targets: object, loss: str) -> Array:
    """The last step's targets: ``(B, n_out)`` for ``"mse"`` and ``"sigmoid_mse"``, ``(B,)`` for
    ``"cross_entropy"``."""
    targets = np.asarray(targets)
    ndim, meaning = (1, "(B,)") if loss == "cross_entropy" else (2, "(B, n_out)")
    if targets.ndim != ndim:
        raise ValueError(
            f"targets must have shape {meaning} with last_step_only=True and loss={loss!r}, "
            f"got shape {targets.shape}"
        )
    return targets


def _check_mask(mask: object, targets: object, steps: tuple[int, int]) -> Array:
    """``mask`` as a bool array of shape ``steps`` = (T, B) with at least one true entry, and ``targets``
    checked to start with (T, B); else ``ValueError`` naming the argument."""
    mask = check_step_mask(mask, steps)
    if not mask.any():
        raise ValueError("mask must be true at one step at least (a loss over no steps is undefined)")
    if np.shape(targets)[:2] != steps:
        raise ValueError(f"targets must start with the (T, B) = {steps} of xs, got shape {np.shape(targets)}")
    return mask


def init_model(cell: Cell, n_out: int, rng: np.random.Generator | int) -> Params:
    """Draw the parameters of ``cell`` followed by a linear readout to ``n_out`` outputs.

    Parameters
    ----------
    cell : Cell
        Any cell of ``companion.cells`` whose parameter names differ from ``W_hy`` and ``b_y``.
    n_out : int
        Width of the prediction y_t.
    rng : np.random.Generator or int
        Source of randomness: the cell's parameters are drawn first, then the readout's.

    Returns
    -------
    dict
        The cell's parameters (``cell.param_shapes()``) and ``W_hy`` ``(n_out, H)``, ``b_y`` ``(n_out,)``.
    """
    cell = check_cell(cell)
    _check_no_clash(cell)
    rng = as_rng(rng)  # one generator for both draws, also when given a seed
    params = cell.init_params(rng)
    params.update(init_readout(cell.output_width, n_out, rng))
    return params


def split_params(cell: Cell, params: object, readout: bool) -> tuple[Params, Params | None]:
    """Split a model's flat parameter dict into the cell's and the readout's (``None`` without readout).

    Raises ``ValueError`` naming ``params`` unless its keys are exactly the cell's (and ``W_hy``, ``b_y``
    with ``readout``). The arrays are not copied: an optimizer step on the model's dict shows in both.
    """
    if not isinstance(params, Mapping):
        raise ValueError(f"params must be a dict of arrays, got {type(params).__name__}")
    if readout:
        _check_no_clash(cell)
    cell_keys = list(cell.param_shapes())
    readout_keys = ["W_hy", "b_y"] if readout else []
    expected = set(cell_keys) | set(readout_keys)
    if set(params) != expected:
        raise ValueError(
            f"params must have exactly the keys {sorted(expected)}; "
            f"missing {sorted(expected - set(params))}, unexpected {sorted(set(params) - expected)}"
        )
    cell_params = {key: params[key] for key in cell_keys}
    return cell_params, ({key: params[key] for key in readout_keys} if readout else None)


def predict(cell: Cell, params: Params, xs: Array, state0: State | None = None, *, readout: bool = True) -> Array:
    """The model's output on every step: the cell over ``xs``, then the readout.

    Parameters
    ----------
    cell : Cell
        Any cell of ``companion.cells``.
    params : dict
        The cell's parameters plus ``W_hy`` ``(n_out, H)`` and ``b_y`` ``(n_out,)`` (as ``init_model``
        makes them); the cell's parameters alone when ``readout`` is false.
    xs : array, shape (T, B, n_in)
        Inputs, time-major.
    state0 : State, optional
        Initial state, ``(B, n_hidden)``; zeros if omitted.
    readout : bool, keyword-only
        Whether a linear readout follows the cell. Without it the prediction is the cell's output h_t.

    Returns
    -------
    ys : array, shape (T, B, n_out)
        ``n_out`` is the cell's output width H when ``readout`` is false. For ``loss="cross_entropy"``
        these are the logits.
    """
    cell = check_cell(cell)
    cell_params, readout_params = split_params(cell, params, readout)
    hs, _ = bptt.forward(cell, cell_params, xs, state0)                      # (T, B, H)
    return hs if readout_params is None else readout_forward(readout_params, hs)


def output_loss_and_grads(
    readout_params: Params | None, hs: Array, targets: Array, *, loss: str = "mse"
) -> tuple[float, Params, Array]:
    """The loss of some steps' outputs h_t, through the readout if there is one, and its gradients.

    Parameters
    ----------
    readout_params : dict or None
        ``W_hy`` and ``b_y`` (the second half of ``split_params``); ``None``: the loss looks at h_t itself.
    hs : array, shape (S, B, H)
        The outputs of the S steps that have a loss.
    targets : array
        ``(S, B, n_out)`` for ``loss="mse"`` and ``"sigmoid_mse"``, ``(S, B)`` integer class ids for
        ``loss="cross_entropy"``.
    loss : {"mse", "sigmoid_mse", "cross_entropy"}, keyword-only
        As for ``sequence_loss_and_grads`` (a mean over the S steps).

    Returns
    -------
    loss : float
    readout_grads : dict
        dL/dW_hy and dL/db_y (empty without a readout).
    dhs : array, shape (S, B, H)
        dL/dh_t of each step: the ``dhs`` that ``companion.bptt.backward`` takes.
    """
    loss_fn = check_loss(loss)
    if readout_params is None:
        value, dhs = loss_fn(hs, targets)
        return value, {}, dhs
    ys = readout_forward(readout_params, hs)                                 # (S, B, n_out)
    value, dys = loss_fn(ys, targets)                                        # dL/dy_t
    readout_grads, dhs = readout_backward(readout_params, hs, dys)
    return value, readout_grads, dhs


def sequence_loss_and_grads(
    cell: Cell,
    params: Params,
    xs: Array,
    targets: Array,
    *,
    loss: str = "mse",
    readout: bool = True,
    state0: State | None = None,
    last_step_only: bool = False,
    mask: Array | None = None,
    return_final_state: bool = False,
) -> tuple[float, Params] | tuple[float, Params, State]:
    """The loss of the model on one batch of sequences and its gradient by full BPTT.

    Forward: h_t from the cell, y_t = W_hy h_t + b_y (if ``readout``), the loss over all steps (or on
    the last step only). Backward: dL/dy_t from the loss, dL/dh_t and the readout's gradients from
    ``readout_backward``, then ``companion.bptt.backward`` for the cell's gradients, summed over time.
    With ``last_step_only`` the direct gradients dL/dh_t are zero for t < T, and BPTT still carries
    dL/dh_T back through every step (chapter "Learning long lags: the adding problem").

    Parameters
    ----------
    cell : Cell
        Any cell of ``companion.cells``.
    params : dict
        As for ``predict``.
    xs : array, shape (T, B, n_in)
        Inputs, time-major.
    targets : array
        ``(T, B, n_out)`` real values for ``loss="mse"`` (values in [0, 1] for ``"sigmoid_mse"``);
        ``(T, B)`` integer class ids in ``[0, n_out)`` for ``loss="cross_entropy"``. With
        ``last_step_only``, the last step's alone: ``(B, n_out)`` or ``(B,)``.
    loss : {"mse", "sigmoid_mse", "cross_entropy"}, keyword-only
        ``companion.losses.mse``, ``sigmoid_mse`` or ``softmax_cross_entropy``, means over all steps.
    readout : bool, keyword-only
        As for ``predict``.
    state0 : State, optional, keyword-only
        Initial state; zeros if omitted.
    last_step_only : bool, keyword-only
        Put the loss on the last step's output y_T alone (a sequence-to-one task) instead of on every
        step.
    mask : bool array, shape (T, B), optional, keyword-only
        Only the steps where ``mask`` is true have a loss, which is the mean over those steps (strings
        of different lengths padded to one T, ``companion.grammars.GrammarBatch.mask``); the padded
        steps' targets are ignored. Not with ``last_step_only``.
    return_final_state : bool, keyword-only
        Also return the state after the last step, to start the next window of the same stream from
        (``companion.train.train(..., carry_state=True)``). No gradient flows back through it into this
        window: the windows are back-propagated separately, as in truncated BPTT.

    Returns
    -------
    loss : float
    grads : dict
        dL/dtheta with the keys and shapes of ``params``.
    final_state : State
        Only with ``return_final_state``: the state after step T, (B, n_hidden) (a tuple for the LSTM).
    """
    cell = check_cell(cell)
    check_loss(loss)
    cell_params, readout_params = split_params(cell, params, readout)
    if last_step_only:
        if mask is not None:
            raise ValueError("mask and last_step_only cannot be combined: last_step_only already puts the "
                             "loss on one step")
        targets = _check_last_step_targets(targets, loss)[None]             # (1, B, ...)
    hs, cache = bptt.forward(cell, cell_params, xs, state0)                  # (T, B, H)
    if mask is not None:
        mask = _check_mask(mask, targets, hs.shape[:2])
        seen, targets = hs[mask][:, None], np.asarray(targets)[mask][:, None]   # the S steps with a loss, (S, 1, ...)
    else:
        seen = hs[-1:] if last_step_only else hs                             # the steps with a loss
    value, grads, d_seen = output_loss_and_grads(readout_params, seen, targets, loss=loss)  # dL/dh_t
    if mask is not None:
        dhs = np.zeros(hs.shape, dtype=d_seen.dtype)                         # no loss on padded steps
        dhs[mask] = d_seen[:, 0]
    elif last_step_only:
        dhs = np.zeros(hs.shape, dtype=d_seen.dtype)                         # no loss before step T
        dhs[-1] = d_seen[0]                                                  # dL/dh_T, (B, H)
    else:
        dhs = d_seen
    cell_grads, _, _ = bptt.backward(cell, cell_params, cache, dhs)
    grads.update(cell_grads)
    grads = {key: grads[key] for key in params}
    if return_final_state:
        return value, grads, cache.final_state
    return value, grads
