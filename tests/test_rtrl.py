"""Real-time recurrent learning (``companion.rtrl``): the sensitivities carried forward give full BPTT's
gradients for every cell, the identity directions are views and not a dense P x P matrix, the online loop
equals a dense hand-written RTRL loop and, with the parameters held, ``online_tbptt`` with windows that
reach the start; dtypes and the refusals.

RTRL is also a row of the table of gradient methods (gradient_methods.py, entry "rtrl"), which checks it
against the step loop on the shared shapes with every contract of the table; this file uses other shapes.
The one-step Jacobians it is built from are checked against finite differences in test_forward_mode.py.
"""
from __future__ import annotations

import math
import tracemalloc

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from companion import bptt, rtrl, truncation
from companion.cells import Elman
from companion.model import init_model, sequence_loss_and_grads
from companion.optim import SGD

from helpers import (
    CELL_KINDS, TIGHT, assert_unchanged, make_kind_problem, random_state, seeded, shape_id, snapshot, state_parts,
)

FLOAT32 = dict(rtol=1e-5, atol=1e-6)   # a float32 computation against its float64 twin (as test_gradient_methods)

# (T, B, n_in, H, n_out): shapes the table does not use (n_in > H, B = 4, T = 9, a wide and a narrow Jordan readout)
RTRL_SHAPES = {kind: ([(5, 2, 3, 2, 4), (3, 3, 1, 4, 2)] if kind == "jordan"
                      else [(6, 3, 5, 2, None), (9, 1, 2, 3, None), (2, 4, 1, 5, None)]) for kind in CELL_KINDS}
RTRL_CASES = [pytest.param(kind, shape, id=shape_id(kind, shape)) for kind in CELL_KINDS for shape in RTRL_SHAPES[kind]]


def _full_bptt(cell, params, xs, state0, dhs, d_final_state=None):
    """The step loop: ``(hs, final_state, grads, dstate0)``."""
    hs, cache = bptt.forward(cell, params, xs, state0, fused=False)
    grads, _, dstate0 = bptt.backward(cell, params, cache, dhs, d_final_state=d_final_state)
    return hs, cache.final_state, grads, dstate0


class Recorder:
    """An optimizer that keeps every gradient it is handed and leaves the parameters alone."""

    def __init__(self):
        self.grads = []

    def step(self, params, grads):
        self.grads.append({key: np.array(value) for key, value in grads.items()})


def _model(kind, shape, seed):
    """A cell, its model parameters (with a readout unless it is the Jordan or the NARX network), a stream
    and targets."""
    cell, _, xs, state0, _ = make_kind_problem(kind, shape, seed=seed)
    readout = kind not in ("jordan", "narx")     # the Jordan and NARX networks' output is their prediction
    if readout:
        params = init_model(cell, 2, seeded("model", kind, seed))
        targets = seeded("targets", kind, seed).normal(size=xs.shape[:2] + (2,))
    else:
        params = cell.init_params(seeded("model", kind, seed))
        targets = seeded("targets", kind, seed).uniform(-0.5, 0.5, size=xs.shape[:2] + (cell.output_width,))
    return cell, params, xs, state0, targets, readout


# ----- rtrl against full BPTT -------------------------------------------------------------------------------
@pytest.mark.parametrize("zero_state", [False, True], ids=["state0", "zero-state0"])
@pytest.mark.parametrize("kind, shape", RTRL_CASES)
def test_rtrl_is_full_bptt(kind, shape, zero_state):
    """The outputs and the final state are the step loop's bit for bit (the same steps run), the gradients
    of the parameters and of the initial state agree to rounding, for a loss on every step and on the first
    step only, with and without a gradient on every part of the final state."""
    cell, params, xs, state0, dhs = make_kind_problem(kind, shape, zero_state=zero_state, seed=3)
    g = random_state(cell, seeded("rtrl g", kind, *shape[:4]), xs.shape[1])
    first_only = np.zeros_like(dhs)
    first_only[0] = dhs[0]
    for loss_dhs in (dhs, first_only):
        for d_final_state in (None, g):
            hs, final_state, grads, dstate0 = _full_bptt(cell, params, xs, state0, loss_dhs, d_final_state)
            result = rtrl.rtrl(cell, params, xs, loss_dhs, state0=state0, d_final_state=d_final_state)
            assert_array_equal(result.hs, hs)
            for got, want in zip(state_parts(result.final_state), state_parts(final_state), strict=True):
                assert_array_equal(got, want)
            assert list(result.grads) == list(grads)
            for key in grads:
                assert_allclose(result.grads[key], grads[key], **TIGHT, err_msg=key)
            assert isinstance(result.dstate0, tuple) == isinstance(dstate0, tuple)
            for got, want in zip(state_parts(result.dstate0), state_parts(dstate0), strict=True):
                assert_allclose(got, want, **TIGHT)


