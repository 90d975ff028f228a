"""The grader of assignment 1 (companion.grading.elman) and the shared helpers of companion.grading.core:
a right implementation passes, every seeded mistake fails with a message that locates it."""
from __future__ import annotations

import numpy as np
import pytest

from companion.grading import GradingError, core
from companion.grading import elman as grade


def elman_loss(params, xs, targets, h0):
    """An independent implementation of the assignment's forward pass."""
    hs, h = [], h0
    for x in xs:
        h = np.tanh(x @ params["W_xh"].T + h @ params["W_hh"].T + params["b_h"])
        hs.append(h)
    hs = np.array(hs)
    ys = hs @ params["W_hy"].T + params["b_y"]
    log_p = ys - ys.max(-1, keepdims=True)
    log_p -= np.log(np.exp(log_p).sum(-1, keepdims=True))
    T, B = targets.shape
    return -log_p[np.arange(T)[:, None], np.arange(B), targets].mean(), hs


def make_gradients(*, sign_W_hh=1.0, transposed_recursion=False, readout_factor=1.0):
    """The assignment's backward pass, with optional seeded mistakes."""
    def elman_gradients(params, xs, targets, h0, hs):
        T, B = targets.shape
        ys = hs @ params["W_hy"].T + params["b_y"]
        p = np.exp(ys - ys.max(-1, keepdims=True))
        p /= p.sum(-1, keepdims=True)
        dys = p.copy()
        dys[np.arange(T)[:, None], np.arange(B), targets] -= 1.0
        dys /= T * B
        grads = {key: np.zeros_like(value) for key, value in params.items()}
        grads["W_hy"] = readout_factor * np.einsum("tbv,tbh->vh", dys, hs)
        grads["b_y"] = dys.sum((0, 1))
        W_back = params["W_hh"].T if transposed_recursion else params["W_hh"]
        dh = np.zeros_like(h0)
        for t in reversed(range(T)):
            da = (dh + dys[t] @ params["W_hy"]) * (1 - hs[t] ** 2)
            grads["W_hh"] += sign_W_hh * da.T @ (hs[t - 1] if t else h0)
            grads["W_xh"] += da.T @ xs[t]
            grads["b_h"] += da.sum(0)
            dh = da @ W_back
        return grads, dh
    return elman_gradients


def test_a_right_implementation_passes_on_many_problems():
    grade.check_forward(elman_loss, seeds=range(20))
    grade.check_gradient(make_gradients(), grade.GRADIENTS, seeds=range(20), elman_loss=elman_loss)


def test_the_problems_have_varied_shapes():
    shapes = {grade.draw_problem(seed).xs.shape + grade.draw_problem(seed).h0.shape[1:] for seed in range(20)}
    assert len(shapes) >= 15


def test_a_sign_error_is_located_at_the_first_step_back():
    with pytest.raises(GradingError, match=r"dL/dW_hh is wrong at the first step back .* seed 0 .*your forward pass is right"):
        grade.check_gradient(make_gradients(sign_W_hh=-1.0), "W_hh", elman_loss=elman_loss)
    grade.check_gradient(make_gradients(sign_W_hh=-1.0), ["W_xh", "b_h", "W_hy", "b_y", "h0"])


def test_a_wrong_recursion_is_located_at_the_second_step_back():
    wrong = make_gradients(transposed_recursion=True)
    for name in ("W_hh", "W_xh", "b_h"):
        with pytest.raises(GradingError, match=rf"dL/d{name} is wrong at the second step back"):
            grade.check_gradient(wrong, name)
    with pytest.raises(GradingError, match=r"dL/dh_0 is wrong at the first step back"):
        grade.check_gradient(wrong, "h0")
    grade.check_gradient(wrong, ["W_hy", "b_y"])


def test_a_wrong_readout_gradient_fails_its_own_check():
    with pytest.raises(GradingError, match=r"dL/dW_hy is wrong"):
        grade.check_gradient(make_gradients(readout_factor=2.0), ["W_hy", "b_y"])


