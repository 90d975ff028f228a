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
from .stacking import split, stack

GATES = ("i", "f", "g", "o")
"""The gates in torch's order."""

_FUSED = ("i", "f", "o", "g")
"""The gates in the fused path's order: the three sigmoid gates first."""


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
    # The fused path stacks the gates as [i | f | o | g], so that the three sigmoid gates are one block.
    # sigmoid(a) = (1 + tanh(a / 2)) / 2, and halving the sigmoid gates' weights and biases (exact in
    # binary floating point) gives a / 2 straight from the matrix product: one tanh serves all four gates.

    def forward_sequence(
        self, params: Params, xs: Array, state0: tuple[Array, Array]
    ) -> tuple[Array, tuple[Array, Array], Cache]:
        """All T steps with the gates' weights stacked: ``(hs, (h_T, c_T), cache)``.

        ``xs`` (T, B, n_in), ``state0`` two (B, H) arrays -> ``hs`` (T, B, H).
        """
        h0, c0 = state0
        T, B, n_in = xs.shape
        H = self.n_hidden
        half = np.concatenate([np.full(3 * H, 0.5), np.ones(H)])          # halve i, f, o; keep g
        half = half.astype(np.result_type(*params.values()))
        W_x = stack(params, [f"W_x{q}" for q in _FUSED]) * half[:, None]   # (4H, n_in)
        W_h_T = np.ascontiguousarray((stack(params, [f"W_h{q}" for q in _FUSED]) * half[:, None]).T)
        b = stack(params, [f"b_{q}" for q in _FUSED]) * half               # (4H,)
        a_in = (xs.reshape(T * B, n_in) @ W_x.T).reshape(T, B, 4 * H)
        a_in = a_in.astype(np.result_type(a_in, b), copy=False)
        a_in += b                                                         # in place: no second big array
        dtype = np.result_type(a_in, h0, c0, W_h_T)
        gates = np.empty((T, B, 4 * H), dtype=dtype)                      # [i | f | o | g]
        cs = np.empty((T, B, H), dtype=dtype)
        tanh_cs = np.empty((T, B, H), dtype=dtype)
        hs = np.empty((T, B, H), dtype=dtype)
        h, c = h0, c0
        for t in range(T):
            z = gates[t]                                                  # written in place
            np.matmul(h, W_h_T, out=z)
            z += a_in[t]
            np.tanh(z, out=z)
            z[:, :3 * H] *= 0.5                                           # sigmoid = (1 + tanh) / 2
            z[:, :3 * H] += 0.5
            np.multiply(z[:, H:2 * H], c, out=cs[t])                      # c_t = f * c_{t-1}
            cs[t] += z[:, :H] * z[:, 3 * H:]                              #       + i * g
            c = cs[t]
            np.tanh(c, out=tanh_cs[t])
            h = np.multiply(z[:, 2 * H:3 * H], tanh_cs[t], out=hs[t])     # h_t = o * tanh(c_t)
        return hs.copy(), (h.copy(), c.copy()), (xs, h0, c0, hs, cs, tanh_cs, gates)

    def backward_sequence(
        self, params: Params, cache: Cache, dhs: Array, d_final: tuple[Array, Array]
    ) -> tuple[Params, Array, tuple[Array, Array]]:
        """All T steps backward; the sums over time are single matrix products.

        ``dhs`` (T, B, H), ``d_final`` two (B, H) arrays -> ``grads``, ``dxs`` (T, B, n_in),
        ``(dh0, dc0)``.
        """
        xs, h0, c0, hs, cs, tanh_cs, gates = cache
        T, B, n_in = xs.shape
        H = self.n_hidden
        W_h = stack(params, [f"W_h{q}" for q in _FUSED])                 # (4H, H)
        i, f, o, g = (gates[..., k * H:(k + 1) * H] for k in range(4))
        # Everything that does not depend on the adjoints, for all t at once and in place (large
        # temporaries cost more than the arithmetic): each gate's pre-activation adjoint is cbar_t or
        # hbar_t times a factor known from the forward pass.
        factor = np.empty_like(gates)
        f_i, f_f, f_o, f_g = (factor[..., k * H:(k + 1) * H] for k in range(4))
        np.subtract(1.0, i, out=f_i)
        f_i *= i
        f_i *= g                                                          # d a_i / d cbar = g i (1 - i)
        np.subtract(1.0, f, out=f_f)
        f_f *= f
        f_f[0] *= c0
        f_f[1:] *= cs[:-1]                                                # d a_f / d cbar = c_{t-1} f (1 - f)
        np.subtract(1.0, o, out=f_o)
        f_o *= o
        f_o *= tanh_cs                                                    # d a_o / d hbar = tanh(c) o (1 - o)
        np.multiply(g, g, out=f_g)
        np.subtract(1.0, f_g, out=f_g)
        f_g *= i                                                          # d a_g / d cbar = i (1 - g^2)
        dc_from_h = tanh_cs * tanh_cs
        np.subtract(1.0, dc_from_h, out=dc_from_h)
        dc_from_h *= o                                                    # d cbar / d hbar = o (1 - tanh^2 c)
        dh_next, dc_next = d_final
        das = np.empty(gates.shape, dtype=np.result_type(gates, dhs, dh_next))
        blocks = das.reshape(T, B, 4, H)
        factor_blocks = factor.reshape(T, B, 4, H)
        for t in reversed(range(T)):
            dh = dhs[t] + dh_next                                         # hbar_t
            dc = dc_next + dh * dc_from_h[t]                              # cbar_t
            np.multiply(dc[:, None, :], factor_blocks[t], out=blocks[t])  # i, f, (o), g blocks
            np.multiply(dh, factor[t, :, 2 * H:3 * H], out=das[t, :, 2 * H:3 * H])   # o block
            dc_next = dc * f[t]                                           # the carousel
            dh_next = das[t] @ W_h
        da_flat = das.reshape(T * B, 4 * H)
        # sum_t abar_t h_{t-1}^T: step 1 reads h_0, the others read hs[:-1] (no concatenated copy)
        dW_h = das[0].T @ h0 + das[1:].reshape(-1, 4 * H).T @ hs[:-1].reshape(-1, H)
        grads = {
            **split(da_flat.T @ xs.reshape(T * B, n_in), [f"W_x{q}" for q in _FUSED]),
            **split(dW_h, [f"W_h{q}" for q in _FUSED]),
            **split(da_flat.sum(axis=0), [f"b_{q}" for q in _FUSED]),
        }
        dxs = (da_flat @ stack(params, [f"W_x{q}" for q in _FUSED])).reshape(T, B, n_in)
        return {key: grads[key] for key in params}, dxs, (dh_next, dc_next)
