"""The Elman network (Elman 1990): the hidden state is fed back.

Forward, in the book's column-vector notation (chapter "BPTT for the Elman network")::

    a_t = W_xh x_t + W_hh h_{t-1} + b_h
    h_t = phi(a_t)

The code holds a batch of column vectors as the rows of a ``(B, .)`` array, so ``W x`` is written
``x @ W.T``. Weight shapes follow the math (and ``torch.nn.RNN``): ``W_xh`` is ``(H, n_in)``.
"""
from __future__ import annotations

import math

import numpy as np

from ..types import Array, Params
from ..validation import check_positive_int
from .activations import ACTIVATIONS, check_nonlinearity
from .base import Cell


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

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        H = self.n_hidden
        return {"W_xh": (H, self.n_in), "W_hh": (H, H), "b_h": (H,)}

    def init_params(self, rng: np.random.Generator | int) -> Params:
        """Uniform in ``[-1/sqrt(H), 1/sqrt(H)]``, the scale ``torch.nn.RNN`` uses."""
        return self._init_uniform(rng, 1.0 / math.sqrt(self.n_hidden))

    def _step(self, params: Params, x_t: Array, h_prev: Array) -> tuple[Array, tuple[Array, Array, Array]]:
        a = x_t @ params["W_xh"].T + h_prev @ params["W_hh"].T + params["b_h"]  # a_t: (B, H)
        h = self._phi(a)                                                          # h_t = phi(a_t)
        return h, (x_t, h_prev, h)

    def _step_backward(self, params: Params, cache: tuple[Array, Array, Array], dh: Array) -> tuple[Params, Array, Array]:
        x_t, h_prev, h = cache
        da = dh * self._phi_prime(h)                 # through phi: dL/da_t = dL/dh_t * phi'(a_t), (B, H)
        d_params = {
            "W_xh": da.T @ x_t,                      # sum over the batch of da_t x_t^T, (H, n_in)
            "W_hh": da.T @ h_prev,                   # sum over the batch of da_t h_{t-1}^T, (H, H)
            "b_h": da.sum(axis=0),                   # (H,)
        }
        dh_prev = da @ params["W_hh"]                # W_hh^T da_t: dL/dh_{t-1} through this step, (B, H)
        dx = da @ params["W_xh"]                     # W_xh^T da_t: dL/dx_t, (B, n_in)
        return d_params, dh_prev, dx

    # ----- fused sequence methods (used by companion.bptt; same numbers as the step loop) ---------------
    def forward_sequence(self, params: Params, xs: Array, h0: Array) -> tuple[Array, Array, tuple[Array, Array, Array]]:
        """All T steps: the input projection for every step in one matrix product, then the recurrence.

        ``xs`` (T, B, n_in), ``h0`` (B, H) -> ``hs`` (T, B, H), the final state h_T (B, H), and the cache.
        """
        T, B, n_in = xs.shape
        H = self.n_hidden
        a_in = (xs.reshape(T * B, n_in) @ params["W_xh"].T + params["b_h"]).reshape(T, B, H)  # W_xh x_t + b_h, all t
        W_hh_T = np.ascontiguousarray(params["W_hh"].T)        # contiguous, so every step's matmul is fast
        hs = np.empty((T, B, H), dtype=np.result_type(a_in, h0))
        h = h0
        for t in range(T):
            h = hs[t] = self._phi(a_in[t] + h @ W_hh_T)       # h_t = phi(W_xh x_t + b_h + W_hh h_{t-1})
        return hs.copy(), h, (xs, h0, hs)                      # the caller may edit hs; the cache keeps its own

    def backward_sequence(
        self, params: Params, cache: tuple[Array, Array, Array], dhs: Array, dh_final: Array
    ) -> tuple[Params, Array, Array]:
        """All T steps backward: only the adjoint recursion loops; the sums over time are matrix products.

        ``dhs`` (T, B, H) and ``dh_final`` (B, H) -> ``(grads, dxs (T, B, n_in), dh0 (B, H))``.
        """
        xs, h0, hs = cache
        T, B, n_in = xs.shape
        H = self.n_hidden
        phi_prime = self._phi_prime(hs)                        # phi'(a_t) for every t at once, (T, B, H)
        das = np.empty(hs.shape, dtype=np.result_type(hs, dhs, dh_final))
        dh_next = dh_final                                     # W_hh^T abar_{t+1}, zero beyond the end
        for t in reversed(range(T)):
            das[t] = (dhs[t] + dh_next) * phi_prime[t]         # abar_t = (dl_t/dh_t + W_hh^T abar_{t+1}) * phi'(a_t)
            dh_next = das[t] @ params["W_hh"]                  # W_hh^T abar_t, carried to step t-1
        h_prev = np.concatenate([h0[None], hs[:-1]])           # h_{t-1} for every t, (T, B, H)
        da_flat = das.reshape(T * B, H)                        # stack every (step, sequence) pair as a row
        grads = {
            "W_xh": da_flat.T @ xs.reshape(T * B, n_in),       # sum_t abar_t x_t^T
            "W_hh": da_flat.T @ h_prev.reshape(T * B, H),      # sum_t abar_t h_{t-1}^T
            "b_h": da_flat.sum(axis=0),                        # sum_t abar_t
        }
        dxs = (da_flat @ params["W_xh"]).reshape(T, B, n_in)   # W_xh^T abar_t for every t
        return grads, dxs, dh_next

    def __repr__(self) -> str:
        return f"Elman(n_in={self.n_in}, n_hidden={self.n_hidden}, nonlinearity={self.nonlinearity!r})"
