"""What is specific to the cells with delay lines (``companion.cells.NARX`` and ``TDNN``).

The NARX network is a kind of the tests' table (helpers.CELL_KINDS: finite differences, every gradient
method, forward mode, torch autograd); this module checks what the table does not: the delay lines shift
as the docstring says, the forward pass is the equation with one matrix per delay, the adjoint of y_t is
what the d_y later steps send back, teacher forcing (open loop) against the closed loop, delays other
than the table's (a one-part state among them), the time-delay layer through the same table, and bad
input.
"""
from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from companion import bptt, rtrl, truncation
from companion.cells import NARX, TDNN
from companion.cells.narx import check_delay

from gradient_methods import METHODS, REFERENCE, assert_same_result
from helpers import (
    GRAD_TOL,
    TIGHT,
    TDNN_DELAY,
    analytic_gradients,
    gradcheck_errors,
    make_delay_problem,
    random_state,
    seeded,
    state_parts,
)


def _narx_problem(T, B, n_in, H, n_out, d_x, d_y, seed=0):
    """A NARX cell with the given delays and a random problem at weight scale 0.5 (a nonzero state0)."""
    cell = NARX(n_in, H, n_out=n_out, d_x=d_x, d_y=d_y)
    rng = seeded("narx", T, B, n_in, H, n_out, d_x, d_y, seed)
    params = {key: 0.5 * rng.normal(size=shape) for key, shape in cell.param_shapes().items()}
    xs = rng.normal(size=(T, B, n_in))
    state0 = random_state(cell, rng, B)
    dhs = rng.normal(size=(T, B, n_out))
    return cell, params, xs, state0, dhs


def _history(cell, xs, hs, state0):
    """Every input and output from before step 1 on, keyed by time: x[m], y[m] for m = 1 - d .. T."""
    parts = state_parts(state0)
    y = {-j: parts[j] for j in range(cell.d_y)}                # part j of s_0 is y_{-j}
    x = {-i: parts[cell.d_y + i] for i in range(cell.d_x)}      # part d_y + i is x_{-i}
    y.update({t: hs[t - 1] for t in range(1, len(hs) + 1)})
    x.update({t: xs[t - 1] for t in range(1, len(xs) + 1)})
    return x, y


# ----- the delay lines ------------------------------------------------------------------------------------
@pytest.mark.parametrize("d_x, d_y", [(2, 3), (0, 1), (0, 2), (3, 1)])
def test_the_state_is_the_delay_lines_shifted_by_one_each_step(d_x, d_y):
    """s_t = (y_t, ..., y_{t-d_y+1}, x_t, ..., x_{t-d_x+1}), entries of s_0 included while t < d; one
    array when d_y = 1 and d_x = 0; the new x_t is a copy, never a view of xs."""
    T = 5
    cell, params, xs, state0, _ = _narx_problem(T, 2, 2, 3, 2, d_x, d_y)
    assert cell.state_widths == (2,) * d_y + (2,) * d_x
    assert isinstance(cell.initial_state(2), tuple) == (d_x + d_y > 1)
    hs, _ = bptt.forward(cell, params, xs, state0)
    x, y = _history(cell, xs, hs, state0)
    state = state0
    for t in range(1, T + 1):
        state, _ = cell.step(params, xs[t - 1], state)
        parts = state_parts(state)
        assert isinstance(state, tuple) == (d_x + d_y > 1)
        for j in range(d_y):
            assert_array_equal(parts[j], y[t - j], err_msg=f"t={t}, y part {j}")
        for i in range(d_x):
            assert_array_equal(parts[d_y + i], x[t - i], err_msg=f"t={t}, x part {i}")
            assert not np.shares_memory(parts[d_y + i], xs)


