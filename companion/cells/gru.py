"""The gated recurrent unit (Cho et al. 2014), in two variants that differ in where the reset gate acts.

Both variants compute a reset gate r_t, an update gate z_t, a candidate n_t, and interpolate::

    r_t = sigmoid(W_xr x_t + W_hr h_{t-1} + b_r)
    z_t = sigmoid(W_xz x_t + W_hz h_{t-1} + b_z)
    h_t = (1 - z_t) * n_t + z_t * h_{t-1}

``variant="torch"`` (torch.nn.GRU and cuDNN) resets *after* the recurrent matrix product::

    n_t = tanh(W_xn x_t + b_xn + r_t * (W_hn h_{t-1} + b_hn))

``variant="cho"`` (Cho et al. 2014) resets the state *before* it::

    n_t = tanh(W_xn x_t + W_hn (r_t * h_{t-1}) + b_n)

The two compute different functions: copying the weights (with b_n = b_xn + b_hn) does not make them
agree, except in special cases such as a diagonal W_hn with b_hn = 0 (chapter "GRU").
"""
from __future__ import annotations

import math
from typing import NamedTuple, Optional

import numpy as np

from ..types import Array, Params
from ..validation import check_positive_int
from .activations import sigmoid
from .base import Cell

VARIANTS = ("torch", "cho")



class GRUStepCache(NamedTuple):
    """What one GRU step keeps for its backward step; every array is ``(B, .)``."""

    x_t: Array              # the input x_t, (B, n_in)
    h_prev: Array           # h_{t-1}, (B, H)
    r: Array                # reset gate r_t, (B, H)
    z: Array                # update gate z_t, (B, H)
    n: Array                # candidate n_t, (B, H)
    m: Optional[Array]      # torch variant: m_t = W_hn h_{t-1} + b_hn, (B, H); None for "cho"
    s: Optional[Array]      # Cho variant: s_t = r_t * h_{t-1}, (B, H); None for "torch"


