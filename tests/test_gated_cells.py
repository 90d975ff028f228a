"""The gated cells (LSTM, GRU in its torch and Cho variants) through the step loop of BPTT: the documented
parameter sets, a gradient on the final cell state alone, the constant error carousel, what separates the
two GRU variants, and mutants the finite-difference check must catch.

The step loop of every cell against finite differences, the one-step protocol and the other gradient
methods (the fused path) are in test_gradient_methods.py; torch autograd in test_torch_ref.py; bad input
in test_bad_input.py.
"""
from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from companion import bptt
from companion.cells import GRU, LSTM
from companion.cells.activations import sigmoid
from companion.gradcheck import relative_error

from helpers import (
    GRAD_TOL,
    TIGHT,
    analytic_gradients,
    gradcheck_errors,
    make_gated_problem,
    make_problem,
    seeded,
)


def forward(cell, params, xs, state0):
    """The step loop's forward (the reference; the fused path is pinned to it in test_gradient_methods.py)."""
    return bptt.forward(cell, params, xs, state0, fused=False)


# ----- the parameter sets are the documented ones ------------------------------------------------------
def test_param_keys_and_state_widths():
    lstm, gru, cho = LSTM(2, 3), GRU(2, 3), GRU(2, 3, variant="cho")
    assert lstm.param_shapes() == {f"{w}{q}": s for q in "ifgo" for w, s in
                                   (("W_x", (3, 2)), ("W_h", (3, 3)), ("b_", (3,)))}
    shared = {"W_xr": (3, 2), "W_hr": (3, 3), "b_r": (3,), "W_xz": (3, 2), "W_hz": (3, 3), "b_z": (3,),
              "W_xn": (3, 2), "W_hn": (3, 3)}
    assert gru.param_shapes() == {**shared, "b_xn": (3,), "b_hn": (3,)}
    assert cho.param_shapes() == {**shared, "b_n": (3,)}
    assert lstm.state_widths == (3, 3) and gru.state_widths == (3,) and cho.state_widths == (3,)
    assert gru.variant == "torch" and cho.variant == "cho"
    assert repr(cho) == "GRU(n_in=2, n_hidden=3, variant='cho')"


def test_lstm_d_final_state_on_c_alone():
    """A gradient on c_T only (no loss on any h_t) reaches every parameter, the inputs and (h0, c0)."""
    cell, params, xs, state0, _ = make_gated_problem("lstm", 3, 2, 2, 3, zero_state=False)
    g = (np.zeros((2, 3)), seeded("c alone").normal(size=(2, 3)))
    errors = gradcheck_errors(cell, params, xs, state0, np.zeros((3, 2, 3)), g_final=g)
    assert max(errors.values()) < GRAD_TOL, errors


# ----- the constant error carousel ----------------------------------------------------------------------
def _forget_gates(params, xs, hs, h0):
    """f_t = sigmoid(W_xf x_t + W_hf h_{t-1} + b_f) for every t, recomputed from the forward outputs."""
    h_prev = np.concatenate([h0[None], hs[:-1]])
    return sigmoid(xs @ params["W_xf"].T + h_prev @ params["W_hf"].T + params["b_f"])


def _carousel_problem(T, B, n_in, H, b_f, *, recurrent, seed):
    """An LSTM whose input gate is closed (b_i = -20: nothing is written into c) and whose forget gate
    has bias b_f; ``recurrent=False`` sets every W_h* to zero, so c_t feeds back into nothing but c_{t+1}."""
    cell = LSTM(n_in, H)
    params, xs, state0, _ = make_problem(cell, T, B, seeded("carousel", T, int(b_f), int(recurrent), seed),
                                         scale=0.5)
    params["b_i"] = np.full(H, -20.0)
    params["b_f"] = np.full(H, float(b_f))
    if not recurrent:
        for q in "ifgo":
            params[f"W_h{q}"] = np.zeros((H, H))
    return cell, params, xs, state0


