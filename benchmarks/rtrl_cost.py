"""Wall time per step of real-time recurrent learning against BPTT as the network widens.

Run by hand (not part of the test suite; about a minute)::

    python benchmarks/rtrl_cost.py                      # writes book/data/rtrl_cost.json

The problem (chapter "Real-time recurrent learning"): a tanh Elman network with one input (n_in = 1), one
sequence (B = 1) and H units, for H = 4, 8, ..., 128, and the loss L = sum_t <dhs[t-1], h_t> with random
dhs. Two routes to the same gradient of the parameters (and of h_0):

* ``rtrl``: ``companion.rtrl.rtrl``, the sensitivities to all P = H^2 + 2H parameter entries and H state
  entries carried forward, one ``_step_jvp`` with every direction per step;
* ``bptt``: ``companion.bptt.forward`` and ``backward`` on the step loop (``fused=False``: the same
  per-step Python structure as RTRL's loop, one cell call per step and direction of time).

The script checks that both give the same gradients, then times each route at one BLAS thread (the
chapters' setting), taking turns as in ``bptt_speed.interleaved_ms`` (medians), on T steps chosen so that
a call lasts long enough to time (T = 64 up to H = 32, then 16 and 8 for RTRL's longest calls); it
reports milliseconds per step. The chapter fits the slopes of log time against log H; the counted
floating-point operations, which do not vary from run to run, are computed in the chapter itself.
"""
from __future__ import annotations

import argparse
import datetime
import json
import pathlib
import platform
import sys
import time

from bptt_speed import blas_description, interleaved_ms, machine_description

ROOT = pathlib.Path(__file__).resolve().parents[1]
WIDTHS = [4, 8, 16, 32, 64, 128]
STEPS = {4: 64, 8: 64, 16: 64, 32: 64, 64: 16, 128: 8}
SETTINGS = {"cell": "Elman(1, H), tanh", "B": 1, "n_in": 1, "widths": WIDTHS, "steps": STEPS,
            "weights": "Elman.init_params(0)", "inputs": "N(0, 1), seed 1", "dhs": "N(0, 1), seed 2",
            "blas_threads": 1}


def problem(H: int) -> tuple:
    """``(cell, params, xs, dhs)`` for H units."""
    import numpy as np

    from companion.cells import Elman

    cell = Elman(1, H)
    T = STEPS[H]
    return (cell, cell.init_params(0), np.random.default_rng(1).normal(size=(T, 1, 1)),
            np.random.default_rng(2).normal(size=(T, 1, H)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", default=str(ROOT / "book" / "data" / "rtrl_cost.json"))
    args = parser.parse_args()
    started, cpu_started = time.perf_counter(), time.process_time()

    import numpy as np
    import threadpoolctl

    from companion import bptt, rtrl

    def bptt_gradients(cell, params, xs, dhs):
        _, cache = bptt.forward(cell, params, xs, fused=False)
        return bptt.backward(cell, params, cache, dhs)

    rows = {}
    with threadpoolctl.threadpool_limits(limits=1):
        print(blas_description(threadpoolctl.threadpool_info()))
        print("\n| H | P | T | rtrl ms/step | bptt ms/step | ratio | largest relative difference |")
        print("|---|---|---|---|---|---|---|")
        for H in WIDTHS:
            cell, params, xs, dhs = problem(H)
            ours, (grads, _, dh0) = rtrl.rtrl(cell, params, xs, dhs), bptt_gradients(cell, params, xs, dhs)
            difference = max([float(np.max(np.abs(ours.grads[key] - grads[key])) / np.max(np.abs(grads[key])))
                              for key in grads] + [float(np.max(np.abs(ours.dstate0 - dh0)) / np.max(np.abs(dh0)))])
            assert difference < 1e-10, (H, difference)
            rtrl_ms, bptt_ms = interleaved_ms([lambda: rtrl.rtrl(cell, params, xs, dhs),
                                               lambda: bptt_gradients(cell, params, xs, dhs)],
                                              rounds=args.rounds, warm_up=1, timed=2)
            T = xs.shape[0]
            rows[str(H)] = {"P": sum(value.size for value in params.values()), "T": T,
                            "rtrl_ms_per_step": rtrl_ms / T, "bptt_ms_per_step": bptt_ms / T,
                            "max_relative_difference": difference}
            row = rows[str(H)]
            print(f"| {H} | {row['P']} | {T} | {row['rtrl_ms_per_step']:.4f} | {row['bptt_ms_per_step']:.4f} | "
                  f"{row['rtrl_ms_per_step'] / row['bptt_ms_per_step']:.0f} | {difference:.1e} |")
        blas = blas_description(threadpoolctl.threadpool_info())

    record = {
        "script": "benchmarks/rtrl_cost.py",
        "command": " ".join(["python benchmarks/rtrl_cost.py", *sys.argv[1:]]),
        "date": datetime.date.today().isoformat(),
        "machine": machine_description(),
        "versions": {"python": platform.python_version(), "numpy": np.__version__,
                     "threadpoolctl": threadpoolctl.__version__},
        "blas": blas,
        "settings": SETTINGS,
        "timing": {"rounds": args.rounds, "warm_up": 1, "timed": 2,
                   "statistic": "median over rounds x timed calls of one gradient computation, divided by T"},
        "widths": rows,
        "seconds": round(time.perf_counter() - started),
        "cpu_seconds": round(time.process_time() - cpu_started),
    }
    pathlib.Path(args.out).write_text(json.dumps(record, indent=1) + "\n")
    print(f"\nwritten to {args.out} ({record['seconds']} s)")


if __name__ == "__main__":
    main()
