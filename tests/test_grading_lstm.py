"""``companion.grading.lstm``: a right LSTM backward pass passes every check, and each seeded slip fails the
checks it should, with a message that names the slip, and only those."""
from __future__ import annotations

import numpy as np
import pytest

from companion.grading import GradingError
from companion.grading import lstm as grade

SEEDS = range(20)
#: the check cells of the assignment: what each asks of lstm_step_backward
PARTS = {
    "forget": ["W_xf", "W_hf", "b_f"],
    "input": ["W_xi", "W_hi", "b_i", "W_xg", "W_hg", "b_g"],
    "output": ["W_xo", "W_ho", "b_o"],
    "carousel": ["dc_prev"],
    "inputs": ["dh_prev", "dx"],
}


def sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


def lstm_step(params, x, h_prev, c_prev):
    """One LSTM step written from the equations, independent of the companion: (h, c, cache dict)."""
    p = params
    a = {q: x @ p[f"W_x{q}"].T + h_prev @ p[f"W_h{q}"].T + p[f"b_{q}"] for q in "ifgo"}
    i, f, g, o = sigmoid(a["i"]), sigmoid(a["f"]), np.tanh(a["g"]), sigmoid(a["o"])
    c = f * c_prev + i * g
    tanh_c = np.tanh(c)
    cache = {"x": x, "h_prev": h_prev, "c_prev": c_prev, "i": i, "f": f, "g": g, "o": o, "c": c, "tanh_c": tanh_c}
    return o * tanh_c, c, cache


def make_step_backward(*, slip=None):
    """lstm_step_backward, right or with one seeded ``slip``."""

    def lstm_step_backward(params, cache, dh, dc):
        x, h_prev, c_prev = cache["x"], cache["h_prev"], cache["c_prev"]
        i, f, g, o, tanh_c = cache["i"], cache["f"], cache["g"], cache["o"], cache["tanh_c"]
        carry = 0.0 if slip == "ignore_carry" else dc
        c_bar = dh * o * (1.0 - tanh_c**2) + carry
        old_memory = cache["c"] if slip == "new_memory_in_f" else c_prev
        sign_o = -1.0 if slip == "sign_o" else 1.0
        da = {
            "i": c_bar * g * i * (1.0 - i),
            "f": c_bar * old_memory * f * (1.0 - f),
            "g": c_bar * i * (1.0 - g**2),
            "o": sign_o * dh * tanh_c * o * (1.0 - o),
        }
        grads = {}
        dh_prev, dx = np.zeros_like(h_prev), np.zeros_like(x)
        for q, da_q in da.items():
            grads[f"W_x{q}"] = da_q.T @ x
            grads[f"W_h{q}"] = da_q.T @ h_prev
            grads[f"b_{q}"] = da_q if slip == "no_batch_sum" else da_q.sum(axis=0)
            dh_prev = dh_prev + da_q @ params[f"W_h{q}"]
            dx = dx + da_q @ params[f"W_x{q}"]
        dc_prev = c_bar if slip == "carry_without_f" else f * c_bar
        return grads, dh_prev, dc_prev, dx

    return lstm_step_backward


def make_backward(step_backward, *, slip=None):
    """lstm_backward around ``step_backward``, right or with one seeded ``slip`` of the time loop."""

    def lstm_backward(params, xs, h0, c0, dhs):
        caches, h, c = [], h0, c0
        for x in xs:
            h, c, cache = lstm_step(params, x, h, c)
            caches.append(cache)
        grads = {key: np.zeros_like(value) for key, value in params.items()}
        dxs = np.zeros_like(xs)
        dh_next, dc_next = np.zeros_like(h0), np.zeros_like(c0)
        for t in reversed(range(len(xs))):
            dh = dhs[t] if slip == "drop_dh_carry" else dh_next + (0.0 if slip == "drop_dhs" else dhs[t])
            dc = np.zeros_like(c0) if slip == "drop_dc_carry" else dc_next
            step_grads, dh_next, dc_next, dxs[t] = step_backward(params, caches[t], dh, dc)
            for key in grads:
                grads[key] += step_grads[key]
        return grads, dxs, dh_next, dc_next

    return lstm_backward


right_step = make_step_backward()
right_backward = make_backward(right_step)


