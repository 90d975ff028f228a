"""Continuous-time BPTT (``companion.continuous``, ``companion.cells.ctrnn``): the solver against exact
solutions, both gradient routes against finite differences, against ``companion.bptt`` on the Euler cell
and against each other as dt shrinks (at the order of the method), the measurement jumps, and bad input.

torchdiffeq's side of the story is in test_continuous_torch.py.
"""
from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from companion import bptt
from companion import continuous as ct
from companion.cells import CTRNN, EulerCTRNN
from companion.gradcheck import numerical_gradient, relative_errors

from helpers import GRAD_TOL, TIGHT, seeded

METHODS = list(ct.TABLEAUX)


# ----- problems -----------------------------------------------------------------------------------------------
def make_network(B, n_in, H, *, nonlinearity="tanh", seed=0):
    """A CTRNN with recurrent weights strong enough to matter, time constants in [0.5, 2], and h0 (B, H)."""
    network = CTRNN(n_in, H, nonlinearity=nonlinearity)
    rng = seeded("ctrnn-network", B, n_in, H, nonlinearity, seed)
    params = network.init_params(rng)
    params["W_hh"] = rng.normal(scale=1.2 / np.sqrt(H), size=(H, H))
    params["tau"] = rng.uniform(0.5, 2.0, size=H)
    return network, params, rng.normal(size=(B, H)), rng


def sinusoidal_inputs(B, n_in, seed=0):
    """x(t) (B, n_in): a sine per sequence and input, with its own frequency and phase."""
    rng = seeded("ctrnn-inputs", B, n_in, seed)
    frequency, phase = rng.uniform(0.5, 3.0, size=(B, n_in)), rng.uniform(0, 2 * np.pi, size=(B, n_in))
    return lambda t: np.sin(frequency * t + phase)


def mixed_loss(rng, B, n_out, times):
    """Measurements at ``times`` and a running loss towards y(t) = sin(t + k) on output k."""
    targets = rng.normal(size=(len(times), B, n_out))
    offsets = np.arange(n_out)
    return ct.Loss(np.asarray(times, dtype=float), targets, running=lambda t: np.sin(t + offsets) * np.ones((B, 1)))


def flat(result) -> np.ndarray:
    """Every gradient of a ``ContinuousGradients`` (parameters in their order, then dh0) as one vector."""
    return np.concatenate([value.ravel() for value in result.grads.values()] + [result.dh0.ravel()])


def relative_distance(a, b) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


# ----- the cell and the solver ------------------------------------------------------------------------------------
def test_euler_cell_state_jacobian_in_closed_form():
    """d h_t / d h_{t-1} = I + dt diag(1/tau) (-I + W_hh diag(phi'(h_{t-1})))."""
    cell = EulerCTRNN(2, 3, dt=0.2)
    rng = seeded("ctrnn-jacobian")
    params = cell.init_params(rng, tau=0.7)
    params["tau"] = rng.uniform(0.5, 2.0, size=3)
    h_prev = rng.normal(size=(2, 3))
    _, cache = cell.step(params, rng.normal(size=(2, 2)), h_prev)
    slope = 1.0 - np.tanh(h_prev) ** 2
    expected = np.eye(3) + 0.2 / params["tau"][:, None] * (-np.eye(3) + params["W_hh"][None] * slope[:, None, :])
    assert_allclose(cell.state_jacobian(params, cache), expected, **TIGHT)


@pytest.mark.parametrize("method, order", [(name, tableau.order) for name, tableau in ct.TABLEAUX.items()])
def test_the_solver_converges_to_the_exact_solution_of_a_linear_network_at_its_order(method, order):
    """phi linear, no input: dh/dt = A h + b_h / tau with A = diag(1/tau)(W_hh - I), solved exactly by the
    eigendecomposition of A; the error at t_end falls by 2^order when dt halves."""
    network, params, h0, _ = make_network(2, 1, 3, nonlinearity="linear")
    A = (params["W_hh"] - np.eye(3)) / params["tau"][:, None]
    c = params["b_h"] / params["tau"]
    values, vectors = np.linalg.eig(A)
    fixed = -np.linalg.solve(A, c)

    def exact(t):   # h(t) = h* + exp(A t) (h0 - h*), rows of (B, H)
        propagator = (vectors * np.exp(values * t)) @ np.linalg.inv(vectors)
        return (fixed + (h0 - fixed) @ propagator.real.T)

    errors = [np.max(np.abs(ct.solve(network, params, h0, 2.0, dt, method=method).hs[-1] - exact(2.0)))
              for dt in (0.1, 0.05, 0.025)]
    ratios = np.array(errors[:-1]) / np.array(errors[1:])
    assert_allclose(np.log2(ratios), order, atol=0.15)


