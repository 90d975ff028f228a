"""UORO (``companion.uoro``): one draw against the algorithm written with dense Jacobians, unbiasedness by a
Monte-Carlo test whose margin comes from the standard error (and which rejects a biased variant), the
online loop, and the refusals.

The algorithm every test is written from (Tallec & Ollivier 2018; chapter "Approximate online learning"):
with J_t = d state_t / d state_{t-1} and Jth_t = d state_t / d theta (the previous state held fixed),
random signs nu_t, s~_t = rho0 J_t s~_{t-1} + rho1 nu_t and theta~_t = theta~_{t-1} / rho0 + Jth_t^T nu_t / rho1,
where rho0 = sqrt(|theta~_{t-1}| / |J_t s~_{t-1}|) and rho1 = sqrt(|Jth_t^T nu_t| / |nu_t|) (1 where a norm is
zero, or always with ``variance_reduction=False``); the estimate is sum_t <dhs_t, h~_t> theta~_t. Its mean is
the step loop's BPTT gradient (``companion.bptt``).
"""
from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
import pytest
from numpy.testing import assert_allclose

from companion import bptt, uoro
from companion.cells import LSTM, Elman, Jordan
from companion.model import init_model, output_loss_and_grads, split_params
from companion.optim import SGD

from helpers import (
    TIGHT, assert_unchanged, make_cell, make_kind_problem, random_state, seeded, snapshot, state_parts,
)

FAMILY_FALSE_ALARM = 1e-3   # a Monte Carlo test's chance of failing a correct estimator, all its entries together


class RecordingOptimizer:
    """An optimizer that records each update's gradients and leaves the parameters alone (a zero step)."""

    def __init__(self):
        self.grads: list[dict] = []

    def step(self, params, grads):
        self.grads.append({key: np.array(value, copy=True) for key, value in grads.items()})


def _flat(grads: dict, keys) -> np.ndarray:
    return np.concatenate([np.ravel(grads[key]) for key in keys])


def _true_gradient(cell, params, xs, state0, dhs):
    _, cache = bptt.forward(cell, params, xs, state0, fused=False)
    return bptt.backward(cell, params, cache, dhs)[0]


# ----- one draw, against the algorithm with dense Jacobians ------------------------------------------------------
def _uoro_dense(cell, params, xs, state0, dhs, seed, variance_reduction):
    """UORO with the dense one-step Jacobians of ``state_jacobian`` and ``param_jacobian`` (every state part
    concatenated, the B sequences one block each), drawing the signs as ``uoro`` does: per step, one
    ``rng.integers(0, 2)`` array per state part, in part order."""
    rng = np.random.default_rng(seed)
    keys = list(params)
    T, B = xs.shape[:2]
    S = sum(cell.state_widths)
    s_tilde, theta_tilde = np.zeros((B, S)), np.zeros(sum(params[key].size for key in keys))
    state, grads = state0, np.zeros_like(theta_tilde)
    for t in range(T):
        state, cache = cell.step(params, xs[t], state)
        J = cell.state_jacobian(params, cache)                                           # (B, S, S)
        jacobians = cell.param_jacobian(params, cache)
        Jth = np.concatenate([jacobians[key].reshape(B, S, -1) for key in keys], axis=2)  # (B, S, P)
        nu = np.concatenate([2.0 * rng.integers(0, 2, size=(B, width)) - 1 for width in cell.state_widths], axis=1)
        forward = np.einsum("bij,bj->bi", J, s_tilde)                                    # J_t s~_{t-1}
        immediate = np.einsum("bsp,bs->p", Jth, nu)                                      # Jth_t^T nu_t
        rho0 = rho1 = 1.0
        if variance_reduction:
            if np.linalg.norm(theta_tilde) > 0 and np.linalg.norm(forward) > 0:
                rho0 = math.sqrt(np.linalg.norm(theta_tilde) / np.linalg.norm(forward))
            if np.linalg.norm(immediate) > 0:
                rho1 = math.sqrt(np.linalg.norm(immediate) / np.linalg.norm(nu))
        s_tilde = rho0 * forward + rho1 * nu
        theta_tilde = theta_tilde / rho0 + immediate / rho1
        grads += np.sum(dhs[t] * s_tilde[:, :cell.output_width]) * theta_tilde            # <dl_t/dh_t, h~_t> theta~
    return grads


DRAW_KINDS = ["elman-tanh", "elman-relu", "jordan", "lstm", "gru-torch", "gru-cho", "ctrnn-euler", "narx"]


