"""The adding problem (``companion.tasks.adding_problem``) and the loss on the last step only
(``sequence_loss_and_grads(..., last_step_only=True)``): shapes, markers, targets, determinism, the
baselines the chapter derives, gradients against finite differences, bad input."""
import numpy as np
import pytest

from companion import bptt
from companion.cells import GRU, LSTM, Elman
from companion.gradcheck import numerical_gradient, relative_error
from companion.losses import mse
from companion.model import init_model, predict, sequence_loss_and_grads
from companion.readout import readout_backward, readout_forward
from companion.tasks import adding_problem


def _marker_steps(xs):
    """The steps (p, q) of the two markers of every sequence, each (B,)."""
    sequence, step = np.nonzero(xs[..., 1].T)                                    # row-major: by sequence
    assert np.array_equal(sequence, np.repeat(np.arange(xs.shape[1]), 2))        # two per sequence
    pairs = step.reshape(-1, 2)                                                  # (B, 2), p < q
    return pairs[:, 0], pairs[:, 1]


# ----- the task ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("batch, steps", [(1, 2), (1, 3), (5, 2), (7, 11), (4, 50)])
def test_shapes_markers_and_targets(batch, steps):
    xs, targets = adding_problem(np.random.default_rng(3), batch=batch, steps=steps)
    assert xs.shape == (steps, batch, 2) and targets.shape == (batch, 1)
    assert xs.dtype == targets.dtype == np.float64
    values, markers = xs[..., 0], xs[..., 1]                                     # (T, B) each
    assert np.all((values >= 0.0) & (values < 1.0))
    assert set(np.unique(markers)) <= {0.0, 1.0}
    np.testing.assert_array_equal(markers.sum(axis=0), 2.0)                      # exactly two markers
    half = steps // 2
    np.testing.assert_array_equal(markers[:half].sum(axis=0), 1.0)               # one in the first half
    np.testing.assert_array_equal(markers[half:].sum(axis=0), 1.0)               # one in the rest
    np.testing.assert_array_equal(targets[:, 0], (values * markers).sum(axis=0)) # the marked sum
    first, second = _marker_steps(xs)
    columns = np.arange(batch)
    np.testing.assert_allclose(targets[:, 0], values[first, columns] + values[second, columns], rtol=0, atol=0)


def test_determinism():
    xs, targets = adding_problem(np.random.default_rng(11), batch=6, steps=9)
    xs2, targets2 = adding_problem(11, batch=6, steps=9)
    np.testing.assert_array_equal(xs, xs2)
    np.testing.assert_array_equal(targets, targets2)
    assert not np.array_equal(xs, adding_problem(12, batch=6, steps=9)[0])
    rng = np.random.default_rng(11)
    first, second = adding_problem(rng, batch=6, steps=9), adding_problem(rng, batch=6, steps=9)
    assert not np.array_equal(first[0], second[0])                              # a generator moves on


def test_marker_steps_are_uniform_in_each_half():
    steps = 7                                                                    # halves: 0..2 and 3..6
    xs, _ = adding_problem(0, batch=7000, steps=steps)
    first, second = _marker_steps(xs)
    np.testing.assert_allclose(np.bincount(first, minlength=3) / 7000, 1 / 3, atol=0.03)
    np.testing.assert_allclose(np.bincount(second, minlength=7)[3:] / 7000, 1 / 4, atol=0.03)
    assert first.max() == 2 and second.min() == 3


def test_the_baselines_of_the_chapter_hold_on_a_large_sample():
    # predicting 1 has mean squared error Var(u_p + u_q) = 1/6; predicting u_q + 1/2 (the second value
    # alone) has Var(u_p) = 1/12. The standard error of either mean is below 0.0005 for 200 000 sequences.
    xs, targets = adding_problem(2026, batch=200_000, steps=4)
    s = targets[:, 0]
    assert abs(np.mean((s - 1.0) ** 2) - 1 / 6) < 0.002
    _, second = _marker_steps(xs)
    u_q = xs[second, np.arange(s.size), 0]
    assert abs(np.mean((s - (u_q + 0.5)) ** 2) - 1 / 12) < 0.002
    assert abs(np.mean(s) - 1.0) < 0.004


def test_adding_problem_rejects_bad_input():
    with pytest.raises(ValueError, match="steps"):
        adding_problem(0, batch=2, steps=1)                                      # no room for two halves
    with pytest.raises(ValueError, match="steps"):
        adding_problem(0, batch=2, steps=0)
    with pytest.raises(ValueError, match="steps"):
        adding_problem(0, batch=2, steps=2.5)
    with pytest.raises(ValueError, match="batch"):
        adding_problem(0, batch=0, steps=4)
    with pytest.raises(ValueError, match="rng"):
        adding_problem(None, batch=2, steps=4)
    with pytest.raises(TypeError):
        adding_problem(0, 2, 4)                                                  # keyword-only


