"""The grader of the assignment "Classic training algorithms" (``assignments/source/classic_training``).

The student writes, in numpy, the update rules of chapter "Training algorithms for recurrent networks":

* ``irprop_minus_step(theta, grad, prev_grad, delta, etas, delta_bounds) -> (theta, prev_grad, delta)``:
  one step of iRprop- on an array of any shape, with the remembered gradient g^- and the step sizes Delta
  of every entry (``companion.optim.Rprop``, which is ``torch.optim.Rprop``);
* ``polak_ribiere_direction(grad, prev_grad, prev_direction) -> (direction, beta)``: the search direction
  of nonlinear conjugate gradients, Polak-Ribiere+ with its restarts (``prev_grad`` and
  ``prev_direction`` ``None`` at a restart; ``companion.conjugate_gradient.next_direction``);
* ``joseph_update(P, K, H, R) -> P``: the Joseph form (I - K H) P (I - K H)^T + K R K^T for any gain K
  (``companion.ekf.joseph_update``);
* ``ekf_update(theta, P, predictions, targets, H, R, Q) -> (theta, P)``: one step of the global EKF,
  P^- = P + Q, S = H P^- H^T + R, K = P^- H^T S^{-1}, theta + K (d - z), and P by the Joseph form
  (``companion.ekf.ExtendedKalmanFilter.update``);
* ``decoupled_ekf_update(theta, blocks, groups, predictions, targets, H, R) -> (theta, blocks)``: one step
  of the decoupled EKF, blocks P_g already predicted, all groups sharing S = R + sum_g H_g P_g H_g^T
  (``ExtendedKalmanFilter`` with ``groups``).

Each check draws problems of random shapes from its seeds, computes the answer with the companion and
compares; a wrong answer raises ``GradingError`` saying which quantity is wrong, where (the step and entry,
the case, the group), on which problem, and naming a known mistake when the answer is one.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple

import numpy as np

from .. import ekf
from ..conjugate_gradient import next_direction
from ..optim import Rprop
from ..types import Array
from .core import (
    GradingError,
    TOLERANCE,
    as_answer,
    as_tuple,
    call_student,
    is_close,
    known_mistake,
    listing,
    other_part_note,
    problem_text,
    steps_before,
)

#: how many consecutive steps of iRprop- a problem has
RPROP_STEPS = 7
#: the cases of ``check_polak_ribiere``, in the order every problem poses them
DIRECTION_CASES = ("restart", "conjugate", "clipped", "uphill")
#: what each case of ``check_polak_ribiere`` is, for messages
DIRECTION_TEXT = {
    "restart": "prev_grad and prev_direction are None (the first iteration, or a scheduled restart), so "
               "d = -g and beta = 0",
    "conjugate": "beta_PR = g.(g - g_prev) / (g_prev.g_prev) > 0 and -g + beta_PR d_prev goes downhill, so "
                 "d = -g + beta_PR d_prev",
    "clipped": "g.(g - g_prev) < 0, so PR+ clips beta at max(0, beta_PR) = 0 and d = -g",
    "uphill": "beta_PR > 0, but -g + beta_PR d_prev would not go downhill (g.d >= 0), so the direction restarts: "
              "d = -g and beta = 0",
}


def _call(function: object, name: str, where: str, *args: Any) -> Any:
    """``call_student``, with ``where`` (the problem) added to the message of a function that raised."""
    __tracebackhide__ = True
    try:
        return call_student(function, name, *args)
    except GradingError as error:
        if "not implemented yet" in str(error):
            raise
        raise GradingError(f"{error}; {where}") from None


def _spd(rng: np.random.Generator, n: int, scale: float) -> Array:
    """A random symmetric positive definite ``(n, n)`` matrix, exactly symmetric, eigenvalues >= scale / 2."""
    M = rng.normal(size=(n, n))
    A = scale * (M @ M.T / n + 0.5 * np.eye(n))
    return 0.5 * (A + A.T)


def _first_wrong(got: Array, expected: Array) -> tuple[int, ...] | None:
    """The first entry (C order) where ``got`` differs from ``expected`` beyond rounding, or ``None``.

    An entry is wrong when its relative error exceeds ``TOLERANCE`` (as ``is_close`` judges a whole array) and
    it differs by more than 1e-13 of the array's largest entry, so a wrong small entry is found beside large
    ones and rounding near zero is not.
    """
    scale = float(np.abs(expected).max()) if expected.size else 0.0
    wrong = np.abs(got - expected) > TOLERANCE * (np.abs(got) + np.abs(expected)) + 1e-13 * scale
    return tuple(int(i) for i in np.argwhere(wrong)[0]) if wrong.any() else None


def _entry_text(got: Array, expected: Array, name: str) -> str:
    """``"first wrong entry [i, j] of NAME: yours .., right .."`` (``got`` differs from ``expected``)."""
    index = _first_wrong(got, expected)
    if index is None:                                                   # wrong only in the norm's last digits
        index = tuple(int(i) for i in np.unravel_index(np.abs(got - expected).argmax(), got.shape))
    return f"first wrong entry {list(index)} of {name}: yours {got[index]:.6g}, right {expected[index]:.6g}"


# ---------------------------------------------------------------------------------------------- iRprop-


class RpropProblem(NamedTuple):
    """Consecutive iRprop- steps: the start ``theta`` (r, c), the gradients ``grads`` (K, r, c) of the K steps,
    the initial step size ``delta0``, ``etas`` = (eta-, eta+) and ``delta_bounds`` = (Delta_min, Delta_max)."""

    theta: Array
    grads: Array
    delta0: float
    etas: tuple[float, float]
    delta_bounds: tuple[float, float]

    @property
    def text(self) -> str:
        K, rows, cols = self.grads.shape
        low, high = self.delta_bounds
        return (f"(shape=({rows}, {cols}), steps={K}, Delta_0={self.delta0:.4g}, etas={self.etas}, "
                f"delta_bounds=({low:.4g}, {high:.4g}))")


def draw_rprop_problem(seed: int) -> RpropProblem:
    """iRprop- on an ``(r, c)`` array (r in 1..3, c in 3..5) for ``RPROP_STEPS`` steps, drawn from ``seed``.

    Every problem has an entry whose gradient keeps its sign (its Delta grows to Delta_max by the third
    growth), one whose sign alternates (it shrinks, after every other step, to Delta_min by the second
    shrink), one with a zero gradient, and others whose signs keep, flip or vanish at random. The gradients'
    sizes span six orders of magnitude (1e-4 to 1e2), which iRprop- ignores.
    """
    rng = np.random.default_rng(seed)
    rows, cols = int(rng.integers(1, 4)), int(rng.integers(3, 6))
    K, size = RPROP_STEPS, rows * cols
    signs = np.empty((K, size))
    signs[:, 0] = 1.0                                                   # keeps its sign: grows to the max
    signs[:, 1] = (-1.0) ** np.arange(K)                                # alternates: shrinks to the min
    for j in range(2, size):
        last, column = 1.0, []
        for _ in range(K):
            move = rng.choice(3, p=(0.5, 0.35, 0.15))                   # keep, flip, zero
            if move == 2:
                column.append(0.0)
                continue
            last = last if move == 0 else -last
            column.append(last)
        signs[:, j] = column
    signs[int(rng.integers(1, K)), 2] = 0.0                             # a zero gradient for sure
    signs = (signs * rng.choice([-1.0, 1.0], size=size))[:, rng.permutation(size)]
    grads = (signs * 10.0 ** rng.uniform(-4.0, 2.0, size=(K, size))).reshape(K, rows, cols)
    eta_minus, eta_plus = float(rng.choice([0.3, 0.5, 0.6])), float(rng.choice([1.2, 1.5]))
    delta0 = float(10.0 ** rng.uniform(-2.5, -1.0))
    bounds = (delta0 * eta_minus ** 2 * 1.3, delta0 * eta_plus ** 2 * 1.1)   # reached by the 2nd shrink, 3rd growth
    return RpropProblem(rng.normal(size=(rows, cols)), grads, delta0, (eta_minus, eta_plus), bounds)


class RpropStep(NamedTuple):
    """One step of the reference: what it starts from (``theta``, ``prev`` = g^-, ``delta``), its gradient
    ``grad``, and what it gives (``new_theta``, ``new_prev``, ``new_delta``); all arrays ``(r, c)``."""

    theta: Array
    prev: Array
    delta: Array
    grad: Array
    new_theta: Array
    new_prev: Array
    new_delta: Array


def reference_rprop(problem: RpropProblem) -> list[RpropStep]:
    """Every step of ``companion.optim.Rprop`` on the problem, from g^- = 0 and Delta = Delta_0."""
    params = {"theta": problem.theta.copy()}
    optimizer = Rprop(problem.delta0, etas=problem.etas, step_sizes=problem.delta_bounds)
    prev, delta = np.zeros_like(problem.theta), np.full_like(problem.theta, problem.delta0)
    steps = []
    for grad in problem.grads:
        theta = params["theta"].copy()
        optimizer.step(params, {"theta": grad.copy()})
        state = optimizer.state["theta"]
        steps.append(RpropStep(theta, prev, delta, grad, params["theta"].copy(), state["prev"].copy(),
                               state["step"].copy()))
        prev, delta = state["prev"].copy(), state["step"].copy()
    return steps


def _rprop_case(step: RpropStep, index: tuple[int, ...], problem: RpropProblem) -> str:
    """What iRprop- does at ``index`` on ``step``, for a message."""
    agreement = np.sign(step.grad[index] * step.prev[index])
    low, high = problem.delta_bounds
    new = step.new_delta[index]
    if agreement > 0:
        clipped = " (capped at Delta_max here)" if new == high else ""
        return f"the gradient kept its sign there (g^- g > 0), so Delta grows to min(eta+ Delta, Delta_max){clipped}"
    if agreement < 0:
        clipped = " (held at Delta_min here)" if new == low else ""
        return (f"the gradient changed sign there (g^- g < 0), so Delta shrinks to max(eta- Delta, "
                f"Delta_min){clipped}, the entry does not move, and g^- becomes 0")
    why = "g = 0" if step.grad[index] == 0 else "g^- = 0: the first step, or the step after a sign change"
    return f"g^- g = 0 there ({why}), so Delta is kept and theta moves by -sign(g) Delta"


def _rprop_statements(step: RpropStep, got: tuple[Array, Array, Array], index: tuple[int, ...]) -> list[str]:
    """What is wrong at ``index`` in the student's ``got`` = (theta, prev_grad, delta), one phrase each."""
    theta, prev, delta = (value[index] for value in got)
    old_theta, old_delta, grad = step.theta[index], step.delta[index], step.grad[index]
    changed = np.sign(grad * step.prev[index]) < 0
    statements = []
    if not is_close(np.array(delta), np.array(step.new_delta[index])):
        ratio = delta / old_delta
        how = "kept it" if is_close(np.array(ratio), np.array(1.0)) else f"multiplied it by {ratio:.4g}"
        statements.append(f"your new Delta is {delta:.6g} (you {how}), the right one {step.new_delta[index]:.6g}")
    if not is_close(np.array(theta), np.array(step.new_theta[index])):
        moved = {
            "yours": old_theta - np.sign(grad) * delta if statements else np.nan,    # only if Delta is wrong
            "moved": old_theta - np.sign(grad) * step.new_delta[index],
            "old": old_theta - np.sign(grad) * old_delta,
            "gradient": old_theta - step.new_delta[index] * grad,
        }
        hint = next((key for key, value in moved.items() if is_close(np.array(theta), np.array(value))), None)
        if hint == "yours":
            statements.append("your theta is wrong through your Delta alone (it moved by -sign(g) times your Delta)")
        elif changed and hint == "moved":
            statements.append("your theta moved by -sign(g) Delta, but after a sign change iRprop- does not move the "
                              "entry (it takes g = 0 there)")
        elif hint == "old":
            statements.append("your theta moved by the old Delta: move by the new one, -sign(g) Delta after Delta "
                              "is updated")
        elif hint == "gradient":
            statements.append("your theta moved by -Delta g: Rprop moves by -sign(g) Delta, only the gradient's sign "
                              "counts")
        else:
            statements.append(f"your new theta is {theta:.6g}, the right one {step.new_theta[index]:.6g}")
    if not is_close(np.array(prev), np.array(step.new_prev[index])):
        if changed and is_close(np.array(prev), np.array(grad)):
            statements.append("your new g^- is this step's gradient g, but iRprop- forgets the gradient after a sign "
                              "change: you forgot to zero the remembered gradient (g^- must be 0), so that the next "
                              "step neither grows nor shrinks Delta again")
        else:
            statements.append(f"your new g^- is {prev:.6g}, the right one {step.new_prev[index]:.6g} (g^- is this "
                              "step's gradient, 0 where it changed sign)")
    if changed and len(statements) == 2 and is_close(np.array(prev), np.array(grad)) and is_close(
            np.array(delta), np.array(step.new_delta[index])):
        statements.append("that is Rprop- (no backtracking, no forgetting), not iRprop-")
    return statements