class GRU(Cell):
    """GRU cell with per-gate parameters keyed by the book's symbols.

    Parameters
    ----------
    n_in, n_hidden : int
        Input width and hidden width H.
    variant : {"torch", "cho"}, keyword-only
        Where the reset gate acts (see the module docstring). Default ``"torch"``.

    Parameters dict: ``W_xr, W_xz, W_xn`` ``(H, n_in)``; ``W_hr, W_hz, W_hn`` ``(H, H)``; ``b_r, b_z``
    ``(H,)``; and ``b_xn, b_hn`` ``(H,)`` for ``"torch"`` or ``b_n`` ``(H,)`` for ``"cho"``. State: ``h``
    ``(B, H)``.
    """

    def __init__(self, n_in: int, n_hidden: int, *, variant: str = "torch"):
        self.n_in = check_positive_int(n_in, "n_in")
        self.n_hidden = check_positive_int(n_hidden, "n_hidden")
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
        self.variant = variant
        self.state_widths = (self.n_hidden,)

    cache_type = GRUStepCache

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        H, n_in = self.n_hidden, self.n_in
        shapes = {"W_xr": (H, n_in), "W_hr": (H, H), "b_r": (H,), "W_xz": (H, n_in), "W_hz": (H, H), "b_z": (H,),
                  "W_xn": (H, n_in), "W_hn": (H, H)}
        if self.variant == "torch":
            shapes.update({"b_xn": (H,), "b_hn": (H,)})
        else:
            shapes["b_n"] = (H,)
        return shapes

    def init_params(self, rng: np.random.Generator | int) -> Params:
        """Uniform in ``[-1/sqrt(H), 1/sqrt(H)]``, the scale ``torch.nn.GRU`` uses."""
        return self._init_uniform(rng, 1.0 / math.sqrt(self.n_hidden))

    # ----- one step ---------------------------------------------------------------------------------
    def _step(self, params: Params, x_t: Array, h_prev: Array) -> tuple[Array, GRUStepCache]:
        p = params
        r = sigmoid(x_t @ p["W_xr"].T + h_prev @ p["W_hr"].T + p["b_r"])   # reset gate: (B, H)
        z = sigmoid(x_t @ p["W_xz"].T + h_prev @ p["W_hz"].T + p["b_z"])   # update gate
        m = s = None
        if self.variant == "torch":
            m = h_prev @ p["W_hn"].T + p["b_hn"]                           # m_t = W_hn h_{t-1} + b_hn
            n = np.tanh(x_t @ p["W_xn"].T + p["b_xn"] + r * m)             # reset after the matmul
        else:
            s = r * h_prev                                                 # s_t: reset before the matmul
            n = np.tanh(x_t @ p["W_xn"].T + s @ p["W_hn"].T + p["b_n"])
        h = (1.0 - z) * n + z * h_prev                                     # h_t
        return h, GRUStepCache(x_t, h_prev, r, z, n, m, s)

    def _step_backward(self, params: Params, cache: GRUStepCache, dh: Array) -> tuple[Params, Array, Array]:
        p = params
        x_t, h_prev, r, z, n, m, s = cache
        dn = dh * (1.0 - z)                          # h_t = (1 - z) n + z h_{t-1}
        dz = dh * (h_prev - n)
        dh_prev = dh * z                             # the direct path through the interpolation
        da_n = dn * (1.0 - n * n)                    # through tanh
        if self.variant == "torch":
            dr = da_n * m                            # r * m_t
            dm = da_n * r                            # mbar_t, the adjoint of W_hn h_{t-1} + b_hn
            d_params = {"W_xn": da_n.T @ x_t, "b_xn": da_n.sum(axis=0),
                        "W_hn": dm.T @ h_prev, "b_hn": dm.sum(axis=0)}
            dh_prev = dh_prev + dm @ p["W_hn"]
        else:
            ds = da_n @ p["W_hn"]                    # sbar_t, the adjoint of r * h_{t-1}
            dr = ds * h_prev
            d_params = {"W_xn": da_n.T @ x_t, "W_hn": da_n.T @ s, "b_n": da_n.sum(axis=0)}
            dh_prev = dh_prev + ds * r
        da_r = dr * r * (1.0 - r)                    # through the sigmoids
        da_z = dz * z * (1.0 - z)
        for q, da_q in (("r", da_r), ("z", da_z)):
            d_params.update({f"W_x{q}": da_q.T @ x_t, f"W_h{q}": da_q.T @ h_prev, f"b_{q}": da_q.sum(axis=0)})
            dh_prev = dh_prev + da_q @ p[f"W_h{q}"]
        dx = da_r @ p["W_xr"] + da_z @ p["W_xz"] + da_n @ p["W_xn"]
        return {key: d_params[key] for key in p}, dh_prev, dx

    def _step_jvp(self, params: Params, cache: GRUStepCache, dh_prev: Array, d_params: Params, dx: Array) -> Array:
        # tangents carry leading direction axes (...): dh_prev, dx (..., B, .), dW (..., H, .), db (..., H)
        p, dp = params, d_params
        x_t, h_prev, r, z, n = cache.x_t, cache.h_prev, cache.r, cache.z, cache.n

        def dW(key: str) -> Array:               # Ẇ with its matrix axes swapped, for rows @ Ẇ^T
            return np.swapaxes(dp[key], -1, -2)

        def db(key: str) -> Array:               # ḃ as a row that broadcasts over the batch
            return dp[key][..., None, :]

        # ṙ_t = σ'(a_r) ⊙ (W_xr ẋ_t + Ẇ_xr x_t + W_hr ḣ_{t-1} + Ẇ_hr h_{t-1} + ḃ_r), and ż_t alike
        dr = r * (1.0 - r) * (dx @ p["W_xr"].T + x_t @ dW("W_xr") + dh_prev @ p["W_hr"].T + h_prev @ dW("W_hr")
                              + db("b_r"))
        dz = z * (1.0 - z) * (dx @ p["W_xz"].T + x_t @ dW("W_xz") + dh_prev @ p["W_hz"].T + h_prev @ dW("W_hz")
                              + db("b_z"))
        if self.variant == "torch":
            # ṁ_t = W_hn ḣ_{t-1} + Ẇ_hn h_{t-1} + ḃ_hn
            dm = dh_prev @ p["W_hn"].T + h_prev @ dW("W_hn") + db("b_hn")
            # ȧ_n = W_xn ẋ_t + Ẇ_xn x_t + ḃ_xn + ṙ_t ⊙ m_t + r_t ⊙ ṁ_t
            da_n = dx @ p["W_xn"].T + x_t @ dW("W_xn") + db("b_xn") + dr * cache.m + r * dm
        else:
            ds = dr * h_prev + r * dh_prev       # ṡ_t = ṙ_t ⊙ h_{t-1} + r_t ⊙ ḣ_{t-1}
            # ȧ_n = W_xn ẋ_t + Ẇ_xn x_t + W_hn ṡ_t + Ẇ_hn s_t + ḃ_n
            da_n = dx @ p["W_xn"].T + x_t @ dW("W_xn") + ds @ p["W_hn"].T + cache.s @ dW("W_hn") + db("b_n")
        dn = (1.0 - n * n) * da_n                # ṅ_t = tanh'(a_n) ⊙ ȧ_n
        # ḣ_t = (1 - z_t) ⊙ ṅ_t + ż_t ⊙ (h_{t-1} - n_t) + z_t ⊙ ḣ_{t-1}
        return (1.0 - z) * dn + dz * (h_prev - n) + z * dh_prev

    def __repr__(self) -> str:
        return f"GRU(n_in={self.n_in}, n_hidden={self.n_hidden}, variant={self.variant!r})"
