"""Nonlinear conjugate gradients (Polak-Ribière+) and their line searches, ``companion.optim``.

Every check reads the run back from a log of the loss function's own calls (the point, the loss and the
gradient of every evaluation), so the formulas below (beta, the directions, the Armijo and curvature
conditions, linear CG on a quadratic) are evaluated on what the method actually did.
"""
import functools

import numpy as np
import pytest

from companion.conjugate_gradient import LineSearchResult, backtracking, conjugate_gradient, strong_wolfe

N = 8


def _quadratic(seed=0, n=N):
    rng = np.random.default_rng(seed)
    M = rng.normal(size=(n, n))
    A = M @ M.T / n + 0.1 * np.eye(n)
    return A, rng.normal(size=n)


class Logged:
    """A loss on the dict {"x": (n,)} that records every call: (x, loss, gradient)."""

    def __init__(self, loss_and_grad):
        self.loss_and_grad, self.calls = loss_and_grad, []

    def __call__(self, params):
        x = params["x"].copy()
        loss, grad = self.loss_and_grad(x)
        self.calls.append((x, loss, grad))
        return loss, {"x": grad}

    def iterates(self, result):
        """(x_k, loss_k, g_k) of every accepted iterate, by the evaluation numbers the result reports."""
        return [self.calls[number - 1] for number in result.evaluations]


def _quadratic_loss(A, b):
    return Logged(lambda x: (0.5 * x @ A @ x - b @ x, A @ x - b))


def _rosenbrock():
    def loss_and_grad(w):
        x, y = w
        gradient = np.array([-2 * (1 - x) - 400 * x * (y - x * x), 200 * (y - x * x)])
        return (1 - x) ** 2 + 100 * (y - x * x) ** 2, gradient
    return Logged(loss_and_grad)


EXACT = functools.partial(strong_wolfe, c1=1e-12, c2=1e-6)   # the cubic is exact on a quadratic


def _linear_cg(A, b, x0, steps):
    """Hestenes-Stiefel's conjugate gradients for A x = b, the iterates x_1 .. x_steps."""
    x, r = x0.copy(), b - A @ x0
    d, out = r.copy(), []
    for _ in range(steps):
        alpha = (r @ r) / (d @ A @ d)
        x = x + alpha * d
        r_new = r - alpha * A @ d
        d, r = r_new + (r_new @ r_new) / (r @ r) * d, r_new
        out.append(x.copy())
    return out


def test_exact_line_searches_give_linear_cg_and_the_minimizer_in_n_iterations():
    A, b = _quadratic()
    loss = _quadratic_loss(A, b)
    params = {"x": np.zeros(N)}
    result = conjugate_gradient(loss, params, iterations=N, line_search=EXACT)
    assert len(result.step_sizes) == N and not any(result.restarts[1:])
    iterates = [x for x, _, _ in loss.iterates(result)[1:]]
    for ours, reference in zip(iterates, _linear_cg(A, b, np.zeros(N), N)):
        np.testing.assert_allclose(ours, reference, rtol=0, atol=1e-9)
    np.testing.assert_allclose(params["x"], np.linalg.solve(A, b), rtol=0, atol=1e-9)
    assert result.grad_norms[-1] < 1e-9 * result.grad_norms[0]


def test_default_search_reaches_the_tolerance_on_a_quadratic():
    A, b = _quadratic(seed=1)
    params = {"x": np.ones(N)}
    result = conjugate_gradient(_quadratic_loss(A, b), params, iterations=100, tolerance=1e-10)
    assert result.stopped == "tolerance" and result.grad_norms[-1] <= 1e-10
    assert len(result.step_sizes) <= 2 * N
    np.testing.assert_allclose(params["x"], np.linalg.solve(A, b), rtol=0, atol=1e-8)


def test_rosenbrock_is_minimized():
    params = {"x": np.array([-1.2, 1.0])}
    result = conjugate_gradient(_rosenbrock(), params, iterations=200, tolerance=1e-8)
    assert result.stopped == "tolerance"
    np.testing.assert_allclose(params["x"], [1.0, 1.0], rtol=0, atol=1e-7)
    assert all(later < earlier for earlier, later in zip(result.losses, result.losses[1:]))


