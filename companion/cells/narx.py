"""Networks with tapped delay lines: the NARX network and the time-delay layer (TDNN).

A NARX network (nonlinear autoregressive with exogenous inputs) feeds its own *outputs* back, as the
Jordan network does, but through a delay line: the pre-activation of step t reads the last d_x + 1
inputs and the last d_y outputs (chapter "Networks with delays (NARX)")::

    a_t = sum_{k=0..d_x} W_xh^(k) x_{t-k} + sum_{j=1..d_y} W_yh^(j) y_{t-j} + b_h
    h_t = tanh(a_t),    y_t = W_hy h_t + b_y

The delayed weight matrices are kept side by side as blocks of two matrices, which is the same set of
numbers in one product a step: ``W_xh = [W_xh^(0) | ... | W_xh^(d_x)]`` ``(H, (d_x + 1) n_in)`` acting on
the input window ``X_t = [x_t; x_{t-1}; ...; x_{t-d_x}]``, and ``W_yh = [W_yh^(1) | ... | W_yh^(d_y)]``
``(H, d_y n_out)`` acting on the output window ``Y_{t-1} = [y_{t-1}; ...; y_{t-d_y}]``. (``x_block`` and
``y_block`` take one delay's matrix out of them.)

**The state is the delay lines.** Everything step t + 1 needs from the past is in

    s_t = (y_t, y_{t-1}, ..., y_{t-d_y+1}, x_t, x_{t-1}, ..., x_{t-d_x+1}),

one part of width ``n_out`` per fed-back output and one of width ``n_in`` per stored input, so the cell
fits the protocol unchanged: part 0 is the output y_t, which the sequence exposes as its h_t (so
``bptt.forward`` returns the outputs y_t and ``dhs`` is dL/dy_t), ``output_width`` is ``n_out`` and
``n_hidden`` is the width H of the hidden layer, as for the Jordan cell. A step shifts both lines by one:
the new state takes y_t and x_t at the front and drops the oldest entries. Backward, the shift is
transposed: what arrives at part j of s_t goes on to part j + 1 of s_{t-1}, so the adjoint of y_t
collects, over d_y steps, what every later step that reads it sends back. With d_y = 1 and d_x = 0 the
state is the single array y_t. The older entries of a line are handed on, not copied: consecutive
states share those arrays (no algorithm of the companion writes into a state), and the new x_t is a copy,
so a state never views the inputs ``xs``.

**The time-delay layer fits the protocol too.** A TDNN layer (Waibel et al. 1989) is a window of inputs
without feedback, h_t = tanh(W_xh X_t + b_h). Its state is (h_t, x_t, ..., x_{t-d_x+1}): the input delay
line, with the output h_t in front because the protocol exposes part 0. The next step never reads h_t
(its part of the one-step Jacobian is zero), which the protocol allows; ``TDNN`` below is that cell.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from ..types import Array, Params, State
from ..validation import as_float_array, check_positive_int, check_shape
from .base import Cell


def check_delay(value: object, name: str, *, minimum: int) -> int:
    """``value`` as an ``int`` if it is an integer ``>= minimum``, else ``ValueError`` naming ``name``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an int (a number of delay steps), got {value!r}")
    if value < minimum:
        what = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ValueError(f"{name} must be {what}, got {value!r}")
    return int(value)


def _parts(state: State) -> tuple[Array, ...]:
    return state if isinstance(state, tuple) else (state,)


def _pack(parts: tuple[Array, ...] | list[Array]) -> State:
    parts = tuple(parts)
    return parts if len(parts) > 1 else parts[0]


def _blocks(array: Array, count: int) -> list[Array]:
    """The last axis of ``array`` cut into ``count`` equal blocks (views)."""
    width = array.shape[-1] // count
    return [array[..., k * width:(k + 1) * width] for k in range(count)]