def check_irprop(irprop_minus_step: Callable, seeds: Iterable[int] = (0, 1, 2)) -> None:
    """Raise ``GradingError`` unless ``irprop_minus_step`` takes every step of every seed's problem as
    ``companion.optim.Rprop`` does.

    Parameters
    ----------
    irprop_minus_step : callable
        The student's ``irprop_minus_step(theta, grad, prev_grad, delta, etas, delta_bounds) ->
        (theta, prev_grad, delta)``: ``theta``, ``grad``, ``prev_grad`` (g^-) and ``delta`` (Delta) arrays of
        one shape, ``etas`` = (eta-, eta+), ``delta_bounds`` = (Delta_min, Delta_max); it returns the new
        arrays, of the same shape.
    seeds : iterable of int
        One random problem (``draw_rprop_problem``) per seed.

    Notes
    -----
    Every step is handed the right state of the step before, so the first wrong step is where the rule
    itself goes wrong; the message names the first wrong entry and its case (Delta grew, shrank after a
    sign change, or was kept).
    """
    __tracebackhide__ = True
    name = "irprop_minus_step"
    for seed in seeds:
        problem = draw_rprop_problem(seed)
        steps = reference_rprop(problem)
        shape = problem.theta.shape
        for k, step in enumerate(steps, start=1):
            where = f"at step {k} of the problem of seed {seed} {problem.text}"
            result = _call(irprop_minus_step, name, where, step.theta, step.grad, step.prev, step.delta,
                           problem.etas, problem.delta_bounds)
            result = as_tuple(result, name, 3, "(theta, prev_grad, delta)")
            got = tuple(as_answer(value, f"{name}'s {label}", shape, "like theta")
                        for value, label in zip(result, ("theta", "prev_grad", "delta")))
            expected = (step.new_theta, step.new_prev, step.new_delta)
            wrong = [_first_wrong(value, right) for value, right in zip(got, expected)]
            if all(index is None for index in wrong):
                continue
            index = min(index for index in wrong if index is not None)
            statements = _rprop_statements(step, got, index)
            right = [label for label, value, right in zip(("theta", "g^-", "Delta"), got, expected)
                     if is_close(value[index], right[index])]
            raise GradingError(
                f"{name} is wrong at step {k}{steps_before(k)}, entry {list(index)}, on the problem of seed {seed} "
                f"{problem.text}: {_rprop_case(step, index, problem)}; " + "; ".join(statements)
                + (f" (your new {listing(right)} {'is' if len(right) == 1 else 'are'} right there)" if right else "")
            )


