"""The step loop against torch autograd in float64, for every cell, and the weight exchange of
``companion.torch_ref`` for every cell torch has a module for.

Two torch references (tests/torch_reference.py): the torch.nn modules through ``companion.torch_ref``
(Elman tanh/relu, LSTM, torch GRU), and the cells' equations written with torch ops in a Python loop
(every cell: also the linear Elman network, the Jordan network and the Cho GRU, which torch lacks). The
loop also guards against a mistake shared by the cells and torch_ref's weight mapping. The other
gradient methods are pinned to the step loop in test_gradient_methods.py. The gated cells' stacked
gates and refusals are in test_gated_torch_ref.py.
"""
from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

torch = pytest.importorskip("torch")

from companion import bptt  # noqa: E402
from companion.cells import LSTM, Elman, Jordan  # noqa: E402
from companion.torch_ref import from_torch, rnn_autograd_gradients, to_torch  # noqa: E402

from helpers import (  # noqa: E402
    KIND_SHAPES,
    TIGHT,
    analytic_gradients,
    kind_cases,
    make_cell,
    make_kind_problem,
    random_state,
    seeded,
    state_parts,
)
from torch_reference import (  # noqa: E402
    assert_loads_back_exactly,
    assert_same_gradients,
    loop_gradients,
    module_arrays,
    module_gradients,
    random_module,
    run_module,
)

MODULE_KINDS = ["elman-tanh", "elman-relu", "lstm", "gru-torch"]     # the cells torch has a module for
ZERO_STATE = pytest.mark.parametrize("zero_state", [False, True], ids=["state0", "zero-state0"])


# ----- the step loop against torch autograd ----------------------------------------------------------------
@pytest.mark.parametrize("dhs_kind", ["random", "last"])
@ZERO_STATE
@pytest.mark.parametrize("kind, shape", kind_cases(KIND_SHAPES, MODULE_KINDS))
def test_step_loop_matches_the_torch_module(kind, shape, zero_state, dhs_kind):
    cell, params, xs, state0, dhs = make_kind_problem(kind, shape, zero_state=zero_state, dhs_kind=dhs_kind)
    assert_same_gradients(analytic_gradients(cell, params, xs, state0, dhs),
                          module_gradients(cell, params, xs, state0, dhs))


@ZERO_STATE
@pytest.mark.parametrize("kind, shape", kind_cases(KIND_SHAPES))
def test_step_loop_matches_the_torch_loop(kind, shape, zero_state):
    """With a gradient on the final state (every part of it) and a direct gradient at every step, and
    without it with a direct gradient at the first step only."""
    cell, params, xs, state0, dhs = make_kind_problem(kind, shape, zero_state=zero_state)
    g = random_state(cell, seeded("loop final", kind, *shape[:4]), xs.shape[1])
    first = dhs.copy()
    first[1:] = 0.0
    for d, g_final in [(dhs, g), (first, None)]:
        assert_same_gradients(analytic_gradients(cell, params, xs, state0, d, d_final_state=g_final),
                              loop_gradients(cell, params, xs, state0, d, g_final))


@pytest.mark.parametrize("kind", MODULE_KINDS)
def test_the_torch_module_matches_the_torch_loop(kind):
    """``rnn_autograd_gradients`` (weights copied by ``to_torch``) and the loop agree without the companion
    in between; its loss is sum(hs * dhs): the gradients are linear in dhs and vanish with it."""
    cell, params, xs, state0, dhs = make_kind_problem(kind, (4, 2, 3, 2, None))
    hs, grads = module_gradients(cell, params, xs, state0, dhs)
    assert_same_gradients((hs, grads), loop_gradients(cell, params, xs, state0, dhs))
    hs2, grads2 = module_gradients(cell, params, xs, state0, 2.0 * dhs)
    assert_array_equal(hs2, hs)
    for key in grads:
        assert_allclose(grads2[key], 2.0 * grads[key], **TIGHT, err_msg=key)
    _, zero = module_gradients(cell, params, xs, state0, np.zeros_like(dhs))
    assert all(not np.any(value) for value in zero.values())


@pytest.mark.parametrize("kind", MODULE_KINDS)
def test_rnn_autograd_gradients_starts_from_zeros_without_state0(kind):
    """``state0`` is optional, as in ``bptt.forward``: omitted, it is the zero state."""
    cell, params, xs, _, dhs = make_kind_problem(kind, (3, 2, 2, 3, None))
    omitted = rnn_autograd_gradients(cell, params, xs, dhs)
    zeros = rnn_autograd_gradients(cell, params, xs, dhs, cell.initial_state(xs.shape[1]))
    for got, want in zip(omitted[:3], zeros[:3]):
        if isinstance(got, dict):
            for key in got:
                assert_array_equal(got[key], want[key], err_msg=key)
        else:
            assert_array_equal(got, want)


def test_rnn_autograd_gradients_checks_its_arrays():
    cell = Elman(2, 3)
    params, xs, dhs = cell.init_params(0), np.zeros((4, 2, 2)), np.zeros((4, 2, 3))
    with pytest.raises(ValueError, match=r"dhs must have shape \(T, B, n_hidden\)"):
        rnn_autograd_gradients(cell, params, xs, dhs[:, :1])
    with pytest.raises(ValueError, match=r"xs must have shape \(T, B, n_in\)"):
        rnn_autograd_gradients(cell, params, xs[..., :1], dhs)
    with pytest.raises(ValueError, match="state0 must have shape"):
        rnn_autograd_gradients(cell, params, xs, dhs, np.zeros((3, 3)))


