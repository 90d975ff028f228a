"""Truncated BPTT (``companion.truncation``): BPTT(k2; k1) against a torch ``detach()`` reference and
against full BPTT, its windows, randomized truncation and its unbiasedness, the choice of k2 from the
adjoint's decay, online training on a stream, and the refusals.

The definition every test is written from (Williams & Peng's BPTT(k2; k1), Sutskever's TBPTT(k1, k2)): the
forward pass runs once with fixed parameters; at every step t (1-based) that is a multiple of k1, and at
t = T, the losses of the steps since the previous such point are back-propagated through the steps
max(1, t - k2 + 1) .. t, and the state before that window is a constant. The full-BPTT side of every
comparison is ``companion.bptt`` (pinned to finite differences and torch elsewhere); k2 >= T also runs
through the whole table of gradient methods (gradient_methods.py, entries "truncated-k2>=T" and
"truncated-k1=k2=T").
"""
from __future__ import annotations

import functools
import math
from statistics import NormalDist

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from companion import bptt, truncation
from companion.cells import LSTM, Elman, Jordan
from companion.losses import mse, softmax_cross_entropy
from companion.model import init_model, sequence_loss_and_grads
from companion.optim import SGD
from companion.readout import readout_backward, readout_forward
from companion.train import train

from helpers import (
    CELL_KINDS, TIGHT, assert_unchanged, make_kind_problem, random_state, seeded, snapshot, state_entries, state_parts,
)

REL_TOL = 1e-10                 # "relative error below 1e-10": one float64 quantity computed two ways
# a truncated and a full gradient must differ by far more than REL_TOL, else agreeing to REL_TOL with a
# reference says nothing about the truncation
DISTINCT = 1e4 * REL_TOL
FLOAT32 = dict(rtol=1e-5, atol=1e-6)   # a float32 computation against its float64 twin (as test_gradient_methods)
FAMILY_FALSE_ALARM = 1e-3       # the Monte Carlo tests' chance of failing a correct estimator, all comparisons together
KEEP_RATE_Z = 5.0               # binomial keep rates: within 5 standard errors (a false alarm ~ 6e-7 per rate)


# ----- helpers --------------------------------------------------------------------------------------------
def _torch_reference():
    """tests/torch_reference.py, or skip the test when torch is missing (the rest of the file runs without)."""
    pytest.importorskip("torch")
    import torch_reference

    return torch_reference


def _max_relative_error(got, expected) -> float:
    """max |got - expected| / max |expected|; for an all-zero ``expected``, 0 if ``got`` is zero too, else inf."""
    got, expected = np.asarray(got), np.asarray(expected)
    assert got.shape == expected.shape, (got.shape, expected.shape)
    scale = float(np.max(np.abs(expected), initial=0.0))
    difference = float(np.max(np.abs(got - expected), initial=0.0))
    if scale == 0.0:
        return 0.0 if difference == 0.0 else math.inf
    return difference / scale


def _relative_errors(got: dict, expected: dict) -> dict[str, float]:
    assert set(got) == set(expected), (sorted(got), sorted(expected))
    return {key: _max_relative_error(got[key], expected[key]) for key in expected}


def _full_bptt(cell, params, xs, state0, dhs, d_final_state=None):
    """Full BPTT by the step loop: ``(hs, grads, dxs, dstate0)``."""
    hs, cache = bptt.forward(cell, params, xs, state0, fused=False)
    grads, dxs, dstate0 = bptt.backward(cell, params, cache, dhs, d_final_state=d_final_state)
    return hs, grads, dxs, dstate0


def _as_entries(result) -> dict:
    """A ``TruncatedResult`` in the layout of ``torch_reference.loop_gradients``: params, "xs", state0 entries."""
    return {**result.grads, "xs": result.dxs, **state_entries("state0", result.dstate0)}


def _windows_by_definition(T, k1, k2) -> list[tuple[int, int, int]]:
    """The backward passes, written from the definition: walk t = 1 .. T; at a multiple of k1 or at T, the
    losses since the previous pass go back through the last k2 steps (never before step 1)."""
    windows, previous = [], 0
    for t in range(1, T + 1):
        if t % k1 == 0 or t == T:
            windows.append((max(1, t - k2 + 1), previous + 1, t))
            previous = t
    return windows


def _flat(grads: dict, keys) -> np.ndarray:
    return np.concatenate([np.ravel(grads[key]) for key in keys])


def _states(cell, params, xs, state0):
    """[state_0, state_1, ..., state_T] by the public one-step protocol (state_0 is zeros for None)."""
    state = cell.initial_state(xs.shape[1]) if state0 is None else state0
    states = [state]
    for x_t in xs:
        state, _ = cell.step(params, x_t, state)
        states.append(state)
    return states


def _orthogonal(rng, H):
    q, r = np.linalg.qr(rng.normal(size=(H, H)))
    return q * np.sign(np.diag(r))


# ----- backward_points: the windows --------------------------------------------------------------------------
WINDOW_GRID = [(T, k1, k2) for T in (1, 2, 5, 10, 12) for k1 in (1, 2, 3, 5, 13) for k2 in (k1, k1 + 1, 2 * k1 + 3, 20)]


def test_backward_points_worked_example():
    """T = 10, k1 = 3, k2 = 5, worked by hand from the definition: passes after steps 3, 6, 9 and 10,
    each through the last 5 steps (never before step 1), each with the losses since the previous pass."""
    expected = [(1, 1, 3), (2, 4, 6), (5, 7, 9), (6, 10, 10)]
    assert _windows_by_definition(10, 3, 5) == expected
    assert truncation.backward_points(10, 3, 5) == expected


@pytest.mark.parametrize("T, k1, k2", WINDOW_GRID, ids=[f"T{T}-k1_{k1}-k2_{k2}" for T, k1, k2 in WINDOW_GRID])
def test_backward_points_follow_the_definition(T, k1, k2):
    """The triples equal the definition's; every loss step 1 .. T is in exactly one pass; a pass ends at a
    multiple of k1 or at T and spans min(k2, end) steps; there are ceil(T / k1) passes."""
    windows = truncation.backward_points(T, k1, k2)
    assert windows == _windows_by_definition(T, k1, k2)
    assert all(type(value) is int for window in windows for value in window)
    loss_steps = [s for _, first, end in windows for s in range(first, end + 1)]
    assert loss_steps == list(range(1, T + 1))                    # each step once, in time order
    for start, first, end in windows:
        assert end % k1 == 0 or end == T
        assert end - start + 1 == min(k2, end)
        assert start <= first <= end
    assert len(windows) == math.ceil(T / k1)


# ----- tbptt and truncated_gradients against the torch detach() reference -----------------------------------
# (T, B, k1, k2): k1 < k2 with T not a multiple of k1, k1 = k2 (with and without a remainder), k1 = 1,
# k2 > T, k1 = k2 = T, T = 1, and B = 1
TORCH_CASES = [(7, 2, 2, 3), (6, 2, 3, 3), (7, 2, 3, 3), (7, 2, 1, 3), (6, 2, 2, 9), (5, 2, 5, 5), (1, 2, 1, 1),
               (8, 2, 2, 5), (7, 1, 2, 3), (1, 1, 1, 4)]