# ------------------------------------------------------------------------------ Polak-Ribiere+ direction


class DirectionCase(NamedTuple):
    """One call of ``polak_ribiere_direction``: the ``kind`` (``DIRECTION_CASES``), the gradient ``grad`` (n,),
    and ``prev_grad``, ``prev_direction`` (n,) or ``None`` at a restart."""

    kind: str
    grad: Array
    prev_grad: Array | None
    prev_direction: Array | None


def _raw_beta(grad: Array, prev_grad: Array) -> float:
    """Polak-Ribiere's beta before the max with 0."""
    return float(grad @ (grad - prev_grad) / (prev_grad @ prev_grad))


def draw_direction_problem(seed: int) -> list[DirectionCase]:
    """The four cases of ``DIRECTION_CASES`` in n dimensions (n in 3..8), drawn from ``seed``.

    "clipped" has beta_PR < 0 with -g + beta_PR d_prev still downhill, so that only the max with 0 makes the
    difference; "uphill" has beta_PR > 0 with g.(-g + beta_PR d_prev) >= 0.
    """
    rng = np.random.default_rng(seed)
    n = int(rng.integers(3, 9))
    cases = [DirectionCase("restart", rng.normal(size=n), None, None)]
    while True:
        g, g_prev, d_prev = rng.normal(size=n), rng.normal(size=n), rng.normal(size=n)
        beta = _raw_beta(g, g_prev)
        if beta > 0.05 and g @ (-g + beta * d_prev) < -0.1 * (g @ g) and abs(g @ d_prev) > 0.1:
            cases.append(DirectionCase("conjugate", g, g_prev, d_prev))
            break
    while True:
        g = rng.normal(size=n)
        g_prev = rng.uniform(1.3, 2.0) * g + 0.3 * rng.normal(size=n)
        d_prev = -g_prev + 0.5 * rng.normal(size=n)
        beta = _raw_beta(g, g_prev)
        if beta < -0.05 and g @ (-g + beta * d_prev) < -0.1 * (g @ g):
            cases.append(DirectionCase("clipped", g, g_prev, d_prev))
            break
    while True:
        g = rng.normal(size=n)
        g_prev = 0.4 * rng.normal(size=n)
        beta = _raw_beta(g, g_prev)
        d_prev = rng.uniform(1.5, 3.0) * g / max(beta, 1e-3) + 0.2 * rng.normal(size=n)
        if beta > 0.05 and g @ (-g + beta * d_prev) > 0.1 * (g @ g):
            cases.append(DirectionCase("uphill", g, g_prev, d_prev))
            break
    return cases


