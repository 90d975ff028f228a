"""The cells and full BPTT: finite differences vs the hand-written backward, the two BPTT paths against
each other, the one-step protocol, closed forms of the linear RNN, and mutants the checks must catch."""
from __future__ import annotations

import numpy as np
import pytest
from numpy.linalg import matrix_power
from numpy.testing import assert_allclose, assert_array_equal

from companion import bptt, fused
from companion.fused import elman as fused_elman
from companion.cells import Elman, Jordan
from companion.gradcheck import relative_error

from helpers import (
    GRAD_TOL,
    JORDAN_IDS,
    JORDAN_SHAPES,
    NONLINEARITIES,
    PATHS,
    SHAPES,
    SHAPE_IDS,
    TIGHT,
    analytic_gradients,
    assert_chained_steps_agree_with_bptt,
    assert_final_gradient_on_h_is_a_gradient_on_the_last_output,
    elman_preactivations,
    forward,
    gradcheck_errors,
    make_elman_problem,
    make_jordan_problem,
    make_problem,
    seeded,
)


# ----- finite differences vs bptt.backward ---------------------------------------------------------------
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("dhs_kind", ["random", "last", "first"])
@pytest.mark.parametrize("zero_state", [False, True], ids=["h0", "zero-h0"])
@pytest.mark.parametrize("nonlinearity", NONLINEARITIES)
@pytest.mark.parametrize("T, B, n_in, H", SHAPES, ids=SHAPE_IDS)
def test_elman_gradcheck(T, B, n_in, H, nonlinearity, zero_state, dhs_kind, path):
    cell, params, xs, state0, dhs = make_elman_problem(T, B, n_in, H, nonlinearity, zero_state=zero_state,
                                                       dhs_kind=dhs_kind)
    errors = gradcheck_errors(cell, params, xs, state0, dhs, path=path)
    assert set(errors) == {"W_xh", "W_hh", "b_h", "xs", "state0"}
    assert max(errors.values()) < GRAD_TOL, errors


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("dhs_kind", ["random", "last", "first"])
@pytest.mark.parametrize("zero_state", [False, True], ids=["y0", "zero-y0"])
@pytest.mark.parametrize("T, B, n_in, H, n_out", JORDAN_SHAPES, ids=JORDAN_IDS)
def test_jordan_gradcheck(T, B, n_in, H, n_out, zero_state, dhs_kind, path):
    cell, params, xs, state0, dhs = make_jordan_problem(T, B, n_in, H, n_out, zero_state=zero_state,
                                                        dhs_kind=dhs_kind)
    errors = gradcheck_errors(cell, params, xs, state0, dhs, path=path)
    assert set(errors) == {"W_xh", "W_yh", "b_h", "W_hy", "b_y", "xs", "state0"}
    assert max(errors.values()) < GRAD_TOL, errors


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("kind", ["elman-tanh", "elman-relu", "elman-linear", "jordan", "jordan-out2"])
def test_d_final_state_against_finite_differences(kind, path):
    """L = sum(hs * dhs) + sum(final_state * g): ``d_final_state=g`` carries the second term."""
    T, B, n_in, H = 3, 2, 2, 3
    if kind.startswith("elman"):
        cell, params, xs, state0, dhs = make_elman_problem(T, B, n_in, H, kind.split("-")[1], zero_state=False)
    else:
        cell, params, xs, state0, dhs = make_jordan_problem(T, B, n_in, H, 2 if kind == "jordan-out2" else None,
                                                            zero_state=False)
    g = seeded(kind, path).normal(size=(B, cell.output_width))
    errors = gradcheck_errors(cell, params, xs, state0, dhs, path=path, g_final=g)
    assert max(errors.values()) < GRAD_TOL, errors
    # and without it, the same loss is NOT what backward differentiates (the knob matters)
    _, without = analytic_gradients(cell, params, xs, state0, dhs, path=path)
    _, with_g = analytic_gradients(cell, params, xs, state0, dhs, path=path, d_final_state=g)
    assert relative_error(without["state0"], with_g["state0"]) > 1e-3


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("cell", [Elman(2, 3), Elman(2, 3, nonlinearity="relu"), Jordan(2, 3, n_out=2)], ids=repr)
def test_d_final_state_is_a_gradient_on_the_last_output(cell, path):
    """For these cells the final state is h_T itself, so ``d_final_state=g`` equals adding g to dhs[T-1]."""
    T, B = 4, 2
    params, xs, state0, dhs = make_problem(cell, T, B, seeded(repr(cell), path))
    g = seeded(repr(cell), path, 1).normal(size=(B, cell.output_width))
    assert_final_gradient_on_h_is_a_gradient_on_the_last_output(cell, params, xs, state0, dhs, g, path)