# ----- weight exchange ---------------------------------------------------------------------------------------
def _expected_torch_arrays(cell, params) -> dict:
    """The torch layout, written out: gates stacked in torch's order, a bias torch splits in two goes
    whole into bias_ih (bias_hh zero), except the GRU candidate's b_xn / b_hn."""
    H = cell.n_hidden
    if isinstance(cell, Elman):
        return {"weight_ih_l0": params["W_xh"], "weight_hh_l0": params["W_hh"], "bias_ih_l0": params["b_h"],
                "bias_hh_l0": np.zeros(H)}
    gates = "ifgo" if isinstance(cell, LSTM) else "rzn"
    arrays = {"weight_ih_l0": np.concatenate([params[f"W_x{q}"] for q in gates]),
              "weight_hh_l0": np.concatenate([params[f"W_h{q}"] for q in gates])}
    if isinstance(cell, LSTM):
        return {**arrays, "bias_ih_l0": np.concatenate([params[f"b_{q}"] for q in gates]),
                "bias_hh_l0": np.zeros(4 * H)}
    return {**arrays, "bias_ih_l0": np.concatenate([params["b_r"], params["b_z"], params["b_xn"]]),
            "bias_hh_l0": np.concatenate([np.zeros(2 * H), params["b_hn"]])}


MODULE_CLASSES = {"elman-tanh": torch.nn.RNN, "elman-relu": torch.nn.RNN, "lstm": torch.nn.LSTM,
                  "gru-torch": torch.nn.GRU}


@pytest.mark.parametrize("n_in, H", [(1, 1), (3, 2), (2, 4)])
@pytest.mark.parametrize("kind", MODULE_KINDS)
def test_round_trip_is_exact_and_in_torch_layout(kind, n_in, H):
    cell = make_cell(kind, n_in, H)
    params = cell.init_params(seeded("round trip", kind, n_in, H))
    module = to_torch(cell, params)
    assert type(module) is MODULE_CLASSES[kind] and module.weight_ih_l0.dtype == torch.float64
    if isinstance(cell, Elman):
        assert module.nonlinearity == cell.nonlinearity
    arrays = module_arrays(module)
    for name, expected in _expected_torch_arrays(cell, params).items():
        assert_array_equal(arrays[name], expected, err_msg=name)
    assert_loads_back_exactly(cell, module, params)


@pytest.mark.parametrize("kind", MODULE_KINDS)
def test_to_torch_copies_and_float32_rounds_once(kind):
    cell = make_cell(kind, 3, 2)
    params = cell.init_params(1)
    saved = {key: value.copy() for key, value in params.items()}
    module = to_torch(cell, params)
    with torch.no_grad():                                   # training the module ...
        module.weight_hh_l0.add_(1.0)
        module.bias_hh_l0.add_(1.0)
    for key in params:
        assert_array_equal(params[key], saved[key], err_msg=key)   # ... leaves the companion's params alone
    module32 = to_torch(cell, params, dtype=torch.float32)
    assert module32.weight_ih_l0.dtype == torch.float32
    back = from_torch(cell, module32)
    for key in params:
        assert back[key].dtype == np.float64
        assert_array_equal(back[key], params[key].astype(np.float32).astype(np.float64), err_msg=key)


@pytest.mark.parametrize("kind, shape", kind_cases(KIND_SHAPES, MODULE_KINDS))
def test_from_torch_reads_both_biases_and_gives_the_module_outputs(kind, shape):
    """A torch module with random weights and two non-zero bias vectors, read by ``from_torch``, gives the
    module's outputs and final states: gate order and bias handling are torch's. A bias that only ever
    appears as a sum (Elman, every LSTM gate, the GRU's r and z) is read as the sum of the two."""
    T, B, n_in, H, _ = shape
    rng = seeded("both biases", kind, T, B, n_in, H)
    cell = make_cell(kind, n_in, H)
    module = random_module(cell, rng)
    params = from_torch(cell, module)
    arrays = module_arrays(module)
    gates = {"elman-tanh": "h", "elman-relu": "h", "lstm": "ifgo", "gru-torch": "rzn"}[kind]
    bias_ih = dict(zip(gates, np.split(arrays["bias_ih_l0"], len(gates))))
    bias_hh = dict(zip(gates, np.split(arrays["bias_hh_l0"], len(gates))))
    for q in gates.replace("n", ""):
        assert_array_equal(params[f"b_{q}"], bias_ih[q] + bias_hh[q], err_msg=q)
    if kind == "gru-torch":                                 # the candidate's two biases stay apart
        assert_array_equal(params["b_xn"], bias_ih["n"])
        assert_array_equal(params["b_hn"], bias_hh["n"])
    if kind.startswith("elman"):
        assert_array_equal(params["W_hh"], arrays["weight_hh_l0"])
    xs = rng.normal(size=(T, B, n_in))
    state0 = random_state(cell, rng, B)
    out, final = run_module(module, xs, state0)
    hs, cache = bptt.forward(cell, params, xs, state0, fused=False)
    assert_allclose(hs, out, **TIGHT)
    for ours, theirs in zip(state_parts(cache.final_state), state_parts(final), strict=True):
        assert_allclose(ours, theirs, **TIGHT)


# ----- refusals: what torch.nn.RNN cannot hold --------------------------------------------------------------
def test_to_torch_refuses_what_torch_nn_rnn_cannot_hold():
    with pytest.raises(ValueError, match="cell"):
        to_torch(Jordan(2, 3), Jordan(2, 3).init_params(0))
    linear = Elman(2, 3, nonlinearity="linear")
    with pytest.raises(ValueError, match="nonlinearity"):
        to_torch(linear, linear.init_params(0))
    with pytest.raises(ValueError, match="cell"):
        rnn_autograd_gradients(Jordan(1, 1), Jordan(1, 1).init_params(0), np.zeros((1, 1, 1)), np.zeros((1, 1, 1)))
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
