"""The companion's adjoint method against torchdiffeq on the CPU: time, function evaluations and memory.

Run by hand (not part of the test suite; about two minutes)::

    python benchmarks/continuous_adjoint.py                  # writes book/data/continuous_adjoint.json

The problem (chapter "Continuous-time BPTT"): a tanh CTRNN with B = 32 sequences, H = 64 units, n_in = 8
inputs x(t) = sin(omega t + phase) (a smooth function of t), time constants uniform in [0.8, 1.25],
integrated from 0 to t_end = 10 with 1000 fixed steps of dt = 0.01 of Kutta's 3/8 rule (the companion's
``"rk4-38"``, torchdiffeq's ``"rk4"``), and a measurement loss on the first 8 units every 1.0 time units
(10 measurements, all on the grid). Five routes to dL/dtheta and dL/dh0:

* ``companion adjoint, checkpoints`` and ``companion adjoint, reverse``: ``continuous.adjoint_gradients``
  with ``recover="checkpoints"`` (every grid state stored) and ``"reverse"`` (the state integrated backward
  beside the adjoint, reset at the measurements);
* ``torchdiffeq.odeint_adjoint``: the same algorithm as ``reverse`` (``companion.torch_ref.torchdiffeq_gradients``
  with ``adjoint=True``);
* ``companion discretized`` and ``torchdiffeq.odeint``: back-propagation through the solver's steps
  (``continuous.discretized_gradients``; torch autograd through ``odeint``).

torchdiffeq's vector field is ``companion.torch_ref.CTRNNField``; it reads x(t) with the same checked numpy
function as the companion, so both pay the same for the input.

The script first checks that the routes agree (the same algorithms to rounding), then times every route
in one process at each thread setting of ``--threads`` (``1``: one thread for numpy's BLAS and torch, by
threadpoolctl and ``torch.set_num_threads``; ``default``: both libraries' own counts), the routes taking
turns as in ``bptt_speed.interleaved_ms`` (medians). Memory, three measures:

* ``stored_for_backward_bytes`` (every route): what the forward pass keeps for the backward pass. The
  companion's ``stats.stored_bytes`` (states, stage values, inputs); for torchdiffeq, the bytes of the
  storages that the autograd graph of the forward call holds in saved tensors (the graph walked from the
  output; the parameters, which odeint_adjoint saves, included).
* ``rss_growth_bytes`` (every route): in a fresh subprocess at one thread, after a warm-up call with
  t_end = 1 there, the peak resident set size during the gradient call minus the resident set size just
  before it: everything, the autograd graph's nodes, the temporaries and the allocator's leftovers
  included. Linux's ``/proc/self/status`` (``VmRSS``; ``VmHWM``, its peak, reset to it before the call
  through ``/proc/self/clear_refs``), not ``getrusage``'s ``ru_maxrss``: a child inherits that from the
  parent it was forked from (measured: this script's own 650 MB).
* ``tracemalloc_peak_bytes`` (numpy routes): ``tracemalloc``'s peak during a second call in that
  subprocess, the arrays the call returns included (torch's allocator is invisible to tracemalloc).

The results are printed as markdown tables and written as JSON (``--out``) with the machine, the date,
the versions and the exact settings.
"""
from __future__ import annotations

import argparse
import datetime
import json
import pathlib
import platform
import subprocess
import sys
import time

from bptt_speed import blas_description, interleaved_ms, machine_description, thread_setting

ROOT = pathlib.Path(__file__).resolve().parents[1]
SETTINGS = {"B": 32, "n_hidden": 64, "n_in": 8, "n_out": 8, "nonlinearity": "tanh", "dt": 0.01, "t_end": 10.0,
            "measure_every": 1.0, "tau_range": [0.8, 1.25], "input": "x_j(t) = sin(omega_j t + phase_bj), "
            "omega_j ~ U[0.5, 2], phase ~ U[0, 2 pi]", "h0": "N(0, 0.25)", "targets": "N(0, 0.25)",
            "weights": "CTRNN.init_params: uniform in [-1/sqrt(H), 1/sqrt(H)]", "seed": 0,
            "companion_method": "rk4-38", "torchdiffeq_method": "rk4, options=dict(step_size=dt)"}
