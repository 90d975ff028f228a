"""The grader of the NARX assignment (``companion.grading.narx``) without nbgrader: its reference against
the chapter's equations and finite differences, a right answer (written here, with delay lines kept as
lists) passing every check, and each seeded mistake failing with the message that names it."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from companion import gradcheck
from companion.grading import narx as grade
from companion.grading.core import GradingError

SEEDS = range(20)


def student(bug: str | None = None) -> SimpleNamespace:
    """A student's four functions, with one seeded ``bug`` or none."""

    def narx_forward(params, xs, d_x, d_y):
        T, B, n_in = xs.shape
        H, n_out = params["b_h"].shape[0], params["b_y"].shape[0]
        x_line = [np.zeros((B, n_in))] * d_x                     # x_{t-1}, ..., x_{t-d_x}
        y_line = [np.zeros((B, n_out))] * d_y                    # y_{t-1}, ..., y_{t-d_y}
        ys, hs = np.zeros((T, B, n_out)), np.zeros((T, B, H))
        for t in range(T):
            fed = y_line[::-1] if bug == "reversed_W_yh" else y_line
            if bug == "only_y_prev":
                fed = [y_line[0]] + [np.zeros_like(y) for y in y_line[1:]]
            a = np.concatenate([xs[t]] + x_line, axis=1) @ params["W_xh"].T
            a = a + np.concatenate(fed, axis=1) @ params["W_yh"].T + params["b_h"]
            hs[t] = a if bug == "hs_before_tanh" else np.tanh(a)
            out = np.tanh(a) @ params["W_hy"].T + params["b_y"]
            ys[t] = np.tanh(out) if bug == "squashed" else out
            x_line = ([xs[t]] + x_line)[:d_x]
            y_line = [ys[t]] + y_line[:-1]
        if bug == "forward_wrong_shape":
            return ys[:, :, 0], hs
        return ys, hs

    def output_adjoints(params, hs, dys, d_y):
        T, n_out = hs.shape[0], dys.shape[2]
        ybar, abar = np.zeros_like(dys), np.zeros(hs.shape)
        for t in range(T - 1, -1, -1):
            ybar[t] = dys[t].copy()
            if bug != "adjoint_direct_only":
                for j in range(1, (1 if bug == "adjoint_next_only" else d_y) + 1):
                    block = (d_y - j) if bug == "adjoint_reversed" else (j - 1)
                    if t + j < T:
                        ybar[t] += abar[t + j] @ params["W_yh"][:, block * n_out:(block + 1) * n_out]
            if bug == "adjoint_nudged" and t == 1:
                ybar[t] += 0.1
            slope = 1.0 if bug == "adjoint_no_slope" else 1.0 - hs[t] ** 2
            abar[t] = slope * (ybar[t] @ params["W_hy"])
        return ybar

    def narx_gradients(params, xs, hs, ys, ybar, d_x, d_y):
        T, B, n_in = xs.shape
        n_out = ys.shape[2]
        slope = 1.0 if bug == "gradients_no_slope" else 1.0 - hs ** 2
        abar = slope * (ybar @ params["W_hy"])
        x_pad = np.concatenate([np.zeros((d_x, B, n_in)), xs])
        y_pad = np.concatenate([np.zeros((d_y + 1, B, n_out)), ys])  # y_pad[d_y + t + 1] is y_{t+1}, 0-based t
        shift = 1 if bug == "y_window_off_by_one" else 0
        grads = {key: np.zeros_like(value) for key, value in params.items()}
        dxs = np.zeros_like(xs)
        for t in range(T):
            for k in range(d_x + 1):
                block = slice(k * n_in, (k + 1) * n_in)
                grads["W_xh"][:, block] += abar[t].T @ x_pad[d_x + t - k]
                if t - k >= 0 and (k == 0 or bug != "dxs_own_step_only"):
                    dxs[t - k] += abar[t] @ params["W_xh"][:, block]
            for j in range(1, d_y + 1):
                grads["W_yh"][:, (j - 1) * n_out:j * n_out] += abar[t].T @ y_pad[d_y + 1 + t - j + shift]
        grads["b_h"] = abar.sum(axis=(0, 1))
        grads["W_hy"] = np.einsum("tbo,tbh->oh", ybar, hs)
        grads["b_y"] = ybar.sum(axis=(0, 1))
        if bug == "W_hy_transposed":
            grads["W_hy"] = grads["W_hy"].T
        if bug == "gradients_missing_key":
            del grads["b_y"]
        return grads, dxs

    def open_loop(params, xs, ys_measured, dys, d_x, d_y):
        T, B, n_in = xs.shape
        n_out = ys_measured.shape[2]
        fed = narx_forward(params, xs, d_x, d_y)[0] if bug == "open_own_outputs" else ys_measured
        x_pad = np.concatenate([np.zeros((d_x, B, n_in)), xs])
        y_pad = np.concatenate([np.zeros((d_y, B, n_out)), fed])
        X = np.concatenate([x_pad[d_x - k:d_x - k + T] for k in range(d_x + 1)], axis=2)
        Y = np.concatenate([y_pad[d_y - j:d_y - j + T] for j in range(1, d_y + 1)], axis=2)
        h = np.tanh(X @ params["W_xh"].T + Y @ params["W_yh"].T + params["b_h"])
        ys = h @ params["W_hy"].T + params["b_y"]
        ybar = output_adjoints(params, h, dys, d_y) if bug == "open_through_feedback" else dys
        abar = (1.0 - h ** 2) * (ybar @ params["W_hy"])
        grads = {"W_xh": np.einsum("tbh,tbi->hi", abar, X), "W_yh": np.einsum("tbh,tbi->hi", abar, Y),
                 "b_h": abar.sum(axis=(0, 1)), "W_hy": np.einsum("tbo,tbh->oh", ybar, h), "b_y": ybar.sum(axis=(0, 1))}
        if bug == "open_nan":
            grads["b_h"] = grads["b_h"] * np.nan
        return ys, grads

    return SimpleNamespace(narx_forward=narx_forward, output_adjoints=output_adjoints,
                           narx_gradients=narx_gradients, open_loop=open_loop)


