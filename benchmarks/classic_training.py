"""The classic trainers on the embedded Reber grammar and a^n b^n: the runs of the chapter "Training
algorithms for recurrent networks", stored in book/data/classic_training.json.

Run by hand from the top folder (about 10 minutes on one core of the course's machines; numpy's BLAS is
held to one thread, as in the chapters: the EKF's small matrix products only lose time to a second one):

    .venv/bin/python benchmarks/classic_training.py

1. Tuning, on a seed that is not reported (100): each method's one main setting (the learning rate; for
   the EKF the final measurement noise r_end, with r_start = 100 r_end) over a small grid, on both
   grammars, with the full budget; the value with the lowest mean log final loss over the two grammars
   wins. The three EKF variants share the value chosen for EKF-RTRL.
2. The runs: every method from the same initial weights on the same training strings, seeds 0, 1, 2,
   the budget N E presentations (N = 128 strings, E = 50 passes), with the tuned settings.
3. For every run: the training objective against presentations, the wall time of training, the
   fraction of the training and of 1000 fresh test strings predicted without a mistake, and for a^n b^n
   the largest n such that every a^k b^k with k <= n is predicted (n up to 30; training has n <= 10).
4. Longer runs of the cheapest methods, iRprop- and Adam, with 100 times the budget (5000 passes): about
   the wall time the EKF takes for its 50, so that the methods can be compared at equal time too.
5. Memory: the peak of memory allocated while training one pass (tracemalloc), per method, without the
   records' extra evaluations of the objective.
"""
from __future__ import annotations

import json
import math
import pathlib
import platform
import sys
import time
import tracemalloc

import numpy as np
from threadpoolctl import threadpool_limits

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from companion import grammar_training as gt  # noqa: E402
from companion import grammars  # noqa: E402
from companion.cells import Elman  # noqa: E402
from companion.model import init_model  # noqa: E402

HIDDEN = 8
TRAINING_STRINGS = 128
EPOCHS = 50
SEEDS = (0, 1, 2)
TUNING_SEED = 100
TEST_STRINGS = 1000
LONGEST_N = 30
GRIDS = {
    "bptt_online": ("lr", [0.03, 0.1, 0.3, 1.0]),
    "bbptt": ("lr", [0.3, 1.0, 3.0, 10.0]),
    "qptt": ("lr", [0.3, 1.0, 3.0, 10.0]),
    "rprop": ("lr", [0.01, 0.03, 0.1, 0.3]),
    "adam": ("lr", [0.01, 0.03, 0.1, 0.3]),
    "ekf_rtrl": ("r_end", [0.03, 0.1, 0.3, 1.0]),
}
SHARED = {"ekf_bptt": "ekf_rtrl", "ndekf_rtrl": "ekf_rtrl"}     # take the setting tuned for another method
LONG_METHODS = ("rprop", "adam")
LONG_FACTOR = 100
OUTPUT = ROOT / "book" / "data" / "classic_training.json"


def languages() -> dict[str, grammars.Language]:
    return {"reber": grammars.Reber(), "anbn": grammars.AnBn(1, 10)}


def setup(language: grammars.Language, seed: int):
    """The model and training strings of one seed: weights from ``seed``, strings from 1000 + seed."""
    cell = Elman(language.size, HIDDEN)
    return cell, init_model(cell, language.size, seed), gt.make_task(language, 1000 + seed, TRAINING_STRINGS)


def final_loss(run: gt.TrainingRun) -> float:
    """The objective at the last record within the budget (a line search may overshoot it)."""
    budget = EPOCHS * TRAINING_STRINGS
    return [loss for spent, loss in zip(run.presentations, run.losses) if spent <= budget][-1]


def setting_of(method: str, value: float) -> dict[str, float]:
    name = GRIDS[SHARED.get(method, method)][0]
    return {"r_end": value, "r_start": 100 * value} if name == "r_end" else {name: value}


def tune() -> tuple[dict[str, float], dict]:
    chosen, table = {}, {}
    for method, (name, grid) in GRIDS.items():
        scores = []
        for value in grid:
            logs = []
            for language in languages().values():
                cell, params, task = setup(language, TUNING_SEED)
                run = gt.train_method(method, cell, params, task, epochs=EPOCHS, seed=TUNING_SEED,
                                      settings=setting_of(method, value))
                logs.append(math.log(final_loss(run)))
            scores.append(float(np.mean(logs)))
            print(f"tune {method} {name}={value}: mean log loss {scores[-1]:.3f}", flush=True)
        chosen[method] = grid[int(np.argmin(scores))]
        table[method] = {"setting": name, "grid": grid, "mean_log_final_loss": scores}
    for method, source in SHARED.items():
        chosen[method] = chosen[source]
    return chosen, table


