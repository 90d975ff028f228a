"""The LSTM's fused path, in the gate-major layout of ``._gate_major``.

Same numbers as ``companion.cells.LSTM``'s step loop (chapter "Long short-term memory", the fused path).
"""
from __future__ import annotations

import numpy as np

from ..cells import LSTM
from ..types import Array, Params
from ._gate_major import split_blocks, stacked_blocks, step_rows, transposed_blocks

_BLOCKS = tuple((f"W_x{q}", f"W_h{q}", f"b_{q}") for q in ("i", "f", "o", "g"))
"""The gate blocks, the three sigmoid gates first."""

LSTMSequenceCache = tuple[Array, Array, Array, Array]
"""``(rows, factors, dc_from_h, forget)``: the step rows (T + 1, B, n_in + H + 1) and the backward factors
(T, 4, B, H), (T, B, H), (T, B, H) computed during the forward loop."""

# Gate-major layout (see ._gate_major): one batched product of the row [x_t | h_{t-1} | 1] with the
# blocks [W_xq^T; W_hq^T; b_q^T] gives all four pre-activations, in the order i, f, o, g (the three
# sigmoid gates first). sigmoid(a) = (1 + tanh(a / 2)) / 2, and halving the sigmoid gates' blocks
# (exact in binary floating point) gives a / 2 straight from the product: one tanh serves all four.


def forward_sequence(
    cell: LSTM, params: Params, xs: Array, state0: tuple[Array, Array]
) -> tuple[Array, tuple[Array, Array], LSTMSequenceCache]:
    """All T steps: ``(hs, (h_T, c_T), cache)``.

    ``xs`` (T, B, n_in), ``state0`` two (B, H) arrays -> ``hs`` (T, B, H).
    """
    h0, c0 = state0
    T, B, n_in = xs.shape
    H = cell.n_hidden
    dtype = np.result_type(xs, h0, c0, *params.values())
    U = stacked_blocks(params, _BLOCKS, n_in, H, dtype)               # (4, n_in + H + 1, H)
    U[:3] *= 0.5                                                      # halve i, f, o
    rows = step_rows(xs, h0, dtype)                                   # rows[t] = [x_t | h_{t-1} | 1]
    # What backward needs, computed while the step's values are in the cache: each pre-activation
    # adjoint is cbar_t (i, f, g) or hbar_t (o) times a factor known now.
    factors = np.empty((T, 4, B, H), dtype=dtype)                     # d abar_q / d cbar_t or d hbar_t
    dc_from_h = np.empty((T, B, H), dtype=dtype)                      # d cbar_t / d hbar_t
    forget = np.empty((T, B, H), dtype=dtype)                         # f_t, the carousel's factor
    gates = np.empty((4, B, H), dtype=dtype)                          # this step's i, f, o, g
    sigmoids, (i, f, o, g) = gates[:3], gates                         # views, rewritten every step
    c = c0
    for t in range(T):
        np.matmul(rows[t], U, out=gates)                              # a_i/2, a_f/2, a_o/2, a_g
        np.tanh(gates, out=gates)
        sigmoids *= 0.5                                               # sigmoid = (1 + tanh(a/2)) / 2
        sigmoids += 0.5
        c_prev, c = c, f * c                                          # c_t = f * c_{t-1}
        c += i * g                                                    #       + i * g
        tanh_c = np.tanh(c)
        np.multiply(o, tanh_c, out=rows[t + 1, :, n_in:-1])           # h_t, where step t+1 reads it
        F = factors[t]                                                # sigmoid' = s (1 - s),
        np.subtract(1.0, gates, out=F)                                # tanh' = 1 - g^2 = (1 - g)(1 + g)
        F[:3] *= sigmoids
        F[3] *= 1.0 + g
        F_i, F_f, F_o, F_g = F
        F_i *= g                                                      # abar_i = cbar g i (1 - i)
        F_f *= c_prev                                                 # abar_f = cbar c_{t-1} f (1 - f)
        F_o *= tanh_c                                                 # abar_o = hbar tanh(c) o (1 - o)
        F_g *= i                                                      # abar_g = cbar i (1 - g^2)
        d = dc_from_h[t]
        np.multiply(tanh_c, tanh_c, out=d)
        np.subtract(1.0, d, out=d)
        d *= o                                                        # o (1 - tanh^2 c)
        forget[t] = f
    hs = rows[1:, :, n_in:-1]
    return hs.copy(), (hs[-1].copy(), c), (rows, factors, dc_from_h, forget)


def backward_sequence(
    cell: LSTM, params: Params, cache: LSTMSequenceCache, dhs: Array, d_final: tuple[Array, Array]
) -> tuple[Params, Array, tuple[Array, Array]]:
    """All T steps backward; the sums over time are one matrix product.

    ``dhs`` (T, B, H), ``d_final`` two (B, H) arrays -> ``grads``, ``dxs`` (T, B, n_in),
    ``(dh0, dc0)``.
    """
    rows, factors, dc_from_h, forget = cache
    T, B, n_in, H = dhs.shape[0], dhs.shape[1], cell.n_in, cell.n_hidden
    dh_next, dc_next = d_final
    dtype = np.result_type(rows, dhs, dh_next, dc_next)
    U_T = transposed_blocks(params, _BLOCKS, n_in, H, dtype)          # (4, H, n_in + H)
    das = np.empty((T, B, 4, H), dtype=dtype)                         # abar_t of every gate
    parts = np.empty((4, B, n_in + H), dtype=dtype)                   # [W_xq^T abar_q | W_hq^T abar_q]
    part_i, part_f, part_o, part_g = parts
    dxh = np.empty((T, B, n_in + H), dtype=dtype)                     # their sums over q: [xbar_t | ...]
    for t in reversed(range(T)):
        dh = dhs[t] + dh_next                                         # hbar_t
        dc = dh * dc_from_h[t]                                        # cbar_t
        dc += dc_next
        da = das[t].transpose(1, 0, 2)                                # (4, B, H)
        np.multiply(dc, factors[t], out=da)                           # abar_i, abar_f, (o), abar_g
        np.multiply(dh, factors[t, 2], out=da[2])                     # abar_o
        dc_next = dc * forget[t]                                      # the carousel
        np.matmul(da, U_T, out=parts)
        total = dxh[t]
        np.add(part_i, part_f, out=total)
        total += part_o
        total += part_g
        dh_next = total[:, n_in:]                                     # sum_q W_hq^T abar_q
    # every gate's sum over time and batch of abar^T [x_t | h_{t-1} | 1], in one product
    d_stacked = (das.reshape(T * B, 4 * H).T @ rows[:T].reshape(T * B, -1)).reshape(4, H, -1)
    grads = split_blocks(d_stacked, _BLOCKS, n_in)
    return {key: grads[key] for key in params}, dxh[:, :, :n_in].copy(), (dh_next.copy(), dc_next)