@pytest.mark.parametrize("kind", ["elman-tanh", "lstm", "gru-cho"])
def test_a_gradient_on_the_final_state_alone(kind):
    """With ``dhs`` zero the whole gradient comes from ``d_final_state`` and the last sensitivities."""
    cell, params, xs, state0, dhs = make_kind_problem(kind, (4, 2, 2, 3, None), seed=4)
    g = random_state(cell, seeded("final only", kind), 2)
    _, _, grads, dstate0 = _full_bptt(cell, params, xs, state0, np.zeros_like(dhs), g)
    result = rtrl.rtrl(cell, params, xs, np.zeros_like(dhs), state0=state0, d_final_state=g)
    assert max(np.max(np.abs(value)) for value in grads.values()) > 1e-3          # not a vacuous check
    for key in grads:
        assert_allclose(result.grads[key], grads[key], **TIGHT, err_msg=key)
    for got, want in zip(state_parts(result.dstate0), state_parts(dstate0), strict=True):
        assert_allclose(got, want, **TIGHT)


@pytest.mark.parametrize("kind", CELL_KINDS)
def test_float32_in_gives_float32_out(kind):
    """Every array ``rtrl`` returns is float32 for float32 inputs, equal to its float64 twin to float32
    precision."""
    cell, params64, xs64, state64, dhs64 = make_kind_problem(kind, (5, 2, 3, 2, None), seed=5)
    as32 = lambda state: tuple(p.astype(np.float32) for p in state) if isinstance(state, tuple) \
        else state.astype(np.float32)                                        # noqa: E731
    params = {key: value.astype(np.float32) for key, value in params64.items()}
    result = rtrl.rtrl(cell, params, xs64.astype(np.float32), dhs64.astype(np.float32), state0=as32(state64))
    twin = rtrl.rtrl(cell, {key: value.astype(np.float64) for key, value in params.items()},
                     xs64.astype(np.float32).astype(np.float64), dhs64.astype(np.float32).astype(np.float64),
                     state0=tuple(p.astype(np.float64) for p in state_parts(as32(state64)))
                     if isinstance(state64, tuple) else as32(state64).astype(np.float64))
    arrays = [result.hs, *state_parts(result.final_state), *result.grads.values(), *state_parts(result.dstate0)]
    assert all(array.dtype == np.float32 for array in arrays), [array.dtype for array in arrays]
    for key in params:
        assert_allclose(result.grads[key], twin.grads[key], **FLOAT32, err_msg=key)


# ----- the directions -------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["elman-tanh", "jordan", "lstm", "gru-torch", "ctrnn-euler"])
@pytest.mark.parametrize("state0", [True, False], ids=["with-state0", "params-only"])
def test_directions_are_the_identity_held_as_views(kind, state0):
    """Side by side, the parameter blocks are [0; I] (the state's directions first, then one per parameter
    entry, in ``param_shapes()`` order); they are read-only and hold one vector of K + size - 1 entries per
    parameter; M_0 is [I; 0] on the state directions, for every sequence."""
    cell, *_ = make_kind_problem(kind, (2, 3, 2, 3, 2 if kind == "jordan" else None))
    directions = rtrl.unit_directions(cell, 3, state0=state0)
    S, P = sum(cell.state_widths), sum(math.prod(shape) for shape in cell.param_shapes().values())
    K = (S if state0 else 0) + P
    assert directions.n_state == (S if state0 else 0)
    blocks = [directions.d_params[key].reshape(K, -1) for key in cell.param_shapes()]
    assert_array_equal(np.concatenate(blocks, axis=1), np.eye(K)[:, directions.n_state:])
    assert not any(block.flags.writeable for block in directions.d_params.values())
    for key, shape in cell.param_shapes().items():            # the buffer under the view: one vector
        buffer = directions.d_params[key]
        while buffer.base is not None:                        # through as_strided's holder of the vector
            buffer = buffer.base
        assert buffer.shape == (K + math.prod(shape) - 1,), key
    joined = np.concatenate(state_parts(directions.sensitivities), axis=-1)      # (K, B, S)
    assert joined.shape == (K, 3, S)
    expected = np.zeros((K, S))
    expected[:directions.n_state] = np.eye(S)[:directions.n_state]        # [I; 0]
    assert_array_equal(joined, np.broadcast_to(expected[:, None, :], (K, 3, S)))
    assert_array_equal(directions.d_x, np.zeros((K, 3, cell.n_in)))


