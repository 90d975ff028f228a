"""The Elman cell's fused path: the input projection of every step and the sums over time as single
matrix products; only the recurrence h_t = phi(a_t) loops over t (chapter "BPTT for the Elman network").

Same numbers as ``companion.cells.Elman``'s step loop, in a different order of summation.
"""
from __future__ import annotations

import numpy as np

from ..cells import Elman
from ..types import Array, Params
from ._alignment import aligned_copy

ElmanSequenceCache = tuple[Array, Array, Array]
"""``(xs, h0, hs)``: the inputs (T, B, n_in), the initial state (B, H) and every h_t (T, B, H)."""


def forward_sequence(cell: Elman, params: Params, xs: Array, h0: Array) -> tuple[Array, Array, ElmanSequenceCache]:
    """All T steps: ``xs`` (T, B, n_in), ``h0`` (B, H) -> ``hs`` (T, B, H), h_T (B, H) and the cache."""
    T, B, n_in = xs.shape
    H = cell.n_hidden
    # W_xh x_t + b_h for every t at once: (T, B, H)
    a_in = (xs.reshape(T * B, n_in) @ params["W_xh"].T).reshape(T, B, H)
    a_in = a_in.astype(np.result_type(a_in, params["b_h"]), copy=False)
    a_in += params["b_h"]                      # in place: no second big array
    hs = np.empty((T, B, H), dtype=np.result_type(a_in, h0))
    # a contiguous, 64-byte aligned copy of W_hh^T makes each step's small matmul fast
    W_hh_T = aligned_copy(params["W_hh"].T, hs.dtype)
    h = h0
    for t in range(T):
        h = hs[t] = cell._phi(a_in[t] + h @ W_hh_T)   # h_t = phi(a_t)
    # the caller may edit the hs it gets; the cache keeps its own
    return hs.copy(), h, (xs, h0, hs)


def backward_sequence(
    cell: Elman, params: Params, cache: ElmanSequenceCache, dhs: Array, dh_final: Array
) -> tuple[Params, Array, Array]:
    """All T steps backward: only the adjoint recursion loops; sums over
    time are matmuls.

    ``dhs`` (T, B, H), ``dh_final`` (B, H) -> ``grads``,
    ``dxs`` (T, B, n_in), ``dh0`` (B, H).
    """
    xs, h0, hs = cache
    T, B, n_in = xs.shape
    H = cell.n_hidden
    das = np.empty(hs.shape, dtype=np.result_type(hs, dhs, dh_final))
    W_hh = aligned_copy(params["W_hh"], das.dtype)  # for fast small matmuls
    dh_next = dh_final           # W_hh^T abar_{t+1}: zero past the end
    for t in reversed(range(T)):
        # abar_t = phi'(a_t) * (dl_t/dh_t + W_hh^T abar_{t+1})
        da = np.add(dhs[t], dh_next, out=das[t])
        da *= cell._phi_prime(hs[t])
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