def run_all(s: SimpleNamespace, seeds=SEEDS) -> None:
    grade.check_forward(s.narx_forward, seeds)
    grade.check_output_adjoints(s.output_adjoints, seeds, narx_forward=s.narx_forward)
    grade.check_gradients(s.narx_gradients, ["W_xh", "W_yh"], seeds)
    grade.check_gradients(s.narx_gradients, ["b_h", "W_hy", "b_y", "xs"], seeds)
    grade.check_open_loop(s.open_loop, seeds)


def test_a_right_answer_passes_every_check_on_twenty_seeds():
    run_all(student())


def test_the_reference_is_the_chapter_and_finite_differences():
    """The grader's oracle on one problem: the outputs by the equations with one matrix per delay, the
    gradients (parameters and inputs) by central differences of L = sum_t <dys[t-1], y_t>, and ybar_t by
    central differences of L in an additive perturbation of y_t."""
    problem = grade.draw_problem(5)
    ref = grade.reference(problem)
    ys, hs = student().narx_forward(problem.params, problem.xs, problem.d_x, problem.d_y)
    np.testing.assert_allclose(ref.ys, ys, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(ref.hs, hs, rtol=1e-12, atol=1e-14)

    def loss(point):
        theta = {key: point[key] for key in problem.params}
        return float(np.sum(student().narx_forward(theta, point["xs"], problem.d_x, problem.d_y)[0] * problem.dys))

    numeric = gradcheck.numerical_gradient(loss, {**problem.params, "xs": problem.xs})
    errors = gradcheck.relative_errors({**ref.grads, "xs": ref.dxs}, numeric)
    assert max(errors.values()) < 1e-7, errors
    assert problem.d_y >= 2 and problem.xs.shape[0] > problem.d_y       # the delays matter on this problem


@pytest.mark.parametrize("bug, check, fragment", [
    ("reversed_W_yh", "forward", "the delays of W_yh are reversed"),
    ("only_y_prev", "forward", "only y_{t-1} is fed back"),
    ("squashed", "forward", "the output is squashed"),
    ("hs_before_tanh", "forward", "hs (the hidden layer h_t) is wrong from step t = 1 on"),
    ("forward_wrong_shape", "forward", "narx_forward's ys must have shape (T, B, n_out)"),
    ("adjoint_next_only", "adjoints", "only the next step sends back"),
    ("adjoint_reversed", "adjoints", "the blocks are matched to the wrong steps"),
    ("adjoint_no_slope", "adjoints", "abar lacks tanh'(a_t)"),
    ("adjoint_direct_only", "adjoints", "it is the direct gradient dys alone"),
    ("adjoint_nudged", "adjoints", "ybar is wrong at step t = 2 (steps 3 .. "),
    ("y_window_off_by_one", "delayed", "dL/dW_yh is wrong, first in the block of delay j = 1"),
    ("gradients_no_slope", "delayed", "abar lacks tanh'(a_t)"),
    ("dxs_own_step_only", "other", "dL/dx_t has only step t's share"),
    ("W_hy_transposed", "other", "grads['W_hy'] must have shape (n_out, H)"),
    ("gradients_missing_key", "other", "missing ['b_y']"),
    ("open_own_outputs", "open", "these are the closed loop's outputs"),
    ("open_through_feedback", "open", "it back-propagates through the feedback"),
    ("open_nan", "open", "open_loop's grads['b_h'] contains NaN or inf"),
])
def test_each_seeded_mistake_fails_its_check_with_the_message_that_names_it(bug, check, fragment):
    s = student(bug)
    calls = {
        "forward": lambda: grade.check_forward(s.narx_forward, SEEDS),
        "adjoints": lambda: grade.check_output_adjoints(s.output_adjoints, SEEDS),
        "delayed": lambda: grade.check_gradients(s.narx_gradients, ["W_xh", "W_yh"], SEEDS),
        "other": lambda: grade.check_gradients(s.narx_gradients, ["b_h", "W_hy", "b_y", "xs"], SEEDS),
        "open": lambda: grade.check_open_loop(s.open_loop, SEEDS),
    }
    with pytest.raises(GradingError) as caught:
        calls[check]()
    assert fragment in str(caught.value), str(caught.value)
    assert "on the problem of seed" in str(caught.value) or "must" in str(caught.value) or "NaN" in str(caught.value)
    # the other parts keep their points: but a wrong shape or key of narx_gradients's dict fails both of its
    # checks, and abar without tanh' is wrong in b_h too
    spared = {"gradients_no_slope": {"other"}, "W_hy_transposed": {"delayed"}, "gradients_missing_key": {"delayed"}}
    for other, call in calls.items():
        if other != check and other not in spared.get(bug, set()):
            call()


def test_a_mistake_in_one_delayed_block_is_located_there():
    """W_xh's gradient wrong only in the block of delay k = 1: the message names that block."""
    right = student()

    def narx_gradients(params, xs, hs, ys, ybar, d_x, d_y):
        grads, dxs = right.narx_gradients(params, xs, hs, ys, ybar, d_x, d_y)
        n_in = xs.shape[2]
        if d_x >= 1:
            grads["W_xh"][:, n_in:2 * n_in] *= 2.0
        return grads, dxs

    with pytest.raises(GradingError, match=r"dL/dW_xh is wrong, first in the block of delay k = 1, W_xh\^\(k\)"):
        grade.check_gradients(narx_gradients, "W_xh", SEEDS)


def test_the_adjoint_check_says_whether_the_forward_pass_is_right():
    bad = student("adjoint_next_only")
    with pytest.raises(GradingError, match="your narx_forward is right on this problem"):
        grade.check_output_adjoints(bad.output_adjoints, narx_forward=student().narx_forward)
    with pytest.raises(GradingError, match="your narx_forward is wrong on this problem"):
        grade.check_output_adjoints(bad.output_adjoints, narx_forward=student("squashed").narx_forward)


def test_a_blank_function_and_an_exception_get_their_messages():
    def blank(*args):
        raise NotImplementedError

    def broken(params, hs, dys, d_y):
        return hs + np.zeros(hs.shape[-1] + 1)           # shapes that do not broadcast

    with pytest.raises(GradingError, match="narx_forward is not implemented yet"):
        grade.check_forward(blank)
    with pytest.raises(GradingError, match="output_adjoints raised ValueError"):
        grade.check_output_adjoints(broken)
    with pytest.raises(GradingError, match=r"narx_gradients must return 2 values \(grads, dxs\), got NoneType"):
        grade.check_gradients(lambda *args: None, "b_h")
    with pytest.raises(GradingError, match="open_loop is not implemented yet"):
        grade.check_open_loop(blank)


def test_an_unknown_gradient_name_is_the_instructors_mistake():
    with pytest.raises(ValueError, match="names must be among"):
        grade.check_gradients(student().narx_gradients, "W_hh")


def test_a_mistake_that_changes_nothing_on_the_problem_is_not_named():
    """On a problem with d_x = 0, reading only x_t is right: a wrong hs must not be blamed on it."""
    problem = grade.draw_problem(0)
    assert problem.d_x == 0
    with pytest.raises(GradingError) as caught:
        grade.check_forward(student("hs_before_tanh").narx_forward, seeds=(0,))
    assert str(caught.value).endswith(problem.text), str(caught.value)