@pytest.mark.parametrize("variance_reduction", [True, False], ids=["rho", "no-rho"])
@pytest.mark.parametrize("kind", DRAW_KINDS)
def test_one_draw_is_the_algorithm_with_dense_jacobians(kind, variance_reduction):
    """Every cell (the LSTM's two-part state included): the protocol's ``step_jvp`` and ``step_backward``
    give the same draw as the dense Jacobians, for the same seed."""
    cell, params, xs, state0, dhs = make_kind_problem(kind, (4, 2, 2, 3, None), seed=1)
    got = uoro.uoro(cell, params, xs, dhs, rng=7, state0=state0, variance_reduction=variance_reduction)
    want = _uoro_dense(cell, params, xs, state0, dhs, 7, variance_reduction)
    assert list(got) == list(params)
    assert_allclose(_flat(got, params), want, **TIGHT)


def test_tangents_start_at_zero_and_take_the_state_shape():
    cell = LSTM(2, 3)
    params = cell.init_params(0)
    state = random_state(cell, seeded("uoro tangents"), 2)
    tangents = uoro.initial_tangents(cell, params, state)
    assert [part.shape for part in tangents.s_tilde] == [(2, 3), (2, 3)]
    assert all(np.all(part == 0) for part in tangents.s_tilde)
    assert {key: value.shape for key, value in tangents.theta_tilde.items()} == cell.param_shapes()
    state, cache = cell.step(params, np.ones((2, 2)), state)
    after = uoro.tangent_step(cell, params, cache, tangents, np.random.default_rng(0))
    # from zero tangents: s~_1 = rho1 nu_1 (one magnitude in every entry of both parts), theta~_1 = I^T nu_1 / rho1
    magnitudes = np.unique(np.abs(np.concatenate([part.ravel() for part in after.s_tilde])))
    assert magnitudes.size == 1 or np.ptp(magnitudes) < 1e-15 * magnitudes[0]
    rho1 = magnitudes[0]
    nu = tuple(part / rho1 for part in after.s_tilde)
    immediate = cell.step_backward(params, cache, nu)[0]
    for key in immediate:
        assert_allclose(after.theta_tilde[key], immediate[key] / rho1, **TIGHT, err_msg=key)


# ----- unbiasedness by Monte Carlo -------------------------------------------------------------------------------
def _z_scores(cell, params, xs, state0, dhs, *, draws, seed, variance_reduction=True):
    """(mean draw - BPTT gradient) / standard error of the mean, for every entry of the gradient."""
    keys = list(params)
    rng = seeded("uoro unbiased", seed)
    samples = np.array([_flat(uoro.uoro(cell, params, xs, dhs, rng=rng, state0=state0,
                                        variance_reduction=variance_reduction), keys) for _ in range(draws)])
    standard_error = samples.std(axis=0, ddof=1) / math.sqrt(draws)
    assert np.all(standard_error > 0), "an entry without randomness: the statistic is undefined"
    return (samples.mean(axis=0) - _flat(_true_gradient(cell, params, xs, state0, dhs), keys)) / standard_error


def _z_threshold(comparisons: int) -> float:
    """Two-sided normal quantile with a Bonferroni split of FAMILY_FALSE_ALARM over the comparisons."""
    return NormalDist().inv_cdf(1 - FAMILY_FALSE_ALARM / (2 * comparisons))


UNBIASED_CASES = [("elman-tanh", True, 3000), ("elman-tanh", False, 3000), ("lstm", True, 1500),
                  ("gru-torch", True, 1500)]


@pytest.mark.parametrize("kind, variance_reduction, draws", UNBIASED_CASES,
                         ids=[f"{k}-{'rho' if v else 'no-rho'}" for k, v, _ in UNBIASED_CASES])
def test_uoro_is_unbiased(kind, variance_reduction, draws):
    """The mean of many draws is the BPTT gradient within z standard errors in every entry, z from a
    family-wise false-alarm rate of 1e-3 split over the entries (Bonferroni). The draws are seeded, so the
    test is deterministic; the margin is the sampling error, not a constant."""
    cell, params, xs, state0, dhs = make_kind_problem(kind, (4, 2, 2, 2, None), seed=2)
    z = _z_scores(cell, params, xs, state0, dhs, draws=draws, seed=kind, variance_reduction=variance_reduction)
    assert np.max(np.abs(z)) <= _z_threshold(z.size), (np.max(np.abs(z)), _z_threshold(z.size))


