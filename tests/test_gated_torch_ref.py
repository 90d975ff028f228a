"""The gated cells against torch in float64: torch.nn.LSTM / torch.nn.GRU through ``companion.torch_ref``,
an independent torch implementation written here from the cells' docstring equations (which also covers
the Cho GRU, for which torch has no module), and the weight exchange: gate order, both bias vectors,
refusals."""
from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

torch = pytest.importorskip("torch")

from companion import bptt  # noqa: E402
from companion.cells import GRU, LSTM, Elman  # noqa: E402
from companion.torch_ref import from_torch, rnn_autograd_gradients, to_torch  # noqa: E402

from helpers import (  # noqa: E402
    GATED_KINDS,
    PATHS,
    SHAPES,
    SHAPE_IDS,
    TIGHT,
    analytic_gradients,
    assert_loads_back_exactly,
    forward,
    make_gated_cell,
    make_gated_problem,
    seeded,
    state_entries,
    state_parts,
)

TORCH_KINDS = ["lstm", "gru-torch"]          # the cells torch has a module for


# ----- an independent torch implementation, from the docstrings of lstm.py and gru.py ------------------
def _lstm_step(p, x_t, state):
    h_prev, c_prev = state
    i = torch.sigmoid(x_t @ p["W_xi"].T + h_prev @ p["W_hi"].T + p["b_i"])
    f = torch.sigmoid(x_t @ p["W_xf"].T + h_prev @ p["W_hf"].T + p["b_f"])
    g = torch.tanh(x_t @ p["W_xg"].T + h_prev @ p["W_hg"].T + p["b_g"])
    o = torch.sigmoid(x_t @ p["W_xo"].T + h_prev @ p["W_ho"].T + p["b_o"])
    c = f * c_prev + i * g
    h = o * torch.tanh(c)
    return h, (h, c)


def _gru_gates(p, x_t, h_prev):
    r = torch.sigmoid(x_t @ p["W_xr"].T + h_prev @ p["W_hr"].T + p["b_r"])
    z = torch.sigmoid(x_t @ p["W_xz"].T + h_prev @ p["W_hz"].T + p["b_z"])
    return r, z


def _gru_torch_step(p, x_t, h_prev):
    r, z = _gru_gates(p, x_t, h_prev)
    n = torch.tanh(x_t @ p["W_xn"].T + p["b_xn"] + r * (h_prev @ p["W_hn"].T + p["b_hn"]))   # reset after
    h = (1 - z) * n + z * h_prev
    return h, h


def _gru_cho_step(p, x_t, h_prev):
    r, z = _gru_gates(p, x_t, h_prev)
    n = torch.tanh(x_t @ p["W_xn"].T + (r * h_prev) @ p["W_hn"].T + p["b_n"])                 # reset before
    h = (1 - z) * n + z * h_prev
    return h, h


STEPS = {"lstm": _lstm_step, "gru-torch": _gru_torch_step, "gru-cho": _gru_cho_step}


def _leaf(array):
    return torch.tensor(array, dtype=torch.float64, requires_grad=True)


def _torch_loop_gradients(kind, params, xs, state0, dhs, g_final=None):
    """Autograd of L = sum(hs * dhs) + sum(final_state * g_final) through a Python loop of torch ops.

    Returns ``(hs, grads)`` in the layout of ``helpers.analytic_gradients``.
    """
    step = STEPS[kind]
    p = {key: _leaf(value) for key, value in params.items()}
    x = _leaf(xs)
    parts0 = [_leaf(part) for part in state_parts(state0)]
    state = tuple(parts0) if len(parts0) > 1 else parts0[0]
    outputs = []
    for t in range(xs.shape[0]):
        h, state = step(p, x[t], state)
        outputs.append(h)
    hs = torch.stack(outputs)
    loss = (hs * torch.from_numpy(dhs)).sum()
    if g_final is not None:
        for part, g in zip(state if isinstance(state, tuple) else (state,), state_parts(g_final)):
            loss = loss + (part * torch.from_numpy(g)).sum()
    loss.backward()
    dstate0 = tuple(part.grad.numpy() for part in parts0)
    grads = {**{key: value.grad.numpy() for key, value in p.items()}, "xs": x.grad.numpy(),
             **state_entries("state0", dstate0 if len(dstate0) > 1 else dstate0[0])}
    return hs.detach().numpy(), grads


