"""The grader of the assignment "The continuous-time adjoint" (``assignments/source/continuous_adjoint``).

The student writes, for the tanh CTRNN of the chapter "Continuous-time BPTT",
``tau ⊙ dh/dt = -h + W_hh tanh(h) + W_xh x(t) + b_h``, integrated by Euler's method on a grid
``t_0 = 0 < ... < t_N = t_end`` (the notebook gives the solver and the product ``F(h)^T hbar``), with the
loss ``L = 1/2 sum_k ||h_out(t_k) - y_k||^2`` at measurement times on the grid:

* ``adjoint_path(params, hs, times, measured, targets) -> adjoints``: the adjoint ``hbar(t_n)`` just before
  every grid time, from explicit Euler steps of the adjoint equation backward in time with the jumps at
  the measurements;
* ``parameter_gradients(params, hs, times, xs, adjoints) -> grads``: ``integral (∂f/∂theta)^T hbar dt`` by
  the rectangle rule at each step's right end;
* ``ctrnn_gradients(params, h0, times, xs, measured, targets) -> (loss, grads, dh0)``: the whole route.

That scheme is exactly ``companion.continuous.adjoint_gradients(..., method="euler",
recover="checkpoints")``, the oracle of every check::

    hbar_N = dm/dh(t_N)  (0 without a measurement at t_end)
    hbar_n = hbar_{n+1} + (t_{n+1} - t_n) F(h_{n+1})^T hbar_{n+1} + dm/dh(t_n)   for n = N-1 .. 0
    dL/dtheta = sum_{n=1}^{N} (t_n - t_{n-1}) (∂f/∂theta at h_n, x(t_n))^T hbar_n,   dL/dh(0) = hbar_0

Each check draws problems of random shapes from its seeds and raises ``GradingError`` saying which
quantity is wrong, where (the grid time at which the adjoint first goes wrong, the step whose term of the
integral is wrong) and on which problem.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import NamedTuple

import numpy as np

from .. import continuous
from ..cells.ctrnn import CTRNN
from ..types import Array, Params
from .core import (
    GradingError,
    as_answer,
    as_dict,
    as_tuple,
    call_student,
    check_names,
    first_wrong_step,
    is_close,
    problem_text,
)

#: the parameter keys of the CTRNN, in the order of the notebook
PARAMS = ("W_hh", "W_xh", "b_h", "tau")
#: each parameter's shape in symbols, for messages
SHAPES = {"W_hh": "(H, H)", "W_xh": "(H, n_in)", "b_h": "(H,)", "tau": "(H,)"}
#: what each parameter's term of the integral is, for messages (g = hbar ⊘ tau)
PRODUCTS = {
    "W_hh": "the sum over the batch of g tanh(h)^T",
    "W_xh": "the sum over the batch of g x^T",
    "b_h": "the sum over the batch of g",
    "tau": "the sum over the batch of -g ⊙ f(h, x), since ∂f_i/∂tau_i = -f_i / tau_i",
}


class Problem(NamedTuple):
    """One random problem on a uniform grid with measurements on it.

    Attributes
    ----------
    params : dict of arrays
        ``W_hh`` (H, H), ``W_xh`` (H, n_in), ``b_h`` (H,), ``tau`` (H,) > 0.
    h0 : array (B, H)
        The initial state.
    times : array (N+1,)
        The grid, ``times[0] = 0`` to ``times[N] = t_end``.
    xs : array (N+1, B, n_in)
        The input sampled on the grid, ``xs[n] = x(t_n)``.
    measured : int array (K,)
        The grid indices of the measurement times, strictly increasing.
    targets : array (K, B, n_out)
        What the outputs ``h[:, :n_out]`` should read at those times.
    seed : int
        The seed it was drawn from.
    final_only : bool
        Whether it was drawn with ``final_only=True``.
    """

    params: Params
    h0: Array
    times: Array
    xs: Array
    measured: Array
    targets: Array
    seed: int
    final_only: bool

    @property
    def text(self) -> str:
        """Where a message's problem comes from and what it is."""
        N, (_, B, n_out), (_, n_in) = len(self.times) - 1, self.targets.shape, self.params["W_xh"].shape
        call = f"draw_problem({self.seed}{', final_only=True' if self.final_only else ''})"
        moments = ", ".join(f"{self.times[n]:g}" for n in self.measured)
        sizes = problem_text(N=N, B=B, n_in=n_in, H=self.h0.shape[1], n_out=n_out)
        return (f"on the problem of seed {self.seed} {sizes}, "
                f"dt = {self.times[1]:g}, measurements at t = {moments} (grade.{call} gives it)")