class NARXStepCache(NamedTuple):
    """What one NARX step keeps for its backward step; every field is ``(B, .)``."""

    x_t: Array      # the input x_t, (B, n_in)
    X_t: Array      # the input window [x_t; x_{t-1}; ...; x_{t-d_x}], (B, (d_x + 1) n_in)
    Y_prev: Array   # the output window [y_{t-1}; ...; y_{t-d_y}], (B, d_y n_out)
    h: Array        # h_t = tanh(a_t), the hidden layer, (B, H)


class NARX(Cell):
    """NARX cell: a one-hidden-layer network of the last ``d_x + 1`` inputs and the last ``d_y`` outputs.

    Parameters
    ----------
    n_in, n_hidden : int
        Input width and width H of the hidden layer.
    n_out : int, keyword-only
        Width of the output y_t, which is fed back. Defaults to 1.
    d_x : int, keyword-only
        The largest input delay: step t reads x_t, ..., x_{t-d_x} (0: the current input only).
    d_y : int, keyword-only
        The number of fed-back outputs: step t reads y_{t-1}, ..., y_{t-d_y}; at least 1 (without feedback
        the network is a ``TDNN`` with a readout).

    Parameters dict: ``W_xh`` ``(H, (d_x + 1) n_in)``, ``W_yh`` ``(H, d_y n_out)``, ``b_h`` ``(H,)``,
    ``W_hy`` ``(n_out, H)``, ``b_y`` ``(n_out,)``. State: ``d_y`` arrays ``(B, n_out)`` (y_t first) and then
    ``d_x`` arrays ``(B, n_in)`` (x_t first); a single array when ``d_y = 1`` and ``d_x = 0``.
    """

    def __init__(self, n_in: int, n_hidden: int, *, n_out: int = 1, d_x: int = 1, d_y: int = 2):
        self.n_in = check_positive_int(n_in, "n_in")
        self.n_hidden = check_positive_int(n_hidden, "n_hidden")
        self.n_out = check_positive_int(n_out, "n_out")
        self.d_x = check_delay(d_x, "d_x", minimum=0)
        self.d_y = check_delay(d_y, "d_y", minimum=1)
        self.state_widths = (self.n_out,) * self.d_y + (self.n_in,) * self.d_x

    cache_type = NARXStepCache

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        H, O = self.n_hidden, self.n_out
        return {"W_xh": (H, (self.d_x + 1) * self.n_in), "W_yh": (H, self.d_y * O), "b_h": (H,),
                "W_hy": (O, H), "b_y": (O,)}

    def init_params(self, rng: np.random.Generator | int) -> Params:
        """Uniform in ``[-1/sqrt(n_hidden), 1/sqrt(n_hidden)]``, the scale of the other cells."""
        return self._init_uniform(rng, 1.0 / math.sqrt(self.n_hidden))

    def x_block(self, W: Array, k: int) -> Array:
        """W_xh^(k), the weights of the input delayed by ``k`` (0 to d_x), inside ``W`` = ``W_xh`` (or its
        gradient, or a tangent with leading axes): a view, ``(..., H, n_in)``."""
        return self._block(W, k, self.n_in, self.d_x + 1, 0, "W_xh")

    def y_block(self, W: Array, j: int) -> Array:
        """W_yh^(j), the weights of the output delayed by ``j`` (1 to d_y), inside ``W`` = ``W_yh`` (or its
        gradient, or a tangent with leading axes): a view, ``(..., H, n_out)``."""
        return self._block(W, j, self.n_out, self.d_y, 1, "W_yh")

    def _block(self, W: Array, delay: int, width: int, count: int, first: int, name: str) -> Array:
        W = np.asarray(W)
        if W.ndim < 2 or W.shape[-2:] != (self.n_hidden, count * width):
            raise ValueError(f"W must be {name} of {self!r}, shape (..., {self.n_hidden}, {count * width}), "
                             f"got {W.shape}")
        if isinstance(delay, (bool, np.bool_)) or not isinstance(delay, (int, np.integer)) or not (
                first <= delay < first + count):
            raise ValueError(f"the delay of {name} must be an int from {first} to {first + count - 1}, got {delay!r}")
        return _blocks(W, count)[delay - first]

    def teacher_states(self, xs: Array, ys: Array, state0: State | None = None) -> State:
        """The state each step starts from when the delay lines hold given outputs (teacher forcing).

        Open-loop ("series-parallel") training feeds the plant's measured outputs y_{t-1}, ..., y_{t-d_y}
        into step t instead of the network's own. This builds, for every step at once, the state s_{t-1}
        whose output line holds ``ys`` and whose input line holds ``xs``, the values before step 1 coming
        from ``state0``. One ``step`` from it gives the one-step prediction of every t; fold the time axis
        into the batch to run all of them as one step (the chapter does).

        Parameters
        ----------
        xs : array, shape (T, B, n_in)
            The inputs; ``xs[t - 1]`` is x_t.
        ys : array, shape (T, B, n_out)
            The outputs to feed back; ``ys[t - 1]`` is y_t.
        state0 : State, optional
            s_0, the lines before step 1 (y_0, ..., y_{1-d_y}, x_0, ..., x_{1-d_x}); zeros if omitted.

        Returns
        -------
        State
            Every part stacked over time, ``(T, B, width)``: entry ``t - 1`` is s_{t-1}, the state step t
            reads, so that ``step(params, xs[t - 1], entry t - 1)`` is step t with the teacher's past.
        """
        xs = as_float_array(xs, "xs")
        check_shape(xs, (None, None, self.n_in), "xs", "(T, B, n_in)")
        T, B = xs.shape[:2]
        ys = as_float_array(ys, "ys")
        check_shape(ys, (T, B, self.n_out), "ys", "(T, B, n_out)")
        if state0 is None:
            state0 = self.initial_state(B, dtype=np.result_type(xs, ys))
        parts0 = _parts(self.check_state(state0, B, "state0"))
        # the whole history, oldest first: y_{1-d_y}, ..., y_0, y_1, ..., y_T (and the same for x)
        y_line = np.concatenate([np.stack(parts0[:self.d_y][::-1]), ys])             # (d_y + T, B, n_out)
        x_past = parts0[self.d_y:][::-1]
        x_line = np.concatenate([np.stack(x_past), xs]) if x_past else xs             # (d_x + T, B, n_in)
        # part j of s_{t-1} is y_{t-1-j}: entries t-1-j+d_y-1 of y_line for t = 1..T
        y_parts = [y_line[self.d_y - 1 - j:self.d_y - 1 - j + T] for j in range(self.d_y)]
        x_parts = [x_line[self.d_x - 1 - i:self.d_x - 1 - i + T] for i in range(self.d_x)]
        return _pack([part.copy() for part in y_parts + x_parts])

    def _step(self, params: Params, x_t: Array, state: State) -> tuple[State, NARXStepCache]:
        parts = _parts(state)
        ys_prev, xs_prev = parts[:self.d_y], parts[self.d_y:]
        X_t = np.concatenate((x_t, *xs_prev), axis=-1)                    # [x_t; ...; x_{t-d_x}]
        Y_prev = np.concatenate(ys_prev, axis=-1) if self.d_y > 1 else ys_prev[0]   # [y_{t-1}; ...]
        a = X_t @ params["W_xh"].T + Y_prev @ params["W_yh"].T + params["b_h"]      # a_t: (B, H)
        h = np.tanh(a)                                                    # h_t: (B, H)
        y = h @ params["W_hy"].T + params["b_y"]                          # y_t: (B, n_out)
        # shift both lines: y_t and x_t in front, the oldest entries dropped
        x_new = np.array(x_t, dtype=y.dtype)                              # a copy: no view of xs
        state_t = _pack((y, *ys_prev[:-1]) + ((x_new, *xs_prev[:-1]) if self.d_x else ()))
        return state_t, NARXStepCache(x_t, X_t, Y_prev, h)

    def _step_backward(self, params: Params, cache: NARXStepCache, d_state: State) -> tuple[Params, State, Array]:
        x_t, X_t, Y_prev, h = cache
        d_parts = _parts(d_state)
        dys, dxs = d_parts[:self.d_y], d_parts[self.d_y:]
        dy = dys[0]                                    # ybar_t: every path, the later steps' included
        dh = dy @ params["W_hy"]                       # W_hy^T ybar_t: (B, H)
        da = dh * (1.0 - h * h)                        # abar_t = tanh'(a_t) * hbar_t: (B, H)
        d_params = {
            "W_xh": da.T @ X_t,                        # abar_t X_t^T: every W_xh^(k) at once
            "W_yh": da.T @ Y_prev,                     # abar_t Y_{t-1}^T: every W_yh^(j) at once
            "b_h": da.sum(axis=0),
            "W_hy": dy.T @ h,                          # ybar_t h_t^T
            "b_y": dy.sum(axis=0),
        }
        dX = _blocks(da @ params["W_xh"], self.d_x + 1)      # W_xh^(k)^T abar_t: dL/dx_{t-k} via a_t
        dY = _blocks(da @ params["W_yh"], self.d_y)          # W_yh^(j)^T abar_t: dL/dy_{t-j} via a_t
        # the transposed shift: part j of s_t is part j - 1 of s_{t-1} (j >= 1)
        dys_prev = [dY[j] + dys[j + 1] if j + 1 < self.d_y else dY[j] for j in range(self.d_y)]
        dxs_prev = [dX[i + 1] + dxs[i + 1] if i + 1 < self.d_x else dX[i + 1] for i in range(self.d_x)]
        dx_t = dX[0] + dxs[0] if self.d_x else dX[0]          # x_t: read by a_t, and stored in s_t
        return d_params, _pack(dys_prev + dxs_prev), dx_t

    def _step_jvp(self, params: Params, cache: NARXStepCache, d_state_prev: State, d_params: Params,
                  dx: Array) -> State:
        # tangents carry leading direction axes (...): parts (..., B, width), dW (..., rows, cols)
        p, dp = params, d_params
        parts = _parts(d_state_prev)
        dys_prev, dxs_prev = parts[:self.d_y], parts[self.d_y:]
        dX = np.concatenate((dx, *dxs_prev), axis=-1)                     # tangent of X_t
        dY = np.concatenate(dys_prev, axis=-1) if self.d_y > 1 else dys_prev[0]   # tangent of Y_{t-1}
        # ȧ_t = W_xh Ẋ_t + Ẇ_xh X_t + W_yh Ẏ_{t-1} + Ẇ_yh Y_{t-1} + ḃ_h: (..., B, H)
        da = (dX @ p["W_xh"].T + cache.X_t @ np.swapaxes(dp["W_xh"], -1, -2)
              + dY @ p["W_yh"].T + cache.Y_prev @ np.swapaxes(dp["W_yh"], -1, -2) + dp["b_h"][..., None, :])
        dh = (1.0 - cache.h * cache.h) * da                               # ḣ_t = tanh'(a_t) ⊙ ȧ_t
        dy = dh @ p["W_hy"].T + cache.h @ np.swapaxes(dp["W_hy"], -1, -2) + dp["b_y"][..., None, :]
        return _pack((dy, *dys_prev[:-1]) + ((dx, *dxs_prev[:-1]) if self.d_x else ()))

    def __repr__(self) -> str:
        return (f"NARX(n_in={self.n_in}, n_hidden={self.n_hidden}, n_out={self.n_out}, "
                f"d_x={self.d_x}, d_y={self.d_y})")


