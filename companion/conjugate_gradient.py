"""Nonlinear conjugate gradients over a parameter dict, with the line searches it needs.

Conjugate gradients is not an ``Optimizer`` (``companion.optim``): it is a full-batch method that evaluates
the loss along a line before each step. ``conjugate_gradient`` takes a ``loss_and_grads(params) -> (loss,
grads)`` callable and moves along Polak-Ribière+ directions (Gilbert & Nocedal 1992), restarting along the
negative gradient on schedule or when a direction would go uphill; each step's length comes from a line
search, ``strong_wolfe`` (the default; Nocedal & Wright, section 3.5) or ``backtracking`` (Armijo).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from .optim import _check_step_inputs, _global_norm
from .types import Params
from .validation import check_params, check_positive_float, check_positive_int


class LineSearchResult(NamedTuple):
    """What a line search returns.

    Attributes
    ----------
    step : float
        The accepted step size alpha (0 if none was accepted).
    loss : float
        The loss at the accepted point (the starting loss if none was accepted).
    grads : dict of arrays or None
        The gradients at the accepted point, keyed like the parameters; ``None`` if none was accepted.
    accepted : bool
        Whether a step satisfied the search's condition.
    """

    step: float
    loss: float
    grads: Params | None
    accepted: bool


Phi = Callable[[float], tuple[float, float, Params]]
"""The loss along a line, phi(alpha) -> (loss, slope, grads): L(x + alpha d), its derivative grads . d, and
the gradient dict at x + alpha d."""


def backtracking(phi: Phi, loss0: float, slope0: float, step: float, *,
                 c1: float = 1e-4, max_trials: int = 30) -> LineSearchResult:
    r"""Backtracking line search for the Armijo (sufficient decrease) condition.

    Along the direction d from the point x, :math:`\phi(\alpha) = L(x + \alpha d)` with
    :math:`\phi(0) = ` ``loss0`` and :math:`\phi'(0) = \nabla L^\top d = ` ``slope0`` < 0. The trial
    ``step`` is accepted if

    .. math:: \phi(\alpha) \le \phi(0) + c_1 \alpha \phi'(0);

    otherwise the next trial is the minimizer of the parabola through :math:`\phi(0)`, :math:`\phi'(0)`
    and :math:`\phi(\alpha)`,
    :math:`\alpha_q = -\phi'(0) \alpha^2 / (2 (\phi(\alpha) - \phi(0) - \phi'(0) \alpha))`, kept within
    :math:`[0.1 \alpha, 0.5 \alpha]` (the safeguarded interpolation of Nocedal & Wright, section 3.5).
    Cheap, but it never lengthens a step: conjugate gradients need ``strong_wolfe``'s curvature condition
    to keep their directions useful.

    Parameters
    ----------
    phi : callable
        ``phi(alpha) -> (loss, slope, grads)`` (``Phi``).
    loss0, slope0 : float
        :math:`\phi(0)` and :math:`\phi'(0)`; ``slope0`` must be negative (a descent direction).
    step : float
        The first trial step, positive.
    c1 : float, keyword-only
        The sufficient-decrease constant, in (0, 1).
    max_trials : int, keyword-only
        How many trial steps at most.

    Returns
    -------
    LineSearchResult
        ``accepted`` is false if no trial satisfied the condition.
    """
    step, max_trials = _check_search(slope0, step, max_trials)
    c1 = _check_open_unit_interval(c1, "c1")
    for _ in range(max_trials):
        loss, _, grads = phi(step)
        if loss <= loss0 + c1 * step * slope0:                                    # Armijo
            return LineSearchResult(step, loss, grads, True)
        curvature = loss - loss0 - slope0 * step                                   # > 0 where Armijo fails
        interpolated = -slope0 * step * step / (2.0 * curvature) if math.isfinite(loss) else 0.0
        step = min(max(interpolated, 0.1 * step), 0.5 * step)
    return LineSearchResult(0.0, loss0, None, False)


def strong_wolfe(phi: Phi, loss0: float, slope0: float, step: float, *,
                 c1: float = 1e-4, c2: float = 0.1, max_trials: int = 30) -> LineSearchResult:
    r"""Line search for the strong Wolfe conditions (Nocedal & Wright, algorithms 3.5 and 3.6).

    A step :math:`\alpha` is accepted when

    .. math::
        \phi(\alpha) \le \phi(0) + c_1 \alpha \phi'(0) \quad\text{and}\quad
        |\phi'(\alpha)| \le c_2 |\phi'(0)|, \qquad 0 < c_1 < c_2 < 1.

    Trials double the step until one is accepted or an interval is known to hold acceptable steps
    (the loss rose, or the slope turned non-negative); ``zoom`` then shrinks that interval, trying the
    minimizer of the cubic through both ends' values and slopes (bisection where that minimizer is not
    well inside). On a quadratic the cubic is exact, so a small ``c2`` gives exact line searches.
    Conjugate gradients want ``c2`` about 0.1 (the default).

    Parameters
    ----------
    phi, loss0, slope0, step, c1, max_trials
        As for ``backtracking``.
    c2 : float, keyword-only
        The curvature constant, in (c1, 1).

    Returns
    -------
    LineSearchResult
    """
    step, max_trials = _check_search(slope0, step, max_trials)
    c1 = _check_open_unit_interval(c1, "c1")
    c2 = _check_open_unit_interval(c2, "c2")
    if c2 <= c1:
        raise ValueError(f"c2 must lie in (c1, 1) = ({c1}, 1), got {c2!r}")
    accept = _WolfeTest(loss0, slope0, c1, c2)
    prev = (0.0, loss0, slope0, None)
    for trial in range(max_trials):
        point = (step, *phi(step))
        if not accept.decreases(point) or (trial > 0 and point[1] >= prev[1]):
            return _zoom(phi, accept, prev, point, max_trials - trial - 1)
        if accept.flat(point):
            return LineSearchResult(step, point[1], point[3], True)
        if point[2] >= 0:
            return _zoom(phi, accept, point, prev, max_trials - trial - 1)
        prev, step = point, 2.0 * step
    return LineSearchResult(0.0, loss0, None, False)


class _WolfeTest(NamedTuple):
    """The two strong Wolfe conditions for points ``(alpha, loss, slope, grads)``."""

    loss0: float
    slope0: float
    c1: float
    c2: float

    def decreases(self, point: tuple) -> bool:
        return point[1] <= self.loss0 + self.c1 * point[0] * self.slope0

    def flat(self, point: tuple) -> bool:
        return abs(point[2]) <= -self.c2 * self.slope0


def _zoom(phi: Phi, accept: _WolfeTest, lo: tuple, hi: tuple, trials: int) -> LineSearchResult:
    """Algorithm 3.6 of Nocedal & Wright: shrink [lo, hi] (points ``(alpha, loss, slope, grads)``; ``lo``
    satisfies sufficient decrease and has the lower loss) until a point meets both conditions."""
    for _ in range(trials):
        alpha = _cubic_minimizer(lo, hi)
        point = (alpha, *phi(alpha))
        if not accept.decreases(point) or point[1] >= lo[1]:
            hi = point
            continue
        if accept.flat(point):
            return LineSearchResult(point[0], point[1], point[3], True)
        if point[2] * (hi[0] - lo[0]) >= 0:
            hi = lo
        lo = point
    return LineSearchResult(0.0, accept.loss0, None, False)


def _cubic_minimizer(a: tuple, b: tuple) -> float:
    """The minimizer of the cubic through two points' values and slopes (Nocedal & Wright, section 3.5),
    or the midpoint if it does not exist or lies within a fifth of the interval's width of either end."""
    (x_a, f_a, s_a, _), (x_b, f_b, s_b, _) = a, b
    d1 = s_a + s_b - 3.0 * (f_a - f_b) / (x_a - x_b)
    radicand = d1 * d1 - s_a * s_b
    midpoint = 0.5 * (x_a + x_b)
    if not (math.isfinite(radicand) and radicand >= 0):
        return midpoint
    d2 = math.copysign(math.sqrt(radicand), x_b - x_a)
    denominator = s_b - s_a + 2.0 * d2
    if denominator == 0:
        return midpoint
    x = x_b - (x_b - x_a) * (s_b + d2 - d1) / denominator
    margin = 0.2 * abs(x_b - x_a)
    inside = min(x_a, x_b) + margin <= x <= max(x_a, x_b) - margin
    return x if inside else midpoint


