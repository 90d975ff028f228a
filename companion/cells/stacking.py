"""Stack per-gate parameters into one matrix, and split a stacked gradient back.

The gated cells keep one parameter per gate and symbol (``W_xi``, ``W_xf``, ...), as the book writes
them. Their fused sequence methods multiply by all gates' weights at once, so they stack the per-gate
matrices along the first axis, ``[W_xi; W_xf; W_xg; W_xo]``, and split the resulting gradient again.
"""
from __future__ import annotations

import numpy as np

from ..types import Array, Params


def stack(params: Params, keys: list[str]) -> Array:
    """``params[keys[0]]``, ``params[keys[1]]``, ... stacked along axis 0."""
    return np.concatenate([params[key] for key in keys], axis=0)


def split(stacked: Array, keys: list[str]) -> Params:
    """Cut ``stacked`` along axis 0 into ``len(keys)`` equal blocks, keyed by ``keys``."""
    return dict(zip(keys, np.split(stacked, len(keys), axis=0)))
