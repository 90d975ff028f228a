"""numpy vs torch autograd on copied weights (float64), and the weight exchange of ``companion.torch_ref``."""
from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

torch = pytest.importorskip("torch")

from companion import bptt  # noqa: E402
from companion.cells import Elman, Jordan  # noqa: E402
from companion.torch_ref import from_torch, rnn_autograd_gradients, to_torch  # noqa: E402

from helpers import (  # noqa: E402
    JORDAN_IDS,
    JORDAN_SHAPES,
    NONLINEARITIES,
    PATHS,
    SHAPES,
    SHAPE_IDS,
    TIGHT,
    analytic_gradients,
    assert_loads_back_exactly,
    make_elman_problem,
    make_jordan_problem,
    seeded,
)


def _leaf(array: np.ndarray):
    return torch.tensor(array, dtype=torch.float64, requires_grad=True)


def _torch_loop_gradients(step, params, xs, state0, dhs):
    """Run ``state = step(p, x_t, state)`` over the sequence with torch ops; loss sum(outputs * dhs).

    Returns ``(outputs, grads, dxs, dstate0)`` as numpy arrays, computed by autograd alone.
    """
    p = {key: _leaf(value) for key, value in params.items()}
    x, s0 = _leaf(xs), _leaf(state0)
    state, outputs = s0, []
    for t in range(xs.shape[0]):
        state = step(p, x[t], state)
        outputs.append(state)
    outputs = torch.stack(outputs)                                      # (T, B, width)
    (outputs * torch.from_numpy(dhs)).sum().backward()
    grads = {key: value.grad.numpy() for key, value in p.items()}
    return outputs.detach().numpy(), grads, x.grad.numpy(), s0.grad.numpy()


def _jordan_step(p, x_t, y_prev):
    """The Jordan equations of companion/cells/jordan.py, in torch."""
    h = torch.tanh(x_t @ p["W_xh"].T + y_prev @ p["W_yh"].T + p["b_h"])   # h_t = tanh(W_xh x + W_yh y + b_h)
    return torch.tanh(h @ p["W_hy"].T + p["b_y"])                         # y_t = tanh(W_hy h_t + b_y)


TORCH_PHI = {"tanh": torch.tanh, "relu": torch.relu, "linear": lambda a: a}


def _elman_step(nonlinearity):
    phi = TORCH_PHI[nonlinearity]
    return lambda p, x_t, h_prev: phi(x_t @ p["W_xh"].T + h_prev @ p["W_hh"].T + p["b_h"])


def _compare(ours_hs, ours_grads, ref):
    ref_hs, ref_grads, ref_dxs, ref_dstate0 = ref
    assert_allclose(ours_hs, ref_hs, **TIGHT)
    assert set(ref_grads) | {"xs", "state0"} == set(ours_grads)
    for key in ref_grads:
        assert_allclose(ours_grads[key], ref_grads[key], **TIGHT, err_msg=key)
    assert_allclose(ours_grads["xs"], ref_dxs, **TIGHT)
    assert_allclose(ours_grads["state0"], ref_dstate0, **TIGHT)


# ----- Elman vs torch.nn.RNN ---------------------------------------------------------------------------
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("dhs_kind", ["random", "last"])
@pytest.mark.parametrize("zero_state", [False, True], ids=["h0", "zero-h0"])
@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
@pytest.mark.parametrize("T, B, n_in, H", SHAPES, ids=SHAPE_IDS)
def test_elman_matches_torch_nn_rnn(T, B, n_in, H, nonlinearity, zero_state, dhs_kind, path):
    cell, params, xs, state0, dhs = make_elman_problem(T, B, n_in, H, nonlinearity, zero_state=zero_state,
                                                       dhs_kind=dhs_kind)
    hs, grads = analytic_gradients(cell, params, xs, state0, dhs, path=path)
    reference = rnn_autograd_gradients(cell, params, xs, state0, dhs)
    assert set(reference[1]) == {"W_xh", "W_hh", "b_h"}
    _compare(hs, grads, reference)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("zero_state", [False, True], ids=["h0", "zero-h0"])