def _check_search(slope0: float, step: object, max_trials: object) -> tuple[float, int]:
    """A line search's ``(step, max_trials)`` checked, and ``slope0`` negative, else ``ValueError``."""
    if not (math.isfinite(slope0) and slope0 < 0):
        raise ValueError(f"slope0 must be negative (a descent direction), got {slope0!r}")
    return check_positive_float(step, "step"), check_positive_int(max_trials, "max_trials")


class CGResult(NamedTuple):
    """What ``conjugate_gradient`` returns; the parameters themselves are updated in place.

    Attributes
    ----------
    losses : list of float
        The loss at every iterate x_0, x_1, ..., x_K (K + 1 entries).
    grad_norms : list of float
        The global gradient norm at every iterate (K + 1 entries).
    step_sizes : list of float
        alpha_k of every accepted step (K entries).
    betas : list of float
        The beta_k that made d_k = -g_k + beta_k d_{k-1} (K entries; 0 where d_k = -g_k).
    restarts : list of bool
        Whether d_k was the steepest-descent direction -g_k (K entries; true for k = 0).
    evaluations : list of int
        For every iterate, how many ``loss_and_grads`` calls had been made when it was accepted (1 for
        x_0, the first call); with ``strong_wolfe`` and ``backtracking`` the iterate is the point of the
        last of those calls.
    calls : int
        How many times ``loss_and_grads`` was called in all.
    stopped : str
        ``"tolerance"`` (gradient norm at most ``tolerance``), ``"iterations"``, ``"calls"`` (``max_calls``
        reached) or ``"line search"`` (no step satisfied the line search's condition).
    """

    losses: list[float]
    grad_norms: list[float]
    step_sizes: list[float]
    betas: list[float]
    restarts: list[bool]
    evaluations: list[int]
    calls: int
    stopped: str


