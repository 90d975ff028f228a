"""The gate-major layout of the gated cells' fused sequence paths.

The gated cells keep one parameter per gate and symbol (``W_xi``, ``W_hi``, ``b_i``, ...), as the book
writes them. At step t every gate q of such a cell needs the pre-activation

    a_q = W_xq x_t + W_hq h_{t-1} + b_q,

which is one row vector times one matrix once the step's input, state and a constant 1 are written as
the row u_t = [x_t | h_{t-1} | 1] and the gate's parameters as the block::

    U[q] = [W_xq^T ; W_hq^T ; b_q^T]        shape (n_in + H + 1, H)

The fused paths stack the blocks of G gates into one array ``U`` of shape (G, n_in + H + 1, H) and
the rows of a whole batch and sequence into ``rows`` of shape (T + 1, B, n_in + H + 1), and a single
batched product ``rows[t] @ U`` gives the (G, B, H) pre-activations of step t, each gate in its own
contiguous (B, H) block ("gate-major"). Backward, the same blocks transposed give the inputs' and the
state's adjoints, and one product over all steps gives every gate's weight and bias gradient.

Why G products of width H and not one of width G * H: for the LSTM at the sizes of
``benchmarks/bptt_speed.py`` (B = 32, n_in = 64, H = 128), four batched (32, 193) @ (193, 128)
products whose blocks start on a 64-byte boundary (``.alignment``) take about two thirds of the time
of one (32, 193) @ (193, 512) product; at numpy's default alignment (16 bytes) the batched products
gain little (``benchmarks/gate_major_products.py`` measures both; we have not traced the cause inside
OpenBLAS).

A block is described by the keys of its three parts, ``(W_x key, W_h key, b key)``.
"""
from __future__ import annotations

import numpy as np

from ..types import Array, Params
from ._alignment import aligned_copy, aligned_empty

Block = tuple[str, str, str]
"""The keys ``(W_x, W_h, b)`` of one gate block."""


def stacked_blocks(params: Params, blocks: tuple[Block, ...], n_in: int, n_hidden: int, dtype: np.dtype) -> Array:
    """``U``, shape (G, n_in + H + 1, H): block ``k`` is ``[W_x^T; W_h^T; b^T]`` of ``blocks[k]``."""
    stacked = aligned_empty((len(blocks), n_in + n_hidden + 1, n_hidden), dtype)
    for block, (x_key, h_key, b_key) in zip(stacked, blocks):
        block[:n_in] = params[x_key].T
        block[n_in:-1] = params[h_key].T
        block[-1] = params[b_key]
    return stacked


def transposed_blocks(params: Params, blocks: tuple[Block, ...], n_in: int, n_hidden: int, dtype: np.dtype) -> Array:
    """Shape (G, H, n_in + H): block ``k`` is ``[W_x | W_h]`` of ``blocks[k]``, for the backward products.

    ``abar @ transposed_blocks(...)[k]`` is ``[W_x^T abar | W_h^T abar]`` as rows: what the step's input
    and its previous state receive through gate ``k``.
    """
    return aligned_copy(stacked_blocks(params, blocks, n_in, n_hidden, dtype)[:, :-1].transpose(0, 2, 1), dtype)


def step_rows(xs: Array, h0: Array, dtype: np.dtype) -> Array:
    """``rows``, shape (T + 1, B, n_in + H + 1), with ``rows[t] = [x_t | h_{t-1} | 1]`` (0-based t).

    The state columns hold ``h0`` in row 0; the forward loop writes each new state ``h_t`` into row
    ``t + 1``, where the next step reads it, so that ``rows[1:, :, n_in:-1]`` ends up holding ``hs``.
    The input columns of the extra row ``T`` are zero.
    """
    T, B, n_in = xs.shape
    rows = np.empty((T + 1, B, n_in + h0.shape[-1] + 1), dtype=dtype)
    rows[:T, :, :n_in] = xs
    rows[T, :, :n_in] = 0.0
    rows[0, :, n_in:-1] = h0
    rows[:, :, -1] = 1.0
    return rows


def split_blocks(d_stacked: Array, blocks: tuple[Block, ...], n_in: int) -> Params:
    """The gradients in ``d_stacked`` (G, H, n_in + H + 1), ``[dW_x | dW_h | db]`` per block, by key.

    Every returned array is a contiguous copy.
    """
    grads = {}
    for block, (x_key, h_key, b_key) in zip(d_stacked, blocks):
        grads[x_key] = block[:, :n_in].copy()
        grads[h_key] = block[:, n_in:-1].copy()
        grads[b_key] = block[:, -1].copy()
    return grads
