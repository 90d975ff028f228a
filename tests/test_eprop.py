"""e-prop (``companion.eprop``): exact where the dropped terms vanish, exact with the exact learning
signals, equal to two independent implementations of its own equations, random feedback, the online loop,
and the refusals.

The equations every test is written from (chapter "Approximate online learning"): for the Elman network
a_t = W_xh x_t + W_hh h_{t-1} + b_h, h_t = phi(a_t) and u_t = [x_t; h_{t-1}; 1], the eligibility trace of the
weight from j to unit i is e_{t,ij} = phi'(a_{t,i}) (w_i e_{t-1,ij} + u_{t,j}), e_0 = 0, with w_i = W_hh[i, i]
(``self_loop=True``) or 0; the estimate is sum_t sum_i lambda_{t,i} e_{t,ij} for learning signals lambda_t. The true
gradient is the step loop's BPTT (``companion.bptt``, pinned to finite differences and torch elsewhere).
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from companion import bptt, eprop, gradcheck, truncation
from companion.cells import LSTM, Elman
from companion.cells.activations import ACTIVATIONS
from companion.model import init_model, output_loss_and_grads, sequence_loss_and_grads, split_params
from companion.optim import SGD, Adam

from helpers import TIGHT, assert_unchanged, make_elman_problem, seeded, snapshot

NONLINEARITIES = ["tanh", "linear", "relu"]
DISTINCT = 1e-6     # an approximate gradient must differ from the true one by more than this, else the case is weak
FD_TOL = 1e-7       # finite differences against the hand-written estimate


class RecordingOptimizer:
    """An optimizer that records each update's gradients and leaves the parameters alone (a zero step)."""

    def __init__(self):
        self.grads: list[dict] = []

    def step(self, params, grads):
        self.grads.append({key: np.array(value, copy=True) for key, value in grads.items()})


def _true_gradient(cell, params, xs, state0, signals):
    """Full BPTT of L = sum_t <signals_t, h_t> by the step loop."""
    _, cache = bptt.forward(cell, params, xs, state0, fused=False)
    return bptt.backward(cell, params, cache, signals)[0]


def _relative_difference(got: dict, want: dict) -> float:
    """The largest, over the keys, of max |got - want| / max |want|."""
    return max(float(np.max(np.abs(got[key] - want[key])) / np.max(np.abs(want[key]))) for key in want)


def _problem(nonlinearity, *, T=5, B=2, n_in=2, H=3, seed=0):
    return make_elman_problem(T, B, n_in, H, nonlinearity, zero_state=False, seed=seed)


# ----- exact where the dropped terms vanish ----------------------------------------------------------------------
@pytest.mark.parametrize("self_loop", [True, False], ids=["self-loop", "no-self-loop"])
@pytest.mark.parametrize("nonlinearity", NONLINEARITIES)
def test_no_recurrent_weights_is_exact(nonlinearity, self_loop):
    """W_hh = 0: no unit reaches another unit's future, nothing is dropped, e-prop is BPTT (with a nonzero
    initial state, so that dW_hh is not zero)."""
    cell, params, xs, state0, dhs = _problem(nonlinearity, seed=1)
    params["W_hh"] = np.zeros_like(params["W_hh"])
    got = eprop.eprop(cell, params, xs, dhs, state0=state0, self_loop=self_loop)
    want = _true_gradient(cell, params, xs, state0, dhs)
    for key in want:
        assert_allclose(got[key], want[key], **TIGHT, err_msg=key)
    assert np.linalg.norm(want["W_hh"]) > 0


@pytest.mark.parametrize("nonlinearity", NONLINEARITIES)
def test_diagonal_recurrent_weights_are_exact_with_the_self_loop(nonlinearity):
    """A diagonal W_hh: every path stays in its unit, which the traces follow with w = diag(W_hh); without
    the self-loop the same network is not exact (the case is not vacuous)."""
    cell, params, xs, state0, dhs = _problem(nonlinearity, T=6, seed=2)
    params["W_hh"] = np.diag(np.diag(params["W_hh"]))
    want = _true_gradient(cell, params, xs, state0, dhs)
    got = eprop.eprop(cell, params, xs, dhs, state0=state0)
    for key in want:
        assert_allclose(got[key], want[key], **TIGHT, err_msg=key)
    without = eprop.eprop(cell, params, xs, dhs, state0=state0, self_loop=False)
    assert _relative_difference(without, want) > DISTINCT