def reference_direction(case: DirectionCase) -> tuple[Array, float]:
    """(d, beta) of ``companion.conjugate_gradient.next_direction`` for ``case``."""
    wrap = (lambda value: None if value is None else {"x": value})
    direction, beta, _ = next_direction({"x": case.grad}, wrap(case.prev_grad), wrap(case.prev_direction))
    return direction["x"], float(beta)


def _beta_mistakes(case: DirectionCase) -> dict[str, float]:
    """Known wrong betas of a case with a previous gradient, by what the message says of them."""
    g, g_prev, d_prev = case.grad, case.prev_grad, case.prev_direction
    raw = _raw_beta(g, g_prev)
    mistakes = {
        "it is Fletcher-Reeves's beta g.g / (g_prev.g_prev): Polak-Ribiere's numerator is g.(g - g_prev)":
            float(g @ g / (g_prev @ g_prev)),
        "it is Hestenes-Stiefel's beta g.(g - g_prev) / (d_prev.(g - g_prev)): Polak-Ribiere divides by "
        "g_prev.g_prev": float(g @ (g - g_prev) / (d_prev @ (g - g_prev))),
        "it has the wrong sign: beta_PR = g.(g - g_prev) / (g_prev.g_prev)": -raw,
    }
    if case.kind == "clipped":
        mistakes["it is negative: PR+ takes max(0, beta_PR), which restarts the direction at d = -g"] = raw
    if case.kind == "uphill":
        mistakes["it is beta_PR, but the direction restarted (d = -g), so beta is 0"] = raw
    return mistakes