@pytest.mark.parametrize("T, B, k1, k2", TORCH_CASES,
                         ids=[f"T{T}-B{B}-k1_{k1}-k2_{k2}" for T, B, k1, k2 in TORCH_CASES])
@pytest.mark.parametrize("kind", CELL_KINDS)
def test_truncated_gradients_match_the_torch_detach_reference(kind, T, B, k1, k2):
    """Outputs, final state and every gradient (parameters, inputs, initial state; a nonzero initial
    state) of ``truncated_gradients``, and ``tbptt``'s, agree with torch autograd through windows re-run
    from ``detach()``-ed states, to a relative error below 1e-10 per array. Where the truncation cuts
    something (k2 < T), the reference differs from full BPTT by far more than that."""
    reference = _torch_reference()
    cell, params, xs, state0, dhs = make_kind_problem(kind, (T, B, 2, 3, None), seed=7)
    ref_hs, ref = reference.detach_tbptt_gradients(cell, params, xs, state0, dhs, k1, k2)
    result = truncation.truncated_gradients(cell, params, xs, dhs, k1, k2, state0=state0)
    errors = _relative_errors(_as_entries(result), ref)
    assert max(errors.values()) < REL_TOL, errors
    assert _max_relative_error(result.hs, ref_hs) < REL_TOL
    full_hs, *_ = _full_bptt(cell, params, xs, state0, dhs)
    for got, want in zip(state_parts(result.final_state), state_parts(_states(cell, params, xs, state0)[-1])):
        assert_allclose(got, want, **TIGHT)
    assert_allclose(result.hs, full_hs, **TIGHT)                  # the forward pass is never truncated
    tbptt_errors = _relative_errors(truncation.tbptt(cell, params, xs, dhs, k1, k2, state0=state0),
                                    {key: ref[key] for key in params})
    assert max(tbptt_errors.values()) < REL_TOL, tbptt_errors
    if k2 < T:
        _, full = reference.loop_gradients(cell, params, xs, state0, dhs)
        difference = _relative_errors({key: ref[key] for key in params}, {key: full[key] for key in params})
        assert max(difference.values()) > DISTINCT, "the truncation changed nothing: a weak case"


@pytest.mark.parametrize("T, k1, k2", [(7, 2, 3), (7, 3, 3), (6, 1, 4)])
@pytest.mark.parametrize("kind", CELL_KINDS)
def test_d_final_state_joins_the_last_window_only(kind, T, k1, k2):
    """A gradient on the final state (every part of it) enters the last backward pass with the last
    losses, so it reaches back k2 steps only: as the torch reference with that term on its last loss."""
    reference = _torch_reference()
    cell, params, xs, state0, dhs = make_kind_problem(kind, (T, 2, 2, 3, None), seed=8)
    g = random_state(cell, seeded("truncated g", kind, T, k1, k2), 2)
    _, ref = reference.detach_tbptt_gradients(cell, params, xs, state0, dhs, k1, k2, g_final=g)
    result = truncation.truncated_gradients(cell, params, xs, dhs, k1, k2, state0=state0, d_final_state=g)
    errors = _relative_errors(_as_entries(result), ref)
    assert max(errors.values()) < REL_TOL, errors
    without = truncation.truncated_gradients(cell, params, xs, dhs, k1, k2, state0=state0)
    assert _max_relative_error(without.dxs, result.dxs) > DISTINCT      # the term was not ignored


# ----- tbptt against full BPTT and the chunk loop -------------------------------------------------------------
@pytest.mark.parametrize("kind", CELL_KINDS)
def test_k2_at_least_T_is_full_bptt_for_every_k1(kind):
    """With k2 >= T every window starts at step 1, so every pass is full BPTT of its losses, and their sum
    is full BPTT: for every k1 = 1 .. T + 1 and k2 in {T, T + 3}, to rounding."""
    T = 6
    cell, params, xs, state0, dhs = make_kind_problem(kind, (T, 2, 2, 3, None), seed=9)
    _, full, full_dxs, full_dstate0 = _full_bptt(cell, params, xs, state0, dhs)
    for k1 in range(1, T + 2):
        for k2 in (max(k1, T), T + 3):
            result = truncation.truncated_gradients(cell, params, xs, dhs, k1, k2, state0=state0)
            for key in params:
                assert_allclose(result.grads[key], full[key], **TIGHT, err_msg=f"k1={k1} k2={k2} {key}")
            assert_allclose(result.dxs, full_dxs, **TIGHT)
            for got, want in zip(state_parts(result.dstate0), state_parts(full_dstate0)):
                assert_allclose(got, want, **TIGHT)


def _chunk_loop(cell, params, xs, state0, dhs, chunks, *, fused):
    """The detach idiom: ``bptt.forward`` / ``backward`` on each chunk ``(a, b)`` (steps a+1 .. b) from the
    final state of the previous chunk (a constant; from ``bptt.forward`` over steps 1 .. a if no chunk
    ended at a), with the losses of the steps since the previous chunk's end only; the parameter
    gradients summed."""
    total, previous_end, state_after = None, 0, {0: state0}
    for a, b in chunks:
        if a not in state_after:
            state_after[a] = bptt.forward(cell, params, xs[:a], state0, fused=fused)[1].final_state
        _, cache = bptt.forward(cell, params, xs[a:b], state_after[a], fused=fused)
        chunk_dhs = np.zeros_like(dhs[a:b])
        chunk_dhs[previous_end - a:] = dhs[previous_end:b]
        grads, _, _ = bptt.backward(cell, params, cache, chunk_dhs)
        total = grads if total is None else {key: total[key] + grads[key] for key in grads}
        state_after[b] = cache.final_state
        previous_end = b
    return total


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "step-loop"])
@pytest.mark.parametrize("T, k", [(9, 3), (8, 4), (5, 1)])
@pytest.mark.parametrize("kind", CELL_KINDS)
def test_k1_equal_k2_dividing_T_is_the_chunk_loop(kind, T, k, fused):
    """k1 = k2 = k with k dividing T: consecutive chunks of k steps, each run by ``bptt.forward`` from the
    previous chunk's final state (``detach()``) and back-propagated alone; the sum of their gradients
    (the fused path where the cell has one, and the step loop)."""
    cell, params, xs, state0, dhs = make_kind_problem(kind, (T, 2, 2, 3, None), seed=10)
    expected = _chunk_loop(cell, params, xs, state0, dhs, [(a, a + k) for a in range(0, T, k)], fused=fused)
    got = truncation.tbptt(cell, params, xs, dhs, k, k, state0=state0)
    for key in params:
        assert_allclose(got[key], expected[key], **TIGHT, err_msg=key)


