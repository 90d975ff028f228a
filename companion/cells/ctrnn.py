"""The continuous-time recurrent network (CTRNN) and its Euler discretization as a cell.

The network, in the book's column-vector notation (chapter "Continuous-time BPTT")::

    tau ⊙ dh/dt = -h + W_hh phi(h) + W_xh x(t) + b_h      so  dh/dt = f(h, x; theta)

with a time constant ``tau_i > 0`` per unit. This is the "potential" form (Hopfield 1984; Beer 1995): the
state h is a membrane potential, the units talk to each other through their rates phi(h), and the input
enters linearly, so ``x(t)`` can be sampled wherever a solver needs it. ``CTRNN`` holds this vector field
with its two derivative products: ``vjp`` (row vector times Jacobian, for the backward passes and the
adjoint equation) and ``jvp`` (Jacobian times tangent, for forward mode).

``EulerCTRNN`` is one explicit Euler step of it, ``h_t = h_{t-1} + dt f(h_{t-1}, x_t)``, as a cell of the
protocol of ``base.Cell``: every sequence algorithm of the companion (``bptt``, truncation, checkpointing,
forward mode) runs on it unchanged. Its input ``x_t`` is the input read at the step's left end,
x(t_{t-1}) in continuous time, since that is where Euler evaluates f.

The code holds a batch of column vectors as the rows of a ``(B, .)`` array, so ``W v`` is ``v @ W.T``.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from ..types import Array, Params
from ..validation import as_rng, check_positive_float, check_positive_int
from .activations import ACTIVATIONS, check_nonlinearity
from .base import Cell


class CTRNN:
    """The vector field ``f(h, x) = (-h + W_hh phi(h) + W_xh x + b_h) / tau`` of a continuous-time network.

    Parameters
    ----------
    n_in, n_hidden : int
        Input width and number of units H.
    nonlinearity : {"tanh", "relu", "linear"}, keyword-only
        phi.

    Parameters dict: ``W_hh`` ``(H, H)``, ``W_xh`` ``(H, n_in)``, ``b_h`` ``(H,)``, ``tau`` ``(H,)`` (every
    entry > 0). A state is ``h`` ``(B, H)``.
    """

    def __init__(self, n_in: int, n_hidden: int, *, nonlinearity: str = "tanh"):
        self.n_in = check_positive_int(n_in, "n_in")
        self.n_hidden = check_positive_int(n_hidden, "n_hidden")
        self.nonlinearity = check_nonlinearity(nonlinearity)
        self._phi, self._phi_prime = ACTIVATIONS[self.nonlinearity]

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """The shape of every parameter, keyed by its symbol."""
        H = self.n_hidden
        return {"W_hh": (H, H), "W_xh": (H, self.n_in), "b_h": (H,), "tau": (H,)}

    def init_params(self, rng: np.random.Generator | int, *, tau: float = 1.0) -> Params:
        """Weights and bias uniform in ``[-1/sqrt(H), 1/sqrt(H)]`` (drawn in sorted key order), every
        time constant equal to ``tau``."""
        rng = as_rng(rng)
        tau = check_positive_float(tau, "tau")
        scale = 1.0 / math.sqrt(self.n_hidden)
        shapes = self.param_shapes()
        params = {key: rng.uniform(-scale, scale, size=shapes[key]) for key in sorted(shapes) if key != "tau"}
        params["tau"] = np.full(self.n_hidden, tau)
        return {key: params[key] for key in shapes}

    @staticmethod
    def check_time_constants(params: Params, name: str = "params") -> None:
        """Raise ``ValueError`` naming ``params['tau']`` unless every time constant is positive."""
        tau = params["tau"]
        if np.any(tau <= 0):
            raise ValueError(f"{name}['tau'] must be positive (a time constant per unit), got min {tau.min()!r}")

    def field(self, params: Params, h: Array, x: Array) -> tuple[Array, Array]:
        """``(f, phi(h))``: the time derivative ``dh/dt`` at state ``h`` ``(B, H)`` and input ``x``
        ``(B, n_in)``, both ``(B, H)``; phi(h) is returned for the derivative products (trusted inputs)."""
        rate = self._phi(h)
        u = -h + rate @ params["W_hh"].T + x @ params["W_xh"].T + params["b_h"]
        return u / params["tau"], rate

    def vjp(self, params: Params, rate: Array, x: Array, f: Array, f_bar: Array) -> tuple[Array, Params, Array]:
        """Row vectors times the Jacobians of f at one point: ``(f_bar ∂f/∂h, f_bar ∂f/∂theta, f_bar ∂f/∂x)``.

        Parameters
        ----------
        params : dict of arrays
            The parameters.
        rate, x, f : arrays
            phi(h) ``(B, H)``, the input ``(B, n_in)`` and f itself ``(B, H)`` at the point.
        f_bar : array, shape (B, H)
            The row vectors (one per sequence): the adjoint of f.

        Returns
        -------
        tuple
            ``F^T f_bar`` ``(B, H)``; the parameters' adjoints as a dict of their shapes, summed over the
            batch; ``W_xh^T g`` ``(B, n_in)``. With g = f_bar / tau (chapter, eq. eq-ct-vjp):
            F^T f_bar = -g + phi'(h) ⊙ (W_hh^T g), W_hh_bar = g phi(h)^T, W_xh_bar = g x^T, b_h_bar = g,
            tau_bar = -g ⊙ f.
        """
        g = f_bar / params["tau"]
        h_bar = -g + self._phi_prime(rate) * (g @ params["W_hh"])
        d_params = {"W_hh": g.T @ rate, "W_xh": g.T @ x, "b_h": g.sum(axis=0), "tau": -(g * f).sum(axis=0)}
        return h_bar, d_params, g @ params["W_xh"]

    def jvp(self, params: Params, rate: Array, x: Array, f: Array, d_h: Array, d_params: Params, d_x: Array) -> Array:
        """The Jacobian of f times tangents of h ``(..., B, H)``, of the parameters ``(..., *shape)`` and of
        x ``(..., B, n_in)``, all with the same leading direction axes; returns ``(..., B, H)``:
        ḟ = (-ḣ + W_hh (phi'(h) ⊙ ḣ) + Ẇ_hh phi(h) + W_xh ẋ + Ẇ_xh x + ḃ_h - τ̇ ⊙ f) / tau."""
        swap = lambda m: np.swapaxes(m, -1, -2)   # noqa: E731  (W^T on the last two axes)
        du = (-d_h + (self._phi_prime(rate) * d_h) @ params["W_hh"].T + rate @ swap(d_params["W_hh"])
              + d_x @ params["W_xh"].T + x @ swap(d_params["W_xh"]) + d_params["b_h"][..., None, :])
        return (du - d_params["tau"][..., None, :] * f) / params["tau"]

    def __repr__(self) -> str:
        return f"CTRNN(n_in={self.n_in}, n_hidden={self.n_hidden}, nonlinearity={self.nonlinearity!r})"


class EulerCTRNNStepCache(NamedTuple):
    """What one Euler step keeps for its backward step; every field is ``(B, .)``."""

    x_t: Array      # the input read at the step's left end, (B, n_in)
    h_prev: Array   # h_{t-1}, (B, H)
    rate: Array     # phi(h_{t-1}), (B, H)
    f: Array        # f(h_{t-1}, x_t) = dh/dt at the left end, (B, H)


class EulerCTRNN(Cell):
    """One explicit Euler step of a ``CTRNN``: ``h_t = h_{t-1} + dt f(h_{t-1}, x_t)``.

    Parameters
    ----------
    n_in, n_hidden : int
        Input width and number of units H.
    dt : float, keyword-only
        The step size (> 0), in the units of the time constants.
    nonlinearity : {"tanh", "relu", "linear"}, keyword-only
        phi.

    Parameters dict: those of ``CTRNN`` (``W_hh``, ``W_xh``, ``b_h``, ``tau`` > 0). State: ``h`` ``(B, H)``.
    """

    cache_type = EulerCTRNNStepCache

    def __init__(self, n_in: int, n_hidden: int, *, dt: float, nonlinearity: str = "tanh"):
        self.network = CTRNN(n_in, n_hidden, nonlinearity=nonlinearity)
        self.n_in, self.n_hidden = self.network.n_in, self.network.n_hidden
        self.nonlinearity = self.network.nonlinearity
        self.dt = check_positive_float(dt, "dt")
        self.state_widths = (self.n_hidden,)

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        return self.network.param_shapes()

    def init_params(self, rng: np.random.Generator | int, *, tau: float = 1.0) -> Params:
        """As ``CTRNN.init_params``: weights uniform in ``[-1/sqrt(H), 1/sqrt(H)]``, every tau equal to ``tau``."""
        return self.network.init_params(rng, tau=tau)

    def check_params(self, params: object, name: str = "params") -> Params:
        """Keys, shapes and finite floats as every cell checks them, and positive time constants."""
        checked = super().check_params(params, name)
        self.network.check_time_constants(checked, name)
        return checked

    def _step(self, params: Params, x_t: Array, h_prev: Array) -> tuple[Array, EulerCTRNNStepCache]:
        f, rate = self.network.field(params, h_prev, x_t)
        return h_prev + self.dt * f, EulerCTRNNStepCache(x_t, h_prev, rate, f)

    def _step_backward(self, params: Params, cache: EulerCTRNNStepCache, dh: Array) -> tuple[Params, Array, Array]:
        # h_t = h_{t-1} + dt f:  hbar_{t-1} = hbar_t + (dt hbar_t) ∂f/∂h, thetabar = (dt hbar_t) ∂f/∂theta
        d_h, d_params, dx = self.network.vjp(params, cache.rate, cache.x_t, cache.f, self.dt * dh)
        return d_params, dh + d_h, dx

    def _step_jvp(self, params: Params, cache: EulerCTRNNStepCache, dh_prev: Array, d_params: Params,
                  dx: Array) -> Array:
        d_f = self.network.jvp(params, cache.rate, cache.x_t, cache.f, dh_prev, d_params, dx)
        return dh_prev + self.dt * d_f        # ḣ_t = ḣ_{t-1} + dt ḟ

    def __repr__(self) -> str:
        return (f"EulerCTRNN(n_in={self.n_in}, n_hidden={self.n_hidden}, dt={self.dt!r}, "
                f"nonlinearity={self.nonlinearity!r})")
