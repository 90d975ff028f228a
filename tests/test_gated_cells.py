"""The gated cells (LSTM, GRU in its torch and Cho variants) and full BPTT through them: finite
differences vs the hand-written backward on both paths, the two paths against each other, the one-step
protocol with a two-part state, the constant error carousel, what separates the two GRU variants,
dtypes, bad input, and mutants the checks must catch."""
from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from companion import bptt, fused
from companion.fused import lstm as fused_lstm
from companion.cells import GRU, LSTM
from companion.cells.activations import sigmoid
from companion.gradcheck import relative_error

from helpers import (
    GATED_KINDS,
    GRAD_TOL,
    PATHS,
    SHAPES,
    SHAPE_IDS,
    TIGHT,
    analytic_gradients,
    assert_chained_steps_agree_with_bptt,
    assert_final_gradient_on_h_is_a_gradient_on_the_last_output,
    forward,
    gradcheck_errors,
    make_gated_cell,
    make_gated_problem,
    make_problem,
    seeded,
    state_parts,
)

PATHS_AGREE = dict(rtol=1e-12, atol=1e-12)     # fused path vs step loop: rounding differences only

STATE_KEYS = {"lstm": {"state0[0]", "state0[1]"}, "gru-torch": {"state0"}, "gru-cho": {"state0"}}


def _expected_keys(kind: str, cell) -> set[str]:
    return set(cell.param_shapes()) | {"xs"} | STATE_KEYS[kind]


def _assert_states_close(a, b, **tolerance):
    a, b = state_parts(a), state_parts(b)
    assert len(a) == len(b)
    for k, (x, y) in enumerate(zip(a, b)):
        assert_allclose(x, y, **tolerance, err_msg=f"state part {k}")


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


# ----- finite differences vs bptt.backward -------------------------------------------------------------
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("dhs_kind", ["random", "last"])
@pytest.mark.parametrize("zero_state", [False, True], ids=["state0", "zero-state0"])
@pytest.mark.parametrize("T, B, n_in, H", SHAPES, ids=SHAPE_IDS)
@pytest.mark.parametrize("kind", GATED_KINDS)
def test_gated_gradcheck(kind, T, B, n_in, H, zero_state, dhs_kind, path):
    cell, params, xs, state0, dhs = make_gated_problem(kind, T, B, n_in, H, zero_state=zero_state,
                                                       dhs_kind=dhs_kind)
    errors = gradcheck_errors(cell, params, xs, state0, dhs, path=path)
    assert set(errors) == _expected_keys(kind, cell)          # for the LSTM: both h0 and c0
    assert max(errors.values()) < GRAD_TOL, errors


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("zero_state", [False, True], ids=["state0", "zero-state0"])
@pytest.mark.parametrize("kind", GATED_KINDS)
def test_gated_d_final_state_against_finite_differences(kind, zero_state, path):
    """L = sum(hs * dhs) + sum(final_state * g) (both parts of the LSTM's (h_T, c_T))."""
    T, B, n_in, H = 3, 2, 2, 3
    cell, params, xs, state0, dhs = make_gated_problem(kind, T, B, n_in, H, zero_state=zero_state)
    rng = seeded("final", kind, path, int(zero_state))
    g = tuple(rng.normal(size=(B, w)) for w in cell.state_widths)
    g = g if len(g) > 1 else g[0]
    errors = gradcheck_errors(cell, params, xs, state0, dhs, path=path, g_final=g)
    assert max(errors.values()) < GRAD_TOL, errors
    # and without it, the same loss is NOT what backward differentiates (the knob matters)
    _, without = analytic_gradients(cell, params, xs, state0, dhs, path=path)
    _, with_g = analytic_gradients(cell, params, xs, state0, dhs, path=path, d_final_state=g)
    for key in STATE_KEYS[kind]:
        assert relative_error(without[key], with_g[key]) > 1e-3, key


