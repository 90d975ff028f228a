"""iRprop- and Quickprop against their update rules, written out here entry by entry on quadratics.

The references below loop over scalars with if/else, in the form the rules are published in (Quickprop
in Fahlman's sign convention, with the slope -dE/dw), so they share no code with the vectorized optimizers.
"""
import numpy as np
import pytest

from companion.optim import Quickprop, Rprop

CURVATURE = np.array([[3.0, 0.5, 40.0], [0.02, 7.0, 1.0]])       # a, for E = sum a (w - c)^2 / 2
CENTER = np.array([[1.0, -2.0, 0.3], [5.0, 0.0, -0.7]])           # c, the minimum


def _grad(w):
    return CURVATURE * (w - CENTER)


def _rprop_reference(w0, steps, lr, eta_minus=0.5, eta_plus=1.2, step_min=1e-6, step_max=50.0):
    """iRprop-, one scalar at a time; returns the iterates and how many sign changes occurred."""
    w = w0.copy()
    delta = np.full_like(w, lr)
    prev = np.zeros_like(w)
    iterates, sign_changes = [], 0
    for _ in range(steps):
        g = _grad(w)
        for i in np.ndindex(w.shape):
            gi = g[i]
            if prev[i] * gi > 0:
                delta[i] = min(delta[i] * eta_plus, step_max)
            elif prev[i] * gi < 0:
                delta[i] = max(delta[i] * eta_minus, step_min)
                gi = 0.0
                sign_changes += 1
            w[i] -= np.sign(gi) * delta[i]
            prev[i] = gi
        iterates.append(w.copy())
    return iterates, sign_changes


def _run(optimizer, w0, steps, grad=_grad):
    params = {"w": w0.copy()}
    iterates = []
    for _ in range(steps):
        optimizer.step(params, {"w": grad(params["w"])})
        iterates.append(params["w"].copy())
    return iterates


def test_rprop_follows_its_rule_through_sign_changes():
    w0 = np.zeros_like(CENTER)
    expected, sign_changes = _rprop_reference(w0, 30, lr=0.3)
    assert sign_changes >= 10
    for ours, reference in zip(_run(Rprop(0.3), w0, 30), expected):
        np.testing.assert_allclose(ours, reference, rtol=0, atol=1e-14)


def test_rprop_step_bounds_are_enforced():
    w0 = np.zeros_like(CENTER)
    expected, _ = _rprop_reference(w0, 25, lr=0.3, eta_plus=3.0, step_min=0.01, step_max=0.7)
    optimizer = Rprop(0.3, etas=(0.5, 3.0), step_sizes=(0.01, 0.7))
    for ours, reference in zip(_run(optimizer, w0, 25), expected):
        np.testing.assert_allclose(ours, reference, rtol=0, atol=1e-14)
    steps = optimizer.state["w"]["step"]
    assert steps.max() <= 0.7 and steps.min() >= 0.01


def test_rprop_step_grows_to_its_maximum_on_a_constant_slope():
    optimizer = Rprop(0.1, step_sizes=(1e-6, 0.25))
    params = {"w": np.zeros(1)}
    for _ in range(10):
        optimizer.step(params, {"w": np.array([-2.0])})
    moves = [0.1, 0.12, 0.144, 0.1728, 0.20736, 0.248832] + [0.25] * 4      # 0.1 * 1.2^k, capped
    np.testing.assert_allclose(params["w"], [sum(moves)], rtol=1e-14)


def test_rprop_minimizes_a_quadratic():
    final = _run(Rprop(0.1), np.zeros_like(CENTER), 300)[-1]
    np.testing.assert_allclose(final, CENTER, atol=1e-6)


def test_rprop_matches_torch():
    torch = pytest.importorskip("torch")
    tensor = torch.zeros(CENTER.shape, dtype=torch.float64, requires_grad=True)
    reference = torch.optim.Rprop([tensor], lr=0.3)
    ours = {"w": np.zeros_like(CENTER)}
    optimizer = Rprop(0.3)
    for _ in range(20):
        tensor.grad = torch.tensor(_grad(tensor.detach().numpy()))
        reference.step()
        optimizer.step(ours, {"w": _grad(ours["w"])})
    np.testing.assert_allclose(ours["w"], tensor.detach().numpy(), rtol=0, atol=1e-14)


def _quickprop_reference(w0, steps, epsilon, mu=1.75, grad=_grad):
    """Fahlman's branches for one weight at a time, with slope = -dE/dw as in quickprop1.c."""
    w = w0.copy()
    delta = np.zeros_like(w)
    prev_slope = np.zeros_like(w)
    shrink = mu / (1.0 + mu)
    iterates, branches = [], set()
    for _ in range(steps):
        slope = -grad(w)
        for i in np.ndindex(w.shape):
            s, p, d = slope[i], prev_slope[i], delta[i]
            step = 0.0
            if d > 0:
                if s > 0:
                    step += epsilon * s
                    branches.add("gradient term")
                if s > shrink * p:
                    step += mu * d
                    branches.add("maximum growth")
                else:
                    step += d * s / (p - s)
                    branches.add("quadratic")
            elif d < 0:
                if s < 0:
                    step += epsilon * s
                    branches.add("gradient term")
                if s < shrink * p:
                    step += mu * d
                    branches.add("maximum growth")
                else:
                    step += d * s / (p - s)
                    branches.add("quadratic")
            else:
                step = epsilon * s
            delta[i] = step
            w[i] += step
        prev_slope = slope
        iterates.append(w.copy())
    return iterates, branches


