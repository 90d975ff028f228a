"""The grader of the assignment "Spiking networks and surrogate gradients" (``assignments/source/spiking``).

The student writes, for a recurrent layer of leaky integrate-and-fire neurons (chapter "Spiking networks
and surrogate gradients") from the zero state, with the reset of a spike applied at the next step and
treated as a constant in the backward pass (as snntorch does),

    I_t = W_xh x_t + W_hh S_{t-1} + b_h,    R_t = Theta(U_{t-1} - theta),
    U_t = beta U_{t-1} + I_t - theta R_t            (reset "subtract")
    U_t = beta (1 - R_t) U_{t-1} + I_t              (reset "zero")
    S_t = Theta(U_t - theta),   Theta(u) = 1 if u > 0 else 0:

* ``lif_forward(params, xs, beta, theta, reset) -> (spikes, membranes)``, S_t and U_t for every step;
* ``surrogate_derivative(u, kind, slope) -> array``, snntorch 1.0.0's surrogates of dTheta/du:
  ``"fast_sigmoid"`` 1 / (k |u| + 1)^2 and ``"atan"`` (alpha / 2) / (1 + (pi alpha u / 2)^2);
* ``lif_adjoints(params, spikes, membranes, dhs, beta, theta, reset, sigma_prime) -> Ubar``, the adjoints
  Ubar_t = dL/dU_t of L = sum_t <dhs[t - 1], S_t> through every path, by the recursion
  Sbar_t = dhs[t - 1] + W_hh^T Ubar_{t+1},  Ubar_t = sigma'(U_t - theta) Sbar_t + rho_{t+1} Ubar_{t+1},
  with rho_t = beta (subtract) or beta (1 - R_t) (zero), ``sigma_prime`` the surrogate to use;
* ``lif_gradients(params, xs, spikes, Ubar) -> (grads, dxs)``: the sums over the steps
  W_xh bar = sum_t Ubar_t x_t^T, W_hh bar = sum_t Ubar_t S_{t-1}^T, b_h bar = sum_t Ubar_t, and
  x_t bar = W_xh^T Ubar_t.

The reference is the companion's ``LIF`` cell (``recurrent=True``, ``detach_reset=True``) through
``bptt.forward``, ``bptt.state_adjoints`` and ``bptt.backward``. Every later check hands the student's
function the right results of the earlier parts (the right spikes and membranes, the right surrogate, the
right adjoints), so one mistake costs only its own part. A wrong answer raises ``GradingError`` saying
which quantity is wrong, at which step, on which problem, and naming a known mistake when the answer is one.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import NamedTuple

import numpy as np

from .. import bptt
from ..cells import LIF
from ..cells.lif import SURROGATE_SLOPES, heaviside
from ..cells.lif import surrogate_derivative as right_surrogate
from ..types import Array, Params
from .core import (
    GradingError,
    as_answer,
    as_dict,
    as_tuple,
    call_student,
    check_names,
    first_wrong_output,
    first_wrong_step,
    is_close,
    known_mistake,
    problem_text,
    steps_after,
    steps_before,
)

#: the parameter keys of the recurrent LIF layer
PARAMS = ("W_xh", "W_hh", "b_h")
#: what ``check_gradients`` can check: a parameter key, or ``"xs"`` for dL/dx_t
GRADIENTS = (*PARAMS, "xs")
#: the resets of the assignment (the companion's third, "refractory", is not part of it)
RESETS = ("subtract", "zero")
#: each gradient's shape in symbols, for messages
SHAPE_TEXT = {"W_xh": "(H, n_in)", "W_hh": "(H, H)", "b_h": "(H,)", "xs": "(T, B, n_in)"}


class Problem(NamedTuple):
    """One random problem: parameters, inputs ``xs`` (T, B, n_in), loss weights ``dhs`` (T, B, H), the
    decay ``beta``, the threshold ``theta``, the ``reset``, the ``surrogate`` and its ``slope``."""

    params: Params
    xs: Array
    dhs: Array
    beta: float
    theta: float
    reset: str
    surrogate: str
    slope: float

    @property
    def cell(self) -> LIF:
        return LIF(self.xs.shape[2], self.params["b_h"].shape[0], beta=self.beta, threshold=self.theta,
                   reset=self.reset, surrogate=self.surrogate, slope=self.slope, recurrent=True)

    @property
    def text(self) -> str:
        T, B, n_in = self.xs.shape
        sizes = problem_text(T=T, B=B, n_in=n_in, H=self.params["b_h"].shape[0])
        return (f"{sizes[:-1]}, beta={self.beta:.3f}, theta={self.theta:.3f}, reset={self.reset!r}, "
                f"surrogate={self.surrogate!r}, slope={self.slope:.3f})")

    def sigma_prime(self, u: Array) -> Array:
        """The problem's surrogate derivative at ``u`` (the right one, handed to ``lif_adjoints``)."""
        return right_surrogate(u, self.surrogate, self.slope)


