"""The GRU's fused path (both variants), in the gate-major layout of ``._gate_major``.

Same numbers as ``companion.cells.GRU``'s step loop (chapter "Gated recurrent units").
"""
from __future__ import annotations

import numpy as np

from ..cells import GRU
from ..types import Array, Params
from ._alignment import aligned_copy
from ._gate_major import split_blocks, stacked_blocks, step_rows, transposed_blocks

_GATE_BLOCKS = (("W_xr", "W_hr", "b_r"), ("W_xz", "W_hz", "b_z"))
"""The gate blocks: the reset and the update gate."""

GRUSequenceCache = tuple[Array, Array, Array, Array, "Array | None"]
"""``(rows, gates, slopes, to_n, reset_h)``: the step rows (T + 1, B, n_in + H + 1), r_t and z_t
(T, 2, B, H), the backward factors (T, 2, B, H) and (T, B, H), and r_t * h_{t-1} (T, B, H) for the Cho
variant (``None`` for the torch variant)."""

# Gate-major layout (see ._gate_major): one batched product of the row [x_t | h_{t-1} | 1] gives the
# pre-activations of r and z; the candidate's recurrent product, W_hn h_{t-1} + b_hn ("torch") or
# W_hn (r * h_{t-1}) ("cho"), is a second product, and its input part W_xn x_t + b_xn (b_n) is one
# product for all steps before the loop. sigmoid(a) = (1 + tanh(a / 2)) / 2: halving the r and z
# blocks (exact in binary floating point) gives a / 2 straight from the product, so one tanh and two
# in-place operations replace the sigmoid of both gates.


def forward_sequence(cell: GRU, params: Params, xs: Array, h0: Array) -> tuple[Array, Array, GRUSequenceCache]:
    """All T steps: ``(hs, h_T, cache)``; ``xs`` (T, B, n_in), ``h0`` (B, H) -> ``hs`` (T, B, H)."""
    T, B, n_in = xs.shape
    H = cell.n_hidden
    p = params
    torch_variant = cell.variant == "torch"
    dtype = np.result_type(xs, h0, *p.values())
    U = stacked_blocks(p, _GATE_BLOCKS, n_in, H, dtype)               # (2, n_in + H + 1, H)
    U *= 0.5                                                          # halve r and z
    rows = step_rows(xs, h0, dtype)                                   # rows[t] = [x_t | h_{t-1} | 1]
    a_xn = (xs.reshape(T * B, n_in) @ p["W_xn"].T).astype(dtype, copy=False).reshape(T, B, H)
    a_xn += p["b_xn"] if torch_variant else p["b_n"]                  # W_xn x_t + b_xn (or b_n)
    if torch_variant:                                                 # [h | 1] @ [W_hn^T; b_hn^T]
        V = aligned_copy(np.concatenate([p["W_hn"].T, p["b_hn"][None]]), dtype)
    else:                                                             # (r * h) @ W_hn^T
        V = aligned_copy(p["W_hn"].T, dtype)
    # What backward needs, computed while the step's values are in the cache: each pre-activation
    # adjoint is hbar_t, or the candidate's abar_n, times a factor known now.
    gates = np.empty((T, 2, B, H), dtype=dtype)                       # r_t, z_t
    slopes = np.empty((T, 2, B, H), dtype=dtype)                      # d abar_r / d(n's input), d abar_z / d hbar
    to_n = np.empty((T, B, H), dtype=dtype)                           # d abar_n / d hbar
    reset_h = None if torch_variant else np.empty((T, B, H), dtype=dtype)   # r_t * h_{t-1}, W_hn's input
    hn = np.empty((B, H), dtype=dtype)                                # W_hn h_{t-1} + b_hn ("torch")
    for t in range(T):
        h_prev = rows[t, :, n_in:-1]
        rz = gates[t]
        np.matmul(rows[t], U, out=rz)                                 # a_r / 2, a_z / 2
        np.tanh(rz, out=rz)
        rz *= 0.5                                                     # sigmoid = (1 + tanh(a/2)) / 2
        rz += 0.5
        r, z = rz
        if torch_variant:
            np.matmul(rows[t, :, n_in:], V, out=hn)
            n = r * hn                                                # reset after the matmul
        else:
            rh = np.multiply(r, h_prev, out=reset_h[t])               # reset before the matmul
            n = rh @ V
        n += a_xn[t]
        np.tanh(n, out=n)                                             # n_t
        s_r, s_z = s = slopes[t]
        np.subtract(1.0, rz, out=s)                                   # 1 - r, 1 - z
        dn = to_n[t]
        np.multiply(n, n, out=dn)
        np.subtract(1.0, dn, out=dn)
        dn *= s_z                                                     # abar_n = hbar (1 - z)(1 - n^2)
        s *= rz                                                       # r (1 - r), z (1 - z)
        s_r *= hn if torch_variant else h_prev                        # abar_r = abar_n hn r (1 - r), or
        h_minus_n = h_prev - n                                        #   (W_hn^T abar_n) h r (1 - r)
        s_z *= h_minus_n                                              # abar_z = hbar (h_{t-1} - n) z (1 - z)
        h_minus_n *= z
        np.add(n, h_minus_n, out=rows[t + 1, :, n_in:-1])             # h_t = n + z (h_{t-1} - n)
    hs = rows[1:, :, n_in:-1]
    return hs.copy(), hs[-1].copy(), (rows, gates, slopes, to_n, reset_h)