ROUTES = ["companion adjoint, checkpoints", "companion adjoint, reverse", "torchdiffeq.odeint_adjoint",
          "companion discretized", "torchdiffeq.odeint"]
SAME_ALGORITHM = [("torchdiffeq.odeint_adjoint", "companion adjoint, reverse"),
                  ("torchdiffeq.odeint", "companion discretized")]


def make_problem(settings: dict) -> tuple:
    """``(network, params, h0, loss, inputs)`` of the settings."""
    import numpy as np

    from companion import continuous
    from companion.cells import CTRNN

    B, H, n_in, n_out = settings["B"], settings["n_hidden"], settings["n_in"], settings["n_out"]
    rng = np.random.default_rng(settings["seed"])
    network = CTRNN(n_in, H, nonlinearity=settings["nonlinearity"])
    params = network.init_params(rng)
    params["tau"] = rng.uniform(*settings["tau_range"], size=H)
    h0 = rng.normal(0.0, 0.5, size=(B, H))
    omega, phase = rng.uniform(0.5, 2.0, size=n_in), rng.uniform(0.0, 2 * np.pi, size=(B, n_in))
    times = settings["measure_every"] * np.arange(1, round(settings["t_end"] / settings["measure_every"]) + 1)
    loss = continuous.Loss(times, rng.normal(0.0, 0.5, size=(len(times), B, n_out)))
    return network, params, h0, loss, (lambda t: np.sin(omega * t + phase))


def route_functions(settings: dict, t_end: float | None = None) -> dict:
    """route -> a function of no arguments returning ``(loss, grads, dh0, field evaluations, stored bytes)``;
    the stored bytes are the companion's ``stats.stored_bytes`` (None for torchdiffeq: see ``memory_probe``)."""
    from companion import continuous
    from companion.torch_ref import torchdiffeq_gradients

    network, params, h0, loss, inputs = make_problem(settings)
    if t_end is not None:                                      # a shorter run (the memory probes' warm-up)
        loss = continuous.Loss(loss.times[loss.times <= t_end], loss.targets[loss.times <= t_end])
    arguments = (network, params, h0, settings["t_end"] if t_end is None else t_end, settings["dt"], loss)

    def companion(route, **options):
        def run():
            result = route(*arguments, inputs=inputs, method=settings["companion_method"], **options)
            return result.loss, result.grads, result.dh0, result.stats.field_evaluations, result.stats.stored_bytes
        return run

    def torch_route(adjoint: bool):
        return lambda: (*torchdiffeq_gradients(*arguments, inputs=inputs, adjoint=adjoint), None)

    return {
        "companion adjoint, checkpoints": companion(continuous.adjoint_gradients, recover="checkpoints",
                                                    keep_adjoints=False),
        "companion adjoint, reverse": companion(continuous.adjoint_gradients, recover="reverse", keep_adjoints=False),
        "torchdiffeq.odeint_adjoint": torch_route(True),
        "companion discretized": companion(continuous.discretized_gradients, keep_adjoints=False),
        "torchdiffeq.odeint": torch_route(False),
    }


def relative_difference(first: tuple, second: tuple) -> float:
    """max over every gradient array (dL/dtheta and dL/dh0) of max|first - second| / max|second|."""
    import numpy as np

    pairs = [(first[1][key], second[1][key]) for key in second[1]] + [(first[2], second[2])]
    return max(float(np.max(np.abs(a - b)) / np.max(np.abs(b))) for a, b in pairs)


