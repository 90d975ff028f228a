"""The grader of assignment 3, truncated BPTT(k2; k1) (``companion.grading.truncation``), without nbgrader.

A correct implementation written here passes every check; it is organised per loss, not per pass like the
companion (each loss is back-propagated on its own from its step down to the start of its pass's window),
so it does not share the grader's reference path. Each seeded mistake fails exactly the checks of the
parts it breaks, with a message that locates it.
"""
from __future__ import annotations

import functools
import math

import numpy as np
import pytest

from companion.grading import GradingError
from companion.grading import truncation as grade

SEEDS = range(20)
PARTS = ("full", "detach", "every_step", "general")


def points(T, k1, k2, *, mistake=None):
    """backward_points, step by step; ``mistake`` seeds one of the errors the tests expect the grader to find."""
    passes, first = [], 1
    for t in range(1, T + 1):
        if mistake == "k1_beyond_T" and k1 > T:
            raise IndexError("list index out of range")
        last = t == T and (mistake != "no_last_pass" or T % k1 == 0)
        if t % k1 == 0 or last:
            start = {
                "window_off_by_one": max(1, t - k2),
                "last_pass_short_window": max(1, first - (k2 - k1)),
            }.get(mistake, max(1, t - k2 + 1))
            passes.append((start, first + (mistake == "first_loss_late"), t - (mistake == "end_early")))
            first = t + 1
    if mistake == "extra_pass":
        passes.append((T, T + 1, T + 1))
    return passes


def tanh_forward(params, xs, h0):
    hs, h = [], h0
    for x in xs:
        h = np.tanh(x @ params["W_xh"].T + h @ params["W_hh"].T + params["b_h"])
        hs.append(h)
    return np.array(hs)


def gradients(params, xs, dhs, h0, k1, k2, *, mistake=None, backward_points=None):
    """tbptt_gradients per loss: the loss of step s, handled at the backward point t_j (the first multiple of
    k1 at or after s, or T), is back-propagated from s down to max(1, t_j - k2 + 1).

    With ``backward_points`` (one of the mistakes of ``points``), each pass of its list is back-propagated
    instead; ``mistake`` seeds an error of the backward pass.
    """
    T = xs.shape[0]
    hs = tanh_forward(params, xs, h0)
    grads = {key: np.zeros_like(value) for key, value in params.items()}
    if backward_points is None:
        losses = [(s, max(1, min(T, math.ceil(s / k1) * k1) - k2 + 1)) for s in range(1, T + 1)]
    else:
        losses = [(s, start) for start, first, end in backward_points(T, k1, k2) for s in range(first, end + 1)]
    if mistake == "losses_from_window_start":
        losses = [(s, start) for start, _, end in points(T, k1, k2) for s in range(start, end + 1)]
    if mistake == "last_loss_only":
        losses = [(end, start) for start, _, end in points(T, k1, k2)]
    for s, start in losses:
        states = hs
        h_before = h0 if start == 1 else hs[start - 2]
        if mistake in ("reset_h0", "reset_zero"):
            h_before = h0 if mistake == "reset_h0" else np.zeros_like(h0)
            states = np.concatenate([hs[:start - 1], tanh_forward(params, xs[start - 1:], h_before)])
        h_bar = dhs[s - 1]
        for t in range(s, start - 1, -1):
            a_bar = (1.0 - states[t - 1] ** 2) * h_bar
            if mistake == "no_tanh_slope":
                a_bar = h_bar
            h_prev = h_before if t == start else states[t - 2]
            grads["W_xh"] += a_bar.T @ xs[t - 1]
            grads["W_hh"] += a_bar.T @ h_prev
            grads["b_h"] += a_bar.sum(axis=0)
            h_bar = a_bar @ params["W_hh"]
    return grads


def failures(backward_points, tbptt_gradients, seeds=SEEDS) -> dict[str, str]:
    """Check name -> message of every check that fails ("windows" and the four parts)."""
    found = {}
    try:
        grade.check_windows(backward_points, seeds)
    except GradingError as error:
        found["windows"] = str(error)
    for part in PARTS:
        try:
            grade.check_part(tbptt_gradients, part, seeds, backward_points=backward_points)
        except GradingError as error:
            found[part] = str(error)
    return found


def with_points(mistake):
    """A submission whose backward_points has ``mistake`` and whose tbptt_gradients uses it."""
    wrong_points = functools.partial(points, mistake=mistake)
    return wrong_points, functools.partial(gradients, backward_points=wrong_points)


def test_a_correct_implementation_passes_every_check():
    assert failures(points, gradients) == {}
    grade.check_full(gradients, SEEDS)
    grade.check_detach(gradients, SEEDS)
    grade.check_every_step(gradients, SEEDS)
    grade.check_general(gradients, SEEDS)