def test_the_message_says_when_the_forward_pass_is_wrong_too():
    def shifted(params, xs, targets, h0):
        loss, hs = elman_loss(params, xs, targets, h0)
        return loss, np.concatenate([h0[None], hs[:-1]])
    with pytest.raises(GradingError, match=r"h_t is wrong from step t = 1 on \(the first step starts from h0\)"):
        grade.check_forward(shifted)
    with pytest.raises(GradingError, match=r"your forward pass is wrong too"):
        grade.check_gradient(make_gradients(sign_W_hh=-1.0), "W_hh", elman_loss=shifted)


def test_a_wrong_loss_with_right_states_is_named():
    def summed(params, xs, targets, h0):
        loss, hs = elman_loss(params, xs, targets, h0)
        return loss * targets.size, hs
    with pytest.raises(GradingError, match=r"the loss is wrong .* though every h_t is right"):
        grade.check_forward(summed)


def test_a_later_step_is_located():
    def late(params, xs, targets, h0):
        loss, hs = elman_loss(params, xs, targets, h0)
        hs = hs.copy()
        hs[2:] *= 1.01
        return loss, hs
    with pytest.raises(GradingError, match=r"h_t is wrong from step t = 3 on; h_1 .. h_2 are right"):
        grade.check_forward(late)


def _not_implemented(*args):
    raise NotImplementedError()


@pytest.mark.parametrize(
    "function, message",
    [
        (_not_implemented, "elman_gradients is not implemented yet: it raised NotImplementedError"),
        (lambda *args: 1 / 0, "elman_gradients raised ZeroDivisionError"),
        (lambda *args: {"W_hh": 0}, r"elman_gradients must return 2 values \(grads, dh0\), got dict"),
        (lambda p, *args: ({"W_hh": p["W_hh"]}, args[2]), r"must have exactly the keys .* missing \['W_hy', 'W_xh', 'b_h', 'b_y'\]"),
        (lambda p, xs, tg, h0, hs: ({k: v.T for k, v in p.items()}, h0), r"grads\['W_xh'\] must have shape \(H, n_in\)"),
        (lambda p, xs, tg, h0, hs: ({k: v * np.nan for k, v in p.items()}, h0), r"grads\['W_xh'\] contains NaN or inf"),
        ("not a function", "elman_gradients must be a function, got str"),
    ],
)
def test_a_broken_submission_gets_a_message_not_a_crash(function, message):
    with pytest.raises(GradingError, match=message):
        grade.check_gradient(function, "W_hh")


def test_the_student_function_gets_copies():
    def vandal(params, xs, targets, h0):
        loss, hs = elman_loss(params, xs, targets, h0)
        params["W_hh"][...] = 0.0
        xs[...] = 0.0
        return loss, hs
    grade.check_forward(vandal, seeds=range(3))
    grade.check_forward(elman_loss, seeds=range(3))


def test_check_gradient_refuses_an_unknown_name():
    with pytest.raises(ValueError, match="names must be among"):
        grade.check_gradient(make_gradients(), "W_yy")


def test_core_locates_steps():
    expected = np.arange(12.0).reshape(4, 3)
    got = expected.copy()
    got[2, 1] += 1.0
    assert core.first_wrong_step(got, expected) == 2
    assert core.first_wrong_step(expected, expected) is None
    assert core.shortest_failing_length(5, lambda k: k < 3) == 3
    assert core.shortest_failing_length(5, lambda k: True) is None
    assert core.steps_back(1).startswith("the first step back (already on a one-step sequence")
    assert core.steps_back(3).startswith("the third step back (right on sequences of 2 steps")
    assert core.problem_text(T=4, B=2) == "(T=4, B=2)"


def test_core_message_helpers():
    assert core.check_names("W_hh", ("W_hh", "b_h")) == ("W_hh",)
    assert core.check_names(["b_h", "W_hh"], ("W_hh", "b_h")) == ("b_h", "W_hh")
    with pytest.raises(ValueError, match="names must be among"):
        core.check_names([], ("W_hh",))
    right, wrong = np.zeros(3), np.ones(3)
    assert core.known_mistake(wrong, {"all ones": wrong}, right) == "all ones"
    assert core.known_mistake(right, {"no difference here": right}, right) is None
    assert core.listing(["a"]) == "a" and core.listing(["a", "b", "c"]) == "a, b and c"
    assert core.steps_before(1) == "" and core.steps_before(3) == " (steps 1 .. 2 are right)"
    assert core.steps_after(5, 5) == "" and core.steps_after(4, 5) == " (step 5 is right)"