# ----- the two paths of bptt, and forward by hand --------------------------------------------------------
@pytest.mark.parametrize("zero_state", [False, True], ids=["h0", "zero-h0"])
@pytest.mark.parametrize("nonlinearity", NONLINEARITIES)
@pytest.mark.parametrize("T, B, n_in, H", SHAPES, ids=SHAPE_IDS)
def test_elman_fused_and_step_paths_agree(T, B, n_in, H, nonlinearity, zero_state):
    cell, params, xs, state0, dhs = make_elman_problem(T, B, n_in, H, nonlinearity, zero_state=zero_state)
    g = seeded(T, B, n_in, H, nonlinearity).normal(size=(B, H))
    hs_f, grads_f = analytic_gradients(cell, params, xs, state0, dhs, path="fused", d_final_state=g)
    hs_s, grads_s = analytic_gradients(cell, params, xs, state0, dhs, path="steps", d_final_state=g)
    assert_allclose(hs_f, hs_s, **TIGHT)
    for key in grads_s:
        assert_allclose(grads_f[key], grads_s[key], **TIGHT, err_msg=key)
    _, cache_f = forward(cell, params, xs, state0, "fused")
    _, cache_s = forward(cell, params, xs, state0, "steps")
    assert_allclose(cache_f.final_state, cache_s.final_state, **TIGHT)
    assert_allclose(cache_f.final_state, hs_s[-1], **TIGHT)


PHI = {"tanh": np.tanh, "relu": lambda a: np.maximum(a, 0.0), "linear": lambda a: a}


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("nonlinearity", NONLINEARITIES)
@pytest.mark.parametrize("T, B, n_in, H", SHAPES, ids=SHAPE_IDS)
def test_elman_forward_matches_the_equations(T, B, n_in, H, nonlinearity, path):
    """h_t = phi(W_xh x_t + W_hh h_{t-1} + b_h), written out per sequence as column vectors."""
    cell = Elman(n_in, H, nonlinearity=nonlinearity)
    params, xs, state0, _ = make_problem(cell, T, B, seeded(T, B, n_in, H, nonlinearity))
    hs, cache = forward(cell, params, xs, state0, path)
    assert hs.shape == (T, B, H) and hs.dtype == np.float64
    phi = PHI[nonlinearity]
    for b in range(B):
        h = state0[b]
        for t in range(T):
            h = phi(params["W_xh"] @ xs[t, b] + params["W_hh"] @ h + params["b_h"])
            assert_allclose(hs[t, b], h, **TIGHT)
    assert_allclose(cache.final_state, hs[-1], **TIGHT)


@pytest.mark.parametrize("T, B, n_in, H, n_out", JORDAN_SHAPES, ids=JORDAN_IDS)
def test_jordan_forward_matches_the_equations(T, B, n_in, H, n_out):
    cell = Jordan(n_in, H, n_out=n_out)
    O = H if n_out is None else n_out
    assert cell.output_width == O and cell.state_widths == (O,)
    p, xs, y0, _ = make_problem(cell, T, B, seeded(T, B, n_in, H, O))
    ys, cache = bptt.forward(cell, p, xs, y0)
    assert ys.shape == (T, B, O)
    for b in range(B):
        y = y0[b]
        for t in range(T):
            h = np.tanh(p["W_xh"] @ xs[t, b] + p["W_yh"] @ y + p["b_h"])
            y = np.tanh(p["W_hy"] @ h + p["b_y"])
            assert_allclose(ys[t, b], y, **TIGHT)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("cell", [Elman(3, 2), Jordan(1, 3, n_out=2)], ids=repr)