def failure(check, *args, **kwargs) -> str:
    """The message of the GradingError that ``check(*args, **kwargs)`` must raise."""
    with pytest.raises(GradingError) as caught:
        check(*args, **kwargs)
    return str(caught.value)


def test_the_cache_is_what_an_independent_forward_step_keeps():
    for seed in range(3):
        problem = grade.draw_step(seed)
        cache, _ = grade.step_reference(problem)
        _, _, mine = lstm_step(problem.params, problem.x, problem.h_prev, problem.c_prev)
        assert tuple(cache) == grade.CACHE_KEYS == tuple(mine)
        for key in mine:
            np.testing.assert_allclose(cache[key], mine[key], rtol=1e-13, atol=1e-15)


def test_a_right_backward_pass_passes_every_check(capsys):
    grade.check_step(right_step, grade.STEP_OUTPUTS, SEEDS)
    for names in PARTS.values():
        grade.check_step(right_step, names, SEEDS)
    grade.check_backward(right_backward, SEEDS)
    grade.check_backward(right_backward, SEEDS, lstm_step_backward=right_step)
    assert capsys.readouterr().out == ""


def test_a_sign_error_in_one_gate_fails_that_gate_and_the_sums_over_gates_only(capsys):
    step = make_step_backward(slip="sign_o")
    message = failure(grade.check_step, step, PARTS["output"])
    assert "dL/dW_xo, dL/dW_ho and dL/db_o are wrong" in message
    assert "dL/db_o is wrong, so abar^o_t, the adjoint of the output gate's pre-activation, is wrong" in message
    assert "bias gradients of o are wrong and those of i, f and g right" in message
    assert "right with the carry dc alone (dh = 0) but wrong with dh alone" in message
    message = failure(grade.check_step, step, PARTS["inputs"])
    assert "dh_prev and dx are wrong" in message and "sum W_hq^T abar^q_t" in message
    for part in ("forget", "input", "carousel"):
        grade.check_step(step, PARTS[part], SEEDS)
    # the time loop around it is right: Part 2 passes and says why
    grade.check_backward(make_backward(step), SEEDS, lstm_step_backward=step)
    assert "right time loop around your lstm_step_backward" in capsys.readouterr().out
    # without the step to compare with, the wrong gradients are caught at the first step back
    message = failure(grade.check_backward, make_backward(step))
    assert "already on a one-step sequence: look at the formula of one step" in message


def test_a_carousel_without_the_forget_gate_fails_the_carousel_only():
    step = make_step_backward(slip="carry_without_f")
    message = failure(grade.check_step, step, PARTS["carousel"])
    assert message.startswith("dc_prev is wrong on the step of seed 0")
    assert "your dc_prev equals cbar_t itself: what goes back to c_{t-1} is f_t * cbar_t" in message
    assert "every abar^q_t is right" in message
    for part in ("forget", "input", "output", "inputs"):
        grade.check_step(step, PARTS[part], SEEDS)
    grade.check_backward(make_backward(step), SEEDS, lstm_step_backward=step)


@pytest.mark.parametrize(("slip", "where"), [
    ("drop_dc_carry", "from the second step back (right on sequences of 1 step"),
    ("drop_dh_carry", "from the second step back (right on sequences of 1 step"),
    ("drop_dhs", "already on a one-step sequence: look at what lstm_backward hands to lstm_step_backward"),
])
def test_a_wrong_time_loop_fails_the_sequence_check_only(slip, where):
    wrong = make_backward(right_step, slip=slip)
    message = failure(grade.check_backward, wrong, lstm_step_backward=right_step)
    assert message.startswith("lstm_backward's ")
    assert where in message
    assert "on the problem of seed 0 (T=" in message
    assert "your lstm_step_backward is right on every step of this problem, so look at the time loop" in message


def test_without_the_step_the_sequence_check_still_locates_a_wrong_loop():
    message = failure(grade.check_backward, make_backward(right_step, slip="drop_dc_carry"))
    # every one of the 15 answers depends on the carried cbar: the message names three and counts the rest
    assert message.startswith("lstm_backward's dL/dW_xi, dL/dW_hi, dL/db_i and 12 more are wrong from the second step back")
    assert "your lstm_step_backward" not in message


