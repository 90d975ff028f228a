"""The grader of the spiking assignment (``companion.grading.spiking``) without nbgrader: its reference
against the chapter's equations, a right answer (written here, from the equations, in plain numpy)
passing every check on twenty seeds, each seeded mistake failing with the message that names it, and a
blank function and a wrong shape getting theirs."""
from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from companion.grading import spiking as grade
from companion.grading.core import GradingError

SEEDS = range(20)


def student(bug: str | None = None) -> SimpleNamespace:
    """A student's four functions, with one seeded ``bug`` or none."""

    def step(u):
        return (u > 0).astype(float)

    def lif_forward(params, xs, beta, theta, reset):
        T, B, _ = xs.shape
        H = params["b_h"].shape[0]
        S, U = np.zeros((B, H)), np.zeros((B, H))
        spikes, membranes = np.zeros((T, B, H)), np.zeros((T, B, H))
        for t in range(T):
            I = xs[t] @ params["W_xh"].T + params["b_h"]
            if bug != "no_feedback":
                I = I + S @ params["W_hh"].T
            R = np.zeros_like(U) if bug in ("no_reset", "reset_now") else step(U - theta)
            if reset == "subtract":
                U = beta * U + I - theta * R
            elif bug == "zero_holds":
                U = (1 - R) * (beta * U + I)
            else:
                U = beta * (1 - R) * U + I
            S = (U >= theta).astype(float) if bug == "greater_equal" else step(U - theta)
            if bug in ("reset_now", "reset_now_also"):          # "also": the delayed reset kept too
                U = U - theta * S if reset == "subtract" else (1 - S) * U
            spikes[t], membranes[t] = S, U
        if bug == "forward_wrong_shape":
            return spikes[:, 0], membranes
        return spikes, membranes

    def surrogate_derivative(u, kind, slope):
        if bug == "surrogate_blank":
            raise NotImplementedError
        if kind == "fast_sigmoid":
            return 1.0 / (slope * np.abs(u) + 1.0) ** (1 if bug == "fast_not_squared" else 2)
        numerator = 1 / math.pi if bug == "atan_docstring" else slope / 2
        return numerator / (1.0 + (math.pi * slope * u / 2) ** 2)

    def lif_adjoints(params, spikes, membranes, dhs, beta, theta, reset, sigma_prime):
        T = membranes.shape[0]
        U_prev = np.concatenate([np.zeros_like(membranes[:1]), membranes[:-1]])
        R = step(U_prev - theta)
        Ubar = np.zeros_like(membranes)
        for t in range(T - 1, -1, -1):
            Sbar = dhs[t].copy()
            later = 0.0
            if t + 1 < T:
                if bug != "no_recurrent_path":
                    Sbar = Sbar + Ubar[t + 1] @ params["W_hh"]
                rho = beta * (1 - R[t + 1]) if (reset == "zero" and bug != "zero_factor_missing") else beta
                if bug != "no_membrane_path":
                    later = rho * Ubar[t + 1]
                if bug == "reset_differentiated":
                    Sbar = Sbar + (-theta if reset == "subtract" else -beta * membranes[t]) * Ubar[t + 1]
            Ubar[t] = sigma_prime(membranes[t] - theta) * Sbar + later
            if bug == "adjoint_nudged" and t == 1:
                Ubar[t] = Ubar[t] + 0.1
        return Ubar

    def lif_gradients(params, xs, spikes, Ubar):
        S_prev = np.concatenate([np.zeros_like(spikes[:1]), spikes[:-1]])
        pre = spikes if bug == "W_hh_same_step" else S_prev
        grads = {"W_xh": np.einsum("tbh,tbi->hi", Ubar, xs), "W_hh": np.einsum("tbh,tbj->hj", Ubar, pre),
                 "b_h": Ubar.sum(axis=(0, 1))}
        if bug == "b_h_not_summed_over_batch":
            grads["b_h"] = Ubar.sum(axis=0)
        if bug == "gradients_missing_key":
            del grads["b_h"]
        return grads, Ubar @ params["W_xh"]

    return SimpleNamespace(lif_forward=lif_forward, surrogate_derivative=surrogate_derivative,
                           lif_adjoints=lif_adjoints, lif_gradients=lif_gradients)


