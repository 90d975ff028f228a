"""Forward + backward time of the companion's Elman BPTT against torch.nn.RNN with autograd, on the CPU.

Run by hand (not part of the test suite)::

    python benchmarks/bptt_speed.py                # T=100, B=32, n_in=64, H=128, 1 thread
    python benchmarks/bptt_speed.py --threads 2

Prints a markdown table: the median over repeats of forward, backward and forward + backward time for
the companion (fused path, the default of ``companion.bptt``; and the generic step loop) and for
``torch.nn.RNN`` + autograd on the same weights, the companion's speed relative to torch (above 1 means
faster), and the companion's backward/forward time ratio. The loss is sum(hs * dhs) in both, so both
compute the same gradients; the script checks that they agree before timing.
"""
from __future__ import annotations

import argparse
import os
import time


def median_ms(function, repeats: int) -> float:
    import numpy as np

    function()  # warm up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return 1e3 * float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--T", type=int, default=100)
    parser.add_argument("--B", type=int, default=32)
    parser.add_argument("--n-in", type=int, default=64)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args()
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = str(args.threads)  # before numpy and torch load their BLAS

    import numpy as np
    import torch

    from companion import bptt, torch_ref
    from companion.cells import Elman

    torch.set_num_threads(args.threads)
    T, B, n_in, H = args.T, args.B, args.n_in, args.hidden
    print(f"T={T}, B={B}, n_in={n_in}, H={H}, threads={args.threads}, numpy {np.__version__}, torch {torch.__version__}")
    print()
    print("| dtype | implementation | forward (ms) | backward (ms) | fwd+bwd (ms) | speed vs torch | bwd/fwd |")
    print("|---|---|---|---|---|---|---|")
    for np_dtype, torch_dtype in ((np.float32, torch.float32), (np.float64, torch.float64)):
        cell = Elman(n_in, H)
        params = {key: value.astype(np_dtype) for key, value in cell.init_params(0).items()}
        rng = np.random.default_rng(0)
        xs = rng.normal(size=(T, B, n_in)).astype(np_dtype)
        dhs = rng.normal(size=(T, B, H)).astype(np_dtype)

        module = torch_ref.to_torch(cell, params, dtype=torch_dtype)
        x, d = torch.from_numpy(xs), torch.from_numpy(dhs)

        def torch_forward():
            with torch.no_grad():
                module(x)

        def torch_forward_backward():
            module.zero_grad()
            out, _ = module(x)
            (out * d).sum().backward()

        torch_forward_backward()
        hs, cache = bptt.forward(cell, params, xs)
        grads, _, _ = bptt.backward(cell, params, cache, dhs)
        tolerance = 1e-3 if np_dtype == np.float32 else 1e-10
        np.testing.assert_allclose(grads["W_hh"], module.weight_hh_l0.grad.numpy(), rtol=tolerance, atol=tolerance)

        rows = []
        t_torch_f = median_ms(torch_forward, args.repeats)
        t_torch_fb = median_ms(torch_forward_backward, args.repeats)
        rows.append(("torch.nn.RNN + autograd", t_torch_f, t_torch_fb - t_torch_f, t_torch_fb))
        for label, fused in (("companion, fused path", True), ("companion, step loop", False)):
            _, cache = bptt.forward(cell, params, xs, fused=fused)
            t_f = median_ms(lambda: bptt.forward(cell, params, xs, fused=fused), args.repeats)
            t_b = median_ms(lambda: bptt.backward(cell, params, cache, dhs), args.repeats)
            rows.append((label, t_f, t_b, t_f + t_b))
        for label, t_f, t_b, t_fb in rows:
            print(f"| {np.dtype(np_dtype).name} | {label} | {t_f:.2f} | {t_b:.2f} | {t_fb:.2f} "
                  f"| {t_torch_fb / t_fb:.2f}x | {t_b / t_f:.2f} |")


if __name__ == "__main__":
    main()
