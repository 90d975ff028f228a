"""Readout, losses and the cell + readout + loss model: hand-written gradients against finite
differences and torch autograd (float64), shapes, and bad input.

torch is optional: a test compares with it after its torch-free checks, and is skipped there without it.
"""
import numpy as np
import pytest

from companion.bptt import forward
from companion.cells import Elman, Jordan
from companion.gradcheck import numerical_gradient, relative_error
from companion.losses import mse, softmax, softmax_cross_entropy
from companion.model import init_model, predict, sequence_loss_and_grads
from companion.readout import init_readout, readout_backward, readout_forward

SIZES = [(1, 1, 1, 1), (1, 3, 4, 2), (5, 1, 3, 3), (4, 2, 3, 5)]  # (T, B, H, n_out)


def _torch():
    """``(torch, torch.nn.functional)``, or skip the rest of the test where torch is not installed."""
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F

    return torch, F


def _t(array):
    torch, _ = _torch()
    return torch.tensor(array, dtype=torch.float64, requires_grad=True)


# ----- readout ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("T, B, H, O", SIZES)
def test_readout_gradients_match_finite_differences(T, B, H, O):
    rng = np.random.default_rng(0)
    params, hs = init_readout(H, O, rng), rng.normal(size=(T, B, H))
    weights = rng.normal(size=(T, B, O))                      # L = sum(weights * ys), so dL/dys = weights
    d_params, dhs = readout_backward(params, hs, weights)
    point = {**params, "hs": hs}

    def loss(p):
        return float(np.sum(weights * readout_forward({"W_hy": p["W_hy"], "b_y": p["b_y"]}, p["hs"])))

    numeric = numerical_gradient(loss, point)
    for key in ("W_hy", "b_y"):
        assert relative_error(d_params[key], numeric[key]) < 1e-7
    assert relative_error(dhs, numeric["hs"]) < 1e-7