@pytest.mark.parametrize("self_loop", [True, False], ids=["self-loop", "no-self-loop"])
@pytest.mark.parametrize("nonlinearity", NONLINEARITIES)
def test_a_one_step_horizon_is_exact(nonlinearity, self_loop):
    """T = 1: the only loss is the one step's, and no path reaches another step: exact for any W_hh."""
    cell, params, xs, state0, dhs = _problem(nonlinearity, T=1, B=3, seed=3)
    got = eprop.eprop(cell, params, xs, dhs, state0=state0, self_loop=self_loop)
    want = _true_gradient(cell, params, xs, state0, dhs)
    for key in want:
        assert_allclose(got[key], want[key], **TIGHT, err_msg=key)


@pytest.mark.parametrize("nonlinearity", NONLINEARITIES)
def test_a_full_recurrent_matrix_is_not_exact(nonlinearity):
    """With off-diagonal recurrent weights and T > 1 e-prop drops terms: the exactness tests above are not
    passing because e-prop is BPTT everywhere."""
    cell, params, xs, state0, dhs = _problem(nonlinearity, T=6, seed=4)
    want = _true_gradient(cell, params, xs, state0, dhs)
    for self_loop in (True, False):
        got = eprop.eprop(cell, params, xs, dhs, state0=state0, self_loop=self_loop)
        assert _relative_difference(got, want) > DISTINCT


@pytest.mark.parametrize("self_loop", [True, False], ids=["self-loop", "no-self-loop"])
@pytest.mark.parametrize("nonlinearity", NONLINEARITIES)
def test_the_exact_learning_signals_give_the_true_gradient(nonlinearity, self_loop):
    """The factorization theorem: with lambda*_t = hbar_t - w * abar_{t+1} (every path from h_t to the loss but the
    unit's own self-loop; hbar from ``bptt.state_adjoints``, abar_{t+1} = phi'(a_{t+1}) hbar_{t+1}, abar_{T+1}
    = 0) the e-prop sum is the true gradient, for any W_hh."""
    cell, params, xs, state0, dhs = _problem(nonlinearity, T=7, seed=5)
    hs, cache = bptt.forward(cell, params, xs, state0, fused=False)
    hbar = bptt.state_adjoints(cell, params, cache, dhs)[1:]                  # hbar_t, t = 1 .. T
    abar = ACTIVATIONS[nonlinearity][1](hs) * hbar
    abar_next = np.concatenate([abar[1:], np.zeros_like(abar[:1])])
    w = np.diag(params["W_hh"]) if self_loop else 0.0
    got = eprop.eprop(cell, params, xs, hbar - w * abar_next, state0=state0, self_loop=self_loop)
    want = bptt.backward(cell, params, cache, dhs)[0]
    for key in want:
        assert_allclose(got[key], want[key], **TIGHT, err_msg=key)


# ----- independent implementations of e-prop's equations ---------------------------------------------------------
def _eprop_by_loops(cell, params, xs, state0, signals, self_loop):
    """The traces written entry by entry from the definition, with Python loops over t, b, i, j."""
    phi, phi_prime = ACTIVATIONS[cell.nonlinearity]
    T, B, n_in = xs.shape
    H = cell.n_hidden
    W = np.concatenate([params["W_xh"], params["W_hh"], params["b_h"][:, None]], axis=1)   # [W_xh | W_hh | b_h]
    grad = np.zeros_like(W)
    for b in range(B):
        h_prev, e = state0[b], np.zeros_like(W)
        for t in range(T):
            u = np.concatenate([xs[t, b], h_prev, [1.0]])                     # u_t
            h = phi(W @ u)
            for i in range(H):
                slope = phi_prime(h[i])
                w = params["W_hh"][i, i] if self_loop else 0.0
                for j in range(W.shape[1]):
                    e[i, j] = slope * (w * e[i, j] + u[j])
                    grad[i, j] += signals[t, b, i] * e[i, j]
            h_prev = h
    return {"W_xh": grad[:, :n_in], "W_hh": grad[:, n_in:n_in + H], "b_h": grad[:, -1]}