@pytest.mark.parametrize("kind", ["elman-tanh", "lstm"])
def test_k1_equal_k2_not_dividing_T_reaches_back_k2_at_the_end(kind):
    """k1 = k2 = 3, T = 8: the pass at T = 8 carries the losses of steps 7 .. 8 back through the last k2 = 3
    steps 6 .. 8 (from the constant state_5), as the definition says, so it is the chunk loop with the
    last chunk (5, 8) and not the plain loop whose last chunk is (6, 8)."""
    T, k = 8, 3
    cell, params, xs, state0, dhs = make_kind_problem(kind, (T, 2, 2, 3, None), seed=11)
    got = truncation.tbptt(cell, params, xs, dhs, k, k, state0=state0)
    by_definition = _chunk_loop(cell, params, xs, state0, dhs, [(0, 3), (3, 6), (5, 8)], fused=False)
    plain_chunks = _chunk_loop(cell, params, xs, state0, dhs, [(0, 3), (3, 6), (6, 8)], fused=False)
    for key in params:
        assert_allclose(got[key], by_definition[key], **TIGHT, err_msg=key)
    assert max(_relative_errors(got, plain_chunks).values()) > DISTINCT


# ----- the contract: inputs untouched, dtypes ----------------------------------------------------------------
@pytest.mark.parametrize("kind", CELL_KINDS)
def test_inputs_are_not_modified(kind):
    """tbptt, truncated_gradients (with a final-state gradient), randomized_tbptt and choose_k2 leave the
    parameters, inputs, initial state and loss gradients alone."""
    cell, params, xs, state0, dhs = make_kind_problem(kind, (7, 2, 2, 3, None), seed=12)
    g = random_state(cell, seeded("untouched g", kind), 2)
    saved = snapshot(params, xs, state0, dhs, g)
    truncation.tbptt(cell, params, xs, dhs, 2, 3, state0=state0)
    truncation.truncated_gradients(cell, params, xs, dhs, 2, 3, state0=state0, d_final_state=g)
    truncation.randomized_tbptt(cell, params, xs, dhs, rng=0, state0=state0, keep_probability=0.5)
    truncation.choose_k2(cell, params, xs, dhs, tolerance=0.1, state0=state0)
    assert_unchanged(saved, params, xs, state0, dhs, g)


def _as32(state):
    parts = tuple(part.astype(np.float32) for part in state_parts(state))
    return parts if isinstance(state, tuple) else parts[0]


@pytest.mark.parametrize("kind", CELL_KINDS)
def test_float32_in_gives_float32_out(kind):
    """With k2 < T, every array of ``truncated_gradients`` (and of tbptt, randomized_tbptt) is float32 for
    float32 inputs, and equals its float64 twin to float32 precision."""
    cell, params64, xs64, state64, dhs64 = make_kind_problem(kind, (7, 2, 2, 3, None), seed=13)
    params = {key: value.astype(np.float32) for key, value in params64.items()}
    xs, state0, dhs = xs64.astype(np.float32), _as32(state64), dhs64.astype(np.float32)

    def twin(array):
        return np.asarray(array, dtype=np.float64)

    params_twin = {key: twin(value) for key, value in params.items()}
    state_twin = tuple(twin(p) for p in state_parts(state0)) if isinstance(state0, tuple) else twin(state0)
    result = truncation.truncated_gradients(cell, params, xs, dhs, 2, 3, state0=state0)
    expected = truncation.truncated_gradients(cell, params_twin, twin(xs), twin(dhs), 2, 3, state0=state_twin)
    arrays = [result.hs, *state_parts(result.final_state), *result.grads.values(), result.dxs,
              *state_parts(result.dstate0)]
    assert all(array.dtype == np.float32 for array in arrays), [array.dtype for array in arrays]
    for key in params:
        assert_allclose(result.grads[key], expected.grads[key], **FLOAT32, err_msg=key)
    assert_allclose(result.dxs, expected.dxs, **FLOAT32)
    assert all(v.dtype == np.float32 for v in truncation.tbptt(cell, params, xs, dhs, 2, 3, state0=state0).values())
    drawn = truncation.randomized_tbptt(cell, params, xs, dhs, rng=1, state0=state0, keep_probability=0.7)
    drawn_twin = truncation.randomized_tbptt(cell, params_twin, twin(xs), twin(dhs), rng=1, state0=state_twin,
                                             keep_probability=0.7)
    for key in params:
        assert drawn[key].dtype == np.float32
        assert_allclose(drawn[key], drawn_twin[key], **FLOAT32, err_msg=key)


# ----- truncation_weights ------------------------------------------------------------------------------------
def _distances(weights) -> list[int]:
    """d for each edge t = 2 .. T, counted from the definition: edges since the last cut, the first edge
    after a cut (or after the start) has d = 1."""
    distances, since_cut = [], 0
    for weight in weights[1:]:
        since_cut += 1
        distances.append(since_cut)
        if weight == 0:
            since_cut = 0
    return distances


def _p_of(probabilities, d):
    return probabilities[min(d, len(probabilities)) - 1]


@pytest.mark.parametrize("keep_probability", [0.7, [0.9, 0.5, 0.2], [1, 1, 0.4]], ids=["scalar", "by-d", "never-near"])
def test_weights_are_zero_or_the_inverse_keep_probability(keep_probability):
    """weights[0] = 1; every other weight is 0 (a cut) or 1 / p_d for its d counted from the last cut
    (compensate=True), or 1 (compensate=False); the same seed cuts the same edges either way."""
    probabilities = list(np.atleast_1d(keep_probability).astype(float))
    for seed in range(20):
        weights = truncation.truncation_weights(40, rng=seed, keep_probability=keep_probability)
        plain = truncation.truncation_weights(40, rng=seed, keep_probability=keep_probability, compensate=False)
        assert weights.shape == (40,) and weights[0] == 1.0 and plain[0] == 1.0
        for weight, d in zip(weights[1:], _distances(weights)):
            assert weight == 0.0 or weight == 1.0 / _p_of(probabilities, d), (weight, d)
        assert_array_equal(plain == 0.0, weights == 0.0)
        assert set(np.unique(plain)) <= {0.0, 1.0}


def test_keep_probability_one_never_cuts():
    """p_d = 1 for every d (a number or a sequence) keeps every edge with weight 1."""
    for keep_probability in (1, 1.0, [1.0], [1, 1, 1]):
        assert_array_equal(truncation.truncation_weights(30, rng=3, keep_probability=keep_probability), np.ones(30))


@pytest.mark.parametrize("K", [1, 3])
def test_leading_ones_keep_cuts_at_least_K_plus_1_apart(K):
    """keep_probability = [1] * K + [0.3]: the first K edges after a cut (d = 1 .. K) are always kept, so
    the first cut is edge K + 2 or later (the start counts as a cut: edge 2 has d = 1) and two cuts are at
    least K + 1 edges apart; over many draws both bounds are reached (the counting is not off by one)."""
    first_cuts, gaps = [], []
    for seed in range(300):
        weights = truncation.truncation_weights(30, rng=seed, keep_probability=[1.0] * K + [0.3])
        cuts = [t for t in range(2, 31) if weights[t - 1] == 0.0]          # 1-based edges t -> state_{t-1}
        if cuts:
            first_cuts.append(cuts[0])
        gaps += [b - a for a, b in zip(cuts, cuts[1:])]
    assert min(first_cuts) == K + 2
    assert min(gaps) == K + 1


