"""Time and memory of checkpointed BPTT against full BPTT, for a long LSTM sequence, stored for the chapter.

Run by hand (not part of the test suite; about 5 minutes on two cores)::

    python benchmarks/checkpointing_memory.py            # T=1000, B=32, n_in=64, H=128, float32

For memory budgets from 1 % to 100 % of what full BPTT's step loop keeps (``memory_sizes(...).full``), it
chooses the slots that keep the measured peak within the budget (``MemorySizes.slots_within``) and runs
``companion.checkpointing.checkpointed_bptt`` with the optimal hidden-state policy (``"hsm"``) and the
optimal mixed policy (``"msm"``), and the sqrt(T) scheme with 32 segments. Before timing it checks, for
every configuration, that the gradients equal the step loop's bit for bit, that the forward steps equal
the scheme's optimal cost and that the measured peak bytes stay within the budget.

It then times, at one BLAS thread and at the default threads (``threadpoolctl``), every configuration and
full BPTT (the step loop, which the checkpointed runs recompute, and the fused path, the fastest the
companion has) in interleaved rounds (``timed_ms``): the machine is a shared virtual machine, so each time
is the median and the minimum over rounds, and every ratio is taken against the step loop's time of the
same statistic. It also times the step loop's forward pass alone, for the ratio rho of backward to forward
time, and measures the peak of memory allocated by numpy during one run of each configuration
(``tracemalloc``), which includes the gradients, the adjoints and the temporaries of a step.

Everything is written as JSON to ``book/data/checkpointing_lstm.json`` (``--out``), which the chapter
"Memory-efficient BPTT" reads, with the command line, the versions, numpy's BLAS and the run time.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import platform
import sys
import time
import tracemalloc

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

from bptt_speed import blas_description
from companion import bptt, checkpointing
from companion.cells import LSTM

ROOT = pathlib.Path(__file__).resolve().parents[1]
FRACTIONS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0)
SQRT_SEGMENTS = 32


def timed_ms(functions: dict, rounds: int, warm_up: int = 1) -> dict[str, tuple[float, float]]:
    """(median, minimum) time in ms of every function over ``rounds`` rounds, the functions taking turns
    in each round (after ``warm_up`` untimed calls each), so that a slow drift of the machine touches all."""
    for function in functions.values():
        for _ in range(warm_up):
            function()
    samples: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(rounds):
        for name, function in functions.items():
            start = time.perf_counter()
            function()
            samples[name].append(1e3 * (time.perf_counter() - start))
    return {name: (float(np.median(times)), float(np.min(times))) for name, times in samples.items()}


def traced_peak(function) -> int:
    """Peak bytes numpy allocated during one call (tracemalloc traces numpy's allocations)."""
    tracemalloc.start()
    tracemalloc.reset_peak()
    function()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def configurations(sizes: checkpointing.MemorySizes, T: int) -> list[dict]:
    """Every (scheme, budget) to run: slots chosen so that the peak stays within the budget."""
    configs = []
    for fraction in FRACTIONS:
        budget = fraction * sizes.full
        if budget < 2 * sizes.state + sizes.internal:      # not even s_0, a state in hand and one cache
            continue
        slots = sizes.slots_within(budget)
        for scheme in ("hsm", "msm"):
            cost = (checkpointing.hsm_cost(T, slots) if scheme == "hsm"
                    else checkpointing.msm_cost(T, slots, sizes.internal_slots))
            configs.append(dict(name=f"{scheme} {fraction:.0%}", scheme=scheme, fraction=fraction,
                                budget_bytes=int(budget), slots=slots, optimal_forward_steps=cost))
    configs.append(dict(name=f"sqrt {SQRT_SEGMENTS} segments", scheme="sqrt", fraction=None, budget_bytes=None,
                        slots=SQRT_SEGMENTS, optimal_forward_steps=checkpointing.sqrt_cost(T, SQRT_SEGMENTS)))
    return configs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--T", type=int, default=1000)
    parser.add_argument("--B", type=int, default=32)
    parser.add_argument("--n-in", type=int, default=64)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds per thread setting")
    parser.add_argument("--threads", nargs="+", default=["1", "default"], choices=["1", "default"])
    parser.add_argument("--out", type=pathlib.Path, default=ROOT / "book" / "data" / "checkpointing_lstm.json")
    args = parser.parse_args()
    started, cpu_started = time.perf_counter(), time.process_time()

    T, B, n_in, H = args.T, args.B, args.n_in, args.hidden
    cell = LSTM(n_in, H)
    params = {key: value.astype(np.float32) for key, value in cell.init_params(0).items()}
    rng = np.random.default_rng(0)
    xs = rng.normal(size=(T, B, n_in)).astype(np.float32)
    dhs = rng.normal(size=(T, B, H)).astype(np.float32)
    sizes = checkpointing.memory_sizes(cell, params, xs)
    print(f"T={T}, B={B}, n_in={n_in}, H={H}, float32; numpy {np.__version__}; {blas_description(threadpool_info())}")
    print(f"state {sizes.state} B, internal state {sizes.internal} B ({sizes.internal_slots} slots), "
          f"full BPTT's step loop {sizes.full / 1e6:.2f} MB", flush=True)

    _, cache = bptt.forward(cell, params, xs, fused=False)
    reference = bptt.backward(cell, params, cache, dhs)[0]
    del cache
    configs = configurations(sizes, T)

    def checkpointed(config):
        return lambda: checkpointing.checkpointed_bptt(cell, params, xs, dhs, config["slots"],
                                                       scheme=config["scheme"], internal_size=sizes.internal_slots)

    def full(fused: bool):
        def run():
            _, full_cache = bptt.forward(cell, params, xs, fused=fused)
            return bptt.backward(cell, params, full_cache, dhs)
        return run

    for config in configs:                          # checks, and what each run holds
        result = checkpointed(config)()
        for key in reference:
            np.testing.assert_array_equal(result.grads[key], reference[key], err_msg=f"{config['name']}: {key}")
        assert result.stats.forward_steps == config["optimal_forward_steps"], config["name"]
        if config["budget_bytes"] is not None:
            assert result.stats.peak_bytes <= config["budget_bytes"], config["name"]
        config.update(forward_steps=result.stats.forward_steps, peak_slots=result.stats.peak_slots,
                      peak_bytes=result.stats.peak_bytes, traced_peak_bytes=traced_peak(checkpointed(config)))
        print(f"{config['name']:18s} slots {config['slots']:5d}  forward steps {config['forward_steps']:5d}  "
              f"peak {config['peak_bytes'] / 1e6:7.2f} MB ({config['peak_bytes'] / sizes.full:6.1%})  "
              f"traced {config['traced_peak_bytes'] / 1e6:7.2f} MB", flush=True)
    full_traced = {"step loop": traced_peak(full(False)), "fused path": traced_peak(full(True))}

    timings = {}
    for setting in args.threads:
        with threadpool_limits(limits=1 if setting == "1" else None):
            functions = {"full BPTT, step loop": full(False), "full BPTT, fused path": full(True),
                         "forward, step loop": lambda: bptt.forward(cell, params, xs, fused=False)}
            functions |= {config["name"]: checkpointed(config) for config in configs}
            times = timed_ms(functions, args.rounds)
        step_loop = times["full BPTT, step loop"]
        forward = times["forward, step loop"]
        rho = [(full_ms - forward_ms) / forward_ms for full_ms, forward_ms in zip(step_loop, forward)]
        timings[setting] = {"ms": {name: {"median": m, "min": n} for name, (m, n) in times.items()},
                            "rho": {"median": rho[0], "min": rho[1]}}
        print(f"\nthreads: {setting}; full BPTT step loop {step_loop[0]:.0f} ms (min {step_loop[1]:.0f}), "
              f"fused {times['full BPTT, fused path'][0]:.0f} ms, forward {forward[0]:.0f} ms, "
              f"rho = backward/forward = {rho[0]:.2f} (from the minima {rho[1]:.2f})")
        print("| configuration | memory | forward steps / T | time / step loop (median) | (min) | predicted |")
        print("|---|---|---|---|---|---|")
        for config in configs:
            m, n = times[config["name"]]
            predicted = (config["forward_steps"] / T + rho[0]) / (1 + rho[0])
            print(f"| {config['name']} | {config['peak_bytes'] / sizes.full:.1%} | {config['forward_steps'] / T:.3f} "
                  f"| {m / step_loop[0]:.2f}x | {n / step_loop[1]:.2f}x | {predicted:.2f}x |", flush=True)

    record = {
        "script": "benchmarks/checkpointing_memory.py",
        "command": " ".join(["python", "benchmarks/checkpointing_memory.py", *sys.argv[1:]]),
        "date": datetime.date.today().isoformat(),
        "versions": {"python": platform.python_version(), "numpy": np.__version__},
        "blas": blas_description(threadpool_info()),
        "cpus": os.cpu_count(),
        "setup": {"cell": "LSTM", "dtype": "float32", "T": T, "B": B, "n_in": n_in, "H": H, "rounds": args.rounds},
        "sizes": {"state": sizes.state, "internal": sizes.internal, "internal_slots": sizes.internal_slots,
                  "full": sizes.full},
        "full_traced_peak_bytes": full_traced,
        "configurations": configs,
        "timings": timings,
        "seconds": round(time.perf_counter() - started),
        "cpu_seconds": round(time.process_time() - cpu_started),
    }
    args.out.write_text(json.dumps(record, indent=1) + "\n")
    print(f"\nwritten to {args.out} in {record['seconds']} s ({record['cpu_seconds']} s of CPU)")


if __name__ == "__main__":
    main()
