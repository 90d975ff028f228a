"""The table of gradient methods (gradient_methods.py): every method against the step loop, the step
loop against finite differences, the contract every method keeps, and mutants the table must catch.

A method that joins ``METHODS`` is checked here for every cell kind it applies to, with no other change.
"""
from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from companion import fused
from companion.cells import LSTM, Elman
from companion.fused import elman as fused_elman
from companion.fused import lstm as fused_lstm
from companion.gradcheck import relative_error

from gradient_methods import METHODS, REFERENCE, Result, assert_same_result
from helpers import (
    CELL_KINDS,
    DHS_KINDS,
    GRAD_TOL,
    KIND_SHAPES,
    SMALL_SHAPES,
    TIGHT,
    analytic_gradients,
    assert_unchanged,
    gradcheck_errors,
    make_cell,
    make_dhs,
    make_kind_problem,
    make_problem,
    random_state,
    seeded,
    snapshot,
    shape_id,
    state_entries,
    state_parts,
)

# the table also runs one long sequence (the carousel chapter's T = 30)
TABLE_SHAPES = {kind: shapes + [(30, 2, 2, 3, None)] for kind, shapes in KIND_SHAPES.items()}
FLOAT32 = dict(rtol=1e-5, atol=1e-6)          # a float32 computation against its float64 twin
TWO_FLOAT32 = dict(rtol=1e-4, atol=1e-5)      # two float32 computations with different rounding


def method_cases(names, shapes_of) -> list:
    """``pytest.param(name, kind, shape)`` for every method of ``names`` and every kind and shape it applies to."""
    cases = []
    for name in names:
        method = METHODS[name]
        for kind in CELL_KINDS:
            for shape in shapes_of[kind]:
                if method.applies(make_cell(kind, shape[2], shape[3], shape[4])):
                    cases.append(pytest.param(name, kind, shape, id=f"{name}-{shape_id(kind, shape)}"))
    return cases


OTHERS = [name for name in METHODS if name != REFERENCE]
ZERO_STATE = pytest.mark.parametrize("zero_state", [False, True], ids=["state0", "zero-state0"])


def _run(name, cell, params, xs, state0, dhs, d_final_state=None) -> Result:
    return METHODS[name].run(cell, params, xs, state0, dhs, d_final_state)


def _computed(name, result: Result) -> list:
    """The arrays of ``result`` that the method ``name`` computes (its ``computes``), state parts separate."""
    computes = METHODS[name].computes
    arrays = [result.hs] if "hs" in computes else []
    arrays += [*state_parts(result.final_state)] if "final_state" in computes else []
    arrays += [*result.grads.values()] if "grads" in computes else []
    arrays += [result.dxs] if "dxs" in computes else []
    return arrays + ([*state_parts(result.dstate0)] if "dstate0" in computes else [])


def _astype(state, dtype):
    parts = tuple(np.asarray(part).astype(dtype) for part in state_parts(state))
    return parts if isinstance(state, tuple) else parts[0]


def _zero_state(cell, B):
    parts = tuple(np.zeros((B, width)) for width in cell.state_widths)
    return parts if len(parts) > 1 else parts[0]


# ----- the table: every method against the step loop ------------------------------------------------------
@ZERO_STATE
@pytest.mark.parametrize("name, kind, shape", method_cases(OTHERS, TABLE_SHAPES))
def test_method_agrees_with_the_step_loop(name, kind, shape, zero_state):
    """Outputs, final state and every gradient, in float64 to rounding (and the same dtypes), for a
    direct gradient at every step, at the last step only and at the first step only, each with and
    without a gradient arriving at the final state (every part of it)."""
    cell, params, xs, state0, _ = make_kind_problem(kind, shape, zero_state=zero_state)
    T, B = xs.shape[:2]
    rng = seeded("table", name, kind, *shape[:4], int(zero_state))
    g = random_state(cell, rng, B)
    for dhs_kind in DHS_KINDS:
        dhs = make_dhs(rng, T, B, cell.output_width, dhs_kind)
        for d_final_state in (None, g):
            expected = _run(REFERENCE, cell, params, xs, state0, dhs, d_final_state)
            got = _run(name, cell, params, xs, state0, dhs, d_final_state)
            assert expected.hs.dtype == np.float64
            for result in (expected, got):                      # h_T is hs[T-1], exactly
                assert_array_equal(state_parts(result.final_state)[0], result.hs[-1])
            assert_same_result(got, expected, tolerance=TIGHT, computes=METHODS[name].computes,
                               label=f"dhs {dhs_kind}, d_final_state {'None' if d_final_state is None else 'given'}")