@pytest.mark.parametrize("path", PATHS)
def test_lstm_d_final_state_on_c_alone(path):
    """A gradient on c_T only (no loss on any h_t) reaches every parameter, the inputs and (h0, c0)."""
    cell, params, xs, state0, _ = make_gated_problem("lstm", 3, 2, 2, 3, zero_state=False)
    g = (np.zeros((2, 3)), seeded("c alone", path).normal(size=(2, 3)))
    errors = gradcheck_errors(cell, params, xs, state0, np.zeros((3, 2, 3)), path=path, g_final=g)
    assert max(errors.values()) < GRAD_TOL, errors


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("kind", GATED_KINDS)
def test_d_final_state_on_h_is_a_gradient_on_the_last_output(kind, path):
    """h_T is hs[T-1], so a final-state gradient on h equals adding it to dhs[T-1]."""
    cell, params, xs, state0, dhs = make_gated_problem(kind, 4, 2, 2, 3, zero_state=False)
    g_h = seeded("fold", kind, path).normal(size=(2, 3))
    assert_final_gradient_on_h_is_a_gradient_on_the_last_output(cell, params, xs, state0, dhs, g_h, path)


# ----- the fused path and the step loop agree -----------------------------------------------------------
@pytest.mark.parametrize("zero_state", [False, True], ids=["state0", "zero-state0"])
@pytest.mark.parametrize("T, B, n_in, H", SHAPES, ids=SHAPE_IDS)
@pytest.mark.parametrize("kind", GATED_KINDS)
def test_gated_fused_and_step_paths_agree(kind, T, B, n_in, H, zero_state):
    cell, params, xs, state0, dhs = make_gated_problem(kind, T, B, n_in, H, zero_state=zero_state)
    rng = seeded("paths", kind, T, B, n_in, H)
    g = tuple(rng.normal(size=(B, w)) for w in cell.state_widths)
    g = g if len(g) > 1 else g[0]
    hs_f, cache_f = forward(cell, params, xs, state0, "fused")
    hs_s, cache_s = forward(cell, params, xs, state0, "steps")
    assert cache_f.fused is not None and cache_s.steps is not None     # both paths really ran
    assert_allclose(hs_f, hs_s, **PATHS_AGREE)
    _assert_states_close(cache_f.final_state, cache_s.final_state, **PATHS_AGREE)
    assert_array_equal(state_parts(cache_f.final_state)[0], hs_f[-1])
    grads_f = bptt.backward(cell, params, cache_f, dhs, d_final_state=g)
    grads_s = bptt.backward(cell, params, cache_s, dhs, d_final_state=g)
    assert set(grads_f[0]) == set(grads_s[0]) == set(params)
    for key in params:
        assert_allclose(grads_f[0][key], grads_s[0][key], **PATHS_AGREE, err_msg=key)
    assert_allclose(grads_f[1], grads_s[1], **PATHS_AGREE)
    _assert_states_close(grads_f[2], grads_s[2], **PATHS_AGREE)


# ----- the one-step protocol with gated cells ----------------------------------------------------------
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("kind", GATED_KINDS)
def test_chained_steps_agree_with_bptt(kind, path):
    """T calls of the public ``step``, then T calls of ``step_backward`` in reverse."""
    T, B = 4, 2
    cell, params, xs, state0, dhs = make_gated_problem(kind, T, B, 2, 3, zero_state=False)
    assert_chained_steps_agree_with_bptt(cell, params, xs, state0, dhs, path)


@pytest.mark.parametrize("kind", GATED_KINDS)
def test_initial_state_and_init_params(kind):
    cell = make_gated_cell(kind, 3, 4)
    state = cell.initial_state(2)
    for part in state_parts(state):
        assert_array_equal(part, np.zeros((2, 4)))
        assert part.dtype == np.float64
    assert isinstance(state, tuple) == (kind == "lstm")
    assert all(part.dtype == np.float32 for part in state_parts(cell.initial_state(1, dtype=np.float32)))
    params = cell.init_params(7)
    assert {k: v.shape for k, v in params.items()} == cell.param_shapes()
    bound = 1.0 / np.sqrt(4)                                             # torch's scale 1/sqrt(H)
    assert all(np.all(np.abs(v) <= bound) for v in params.values())
    again = cell.init_params(np.random.default_rng(7))
    assert all(np.array_equal(params[key], again[key]) for key in params)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("kind", GATED_KINDS)