class Reference(NamedTuple):
    """What the companion computes for a problem: the states ``hs`` (N+1, B, H), the loss, the adjoints
    ``(N+1, B, H)`` just before each grid time, dL/dtheta keyed like the parameters, dL/dh(0) ``(B, H)``."""

    hs: Array
    loss: float
    adjoints: Array
    grads: Params
    dh0: Array


def draw_problem(seed: int, *, final_only: bool = False) -> Problem:
    """A problem of random shape drawn from ``seed``.

    N in 8..16 Euler steps of dt in {0.05, 0.1, 0.2}; B, n_in in 1..3, H in 2..5, n_out in 1..min(H, 3).
    ``final_only``: one measurement, at t_end. Otherwise two or three at interior grid times, plus one at
    t = 0 when ``seed`` is even and one at t_end unless ``seed % 3 == 2`` (so the visible seeds 0, 1, 2
    show every case).
    """
    rng = np.random.default_rng(seed)
    N, B, n_in, H = (int(rng.integers(low, high + 1)) for low, high in ((8, 16), (1, 3), (1, 3), (2, 5)))
    n_out = int(rng.integers(1, min(H, 3) + 1))
    dt = float(rng.choice([0.05, 0.1, 0.2]))
    times = continuous.time_grid(N * dt, dt)
    params = {"W_hh": rng.normal(scale=1.5 / np.sqrt(H), size=(H, H)), "W_xh": rng.normal(size=(H, n_in)),
              "b_h": 0.5 * rng.normal(size=H), "tau": rng.uniform(0.5, 2.0, size=H)}
    frequencies, phases = rng.uniform(0.5, 3.0, size=(B, n_in)), rng.uniform(0.0, 2 * np.pi, size=(B, n_in))
    xs = np.sin(frequencies * times[:, None, None] + phases)
    if final_only:
        measured = np.array([N])
    else:
        interior = rng.choice(np.arange(1, N), size=int(rng.integers(2, 4)), replace=False)
        ends = ([0] if seed % 2 == 0 else []) + ([N] if seed % 3 != 2 else [])
        measured = np.sort(np.concatenate([interior, ends])).astype(int)
    targets = 0.5 * rng.normal(size=(len(measured), B, n_out))
    return Problem(params, rng.normal(size=(B, H)), times, xs, measured, targets, seed, final_only)


def _network(problem: Problem) -> CTRNN:
    """The companion's CTRNN of the problem's shapes (tanh)."""
    return CTRNN(problem.xs.shape[2], problem.h0.shape[1])


def _inputs(problem: Problem) -> Callable[[float], Array]:
    """x(t) for the companion: ``xs[n]`` at the grid time ``t = times[n]`` (Euler reads x only there)."""

    def read(t: float) -> Array:
        n = int(np.searchsorted(problem.times, t))
        if n == len(problem.times) or problem.times[n] != t:
            raise RuntimeError(f"the grader's solver read x at t = {t!r}, off the problem's grid")
        return problem.xs[n]

    return read