def conjugate_gradient(
    loss_and_grads: Callable[[Params], tuple[float, Params]],
    params: Params,
    *,
    iterations: int,
    line_search: Callable[..., LineSearchResult] | None = None,
    restart_every: int | None = None,
    initial_step: float = 1.0,
    tolerance: float = 0.0,
    max_calls: int | None = None,
) -> CGResult:
    r"""Minimize a loss by nonlinear conjugate gradients, Polak-Ribière+ with restarts and a line search.

    With :math:`g_k` the gradient at :math:`x_k` (all parameter arrays taken as one vector):

    .. math::
        \beta_k = \max\Big(0, \frac{g_k^\top (g_k - g_{k-1})}{g_{k-1}^\top g_{k-1}}\Big), \qquad
        d_k = -g_k + \beta_k d_{k-1}, \qquad
        x_{k+1} = x_k + \alpha_k d_k,

    with :math:`\alpha_k` from the line search along :math:`d_k`. The direction restarts at
    :math:`d_k = -g_k` (:math:`\beta_k = 0`) at k = 0, every ``restart_every`` iterations, and wherever
    :math:`d_k` would not point downhill (:math:`g_k^\top d_k \ge 0`); the "+" (the max with 0) restarts
    it too. On a quadratic with exact line searches this is linear conjugate gradients, which reaches
    the minimizer of n variables in at most n iterations. The first trial step of every search is
    ``initial_step`` at k = 0, then
    :math:`\alpha_{k-1} g_{k-1}^\top d_{k-1} / g_k^\top d_k` (Nocedal & Wright, section 3.5).

    This is a full-batch method, not an ``Optimizer``: each iteration evaluates the loss several times
    along one line.

    Parameters
    ----------
    loss_and_grads : callable
        ``loss_and_grads(params) -> (loss, grads)``: a float and a dict with the keys and shapes of
        ``params`` (for example a ``functools.partial`` of ``companion.model.sequence_loss_and_grads``).
    params : dict of arrays
        Any shapes; float arrays, updated in place to the last iterate.
    iterations : int, keyword-only
        The most iterations (line searches) K.
    line_search : callable, optional, keyword-only
        ``line_search(phi, loss0, slope0, step) -> LineSearchResult`` as ``strong_wolfe`` (the
        default, with its defaults) or ``backtracking``; ``functools.partial(strong_wolfe, c2=...)``
        changes the constants.
    restart_every : int, optional, keyword-only
        Restart with steepest descent every this many iterations; default n, the number of parameters.
    initial_step : float, keyword-only
        The first trial step of the first line search.
    tolerance : float, keyword-only
        Stop when the global gradient norm is at most this (non-negative; 0 runs all iterations).
    max_calls : int, optional, keyword-only
        Stop after the first iteration that brings the number of ``loss_and_grads`` calls to this or
        more (a budget of gradient evaluations; the last line search may overshoot it by its own calls).

    Returns
    -------
    CGResult
    """
    if not callable(loss_and_grads):
        raise ValueError("loss_and_grads must be callable as loss_and_grads(params) -> (loss, grads), "
                         f"got {loss_and_grads!r}")
    _check_step_inputs(params, params)              # float arrays, finite, updated in place
    iterations = check_positive_int(iterations, "iterations")
    search = strong_wolfe if line_search is None else line_search
    if not callable(search):
        raise ValueError(f"line_search must be callable like companion.optim.strong_wolfe, got {line_search!r}")
    size = sum(value.size for value in params.values())
    restart_every = size if restart_every is None else check_positive_int(restart_every, "restart_every")
    step = check_positive_float(initial_step, "initial_step")
    tolerance = _check_non_negative(tolerance, "tolerance")
    max_calls = None if max_calls is None else check_positive_int(max_calls, "max_calls")
    calls = [0]
    evaluate = _counted(loss_and_grads, params, calls)
    start = {key: value.copy() for key, value in params.items()}
    loss, grads = evaluate(start)
    if not math.isfinite(loss):
        raise ValueError(f"loss_and_grads must return a finite loss at the starting params, got {loss!r}")
    result = CGResult([loss], [_global_norm(grads)], [], [], [], [1], 0, "iterations")
    direction, prev_grads, prev_slope = None, None, None
    for k in range(iterations):
        if result.grad_norms[-1] <= tolerance:
            return result._replace(calls=calls[0], stopped="tolerance")
        restart = k % restart_every == 0
        direction, beta, slope = next_direction(grads, None if restart else prev_grads, direction)
        if k > 0:
            step = result.step_sizes[-1] * prev_slope / slope                 # Nocedal & Wright's choice
        x = {key: value.copy() for key, value in params.items()}
        found = search(_line(evaluate, x, direction), loss, slope, step)
        if not found.accepted:
            return result._replace(calls=calls[0], stopped="line search")
        for key in params:
            params[key][...] = x[key] + found.step * direction[key]
        prev_grads, prev_slope = grads, slope
        loss, grads = found.loss, found.grads
        _record(result, loss, grads, found.step, beta, calls[0])
        if max_calls is not None and calls[0] >= max_calls:
            return result._replace(calls=calls[0], stopped="calls")
    stopped = "tolerance" if result.grad_norms[-1] <= tolerance else "iterations"
    return result._replace(calls=calls[0], stopped=stopped)