@pytest.mark.parametrize("T, B, H, O", SIZES)
def test_readout_matches_torch(T, B, H, O):
    rng = np.random.default_rng(1)
    params, hs = init_readout(H, O, rng), rng.normal(size=(T, B, H))
    dys = rng.normal(size=(T, B, O))
    torch, F = _torch()
    W, b, h = _t(params["W_hy"]), _t(params["b_y"]), _t(hs)
    y = F.linear(h, W, b)
    y.backward(torch.tensor(dys))
    d_params, dhs = readout_backward(params, hs, dys)
    np.testing.assert_allclose(readout_forward(params, hs), y.detach().numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(d_params["W_hy"], W.grad.numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(d_params["b_y"], b.grad.numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(dhs, h.grad.numpy(), rtol=1e-12, atol=1e-14)


def test_init_readout_shapes_scale_and_seed():
    params = init_readout(16, 3, 7)
    assert params["W_hy"].shape == (3, 16) and params["b_y"].shape == (3,)
    assert params["W_hy"].dtype == np.float64
    assert np.abs(params["W_hy"]).max() <= 0.25 and np.abs(params["b_y"]).max() <= 0.25  # 1/sqrt(16)
    again = init_readout(16, 3, np.random.default_rng(7))
    np.testing.assert_array_equal(params["W_hy"], again["W_hy"])


# ----- losses -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("T, B, _, O", SIZES)
def test_mse_gradient_matches_finite_differences_and_torch(T, B, _, O):
    rng = np.random.default_rng(2)
    ys, targets = rng.normal(size=(T, B, O)), rng.normal(size=(T, B, O))
    loss, dys = mse(ys, targets)
    numeric = numerical_gradient(lambda p: mse(p["ys"], targets)[0], {"ys": ys})["ys"]
    assert relative_error(dys, numeric) < 1e-7
    torch, F = _torch()
    y = _t(ys)
    reference = F.mse_loss(y, torch.tensor(targets))
    reference.backward()
    np.testing.assert_allclose(loss, reference.item(), rtol=1e-12)
    np.testing.assert_allclose(dys, y.grad.numpy(), rtol=1e-12, atol=1e-15)


def test_mse_is_the_mean_over_every_element():
    ys = np.zeros((2, 3, 4))
    targets = np.full((2, 3, 4), 2.0)
    assert mse(ys, targets)[0] == 4.0                                     # (0 - 2)^2 everywhere


@pytest.mark.parametrize("T, B, _, V", SIZES + [(3, 2, 0, 7)])
def test_cross_entropy_gradient_matches_finite_differences_and_torch(T, B, _, V):
    rng = np.random.default_rng(3)
    logits, targets = rng.normal(size=(T, B, V)), rng.integers(0, V, size=(T, B))
    loss, dlogits = softmax_cross_entropy(logits, targets)
    numeric = numerical_gradient(lambda p: softmax_cross_entropy(p["z"], targets)[0], {"z": logits})["z"]
    assert relative_error(dlogits, numeric) < 1e-7
    torch, F = _torch()
    z = _t(logits)
    reference = F.cross_entropy(z.reshape(T * B, V), torch.tensor(targets).reshape(T * B))
    reference.backward()
    np.testing.assert_allclose(loss, reference.item(), rtol=1e-12)
    np.testing.assert_allclose(dlogits, z.grad.numpy(), rtol=1e-10, atol=1e-15)


def test_cross_entropy_is_stable_for_large_logits():
    logits = np.array([[[1000.0, 0.0, -1000.0]], [[-800.0, 800.0, 0.0]]])  # (T=2, B=1, V=3)
    targets = np.array([[0], [2]])
    loss, dlogits = softmax_cross_entropy(logits, targets)                # pytest turns overflow warnings into errors
    np.testing.assert_allclose(loss, 400.0, rtol=1e-12)                   # (0 + 800) / 2
    np.testing.assert_allclose(dlogits, [[[0.0, 0.0, 0.0]], [[0.0, 0.5, -0.5]]], atol=1e-15)
    torch, F = _torch()
    z = _t(logits)
    np.testing.assert_allclose(loss, F.cross_entropy(z.reshape(2, 3), torch.tensor([0, 2])).item(), rtol=1e-12)


def test_softmax_matches_torch_and_is_stable():
    logits = np.random.default_rng(4).normal(size=(3, 2, 5)) * 300.0
    probs = softmax(logits)
    np.testing.assert_allclose(probs.sum(axis=-1), 1.0, rtol=1e-14)
    torch, _ = _torch()
    np.testing.assert_allclose(probs, torch.softmax(torch.tensor(logits), dim=-1).numpy(), rtol=1e-12, atol=1e-300)


def test_cross_entropy_unsigned_targets():
    logits = np.random.default_rng(5).normal(size=(2, 2, 3))
    signed = softmax_cross_entropy(logits, np.array([[0, 1], [2, 1]]))[0]
    assert softmax_cross_entropy(logits, np.array([[0, 1], [2, 1]], dtype=np.uint8))[0] == signed


# ----- the model: cell + readout + loss ----------------------------------------------------------------
def _model_gradcheck(cell, params, xs, targets, **options):
    loss, grads = sequence_loss_and_grads(cell, params, xs, targets, **options)
    assert list(grads) == list(params)
    numeric = numerical_gradient(lambda p: sequence_loss_and_grads(cell, p, xs, targets, **options)[0], params)
    for key in params:
        assert grads[key].shape == params[key].shape
        assert relative_error(grads[key], numeric[key]) < 1e-7, key
    return loss


@pytest.mark.parametrize("T, B", [(1, 1), (4, 1), (3, 2)])
def test_elman_model_mse_matches_finite_differences(T, B):
    rng = np.random.default_rng(6)
    cell = Elman(2, 3)
    params = init_model(cell, 2, rng)
    xs, targets = rng.normal(size=(T, B, 2)), rng.normal(size=(T, B, 2))
    state0 = rng.normal(size=(B, 3)) * 0.5
    _model_gradcheck(cell, params, xs, targets, loss="mse", state0=state0)


@pytest.mark.parametrize("T, B", [(1, 1), (5, 2)])
def test_elman_model_cross_entropy_matches_finite_differences(T, B):
    rng = np.random.default_rng(7)
    cell = Elman(4, 3)
    params = init_model(cell, 4, rng)
    xs, targets = rng.normal(size=(T, B, 4)), rng.integers(0, 4, size=(T, B))
    _model_gradcheck(cell, params, xs, targets, loss="cross_entropy")


@pytest.mark.parametrize("T, B", [(1, 1), (4, 3)])
def test_jordan_model_without_readout_matches_finite_differences(T, B):
    rng = np.random.default_rng(8)
    cell = Jordan(2, 4, n_out=3)
    params = cell.init_params(rng)
    xs, targets = rng.normal(size=(T, B, 2)), rng.normal(size=(T, B, 3)) * 0.5
    state0 = rng.normal(size=(B, 3)) * 0.5
    _model_gradcheck(cell, params, xs, targets, readout=False, state0=state0)


def test_model_loss_and_predict_agree_with_the_pieces():
    rng = np.random.default_rng(9)
    cell = Elman(2, 3)
    params = init_model(cell, 2, rng)
    xs, targets = rng.normal(size=(4, 2, 2)), rng.normal(size=(4, 2, 2))
    hs, _ = forward(cell, {k: params[k] for k in ("W_xh", "W_hh", "b_h")}, xs)
    ys = readout_forward({"W_hy": params["W_hy"], "b_y": params["b_y"]}, hs)
    np.testing.assert_array_equal(predict(cell, params, xs), ys)
    assert sequence_loss_and_grads(cell, params, xs, targets)[0] == mse(ys, targets)[0]
    np.testing.assert_array_equal(predict(cell, {k: params[k] for k in cell.param_shapes()}, xs, readout=False), hs)


def test_init_model_keys_and_seed():
    cell = Elman(2, 5)
    params = init_model(cell, 3, 11)
    assert sorted(params) == ["W_hh", "W_hy", "W_xh", "b_h", "b_y"]
    assert params["W_hy"].shape == (3, 5) and params["b_y"].shape == (3,)
    again = init_model(cell, 3, np.random.default_rng(11))
    for key in params:
        np.testing.assert_array_equal(params[key], again[key])
    rng = np.random.default_rng(11)                                            # the cell first, then the readout
    expected = {**cell.init_params(rng), **init_readout(5, 3, rng)}
    for key in params:
        np.testing.assert_array_equal(params[key], expected[key])


# ----- bad input ---------------------------------------------------------------------------------------
def test_readout_rejects_bad_input():
    params, hs = init_readout(3, 2, 0), np.zeros((4, 2, 3))
    with pytest.raises(ValueError, match="hs"):
        readout_forward(params, np.zeros((4, 2, 5)))                           # wrong H
    with pytest.raises(ValueError, match="hs"):
        readout_forward(params, np.zeros((2, 3)))                              # no time axis
    with pytest.raises(ValueError, match="hs"):
        readout_forward(params, np.full((4, 2, 3), np.nan))
    with pytest.raises(ValueError, match="b_y"):
        readout_forward({"W_hy": params["W_hy"], "b_y": np.zeros(3)}, hs)
    with pytest.raises(ValueError, match="params"):
        readout_forward({"W_hy": params["W_hy"]}, hs)
    with pytest.raises(ValueError, match="params"):
        readout_forward({**params, "extra": np.zeros(1)}, hs)
    with pytest.raises(ValueError, match="dys"):
        readout_backward(params, hs, np.zeros((4, 2, 3)))
    with pytest.raises(ValueError, match="n_out"):
        init_readout(3, 0, 0)
    with pytest.raises(ValueError, match="rng"):
        init_readout(3, 2, "seed")


def test_losses_reject_bad_input():
    with pytest.raises(ValueError, match="targets"):
        mse(np.zeros((2, 3, 1)), np.zeros((3, 2, 1)))
    with pytest.raises(ValueError, match="ys"):
        mse(np.array([[[np.nan]]]), np.zeros((1, 1, 1)))
    with pytest.raises(ValueError, match="targets"):
        mse(np.zeros((1, 1, 1)), np.array([[[np.inf]]]))
    logits = np.zeros((2, 3, 4))
    with pytest.raises(ValueError, match="targets"):
        softmax_cross_entropy(logits, np.zeros((2, 3)))                        # float ids
    with pytest.raises(ValueError, match="targets"):
        softmax_cross_entropy(logits, np.zeros((2, 3, 1), dtype=int))          # wrong shape
    with pytest.raises(ValueError, match="targets"):
        softmax_cross_entropy(logits, np.full((2, 3), 4))                      # id == V
    with pytest.raises(ValueError, match="targets"):
        softmax_cross_entropy(logits, np.full((2, 3), -1))
    with pytest.raises(ValueError, match="logits"):
        softmax_cross_entropy(np.zeros((2, 4)), np.zeros(2, dtype=int))
    with pytest.raises(ValueError, match="logits"):
        softmax_cross_entropy(np.full((1, 1, 2), np.nan), np.zeros((1, 1), dtype=int))
    with pytest.raises(ValueError, match="logits"):
        softmax(np.zeros((2, 0)))


def test_model_rejects_bad_input():
    rng = np.random.default_rng(10)
    cell = Elman(2, 3)
    params = init_model(cell, 1, rng)
    xs, targets = np.zeros((4, 2, 2)), np.zeros((4, 2, 1))
    with pytest.raises(ValueError, match="cell"):
        init_model(Jordan(2, 3), 1, rng)                                       # Jordan has W_hy and b_y
    with pytest.raises(ValueError, match="cell"):
        sequence_loss_and_grads(Jordan(2, 3), Jordan(2, 3).init_params(0), xs, targets)
    with pytest.raises(ValueError, match="cell"):
        init_model("elman", 1, rng)
    with pytest.raises(ValueError, match="params"):
        sequence_loss_and_grads(cell, {k: params[k] for k in cell.param_shapes()}, xs, targets)  # no readout
    with pytest.raises(ValueError, match="params"):
        predict(cell, params, xs, readout=False)                               # readout keys unexpected
    with pytest.raises(ValueError, match="loss"):
        sequence_loss_and_grads(cell, params, xs, targets, loss="hinge")
    with pytest.raises(ValueError, match="targets"):
        sequence_loss_and_grads(cell, params, xs, np.zeros((4, 2, 3)))
    with pytest.raises(ValueError, match="targets"):
        sequence_loss_and_grads(cell, params, xs, np.zeros((4, 2), dtype=int) + 1, loss="cross_entropy")
    with pytest.raises(ValueError, match="xs"):
        sequence_loss_and_grads(cell, params, np.zeros((4, 2, 3)), targets)
    with pytest.raises(ValueError, match="state0"):
        sequence_loss_and_grads(cell, params, xs, targets, state0=np.zeros((3, 3)))