@pytest.mark.parametrize("self_loop", [True, False], ids=["self-loop", "no-self-loop"])
@pytest.mark.parametrize("nonlinearity", NONLINEARITIES)
def test_matches_the_equations_written_entry_by_entry(nonlinearity, self_loop):
    cell, params, xs, state0, signals = _problem(nonlinearity, T=4, B=2, n_in=2, H=3, seed=6)
    got = eprop.eprop(cell, params, xs, signals, state0=state0, self_loop=self_loop)
    want = _eprop_by_loops(cell, params, xs, state0, signals, self_loop)
    for key in want:
        assert_allclose(got[key], want[key], **TIGHT, err_msg=key)


def _surrogate_loss(cell, params_now, xs, state0, signals, self_loop):
    """e-prop as the exact gradient of a surrogate: every unit sees the other units' previous states (and
    without the self-loop its own too) as constants, frozen at the values of the forward pass at
    ``params_now``; L = sum_t <signals_t, h_t> of that network."""
    phi = ACTIVATIONS[cell.nonlinearity][0]
    frozen = np.concatenate([state0[None], bptt.forward(cell, params_now, xs, state0)[0][:-1]])   # h_{t-1}
    H = cell.n_hidden
    own = np.eye(H) if self_loop else np.zeros((H, H))

    def loss(p):
        h_prev, total = state0, 0.0
        for t in range(xs.shape[0]):
            # W_hh[i, k] h_{t-1,k}: frozen for k != i; the unit's own term is live with the self-loop
            recurrent = frozen[t] @ (p["W_hh"] * (1 - own)).T + h_prev @ (p["W_hh"] * own).T
            h = phi(xs[t] @ p["W_xh"].T + recurrent + p["b_h"])
            total += float(np.sum(signals[t] * h))
            h_prev = h
        return total

    return loss


@pytest.mark.parametrize("self_loop", [True, False], ids=["self-loop", "no-self-loop"])
@pytest.mark.parametrize("nonlinearity", ["tanh", "linear"])
def test_is_the_gradient_of_the_network_that_freezes_the_other_units(nonlinearity, self_loop):
    """Finite differences of the surrogate in which the recurrent input from other units is a constant (the
    ``stop_gradient`` view): e-prop's estimate is its gradient."""
    cell, params, xs, state0, signals = _problem(nonlinearity, T=5, seed=7)
    numeric = gradcheck.numerical_gradient(_surrogate_loss(cell, params, xs, state0, signals, self_loop), params)
    got = eprop.eprop(cell, params, xs, signals, state0=state0, self_loop=self_loop)
    errors = gradcheck.relative_errors(got, numeric)
    assert max(errors.values()) < FD_TOL, errors


@pytest.mark.parametrize("nonlinearity", NONLINEARITIES)
def test_without_the_self_loop_it_is_bptt_truncated_to_one_step(nonlinearity):
    """d = 0: each loss reaches only its own step, which is BPTT(1; 1) (``truncation.tbptt``)."""
    cell, params, xs, state0, dhs = _problem(nonlinearity, T=6, seed=8)
    got = eprop.eprop(cell, params, xs, dhs, state0=state0, self_loop=False)
    want = truncation.tbptt(cell, params, xs, dhs, 1, 1, state0=state0)
    for key in want:
        assert_allclose(got[key], want[key], **TIGHT, err_msg=key)


def test_traces_follow_the_recursion_step_by_step():
    """``trace_step`` from zero traces, then ``combine``, summed over the steps: ``eprop``'s sum."""
    cell, params, xs, state0, signals = _problem("tanh", T=4, seed=9)
    hs, _ = bptt.forward(cell, params, xs, state0)
    traces, total, h_prev = eprop.initial_traces(cell, 2), None, state0
    for t in range(4):
        traces = eprop.trace_step(cell, params, traces, xs[t], h_prev, hs[t])
        step = eprop.combine(traces, signals[t])
        total = step if total is None else {key: total[key] + step[key] for key in step}
        h_prev = hs[t]
    assert traces.W_xh.shape == (2, 3, 2) and traces.W_hh.shape == (2, 3, 3) and traces.b_h.shape == (2, 3)
    got = eprop.eprop(cell, params, xs, signals, state0=state0)
    for key in got:
        assert_allclose(total[key], got[key], **TIGHT, err_msg=key)


