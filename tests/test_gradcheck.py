"""``companion.gradcheck`` on functions whose gradients are known in closed form."""
from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from companion.gradcheck import numerical_gradient, relative_error, relative_errors

from helpers import seeded


@pytest.mark.parametrize("n", [1, 2, 5])
def test_quadratic_form(n):
    """f(x) = 1/2 x^T A x + b^T x, df/dx = 1/2 (A + A^T) x + b (A not symmetric)."""
    rng = seeded("quadratic", n)
    A, b, x = rng.normal(size=(n, n)), rng.normal(size=n), rng.normal(size=n)
    grads = numerical_gradient(lambda p: 0.5 * p["x"] @ A @ p["x"] + b @ p["x"], {"x": x})
    assert relative_error(grads["x"], 0.5 * (A + A.T) @ x + b) < 1e-8


def test_bilinear_form_of_two_arrays():
    """f(X, Y) = sum(X * (M @ Y)): df/dX = M @ Y and df/dY = M^T @ X, with 2-D arrays."""
    rng = seeded("bilinear")
    M, X, Y = rng.normal(size=(3, 4)), rng.normal(size=(3, 2)), rng.normal(size=(4, 2))
    grads = numerical_gradient(lambda p: np.sum(p["X"] * (M @ p["Y"])), {"X": X, "Y": Y})
    assert set(grads) == {"X", "Y"}
    assert grads["X"].shape == X.shape and grads["Y"].shape == Y.shape
    assert relative_error(grads["X"], M @ Y) < 1e-8
    assert relative_error(grads["Y"], M.T @ X) < 1e-8


@pytest.mark.parametrize("shape", [(1,), (3,), (2, 3), (2, 1, 3)])
def test_sum_of_sin(shape):
    """f = sum(sin(x)), df/dx = cos(x); the central difference error is eps^2/6 sin'''."""
    x = seeded("sin", *shape).uniform(-3.0, 3.0, size=shape)
    grads = numerical_gradient(lambda p: np.sum(np.sin(p["x"])), {"x": x})
    assert grads["x"].shape == shape
    assert relative_error(grads["x"], np.cos(x)) < 1e-8


def test_gradient_of_a_key_the_function_ignores_is_zero():
    grads = numerical_gradient(lambda p: np.sum(p["a"] ** 2), {"a": np.ones(2), "unused": np.ones(3)})
    assert_array_equal(grads["unused"], np.zeros(3))
    assert_allclose(grads["a"], 2.0 * np.ones(2), rtol=1e-8)


def test_eps_is_the_step():
    """For f = x^3 the central difference is 3 x^2 + eps^2 exactly: the knob really sets the step."""
    x = np.array([0.5])
    for eps in (1e-2, 1e-3):
        grad = numerical_gradient(lambda p: float(p["x"][0] ** 3), {"x": x}, eps=eps)["x"]
        assert_allclose(grad, 3 * x**2 + eps**2, rtol=1e-9)


def test_inputs_are_not_modified():
    rng = seeded("untouched")
    arrays = {"a": rng.normal(size=(2, 3)), "b": rng.normal(size=4)}
    saved = {key: value.copy() for key, value in arrays.items()}
    seen = []

    def f(point):
        seen.append(point["a"])
        return np.sum(np.sin(point["a"])) + np.sum(point["b"] ** 2)

    numerical_gradient(f, arrays)
    for key in arrays:
        assert_array_equal(arrays[key], saved[key])
    assert not any(np.shares_memory(a, arrays["a"]) for a in seen)   # f saw copies


def test_float32_and_integer_inputs_are_differentiated_in_float64():
    x32 = np.array([0.3, -1.2], dtype=np.float32)
    ints = np.array([1, 2, 3])
    dtypes = []

    def f(point):
        dtypes.append((point["x"].dtype, point["k"].dtype))
        return np.sum(point["x"] ** 2) + np.sum(point["k"] ** 2)

    grads = numerical_gradient(f, {"x": x32, "k": ints})
    assert set(dtypes) == {(np.dtype(np.float64), np.dtype(np.float64))}
    assert grads["x"].dtype == np.float64
    assert_allclose(grads["x"], 2.0 * x32.astype(np.float64), rtol=1e-8)
    assert_allclose(grads["k"], 2.0 * ints, rtol=1e-8)
    assert x32.dtype == np.float32 and ints.dtype.kind == "i"


