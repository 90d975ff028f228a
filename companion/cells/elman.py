"""The Elman network (Elman 1990): the hidden state is fed back.

Forward, in the book's column-vector notation (chapter "BPTT for the Elman network")::

    a_t = W_xh x_t + W_hh h_{t-1} + b_h
    h_t = phi(a_t)

The code holds a batch of column vectors as the rows of a ``(B, .)`` array, so ``W x`` is written
``x @ W.T``. Weight shapes follow the math (and ``torch.nn.RNN``): ``W_xh`` is ``(H, n_in)``.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from ..types import Array, Params
from ..validation import check_positive_int
from .activations import ACTIVATIONS, check_nonlinearity
from .base import Cell


class ElmanStepCache(NamedTuple):
    """What one Elman step keeps for its backward step; every field is ``(B, .)``."""

    x_t: Array      # the input x_t, (B, n_in)
    h_prev: Array   # h_{t-1}, (B, H)
    h: Array        # h_t = phi(a_t), (B, H); phi'(a_t) is computed from it


class Elman(Cell):
    """Elman cell ``h_t = phi(W_xh x_t + W_hh h_{t-1} + b_h)``.

    Parameters
    ----------
    n_in, n_hidden : int
        Input width and hidden width H.
    nonlinearity : {"tanh", "relu", "linear"}, keyword-only
        phi. ``"linear"`` gives the linear RNN of the vanishing-gradient analysis.

    Parameters dict: ``W_xh`` ``(H, n_in)``, ``W_hh`` ``(H, H)``, ``b_h`` ``(H,)``. State: ``h`` ``(B, H)``.
    """

    def __init__(self, n_in: int, n_hidden: int, *, nonlinearity: str = "tanh"):
        self.n_in = check_positive_int(n_in, "n_in")
        self.n_hidden = check_positive_int(n_hidden, "n_hidden")
        self.nonlinearity = check_nonlinearity(nonlinearity)
        self.state_widths = (self.n_hidden,)
        self._phi, self._phi_prime = ACTIVATIONS[self.nonlinearity]

    cache_type = ElmanStepCache

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        H = self.n_hidden
        return {"W_xh": (H, self.n_in), "W_hh": (H, H), "b_h": (H,)}

    def init_params(self, rng: np.random.Generator | int) -> Params:
        """Uniform in ``[-1/sqrt(H), 1/sqrt(H)]``, the scale ``torch.nn.RNN`` uses."""
        return self._init_uniform(rng, 1.0 / math.sqrt(self.n_hidden))

    def _step(self, params: Params, x_t: Array, h_prev: Array) -> tuple[Array, ElmanStepCache]:
        W_xh, W_hh, b_h = params["W_xh"], params["W_hh"], params["b_h"]
        a = x_t @ W_xh.T + h_prev @ W_hh.T + b_h   # a_t: (B, H)
        h = self._phi(a)                            # h_t = phi(a_t): (B, H)
        return h, ElmanStepCache(x_t, h_prev, h)

    def _step_backward(
        self, params: Params, cache: ElmanStepCache, dh: Array
    ) -> tuple[Params, Array, Array]:
        x_t, h_prev, h = cache
        da = dh * self._phi_prime(h)       # abar_t = phi'(a_t) * hbar_t: (B, H)
        d_params = {
            "W_xh": da.T @ x_t,            # abar_t x_t^T, summed over B
            "W_hh": da.T @ h_prev,         # abar_t h_{t-1}^T, summed over B
            "b_h": da.sum(axis=0),         # abar_t, summed over B
        }
        dh_prev = da @ params["W_hh"]      # W_hh^T abar_t: (B, H)
        dx = da @ params["W_xh"]           # xbar_t = W_xh^T abar_t: (B, n_in)
        return d_params, dh_prev, dx

    def _step_jvp(
        self, params: Params, cache: ElmanStepCache, dh_prev: Array, d_params: Params, dx: Array
    ) -> Array:
        # tangents carry leading direction axes (...): dx (..., B, n_in), dW (..., H, .), db (..., H)
        W_xh, W_hh = params["W_xh"], params["W_hh"]
        dW_xh, dW_hh, db_h = d_params["W_xh"], d_params["W_hh"], d_params["b_h"]
        # ȧ_t = W_xh ẋ_t + Ẇ_xh x_t + W_hh ḣ_{t-1} + Ẇ_hh h_{t-1} + ḃ_h: (..., B, H)
        da = (dx @ W_xh.T + cache.x_t @ np.swapaxes(dW_xh, -1, -2)
              + dh_prev @ W_hh.T + cache.h_prev @ np.swapaxes(dW_hh, -1, -2) + db_h[..., None, :])
        return self._phi_prime(cache.h) * da    # ḣ_t = φ'(a_t) ⊙ ȧ_t

    def __repr__(self) -> str:
        return f"Elman(n_in={self.n_in}, n_hidden={self.n_hidden}, nonlinearity={self.nonlinearity!r})"