# ----- the model: readout, symmetric and random feedback ---------------------------------------------------------
def _model_problem(loss, *, T=6, B=2, seed=10):
    cell = Elman(2, 4)
    rng = seeded("eprop model", loss, T, seed)
    params = init_model(cell, 3, rng)
    xs = rng.normal(size=(T, B, 2))
    targets = rng.integers(0, 3, size=(T, B)) if loss == "cross_entropy" else rng.normal(size=(T, B, 3))
    return cell, params, xs, targets, rng.normal(size=(B, 4))


@pytest.mark.parametrize("loss", ["mse", "cross_entropy"])
def test_model_gradients_readout_is_exact_and_cell_is_eprop_of_dhs(loss):
    """The loss and the readout's gradients are ``sequence_loss_and_grads``'s; the cell's are ``eprop`` with
    the readout's dL/dh_t as the learning signals (symmetric e-prop)."""
    cell, params, xs, targets, state0 = _model_problem(loss)
    value, grads = eprop.model_gradients(cell, params, xs, targets, loss=loss, state0=state0)
    true_value, true_grads = sequence_loss_and_grads(cell, params, xs, targets, loss=loss, state0=state0)
    assert list(grads) == list(params)
    assert value == pytest.approx(true_value, rel=1e-14)
    for key in ("W_hy", "b_y"):
        assert_allclose(grads[key], true_grads[key], **TIGHT, err_msg=key)
    cell_params, readout_params = split_params(cell, params, True)
    hs, _ = bptt.forward(cell, cell_params, xs, state0)
    _, _, dhs = output_loss_and_grads(readout_params, hs, targets, loss=loss)
    expected = eprop.eprop(cell, cell_params, xs, dhs, state0=state0)
    for key in expected:
        assert_allclose(grads[key], expected[key], **TIGHT, err_msg=key)


@pytest.mark.parametrize("loss", ["mse", "cross_entropy"])
def test_random_feedback_equal_to_the_readout_transpose_is_symmetric_eprop(loss):
    cell, params, xs, targets, state0 = _model_problem(loss, seed=11)
    symmetric = eprop.model_gradients(cell, params, xs, targets, loss=loss, state0=state0)
    fed_back = eprop.model_gradients(cell, params, xs, targets, loss=loss, state0=state0,
                                     feedback=params["W_hy"].T.copy())
    assert fed_back[0] == symmetric[0]
    for key in params:
        assert_allclose(fed_back[1][key], symmetric[1][key], **TIGHT, err_msg=key)
    other = eprop.model_gradients(cell, params, xs, targets, loss=loss, state0=state0,
                                  feedback=eprop.random_feedback(4, 3, 0))
    assert _relative_difference({k: other[1][k] for k in ("W_xh", "W_hh")},
                                {k: symmetric[1][k] for k in ("W_xh", "W_hh")}) > DISTINCT
    for key in ("W_hy", "b_y"):                                  # the readout's gradients do not change
        assert_array_equal(other[1][key], symmetric[1][key])


def test_random_feedback_is_seeded_and_scaled_like_the_readout():
    B1, B2 = eprop.random_feedback(16, 3, 5), eprop.random_feedback(16, 3, np.random.default_rng(5))
    assert B1.shape == (16, 3)
    assert_array_equal(B1, B2)
    assert np.max(np.abs(B1)) <= 1 / math.sqrt(16)


# ----- the online loop -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("feedback", [False, True], ids=["symmetric", "random"])
@pytest.mark.parametrize("loss", ["mse", "cross_entropy"])
def test_online_with_one_update_is_model_gradients(loss, feedback):
    """k1 = T with an optimizer that does not move the parameters: one update, equal to ``model_gradients``
    (the mean loss over the stream); the parameters are unchanged; the recorded loss is the mean loss."""
    cell, params, xs, targets, state0 = _model_problem(loss, T=7, seed=12)
    B = eprop.random_feedback(4, 3, 1) if feedback else None
    saved = snapshot(params)
    recorder = RecordingOptimizer()
    history = eprop.online_eprop(cell, params, xs, targets, recorder, k1=7, feedback=B, loss=loss, state0=state0)
    assert_unchanged(saved, params)
    value, want = eprop.model_gradients(cell, params, xs, targets, feedback=B, loss=loss, state0=state0)
    assert history.steps == len(recorder.grads) == 1
    assert history.losses[0] == pytest.approx(value, rel=1e-12)
    assert list(recorder.grads[0]) == list(params)
    for key in params:
        assert_allclose(recorder.grads[0][key], want[key], **TIGHT, err_msg=key)


