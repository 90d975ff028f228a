"""Checks at the public boundary: every failure is a ``ValueError`` naming the argument.

The message says what was expected and what was received, so a student who passes ``(B, T, n_in)``
instead of ``(T, B, n_in)`` reads that, instead of a broadcast error from deep inside a matmul.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from .types import Array, Params


def as_float_array(value: object, name: str) -> Array:
    """Return ``value`` as a finite floating-point array, or raise ``ValueError`` naming ``name``.

    Integer and boolean arrays are converted to float64; float32 and float64 arrays keep their dtype.
    """
    try:
        array = np.asarray(value)
    except Exception as error:  # ragged lists and other objects numpy cannot stack
        raise ValueError(f"{name} must be a numeric array; could not convert it: {error}") from error
    if array.dtype.kind in "biu":
        array = array.astype(np.float64)
    if array.dtype.kind != "f":
        raise ValueError(f"{name} must be a real floating-point array, got dtype {array.dtype}")
    if not np.all(np.isfinite(array)):
        bad = int(np.size(array) - np.count_nonzero(np.isfinite(array)))
        raise ValueError(f"{name} contains {bad} non-finite value(s) (NaN or inf)")
    return array


def check_shape(array: Array, expected: Sequence[int | None], name: str, meaning: str) -> None:
    """Raise ``ValueError`` unless ``array.shape`` matches ``expected`` (``None`` matches any size).

    ``meaning`` spells the expected shape in symbols, for example ``"(T, B, n_in)"``.
    """
    shape = np.shape(array)
    ok = len(shape) == len(expected) and all(e is None or s == e for s, e in zip(shape, expected))
    if not ok:
        wanted = "(" + ", ".join("?" if e is None else str(e) for e in expected) + ("," if len(expected) == 1 else "") + ")"
        raise ValueError(f"{name} must have shape {meaning} = {wanted}, got {shape}")


def check_params(params: object, shapes: Mapping[str, tuple[int, ...]], name: str = "params") -> Params:
    """Validate a parameter (or gradient) dict against the expected keys and shapes.

    Returns a new dict whose values are finite floating-point arrays.
    """
    if not isinstance(params, Mapping):
        raise ValueError(f"{name} must be a dict of arrays with keys {sorted(shapes)}, got {type(params).__name__}")
    missing = sorted(set(shapes) - set(params))
    extra = sorted(set(params) - set(shapes))
    if missing or extra:
        raise ValueError(f"{name} must have exactly the keys {sorted(shapes)}; missing {missing}, unexpected {extra}")
    checked = {}
    for key, shape in shapes.items():
        array = as_float_array(params[key], f"{name}[{key!r}]")
        if array.shape != tuple(shape):
            raise ValueError(f"{name}[{key!r}] must have shape {tuple(shape)}, got {array.shape}")
        checked[key] = array
    return checked


def check_step_mask(mask: object, steps: tuple[int, int], name: str = "mask") -> Array:
    """``mask`` as a bool array of shape ``steps`` = (T, B): which steps of which sequences count."""
    mask = np.asarray(mask)
    if mask.dtype != bool or mask.shape != steps:
        raise ValueError(f"{name} must be a bool array of shape (T, B) = {steps}, got dtype {mask.dtype} and "
                         f"shape {mask.shape}")
    return mask


def check_positive_int(value: object, name: str) -> int:
    """Return ``value`` as an ``int`` if it is a positive integer, else raise ``ValueError``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def check_positive_float(value: object, name: str) -> float:
    """Return ``value`` as a float if it is a finite positive number, else raise ``ValueError``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite positive number, got {value!r}")
    return float(value)


def as_rng(rng: object, name: str = "rng") -> np.random.Generator:
    """Accept a ``np.random.Generator`` or an integer seed; anything else is a ``ValueError``."""
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        return np.random.default_rng(int(rng))
    raise ValueError(f"{name} must be a numpy Generator (np.random.default_rng(seed)) or an int seed, got {rng!r}")