def _line(evaluate: Callable[[Params], tuple[float, Params]], x: Params, direction: Params) -> Phi:
    """phi(alpha) = (L(x + alpha d), grads . d, grads) for a line search."""
    def phi(alpha: float) -> tuple[float, float, Params]:
        loss, grads = evaluate(_combine(x, 1.0, direction, alpha))
        return loss, _dot(grads, direction), grads

    return phi


def next_direction(grads: Params, prev_grads: Params | None, prev_direction: Params | None
                   ) -> tuple[Params, float, float]:
    """The search direction of ``conjugate_gradient``: -g + beta d_prev with Polak-Ribiere+'s beta, or -g
    (beta = 0) where ``prev_grads`` is ``None`` (a restart) or where the combination would not point
    downhill.

    Parameters
    ----------
    grads : dict of arrays
        g, the gradient at the current point (any shapes, taken as one vector).
    prev_grads, prev_direction : dict of arrays or None
        The previous gradient and direction, keyed and shaped as ``grads``; ``None`` at a restart.

    Returns
    -------
    direction : dict of arrays
        d, keyed and shaped as ``grads``.
    beta : float
        The beta used (0 where the direction restarted).
    slope : float
        g . d, negative.
    """
    beta = 0.0 if prev_grads is None else _polak_ribiere_plus(grads, prev_grads)
    direction = _combine(grads, -1.0, prev_direction if beta > 0 else None, beta)
    slope = _dot(grads, direction)
    if slope >= 0:                                                           # not downhill: restart
        beta, direction = 0.0, _combine(grads, -1.0, None, 0.0)
        slope = _dot(grads, direction)
    return direction, beta, slope