def draw_problem(seed: int) -> Problem:
    """A problem of random shape (T in 5..9, B in 1..3, n_in in 1..3, H in 2..5), decay (beta in
    [0.6, 0.95]), threshold (theta in [0.5, 1.5]), reset, surrogate and slope (snntorch's default times
    0.5 to 1.5) drawn from ``seed``, with input weights large enough that neurons spike (between 15% and
    85% of the entries of S) and at least two resets happen."""
    rng = np.random.default_rng(seed)
    T, B, n_in, H = (int(rng.integers(low, high + 1)) for low, high in ((5, 9), (1, 3), (1, 3), (2, 5)))
    beta, theta = float(rng.uniform(0.6, 0.95)), float(rng.uniform(0.5, 1.5))
    reset = RESETS[int(rng.integers(0, 2))]
    surrogate = ("fast_sigmoid", "atan")[int(rng.integers(0, 2))]
    slope = SURROGATE_SLOPES[surrogate] * float(rng.uniform(0.5, 1.5))
    for _ in range(200):
        params = {"W_xh": 1.5 * theta * rng.normal(size=(H, n_in)), "W_hh": 0.5 * theta * rng.normal(size=(H, H)),
                  "b_h": 0.3 * theta * rng.normal(size=H)}
        problem = Problem(params, rng.normal(size=(T, B, n_in)), rng.normal(size=(T, B, H)), beta, theta, reset,
                          surrogate, slope)
        spikes, _ = bptt.forward(problem.cell, params, problem.xs, fused=False)
        if 0.15 <= spikes.mean() <= 0.85 and spikes[:-1].sum() >= 2:
            return problem
    raise AssertionError(f"no spiking problem found for seed {seed}")   # pragma: no cover (never happens)


class Reference(NamedTuple):
    """The right answers on a problem: ``spikes`` and ``membranes`` (T, B, H), the adjoints ``Ubar``
    (T, B, H), the gradients ``grads`` (a dict of ``PARAMS``) and ``dxs`` (T, B, n_in)."""

    spikes: Array
    membranes: Array
    Ubar: Array
    grads: Params
    dxs: Array


def reference(problem: Problem) -> Reference:
    """Every right answer on ``problem``, by the companion's ``LIF`` cell from the zero state."""
    cell, params, xs, dhs = problem.cell, problem.params, problem.xs, problem.dhs
    spikes, cache = bptt.forward(cell, params, xs, fused=False)
    membranes = np.stack([step.U for step in cache.steps])
    dS, dU = bptt.state_adjoints(cell, params, cache, dhs)       # dL/d(S_t, U_t) as parts of the state
    # the adjoint of U_t through every path: its own part, and the path through S_t = Theta(U_t - theta)
    Ubar = dU[1:] + cell.sigma_prime(membranes) * dS[1:]
    grads, dxs, _ = bptt.backward(cell, params, cache, dhs)
    return Reference(spikes, membranes, Ubar, grads, dxs)