def test_the_statistic_rejects_signs_with_a_nonzero_mean(monkeypatch):
    """The same statistic rejects UORO whose signs are +1 with probability 0.8: E[nu] != 0 and E[nu nu^T] != I,
    so the cross terms of the proof no longer vanish (the estimator is biased)."""
    def biased_signs(rng, like):
        return np.where(rng.random(like.shape) < 0.8, 1.0, -1.0)

    monkeypatch.setattr(uoro, "_signs", biased_signs)
    cell, params, xs, state0, dhs = make_kind_problem("elman-tanh", (4, 2, 2, 2, None), seed=2)
    z = _z_scores(cell, params, xs, state0, dhs, draws=1000, seed="biased")
    assert np.max(np.abs(z)) > _z_threshold(z.size), np.max(np.abs(z))


# ----- the online loop -------------------------------------------------------------------------------------------
ONLINE_MODELS = [(Elman(2, 3), "mse", True), (LSTM(2, 3), "cross_entropy", True),
                 (Jordan(2, 3, n_out=2), "mse", False)]
ONLINE_IDS = ["elman-mse", "lstm-cross-entropy", "jordan-no-readout"]


def _stream(cell, T, B, *, loss, readout, seed):
    rng = seeded("uoro stream", repr(cell), T, B, loss, seed)
    params = init_model(cell, 2, rng) if readout else cell.init_params(rng)
    xs = rng.normal(size=(T, B, cell.n_in))
    targets = rng.integers(0, 2, size=(T, B)) if loss == "cross_entropy" else rng.normal(size=(T, B, 2))
    return params, xs, targets, random_state(cell, rng, B)


def _one_shot(cell, params, xs, targets, state0, seed, *, loss, readout):
    """``uoro``'s draw for the gradient of the mean loss over the stream, with the readout's exact gradients."""
    cell_params, readout_params = split_params(cell, params, readout)
    hs, _ = bptt.forward(cell, cell_params, xs, state0)
    value, grads, dhs = output_loss_and_grads(readout_params, hs, targets, loss=loss)
    grads.update(uoro.uoro(cell, cell_params, xs, dhs, rng=seed, state0=state0))
    return value, grads


@pytest.mark.parametrize("T, k", [(7, 7), (7, 3), (6, 1), (4, 9)])
@pytest.mark.parametrize("cell, loss, readout", ONLINE_MODELS, ids=ONLINE_IDS)
def test_online_updates_add_up_to_the_one_shot_draw(cell, loss, readout, T, k):
    """With the parameters held still and the same seed, the updates' gradients weighted by their numbers of
    steps add up to T times the one-shot draw (the tangents run on across updates); ceil(T / k) updates; the
    parameters are unchanged; the losses are the windows' mean losses."""
    params, xs, targets, state0 = _stream(cell, T, 2, loss=loss, readout=readout, seed=1)
    saved = snapshot(params)
    recorder = RecordingOptimizer()
    history = uoro.online_uoro(cell, params, xs, targets, recorder, k1=k, rng=5, loss=loss, readout=readout,
                               state0=state0)
    assert_unchanged(saved, params)
    counts = [min(k, T - j * k) for j in range(math.ceil(T / k))]
    assert history.steps == len(recorder.grads) == len(counts)
    value, want = _one_shot(cell, params, xs, targets, state0, 5, loss=loss, readout=readout)
    for key in params:
        total = sum(n * g[key] for n, g in zip(counts, recorder.grads))
        assert_allclose(total, T * want[key], **TIGHT, err_msg=key)
    assert sum(n * v for n, v in zip(counts, history.losses)) == pytest.approx(T * value, rel=1e-12)
    norms = [math.sqrt(sum(float(np.sum(g[key] ** 2)) for key in g)) for g in recorder.grads]
    assert_allclose(history.grad_norms, norms, rtol=1e-12)


def test_online_sgd_takes_the_draw_as_its_step():
    cell = Elman(2, 3)
    params, xs, targets, state0 = _stream(cell, 5, 2, loss="mse", readout=True, seed=2)
    before = {key: value.copy() for key, value in params.items()}
    _, want = _one_shot(cell, params, xs, targets, state0, 3, loss="mse", readout=True)
    uoro.online_uoro(cell, params, xs, targets, SGD(0.2), k1=5, rng=3, state0=state0)
    for key in params:
        assert_allclose(params[key], before[key] - 0.2 * want[key], **TIGHT, err_msg=key)


