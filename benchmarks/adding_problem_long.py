"""The adding problem with a longer budget than the chapter can afford, stored for the chapter to show.

Run by hand (not part of the test suite; about 4 minutes of CPU time, one core)::

    python benchmarks/adding_problem_long.py

The chapter "Learning long lags: the adding problem" (book/adding_problem.ipynb) trains a tanh RNN, an
LSTM and a GRU for 1000 steps at lag T = 50 and finds that only the gated cells learn. This script asks
whether the tanh RNN merely needs more time: it trains it for 10 000 steps, at the chapter's learning
rate and at one ten times smaller, at T = 50 and T = 100, and trains the LSTM and the GRU at T = 100
for 3000 steps. Everything else is the chapter's setup (hidden width, batch, Adam, clipping, seeds,
initialization, data streams and test set), so the first 1000 steps of the T = 50 runs at the chapter's
learning rate are the chapter's runs.

The result, the test mean squared error every ``--eval-every`` steps of every run, is written as JSON to
``book/data/adding_problem_long.json`` (``--out``), with the setup, the command line, the versions and
the run time (wall clock and CPU; on a shared machine the CPU time is the one to compare).
"""
from __future__ import annotations

import os

for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")  # one BLAS thread, as the chapter runs; set before numpy loads

import argparse  # noqa: E402
import datetime  # noqa: E402
import itertools  # noqa: E402
import json  # noqa: E402
import pathlib  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from companion.cells import GRU, LSTM, Elman  # noqa: E402
from companion.model import init_model, predict, sequence_loss_and_grads  # noqa: E402
from companion.optim import Adam  # noqa: E402
from companion.tasks import adding_problem  # noqa: E402
from companion.train import train  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]

# The chapter's setup (book/adding_problem.ipynb); the chapter checks that the stored file agrees.
SETUP = {"H": 16, "batch": 32, "clip": 1.0, "n_test": 1000, "test_seed": 12345, "data_seed_offset": 1000,
         "seeds": [0, 1, 2]}

# (cell, T, learning rate, steps)
RUNS = [
    ("tanh", 50, 0.02, 10_000),
    ("tanh", 50, 0.002, 10_000),
    ("tanh", 100, 0.02, 10_000),
    ("tanh", 100, 0.002, 10_000),
    ("lstm", 100, 0.02, 3_000),
    ("gru", 100, 0.02, 3_000),
]


def make_cell(name: str, H: int):
    """The three cells of the chapter, each reading the 2 inputs (value, marker)."""
    return {"tanh": Elman(2, H), "lstm": LSTM(2, H), "gru": GRU(2, H, variant="torch")}[name]


def run(name: str, seed: int, *, T: int, lr: float, steps: int, eval_every: int) -> dict:
    """Train one model as the chapter does; its test MSE at step 0 and every ``eval_every`` steps."""
    H, batch, clip = SETUP["H"], SETUP["batch"], SETUP["clip"]
    cell = make_cell(name, H)
    params = init_model(cell, 1, seed)
    test_xs, test_s = adding_problem(SETUP["test_seed"], batch=SETUP["n_test"], steps=T)
    data_rng = np.random.default_rng(SETUP["data_seed_offset"] + seed)
    batches = (adding_problem(data_rng, batch=batch, steps=T) for _ in itertools.count())

    def loss_and_grads(p, b):
        return sequence_loss_and_grads(cell, p, *b, last_step_only=True)

    def test_mse() -> float:
        y_T = predict(cell, params, test_xs)[-1]                                 # (n_test, 1)
        return float(np.mean((y_T - test_s) ** 2))

    optimizer = Adam(lr)
    done, curve = [0], [test_mse()]
    while done[-1] < steps:
        chunk = min(eval_every, steps - done[-1])
        train(loss_and_grads, params, optimizer, batches, steps=chunk, clip=clip, progress=False)
        done.append(done[-1] + chunk)
        curve.append(test_mse())
    return {"cell": name, "T": T, "lr": lr, "seed": seed, "steps": done,
            "test_mse": [round(v, 6) for v in curve]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--eval-every", type=int, default=250, help="steps between test evaluations")
    parser.add_argument("--out", type=pathlib.Path, default=ROOT / "book" / "data" / "adding_problem_long.json")
    args = parser.parse_args()
    start, cpu_start = time.perf_counter(), time.process_time()
    results = []
    for name, T, lr, steps in RUNS:
        for seed in SETUP["seeds"]:
            t0 = time.perf_counter()
            result = run(name, seed, T=T, lr=lr, steps=steps, eval_every=args.eval_every)
            results.append(result)
            print(f"{name:4s} T={T:3d} lr={lr:<5} seed {seed}: test MSE {result['test_mse'][-1]:.4f} "
                  f"after {steps} steps ({time.perf_counter() - t0:.0f} s)", flush=True)
    record = {
        "script": "benchmarks/adding_problem_long.py",
        "command": " ".join(["python", "benchmarks/adding_problem_long.py", *sys.argv[1:]]),
        "date": datetime.date.today().isoformat(),
        "versions": {"python": platform.python_version(), "numpy": np.__version__},
        "blas_threads": os.environ["OPENBLAS_NUM_THREADS"],
        "seconds": round(time.perf_counter() - start),
        "cpu_seconds": round(time.process_time() - cpu_start),
        "setup": {**SETUP, "optimizer": "Adam", "eval_every": args.eval_every},
        "runs": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