def test_quickprop_follows_fahlmans_rule():
    w0 = np.zeros_like(CENTER)
    expected, branches = _quickprop_reference(w0, 12, epsilon=0.05)
    assert branches == {"gradient term", "maximum growth", "quadratic"}
    for ours, reference in zip(_run(Quickprop(0.05), w0, 12), expected):
        np.testing.assert_allclose(ours, reference, rtol=1e-12, atol=1e-14)


def test_quickprop_secant_step_lands_on_the_minimum_after_an_overshoot():
    """E = a (w - c)^2 / 2 with eps a = 1.5: the gradient step crosses the minimum, the slope changes
    sign, so no gradient term is added and the secant step of a parabola is exact."""
    a, c = 2.0, 3.0
    optimizer = Quickprop(0.75)
    params = {"w": np.array([1.0])}
    optimizer.step(params, {"w": a * (params["w"] - c)})
    np.testing.assert_allclose(params["w"], [1.0 + 0.75 * 2.0 * 2.0])               # w1 = 4, past c = 3
    optimizer.step(params, {"w": a * (params["w"] - c)})
    np.testing.assert_allclose(params["w"], [c], rtol=1e-15)


def test_quickprop_growth_is_capped_by_mu_on_a_constant_slope():
    """A linear loss: the slope never shrinks, so each step is mu times the last plus the gradient term."""
    optimizer = Quickprop(0.1, mu=1.5)
    params = {"w": np.zeros(1)}
    expected_w, step = 0.0, 0.0
    for k in range(6):
        optimizer.step(params, {"w": np.array([2.0])})
        step = -0.2 if k == 0 else 1.5 * step - 0.2
        expected_w += step
        np.testing.assert_allclose(params["w"], [expected_w], rtol=1e-14)


def test_quickprop_takes_a_gradient_step_where_the_last_step_was_zero():
    optimizer = Quickprop(0.1)
    params = {"w": np.array([1.0, 2.0])}
    optimizer.step(params, {"w": np.array([3.0, 0.0])})                 # entry 1 does not move
    np.testing.assert_allclose(params["w"], [0.7, 2.0])
    optimizer.step(params, {"w": np.array([1.0, -4.0])})
    np.testing.assert_allclose(params["w"][1], 2.0 + 0.4)                # -eps S for the still entry


def test_quickprop_flat_secant_falls_back_to_the_gradient_step():
    optimizer = Quickprop(0.1)
    params = {"w": np.array([0.0])}
    optimizer.state["w"] = {"step": np.array([0.5]), "slope": np.array([2.0])}   # an uphill history
    optimizer.step(params, {"w": np.array([2.0])})
    np.testing.assert_allclose(params["w"], [-0.2])
    assert np.all(np.isfinite(optimizer.state["w"]["step"]))


def test_quickprop_decay_adds_to_the_slope():
    optimizer = Quickprop(0.1, decay=0.5)
    params = {"w": np.array([2.0])}
    optimizer.step(params, {"w": np.array([1.0])})
    np.testing.assert_allclose(params["w"], [2.0 - 0.1 * (1.0 + 0.5 * 2.0)])


def test_quickprop_minimizes_a_quadratic():
    final = _run(Quickprop(0.02), np.zeros_like(CENTER), 60)[-1]
    np.testing.assert_allclose(final, CENTER, atol=1e-8)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: Rprop(0.0), "lr"),
        (lambda: Rprop(0.1, etas=(1.2, 0.5)), "etas"),
        (lambda: Rprop(0.1, etas=(0.5,)), "etas"),
        (lambda: Rprop(0.1, step_sizes=(1.0, 0.1)), "step_sizes"),
        (lambda: Rprop(0.1, step_sizes=(-1.0, 1.0)), "step_sizes"),
        (lambda: Quickprop(0.1, mu=0.0), "mu"),
        (lambda: Quickprop(0.1, decay=-1e-4), "decay"),
        (lambda: Quickprop(0.1, decay=float("nan")), "decay"),
    ],
)
def test_bad_settings_raise(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize("optimizer", [Rprop(), Quickprop()], ids=["rprop", "quickprop"])
def test_bad_gradients_raise(optimizer):
    params = {"w": np.zeros((2, 3))}
    with pytest.raises(ValueError, match=r"grads\['w'\] must have shape \(2, 3\)"):
        optimizer.step(params, {"w": np.zeros(3)})
    with pytest.raises(ValueError, match="non-finite"):
        optimizer.step(params, {"w": np.full((2, 3), np.nan)})