def _direction_mistakes(case: DirectionCase, beta: float) -> dict[str, Array]:
    """Known wrong directions of a case, by what the message says of them (``beta`` the right one)."""
    g = case.grad
    mistakes = {"it goes uphill: d = -g + beta d_prev, with the minus on g": g + (
        0.0 if case.prev_direction is None else beta * case.prev_direction)}
    if case.prev_direction is None:
        return mistakes
    raw = _raw_beta(g, case.prev_grad)
    mistakes["it subtracts beta d_prev: d = -g + beta d_prev"] = -g - beta * case.prev_direction
    mistakes["it adds beta d_prev with beta = beta_PR: PR+ uses max(0, beta_PR)"] = -g + raw * case.prev_direction
    if case.kind == "uphill":
        mistakes["it is -g + beta_PR d_prev, which does not go downhill here (g.d >= 0): restart with d = -g"] = (
            -g + raw * case.prev_direction)
    return mistakes


def check_polak_ribiere(polak_ribiere_direction: Callable, seeds: Iterable[int] = (0, 1, 2)) -> None:
    """Raise ``GradingError`` unless ``polak_ribiere_direction`` gives ``next_direction``'s d and beta in every
    case of every seed's problem.

    Parameters
    ----------
    polak_ribiere_direction : callable
        The student's ``polak_ribiere_direction(grad, prev_grad, prev_direction) -> (direction, beta)``:
        arrays ``(n,)`` (``prev_grad`` and ``prev_direction`` ``None`` at a restart), the direction ``(n,)``
        and beta a number (0 where the direction restarted).
    seeds : iterable of int
        One problem per seed: the four cases of ``DIRECTION_CASES`` (``draw_direction_problem``).
    """
    __tracebackhide__ = True
    name = "polak_ribiere_direction"
    for seed in seeds:
        for case in draw_direction_problem(seed):
            n = case.grad.shape[0]
            where = f"on the {case.kind!r} case of seed {seed} (n={n}): {DIRECTION_TEXT[case.kind]}"
            result = _call(polak_ribiere_direction, name, where, case.grad, case.prev_grad, case.prev_direction)
            direction, beta = as_tuple(result, name, 2, "(direction, beta)")
            direction = as_answer(direction, f"{name}'s direction", (n,), "(n,)")
            beta = float(as_answer(beta, f"{name}'s beta", (), "() (a number)"))
            right_direction, right_beta = reference_direction(case)
            if not is_close(np.array(beta), np.array(right_beta)):
                hint = None
                if case.prev_grad is not None:
                    hint = known_mistake(np.array(beta), {key: np.array(value) for key, value in
                                                          _beta_mistakes(case).items()}, np.array(right_beta))
                raise GradingError(
                    f"{name}'s beta is wrong {where}: yours {beta:.6g}, right {right_beta:.6g}"
                    + (f"; {hint}" if hint else "")
                )
            if not is_close(direction, right_direction):
                hint = known_mistake(direction, _direction_mistakes(case, right_beta), right_direction)
                raise GradingError(
                    f"{name}'s direction is wrong {where} (your beta is right): "
                    + (hint or _entry_text(direction, right_direction, "d"))
                )


# -------------------------------------------------------------------------------------- the Joseph form


class JosephProblem(NamedTuple):
    """A covariance update with an arbitrary (not the optimal) gain: ``P`` (n, n), ``K`` (n, m), ``H`` (m, n),
    ``R`` (m, m)."""

    P: Array
    K: Array
    H: Array
    R: Array

    @property
    def text(self) -> str:
        return problem_text(n=self.P.shape[0], m=self.R.shape[0])


def draw_joseph_problem(seed: int) -> JosephProblem:
    """P and R symmetric positive definite, H and K random (n in 2..6, m in 1..3), drawn from ``seed``."""
    rng = np.random.default_rng(seed)
    n, m = int(rng.integers(2, 7)), int(rng.integers(1, 4))
    return JosephProblem(_spd(rng, n, 1.0), 0.5 * rng.normal(size=(n, m)), rng.normal(size=(m, n)), _spd(rng, m, 0.5))


def _joseph_mistakes(problem: JosephProblem) -> dict[str, Array]:
    """Known wrong covariance updates for a gain K, by what the message says of them."""
    P, K, H, R = problem
    reduced = np.eye(P.shape[0]) - K @ H
    short = reduced @ P
    return {
        "it is the short form (I - K H) P, which equals the Joseph form only for the optimal gain K = P H^T S^-1; "
        "the checks pass a K that is not optimal": short,
        "it is the short form (I - K H) P, symmetrized; it equals the Joseph form only for the optimal gain": 0.5 * (
            short + short.T),
        "the term K R K^T is missing": reduced @ P @ reduced.T,
        "it is (I - K H) P (I - K H) + K R K^T: the right factor is transposed, (I - K H)^T": reduced @ P @ reduced
        + K @ R @ K.T,
        "it has - K R K^T: the Joseph form adds K R K^T": reduced @ P @ reduced.T - K @ R @ K.T,
    }


