"""The Jordan network (Jordan 1986): the *output* is fed back, not the hidden layer.

Forward::

    a_t = W_xh x_t + W_yh y_{t-1} + b_h,   h_t = tanh(a_t)
    o_t = W_hy h_t + b_y,                  y_t = tanh(o_t)

The state carried from step to step is the output y_t; the hidden layer h_t lives inside one step.
Each step thus has two layers, and the gradient reaches y_{t-1} through both of them. Nothing in
``companion.bptt`` changes for this: that is the point of the cell protocol.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from ..types import Array, Params
from ..validation import check_positive_int
from .base import Cell


class JordanStepCache(NamedTuple):
    """What one Jordan step keeps for its backward step; every field is ``(B, .)``."""

    x_t: Array      # the input x_t, (B, n_in)
    y_prev: Array   # y_{t-1}, the state fed back, (B, n_out)
    h: Array        # h_t = tanh(a_t), the hidden layer, (B, n_hidden)
    y: Array        # y_t = tanh(o_t), the output and next state, (B, n_out)


class Jordan(Cell):
    """Jordan cell with output feedback.

    Parameters
    ----------
    n_in, n_hidden : int
        Input width and width of the hidden layer.
    n_out : int, optional, keyword-only
        Width of the output y_t, which is also the state. Defaults to ``n_hidden``.

    Parameters dict: ``W_xh`` ``(n_hidden, n_in)``, ``W_yh`` ``(n_hidden, n_out)``, ``b_h`` ``(n_hidden,)``,
    ``W_hy`` ``(n_out, n_hidden)``, ``b_y`` ``(n_out,)``. State: ``y`` ``(B, n_out)``.
    """

    def __init__(self, n_in: int, n_hidden: int, *, n_out: int | None = None):
        self.n_in = check_positive_int(n_in, "n_in")
        self.n_hidden = check_positive_int(n_hidden, "n_hidden")
        self.n_out = self.n_hidden if n_out is None else check_positive_int(n_out, "n_out")
        self.state_widths = (self.n_out,)

    cache_type = JordanStepCache

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        H, O = self.n_hidden, self.n_out
        return {"W_xh": (H, self.n_in), "W_yh": (H, O), "b_h": (H,), "W_hy": (O, H), "b_y": (O,)}

    def init_params(self, rng: np.random.Generator | int) -> Params:
        """Uniform in ``[-1/sqrt(n_hidden), 1/sqrt(n_hidden)]``."""
        return self._init_uniform(rng, 1.0 / math.sqrt(self.n_hidden))

    def _step(self, params: Params, x_t: Array, y_prev: Array) -> tuple[Array, JordanStepCache]:
        h = np.tanh(x_t @ params["W_xh"].T + y_prev @ params["W_yh"].T + params["b_h"])  # h_t: (B, H)
        y = np.tanh(h @ params["W_hy"].T + params["b_y"])                                # y_t: (B, O)
        return y, JordanStepCache(x_t, y_prev, h, y)

    def _step_backward(self, params: Params, cache: JordanStepCache, dy: Array) -> tuple[Params, Array, Array]:
        x_t, y_prev, h, y = cache
        do = dy * (1.0 - y * y)                      # through the output tanh: dL/do_t, (B, O)
        dh = do @ params["W_hy"]                     # W_hy^T do_t: dL/dh_t, (B, H)
        da = dh * (1.0 - h * h)                      # through the hidden tanh: dL/da_t, (B, H)
        d_params = {
            "W_xh": da.T @ x_t,                      # (H, n_in)
            "W_yh": da.T @ y_prev,                   # (H, O)
            "b_h": da.sum(axis=0),                   # (H,)
            "W_hy": do.T @ h,                        # (O, H)
            "b_y": do.sum(axis=0),                   # (O,)
        }
        dy_prev = da @ params["W_yh"]                # W_yh^T da_t: dL/dy_{t-1} through this step, (B, O)
        dx = da @ params["W_xh"]                     # W_xh^T da_t: dL/dx_t, (B, n_in)
        return d_params, dy_prev, dx

    def _step_jvp(
        self, params: Params, cache: JordanStepCache, dy_prev: Array, d_params: Params, dx: Array
    ) -> Array:
        # tangents carry leading direction axes (...): dx (..., B, n_in), dW (..., rows, cols), db (..., rows)
        p, dp = params, d_params
        x_t, y_prev, h, y = cache.x_t, cache.y_prev, cache.h, cache.y
        # ȧ_t = W_xh ẋ_t + Ẇ_xh x_t + W_yh ẏ_{t-1} + Ẇ_yh y_{t-1} + ḃ_h: (..., B, H)
        da = (dx @ p["W_xh"].T + x_t @ np.swapaxes(dp["W_xh"], -1, -2)
              + dy_prev @ p["W_yh"].T + y_prev @ np.swapaxes(dp["W_yh"], -1, -2) + dp["b_h"][..., None, :])
        dh = (1.0 - h * h) * da                  # ḣ_t = tanh'(a_t) ⊙ ȧ_t
        # ȯ_t = W_hy ḣ_t + Ẇ_hy h_t + ḃ_y: (..., B, O)
        do = dh @ p["W_hy"].T + h @ np.swapaxes(dp["W_hy"], -1, -2) + dp["b_y"][..., None, :]
        return (1.0 - y * y) * do                # ẏ_t = tanh'(o_t) ⊙ ȯ_t

    def __repr__(self) -> str:
        return f"Jordan(n_in={self.n_in}, n_hidden={self.n_hidden}, n_out={self.n_out})"
