"""The matrix products of one LSTM forward + backward alone, numpy against torch: the floor under the fused path.

Run by hand (not part of the test suite)::

    python benchmarks/lstm_products.py                   # T=100, B=32, n_in=64, H=128, float32

Whichever way an LSTM's BPTT arranges its products, they add up to the same floating-point work: for the
benchmark's sizes 1.9 GFLOP per forward + backward in float32. The script times that work alone, at one
thread and at the machine's default thread settings (``bptt_speed.thread_setting``), in two
arrangements and two libraries:

* the fused path's (``companion.fused.lstm``): per step, one batched product of the row
  ``[x_t | h_{t-1} | 1]`` with the four gate blocks, and one of the four gates' adjoints with the
  blocks transposed; after the loop, one product for every weight and bias gradient;
* torch's (the textbook one): the input projection of all steps as one product, per step only the
  recurrent products ``(B, H) @ (H, 4H)`` and ``(B, 4H) @ (4H, H)``, and after the loop one product
  each for the inputs' and the weights' gradients;
* each with numpy's ``matmul`` and with ``torch.matmul`` (what a torch Python loop calls), on arrays
  that start on a 64-byte boundary.

Each row's time is for all the products of its kind in one forward + backward (T per-step products,
or one time-parallel product); the "sum" rows add them up. The last rows time the whole of
``torch.nn.LSTM`` + autograd and of the companion's fused path, forward + backward, as
``bptt_speed.py`` does, and the fused path's time besides its products (the elementwise work and
Python's). ``torch.nn.LSTM`` does not call ``torch.matmul``: on the CPU it runs oneDNN's LSTM, one
compiled kernel per layer and direction (``aten::mkldnn_rnn_layer`` in torch's profiler). If numpy's
products alone take longer than that whole LSTM, no arrangement of the fused path can catch up.

The functions take turns as in ``bptt_speed.interleaved_ms``, with a pause before each at the default
threads (``--pause``), since every turn changes the library.
"""
from __future__ import annotations

import argparse

from bptt_speed import add_common_arguments, blas_description, interleaved_ms, thread_setting


def products(T: int, B: int, n_in: int, H: int) -> list[tuple[str, int, tuple, tuple]]:
    """``(label, count, left shape, right shape)`` of every product of one LSTM forward + backward."""
    K = n_in + H + 1
    return [
        ("fused: forward step, (B, K) @ (4, K, H)", T, (B, K), (4, K, H)),
        ("fused: backward step, (4, B, H) @ (4, H, n_in + H)", T, (4, B, H), (4, H, n_in + H)),
        ("fused: weight gradients, (4H, T·B) @ (T·B, K)", 1, (4 * H, T * B), (T * B, K)),
        ("torch's: input projection, (T·B, n_in) @ (n_in, 4H)", 1, (T * B, n_in), (n_in, 4 * H)),
        ("torch's: forward step, (B, H) @ (H, 4H)", T, (B, H), (H, 4 * H)),
        ("torch's: backward step, (B, 4H) @ (4H, H)", T, (B, 4 * H), (4 * H, H)),
        ("torch's: input gradients, (T·B, 4H) @ (4H, n_in)", 1, (T * B, 4 * H), (4 * H, n_in)),
        ("torch's: weight gradients, (4H, T·B) @ (T·B, n_in + H)", 1, (4 * H, T * B), (T * B, n_in + H)),
    ]


def product_function(count: int, left, right, out, matmul):
    """A function that runs ``matmul(left, right, out=out)`` ``count`` times."""
    def run():
        for _ in range(count):
            matmul(left, right, out=out)
    return run


def whole_lstm(T: int, B: int, n_in: int, H: int, torch) -> tuple:
    """Functions running one forward + backward of ``torch.nn.LSTM`` and of the companion's fused path."""
    import numpy as np

    from companion import bptt, torch_ref
    from companion.cells import LSTM

    cell = LSTM(n_in, H)
    params = {key: value.astype(np.float32) for key, value in cell.init_params(0).items()}
    rng = np.random.default_rng(0)
    xs = rng.normal(size=(T, B, n_in)).astype(np.float32)
    dhs = rng.normal(size=(T, B, H)).astype(np.float32)
    module = torch_ref.to_torch(cell, params, dtype=torch.float32)
    x, d = torch.tensor(xs, requires_grad=True), torch.from_numpy(dhs)

    def module_forward_backward():
        module.zero_grad()
        x.grad = None
        out, _ = module(x)
        (out * d).sum().backward()

    def fused_forward_backward():
        _, cache = bptt.forward(cell, params, xs, fused=True)
        bptt.backward(cell, params, cache, dhs)

    return module_forward_backward, fused_forward_backward