class TDNNStepCache(NamedTuple):
    """What one TDNN step keeps for its backward step; every field is ``(B, .)``."""

    x_t: Array      # the input x_t, (B, n_in)
    X_t: Array      # the input window [x_t; x_{t-1}; ...; x_{t-d_x}], (B, (d_x + 1) n_in)
    h: Array        # h_t = tanh(a_t), (B, H)


class TDNN(Cell):
    """Time-delay layer ``h_t = tanh(W_xh [x_t; ...; x_{t-d_x}] + b_h)``: a window of inputs, no feedback.

    Parameters
    ----------
    n_in, n_hidden : int
        Input width and width H of the layer.
    d_x : int, keyword-only
        The largest input delay, at least 1 (with 0 the layer has no memory: a feedforward layer).

    Parameters dict: ``W_xh`` ``(H, (d_x + 1) n_in)``, ``b_h`` ``(H,)``. State: ``(h_t, x_t, ...,
    x_{t-d_x+1})``, one array ``(B, H)`` and ``d_x`` arrays ``(B, n_in)``. The next step reads the input
    line only; h_t is in the state because the protocol exposes part 0 as the output.
    """

    def __init__(self, n_in: int, n_hidden: int, *, d_x: int = 2):
        self.n_in = check_positive_int(n_in, "n_in")
        self.n_hidden = check_positive_int(n_hidden, "n_hidden")
        self.d_x = check_delay(d_x, "d_x", minimum=1)
        self.state_widths = (self.n_hidden,) + (self.n_in,) * self.d_x

    cache_type = TDNNStepCache

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        return {"W_xh": (self.n_hidden, (self.d_x + 1) * self.n_in), "b_h": (self.n_hidden,)}

    def init_params(self, rng: np.random.Generator | int) -> Params:
        """Uniform in ``[-1/sqrt(n_hidden), 1/sqrt(n_hidden)]``, the scale of the other cells."""
        return self._init_uniform(rng, 1.0 / math.sqrt(self.n_hidden))

    def _step(self, params: Params, x_t: Array, state: State) -> tuple[State, TDNNStepCache]:
        xs_prev = state[1:]                                               # h_{t-1} is not read
        X_t = np.concatenate((x_t, *xs_prev), axis=-1)                    # [x_t; ...; x_{t-d_x}]
        h = np.tanh(X_t @ params["W_xh"].T + params["b_h"])              # h_t: (B, H)
        x_new = np.array(x_t, dtype=h.dtype)                              # a copy: no view of xs
        return (h, x_new, *xs_prev[:-1]), TDNNStepCache(x_t, X_t, h)

    def _step_backward(self, params: Params, cache: TDNNStepCache, d_state: State) -> tuple[Params, State, Array]:
        x_t, X_t, h = cache
        dh, dxs = d_state[0], d_state[1:]
        da = dh * (1.0 - h * h)                                           # abar_t: (B, H)
        d_params = {"W_xh": da.T @ X_t, "b_h": da.sum(axis=0)}
        dX = _blocks(da @ params["W_xh"], self.d_x + 1)                   # dL/dx_{t-k} via a_t
        dxs_prev = [dX[i + 1] + dxs[i + 1] if i + 1 < self.d_x else dX[i + 1] for i in range(self.d_x)]
        dh_prev = np.zeros_like(dh, shape=dh.shape[:-1] + (self.n_hidden,))   # h_{t-1} is not read
        return d_params, (dh_prev, *dxs_prev), dX[0] + dxs[0]

    def _step_jvp(self, params: Params, cache: TDNNStepCache, d_state_prev: State, d_params: Params,
                  dx: Array) -> State:
        dxs_prev = d_state_prev[1:]
        dX = np.concatenate((dx, *dxs_prev), axis=-1)                     # tangent of X_t
        da = (dX @ params["W_xh"].T + cache.X_t @ np.swapaxes(d_params["W_xh"], -1, -2)
              + d_params["b_h"][..., None, :])
        return ((1.0 - cache.h * cache.h) * da, dx, *dxs_prev[:-1])

    def __repr__(self) -> str:
        return f"TDNN(n_in={self.n_in}, n_hidden={self.n_hidden}, d_x={self.d_x})"
