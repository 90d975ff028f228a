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
from .base import Cache, Cell
from .alignment import aligned_copy


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

    def _step(self, params: Params, x_t: Array, h_prev: Array) -> tuple[Array, Cache]:
        W_xh, W_hh, b_h = params["W_xh"], params["W_hh"], params["b_h"]
        a = x_t @ W_xh.T + h_prev @ W_hh.T + b_h   # a_t: (B, H)
        h = self._phi(a)                            # h_t = phi(a_t): (B, H)
        return h, (x_t, h_prev, h)

    def _step_backward(
        self, params: Params, cache: Cache, dh: Array
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

    # ----- fused sequence methods: same numbers as the step loop, faster ---------------------------
    def forward_sequence(
        self, params: Params, xs: Array, h0: Array
    ) -> tuple[Array, Array, Cache]:
        """All T steps: the input projection of every step in one matrix product, then the loop.

        ``xs`` (T, B, n_in), ``h0`` (B, H) -> ``hs`` (T, B, H), the final state h_T (B, H) and the
        cache.
        """
        T, B, n_in = xs.shape
        H = self.n_hidden
        # W_xh x_t + b_h for every t at once: (T, B, H)
        xs_flat = xs.reshape(T * B, n_in)
        a_in = (xs_flat @ params["W_xh"].T).reshape(T, B, H)
        a_in = a_in.astype(np.result_type(a_in, params["b_h"]), copy=False)
        a_in += params["b_h"]                      # in place: no second big array
        hs = np.empty((T, B, H), dtype=np.result_type(a_in, h0))
        # a contiguous, 64-byte aligned copy of W_hh^T makes each step's small matmul fast
        W_hh_T = aligned_copy(params["W_hh"].T, hs.dtype)
        h = h0
        for t in range(T):
            h = hs[t] = self._phi(a_in[t] + h @ W_hh_T)   # h_t = phi(a_t)
        # the caller may edit the hs it gets; the cache keeps its own
        return hs.copy(), h, (xs, h0, hs)

    def backward_sequence(
        self, params: Params, cache: Cache, dhs: Array, dh_final: Array
    ) -> tuple[Params, Array, Array]:
        """All T steps backward: only the adjoint recursion loops; sums over
        time are matmuls.

        ``dhs`` (T, B, H), ``dh_final`` (B, H) -> ``grads``,
        ``dxs`` (T, B, n_in), ``dh0`` (B, H).
        """
        xs, h0, hs = cache
        T, B, n_in = xs.shape
        H = self.n_hidden
        das = np.empty(hs.shape, dtype=np.result_type(hs, dhs, dh_final))
        W_hh = aligned_copy(params["W_hh"], das.dtype)  # for fast small matmuls
        dh_next = dh_final           # W_hh^T abar_{t+1}: zero past the end
        for t in reversed(range(T)):
            # abar_t = phi'(a_t) * (dl_t/dh_t + W_hh^T abar_{t+1})
            da = np.add(dhs[t], dh_next, out=das[t])
            da *= self._phi_prime(hs[t])
            dh_next = da @ W_hh      # W_hh^T abar_t, for step t-1
        # stack every (step, sequence) pair as a row: the sums over t and B
        # become single matrix products
        da_flat = das.reshape(T * B, H)
        # sum_t abar_t h_{t-1}^T: h_0 for t = 1, the stored hs for t > 1
        h_rest = hs[:-1].reshape(-1, H)
        W_hh_grad = das[0].T @ h0 + das[1:].reshape(-1, H).T @ h_rest
        grads = {
            "W_xh": da_flat.T @ xs.reshape(T * B, n_in),  # sum_t abar_t x_t^T
            "W_hh": W_hh_grad,
            "b_h": da_flat.sum(axis=0),                   # sum_t abar_t
        }
        dxs = (da_flat @ params["W_xh"]).reshape(T, B, n_in)  # W_xh^T abar_t
        return grads, dxs, dh_next

    def __repr__(self) -> str:
        return f"Elman(n_in={self.n_in}, n_hidden={self.n_hidden}, nonlinearity={self.nonlinearity!r})"
