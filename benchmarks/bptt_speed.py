"""Forward + backward time of the companion's BPTT against torch on the CPU, for Elman, LSTM and GRU.

Run by hand (not part of the test suite)::

    python benchmarks/bptt_speed.py                      # T=100, B=32, n_in=64, H=128
    python benchmarks/bptt_speed.py --threads default --cells lstm gru

It measures, in one process, at each thread setting of ``--threads``: ``1``, one thread for numpy's BLAS
and for torch, and ``default``, the thread counts both libraries start with on this machine (a reader's
setting: usually one per core). numpy's BLAS is limited with ``threadpoolctl``, torch with
``torch.set_num_threads``, and both get their defaults back after each setting. The header names
numpy's BLAS kernel and the ``OPENBLAS_*`` variables of the environment, which can select a kernel
other than the processor's own (``OPENBLAS_CORETYPE``) and so change every numpy time.

For each setting it prints a markdown table; for each cell and dtype, a row per implementation: the
median over repeats of forward and of forward + backward time, their difference as the backward time,
the speed relative to the torch module (above 1 means faster than ``torch.nn.RNN/LSTM/GRU`` +
autograd), and the backward/forward time ratio. The implementations take turns (``interleaved_ms``);
at the default threads each library's turn starts after a pause (``--pause``), so that the other
library's idle worker threads have stopped spinning and it finds every core free. They are:

* ``torch.nn.<module> + autograd``: the production kernel, weights copied with ``companion.torch_ref``;
* ``torch autograd, Python loop``: the same cell written step by step with torch tensor operations, the
  way most courses write an RNN from scratch, differentiated by autograd;
* ``companion, fused path`` and ``companion, step loop``: ``companion.bptt`` with ``fused=True``/``False``.

The loss is sum(hs * dhs) everywhere, and every implementation computes the gradients of the parameters
and of the inputs (``companion.bptt.backward`` returns both); the script checks that the companion's
gradient of a recurrent weight agrees with torch's before timing.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import pathlib
import platform
import time


def interleaved_ms(functions: list, rounds: int, warm_up: int = 2, timed: int = 3,
                   pauses: list[float] | None = None) -> list[float]:
    """Median time in ms of every function: ``rounds`` rounds, each calling every function in turn.

    In a round, a function first runs ``warm_up`` times untimed and then ``timed`` times timed, back to
    back, so that it finds the caches and the memory allocator as a training loop that calls it again
    and again would. The rounds take the functions in turn, which spreads a slow drift of the machine
    (a shared virtual machine, here) over all of them alike, so that their ratios hold.

    ``pauses[k]`` seconds of sleep precede function ``k``'s warm-up in every round (default none). With
    more than one thread, the worker threads of a library keep spinning for a while after its last
    call (OpenBLAS's about 0.1 s) and would take a core from the next function if that runs another
    library's threads.
    """
    import numpy as np

    times = [[] for _ in functions]
    for _ in range(rounds):
        for function, samples, pause in zip(functions, times, pauses or [0.0] * len(functions)):
            time.sleep(pause)
            for _ in range(warm_up):
                function()
            for _ in range(timed):
                start = time.perf_counter()
                function()
                samples.append(time.perf_counter() - start)
    return [1e3 * float(np.median(samples)) for samples in times]


def torch_loop(cell, tensors: dict, x, torch):
    """The cell written step by step with torch operations: hs (T, B, H)."""
    from companion.cells import GRU, LSTM

    p = tensors
    h = torch.zeros(x.shape[1], cell.n_hidden, dtype=x.dtype)
    c = torch.zeros_like(h)
    outputs = []
    for x_t in x.unbind(0):  # unbind, not x[t]: its backward stacks, where indexing adds T full-size zeros
        if isinstance(cell, LSTM):
            i = torch.sigmoid(x_t @ p["W_xi"].T + h @ p["W_hi"].T + p["b_i"])
            f = torch.sigmoid(x_t @ p["W_xf"].T + h @ p["W_hf"].T + p["b_f"])
            g = torch.tanh(x_t @ p["W_xg"].T + h @ p["W_hg"].T + p["b_g"])
            o = torch.sigmoid(x_t @ p["W_xo"].T + h @ p["W_ho"].T + p["b_o"])
            c = f * c + i * g
            h = o * torch.tanh(c)
        elif isinstance(cell, GRU):
            r = torch.sigmoid(x_t @ p["W_xr"].T + h @ p["W_hr"].T + p["b_r"])
            z = torch.sigmoid(x_t @ p["W_xz"].T + h @ p["W_hz"].T + p["b_z"])
            n = torch.tanh(x_t @ p["W_xn"].T + p["b_xn"] + r * (h @ p["W_hn"].T + p["b_hn"]))
            h = (1 - z) * n + z * h
        else:
            h = torch.tanh(x_t @ p["W_xh"].T + h @ p["W_hh"].T + p["b_h"])
        outputs.append(h)
    return torch.stack(outputs)


def machine_description() -> dict:
    """The machine a benchmark ran on, for its stored record: the CPU's model name (Linux: /proc/cpuinfo,
    else ``platform.processor()``), the architecture, the number of CPUs and the platform string."""
    processor = platform.processor()
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                processor = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"processor": processor, "machine": platform.machine(), "cpus": os.cpu_count(),
            "platform": platform.platform()}


def blas_description(threadpool_info: list[dict]) -> str:
    """numpy's BLAS library, version, kernel and default thread count, and the OPENBLAS_* variables set."""
    blas = [pool for pool in threadpool_info if pool["user_api"] == "blas"]
    described = ", ".join(f"{pool['internal_api']} {pool['version']} (kernel {pool.get('architecture')}, "
                          f"{pool['num_threads']} threads)" for pool in blas)
    variables = {name: value for name, value in sorted(os.environ.items()) if name.startswith("OPENBLAS_")}
    return f"numpy's BLAS: {described}; environment: {variables or 'no OPENBLAS_* variables'}"