def largest_n(cell, params) -> int:
    """The largest n such that every a^k b^k with k <= n is predicted without a mistake (0 if none)."""
    longer = grammars.AnBn(1, LONGEST_N)
    strings = ["S" + "a" * k + "b" * k + "T" for k in range(1, LONGEST_N + 1)]
    right = gt.string_is_predicted(cell, params, grammars.encode(longer, strings))
    return int(np.argmin(right)) if not right.all() else LONGEST_N


def peak_memory(method: str, settings: dict[str, float]) -> dict[str, int]:
    """Peak bytes allocated while training one pass, on a^n b^n and on Reber."""
    peaks = {}
    for name, language in languages().items():
        cell, params, task = setup(language, 0)
        tracemalloc.start()
        gt.train_method(method, cell, params, task, epochs=1, settings=settings, record=False)
        peaks[name] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peaks


def main() -> None:
    started = time.time()
    chosen, tuning = tune()
    settings = {method: setting_of(method, chosen[method]) if method in chosen else {} for method in gt.METHODS}
    runs = {}
    for name, language in languages().items():
        test = grammars.encode(language, language.sample(12345, TEST_STRINGS))
        for method in gt.METHODS:
            for seed in SEEDS:
                cell, params, task = setup(language, seed)
                run = gt.train_method(method, cell, params, task, epochs=EPOCHS, seed=seed,
                                      settings=settings[method])
                record = {
                    "presentations": run.presentations, "losses": run.losses, "seconds": run.seconds,
                    "final_loss": final_loss(run),
                    "train_accuracy": float(gt.string_is_predicted(cell, params, task.batch).mean()),
                    "test_accuracy": float(gt.string_is_predicted(cell, params, test).mean()),
                }
                if name == "anbn":
                    record["largest_n"] = largest_n(cell, params)
                runs[f"{name}/{method}/{seed}"] = record
                print(f"{name} {method} seed {seed}: loss {record['final_loss']:.2e}, test "
                      f"{record['test_accuracy']:.3f}, {run.seconds:.1f} s", flush=True)
    long_runs = {}
    for name, language in languages().items():
        test = grammars.encode(language, language.sample(12345, TEST_STRINGS))
        for method in LONG_METHODS:
            for seed in SEEDS:
                cell, params, task = setup(language, seed)
                run = gt.train_method(method, cell, params, task, epochs=LONG_FACTOR * EPOCHS, seed=seed,
                                      settings=settings[method])
                record = {"final_loss": run.losses[-1], "seconds": run.seconds,
                          "train_accuracy": float(gt.string_is_predicted(cell, params, task.batch).mean()),
                          "test_accuracy": float(gt.string_is_predicted(cell, params, test).mean())}
                if name == "anbn":
                    record["largest_n"] = largest_n(cell, params)
                long_runs[f"{name}/{method}/{seed}"] = record
                print(f"long {name} {method} seed {seed}: loss {record['final_loss']:.2e}, test "
                      f"{record['test_accuracy']:.3f}, {run.seconds:.1f} s", flush=True)
    memory = {method: peak_memory(method, settings[method]) for method in gt.METHODS}
    OUTPUT.write_text(json.dumps({
        "hidden": HIDDEN, "training_strings": TRAINING_STRINGS, "epochs": EPOCHS, "seeds": list(SEEDS),
        "tuning_seed": TUNING_SEED, "test_strings": TEST_STRINGS, "longest_n": LONGEST_N,
        "settings": settings, "tuning": tuning, "runs": runs, "long_factor": LONG_FACTOR,
        "long_runs": long_runs, "peak_memory_bytes": memory,
        "machine": {"python": platform.python_version(), "numpy": np.__version__,
                    "processor": platform.processor() or platform.machine()},
        "script_seconds": time.time() - started,
    }, indent=1) + "\n")
    print(f"wrote {OUTPUT} in {time.time() - started:.0f} s")


if __name__ == "__main__":
    with threadpool_limits(limits=1):
        main()