def test_the_per_pass_implementation_of_the_notebook_passes_too():
    def per_pass(params, xs, dhs, h0, k1, k2):
        hs = tanh_forward(params, xs, h0)
        grads = {key: np.zeros_like(value) for key, value in params.items()}
        for start, first_loss, end in points(xs.shape[0], k1, k2):
            h_bar = np.zeros_like(h0)
            for t in range(end, start - 1, -1):
                if t >= first_loss:
                    h_bar = h_bar + dhs[t - 1]
                a_bar = (1.0 - hs[t - 1] ** 2) * h_bar
                h_prev = hs[t - 2] if t > 1 else h0
                for key, value in (("W_xh", a_bar.T @ xs[t - 1]), ("W_hh", a_bar.T @ h_prev), ("b_h", a_bar.sum(0))):
                    grads[key] += value
                h_bar = a_bar @ params["W_hh"]
        return grads

    assert failures(points, per_pass) == {}


@pytest.mark.parametrize("mistake, failing, fragments", [
    # the off-by-one in the truncation window: every part but the one where the window is clipped at 1
    ("window_off_by_one", {"windows", "detach", "every_step", "general"},
     {"windows": "the pass at step 8 should reach back to step 2, yours to step 1",
      "detach": "Your pass: it reaches back to step 4 instead of step 5",
      "general": "it reaches back to step 1 instead of step 2"}),
    ("k1_beyond_T", {"windows", "full"},
     {"windows": "backward_points raised IndexError: list index out of range (on the call backward_points(2, 5, 6))",
      "full": "tbptt_gradients raised IndexError"}),
    ("last_pass_short_window", {"windows", "general"},
     {"windows": "the pass at step 13 should reach back to step 7, yours to step 10",
      "general": "The gradient of the pass at step 11 (losses 11..11 through the window 7..11) is wrong; the passes "
                 "before it, at steps 2, 4, 6, 8, 10, are right. Your pass: it reaches back to step 8 instead of step 7"}),
    ("no_last_pass", {"windows", "full", "general"},
     {"windows": "the pass at step 13 is missing (T = 13 is a backward point even though k1 = 4 does not divide it)",
      "general": "Your function adds nothing for this pass: the losses of steps 11..11 are never back-propagated "
                 "(T = 11 is a backward point"}),
])
def test_a_wrong_backward_points_fails_the_parts_it_breaks(mistake, failing, fragments):
    found = failures(*with_points(mistake))
    assert set(found) == failing
    for check, fragment in fragments.items():
        assert fragment in found[check], found[check]


@pytest.mark.parametrize("mistake, fragment", [
    ("first_loss_late", "the pass at step 4 should carry the losses from step 1 (the first pass carries every "
                        "loss from step 1), yours from step 2"),
    ("end_early", "pass 1 should be at step 4, yours is at step 3 (the backward points are the multiples of k1 = 4 "
                  "up to T = 13, and T itself: [4, 8, 12, 13])"),
    ("extra_pass", "there are 4 passes, at the steps [4, 8, 12, 13]; yours has more, ending at the steps [14]"),
])
def test_a_wrong_pass_is_located(mistake, fragment):
    with pytest.raises(GradingError) as error:
        grade.check_windows(functools.partial(points, mistake=mistake))
    assert fragment in str(error.value)


def test_the_wrong_pass_list_is_reported_with_the_gradient():
    found = failures(*with_points("window_off_by_one"))
    assert "Your backward_points is wrong on this problem too: backward_points(8, 4, 4)" in found["detach"]
    assert "the state h_4 before it is a constant" in found["detach"]
    found = failures(points, functools.partial(gradients, mistake="losses_from_window_start"))
    assert found["general"].endswith("Your backward_points gives the right passes for this problem")
    message = failures(*with_points("k1_beyond_T"))["full"]
    assert "(on the problem (T=6, B=3, n_in=2, H=4, k1=8, k2=8))" in message


@pytest.mark.parametrize("mistake, failing, fragment", [
    ("losses_from_window_start", {"every_step", "general"},
     "it back-propagates the losses of steps 1..2 instead of 2..2: the losses of steps 1..1 belong to earlier passes"),
    ("last_loss_only", {"full", "detach", "general"},
     "it back-propagates the losses of steps 4..4 instead of 1..4: every loss since the previous backward point, "
     "from step 1 on, belongs to this pass"),
    ("reset_h0", {"detach", "every_step", "general"},
     "Your pass runs its window forward again from h_0 instead of from h_4"),
    ("reset_zero", {"full", "detach", "every_step", "general"},
     "Your pass runs the steps 1..6 forward from the zero state instead of from the given h_0"),
    ("no_tanh_slope", {"full", "detach", "every_step", "general"}, "it is the first pass. It is none of the usual mistakes"),
])
def test_a_wrong_backward_pass_fails_the_parts_it_breaks(mistake, failing, fragment):
    found = failures(points, functools.partial(gradients, mistake=mistake))
    assert set(found) == failing
    assert any(fragment in message for message in found.values()), found