def test_state0_none_is_the_zero_state(kind, path):
    cell, params, xs, _, dhs = make_gated_problem(kind, 3, 2, 2, 3, zero_state=True)
    hs, cache = forward(cell, params, xs, None, path)
    hs0, _ = forward(cell, params, xs, cell.initial_state(2), path)
    assert_array_equal(hs, hs0)
    grads, dxs, dstate0 = bptt.backward(cell, params, cache, dhs)
    assert {k: v.shape for k, v in grads.items()} == cell.param_shapes()
    assert dxs.shape == xs.shape
    assert [p.shape for p in state_parts(dstate0)] == [(2, 3)] * len(cell.state_widths)


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


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("b_f", [20.0, 0.0], ids=["forget-open", "forget-half"])
def test_carousel_dc0_is_dcT_times_the_product_of_forget_gates(b_f, path):
    """With no recurrent weights and no loss on any h_t, the only path from c_T back to c_0 is
    c_t = f_t * c_{t-1} + ..., so dc_{t-1} = f_t * dc_t at every step and dc_0 = dc_T * prod_t f_t."""
    T, B, n_in, H = 30, 2, 2, 3
    cell, params, xs, (h0, c0) = _carousel_problem(T, B, n_in, H, b_f, recurrent=False, seed=0)
    hs, cache = forward(cell, params, xs, (h0, c0), path)
    dc_T = seeded("dc_T", path).normal(size=(B, H))
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


@pytest.mark.parametrize("path", PATHS)
def test_carousel_survives_recurrent_weights(path):
    """With generic W_h* the gates also route error into h, but with the input gate closed those
    routes carry factors sigmoid'(-20 + ...) ~ 2e-9: dc_0 = dc_T * prod f_t ~ dc_T still holds."""
    T, B, n_in, H = 30, 2, 2, 3
    cell, params, xs, (h0, c0) = _carousel_problem(T, B, n_in, H, 20.0, recurrent=True, seed=1)
    hs, cache = forward(cell, params, xs, (h0, c0), path)
    dc_T = seeded("dc_T recurrent", path).normal(size=(B, H))
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


@pytest.mark.parametrize("path", PATHS)
def test_cho_variant_differs_from_torch_variant_on_copied_weights(path):
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
    hs_torch, _ = forward(torch_cell, params, xs, h0, path)
    hs_cho, _ = forward(cho_cell, _cho_copy(params), xs, h0, path)
    assert np.max(np.abs(hs_torch - hs_cho)) > 0.3          # outputs are in (-1, 1); here 0.83
    assert relative_error(hs_torch, hs_cho) > 0.1           # here 0.31
    # even the very first step differs (the reset acts on W_hn h_0 in one, on h_0 in the other)
    assert np.max(np.abs(hs_torch[0] - hs_cho[0])) > 0.05   # here 0.19

    # control 1: W_hn diagonal and b_hn = 0, so r * (W_hn h) = W_hn (r * h): the same function
    diagonal = {**params, "W_hn": np.diag(np.diag(params["W_hn"])), "b_hn": np.zeros(H)}
    hs_torch, _ = forward(torch_cell, diagonal, xs, h0, path)
    hs_cho, _ = forward(cho_cell, _cho_copy(diagonal), xs, h0, path)
    assert_allclose(hs_torch, hs_cho, **TIGHT)
    # control 2: the reset gate saturated at r = 1 (b_r = 40): no reset, the same function again
    no_reset = {**params, "b_r": np.full(H, 40.0)}
    hs_torch, _ = forward(torch_cell, no_reset, xs, h0, path)
    hs_cho, _ = forward(cho_cell, _cho_copy(no_reset), xs, h0, path)
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