@pytest.mark.parametrize("keep_probability", [0.7, [0.9, 0.5, 0.2]], ids=["scalar", "by-d"])
def test_keep_rates_match_the_probabilities(keep_probability):
    """Over many draws the fraction of kept edges with each d (1, 2, >= 3) is p_d within KEEP_RATE_Z binomial
    standard errors sqrt(p (1 - p) / n); given the past, each edge is one Bernoulli(p_d) draw."""
    probabilities = list(np.atleast_1d(keep_probability).astype(float))
    rng = np.random.default_rng(2024)
    kept = {d: 0 for d in range(1, len(probabilities) + 1)}
    seen = dict(kept)
    for _ in range(300):
        weights = truncation.truncation_weights(60, rng=rng, keep_probability=keep_probability)
        for weight, d in zip(weights[1:], _distances(weights)):
            d = min(d, len(probabilities))
            seen[d] += 1
            kept[d] += weight != 0.0
    for d, n in seen.items():
        p = probabilities[d - 1]
        assert n > 500, (d, n)
        standard_error = math.sqrt(p * (1 - p) / n)
        assert abs(kept[d] / n - p) <= KEEP_RATE_Z * standard_error, (d, kept[d] / n, p, standard_error)


def test_same_seed_same_weights():
    """An int seed and a Generator of that seed give the same draw; another seed a different one; a
    Generator goes on drawing."""
    a = truncation.truncation_weights(50, rng=5, keep_probability=0.6)
    assert_array_equal(a, truncation.truncation_weights(50, rng=5, keep_probability=0.6))
    assert_array_equal(a, truncation.truncation_weights(50, rng=np.random.default_rng(5), keep_probability=0.6))
    assert not np.array_equal(a, truncation.truncation_weights(50, rng=6, keep_probability=0.6))
    rng = np.random.default_rng(5)
    first = truncation.truncation_weights(50, rng=rng, keep_probability=0.6)
    assert not np.array_equal(first, truncation.truncation_weights(50, rng=rng, keep_probability=0.6))


# ----- randomized_tbptt ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", CELL_KINDS)
def test_randomized_with_keep_probability_one_is_full_bptt(kind):
    """p = 1 never cuts and every weight is 1: the draw is full BPTT, with or without compensation."""
    cell, params, xs, state0, dhs = make_kind_problem(kind, (6, 2, 2, 3, None), seed=14)
    _, full, _, _ = _full_bptt(cell, params, xs, state0, dhs)
    for compensate in (True, False):
        got = truncation.randomized_tbptt(cell, params, xs, dhs, rng=0, state0=state0, keep_probability=1.0,
                                          compensate=compensate)
        for key in params:
            assert_allclose(got[key], full[key], **TIGHT, err_msg=key)


def _weighted_edges_reference(cell, params, xs, state0, dhs, weights):
    """torch autograd of L = sum(hs * dhs) where what step t sends back to state_{t-1} is multiplied by
    ``weights[t - 1]`` (a hook on a copy of state_{t-1} that only step t reads); the params' gradients."""
    reference = _torch_reference()
    import torch

    step = reference.step_of(cell)
    p = {key: torch.tensor(value, requires_grad=True) for key, value in params.items()}
    parts = [torch.tensor(part) for part in state_parts(state0)]
    state = tuple(parts) if len(parts) > 1 else parts[0]
    loss = torch.zeros((), dtype=torch.float64)
    for t in range(xs.shape[0]):
        copies = [part.clone() for part in state_parts(state)]
        for copy in copies:
            if copy.requires_grad:
                copy.register_hook(lambda grad, w=float(weights[t]): grad * w)
        h, state = step(p, torch.from_numpy(xs[t]), tuple(copies) if len(copies) > 1 else copies[0])
        loss = loss + (h * torch.from_numpy(dhs[t])).sum()
    loss.backward()
    return {key: value.grad.numpy() for key, value in p.items()}


@pytest.mark.parametrize("kind", CELL_KINDS)
def test_one_randomized_draw_weights_every_edge(kind):
    """One draw is BPTT with the adjoint that crosses edge t multiplied by ``truncation_weights``' weight
    for it (the same seed gives the same weights): torch autograd with those factors on the edges. The
    draw cuts somewhere and keeps somewhere, and differs from full BPTT."""
    cell, params, xs, state0, dhs = make_kind_problem(kind, (9, 2, 2, 3, None), seed=15)
    _, full, _, _ = _full_bptt(cell, params, xs, state0, dhs)
    for seed, keep_probability, compensate in [(3, 0.6, True), (4, [1, 0.5], True), (3, 0.6, False)]:
        weights = truncation.truncation_weights(9, rng=seed, keep_probability=keep_probability, compensate=compensate)
        assert np.any(weights == 0) and np.any(weights[1:] > 0), weights
        got = truncation.randomized_tbptt(cell, params, xs, dhs, rng=seed, state0=state0,
                                          keep_probability=keep_probability, compensate=compensate)
        expected = _weighted_edges_reference(cell, params, xs, state0, dhs, weights)
        errors = _relative_errors(got, expected)
        assert max(errors.values()) < REL_TOL, (seed, errors)
        assert max(_relative_errors(got, full).values()) > DISTINCT


def _z_scores(cell, params, xs, state0, dhs, *, draws, keep_probability, compensate, directions, seed):
    """(mean draw - full gradient) / standard error, along ``directions`` fixed random unit vectors in the
    space of all parameters; the draws come from one seeded generator."""
    keys = list(params)
    _, full, _, _ = _full_bptt(cell, params, xs, state0, dhs)
    rng = seeded("unbiased", seed)
    U = rng.normal(size=(sum(value.size for value in params.values()), directions))
    U /= np.linalg.norm(U, axis=0)
    projections = np.array([
        _flat(truncation.randomized_tbptt(cell, params, xs, dhs, rng=rng, state0=state0,
                                          keep_probability=keep_probability, compensate=compensate), keys) @ U
        for _ in range(draws)])
    standard_error = projections.std(axis=0, ddof=1) / math.sqrt(draws)
    assert np.all(standard_error > 0), "no randomness: every draw was the same"
    return (projections.mean(axis=0) - _flat(full, keys) @ U) / standard_error


def _z_threshold(comparisons: int) -> float:
    """Two-sided normal quantile with a Bonferroni split of FAMILY_FALSE_ALARM over the comparisons."""
    return NormalDist().inv_cdf(1 - FAMILY_FALSE_ALARM / (2 * comparisons))


UNBIASED_CASES = [("elman-tanh", 0.7, 4000), ("elman-tanh", [1, 1, 0.7], 4000), ("lstm", 0.7, 1500),
                  ("lstm", [1, 1, 0.7], 1500)]


@pytest.mark.parametrize("kind, keep_probability, draws", UNBIASED_CASES,
                         ids=[f"{k}-p{p}" for k, p, _ in UNBIASED_CASES])
def test_randomized_estimate_is_unbiased(kind, keep_probability, draws):
    """The mean of many draws (compensate=True) along 4 fixed random directions is the full BPTT gradient
    within z standard errors, z from a family-wise false-alarm rate of 1e-3 over the 4 comparisons (the
    draws are seeded: the test is deterministic, and the margin is the sampling error, not a constant)."""
    cell, params, xs, state0, dhs = make_kind_problem(kind, (8, 2, 2, 3, None), seed=16)
    z = _z_scores(cell, params, xs, state0, dhs, draws=draws, keep_probability=keep_probability,
                  compensate=True, directions=4, seed=kind)
    assert np.max(np.abs(z)) <= _z_threshold(4), z


