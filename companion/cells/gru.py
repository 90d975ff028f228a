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
    # sigmoid(a) = (1 + tanh(a / 2)) / 2: halving the r and z rows of the weights and biases (exact in
    # binary floating point) gives a / 2 straight from the matrix products, so one tanh and two in-place
    # operations replace the sigmoid of both gates.

    def forward_sequence(self, params: Params, xs: Array, h0: Array) -> tuple[Array, Array, Cache]:
        """All T steps; input projections of all steps in one product. ``hs`` (T, B, H)."""
        T, B, n_in = xs.shape
        H = self.n_hidden
        p = params
        dtype = np.result_type(xs, h0, *p.values())
        half = np.concatenate([np.full(2 * H, 0.5), np.ones(H)]).astype(dtype)   # r, z halved; n not
        b_x = np.concatenate([p["b_r"], p["b_z"], p["b_xn"] if self.variant == "torch" else p["b_n"]])
        W_x = stack(p, ["W_xr", "W_xz", "W_xn"]) * half[:, None]
        a_in = (xs.reshape(T * B, n_in) @ W_x.T).reshape(T, B, 3 * H)
        b_in = b_x * half
        a_in = a_in.astype(np.result_type(a_in, b_in), copy=False)
        a_in += b_in                                                        # in place: no second big array
        gates = np.empty((T, B, 3 * H), dtype=dtype)                       # [r | z | n]
        kept = np.empty((T, B, H), dtype=dtype)                             # W_hn h + b_hn, or r * h
        hs = np.empty((T, B, H), dtype=dtype)
        h = h0
        if self.variant == "torch":
            W_h_T = np.ascontiguousarray((stack(p, ["W_hr", "W_hz", "W_hn"]) * half[:, None]).T)  # (H, 3H)
            for t in range(T):
                a_h = h @ W_h_T                                             # (B, 3H)
                rz = gates[t, :, :2 * H]
                np.tanh(a_in[t, :, :2 * H] + a_h[:, :2 * H], out=rz)
                rz *= 0.5                                                   # sigmoid = (1 + tanh) / 2
                rz += 0.5
                hn = kept[t] = a_h[:, 2 * H:] + p["b_hn"]
                n = gates[t, :, 2 * H:] = np.tanh(a_in[t, :, 2 * H:] + rz[:, :H] * hn)
                h = hs[t] = n + rz[:, H:] * (h - n)                         # (1 - z) n + z h
        else:
            W_hrz_T = np.ascontiguousarray((stack(p, ["W_hr", "W_hz"]) * 0.5).T)   # (H, 2H)
            W_hn_T = np.ascontiguousarray(p["W_hn"].T)
            for t in range(T):
                rz = gates[t, :, :2 * H]
                np.tanh(a_in[t, :, :2 * H] + h @ W_hrz_T, out=rz)
                rz *= 0.5
                rz += 0.5
                rh = kept[t] = rz[:, :H] * h
                n = gates[t, :, 2 * H:] = np.tanh(a_in[t, :, 2 * H:] + rh @ W_hn_T)
                h = hs[t] = n + rz[:, H:] * (h - n)
        return hs.copy(), h.copy(), (xs, h0, hs, gates, kept)

    def backward_sequence(
        self, params: Params, cache: Cache, dhs: Array, dh_final: Array
    ) -> tuple[Params, Array, Array]:
        """All T steps backward; the sums over time are single matrix products.

        ``dhs`` (T, B, H), ``dh_final`` (B, H) -> ``grads``, ``dxs`` (T, B, n_in), ``dh0`` (B, H).
        """
        xs, h0, hs, gates, kept = cache
        T, B, n_in = xs.shape
        H = self.n_hidden
        p = params
        torch_variant = self.variant == "torch"
        h_prev = np.concatenate([h0[None], hs[:-1]])                       # h_{t-1}: (T, B, H)
        r, z, n = (gates[..., k * H:(k + 1) * H] for k in range(3))
        # Factors known from the forward pass, for all t at once: each adjoint below is hbar_t (or
        # nbar's pre-activation adjoint) times one of them.
        to_n = (1.0 - z) * (1.0 - n * n)                                   # abar_n = hbar * to_n
        to_z = (h_prev - n) * z * (1.0 - z)                                # abar_z = hbar * to_z
        # abar_r = abar_n * kept * sigmoid'(r) (torch), or (W_hn^T abar_n) * h_{t-1} * sigmoid'(r) (cho)
        to_r = (kept if torch_variant else h_prev) * r * (1.0 - r)
        dtype = np.result_type(gates, dhs, dh_final)
        # adjoints of the pre-activations, [r | z | W_hn-term | n]; the W_hn-term is the adjoint of
        # W_hn h + b_hn (torch) or of W_hn (r h) (cho)
        das = np.empty((T, B, 4 * H), dtype=dtype)
        W_h = stack(p, ["W_hr", "W_hz", "W_hn"]) if torch_variant else stack(p, ["W_hr", "W_hz"])
        dh_next = dh_final
        for t in reversed(range(T)):
            da = das[t]
            dh = dhs[t] + dh_next                                          # hbar_t
            da_n = np.multiply(dh, to_n[t], out=da[:, 3 * H:])
            np.multiply(dh, to_z[t], out=da[:, H:2 * H])
            if torch_variant:
                np.multiply(da_n, r[t], out=da[:, 2 * H:3 * H])           # adjoint of W_hn h + b_hn
                np.multiply(da_n, to_r[t], out=da[:, :H])
                dh_next = dh * z[t] + da[:, :3 * H] @ W_h
            else:
                da[:, 2 * H:3 * H] = da_n                                  # W_hn's adjoint uses r h
                d_rh = da_n @ p["W_hn"]                                    # adjoint of r * h_{t-1}
                np.multiply(d_rh, to_r[t], out=da[:, :H])
                dh_next = dh * z[t] + d_rh * r[t] + da[:, :2 * H] @ W_h
        X = xs.reshape(T * B, n_in)
        da_flat = das.reshape(T * B, 4 * H)
        da_rz, da_hn, da_n = da_flat[:, :2 * H], da_flat[:, 2 * H:3 * H], da_flat[:, 3 * H:]
        hn_input = h_prev if torch_variant else kept                       # what W_hn multiplies
        grads = {
            **split(da_rz.T @ X, ["W_xr", "W_xz"]),
            "W_xn": da_n.T @ X,
            **split(da_rz.T @ h_prev.reshape(T * B, H), ["W_hr", "W_hz"]),
            "W_hn": da_hn.T @ hn_input.reshape(T * B, H),
            **split(da_rz.sum(axis=0), ["b_r", "b_z"]),
        }
        if torch_variant:
            grads.update({"b_xn": da_n.sum(axis=0), "b_hn": da_hn.sum(axis=0)})
        else:
            grads["b_n"] = da_n.sum(axis=0)
        dxs = da_rz @ stack(p, ["W_xr", "W_xz"]) + da_n @ p["W_xn"]
        return {key: grads[key] for key in p}, dxs.reshape(T, B, n_in), dh_next

    def __repr__(self) -> str:
        return f"GRU(n_in={self.n_in}, n_hidden={self.n_hidden}, variant={self.variant!r})"
