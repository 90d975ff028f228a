"""Arrays that start on a 64-byte boundary, for the small matrix products of the fused paths.

numpy places an array's data at the alignment of its allocator, 16 bytes. The per-step products of
the fused sequence paths are small (a batch of 32 rows), and numpy's OpenBLAS runs them markedly faster
when the weight matrix starts on a 64-byte boundary, the width of an AVX-512 register and of a cache
line: about a quarter less time for a (32, 128) @ (128, 128) product, in float32 and in float64, and
likewise for the gated cells' batched products (``benchmarks/gate_major_products.py``). The fused
paths therefore multiply by aligned copies of their weights.
"""
from __future__ import annotations

import numpy as np

from ..types import Array

ALIGNMENT = 64
"""Bytes: the start of every array that ``aligned_empty`` returns is a multiple of this."""


def aligned_empty(shape: tuple[int, ...], dtype: np.dtype) -> Array:
    """An uninitialised C-ordered array whose data starts on an ``ALIGNMENT``-byte boundary."""
    dtype = np.dtype(dtype)
    size = int(np.prod(shape)) * dtype.itemsize
    raw = np.empty(size + ALIGNMENT, dtype=np.uint8)
    start = -raw.ctypes.data % ALIGNMENT
    return raw[start:start + size].view(dtype).reshape(shape)


def aligned_copy(array: Array, dtype: np.dtype) -> Array:
    """A C-ordered copy of ``array`` in ``dtype``, starting on an ``ALIGNMENT``-byte boundary."""
    copy = aligned_empty(array.shape, dtype)
    copy[...] = array
    return copy
