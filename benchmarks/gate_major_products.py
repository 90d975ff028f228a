"""The per-step matrix products of the fused paths, in the layouts and alignments we considered.

Run by hand (not part of the test suite)::

    python benchmarks/gate_major_products.py          # B=32, n_in=64, H=128, 1 thread

One LSTM step multiplies the batch's rows [x_t | h_{t-1} | 1], shape (B, n_in + H + 1), by the
weights of four gates. The script times, median of many repeats, the ways to lay that out:

* one product with the gates side by side, (B, K) @ (K, 4H), the textbook layout;
* four products in one batched ``np.matmul``, (B, K) @ (4, K, H), the gate-major layout of
  ``companion.fused._gate_major``, with the weights at numpy's default alignment and at a 64-byte one;
* the backward product of the same step, (4, B, H) @ (4, H, n_in + H), in both alignments;
* the Elman step's recurrent product, (B, H) @ (H, H), in both alignments, float32 and float64.

The numbers back the choices documented in ``companion/fused/_gate_major.py`` and
``companion/fused/_alignment.py``.
"""
from __future__ import annotations

import argparse
import os
import timeit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--B", type=int, default=32)
    parser.add_argument("--n-in", type=int, default=64)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = str(args.threads)  # before numpy loads its BLAS

    import numpy as np

    from companion.fused._alignment import ALIGNMENT, aligned_empty

    B, n_in, H = args.B, args.n_in, args.hidden
    K = n_in + H + 1
    rng = np.random.default_rng(0)

    def filled(shape: tuple[int, ...], offset_bytes: int, dtype: type = np.float32) -> np.ndarray:
        """An array of ``shape`` whose data starts ``offset_bytes`` after an ``ALIGNMENT``-byte boundary."""
        size, itemsize = int(np.prod(shape)), np.dtype(dtype).itemsize
        raw = aligned_empty((size + ALIGNMENT // itemsize,), dtype)
        array = raw[offset_bytes // itemsize:offset_bytes // itemsize + size].reshape(shape)
        array[...] = rng.standard_normal(shape)
        return array

    def microseconds(function) -> float:
        runs = timeit.repeat(function, number=2000, repeat=7)
        return 1e6 * float(np.median(runs)) / 2000

    rows = filled((B, K), 0)
    print(f"B={B}, n_in={n_in}, H={H}, K=n_in+H+1={K}, threads={args.threads}, numpy {np.__version__}")
    print()
    print("| product | dtype | weights start at | time (µs) |")
    print("|---|---|---|---|")
    wide, wide_out = filled((K, 4 * H), 0), filled((B, 4 * H), 0)
    print(f"| LSTM forward, one (B, K) @ (K, 4H) | float32 | 64-byte boundary | "
          f"{microseconds(lambda: np.matmul(rows, wide, out=wide_out)):.1f} |")
    for offset, label in ((16, "16 bytes past a 64-byte boundary"), (0, "64-byte boundary")):
        blocks, out = filled((4, K, H), offset), filled((4, B, H), 0)
        print(f"| LSTM forward, four (B, K) @ (K, H), batched | float32 | {label} | "
              f"{microseconds(lambda: np.matmul(rows, blocks, out=out)):.1f} |")
    adjoints = filled((4, B, H), 0)
    for offset, label in ((16, "16 bytes past a 64-byte boundary"), (0, "64-byte boundary")):
        blocks_T, parts = filled((4, H, n_in + H), offset), filled((4, B, n_in + H), 0)
        print(f"| LSTM backward, four (B, H) @ (H, n_in + H), batched | float32 | {label} | "
              f"{microseconds(lambda: np.matmul(adjoints, blocks_T, out=parts)):.1f} |")
    for dtype in (np.float32, np.float64):
        state, out = filled((B, H), 0, dtype), filled((B, H), 0, dtype)
        for offset, label in ((16, "16 bytes past a 64-byte boundary"), (0, "64-byte boundary")):
            W = filled((H, H), offset, dtype)
            print(f"| Elman step, (B, H) @ (H, H) | {np.dtype(dtype).name} | {label} | "
                  f"{microseconds(lambda: np.matmul(state, W, out=out)):.1f} |")


if __name__ == "__main__":
    main()