@contextlib.contextmanager
def thread_setting(setting: str, torch):
    """Run the block with one thread in numpy's BLAS and in torch (``"1"``) or at their defaults (``"default"``).

    Yields the thread counts ``(numpy BLAS, torch)`` in force; torch's own count is restored on exit,
    threadpoolctl restores numpy's.
    """
    from threadpoolctl import threadpool_info, threadpool_limits

    torch_default = torch.get_num_threads()
    limit = 1 if setting == "1" else None                   # None: leave every library at its default
    with threadpool_limits(limits=limit):
        torch.set_num_threads(1 if limit else torch_default)
        try:
            blas_threads = [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]
            yield max(blas_threads), torch.get_num_threads()
        finally:
            torch.set_num_threads(torch_default)


def cell_rows(cell_name: str, dtype_name: str, sizes: tuple[int, int, int, int], rounds: int, pause: float,
              torch) -> list[tuple]:
    """``(label, forward ms, backward ms, fwd+bwd ms)`` of every implementation, for one cell and dtype.

    ``pause``: seconds of sleep before each library's turn in a round (``interleaved_ms``).
    """
    import numpy as np

    from companion import bptt, torch_ref
    from companion.cells import GRU, LSTM, Elman

    T, B, n_in, H = sizes
    np_dtype, torch_dtype = np.dtype(dtype_name), getattr(torch, dtype_name)
    cell = {"elman": Elman, "lstm": LSTM, "gru": GRU}[cell_name](n_in, H)
    params = {key: value.astype(np_dtype) for key, value in cell.init_params(0).items()}
    rng = np.random.default_rng(0)
    xs = rng.normal(size=(T, B, n_in)).astype(np_dtype)
    dhs = rng.normal(size=(T, B, H)).astype(np_dtype)
    # like companion.bptt.backward, torch computes the inputs' gradient too
    x = torch.tensor(xs, requires_grad=True)
    d = torch.from_numpy(dhs)

    module = torch_ref.to_torch(cell, params, dtype=torch_dtype)
    tensors = {key: torch.tensor(value, requires_grad=True) for key, value in params.items()}

    def module_forward():
        with torch.no_grad():
            module(x)

    def module_forward_backward():
        module.zero_grad()
        x.grad = None
        out, _ = module(x)
        (out * d).sum().backward()

    def loop_forward():
        with torch.no_grad():
            torch_loop(cell, tensors, x, torch)

    def loop_forward_backward():
        for tensor in [x, *tensors.values()]:
            tensor.grad = None
        (torch_loop(cell, tensors, x, torch) * d).sum().backward()

    module_forward_backward()
    _, cache = bptt.forward(cell, params, xs)
    grads, _, _ = bptt.backward(cell, params, cache, dhs)
    recurrent = {"elman": "W_hh", "lstm": "W_hf", "gru": "W_hz"}[cell_name]
    loop_forward_backward()
    tolerance = 1e-3 if np_dtype == np.float32 else 1e-9
    np.testing.assert_allclose(grads[recurrent], tensors[recurrent].grad.numpy(), rtol=tolerance, atol=tolerance)

    def companion_forward(fused: bool):
        return lambda: bptt.forward(cell, params, xs, fused=fused)

    def companion_forward_backward(fused: bool):
        def run():
            _, cache = bptt.forward(cell, params, xs, fused=fused)
            bptt.backward(cell, params, cache, dhs)
        return run

    implementations = [
        (f"torch.nn.{type(module).__name__} + autograd", module_forward, module_forward_backward),
        ("torch autograd, Python loop", loop_forward, loop_forward_backward),
        ("companion, fused path", companion_forward(True), companion_forward_backward(True)),
        ("companion, step loop", companion_forward(False), companion_forward_backward(False)),
    ]
    functions = [function for _, *pair in implementations for function in pair]
    first_of_library = (0, 4)                               # torch's module, the companion's fused path
    pauses = [pause if k in first_of_library else 0.0 for k in range(len(functions))]
    timings = interleaved_ms(functions, rounds, pauses=pauses)
    rows = []
    for k, (label, _, _) in enumerate(implementations):
        t_f, t_fb = timings[2 * k], timings[2 * k + 1]
        rows.append((label, t_f, t_fb - t_f, t_fb))
    return rows