def reference(problem: Problem) -> Reference:
    """The companion's answer: ``continuous.solve`` and ``continuous.adjoint_gradients`` with Euler's method
    and the state checkpointed at every grid time."""
    network, read_x = _network(problem), _inputs(problem)
    t_end, dt = problem.times[-1], problem.times[1] - problem.times[0]
    loss = continuous.Loss(problem.times[problem.measured], problem.targets)
    result = continuous.adjoint_gradients(network, problem.params, problem.h0, t_end, dt, loss, inputs=read_x,
                                          method="euler", recover="checkpoints")
    if not np.array_equal(result.times, problem.times):
        raise RuntimeError("the companion's grid differs from the problem's")
    hs = continuous.solve(network, problem.params, problem.h0, t_end, dt, inputs=read_x, method="euler").hs
    return Reference(hs, result.loss, result.adjoints, result.grads, result.dh0)


def _jumps(problem: Problem, hs: Array) -> Array:
    """dm_k/dh at every grid time ``(N+1, B, H)``: ``h_out(t_k) - y_k`` on the outputs, zero elsewhere."""
    jumps = np.zeros_like(hs)
    n_out = problem.targets.shape[2]
    jumps[problem.measured, :, :n_out] = hs[problem.measured, :, :n_out] - problem.targets
    return jumps


def _state_product(problem: Problem, h: Array, h_bar: Array) -> Array:
    """``F(h)^T hbar`` ``(B, H)`` by the companion's ``CTRNN.vjp`` (x and f do not enter it)."""
    zeros = np.zeros_like(h)
    return _network(problem).vjp(problem.params, np.tanh(h), problem.xs[0], zeros, h_bar)[0]


def _step_terms(problem: Problem, hs: Array, adjoints: Array) -> Params:
    """Each step's term of the integral, keyed like the parameters, ``(N+1, *shape)``: entry n >= 1 is
    ``(t_n - t_{n-1}) (∂f/∂theta at h_n, x(t_n))^T adjoints[n]`` (the companion's ``CTRNN.vjp``), entry 0 is 0."""
    network = _network(problem)
    terms = {key: np.zeros((len(problem.times),) + value.shape) for key, value in problem.params.items()}
    for n in range(1, len(problem.times)):
        f, rate = network.field(problem.params, hs[n], problem.xs[n])
        _, products, _ = network.vjp(problem.params, rate, problem.xs[n], f, adjoints[n])
        for key in terms:
            terms[key][n] = (problem.times[n] - problem.times[n - 1]) * products[key]
    return terms


# ----- the adjoint ----------------------------------------------------------------------------------------------
def student_path(adjoint_path: Callable, problem: Problem, hs: Array) -> Array:
    """The student's adjoints ``(N+1, B, H)`` on ``problem`` given the states ``hs``, checked for type and shape."""
    __tracebackhide__ = True
    result = call_student(adjoint_path, "adjoint_path", problem.params, hs, problem.times, problem.measured,
                          problem.targets)
    return as_answer(result, "adjoint_path's adjoints", hs.shape, "(N+1, B, H)")