# ----- known mistakes, computed for the messages -----------------------------------------------------------
def _forward(problem: Problem, *, reset_now: str | None = None, no_reset: bool = False, reset: str | None = None,
             hold: bool = False, feedback: bool = True) -> tuple[Array, Array]:
    """``(spikes, membranes)`` written out, with the variants of the messages: the reset applied in the step
    of the spike (``reset_now`` ``"only"``, or ``"also"`` with the delayed reset still computed from the
    reset membrane), no reset, another reset, the step's input discarded too (``hold``, the refractory
    reset), no recurrent input (``feedback`` false)."""
    p, xs, beta, theta = problem.params, problem.xs, problem.beta, problem.theta
    reset = problem.reset if reset is None else reset
    T, B, _ = xs.shape
    H = p["b_h"].shape[0]
    S, U = np.zeros((B, H)), np.zeros((B, H))
    spikes, membranes = np.zeros((T, B, H)), np.zeros((T, B, H))
    for t in range(T):
        I = xs[t] @ p["W_xh"].T + p["b_h"] + (S @ p["W_hh"].T if feedback else 0.0)
        R = np.zeros_like(U) if (no_reset or reset_now == "only") else heaviside(U - theta)
        if hold:
            U = (1.0 - R) * (beta * U + I)
        elif reset == "subtract":
            U = beta * U + I - theta * R
        else:
            U = beta * (1.0 - R) * U + I
        S = heaviside(U - theta)
        if reset_now:                                   # the membrane kept and handed on is already reset
            U = U - theta * S if reset == "subtract" else (1.0 - S) * U
        spikes[t], membranes[t] = S, U
    return spikes, membranes


def _forward_mistakes(problem: Problem) -> dict[str, list[tuple[Array, Array]]]:
    """Known wrong versions of ``(spikes, membranes)`` (one or more per mistake), by what the message says."""
    other = "zero" if problem.reset == "subtract" else "subtract"
    mistakes = {
        "no reset: a spike at step t - 1 resets the membrane at step t, R_t = Theta(U_{t-1} - theta)":
            [_forward(problem, no_reset=True)],
        "the reset is applied in the step of the spike: U_t is the membrane before its reset (keep it so), "
        "and the reset of a spike at step t enters at step t + 1, through R_{t+1} = Theta(U_t - theta)":
            [_forward(problem, reset_now="only"), _forward(problem, reset_now="also")],
        f"this is the reset {other!r}; the problem's reset is {problem.reset!r}": [_forward(problem, reset=other)],
        "no recurrent input: I_t includes W_hh S_{t-1}, the spikes of the previous step":
            [_forward(problem, feedback=False)],
    }
    if problem.reset == "zero":
        mistakes["the reset to zero discards the step's input too: only the carried-over membrane is zeroed, "
                 "U_t = beta (1 - R_t) U_{t-1} + I_t"] = [_forward(problem, hold=True)]
    return mistakes


def _surrogate_mistakes(u: Array, kind: str, slope: float) -> dict[str, Array]:
    if kind == "atan":
        return {
            "this is the formula of snntorch's docstring, (1/pi) / (1 + (pi alpha u / 2)^2); its code, and the "
            "derivative of 1/2 + arctan(pi alpha u / 2) / pi, have the factor alpha / 2 in place of 1/pi":
                (1 / math.pi) / (1.0 + (math.pi * slope * u / 2) ** 2),
            "the chain rule's factor pi alpha / 2 is divided by pi too: the numerator is alpha / 2, not 1":
                1.0 / (1.0 + (math.pi * slope * u / 2) ** 2),
        }
    return {
        "the denominator is squared: 1 / (k |u| + 1)^2": 1.0 / (slope * np.abs(u) + 1.0),
        "the absolute value is missing: 1 / (k |u| + 1)^2": 1.0 / (slope * u + 1.0) ** 2,
    }


def _adjoints(problem: Problem, ref: Reference, *, reset_path: bool = False, membrane_path: bool = True,
              recurrent_path: bool = True, keep_factor: bool = True, late_surrogate: bool = False) -> Array:
    """Ubar by the recursion, with the variants of the messages: the reset differentiated, the membrane's
    own path or the recurrent path left out, the zero reset's factor 1 - R_{t+1} left out, or the surrogate
    applied to U_{t-1}."""
    p, dhs, beta, theta = problem.params, problem.dhs, problem.beta, problem.theta
    U = ref.membranes
    T = U.shape[0]
    U_prev = np.concatenate([np.zeros_like(U[:1]), U[:-1]])
    R = heaviside(U_prev - theta)                                # R_t, t = 1..T
    Ubar = np.zeros_like(U)
    for t in range(T - 1, -1, -1):
        Sbar = dhs[t].copy()
        later = np.zeros_like(Sbar)
        if t + 1 < T:
            if recurrent_path:
                Sbar += Ubar[t + 1] @ p["W_hh"]
            rho = beta * (1.0 - R[t + 1]) if (problem.reset == "zero" and keep_factor) else beta
            if membrane_path:
                later = rho * Ubar[t + 1]
            if reset_path:
                nu = -theta if problem.reset == "subtract" else -beta * U[t]
                Sbar += nu * Ubar[t + 1]
        sigma = problem.sigma_prime((U_prev[t] if late_surrogate else U[t]) - theta)
        Ubar[t] = sigma * Sbar + later
    return Ubar