# ----- dtypes and aliasing ------------------------------------------------------------------------------
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("kind", GATED_KINDS)
def test_float32_in_float32_out(kind, path):
    cell = make_gated_cell(kind, 2, 3)
    params64, xs64, state64, dhs64 = make_problem(cell, 3, 2, seeded("f32", kind), scale=0.7)
    params = {key: value.astype(np.float32) for key, value in params64.items()}
    xs = xs64.astype(np.float32)
    state0 = tuple(p.astype(np.float32) for p in state_parts(state64))
    state0 = state0 if len(state0) > 1 else state0[0]
    for start in (None, state0):
        hs, cache = forward(cell, params, xs, start, path)
        assert hs.dtype == np.float32
        assert all(p.dtype == np.float32 for p in state_parts(cache.final_state))
    hs64, _ = forward(cell, {k: v.astype(np.float64) for k, v in params.items()}, xs.astype(np.float64),
                      tuple(p.astype(np.float64) for p in state_parts(state0)) if kind == "lstm"
                      else state0.astype(np.float64), path)
    assert_allclose(hs, hs64, rtol=1e-5, atol=1e-6)
    grads, dxs, dstate0 = bptt.backward(cell, params, cache, dhs64.astype(np.float32))
    assert all(value.dtype == np.float32 for value in grads.values())
    assert dxs.dtype == np.float32
    assert all(p.dtype == np.float32 for p in state_parts(dstate0))


@pytest.mark.parametrize("kind", GATED_KINDS)
def test_both_paths_return_the_same_dtypes_for_mixed_precision(kind):
    """float32 parameters and inputs with a float64 initial state: both paths promote alike."""
    cell = make_gated_cell(kind, 2, 3)
    params = {key: value.astype(np.float32) for key, value in cell.init_params(0).items()}
    xs, dhs = np.ones((2, 1, 2), np.float32), np.ones((2, 1, 3), np.float32)
    state0 = cell.initial_state(1, dtype=np.float64)
    dtypes = {}
    for path in PATHS:
        hs, cache = forward(cell, params, xs, state0, path)
        grads, dxs, dstate0 = bptt.backward(cell, params, cache, dhs)
        dtypes[path] = (hs.dtype, *(p.dtype for p in state_parts(cache.final_state)),
                        *(g.dtype for g in grads.values()), dxs.dtype, *(p.dtype for p in state_parts(dstate0)))
    assert dtypes["fused"] == dtypes["steps"], dtypes