@pytest.mark.parametrize("d_x, d_y", [(2, 3), (0, 1), (1, 2)])
def test_the_forward_pass_is_the_equation_with_one_matrix_per_delay(d_x, d_y):
    """y_t = W_hy tanh(sum_k W_xh^(k) x_{t-k} + sum_j W_yh^(j) y_{t-j} + b_h) + b_y, the values before
    step 1 taken from s_0, each W^(k) the block ``cell.block`` cuts out."""
    T = 6
    cell, params, xs, state0, _ = _narx_problem(T, 3, 2, 4, 2, d_x, d_y)
    hs, _ = bptt.forward(cell, params, xs, state0)
    x, y = _history(cell, xs, hs, state0)
    for t in range(1, T + 1):
        a = params["b_h"] + sum(x[t - k] @ cell.x_block(params["W_xh"], k).T for k in range(d_x + 1))
        a = a + sum(y[t - j] @ cell.y_block(params["W_yh"], j).T for j in range(1, d_y + 1))
        assert_allclose(hs[t - 1], np.tanh(a) @ params["W_hy"].T + params["b_y"], **TIGHT, err_msg=f"t={t}")


def test_blocks_cut_one_delay_out_of_the_stacked_matrices():
    """n_in = n_out and d_x + 1 = d_y: W_xh and W_yh have the same shape, and each method reads its own."""
    cell = NARX(2, 3, n_out=2, d_x=1, d_y=2)
    params = cell.init_params(0)
    assert_array_equal(cell.x_block(params["W_xh"], 0), params["W_xh"][:, :2])
    assert_array_equal(cell.x_block(params["W_xh"], 1), params["W_xh"][:, 2:])
    assert_array_equal(cell.y_block(params["W_yh"], 1), params["W_yh"][:, :2])
    assert_array_equal(cell.y_block(params["W_yh"], 2), params["W_yh"][:, 2:])
    assert np.shares_memory(cell.y_block(params["W_yh"], 1), params["W_yh"])         # a view
    stacked = np.stack([params["W_yh"]] * 3)                                          # leading axes
    assert_array_equal(cell.y_block(stacked, 2), np.stack([params["W_yh"][:, 2:]] * 3))
    for delay in (2, -1, 1.0, True):
        with pytest.raises(ValueError, match="^the delay of W_xh must be an int from 0 to 1"):
            cell.x_block(params["W_xh"], delay)
    with pytest.raises(ValueError, match="^the delay of W_yh must be an int from 1 to 2, got 0"):
        cell.y_block(params["W_yh"], 0)
    with pytest.raises(ValueError, match=r"^W must be W_yh of NARX\(n_in=2"):
        cell.y_block(params["W_hy"], 1)


# ----- the backward recursion with delays ------------------------------------------------------------------
@pytest.mark.parametrize("d_x, d_y", [(2, 3), (1, 1)])
def test_the_adjoint_of_y_t_collects_what_the_later_steps_that_read_it_send_back(d_x, d_y):
    """ybar_t = dl_t/dy_t + sum_{j=1..d_y} W_yh^(j)T abar_{t+j} (steps beyond T send nothing), with
    abar_t = tanh'(a_t) * W_hy^T ybar_t: part 0 of the state adjoint of the step loop. And part j of the
    state adjoint at t is the share of y_{t-j} from the steps after t: sum_{i=j+1..d_y} W_yh^(i)T abar_{t-j+i}."""
    T = 7
    cell, params, xs, state0, dhs = _narx_problem(T, 2, 2, 3, 2, d_x, d_y)
    _, cache = bptt.forward(cell, params, xs, state0)
    adjoints = state_parts(bptt.state_adjoints(cell, params, cache, dhs))       # parts (T + 1, B, width)
    ybar, abar = {}, {}
    for t in range(T, 0, -1):                                                   # the recursion, by hand
        later = sum((abar[t + j] @ cell.y_block(params["W_yh"], j) for j in range(1, d_y + 1) if t + j <= T),
                    np.zeros_like(dhs[0]))
        ybar[t] = dhs[t - 1] + later
        abar[t] = (1.0 - cache.steps[t - 1].h ** 2) * (ybar[t] @ params["W_hy"])
        assert_allclose(adjoints[0][t], ybar[t], **TIGHT, err_msg=f"t={t}")
    for t in range(0, T + 1):
        for j in range(d_y):
            share = sum((abar[t - j + i] @ cell.y_block(params["W_yh"], i)
                         for i in range(j + 1, d_y + 1) if 1 <= t - j + i <= T), np.zeros_like(dhs[0]))
            if j == 0 and t >= 1:
                share = share + dhs[t - 1]                                      # the direct term on y_t
            assert_allclose(adjoints[j][t], share, **TIGHT, err_msg=f"t={t}, part {j}")
    grads, _, _ = bptt.backward(cell, params, cache, dhs)
    W_yh = sum(np.concatenate([abar[t].T @ (cache.steps[t - 1].Y_prev[:, (j - 1) * 2:j * 2])
                               for j in range(1, d_y + 1)], axis=1) for t in range(1, T + 1))
    assert_allclose(grads["W_yh"], W_yh, **TIGHT)


