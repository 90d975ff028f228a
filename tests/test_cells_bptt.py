"""The Elman and Jordan cells through the step loop of BPTT: the forward equations, closed forms of the
linear RNN, mutants the finite-difference check must catch; and the initialisation of every cell.

The step loop of every cell against finite differences, the one-step protocol and the other gradient
methods (the fused path) are in test_gradient_methods.py; torch autograd in test_torch_ref.py.
"""
from __future__ import annotations

import numpy as np
import pytest
from numpy.linalg import matrix_power
from numpy.testing import assert_allclose, assert_array_equal

from companion import bptt
from companion.cells import Elman, Jordan

from helpers import (
    CELL_KINDS,
    GRAD_TOL,
    JORDAN_IDS,
    JORDAN_SHAPES,
    NONLINEARITIES,
    SHAPES,
    SHAPE_IDS,
    TIGHT,
    elman_preactivations,
    gradcheck_errors,
    make_cell,
    make_elman_problem,
    make_problem,
    seeded,
    state_parts,
)


def forward(cell, params, xs, state0):
    """The step loop's forward (the reference; the fused path is pinned to it in test_gradient_methods.py)."""
    return bptt.forward(cell, params, xs, state0, fused=False)


# ----- the forward equations -------------------------------------------------------------------------------
PHI = {"tanh": np.tanh, "relu": lambda a: np.maximum(a, 0.0), "linear": lambda a: a}


@pytest.mark.parametrize("nonlinearity", NONLINEARITIES)
@pytest.mark.parametrize("T, B, n_in, H", SHAPES, ids=SHAPE_IDS)
def test_elman_forward_matches_the_equations(T, B, n_in, H, nonlinearity):
    """h_t = phi(W_xh x_t + W_hh h_{t-1} + b_h), written out per sequence as column vectors."""
    cell = Elman(n_in, H, nonlinearity=nonlinearity)
    params, xs, state0, _ = make_problem(cell, T, B, seeded(T, B, n_in, H, nonlinearity))
    hs, cache = forward(cell, params, xs, state0)
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
    ys, cache = forward(cell, p, xs, y0)
    assert ys.shape == (T, B, O)
    for b in range(B):
        y = y0[b]
        for t in range(T):
            h = np.tanh(p["W_xh"] @ xs[t, b] + p["W_yh"] @ y + p["b_h"])
            y = np.tanh(p["W_hy"] @ h + p["b_y"])
            assert_allclose(ys[t, b], y, **TIGHT)
    assert_allclose(cache.final_state, ys[-1], **TIGHT)


def test_the_relu_kink_margin_is_measured_on_the_real_pre_activations():
    """The relu problems of the gradient checks are kept 1e-3 away from the kink by recomputing the
    pre-activations (``elman_preactivations``): relu of them must be the forward's outputs."""
    for T, B, n_in, H in SHAPES:
        cell, params, xs, state0, _ = make_elman_problem(T, B, n_in, H, "relu", zero_state=False)
        hs, _ = forward(cell, params, xs, state0)
        assert_allclose(hs, np.maximum(elman_preactivations(params, xs, hs, state0), 0.0), **TIGHT)


# ----- closed forms of the linear RNN ----------------------------------------------------------------------
def _linear_free_problem(T, B, H, seed):
    """Linear Elman, b_h = 0, zero inputs: h_t = W_hh h_{t-1}, so h_t = W_hh^t h_0."""
    rng = seeded("linear-free", T, B, H, seed)
    cell = Elman(2, H, nonlinearity="linear")
    params = {"W_xh": rng.normal(size=(H, 2)), "W_hh": rng.normal(size=(H, H)) / np.sqrt(H), "b_h": np.zeros(H)}
    return cell, params, np.zeros((T, B, 2)), rng.normal(size=(B, H)), rng


@pytest.mark.parametrize("T, B, H", [(1, 1, 1), (1, 2, 3), (5, 1, 3), (6, 3, 2)])
def test_linear_rnn_state_is_a_matrix_power(T, B, H):
    cell, params, xs, h0, _ = _linear_free_problem(T, B, H, 0)
    hs, _ = forward(cell, params, xs, h0)
    W = params["W_hh"]
    for t in range(1, T + 1):
        assert_allclose(hs[t - 1], h0 @ matrix_power(W.T, t), **TIGHT)   # rows: h_t^T = h_0^T (W^T)^t


@pytest.mark.parametrize("T, H", [(1, 1), (1, 3), (4, 3), (7, 2)])
def test_linear_rnn_jacobian_is_a_matrix_power(T, H):
    """dh_T/dh_0 = W_hh^T (the T-th power), read row by row from backward with g = e_i."""
    cell, params, xs, h0, _ = _linear_free_problem(T, 1, H, 1)
    _, cache = forward(cell, params, xs, h0)
    jacobian = np.empty((H, H))
    for i in range(H):
        dhs = np.zeros((T, 1, H))
        dhs[-1, 0, i] = 1.0                                       # L = h_T[i]
        _, _, dh0 = bptt.backward(cell, params, cache, dhs)
        jacobian[i] = dh0[0]
    assert_allclose(jacobian, matrix_power(params["W_hh"], T), **TIGHT)