@pytest.mark.parametrize("b_f", [20.0, 0.0], ids=["forget-open", "forget-half"])
def test_carousel_dc0_is_dcT_times_the_product_of_forget_gates(b_f):
    """With no recurrent weights and no loss on any h_t, the only path from c_T back to c_0 is
    c_t = f_t * c_{t-1} + ..., so dc_{t-1} = f_t * dc_t at every step and dc_0 = dc_T * prod_t f_t."""
    T, B, n_in, H = 30, 2, 2, 3
    cell, params, xs, (h0, c0) = _carousel_problem(T, B, n_in, H, b_f, recurrent=False, seed=0)
    hs, cache = forward(cell, params, xs, (h0, c0))
    dc_T = seeded("dc_T").normal(size=(B, H))
    _, _, (dh0, dc0) = bptt.backward(cell, params, cache, np.zeros((T, B, H)),
                                     d_final_state=(np.zeros((B, H)), dc_T))
    f = _forget_gates(params, xs, hs, h0)                                   # (T, B, H)
    carried = dc_T
    for t in reversed(range(T)):                                            # dc_{t-1} = f_t * dc_t
        carried = carried * f[t]
    assert_allclose(dc0, carried, rtol=1e-13, atol=0.0)
    assert_array_equal(dh0, np.zeros((B, H)))                               # no W_h*: nothing reaches h_0
    if b_f == 20.0:
        # forget gate saturated open: the product is 1 to within T * sigmoid(-20) ~ 6e-8, and the error
        # signal arrives at c_0 undiminished after 30 steps
        assert np.all(np.abs(f.prod(axis=0) - 1.0) < 1e-7)
        assert_allclose(dc0, dc_T, rtol=1e-7)
    else:
        # forget gate half open: the same law makes the signal vanish like ~0.5^T
        assert np.all(np.abs(dc0) < 1e-6 * np.abs(dc_T))


def test_carousel_survives_recurrent_weights():
    """With generic W_h* the gates also route error into h, but with the input gate closed those
    routes carry factors sigmoid'(-20 + ...) ~ 2e-9: dc_0 = dc_T * prod f_t ~ dc_T still holds."""
    T, B, n_in, H = 30, 2, 2, 3
    cell, params, xs, (h0, c0) = _carousel_problem(T, B, n_in, H, 20.0, recurrent=True, seed=1)
    hs, cache = forward(cell, params, xs, (h0, c0))
    dc_T = seeded("dc_T recurrent").normal(size=(B, H))
    _, _, (_, dc0) = bptt.backward(cell, params, cache, np.zeros((T, B, H)),
                                   d_final_state=(np.zeros((B, H)), dc_T))
    prod_f = _forget_gates(params, xs, hs, h0).prod(axis=0)
    assert np.all(np.abs(prod_f - 1.0) < 1e-5)             # f_t = sigmoid(20 + W_xf x_t + W_hf h_{t-1})
    assert_allclose(dc0, dc_T * prod_f, rtol=1e-6)


# ----- the two GRU variants are different functions -----------------------------------------------------
def _cho_copy(params):
    """The torch variant's weights in the Cho variant's keys: shared weights copied, b_n = b_xn + b_hn."""
    shared = {key: value.copy() for key, value in params.items() if key not in ("b_xn", "b_hn")}
    return {**shared, "b_n": params["b_xn"] + params["b_hn"]}


def test_cho_variant_differs_from_torch_variant_on_copied_weights():
    """torch:  n_t = tanh(W_xn x_t + b_xn + r_t * (W_hn h_{t-1} + b_hn))
    Cho:    n_t = tanh(W_xn x_t + W_hn (r_t * h_{t-1}) + b_n),  b_n = b_xn + b_hn.

    With everything else copied, the two agree for all inputs only if
    r * (W_hn h) + r * b_hn = W_hn (r * h) + b_hn for every h and every reset vector r the gate produces,
    i.e. only if W_hn h is invariant under moving the reset across it: W_hn must commute with diag(r)
    (W_hn diagonal, as r varies per unit) and (1 - r) * b_hn must vanish (b_hn = 0 or r = 1). A generic
    W_hn is not diagonal, so the outputs differ by far more than rounding; the two controls below make
    the two conditions hold and the difference disappears."""
    T, B, n_in, H = 5, 2, 3, 4
    torch_cell, cho_cell = GRU(n_in, H), GRU(n_in, H, variant="cho")
    params, xs, h0, _ = make_problem(torch_cell, T, B, seeded("cho vs torch"))
    hs_torch, _ = forward(torch_cell, params, xs, h0)
    hs_cho, _ = forward(cho_cell, _cho_copy(params), xs, h0)
    assert np.max(np.abs(hs_torch - hs_cho)) > 0.3          # outputs are in (-1, 1); here 0.83
    assert relative_error(hs_torch, hs_cho) > 0.1           # here 0.31
    # even the very first step differs (the reset acts on W_hn h_0 in one, on h_0 in the other)
    assert np.max(np.abs(hs_torch[0] - hs_cho[0])) > 0.05   # here 0.19

    # control 1: W_hn diagonal and b_hn = 0, so r * (W_hn h) = W_hn (r * h): the same function
    diagonal = {**params, "W_hn": np.diag(np.diag(params["W_hn"])), "b_hn": np.zeros(H)}
    hs_torch, _ = forward(torch_cell, diagonal, xs, h0)
    hs_cho, _ = forward(cho_cell, _cho_copy(diagonal), xs, h0)
    assert_allclose(hs_torch, hs_cho, **TIGHT)
    # control 2: the reset gate saturated at r = 1 (b_r = 40): no reset, the same function again
    no_reset = {**params, "b_r": np.full(H, 40.0)}
    hs_torch, _ = forward(torch_cell, no_reset, xs, h0)
    hs_cho, _ = forward(cho_cell, _cho_copy(no_reset), xs, h0)
    assert_allclose(hs_torch, hs_cho, **TIGHT)


