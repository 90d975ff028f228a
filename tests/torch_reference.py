"""The torch reference of the tests: every cell's equations written once more with torch tensor ops
(from the docstrings of companion/cells/, not from their code), autograd through a Python loop of them,
and the helpers around ``companion.torch_ref`` (whose torch modules exist for the Elman network with
tanh or relu, the LSTM and the torch variant of the GRU only).

``detach_tbptt_gradients`` is truncated BPTT(k2; k1) written with ``detach()``, the reference of
test_truncation.py.

This module needs torch: a test module imports it after ``pytest.importorskip("torch")``. (The speed
benchmark, benchmarks/bptt_speed.py, keeps its own forward loop.)
"""
from __future__ import annotations

import numpy as np
import torch
from numpy.testing import assert_allclose, assert_array_equal

from companion.cells import GRU, LSTM, NARX, TDNN, Elman, EulerCTRNN, Jordan
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


def ctrnn_euler_step(dt: float, nonlinearity: str):
    """h_t = h_{t-1} + dt (-h_{t-1} + W_hh phi(h_{t-1}) + W_xh x_t + b_h) / tau."""
    phi = {"tanh": torch.tanh, "relu": torch.relu, "linear": lambda a: a}[nonlinearity]

    def step(p, x_t, h_prev):
        f = (-h_prev + phi(h_prev) @ p["W_hh"].T + x_t @ p["W_xh"].T + p["b_h"]) / p["tau"]
        h = h_prev + dt * f
        return h, h

    return step


def narx_step(d_x: int, d_y: int, n_in: int, n_out: int):
    """a_t = sum_k W_xh^(k) x_{t-k} + sum_j W_yh^(j) y_{t-j} + b_h, y_t = W_hy tanh(a_t) + b_y, with the delayed
    matrices W_xh^(k) = W_xh[:, k n_in:(k+1) n_in] and W_yh^(j) = W_yh[:, (j-1) n_out:j n_out]; the state is
    (y_t, ..., y_{t-d_y+1}, x_t, ..., x_{t-d_x+1})."""

    def step(p, x_t, state):
        parts = state if isinstance(state, tuple) else (state,)
        y_past, x_past = parts[:d_y], parts[d_y:]            # y_{t-1}, ..., y_{t-d_y}; x_{t-1}, ..., x_{t-d_x}
        inputs = (x_t,) + tuple(x_past)                       # x_{t-k} for k = 0..d_x
        a = p["b_h"]
        for k, x_k in enumerate(inputs):
            a = a + x_k @ p["W_xh"][:, k * n_in:(k + 1) * n_in].T
        for j, y_j in enumerate(y_past, start=1):
            a = a + y_j @ p["W_yh"][:, (j - 1) * n_out:j * n_out].T
        y = torch.tanh(a) @ p["W_hy"].T + p["b_y"]
        new = (y,) + tuple(y_past[:-1]) + ((x_t,) + tuple(x_past[:-1]) if d_x else ())
        return y, (new if len(new) > 1 else new[0])

    return step


def tdnn_step(d_x: int, n_in: int):
    """h_t = tanh(sum_k W_xh^(k) x_{t-k} + b_h); the state is (h_t, x_t, ..., x_{t-d_x+1})."""

    def step(p, x_t, state):
        x_past = state[1:]
        a = p["b_h"]
        for k, x_k in enumerate((x_t,) + tuple(x_past)):
            a = a + x_k @ p["W_xh"][:, k * n_in:(k + 1) * n_in].T
        h = torch.tanh(a)
        return h, (h, x_t) + tuple(x_past[:-1])

    return step