@pytest.mark.parametrize("name, kind, shape", method_cases(OTHERS, SMALL_SHAPES))
def test_method_promotes_dtypes_like_the_step_loop(name, kind, shape):
    """float32 parameters and inputs with a float64 initial state (mixed precision), a float32 forward
    with a float64 loss gradient (a float64 loss on float32 outputs), and float32 throughout: the same
    dtypes as the step loop, and the same numbers to float32 precision (a method may round the float32
    products of the parameters and inputs differently)."""
    cell, params64, xs64, state64, dhs64 = make_kind_problem(kind, shape)
    params = {key: value.astype(np.float32) for key, value in params64.items()}
    xs, dhs32 = xs64.astype(np.float32), dhs64.astype(np.float32)
    for state0, dhs in [(state64, dhs32), (None, dhs64), (None, dhs32)]:
        expected = _run(REFERENCE, cell, params, xs, state0, dhs)
        got = _run(name, cell, params, xs, state0, dhs)
        assert_same_result(got, expected, tolerance=TWO_FLOAT32, computes=METHODS[name].computes,
                           label=f"state0 {state0 is not None}, dhs {dhs.dtype}")
    assert expected.hs.dtype == np.float32                       # the last case really ran in float32


# ----- the contract of every method, the reference included ----------------------------------------------
@pytest.mark.parametrize("name, kind, shape", method_cases(METHODS, SMALL_SHAPES))
def test_dtype_rules(name, kind, shape):
    """float32 in, float32 out (the float64 twin to float32 precision); integer inputs become float64."""
    cell, params64, xs64, state64, dhs64 = make_kind_problem(kind, shape)
    B = xs64.shape[1]
    params = {key: value.astype(np.float32) for key, value in params64.items()}
    xs, dhs = xs64.astype(np.float32), dhs64.astype(np.float32)
    g = _astype(random_state(cell, seeded("f32 g", name, kind), B), np.float32)
    params_twin = {key: value.astype(np.float64) for key, value in params.items()}
    for state0, d_final_state in [(None, None), (_astype(state64, np.float32), g)]:
        result = _run(name, cell, params, xs, state0, dhs, d_final_state)
        arrays = _computed(name, result)
        assert all(array.dtype == np.float32 for array in arrays), [array.dtype for array in arrays]
        state_twin = None if state0 is None else _astype(state0, np.float64)
        twin = _run(name, cell, params_twin, xs.astype(np.float64), state_twin, dhs.astype(np.float64))
        assert_allclose(result.hs, twin.hs, **FLOAT32)
    # integer inputs
    xs_int = np.round(2 * xs64).astype(np.int64)
    from_int = _run(name, cell, params64, xs_int, state64, dhs64)
    assert all(array.dtype == np.float64 for array in _computed(name, from_int))
    assert_same_result(from_int, _run(name, cell, params64, xs_int.astype(np.float64), state64, dhs64),
                       tolerance=dict(rtol=0, atol=0), computes=METHODS[name].computes)


@pytest.mark.parametrize("name, kind, shape", method_cases(METHODS, SMALL_SHAPES))
def test_state0_none_is_the_zero_state(name, kind, shape):
    cell, params, xs, _, dhs = make_kind_problem(kind, shape)
    B = xs.shape[1]
    result = _run(name, cell, params, xs, None, dhs)
    assert_same_result(result, _run(name, cell, params, xs, _zero_state(cell, B), dhs), tolerance=dict(rtol=0, atol=0),
                       computes=METHODS[name].computes)
    assert {key: value.shape for key, value in result.grads.items()} == cell.param_shapes()
    if "dxs" in METHODS[name].computes:
        assert result.dxs.shape == xs.shape
    assert [part.shape for part in state_parts(result.dstate0)] == [(B, w) for w in cell.state_widths]
    assert isinstance(result.dstate0, tuple) == (len(cell.state_widths) > 1)