def test_shapes_and_default_state(cell, path):
    T, B = 3, 2
    params, xs, _, dhs = make_problem(cell, T, B, seeded(repr(cell)))
    hs, cache = forward(cell, params, xs, None, path)
    hs0, _ = forward(cell, params, xs, np.zeros((B, cell.output_width)), path)
    assert_array_equal(hs, hs0)                                   # state0=None means the zero state
    assert_array_equal(cache.state0, np.zeros((B, cell.output_width)))
    grads, dxs, dstate0 = bptt.backward(cell, params, cache, dhs)
    assert {k: v.shape for k, v in grads.items()} == cell.param_shapes()
    assert dxs.shape == xs.shape and dstate0.shape == (B, cell.output_width)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("cell", [Elman(2, 3), Jordan(2, 3, n_out=1)], ids=repr)
def test_forward_and_backward_do_not_modify_their_inputs(cell, path):
    params, xs, state0, dhs = make_problem(cell, 3, 2, seeded(repr(cell), path))
    copies = [{k: v.copy() for k, v in params.items()}, xs.copy(), state0.copy(), dhs.copy()]
    g = np.ones((2, cell.output_width))
    analytic_gradients(cell, params, xs, state0, dhs, path=path, d_final_state=g)
    for key in params:
        assert_array_equal(params[key], copies[0][key])
    assert_array_equal(xs, copies[1])
    assert_array_equal(state0, copies[2])
    assert_array_equal(dhs, copies[3])
    assert_array_equal(g, np.ones_like(g))


@pytest.mark.parametrize("path", ["fused", "steps"])
def test_backward_does_not_depend_on_the_returned_hs_object(path):
    """Using the outputs in place (``hs -= targets``) must not change the gradients of the forward run."""
    cell = Elman(2, 3)
    params, xs, state0, dhs = make_problem(cell, 3, 2, seeded("alias", path))
    hs, cache = forward(cell, params, xs, state0, path)
    expected = bptt.backward(cell, params, cache, dhs)
    hs -= 0.5                                                     # e.g. the residual of a squared loss
    got = bptt.backward(cell, params, cache, dhs)
    for key in expected[0]:
        assert_array_equal(got[0][key], expected[0][key], err_msg=key)
    assert_array_equal(got[1], expected[1])
    assert_array_equal(got[2], expected[2])


# ----- the one-step protocol -------------------------------------------------------------------------------
CELLS = [Elman(2, 3), Elman(1, 2, nonlinearity="relu"), Elman(3, 1, nonlinearity="linear"), Jordan(2, 3),
         Jordan(3, 2, n_out=4)]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("cell", CELLS, ids=repr)
def test_step_agrees_with_one_step_bptt(cell, path):
    B = 2
    params, xs, state0, dhs = make_problem(cell, 1, B, seeded(repr(cell), path, 1))
    state1, step_cache = cell.step(params, xs[0], state0)
    hs, _ = forward(cell, params, xs, state0, path)
    assert_allclose(state1, hs[0], **TIGHT)
    d_params, d_state0, dx = cell.step_backward(params, step_cache, dhs[0])
    _, grads = analytic_gradients(cell, params, xs, state0, dhs, path=path)
    for key in d_params:
        assert_allclose(d_params[key], grads[key], **TIGHT, err_msg=key)
    assert_allclose(dx, grads["xs"][0], **TIGHT)
    assert_allclose(d_state0, grads["state0"], **TIGHT)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("cell", CELLS, ids=repr)
def test_chained_steps_agree_with_bptt(cell, path):
    """T calls of ``step``, then T calls of ``step_backward`` in reverse, summing the parameter gradients."""
    T, B = 4, 2
    params, xs, state0, dhs = make_problem(cell, T, B, seeded(repr(cell), path, 2))
    assert_chained_steps_agree_with_bptt(cell, params, xs, state0, dhs, path)