@pytest.mark.parametrize("T, k", [(7, 3), (6, 2), (5, 1), (4, 9)])
def test_online_updates_add_up_to_the_one_shot_estimate(T, k):
    """With the parameters held still, the traces run on across updates, so the updates' gradients,
    weighted by their numbers of steps, add up to T times ``model_gradients`` over the stream; there are
    ceil(T / k) updates, the last one shorter."""
    cell, params, xs, targets, state0 = _model_problem("mse", T=T, seed=13)
    recorder = RecordingOptimizer()
    history = eprop.online_eprop(cell, params, xs, targets, recorder, k1=k, state0=state0)
    counts = [min(k, T - j * k) for j in range(math.ceil(T / k))]
    assert history.steps == len(recorder.grads) == len(counts)
    value, want = eprop.model_gradients(cell, params, xs, targets, state0=state0)
    for key in params:
        total = sum(n * g[key] for n, g in zip(counts, recorder.grads))
        assert_allclose(total, T * want[key], **TIGHT, err_msg=key)
    assert sum(n * v for n, v in zip(counts, history.losses)) == pytest.approx(T * value, rel=1e-12)
    norms = [math.sqrt(sum(float(np.sum(g[key] ** 2)) for key in g)) for g in recorder.grads]
    assert_allclose(history.grad_norms, norms, rtol=1e-12)


def test_online_sgd_takes_the_estimate_as_its_step():
    """One update with SGD: theta <- theta - lr * (model_gradients' estimate); the parameters moved."""
    cell, params, xs, targets, state0 = _model_problem("mse", T=5, seed=14)
    before = {key: value.copy() for key, value in params.items()}
    _, want = eprop.model_gradients(cell, params, xs, targets, state0=state0)
    eprop.online_eprop(cell, params, xs, targets, SGD(0.3), k1=5, state0=state0)
    for key in params:
        assert_allclose(params[key], before[key] - 0.3 * want[key], **TIGHT, err_msg=key)
    assert _relative_difference(params, before) > DISTINCT


def test_online_clips_the_update_and_records_the_norm_before_clipping():
    cell, params, xs, targets, state0 = _model_problem("mse", T=6, seed=15)
    recorder = RecordingOptimizer()
    history = eprop.online_eprop(cell, params, xs, targets, recorder, k1=3, state0=state0, clip=1e-3)
    unclipped = eprop.online_eprop(cell, params, xs, targets, RecordingOptimizer(), k1=3, state0=state0)
    assert history.grad_norms == unclipped.grad_norms
    for grads, norm in zip(recorder.grads, history.grad_norms):
        clipped = math.sqrt(sum(float(np.sum(g ** 2)) for g in grads.values()))
        assert norm > 1e-3 and clipped <= 1e-3 * (1 + 1e-9)


def test_online_learns_and_leaves_the_stream_alone():
    """A tanh network learns to output its previous input (a one-step delay) online with symmetric e-prop:
    the mean loss of the last 20 updates is below a tenth of the first 20's; the stream is not modified."""
    cell = Elman(1, 8)
    rng = seeded("eprop learns")
    params = init_model(cell, 1, rng)
    stream = rng.uniform(-1, 1, size=(1501, 4, 1))
    xs, targets = stream[1:], stream[:-1]
    saved = snapshot(xs, targets)
    history = eprop.online_eprop(cell, params, xs, targets, Adam(0.01), k1=5)
    assert_unchanged(saved, xs, targets)
    assert np.mean(history.losses[-20:]) < 0.1 * np.mean(history.losses[:20])


# ----- bad input -------------------------------------------------------------------------------------------------
class _MyElman(Elman):
    """A subclass (it may have changed the equations the traces are derived from)."""


