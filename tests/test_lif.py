"""The leaky integrate-and-fire cell (``companion.cells.LIF``): its surrogate derivatives against their
formulas and snntorch's; its forward pass and surrogate gradients against snntorch 1.0.0 (``Leaky``,
``RLeaky``) and against an independent torch autograd implementation; every gradient method of the table
on it; forward mode against the backward pass; bad input.

**Finite differences do not apply.** The spike S_t = Theta(U_t - theta) is piecewise constant: its true
derivative is zero wherever it exists, so a finite difference of a loss on the spikes is exactly zero
unless the step crosses a threshold, and then it is a jump of size ~1/eps
(``test_finite_differences_see_no_gradient`` shows both). The surrogate gradient is by construction not
the derivative of the forward pass, so it is checked against independent implementations of the same
rule instead: snntorch's autograd (the library the rule comes from) and a torch autograd version with a
custom ``torch.autograd.Function`` written here. For the same reason the LIF cell is not one of the
``CELL_KINDS`` of ``helpers.py``, whose table runs finite differences on every kind; this file runs the
gradient-method table (``gradient_methods.METHODS``) on it itself.

**snntorch in float64.** snntorch 1.0.0's surrogate functions return ``(input_ > 0).float()``: float32
spikes whatever the input's dtype. In a float64 network that (1) rounds the gradient arriving at a spike
to float32, (2) makes ``Leaky``'s reset by subtraction subtract the threshold rounded to float32
(``reset * threshold`` is a float32 product), and (3) makes ``RLeaky`` fail, its float64 recurrent layer
receiving float32 spikes. The comparisons therefore use snntorch's surrogate classes with a forward that
keeps the input's dtype (``_keep_dtype``: the same class, its ``backward`` unchanged), and a separate test
uses the stock functions where float32 rounding is exact (a threshold and loss gradients that float32
represents).
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from companion import bptt, truncation
from companion.cells import LIF, Elman
from companion.cells.lif import RESETS, SURROGATES, heaviside, surrogate_derivative
from companion.gradcheck import numerical_gradient

from gradient_methods import METHODS, REFERENCE, assert_same_result
from helpers import TIGHT, seeded

torch = pytest.importorskip("torch")
snn = pytest.importorskip("snntorch")
snn_surrogate = snn.surrogate

# (T, B, n_in, H): T = 1, B = 1, n_in = 1, H = 1 and H != n_in all occur
SHAPES = [(1, 1, 1, 1), (5, 3, 2, 7), (9, 2, 5, 3), (13, 1, 3, 4)]
SEEDS = (0, 1, 2)

# snntorch's classes and the companion's configuration that computes the same function:
# (snntorch class, its reset_mechanism, the companion's reset, recurrent)
SNN_CONFIGS = {
    "Leaky-subtract": ("Leaky", "subtract", "subtract", False),
    "Leaky-zero": ("Leaky", "zero", "zero", False),
    "RLeaky-subtract": ("RLeaky", "subtract", "subtract", True),
    "RLeaky-zero": ("RLeaky", "zero", "refractory", True),
    # RLeaky with one-to-one recurrent weight V = 0: the refractory reset without recurrence
    "RLeaky-V0-subtract": ("RLeaky-V0", "subtract", "subtract", False),
    "RLeaky-V0-zero": ("RLeaky-V0", "zero", "refractory", False),
}

SNN_SURROGATE_CLASSES = {"fast_sigmoid": snn_surrogate.FastSigmoid, "atan": snn_surrogate.ATan}


def _t(array) -> torch.Tensor:
    return torch.tensor(np.asarray(array), dtype=torch.float64)


# ----- problems ----------------------------------------------------------------------------------------------
def make_lif_problem(reset: str, surrogate: str, recurrent: bool, shape, seed: int, *, detach_reset: bool = True,
                     threshold: float | None = None):
    """A cell with a random beta and threshold, weights large enough to spike, a random initial state
    (membrane and spikes), loss gradients on the spikes and a final-state gradient."""
    T, B, n_in, H = shape
    rng = seeded("lif", reset, surrogate, int(recurrent), int(detach_reset), *shape, seed)
    beta = float(rng.uniform(0.5, 0.95))
    theta = float(rng.uniform(0.5, 1.5)) if threshold is None else threshold
    cell = LIF(n_in, H, beta=beta, threshold=theta, reset=reset, surrogate=surrogate, recurrent=recurrent,
               detach_reset=detach_reset, slope=float(rng.uniform(0.5, 1.5)) * (25.0 if surrogate == "fast_sigmoid"
                                                                                 else 2.0))
    params = {key: 2.0 * value for key, value in cell.init_params(rng).items()}
    xs = rng.normal(size=(T, B, n_in))
    state0 = (rng.integers(0, 2, size=(B, H)).astype(np.float64), rng.normal(size=(B, H)) * theta)
    dhs = rng.normal(size=(T, B, H))
    g_final = (rng.normal(size=(B, H)), rng.normal(size=(B, H)))
    return cell, params, xs, state0, dhs, g_final


def companion_run(cell, params, xs, state0, dhs, g_final):
    """Spikes, membranes and every gradient from the step loop of ``companion.bptt``."""
    hs, cache = bptt.forward(cell, params, xs, state0, fused=False)
    grads, dxs, dstate0 = bptt.backward(cell, params, cache, dhs, d_final_state=g_final)
    membranes = np.stack([step.U for step in cache.steps])
    return hs, membranes, grads, dxs, dstate0


# ----- snntorch -------------------------------------------------------------------------------------------
def _keep_dtype(surrogate: str, slope: float):
    """snntorch's surrogate class for ``surrogate`` with a forward that returns spikes in the input's dtype
    (snntorch's returns float32); its backward is snntorch's, inherited unchanged."""
    parent = SNN_SURROGATE_CLASSES[surrogate]
    attribute = "alpha" if surrogate == "atan" else "slope"

    class KeepDtype(parent):
        @staticmethod
        def forward(ctx, input_, value):
            ctx.save_for_backward(input_)
            setattr(ctx, attribute, value)
            return (input_ > 0).to(input_.dtype)

    return lambda u: KeepDtype.apply(u, slope)


def _stock(surrogate: str, slope: float):
    return snn_surrogate.atan(alpha=slope) if surrogate == "atan" else snn_surrogate.fast_sigmoid(slope=slope)


def snntorch_run(config: str, cell: LIF, params, xs, state0, dhs, g_final, *, stock: bool = False):
    """The same network in snntorch, float64: ``nn.Linear(n_in, H)`` (W_xh, b_h) into ``Leaky`` or ``RLeaky``;
    returns spikes, membranes, the gradients keyed like the companion's, dL/dxs and dL/d(S_0, U_0)."""
    kind, snn_reset, _, recurrent = SNN_CONFIGS[config]
    spike_grad = (_stock if stock else _keep_dtype)(cell.surrogate, cell.slope)
    beta, threshold = _t(cell.beta), _t(cell.threshold)
    H = cell.n_hidden
    if kind == "Leaky":
        neuron = snn.Leaky(beta=beta, threshold=threshold, spike_grad=spike_grad, reset_mechanism=snn_reset)
    elif kind == "RLeaky":
        neuron = snn.RLeaky(beta=beta, threshold=threshold, linear_features=H, spike_grad=spike_grad,
                            reset_mechanism=snn_reset)
    else:
        neuron = snn.RLeaky(beta=beta, threshold=threshold, all_to_all=False, V=0.0, learn_recurrent=False,
                            spike_grad=spike_grad, reset_mechanism=snn_reset)
    neuron = neuron.double()
    fc = torch.nn.Linear(cell.n_in, H).double()
    with torch.no_grad():
        fc.weight.copy_(_t(params["W_xh"]))
        if recurrent:                                   # the recurrent layer's bias adds to b_h: split it
            neuron.recurrent.weight.copy_(_t(params["W_hh"]))
            fc.bias.copy_(_t(params["b_h"] / 2))
            neuron.recurrent.bias.copy_(_t(params["b_h"] / 2))
        else:
            fc.bias.copy_(_t(params["b_h"]))
    x = _t(xs).requires_grad_()
    spk, mem = (_t(part).requires_grad_() for part in state0)
    S0, U0 = spk, mem
    spikes, membranes, loss = [], [], 0.0
    for t in range(xs.shape[0]):
        if kind == "Leaky":
            spk, mem = neuron(fc(x[t]), mem)
        else:
            spk, mem = neuron(fc(x[t]), spk, mem)
        spikes.append(spk)
        membranes.append(mem)
        loss = loss + (spk * _t(dhs[t])).sum()
    loss = loss + (spk * _t(g_final[0])).sum() + (mem * _t(g_final[1])).sum()
    loss.backward()
    grads = {"W_xh": fc.weight.grad.numpy(), "b_h": fc.bias.grad.numpy()}
    if recurrent:
        assert_allclose(neuron.recurrent.bias.grad.numpy(), fc.bias.grad.numpy(), **TIGHT)
        grads["W_hh"] = neuron.recurrent.weight.grad.numpy()
    dS0 = np.zeros_like(state0[0]) if S0.grad is None else S0.grad.numpy()
    return (torch.stack(spikes).detach().numpy(), torch.stack(membranes).detach().numpy(), grads,
            x.grad.numpy(), (dS0, U0.grad.numpy()))


SNN_CASES = [pytest.param(config, surrogate, shape, seed, id=f"{config}-{surrogate}-T{shape[0]}-B{shape[1]}-in"
                          f"{shape[2]}-H{shape[3]}-seed{seed}")
             for config in SNN_CONFIGS for surrogate in SURROGATES for shape in SHAPES for seed in SEEDS]


@pytest.mark.parametrize("config, surrogate, shape, seed", SNN_CASES)
def test_forward_and_gradients_equal_snntorch(config, surrogate, shape, seed):
    _, _, reset, recurrent = SNN_CONFIGS[config]
    cell, params, xs, state0, dhs, g_final = make_lif_problem(reset, surrogate, recurrent, shape, seed)
    hs, membranes, grads, dxs, dstate0 = companion_run(cell, params, xs, state0, dhs, g_final)
    spikes_ref, membranes_ref, grads_ref, dxs_ref, dstate0_ref = snntorch_run(config, cell, params, xs, state0, dhs,
                                                                              g_final)
    assert_array_equal(hs, spikes_ref)
    assert_allclose(membranes, membranes_ref, **TIGHT)
    assert list(grads) == list(grads_ref)
    for key in grads:
        assert_allclose(grads[key], grads_ref[key], **TIGHT, err_msg=key)
    assert_allclose(dxs, dxs_ref, **TIGHT)
    for part, part_ref in zip(dstate0, dstate0_ref, strict=True):
        assert_allclose(part, part_ref, **TIGHT)


def test_the_snntorch_problems_spike_and_have_gradients():
    """The comparisons are not of zeros: across the snntorch cases the neurons spike and stay silent, and
    the gradient of W_xh vanishes only where a refractory neuron is held at 0 through the whole sequence."""
    fired, silent, zero_gradients = 0, 0, 0
    for config, surrogate, shape, seed in (case.values for case in SNN_CASES):
        _, _, reset, recurrent = SNN_CONFIGS[config]
        cell, params, xs, state0, dhs, g_final = make_lif_problem(reset, surrogate, recurrent, shape, seed)
        hs, _, grads, _, _ = companion_run(cell, params, xs, state0, dhs, g_final)
        fired, silent = fired + int(hs.sum()), silent + int((1 - hs).sum())
        if np.linalg.norm(grads["W_xh"]) == 0.0:
            _, cache = bptt.forward(cell, params, xs, state0)
            assert reset == "refractory" and all(np.all(step.R == 1.0) for step in cache.steps)
            zero_gradients += 1
    assert fired > 300 and silent > 300, (fired, silent)
    assert zero_gradients < len(SNN_CASES) // 20, zero_gradients


@pytest.mark.parametrize("surrogate", SURROGATES)
@pytest.mark.parametrize("threshold", [0.75, 1.0, 1.25])
def test_stock_snntorch_surrogates_agree_where_float32_is_exact(surrogate, threshold):
    """snntorch's own surrogate functions (float32 spikes) in a float64 ``Leaky``: the companion agrees to
    float64 rounding when float32 represents the threshold and the gradients that arrive at the spikes."""
    for reset in ("subtract", "zero"):
        cell, params, xs, state0, dhs, g_final = make_lif_problem(reset, surrogate, False, (11, 3, 2, 5), 7,
                                                                  threshold=threshold)
        dhs = dhs.astype(np.float32).astype(np.float64)
        g_final = (np.zeros_like(g_final[0]), g_final[1])    # S_T's gradient would be summed in float32
        hs, membranes, grads, dxs, dstate0 = companion_run(cell, params, xs, state0, dhs, g_final)
        ref = snntorch_run(f"Leaky-{reset}", cell, params, xs, state0, dhs, g_final, stock=True)
        assert_array_equal(hs, ref[0])
        assert_allclose(membranes, ref[1], **TIGHT)
        for key in grads:
            assert_allclose(grads[key], ref[2][key], **TIGHT, err_msg=key)
        assert_allclose(dxs, ref[3], **TIGHT)
        assert_allclose(dstate0[1], ref[4][1], **TIGHT)


def test_stock_snntorch_spikes_are_float32():
    """Why the comparisons keep the dtype: snntorch 1.0.0's spikes are float32 in a float64 network, and
    its reset by subtraction then subtracts the threshold rounded to float32."""
    neuron = snn.Leaky(beta=_t(0.9), threshold=_t(0.7)).double()
    spk, mem = neuron(_t([[2.0]]), _t([[0.0]]))
    assert spk.dtype == torch.float32 and mem.dtype == torch.float64
    _, mem = neuron(_t([[0.0]]), mem)                      # reset: 0.9 * 2 - 0.7, with 0.7 in float32
    assert float(mem) == 0.9 * 2.0 - float(np.float32(0.7)) != 0.9 * 2.0 - 0.7


# ----- an independent torch implementation (custom autograd surrogate) ------------------------------------
class SurrogateSpike(torch.autograd.Function):
    """Theta(u) forward; the cell's surrogate derivative backward, from the formulas."""

    @staticmethod
    def forward(ctx, u, surrogate, slope):
        ctx.save_for_backward(u)
        ctx.surrogate, ctx.slope = surrogate, slope
        return (u > 0).to(u.dtype)

    @staticmethod
    def backward(ctx, grad):
        (u,) = ctx.saved_tensors
        k = ctx.slope
        if ctx.surrogate == "fast_sigmoid":
            return grad / (k * u.abs() + 1.0) ** 2, None, None
        return grad * (k / 2) / (1.0 + (math.pi * k * u / 2) ** 2), None, None


def torch_lif(cell: LIF, params, xs, state0, dhs, g_final):
    """The cell's equations in torch, differentiated by autograd."""
    p = {key: _t(value).requires_grad_() for key, value in params.items()}
    x = _t(xs).requires_grad_()
    S, U = (_t(part).requires_grad_() for part in state0)
    S0, U0 = S, U
    theta, beta = cell.threshold, cell.beta
    loss = 0.0
    for t in range(xs.shape[0]):
        I = x[t] @ p["W_xh"].T + p["b_h"] + (S @ p["W_hh"].T if cell.recurrent else 0.0)
        R = SurrogateSpike.apply(U - theta, cell.surrogate, cell.slope)
        if cell.detach_reset:
            R = R.detach()
        if cell.reset == "subtract":
            U = beta * U + I - theta * R
        elif cell.reset == "zero":
            U = beta * (1 - R) * U + I
        else:
            U = (1 - R) * (beta * U + I)
        S = SurrogateSpike.apply(U - theta, cell.surrogate, cell.slope)
        loss = loss + (S * _t(dhs[t])).sum()
    loss = loss + (S * _t(g_final[0])).sum() + (U * _t(g_final[1])).sum()
    loss.backward()
    dS0 = np.zeros_like(state0[0]) if S0.grad is None else S0.grad.numpy()
    return {key: value.grad.numpy() for key, value in p.items()}, x.grad.numpy(), (dS0, U0.grad.numpy())


TORCH_CASES = [pytest.param(reset, surrogate, recurrent, detach, shape,
                            id=f"{reset}-{surrogate}-{'rec' if recurrent else 'ff'}-{'detach' if detach else 'diff'}"
                               f"-T{shape[0]}-H{shape[3]}")
               for reset in RESETS for surrogate in SURROGATES for recurrent in (False, True)
               for detach in (True, False) for shape in SHAPES[1:3]]


@pytest.mark.parametrize("reset, surrogate, recurrent, detach, shape", TORCH_CASES)
def test_gradients_equal_torch_autograd_with_a_custom_surrogate(reset, surrogate, recurrent, detach, shape):
    """Every combination, the differentiated reset (which snntorch does not offer) included."""
    cell, params, xs, state0, dhs, g_final = make_lif_problem(reset, surrogate, recurrent, shape, 0,
                                                              detach_reset=detach)
    _, _, grads, dxs, dstate0 = companion_run(cell, params, xs, state0, dhs, g_final)
    grads_ref, dxs_ref, dstate0_ref = torch_lif(cell, params, xs, state0, dhs, g_final)
    for key in grads:
        assert_allclose(grads[key], grads_ref[key], **TIGHT, err_msg=key)
    assert_allclose(dxs, dxs_ref, **TIGHT)
    for part, part_ref in zip(dstate0, dstate0_ref, strict=True):
        assert_allclose(part, part_ref, **TIGHT)


@pytest.mark.parametrize("reset", RESETS)
def test_differentiating_the_reset_changes_the_gradient_not_the_forward(reset):
    shape = (12, 3, 3, 4)
    cell, params, xs, state0, dhs, _ = make_lif_problem(reset, "atan", False, shape, 3)
    other = LIF(cell.n_in, cell.n_hidden, beta=cell.beta, threshold=cell.threshold, reset=reset,
                surrogate="atan", slope=cell.slope, detach_reset=False)
    hs, cache = bptt.forward(cell, params, xs, state0)
    hs_other, cache_other = bptt.forward(other, params, xs, state0)
    assert_array_equal(hs, hs_other)
    assert hs.sum() > 0
    g, g_other = bptt.backward(cell, params, cache, dhs)[0], bptt.backward(other, params, cache_other, dhs)[0]
    assert np.linalg.norm(g["W_xh"] - g_other["W_xh"]) > 1e-3 * np.linalg.norm(g["W_xh"])


# ----- the surrogate and the spike ------------------------------------------------------------------------
U_GRID = np.linspace(-3.0, 3.0, 601)


@pytest.mark.parametrize("slope", [None, 0.5, 7.0])
def test_surrogates_against_their_formulas(slope):
    k = 25.0 if slope is None else slope
    assert_allclose(surrogate_derivative(U_GRID, "fast_sigmoid", slope), 1.0 / (k * np.abs(U_GRID) + 1.0) ** 2,
                    rtol=1e-15)
    alpha = 2.0 if slope is None else slope
    assert_allclose(surrogate_derivative(U_GRID, "atan", slope),
                    alpha / 2 / (1.0 + (np.pi * alpha * U_GRID / 2) ** 2), rtol=1e-15)
    # the arctan surrogate is the derivative of 1/2 + arctan(pi alpha u / 2) / pi
    smooth = lambda u: 0.5 + np.arctan(np.pi * alpha * u / 2) / np.pi
    central = (smooth(U_GRID + 1e-6) - smooth(U_GRID - 1e-6)) / 2e-6
    assert_allclose(surrogate_derivative(U_GRID, "atan", slope), central, rtol=1e-8, atol=1e-10)
    # and the fast sigmoid the derivative of u / (1 + k |u|)
    smooth = lambda u: u / (1.0 + k * np.abs(u))
    away = np.abs(U_GRID) > 1e-3
    central = (smooth(U_GRID + 1e-7) - smooth(U_GRID - 1e-7)) / 2e-7
    assert_allclose(surrogate_derivative(U_GRID, "fast_sigmoid", slope)[away], central[away], rtol=1e-6)


@pytest.mark.parametrize("surrogate", SURROGATES)
@pytest.mark.parametrize("slope", [None, 3.0])
def test_surrogates_equal_snntorch_backward(surrogate, slope):
    value = slope if slope is not None else (2.0 if surrogate == "atan" else 25.0)
    u = _t(U_GRID).requires_grad_()
    grad_out = np.random.default_rng(0).normal(size=U_GRID.shape).astype(np.float32)
    spikes = _stock(surrogate, value)(u)
    spikes.backward(torch.tensor(grad_out))
    assert_array_equal(spikes.detach().numpy(), heaviside(U_GRID))
    assert_allclose(u.grad.numpy(), grad_out * surrogate_derivative(U_GRID, surrogate, slope), rtol=1e-14)


def test_heaviside_is_zero_at_the_threshold_and_keeps_the_dtype():
    u = np.array([-1.0, 0.0, 1e-300, 2.0], dtype=np.float32)
    assert_array_equal(heaviside(u), [0, 0, 0, 1])      # 1e-300 underflows to 0 in float32
    assert heaviside(u).dtype == np.float32
    assert_array_equal(heaviside(np.array([0.0, 5e-324])), [0.0, 1.0])
    cell = LIF(1, 1, threshold=0.5, beta=0.0)
    (S, U), _ = cell.step({"W_xh": np.array([[1.0]]), "b_h": np.zeros(1)}, np.array([[0.5]]), cell.initial_state(1))
    assert S[0, 0] == 0.0 and U[0, 0] == 0.5                # exactly at the threshold: no spike


def test_finite_differences_see_no_gradient():
    """The true gradient: central differences of a loss on the spikes are exactly zero for a small step
    (no spike flips), and a jump divided by 2 eps where a larger step makes spikes flip; the surrogate
    gradient is neither."""
    cell, params, xs, state0, dhs, _ = make_lif_problem("subtract", "atan", True, (6, 2, 3, 4), 0)
    loss = lambda p: float(np.sum(bptt.forward(cell, p, xs, state0)[0] * dhs))
    numeric = numerical_gradient(loss, params, eps=1e-9)
    assert all(np.all(value == 0.0) for value in numeric.values())
    coarse = numerical_gradient(loss, params, eps=1e-2)
    assert max(np.max(np.abs(value)) for value in coarse.values()) > 1.0
    _, cache = bptt.forward(cell, params, xs, state0)
    grads = bptt.backward(cell, params, cache, dhs)[0]
    assert all(np.max(np.abs(value)) > 1e-3 for value in grads.values())


# ----- the cell protocol: every gradient method, forward mode ---------------------------------------------
PROTOCOL_CELLS = [pytest.param(reset, recurrent, detach, id=f"{reset}-{'rec' if recurrent else 'ff'}-"
                               f"{'detach' if detach else 'diff'}")
                  for reset in RESETS for recurrent in (False, True) for detach in (True, False)]


@pytest.mark.parametrize("reset, recurrent, detach", PROTOCOL_CELLS)
def test_every_gradient_method_agrees_with_the_step_loop(reset, recurrent, detach):
    """The table of gradient methods (truncated BPTT with k2 >= T, checkpointing, RTRL) runs the cell
    unchanged and agrees with the step loop, with and without a final-state gradient."""
    for surrogate, shape in zip(SURROGATES, [(7, 2, 3, 4), (4, 1, 2, 3)]):
        cell, params, xs, state0, dhs, g_final = make_lif_problem(reset, surrogate, recurrent, shape, 1,
                                                                  detach_reset=detach)
        for d_final_state in (None, g_final):
            expected = METHODS[REFERENCE].run(cell, params, xs, state0, dhs, d_final_state)
            for name, method in METHODS.items():
                if name != REFERENCE and method.applies(cell):
                    got = method.run(cell, params, xs, state0, dhs, d_final_state)
                    assert_same_result(got, expected, tolerance=TIGHT, computes=method.computes,
                                       label=f"{name}, {surrogate}")


def test_truncated_bptt_runs_unchanged_and_cuts_the_membrane_path():
    cell, params, xs, state0, dhs, _ = make_lif_problem("subtract", "atan", True, (12, 2, 3, 4), 2)
    full = bptt.backward(cell, params, bptt.forward(cell, params, xs, state0)[1], dhs)[0]
    same = truncation.tbptt(cell, params, xs, dhs, 4, 12, state0=state0)
    cut = truncation.tbptt(cell, params, xs, dhs, 3, 3, state0=state0)
    for key in full:
        assert_allclose(same[key], full[key], **TIGHT, err_msg=key)
    assert np.linalg.norm(cut["W_xh"] - full["W_xh"]) > 1e-3 * np.linalg.norm(full["W_xh"])


def _random_tangent(cell, rng, B, lead=()):
    state = tuple(rng.normal(size=lead + (B, cell.n_hidden)) for _ in range(2))
    params = {key: rng.normal(size=lead + shape) for key, shape in cell.param_shapes().items()}
    return state, params, rng.normal(size=lead + (B, cell.n_in))


@pytest.mark.parametrize("reset, recurrent, detach", PROTOCOL_CELLS)
@pytest.mark.parametrize("surrogate", SURROGATES)
def test_step_jvp_is_the_adjoint_of_step_backward(reset, recurrent, detach, surrogate):
    """<w, J v> = <J^T w, v> for the joint Jacobian of one step (state, parameters, input), with the same
    surrogate in both; and leading direction axes give the same tangents as one direction at a time."""
    cell, params, xs, state0, *_ = make_lif_problem(reset, surrogate, recurrent, (1, 3, 2, 4), 5,
                                                   detach_reset=detach)
    _, cache = cell.step(params, xs[0], state0)
    rng = seeded("lif adjoint", reset, int(recurrent), int(detach), surrogate)
    for _ in range(3):
        v_state, v_params, v_x = _random_tangent(cell, rng, 3)
        w = tuple(rng.normal(size=(3, cell.n_hidden)) for _ in range(2))
        jv = cell.step_jvp(params, cache, v_state, v_params, v_x)
        d_params, d_state_prev, d_x = cell.step_backward(params, cache, w)
        lhs = sum(float(np.sum(a * b)) for a, b in zip(w, jv))
        rhs = (sum(float(np.sum(d_params[key] * v_params[key])) for key in v_params)
               + sum(float(np.sum(a * b)) for a, b in zip(d_state_prev, v_state)) + float(np.sum(d_x * v_x)))
        assert abs(lhs - rhs) <= 1e-12 * (abs(lhs) + abs(rhs) + 1.0)
    v_state, v_params, v_x = _random_tangent(cell, rng, 3, lead=(2, 3))
    batched = cell.step_jvp(params, cache, v_state, v_params, v_x)
    for i in range(2):
        for j in range(3):
            one = cell.step_jvp(params, cache, tuple(part[i, j] for part in v_state),
                                {key: value[i, j] for key, value in v_params.items()}, v_x[i, j])
            for part, part_one in zip(batched, one):
                assert_allclose(part[i, j], part_one, **TIGHT)


def test_state_jacobian_has_the_derived_blocks():
    """d(S_t, U_t)/d(S_{t-1}, U_{t-1}) for reset by subtraction, detached: dU_t/dU_{t-1} = beta I,
    dU_t/dS_{t-1} = W_hh, and the spike rows are sigma'(U_t - theta) times the membrane rows."""
    cell, params, xs, state0, *_ = make_lif_problem("subtract", "fast_sigmoid", True, (1, 2, 3, 4), 0)
    _, cache = cell.step(params, xs[0], state0)
    J = cell.state_jacobian(params, cache)                 # (B, 2H, 2H): rows (S_t, U_t), columns (S_{t-1}, U_{t-1})
    H = cell.n_hidden
    for b in range(2):
        assert_allclose(J[b, H:, H:], cell.beta * np.eye(H), **TIGHT)
        assert_allclose(J[b, H:, :H], params["W_hh"], **TIGHT)
        assert_allclose(J[b, :H], cell.sigma_prime(cache.U[b])[:, None] * J[b, H:], **TIGHT)


# ----- the cell itself -------------------------------------------------------------------------------------
def test_the_three_resets_by_hand():
    """One neuron, input current 0.8 every step, beta 0.5, threshold 1: the membranes of the module
    docstring's equations, written out."""
    params = {"W_xh": np.array([[1.0]]), "b_h": np.array([0.0])}
    xs = np.full((5, 1, 1), 0.8)
    expected = {
        # U_1 = .8, U_2 = .4 + .8 = 1.2 (spike), U_3 = .6 + .8 - 1 = .4, U_4 = .2 + .8 = 1.0 (no: not > 1), U_5 = 1.3
        "subtract": [0.8, 1.2, 0.4, 1.0, 1.3],
        # after the spike at 2: U_3 = 0 * 1.2 + .8 = .8, U_4 = .4 + .8 = 1.2 (spike), U_5 = .8
        "zero": [0.8, 1.2, 0.8, 1.2, 0.8],
        # after the spike at 2: U_3 = 0, U_4 = .8, U_5 = 1.2
        "refractory": [0.8, 1.2, 0.0, 0.8, 1.2],
    }
    for reset, membranes in expected.items():
        cell = LIF(1, 1, beta=0.5, threshold=1.0, reset=reset)
        hs, cache = bptt.forward(cell, params, xs)
        assert_allclose([step.U[0, 0] for step in cache.steps], membranes, rtol=0, atol=1e-15, err_msg=reset)
        assert_array_equal(hs[:, 0, 0], np.array(membranes) > 1.0)


def test_init_params_scales_and_reproducibility():
    cell = LIF(9, 4, recurrent=True)
    params = cell.init_params(3)
    assert list(params) == ["W_hh", "W_xh", "b_h"]
    assert np.max(np.abs(params["W_xh"])) <= 1 / 3 and np.max(np.abs(params["W_hh"])) <= 1 / 2
    for key in params:
        assert_array_equal(params[key], cell.init_params(3)[key])
    assert set(LIF(2, 3).init_params(0)) == {"W_xh", "b_h"}
    assert "recurrent=True" in repr(cell) and "LIF(n_in=9, n_hidden=4" in repr(cell)


def test_float32_in_float32_out():
    cell, params, xs, state0, dhs, g_final = make_lif_problem("zero", "fast_sigmoid", True, (5, 2, 3, 4), 0)
    f32 = lambda a: a.astype(np.float32)
    hs, cache = bptt.forward(cell, {k: f32(v) for k, v in params.items()}, f32(xs), tuple(map(f32, state0)))
    grads, dxs, dstate0 = bptt.backward(cell, {k: f32(v) for k, v in params.items()}, cache, f32(dhs))
    assert hs.dtype == dxs.dtype == np.float32
    assert all(value.dtype == np.float32 for value in grads.values())
    assert all(part.dtype == np.float32 for part in dstate0)


BAD_CELLS = [
    (dict(beta=-0.1), "beta must be in [0, 1]"),
    (dict(beta=1.5), "beta must be in [0, 1]"),
    (dict(beta=float("nan")), "beta must be a finite real number"),
    (dict(beta="0.9"), "beta must be a finite real number"),
    (dict(threshold=0.0), "threshold must be a positive number"),
    (dict(threshold=-1.0), "threshold must be a positive number"),
    (dict(threshold=float("inf")), "threshold must be a finite real number"),
    (dict(surrogate="sigmoid"), "surrogate must be one of"),
    (dict(surrogate=None), "surrogate must be one of"),
    (dict(reset="none"), "reset must be one of"),
    (dict(slope=0.0), "slope must be None or a finite positive number"),
    (dict(slope=True), "slope must be None or a finite positive number"),
    (dict(recurrent="yes"), "recurrent must be True or False"),
    (dict(detach_reset=1), "detach_reset must be True or False"),
    (dict(n_hidden=0), "n_hidden must be a positive integer"),
]


@pytest.mark.parametrize("options, message", BAD_CELLS, ids=[m for _, m in BAD_CELLS])
def test_bad_cells_are_refused_naming_the_argument(options, message):
    options = {"n_in": 2, "n_hidden": 3, **options}
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        LIF(options.pop("n_in"), options.pop("n_hidden"), **options)


def test_bad_steps_are_refused():
    cell = LIF(2, 3, recurrent=True)
    params = cell.init_params(0)
    state = cell.initial_state(2)
    with pytest.raises(ValueError, match="missing \\['W_hh'\\]"):
        cell.step(LIF(2, 3).init_params(0), np.zeros((2, 2)), state)
    with pytest.raises(ValueError, match="state must be a tuple of 2 arrays"):
        cell.step(params, np.zeros((2, 2)), state[1])
    elman = Elman(2, 3)
    _, elman_cache = elman.step(elman.init_params(0), np.zeros((2, 2)), elman.initial_state(2))
    with pytest.raises(ValueError, match="cache must be the LIFStepCache"):
        cell.step_backward(params, elman_cache, state)
    with pytest.raises(ValueError, match="surrogate must be one of"):
        surrogate_derivative(U_GRID, "relu")