def _compare(ours, reference):
    (hs, grads), (ref_hs, ref_grads) = ours, reference
    assert_allclose(hs, ref_hs, **TIGHT)
    assert set(grads) == set(ref_grads)
    for key in ref_grads:
        assert_allclose(grads[key], ref_grads[key], **TIGHT, err_msg=key)


def _final_gradient(cell, rng, B):
    g = tuple(rng.normal(size=(B, w)) for w in cell.state_widths)
    return g if len(g) > 1 else g[0]


# ----- against torch.nn.LSTM / torch.nn.GRU ------------------------------------------------------------
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("dhs_kind", ["random", "last"])
@pytest.mark.parametrize("zero_state", [False, True], ids=["state0", "zero-state0"])
@pytest.mark.parametrize("T, B, n_in, H", SHAPES, ids=SHAPE_IDS)
@pytest.mark.parametrize("kind", TORCH_KINDS)
def test_matches_the_torch_module(kind, T, B, n_in, H, zero_state, dhs_kind, path):
    cell, params, xs, state0, dhs = make_gated_problem(kind, T, B, n_in, H, zero_state=zero_state,
                                                       dhs_kind=dhs_kind)
    hs, grads = analytic_gradients(cell, params, xs, state0, dhs, path=path)
    ref_hs, ref_grads, ref_dxs, ref_dstate0 = rnn_autograd_gradients(cell, params, xs, state0, dhs)
    assert set(ref_grads) == set(cell.param_shapes())
    assert isinstance(ref_dstate0, tuple) == (kind == "lstm")
    _compare((hs, grads), (ref_hs, {**ref_grads, "xs": ref_dxs, **state_entries("state0", ref_dstate0)}))


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("zero_state", [False, True], ids=["state0", "zero-state0"])
@pytest.mark.parametrize("T, B, n_in, H", SHAPES, ids=SHAPE_IDS)
@pytest.mark.parametrize("kind", GATED_KINDS)
def test_matches_an_independent_torch_loop(kind, T, B, n_in, H, zero_state, path):
    """The docstring equations in torch ops, with a gradient on the final state too. This guards against
    a mistake shared by the cells and torch_ref's weight mapping, and is the Cho GRU's torch reference."""
    cell, params, xs, state0, dhs = make_gated_problem(kind, T, B, n_in, H, zero_state=zero_state)
    g = _final_gradient(cell, seeded("loop final", kind, T, B, n_in, H), B)
    ours = analytic_gradients(cell, params, xs, state0, dhs, path=path, d_final_state=g)
    _compare(ours, _torch_loop_gradients(kind, params, xs, state0, dhs, g))


@pytest.mark.parametrize("kind", TORCH_KINDS)
def test_the_torch_loop_matches_the_torch_module(kind):
    """The loop reference and torch.nn agree with each other, without the companion in between."""
    cell, params, xs, state0, dhs = make_gated_problem(kind, 4, 2, 3, 2, zero_state=False)
    ref_hs, ref_grads, ref_dxs, ref_dstate0 = rnn_autograd_gradients(cell, params, xs, state0, dhs)
    _compare((ref_hs, {**ref_grads, "xs": ref_dxs, **state_entries("state0", ref_dstate0)}),
             _torch_loop_gradients(kind, params, xs, state0, dhs))