def test_memory_is_the_sensitivities_not_a_dense_identity():
    """For 24 units, rtrl's peak allocation is a few times the (K, B, H) sensitivities, and far below the
    K x K identity that dense parameter tangents would need."""
    cell = Elman(1, 24)
    params = cell.init_params(0)
    rng = seeded("memory")
    xs, dhs = rng.normal(size=(3, 1, 1)), rng.normal(size=(3, 1, 24))
    rtrl.rtrl(cell, params, xs, dhs)                                         # warm up numpy's caches
    tracemalloc.start()
    try:
        rtrl.rtrl(cell, params, xs, dhs)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    K = 24 + sum(math.prod(shape) for shape in cell.param_shapes().values())
    sensitivities = K * 1 * 24 * 8
    assert peak < 8 * sensitivities, (peak, sensitivities)
    assert peak < K * K * 8 / 4, (peak, K * K * 8)


# ----- online_rtrl ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("k1", [1, 3])
@pytest.mark.parametrize("kind", CELL_KINDS)
def test_online_with_held_parameters_is_online_tbptt_reaching_the_start(kind, k1):
    """With an optimizer that does not move the parameters, every update's gradient and loss are those of
    ``online_tbptt`` with k2 = T (each window back to step 1): the sensitivities are then exact."""
    cell, params, xs, state0, targets, readout = _model(kind, (7, 2, 2, 3, None), seed=6)
    by_rtrl, by_tbptt = Recorder(), Recorder()
    history = rtrl.online_rtrl(cell, params, xs, targets, by_rtrl, k1=k1, readout=readout, state0=state0)
    expected = truncation.online_tbptt(cell, params, xs, targets, k1, 7, by_tbptt, readout=readout, state0=state0)
    assert history.steps == math.ceil(7 / k1) == len(by_rtrl.grads)
    assert_allclose(history.losses, expected.losses, **TIGHT)
    assert_allclose(history.grad_norms, expected.grad_norms, **TIGHT)
    for got, want in zip(by_rtrl.grads, by_tbptt.grads, strict=True):
        assert list(got) == list(params)
        for key in want:
            assert_allclose(got[key], want[key], **TIGHT, err_msg=key)


@pytest.mark.parametrize("loss", ["mse", "cross_entropy"])
def test_one_update_at_the_end_is_full_bptt(loss):
    """k1 = T: a single update, on the mean loss of the whole stream: ``sequence_loss_and_grads``."""
    cell, params, xs, state0, _ = make_kind_problem("gru-torch", (6, 3, 2, 4, None), seed=7)
    params = init_model(cell, 3, 8)
    rng = seeded("ce targets")
    targets = rng.integers(0, 3, size=(6, 3)) if loss == "cross_entropy" else rng.normal(size=(6, 3, 3))
    recorder = Recorder()
    history = rtrl.online_rtrl(cell, params, xs, targets, recorder, k1=6, loss=loss, state0=state0)
    value, grads = sequence_loss_and_grads(cell, params, xs, targets, loss=loss, state0=state0)
    assert history.steps == 1
    assert_allclose(history.losses[0], value, **TIGHT)
    for key in grads:
        assert_allclose(recorder.grads[0][key], grads[key], **TIGHT, err_msg=key)


