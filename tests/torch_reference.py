"""The torch reference of the tests: every cell's equations written once more with torch tensor ops
(from the docstrings of companion/cells/, not from their code), autograd through a Python loop of them,
and the helpers around ``companion.torch_ref`` (whose torch modules exist for the Elman network with
tanh or relu, the LSTM and the torch variant of the GRU only).

This module needs torch: a test module imports it after ``pytest.importorskip("torch")``. (The speed
benchmark, benchmarks/bptt_speed.py, keeps its own forward loop.)
"""
from __future__ import annotations

import numpy as np
import torch
from numpy.testing import assert_allclose, assert_array_equal

from companion.cells import GRU, LSTM, Elman, Jordan
from companion.torch_ref import from_torch, rnn_autograd_gradients

from helpers import TIGHT, state_entries, state_parts

TORCH_ARRAYS = ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0")


# ----- one step of each cell: (params, x_t, state) -> (h_t, state_t) ----------------------------------------
def elman_step(nonlinearity: str):
    """h_t = phi(W_xh x_t + W_hh h_{t-1} + b_h)."""
    phi = {"tanh": torch.tanh, "relu": torch.relu, "linear": lambda a: a}[nonlinearity]

    def step(p, x_t, h_prev):
        h = phi(x_t @ p["W_xh"].T + h_prev @ p["W_hh"].T + p["b_h"])
        return h, h

    return step


def jordan_step(p, x_t, y_prev):
    """h_t = tanh(W_xh x_t + W_yh y_{t-1} + b_h), y_t = tanh(W_hy h_t + b_y); the state is y_t."""
    h = torch.tanh(x_t @ p["W_xh"].T + y_prev @ p["W_yh"].T + p["b_h"])
    y = torch.tanh(h @ p["W_hy"].T + p["b_y"])
    return y, y


def lstm_step(p, x_t, state):
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


def gru_torch_step(p, x_t, h_prev):
    r, z = _gru_gates(p, x_t, h_prev)
    n = torch.tanh(x_t @ p["W_xn"].T + p["b_xn"] + r * (h_prev @ p["W_hn"].T + p["b_hn"]))   # reset after
    h = (1 - z) * n + z * h_prev
    return h, h


def gru_cho_step(p, x_t, h_prev):
    r, z = _gru_gates(p, x_t, h_prev)
    n = torch.tanh(x_t @ p["W_xn"].T + (r * h_prev) @ p["W_hn"].T + p["b_n"])                 # reset before
    h = (1 - z) * n + z * h_prev
    return h, h


def step_of(cell):
    """The torch step function of ``cell``."""
    if isinstance(cell, Elman):
        return elman_step(cell.nonlinearity)
    if isinstance(cell, Jordan):
        return jordan_step
    if isinstance(cell, LSTM):
        return lstm_step
    if isinstance(cell, GRU):
        return gru_torch_step if cell.variant == "torch" else gru_cho_step
    raise AssertionError(f"no torch reference for {cell!r}")


# ----- gradients, in the layout of helpers.analytic_gradients -------------------------------------------------
def _leaf(array):
    return torch.tensor(array, dtype=torch.float64, requires_grad=True)


def loop_gradients(cell, params, xs, state0, dhs, g_final=None):
    """Autograd of L = sum(hs * dhs) + sum(final_state * g_final) through a Python loop of ``step_of(cell)``.

    Returns ``(hs, grads)``: the params' keys, "xs" and the state0 entries, as numpy arrays.
    """
    step = step_of(cell)
    p = {key: _leaf(value) for key, value in params.items()}
    x = _leaf(xs)
    parts0 = [_leaf(part) for part in state_parts(state0)]
    state = tuple(parts0) if len(parts0) > 1 else parts0[0]
    outputs = []
    for t in range(xs.shape[0]):
        h, state = step(p, x[t], state)
        outputs.append(h)
    hs = torch.stack(outputs)                                           # (T, B, width)
    loss = (hs * torch.from_numpy(dhs)).sum()
    if g_final is not None:
        for part, g in zip(state_parts(state), state_parts(g_final), strict=True):
            loss = loss + (part * torch.from_numpy(g)).sum()
    loss.backward()
    dstate0 = tuple(part.grad.numpy() for part in parts0)
    grads = {**{key: value.grad.numpy() for key, value in p.items()}, "xs": x.grad.numpy(),
             **state_entries("state0", dstate0 if len(dstate0) > 1 else dstate0[0])}
    return hs.detach().numpy(), grads


def module_gradients(cell, params, xs, state0, dhs):
    """``(hs, grads)`` of ``companion.torch_ref.rnn_autograd_gradients`` (the torch.nn module and autograd)."""
    hs, grads, dxs, dstate0 = rnn_autograd_gradients(cell, params, xs, dhs, state0)
    return hs, {**grads, "xs": dxs, **state_entries("state0", dstate0)}


def assert_same_gradients(ours, reference):
    """Two ``(hs, grads)`` pairs agree to rounding, with the same keys."""
    (hs, grads), (ref_hs, ref_grads) = ours, reference
    assert_allclose(hs, ref_hs, **TIGHT)
    assert set(grads) == set(ref_grads)
    for key in ref_grads:
        assert_allclose(grads[key], ref_grads[key], **TIGHT, err_msg=key)


# ----- torch modules -----------------------------------------------------------------------------------------
def module_arrays(module) -> dict:
    """The four parameter arrays of a one-layer torch module, as numpy copies."""
    return {name: getattr(module, name).detach().numpy().copy() for name in TORCH_ARRAYS}


def random_module(cell, rng):
    """The torch module class of ``cell`` with every weight and BOTH bias vectors uniform in [-1, 1]."""
    if isinstance(cell, Elman):
        module = torch.nn.RNN(cell.n_in, cell.n_hidden, nonlinearity=cell.nonlinearity, dtype=torch.float64)
    else:
        module = (torch.nn.LSTM if isinstance(cell, LSTM) else torch.nn.GRU)(cell.n_in, cell.n_hidden,
                                                                             dtype=torch.float64)
    with torch.no_grad():
        for tensor in module.parameters():
            tensor.copy_(torch.from_numpy(rng.uniform(-1.0, 1.0, size=tuple(tensor.shape))))
    arrays = module_arrays(module)
    assert np.all(arrays["bias_ih_l0"] != 0.0) and np.all(arrays["bias_hh_l0"] != 0.0)
    return module


def run_module(module, xs, state0):
    """The torch module's outputs and final state (without the layer axis), as numpy."""
    with torch.no_grad():
        if isinstance(module, torch.nn.LSTM):
            out, (h_n, c_n) = module(torch.from_numpy(xs), tuple(torch.from_numpy(s)[None] for s in state0))
            return out.numpy(), (h_n.numpy()[0], c_n.numpy()[0])
        out, h_n = module(torch.from_numpy(xs), torch.from_numpy(state0)[None])
        return out.numpy(), h_n.numpy()[0]


def assert_loads_back_exactly(cell, module, params):
    """``from_torch`` returns float64 copies equal to ``params``, keyed and ordered as the cell's."""
    back = from_torch(cell, module)
    assert list(back) == list(cell.param_shapes())
    for key in params:
        assert back[key].dtype == np.float64
        assert_array_equal(back[key], params[key], err_msg=key)
        assert not np.shares_memory(back[key], params[key])