def _path_diagnosis(problem: Problem, expected: Reference, got: Array) -> str | None:
    """Where the student's adjoints ``got`` first go wrong, scanning from t_end down, and the likely cause;
    ``None`` when they are right."""
    backward = first_wrong_step(got[::-1], expected.adjoints[::-1])
    if backward is None:
        return None
    N = len(problem.times) - 1
    n = N - backward
    times, hs = problem.times, expected.hs
    jumps = _jumps(problem, hs)
    measured = n in set(problem.measured.tolist())
    t = f"t = {times[n]:g}"
    if n == N:
        if measured:
            return (f"hbar(t_end) = adjoints[N] is wrong: with a measurement at t_end = {times[N]:g} it is that "
                    "measurement's jump, h_out(t_end) - y on the first n_out units and 0 on the others (the "
                    "adjoint is 0 after t_end)")
        return "hbar(t_end) = adjoints[N] is wrong: without a measurement at t_end the adjoint starts from 0 there"
    right = (f"right at t_end = {times[N]:g}" if n + 1 == N
             else f"right from t_end = {times[N]:g} down to t = {times[n + 1]:g}")
    where = f"hbar(t) is {right} and first wrong at {t}" + (", a measurement time" if measured else "")
    if is_close(got, continuous.discretized_gradients(
            _network(problem), problem.params, problem.h0, times[-1], times[1] - times[0],
            continuous.Loss(times[problem.measured], problem.targets), inputs=_inputs(problem),
            method="euler").adjoints):
        return (f"{where}: you computed BPTT through the Euler steps, with F at h(t_n), the step's left end; "
                "this assignment integrates the adjoint equation itself, one Euler step backward from t_{n+1}, "
                "so F is taken at h(t_{n+1}), where the step starts")
    step = (times[n + 1] - times[n]) * _state_product(problem, hs[n + 1], got[n + 1])
    if is_close(got[n], got[n + 1] - step + jumps[n]):
        return (f"{where}: the Euler step has the wrong sign; backward in time, dhbar/dt = -F^T hbar gives "
                "hbar(t_n) = hbar(t_{n+1}) + (t_{n+1} - t_n) F(h(t_{n+1}))^T hbar(t_{n+1})")
    if measured and is_close(got[n], expected.adjoints[n] - jumps[n]):
        if n > 0 and is_close(got[n - 1], expected.adjoints[n - 1]):
            return (f"{where}: adjoints[n] there lacks the jump though the steps below it are right; adjoints[n] is "
                    "the value just before t_n, the jump included, so store it after adding the jump")
        return (f"{where}: the jump of the measurement at {t} is missing; add h_out(t_k) - y_k on the first n_out "
                "units (0 on the others) after the Euler step that reaches t_k")
    if measured:
        return (f"{where}: check the jump of the measurement at {t}, h_out(t_k) - y_k on the first n_out units "
                "and 0 on the others, added after the Euler step that reaches t_k")
    return (f"{where}, between measurements: check the Euler step from t = {times[n + 1]:g} to {t}, "
            "hbar(t_n) = hbar(t_{n+1}) + (t_{n+1} - t_n) F(h(t_{n+1}))^T hbar(t_{n+1})")


def _check_path(adjoint_path: Callable, seeds: Iterable[int], final_only: bool) -> None:
    """Raise ``GradingError`` unless ``adjoint_path`` gives the companion's adjoints on every seed's problem."""
    __tracebackhide__ = True
    for seed in seeds:
        problem = draw_problem(seed, final_only=final_only)
        expected = reference(problem)
        diagnosis = _path_diagnosis(problem, expected, student_path(adjoint_path, problem, expected.hs))
        if diagnosis is not None:
            raise GradingError(f"{diagnosis}; {problem.text}")


def check_adjoint_final(adjoint_path: Callable, seeds: Iterable[int] = (0, 1, 2)) -> None:
    """Raise ``GradingError`` unless ``adjoint_path`` is right on problems with one measurement, at t_end.

    Parameters
    ----------
    adjoint_path : callable
        The student's ``adjoint_path(params, hs, times, measured, targets) -> adjoints (N+1, B, H)``.
    seeds : iterable of int
        One random problem per seed (``draw_problem(seed, final_only=True)``).
    """
    __tracebackhide__ = True
    _check_path(adjoint_path, seeds, final_only=True)


def check_jumps(adjoint_path: Callable, seeds: Iterable[int] = (0, 1, 2)) -> None:
    """Raise ``GradingError`` unless ``adjoint_path`` is right on problems with several measurements, some at
    interior times, and on the even seeds one at t = 0 (``draw_problem(seed)``); arguments as
    ``check_adjoint_final``."""
    __tracebackhide__ = True
    _check_path(adjoint_path, seeds, final_only=False)


