"""The gate-major layout of the fused paths (``companion.fused._gate_major``) and its aligned arrays.

The fused paths as a whole are pinned to the step loop (which finite differences and torch check) in
``test_gradient_methods.py``; these tests pin down the layout itself.
"""
from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_array_equal

from companion.fused._alignment import ALIGNMENT, aligned_copy, aligned_empty
from companion.fused._gate_major import (
    split_blocks,
    stacked_blocks,
    step_rows,
    transposed_blocks,
)
from helpers import seeded

BLOCKS = (("W_xa", "W_ha", "b_a"), ("W_xb", "W_hb", "b_b"), ("W_xc", "W_hc", "b_c"))
N_IN, H = 3, 2


def random_params(rng: np.random.Generator) -> dict[str, np.ndarray]:
    params = {}
    for x_key, h_key, b_key in BLOCKS:
        params.update({x_key: rng.normal(size=(H, N_IN)), h_key: rng.normal(size=(H, H)), b_key: rng.normal(size=H)})
    return params


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1,), (3, 5), (4, 193, 128), (2, 1, 7)])
def test_aligned_empty_starts_on_the_boundary(shape, dtype):
    for _ in range(5):  # several allocations, so that a lucky malloc cannot pass it
        array = aligned_empty(shape, dtype)
        assert array.shape == shape and array.dtype == dtype and array.flags.c_contiguous
        assert array.ctypes.data % ALIGNMENT == 0
        array[...] = 1.0  # the whole array is writable memory of its own
        assert array.sum() == array.size


def test_one_batched_product_gives_every_pre_activation():
    """rows[t] @ U[k] = x_t W_x^T + h_{t-1} W_h^T + b for block k."""
    rng = seeded("gate major forward")
    params = random_params(rng)
    xs, h0 = rng.normal(size=(2, 4, N_IN)), rng.normal(size=(4, H))
    U = stacked_blocks(params, BLOCKS, N_IN, H, np.float64)
    rows = step_rows(xs, h0, np.float64)
    assert U.shape == (3, N_IN + H + 1, H) and rows.shape == (3, 4, N_IN + H + 1)
    got = rows[0] @ U
    expected = [xs[0] @ params[x].T + h0 @ params[h].T + params[b] for x, h, b in BLOCKS]
    np.testing.assert_allclose(got, np.stack(expected), rtol=1e-14, atol=1e-14)
    # the next step reads h_1 where the loop writes it
    h1 = np.tanh(got[0])
    rows[1, :, N_IN:-1] = h1
    expected = [xs[1] @ params[x].T + h1 @ params[h].T + params[b] for x, h, b in BLOCKS]
    np.testing.assert_allclose(rows[1] @ U, np.stack(expected), rtol=1e-14, atol=1e-14)


def test_step_rows_layout():
    rng = seeded("gate major rows")
    xs, h0 = rng.normal(size=(3, 2, N_IN)), rng.normal(size=(2, H))
    rows = step_rows(xs.astype(np.float32), h0, np.float64)
    assert rows.dtype == np.float64
    assert_array_equal(rows[:3, :, :N_IN], xs.astype(np.float32))
    assert_array_equal(rows[3, :, :N_IN], 0.0)
    assert_array_equal(rows[0, :, N_IN:-1], h0)
    assert_array_equal(rows[..., -1], 1.0)


def test_transposed_blocks_are_the_stacked_ones_without_the_bias():
    rng = seeded("gate major transposed")
    params = random_params(rng)
    U = stacked_blocks(params, BLOCKS, N_IN, H, np.float64)
    U_T = transposed_blocks(params, BLOCKS, N_IN, H, np.float32)
    assert U_T.shape == (3, H, N_IN + H) and U_T.dtype == np.float32 and U_T.ctypes.data % ALIGNMENT == 0
    assert_array_equal(U_T, U[:, :-1].transpose(0, 2, 1).astype(np.float32))
    for block, (x_key, h_key, _) in zip(U_T, BLOCKS):
        assert_array_equal(block, np.hstack([params[x_key], params[h_key]]).astype(np.float32))


def test_aligned_copy():
    source = np.arange(12.0).reshape(3, 4).T          # not C-contiguous
    copy = aligned_copy(source, np.float32)
    assert copy.dtype == np.float32 and copy.flags.c_contiguous and copy.ctypes.data % ALIGNMENT == 0
    assert_array_equal(copy, source)


def test_split_blocks_inverts_the_stacking():
    rng = seeded("gate major split")
    params = random_params(rng)
    U = stacked_blocks(params, BLOCKS, N_IN, H, np.float64)
    # split_blocks takes gradients laid out as abar^T rows, (G, H, n_in + H + 1): U transposed
    split = split_blocks(np.ascontiguousarray(U.transpose(0, 2, 1)), BLOCKS, N_IN)
    assert sorted(split) == sorted(params)
    for key, value in params.items():
        assert_array_equal(split[key], value, err_msg=key)
        assert split[key].flags.c_contiguous and split[key].shape == value.shape