def _dense_online_rtrl(cell, params, xs, targets, lr, k1, readout, state0):
    """Online RTRL written out with the dense one-step Jacobians: M_t = J_t M_{t-1} + I_t per sequence
    ((B, S, P), parameters flattened in key order), the mean squared error of each step through the readout,
    an SGD step on the mean over every k1 steps, the sensitivities carried across updates."""
    params = {key: value.copy() for key, value in params.items()}
    cell_keys = list(cell.param_shapes())
    state = state0
    B, S = xs.shape[1], sum(cell.state_widths)
    M = np.zeros((B, S, sum(params[key].size for key in cell_keys)))
    losses, T = [], xs.shape[0]
    for start in range(0, T, k1):
        window = range(start, min(start + k1, T))
        total, grads = 0.0, {key: np.zeros_like(value) for key, value in params.items()}
        for t in window:
            cell_params = {key: params[key] for key in cell_keys}
            state, cache = cell.step(cell_params, xs[t], state)
            I = cell.param_jacobian(cell_params, cache)
            M = cell.state_jacobian(cell_params, cache) @ M + np.concatenate(
                [I[key].reshape(B, S, -1) for key in cell_keys], axis=2)
            h = cell.hidden(state)
            y = h @ params["W_hy"].T + params["b_y"] if readout else h
            dy = 2 * (y - targets[t]) / y.size / len(window)                  # d(mean over the window)/dy_t
            total += np.mean((y - targets[t]) ** 2) / len(window)
            dh = dy @ params["W_hy"] if readout else dy
            d_state = np.concatenate([dh, np.zeros((B, S - dh.shape[1]))], axis=1)   # the loss sees h only
            flat = np.einsum("bs,bsp->p", d_state, M)
            offset = 0
            for key in cell_keys:
                grads[key] += flat[offset:offset + params[key].size].reshape(params[key].shape)
                offset += params[key].size
            if readout:
                grads["W_hy"] += dy.T @ h
                grads["b_y"] += dy.sum(axis=0)
        for key in params:
            params[key] -= lr * grads[key]
        losses.append(total)
    return params, losses


@pytest.mark.parametrize("k1", [1, 4])
@pytest.mark.parametrize("kind", CELL_KINDS)
def test_online_updates_equal_a_dense_hand_written_loop(kind, k1):
    """With SGD moving the parameters, the losses and the final parameters equal those of the dense loop
    above, which carries the sensitivities across the updates the same way."""
    cell, params, xs, state0, targets, readout = _model(kind, (9, 2, 2, 3, None), seed=9)
    expected, expected_losses = _dense_online_rtrl(cell, params, xs, targets, 0.05, k1, readout, state0)
    history = rtrl.online_rtrl(cell, params, xs, targets, SGD(0.05), k1=k1, readout=readout, state0=state0)
    assert_allclose(history.losses, expected_losses, **TIGHT)
    for key in params:
        assert_allclose(params[key], expected[key], **TIGHT, err_msg=key)


def test_online_moves_the_parameters_and_leaves_the_stream_alone():
    """The parameters are updated in place; the stream, the targets and the initial state are not touched;
    a clipped update's recorded gradient has the clipped norm, the history the norm before clipping."""
    cell, params, xs, state0, targets, _ = _model("lstm", (8, 2, 2, 3, None), seed=10)
    saved = snapshot(xs, targets, state0)
    before = {key: value.copy() for key, value in params.items()}
    rtrl.online_rtrl(cell, params, xs, targets, SGD(0.1), k1=2, state0=state0)
    assert_unchanged(saved, xs, targets, state0)
    assert all(not np.array_equal(params[key], before[key]) for key in params)
    recorder = Recorder()
    history = rtrl.online_rtrl(cell, before, xs, targets, recorder, k1=2, state0=state0, clip=1e-3)
    for grads, norm in zip(recorder.grads, history.grad_norms, strict=True):
        assert norm > 1e-3                                     # torch's formula: scaled by 1e-3 / (norm + 1e-6)
        assert_allclose(np.sqrt(sum(np.sum(g * g) for g in grads.values())), norm * 1e-3 / (norm + 1e-6), rtol=1e-12)