@pytest.mark.parametrize("kind", [
    "lstm",
    "gru-torch",
    "gru-cho",
])
def test_both_paths_agree_for_float64_dhs_on_a_float32_forward(kind):
    """A float64 loss gradient on a float32 forward (a float64 loss on float32 outputs): both paths
    return the same dtypes and the same numbers."""
    cell = make_gated_cell(kind, 2, 3)
    params64, xs64, _, dhs = make_problem(cell, 4, 2, seeded("f64 dhs", kind), scale=0.7)
    params = {key: value.astype(np.float32) for key, value in params64.items()}
    xs = xs64.astype(np.float32)
    results = {}
    for path in PATHS:
        _, cache = forward(cell, params, xs, None, path)
        results[path] = bptt.backward(cell, params, cache, dhs)
    (g_f, dxs_f, d0_f), (g_s, dxs_s, d0_s) = results["fused"], results["steps"]
    assert [p.dtype for p in state_parts(d0_f)] == [p.dtype for p in state_parts(d0_s)]
    assert dxs_f.dtype == dxs_s.dtype and all(g_f[k].dtype == g_s[k].dtype for k in g_f)
    # each path runs its own float32 forward (different rounding), so the numbers agree to float32 precision
    _assert_states_close(d0_f, d0_s, rtol=1e-4, atol=1e-5)
    assert_allclose(dxs_f, dxs_s, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("kind", GATED_KINDS)
def test_forward_and_backward_do_not_modify_their_inputs(kind, path):
    cell, params, xs, state0, dhs = make_gated_problem(kind, 3, 2, 2, 3, zero_state=False)
    g = tuple(np.ones((2, w)) for w in cell.state_widths)
    g = g if len(g) > 1 else g[0]
    saved = ({k: v.copy() for k, v in params.items()}, xs.copy(), [p.copy() for p in state_parts(state0)],
             dhs.copy(), [p.copy() for p in state_parts(g)])
    analytic_gradients(cell, params, xs, state0, dhs, path=path, d_final_state=g)
    for key in params:
        assert_array_equal(params[key], saved[0][key], err_msg=key)
    assert_array_equal(xs, saved[1])
    for part, copy in zip(state_parts(state0), saved[2]):
        assert_array_equal(part, copy)
    assert_array_equal(dhs, saved[3])
    for part, copy in zip(state_parts(g), saved[4]):
        assert_array_equal(part, copy)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("kind", GATED_KINDS)
def test_backward_does_not_depend_on_the_returned_objects(kind, path):
    """Editing the returned ``hs`` (``hs -= targets``) or the final state in place leaves the gradients
    of the forward run unchanged: the fused path keeps its own copies."""
    cell, params, xs, state0, dhs = make_gated_problem(kind, 3, 2, 2, 3, zero_state=False)
    hs, cache = forward(cell, params, xs, state0, path)
    expected = bptt.backward(cell, params, cache, dhs)
    hs -= 0.5
    for part in state_parts(cache.final_state):
        part += 1.0
    got = bptt.backward(cell, params, cache, dhs)
    for key in expected[0]:
        assert_array_equal(got[0][key], expected[0][key], err_msg=key)
    assert_array_equal(got[1], expected[1])
    for a, b in zip(state_parts(got[2]), state_parts(expected[2])):
        assert_array_equal(a, b)


# ----- bad input ---------------------------------------------------------------------------------------
def _raises(name: str):
    """``pytest.raises(ValueError)`` whose message starts with ``name`` (regex-escaped brackets)."""
    return pytest.raises(ValueError, match="^" + name.replace("[", r"\[").replace("]", r"\]"))


@pytest.fixture
def lstm_problem():
    cell = LSTM(2, 3)
    params, xs, state0, dhs = make_problem(cell, 3, 2, seeded("bad lstm"))
    return cell, params, xs, state0, dhs


@pytest.mark.parametrize(
    "cell, wrong",
    [
        (GRU(2, 3, variant="cho"), GRU(2, 3)),                  # b_xn, b_hn where b_n is expected
        (GRU(2, 3), GRU(2, 3, variant="cho")),
        (LSTM(2, 3), GRU(2, 3)),
        (GRU(2, 3), LSTM(2, 3)),
    ],
    ids=["torch-params-to-cho", "cho-params-to-torch", "gru-params-to-lstm", "lstm-params-to-gru"],
)
def test_params_of_another_cell_are_refused(cell, wrong):
    params = wrong.init_params(0)
    with _raises("params must have exactly the keys"):
        bptt.forward(cell, params, np.zeros((3, 2, 2)))
    with _raises("params must have exactly the keys"):
        cell.step(params, np.zeros((2, 2)), cell.initial_state(2))


def test_torch_params_to_a_cho_cell_name_the_keys():
    with pytest.raises(ValueError, match=r"missing \['b_n'\], unexpected \['b_hn', 'b_xn'\]"):
        bptt.forward(GRU(2, 3, variant="cho"), GRU(2, 3).init_params(0), np.zeros((1, 1, 2)))


@pytest.mark.parametrize(
    "key, shape",
    [("W_hf", (3, 4)), ("W_xg", (2, 3)), ("b_o", (1, 3))],
    ids=["W_hf-width", "W_xg-transposed", "b_o-2d"],
)
def test_lstm_param_with_the_wrong_shape(lstm_problem, key, shape):
    cell, params, xs, state0, dhs = lstm_problem
    with _raises(f"params['{key}'] must have shape"):
        bptt.forward(cell, {**params, key: np.zeros(shape)}, xs, state0)


@pytest.mark.parametrize("kind, key", [("gru-torch", "b_hn"), ("gru-cho", "W_hn")])
def test_gru_param_with_the_wrong_shape(kind, key):
    cell = make_gated_cell(kind, 2, 3)
    params = {**cell.init_params(0), key: np.zeros((4, 4))}
    with _raises(f"params['{key}'] must have shape"):
        bptt.forward(cell, params, np.zeros((2, 1, 2)))


@pytest.mark.parametrize(
    "make_state0, message",
    [
        (lambda h, c: h, "state0 must be a tuple of 2 arrays"),              # h0 alone
        (lambda h, c: np.stack([h, c]), "state0 must be a tuple of 2 arrays"),
        (lambda h, c: [h, c], "state0 must be a tuple of 2 arrays"),
        (lambda h, c: (h,), "state0 must be a tuple of 2 arrays"),
        (lambda h, c: (h, c, c), "state0 must be a tuple of 2 arrays"),
        (lambda h, c: (h, c[:, :2]), "state0[1] must have shape"),
        (lambda h, c: (h[:1], c), "state0[0] must have shape"),
        (lambda h, c: (h, c * np.nan), "state0[1] contains"),
    ],
    ids=["single-array", "stacked", "list", "one-part", "three-parts", "c-width", "h-batch", "c-nan"],
)
def test_lstm_state0_structure(lstm_problem, make_state0, message):
    cell, params, xs, (h0, c0), _ = lstm_problem
    with _raises(message):
        bptt.forward(cell, params, xs, make_state0(h0, c0))


def test_lstm_state0_single_array_message_names_state0(lstm_problem):
    cell, params, xs, (h0, _), _ = lstm_problem
    with pytest.raises(ValueError) as info:
        bptt.forward(cell, params, xs, h0)
    assert str(info.value).startswith("state0 ") and "tuple" in str(info.value)


@pytest.mark.parametrize(
    "make_g, message",
    [
        (lambda B, H: np.zeros((B, H)), "d_final_state must be a tuple of 2 arrays"),
        (lambda B, H: (np.zeros((B, H)),), "d_final_state must be a tuple of 2 arrays"),
        (lambda B, H: (np.zeros((B, H)), np.zeros((B, H + 1))), "d_final_state[1] must have shape"),
        (lambda B, H: (np.zeros((B + 1, H)), np.zeros((B, H))), "d_final_state[0] must have shape"),
    ],
    ids=["single-array", "one-part", "c-width", "h-batch"],
)
def test_lstm_d_final_state_structure(lstm_problem, make_g, message):
    cell, params, xs, state0, dhs = lstm_problem
    _, cache = bptt.forward(cell, params, xs, state0)
    with _raises(message):
        bptt.backward(cell, params, cache, dhs, d_final_state=make_g(2, 3))


@pytest.mark.parametrize("variant", ["torch", "cho"])
def test_gru_d_final_state_given_as_a_pair(variant):
    cell = GRU(2, 3, variant=variant)
    params, xs, h0, dhs = make_problem(cell, 3, 2, seeded("bad gru", variant))
    _, cache = bptt.forward(cell, params, xs, h0)
    with _raises("d_final_state must have shape"):
        bptt.backward(cell, params, cache, dhs, d_final_state=(np.zeros((2, 3)), np.zeros((2, 3))))
    with _raises("state0 must have shape"):
        bptt.forward(cell, params, xs, (h0, h0))


def test_lstm_step_protocol_checks_the_state_structure(lstm_problem):
    cell, params, xs, (h0, c0), _ = lstm_problem
    with _raises("state must be a tuple of 2 arrays"):
        cell.step(params, xs[0], h0)
    with _raises("state[1] must have shape"):
        cell.step(params, xs[0], (h0, c0[:1]))
    _, step_cache = cell.step(params, xs[0], (h0, c0))
    with _raises("d_state must be a tuple of 2 arrays"):
        cell.step_backward(params, step_cache, h0)
    with _raises("d_state[1] contains"):
        cell.step_backward(params, step_cache, (h0, np.full_like(c0, np.inf)))


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: GRU(2, 3, variant="bogus"), "variant must be one of"),
        (lambda: GRU(2, 3, variant="Torch"), "variant must be one of"),
        (lambda: GRU(2, 3, variant=None), "variant must be one of"),
        (lambda: LSTM(0, 3), "n_in must be a positive integer"),
        (lambda: LSTM(2, 0), "n_hidden must be a positive integer"),
        (lambda: LSTM(2.0, 3), "n_in must be a positive integer"),
        (lambda: LSTM(2, True), "n_hidden must be a positive integer"),
        (lambda: GRU(-1, 3), "n_in must be a positive integer"),
        (lambda: GRU(2, 0, variant="cho"), "n_hidden must be a positive integer"),
    ],
    ids=["bogus", "capitalised", "none", "lstm-n_in=0", "lstm-n_hidden=0", "lstm-float", "lstm-bool",
         "gru-n_in<0", "cho-n_hidden=0"],
)
def test_bad_constructor_arguments(make, message):
    with _raises(message):
        make()