# ----- the loss on the last step only ------------------------------------------------------------------
CELLS = [
    pytest.param(lambda: Elman(2, 3), id="elman"),
    pytest.param(lambda: LSTM(2, 3), id="lstm"),
    pytest.param(lambda: GRU(2, 3, variant="torch"), id="gru-torch"),
    pytest.param(lambda: GRU(2, 3, variant="cho"), id="gru-cho"),
]


def _split(cell, params):
    return {k: params[k] for k in cell.param_shapes()}, {k: params[k] for k in ("W_hy", "b_y")}


@pytest.mark.parametrize("make_cell", CELLS)
@pytest.mark.parametrize("T, B", [(1, 1), (2, 1), (5, 3)])
def test_last_step_loss_matches_finite_differences(make_cell, T, B):
    rng = np.random.default_rng(T * 10 + B)
    cell = make_cell()
    params = init_model(cell, 1, rng)
    xs, targets = adding_problem(rng, batch=B, steps=max(T, 2))
    xs = xs[:T]
    state0 = cell.initial_state(B)
    state0 = tuple(rng.normal(scale=0.5, size=s.shape) for s in state0) if isinstance(state0, tuple) \
        else rng.normal(scale=0.5, size=state0.shape)

    def f(p):
        return sequence_loss_and_grads(cell, p, xs, targets, state0=state0, last_step_only=True)

    loss, grads = f(params)
    assert list(grads) == list(params)
    numeric = numerical_gradient(lambda p: f(p)[0], params)
    for key in params:
        assert grads[key].shape == params[key].shape
        assert relative_error(grads[key], numeric[key]) < 1e-7, key


@pytest.mark.parametrize("make_cell", CELLS)
def test_last_step_loss_is_bptt_with_zero_direct_gradients_before_T(make_cell):
    rng = np.random.default_rng(5)
    cell = make_cell()
    params = init_model(cell, 1, rng)
    xs, targets = adding_problem(rng, batch=4, steps=6)
    loss, grads = sequence_loss_and_grads(cell, params, xs, targets, last_step_only=True)
    # the same by hand: y_T = W_hy h_T + b_y, L = mean((y_T - s)^2), dL/dh_t = 0 for t < T
    cell_params, readout_params = _split(cell, params)
    hs, cache = bptt.forward(cell, cell_params, xs)
    y_T = readout_forward(readout_params, hs[-1:])                               # (1, B, 1)
    expected_loss, dy_T = mse(y_T, targets[None])
    readout_grads, dh_T = readout_backward(readout_params, hs[-1:], dy_T)
    dhs = np.zeros_like(hs)
    dhs[-1] = dh_T[0]
    cell_grads, _, _ = bptt.backward(cell, cell_params, cache, dhs)
    assert loss == expected_loss
    np.testing.assert_allclose(loss, np.mean((predict(cell, params, xs)[-1] - targets) ** 2), rtol=1e-14)
    for key, value in {**cell_grads, **readout_grads}.items():
        np.testing.assert_array_equal(grads[key], value)


def test_last_step_only_equals_the_full_loss_when_T_is_1():
    rng = np.random.default_rng(6)
    cell = Elman(2, 3)
    params = init_model(cell, 2, rng)
    xs, targets = rng.normal(size=(1, 3, 2)), rng.normal(size=(1, 3, 2))
    full = sequence_loss_and_grads(cell, params, xs, targets)
    last = sequence_loss_and_grads(cell, params, xs, targets[0], last_step_only=True)
    assert full[0] == last[0]
    for key in params:
        np.testing.assert_array_equal(full[1][key], last[1][key])


def test_last_step_only_cross_entropy_matches_finite_differences():
    rng = np.random.default_rng(7)
    cell = GRU(3, 4)
    params = init_model(cell, 3, rng)
    xs, labels = rng.normal(size=(4, 2, 3)), rng.integers(0, 3, size=2)

    def f(p):
        return sequence_loss_and_grads(cell, p, xs, labels, loss="cross_entropy", last_step_only=True)

    numeric = numerical_gradient(lambda p: f(p)[0], params)
    grads = f(params)[1]
    for key in params:
        assert relative_error(grads[key], numeric[key]) < 1e-7, key


def test_last_step_only_rejects_targets_of_every_step():
    cell = Elman(2, 3)
    params = init_model(cell, 1, 0)
    xs, targets = adding_problem(0, batch=2, steps=4)
    with pytest.raises(ValueError, match=r"targets must have shape \(B, n_out\)"):
        sequence_loss_and_grads(cell, params, xs, np.zeros((4, 2, 1)), last_step_only=True)
    with pytest.raises(ValueError, match="targets"):
        sequence_loss_and_grads(cell, params, xs, np.zeros((3, 1)), last_step_only=True)   # B = 3, not 2
    with pytest.raises(ValueError, match=r"targets must have shape \(B,\)"):
        sequence_loss_and_grads(cell, params, xs, np.zeros((2, 1), dtype=int), loss="cross_entropy",
                                last_step_only=True)