@pytest.mark.parametrize("name, kind, shape", method_cases(METHODS, SMALL_SHAPES))
def test_inputs_are_not_modified_and_outputs_are_not_aliased(name, kind, shape):
    """The method leaves its inputs alone; and where it has a forward and a backward half, editing the
    returned outputs in place (``hs -= targets``) between them leaves the gradients unchanged."""
    cell, params, xs, state0, dhs = make_kind_problem(kind, shape)
    g = random_state(cell, seeded("untouched", name, kind), xs.shape[1])
    saved = snapshot(params, xs, state0, dhs, g)
    _run(name, cell, params, xs, state0, dhs, g)
    assert_unchanged(saved, params, xs, state0, dhs, g)
    forward = METHODS[name].forward
    if forward is None:
        return
    hs, final_state, backward = forward(cell, params, xs, state0)
    expected = backward(dhs, g)
    hs -= 0.5                                                     # e.g. the residual of a squared loss
    for part in state_parts(final_state):                         # e.g. a stream's state, edited in place
        part += 1.0
    got = backward(dhs, g)
    for key in expected[0]:
        assert_array_equal(got[0][key], expected[0][key], err_msg=key)
    assert_array_equal(got[1], expected[1])
    for a, b in zip(state_parts(got[2]), state_parts(expected[2]), strict=True):
        assert_array_equal(a, b)


# ----- the reference: the step loop against finite differences and the one-step protocol -----------------
@pytest.mark.parametrize("dhs_kind", DHS_KINDS)
@ZERO_STATE
@pytest.mark.parametrize("kind, shape", [pytest.param(k, s, id=shape_id(k, s)) for k in CELL_KINDS
                                         for s in KIND_SHAPES[k]])
def test_step_loop_matches_finite_differences(kind, shape, zero_state, dhs_kind):
    cell, params, xs, state0, dhs = make_kind_problem(kind, shape, zero_state=zero_state, dhs_kind=dhs_kind)
    errors = gradcheck_errors(cell, params, xs, state0, dhs)
    assert set(errors) == set(cell.param_shapes()) | {"xs"} | set(state_entries("state0", state0))
    assert max(errors.values()) < GRAD_TOL, errors


SMALL_CASES = [pytest.param(k, s, id=shape_id(k, s)) for k in CELL_KINDS for s in SMALL_SHAPES[k]]


@ZERO_STATE
@pytest.mark.parametrize("kind, shape", SMALL_CASES)
def test_step_loop_d_final_state_matches_finite_differences(kind, shape, zero_state):
    """L = sum(hs * dhs) + sum(final_state * g) (every part of the state, the LSTM's c_T too):
    ``d_final_state=g`` carries the second term."""
    cell, params, xs, state0, dhs = make_kind_problem(kind, shape, zero_state=zero_state)
    g = random_state(cell, seeded("final", kind, *shape[3:4], int(zero_state)), xs.shape[1])
    errors = gradcheck_errors(cell, params, xs, state0, dhs, g_final=g)
    assert max(errors.values()) < GRAD_TOL, errors
    # and without it, the same loss is NOT what backward differentiates (the knob matters)
    _, without = analytic_gradients(cell, params, xs, state0, dhs)
    _, with_g = analytic_gradients(cell, params, xs, state0, dhs, d_final_state=g)
    for key in state_entries("state0", state0):
        assert relative_error(without[key], with_g[key]) > 1e-3, key


@pytest.mark.parametrize("kind, shape", SMALL_CASES)
def test_d_final_state_on_h_is_a_gradient_on_the_last_output(kind, shape):
    """h_T is hs[T-1], so ``d_final_state`` = ``g_h`` on h_T (zero on any other part of the state) gives
    the gradients of adding ``g_h`` to ``dhs[T-1]``."""
    cell, params, xs, state0, dhs = make_kind_problem(kind, shape)
    B = xs.shape[1]
    g_h = seeded("fold", kind, *shape[3:4]).normal(size=(B, cell.output_width))
    rest = tuple(np.zeros((B, width)) for width in cell.state_widths[1:])
    _, with_g = analytic_gradients(cell, params, xs, state0, dhs, d_final_state=(g_h, *rest) if rest else g_h)
    dhs_plus = dhs.copy()
    dhs_plus[-1] += g_h
    _, folded = analytic_gradients(cell, params, xs, state0, dhs_plus)
    assert relative_error(folded["xs"], analytic_gradients(cell, params, xs, state0, dhs)[1]["xs"]) > 1e-3
    for key in with_g:
        assert_allclose(with_g[key], folded[key], **TIGHT, err_msg=key)