@pytest.mark.parametrize("T, B, H", [(1, 1, 2), (3, 2, 3), (6, 1, 1), (5, 3, 2)])
def test_linear_rnn_gradients_in_closed_form(T, B, H):
    """L = g . h_T. The adjoint of step t is delta_t = (W^T)^(T-t) g, so (rows, summed over the batch)
    dL/dh_0 = (W^T)^T g, dW_hh = sum_t delta_t h_{t-1}^T, db_h = sum_t delta_t, dW_xh = 0 (zero inputs)."""
    cell, params, xs, h0, rng = _linear_free_problem(T, B, H, 2)
    W = params["W_hh"]
    g = rng.normal(size=(B, H))
    dhs = np.zeros((T, B, H))
    dhs[-1] = g
    _, cache = forward(cell, params, xs, h0)
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


# ----- mutants: the finite-difference check must be able to fail -----------------------------------------
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


def _mutant_problem(cell, T=3, B=2):
    params, xs, state0, dhs = make_problem(cell, T, B, seeded("mutant", T, B), scale=0.7)
    return params, xs, state0, dhs


@pytest.mark.parametrize("nonlinearity", ["tanh", "linear"])
def test_gradcheck_detects_a_flipped_carry(nonlinearity):
    good, bad = Elman(2, 3, nonlinearity=nonlinearity), FlippedCarry(2, 3, nonlinearity=nonlinearity)
    problem = _mutant_problem(good)
    assert max(gradcheck_errors(good, *problem).values()) < GRAD_TOL  # control
    errors = gradcheck_errors(bad, *problem)
    assert errors["state0"] > 1e-3 and errors["W_hh"] > 1e-3, errors


@pytest.mark.parametrize("dropped", [0, 1, 2])
def test_gradcheck_detects_a_dropped_time_step(dropped):
    T = 3
    good, bad = Elman(2, 3), DroppedStep(2, 3, dropped=dropped, T=T)
    problem = _mutant_problem(good, T=T)
    assert max(gradcheck_errors(good, *problem).values()) < GRAD_TOL  # control
    errors = gradcheck_errors(bad, *problem)
    assert min(errors[key] for key in ("W_xh", "W_hh", "b_h")) > 1e-3, errors
    assert max(errors["xs"], errors["state0"]) < GRAD_TOL, errors   # only the parameter sum is wrong


# ----- initialisation, every cell ------------------------------------------------------------------------
INIT_CASES = [pytest.param(make_cell(kind, 3, 4), id=kind) for kind in CELL_KINDS] + [
    pytest.param(Jordan(2, 5, n_out=3), id="jordan-out3")]


@pytest.mark.parametrize("cell", INIT_CASES)
def test_init_params(cell):
    params = cell.init_params(7)
    assert {k: v.shape for k, v in params.items()} == cell.param_shapes()
    assert all(v.dtype == np.float64 for v in params.values())
    bound = 1.0 / np.sqrt(cell.n_hidden)                                  # torch's scale 1/sqrt(H)
    weights = {key: value for key, value in params.items() if key != "tau"}
    assert all(np.all(np.abs(v) <= bound) for v in weights.values())
    if "tau" in params:                                      # the CTRNN's time constants: 1 unless asked
        assert_array_equal(params["tau"], np.ones(cell.n_hidden))
        assert_array_equal(cell.init_params(7, tau=0.25)["tau"], np.full(cell.n_hidden, 0.25))
    again = cell.init_params(np.random.default_rng(7))           # an int seed is default_rng(seed)
    other = cell.init_params(8)
    for key in params:
        assert_array_equal(params[key], again[key])
    assert any(not np.array_equal(params[key], other[key]) for key in params)


@pytest.mark.parametrize("cell", INIT_CASES)
def test_initial_state(cell):
    """Zeros of the state's structure (a tuple for a multi-part state), float64 unless asked; and the
    state ``bptt.forward`` starts from when it is given none."""
    state = cell.initial_state(4)
    assert isinstance(state, tuple) == (len(cell.state_widths) > 1)
    assert [part.shape for part in state_parts(state)] == [(4, width) for width in cell.state_widths]
    for part in state_parts(state):
        assert_array_equal(part, np.zeros_like(part))
        assert part.dtype == np.float64
    assert all(part.dtype == np.float32 for part in state_parts(cell.initial_state(1, dtype=np.float32)))
    _, cache = bptt.forward(cell, cell.init_params(0), np.ones((2, 4, cell.n_in)))
    assert isinstance(cache.state0, tuple) == isinstance(state, tuple)
    for part, zero in zip(state_parts(cache.state0), state_parts(state), strict=True):
        assert_array_equal(part, zero)