def check_joseph(joseph_update: Callable, seeds: Iterable[int] = (0, 1, 2)) -> None:
    """Raise ``GradingError`` unless ``joseph_update`` equals ``companion.ekf.joseph_update`` on every seed's problem.

    Parameters
    ----------
    joseph_update : callable
        The student's ``joseph_update(P, K, H, R) -> P_new``: P ``(n, n)``, K ``(n, m)``, H ``(m, n)``,
        R ``(m, m)``; P_new ``(n, n)``.
    seeds : iterable of int
        One random problem (``draw_joseph_problem``) per seed; its K is not the optimal gain, so the short
        form (I - K H) P is wrong there.
    """
    __tracebackhide__ = True
    name = "joseph_update"
    for seed in seeds:
        problem = draw_joseph_problem(seed)
        where = f"on the problem of seed {seed} {problem.text}"
        n = problem.P.shape[0]
        got = as_answer(_call(joseph_update, name, where, *problem), name, (n, n), "(n, n)")
        expected = ekf.joseph_update(*problem)
        if not is_close(got, expected):
            hint = known_mistake(got, _joseph_mistakes(problem), expected)
            raise GradingError(f"{name} is wrong {where}: " + (hint or _entry_text(got, expected, "P")))


# ------------------------------------------------------------------------------------------ the global EKF


class EKFProblem(NamedTuple):
    """One global EKF step: ``theta`` (n,), ``P`` and ``Q`` (n, n), ``predictions`` z and ``targets`` d (m,),
    ``H`` (m, n) and ``R`` (m, m)."""

    theta: Array
    P: Array
    predictions: Array
    targets: Array
    H: Array
    R: Array
    Q: Array

    @property
    def text(self) -> str:
        return problem_text(n=self.theta.shape[0], m=self.targets.shape[0])


def draw_ekf_problem(seed: int) -> EKFProblem:
    """A global EKF step (n in 2..7, m in 1..4) with random symmetric positive definite P, Q and R, drawn
    from ``seed``."""
    rng = np.random.default_rng(seed)
    n, m = int(rng.integers(2, 8)), int(rng.integers(1, 5))
    return EKFProblem(rng.normal(size=n), _spd(rng, n, 1.0), rng.normal(size=m), rng.normal(size=m),
                      rng.normal(size=(m, n)), _spd(rng, m, 0.5), _spd(rng, n, 0.2))


def reference_ekf(problem: EKFProblem) -> tuple[Array, Array]:
    """(theta, P) after ``companion.ekf.ExtendedKalmanFilter.update`` on the problem (global: one group)."""
    params = {"theta": problem.theta.copy()}
    kalman = ekf.ExtendedKalmanFilter(params, p0=problem.P, q=problem.Q, r=problem.R)
    kalman.update(params, problem.predictions, problem.targets, problem.H)
    return params["theta"], kalman.covariance


def _gain(P: Array, H: Array, R: Array) -> Array:
    """K = P H^T (H P H^T + R)^-1."""
    return np.linalg.solve(H @ P @ H.T + R, H @ P).T


def _ekf_mistakes(problem: EKFProblem) -> tuple[dict[str, Array], dict[str, Array]]:
    """Known wrong (theta, P) of an EKF step: (mistakes of theta, mistakes of P with the right theta)."""
    theta, P, z, d, H, R, Q = problem
    prior = P + Q
    K = _gain(prior, H, R)
    n = theta.shape[0]
    reduced = np.eye(n) - K @ H
    thetas = {
        "Q is left out: the gain must use P^- = P + Q": theta + _gain(P, H, R) @ (d - z),
        "the innovation has the wrong sign: theta moves by K (d - z), targets minus predictions": theta - K @ (d - z),
        "it is unchanged: theta moves by K (d - z)": theta,
    }
    if H.shape[0] <= n:                                                 # H P^- H^T is invertible
        thetas["R is left out of S = H P^- H^T + R"] = theta + np.linalg.solve(H @ prior @ H.T, H @ prior).T @ (d - z)
    covariances = {
        "it is P^- = P + Q: the measurement update is missing": prior,
        "it starts from P instead of P^- = P + Q": ekf.joseph_update(P, K, H, R),
        "the term K R K^T of the Joseph form is missing": reduced @ prior @ reduced.T,
        "Q is added after the update: this filter adds it before (P^- = P + Q) and updates P^-":
            ekf.joseph_update(prior, K, H, R) + Q,
    }
    return thetas, covariances


