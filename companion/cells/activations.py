"""Pointwise nonlinearities and their derivatives written in terms of the output.

For every entry, ``derivative(h)`` is phi'(a) evaluated through h = phi(a), which is what the backward
passes have at hand: for tanh, phi'(a) = 1 - h**2.
"""
from __future__ import annotations

import numpy as np

from ..types import Array


def sigmoid(a: Array) -> Array:
    """The logistic function 1 / (1 + exp(-a)), written as (1 + tanh(a / 2)) / 2.

    The two are equal; the tanh form never overflows, so it raises no warning for large |a|.
    """
    return 0.5 * (1.0 + np.tanh(0.5 * a))


def _tanh_derivative(h: Array) -> Array:
    return 1.0 - h * h


def _relu(a: Array) -> Array:
    return np.maximum(a, 0.0)


def _relu_derivative(h: Array) -> Array:
    return (h > 0.0).astype(h.dtype)


def _identity(a: Array) -> Array:
    return a


def _identity_derivative(h: Array) -> Array:
    return np.ones_like(h)


ACTIVATIONS = {
    "tanh": (np.tanh, _tanh_derivative),
    "relu": (_relu, _relu_derivative),
    "linear": (_identity, _identity_derivative),
}
"""name -> (phi, phi' as a function of phi's output)."""


def check_nonlinearity(name: object) -> str:
    """Return ``name`` if it names a nonlinearity of ``ACTIVATIONS``, else raise ``ValueError``."""
    if name not in ACTIVATIONS:
        raise ValueError(f"nonlinearity must be one of {sorted(ACTIVATIONS)}, got {name!r}")
    return name