@pytest.mark.parametrize("arrays", [{}, [np.ones(2)], np.ones(2), None], ids=["empty", "list", "array", "none"])
def test_numerical_gradient_needs_a_non_empty_dict(arrays):
    with pytest.raises(ValueError, match="arrays"):
        numerical_gradient(lambda p: 0.0, arrays)


@pytest.mark.parametrize("eps", [0.0, -1e-6, "1e-6", None])
def test_numerical_gradient_needs_a_positive_eps(eps):
    with pytest.raises(ValueError, match="eps"):
        numerical_gradient(lambda p: 0.0, {"x": np.ones(2)}, eps=eps)


def test_numerical_gradient_refuses_non_finite_points():
    with pytest.raises(ValueError, match="arrays\\['x'\\]"):
        numerical_gradient(lambda p: 0.0, {"x": np.array([1.0, np.nan])})


# ----- relative_error ----------------------------------------------------------------------------------
def test_relative_error_is_zero_for_equal_arrays():
    a = seeded("eq").normal(size=(3, 2))
    assert relative_error(a, a.copy()) == 0.0


def test_relative_error_is_zero_when_both_are_zero():
    assert relative_error(np.zeros(3), np.zeros(3)) == 0.0
    assert relative_error(np.zeros((0,)), np.zeros((0,))) == 0.0


def test_relative_error_definition_and_properties():
    rng = seeded("props")
    a, b = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
    expected = np.sqrt(np.sum((a - b) ** 2)) / (np.sqrt(np.sum(a**2)) + np.sqrt(np.sum(b**2)))
    assert relative_error(a, b) == pytest.approx(expected, rel=1e-12)
    assert relative_error(a, b) == relative_error(b, a)                              # symmetric
    assert relative_error(1e-6 * a, 1e-6 * b) == pytest.approx(relative_error(a, b), rel=1e-12)  # scale-free
    assert 0.0 < relative_error(a, b) <= 1.0                                         # triangle inequality
    assert relative_error(a, -a) == pytest.approx(1.0, rel=1e-15)                    # the largest it gets
    assert relative_error(a, np.zeros_like(a)) == 1.0                                # one side zero
    assert relative_error(a, a * (1 + 1e-9)) == pytest.approx(0.5e-9, rel=1e-6)      # small perturbation


def test_relative_error_accepts_lists_and_scalars():
    assert relative_error([1.0, 2.0], np.array([1.0, 2.0])) == 0.0
    assert relative_error(3.0, 1.0) == pytest.approx(0.5)


def test_relative_error_shape_mismatch_raises():
    with pytest.raises(ValueError, match="shape"):
        relative_error(np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError, match="shape"):
        relative_error(np.zeros((2, 3)), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="shape"):
        relative_error(np.zeros((1, 3)), np.zeros(3))                                # no broadcasting


def test_relative_errors_per_key():
    rng = seeded("per key")
    analytic = {"W": rng.normal(size=(2, 2)), "b": rng.normal(size=2)}
    reference = {"W": analytic["W"] + 1e-3, "b": analytic["b"].copy()}
    errors = relative_errors(analytic, reference)
    assert set(errors) == {"W", "b"}
    # |a - b| / (|a| + |b|) for the key's own arrays: here |a - b| = 1e-3 * sqrt(4)
    W = analytic["W"]
    expected = 2e-3 / (np.sqrt(np.sum(W**2)) + np.sqrt(np.sum((W + 1e-3) ** 2)))
    assert errors["W"] == pytest.approx(expected, rel=1e-9)
    assert errors["b"] == 0.0


@pytest.mark.parametrize("reference_keys", [("W",), ("W", "b", "c"), ("W", "c")])
def test_relative_errors_key_mismatch_raises(reference_keys):
    analytic = {"W": np.ones(2), "b": np.ones(2)}
    with pytest.raises(ValueError, match="keys"):
        relative_errors(analytic, {key: np.ones(2) for key in reference_keys})