def _adjoint_mistakes(problem: Problem, ref: Reference) -> dict[str, Array]:
    mistakes = {
        "the reset is differentiated: R_{t+1} is a constant of the backward pass (detached, as in snntorch)":
            _adjoints(problem, ref, reset_path=True),
        "the membrane's own path is missing: U_t is also read by U_{t+1}, which sends back rho_{t+1} Ubar_{t+1}":
            _adjoints(problem, ref, membrane_path=False),
        "the recurrent path is missing: S_t is also read by I_{t+1} through W_hh, which sends back "
        "W_hh^T Ubar_{t+1}": _adjoints(problem, ref, recurrent_path=False),
        "the surrogate is taken at the previous membrane: S_t = Theta(U_t - theta), so sigma'(U_t - theta)":
            _adjoints(problem, ref, late_surrogate=True),
    }
    if problem.reset == "zero":
        mistakes["the zero reset's factor is missing: U_{t+1} reads U_t through beta (1 - R_{t+1}), so nothing "
                 "flows back through the membrane across a reset"] = _adjoints(problem, ref, keep_factor=False)
    return mistakes


def _gradient_mistakes(problem: Problem, ref: Reference) -> dict[str, Mapping[str, Array]]:
    return {
        "W_hh pairs Ubar_t with the spikes of the same step: I_t reads S_{t-1} (S_0 = 0)":
            {"W_hh": np.einsum("tbh,tbj->hj", ref.Ubar, ref.spikes)},
        "dL/dx_t uses W_hh: x_t enters through W_xh, so dL/dx_t = W_xh^T Ubar_t":
            {"xs": ref.Ubar @ problem.params["W_hh"] if problem.xs.shape[2] == ref.Ubar.shape[2]
             else np.zeros(0)},
    }


# ----- the checks ------------------------------------------------------------------------------------------


def student_forward(lif_forward: Callable, problem: Problem) -> tuple[Array, Array]:
    """The student's ``(spikes, membranes)`` on ``problem``, checked for type and shapes."""
    __tracebackhide__ = True
    result = call_student(lif_forward, "lif_forward", problem.params, problem.xs, problem.beta, problem.theta,
                          problem.reset)
    spikes, membranes = as_tuple(result, "lif_forward", 2, "(spikes, membranes)")
    shape = problem.dhs.shape
    return (as_answer(spikes, "lif_forward's spikes", shape, "(T, B, H)"),
            as_answer(membranes, "lif_forward's membranes", shape, "(T, B, H)"))


def check_forward(lif_forward: Callable, seeds: Iterable[int] = (0, 1, 2)) -> None:
    """Raise ``GradingError`` unless ``lif_forward`` gives the right spikes and membranes.

    Besides the seeds' problems it runs one neuron whose membrane sits exactly on the threshold, which
    must not spike.

    Parameters
    ----------
    lif_forward : callable
        The student's ``lif_forward(params, xs, beta, theta, reset) -> (spikes, membranes)``: ``xs``
        (T, B, n_in), ``spikes`` the 0/1 spikes S_t and ``membranes`` the membranes U_t before their reset,
        both (T, B, H), from S_0 = U_0 = 0.
    seeds : iterable of int
        One random problem per seed.
    """
    __tracebackhide__ = True
    for seed in seeds:
        problem = draw_problem(seed)
        ref = reference(problem)
        spikes, membranes = student_forward(lif_forward, problem)
        if is_close(membranes, ref.membranes) and is_close(spikes, ref.spikes):
            continue
        t, which = first_wrong_output({"membranes (U_t)": (membranes, ref.membranes),
                                       "spikes (S_t)": (spikes, ref.spikes)})
        t += 1
        got, right = np.concatenate([spikes, membranes]), np.concatenate([ref.spikes, ref.membranes])
        hint = next((text for text, variants in _forward_mistakes(problem).items() for s, m in variants
                     if known_mistake(got, {text: np.concatenate([s, m])}, right)), None)
        if hint is None and first_wrong_step(membranes, ref.membranes) is None:
            hint = ("the membranes are right: S_t = Theta(U_t - theta) is 1 where U_t > theta (strictly) and "
                    "0 elsewhere")
        raise GradingError(f"{which} is wrong from step t = {t} on{steps_before(t)}, on the problem of seed "
                           f"{seed} {problem.text}" + (f": {hint}" if hint else ""))
    _check_tie(lif_forward)