@pytest.mark.parametrize("T", [1, 4])
@pytest.mark.parametrize("kind, shape", SMALL_CASES)
def test_chained_public_steps_agree_with_the_step_loop(kind, shape, T):
    """T calls of the public ``step``, then T calls of ``step_backward`` in reverse, summing the parameter
    gradients, give the step loop's outputs and gradients (T = 1: one step is one-step BPTT)."""
    cell, params, xs, state0, dhs = make_kind_problem(kind, (T, *shape[1:]))
    state, caches, outs = state0, [], []
    for t in range(T):
        state, step_cache = cell.step(params, xs[t], state)
        caches.append(step_cache)
        outs.append(cell.hidden(state))
    d_state = cell.zero_state_grad(state0)
    grads = {key: np.zeros_like(value) for key, value in params.items()}
    dxs = np.zeros_like(xs)
    for t in reversed(range(T)):
        d_params, d_state, dxs[t] = cell.step_backward(params, caches[t], cell.add_to_hidden(d_state, dhs[t]))
        for key in grads:
            grads[key] += d_params[key]
    hs, expected = analytic_gradients(cell, params, xs, state0, dhs)
    assert_allclose(np.stack(outs), hs, **TIGHT)
    for key in grads:
        assert_allclose(grads[key], expected[key], **TIGHT, err_msg=key)
    assert_allclose(dxs, expected["xs"], **TIGHT)
    for key, value in state_entries("state0", d_state).items():
        assert_allclose(value, expected[key], **TIGHT, err_msg=key)


# ----- mutants: the table must catch a wrong method ------------------------------------------------------
def fused_flipped_carry(cell, params, cache, dhs, dh_final):
    """Wrong fused Elman backward: dL/dh_0 with the wrong sign."""
    grads, dxs, dh0 = fused_elman.backward_sequence(cell, params, cache, dhs, dh_final)
    return grads, dxs, -dh0


def fused_forgets_final(cell, params, cache, dhs, dh_final):
    """Wrong fused Elman backward: the gradient arriving at the final state is ignored."""
    return fused_elman.backward_sequence(cell, params, cache, dhs, np.zeros_like(dh_final))


def fused_forgets_final_cell(cell, params, cache, dhs, d_final):
    """Wrong fused LSTM backward: the gradient arriving at the final cell state c_T is ignored."""
    return fused_lstm.backward_sequence(cell, params, cache, dhs, (d_final[0], np.zeros_like(d_final[1])))


def _table_check(cell, problem, d_final_state=None):
    """The check of ``test_method_agrees_with_the_step_loop`` for "fused" on one problem."""
    expected = _run(REFERENCE, cell, *problem, d_final_state)
    assert_same_result(_run("fused", cell, *problem, d_final_state), expected, tolerance=TIGHT)


@pytest.mark.parametrize(
    "cell, backward, caught_without_d_final_state",
    [(Elman(2, 3), fused_flipped_carry, True), (Elman(2, 3), fused_forgets_final, False),
     (LSTM(2, 3), fused_forgets_final_cell, False)],
    ids=["elman-flipped-carry", "elman-forgets-final-state", "lstm-forgets-final-cell"],
)
def test_the_table_catches_a_wrong_fused_backward(monkeypatch, cell, backward, caught_without_d_final_state):
    problem = make_problem(cell, 3, 2, seeded("mutant fused", repr(cell)), scale=0.7)
    g = random_state(cell, seeded("mutant fused g", repr(cell)), 2)
    _table_check(cell, problem, g)                                          # control: the real fused path
    monkeypatch.setitem(fused.REGISTRY, type(cell), fused.FusedPath(fused.REGISTRY[type(cell)].forward, backward))
    with pytest.raises(AssertionError):
        _table_check(cell, problem, g)
    if caught_without_d_final_state:
        with pytest.raises(AssertionError):
            _table_check(cell, problem)
    else:                                                                   # only a d_final_state exposes it
        _table_check(cell, problem)
