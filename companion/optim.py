"""Gradient steps on a parameter dict, and clipping by the global gradient norm.

Each optimizer updates the arrays of a parameter dict in place and keeps its state (velocities,
moment estimates) keyed by parameter name, so one optimizer serves one model. The update rules are
those of ``torch.optim.SGD`` (with and without momentum) and ``torch.optim.Adam`` with their defaults,
and the tests check them step by step against torch in float64.

Clipping by the global norm (Pascanu, Mikolov & Bengio 2013) rescales every gradient by one common
factor when their joint norm exceeds a threshold: the direction of the step is kept, its length is
capped. It is the standard remedy for the exploding gradients of the chapter on vanishing and
exploding gradients.
"""
from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from .types import Array, Params
from .validation import as_float_array, check_params, check_positive_float


def _check_unit_interval(value: object, name: str) -> float:
    """Return ``value`` as a float if it lies in ``[0, 1)``, else raise ``ValueError``."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) or not 0 <= value < 1:
        raise ValueError(f"{name} must be a number in [0, 1), got {value!r}")
    return float(value)


def _check_step_inputs(params: object, grads: object) -> Params:
    """Validate a parameter dict for an in-place update and the gradients matching it; return the grads."""
    if not isinstance(params, dict) or not params:
        raise ValueError(f"params must be a non-empty dict of float arrays, got {type(params).__name__}")
    for key, value in params.items():
        if not isinstance(value, np.ndarray) or value.dtype.kind != "f":
            raise ValueError(f"params[{key!r}] must be a float numpy array (updated in place), got {value!r:.60}")
        as_float_array(value, f"params[{key!r}]")  # finite
    return check_params(grads, {key: value.shape for key, value in params.items()}, "grads")


class Optimizer:
    """Base class: validates ``step``'s inputs and applies ``_update`` to every parameter.

    Attributes
    ----------
    state : dict
        Per-parameter state keyed by parameter name (empty for plain SGD).
    """

    def __init__(self, lr: float):
        self.lr = check_positive_float(lr, "lr")
        self.state: dict[str, dict] = {}

    def step(self, params: Params, grads: Params) -> None:
        """Update every array of ``params`` in place using ``grads`` (same keys, same shapes)."""
        grads = _check_step_inputs(params, grads)
        for key, param in params.items():
            self._update(key, param, grads[key])

    def _update(self, key: str, param: Array, grad: Array) -> None:
        raise NotImplementedError


class SGD(Optimizer):
    r"""Plain gradient descent, :math:`\theta \leftarrow \theta - \eta g`.

    Parameters
    ----------
    lr : float
        Learning rate eta.
    """

    def _update(self, key: str, param: Array, grad: Array) -> None:
        param -= self.lr * grad                       # theta <- theta - lr g

    def __repr__(self) -> str:
        return f"SGD(lr={self.lr})"


class Momentum(Optimizer):
    r"""Heavy-ball momentum (Polyak 1964) as ``torch.optim.SGD(momentum=beta)`` with dampening 0.

    .. math:: v \leftarrow \beta v + g, \qquad \theta \leftarrow \theta - \eta v

    with v starting at zero (so the first step is a plain gradient step).

    Parameters
    ----------
    lr : float
        Learning rate eta.
    beta : float, keyword-only
        Momentum coefficient in [0, 1).
    """

    def __init__(self, lr: float, *, beta: float = 0.9):
        super().__init__(lr)
        self.beta = _check_unit_interval(beta, "beta")

    def _update(self, key: str, param: Array, grad: Array) -> None:
        if key not in self.state:
            self.state[key] = {"v": np.zeros_like(param)}                   # v starts at zero
        state = self.state[key]
        state["v"] = self.beta * state["v"] + grad    # v <- beta v + g
        param -= self.lr * state["v"]                 # theta <- theta - lr v

    def __repr__(self) -> str:
        return f"Momentum(lr={self.lr}, beta={self.beta})"


class Adam(Optimizer):
    r"""Adam (Kingma & Ba 2015) with bias correction, as ``torch.optim.Adam`` computes it.

    .. math::
        m \leftarrow \beta_1 m + (1 - \beta_1) g, \qquad
        v \leftarrow \beta_2 v + (1 - \beta_2) g^2, \\
        \theta \leftarrow \theta - \frac{\eta}{1 - \beta_1^k} \,
            \frac{m}{\sqrt{v} / \sqrt{1 - \beta_2^k} + \epsilon}

    where k counts the steps taken for that parameter (from 1) and m, v start at zero.

    Parameters
    ----------
    lr : float
        Learning rate eta.
    beta1, beta2 : float, keyword-only
        Decay rates of the first and second moment estimates, in [0, 1).
    eps : float, keyword-only
        Added to the denominator.
    """

    def __init__(self, lr: float = 1e-3, *, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8):
        super().__init__(lr)
        self.beta1 = _check_unit_interval(beta1, "beta1")
        self.beta2 = _check_unit_interval(beta2, "beta2")
        self.eps = check_positive_float(eps, "eps")

    def _update(self, key: str, param: Array, grad: Array) -> None:
        if key not in self.state:
            self.state[key] = {"k": 0, "m": np.zeros_like(param), "v": np.zeros_like(param)}
        state = self.state[key]
        state["k"] += 1
        k, m, v = state["k"], state["m"], state["v"]
        m += (1.0 - self.beta1) * (grad - m)                                   # m <- beta1 m + (1 - beta1) g
        v *= self.beta2
        v += (1.0 - self.beta2) * grad * grad                                  # v <- beta2 v + (1 - beta2) g^2
        step_size = self.lr / (1.0 - self.beta1**k)                            # lr / (1 - beta1^k)
        denom = np.sqrt(v) / math.sqrt(1.0 - self.beta2**k) + self.eps        # sqrt(v_hat) + eps
        param -= step_size * (m / denom)

    def __repr__(self) -> str:
        return f"Adam(lr={self.lr}, beta1={self.beta1}, beta2={self.beta2}, eps={self.eps})"


def _check_grads(grads: object) -> Params:
    if not isinstance(grads, Mapping) or not grads:
        raise ValueError(f"grads must be a non-empty dict of arrays, got {type(grads).__name__}")
    return {key: as_float_array(value, f"grads[{key!r}]") for key, value in grads.items()}


def global_norm(grads: Params) -> float:
    r"""The L2 norm of all gradients taken together, :math:`\sqrt{\sum_k \lVert g_k \rVert^2}`.

    Parameters
    ----------
    grads : dict of arrays
        Any shapes.

    Returns
    -------
    float
    """
    return _global_norm(_check_grads(grads))


def _global_norm(grads: Params) -> float:
    return float(np.linalg.norm([np.linalg.norm(g) for g in grads.values()]))  # the norm of the norms


def clip_grad_norm(grads: Params, max_norm: float) -> tuple[Params, float]:
    r"""Rescale all gradients by one factor so that their global norm is at most about ``max_norm``.

    .. math::
        n = \sqrt{\sum_k \lVert g_k \rVert^2}, \qquad
        g_k \leftarrow g_k \cdot \min\Big(1, \frac{\text{max\_norm}}{n + 10^{-6}}\Big)

    the formula of ``torch.nn.utils.clip_grad_norm_`` (torch 2.13: the same 1e-6, the factor clamped
    at 1, so gradients are never scaled up).

    Parameters
    ----------
    grads : dict of arrays
        Gradients of any shapes; not modified.
    max_norm : float
        The threshold, positive.

    Returns
    -------
    clipped : dict of arrays
        New arrays with the keys and shapes of ``grads``.
    total_norm : float
        The global norm n before clipping.
    """
    grads = _check_grads(grads)
    max_norm = check_positive_float(max_norm, "max_norm")
    total_norm = _global_norm(grads)
    scale = min(1.0, max_norm / (total_norm + 1e-6))
    return {key: g * scale for key, g in grads.items()}, total_norm
