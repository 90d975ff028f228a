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
from typing import NamedTuple

import numpy as np

from ..types import Array, Params
from ..validation import check_positive_int
from .activations import sigmoid
from .base import Cell

GATES = ("i", "f", "g", "o")
"""The gates in torch's order."""



class LSTMStepCache(NamedTuple):
    """What one LSTM step keeps for its backward step; every field is ``(B, .)``."""

    x_t: Array      # the input x_t, (B, n_in)
    h_prev: Array   # h_{t-1}, (B, H)
    c_prev: Array   # c_{t-1}, (B, H)
    i: Array        # input gate i_t, (B, H)
    f: Array        # forget gate f_t, (B, H)
    g: Array        # candidate g_t, (B, H)
    o: Array        # output gate o_t, (B, H)
    tanh_c: Array   # tanh(c_t), (B, H)


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

    cache_type = LSTMStepCache

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
    ) -> tuple[tuple[Array, Array], LSTMStepCache]:
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
        return (h, c), LSTMStepCache(x_t, h_prev, c_prev, i, f, g, o, tanh_c)

    def _step_backward(
        self, params: Params, cache: LSTMStepCache, d_state: tuple[Array, Array]
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

    def _step_jvp(
        self, params: Params, cache: LSTMStepCache, d_state_prev: tuple[Array, Array], d_params: Params, dx: Array
    ) -> tuple[Array, Array]:
        # tangents carry leading direction axes (...): states and dx (..., B, .), dW (..., H, .), db (..., H)
        dh_prev, dc_prev = d_state_prev
        x_t, h_prev, c_prev = cache.x_t, cache.h_prev, cache.c_prev
        i, f, g, o, tanh_c = cache.i, cache.f, cache.g, cache.o, cache.tanh_c
        da = {}                                  # pre-activation tangents, (..., B, H) each
        for q in GATES:
            # ȧ_q = W_xq ẋ_t + Ẇ_xq x_t + W_hq ḣ_{t-1} + Ẇ_hq h_{t-1} + ḃ_q
            da[q] = (dx @ params[f"W_x{q}"].T + x_t @ np.swapaxes(d_params[f"W_x{q}"], -1, -2)
                     + dh_prev @ params[f"W_h{q}"].T + h_prev @ np.swapaxes(d_params[f"W_h{q}"], -1, -2)
                     + d_params[f"b_{q}"][..., None, :])
        di = i * (1.0 - i) * da["i"]             # i̇_t = σ'(a_i) ⊙ ȧ_i
        df = f * (1.0 - f) * da["f"]             # ḟ_t = σ'(a_f) ⊙ ȧ_f
        dg = (1.0 - g * g) * da["g"]             # ġ_t = tanh'(a_g) ⊙ ȧ_g
        do = o * (1.0 - o) * da["o"]             # ȯ_t = σ'(a_o) ⊙ ȧ_o
        dc = df * c_prev + f * dc_prev + di * g + i * dg   # ċ_t = ḟ_t c_{t-1} + f_t ċ_{t-1} + i̇_t g_t + i_t ġ_t
        dh = do * tanh_c + o * (1.0 - tanh_c**2) * dc      # ḣ_t = ȯ_t tanh(c_t) + o_t tanh'(c_t) ċ_t
        return dh, dc