# ----- the parameter gradients -------------------------------------------------------------------------------------
def student_gradients(parameter_gradients: Callable, problem: Problem, hs: Array, adjoints: Array) -> Params:
    """The student's dL/dtheta on ``problem`` given the states and adjoints, checked for type, keys and shapes."""
    __tracebackhide__ = True
    result = call_student(parameter_gradients, "parameter_gradients", problem.params, hs, problem.times,
                          problem.xs, adjoints)
    grads = as_dict(result, "parameter_gradients's grads", PARAMS)
    return {key: as_answer(grads[key], f"grads[{key!r}]", problem.params[key].shape, SHAPES[key]) for key in PARAMS}


def _gradient_diagnosis(parameter_gradients: Callable, problem: Problem, expected: Reference, name: str,
                        got: Array) -> str:
    """Why the student's dL/d``name`` ``got`` is wrong: a step of the sum whose term is wrong, or the cause
    common to every step (sign, the missing step length, the step's left end instead of its right end)."""
    __tracebackhide__ = True
    hs, adjoints, times = expected.hs, expected.adjoints, problem.times
    terms = _step_terms(problem, hs, adjoints)[name]
    wrong = []
    for n in range(len(times)):
        alone = np.zeros_like(adjoints)
        alone[n] = adjoints[n]
        if not is_close(student_gradients(parameter_gradients, problem, hs, alone)[name], terms[n]):
            wrong.append(n)
    label = f"dL/d{name}"
    if 0 in wrong:
        return (f"{label} has a term at t_0 = 0 (it changes with adjoints[0]); the rectangle rule here takes each "
                "step's right end, the terms of n = 1 .. N")
    if not wrong:
        return f"{label} is wrong on the whole problem though the term of each step alone is right: add the terms up"
    active = {n for n in range(1, len(times)) if np.any(adjoints[n] != 0)}   # after the last measurement hbar = 0
    if not active <= set(wrong):
        steps = ", ".join(f"{times[n]:g}" for n in wrong)
        which = f"the term at t = {steps} is" if len(wrong) == 1 else f"the terms at t = {steps} are"
        return (f"{label}: {which} wrong (the others are right); each step n = 1 .. N adds "
                "(t_n - t_{n-1}) (∂f/∂theta at h(t_n), x(t_n))^T hbar(t_n)")
    left_end = _step_terms(problem, np.concatenate([hs[:1], hs[:-1]]), adjoints)[name]
    xs_left = problem._replace(xs=np.concatenate([problem.xs[:1], problem.xs[:-1]]))
    left_end_x = _step_terms(xs_left, np.concatenate([hs[:1], hs[:-1]]), adjoints)[name]
    lengths = np.diff(times).reshape((-1,) + (1,) * got.ndim)
    causes = [
        (-terms.sum(axis=0), "has the wrong sign" + (" (∂f_i/∂tau_i = -f_i / tau_i)" if name == "tau" else "")),
        ((terms[1:] / lengths).sum(axis=0), "lacks the step length t_n - t_{n-1} in each term"),
        (left_end.sum(axis=0), "takes h at the step's left end t_{n-1}; take it at the right end t_n, with hbar(t_n)"),
        (left_end_x.sum(axis=0), "takes h and x at the step's left end t_{n-1}; take them at the right end t_n, "
                                 "with hbar(t_n)"),
    ]
    for value, cause in causes:
        if is_close(got, value):
            return f"{label} {cause}"
    return (f"{label}: the term of every step is wrong; each step n = 1 .. N adds (t_n - t_{n-1}) times "
            f"{PRODUCTS[name]}, with g = hbar(t_n) ⊘ tau and h = h(t_n), x = x(t_n)")


