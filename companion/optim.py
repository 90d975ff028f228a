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


def _check_pair(value: object, name: str) -> tuple[float, float]:
    """Return ``value`` as a pair of finite floats, else raise ``ValueError``."""
    try:
        first, second = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a pair of numbers, got {value!r}") from None
    if not (math.isfinite(first) and math.isfinite(second)):
        raise ValueError(f"{name} must be a pair of finite numbers, got {value!r}")
    return first, second


class Rprop(Optimizer):
    r"""Resilient propagation in the variant iRprop\ :sup:`-` (Igel & Hüsken), as ``torch.optim.Rprop``.

    Each parameter entry keeps its own step size :math:`\Delta` and uses only the sign of its gradient.
    With :math:`g^-` the gradient remembered from the previous step (zero at first):

    .. math::
        \Delta \leftarrow \begin{cases}
            \min(\eta^+ \Delta, \Delta_{max}) & g^- g > 0 \\
            \max(\eta^- \Delta, \Delta_{min}) & g^- g < 0 \\
            \Delta & \text{otherwise}
        \end{cases}, \qquad
        g \leftarrow 0 \text{ where } g^- g < 0, \qquad
        \theta \leftarrow \theta - \operatorname{sign}(g) \, \Delta, \qquad g^- \leftarrow g

    After a sign change the entry does not move and forgets its gradient, so the next step neither
    grows nor shrinks its step size again; unlike Rprop\ :sup:`+` no step is taken back. Rprop is a
    full-batch method: minibatch noise flips the signs and shrinks the steps.

    Parameters
    ----------
    lr : float
        The initial step size :math:`\Delta_0` of every entry.
    etas : (float, float), keyword-only
        :math:`(\eta^-, \eta^+)` with 0 < eta- < 1 < eta+; the usual (0.5, 1.2).
    step_sizes : (float, float), keyword-only
        :math:`(\Delta_{min}, \Delta_{max})` with 0 <= min <= max.
    """

    def __init__(self, lr: float = 0.01, *, etas: tuple[float, float] = (0.5, 1.2),
                 step_sizes: tuple[float, float] = (1e-6, 50.0)):
        super().__init__(lr)
        self.eta_minus, self.eta_plus = _check_pair(etas, "etas")
        if not 0 < self.eta_minus < 1 < self.eta_plus:
            raise ValueError(f"etas must be (eta_minus, eta_plus) with 0 < eta_minus < 1 < eta_plus, got {etas!r}")
        self.step_min, self.step_max = _check_pair(step_sizes, "step_sizes")
        if not 0 <= self.step_min <= self.step_max:
            raise ValueError(f"step_sizes must be (min, max) with 0 <= min <= max, got {step_sizes!r}")

    def _update(self, key: str, param: Array, grad: Array) -> None:
        if key not in self.state:
            self.state[key] = {"prev": np.zeros_like(param), "step": np.full_like(param, self.lr)}
        state = self.state[key]
        agreement = np.sign(grad * state["prev"])                               # sign of g^- g
        factor = np.where(agreement > 0, self.eta_plus, np.where(agreement < 0, self.eta_minus, 1.0))
        state["step"] = np.clip(state["step"] * factor, self.step_min, self.step_max)
        grad = np.where(agreement < 0, 0.0, grad)                               # forget g after a sign change
        param -= np.sign(grad) * state["step"]
        state["prev"] = grad

    def __repr__(self) -> str:
        return (f"Rprop(lr={self.lr}, etas=({self.eta_minus}, {self.eta_plus}), "
                f"step_sizes=({self.step_min}, {self.step_max}))")