@pytest.mark.parametrize("d_x, d_y", [(0, 1), (0, 2), (3, 1), (1, 4)])
def test_other_delays_against_finite_differences_and_rtrl(d_x, d_y):
    """Delays the table does not use (a one-part state among them): the step loop against central
    differences (with a gradient on the final state), and RTRL and BPTT(k2 >= T) against the step loop."""
    cell, params, xs, state0, dhs = _narx_problem(5, 2, 2, 3, 2, d_x, d_y)
    g = random_state(cell, seeded("g", d_x, d_y), 2)
    assert max(gradcheck_errors(cell, params, xs, state0, dhs, g_final=g).values()) < GRAD_TOL
    _, cache = bptt.forward(cell, params, xs, state0)
    grads, _, dstate0 = bptt.backward(cell, params, cache, dhs, d_final_state=g)
    result = rtrl.rtrl(cell, params, xs, dhs, state0=state0, d_final_state=g)
    truncated = truncation.tbptt(cell, params, xs, dhs, 2, 5, state0=state0)
    plain, _, _ = bptt.backward(cell, params, cache, dhs)
    for key in params:
        assert_allclose(result.grads[key], grads[key], **TIGHT, err_msg=key)
        assert_allclose(truncated[key], plain[key], **TIGHT, err_msg=key)
    for a, b in zip(state_parts(result.dstate0), state_parts(dstate0), strict=True):
        assert_allclose(a, b, **TIGHT)


# ----- open loop (teacher forcing) against the closed loop ------------------------------------------------
def _one_step_each(cell, params, xs, teacher):
    """Step t from the teacher's state s_{t-1}, for every t at once: time folded into the batch."""
    T, B = xs.shape[:2]
    folded = tuple(part.reshape(T * B, -1) for part in state_parts(teacher))
    hs, cache = bptt.forward(cell, params, xs.reshape(1, T * B, -1), folded if len(folded) > 1 else folded[0])
    return hs.reshape(T, B, -1), cache


def test_teacher_states_hold_the_given_outputs():
    cell, params, xs, state0, _ = _narx_problem(6, 2, 2, 3, 2, 2, 3)
    ys = seeded("plant").normal(size=(6, 2, 2))                                 # a plant's outputs
    teacher = state_parts(cell.teacher_states(xs, ys, state0))
    x, y = _history(cell, xs, ys, state0)
    assert [part.shape for part in teacher] == [(6, 2, w) for w in cell.state_widths]
    for t in range(1, 7):                                                       # entry t - 1 is s_{t-1}
        for j in range(3):
            assert_array_equal(teacher[j][t - 1], y[t - 1 - j])
        for i in range(2):
            assert_array_equal(teacher[3 + i][t - 1], x[t - 1 - i])
    zero_start = state_parts(cell.teacher_states(xs, ys))                       # state0 None: zeros
    assert_array_equal(zero_start[2][:4], np.concatenate([np.zeros((3, 2, 2)), ys[:1]]))   # y_{t-3}