def test_a_method_given_as_a_tableau_runs_like_the_named_one():
    network, params, h0, _ = make_network(2, 1, 3)
    heun = ct.Tableau(np.array([[0.0, 0.0], [1.0, 0.0]]), np.array([0.5, 0.5]), np.array([0.0, 1.0]), 2)
    named = ct.solve(network, params, h0, 1.0, 0.1, method="rk4").hs[-1]
    assert_array_equal(ct.solve(network, params, h0, 1.0, 0.1, method=ct.TABLEAUX["rk4"]).hs[-1], named)
    # Heun's method is second order: between Euler and RK4 at dt = 0.1
    errors = [np.max(np.abs(ct.solve(network, params, h0, 1.0, 0.1, method=m).hs[-1] - named)) for m in ("euler", heun)]
    assert errors[1] < errors[0] / 10


def test_the_euler_solver_is_the_euler_cell_run_by_bptt():
    network, params, h0, _ = make_network(3, 2, 4)
    inputs = sinusoidal_inputs(3, 2)
    trajectory = ct.solve(network, params, h0, 1.2, 0.1, inputs=inputs, method="euler")
    xs = np.stack([inputs(t) for t in trajectory.times[:-1]])
    hs, _ = bptt.forward(EulerCTRNN(2, 4, dt=0.1), params, xs, h0)
    assert_allclose(trajectory.hs[1:], hs, **TIGHT)
    assert_array_equal(trajectory.hs[0], h0)


def test_the_grid_is_uniform_with_the_measurement_times_added():
    assert_allclose(ct.time_grid(1.0, 0.25), [0, 0.25, 0.5, 0.75, 1.0], **TIGHT)
    assert_allclose(ct.time_grid(1.0, 0.3), [0, 0.3, 0.6, 0.9, 1.0], **TIGHT)         # last step shortened
    grid = ct.time_grid(1.0, 0.25, np.array([0.1, 0.5, 1.0]))
    assert_allclose(grid, [0, 0.1, 0.25, 0.5, 0.75, 1.0], **TIGHT)
    # 3 * 0.1 is 0.30000000000000004: the grid point moves onto the measurement time, no tiny step
    grid = ct.time_grid(0.6, 0.1, np.array([0.3]))
    assert len(grid) == 7 and 0.3 in grid


# ----- "discretize, then differentiate" --------------------------------------------------------------------------
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("B, n_in, H, n_out", [(1, 1, 1, 1), (3, 2, 4, 2), (2, 3, 5, 5)])
def test_discretized_gradients_match_finite_differences(method, B, n_in, H, n_out):
    """Measurements off the grid (and one at t = 0), a running loss and a time-varying input at once."""
    network, params, h0, rng = make_network(B, n_in, H, seed=B * H)
    inputs = sinusoidal_inputs(B, n_in)
    loss = mixed_loss(rng, B, n_out, [0.0, 0.37, 0.8, 1.1])
    result = ct.discretized_gradients(network, params, h0, 1.1, 0.15, loss, inputs=inputs, method=method)

    def value(point):
        theta = {key: point[key] for key in params}
        return ct.loss_value(network, theta, point["h0"], 1.1, 0.15, loss, inputs=inputs, method=method)

    numeric = numerical_gradient(value, {**params, "h0": h0})
    assert result.loss == pytest.approx(value({**params, "h0": h0}), rel=1e-14)
    errors = relative_errors({**result.grads, "h0": result.dh0}, numeric)
    assert max(errors.values()) < GRAD_TOL, errors
    assert_array_equal(result.adjoints[0], result.dh0)