# ----- the reference against the equations ----------------------------------------------------------------
@pytest.mark.parametrize("seed", range(6))
def test_reference_is_the_equations(seed):
    """The companion's answers equal the module docstring's equations, written out (the right student)."""
    problem = grade.draw_problem(seed)
    ref = grade.reference(problem)
    right = student()
    spikes, membranes = right.lif_forward(problem.params, problem.xs, problem.beta, problem.theta, problem.reset)
    np.testing.assert_allclose(membranes, ref.membranes, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(spikes, ref.spikes)
    Ubar = right.lif_adjoints(problem.params, spikes, membranes, problem.dhs, problem.beta, problem.theta,
                              problem.reset, problem.sigma_prime)
    np.testing.assert_allclose(Ubar, ref.Ubar, rtol=1e-12, atol=1e-12)
    grads, dxs = right.lif_gradients(problem.params, problem.xs, spikes, Ubar)
    for key in grade.PARAMS:
        np.testing.assert_allclose(grads[key], ref.grads[key], rtol=1e-12, atol=1e-12, err_msg=key)
    np.testing.assert_allclose(dxs, ref.dxs, rtol=1e-12, atol=1e-12)


def test_problems_cover_both_resets_and_surrogates_and_spike():
    problems = [grade.draw_problem(seed) for seed in range(23)]
    assert {p.reset for p in problems} == set(grade.RESETS)
    assert {p.surrogate for p in problems} == {"fast_sigmoid", "atan"}
    for p in problems:
        spikes = grade.reference(p).spikes
        assert 0.15 <= spikes.mean() <= 0.85


# ----- a right answer passes ---------------------------------------------------------------------------
def test_a_right_answer_passes_every_check_on_twenty_seeds():
    right = student()
    grade.check_forward(right.lif_forward, seeds=SEEDS)
    grade.check_surrogate(right.surrogate_derivative, seeds=SEEDS)
    grade.check_adjoints(right.lif_adjoints, seeds=SEEDS)
    grade.check_gradients(right.lif_gradients, seeds=SEEDS)


# ----- each seeded mistake fails with its message -----------------------------------------------------------
MISTAKES = [
    ("check_forward", "no_reset", "no reset: a spike at step t - 1 resets the membrane"),
    ("check_forward", "reset_now", "the reset is applied in the step of the spike"),
    ("check_forward", "reset_now_also", "the reset is applied in the step of the spike"),
    ("check_forward", "no_feedback", "no recurrent input: I_t includes W_hh S_{t-1}"),
    ("check_forward", "zero_holds", "the reset to zero discards the step's input too"),
    ("check_forward", "greater_equal", "a membrane exactly at the threshold spikes"),
    ("check_surrogate", "atan_docstring", "this is the formula of snntorch's docstring"),
    ("check_surrogate", "fast_not_squared", "the denominator is squared"),
    ("check_adjoints", "reset_differentiated", "the reset is differentiated"),
    ("check_adjoints", "no_membrane_path", "the membrane's own path is missing"),
    ("check_adjoints", "no_recurrent_path", "the recurrent path is missing"),
    ("check_adjoints", "zero_factor_missing", "the zero reset's factor is missing"),
    ("check_adjoints", "adjoint_nudged", "Ubar is wrong at step t = 2"),
    ("check_gradients", "W_hh_same_step", "W_hh pairs Ubar_t with the spikes of the same step"),
]


def _run(check: str, bug: str, seeds=SEEDS) -> None:
    functions = student(bug)
    target = {"check_forward": functions.lif_forward, "check_surrogate": functions.surrogate_derivative,
              "check_adjoints": functions.lif_adjoints, "check_gradients": functions.lif_gradients}[check]
    getattr(grade, check)(target, seeds=seeds)


@pytest.mark.parametrize("check, bug, message", MISTAKES, ids=[bug for _, bug, _ in MISTAKES])
def test_each_mistake_fails_with_its_message(check, bug, message):
    with pytest.raises(GradingError, match="seed|threshold") as failure:
        _run(check, bug)
    assert message in str(failure.value), str(failure.value)


def test_greater_equal_threshold_differs_only_at_a_tie():
    """``U >= theta`` differs from snntorch's ``U > theta`` only at a tie, which random problems never
    produce: the seeds' problems pass it, and the check's extra problem with a tie catches it."""
    for seed in SEEDS:
        problem = grade.draw_problem(seed)
        spikes, _ = student("greater_equal").lif_forward(problem.params, problem.xs, problem.beta, problem.theta,
                                                         problem.reset)
        np.testing.assert_array_equal(spikes, grade.reference(problem).spikes)
    right, wrong = student(), student("greater_equal")
    params = {"W_xh": np.array([[0.5]]), "W_hh": np.zeros((1, 1)), "b_h": np.zeros(1)}
    xs = np.ones((3, 1, 1))
    s_right, _ = right.lif_forward(params, xs, 0.0, 0.5, "subtract")
    s_wrong, _ = wrong.lif_forward(params, xs, 0.0, 0.5, "subtract")
    assert s_right.sum() == 0 and s_wrong.sum() == 3


def test_adjoint_message_names_the_latest_wrong_step_and_the_problem():
    with pytest.raises(GradingError) as failure:
        _run("check_adjoints", "no_recurrent_path", seeds=[0])
    text = str(failure.value)
    problem = grade.draw_problem(0)
    T = problem.xs.shape[0]
    assert f"at step t = {T - 1} (step {T} is right)" in text
    assert f"seed 0 (T={T}" in text and f"reset={problem.reset!r}" in text


def test_surrogate_message_gives_the_value_at_zero():
    with pytest.raises(GradingError) as failure:
        _run("check_surrogate", "atan_docstring", seeds=[0])
    assert "at u = 0 yours gives 0.31831" in str(failure.value)


# ----- blank functions and wrong shapes ---------------------------------------------------------------------
def _blank(*args):
    raise NotImplementedError


@pytest.mark.parametrize("check, name", [("check_forward", "lif_forward"), ("check_surrogate", "surrogate_derivative"),
                                         ("check_adjoints", "lif_adjoints"), ("check_gradients", "lif_gradients")])
def test_a_blank_function_says_it_is_not_implemented(check, name):
    with pytest.raises(GradingError, match=f"{name} is not implemented yet"):
        getattr(grade, check)(_blank)


def test_wrong_shapes_and_keys_are_named():
    with pytest.raises(GradingError, match=r"lif_forward's spikes must have shape \(T, B, H\)"):
        _run("check_forward", "forward_wrong_shape")
    with pytest.raises(GradingError, match=r"grads\['b_h'\] must have shape \(H,\)"):
        _run("check_gradients", "b_h_not_summed_over_batch")
    with pytest.raises(GradingError, match=r"must have exactly the keys \['W_hh', 'W_xh', 'b_h'\]; missing \['b_h'\]"):
        _run("check_gradients", "gradients_missing_key")
    with pytest.raises(GradingError, match="lif_forward must return 2 values"):
        grade.check_forward(lambda *args: np.zeros(3))


def test_unknown_gradient_names_are_an_instructors_error():
    with pytest.raises(ValueError, match="names must be among"):
        grade.check_gradients(student().lif_gradients, ["W_hy"])
