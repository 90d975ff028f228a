"""Finite-difference gradients and relative errors, for any function of a dict of arrays.

The central difference (f(theta + eps e_i) - f(theta - eps e_i)) / (2 eps) has truncation error
O(eps^2); in float64 with eps = 1e-6 a correct analytic gradient agrees to about 1e-9 relative error,
and a wrong one (a flipped sign, a dropped time step) misses by order one.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from .types import Array, Params
from .validation import as_float_array, check_positive_float


def numerical_gradient(f: Callable[[Params], float], arrays: Mapping[str, Array], *, eps: float = 1e-6) -> Params:
    """Central-difference gradient of the scalar ``f(arrays)`` with respect to every entry of ``arrays``.

    Parameters
    ----------
    f : callable
        Takes a dict with the keys of ``arrays`` and returns a float.
    arrays : dict of arrays
        The point at which to differentiate (parameters, inputs, initial states, ...). Each array is
        copied to float64; ``f`` sees perturbed float64 copies and the originals are never modified.
    eps : float, keyword-only
        Step size.

    Returns
    -------
    dict of arrays
        Same keys and shapes as ``arrays``.
    """
    if not isinstance(arrays, Mapping) or not arrays:
        raise ValueError("arrays must be a non-empty dict of arrays")
    eps = check_positive_float(eps, "eps")
    point = {key: as_float_array(value, f"arrays[{key!r}]").astype(np.float64) for key, value in arrays.items()}
    grads = {}
    for key, array in point.items():
        grad = np.zeros_like(array)
        flat, flat_grad = array.reshape(-1), grad.reshape(-1)  # views into point[key] and grad
        for i in range(flat.size):
            saved = flat[i]
            flat[i] = saved + eps
            f_plus = float(f(point))
            flat[i] = saved - eps
            f_minus = float(f(point))
            flat[i] = saved
            flat_grad[i] = (f_plus - f_minus) / (2.0 * eps)
        grads[key] = grad
    return grads


def relative_error(a: Array, b: Array) -> float:
    """``||a - b|| / (||a|| + ||b||)`` in the Euclidean norm over all entries; 0 when both are zero.

    Scale-free and symmetric; unlike an entrywise ratio it is not fooled by entries that are zero.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"a and b must have the same shape, got {a.shape} and {b.shape}")
    denominator = np.linalg.norm(a) + np.linalg.norm(b)
    return 0.0 if denominator == 0.0 else float(np.linalg.norm(a - b) / denominator)


def relative_errors(analytic: Mapping[str, Array], reference: Mapping[str, Array]) -> dict[str, float]:
    """``relative_error`` for every key of two gradient dicts with the same keys."""
    if set(analytic) != set(reference):
        raise ValueError(f"analytic and reference must have the same keys, got {sorted(analytic)} and {sorted(reference)}")
    return {key: relative_error(analytic[key], reference[key]) for key in analytic}