def test_online_clips_the_update_and_records_the_norm_before_clipping():
    cell = Elman(2, 3)
    params, xs, targets, state0 = _stream(cell, 6, 2, loss="mse", readout=True, seed=3)
    recorder = RecordingOptimizer()
    history = uoro.online_uoro(cell, params, xs, targets, recorder, k1=3, rng=0, state0=state0, clip=1e-3)
    unclipped = uoro.online_uoro(cell, params, xs, targets, RecordingOptimizer(), k1=3, rng=0, state0=state0)
    assert history.grad_norms == unclipped.grad_norms
    for grads, norm in zip(recorder.grads, history.grad_norms):
        assert norm > 1e-3 and math.sqrt(sum(float(np.sum(g ** 2)) for g in grads.values())) <= 1e-3 * (1 + 1e-9)


def test_online_does_not_modify_the_stream():
    cell = LSTM(2, 3)
    params, xs, targets, state0 = _stream(cell, 5, 2, loss="mse", readout=True, seed=4)
    saved = snapshot(xs, targets, state0)
    uoro.online_uoro(cell, params, xs, targets, SGD(0.1), k1=2, rng=0, state0=state0)
    assert_unchanged(saved, xs, targets, state0)
    assert all(np.all(np.isfinite(part)) for part in state_parts(state0))


# ----- bad input -------------------------------------------------------------------------------------------------
def _bad_input_cases():
    cell = make_cell("elman-tanh", 2, 3)
    rng = seeded("uoro bad input")
    params = cell.init_params(rng)
    T, B = 4, 2
    xs, dhs = rng.normal(size=(T, B, 2)), rng.normal(size=(T, B, 3))
    model = init_model(cell, 2, rng)
    targets = rng.normal(size=(T, B, 2))

    def online(**kw):
        args = dict(targets=targets, k=2, optimizer=SGD(0.1), rng=0) | kw
        options = {key: kw[key] for key in ("loss", "clip", "state0", "readout") if key in kw}
        return lambda: uoro.online_uoro(cell, model, xs, args["targets"], args["optimizer"], k1=args["k"],
                                        rng=args["rng"], **options)

    return [
        ("cell", lambda: uoro.uoro("elman", params, xs, dhs, rng=0), "cell must be a companion.cells.Cell"),
        ("rng", lambda: uoro.uoro(cell, params, xs, dhs, rng="seed"), "rng must be a numpy Generator"),
        ("rng-float", lambda: uoro.uoro(cell, params, xs, dhs, rng=1.5), "rng must be a numpy Generator"),
        ("dhs-shape", lambda: uoro.uoro(cell, params, xs, dhs[:-1], rng=0), "dhs must have shape"),
        ("dhs-nan", lambda: uoro.uoro(cell, params, xs, np.full_like(dhs, np.nan), rng=0), "dhs contains"),
        ("xs-width", lambda: uoro.uoro(cell, params, xs[..., :1], dhs, rng=0), "xs must have shape"),
        ("xs-empty", lambda: uoro.uoro(cell, params, xs[:0], dhs[:0], rng=0), "xs must have T >= 1"),
        ("params-keys", lambda: uoro.uoro(cell, {"W_xh": params["W_xh"]}, xs, dhs, rng=0), "params must have"),
        ("state0-shape", lambda: uoro.uoro(cell, params, xs, dhs, rng=0, state0=np.zeros((B, 4))),
         "state0 must have shape"),
        ("lstm-state0-tuple", lambda: uoro.uoro(LSTM(2, 3), LSTM(2, 3).init_params(0), xs, dhs, rng=0,
                                                state0=np.zeros((B, 3))), "state0 must be a tuple"),
        ("online-k1=0", online(k=0), "k1 must be a positive integer"),
        ("online-rng", online(rng=None), "rng must be a numpy Generator"),
        ("online-optimizer", online(optimizer="sgd"), "optimizer must have a step"),
        ("online-clip", online(clip=-1.0), "clip must be a finite positive number"),
        ("online-loss", online(loss="hinge"), "loss must be one of"),
        ("online-targets", online(targets=np.zeros((B, T, 2))), "targets must start with"),
        ("online-readout-keys", online(readout=False), "params must have exactly the keys"),
        ("online-state0", online(state0=np.zeros((B + 1, 3))), "state0 must have shape"),
    ]


BAD_INPUT = _bad_input_cases()


@pytest.mark.parametrize("call, message", [case[1:] for case in BAD_INPUT], ids=[case[0] for case in BAD_INPUT])
def test_bad_input_is_a_value_error_naming_the_argument(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_inputs_are_not_modified():
    cell, params, xs, state0, dhs = make_kind_problem("lstm", (4, 2, 2, 3, None), seed=5)
    saved = snapshot(params, xs, state0, dhs)
    uoro.uoro(cell, params, xs, dhs, rng=0, state0=state0)
    assert_unchanged(saved, params, xs, state0, dhs)
