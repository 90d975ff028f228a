"""Continuous-time BPTT: a CTRNN integrated by explicit Runge-Kutta, and its gradient by two routes.

The network is ``companion.cells.CTRNN``, ``dh/dt = f(h, x(t)) = (-h + W_hh phi(h) + W_xh x(t) + b_h) / tau``,
started from ``h(0) = h0`` and integrated up to ``t_end`` on a grid of step ``dt`` (chapter
"Continuous-time BPTT"). The loss may hold two kinds of terms, on the first ``n_out`` units (the
network's outputs)::

    L = 1/2 sum_k ||h_out(t_k) - y_k||^2  +  1/2 integral_0^t_end ||h_out(t) - y(t)||^2 dt

measurements at times ``t_k`` that need not lie on the uniform grid (the solver's grid gets them as extra
points), and a running loss. Two routes give dL/dtheta and dL/dh0:

* ``discretized_gradients``, "discretize, then differentiate": back-propagation through the solver's
  steps and stages, the exact gradient of the computed (discrete) loss. With ``method="euler"`` it is BPTT
  on ``companion.cells.EulerCTRNN``.
* ``adjoint_gradients``, "differentiate, then discretize": the adjoint equation
  ``d hbar/dt = -F^T hbar - ∂l/∂h`` (F = ∂f/∂h) integrated backward in time with the same Runge-Kutta
  method, with jumps ``hbar(t_k-) = hbar(t_k+) + ∂m_k/∂h`` at the measurement times (Fujarewicz &
  Galuszka), and ``dL/dtheta = integral_0^t_end (∂f/∂theta)^T hbar dt`` gathered on the way. The state it needs is either stored
  at every grid point (``recover="checkpoints"``) or integrated backward beside the adjoint from the
  final state, reset to the forward pass's value at the measurement times (``recover="reverse"``, the
  scheme of Chen et al. 2018 and ``torchdiffeq.odeint_adjoint``).

Both routes converge to the gradient of the continuous problem at the order of the method as dt shrinks.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .cells.ctrnn import CTRNN
from .types import Array, Params
from .validation import as_float_array, check_params, check_positive_float, check_shape


class Tableau(NamedTuple):
    """An explicit Runge-Kutta method: stage ``i`` evaluates f at ``t + c[i] dt`` and
    ``h + dt sum_j a[i, j] k_j`` (``a`` strictly lower triangular); the step is ``h + dt sum_i b[i] k_i``."""

    a: Array       # (s, s)
    b: Array       # (s,)
    c: Array       # (s,)
    order: int     # the global order of accuracy


TABLEAUX: dict[str, Tableau] = {
    "euler": Tableau(np.zeros((1, 1)), np.array([1.0]), np.array([0.0]), 1),
    # the classic fourth-order method
    "rk4": Tableau(np.array([[0, 0, 0, 0], [0.5, 0, 0, 0], [0, 0.5, 0, 0], [0, 0, 1, 0]], dtype=float),
                   np.array([1, 2, 2, 1]) / 6, np.array([0, 0.5, 0.5, 1.0]), 4),
    # Kutta's 3/8 rule, the method behind torchdiffeq's "rk4"
    "rk4-38": Tableau(np.array([[0, 0, 0, 0], [1 / 3, 0, 0, 0], [-1 / 3, 1, 0, 0], [1, -1, 1, 0]], dtype=float),
                      np.array([1, 3, 3, 1]) / 8, np.array([0, 1 / 3, 2 / 3, 1.0]), 4),
}
"""The integrators by name: ``"euler"``, ``"rk4"`` and ``"rk4-38"``."""

RECOVERIES = ("checkpoints", "reverse")


@dataclass(frozen=True)
class Loss:
    """``L = 1/2 sum_k ||h(t_k)[:, :n_out] - targets[k]||^2 + 1/2 int_0^t_end ||h(t)[:, :n_out] - running(t)||^2 dt``.

    Attributes
    ----------
    times : array (K,) or None
        Measurement times, strictly increasing, within [0, t_end].
    targets : array (K, B, n_out) or None
        What the outputs should read at those times (given together with ``times``).
    running : callable or None
        ``running(t) -> (B, n_out)``, the target of the running (integral) loss.

    At least one of the two kinds must be given; both use the same n_out.
    """

    times: Array | None = None
    targets: Array | None = None
    running: Callable[[float], Array] | None = None


class Trajectory(NamedTuple):
    """A solution on the solver's grid: ``times`` (N+1,) from 0 to t_end, ``hs`` (N+1, B, H) with
    ``hs[0] = h0``."""

    times: Array
    hs: Array


class GradientStats(NamedTuple):
    """What a gradient computation cost.

    ``field_evaluations``: evaluations of f in the forward pass and, for the adjoint, in the backward
    pass; ``vjp_evaluations``: products a ∂f/∂(h, theta); ``stored_bytes``: what the forward pass kept for
    the backward pass (states, stage values, inputs).
    """

    field_evaluations: int
    vjp_evaluations: int
    stored_bytes: int


class ContinuousGradients(NamedTuple):
    """The loss, its gradients and the adjoint on the grid.

    ``grads``: dL/dtheta keyed like the parameters; ``dh0``: dL/dh(0) ``(B, H)``; ``times`` (N+1,): the
    solver's grid; ``adjoints`` (N+1, B, H): dL/dh at every grid time, taken just before it (the jump of
    a measurement at that time included), so ``adjoints[0]`` is ``dh0`` (``None`` when the route was
    called with ``keep_adjoints=False``, which keeps its memory what ``stats.stored_bytes`` says);
    ``stats``: what it cost.
    """

    loss: float
    grads: Params
    dh0: Array
    times: Array
    adjoints: Array | None
    stats: GradientStats


# ----- the grid, the loss and the inputs, checked -----------------------------------------------------------
def time_grid(t_end: float, dt: float, times: Array | None = None) -> Array:
    """The solver's grid: ``0, dt, 2 dt, ...`` up to ``t_end`` (the last step shortened if ``dt`` does not
    divide ``t_end``), with the measurement ``times`` (K,) added as grid points (an interior grid point
    within 1e-9 dt of a measurement time is moved onto it). Returns ``(N+1,)``, strictly increasing."""
    t_end = check_positive_float(t_end, "t_end")
    dt = check_positive_float(dt, "dt")
    ratio = t_end / dt
    steps = max(1, round(ratio) if abs(ratio - round(ratio)) <= 1e-9 * max(1.0, ratio) else math.ceil(ratio))
    grid = np.arange(steps + 1) * dt
    grid[-1] = t_end
    if times is None or len(times) == 0:
        return grid
    extra = []
    for t in np.asarray(times, dtype=float):
        nearest = int(np.argmin(np.abs(grid - t)))
        if 0 < nearest < steps and abs(grid[nearest] - t) <= 1e-9 * dt:
            grid[nearest] = t
        else:
            extra.append(t)
    return np.union1d(grid, extra)


class Problem(NamedTuple):
    """A checked problem (``check_problem``): the grid, the measurement steps, the readers of x(t) and y(t)."""

    network: CTRNN
    params: Params
    tableau: Tableau
    grid: Array                                   # (N+1,)
    h0: Array                                     # (B, H)
    measured: dict[int, Array]                    # grid index -> target (B, n_out)
    n_out: int
    read_x: Callable[[float], Array]              # t -> (B, n_in)
    read_y: Callable[[float], Array] | None       # t -> (B, n_out), the running loss's target


def check_problem(network: object, params: object, h0: object, t_end: object, dt: object, loss: object,
                  inputs: object, method: object) -> Problem:
    """Check the arguments of the routes (each ``ValueError`` names the argument) and build the grid.

    Arguments as ``loss_value``; ``loss`` may also be ``None`` (no loss: ``solve``). Returns the
    ``Problem``: checked parameters and h0 ``(B, H)``, the tableau, the grid ``(N+1,)`` with the measurement
    times in it, ``measured`` (grid index -> target ``(B, n_out)``), and functions that read x(t)
    ``(B, n_in)`` and y(t) ``(B, n_out)`` with their shapes checked on every call.
    """
    if not isinstance(network, CTRNN):
        raise ValueError(f"network must be a companion.cells.CTRNN, got {type(network).__name__}")
    params = check_params(params, network.param_shapes())
    network.check_time_constants(params)
    h0 = as_float_array(h0, "h0")
    check_shape(h0, (None, network.n_hidden), "h0", "(B, n_hidden)")
    B, H = h0.shape
    t_end = check_positive_float(t_end, "t_end")
    check_positive_float(dt, "dt")
    tableau = _check_method(method)
    if inputs is None:
        zeros = np.zeros((B, network.n_in))
        read_x = lambda t: zeros   # noqa: E731
    elif callable(inputs):
        read_x = _reader(inputs, (B, network.n_in), "inputs(t)", "(B, n_in)")
    else:
        raise ValueError(f"inputs must be None (no input) or a function of t returning (B, n_in), got {inputs!r}")
    if loss is None:
        return Problem(network, params, tableau, time_grid(t_end, dt), h0, {}, 0, read_x, None)
    if not isinstance(loss, Loss):
        raise ValueError(f"loss must be a companion.continuous.Loss, got {type(loss).__name__}")
    if loss.times is None and loss.running is None:
        raise ValueError("loss must have measurements (times and targets) or a running target, or both")
    if (loss.times is None) != (loss.targets is None):
        raise ValueError("loss.times and loss.targets go together: give both or neither")
    n_out = None
    times = np.zeros(0)
    targets = np.zeros((0, B, 1))
    if loss.times is not None:
        times = check_times(loss.times, t_end, "loss.times")
        targets = as_float_array(loss.targets, "loss.targets")
        check_shape(targets, (times.size, B, None), "loss.targets", "(K, B, n_out)")
        n_out = targets.shape[2]
    read_y = None
    if loss.running is not None:
        if not callable(loss.running):
            raise ValueError(f"loss.running must be a function of t returning (B, n_out), got {loss.running!r}")
        n_out = n_out if n_out is not None else np.shape(loss.running(0.0))[-1]
        read_y = _reader(loss.running, (B, n_out), "loss.running(t)", "(B, n_out)")
    if not 1 <= n_out <= H:
        raise ValueError(f"the loss's targets must have 1 <= n_out <= n_hidden = {H} outputs, got {n_out}")
    grid = time_grid(t_end, dt, times)
    measured = {int(np.searchsorted(grid, t)): target for t, target in zip(times, targets)}
    return Problem(network, params, tableau, grid, h0, measured, n_out, read_x, read_y)


def check_times(times: object, t_end: float, name: str = "times") -> Array:
    """``times`` as a float array ``(K,)``, strictly increasing and within [0, t_end], else ``ValueError``."""
    times = as_float_array(times, name)
    check_shape(times, (None,), name, "(K,)")
    if np.any(np.diff(times) <= 0):
        raise ValueError(f"{name} must be strictly increasing, got {times}")
    if times.size and (times[0] < 0 or times[-1] > t_end):
        raise ValueError(f"{name} must lie within [0, t_end] = [0, {t_end}], got {times[0]} .. {times[-1]}")
    return times


def _check_method(method: object) -> Tableau:
    """The tableau ``method`` names, or ``method`` itself if it is a valid explicit ``Tableau``."""
    if isinstance(method, Tableau):
        a, b, c = (np.asarray(part, dtype=float) for part in method[:3])
        s = b.shape[0] if b.ndim == 1 else 0
        if s == 0 or a.shape != (s, s) or c.shape != (s,) or np.any(np.triu(a) != 0):
            raise ValueError("method must be an explicit Tableau: a (s, s) strictly lower triangular, b (s,), c (s,); "
                             f"got shapes {a.shape}, {b.shape}, {c.shape}")
        return Tableau(a, b, c, method.order)
    if isinstance(method, str) and method in TABLEAUX:
        return TABLEAUX[method]
    raise ValueError(f"method must be one of {sorted(TABLEAUX)} or a Tableau, got {method!r}")


def _reader(function: Callable[[float], Array], shape: tuple[int, int], name: str, meaning: str) -> Callable[[float], Array]:
    """``function`` wrapped so that every value it returns is checked to be a finite float array of ``shape``."""

    def read(t: float) -> Array:
        value = as_float_array(function(t), name)
        check_shape(value, shape, name, meaning)
        return value

    return read


def _output_error(problem: Problem, h: Array, target: Array) -> Array:
    """``∂/∂h of 1/2 ||h[:, :n_out] - target||^2``: the error on the outputs, zero on the other units, (B, H)."""
    error = np.zeros_like(h)
    error[:, :problem.n_out] = h[:, :problem.n_out] - target
    return error


# ----- the forward pass --------------------------------------------------------------------------------------
class _Stage(NamedTuple):
    """One Runge-Kutta stage: where f was evaluated (state, input, time) and what it gave."""

    h: Array        # (B, H)
    x: Array        # (B, n_in)
    rate: Array     # phi(h), (B, H)
    f: Array        # (B, H)
    t: float


def _combine(h: Array, step: float, weights: Array, ks: list[Array]) -> Array:
    """``h + step * sum_j weights[j] ks[j]`` over the nonzero weights."""
    for weight, k in zip(weights, ks):
        if weight != 0.0:
            h = h + (step * weight) * k
    return h


def _rk_step(problem: Problem, h: Array, t: float, step: float) -> tuple[Array, list[_Stage]]:
    """One Runge-Kutta step of size ``step`` (negative: backward in time) from state ``h`` at time ``t``."""
    a, b, c, _ = problem.tableau
    stages: list[_Stage] = []
    for i in range(len(b)):
        h_i = _combine(h, step, a[i, :i], [stage.f for stage in stages])
        t_i = t + c[i] * step
        x_i = problem.read_x(t_i)
        f_i, rate_i = problem.network.field(problem.params, h_i, x_i)
        stages.append(_Stage(h_i, x_i, rate_i, f_i, t_i))
    return _combine(h, step, b, [stage.f for stage in stages]), stages


def _forward(problem: Problem, keep: str) -> tuple[float, Array, list]:
    """Integrate over the grid; returns ``(loss, final state, kept)``.

    ``keep``: ``"stages"`` keeps every step's stages (and the running targets read there), ``"states"``
    every grid state, ``"measured"`` the states at measurement times only (``kept`` is then a dict).
    """
    h, grid, b = problem.h0, problem.grid, problem.tableau.b
    loss = 0.0
    kept: list | dict = {} if keep == "measured" else []
    for n in range(len(grid)):
        if n in problem.measured:
            loss += 0.5 * float(np.sum(_output_error(problem, h, problem.measured[n]) ** 2))
            if keep == "measured":
                kept[n] = h
        if keep == "states":
            kept.append(h)
        if n == len(grid) - 1:
            break
        step = grid[n + 1] - grid[n]
        h_next, stages = _rk_step(problem, h, grid[n], step)
        targets = []
        if problem.read_y is not None:   # the running loss, by the method's own quadrature
            for weight, stage in zip(b, stages):
                targets.append(problem.read_y(stage.t))
                loss += 0.5 * step * weight * float(np.sum((stage.h[:, :problem.n_out] - targets[-1]) ** 2))
        if keep == "stages":
            kept.append((stages, targets))
        h = h_next
    return loss, h, kept


# ----- the public routes ------------------------------------------------------------------------------------
def solve(network: CTRNN, params: Params, h0: Array, t_end: float, dt: float, *,
          inputs: Callable[[float], Array] | None = None, method: str = "rk4",
          times: Array | None = None) -> Trajectory:
    """Integrate ``dh/dt = f(h, x(t))`` from ``h(0) = h0`` ``(B, H)`` to ``t_end`` with steps ``dt``.

    Parameters
    ----------
    network : CTRNN
        The vector field.
    params : dict of arrays
        ``W_hh`` (H, H), ``W_xh`` (H, n_in), ``b_h`` (H,), ``tau`` (H,) > 0.
    h0 : array, shape (B, H)
        The initial state.
    t_end, dt : float
        The end of the time span (it starts at 0) and the step (> 0).
    inputs : callable, optional
        ``inputs(t) -> (B, n_in)``, the input x(t); ``None`` is no input.
    method : {"euler", "rk4", "rk4-38"} or Tableau
        The Runge-Kutta method, by name or as an explicit tableau.
    times : array (K,), optional
        Times to add to the grid (strictly increasing, within [0, t_end]).

    Returns
    -------
    Trajectory
        ``times`` (N+1,) and ``hs`` (N+1, B, H).
    """
    problem = check_problem(network, params, h0, t_end, dt, None, inputs, method)
    if times is not None:
        problem = problem._replace(grid=time_grid(t_end, dt, check_times(times, problem.grid[-1])))
    _, _, states = _forward(problem, "states")
    return Trajectory(problem.grid, np.stack(states))


def loss_value(network: CTRNN, params: Params, h0: Array, t_end: float, dt: float, loss: Loss, *,
               inputs: Callable[[float], Array] | None = None, method: str = "rk4") -> float:
    """The loss of the solution computed with ``method`` and step ``dt`` (arguments as ``solve``; the running
    loss integrated by the method's own quadrature, the measurement times added to the grid)."""
    return _forward(check_problem(network, params, h0, t_end, dt, loss, inputs, method), "measured")[0]


def discretized_gradients(network: CTRNN, params: Params, h0: Array, t_end: float, dt: float, loss: Loss, *,
                          inputs: Callable[[float], Array] | None = None, method: str = "rk4",
                          keep_adjoints: bool = True) -> ContinuousGradients:
    """"Discretize, then differentiate": back-propagate through every step and stage of the solver.

    Arguments as ``loss_value``, and ``keep_adjoints``: return the adjoint at every grid time (for plots;
    ``(N+1, B, H)`` more memory). The result is the exact gradient of the discrete loss that ``loss_value``
    computes: for a step ``h' = h + dt sum_i b_i k_i`` with stages ``k_i = f(Y_i)``,
    ``Y_i = h + dt sum_j a_ij k_j``, the stage adjoints are, for i from the last stage down,
    ``kbar_i = dt b_i hbar' + dt sum_{l>i} a_li Ybar_l`` and ``Ybar_i = kbar_i ∂f/∂h(Y_i)`` (plus the running
    loss's ``dt b_i ∂l/∂h(Y_i)``), and ``hbar = hbar' + sum_i Ybar_i`` (plus a measurement's jump). The
    forward pass keeps every stage (state, input, phi, f).

    Returns
    -------
    ContinuousGradients
    """
    problem = check_problem(network, params, h0, t_end, dt, loss, inputs, method)
    value, final, kept = _forward(problem, "stages")
    a, b, _, _ = problem.tableau
    grid, s = problem.grid, len(b)
    grads = {key: np.zeros_like(value_) for key, value_ in problem.params.items()}
    adjoints = np.empty((len(grid),) + final.shape) if keep_adjoints else None
    h_bar = _jump(problem, len(grid) - 1, final, np.zeros_like(final))
    if keep_adjoints:
        adjoints[-1] = h_bar
    for n in reversed(range(len(grid) - 1)):
        step = grid[n + 1] - grid[n]
        stages, targets = kept[n]
        stage_bars: list[Array | None] = [None] * s
        for i in reversed(range(s)):
            k_bar = _combine((step * b[i]) * h_bar, step, a[i + 1:, i], stage_bars[i + 1:])
            stage = stages[i]
            y_bar, d_params, _ = problem.network.vjp(problem.params, stage.rate, stage.x, stage.f, k_bar)
            _accumulate(grads, d_params)
            if targets:
                y_bar = y_bar + (step * b[i]) * _output_error(problem, stage.h, targets[i])
            stage_bars[i] = y_bar
        h_bar = _combine(h_bar, 1.0, np.ones(s), stage_bars)
        h_bar = _jump(problem, n, stages[0].h, h_bar)
        if keep_adjoints:
            adjoints[n] = h_bar
    stored = _distinct_bytes([array for stages, targets in kept for stage in stages
                              for array in (stage.h, stage.x, stage.rate, stage.f)] + [t for _, ts in kept for t in ts])
    evaluations = s * (len(grid) - 1)
    return ContinuousGradients(value, grads, h_bar, grid, adjoints, GradientStats(evaluations, evaluations, stored))


def adjoint_gradients(network: CTRNN, params: Params, h0: Array, t_end: float, dt: float, loss: Loss, *,
                      inputs: Callable[[float], Array] | None = None, method: str = "rk4",
                      recover: str = "checkpoints", keep_adjoints: bool = True) -> ContinuousGradients:
    """"Differentiate, then discretize": integrate the adjoint equation backward in time.

    Arguments as ``loss_value``, ``keep_adjoints`` as ``discretized_gradients``, and ``recover``: how the
    backward pass gets the state h(t) that the adjoint equation is linearized at. From t_end down to 0, one step of ``method`` (step -dt) integrates::

        dh/dt = f(h, x(t))                          (the state, backward)
        d hbar/dt = -F^T hbar - ∂l/∂h               (the adjoint, F = ∂f/∂h; l the running loss's integrand)
        dg/dt = -(∂f/∂theta)^T hbar                 (g(0) = dL/dtheta, from g(t_end) = 0)

    and at a measurement time ``t_k`` the adjoint jumps, ``hbar(t_k-) = hbar(t_k+) + (h_out(t_k) - y_k)``
    on the outputs. ``recover="checkpoints"``: the forward pass stores h at every grid point and each backward
    step starts from the stored state; ``"reverse"``: it stores only the final state and the measured
    states, integrates h backward from t_end and resets it to the forward value at measurement times
    (the algorithm of ``torchdiffeq.odeint_adjoint``, which resets at the output times it is given; its
    backward grid coincides with this one when every measurement time is a multiple of ``dt``).

    Returns
    -------
    ContinuousGradients
        The gradient of the continuous problem up to the method's error, O(dt^order).
    """
    if recover not in RECOVERIES:
        raise ValueError(f"recover must be one of {RECOVERIES}, got {recover!r}")
    problem = check_problem(network, params, h0, t_end, dt, loss, inputs, method)
    value, final, kept = _forward(problem, "states" if recover == "checkpoints" else "measured")
    b = problem.tableau.b
    grid, s = problem.grid, len(b)
    grads = {key: np.zeros_like(value_) for key, value_ in problem.params.items()}
    adjoints = np.empty((len(grid),) + final.shape) if keep_adjoints else None
    h = final
    adjoint = _jump(problem, len(grid) - 1, final, np.zeros_like(final))
    if keep_adjoints:
        adjoints[-1] = adjoint
    for n in reversed(range(len(grid) - 1)):
        if recover == "checkpoints":
            h = kept[n + 1]
        step = grid[n] - grid[n + 1]                       # negative: backward in time
        h, adjoint = _adjoint_step(problem, h, adjoint, grid[n + 1], step, grads)
        if n in problem.measured:
            h = kept[n] if recover == "reverse" else h
            adjoint = _jump(problem, n, kept[n], adjoint)
        if keep_adjoints:
            adjoints[n] = adjoint
    stored = _distinct_bytes(list(kept if recover == "checkpoints" else kept.values()) + [final])
    evaluations = s * (len(grid) - 1)
    return ContinuousGradients(value, grads, adjoint, grid, adjoints,
                               GradientStats(2 * evaluations, evaluations, stored))


def _adjoint_step(problem: Problem, h: Array, adjoint: Array, t: float, step: float,
                  grads: Params) -> tuple[Array, Array]:
    """One Runge-Kutta step of size ``step`` < 0 of the state and the adjoint, adding the step's share of
    ``integral (∂f/∂theta)^T hbar dt`` (= -step sum_i b_i (∂f/∂theta)^T hbar_i at the stages) into ``grads``."""
    a, b, c, _ = problem.tableau
    h_rates: list[Array] = []
    a_rates: list[Array] = []
    for i in range(len(b)):
        h_i = _combine(h, step, a[i, :i], h_rates)
        adjoint_i = _combine(adjoint, step, a[i, :i], a_rates)
        t_i = t + c[i] * step
        x_i = problem.read_x(t_i)
        f_i, rate_i = problem.network.field(problem.params, h_i, x_i)
        d_h, d_params, _ = problem.network.vjp(problem.params, rate_i, x_i, f_i, adjoint_i)
        if problem.read_y is not None:
            d_h = d_h + _output_error(problem, h_i, problem.read_y(t_i))
        _accumulate(grads, d_params, -step * b[i])
        h_rates.append(f_i)
        a_rates.append(-d_h)
    return _combine(h, step, b, h_rates), _combine(adjoint, step, b, a_rates)


def _jump(problem: Problem, index: int, h: Array, adjoint: Array) -> Array:
    """The adjoint just before grid point ``index``: ``adjoint`` plus a measurement's ∂m/∂h there, if any."""
    if index not in problem.measured:
        return adjoint
    return adjoint + _output_error(problem, h, problem.measured[index])


def _distinct_bytes(arrays: list[Array]) -> int:
    """The bytes of ``arrays``, each distinct array counted once (the zero input is one array for every
    stage; the final state may also be a measured one)."""
    return sum({id(array): array.nbytes for array in arrays}.values())


def _accumulate(total: Params, part: Params, weight: float = 1.0) -> None:
    """``total[key] += weight * part[key]`` for every key, in place."""
    for key, value in part.items():
        total[key] += weight * value if weight != 1.0 else value