def test_online_float32_stays_float32():
    """float32 parameters and stream: the parameters stay float32 and follow their float64 twin."""
    cell, params, xs, _, targets, _ = _model("elman-tanh", (6, 2, 2, 3, None), seed=11)
    params32 = {key: value.astype(np.float32) for key, value in params.items()}
    twin = {key: value.astype(np.float64) for key, value in params32.items()}
    xs32, targets32 = xs.astype(np.float32), targets.astype(np.float32)
    rtrl.online_rtrl(cell, params32, xs32, targets32, SGD(0.1), k1=2)
    rtrl.online_rtrl(cell, twin, xs32.astype(np.float64), targets32.astype(np.float64), SGD(0.1), k1=2)
    for key in params32:
        assert params32[key].dtype == np.float32
        assert_allclose(params32[key], twin[key], **FLOAT32, err_msg=key)


# ----- refusals ---------------------------------------------------------------------------------------------
def _elman_problem():
    cell = Elman(2, 3)
    rng = seeded("bad input")
    return cell, cell.init_params(0), rng.normal(size=(4, 2, 2)), rng.normal(size=(4, 2, 3))


@pytest.mark.parametrize("change, match", [
    (lambda a: {**a, "cell": "elman"}, "cell"),
    (lambda a: {**a, "params": {k: v for k, v in a["params"].items() if k != "W_hh"}}, "params"),
    (lambda a: {**a, "params": {**a["params"], "b_h": np.full(3, np.nan)}}, r"params\['b_h'\]"),
    (lambda a: {**a, "xs": np.swapaxes(a["xs"], 0, 2)}, "xs"),
    (lambda a: {**a, "xs": a["xs"][:0], "dhs": a["dhs"][:0]}, "xs"),
    (lambda a: {**a, "dhs": a["dhs"][:, :1]}, "dhs"),
    (lambda a: {**a, "state0": np.zeros((3, 3))}, "state0"),
    (lambda a: {**a, "d_final_state": np.zeros((2, 4))}, "d_final_state"),
], ids=["cell", "params-keys", "params-nan", "xs-axes", "xs-empty", "dhs", "state0", "d_final_state"])
def test_rtrl_refuses_bad_input(change, match):
    cell, params, xs, dhs = _elman_problem()
    arguments = change(dict(cell=cell, params=params, xs=xs, dhs=dhs))
    with pytest.raises(ValueError, match=match):
        rtrl.rtrl(arguments.pop("cell"), arguments.pop("params"), arguments.pop("xs"), arguments.pop("dhs"),
                  **arguments)


def test_unit_directions_refuse_bad_input():
    with pytest.raises(ValueError, match="batch"):
        rtrl.unit_directions(Elman(2, 3), 0)
    with pytest.raises(ValueError, match="cell"):
        rtrl.unit_directions("elman", 2)
    with pytest.raises(ValueError, match="dtype"):
        rtrl.unit_directions(Elman(2, 3), 2, dtype=np.int64)


@pytest.mark.parametrize("change, match", [
    (lambda a: {**a, "optimizer": object()}, "optimizer"),
    (lambda a: {**a, "k1": 0}, "k1"),
    (lambda a: {**a, "clip": -1.0}, "clip"),
    (lambda a: {**a, "loss": "l1"}, "loss"),
    (lambda a: {**a, "targets": a["targets"][:3]}, "targets"),
    (lambda a: {**a, "xs": a["xs"][..., :1]}, "xs"),
    (lambda a: {**a, "state0": np.zeros((2, 5))}, "state0"),
    (lambda a: {**a, "params": {k: v for k, v in a["params"].items() if k != "b_y"}}, "params"),
], ids=["optimizer", "k1", "clip", "loss", "targets", "xs", "state0", "params"])
def test_online_rtrl_refuses_bad_input(change, match):
    cell, _, xs, _ = _elman_problem()
    params = init_model(cell, 2, 0)
    arguments = change(dict(cell=cell, params=params, xs=xs, targets=np.zeros((4, 2, 2)), optimizer=SGD(0.1)))
    with pytest.raises(ValueError, match=match):
        rtrl.online_rtrl(arguments.pop("cell"), arguments.pop("params"), arguments.pop("xs"), arguments.pop("targets"),
                         arguments.pop("optimizer"), **arguments)