def test_euler_discretized_gradients_are_bptt_of_the_euler_cell():
    """Measurements on the grid become dhs at those steps; the running loss's left-rectangle rule gives
    dhs_n = dt (h_out(t_n) - y(t_n)) at n = 1..N-1 and the same term at n = 0 straight into dh0."""
    B, n_in, H, n_out, dt, steps = 2, 3, 4, 2, 0.1, 12
    network, params, h0, rng = make_network(B, n_in, H)
    inputs = sinusoidal_inputs(B, n_in)
    measured_steps = [3, 7, 12]
    loss = mixed_loss(rng, B, n_out, [dt * n for n in measured_steps])
    result = ct.discretized_gradients(network, params, h0, dt * steps, dt, loss, inputs=inputs, method="euler")

    times = dt * np.arange(steps + 1)
    xs = np.stack([inputs(t) for t in times[:-1]])
    cell = EulerCTRNN(n_in, H, dt=dt)
    hs, cache = bptt.forward(cell, params, xs, h0)
    dhs = np.zeros_like(hs)
    for n in range(1, steps):
        dhs[n - 1, :, :n_out] += dt * (hs[n - 1, :, :n_out] - loss.running(times[n]))
    for k, n in enumerate(measured_steps):
        dhs[n - 1, :, :n_out] += hs[n - 1, :, :n_out] - loss.targets[k]
    grads, _, dstate0 = bptt.backward(cell, params, cache, dhs)
    dstate0[:, :n_out] += dt * (h0[:, :n_out] - loss.running(0.0))
    for key in params:
        assert_allclose(result.grads[key], grads[key], **TIGHT, err_msg=key)
    assert_allclose(result.dh0, dstate0, **TIGHT)


# ----- "differentiate, then discretize" ----------------------------------------------------------------------------
def convergence_problem():
    network, params, h0, rng = make_network(3, 2, 4, seed=7)
    return network, params, h0, sinusoidal_inputs(3, 2, seed=7), mixed_loss(rng, 3, 2, [0.0, 0.37, 1.0, 1.5])


@pytest.fixture(scope="module")
def exact_gradient():
    """The continuous problem's gradient: the RK4 adjoint at dt = 1/640 (its error, ~1e-12, is far below
    the errors the convergence tests measure)."""
    network, params, h0, inputs, loss = convergence_problem()
    return flat(ct.adjoint_gradients(network, params, h0, 1.5, 1 / 640, loss, inputs=inputs, method="rk4"))


ROUTES = {"discretized": ct.discretized_gradients, "adjoint-checkpoints": ct.adjoint_gradients,
          "adjoint-reverse": lambda *args, **kwargs: ct.adjoint_gradients(*args, recover="reverse", **kwargs)}


@pytest.mark.parametrize("route", list(ROUTES))
@pytest.mark.parametrize("method", METHODS)
def test_every_route_converges_to_the_continuous_gradient_at_the_order_of_its_method(exact_gradient, route, method):
    """Halving dt divides the error by 2^order: about 2 for Euler, 16 for the fourth-order methods."""
    network, params, h0, inputs, loss = convergence_problem()
    order = ct.TABLEAUX[method].order
    steps = (0.1, 0.05, 0.025) if order == 1 else (0.05, 0.025, 0.0125)   # where the error is asymptotic
    errors = [relative_distance(flat(ROUTES[route](network, params, h0, 1.5, dt, loss, inputs=inputs, method=method)),
                                exact_gradient) for dt in steps]
    observed = np.log2(np.array(errors[:-1]) / np.array(errors[1:]))
    assert_allclose(observed, order, atol=0.2 if order == 1 else 0.3), (errors, observed)


def test_jumps_give_the_gradient_of_bptt_on_a_fine_grid_that_samples_the_loss_at_the_measurement_times(
        exact_gradient):
    """Euler BPTT on grids of step dt that hold every measurement time, the loss read there as dhs: its
    gradient approaches the adjoint's (with its jumps) at first order."""
    network, params, h0, inputs, loss = convergence_problem()
    errors = []
    for dt in (0.01, 0.005, 0.0025):
        steps = round(1.5 / dt)
        times = dt * np.arange(steps + 1)
        measured = {int(round(t / dt)): k for k, t in enumerate(loss.times)}
        assert all(abs(times[n] - loss.times[k]) < 1e-12 for n, k in measured.items())   # on the grid
        cell = EulerCTRNN(2, 4, dt=dt)
        hs, cache = bptt.forward(cell, params, np.stack([inputs(t) for t in times[:-1]]), h0)
        dhs = np.zeros_like(hs)
        dh0 = dt * np.pad(h0[:, :2] - loss.running(0.0), ((0, 0), (0, 2)))
        for n in range(1, steps + 1):
            h = hs[n - 1]
            if n < steps:
                dhs[n - 1, :, :2] += dt * (h[:, :2] - loss.running(times[n]))
            if n in measured:
                dhs[n - 1, :, :2] += h[:, :2] - loss.targets[measured[n]]
        dh0[:, :2] += h0[:, :2] - loss.targets[measured[0]]
        grads, _, dstate0 = bptt.backward(cell, params, cache, dhs)
        gradient = np.concatenate([grads[key].ravel() for key in params] + [(dstate0 + dh0).ravel()])
        errors.append(relative_distance(gradient, exact_gradient))
    observed = np.log2(np.array(errors[:-1]) / np.array(errors[1:]))
    assert errors[-1] < 2e-3 and np.all(np.abs(observed - 1) < 0.1), (errors, observed)