def _check_tie(lif_forward: Callable) -> None:
    """One neuron whose membrane sits exactly on the threshold (U_t = theta = 0.5 at every step, beta = 0):
    it must not spike, since Theta(0) = 0."""
    __tracebackhide__ = True
    params = {"W_xh": np.array([[0.5]]), "W_hh": np.zeros((1, 1)), "b_h": np.zeros(1)}
    result = call_student(lif_forward, "lif_forward", params, np.ones((3, 1, 1)), 0.0, 0.5, "subtract")
    spikes, membranes = as_tuple(result, "lif_forward", 2, "(spikes, membranes)")
    spikes = as_answer(spikes, "lif_forward's spikes", (3, 1, 1), "(T, B, H)")
    membranes = as_answer(membranes, "lif_forward's membranes", (3, 1, 1), "(T, B, H)")
    if np.any(spikes != 0.0) and np.allclose(membranes, 0.5):
        raise GradingError("a membrane exactly at the threshold spikes: S_t = Theta(U_t - theta) with Theta(0) = 0, "
                           "a spike only where U_t > theta (the problem: one neuron, W_xh = 0.5, x_t = 1, beta = 0, "
                           "theta = 0.5, so U_t = 0.5 at every step)")


def check_surrogate(surrogate_derivative: Callable, seeds: Iterable[int] = (0, 1, 2)) -> None:
    """Raise ``GradingError`` unless ``surrogate_derivative`` gives snntorch's two surrogates.

    Parameters
    ----------
    surrogate_derivative : callable
        The student's ``surrogate_derivative(u, kind, slope) -> array`` of the shape of ``u``, ``kind``
        ``"fast_sigmoid"`` (slope k) or ``"atan"`` (slope alpha).
    seeds : iterable of int
        Per seed, both kinds on a grid of u in [-3, 3] with a random slope.
    """
    __tracebackhide__ = True
    for seed in seeds:
        rng = np.random.default_rng(seed)
        for kind in ("fast_sigmoid", "atan"):
            slope = SURROGATE_SLOPES[kind] * float(rng.uniform(0.5, 1.5))
            u = np.sort(rng.uniform(-3.0, 3.0, size=(3, 7)), axis=None).reshape(3, 7)
            result = call_student(surrogate_derivative, "surrogate_derivative", u, kind, slope)
            got = as_answer(result, f"surrogate_derivative(u, {kind!r}, slope)", u.shape, "u.shape")
            right = right_surrogate(u, kind, slope)
            if is_close(got, right):
                continue
            hint = known_mistake(got, _surrogate_mistakes(u, kind, slope), right)
            at_zero = call_student(surrogate_derivative, "surrogate_derivative", np.zeros(1), kind, slope)
            peak = as_answer(at_zero, f"surrogate_derivative(0, {kind!r}, slope)", (1,), "(1,)")[0]
            expected_peak = 1.0 if kind == "fast_sigmoid" else slope / 2
            raise GradingError(
                f"the {kind} surrogate is wrong with slope {slope:.4f} (seed {seed}); at u = 0 yours gives "
                f"{peak:.6g}, the right value is {expected_peak:.6g}" + (f": {hint}" if hint else ""))