def add_common_arguments(parser: argparse.ArgumentParser, *, rounds: int) -> None:
    """The sizes, thread settings, rounds and pause that the benchmarks timing numpy against torch share."""
    parser.add_argument("--T", type=int, default=100)
    parser.add_argument("--B", type=int, default=32)
    parser.add_argument("--n-in", type=int, default=64)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--threads", nargs="+", default=["1", "default"], choices=["1", "default"],
                        help="thread settings, measured one after the other in this process")
    parser.add_argument("--rounds", type=int, default=rounds, help="rounds of interleaved_ms")
    parser.add_argument("--pause", type=float, default=0.2,
                        help="seconds of sleep before each library's turn at the default threads (interleaved_ms)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_arguments(parser, rounds=20)
    parser.add_argument("--cells", nargs="+", default=["elman", "lstm", "gru"], choices=["elman", "lstm", "gru"])
    parser.add_argument("--dtypes", nargs="+", default=["float32", "float64"], choices=["float32", "float64"])
    args = parser.parse_args()

    import numpy as np
    import torch
    from threadpoolctl import threadpool_info

    sizes = (args.T, args.B, args.n_in, args.hidden)
    pauses = {"1": 0.0, "default": args.pause}              # one thread: no worker threads to wait for
    print(f"T={args.T}, B={args.B}, n_in={args.n_in}, H={args.hidden}, "
          f"numpy {np.__version__}, torch {torch.__version__}")
    print(blas_description(threadpool_info()))
    for setting in args.threads:
        with thread_setting(setting, torch) as (blas_threads, torch_threads):
            print()
            print(f"threads: {setting} (numpy's BLAS {blas_threads}, torch {torch_threads})")
            print()
            print("| cell | dtype | implementation | forward (ms) | backward (ms) | fwd+bwd (ms) "
                  "| speed vs torch module | bwd/fwd |")
            print("|---|---|---|---|---|---|---|---|")
            for cell_name in args.cells:
                for dtype_name in args.dtypes:
                    rows = cell_rows(cell_name, dtype_name, sizes, args.rounds, pauses[setting], torch)
                    reference = rows[0][3]
                    for label, t_f, t_b, t_fb in rows:
                        print(f"| {cell_name} | {dtype_name} | {label} | {t_f:.2f} | {t_b:.2f} | {t_fb:.2f} "
                              f"| {reference / t_fb:.2f}x | {t_b / t_f:.2f} |", flush=True)


if __name__ == "__main__":
    main()