def check_ekf_update(ekf_update: Callable, seeds: Iterable[int] = (0, 1, 2), *,
                     joseph_update: Callable | None = None) -> None:
    """Raise ``GradingError`` unless ``ekf_update`` gives the global EKF's theta and P on every seed's problem.

    Parameters
    ----------
    ekf_update : callable
        The student's ``ekf_update(theta, P, predictions, targets, H, R, Q) -> (theta, P)``: theta ``(n,)``,
        P and Q ``(n, n)``, predictions and targets ``(m,)``, H ``(m, n)``, R ``(m, m)``.
    seeds : iterable of int
        One random problem (``draw_ekf_problem``) per seed.
    joseph_update : callable, optional, keyword-only
        The student's Joseph form, only to say in the message of a wrong P whether it is right.

    Notes
    -----
    theta is checked first: it depends on the gain and the innovation alone. With the optimal gain the
    short form (I - K H) P^- equals the Joseph form up to rounding, so either passes here; ``check_joseph``
    tells them apart.
    """
    __tracebackhide__ = True
    name = "ekf_update"
    for seed in seeds:
        problem = draw_ekf_problem(seed)
        n = problem.theta.shape[0]
        where = f"on the problem of seed {seed} {problem.text}"
        result = as_tuple(_call(ekf_update, name, where, *problem), name, 2, "(theta, P)")
        theta = as_answer(result[0], f"{name}'s theta", (n,), "(n,)")
        P = as_answer(result[1], f"{name}'s P", (n, n), "(n, n)")
        right_theta, right_P = reference_ekf(problem)
        theta_mistakes, P_mistakes = _ekf_mistakes(problem)
        if not is_close(theta, right_theta):
            hint = known_mistake(theta, theta_mistakes, right_theta)
            also = "your P is right" if is_close(P, right_P) else "your P is wrong too"
            raise GradingError(
                f"{name}'s theta is wrong {where}, so the gain K = P^- H^T S^-1 or the innovation d - z is: "
                + (hint or _entry_text(theta, right_theta, "theta")) + f" ({also})"
            )
        if not is_close(P, right_P):
            hint = known_mistake(P, P_mistakes, right_P)
            raise GradingError(
                f"{name}'s P is wrong {where}, though your theta (so your gain) is right: look at the covariance "
                "update; " + (hint or _entry_text(P, right_P, "P")) + _joseph_note(joseph_update, seed)
            )


def _joseph_note(joseph_update: Callable | None, seed: int) -> str:
    """What a message says of the student's ``joseph_update``: right, wrong, or nothing if not given."""
    return other_part_note(joseph_update, [check_joseph], seed, right="; your joseph_update is right",
                           wrong="; your joseph_update is wrong too (see its check)")


# ------------------------------------------------------------------------------------- the decoupled EKF


class DecoupledProblem(NamedTuple):
    """One decoupled EKF step: ``theta`` (n,), the predicted ``blocks`` P_g (n_g, n_g), the ``groups`` (index
    arrays (n_g,) partitioning range(n)), ``predictions``, ``targets`` (m,), ``H`` (m, n) and ``R`` (m, m)."""

    theta: Array
    blocks: list[Array]
    groups: list[Array]
    predictions: Array
    targets: Array
    H: Array
    R: Array

    @property
    def text(self) -> str:
        sizes = problem_text(n=self.theta.shape[0], m=self.targets.shape[0])
        return f"{sizes[:-1]}, groups={[group.tolist() for group in self.groups]})"


def draw_decoupled_problem(seed: int) -> DecoupledProblem:
    """A decoupled step (n in 4..9, m in 1..3, 2 or 3 groups of scattered indices), drawn from ``seed``."""
    rng = np.random.default_rng(seed)
    n, m, count = int(rng.integers(4, 10)), int(rng.integers(1, 4)), int(rng.integers(2, 4))
    cuts = np.sort(rng.choice(np.arange(1, n), size=count - 1, replace=False))
    groups = [np.sort(part) for part in np.split(rng.permutation(n), cuts)]
    blocks = [_spd(rng, group.size, float(rng.uniform(0.3, 2.0))) for group in groups]
    return DecoupledProblem(rng.normal(size=n), blocks, groups, rng.normal(size=m), rng.normal(size=m),
                            rng.normal(size=(m, n)), _spd(rng, m, 0.5))


def reference_decoupled(problem: DecoupledProblem) -> tuple[Array, list[Array]]:
    """(theta, blocks) after ``ExtendedKalmanFilter(..., groups=problem.groups, q=0).update``."""
    n = problem.theta.shape[0]
    full = np.zeros((n, n))
    for index, block in zip(problem.groups, problem.blocks):
        full[np.ix_(index, index)] = block
    params = {"theta": problem.theta.copy()}
    kalman = ekf.ExtendedKalmanFilter(params, p0=full, q=0.0, r=problem.R, groups=problem.groups)
    kalman.update(params, problem.predictions, problem.targets, problem.H)
    return params["theta"], kalman.covariances