# ----- closed forms of the linear RNN ----------------------------------------------------------------------
def _linear_free_problem(T, B, H, seed):
    """Linear Elman, b_h = 0, zero inputs: h_t = W_hh h_{t-1}, so h_t = W_hh^t h_0."""
    rng = seeded("linear-free", T, B, H, seed)
    cell = Elman(2, H, nonlinearity="linear")
    params = {"W_xh": rng.normal(size=(H, 2)), "W_hh": rng.normal(size=(H, H)) / np.sqrt(H), "b_h": np.zeros(H)}
    return cell, params, np.zeros((T, B, 2)), rng.normal(size=(B, H)), rng


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("T, B, H", [(1, 1, 1), (1, 2, 3), (5, 1, 3), (6, 3, 2)])
def test_linear_rnn_state_is_a_matrix_power(T, B, H, path):
    cell, params, xs, h0, _ = _linear_free_problem(T, B, H, 0)
    hs, _ = forward(cell, params, xs, h0, path)
    W = params["W_hh"]
    for t in range(1, T + 1):
        assert_allclose(hs[t - 1], h0 @ matrix_power(W.T, t), **TIGHT)   # rows: h_t^T = h_0^T (W^T)^t


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("T, H", [(1, 1), (1, 3), (4, 3), (7, 2)])
def test_linear_rnn_jacobian_is_a_matrix_power(T, H, path):
    """dh_T/dh_0 = W_hh^T (the T-th power), read row by row from backward with g = e_i."""
    cell, params, xs, h0, _ = _linear_free_problem(T, 1, H, 1)
    _, cache = forward(cell, params, xs, h0, path)
    jacobian = np.empty((H, H))
    for i in range(H):
        dhs = np.zeros((T, 1, H))
        dhs[-1, 0, i] = 1.0                                       # L = h_T[i]
        _, _, dh0 = bptt.backward(cell, params, cache, dhs)
        jacobian[i] = dh0[0]
    assert_allclose(jacobian, matrix_power(params["W_hh"], T), **TIGHT)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("T, B, H", [(1, 1, 2), (3, 2, 3), (6, 1, 1), (5, 3, 2)])
def test_linear_rnn_gradients_in_closed_form(T, B, H, path):
    """L = g . h_T. The adjoint of step t is delta_t = (W^T)^(T-t) g, so (rows, summed over the batch)
    dL/dh_0 = (W^T)^T g, dW_hh = sum_t delta_t h_{t-1}^T, db_h = sum_t delta_t, dW_xh = 0 (zero inputs)."""
    cell, params, xs, h0, rng = _linear_free_problem(T, B, H, 2)
    W = params["W_hh"]
    g = rng.normal(size=(B, H))
    dhs = np.zeros((T, B, H))
    dhs[-1] = g
    _, cache = forward(cell, params, xs, h0, path)
    grads, dxs, dh0 = bptt.backward(cell, params, cache, dhs)

    assert_allclose(dh0, g @ matrix_power(W, T), **TIGHT)         # row form of (W^T)^T g
    deltas = [g @ matrix_power(W, T - t) for t in range(1, T + 1)]   # delta_t as rows, (B, H)
    h_prevs = [h0 @ matrix_power(W.T, t - 1) for t in range(1, T + 1)]  # h_{t-1} as rows, (B, H)
    dW_hh = sum(np.einsum("bi,bj->ij", d, h) for d, h in zip(deltas, h_prevs))
    assert_allclose(grads["W_hh"], dW_hh, **TIGHT)
    assert_allclose(grads["b_h"], sum(d.sum(axis=0) for d in deltas), **TIGHT)
    assert_array_equal(grads["W_xh"], np.zeros_like(params["W_xh"]))
    for t in range(T):
        assert_allclose(dxs[t], deltas[t] @ params["W_xh"], **TIGHT)