def step_of(cell):
    """The torch step function of ``cell``."""
    if isinstance(cell, EulerCTRNN):
        return ctrnn_euler_step(cell.dt, cell.nonlinearity)
    if isinstance(cell, Elman):
        return elman_step(cell.nonlinearity)
    if isinstance(cell, Jordan):
        return jordan_step
    if isinstance(cell, NARX):
        return narx_step(cell.d_x, cell.d_y, cell.n_in, cell.n_out)
    if isinstance(cell, TDNN):
        return tdnn_step(cell.d_x, cell.n_in)
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
    state = _pack(parts0)
    outputs = []
    for t in range(xs.shape[0]):
        h, state = step(p, x[t], state)
        outputs.append(h)
    hs = torch.stack(outputs)                                           # (T, B, width)
    ((hs * torch.from_numpy(dhs)).sum() + _final_state_loss(state, g_final)).backward()
    return hs.detach().numpy(), _leaf_gradients(p, x, parts0)


def _pack(parts):
    """A state from its parts: the tensor itself, or a tuple for a multi-part state."""
    return tuple(parts) if len(parts) > 1 else parts[0]


def _final_state_loss(state, g_final):
    """sum(final_state * g_final) over the state's parts; 0 without ``g_final``."""
    if g_final is None:
        return 0.0
    return sum((part * torch.from_numpy(g)).sum() for part, g in zip(state_parts(state), state_parts(g_final),
                                                                      strict=True))


def _leaf_gradients(p, x, parts0):
    """The accumulated ``.grad`` of the leaves as numpy, keyed as ``helpers.analytic_gradients`` (the params'
    keys, "xs", the state0 entries); a leaf that no loss reached has a zero gradient."""

    def grad_of(leaf):
        return np.zeros(tuple(leaf.shape)) if leaf.grad is None else leaf.grad.numpy()

    dstate0 = tuple(grad_of(part) for part in parts0)
    return {**{key: grad_of(value) for key, value in p.items()}, "xs": grad_of(x),
            **state_entries("state0", _pack(dstate0))}


def detach_tbptt_gradients(cell, params, xs, state0, dhs, k1, k2, g_final=None):
    """Truncated BPTT(k2; k1) the way a torch user writes it: one forward pass with fixed parameters,
    and at every step t that is a multiple of ``k1`` (and at t = T) a backward pass of the losses
    sum(h_s * dhs[s - 1]) of the steps since the previous such point, through the window of steps
    max(1, t - k2 + 1) .. t re-run from the ``detach()``-ed state before it (so that state is a constant
    and no gradient crosses it); ``g_final`` (on the final state) joins the last pass. The gradients of
    the passes accumulate in the leaves' ``.grad``.

    Written from Williams & Peng's definition, independently of ``companion.truncation``. Returns
    ``(hs, grads)`` in the layout of ``loop_gradients``: the params' keys, "xs" (the sum over the windows
    that contain a step) and the state0 entries (only windows that start at step 1 reach the initial state).
    """
    step = step_of(cell)
    T = xs.shape[0]
    p = {key: _leaf(value) for key, value in params.items()}
    x = _leaf(xs)
    parts0 = [_leaf(part) for part in state_parts(state0)]
    d = torch.from_numpy(dhs)
    # the forward pass over the whole sequence, with no graph: the states a window starts from
    states, outputs = [_pack(parts0)], []
    with torch.no_grad():
        state = _pack(parts0)
        for t in range(T):
            h, state = step(p, x[t], state)
            outputs.append(h)
            states.append(state)
    ends = [t for t in range(1, T + 1) if t % k1 == 0 or t == T]
    previous_end = 0
    for end in ends:
        start = max(1, end - k2 + 1)
        if start == 1:
            state = _pack(parts0)                                          # the leaf: dstate0 flows
        else:
            state = _pack([part.detach() for part in state_parts(states[start - 1])])   # a constant
        loss = torch.zeros((), dtype=torch.float64)
        for t in range(start, end + 1):                                  # 1-based steps of the window
            h, state = step(p, x[t - 1], state)
            if t > previous_end:                                          # this pass's losses only
                loss = loss + (h * d[t - 1]).sum()
        if end == T:
            loss = loss + _final_state_loss(state, g_final)
        loss.backward()
        previous_end = end
    return torch.stack(outputs).numpy(), _leaf_gradients(p, x, parts0)


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
