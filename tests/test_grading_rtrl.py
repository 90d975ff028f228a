"""The grader of assignment 5 (``companion.grading.rtrl``) without nbgrader: its reference against the
companion's RTRL, BPTT and finite differences, a right answer passing every check, and each seeded mistake
failing with the message that names it."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from companion import bptt, gradcheck, rtrl
from companion.cells import Elman
from companion.grading import rtrl as grade
from companion.grading.core import GradingError

SEEDS = range(20)


def student(bug: str | None = None) -> SimpleNamespace:
    """A student's three functions, written as the chapter's exercise does (W_hh and tanh' rather than a
    dense J_t), with one seeded ``bug`` or none."""

    def immediate_jacobians(params, x, h_prev, h):
        H = h.shape[1]
        slope, eye, W_hh = 1.0 - h ** 2, np.eye(H), params["W_hh"]
        J = {
            "J_transposed": np.einsum("bk,kj->bjk", slope, W_hh),
            "J_with_W_hh_transposed": np.einsum("bk,jk->bkj", slope, W_hh),
            "J_no_slope": np.broadcast_to(W_hh, (h.shape[0], H, H)),
            "J_slope_on_columns": np.einsum("bj,kj->bkj", slope, W_hh),
            "J_slope_of_h_prev": np.einsum("bk,kj->bkj", 1.0 - h_prev ** 2, W_hh),
        }.get(bug, np.einsum("bk,kj->bkj", slope, W_hh))
        reads_hh = h if bug == "W_hh_with_h_t" else h_prev
        Jtheta = {
            "W_xh": np.einsum("ki,bj->bkij", eye, x) * (1.0 if bug == "W_xh_no_slope" else slope[:, :, None, None]),
            "W_hh": slope[:, :, None, None] * np.einsum("ki,bj->bkij", eye, reads_hh),
            "b_h": np.broadcast_to(eye, (h.shape[0], H, H)) if bug == "b_h_no_slope" else eye * slope[:, :, None],
        }
        if bug == "W_hh_swapped":
            Jtheta["W_hh"] = np.swapaxes(Jtheta["W_hh"], 2, 3)
        if bug == "W_hh_dense":                       # every unit k, not only k = i
            Jtheta["W_hh"] = slope[:, :, None, None] * np.broadcast_to(h_prev[:, None, None, :], Jtheta["W_hh"].shape)
        if bug == "Jtheta_missing_key":
            del Jtheta["b_h"]
        return (J,) if bug == "only_J" else (J, Jtheta)

    def rtrl_step(params, sens, x, h_prev):
        W_hh = params["W_hh"]
        h = np.tanh(x @ params["W_xh"].T + h_prev @ W_hh.T + params["b_h"])
        J, Jtheta = immediate_jacobians(params, x, h_prev, h)
        new = {}
        for key, block in sens.items():
            spread = block.reshape(*block.shape[:2], -1)                      # (B, H, entries)
            if bug == "step_transposed":
                carried = np.swapaxes(J, 1, 2) @ spread
            else:
                carried = (1.0 - h ** 2)[:, :, None] * np.einsum("kl,ble->bke", W_hh, spread)
            carried = carried.reshape(block.shape)
            if key == "h0":
                new[key] = block if bug == "step_h0_not_carried" else carried
            elif bug == "step_no_carry":
                new[key] = Jtheta[key]
            elif bug == "step_no_immediate":
                new[key] = carried
            else:
                new[key] = carried + Jtheta[key]
        if bug == "step_missing_h0":
            del new["h0"]
        if bug == "step_wrong_h":
            h = np.tanh(x @ params["W_xh"].T + params["b_h"])
        return h, new

    def rtrl_gradients(params, xs, h0, dhs):
        T, B, n_in = xs.shape
        H = h0.shape[1]
        sens = {"W_xh": np.zeros((B, H, H, n_in)), "W_hh": np.zeros((B, H, H, H)), "b_h": np.zeros((B, H, H)),
                "h0": np.zeros((B, H, H)) if bug == "h0_start_zero" else np.tile(np.eye(H), (B, 1, 1))}
        grads = {key: np.zeros_like(value) for key, value in params.items()}
        dh0 = np.zeros((B, H))
        h = np.zeros_like(h0) if bug == "ignores_h0" else h0
        for t in range(T):
            h, sens = rtrl_step(params, sens, xs[t], h)
            if bug == "last_step_only" and t < T - 1:
                continue
            for key in grads:
                grads[key] += np.tensordot(dhs[t], sens[key], axes=([0, 1], [0, 1]))
            dh0 += np.einsum("bk,bkj->bj", dhs[t], sens["h0"])
        return grads, (dh0.sum(axis=0) if bug == "dh0_summed" else dh0)

    return SimpleNamespace(immediate_jacobians=immediate_jacobians, rtrl_step=rtrl_step, rtrl_gradients=rtrl_gradients)


def run_all_checks(answer: SimpleNamespace, seeds=SEEDS) -> None:
    grade.check_state_jacobian(answer.immediate_jacobians, seeds)
    grade.check_param_jacobian(answer.immediate_jacobians, "W_hh", seeds)
    grade.check_param_jacobian(answer.immediate_jacobians, ["W_xh", "b_h"], seeds)
    grade.check_rtrl_step(answer.rtrl_step, seeds, immediate_jacobians=answer.immediate_jacobians)
    grade.check_gradient(answer.rtrl_gradients, ["W_xh", "W_hh", "b_h"], seeds, rtrl_step=answer.rtrl_step)
    grade.check_gradient(answer.rtrl_gradients, "h0", seeds, rtrl_step=answer.rtrl_step)


def test_reference_sensitivities_follow_the_dense_recursion_and_finite_differences():
    problem = grade.draw_problem(4)
    steps, sens = grade.reference_steps(problem), grade.reference_sensitivities(problem)
    B, H = problem.h0.shape
    assert all(np.all(block == 0) for key, block in sens[0].items() if key != "h0")
    assert np.array_equal(sens[0]["h0"], np.broadcast_to(np.eye(H), (B, H, H)))
    dense = {key: np.zeros_like(block) for key, block in sens[0].items()} | {"h0": sens[0]["h0"]}
    for t, step in enumerate(steps, start=1):              # Pi_t = J_t Pi_(t-1) + J^theta_t, dense Jacobians
        dense = {key: np.einsum("bkl,bl...->bk...", step.J, block) + step.Jtheta.get(key, 0.0)
                 for key, block in dense.items()}
        for key in grade.SENSITIVITIES:
            np.testing.assert_allclose(sens[t][key], dense[key], rtol=1e-12, atol=1e-14)
    # the layout [b, k, i, j] = d h_{T,k} / d (W_hh)_{ij}, by central differences on one entry
    b, k, i, j, eps = B - 1, H - 1, 1, 0, 1e-6
    h_T = []
    for sign in (1.0, -1.0):
        params = {key: value.copy() for key, value in problem.params.items()}
        params["W_hh"][i, j] += sign * eps
        h_T.append(bptt.forward(problem.cell, params, problem.xs, problem.h0)[0][-1, b, k])
    assert abs((h_T[0] - h_T[1]) / (2 * eps) - sens[-1]["W_hh"][b, k, i, j]) < 1e-7


def test_reference_gradients_equal_the_sum_of_the_shares_and_the_companions_rtrl():
    for seed in range(5):
        problem = grade.draw_problem(seed)
        expected = grade.reference_gradients(problem)
        sens = grade.reference_sensitivities(problem)[1:]
        for key in grade.PARAMS:
            total = sum(np.einsum("bk,bk...->...", problem.dhs[t], sens[t][key]) for t in range(len(sens)))
            np.testing.assert_allclose(total, expected[key], rtol=1e-10, atol=1e-12)
        result = rtrl.rtrl(problem.cell, problem.params, problem.xs, problem.dhs, state0=problem.h0)
        for key in grade.PARAMS:
            np.testing.assert_allclose(result.grads[key], expected[key], rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(result.dstate0, expected["h0"], rtol=1e-10, atol=1e-12)


def test_reference_gradients_match_finite_differences():
    problem = grade.draw_problem(7)
    loss = lambda params: float(np.sum(bptt.forward(problem.cell, params, problem.xs, problem.h0)[0] * problem.dhs))
    numeric = gradcheck.numerical_gradient(loss, problem.params)
    expected = grade.reference_gradients(problem)
    assert max(gradcheck.relative_errors({key: expected[key] for key in grade.PARAMS}, numeric).values()) < 1e-7


def test_problems_are_reproducible_and_vary():
    first, again = grade.draw_problem(3), grade.draw_problem(3)
    assert np.array_equal(first.xs, again.xs) and np.array_equal(first.params["W_hh"], again.params["W_hh"])
    shapes = {grade.draw_problem(seed).text for seed in SEEDS}
    assert len(shapes) > 10
    assert isinstance(grade.draw_problem(0).cell, Elman)


def test_a_right_answer_passes_every_check():
    run_all_checks(student())


BUGS = {
    # bug: (the check that must fail, a fragment of its message)
    "J_transposed": ("J", "it is the transpose of J_t"),
    "J_with_W_hh_transposed": ("J", "it uses W_hh^T where W_hh belongs"),
    "J_no_slope": ("J", "it lacks the factor tanh'(a_t) = 1 - h_t^2 on row k"),
    "J_slope_on_columns": ("J", "tanh'(a_t) scales its columns"),
    "J_slope_of_h_prev": ("J", "it uses 1 - h_{t-1}^2"),
    "W_hh_with_h_t": ("W_hh", "it uses h_t where the weight (W_hh)_{ij} multiplies h_{t-1,j}"),
    "W_hh_swapped": ("W_hh", "i and j are swapped"),
    "W_hh_dense": ("W_hh", "only entries with k != i are wrong: they must be 0"),
    "W_xh_no_slope": ("W_xh_b_h", "Jtheta['W_xh'], the immediate Jacobian J^theta_t of W_xh, is wrong at step t = 1, "
                                  "on the problem of seed 0 (T=6, B=2, n_in=2, H=3): it lacks the factor tanh'(a_t)"),
    "b_h_no_slope": ("W_xh_b_h", "J^theta_t of b_h, is wrong at step t = 1, on the problem of seed 0"),
    "step_transposed": ("step", "rtrl_step's sens['h0'], Pi^0_t, is wrong at step t = 1 (Pi^0_0 = I, so Pi^0_1 = J_1)"),
    "step_no_carry": ("step", "is wrong at step t = 2, given the right Pi_1 (step 1 is right)"),
    "step_no_immediate": ("step", "the immediate term J^theta_t is missing"),
    "step_h0_not_carried": ("step", "it was not carried: Pi^0_t = J_t Pi^0_(t-1)"),
    "step_wrong_h": ("step", "rtrl_step's h is wrong at step t = 1"),
    "h0_start_zero": ("h0", "it is zero: the sensitivities to h_0 start at Pi^0_0 = I, not 0"),
    "ignores_h0": ("params", "it is the gradient of a sequence started from h_0 = 0"),
    "last_step_only": ("params", "from step 2 on (it is right on the first step of the sequence)"),
}


def _check(answer: SimpleNamespace, which: str) -> None:
    if which == "J":
        grade.check_state_jacobian(answer.immediate_jacobians, SEEDS)
    elif which in ("W_hh", "W_xh_b_h"):
        names = "W_hh" if which == "W_hh" else ["W_xh", "b_h"]
        grade.check_param_jacobian(answer.immediate_jacobians, names, SEEDS)
    elif which == "step":
        grade.check_rtrl_step(answer.rtrl_step, SEEDS, immediate_jacobians=answer.immediate_jacobians)
    else:
        names = "h0" if which == "h0" else ["W_xh", "W_hh", "b_h"]
        grade.check_gradient(answer.rtrl_gradients, names, SEEDS, rtrl_step=answer.rtrl_step)


@pytest.mark.parametrize("bug", BUGS)
def test_a_seeded_bug_fails_its_check_with_its_diagnosis(bug):
    which, fragment = BUGS[bug]
    with pytest.raises(GradingError) as error:
        _check(student(bug), which)
    assert fragment in str(error.value)


@pytest.mark.parametrize("bug, passes", [
    ("J_transposed", ("W_hh", "W_xh_b_h", "step", "params", "h0")),     # rtrl_step multiplies by W_hh itself
    ("W_hh_with_h_t", ("J", "W_xh_b_h", "h0")),
    ("step_no_carry", ("J", "W_hh", "W_xh_b_h", "h0")),
    ("h0_start_zero", ("J", "W_hh", "W_xh_b_h", "step", "params")),
])
def test_a_seeded_bug_leaves_the_other_checks_passing(bug, passes):
    for which in passes:
        _check(student(bug), which)


def test_the_messages_of_later_checks_say_whether_the_earlier_parts_are_right():
    with pytest.raises(GradingError, match="your immediate_jacobians is wrong on this problem too"):
        _check(student("W_hh_with_h_t"), "step")
    with pytest.raises(GradingError, match="your immediate_jacobians is right on this problem"):
        _check(student("step_no_immediate"), "step")
    with pytest.raises(GradingError, match="your rtrl_step is wrong on this problem too"):
        _check(student("step_no_carry"), "params")
    with pytest.raises(GradingError, match=r"your rtrl_step is right on this problem, so look at rtrl_gradients"):
        _check(student("last_step_only"), "h0")


def test_an_unknown_wrong_answer_is_located_by_its_first_wrong_entry():
    def scaled(params, x, h_prev, h):
        J, Jtheta = student().immediate_jacobians(params, x, h_prev, h)
        return 1.1 * J, {**Jtheta, "W_hh": 1.1 * Jtheta["W_hh"]}

    located = r"J_t is wrong at step t = 1, .*first wrong entry \[b, k, j\] = \[0, 0, 0\]"
    with pytest.raises(GradingError, match=located):
        grade.check_state_jacobian(scaled, SEEDS)
    located = r"first wrong entry \[b, k, i, j\] = \[0, 0, 0, 0\].*only entries with k = i"
    with pytest.raises(GradingError, match=located):
        grade.check_param_jacobian(scaled, "W_hh", SEEDS)


def test_not_implemented_and_malformed_answers():
    def blank(*args):
        raise NotImplementedError

    for check, name in ((lambda f: grade.check_state_jacobian(f), "immediate_jacobians"),
                        (lambda f: grade.check_rtrl_step(f), "rtrl_step"),
                        (lambda f: grade.check_gradient(f, "h0"), "rtrl_gradients")):
        with pytest.raises(GradingError, match=f"{name} is not implemented yet"):
            check(blank)
    with pytest.raises(GradingError, match=r"immediate_jacobians must return 2 values \(J, Jtheta\), got a tuple of 1"):
        grade.check_state_jacobian(student("only_J").immediate_jacobians)
    with pytest.raises(GradingError, match=r"Jtheta must have exactly the keys .*missing \['b_h'\]"):
        grade.check_param_jacobian(student("Jtheta_missing_key").immediate_jacobians, "W_hh")
    grade.check_state_jacobian(student("Jtheta_missing_key").immediate_jacobians)   # J alone is still graded
    with pytest.raises(GradingError, match=r"rtrl_step's sens must have exactly the keys .*missing \['h0'\]"):
        grade.check_rtrl_step(student("step_missing_h0").rtrl_step)
    with pytest.raises(GradingError, match=r"dh0 must have shape \(B, H\) = \(2, 3\), got \(3,\)"):
        grade.check_gradient(student("dh0_summed").rtrl_gradients, "W_hh")
    with pytest.raises(GradingError, match=r"Jtheta\['W_hh'\] must have shape \(B, H, H, H\)"):
        grade.check_param_jacobian(lambda *args: (None, {"W_xh": 0, "W_hh": np.zeros(3), "b_h": 0}), "W_hh")
    def nan(params, xs, h0, dhs):
        return {key: np.full_like(value, np.nan) for key, value in params.items()}, h0

    with pytest.raises(GradingError, match=r"grads\['W_xh'\] contains NaN or inf"):
        grade.check_gradient(nan, "W_xh")


def test_unknown_names_are_refused():
    with pytest.raises(ValueError, match="names must be among"):
        grade.check_param_jacobian(student().immediate_jacobians, "h0")
    with pytest.raises(ValueError, match="names must be among"):
        grade.check_gradient(student().rtrl_gradients, [])