def check_adjoints(lif_adjoints: Callable, seeds: Iterable[int] = (0, 1, 2)) -> None:
    """Raise ``GradingError`` unless ``lif_adjoints`` gives Ubar_t = dL/dU_t at every step.

    Parameters
    ----------
    lif_adjoints : callable
        The student's ``lif_adjoints(params, spikes, membranes, dhs, beta, theta, reset, sigma_prime) ->
        Ubar``, given the right ``spikes`` and ``membranes`` (T, B, H), the direct gradients ``dhs``
        (T, B, H) of L = sum_t <dhs[t - 1], S_t> and the right surrogate ``sigma_prime(u)``; ``Ubar``
        (T, B, H) through every path, the reset detached.
    seeds : iterable of int
        One random problem per seed.

    Notes
    -----
    The recursion runs from t = T down, so the message names the latest step at which Ubar_t is wrong:
    every later step is right.
    """
    __tracebackhide__ = True
    for seed in seeds:
        problem = draw_problem(seed)
        ref = reference(problem)
        result = call_student(lif_adjoints, "lif_adjoints", problem.params, ref.spikes, ref.membranes, problem.dhs,
                              problem.beta, problem.theta, problem.reset, problem.sigma_prime)
        Ubar = as_answer(result, "lif_adjoints's Ubar", ref.Ubar.shape, "(T, B, H)")
        if is_close(Ubar, ref.Ubar):
            continue
        T = Ubar.shape[0]
        t = max(s for s in range(1, T + 1) if not is_close(Ubar[s - 1], ref.Ubar[s - 1]))
        where = (f"at the last step t = T = {T}, where only the direct gradient arrives: "
                 f"Ubar_T = sigma'(U_T - theta) dhs[T - 1]" if t == T else f"at step t = {t}{steps_after(t, T)}")
        hint = known_mistake(Ubar, _adjoint_mistakes(problem, ref), ref.Ubar)
        raise GradingError(f"Ubar is wrong {where}, on the problem of seed {seed} {problem.text}"
                           + (f": {hint}" if hint else ""))


def student_gradients(lif_gradients: Callable, problem: Problem, ref: Reference) -> tuple[Params, Array]:
    """The student's ``(grads, dxs)`` from the right spikes and adjoints, checked for keys and shapes."""
    __tracebackhide__ = True
    result = call_student(lif_gradients, "lif_gradients", problem.params, problem.xs, ref.spikes, ref.Ubar)
    grads, dxs = as_tuple(result, "lif_gradients", 2, "(grads, dxs)")
    grads = as_dict(grads, "lif_gradients's grads", PARAMS)
    answer = {key: as_answer(grads[key], f"grads[{key!r}]", problem.params[key].shape, SHAPE_TEXT[key])
              for key in PARAMS}
    return answer, as_answer(dxs, "lif_gradients's dxs", problem.xs.shape, SHAPE_TEXT["xs"])


def check_gradients(lif_gradients: Callable, names: str | Iterable[str] = GRADIENTS,
                    seeds: Iterable[int] = (0, 1, 2)) -> None:
    """Raise ``GradingError`` unless the gradients ``names`` of ``lif_gradients`` are right.

    Parameters
    ----------
    lif_gradients : callable
        The student's ``lif_gradients(params, xs, spikes, Ubar) -> (grads, dxs)``, given the right spikes
        (T, B, H) and adjoints ``Ubar`` (T, B, H): ``grads`` a dict of ``PARAMS`` of the parameters' shapes,
        ``dxs`` (T, B, n_in).
    names : str or iterable of str
        Keys of ``GRADIENTS`` (``"xs"`` is dL/dx_t).
    seeds : iterable of int
        One random problem per seed.
    """
    __tracebackhide__ = True
    names = check_names(names, GRADIENTS)
    for seed in seeds:
        problem = draw_problem(seed)
        ref = reference(problem)
        grads, dxs = student_gradients(lif_gradients, problem, ref)
        got, expected = {**grads, "xs": dxs}, {**ref.grads, "xs": ref.dxs}
        for name in names:
            if is_close(got[name], expected[name]):
                continue
            mistakes = {text: wrong[name] for text, wrong in _gradient_mistakes(problem, ref).items() if name in wrong}
            hint = known_mistake(got[name], mistakes, expected[name])
            what = f"dL/dx_t is wrong from step t = {first_wrong_step(got[name], expected[name]) + 1} on" \
                if name == "xs" else f"dL/d{name} is wrong"
            raise GradingError(f"{what}, on the problem of seed {seed} {problem.text}" + (f": {hint}" if hint else ""))