def backward_sequence(
    cell: GRU, params: Params, cache: GRUSequenceCache, dhs: Array, dh_final: Array
) -> tuple[Params, Array, Array]:
    """All T steps backward; the sums over time are one product per parameter group.

    ``dhs`` (T, B, H), ``dh_final`` (B, H) -> ``grads``, ``dxs`` (T, B, n_in), ``dh0`` (B, H).
    """
    rows, gates, slopes, to_n, reset_h = cache
    T, B, n_in, H = dhs.shape[0], dhs.shape[1], cell.n_in, cell.n_hidden
    p = params
    torch_variant = cell.variant == "torch"
    dtype = np.result_type(rows, dhs, dh_final)
    U_T = transposed_blocks(p, _GATE_BLOCKS, n_in, H, dtype)          # (2, H, n_in + H)
    W_hn = aligned_copy(p["W_hn"], dtype)
    das = np.empty((T, B, 2, H), dtype=dtype)                         # abar_r, abar_z
    da_ns = np.empty((T, B, H), dtype=dtype)                          # abar_n
    d_hns = np.empty((T, B, H), dtype=dtype) if torch_variant else None   # adjoint of W_hn h + b_hn
    parts = np.empty((2, B, n_in + H), dtype=dtype)                   # per gate: [W_x^T abar | W_h^T abar]
    dxh = np.empty((T, B, n_in + H), dtype=dtype)                     # their sums
    through_n = np.empty((B, H), dtype=dtype)                         # what h_{t-1} gets through n_t
    dh_next = dh_final
    for t in reversed(range(T)):
        r, z = gates[t]
        da = das[t].transpose(1, 0, 2)                                # (2, B, H)
        dh = dhs[t] + dh_next                                         # hbar_t
        da_n = np.multiply(dh, to_n[t], out=da_ns[t])
        np.multiply(dh, slopes[t, 1], out=da[1])                      # abar_z
        if torch_variant:
            np.multiply(da_n, slopes[t, 0], out=da[0])                # abar_r
            d_hn = np.multiply(da_n, r, out=d_hns[t])
            np.matmul(d_hn, W_hn, out=through_n)                      # W_hn^T (r * abar_n)
        else:
            np.matmul(da_n, W_hn, out=through_n)                      # adjoint of r * h_{t-1}
            np.multiply(through_n, slopes[t, 0], out=da[0])           # abar_r
            through_n *= r
        np.matmul(da, U_T, out=parts)
        total = dxh[t]
        np.add(parts[0], parts[1], out=total)
        dh_next = dh * z                                              # the direct path of h_t
        dh_next += total[:, n_in:]
        dh_next += through_n
    # sums over time and batch: abar^T [x_t | h_{t-1} | 1] for r and z in one product; the
    # candidate's parameters from its own adjoints
    d_stacked = (das.reshape(T * B, 2 * H).T @ rows[:T].reshape(T * B, -1)).reshape(2, H, -1)
    grads = split_blocks(d_stacked, _GATE_BLOCKS, n_in)
    da_n_flat = da_ns.reshape(T * B, H)
    grads["W_xn"] = da_n_flat.T @ rows[:T, :, :n_in].reshape(T * B, n_in)
    if torch_variant:                                                 # [dW_hn | db_hn] = sum d_hn^T [h | 1]
        d_hn_rows = d_hns.reshape(T * B, H).T @ rows[:T, :, n_in:].reshape(T * B, H + 1)
        grads.update(W_hn=d_hn_rows[:, :-1].copy(), b_hn=d_hn_rows[:, -1].copy(), b_xn=da_n_flat.sum(axis=0))
    else:
        grads.update(W_hn=da_n_flat.T @ reset_h.reshape(T * B, H), b_n=da_n_flat.sum(axis=0))
    dxs = dxh[:, :, :n_in] + (da_n_flat @ p["W_xn"]).reshape(T, B, n_in)
    return {key: grads[key] for key in p}, dxs, dh_next