@pytest.mark.parametrize("d_x, d_y", [(2, 3), (0, 1)])
def test_open_loop_on_its_own_outputs_is_the_closed_loop_with_every_feedback_edge_cut(d_x, d_y):
    """Fed its own closed-loop outputs, the teacher-forced network predicts them again, step by step; the
    gradient of the open-loop loss is BPTT with a zero weight on every recurrent edge (no gradient through
    the feedback), which differs from the closed-loop gradient (BPTT through the feedback)."""
    T, B = 6, 2
    cell, params, xs, state0, dhs = _narx_problem(T, B, 2, 3, 2, d_x, d_y)
    hs, cache = bptt.forward(cell, params, xs, state0)
    teacher = cell.teacher_states(xs, hs, state0)
    open_hs, open_cache = _one_step_each(cell, params, xs, teacher)
    assert_allclose(open_hs, hs, **TIGHT)
    open_grads, _, _ = bptt.backward(cell, params, open_cache, dhs.reshape(1, T * B, -1))
    cut, _, _ = bptt.backward(cell, params, cache, dhs, carry=np.zeros(T))
    closed, _, _ = bptt.backward(cell, params, cache, dhs)
    for key in params:
        assert_allclose(open_grads[key], cut[key], **TIGHT, err_msg=key)
    assert not np.allclose(open_grads["W_yh"], closed["W_yh"], rtol=1e-3)


# ----- the time-delay layer through the gradient-method table ----------------------------------------------
TDNN_SHAPES = [(1, 1, 1, 1, None), (4, 2, 2, 3, None), (7, 1, 3, 2, None)]


@pytest.mark.parametrize("shape", TDNN_SHAPES, ids=[f"T{s[0]}-B{s[1]}-in{s[2]}-H{s[3]}" for s in TDNN_SHAPES])
def test_tdnn_every_gradient_method_and_finite_differences(shape):
    """The step loop against central differences; every method of the table against the step loop, with
    and without a gradient on the final state."""
    cell, params, xs, state0, dhs = make_delay_problem("tdnn", *shape, zero_state=False)
    g = random_state(cell, seeded("tdnn g", *shape[:4]), shape[1])
    assert max(gradcheck_errors(cell, params, xs, state0, dhs, g_final=g).values()) < GRAD_TOL
    for d_final_state in (None, g):
        expected = METHODS[REFERENCE].run(cell, params, xs, state0, dhs, d_final_state)
        for name, method in METHODS.items():
            if name != REFERENCE and method.applies(cell):
                got = method.run(cell, params, xs, state0, dhs, d_final_state)
                assert_same_result(got, expected, tolerance=TIGHT, computes=method.computes, label=name)


def test_tdnn_is_a_window_and_needs_no_gradient_through_its_state():
    """h_t = tanh(sum_k W_xh^(k) x_{t-k} + b_h); the next step never reads h_{t-1} (its column of the
    one-step Jacobian is zero); the state carries no parameters, so every truncation gives the exact
    parameter gradient; and the adjoint of the state vanishes beyond the window."""
    cell, params, xs, state0, dhs = make_delay_problem("tdnn", 6, 2, 2, 3, None, zero_state=False)
    hs, cache = bptt.forward(cell, params, xs, state0)
    window = np.concatenate([np.concatenate([xs[t - k] if t - k >= 0 else state0[1 - (t - k) - 1]
                                             for k in range(TDNN_DELAY + 1)], axis=-1) for t in range(6)])
    assert_allclose(hs.reshape(12, 3), np.tanh(window @ params["W_xh"].T + params["b_h"]), **TIGHT)
    J = cell.state_jacobian(params, cache.steps[2])
    assert not np.any(J[:, :, :3])                                              # d s_t / d h_{t-1} = 0
    full, _, _ = bptt.backward(cell, params, cache, dhs)
    for k1, k2 in [(1, 1), (2, 2), (3, 5)]:
        cut = truncation.tbptt(cell, params, xs, dhs, k1, k2, state0=state0)
        for key in params:
            assert_allclose(cut[key], full[key], **TIGHT, err_msg=f"BPTT({k2}; {k1}) {key}")
    last = np.zeros_like(dhs)
    last[-1] = dhs[-1]
    adjoints = np.concatenate(state_parts(bptt.state_adjoints(cell, params, cache, last)), axis=-1)
    assert np.all(np.abs(adjoints[:6 - TDNN_DELAY]) == 0) and np.any(adjoints[6 - TDNN_DELAY])
    with pytest.raises(ValueError, match="an adjoint vanished"):
        truncation.choose_k2(cell, params, xs, dhs, tolerance=0.1, state0=state0)


