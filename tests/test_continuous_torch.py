"""``companion.continuous`` against torchdiffeq in float64: one table of the two routes each library has.

torchdiffeq's ``method="rk4"`` is Kutta's 3/8 rule, the companion's ``"rk4-38"``. Each row of ``ROUTES``
pairs a torchdiffeq route with the companion's same algorithm (``companion.torch_ref.torchdiffeq_gradients``
runs torchdiffeq):

* ``odeint``: back-propagation through the solver, against ``continuous.discretized_gradients``;
* ``odeint_adjoint``: the adjoint equation integrated backward beside the state, reset to the forward
  pass's value at every output time, against ``continuous.adjoint_gradients(..., recover="reverse")``.

They agree to float64 rounding when every measurement time is a grid point ``n dt``. Two places where
the libraries differ, pinned with the tolerance that follows from the difference:

* a measurement time between grid points: torchdiffeq steps on its uniform grid and interpolates h
  linearly there (error ``theta (1 - theta) dt^2 h''/2`` at the fraction theta of the step), the
  companion adds the time to its grid (its error stays O(dt^4)). Both routes then differ by O(dt^2);
* ``t_end`` off the grid, measured: the forward grids agree (both shorten the last step), but
  ``odeint_adjoint`` integrates backward from each output time on its own grid ``t_i - k dt``, so on
  the last interval its short step sits at the interval's start, where the companion's backward pass
  retraces the forward grid. Two fourth-order solutions of the same adjoint equation: O(dt^4) apart.
  (Between measurement times that are multiples of dt both backward grids are the forward grid.)

The problem (B=5, n_in=3, H=7, n_out=2, time constants in [0.5, 2], a smooth input x(t)) is used by no
other test. Steps are powers of two so that ``n dt`` and torchdiffeq's grid ``t_i - k dt`` are exact
binary fractions: with dt = 0.1 the gradients still agree to rounding, but torchdiffeq's
``ceil((t_i - t_{i-1}) / dt + 1)`` can count one extra, tiny step, and the evaluation counts drift.
"""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchdiffeq")

from companion import continuous  # noqa: E402
from companion.cells import CTRNN  # noqa: E402
from companion.torch_ref import CTRNNField, torchdiffeq_gradients  # noqa: E402

from helpers import seeded  # noqa: E402

B, N_IN, H, N_OUT = 5, 3, 7, 2
DT = 1 / 16
ROUNDING = 1e-10

# name -> (torchdiffeq_gradients's adjoint flag, the companion's same algorithm)
ROUTES = {
    "odeint": (False, lambda *args, **options: continuous.discretized_gradients(*args, method="rk4-38", **options)),
    "odeint_adjoint": (True, lambda *args, **options: continuous.adjoint_gradients(
        *args, method="rk4-38", recover="reverse", **options)),
}
ROUTE = pytest.mark.parametrize("route", list(ROUTES))
NONLINEARITY = pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])


def make_problem(nonlinearity: str, n_times: int):
    """``(network, params, h0, inputs, targets)``: weights strong enough that the dynamics are not nearly
    linear, unequal time constants, a nonzero initial state and x(t) = sin(3 t + phase) ``(B, n_in)``."""
    rng = seeded("continuous-torch", nonlinearity, n_times)
    network = CTRNN(N_IN, H, nonlinearity=nonlinearity)
    params = network.init_params(rng)
    params["W_hh"] *= 3.0
    params["tau"] = rng.uniform(0.5, 2.0, size=H)
    h0 = rng.normal(size=(B, H))
    phase = rng.uniform(0.0, 2 * np.pi, size=(B, N_IN))
    targets = rng.normal(size=(n_times, B, N_OUT))
    return network, params, h0, (lambda t: np.sin(3.0 * t + phase)), targets


def both_routes(route: str, nonlinearity: str, times, t_end: float, dt: float):
    """``(torchdiffeq's result, the companion's result)`` of one route on the problem."""
    adjoint, companion_route = ROUTES[route]
    network, params, h0, inputs, targets = make_problem(nonlinearity, len(times))
    loss = continuous.Loss(np.asarray(times, dtype=float), targets)
    arguments = (network, params, h0, t_end, dt, loss)
    return (torchdiffeq_gradients(*arguments, inputs=inputs, adjoint=adjoint),
            companion_route(*arguments, inputs=inputs))


def relative_error(reference, other) -> float:
    """max over dL/dtheta (every key) and dL/dh0 of max|difference| / max|reference|."""
    pairs = [(reference.grads[key], other.grads[key]) for key in reference.grads] + [(reference.dh0, other.dh0)]
    return max(float(np.max(np.abs(a - b)) / np.max(np.abs(a))) for a, b in pairs)


# ----- on the grid: the same algorithm, equal to rounding ----------------------------------------------------
@NONLINEARITY
@ROUTE
@pytest.mark.parametrize("times", [[3 * DT, 8 * DT, 13 * DT], [0.0, 5 * DT, 20 * DT]],
                         ids=["interior", "at-0-and-t_end"])
def test_measurements_on_the_grid_agree_to_rounding(route, nonlinearity, times):
    torch_result, companion_result = both_routes(route, nonlinearity, times, t_end=20 * DT, dt=DT)
    assert torch_result.loss == pytest.approx(companion_result.loss, rel=ROUNDING)
    assert relative_error(companion_result, torch_result) < ROUNDING
    assert all(np.max(np.abs(value)) > 1e-3 for value in companion_result.grads.values())   # not vanishing
    # four stages a step forward (both routes), and four more backward for the adjoint
    assert torch_result.evaluations == companion_result.stats.field_evaluations