def test_plain_random_truncation_is_biased_and_the_statistic_sees_it():
    """The same statistic rejects compensate=False (every surviving path keeps weight 1, so a path over n
    edges is scaled by its survival probability p^n on average) on a network whose adjoint decays slowly
    (linear Elman, W_hh = 0.95 times an orthogonal matrix), with the loss on the last step and p = 0.5."""
    cell = Elman(2, 3, nonlinearity="linear")
    rng = seeded("biased")
    T, B = 10, 2
    params = {"W_xh": rng.normal(size=(3, 2)), "W_hh": 0.95 * _orthogonal(rng, 3), "b_h": rng.normal(size=3)}
    xs, state0 = rng.normal(size=(T, B, 2)), rng.normal(size=(B, 3))
    dhs = np.zeros((T, B, 3))
    dhs[-1] = rng.normal(size=(B, 3))
    z = _z_scores(cell, params, xs, state0, dhs, draws=400, keep_probability=0.5, compensate=False,
                  directions=4, seed="biased")
    assert np.max(np.abs(z)) > _z_threshold(4), z


# ----- choose_k2 and adaptive_tbptt ------------------------------------------------------------------------
def _scaled_orthogonal_elman(scale, *, T=20, B=3, H=4, nonlinearity="linear", seed="scaled"):
    """An Elman network with W_hh = scale * Q (Q orthogonal), and a problem with a loss at every step."""
    rng = seeded(seed, str(scale), nonlinearity)
    cell = Elman(2, H, nonlinearity=nonlinearity)
    params = {"W_xh": rng.normal(size=(H, 2)), "W_hh": scale * _orthogonal(rng, H), "b_h": 0.1 * rng.normal(size=H)}
    return cell, params, rng.normal(size=(T, B, 2)), rng.normal(size=(B, H)), rng.normal(size=(T, B, H))


def _adjoint_norms(cell, params, xs, state0, dhs):
    """phi_k = mean over the batch of ||dL_T / d(state_{T-k})|| (all parts of the state joined), k = 0 .. T-1,
    for L_T = sum(h_T * dhs[T - 1]), from ``bptt.state_adjoints``."""
    T = xs.shape[0]
    last = np.zeros_like(dhs)
    last[-1] = dhs[-1]
    _, cache = bptt.forward(cell, params, xs, state0, fused=False)
    parts = state_parts(bptt.state_adjoints(cell, params, cache, last))
    return np.array([np.mean([np.linalg.norm(np.concatenate([part[T - k, b] for part in parts]))
                              for b in range(xs.shape[1])]) for k in range(T)])


def _predicted_bias(norms, burn_in):
    """rho(K), K = 1 .. T, as choose_k2's docstring defines it: beta from the least-squares slope of
    log phi_k on k over k = burn_in .. T - 1 (closed form), tail(K) = sum of the measured phi_k for
    K <= k < burn_in + phi_burn_in * beta^(max(K, burn_in) - burn_in) / (1 - beta), and
    rho(K) = tail(K) / (sum_{k < K} phi_k + tail(K))."""
    T = len(norms)
    lags = np.arange(burn_in, T, dtype=float)
    logs = np.log(norms[burn_in:])
    slope = np.sum((lags - lags.mean()) * (logs - logs.mean())) / np.sum((lags - lags.mean()) ** 2)
    beta = math.exp(slope)
    rho = []
    for K in range(1, T + 1):
        geometric = norms[burn_in] * beta ** (max(K, burn_in) - burn_in) / (1 - beta)
        tail = sum(norms[k] for k in range(K, burn_in)) + geometric
        rho.append(tail / (sum(norms[:K]) + tail))
    return beta, np.array(rho)


@pytest.mark.parametrize("tolerance", [0.65, 0.1, 1e-3])
def test_choose_k2_on_an_exactly_geometric_adjoint(tolerance):
    """Linear Elman with W_hh = 0.6 Q (Q orthogonal): ||dL_T/dh_{T-k}|| = 0.6^k ||dhs[T - 1]|| exactly, so the
    fitted decay is 0.6, the predicted relative bias of a window of K steps is
    0.6^K / (1 - 0.6) / (1 / (1 - 0.6)) = 0.6^K, and the choice is the smallest K with 0.6^K <= tolerance."""
    beta = 0.6
    cell, params, xs, state0, dhs = _scaled_orthogonal_elman(beta)
    T = xs.shape[0]
    choice = truncation.choose_k2(cell, params, xs, dhs, tolerance=tolerance, state0=state0)
    K = np.arange(1, T + 1)
    assert_allclose(choice.adjoint_norms, beta ** np.arange(T) * np.mean(np.linalg.norm(dhs[-1], axis=1)), **TIGHT)
    assert_allclose(choice.decay, beta, **TIGHT)
    assert_allclose(choice.predicted_bias, beta ** K, **TIGHT)
    assert choice.k2 == math.ceil(math.log(tolerance) / math.log(beta))


@pytest.mark.parametrize("burn_in", [1, 3])
def test_choose_k2_on_a_contractive_tanh_network(burn_in):
    """tanh Elman with ||W_hh|| = 0.5: the adjoint norms are those of ``bptt.state_adjoints``; the decay
    is below 1 and is exp of the least-squares slope; the predicted bias follows the docstring's formula;
    k2 is the smallest window whose predicted bias is within the tolerance, and is shorter than T."""
    tolerance = 1e-3
    cell, params, xs, state0, dhs = _scaled_orthogonal_elman(0.5, nonlinearity="tanh", seed="contractive")
    T = xs.shape[0]
    choice = truncation.choose_k2(cell, params, xs, dhs, tolerance=tolerance, state0=state0, burn_in=burn_in)
    norms = _adjoint_norms(cell, params, xs, state0, dhs)
    assert_allclose(choice.adjoint_norms, norms, **TIGHT)
    beta, rho = _predicted_bias(norms, burn_in)
    assert choice.decay < 1
    assert_allclose(choice.decay, beta, rtol=REL_TOL)
    assert choice.predicted_bias[choice.k2 - 1] <= tolerance
    assert choice.k2 == 1 or choice.predicted_bias[choice.k2 - 2] > tolerance
    assert choice.k2 < T
    assert_allclose(choice.predicted_bias, rho, rtol=REL_TOL)