# ----- weight exchange --------------------------------------------------------------------------------
def _module_arrays(module):
    return {name: getattr(module, name).detach().numpy().copy()
            for name in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0")}


@pytest.mark.parametrize("n_in, H", [(1, 1), (3, 2), (2, 4)])
def test_lstm_round_trip_is_exact_and_in_torch_gate_order(n_in, H):
    cell = LSTM(n_in, H)
    params = cell.init_params(seeded("lstm round trip", n_in, H))
    module = to_torch(cell, params)
    assert type(module) is torch.nn.LSTM and module.weight_ih_l0.dtype == torch.float64
    arrays = _module_arrays(module)
    assert_array_equal(arrays["weight_ih_l0"], np.concatenate([params[f"W_x{q}"] for q in "ifgo"]))
    assert_array_equal(arrays["weight_hh_l0"], np.concatenate([params[f"W_h{q}"] for q in "ifgo"]))
    assert_array_equal(arrays["bias_ih_l0"], np.concatenate([params[f"b_{q}"] for q in "ifgo"]))
    assert_array_equal(arrays["bias_hh_l0"], np.zeros(4 * H))
    assert_loads_back_exactly(cell, module, params)


@pytest.mark.parametrize("n_in, H", [(1, 1), (3, 2), (2, 4)])
def test_gru_round_trip_is_exact_and_in_torch_gate_order(n_in, H):
    cell = GRU(n_in, H)
    params = cell.init_params(seeded("gru round trip", n_in, H))
    module = to_torch(cell, params)
    assert type(module) is torch.nn.GRU and module.weight_ih_l0.dtype == torch.float64
    arrays = _module_arrays(module)
    assert_array_equal(arrays["weight_ih_l0"], np.concatenate([params[f"W_x{q}"] for q in "rzn"]))
    assert_array_equal(arrays["weight_hh_l0"], np.concatenate([params[f"W_h{q}"] for q in "rzn"]))
    assert_array_equal(arrays["bias_ih_l0"], np.concatenate([params["b_r"], params["b_z"], params["b_xn"]]))
    assert_array_equal(arrays["bias_hh_l0"], np.concatenate([np.zeros(2 * H), params["b_hn"]]))
    assert_loads_back_exactly(cell, module, params)


@pytest.mark.parametrize("kind", TORCH_KINDS)
def test_to_torch_copies_and_float32_rounds_once(kind):
    cell = make_gated_cell(kind, 3, 2)
    params = cell.init_params(1)
    saved = {key: value.copy() for key, value in params.items()}
    module = to_torch(cell, params)
    with torch.no_grad():
        module.weight_hh_l0.add_(1.0)
        module.bias_hh_l0.add_(1.0)
    for key in params:
        assert_array_equal(params[key], saved[key], err_msg=key)
    module32 = to_torch(cell, params, dtype=torch.float32)
    assert module32.weight_ih_l0.dtype == torch.float32
    back = from_torch(cell, module32)
    for key in params:
        assert back[key].dtype == np.float64
        assert_array_equal(back[key], params[key].astype(np.float32).astype(np.float64), err_msg=key)


def _random_module(kind, n_in, H, rng):
    """A torch module with every weight and BOTH bias vectors uniform in [-1, 1] (all non-zero)."""
    module = (torch.nn.LSTM if kind == "lstm" else torch.nn.GRU)(n_in, H, dtype=torch.float64)
    with torch.no_grad():
        for tensor in module.parameters():
            tensor.copy_(torch.from_numpy(rng.uniform(-1.0, 1.0, size=tuple(tensor.shape))))
    assert np.all(module.bias_ih_l0.detach().numpy() != 0.0) and np.all(module.bias_hh_l0.detach().numpy() != 0.0)
    return module


def _run_module(module, xs, state0):
    """The torch module's outputs and final state (without the layer axis), as numpy."""
    with torch.no_grad():
        if isinstance(module, torch.nn.LSTM):
            out, (h_n, c_n) = module(torch.from_numpy(xs), tuple(torch.from_numpy(s)[None] for s in state0))
            return out.numpy(), (h_n.numpy()[0], c_n.numpy()[0])
        out, h_n = module(torch.from_numpy(xs), torch.from_numpy(state0)[None])
        return out.numpy(), h_n.numpy()[0]


@pytest.mark.parametrize("T, B, n_in, H", SHAPES, ids=SHAPE_IDS)
@pytest.mark.parametrize("kind", TORCH_KINDS)
def test_from_torch_reads_gate_order_and_both_biases(kind, T, B, n_in, H):
    """A torch module with random weights and two non-zero bias vectors, read by from_torch, gives the
    module's outputs and final states: the gate order and the bias handling are torch's."""
    rng = seeded("gate order", kind, T, B, n_in, H)
    module = _random_module(kind, n_in, H, rng)
    cell = make_gated_cell(kind, n_in, H)
    params = from_torch(cell, module)
    arrays = _module_arrays(module)
    gates = "ifgo" if kind == "lstm" else "rzn"
    bias_ih = dict(zip(gates, np.split(arrays["bias_ih_l0"], len(gates))))
    bias_hh = dict(zip(gates, np.split(arrays["bias_hh_l0"], len(gates))))
    for q in ("ifgo" if kind == "lstm" else "rz"):        # biases that only ever appear as a sum
        assert_array_equal(params[f"b_{q}"], bias_ih[q] + bias_hh[q], err_msg=q)
    if kind == "gru-torch":                                # the candidate's two biases stay apart
        assert_array_equal(params["b_xn"], bias_ih["n"])
        assert_array_equal(params["b_hn"], bias_hh["n"])
    xs = rng.normal(size=(T, B, n_in))
    state0 = tuple(rng.normal(size=(B, H)) for _ in cell.state_widths)
    state0 = state0 if len(state0) > 1 else state0[0]
    out, final = _run_module(module, xs, state0)
    for path in PATHS:
        hs, cache = forward(cell, params, xs, state0, path)
        assert_allclose(hs, out, **TIGHT)
        for ours, theirs in zip(state_parts(cache.final_state), state_parts(final)):
            assert_allclose(ours, theirs, **TIGHT)


@pytest.mark.parametrize("kind", TORCH_KINDS)
def test_the_gate_order_check_can_fail(kind):
    """Controls for the test above: a swapped pair of gates, or (GRU) b_hn folded into b_xn, changes the
    outputs far beyond rounding, so agreement with the module really pins down the mapping."""
    T, B, n_in, H = 3, 2, 2, 3
    rng = seeded("gate order control", kind)
    module = _random_module(kind, n_in, H, rng)
    cell = make_gated_cell(kind, n_in, H)
    params = from_torch(cell, module)
    xs = rng.normal(size=(T, B, n_in))
    state0 = tuple(rng.normal(size=(B, H)) for _ in cell.state_widths)
    state0 = state0 if len(state0) > 1 else state0[0]
    out, _ = _run_module(module, xs, state0)
    a, b = ("i", "f") if kind == "lstm" else ("r", "z")
    swapped = dict(params)
    for prefix in ("W_x", "W_h", "b_"):
        swapped[prefix + a], swapped[prefix + b] = params[prefix + b], params[prefix + a]
    variants = [swapped]
    if kind == "gru-torch":                   # r multiplies b_hn: moving it out of the reset is different
        variants.append({**params, "b_xn": params["b_xn"] + params["b_hn"], "b_hn": np.zeros(H)})
    for wrong in variants:
        hs, _ = forward(cell, wrong, xs, state0)
        assert np.max(np.abs(hs - out)) > 1e-2


# ----- refusals ---------------------------------------------------------------------------------------
def test_to_torch_refuses_the_cho_variant():
    cho = GRU(2, 3, variant="cho")
    with pytest.raises(ValueError, match="variant"):
        to_torch(cho, cho.init_params(0))
    with pytest.raises(ValueError, match="variant"):
        rnn_autograd_gradients(cho, cho.init_params(0), np.zeros((1, 1, 2)), np.zeros((1, 3)),
                               np.zeros((1, 1, 3)))
    with pytest.raises(ValueError, match="variant"):
        from_torch(cho, torch.nn.GRU(2, 3, dtype=torch.float64))


@pytest.mark.parametrize("kind, wrong", [("lstm", "gru-torch"), ("gru-torch", "lstm")])
def test_to_torch_refuses_params_of_another_cell(kind, wrong):
    with pytest.raises(ValueError, match="^params"):
        to_torch(make_gated_cell(kind, 2, 3), make_gated_cell(wrong, 2, 3).init_params(0))


@pytest.mark.parametrize(
    "make_module",
    [
        lambda: torch.nn.GRU(2, 3, dtype=torch.float64),
        lambda: torch.nn.RNN(2, 3, dtype=torch.float64),
        lambda: torch.nn.LSTM(3, 3, dtype=torch.float64),
        lambda: torch.nn.LSTM(2, 4, dtype=torch.float64),
        lambda: torch.nn.LSTM(2, 3, num_layers=2, dtype=torch.float64),
        lambda: torch.nn.LSTM(2, 3, bidirectional=True, dtype=torch.float64),
        lambda: torch.nn.LSTM(2, 3, proj_size=2, dtype=torch.float64),
        lambda: torch.nn.LSTM(2, 3, bias=False, dtype=torch.float64),
        lambda: torch.nn.Linear(2, 3),
    ],
    ids=["gru-module", "rnn-module", "n_in", "hidden", "layers", "bidirectional", "proj_size", "no-bias",
         "linear"],
)
def test_from_torch_refuses_a_module_that_does_not_fit_an_lstm(make_module):
    with pytest.raises(ValueError, match="^module"):
        from_torch(LSTM(2, 3), make_module())


@pytest.mark.parametrize(
    "make_module",
    [
        lambda: torch.nn.LSTM(2, 3, dtype=torch.float64),
        lambda: torch.nn.RNN(2, 3, dtype=torch.float64),
        lambda: torch.nn.GRU(3, 3, dtype=torch.float64),
        lambda: torch.nn.GRU(2, 2, dtype=torch.float64),
        lambda: torch.nn.GRU(2, 3, num_layers=2, dtype=torch.float64),
        lambda: torch.nn.GRU(2, 3, bidirectional=True, dtype=torch.float64),
        lambda: torch.nn.GRU(2, 3, bias=False, dtype=torch.float64),
    ],
    ids=["lstm-module", "rnn-module", "n_in", "hidden", "layers", "bidirectional", "no-bias"],
)
def test_from_torch_refuses_a_module_that_does_not_fit_a_gru(make_module):
    with pytest.raises(ValueError, match="^module"):
        from_torch(GRU(2, 3), make_module())


def test_from_torch_an_lstm_module_with_the_wrong_cells():
    module = torch.nn.LSTM(2, 3, dtype=torch.float64)
    for cell in (GRU(2, 3), Elman(2, 3)):
        with pytest.raises(ValueError, match="^module must be a torch.nn.modules.rnn"):
            from_torch(cell, module)


def test_rnn_autograd_gradients_for_the_lstm_is_linear_in_dhs():
    cell, params, xs, state0, dhs = make_gated_problem("lstm", 3, 2, 2, 3, zero_state=False)
    hs, grads, dxs, (dh0, dc0) = rnn_autograd_gradients(cell, params, xs, state0, dhs)
    hs2, grads2, dxs2, (dh02, dc02) = rnn_autograd_gradients(cell, params, xs, state0, 2.0 * dhs)
    assert_array_equal(hs, hs2)
    for key in grads:
        assert_allclose(grads2[key], 2.0 * grads[key], **TIGHT, err_msg=key)
    assert_allclose(dxs2, 2.0 * dxs, **TIGHT)
    assert_allclose(dh02, 2.0 * dh0, **TIGHT)
    assert_allclose(dc02, 2.0 * dc0, **TIGHT)
    assert_allclose(hs, bptt.forward(cell, params, xs, state0)[0], **TIGHT)