@pytest.mark.parametrize("kind", ["narx", "tdnn"])
def test_torch_autograd_on_the_delay_cells_with_other_delays(kind):
    """The torch loop of torch_reference.py (one matrix per delay) on delays the table does not use."""
    pytest.importorskip("torch")
    from torch_reference import assert_same_gradients, loop_gradients

    if kind == "narx":
        cell, params, xs, state0, dhs = _narx_problem(5, 2, 2, 3, 1, 0, 2)
    else:
        cell = TDNN(2, 3, d_x=3)
        rng = seeded("tdnn torch")
        params = {key: 0.5 * rng.normal(size=shape) for key, shape in cell.param_shapes().items()}
        xs, state0, dhs = rng.normal(size=(5, 2, 2)), random_state(cell, rng, 2), rng.normal(size=(5, 2, 3))
    g = random_state(cell, seeded("torch g", kind), 2)
    assert_same_gradients(analytic_gradients(cell, params, xs, state0, dhs, d_final_state=g),
                          loop_gradients(cell, params, xs, state0, dhs, g))


# ----- bad input ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, message", [
    (dict(d_y=0), "d_y must be a positive integer, got 0"),
    (dict(d_y=-1), "d_y must be a positive integer"),
    (dict(d_x=-1), "d_x must be an integer >= 0, got -1"),
    (dict(d_x=1.0), "d_x must be an int (a number of delay steps), got 1.0"),
    (dict(d_y=2.5), "d_y must be an int"),
    (dict(d_y=True), "d_y must be an int"),
    (dict(d_x="2"), "d_x must be an int"),
    (dict(n_out=0), "n_out must be a positive integer"),
], ids=["d_y-0", "d_y-negative", "d_x-negative", "d_x-float", "d_y-float", "d_y-bool", "d_x-str", "n_out-0"])
def test_narx_refuses_bad_delays(kwargs, message):
    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        NARX(2, 3, **kwargs)


@pytest.mark.parametrize("d_x, message", [(0, "d_x must be a positive integer, got 0"), (-2, "d_x must be a positive"),
                                          (np.float64(2), "d_x must be an int")])
def test_tdnn_refuses_a_window_without_delay(d_x, message):
    with pytest.raises(ValueError, match="^" + message):
        TDNN(2, 3, d_x=d_x)


def test_numpy_integer_delays_are_ints():
    cell = NARX(1, 2, d_x=np.int64(0), d_y=np.int32(2))
    assert (cell.d_x, cell.d_y) == (0, 2) and type(cell.d_x) is int
    assert check_delay(np.int8(3), "d", minimum=1) == 3


def test_teacher_states_and_steps_refuse_bad_shapes():
    cell = NARX(2, 3, n_out=1, d_x=1, d_y=2)
    xs, ys = np.zeros((4, 2, 2)), np.zeros((4, 2, 1))
    with pytest.raises(ValueError, match=r"^ys must have shape \(T, B, n_out\) = \(4, 2, 1\), got \(4, 2, 2\)"):
        cell.teacher_states(xs, np.zeros((4, 2, 2)))
    with pytest.raises(ValueError, match=r"^xs must have shape \(T, B, n_in\)"):
        cell.teacher_states(np.zeros((4, 2, 3)), ys)
    with pytest.raises(ValueError, match="^state0 must be a tuple of 3 arrays"):
        cell.teacher_states(xs, ys, np.zeros((2, 1)))
    with pytest.raises(ValueError, match=r"^state\[2\] must have shape"):
        cell.step(cell.init_params(0), xs[0], (np.zeros((2, 1)), np.zeros((2, 1)), np.zeros((2, 1))))
    with pytest.raises(ValueError, match="^cache must be the NARXStepCache"):
        _, tdnn_cache = TDNN(2, 3, d_x=1).step(TDNN(2, 3, d_x=1).init_params(0), xs[0], TDNN(2, 3, d_x=1).initial_state(2))
        cell.step_backward(cell.init_params(0), tdnn_cache, cell.initial_state(2))