def test_the_bias_of_the_chosen_window_is_the_adjoint_mass_it_leaves_out():
    """For the loss at step T alone, tbptt(k1 = 1, k2 = K) keeps the contributions of states T-K+1 .. T and
    drops the rest, so its bias is at most the dropped adjoint norms times the local Jacobians' norms:
    ||bias|| <= sum over b and k >= K of ||dL_T/dh_{T-k}|| * sqrt(|x_{T-k}|^2 + |h_{T-k-1}|^2 + 1)
    (tanh' <= 1). At the window choose_k2 picks, the measured bias is within that bound and is not zero."""
    cell, params, xs, state0, dhs = _scaled_orthogonal_elman(0.5, nonlinearity="tanh", seed="contractive")
    T, B = xs.shape[:2]
    last = np.zeros_like(dhs)
    last[-1] = dhs[-1]
    choice = truncation.choose_k2(cell, params, xs, dhs, tolerance=1e-3, state0=state0)
    K = choice.k2
    keys = list(params)
    _, full, _, _ = _full_bptt(cell, params, xs, state0, last)
    truncated = truncation.tbptt(cell, params, xs, last, 1, K, state0=state0)
    bias = np.linalg.norm(_flat(truncated, keys) - _flat(full, keys))
    hs, cache = bptt.forward(cell, params, xs, state0, fused=False)
    adjoints = bptt.state_adjoints(cell, params, cache, last)            # (T + 1, B, H), entry t: state_t
    h_prev = np.concatenate([state0[None], hs[:-1]])
    local = np.sqrt(np.sum(xs ** 2, axis=2) + np.sum(h_prev ** 2, axis=2) + 1)           # (T, B), step t at t - 1
    bound = sum(np.linalg.norm(adjoints[T - k, b]) * local[T - k - 1, b] for k in range(K, T) for b in range(B))
    assert 0 < bias <= bound, (bias, bound)


def test_choose_k2_on_an_expansive_linear_network():
    """Linear Elman with W_hh = 1.3 Q: the adjoint grows by 1.3 a step back, the decay is 1.3 (>= 1), and no
    window is short enough: k2 = T for any tolerance."""
    cell, params, xs, state0, dhs = _scaled_orthogonal_elman(1.3)
    T = xs.shape[0]
    for tolerance in (0.9, 1e-6):
        choice = truncation.choose_k2(cell, params, xs, dhs, tolerance=tolerance, state0=state0)
        assert_allclose(choice.decay, 1.3, **TIGHT)
        assert choice.k2 == T


@pytest.mark.parametrize("kind", CELL_KINDS)
def test_adjoint_norms_are_those_of_state_adjoints(kind):
    """phi_k for every cell (the LSTM's two parts joined), and only dhs[T - 1] matters: changing the other
    steps' loss gradients changes nothing."""
    cell, params, xs, state0, dhs = make_kind_problem(kind, (6, 2, 2, 3, None), seed=17)
    choice = truncation.choose_k2(cell, params, xs, dhs, tolerance=0.5, state0=state0)
    assert_allclose(choice.adjoint_norms, _adjoint_norms(cell, params, xs, state0, dhs), **TIGHT)
    other = dhs.copy()
    other[:-1] = seeded("other dhs", kind).normal(size=other[:-1].shape)
    again = truncation.choose_k2(cell, params, xs, other, tolerance=0.5, state0=state0)
    assert again.k2 == choice.k2 and again.decay == choice.decay
    assert_array_equal(again.adjoint_norms, choice.adjoint_norms)


@pytest.mark.parametrize("k1", [1, 3, 12])
def test_adaptive_tbptt_is_tbptt_at_the_chosen_window(k1):
    """adaptive_tbptt = (tbptt(k1, max(k1, choice.k2)), choice), the choice that of choose_k2."""
    cell, params, xs, state0, dhs = _scaled_orthogonal_elman(0.5, nonlinearity="tanh", seed="contractive")
    grads, choice = truncation.adaptive_tbptt(cell, params, xs, dhs, k1, tolerance=1e-2, state0=state0)
    expected_choice = truncation.choose_k2(cell, params, xs, dhs, tolerance=1e-2, state0=state0)
    assert choice.k2 == expected_choice.k2 and choice.decay == expected_choice.decay
    assert 1 < choice.k2 < 12                     # so k1 = 12 lengthens the window and k1 = 1 keeps the choice
    expected = truncation.tbptt(cell, params, xs, dhs, k1, max(k1, choice.k2), state0=state0)
    for key in params:
        assert_array_equal(grads[key], expected[key], err_msg=key)


# ----- online_tbptt ------------------------------------------------------------------------------------------
class RecordingOptimizer:
    """Records a copy of every gradient it is given and leaves the parameters alone."""

    def __init__(self):
        self.grads: list[dict] = []

    def step(self, params, grads):
        self.grads.append({key: np.array(value, copy=True) for key, value in grads.items()})


def _stream(cell, T, B, *, loss, readout, seed):
    rng = seeded("stream", repr(cell), T, B, loss, seed)
    params = init_model(cell, 2, rng) if readout else cell.init_params(rng)
    xs = rng.normal(size=(T, B, cell.n_in))
    targets = rng.integers(0, 2, size=(T, B)) if loss == "cross_entropy" else rng.normal(size=(T, B, 2))
    return params, xs, targets


ONLINE_MODELS = [(Elman(2, 3), "mse", True), (LSTM(2, 3), "cross_entropy", True), (Jordan(2, 3, n_out=2), "mse", False)]
ONLINE_IDS = ["elman-mse", "lstm-cross-entropy", "jordan-no-readout"]


@pytest.mark.parametrize("clip", [None, 0.5], ids=["no-clip", "clip"])
@pytest.mark.parametrize("cell, loss, readout", ONLINE_MODELS, ids=ONLINE_IDS)
def test_online_with_k1_equal_k2_is_train_with_carried_state(cell, loss, readout, clip):
    """k1 = k2 = 3 over T = 12: exactly ``companion.train.train`` on the consecutive windows of 3 steps
    with ``carry_state=True`` (loss_and_grads = sequence_loss_and_grads with return_final_state), SGD:
    the same losses, gradient norms and final parameters, bit for bit."""
    T, B, k = 12, 2, 3
    params, xs, targets = _stream(cell, T, B, loss=loss, readout=readout, seed=1)
    by_train = {key: value.copy() for key, value in params.items()}
    history = truncation.online_tbptt(cell, params, xs, targets, k, k, SGD(0.1), loss=loss, readout=readout, clip=clip)
    loss_and_grads = functools.partial(sequence_loss_and_grads, cell, loss=loss, readout=readout,
                                       return_final_state=True)
    windows = [(xs[a:a + k], targets[a:a + k]) for a in range(0, T, k)]
    expected = train(lambda p, batch, state0: loss_and_grads(p, *batch, state0=state0), by_train, SGD(0.1),
                     windows, steps=len(windows), clip=clip, carry_state=True, progress=False)
    assert history.losses == expected.losses
    assert history.grad_norms == expected.grad_norms
    for key in params:
        assert_array_equal(params[key], by_train[key], err_msg=key)
    assert history.steps == T // k


