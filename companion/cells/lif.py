"""The leaky integrate-and-fire (LIF) neuron as a recurrent cell, with surrogate gradients.

Forward, for every neuron of a layer of H, in the book's column-vector notation (chapter "Spiking
networks and surrogate gradients")::

    I_t = W_xh x_t (+ W_hh S_{t-1}, if recurrent) + b_h        input current
    R_t = Theta(U_{t-1} - theta)                                 reset: did the neuron spike at t-1?
    U_t = beta U_{t-1} + I_t - theta R_t                          reset="subtract" (the default)
    U_t = beta (1 - R_t) U_{t-1} + I_t                            reset="zero"
    U_t = (1 - R_t) (beta U_{t-1} + I_t)                          reset="refractory"
    S_t = Theta(U_t - theta)                                      spike

with Theta(u) = 1 if u > 0 and 0 otherwise (strictly: a membrane exactly at the threshold does not
spike), the decay ``beta`` in [0, 1] and the threshold ``theta`` > 0. U_t is the membrane *before* its
reset: the reset that a spike at step t causes is applied at the start of step t + 1, through R_{t+1},
which is recomputed from U_t. This is exactly what snntorch 1.0.0 computes (``snntorch.Leaky`` and
``snntorch.RLeaky`` with their default ``reset_delay=True``; the membrane they return is U_t):

- ``reset="subtract"`` is snntorch's ``reset_mechanism="subtract"`` (its default) for both classes;
- ``reset="zero"`` is ``snntorch.Leaky(reset_mechanism="zero")``: the membrane carried over from a step
  that spiked is set to 0, and the step's input current is still integrated;
- ``reset="refractory"`` is ``snntorch.RLeaky(reset_mechanism="zero")``, which zeroes the whole new
  membrane, the step's input and recurrent current included: a step right after a spike holds U_t at 0
  (a refractory period of one step). snntorch's two classes differ here; the companion offers both.

The recurrent weights W_hh are snntorch's ``RLeaky(all_to_all=True, linear_features=H)`` (an
``nn.Linear``, whose bias adds to b_h); without them the cell is ``Leaky`` behind an ``nn.Linear`` layer
(W_xh, b_h). snntorch clamps beta to [0, 1]; this cell refuses a beta outside it instead.

**Backward: the surrogate gradient.** The derivative of Theta is zero wherever it exists, so the
backward pass replaces dS_t/dU_t by a surrogate derivative sigma'(U_t - theta), in the form snntorch's
``snntorch.surrogate`` computes it (its code, not its docstrings):

- ``surrogate="fast_sigmoid"``, slope k (default 25): sigma'(u) = 1 / (k |u| + 1)^2
  (``snntorch.surrogate.fast_sigmoid(slope=k)``, SuperSpike's surrogate);
- ``surrogate="atan"`` (the default, as in snntorch), alpha (default 2):
  sigma'(u) = (alpha / 2) / (1 + (pi alpha u / 2)^2), the derivative of 1/2 + arctan(pi alpha u / 2) / pi
  (``snntorch.surrogate.atan(alpha=alpha)``; its docstring writes the factor 1/pi instead of alpha/2).

The forward pass uses Theta only; sigma' enters the backward pass (``_step_backward``) and the forward
mode (``_step_jvp``) only, in the same places, so that the two are adjoint to each other.

**Whether the reset is differentiated.** snntorch detaches the reset (``mem_reset`` returns
``spike_grad(mem - threshold).clone().detach()``), so R_t is a constant in its backward pass: that is
this cell's default, ``detach_reset=True``. With ``detach_reset=False`` the reset is differentiated
with the same surrogate, dR_t/dU_{t-1} = sigma'(U_{t-1} - theta), which adds to the backward recursion
the term -theta sigma'(U_{t-1} - theta) (subtract), -beta U_{t-1} sigma'(U_{t-1} - theta) (zero) or
-(beta U_{t-1} + I_t) sigma'(U_{t-1} - theta) (refractory), times the adjoint of U_t.

**The state** is ``(S_t, U_t)``, two arrays ``(B, H)``. Part 0, the sequence output h_t, is the spike
train S_t: spikes are what a neuron sends to the next layer and to a readout, and the membrane is
internal to it (it is part 1 of the state, and every step's U_t is in the cache). A loss on the spikes
reaches U_t through sigma' in the backward pass: the adjoint of U_t is
Ubar_t = dL/dU_t (through U_{t+1}) + sigma'(U_t - theta) Sbar_t. The non-recurrent cell does not read
S_{t-1} (its part of the one-step Jacobian is zero), which the protocol allows.

Written per neuron, the backward step is, with g_t = Ubar_t (the adjoint of U_t through every path)::

    subtract:    Ibar_t = g_t,              Ubar_{t-1} += beta g_t
    zero:        Ibar_t = g_t,              Ubar_{t-1} += beta (1 - R_t) g_t
    refractory:  Ibar_t = (1 - R_t) g_t,    Ubar_{t-1} += beta (1 - R_t) g_t
    Sbar_{t-1} = W_hh^T Ibar_t,  W_xh bar += Ibar_t x_t^T,  W_hh bar += Ibar_t S_{t-1}^T,  b_h bar += Ibar_t
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from ..types import Array, Params
from ..validation import as_rng, check_positive_int
from .base import Cell

#: the surrogate derivatives, by name, and the default of each one's slope (snntorch's defaults)
SURROGATE_SLOPES = {"fast_sigmoid": 25.0, "atan": 2.0}
SURROGATES = tuple(SURROGATE_SLOPES)
#: the reset mechanisms: snntorch's "subtract", Leaky's "zero", RLeaky's "zero" (here "refractory")
RESETS = ("subtract", "zero", "refractory")


def heaviside(u: Array) -> Array:
    """Theta(u): 1 where ``u > 0``, else 0 (0 at ``u == 0``, as snntorch), in the dtype of ``u``."""
    u = np.asarray(u)
    return (u > 0).astype(u.dtype if u.dtype.kind == "f" else np.float64)


def surrogate_derivative(u: Array, surrogate: str = "atan", slope: float | None = None) -> Array:
    """sigma'(u), the surrogate of dTheta/du, in the dtype of ``u`` (see the module docstring).

    Parameters
    ----------
    u : array
        The membrane minus the threshold, U - theta, any shape.
    surrogate : {"fast_sigmoid", "atan"}
        ``"fast_sigmoid"``: 1 / (k |u| + 1)^2; ``"atan"``: (alpha / 2) / (1 + (pi alpha u / 2)^2).
    slope : float, optional
        k of the fast sigmoid or alpha of the arctan; ``None`` takes snntorch's default (25 and 2).
    """
    surrogate = check_surrogate(surrogate)
    slope = check_slope(slope, surrogate)
    u = np.asarray(u)
    if u.dtype.kind != "f":
        u = u.astype(np.float64)
    if surrogate == "fast_sigmoid":
        return 1.0 / (slope * np.abs(u) + 1.0) ** 2
    return slope / 2 / (1.0 + (math.pi / 2 * slope * u) ** 2)


def check_surrogate(surrogate: object) -> str:
    """``surrogate`` if it names a surrogate of ``SURROGATES``, else ``ValueError`` naming ``surrogate``."""
    if not isinstance(surrogate, str) or surrogate not in SURROGATES:
        raise ValueError(f"surrogate must be one of {SURROGATES}, got {surrogate!r}")
    return surrogate


def check_slope(slope: object, surrogate: str) -> float:
    """The surrogate's slope as a float: ``None`` is the default; else a finite positive number."""
    if slope is None:
        return SURROGATE_SLOPES[surrogate]
    if isinstance(slope, (bool, np.bool_)) or not isinstance(slope, (int, float, np.integer, np.floating)) \
            or not (math.isfinite(slope) and slope > 0):
        raise ValueError(f"slope must be None or a finite positive number (k of the fast sigmoid, alpha of the "
                         f"arctan), got {slope!r}")
    return float(slope)