def test_a_function_that_fails_on_a_shorter_sequence_is_not_located():
    def only_long(params, xs, dhs, h0, k1, k2):
        if xs.shape[0] < 8:
            raise ValueError("too short")
        return {key: np.zeros_like(value) for key, value in params.items()}

    with pytest.raises(GradingError, match="Your function fails on the first 4 steps of the sequence alone"):
        grade.check_detach(only_long)


def test_blank_functions_say_they_are_not_implemented():
    def blank(*args):
        raise NotImplementedError

    with pytest.raises(GradingError, match=r"backward_points is not implemented yet.*\(on the call backward_points\("):
        grade.check_windows(blank)
    for part in PARTS:
        with pytest.raises(GradingError, match=r"tbptt_gradients is not implemented yet.*\(on the problem \(T="):
            grade.check_part(blank, part, backward_points=blank)


@pytest.mark.parametrize("answer, fragment", [
    (lambda params: {**params, "W_xh": np.zeros(3)}, "grads['W_xh'] must have shape (H, n_in) = "),
    (lambda params: {"W_xh": params["W_xh"], "W_hh": params["W_hh"]},
     "must have exactly the keys ['W_hh', 'W_xh', 'b_h']; missing ['b_h']"),
    (lambda params: [params["W_xh"], params["W_hh"], params["b_h"]], "tbptt_gradients's grads must be a dict"),
    (lambda params: {key: np.nan * value for key, value in params.items()}, "grads['W_xh'] contains NaN or inf"),
])
def test_a_wrong_gradient_type_or_shape_is_named(answer, fragment):
    with pytest.raises(GradingError) as error:
        grade.check_general(lambda params, *rest: answer(params))
    assert fragment in str(error.value)


@pytest.mark.parametrize("answer, fragment", [
    (lambda T, k1, k2: 3,
     "backward_points(13, 4, 7) must return a list of (start, first_loss, end) triples of ints, got int"),
    (lambda T, k1, k2: [(1.0, 1, 4)], "one of its items is (1.0, 1, 4)"),
    (lambda T, k1, k2: [(1, 4)], "one of its items is (1, 4)"),
    (lambda T, k1, k2: [(True, 1, 4)], "one of its items is (True, 1, 4)"),
])
def test_a_wrong_pass_list_type_is_named(answer, fragment):
    with pytest.raises(GradingError) as error:
        grade.check_windows(answer)
    assert fragment in str(error.value)


def test_numpy_ints_and_lists_are_accepted():
    grade.check_windows(lambda T, k1, k2: [[np.int64(value) for value in item] for item in points(T, k1, k2)])


def test_the_note_on_backward_points_says_when_it_fails():
    def broken(T, k1, k2):
        raise ValueError("no")

    with pytest.raises(GradingError, match="Your backward_points fails here: backward_points raised ValueError: no"):
        grade.check_full(functools.partial(gradients, mistake="no_tanh_slope"), backward_points=broken)


def test_the_drawn_problems_have_the_promised_windows():
    for seed in range(23):
        full = grade.problems("full", seed)
        assert full[0].k1 == full[0].k2 == full[0].xs.shape[0]
        assert full[1].k1 == full[1].k2 > full[1].xs.shape[0]
        (detach,) = grade.problems("detach", seed)
        assert detach.k1 == detach.k2 and detach.xs.shape[0] % detach.k1 == 0 and detach.xs.shape[0] >= 2 * detach.k1
        (every,) = grade.problems("every_step", seed)
        assert every.k1 == 1 < every.k2 < every.xs.shape[0]
        (general,) = grade.problems("general", seed)
        T = general.xs.shape[0]
        assert 1 < general.k1 < general.k2 < T and T % general.k1 != 0
        cases = grade.window_cases(seed)
        assert [case.kind for case in cases] == ["k1 does not divide T", "k1 = k2 dividing T", "k1 = 1", "k2 >= T", "k1 > T"]
        assert all(1 <= case.k1 <= case.k2 for case in cases)
        assert cases[0].T % cases[0].k1 and cases[0].k2 < cases[0].T
        assert cases[1].T % cases[1].k1 == 0 and cases[1].k1 == cases[1].k2
        assert cases[2].k1 == 1 < cases[2].k2 < cases[2].T
        assert cases[3].k2 >= cases[3].T >= cases[3].k1
        assert cases[4].k1 > cases[4].T


def test_unknown_parts_are_refused():
    with pytest.raises(ValueError, match="part must be one of"):
        grade.problems("half", 0)
    with pytest.raises(ValueError, match="part must be one of"):
        grade.check_part(gradients, "half")
