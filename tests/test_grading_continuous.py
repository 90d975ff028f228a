"""The grader of the continuous-time adjoint assignment (``companion.grading.continuous``), without nbgrader.

A correct implementation written here (loops over the grid, independent of the grader's reference, which
calls ``companion.continuous``) passes every check; each seeded bug fails the checks of its part with a
message that names the cause, and passes the checks of the other parts; a blank function and wrong
return values get messages that say so.
"""
from __future__ import annotations

import numpy as np
import pytest

from companion.grading import GradingError
from companion.grading import continuous as grade

SEEDS = range(20)


# ----- a correct implementation: the notebook's given code and the answers, written as loops -------------------
def field(params, h, x):
    """f(h, x) = (-h + W_hh tanh(h) + W_xh x + b_h) / tau, (..., B, H)."""
    return (-h + np.tanh(h) @ params["W_hh"].T + x @ params["W_xh"].T + params["b_h"]) / params["tau"]


def adjoint_field(params, h, h_bar):
    """F(h)^T hbar, (B, H)."""
    g = h_bar / params["tau"]
    return -g + (1.0 - np.tanh(h) ** 2) * (g @ params["W_hh"])


def euler_solve(params, h0, times, xs):
    hs = [h0]
    for n in range(len(times) - 1):
        hs.append(hs[-1] + (times[n + 1] - times[n]) * field(params, hs[-1], xs[n]))
    return np.stack(hs)


def make_adjoint_path(*, jump_at=lambda n, N: True, state=lambda n: n + 1, sign=1.0, scale=1.0,
                      store_before_jump=False, start_with_jump=True, jump_sign=1.0):
    """The right ``adjoint_path``, or one with a seeded bug: ``jump_at(n, N)`` whether the jump at an interior
    grid index n is added, ``state(n)`` the index of h where F is taken in the step from t_{n+1} to t_n,
    ``sign``/``scale`` of the step, ``store_before_jump``, ``start_with_jump`` (at t_end), ``jump_sign``."""

    def adjoint_path(params, hs, times, measured, targets):
        N, n_out = len(times) - 1, targets.shape[2]
        jumps = {int(n): jump_sign * np.pad(hs[n][:, :n_out] - targets[k], ((0, 0), (0, hs.shape[2] - n_out)))
                 for k, n in enumerate(measured)}
        h_bar = jumps.get(N, np.zeros(hs.shape[1:])) if start_with_jump else np.zeros(hs.shape[1:])
        adjoints = [h_bar]
        for n in range(N - 1, -1, -1):
            h_bar = h_bar + sign * scale * (times[n + 1] - times[n]) * adjoint_field(params, hs[state(n)], h_bar)
            before = h_bar
            if n in jumps and jump_at(n, N):
                h_bar = h_bar + jumps[n]
            adjoints.append(before if store_before_jump else h_bar)
        return np.stack(adjoints[::-1])

    return adjoint_path


def make_parameter_gradients(*, tau_sign=1.0, with_length=True, at=lambda n: n, first=1, last=0,
                             linear_W_hh=False):
    """The right ``parameter_gradients``, or a bug: ``tau_sign``, ``with_length`` (the factor t_n - t_{n-1}),
    ``at(n)`` the index of h and x in step n's term, the steps ``first .. N - last``, ``linear_W_hh``
    (h for tanh(h))."""

    def parameter_gradients(params, hs, times, xs, adjoints):
        grads = {key: np.zeros_like(value) for key, value in params.items()}
        for n in range(first, len(times) - last):
            length = times[n] - times[n - 1] if n > 0 else times[1] - times[0]
            g = (length if with_length else 1.0) * adjoints[n] / params["tau"]
            h, x = hs[at(n)], xs[at(n)]
            grads["W_hh"] += g.T @ (h if linear_W_hh else np.tanh(h))
            grads["W_xh"] += g.T @ x
            grads["b_h"] += g.sum(axis=0)
            grads["tau"] -= tau_sign * (g * field(params, h, x)).sum(axis=0)
        return grads

    return parameter_gradients


def make_ctrnn_gradients(adjoint_path=make_adjoint_path(), *, mean_loss=False, dh0_index=0):
    def ctrnn_gradients(params, h0, times, xs, measured, targets):
        hs = euler_solve(params, h0, times, xs)
        errors = hs[measured][:, :, :targets.shape[2]] - targets
        loss = 0.5 * np.mean(errors**2) if mean_loss else 0.5 * np.sum(errors**2)
        adjoints = adjoint_path(params, hs, times, measured, targets)
        return loss, make_parameter_gradients()(params, hs, times, xs, adjoints), adjoints[dh0_index]

    return ctrnn_gradients