# ----- mutants: the checks above must be able to fail ------------------------------------------------------
class FlippedCarry(Elman):
    """Wrong: dL/dh_{t-1} with the wrong sign."""

    def _step_backward(self, params, cache, dh):
        d_params, dh_prev, dx = super()._step_backward(params, cache, dh)
        return d_params, -dh_prev, dx


class DroppedStep(Elman):
    """Wrong: the parameter gradient of time step ``dropped`` (0-based) is left out of the sum over time."""

    def __init__(self, *args, dropped: int, T: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.dropped, self.T, self._t = dropped, T, 0

    def _step(self, params, x_t, h_prev):
        h, cache = super()._step(params, x_t, h_prev)
        t, self._t = self._t, (self._t + 1) % self.T        # every forward runs exactly T steps
        return h, (cache, t)

    def _step_backward(self, params, tagged, dh):
        cache, t = tagged
        d_params, dh_prev, dx = super()._step_backward(params, cache, dh)
        if t == self.dropped:
            d_params = {key: np.zeros_like(value) for key, value in d_params.items()}
        return d_params, dh_prev, dx


def fused_flipped_carry(cell, params, cache, dhs, dh_final):
    """Wrong fused backward: dL/dh_0 with the wrong sign."""
    grads, dxs, dh0 = fused_elman.backward_sequence(cell, params, cache, dhs, dh_final)
    return grads, dxs, -dh0


def fused_forgets_final(cell, params, cache, dhs, dh_final):
    """Wrong fused backward: the gradient arriving at the final state is ignored."""
    return fused_elman.backward_sequence(cell, params, cache, dhs, np.zeros_like(dh_final))


def _mutant_problem(cell, T=3, B=2):
    params, xs, state0, dhs = make_problem(cell, T, B, seeded("mutant", T, B), scale=0.7)
    return params, xs, state0, dhs


@pytest.mark.parametrize("nonlinearity", ["tanh", "linear"])
def test_gradcheck_detects_a_flipped_carry(nonlinearity):
    good, bad = Elman(2, 3, nonlinearity=nonlinearity), FlippedCarry(2, 3, nonlinearity=nonlinearity)
    problem = _mutant_problem(good)
    assert max(gradcheck_errors(good, *problem, path="steps").values()) < GRAD_TOL  # control
    errors = gradcheck_errors(bad, *problem, path="steps")
    assert errors["state0"] > 1e-3 and errors["W_hh"] > 1e-3, errors


@pytest.mark.parametrize("dropped", [0, 1, 2])
def test_gradcheck_detects_a_dropped_time_step(dropped):
    T = 3
    good, bad = Elman(2, 3), DroppedStep(2, 3, dropped=dropped, T=T)
    problem = _mutant_problem(good, T=T)
    assert max(gradcheck_errors(good, *problem, path="steps").values()) < GRAD_TOL  # control
    errors = gradcheck_errors(bad, *problem, path="steps")
    assert min(errors[key] for key in ("W_xh", "W_hh", "b_h")) > 1e-3, errors
    assert max(errors["xs"], errors["state0"]) < GRAD_TOL, errors   # only the parameter sum is wrong


def test_gradcheck_detects_fused_mutants(monkeypatch):
    cell = Elman(2, 3)
    problem = _mutant_problem(cell)
    monkeypatch.setitem(fused.REGISTRY, Elman, fused.FusedPath(fused_elman.forward_sequence, fused_flipped_carry))
    assert gradcheck_errors(cell, *problem, path="fused")["state0"] > 1e-3
    # the mutant leaves the step path alone: there the same check passes
    assert max(gradcheck_errors(cell, *problem, path="steps").values()) < GRAD_TOL
    monkeypatch.setitem(fused.REGISTRY, Elman, fused.FusedPath(fused_elman.forward_sequence, fused_forgets_final))
    g = seeded("forgets").normal(size=(2, 3))
    errors = gradcheck_errors(cell, *problem, path="fused", g_final=g)
    assert max(errors.values()) > 1e-3, errors


def test_relu_problems_are_clear_of_the_kink():
    """The relu gradient checks use problems whose pre-activations are at least 1e-3 away from 0."""
    for T, B, n_in, H in SHAPES:
        cell, params, xs, state0, _ = make_elman_problem(T, B, n_in, H, "relu", zero_state=False)
        hs, _ = forward(cell, params, xs, state0, "steps")
        a = elman_preactivations(params, xs, hs, state0)
        assert np.min(np.abs(a)) > 1e-3
        assert_allclose(hs, np.maximum(a, 0.0), **TIGHT)


# ----- dtypes and initialisation ---------------------------------------------------------------------------
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("cell", [Elman(2, 3), Elman(2, 3, nonlinearity="relu"), Jordan(2, 3, n_out=2)], ids=repr)
def test_float32_in_float32_out(cell, path):
    params64, xs64, _, dhs64 = make_problem(cell, 3, 2, seeded("f32", repr(cell)), scale=0.7)
    params = {key: value.astype(np.float32) for key, value in params64.items()}
    xs = xs64.astype(np.float32)
    hs, cache = forward(cell, params, xs, None, path)
    assert hs.dtype == np.float32 and cache.final_state.dtype == np.float32
    hs64, _ = forward(cell, {k: v.astype(np.float64) for k, v in params.items()}, xs.astype(np.float64), None, path)
    assert_allclose(hs, hs64, rtol=1e-5, atol=1e-6)
    grads, dxs, dstate0 = bptt.backward(cell, params, cache, dhs64.astype(np.float32))
    assert all(value.dtype == np.float32 for value in grads.values())
    assert dxs.dtype == np.float32 and dstate0.dtype == np.float32


def test_both_paths_return_the_same_dtypes_for_mixed_precision():
    cell = Elman(2, 3)
    params = {key: value.astype(np.float32) for key, value in cell.init_params(0).items()}
    xs, h0, dhs = np.ones((2, 1, 2), np.float32), np.ones((1, 3)), np.ones((2, 1, 3), np.float32)
    dtypes = {}
    for path in PATHS:
        hs, cache = forward(cell, params, xs, h0, path)
        grads, dxs, dh0 = bptt.backward(cell, params, cache, dhs)
        dtypes[path] = (hs.dtype, cache.final_state.dtype, grads["W_hh"].dtype, dxs.dtype, dh0.dtype)
    assert dtypes["fused"] == dtypes["steps"], dtypes


@pytest.mark.parametrize("path", PATHS)
def test_integer_inputs_become_float64(path):
    cell = Elman(2, 3)
    params = cell.init_params(0)
    xs_int = np.arange(12).reshape(3, 2, 2) % 3 - 1
    hs, _ = forward(cell, params, xs_int, None, path)
    assert hs.dtype == np.float64
    assert_array_equal(hs, forward(cell, params, xs_int.astype(np.float64), None, path)[0])


@pytest.mark.parametrize("cell", [Elman(3, 4), Jordan(3, 4), Jordan(2, 5, n_out=3)], ids=repr)
def test_init_params(cell):
    params = cell.init_params(7)
    assert {k: v.shape for k, v in params.items()} == cell.param_shapes()
    assert all(v.dtype == np.float64 for v in params.values())
    bound = 1.0 / np.sqrt(cell.n_hidden)
    assert all(np.all(np.abs(v) <= bound) for v in params.values())
    again = cell.init_params(np.random.default_rng(7))           # an int seed is default_rng(seed)
    other = cell.init_params(8)
    for key in params:
        assert_array_equal(params[key], again[key])
    assert any(not np.array_equal(params[key], other[key]) for key in params)


@pytest.mark.parametrize("cell", [Elman(2, 3), Jordan(2, 3, n_out=5)], ids=repr)
def test_initial_state(cell):
    state = cell.initial_state(4)
    assert_array_equal(state, np.zeros((4, cell.output_width)))
    assert state.dtype == np.float64
    assert cell.initial_state(1, dtype=np.float32).dtype == np.float32