def test_a_carry_that_drops_the_path_through_h_is_not_taken_for_a_wrong_cbar():
    def step(params, cache, dh, dc):
        grads, dh_prev, _, dx = right_step(params, cache, dh, dc)
        return grads, dh_prev, cache["f"] * dc, dx            # f_t * (carry only), not f_t * cbar_t

    message = failure(grade.check_step, step, "dc_prev")
    assert message.startswith("dc_prev is wrong on the step of seed 0")
    assert "cbar_t is right (abar^i_t, abar^f_t and abar^g_t, which read it, are)" in message
    assert "right with the carry dc alone (dh = 0) but wrong with dh alone (dc = 0)" in message


def test_a_step_that_fails_with_a_zero_carry_still_gets_a_message():
    def step(params, cache, dh, dc):
        if not dc.any():
            raise ZeroDivisionError("dc is zero")
        grads, dh_prev, dc_prev, dx = right_step(params, cache, dh, dc)
        return grads, dh_prev, 2.0 * dc_prev, dx

    message = failure(grade.check_step, step, "dc_prev")
    assert message.startswith("dc_prev is wrong on the step of seed 0")
    assert "alone" not in message


def test_a_wrong_step_and_a_wrong_loop_are_compared_with_the_loop_around_the_step():
    step = make_step_backward(slip="carry_without_f")
    message = failure(grade.check_backward, make_backward(step, slip="drop_dc_carry"), lstm_step_backward=step)
    assert "your lstm_step_backward is wrong too (see its checks), and lstm_backward is not the time loop" in message
    assert "from the second step back" in message


def test_the_old_memory_in_the_forget_gate():
    step = make_step_backward(slip="new_memory_in_f")
    message = failure(grade.check_step, step, PARTS["forget"])
    assert "dL/db_f is wrong, so abar^f_t, the adjoint of the forget gate's pre-activation, is wrong" in message
    for part in ("input", "output", "carousel"):
        grade.check_step(step, PARTS[part], SEEDS)


def test_a_step_that_ignores_the_carry_is_located_at_the_carry():
    step = make_step_backward(slip="ignore_carry")
    message = failure(grade.check_step, step, PARTS["input"])
    assert "right with dh alone (dc = 0) but wrong with the carry dc alone (dh = 0)" in message
    assert "i, f and g all read cbar_t: look at cbar_t first" in message
    grade.check_step(step, PARTS["output"], SEEDS)


def test_blank_functions_and_wrong_returns_get_their_own_messages():
    def blank(*args):
        raise NotImplementedError

    assert failure(grade.check_step, blank, "dc_prev") == (
        "lstm_step_backward is not implemented yet: it raised NotImplementedError")
    assert failure(grade.check_backward, blank, lstm_step_backward=blank) == (
        "lstm_backward is not implemented yet: it raised NotImplementedError")
    message = failure(grade.check_step, make_step_backward(slip="no_batch_sum"), "b_f")
    assert message.startswith("grads['b_i'] must have shape (H,) = (")
    message = failure(grade.check_backward, lambda *args: right_backward(*args)[:3])
    assert message == "lstm_backward must return 4 values (grads, dxs, dh0, dc0), got a tuple of 3 items"

    def without_forget_gate(*args):
        grads, dxs, dh0, dc0 = right_backward(*args)
        return {key: value for key, value in grads.items() if not key.endswith("f")}, dxs, dh0, dc0

    message = failure(grade.check_backward, without_forget_gate)
    assert "missing ['W_hf', 'W_xf', 'b_f']" in message

    def nan_dx(*args):
        grads, dh_prev, dc_prev, dx = right_step(*args)
        return grads, dh_prev, dc_prev, dx * np.nan

    assert failure(grade.check_step, nan_dx, "dx") == "dx contains NaN or inf"


def test_a_loop_whose_step_fails_says_so():
    def broken(params, cache, dh, dc):
        raise KeyError("c_t")

    message = failure(grade.check_backward, make_backward(make_step_backward(slip="sign_o")), lstm_step_backward=broken)
    assert "your lstm_step_backward fails on this problem's steps (lstm_step_backward raised KeyError" in message


def test_unknown_names_are_refused():
    with pytest.raises(ValueError, match="names must be among"):
        grade.check_step(right_step, "W_hh")
    with pytest.raises(ValueError, match="names must be among"):
        grade.check_step(right_step, [])