@pytest.mark.parametrize("nonlinearity", NONLINEARITIES)
@pytest.mark.parametrize("T, B, n_in, H", SHAPES[::2], ids=SHAPE_IDS[::2])
def test_elman_matches_a_torch_loop(T, B, n_in, H, nonlinearity, zero_state, path):
    """The equations written with torch ops (this covers "linear", which torch.nn.RNN lacks)."""
    cell, params, xs, state0, dhs = make_elman_problem(T, B, n_in, H, nonlinearity, zero_state=zero_state)
    hs, grads = analytic_gradients(cell, params, xs, state0, dhs, path=path)
    _compare(hs, grads, _torch_loop_gradients(_elman_step(nonlinearity), params, xs, state0, dhs))


# ----- Jordan vs an independent torch implementation ----------------------------------------------------
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("dhs_kind", ["random", "first"])
@pytest.mark.parametrize("zero_state", [False, True], ids=["y0", "zero-y0"])
@pytest.mark.parametrize("T, B, n_in, H, n_out", JORDAN_SHAPES, ids=JORDAN_IDS)
def test_jordan_matches_torch_autograd(T, B, n_in, H, n_out, zero_state, dhs_kind, path):
    cell, params, xs, y0, dys = make_jordan_problem(T, B, n_in, H, n_out, zero_state=zero_state,
                                                    dhs_kind=dhs_kind)
    ys, grads = analytic_gradients(cell, params, xs, y0, dys, path=path)
    assert ys.shape == (T, B, cell.n_out)
    _compare(ys, grads, _torch_loop_gradients(_jordan_step, params, xs, y0, dys))


# ----- weight exchange ----------------------------------------------------------------------------------
@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
@pytest.mark.parametrize("n_in, H", [(1, 1), (3, 2), (2, 4)])
def test_to_torch_from_torch_round_trip_is_exact(n_in, H, nonlinearity):
    cell = Elman(n_in, H, nonlinearity=nonlinearity)
    params = cell.init_params(seeded("round trip", n_in, H, nonlinearity))
    module = to_torch(cell, params)
    assert isinstance(module, torch.nn.RNN) and module.nonlinearity == nonlinearity
    assert module.weight_ih_l0.dtype == torch.float64
    assert_array_equal(module.weight_ih_l0.detach().numpy(), params["W_xh"])
    assert_array_equal(module.weight_hh_l0.detach().numpy(), params["W_hh"])
    assert_array_equal(module.bias_ih_l0.detach().numpy(), params["b_h"])
    assert_array_equal(module.bias_hh_l0.detach().numpy(), np.zeros(H))
    assert_loads_back_exactly(cell, module, params)


def test_to_torch_copies_the_weights():
    cell = Elman(2, 3)
    params = cell.init_params(0)
    saved = {key: value.copy() for key, value in params.items()}
    module = to_torch(cell, params)
    with torch.no_grad():
        module.weight_hh_l0.add_(1.0)                       # training the module ...
    for key in params:
        assert_array_equal(params[key], saved[key])         # ... leaves the companion's params alone


def test_to_torch_float32_rounds_once():
    cell = Elman(3, 2)
    params = cell.init_params(1)
    module = to_torch(cell, params, dtype=torch.float32)
    assert module.weight_ih_l0.dtype == torch.float32
    back = from_torch(cell, module)
    for key in params:
        assert back[key].dtype == np.float64
        assert_array_equal(back[key], params[key].astype(np.float32).astype(np.float64))


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
@pytest.mark.parametrize("T, B, n_in, H", SHAPES, ids=SHAPE_IDS)
def test_from_torch_sums_the_two_biases(T, B, n_in, H, nonlinearity):
    """torch.nn.RNN adds bias_ih + bias_hh; the companion's single b_h is their sum, with the same outputs."""
    rng = seeded("two biases", T, B, n_in, H, nonlinearity)
    module = torch.nn.RNN(n_in, H, nonlinearity=nonlinearity, dtype=torch.float64)
    with torch.no_grad():
        for tensor in module.parameters():
            tensor.copy_(torch.from_numpy(rng.uniform(-1.0, 1.0, size=tuple(tensor.shape))))
    bias_ih, bias_hh = module.bias_ih_l0.detach().numpy().copy(), module.bias_hh_l0.detach().numpy().copy()
    assert np.all(bias_hh != 0.0)
    cell = Elman(n_in, H, nonlinearity=nonlinearity)
    params = from_torch(cell, module)
    assert_array_equal(params["b_h"], bias_ih + bias_hh)
    assert_array_equal(params["W_hh"], module.weight_hh_l0.detach().numpy())
    xs, h0 = rng.normal(size=(T, B, n_in)), rng.normal(size=(B, H))
    with torch.no_grad():
        out, h_n = module(torch.from_numpy(xs), torch.from_numpy(h0)[None])
    for path in PATHS:
        hs, cache = bptt.forward(cell, params, xs, h0, fused=(path == "fused"))
        assert_allclose(hs, out.numpy(), **TIGHT)
        assert_allclose(cache.final_state, h_n.numpy()[0], **TIGHT)