def _check_real(value: object, name: str) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite real number, got {value!r}")
    return float(value)


class LIFStepCache(NamedTuple):
    """What one LIF step keeps for its backward step; every field is ``(B, .)``."""

    x_t: Array      # the input x_t, (B, n_in)
    S_prev: Array   # S_{t-1}, the spikes of the previous step, (B, H)
    U_prev: Array   # U_{t-1}, the membrane before its reset, (B, H)
    I: Array        # I_t = W_xh x_t (+ W_hh S_{t-1}) + b_h, the input current, (B, H)
    R: Array        # R_t = Theta(U_{t-1} - theta), the reset (0 or 1), (B, H)
    U: Array        # U_t, the new membrane before its reset, (B, H)
    S: Array        # S_t = Theta(U_t - theta), the spikes, (B, H)


class LIF(Cell):
    """A layer of leaky integrate-and-fire neurons, trained with a surrogate gradient.

    Parameters
    ----------
    n_in, n_hidden : int
        Input width and number of neurons H.
    beta : float, keyword-only
        Membrane decay per step, in [0, 1] (``beta = exp(-dt / tau_mem)``). Default 0.9.
    threshold : float, keyword-only
        Firing threshold theta > 0. Default 1.
    reset : {"subtract", "zero", "refractory"}, keyword-only
        Reset mechanism (see the module docstring). Default ``"subtract"``, snntorch's.
    surrogate : {"fast_sigmoid", "atan"}, keyword-only
        Surrogate derivative of the spike in the backward pass. Default ``"atan"``, snntorch's.
    slope : float, keyword-only
        k of the fast sigmoid (default 25) or alpha of the arctan (default 2).
    recurrent : bool, keyword-only
        Whether the spikes S_{t-1} feed back through W_hh. Default False.
    detach_reset : bool, keyword-only
        Whether the reset R_t is a constant of the backward pass (True, snntorch's choice) or is
        differentiated with the surrogate (False).

    Parameters dict: ``W_xh`` ``(H, n_in)``, ``b_h`` ``(H,)`` and, if recurrent, ``W_hh`` ``(H, H)``.
    State: ``(S, U)``, the spikes and the membrane, each ``(B, H)``; part 0 (the output) is S.
    """

    def __init__(self, n_in: int, n_hidden: int, *, beta: float = 0.9, threshold: float = 1.0,
                 reset: str = "subtract", surrogate: str = "atan", slope: float | None = None,
                 recurrent: bool = False, detach_reset: bool = True):
        self.n_in = check_positive_int(n_in, "n_in")
        self.n_hidden = check_positive_int(n_hidden, "n_hidden")
        self.beta = _check_real(beta, "beta")
        if not 0.0 <= self.beta <= 1.0:
            raise ValueError(f"beta must be in [0, 1] (the membrane's decay per step), got {beta!r}")
        self.threshold = _check_real(threshold, "threshold")
        if self.threshold <= 0.0:
            raise ValueError(f"threshold must be a positive number, got {threshold!r}")
        if not isinstance(reset, str) or reset not in RESETS:
            raise ValueError(f"reset must be one of {RESETS}, got {reset!r}")
        self.reset = reset
        self.surrogate = check_surrogate(surrogate)
        self.slope = check_slope(slope, self.surrogate)
        for name, flag in (("recurrent", recurrent), ("detach_reset", detach_reset)):
            if not isinstance(flag, (bool, np.bool_)):
                raise ValueError(f"{name} must be True or False, got {flag!r}")
        self.recurrent = bool(recurrent)
        self.detach_reset = bool(detach_reset)
        self.state_widths = (self.n_hidden, self.n_hidden)

    cache_type = LIFStepCache

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        H = self.n_hidden
        shapes = {"W_xh": (H, self.n_in), "b_h": (H,)}
        if self.recurrent:
            shapes["W_hh"] = (H, H)
        return shapes

    def init_params(self, rng: np.random.Generator | int) -> Params:
        """Uniform in ``[-1/sqrt(fan_in), 1/sqrt(fan_in)]``, as ``torch.nn.Linear`` draws the layers that
        snntorch puts in front of a neuron (fan_in = n_in for W_xh and b_h, H for W_hh), in sorted key order."""
        rng = as_rng(rng)
        shapes = self.param_shapes()
        fan_in = {"W_xh": self.n_in, "b_h": self.n_in, "W_hh": self.n_hidden}
        return {key: rng.uniform(-1.0, 1.0, size=shapes[key]) / math.sqrt(fan_in[key]) for key in sorted(shapes)}

    def sigma_prime(self, U: Array) -> Array:
        """sigma'(U - theta), the cell's surrogate of dS/dU at the membrane ``U``."""
        return surrogate_derivative(np.asarray(U) - self.threshold, self.surrogate, self.slope)

    def _step(self, params: Params, x_t: Array, state: tuple[Array, Array]) -> tuple[tuple[Array, Array], LIFStepCache]:
        S_prev, U_prev = state
        I = x_t @ params["W_xh"].T + params["b_h"]                 # I_t: (B, H)
        if self.recurrent:
            I = I + S_prev @ params["W_hh"].T
        R = heaviside(U_prev - self.threshold)                     # R_t = Theta(U_{t-1} - theta)
        if self.reset == "subtract":
            U = self.beta * U_prev + I - self.threshold * R        # U_t = beta U_{t-1} + I_t - theta R_t
        elif self.reset == "zero":
            U = self.beta * ((1.0 - R) * U_prev) + I               # U_t = beta (1 - R_t) U_{t-1} + I_t
        else:
            U = (1.0 - R) * (self.beta * U_prev + I)               # U_t = (1 - R_t)(beta U_{t-1} + I_t)
        S = heaviside(U - self.threshold)                          # S_t = Theta(U_t - theta)
        return (S, U), LIFStepCache(x_t, S_prev, U_prev, I, R, U, S)

    def _reset_factor(self, cache: LIFStepCache) -> Array:
        """d U_t / d R_t at the step's point: -theta, -beta U_{t-1} or -(beta U_{t-1} + I_t)."""
        if self.reset == "subtract":
            return np.full_like(cache.U, -self.threshold)
        if self.reset == "zero":
            return -self.beta * cache.U_prev
        return -(self.beta * cache.U_prev + cache.I)

    def _step_backward(self, params: Params, cache: LIFStepCache,
                       d_state: tuple[Array, Array]) -> tuple[Params, tuple[Array, Array], Array]:
        dS, dU = d_state
        g = dU + self.sigma_prime(cache.U) * dS                    # Ubar_t: via U_{t+1} and via S_t
        keep = 1.0 - cache.R
        if self.reset == "subtract":
            dI, dU_prev = g, self.beta * g
        elif self.reset == "zero":
            dI, dU_prev = g, self.beta * keep * g
        else:
            dI = keep * g
            dU_prev = self.beta * dI
        if not self.detach_reset:                                  # R_t = Theta(U_{t-1} - theta), differentiated
            dU_prev = dU_prev + self.sigma_prime(cache.U_prev) * (self._reset_factor(cache) * g)
        d_params = {"W_xh": dI.T @ cache.x_t, "b_h": dI.sum(axis=0)}
        if self.recurrent:
            d_params["W_hh"] = dI.T @ cache.S_prev
            dS_prev = dI @ params["W_hh"]                          # W_hh^T Ibar_t
        else:
            dS_prev = np.zeros_like(dI)                            # S_{t-1} is not read
        dx = dI @ params["W_xh"]                                   # W_xh^T Ibar_t
        return d_params, (dS_prev, dU_prev), dx

    def _step_jvp(self, params: Params, cache: LIFStepCache, d_state_prev: tuple[Array, Array],
                  d_params: Params, dx: Array) -> tuple[Array, Array]:
        # tangents carry leading direction axes (...): (..., B, H), dW (..., H, .), db (..., H)
        dS_prev, dU_prev = d_state_prev
        dI = dx @ params["W_xh"].T + cache.x_t @ np.swapaxes(d_params["W_xh"], -1, -2) + d_params["b_h"][..., None, :]
        if self.recurrent:
            dI = dI + dS_prev @ params["W_hh"].T + cache.S_prev @ np.swapaxes(d_params["W_hh"], -1, -2)
        keep = 1.0 - cache.R
        if self.reset == "subtract":
            dU = self.beta * dU_prev + dI
        elif self.reset == "zero":
            dU = self.beta * keep * dU_prev + dI
        else:
            dU = keep * (self.beta * dU_prev + dI)
        if not self.detach_reset:                                  # + (dU_t/dR_t) sigma'(U_{t-1} - theta) U_{t-1} dot
            dU = dU + self._reset_factor(cache) * self.sigma_prime(cache.U_prev) * dU_prev
        return self.sigma_prime(cache.U) * dU, dU                  # S_t dot = sigma'(U_t - theta) U_t dot

    def __repr__(self) -> str:
        options = [f"beta={self.beta!r}", f"threshold={self.threshold!r}", f"reset={self.reset!r}",
                   f"surrogate={self.surrogate!r}", f"slope={self.slope!r}"]
        if self.recurrent:
            options.append("recurrent=True")
        if not self.detach_reset:
            options.append("detach_reset=False")
        return f"LIF(n_in={self.n_in}, n_hidden={self.n_hidden}, {', '.join(options)})"
