"""The gated recurrent unit (Cho et al. 2014), in two variants that differ in where the reset gate acts.

Both variants compute a reset gate r_t, an update gate z_t, a candidate n_t, and interpolate::

    r_t = sigmoid(W_xr x_t + W_hr h_{t-1} + b_r)
    z_t = sigmoid(W_xz x_t + W_hz h_{t-1} + b_z)
    h_t = (1 - z_t) * n_t + z_t * h_{t-1}

``variant="torch"`` (torch.nn.GRU and cuDNN) resets *after* the recurrent matrix product::

    n_t = tanh(W_xn x_t + b_xn + r_t * (W_hn h_{t-1} + b_hn))

``variant="cho"`` (Cho et al. 2014) resets the state *before* it::

    n_t = tanh(W_xn x_t + W_hn (r_t * h_{t-1}) + b_n)

The two are different functions: no copy of weights makes one equal the other (chapter "GRU").
"""
from __future__ import annotations

import math

import numpy as np

from ..types import Array, Params
from ..validation import check_positive_int
from .activations import sigmoid
from .base import Cache, Cell
from .stacking import split, stack

VARIANTS = ("torch", "cho")


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
    def _step(self, params: Params, x_t: Array, h_prev: Array) -> tuple[Array, Cache]:
        p = params
        r = sigmoid(x_t @ p["W_xr"].T + h_prev @ p["W_hr"].T + p["b_r"])   # reset gate: (B, H)
        z = sigmoid(x_t @ p["W_xz"].T + h_prev @ p["W_hz"].T + p["b_z"])   # update gate
        if self.variant == "torch":
            hn = h_prev @ p["W_hn"].T + p["b_hn"]                          # W_hn h_{t-1} + b_hn
            n = np.tanh(x_t @ p["W_xn"].T + p["b_xn"] + r * hn)            # reset after the matmul
            kept = hn
        else:
            rh = r * h_prev                                                # reset before the matmul
            n = np.tanh(x_t @ p["W_xn"].T + rh @ p["W_hn"].T + p["b_n"])
            kept = rh
        h = (1.0 - z) * n + z * h_prev                                     # h_t
        return h, (x_t, h_prev, r, z, n, kept)

    def _step_backward(self, params: Params, cache: Cache, dh: Array) -> tuple[Params, Array, Array]:
        p = params
        x_t, h_prev, r, z, n, kept = cache
        dn = dh * (1.0 - z)                          # h_t = (1 - z) n + z h_{t-1}
        dz = dh * (h_prev - n)
        dh_prev = dh * z                             # the direct path through the interpolation
        da_n = dn * (1.0 - n * n)                    # through tanh
        if self.variant == "torch":
            hn = kept
            dr = da_n * hn                           # r * (W_hn h + b_hn)
            d_hn = da_n * r                          # adjoint of W_hn h_{t-1} + b_hn
            d_params = {"W_xn": da_n.T @ x_t, "b_xn": da_n.sum(axis=0),
                        "W_hn": d_hn.T @ h_prev, "b_hn": d_hn.sum(axis=0)}
            dh_prev = dh_prev + d_hn @ p["W_hn"]
        else:
            rh = kept
            d_rh = da_n @ p["W_hn"]                  # adjoint of r * h_{t-1}
            dr = d_rh * h_prev
            d_params = {"W_xn": da_n.T @ x_t, "W_hn": da_n.T @ rh, "b_n": da_n.sum(axis=0)}
            dh_prev = dh_prev + d_rh * r
        da_r = dr * r * (1.0 - r)                    # through the sigmoids
        da_z = dz * z * (1.0 - z)
        for q, da_q in (("r", da_r), ("z", da_z)):
            d_params.update({f"W_x{q}": da_q.T @ x_t, f"W_h{q}": da_q.T @ h_prev, f"b_{q}": da_q.sum(axis=0)})
            dh_prev = dh_prev + da_q @ p[f"W_h{q}"]
        dx = da_r @ p["W_xr"] + da_z @ p["W_xz"] + da_n @ p["W_xn"]
        return {key: d_params[key] for key in p}, dh_prev, dx

    # ----- fused sequence methods: same numbers as the step loop, faster ---------------------------
    def forward_sequence(self, params: Params, xs: Array, h0: Array) -> tuple[Array, Array, Cache]:
        """All T steps; input projections of all steps in one product. ``hs`` (T, B, H)."""
        T, B, n_in = xs.shape
        H = self.n_hidden
        p = params
        b_x = np.concatenate([p["b_r"], p["b_z"], p["b_xn"] if self.variant == "torch" else p["b_n"]])
        a_in = (xs.reshape(T * B, n_in) @ stack(p, ["W_xr", "W_xz", "W_xn"]).T + b_x).reshape(T, B, 3 * H)
        dtype = np.result_type(a_in, h0)
        gates = np.empty((T, B, 3 * H), dtype=dtype)                       # [r | z | n]
        kept = np.empty((T, B, H), dtype=dtype)                             # W_hn h + b_hn, or r * h
        hs = np.empty((T, B, H), dtype=dtype)
        h = h0
        if self.variant == "torch":
            W_h_T = np.ascontiguousarray(stack(p, ["W_hr", "W_hz", "W_hn"]).T)   # (H, 3H)
            for t in range(T):
                a_h = h @ W_h_T                                             # (B, 3H)
                rz = gates[t, :, :2 * H] = sigmoid(a_in[t, :, :2 * H] + a_h[:, :2 * H])
                hn = kept[t] = a_h[:, 2 * H:] + p["b_hn"]
                n = gates[t, :, 2 * H:] = np.tanh(a_in[t, :, 2 * H:] + rz[:, :H] * hn)
                h = hs[t] = n + rz[:, H:] * (h - n)                         # (1 - z) n + z h
        else:
            W_hrz_T = np.ascontiguousarray(stack(p, ["W_hr", "W_hz"]).T)   # (H, 2H)
            W_hn_T = np.ascontiguousarray(p["W_hn"].T)
            for t in range(T):
                rz = gates[t, :, :2 * H] = sigmoid(a_in[t, :, :2 * H] + h @ W_hrz_T)
                rh = kept[t] = rz[:, :H] * h
                n = gates[t, :, 2 * H:] = np.tanh(a_in[t, :, 2 * H:] + rh @ W_hn_T)
                h = hs[t] = n + rz[:, H:] * (h - n)
        return hs.copy(), h.copy(), (xs, h0, hs, gates, kept)

    def backward_sequence(
        self, params: Params, cache: Cache, dhs: Array, dh_final: Array
    ) -> tuple[Params, Array, Array]:
        """All T steps backward; the sums over time are single matrix products."""
        xs, h0, hs, gates, kept = cache
        T, B, n_in = xs.shape
        H = self.n_hidden
        p = params
        torch_variant = self.variant == "torch"
        h_prev = np.concatenate([h0[None], hs[:-1]])                       # h_{t-1}: (T, B, H)
        r, z, n = (gates[..., k * H:(k + 1) * H] for k in range(3))
        d_sig = gates[..., :2 * H] * (1.0 - gates[..., :2 * H])            # sigmoid' of r and z
        d_tanh = 1.0 - n * n
        dtype = np.result_type(gates, dhs, dh_final)
        da_x = np.empty(gates.shape, dtype=dtype)                          # adjoints of the input sums
        d_kept = np.empty(kept.shape, dtype=dtype)                         # of W_hn h + b_hn, or of r h
        if torch_variant:
            W_h = stack(p, ["W_hr", "W_hz", "W_hn"])                      # (3H, H)
        else:
            W_hrz = stack(p, ["W_hr", "W_hz"])                            # (2H, H)
        dh_next = dh_final
        for t in reversed(range(T)):
            dh = dhs[t] + dh_next
            da = da_x[t]
            da_n = da[:, 2 * H:] = dh * (1.0 - z[t]) * d_tanh[t]
            if torch_variant:
                d_kept[t] = da_n * r[t]
                da[:, :H] = da_n * kept[t]                                 # d r
            else:
                d_rh = da_n @ p["W_hn"]
                d_kept[t] = da_n                                           # W_hn's gradient uses r h
                da[:, :H] = d_rh * h_prev[t]                               # d r
            da[:, H:2 * H] = dh * (h_prev[t] - n[t])                       # d z
            da[:, :2 * H] *= d_sig[t]
            if torch_variant:
                a_h = np.concatenate([da[:, :2 * H], d_kept[t]], axis=1)   # adjoint of h @ W_h^T
                dh_next = dh * z[t] + a_h @ W_h
            else:
                dh_next = dh * z[t] + d_rh * r[t] + da[:, :2 * H] @ W_hrz
        X = xs.reshape(T * B, n_in)
        Hp = h_prev.reshape(T * B, H)
        da_flat = da_x.reshape(T * B, 3 * H)
        rz_flat = da_flat[:, :2 * H]
        grads = {
            **split(da_flat.T @ X, ["W_xr", "W_xz", "W_xn"]),
            **split(rz_flat.T @ Hp, ["W_hr", "W_hz"]),
            "b_r": rz_flat[:, :H].sum(axis=0),
            "b_z": rz_flat[:, H:].sum(axis=0),
        }
        kept_flat = d_kept.reshape(T * B, H)
        if torch_variant:
            grads.update({"W_hn": kept_flat.T @ Hp, "b_hn": kept_flat.sum(axis=0),
                          "b_xn": da_flat[:, 2 * H:].sum(axis=0)})
        else:
            grads.update({"W_hn": kept_flat.T @ kept.reshape(T * B, H), "b_n": da_flat[:, 2 * H:].sum(axis=0)})
        dxs = (da_flat @ stack(p, ["W_xr", "W_xz", "W_xn"])).reshape(T, B, n_in)
        return {key: grads[key] for key in p}, dxs, dh_next

    def __repr__(self) -> str:
        return f"GRU(n_in={self.n_in}, n_hidden={self.n_hidden}, variant={self.variant!r})"