def test_the_adjoint_jumps_by_the_output_error_at_each_measurement():
    """Between the two sides of a measurement time the adjoint changes by (h_out(t_k) - y_k) on the
    outputs and by nothing on the other units; elsewhere it is continuous (a step of size dt moves it by
    O(dt))."""
    network, params, h0, rng = make_network(2, 1, 3)
    loss = ct.Loss(np.array([0.4, 0.9]), rng.normal(size=(2, 2, 1)))
    result = ct.adjoint_gradients(network, params, h0, 1.2, 0.1, loss, method="rk4")
    trajectory = ct.solve(network, params, h0, 1.2, 0.1, method="rk4", times=loss.times)
    assert_array_equal(trajectory.times, result.times)
    for k, t in enumerate(loss.times):
        n = int(np.searchsorted(result.times, t))
        after = ct.adjoint_gradients(network, params, h0, 1.2, 0.1,
                                     ct.Loss(loss.times[k + 1:], loss.targets[k + 1:]), method="rk4")
        if k + 1 < len(loss.times):
            after_n = after.adjoints[n]
        else:
            after_n = np.zeros_like(h0)
        jump = result.adjoints[n] - after_n
        expected = np.zeros_like(h0)
        expected[:, :1] = trajectory.hs[n][:, :1] - loss.targets[k]
        assert_allclose(jump, expected, **TIGHT)


def test_checkpoints_and_reverse_agree_and_cost_what_they_say():
    """Same gradient up to the method's error; the discretized route stores every stage, checkpoints
    every grid state, reverse only the final and the measured states; the adjoint evaluates f twice as
    often (forward pass and backward pass)."""
    network, params, h0, inputs, loss = convergence_problem()
    B, H = h0.shape
    results = {name: route(network, params, h0, 1.5, 0.05, loss, inputs=inputs, method="rk4")
               for name, route in ROUTES.items()}
    assert relative_distance(flat(results["adjoint-reverse"]), flat(results["adjoint-checkpoints"])) < 1e-6
    N = len(results["discretized"].times) - 1
    state = B * H * 8
    assert results["adjoint-checkpoints"].stats.stored_bytes == (N + 1) * state     # h_N is the final state
    assert loss.times[-1] == 1.5                                  # t_end measured: the final state is a measured one
    assert results["adjoint-reverse"].stats.stored_bytes == len(loss.times) * state
    assert results["discretized"].stats.stored_bytes == 4 * N * (3 * state + B * 2 * 8 + B * 2 * 8)
    for name, result in results.items():
        forward_and_backward = 2 if name.startswith("adjoint") else 1
        assert result.stats.field_evaluations == forward_and_backward * 4 * N, name
        assert result.stats.vjp_evaluations == 4 * N, name


def test_without_the_adjoints_only_the_gradient_comes_back():
    network, params, h0, inputs, loss = convergence_problem()
    for route in ROUTES.values():
        kept, lean = (route(network, params, h0, 1.5, 0.1, loss, inputs=inputs, keep_adjoints=keep)
                      for keep in (True, False))
        assert lean.adjoints is None and kept.adjoints.shape == (len(kept.times),) + h0.shape
        assert_array_equal(flat(lean), flat(kept))
        assert lean.stats == kept.stats


def test_integrating_the_state_backward_loses_it_in_a_strongly_contracting_network():
    """dh/dt ~ -h / tau with tau = 0.1 forgets h0; integrated backward, the same equation amplifies every
    rounding error by about exp(t / tau). A running loss reads the reconstructed state at every time, so
    "reverse" (which reconstructs) parts from "checkpoints" (which stores) as t_end grows: e^10 leaves the
    rounding error small, e^30 makes it larger than the gradient."""
    network, params, h0, _ = make_network(2, 1, 3, seed=3)
    params["tau"] = np.full(3, 0.1)
    loss = ct.Loss(running=lambda t: np.zeros((2, 3)))
    gaps = []
    for t_end in (1.0, 3.0):
        stored, reverse = (ct.adjoint_gradients(network, params, h0, t_end, 0.01, loss, method="rk4", recover=r)
                           for r in ("checkpoints", "reverse"))
        gaps.append(relative_distance(flat(reverse), flat(stored)))
    assert gaps[0] < 1e-3 and gaps[1] > 10.0, gaps