def test_a_budget_of_calls_stops_after_the_iteration_that_reaches_it():
    logged = _rosenbrock()
    result = conjugate_gradient(logged, {"x": np.array([-1.2, 1.0])}, iterations=200, max_calls=25)
    assert result.stopped == "calls"
    assert result.calls == len(logged.calls) == result.evaluations[-1] >= 25
    assert result.evaluations[-2] < 25 <= result.evaluations[-1]       # the iteration before had not reached it


def _directions(iterates, result):
    """d_k = (x_{k+1} - x_k) / alpha_k, from the log."""
    return [(after[0] - before[0]) / alpha for before, after, alpha in zip(iterates, iterates[1:], result.step_sizes)]


def test_polak_ribiere_plus_beta_and_directions_follow_their_formula():
    loss = _rosenbrock()
    result = conjugate_gradient(loss, {"x": np.array([-1.2, 1.0])}, iterations=40, restart_every=1000)
    iterates = loss.iterates(result)
    directions = _directions(iterates, result)
    grads = [g for _, _, g in iterates]
    clipped = positive = 0
    for k in range(1, len(directions)):
        raw = grads[k] @ (grads[k] - grads[k - 1]) / (grads[k - 1] @ grads[k - 1])
        beta = max(0.0, raw)
        if grads[k] @ (-grads[k] + beta * directions[k - 1]) >= 0:     # not a descent direction: restarted
            beta = 0.0
        assert result.betas[k] == pytest.approx(beta, rel=1e-12, abs=1e-300)
        np.testing.assert_allclose(directions[k], -grads[k] + beta * directions[k - 1], rtol=1e-9, atol=1e-12)
        clipped += raw < 0
        positive += beta > 0
    assert clipped >= 1 and positive >= 5                              # both branches of the max occur


@pytest.mark.parametrize("search", [None, backtracking, functools.partial(backtracking, c1=0.4)])
def test_armijo_holds_at_every_accepted_step(search):
    c1 = 0.4 if isinstance(search, functools.partial) else 1e-4
    loss = _rosenbrock()
    result = conjugate_gradient(loss, {"x": np.array([-1.2, 1.0])}, iterations=30, line_search=search)
    iterates = loss.iterates(result)
    for (x, f, g), (_, f_next, _), alpha, d in zip(iterates, iterates[1:], result.step_sizes,
                                                   _directions(iterates, result)):
        assert g @ d < 0
        assert f_next <= f + c1 * alpha * (g @ d)


def test_strong_wolfe_curvature_holds_at_every_accepted_step():
    loss = _rosenbrock()
    result = conjugate_gradient(loss, {"x": np.array([-1.2, 1.0])}, iterations=30)
    iterates = loss.iterates(result)
    for (_, _, g), (_, _, g_next), d in zip(iterates, iterates[1:], _directions(iterates, result)):
        assert abs(g_next @ d) <= 0.1 * abs(g @ d) * (1 + 1e-9)


def test_backtracking_interpolates_to_the_minimum_of_a_parabola():
    trials = []

    def phi(alpha):                                                     # phi(alpha) = 1 - alpha + alpha^2 / 0.6
        trials.append(alpha)
        return 1 - alpha + alpha**2 / 0.6, -1 + alpha / 0.3, None

    found = backtracking(phi, 1.0, -1.0, 1.0)
    assert trials == [1.0, pytest.approx(0.3, rel=1e-14)] and found.accepted


def test_restarts_on_schedule_and_away_from_uphill_directions():
    A, b = _quadratic(seed=2)
    result = conjugate_gradient(_quadratic_loss(A, b), {"x": np.zeros(N)}, iterations=7, restart_every=3)
    assert result.restarts == [True, False, False, True, False, False, True]
    assert [beta for beta, restart in zip(result.betas, result.restarts) if restart] == [0.0, 0.0, 0.0]

    def fixed_step(phi, loss0, slope0, step):                          # alpha = 3 always: overshoots
        loss, _, grads = phi(3.0)
        return LineSearchResult(3.0, loss, grads, True)

    loss = Logged(lambda x: (0.5 * x @ x, x.copy()))                    # x0 = (1, 0): g1 = -2, raw beta = 6
    result = conjugate_gradient(loss, {"x": np.array([1.0, 0.0])}, iterations=2, line_search=fixed_step,
                                restart_every=10)
    assert result.restarts == [True, True] and result.betas == [0.0, 0.0]
    np.testing.assert_allclose(loss.iterates(result)[-1][0], [4.0, 0.0])   # x2 = x1 + 3 (-g1)