def print_table(setting: str, blas_threads: int, torch_threads: int, rows: list, times: list[float]) -> None:
    """One setting's markdown table: a row per product, the sums per arrangement, the whole LSTMs.

    ``rows`` holds ``(label, GFLOP)`` per product; ``times`` numpy's and torch's ms per product, in
    turn, then torch's module and the fused path.
    """
    print()
    print(f"threads: {setting} (numpy's BLAS {blas_threads}, torch {torch_threads})")
    print()
    print("| products of one forward + backward | GFLOP | numpy (ms) | numpy GFLOP/s "
          "| torch.matmul (ms) | torch.matmul GFLOP/s |")
    print("|---|---|---|---|---|---|")
    sums: dict[str, list[float]] = {}
    for k, (label, work) in enumerate(rows):
        t_np, t_torch = times[2 * k], times[2 * k + 1]
        total = sums.setdefault(label.split(":")[0], [0.0, 0.0, 0.0])     # per arrangement
        total[:] = [total[0] + work, total[1] + t_np, total[2] + t_torch]
        print(f"| {label} | {work:.3f} | {t_np:.2f} | {work / t_np * 1e3:.0f} | {t_torch:.2f} "
              f"| {work / t_torch * 1e3:.0f} |")
    for arrangement, (work, t_np, t_torch) in sums.items():
        print(f"| **sum, {arrangement} arrangement** | {work:.3f} | **{t_np:.2f}** | {work / t_np * 1e3:.0f} "
              f"| **{t_torch:.2f}** | {work / t_torch * 1e3:.0f} |")
    t_module, t_fused = times[-2:]
    print(f"| **whole forward + backward**: companion's fused path (numpy), torch.nn.LSTM + autograd (torch) "
          f"| | **{t_fused:.2f}** | | **{t_module:.2f}** | |")
    print(f"| the fused path besides its products | | {t_fused - sums['fused'][1]:.2f} | | | |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_arguments(parser, rounds=10)
    args = parser.parse_args()

    import numpy as np
    import torch
    from threadpoolctl import threadpool_info

    from companion.fused._alignment import aligned_empty

    T, B, n_in, H = args.T, args.B, args.n_in, args.hidden
    rng = np.random.default_rng(0)

    def filled(shape: tuple) -> np.ndarray:
        """A 64-byte aligned float32 array of ``shape``, filled with normal draws."""
        array = aligned_empty(shape, np.float32)
        array[...] = rng.standard_normal(shape)
        return array

    rows, functions = [], []                                  # (label, GFLOP); numpy's and torch's turn
    for label, count, left, right in products(T, B, n_in, H):
        a, b = filled(left), filled(right)
        out = np.matmul(a, b)
        out_torch = torch.from_numpy(out.copy())
        rows.append((label, 2e-9 * count * out.size * left[-1]))       # a multiply-add is 2 operations
        functions += [product_function(count, a, b, out, np.matmul),
                      product_function(count, torch.from_numpy(a), torch.from_numpy(b), out_torch, torch.matmul)]
    module_forward_backward, fused_forward_backward = whole_lstm(T, B, n_in, H, torch)

    print(f"T={T}, B={B}, n_in={n_in}, H={H}, float32, numpy {np.__version__}, torch {torch.__version__}, "
          f"torch's CPU capability {torch.backends.cpu.get_cpu_capability()}")
    print(blas_description(threadpool_info()))
    for setting in args.threads:
        with thread_setting(setting, torch) as (blas_threads, torch_threads):
            timed = functions + [module_forward_backward, fused_forward_backward]
            # the libraries alternate, so every function waits for the other's threads to stop spinning
            pause = 0.0 if setting == "1" else args.pause
            times = interleaved_ms(timed, args.rounds, pauses=[pause] * len(timed))
            print_table(setting, blas_threads, torch_threads, rows, times)


if __name__ == "__main__":
    main()