def test_gru_variant_is_keyword_only():
    with pytest.raises(TypeError):
        GRU(2, 3, "cho")


@pytest.mark.parametrize("kind", GATED_KINDS)
def test_init_params_with_a_bad_rng(kind):
    with _raises("rng must be a numpy Generator"):
        make_gated_cell(kind, 2, 3).init_params(np.random.RandomState(0))


# ----- mutants: the checks above must be able to fail ---------------------------------------------------
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


def fused_forgets_final_cell(cell, params, cache, dhs, d_final):
    """Wrong fused backward: the gradient arriving at the final cell state c_T is ignored."""
    return fused_lstm.backward_sequence(cell, params, cache, dhs, (d_final[0], np.zeros_like(d_final[1])))


def test_gradcheck_detects_an_lstm_carry_without_the_forget_gate():
    good, bad = LSTM(2, 3), NoForgetCarry(2, 3)
    problem = make_problem(good, 3, 2, seeded("mutant lstm"), scale=0.7)
    assert max(gradcheck_errors(good, *problem, path="steps").values()) < GRAD_TOL      # control
    errors = gradcheck_errors(bad, *problem, path="steps")
    assert errors["state0[1]"] > 1e-3 and errors["W_hf"] > 1e-3, errors
    # the mutant's forward is the LSTM's: only the backward is wrong
    assert_array_equal(forward(bad, problem[0], problem[1], problem[2], "steps")[0],
                       forward(good, problem[0], problem[1], problem[2], "steps")[0])