# ----- memory, one route per fresh process -------------------------------------------------------------------
def _memory_status(field: str) -> int:
    """``VmRSS`` (resident set size now) or ``VmHWM`` (its peak) of this process in bytes (Linux)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/self/status has no {field}")


def _reset_peak_rss() -> None:
    """Set the peak resident set size (``VmHWM``) to the present one (Linux >= 4.0: clear_refs 5)."""
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")


def _graph_saved_bytes(route: str, torch) -> int:
    """Bytes of the storages that the autograd graph of torchdiffeq's forward call holds for the backward
    pass: the graph is walked from the output through ``next_functions``, and every tensor a node saved
    (its ``_saved_*`` attributes; ``saved_tensors`` of a custom Function such as odeint_adjoint's) counts
    its storage once. The forward call of ``torchdiffeq_gradients``, without its backward pass."""
    import numpy as np
    import torchdiffeq

    from companion.torch_ref import CTRNNField

    network, params, h0, loss, inputs = make_problem(SETTINGS)
    solver = torchdiffeq.odeint_adjoint if route == "torchdiffeq.odeint_adjoint" else torchdiffeq.odeint
    outputs = torch.from_numpy(np.union1d([0.0, SETTINGS["t_end"]], loss.times))
    hs = solver(CTRNNField(network, params, inputs), torch.tensor(h0, requires_grad=True), outputs,
                method="rk4", options=dict(step_size=SETTINGS["dt"]))
    storages: dict[int, int] = {}                       # address -> bytes
    saved_names: dict[type, list[str]] = {}             # node type -> its attributes that hold saved tensors
    seen, stack = set(), [hs.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        if type(node) not in saved_names:
            names = [name for name in dir(node) if name.startswith("_saved_")]
            saved_names[type(node)] = names or (["saved_tensors"] if hasattr(node, "saved_tensors") else [])
        for name in saved_names[type(node)]:
            value = getattr(node, name)
            for tensor in value if isinstance(value, (tuple, list)) else (value,):
                if torch.is_tensor(tensor):
                    storages[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
        stack.extend(function for function, _ in node.next_functions)
    return sum(storages.values())


def memory_probe(route: str) -> dict:
    """The memory measures of one route, in this (fresh) process at one thread; see the module docstring."""
    import tracemalloc

    import torch
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        torch.set_num_threads(1)
        route_functions(SETTINGS, t_end=1.0)[route]()           # warm-up: libraries, kernels, allocator
        function = route_functions(SETTINGS)[route]
        before = _memory_status("VmRSS")
        _reset_peak_rss()
        function()
        measures = {"rss_growth_bytes": _memory_status("VmHWM") - before}
        if route.startswith("companion"):
            tracemalloc.start()
            measures["stored_for_backward_bytes"] = function()[4]
            measures["tracemalloc_peak_bytes"] = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
        else:
            measures["stored_for_backward_bytes"] = _graph_saved_bytes(route, torch)
    return measures


def measure_memory(route: str) -> dict:
    """``memory_probe(route)`` run in a fresh interpreter."""
    result = subprocess.run([sys.executable, __file__, "--memory-probe", route], capture_output=True, text=True,
                            cwd=ROOT, timeout=300)
    if result.returncode != 0:
        raise RuntimeError(f"memory probe of {route!r} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


# ----- the run ---------------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", nargs="+", default=["1", "default"], choices=["1", "default"])
    parser.add_argument("--rounds", type=int, default=3, help="rounds of interleaved_ms")
    parser.add_argument("--pause", type=float, default=0.2,
                        help="seconds of sleep before each library's turn at the default threads (interleaved_ms)")
    parser.add_argument("--out", default=str(ROOT / "book" / "data" / "continuous_adjoint.json"))
    parser.add_argument("--memory-probe", metavar="ROUTE", choices=ROUTES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_probe:
        print(json.dumps(memory_probe(args.memory_probe)))
        return

    import numpy as np
    import threadpoolctl
    import torch
    import torchdiffeq

    started, cpu_started = time.perf_counter(), time.process_time()
    functions = route_functions(SETTINGS)
    results = {route: function() for route, function in functions.items()}
    pairs = SAME_ALGORITHM + [("companion adjoint, checkpoints", "companion adjoint, reverse"),   # recovery error
                              ("companion adjoint, checkpoints", "companion discretized")]        # O(dt^4)
    agreement = {f"{first} vs {second}": relative_difference(results[first], results[second])
                 for first, second in pairs}
    print(f"B={SETTINGS['B']}, H={SETTINGS['n_hidden']}, n_in={SETTINGS['n_in']}, dt={SETTINGS['dt']}, "
          f"t_end={SETTINGS['t_end']}, numpy {np.__version__}, torch {torch.__version__}, "
          f"torchdiffeq {torchdiffeq.__version__}")
    print(blas_description(threadpoolctl.threadpool_info()))
    print("\nmax relative difference of the gradients (dL/dtheta, dL/dh0):")
    for pair, value in agreement.items():
        print(f"  {pair}: {value:.2e}")
    for first, second in SAME_ALGORITHM:
        assert agreement[f"{first} vs {second}"] < 1e-8, f"{first} and {second} disagree"

    library = [route.startswith("companion") for route in ROUTES]
    pauses = [args.pause if library[k] != library[k - 1] else 0.0 for k in range(len(ROUTES))]  # a library's turn
    timings = {}
    for setting in args.threads:
        with thread_setting(setting, torch) as (blas_threads, torch_threads):
            milliseconds = interleaved_ms([functions[route] for route in ROUTES], args.rounds, warm_up=1, timed=2,
                                          pauses=pauses if setting == "default" else None)
        timings[setting] = {"numpy_blas_threads": blas_threads, "torch_threads": torch_threads,
                            "median_ms": dict(zip(ROUTES, milliseconds))}
    memory = {route: measure_memory(route) for route in ROUTES}

    reference = "torchdiffeq.odeint_adjoint"
    for setting, timing in timings.items():
        print(f"\nthreads: {setting} (numpy's BLAS {timing['numpy_blas_threads']}, torch {timing['torch_threads']})\n")
        print("| route | median (ms) | speed vs odeint_adjoint | field evaluations | stored for backward (MB) "
              "| RSS growth (MB) | tracemalloc peak (MB) |")
        print("|---|---|---|---|---|---|---|")
        for route in ROUTES:
            ms, measures = timing["median_ms"][route], memory[route]
            megabytes = [f"{measures[key] / 1e6:.1f}" if key in measures else "-"
                         for key in ("stored_for_backward_bytes", "rss_growth_bytes", "tracemalloc_peak_bytes")]
            print(f"| {route} | {ms:.0f} | {timing['median_ms'][reference] / ms:.2f}x | {results[route][3]} | "
                  + " | ".join(megabytes) + " |")

    record = {
        "script": "benchmarks/continuous_adjoint.py",
        "command": " ".join(["python benchmarks/continuous_adjoint.py", *sys.argv[1:]]),
        "date": datetime.date.today().isoformat(),
        "machine": machine_description(),
        "versions": {"python": platform.python_version(), "numpy": np.__version__, "torch": torch.__version__,
                     "torchdiffeq": torchdiffeq.__version__, "threadpoolctl": threadpoolctl.__version__},
        "blas": blas_description(threadpoolctl.threadpool_info()),
        "settings": {**SETTINGS, "steps": round(SETTINGS["t_end"] / SETTINGS["dt"]),
                     "measurement_times": [float(t) for t in make_problem(SETTINGS)[3].times]},
        "timing": {"rounds": args.rounds, "warm_up": 1, "timed": 2, "pause_s": args.pause,
                   "statistic": "median over rounds x timed calls of one gradient computation (forward + backward)"},
        "gradient_max_relative_difference": agreement,
        "routes": {route: {"loss": results[route][0], "field_evaluations": results[route][3],
                           "median_ms": {setting: timing["median_ms"][route] for setting, timing in timings.items()},
                           "memory": memory[route]} for route in ROUTES},
        "threads": {setting: {"numpy_blas": timing["numpy_blas_threads"], "torch": timing["torch_threads"]}
                    for setting, timing in timings.items()},
        "memory_measures": {
            "stored_for_backward_bytes": "what the forward pass keeps for the backward pass: the companion's "
                                         "stats.stored_bytes; torchdiffeq: bytes of the storages of the tensors "
                                         "saved in the autograd graph of the forward call (walked from the output)",
            "rss_growth_bytes": "fresh process, one thread, after a warm-up call with t_end = 1: peak resident "
                                "set size during the gradient call (/proc/self/status VmHWM, reset by "
                                "/proc/self/clear_refs 5 before the call) minus VmRSS before it",
            "tracemalloc_peak_bytes": "numpy routes: tracemalloc's peak during a second call in that process",
        },
        "seconds": round(time.perf_counter() - started),
        "cpu_seconds": round(time.process_time() - cpu_started),
    }
    pathlib.Path(args.out).write_text(json.dumps(record, indent=1) + "\n")
    print(f"\nwritten to {args.out} ({record['seconds']} s)")


if __name__ == "__main__":
    main()