def test_cho_and_torch_variants_have_different_gradients_on_copied_weights():
    """Where the functions agree at the point (control 1 above) their gradients still differ: the
    derivative with respect to W_hn's off-diagonal entries sees the reset in different places."""
    T, B, n_in, H = 4, 2, 2, 3
    torch_cell, cho_cell = GRU(n_in, H), GRU(n_in, H, variant="cho")
    params, xs, h0, dhs = make_problem(torch_cell, T, B, seeded("cho grads"))
    params = {**params, "W_hn": np.diag(np.diag(params["W_hn"])), "b_hn": np.zeros(H)}
    hs_torch, g_torch = analytic_gradients(torch_cell, params, xs, h0, dhs)
    hs_cho, g_cho = analytic_gradients(cho_cell, _cho_copy(params), xs, h0, dhs)
    assert_allclose(hs_torch, hs_cho, **TIGHT)
    assert relative_error(g_torch["W_hn"], g_cho["W_hn"]) > 1e-2
    for key in ("W_xr", "W_hr", "b_r", "W_xz", "W_hz", "b_z", "W_xn", "xs", "state0"):
        assert_allclose(g_torch[key], g_cho[key], **TIGHT, err_msg=key)   # everything else agrees


# ----- mutants: the finite-difference check must be able to fail ---------------------------------------
class NoForgetCarry(LSTM):
    """Wrong: the cell adjoint passes to c_{t-1} without the forget gate (dc_prev = cbar_t, not f_t cbar_t)."""

    def _step_backward(self, params, cache, d_state):
        d_params, (dh_prev, _), dx = super()._step_backward(params, cache, d_state)
        dh, dc = d_state
        o, tanh_c = cache.o, cache.tanh_c
        return d_params, (dh_prev, dc + dh * o * (1.0 - tanh_c**2)), dx


class NoDirectPath(GRU):
    """Wrong: the direct path of the interpolation h_t = (1 - z) n_t + z h_{t-1}, z * dh, is dropped."""

    def _step_backward(self, params, cache, dh):
        d_params, dh_prev, dx = super()._step_backward(params, cache, dh)
        z = cache.z
        return d_params, dh_prev - z * dh, dx


def test_gradcheck_detects_an_lstm_carry_without_the_forget_gate():
    good, bad = LSTM(2, 3), NoForgetCarry(2, 3)
    problem = make_problem(good, 3, 2, seeded("mutant lstm"), scale=0.7)
    assert max(gradcheck_errors(good, *problem).values()) < GRAD_TOL      # control
    errors = gradcheck_errors(bad, *problem)
    assert errors["state0[1]"] > 1e-3 and errors["W_hf"] > 1e-3, errors


@pytest.mark.parametrize("variant", ["torch", "cho"])
def test_gradcheck_detects_a_gru_without_the_direct_path(variant):
    good, bad = GRU(2, 3, variant=variant), NoDirectPath(2, 3, variant=variant)
    problem = make_problem(good, 3, 2, seeded("mutant gru", variant), scale=0.7)
    assert max(gradcheck_errors(good, *problem).values()) < GRAD_TOL      # control
    errors = gradcheck_errors(bad, *problem)
    assert errors["state0"] > 1e-3 and errors["W_hz"] > 1e-3, errors