# ----- bad input ----------------------------------------------------------------------------------------------------
def _good():
    network, params, h0, rng = make_network(2, 1, 3)
    return dict(network=network, params=params, h0=h0, t_end=1.0, dt=0.1,
                loss=ct.Loss(np.array([0.5, 1.0]), rng.normal(size=(2, 2, 2))))


def _with(**changes):
    arguments = _good()
    arguments.update(changes)
    return arguments


BAD = {
    "network": (lambda: _with(network=EulerCTRNN(1, 3, dt=0.1)), "network must be a companion.cells.CTRNN"),
    "tau": (lambda: _with(params={**_good()["params"], "tau": np.array([1.0, 0.0, 1.0])}), r"params\['tau'\] must be positive"),
    "params shape": (lambda: _with(params={**_good()["params"], "b_h": np.zeros(4)}), r"params\['b_h'\] must have shape"),
    "h0": (lambda: _with(h0=np.zeros((2, 4))), r"h0 must have shape \(B, n_hidden\)"),
    "dt zero": (lambda: _with(dt=0.0), "dt must be a finite positive number"),
    "dt negative": (lambda: _with(dt=-0.1), "dt must be a finite positive number"),
    "t_end": (lambda: _with(t_end=0.0), "t_end must be a finite positive number"),
    "times decreasing": (lambda: _with(loss=ct.Loss(np.array([0.5, 0.2]), np.zeros((2, 2, 1)))), "strictly increasing"),
    "times repeated": (lambda: _with(loss=ct.Loss(np.array([0.5, 0.5]), np.zeros((2, 2, 1)))), "strictly increasing"),
    "time after t_end": (lambda: _with(loss=ct.Loss(np.array([0.5, 1.5]), np.zeros((2, 2, 1)))), r"within \[0, t_end\]"),
    "negative time": (lambda: _with(loss=ct.Loss(np.array([-0.1]), np.zeros((1, 2, 1)))), r"within \[0, t_end\]"),
    "targets": (lambda: _with(loss=ct.Loss(np.array([0.5]), np.zeros((2, 2, 1)))), r"loss.targets must have shape \(K, B, n_out\)"),
    "n_out": (lambda: _with(loss=ct.Loss(np.array([0.5]), np.zeros((1, 2, 4)))), "n_out <= n_hidden"),
    "times alone": (lambda: _with(loss=ct.Loss(np.array([0.5]))), "go together"),
    "empty loss": (lambda: _with(loss=ct.Loss()), "measurements .* or a running target"),
    "not a loss": (lambda: _with(loss=0.5), "loss must be a companion.continuous.Loss"),
    "running shape": (lambda: _with(loss=ct.Loss(running=lambda t: np.zeros((3, 1)))), r"loss.running\(t\) must have shape"),
}


@pytest.mark.parametrize("entry", list(BAD))
@pytest.mark.parametrize("function", ["loss_value", "discretized_gradients", "adjoint_gradients"])
def test_bad_input_is_refused_naming_the_argument(function, entry):
    make, message = BAD[entry]
    with pytest.raises(ValueError, match=message):
        getattr(ct, function)(**make())


@pytest.mark.parametrize("keyword, value, message", [
    ("method", "rk5", "method must be one of"),
    ("method", ct.Tableau(np.eye(2), np.ones(2) / 2, np.zeros(2), 1), "method must be an explicit Tableau"),
    ("method", ct.Tableau(np.zeros((2, 2)), np.ones(3) / 3, np.zeros(2), 1), "method must be an explicit Tableau"),
    ("inputs", np.zeros((2, 1)), "inputs must be None"),
    ("inputs", lambda t: np.zeros((2, 2)), r"inputs\(t\) must have shape \(B, n_in\)"),
    ("inputs", lambda t: np.full((2, 1), np.nan), "non-finite"),
])
def test_bad_method_or_inputs_are_refused(keyword, value, message):
    with pytest.raises(ValueError, match=message):
        ct.adjoint_gradients(**_good(), **{keyword: value})


def test_bad_recover_and_bad_cell_arguments_are_refused():
    with pytest.raises(ValueError, match="recover must be one of"):
        ct.adjoint_gradients(**_good(), recover="store")
    with pytest.raises(ValueError, match="dt must be a finite positive number"):
        EulerCTRNN(1, 2, dt=0.0)
    cell = EulerCTRNN(1, 2, dt=0.1)
    params = cell.init_params(0)
    params["tau"] = np.array([1.0, -1.0])
    with pytest.raises(ValueError, match=r"params\['tau'\] must be positive"):
        bptt.forward(cell, params, np.zeros((3, 1, 1)))
    with pytest.raises(ValueError, match="tau must be a finite positive number"):
        cell.init_params(0, tau=0.0)