def test_to_torch_refuses_what_torch_nn_rnn_cannot_hold():
    with pytest.raises(ValueError, match="cell"):
        to_torch(Jordan(2, 3), Jordan(2, 3).init_params(0))
    linear = Elman(2, 3, nonlinearity="linear")
    with pytest.raises(ValueError, match="nonlinearity"):
        to_torch(linear, linear.init_params(0))
    with pytest.raises(ValueError, match="cell"):
        rnn_autograd_gradients(Jordan(1, 1), Jordan(1, 1).init_params(0), np.zeros((1, 1, 1)), np.zeros((1, 1)),
                               np.zeros((1, 1, 1)))
    cell = Elman(2, 3)
    with pytest.raises(ValueError, match="params"):
        to_torch(cell, Elman(3, 3).init_params(0))


@pytest.mark.parametrize(
    "module",
    [
        torch.nn.RNN(3, 3, dtype=torch.float64),                         # wrong n_in
        torch.nn.RNN(2, 4, dtype=torch.float64),                         # wrong hidden size
        torch.nn.RNN(2, 3, num_layers=2, dtype=torch.float64),           # two layers
        torch.nn.RNN(2, 3, bidirectional=True, dtype=torch.float64),
        torch.nn.RNN(2, 3, nonlinearity="relu", dtype=torch.float64),    # the cell is tanh
        torch.nn.RNN(2, 3, bias=False, dtype=torch.float64),
        torch.nn.GRU(2, 3, dtype=torch.float64),
        torch.nn.Linear(2, 3),
    ],
    ids=["n_in", "hidden", "layers", "bidirectional", "nonlinearity", "no-bias", "gru", "linear"],
)
def test_from_torch_refuses_a_module_that_does_not_fit(module):
    with pytest.raises(ValueError, match="module"):
        from_torch(Elman(2, 3), module)


def test_from_torch_refuses_a_jordan_cell():
    with pytest.raises(ValueError, match="cell"):
        from_torch(Jordan(2, 3), torch.nn.RNN(2, 3, dtype=torch.float64))


def test_rnn_autograd_gradients_loss_is_sum_hs_dhs():
    """The reference's hs are the module's outputs, and its gradients are linear in dhs."""
    cell, params, xs, state0, dhs = make_elman_problem(3, 2, 2, 3, "tanh", zero_state=False)
    hs, grads, dxs, dstate0 = rnn_autograd_gradients(cell, params, xs, state0, dhs)
    hs2, grads2, dxs2, dstate02 = rnn_autograd_gradients(cell, params, xs, state0, 2.0 * dhs)
    assert_array_equal(hs, hs2)
    for key in grads:
        assert_allclose(grads2[key], 2.0 * grads[key], **TIGHT)
    assert_allclose(dxs2, 2.0 * dxs, **TIGHT)
    assert_allclose(dstate02, 2.0 * dstate0, **TIGHT)
    _, zero_grads, zero_dxs, _ = rnn_autograd_gradients(cell, params, xs, state0, np.zeros_like(dhs))
    assert all(not np.any(value) for value in zero_grads.values()) and not np.any(zero_dxs)
    module = to_torch(cell, params)
    with torch.no_grad():
        out, _ = module(torch.from_numpy(xs), torch.from_numpy(state0)[None])
    assert_allclose(hs, out.numpy(), **TIGHT)