def _bad_input_cases():
    cell = Elman(2, 3)
    rng = seeded("eprop bad input")
    params = cell.init_params(rng)
    T, B = 4, 2
    xs, signals = rng.normal(size=(T, B, 2)), rng.normal(size=(T, B, 3))
    model = init_model(cell, 2, rng)
    targets = rng.normal(size=(T, B, 2))

    def online(**kw):
        args = dict(targets=targets, k=2, optimizer=SGD(0.1)) | kw
        options = {key: kw[key] for key in ("feedback", "loss", "clip", "state0") if key in kw}
        return lambda: eprop.online_eprop(cell, model, xs, args["targets"], args["optimizer"], k1=args["k"],
                                          **options)

    return [
        ("cell-lstm", lambda: eprop.eprop(LSTM(2, 3), params, xs, signals), "cell must be a companion.cells.Elman"),
        ("cell-subclass", lambda: eprop.eprop(_MyElman(2, 3), params, xs, signals),
         "cell must be a companion.cells.Elman"),
        ("signals-shape", lambda: eprop.eprop(cell, params, xs, signals[:-1]), "signals must have shape"),
        ("signals-width", lambda: eprop.eprop(cell, params, xs, signals[..., :2]), "signals must have shape"),
        ("signals-nan", lambda: eprop.eprop(cell, params, xs, np.full_like(signals, np.nan)), "signals contains"),
        ("xs-width", lambda: eprop.eprop(cell, params, xs[..., :1], signals), "xs must have shape"),
        ("params-keys", lambda: eprop.eprop(cell, {"W_xh": params["W_xh"]}, xs, signals), "params must have"),
        ("state0-shape", lambda: eprop.eprop(cell, params, xs, signals, state0=np.zeros((B + 1, 3))),
         "state0 must have shape"),
        ("traces-batch", lambda: eprop.initial_traces(cell, 0), "batch must be a positive integer"),
        ("feedback-n_hidden", lambda: eprop.random_feedback(0, 2, 0), "n_hidden must be a positive integer"),
        ("feedback-n_out", lambda: eprop.random_feedback(3, 1.5, 0), "n_out must be a positive integer"),
        ("feedback-rng", lambda: eprop.random_feedback(3, 2, "seed"), "rng must be a numpy Generator"),
        ("model-feedback-shape",
         lambda: eprop.model_gradients(cell, model, xs, targets, feedback=np.zeros((2, 3))),
         "feedback must have shape"),
        ("model-feedback-nan",
         lambda: eprop.model_gradients(cell, model, xs, targets, feedback=np.full((3, 2), np.nan)),
         "feedback contains"),
        ("learning_signals-feedback",
         lambda: eprop.learning_signals({"W_hy": model["W_hy"], "b_y": model["b_y"]}, signals, targets,
                                        feedback=np.zeros((2, 2))), "feedback must have shape"),
        ("model-params-no-readout", lambda: eprop.model_gradients(cell, params, xs, targets), "params must have"),
        ("model-loss", lambda: eprop.model_gradients(cell, model, xs, targets, loss="hinge"), "loss must be one of"),
        ("online-k1=0", online(k=0), "k1 must be a positive integer"),
        ("online-k1=1.5", online(k=1.5), "k1 must be a positive integer"),
        ("online-optimizer", online(optimizer=0.1), "optimizer must have a step"),
        ("online-clip", online(clip=0), "clip must be a finite positive number"),
        ("online-loss", online(loss="hinge"), "loss must be one of"),
        ("online-targets", online(targets=targets[:-1]), "targets must start with"),
        ("online-feedback", online(feedback=np.zeros((3, 3))), "feedback must have shape"),
        ("online-state0", online(state0=np.zeros((B, 4))), "state0 must have shape"),
        ("online-cell", lambda: eprop.online_eprop(LSTM(2, 3), model, xs, targets, SGD(0.1), k1=2),
         "cell must be a companion.cells.Elman"),
    ]


BAD_INPUT = _bad_input_cases()


@pytest.mark.parametrize("call, message", [case[1:] for case in BAD_INPUT], ids=[case[0] for case in BAD_INPUT])
def test_bad_input_is_a_value_error_naming_the_argument(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_inputs_are_not_modified():
    cell, params, xs, state0, signals = _problem("tanh", seed=16)
    saved = snapshot(params, xs, state0, signals)
    eprop.eprop(cell, params, xs, signals, state0=state0)
    assert_unchanged(saved, params, xs, state0, signals)