def _online_by_hand(cell, params, xs, targets, k1, k2, lr, *, loss, readout, state0=None):
    """BPTT(k2; k1) training written out: at every multiple of k1 (and at T) re-run the last k2 steps with
    the current parameters from the most recently computed state before them (a constant), take the mean
    loss of the steps since the previous update through the readout, back-propagate it with ``bptt`` over
    the window, step SGD by hand. Returns the losses and the gradients; updates ``params`` in place."""
    loss_fn = {"mse": mse, "cross_entropy": softmax_cross_entropy}[loss]
    T = xs.shape[0]
    latest = {0: cell.initial_state(xs.shape[1]) if state0 is None else state0}  # state after step t
    losses, all_grads, previous_end = [], [], 0
    for end in [t for t in range(1, T + 1) if t % k1 == 0 or t == T]:
        start = max(1, end - k2 + 1)
        cell_params = {key: params[key] for key in cell.param_shapes()}
        states = _states(cell, cell_params, xs[start - 1:end], latest[start - 1])
        for offset, state in enumerate(states[1:], start=start):
            latest[offset] = state
        hs, cache = bptt.forward(cell, cell_params, xs[start - 1:end], latest[start - 1], fused=False)
        new = hs[previous_end + 1 - start:]
        if readout:
            readout_params = {"W_hy": params["W_hy"], "b_y": params["b_y"]}
            value, dys = loss_fn(readout_forward(readout_params, new), targets[previous_end:end])
            grads, d_new = readout_backward(readout_params, new, dys)
        else:
            (value, d_new), grads = loss_fn(new, targets[previous_end:end]), {}
        window_dhs = np.zeros_like(hs)
        window_dhs[previous_end + 1 - start:] = d_new
        grads.update(bptt.backward(cell, cell_params, cache, window_dhs)[0])
        losses.append(value)
        all_grads.append(grads)
        for key in params:
            params[key] -= lr * grads[key]
        previous_end = end
    return losses, all_grads


@pytest.mark.parametrize("cell, loss, readout", ONLINE_MODELS, ids=ONLINE_IDS)
def test_online_updates_have_each_windows_gradient(cell, loss, readout):
    """k1 = 2 < k2 = 5 over T = 9, with an optimizer that records the gradients and does not move the
    parameters: update j's gradient (every key, readout included) is the gradient of the mean loss of the
    steps it is new for, through the last k2 steps, from one forward pass over the stream; the losses are
    those means; the updates' cell gradients add up to tbptt's with the mean losses' dhs."""
    T, B, k1, k2 = 9, 2, 2, 5
    params, xs, targets = _stream(cell, T, B, loss=loss, readout=readout, seed=2)
    state0 = random_state(cell, seeded("online state0", repr(cell)), B)
    saved = {key: value.copy() for key, value in params.items()}
    recorder = RecordingOptimizer()
    history = truncation.online_tbptt(cell, params, xs, targets, k1, k2, recorder, loss=loss, readout=readout,
                                      state0=state0)
    for key in params:
        assert_array_equal(params[key], saved[key], err_msg=key)
    losses, expected = _online_by_hand(cell, dict(saved), xs, targets, k1, k2, 0.0, loss=loss, readout=readout,
                                       state0=state0)
    assert len(recorder.grads) == history.steps == len(expected) == math.ceil(T / k1)
    assert_allclose(history.losses, losses, **TIGHT)
    for j, (got, want) in enumerate(zip(recorder.grads, expected)):
        assert list(got) == list(params)
        errors = _relative_errors(got, want)
        assert max(errors.values()) < REL_TOL, (j, errors)
    assert_allclose(history.grad_norms, [np.linalg.norm(_flat(g, list(params))) for g in expected], **TIGHT)
    # with fixed parameters, the updates' cell gradients are tbptt's for the stacked dhs of the mean losses
    cell_params = {key: params[key] for key in cell.param_shapes()}
    hs, _ = bptt.forward(cell, cell_params, xs, state0)
    dhs = np.zeros_like(hs)
    loss_fn = {"mse": mse, "cross_entropy": softmax_cross_entropy}[loss]
    for start, first, end in _windows_by_definition(T, k1, k2):
        if readout:
            readout_params = {"W_hy": params["W_hy"], "b_y": params["b_y"]}
            _, dys = loss_fn(readout_forward(readout_params, hs[first - 1:end]), targets[first - 1:end])
            dhs[first - 1:end] = readout_backward(readout_params, hs[first - 1:end], dys)[1]
        else:
            dhs[first - 1:end] = loss_fn(hs[first - 1:end], targets[first - 1:end])[1]
    total = truncation.tbptt(cell, cell_params, xs, dhs, k1, k2, state0=state0)
    for key in cell_params:
        assert_allclose(sum(g[key] for g in recorder.grads), total[key], **TIGHT, err_msg=key)


@pytest.mark.parametrize("cell, loss, readout", ONLINE_MODELS[:2], ids=ONLINE_IDS[:2])
def test_online_with_k1_below_k2_trains_like_the_loop_by_hand(cell, loss, readout):
    """k1 = 2 < k2 = 5 over T = 9 with SGD: each window re-runs its steps with the current parameters from
    the most recent state before it; the same losses and final parameters as the loop written out."""
    T, B, k1, k2 = 9, 2, 2, 5
    params, xs, targets = _stream(cell, T, B, loss=loss, readout=readout, seed=3)
    initial = {key: value.copy() for key, value in params.items()}
    by_hand = {key: value.copy() for key, value in params.items()}
    history = truncation.online_tbptt(cell, params, xs, targets, k1, k2, SGD(0.5), loss=loss, readout=readout)
    losses, _ = _online_by_hand(cell, by_hand, xs, targets, k1, k2, 0.5, loss=loss, readout=readout)
    assert_allclose(history.losses, losses, **TIGHT)
    for key in params:
        assert_allclose(params[key], by_hand[key], **TIGHT, err_msg=key)
    assert max(_relative_errors(params, initial).values()) > DISTINCT        # the parameters really moved


@pytest.mark.parametrize("T, k1, k2", [(10, 3, 3), (10, 3, 4), (7, 2, 7), (5, 7, 7), (1, 1, 2)])
def test_online_takes_one_update_per_backward_pass(T, k1, k2):
    """ceil(T / k1) updates, also when k1 does not divide T (the last pass at T) or exceeds it."""
    cell = Elman(2, 3)
    params, xs, targets = _stream(cell, T, 2, loss="mse", readout=True, seed=4)
    recorder = RecordingOptimizer()
    history = truncation.online_tbptt(cell, params, xs, targets, k1, k2, recorder)
    assert history.steps == len(recorder.grads) == len(history.grad_norms) == math.ceil(T / k1)


def test_online_does_not_modify_the_stream():
    cell = LSTM(2, 3)
    params, xs, targets = _stream(cell, 7, 2, loss="mse", readout=True, seed=5)
    state0 = random_state(cell, seeded("online untouched"), 2)
    saved = xs.copy(), targets.copy(), [part.copy() for part in state0]
    truncation.online_tbptt(cell, params, xs, targets, 2, 3, SGD(0.1), state0=state0)
    assert_array_equal(xs, saved[0])
    assert_array_equal(targets, saved[1])
    for part, copy in zip(state0, saved[2], strict=True):
        assert_array_equal(part, copy)