def test_a_failed_line_search_stops_and_leaves_the_parameters():
    params = {"x": np.array([1.0, 2.0])}
    result = conjugate_gradient(lambda p: (p["x"] @ p["x"], {"x": -p["x"]}), params, iterations=5)  # wrong sign
    assert result.stopped == "line search" and result.step_sizes == []
    np.testing.assert_array_equal(params["x"], [1.0, 2.0])
    assert result.calls == 1 + 30


def test_parameters_are_updated_in_place_across_arrays():
    A, b = _quadratic(seed=3, n=5)
    W, v = np.zeros((2, 2)), np.zeros(1)

    def loss_and_grads(params):
        x = np.concatenate([params["W"].ravel(), params["v"]])
        g = A @ x - b
        return 0.5 * x @ A @ x - b @ x, {"W": g[:4].reshape(2, 2), "v": g[4:]}

    params = {"W": W, "v": v}
    conjugate_gradient(loss_and_grads, params, iterations=50, tolerance=1e-11)
    np.testing.assert_allclose(np.concatenate([W.ravel(), v]), np.linalg.solve(A, b), rtol=0, atol=1e-9)


def _zero(params):
    return 0.0, {key: np.zeros_like(value) for key, value in params.items()}


@pytest.mark.parametrize("kwargs, message", [
    ({"iterations": 0}, "iterations must be a positive integer"),
    ({"iterations": 1, "restart_every": 0}, "restart_every must be a positive integer"),
    ({"iterations": 1, "initial_step": 0.0}, "initial_step must be a finite positive number"),
    ({"iterations": 1, "tolerance": -1.0}, "tolerance must be a finite non-negative number"),
    ({"iterations": 1, "line_search": 3}, "line_search must be callable"),
    ({"iterations": 1, "max_calls": 0}, "max_calls must be a positive integer"),
])
def test_bad_arguments_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        conjugate_gradient(_zero, {"x": np.ones(2)}, **kwargs)


def test_bad_functions_and_params_are_refused():
    with pytest.raises(ValueError, match="loss_and_grads must be callable"):
        conjugate_gradient(None, {"x": np.ones(2)}, iterations=1)
    with pytest.raises(ValueError, match=r"params\['x'\] must be a float numpy array"):
        conjugate_gradient(_zero, {"x": np.ones(2, dtype=int)}, iterations=1)
    with pytest.raises(ValueError, match=r"grads\['x'\] must have shape \(2,\)"):
        conjugate_gradient(lambda p: (1.0, {"x": np.ones(3)}), {"x": np.ones(2)}, iterations=1)
    with pytest.raises(ValueError, match="NaN loss"):
        conjugate_gradient(lambda p: (np.nan, {"x": np.ones(2)}), {"x": np.ones(2)}, iterations=1)
    with pytest.raises(ValueError, match="finite loss at the starting params"):
        conjugate_gradient(lambda p: (np.inf, {"x": np.ones(2)}), {"x": np.ones(2)}, iterations=1)


@pytest.mark.parametrize("search, kwargs, message", [
    (backtracking, {"c1": 1.0}, r"c1 must be a number in \(0, 1\)"),
    (strong_wolfe, {"c1": 0.5, "c2": 0.4}, r"c2 must lie in \(c1, 1\)"),
    (strong_wolfe, {"c2": 1.0}, r"c2 must be a number in \(0, 1\)"),
    (strong_wolfe, {"max_trials": 0}, "max_trials must be a positive integer"),
])
def test_bad_line_search_constants_are_refused(search, kwargs, message):
    with pytest.raises(ValueError, match=message):
        search(lambda alpha: (0.0, 0.0, None), 0.0, -1.0, 1.0, **kwargs)


def test_line_search_needs_a_descent_direction():
    with pytest.raises(ValueError, match="slope0 must be negative"):
        strong_wolfe(lambda alpha: (0.0, 0.0, None), 0.0, 0.5, 1.0)
    with pytest.raises(ValueError, match="step must be a finite positive number"):
        backtracking(lambda alpha: (0.0, 0.0, None), 0.0, -0.5, -1.0)