def blank(*args):
    raise NotImplementedError


def assert_fails(check, fragment):
    with pytest.raises(GradingError) as error:
        check()
    assert fragment in str(error.value), str(error.value)
    return str(error.value)


# ----- the right answers pass ------------------------------------------------------------------------------------
def test_correct_implementation_passes_every_check():
    path = make_adjoint_path()
    grade.check_adjoint_final(path, SEEDS)
    grade.check_jumps(path, SEEDS)
    grade.check_gradient(make_parameter_gradients(), grade.PARAMS, SEEDS)
    grade.check_route(make_ctrnn_gradients(), SEEDS, adjoint_path=path)


def test_visible_seeds_show_every_kind_of_measurement():
    problems = [grade.draw_problem(seed) for seed in (0, 1, 2)]
    N = [len(problem.times) - 1 for problem in problems]
    assert any(problem.measured[0] == 0 for problem in problems)
    assert any(problem.measured[-1] == n for problem, n in zip(problems, N))
    assert any(problem.measured[-1] < n for problem, n in zip(problems, N))
    assert all(np.sum((problem.measured > 0) & (problem.measured < n)) >= 2 for problem, n in zip(problems, N))
    final = grade.draw_problem(0, final_only=True)
    assert final.measured.tolist() == [len(final.times) - 1]