# ----- bptt.backward's carry: a weight on every recurrent edge --------------------------------------------------
@pytest.mark.parametrize("fused", [True, False], ids=["fused", "step-loop"])
@pytest.mark.parametrize("kind", CELL_KINDS)
def test_carry_of_ones_is_plain_backward_and_a_zero_splits_the_sequence(kind, fused):
    """``bptt.backward(..., carry=ones)`` is the plain backward pass (from a fused cache too); a zero at
    edge k + 1 makes it the sum of two independent backward passes over steps 1..k and k+1..T, the second
    starting from the carried state: nothing crosses the cut."""
    cell, params, xs, state0, dhs = make_kind_problem(kind, (7, 2, 2, 3, None), seed=21)
    _, cache = bptt.forward(cell, params, xs, state0, fused=fused)
    plain = bptt.backward(cell, params, cache, dhs)
    ones = bptt.backward(cell, params, cache, dhs, carry=np.ones(7))
    for key in plain[0]:
        assert_allclose(ones[0][key], plain[0][key], **TIGHT, err_msg=key)
    assert_allclose(ones[1], plain[1], **TIGHT)
    k = 3
    cut = np.ones(7)
    cut[k] = 0.0                                           # edge state_k -> step k + 1
    grads, dxs, _ = bptt.backward(cell, params, cache, dhs, carry=cut)
    _, head = bptt.forward(cell, params, xs[:k], state0)
    _, tail = bptt.forward(cell, params, xs[k:], head.final_state)
    head_grads, head_dxs, _ = bptt.backward(cell, params, head, dhs[:k])
    tail_grads, tail_dxs, _ = bptt.backward(cell, params, tail, dhs[k:])
    for key in grads:
        assert_allclose(grads[key], head_grads[key] + tail_grads[key], **TIGHT, err_msg=key)
    assert_allclose(dxs, np.concatenate([head_dxs, tail_dxs]), **TIGHT)


# ----- bad input ---------------------------------------------------------------------------------------------
def _bad_input_cases():
    cell = Elman(2, 3)
    rng = seeded("bad input")
    params = cell.init_params(rng)
    T, B, H = 5, 2, 3
    xs, dhs = rng.normal(size=(T, B, 2)), rng.normal(size=(T, B, H))
    model = init_model(cell, 2, rng)
    targets = rng.normal(size=(T, B, 2))

    def tbptt(**kw):
        args = dict(xs=xs, dhs=dhs, k1=2, k2=3) | kw
        return lambda: truncation.tbptt(cell, params, args["xs"], args["dhs"], args["k1"], args["k2"])

    def weights(**kw):
        return lambda: truncation.truncation_weights(**(dict(T=T, rng=0) | kw))

    def randomized(**kw):
        return lambda: truncation.randomized_tbptt(cell, params, xs, dhs, rng=0, **kw)

    def choose(**kw):
        args = dict(tolerance=0.1) | kw
        return lambda: truncation.choose_k2(cell, params, xs, dhs, **args)

    def online(**kw):
        args = dict(targets=targets, optimizer=SGD(0.1), k1=2, k2=3) | kw
        return lambda: truncation.online_tbptt(cell, model, xs, args["targets"], args["k1"], args["k2"],
                                               args["optimizer"])

    return [
        ("k1=0", tbptt(k1=0), "k1 must be a positive integer"),
        ("k1=-1", tbptt(k1=-1), "k1 must be a positive integer"),
        ("k1=2.0", tbptt(k1=2.0), "k1 must be a positive integer"),
        ("k1=True", tbptt(k1=True), "k1 must be a positive integer"),
        ("k2=0", tbptt(k2=0), "k2 must be a positive integer"),
        ("k2<k1", tbptt(k1=3, k2=2), "k2 must be at least k1"),
        ("backward_points-k2<k1", lambda: truncation.backward_points(5, 3, 2), "k2 must be at least k1"),
        ("backward_points-T=0", lambda: truncation.backward_points(0, 1, 1), "T must be a positive integer"),
        ("dhs-wide", tbptt(dhs=np.zeros((T, B, H + 1))), "dhs must have shape"),
        ("dhs-batch-major", tbptt(dhs=np.zeros((B, T, H))), "dhs must have shape"),
        ("dhs-2d", tbptt(dhs=np.zeros((T, H))), "dhs must have shape"),
        ("xs-width", tbptt(xs=np.zeros((T, B, 3))), "xs must have shape"),
        ("truncated_gradients-d_final_state",
         lambda: truncation.truncated_gradients(cell, params, xs, dhs, 2, 3, d_final_state=np.zeros((B + 1, H))),
         "d_final_state"),
        ("keep=0", weights(keep_probability=0), "keep_probability must lie in"),
        ("keep=1.5", weights(keep_probability=1.5), "keep_probability must lie in"),
        ("keep=-0.1", weights(keep_probability=-0.1), "keep_probability must lie in"),
        ("keep=[]", weights(keep_probability=[]), "keep_probability must be a number or a non-empty"),
        ("keep='a'", weights(keep_probability="a"), "keep_probability must hold numbers"),
        ("keep=[0.5,0]", weights(keep_probability=[0.5, 0]), "keep_probability must lie in"),
        ("keep=True", weights(keep_probability=True), "keep_probability must hold numbers"),
        ("keep=2d", weights(keep_probability=[[0.5]]), "keep_probability must be a number or a non-empty"),
        ("weights-T=0", weights(T=0), "T must be a positive integer"),
        ("weights-T=2.5", weights(T=2.5), "T must be a positive integer"),
        ("weights-rng", weights(rng="seed"), "rng must be a numpy Generator"),
        ("randomized-keep=0", randomized(keep_probability=0), "keep_probability must lie in"),
        ("randomized-dhs", lambda: truncation.randomized_tbptt(cell, params, xs, dhs[:-1], rng=0),
         "dhs must have shape"),
        ("tolerance=0", choose(tolerance=0), "tolerance must be a finite positive number"),
        ("tolerance=1", choose(tolerance=1), r"tolerance must lie in \(0, 1\)"),
        ("tolerance=-1", choose(tolerance=-1), "tolerance must be a finite positive number"),
        ("burn_in=T-1", choose(burn_in=T - 1), "burn_in must be at most T - 2"),
        ("burn_in=0", choose(burn_in=0), "burn_in must be a positive integer"),
        ("adaptive-k1=0", lambda: truncation.adaptive_tbptt(cell, params, xs, dhs, 0, tolerance=0.1),
         "k1 must be a positive integer"),
        ("online-targets-T", online(targets=targets[:-1]), "targets must start with"),
        ("online-targets-batch-major", online(targets=np.zeros((B, T, 2))), "targets must start with"),
        ("online-optimizer", online(optimizer=0.1), "optimizer must have a step"),
        ("online-k2<k1", online(k1=3, k2=2), "k2 must be at least k1"),
        ("online-loss", lambda: truncation.online_tbptt(cell, model, xs, targets, 2, 3, SGD(0.1), loss="hinge"),
         "loss must be one of"),
        ("online-clip", lambda: truncation.online_tbptt(cell, model, xs, targets, 2, 3, SGD(0.1), clip=0),
         "clip must be a finite positive number"),
        ("backward-carry-length", lambda: bptt.backward(cell, params, bptt.forward(cell, params, xs)[1], dhs,
                                                        carry=np.ones(T - 1)), r"carry must have shape \(T,\)"),
        ("backward-carry-nan", lambda: bptt.backward(cell, params, bptt.forward(cell, params, xs)[1], dhs,
                                                     carry=np.full(T, np.nan)), "carry contains"),
    ]


BAD_INPUT = _bad_input_cases()


@pytest.mark.parametrize("call, message", [case[1:] for case in BAD_INPUT], ids=[case[0] for case in BAD_INPUT])
def test_bad_input_is_a_value_error_naming_the_argument(call, message):
    """Each bad argument is refused at the boundary with a ValueError whose message names it."""
    with pytest.raises(ValueError, match=message):
        call()