# ----- off the grid: the tolerance that follows from each difference ----------------------------------------
@ROUTE
def test_measurements_between_grid_points_agree_to_the_interpolation_error(route):
    """Times at 1/3 of a step of dt0: at dt0/2 they sit at 2/3 of a step, at dt0/4 at 1/3 again, so
    theta (1 - theta) = 2/9 throughout and the O(dt^2) error quarters exactly as dt halves."""
    dt0 = 1 / 8
    times = (np.array([2, 5, 9]) + 1 / 3) * dt0
    errors = []
    for dt in (dt0, dt0 / 2, dt0 / 4):
        torch_result, companion_result = both_routes(route, "tanh", times, t_end=12 * dt0, dt=dt)
        errors.append(relative_error(companion_result, torch_result))
        if route == "odeint":   # the companion's grid has a step more per time it adds
            assert companion_result.stats.field_evaluations == torch_result.evaluations + 4 * len(times)
    assert errors[-1] > 1e3 * ROUNDING                                  # a real difference, not rounding
    ratios = np.array(errors[:-1]) / np.array(errors[1:])
    assert np.all((ratios > 3.5) & (ratios < 4.6)), ratios             # 2^2: second order


@pytest.mark.parametrize("route, order", [("odeint", None), ("odeint_adjoint", 4)])
def test_t_end_off_the_grid(route, order):
    """The forward grids agree (both shorten the last step): ``odeint`` agrees to rounding. The backward
    grid of ``odeint_adjoint`` on [t_1, t_end] is t_end - k dt: fourth order apart, so the difference
    shrinks at least ~16-fold as dt halves (allowing 12)."""
    t_end = 1 + 1 / 24
    errors = []
    for dt in (1 / 8, 1 / 16, 1 / 32):
        torch_result, companion_result = both_routes(route, "tanh", [0.5, t_end], t_end=t_end, dt=dt)
        assert torch_result.evaluations == companion_result.stats.field_evaluations
        errors.append(relative_error(companion_result, torch_result))
    if order is None:
        assert max(errors) < ROUNDING
    else:
        assert errors[0] > 1e3 * ROUNDING
        ratios = np.array(errors[:-1]) / np.array(errors[1:])
        assert np.all(ratios > 0.75 * 2 ** order), ratios


# ----- the module ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("nonlinearity", ["tanh", "relu", "linear"])
@pytest.mark.parametrize("with_inputs", [True, False], ids=["x(t)", "no-input"])
def test_the_field_module_is_the_networks_field(nonlinearity, with_inputs):
    network, params, h0, inputs, _ = make_problem(nonlinearity, 1)
    field = CTRNNField(network, params, inputs if with_inputs else None)
    x = inputs(0.7) if with_inputs else np.zeros((B, N_IN))
    expected, _ = network.field(params, h0, x)
    for call in (1, 2):
        value = field(torch.tensor(0.7, dtype=torch.float64), torch.tensor(h0))
        np.testing.assert_allclose(value.detach().numpy(), expected, rtol=1e-13, atol=1e-15)
        assert field.evaluations == call
    assert {name for name, _ in field.named_parameters()} == set(network.param_shapes())
    assert all(parameter.dtype == torch.float64 for parameter in field.parameters())


# ----- bad input --------------------------------------------------------------------------------------------
def test_bad_input_raises_value_errors_naming_the_argument():
    network, params, h0, inputs, targets = make_problem("tanh", 2)
    loss = continuous.Loss(np.array([0.25, 0.5]), targets)

    def call(**changes):
        arguments = dict(network=network, params=params, h0=h0, t_end=1.0, dt=DT, loss=loss, inputs=inputs)
        arguments.update(changes)
        return torchdiffeq_gradients(**arguments)

    running = continuous.Loss(running=lambda t: np.zeros((B, N_OUT)))
    with pytest.raises(ValueError, match="loss.running"):
        call(loss=running)
    with pytest.raises(ValueError, match="loss.running"):
        call(loss=continuous.Loss(loss.times, loss.targets, running.running))
    with pytest.raises(ValueError, match="network"):
        call(network="ctrnn")
    with pytest.raises(ValueError, match="h0"):
        call(h0=h0[:, :-1])
    with pytest.raises(ValueError, match="tau"):
        call(params={**params, "tau": -params["tau"]})
    with pytest.raises(ValueError, match="loss.times"):
        call(loss=continuous.Loss(np.array([0.25, 1.5]), targets))
    with pytest.raises(ValueError, match="loss.targets"):
        call(loss=continuous.Loss(loss.times, targets[:, :, :, None]))
    with pytest.raises(ValueError, match="inputs"):
        call(inputs=np.zeros((B, N_IN)))
    with pytest.raises(ValueError, match=r"inputs\(t\)"):
        call(inputs=lambda t: np.zeros((B, N_IN + 1)))
    with pytest.raises(ValueError, match="dt"):
        call(dt=0.0)
    with pytest.raises(ValueError, match="network"):
        CTRNNField("ctrnn", params)
    with pytest.raises(ValueError, match="inputs"):
        CTRNNField(network, params, inputs=np.zeros((B, N_IN)))
    with pytest.raises(ValueError, match="W_hh"):
        CTRNNField(network, {**params, "W_hh": params["W_hh"][:-1]})