@pytest.mark.parametrize("variant", ["torch", "cho"])
def test_gradcheck_detects_a_gru_without_the_direct_path(variant):
    good, bad = GRU(2, 3, variant=variant), NoDirectPath(2, 3, variant=variant)
    problem = make_problem(good, 3, 2, seeded("mutant gru", variant), scale=0.7)
    assert max(gradcheck_errors(good, *problem, path="steps").values()) < GRAD_TOL      # control
    errors = gradcheck_errors(bad, *problem, path="steps")
    assert errors["state0"] > 1e-3 and errors["W_hz"] > 1e-3, errors


def test_gradcheck_detects_a_fused_lstm_that_drops_the_final_cell_gradient(monkeypatch):
    monkeypatch.setitem(fused.REGISTRY, LSTM, fused.FusedPath(fused_lstm.forward_sequence, fused_forgets_final_cell))
    cell = LSTM(2, 3)
    problem = make_problem(cell, 3, 2, seeded("mutant fused"), scale=0.7)
    g = tuple(seeded("mutant fused g").normal(size=(2, 2, 3)))
    errors = gradcheck_errors(cell, *problem, path="fused", g_final=g)
    assert errors["state0[1]"] > 1e-3, errors
    # only a d_final_state on c exposes it; the step loop and the plain loss are fine
    assert max(gradcheck_errors(cell, *problem, path="steps", g_final=g).values()) < GRAD_TOL
    assert max(gradcheck_errors(cell, *problem, path="fused").values()) < GRAD_TOL