def _decoupled_mistakes(problem: DecoupledProblem) -> tuple[Array, list[Array], list[Array]]:
    """Known wrong answers: (theta and blocks with a separate S_g per group, blocks by the Joseph form with R
    alone as the noise)."""
    theta = problem.theta.copy()
    innovation = problem.targets - problem.predictions
    columns = [problem.H[:, index] for index in problem.groups]
    shares = [H @ P @ H.T for H, P in zip(columns, problem.blocks)]
    S = problem.R + sum(shares)
    own_blocks, joseph_blocks = [], []
    for index, H, P, share in zip(problem.groups, columns, problem.blocks, shares):
        own_gain = np.linalg.solve(problem.R + share, H @ P).T                       # S_g = R + H_g P_g H_g^T
        theta[index] += own_gain @ innovation
        own_blocks.append(P - own_gain @ H @ P)
        joseph_blocks.append(ekf.joseph_update(P, np.linalg.solve(S, H @ P).T, H, problem.R))
    return theta, own_blocks, joseph_blocks


def check_decoupled(decoupled_ekf_update: Callable, seeds: Iterable[int] = (0, 1, 2), *,
                    joseph_update: Callable | None = None) -> None:
    """Raise ``GradingError`` unless ``decoupled_ekf_update`` gives the decoupled EKF's theta and blocks on every
    seed's problem.

    Parameters
    ----------
    decoupled_ekf_update : callable
        The student's ``decoupled_ekf_update(theta, blocks, groups, predictions, targets, H, R) ->
        (theta, blocks)``: theta ``(n,)``, ``blocks`` a list of P_g ``(n_g, n_g)`` (already predicted:
        Q is added before), ``groups`` a list of index arrays ``(n_g,)`` into theta, predictions and targets
        ``(m,)``, H ``(m, n)``, R ``(m, m)``; it returns the new theta and the list of new blocks.
    seeds : iterable of int
        One random problem (``draw_decoupled_problem``) per seed.
    joseph_update : callable, optional, keyword-only
        The student's Joseph form, only to say in the message of a wrong block whether it is right.
    """
    __tracebackhide__ = True
    name = "decoupled_ekf_update"
    for seed in seeds:
        problem = draw_decoupled_problem(seed)
        n, count = problem.theta.shape[0], len(problem.groups)
        where = f"on the problem of seed {seed} {problem.text}"
        result = as_tuple(_call(decoupled_ekf_update, name, where, *problem), name, 2, "(theta, blocks)")
        theta = as_answer(result[0], f"{name}'s theta", (n,), "(n,)")
        blocks = _blocks_answer(result[1], name, problem.groups)
        right_theta, right_blocks = reference_decoupled(problem)
        own_theta, own_blocks, joseph_blocks = _decoupled_mistakes(problem)
        if not is_close(theta, right_theta):
            wrong = [g for g, index in enumerate(problem.groups) if not is_close(theta[index], right_theta[index])]
            hint = known_mistake(theta, {_OWN_S: own_theta}, right_theta) or _entry_text(
                theta, right_theta, "theta")
            raise GradingError(
                f"{name}'s theta is wrong in group{'s' if len(wrong) > 1 else ''} {listing([str(g) for g in wrong])} "
                f"of {count}, {where}: {hint}"
            )
        for g, (block, right) in enumerate(zip(blocks, right_blocks)):
            if is_close(block, right):
                continue
            hint = known_mistake(block, {
                _OWN_S: own_blocks[g],
                "it is the Joseph form with the noise R alone: block g sees R plus the other groups' "
                "H_g' P_g' H_g'^T (or use the short form P_g - K_g H_g P_g, exact for this K_g)": joseph_blocks[g],
                "it is unchanged: the measurement update is missing": problem.blocks[g],
            }, right) or _entry_text(block, right, f"P_{g}")
            before = "" if g == 0 else f" ({'block 0 is' if g == 1 else f'blocks 0 .. {g - 1} are'} right)"
            raise GradingError(
                f"{name}'s block P_{g} (group {g}, indices {problem.groups[g].tolist()}) is wrong{before}, "
                f"{where}, though your theta is right: {hint}" + _joseph_note(joseph_update, seed)
            )


#: the message of the classic mistake of the decoupled EKF
_OWN_S = ("each group used its own S_g = R + H_g P_g H_g^T; the groups share one S = R + sum_g H_g P_g H_g^T, "
          "since one innovation d - z is explained by all groups together")


def _blocks_answer(value: object, name: str, groups: Sequence[Array]) -> list[Array]:
    """The student's blocks, checked: a list (or tuple) of one ``(n_g, n_g)`` array per group."""
    __tracebackhide__ = True
    if not isinstance(value, (list, tuple)) or len(value) != len(groups):
        got = (f"a {type(value).__name__} of {len(value)} item{'' if len(value) == 1 else 's'}"
               if isinstance(value, (list, tuple)) else type(value).__name__)
        raise GradingError(f"{name}'s blocks must be a list of {len(groups)} arrays (one P_g per group), got {got}")
    return [as_answer(block, f"{name}'s blocks[{g}]", (index.size, index.size), "(n_g, n_g)")
            for g, (block, index) in enumerate(zip(value, groups))]