def test_reference_is_the_euler_adjoint_of_the_notebook():
    problem = grade.draw_problem(4)
    expected = grade.reference(problem)
    hs = euler_solve(problem.params, problem.h0, problem.times, problem.xs)
    np.testing.assert_allclose(expected.hs, hs, rtol=1e-13, atol=1e-13)
    adjoints = make_adjoint_path()(problem.params, hs, problem.times, problem.measured, problem.targets)
    np.testing.assert_allclose(expected.adjoints, adjoints, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(expected.dh0, adjoints[0], rtol=1e-13, atol=1e-13)


# ----- seeded bugs: each fails its own part with the cause in the message, and no other part -----------------------
def test_missing_interior_jumps_fail_the_jumps_and_the_route_only():
    path = make_adjoint_path(jump_at=lambda n, N: False)
    grade.check_adjoint_final(path, SEEDS)
    message = assert_fails(lambda: grade.check_jumps(path), "the jump of the measurement at t = ")
    assert "is missing" in message and "first wrong at t = " in message and "seed 0" in message
    assert_fails(lambda: grade.check_route(make_ctrnn_gradients(path), adjoint_path=path),
                 "your adjoint_path is wrong on this problem too")


def test_missing_jump_at_zero_is_named():
    path = make_adjoint_path(jump_at=lambda n, N: n > 0)
    grade.check_adjoint_final(path, SEEDS)
    assert_fails(lambda: grade.check_jumps(path), "first wrong at t = 0, a measurement time: the jump of the "
                                                  "measurement at t = 0 is missing")
    assert_fails(lambda: grade.check_route(make_ctrnn_gradients(path)), "it lacks the jump of the measurement at t = 0")


def test_storing_the_adjoint_before_its_jump():
    path = make_adjoint_path(store_before_jump=True)
    assert_fails(lambda: grade.check_jumps(path), "store it after adding the jump")


def test_wrong_jump_sign():
    path = make_adjoint_path(jump_sign=-1.0)
    assert_fails(lambda: grade.check_jumps(path, seeds=[2]), "a measurement time: check the jump of the measurement")


def test_no_jump_at_t_end():
    path = make_adjoint_path(start_with_jump=False)
    assert_fails(lambda: grade.check_adjoint_final(path), "hbar(t_end) = adjoints[N] is wrong: with a measurement")


def test_jacobian_at_the_left_end_is_bptt_through_euler():
    path = make_adjoint_path(state=lambda n: n)
    message = assert_fails(lambda: grade.check_adjoint_final(path), "BPTT through the Euler steps")
    assert "right at t_end" in message and "first wrong at t = " in message
    assert_fails(lambda: grade.check_jumps(path), "BPTT through the Euler steps")


def test_step_with_the_wrong_sign():
    assert_fails(lambda: grade.check_adjoint_final(make_adjoint_path(sign=-1.0)), "the Euler step has the wrong sign")


def test_wrong_step_between_measurements():
    assert_fails(lambda: grade.check_adjoint_final(make_adjoint_path(scale=0.5)),
                 "between measurements: check the Euler step from t = ")


def test_tau_sign_fails_tau_only():
    grads = make_parameter_gradients(tau_sign=-1.0)
    grade.check_gradient(grads, ["W_hh", "W_xh", "b_h"], SEEDS)
    assert_fails(lambda: grade.check_gradient(grads, "tau"), "dL/dtau has the wrong sign")


@pytest.mark.parametrize("bug, names, fragment", [
    ({"with_length": False}, ["W_hh", "W_xh", "b_h"], "dL/dW_hh lacks the step length"),
    ({"at": lambda n: n - 1}, ["W_hh", "W_xh", "b_h"], "dL/dW_hh takes h at the step's left end"),
    ({"at": lambda n: n - 1}, ["W_xh", "b_h"], "dL/dW_xh takes h and x at the step's left end"),
    ({"first": 0, "at": lambda n: max(n - 1, 0)}, ["W_hh", "W_xh", "b_h"], "dL/dW_hh has a term at t_0 = 0"),
    ({"last": 1}, ["W_hh", "W_xh", "b_h"], "the term at t = "),
    ({"linear_W_hh": True}, ["W_hh", "W_xh", "b_h"], "dL/dW_hh: the term of every step is wrong"),
])
def test_parameter_gradient_bugs(bug, names, fragment):
    grads = make_parameter_gradients(**bug)
    message = assert_fails(lambda: grade.check_gradient(grads, names), fragment)
    assert "this check gives parameter_gradients the right states and adjoints" in message


def test_every_step_wrong_without_a_measurement_at_t_end():
    problem = grade.draw_problem(2)
    assert problem.measured[-1] < len(problem.times) - 1       # hbar = 0 on the last steps
    grads = make_parameter_gradients(linear_W_hh=True)
    assert_fails(lambda: grade.check_gradient(grads, "W_hh", seeds=[2]), "dL/dW_hh: the term of every step is wrong")
    assert_fails(lambda: grade.check_gradient(make_parameter_gradients(tau_sign=-1.0), "tau", seeds=[2]),
                 "dL/dtau has the wrong sign")


def test_left_end_state_only_is_named():
    def left_h(params, hs, times, xs, adjoints):
        shifted = np.concatenate([hs[:1], hs[:-1]])
        return make_parameter_gradients()(params, shifted, times, xs, adjoints)

    assert_fails(lambda: grade.check_gradient(left_h, "W_hh"), "dL/dW_hh takes h at the step's left end")


def test_route_bugs():
    grade.check_route(make_ctrnn_gradients())
    assert_fails(lambda: grade.check_route(make_ctrnn_gradients(mean_loss=True)), "the loss is wrong")
    assert_fails(lambda: grade.check_route(make_ctrnn_gradients(dh0_index=1), adjoint_path=make_adjoint_path()),
                 "your adjoint_path is right on this problem, so look at how ctrnn_gradients uses it")


# ----- a blank function and wrong return values ------------------------------------------------------------------
def test_blank_functions():
    for check in (grade.check_adjoint_final, grade.check_jumps):
        assert_fails(lambda: check(blank), "adjoint_path is not implemented yet")
    assert_fails(lambda: grade.check_gradient(blank, "tau"), "parameter_gradients is not implemented yet")
    assert_fails(lambda: grade.check_route(blank), "ctrnn_gradients is not implemented yet")


def test_wrong_return_values():
    assert_fails(lambda: grade.check_jumps(lambda *args: args[1][:-1]), "must have shape (N+1, B, H)")
    assert_fails(lambda: grade.check_jumps(lambda *args: np.full(args[1].shape, np.nan)), "contains NaN")
    assert_fails(lambda: grade.check_gradient(lambda *args: {"W_hh": 0}, "W_hh"), "must have exactly the keys")

    def transposed(*args):
        grads = make_parameter_gradients()(*args)
        return {**grads, "W_xh": grads["W_xh"].T}

    assert_fails(lambda: grade.check_gradient(transposed, "W_xh", seeds=range(5)),
                 "grads['W_xh'] must have shape (H, n_in)")
    assert_fails(lambda: grade.check_route(lambda *args: (0.0, {})), "must return 3 values (loss, grads, dh0)")

    def no_dict(*args):
        loss, _, dh0 = make_ctrnn_gradients()(*args)
        return loss, None, dh0

    assert_fails(lambda: grade.check_route(no_dict), "ctrnn_gradients's grads must be a dict")


def test_unknown_names_are_refused():
    with pytest.raises(ValueError, match="names must be among"):
        grade.check_gradient(make_parameter_gradients(), "h0")