class Quickprop(Optimizer):
    r"""Quickprop (Fahlman 1988): a per-entry secant (Newton) step with Fahlman's safeguards.

    Each entry treats the loss as a parabola in its own weight, fitted to the slopes
    :math:`S = \partial E / \partial w + \lambda w` (``decay`` :math:`\lambda`) now and at the previous
    step, and jumps towards its minimum. With :math:`\Delta^-` the previous step, :math:`S^-` the
    previous slope, :math:`\epsilon` the learning rate and the maximum growth factor :math:`\mu`:

    * :math:`\Delta^- = 0` (the first step, or an entry that did not move): the gradient step
      :math:`\Delta = -\epsilon S`.
    * otherwise the sum of two terms:

      - the gradient term :math:`-\epsilon S`, only while the slope still points the way the last step
        went (:math:`S < 0` after :math:`\Delta^- > 0`, :math:`S > 0` after :math:`\Delta^- < 0`);
        after the minimum was crossed the parabola's step is used alone;
      - the quadratic term :math:`\Delta^- S / (S^- - S)`, the secant step to the parabola's minimum,
        replaced by :math:`\mu \Delta^-` when the slope has not shrunk enough for it to be trusted:
        :math:`S < \frac{\mu}{1 + \mu} S^-` after :math:`\Delta^- > 0`, :math:`S > \frac{\mu}{1 + \mu} S^-`
        after :math:`\Delta^- < 0` (at equality both give :math:`\mu \Delta^-`). This caps the quadratic step at :math:`\mu |\Delta^-|` and catches
        a slope that grew (where the parabola opens downward or is flat).

    These are the branches of the C translation of Fahlman's ``quickprop1.c`` as kept in FANN and
    NevProp, written for the gradient :math:`\partial E / \partial w` rather than its negative. One
    guard is ours: where :math:`S^- = S` in the quadratic branch (a flat secant, possible only after a
    step uphill or between two zero slopes) the gradient step :math:`-\epsilon S` is taken instead of dividing by zero.

    Parameters
    ----------
    lr : float
        The learning rate epsilon of the gradient steps and terms.
    mu : float, keyword-only
        The maximum growth factor, positive; Fahlman's 1.75.
    decay : float, keyword-only
        Weight decay lambda added to the slope, non-negative (Fahlman used 1e-4; default 0).
    """

    def __init__(self, lr: float = 0.01, *, mu: float = 1.75, decay: float = 0.0):
        super().__init__(lr)
        self.mu = check_positive_float(mu, "mu")
        if isinstance(decay, bool) or not isinstance(decay, (int, float, np.integer, np.floating)) \
                or not (math.isfinite(decay) and decay >= 0):
            raise ValueError(f"decay must be a finite non-negative number, got {decay!r}")
        self.decay = float(decay)

    def _update(self, key: str, param: Array, grad: Array) -> None:
        if key not in self.state:
            self.state[key] = {"step": np.zeros_like(param), "slope": np.zeros_like(param)}
        state = self.state[key]
        slope = grad + self.decay * param                                         # S
        step = _quickprop_step(state["step"], state["slope"], slope, lr=self.lr, mu=self.mu)
        param += step
        state["step"], state["slope"] = step, slope

    def __repr__(self) -> str:
        return f"Quickprop(lr={self.lr}, mu={self.mu}, decay={self.decay})"


def _quickprop_step(prev_step: Array, prev_slope: Array, slope: Array, *, lr: float, mu: float) -> Array:
    r"""The Quickprop step of every entry (the rule of ``Quickprop``), elementwise; all arrays alike.

    Parameters
    ----------
    prev_step, prev_slope, slope : array, shape S (any, all equal)
        :math:`\Delta^-`, :math:`S^-` and :math:`S`.
    lr, mu : float, keyword-only
        epsilon and the maximum growth factor.

    Returns
    -------
    array, shape S
        The step :math:`\Delta` to add to the weights.
    """
    gradient_step = -lr * slope                                                   # -eps S
    direction = np.sign(prev_step)                                                # +1, -1, or 0: no step
    downhill_still = direction * slope < 0                                        # slope still points the same way
    threshold = mu / (1.0 + mu) * prev_slope
    capped = direction * (slope - threshold) < 0                                  # slope did not shrink enough
    denominator = prev_slope - slope
    flat = denominator == 0
    secant = prev_step * slope / np.where(flat, 1.0, denominator)                 # Delta- S / (S- - S)
    quadratic = np.where(capped, mu * prev_step, np.where(flat, gradient_step, secant))
    moved = np.where(downhill_still, gradient_step, 0.0) + quadratic
    return np.where(direction == 0, gradient_step, moved)
