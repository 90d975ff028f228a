"""The long short-term memory cell (Hochreiter & Schmidhuber 1997; forget gate: Gers et al. 2000).

Forward, with gates in torch's order i, f, g, o (chapter "LSTM")::

    i_t = sigmoid(W_xi x_t + W_hi h_{t-1} + b_i)      input gate
    f_t = sigmoid(W_xf x_t + W_hf h_{t-1} + b_f)      forget gate
    g_t = tanh(W_xg x_t + W_hg h_{t-1} + b_g)         candidate cell value
    o_t = sigmoid(W_xo x_t + W_ho h_{t-1} + b_o)      output gate
    c_t = f_t * c_{t-1} + i_t * g_t                   cell state
    h_t = o_t * tanh(c_t)                             hidden state

The state is the pair ``(h, c)``; ``h`` is what the sequence exposes. Backward, the cell state's
adjoint flows from step to step through ``dc_{t-1} = f_t * dc_t`` only, with no weight matrix and no
squashing derivative in the way: the constant error carousel.
"""
from __future__ import annotations

import math

import numpy as np

from ..types import Array, Params
from ..validation import check_positive_int
from .activations import sigmoid
from .base import Cache, Cell
from .gate_major import split_blocks, stacked_blocks, step_rows, transposed_blocks

GATES = ("i", "f", "g", "o")
"""The gates in torch's order."""

_BLOCKS = tuple((f"W_x{q}", f"W_h{q}", f"b_{q}") for q in ("i", "f", "o", "g"))
"""The fused path's gate blocks, the three sigmoid gates first."""


class LSTM(Cell):
    """LSTM cell with per-gate parameters keyed by the book's symbols.

    Parameters
    ----------
    n_in, n_hidden : int
        Input width and hidden width H.

    Parameters dict, for each gate ``q`` in ``i, f, g, o``: ``W_xq`` ``(H, n_in)``, ``W_hq`` ``(H, H)``,
    ``b_q`` ``(H,)``. State: ``(h, c)``, each ``(B, H)``.
    """

    def __init__(self, n_in: int, n_hidden: int):
        self.n_in = check_positive_int(n_in, "n_in")
        self.n_hidden = check_positive_int(n_hidden, "n_hidden")
        self.state_widths = (self.n_hidden, self.n_hidden)

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        H = self.n_hidden
        shapes = {}
        for q in GATES:
            shapes.update({f"W_x{q}": (H, self.n_in), f"W_h{q}": (H, H), f"b_{q}": (H,)})
        return shapes

    def init_params(self, rng: np.random.Generator | int) -> Params:
        """Uniform in ``[-1/sqrt(H), 1/sqrt(H)]``, the scale ``torch.nn.LSTM`` uses."""
        return self._init_uniform(rng, 1.0 / math.sqrt(self.n_hidden))

    def _step(
        self, params: Params, x_t: Array, state: tuple[Array, Array]
    ) -> tuple[tuple[Array, Array], Cache]:
        h_prev, c_prev = state
        p = params
        # input gate, forget gate, candidate, output gate: (B, H) each
        i = sigmoid(x_t @ p["W_xi"].T + h_prev @ p["W_hi"].T + p["b_i"])
        f = sigmoid(x_t @ p["W_xf"].T + h_prev @ p["W_hf"].T + p["b_f"])
        g = np.tanh(x_t @ p["W_xg"].T + h_prev @ p["W_hg"].T + p["b_g"])
        o = sigmoid(x_t @ p["W_xo"].T + h_prev @ p["W_ho"].T + p["b_o"])
        c = f * c_prev + i * g                   # c_t
        tanh_c = np.tanh(c)
        h = o * tanh_c                           # h_t
        return (h, c), (x_t, h_prev, c_prev, i, f, g, o, tanh_c)

    def _step_backward(
        self, params: Params, cache: Cache, d_state: tuple[Array, Array]
    ) -> tuple[Params, tuple[Array, Array], Array]:
        # hbar_t, and the part of cbar_t from step t+1: f_{t+1} * cbar_{t+1}
        dh, dc = d_state
        x_t, h_prev, c_prev, i, f, g, o, tanh_c = cache
        do = dh * tanh_c                         # h_t = o_t * tanh(c_t)
        # cbar_t: from step t+1, plus through h_t and tanh
        dc = dc + dh * o * (1.0 - tanh_c**2)
        dc_prev = dc * f                         # the carousel
        da = {                                   # pre-activation adjoints
            "i": dc * g * i * (1.0 - i),         # via i_t * g_t; sigmoid'
            "f": dc * c_prev * f * (1.0 - f),    # via f_t * c_{t-1}
            "g": dc * i * (1.0 - g * g),         # via i_t * g_t; tanh'
            "o": do * o * (1.0 - o),             # sigmoid'
        }
        d_params = {}
        dh_prev = np.zeros_like(h_prev, dtype=np.result_type(h_prev, dh))
        dx = np.zeros_like(x_t, dtype=np.result_type(x_t, dh))
        for q, da_q in da.items():
            d_params[f"W_x{q}"] = da_q.T @ x_t
            d_params[f"W_h{q}"] = da_q.T @ h_prev
            d_params[f"b_{q}"] = da_q.sum(axis=0)
            dh_prev += da_q @ params[f"W_h{q}"]  # + W_hq^T abar_q
            dx += da_q @ params[f"W_x{q}"]       # + W_xq^T abar_q
        return d_params, (dh_prev, dc_prev), dx

    # ----- fused sequence methods: same numbers as the step loop, faster ---------------------------
    # Gate-major layout (see .gate_major): one batched product of the row [x_t | h_{t-1} | 1] with the
    # blocks [W_xq^T; W_hq^T; b_q^T] gives all four pre-activations, in the order i, f, o, g (the three
    # sigmoid gates first). sigmoid(a) = (1 + tanh(a / 2)) / 2, and halving the sigmoid gates' blocks
    # (exact in binary floating point) gives a / 2 straight from the product: one tanh serves all four.

    def forward_sequence(
        self, params: Params, xs: Array, state0: tuple[Array, Array]
    ) -> tuple[Array, tuple[Array, Array], Cache]:
        """All T steps: ``(hs, (h_T, c_T), cache)``.

        ``xs`` (T, B, n_in), ``state0`` two (B, H) arrays -> ``hs`` (T, B, H).
        """
        h0, c0 = state0
        T, B, n_in = xs.shape
        H = self.n_hidden
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
        self, params: Params, cache: Cache, dhs: Array, d_final: tuple[Array, Array]
    ) -> tuple[Params, Array, tuple[Array, Array]]:
        """All T steps backward; the sums over time are one matrix product.

        ``dhs`` (T, B, H), ``d_final`` two (B, H) arrays -> ``grads``, ``dxs`` (T, B, n_in),
        ``(dh0, dc0)``.
        """
        rows, factors, dc_from_h, forget = cache
        T, B, n_in, H = dhs.shape[0], dhs.shape[1], self.n_in, self.n_hidden
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
