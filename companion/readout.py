"""A linear readout on every step: y_t = W_hy h_t + b_y.

The readout sits outside the cell (the cell protocol ends at h_t). Its backward pass turns the loss's
dL/dy_t into the dL/dh_t that ``companion.bptt.backward`` takes as ``dhs``, and sums the tied readout
weights' gradients over time and batch, as the chapter "BPTT for the Elman network" does for
``dW_hy`` and ``db_y``.

As in the cells, a batch of column vectors is held as the rows of an array, so ``W_hy h_t`` is written
``hs @ W_hy.T``.
"""
from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from .types import Array, Params
from .validation import as_float_array, as_rng, check_params, check_positive_int, check_shape


def readout_param_shapes(n_hidden: int, n_out: int) -> dict[str, tuple[int, ...]]:
    """The readout's parameter shapes: ``W_hy`` ``(n_out, n_hidden)`` and ``b_y`` ``(n_out,)``."""
    n_hidden = check_positive_int(n_hidden, "n_hidden")
    n_out = check_positive_int(n_out, "n_out")
    return {"W_hy": (n_out, n_hidden), "b_y": (n_out,)}


def init_readout(n_hidden: int, n_out: int, rng: np.random.Generator | int) -> Params:
    """Draw readout parameters uniform in ``[-1/sqrt(H), 1/sqrt(H)]`` (the scale of ``torch.nn.Linear``).

    Parameters
    ----------
    n_hidden : int
        H, the width of the hidden states read out.
    n_out : int
        Width of the output y_t.
    rng : np.random.Generator or int
        Source of randomness (an int is used as a seed). ``W_hy`` is drawn first, then ``b_y``.

    Returns
    -------
    dict
        ``W_hy`` ``(n_out, H)`` and ``b_y`` ``(n_out,)``, float64.
    """
    shapes = readout_param_shapes(n_hidden, n_out)
    rng = as_rng(rng)
    scale = 1.0 / math.sqrt(n_hidden)
    return {key: rng.uniform(-scale, scale, size=shapes[key]) for key in ("W_hy", "b_y")}


def _check_readout(params: object, hs: object) -> tuple[Params, Array]:
    """Validate readout parameters (shapes read off ``W_hy``) and hidden states ``(T, B, H)``."""
    if not isinstance(params, Mapping):
        raise ValueError(f"params must be a dict with keys ['W_hy', 'b_y'], got {type(params).__name__}")
    if "W_hy" not in params:
        raise ValueError(f"params must have exactly the keys ['W_hy', 'b_y'], got {sorted(params)}")
    W_hy = as_float_array(params["W_hy"], "params['W_hy']")
    check_shape(W_hy, (None, None), "params['W_hy']", "(n_out, H)")
    params = check_params(params, {"W_hy": W_hy.shape, "b_y": (W_hy.shape[0],)})
    hs = as_float_array(hs, "hs")
    check_shape(hs, (None, None, W_hy.shape[1]), "hs", "(T, B, H)")
    return params, hs


def readout_forward(params: Params, hs: Array) -> Array:
    """Apply the readout on every step.

    .. math:: y_t = W_{hy} h_t + b_y

    Parameters
    ----------
    params : dict
        ``W_hy`` ``(n_out, H)``, ``b_y`` ``(n_out,)``.
    hs : array, shape (T, B, H)
        Hidden states, time-major.

    Returns
    -------
    ys : array, shape (T, B, n_out)
    """
    params, hs = _check_readout(params, hs)
    return hs @ params["W_hy"].T + params["b_y"]  # (T, B, n_out)


def readout_backward(params: Params, hs: Array, dys: Array) -> tuple[Params, Array]:
    r"""Backward pass of ``readout_forward``.

    .. math::
        \frac{\partial L}{\partial W_{hy}} = \sum_{t, b} \delta y_t h_t^\top, \quad
        \frac{\partial L}{\partial b_y} = \sum_{t, b} \delta y_t, \quad
        \frac{\partial L}{\partial h_t} = W_{hy}^\top \delta y_t,
        \qquad \delta y_t = \frac{\partial L}{\partial y_t}

    Parameters
    ----------
    params : dict
        ``W_hy`` ``(n_out, H)``, ``b_y`` ``(n_out,)``.
    hs : array, shape (T, B, H)
        The hidden states given to ``readout_forward``.
    dys : array, shape (T, B, n_out)
        dL/dy_t for every step and sequence.

    Returns
    -------
    d_params : dict
        ``W_hy`` ``(n_out, H)`` and ``b_y`` ``(n_out,)``, summed over T and B.
    dhs : array, shape (T, B, H)
        dL/dh_t through the readout.
    """
    params, hs = _check_readout(params, hs)
    dys = as_float_array(dys, "dys")
    check_shape(dys, hs.shape[:2] + (params["W_hy"].shape[0],), "dys", "(T, B, n_out)")
    n_out, H = params["W_hy"].shape
    d_params = {
        "W_hy": dys.reshape(-1, n_out).T @ hs.reshape(-1, H),  # sum over t, b of dy_t h_t^T, (n_out, H)
        "b_y": dys.sum(axis=(0, 1)),                            # (n_out,)
    }
    dhs = dys @ params["W_hy"]                                  # W_hy^T dy_t, (T, B, H)
    return d_params, dhs