def check_gradient(parameter_gradients: Callable, names: str | Iterable[str], seeds: Iterable[int] = (0, 1, 2)) -> None:
    """Raise ``GradingError`` unless the gradients ``names`` of ``parameter_gradients`` are right on every
    seed's problem.

    Parameters
    ----------
    parameter_gradients : callable
        The student's ``parameter_gradients(params, hs, times, xs, adjoints) -> grads``; it is given the
        companion's states and adjoints, so a mistake in ``adjoint_path`` does not cost points here.
    names : str or iterable of str
        Which gradients to check, among ``PARAMS``.
    seeds : iterable of int
        One random problem per seed (``draw_problem(seed)``).

    Notes
    -----
    A wrong gradient is located by giving the function the adjoint of one grid time only (the others 0):
    the answer must then be that step's term of the sum.
    """
    __tracebackhide__ = True
    names = check_names(names, PARAMS)
    for seed in seeds:
        problem = draw_problem(seed)
        expected = reference(problem)
        got = student_gradients(parameter_gradients, problem, expected.hs, expected.adjoints)
        for name in names:
            if not is_close(got[name], expected.grads[name]):
                diagnosis = _gradient_diagnosis(parameter_gradients, problem, expected, name, got[name])
                raise GradingError(f"{diagnosis}; {problem.text} (this check gives parameter_gradients the right "
                                   "states and adjoints)")


# ----- the whole route ------------------------------------------------------------------------------------------
def check_route(ctrnn_gradients: Callable, seeds: Iterable[int] = (0, 1, 2), *,
                adjoint_path: Callable | None = None) -> None:
    """Raise ``GradingError`` unless ``ctrnn_gradients`` gives the right dL/dh(0) and loss on every seed's problem.

    Parameters
    ----------
    ctrnn_gradients : callable
        The student's ``ctrnn_gradients(params, h0, times, xs, measured, targets) -> (loss, grads, dh0)``;
        ``grads`` must be a dict with the keys of ``PARAMS`` (its values are checked by ``check_gradient``).
    seeds : iterable of int
        One random problem per seed (``draw_problem(seed)``).
    adjoint_path : callable, optional, keyword-only
        The student's ``adjoint_path``, only to say in the message whether it is right on the problem.
    """
    __tracebackhide__ = True
    for seed in seeds:
        problem = draw_problem(seed)
        expected = reference(problem)
        result = call_student(ctrnn_gradients, "ctrnn_gradients", problem.params, problem.h0, problem.times,
                              problem.xs, problem.measured, problem.targets)
        loss, grads, dh0 = as_tuple(result, "ctrnn_gradients", 3, "(loss, grads, dh0)")
        as_dict(grads, "ctrnn_gradients's grads", PARAMS)
        loss = float(as_answer(loss, "ctrnn_gradients's loss", (), "() (a number)"))
        dh0 = as_answer(dh0, "ctrnn_gradients's dh0", problem.h0.shape, "(B, H)")
        if not is_close(dh0, expected.dh0):
            note = ""
            if adjoint_path is not None:
                path = _path_diagnosis(problem, expected, student_path(adjoint_path, problem, expected.hs))
                note = ("; your adjoint_path is right on this problem, so look at how ctrnn_gradients uses it"
                        if path is None
                        else "; your adjoint_path is wrong on this problem too (its check cells say where)")
            starts = 0 in set(problem.measured.tolist())
            jump = _jumps(problem, expected.hs)[0]
            if starts and is_close(dh0, expected.dh0 - jump):
                note = "; it lacks the jump of the measurement at t = 0" + note
            raise GradingError(f"dL/dh(0) is wrong: it is hbar(0), the adjoint at t = 0 with the jump of a measurement "
                               f"there included (adjoints[0]){note}; {problem.text}")
        if not is_close(np.array(loss), np.array(expected.loss)):
            raise GradingError(
                f"the loss is wrong ({loss:.6g} instead of {expected.loss:.6g}) though dL/dh(0) is right: "
                "L = 1/2 sum_k ||h_out(t_k) - y_k||^2, summed over the measurements and the batch (not averaged), "
                f"on the states of Euler's method; {problem.text}")