def _record(result: CGResult, loss: float, grads: Params, step: float, beta: float, call: int) -> None:
    """Append one iteration to the lists of ``result``."""
    result.losses.append(loss)
    result.grad_norms.append(_global_norm(grads))
    result.step_sizes.append(step)
    result.betas.append(beta)
    result.restarts.append(beta == 0.0)
    result.evaluations.append(call)


def _counted(loss_and_grads: Callable[[Params], tuple[float, Params]], like: Params,
             calls: list[int]) -> Callable[[Params], tuple[float, Params]]:
    """``loss_and_grads`` with its results checked (a finite float or inf, grads like ``like``) and its calls
    counted in ``calls[0]``."""
    shapes = {key: value.shape for key, value in like.items()}

    def evaluate(point: Params) -> tuple[float, Params]:
        calls[0] += 1
        loss, grads = loss_and_grads(point)
        loss = float(loss)
        if math.isnan(loss):
            raise ValueError(f"loss_and_grads returned a NaN loss at call {calls[0]}")
        if not math.isfinite(loss):
            return loss, {key: np.zeros(shape) for key, shape in shapes.items()}   # rejected by the search
        return loss, check_params(grads, shapes, "grads")

    return evaluate


def _polak_ribiere_plus(grads: Params, prev_grads: Params) -> float:
    """beta = max(0, g . (g - g_prev) / (g_prev . g_prev)) over all arrays together."""
    return max(0.0, (_dot(grads, grads) - _dot(grads, prev_grads)) / _dot(prev_grads, prev_grads))


def _combine(a: Params, scale_a: float, b: Params | None, scale_b: float) -> Params:
    """``scale_a * a + scale_b * b`` array by array (``b`` ``None``: ``scale_a * a``), new arrays."""
    if b is None:
        return {key: scale_a * value for key, value in a.items()}
    return {key: scale_a * value + scale_b * b[key] for key, value in a.items()}


def _dot(a: Params, b: Params) -> float:
    """The inner product of two dicts of arrays taken as one vector each."""
    return float(sum(np.vdot(value, b[key]) for key, value in a.items()))


def _check_open_unit_interval(value: object, name: str) -> float:
    """Return ``value`` as a float if it lies in (0, 1), else raise ``ValueError``."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) or not 0 < value < 1:
        raise ValueError(f"{name} must be a number in (0, 1), got {value!r}")
    return float(value)


def _check_non_negative(value: object, name: str) -> float:
    """Return ``value`` as a float if it is finite and non-negative, else raise ``ValueError``."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a finite non-negative number, got {value!r}")
    return float(value)
