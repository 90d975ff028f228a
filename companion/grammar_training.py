"""The classic trainers of recurrent networks side by side on a grammar task, each behind one function.

A ``GrammarTask`` is a fixed training set of strings of a language (``companion.grammars``), encoded
twice: as one zero-padded batch with a mask (for the full-batch methods) and as one pattern per string
(for the SNNS schedules and the extended Kalman filter). Every method trains the same model, a cell with
a readout and sigmoid outputs, on the same objective: the squared error of the outputs against the
multi-hot legal-next-symbol targets (``companion.losses.sigmoid_mse``), which the EKF also minimizes.

``train_method(name, cell, params, task, epochs=E, seed=s)`` gives every method the same budget: E
passes over the N training strings, N E *presentations* (a forward pass over one string and the
gradient or Jacobian of its outputs). A full-batch gradient is N presentations; a conjugate-gradient
line search spends N per trial step; an EKF pass presents every string once. It returns a
``TrainingRun``: the training objective (on the padded batch, the same for all methods) against the
presentations spent, and the wall time of the training alone.

The methods (``METHODS``; their settings are the module's ``SETTINGS``):

* ``"bptt_online"``: SNNS's BPTT: momentum after every string (``train(..., accumulate=1)``);
* ``"bbptt"``: SNNS's batch BPTT: momentum once per pass, the mean of the strings' gradients
  (``train(..., accumulate=N)``);
* ``"qptt"``: SNNS's Quickprop through time, batch, the same schedule;
* ``"rprop"``: iRprop- on the full-batch gradient;
* ``"steepest_descent"`` and ``"conjugate_gradient"``: Polak-Ribiere+ with a strong-Wolfe line search,
  restarted at every iteration for steepest descent;
* ``"adam"``: the modern reference, full batch;
* ``"ekf_bptt"``, ``"ekf_rtrl"``: the global EKF with the Jacobian by truncated BPTT or by RTRL,
  ``"ndekf_rtrl"``: the node-decoupled EKF by RTRL; strings presented a few at a time as parallel
  streams, the measurement noise R annealed from pass to pass.
"""
from __future__ import annotations

import functools
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from . import ekf, optim
from .cells.base import Cell, check_cell
from .conjugate_gradient import conjugate_gradient
from .grammars import GrammarBatch, Language, encode
from .losses import sigmoid
from .model import predict, sequence_loss_and_grads
from .train import train
from .types import Array, Params
from .validation import as_rng, check_positive_int

SETTINGS: dict[str, dict[str, float]] = {
    "bptt_online": {"lr": 0.3, "momentum": 0.9},
    "bbptt": {"lr": 10.0, "momentum": 0.9},
    "qptt": {"lr": 1.0, "mu": 1.75},
    "rprop": {"lr": 0.3},
    "steepest_descent": {},
    "conjugate_gradient": {},
    "adam": {"lr": 0.1},
    "ekf_bptt": {"p0": 10.0, "q": 1e-4, "r_start": 3.0, "r_end": 0.03, "streams": 8, "k2": 20},
    "ekf_rtrl": {"p0": 10.0, "q": 1e-4, "r_start": 3.0, "r_end": 0.03, "streams": 8},
    "ndekf_rtrl": {"p0": 10.0, "q": 1e-4, "r_start": 3.0, "r_end": 0.03, "streams": 8},
}
"""Each method's settings: learning rates (for iRprop- the initial step size), momentum, Quickprop's growth
factor, and for the EKF the initial covariance p0 (times I), the process noise q, the measurement noise
annealed geometrically from r_start (first pass) to r_end (last pass), the strings per update (streams)
and the truncation k2. The learning rates and r_end are the values ``benchmarks/classic_training.py``
chose for an Elman network with 8 hidden units, 128 strings and 50 passes (chapter "Training algorithms
for recurrent networks")."""


@dataclass(frozen=True)
class GrammarTask:
    """A fixed training set of strings, encoded for every kind of trainer.

    Attributes
    ----------
    language : Language
    strings : list of str
        The N training strings.
    batch : GrammarBatch
        All N strings, padded to the longest: ``xs (T, N, V)``, ``legal (T, N, V)``, ``mask (T, N)``.
    patterns : list of GrammarBatch
        Each string alone (B = 1, no padding), for the schedules that update after every string.
    """

    language: Language
    strings: list[str]
    batch: GrammarBatch
    patterns: list[GrammarBatch]

    @property
    def size(self) -> int:
        """N, the number of training strings."""
        return len(self.strings)


@dataclass
class TrainingRun:
    """What ``train_method`` records.

    Attributes
    ----------
    method : str
    presentations : list of int
        The presentations spent at each record (0 first).
    losses : list of float
        The training objective (``objective`` on the whole padded batch) at each record.
    seconds : float
        Wall time of the training alone (the records' extra forward passes are not counted).
    """

    method: str
    presentations: list[int] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0


def make_task(language: Language, rng: np.random.Generator | int, count: int) -> GrammarTask:
    """Draw ``count`` training strings of ``language`` and encode them (``GrammarTask``)."""
    count = check_positive_int(count, "count")
    strings = language.sample(as_rng(rng), count)
    return GrammarTask(language, strings, encode(language, strings), [encode(language, [s]) for s in strings])


def objective(cell: Cell, params: Params, batch: GrammarBatch) -> tuple[float, Params]:
    """The squared error of sigmoid outputs against the legal-next targets over the batch's real steps, and
    its gradient by BPTT (``sequence_loss_and_grads(..., loss="sigmoid_mse", mask=batch.mask)``)."""
    return sequence_loss_and_grads(cell, params, batch.xs, batch.legal, loss="sigmoid_mse", mask=batch.mask)


def string_is_predicted(cell: Cell, params: Params, batch: GrammarBatch) -> Array:
    """Whether each string is predicted without a mistake: at every real step every output is on the right
    side of 0.5 (above for the symbols the grammar allows next, below for the others).

    Returns
    -------
    bool array, shape (B,)
    """
    outputs = sigmoid(predict(cell, params, batch.xs))                       # (T, B, V)
    right = np.all((outputs > 0.5) == (batch.legal > 0.5), axis=-1)          # (T, B)
    return np.all(right | ~batch.mask, axis=0)


def train_method(method: str, cell: Cell, params: Params, task: GrammarTask, *, epochs: int,
                 seed: int = 0, settings: dict[str, float] | None = None, record: bool = True) -> TrainingRun:
    """Train ``params`` in place with one of the ``METHODS`` for ``epochs`` passes' worth of presentations.

    Parameters
    ----------
    method : str
        A key of ``METHODS``.
    cell : Cell
        Any cell of ``companion.cells``; ``params`` has its keys and a readout to V outputs
        (``companion.model.init_model(cell, V, rng)``).
    params : dict of arrays
        Updated in place.
    task : GrammarTask
    epochs : int, keyword-only
        E: the budget is N E presentations.
    seed : int, keyword-only
        The order of the strings in each pass of the methods that present them one by one (reshuffled
        every pass).
    settings : dict, optional, keyword-only
        Entries that replace the method's ``SETTINGS``.
    record : bool, keyword-only
        Evaluate the objective on the whole training set at the start and after every pass, outside the
        budget and the timing. ``False`` leaves only the records a method makes anyway (the full-batch
        methods' and the line searches'): for measuring what the training itself holds in memory.

    Returns
    -------
    TrainingRun
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {sorted(METHODS)}, got {method!r}")
    cell = check_cell(cell)
    if not isinstance(task, GrammarTask):
        raise ValueError(f"task must be a GrammarTask (make_task), got {type(task).__name__}")
    epochs = check_positive_int(epochs, "epochs")
    chosen = dict(SETTINGS[method])
    unknown = sorted(set(settings or {}) - set(chosen))
    if unknown:
        raise ValueError(f"settings of {method!r} are {sorted(chosen)}, got unknown {unknown}")
    chosen.update(settings or {})
    run = TrainingRun(method) if record else _Unrecorded(method)
    METHODS[method](cell, params, task, epochs, as_rng(seed), chosen, run)
    return run


class _Unrecorded(TrainingRun):
    """A ``TrainingRun`` for ``record=False``: ``_record`` leaves it alone."""


# ----- the methods: (cell, params, task, epochs, rng, settings, run) -> None, filling run ------------------
def _record(run: TrainingRun, cell: Cell, params: Params, task: GrammarTask, presentations: int) -> None:
    if isinstance(run, _Unrecorded):
        return
    run.presentations.append(presentations)
    run.losses.append(objective(cell, params, task.batch)[0])


def _loss_and_grads(cell: Cell) -> Callable[[Params, GrammarBatch], tuple[float, Params]]:
    return functools.partial(objective, cell)


def _schedule(optimizer_of: Callable[[dict], optim.Optimizer], online: bool):
    """SNNS's online (update after every string) or batch (once per pass) schedule of ``train``."""

    def method(cell, params, task, epochs, rng, settings, run):
        optimizer = optimizer_of(settings)
        _record(run, cell, params, task, 0)
        for epoch in range(epochs):
            order = rng.permutation(task.size) if online else range(task.size)
            start = time.perf_counter()
            train(_loss_and_grads(cell), params, optimizer, [task.patterns[i] for i in order],
                  steps=task.size if online else 1, accumulate=1 if online else task.size, progress=False)
            run.seconds += time.perf_counter() - start
            _record(run, cell, params, task, (epoch + 1) * task.size)

    return method


def _full_batch(optimizer_of: Callable[[dict], optim.Optimizer]):
    """One optimizer step per pass on the padded batch's gradient."""

    def method(cell, params, task, epochs, rng, settings, run):
        optimizer = optimizer_of(settings)
        start = time.perf_counter()
        history = train(_loss_and_grads(cell), params, optimizer, itertools.repeat(task.batch), steps=epochs,
                        progress=False)
        run.seconds += time.perf_counter() - start
        run.presentations.extend(task.size * step for step in range(epochs))
        run.losses.extend(history.losses)
        _record(run, cell, params, task, epochs * task.size)

    return method


def _line_searches(restart_every: int | None):
    """Nonlinear conjugate gradients (or steepest descent) until N E presentations are spent."""

    def method(cell, params, task, epochs, rng, settings, run):
        start = time.perf_counter()
        # every line search calls at least once, so the budget of calls stops it before the iterations run out
        result = conjugate_gradient(functools.partial(objective, cell, batch=task.batch), params,
                                    iterations=epochs, max_calls=epochs, restart_every=restart_every)
        run.seconds += time.perf_counter() - start
        run.presentations.extend([0] + [task.size * calls for calls in result.evaluations[1:]])
        run.losses.extend(result.losses)

    return method


def _kalman(jacobian: str, groups: str | None):
    """The EKF over passes of the strings, a few at a time as parallel streams, R annealed per pass."""

    def method(cell, params, task, epochs, rng, settings, run):
        kalman = ekf.ExtendedKalmanFilter(params, p0=settings["p0"], q=settings["q"], r=settings["r_start"],
                                          groups=groups)
        streams = int(settings["streams"])
        ratio = (settings["r_end"] / settings["r_start"]) ** (1.0 / max(1, epochs - 1))
        _record(run, cell, params, task, 0)
        for epoch in range(epochs):
            kalman.set_noise(r=settings["r_start"] * ratio**epoch)
            order = rng.permutation(task.size)
            start = time.perf_counter()
            for first in range(0, task.size, streams):
                chunk = encode(task.language, [task.strings[i] for i in order[first:first + streams]])
                ekf.ekf_train(cell, params, chunk.xs, chunk.legal, kalman, jacobian=jacobian,
                              k2=settings.get("k2"), output="sigmoid", mask=chunk.mask)
            run.seconds += time.perf_counter() - start
            _record(run, cell, params, task, (epoch + 1) * task.size)

    return method


def _momentum(settings: dict) -> optim.Optimizer:
    return optim.Momentum(settings["lr"], beta=settings["momentum"])


METHODS: dict[str, Callable[..., None]] = {
    "bptt_online": _schedule(_momentum, online=True),
    "bbptt": _schedule(_momentum, online=False),
    "qptt": _schedule(lambda s: optim.Quickprop(s["lr"], mu=s["mu"]), online=False),
    "rprop": _full_batch(lambda s: optim.Rprop(s["lr"])),
    "steepest_descent": _line_searches(restart_every=1),
    "conjugate_gradient": _line_searches(restart_every=None),
    "adam": _full_batch(lambda s: optim.Adam(s["lr"])),
    "ekf_bptt": _kalman("bptt", None),
    "ekf_rtrl": _kalman("rtrl", None),
    "ndekf_rtrl": _kalman("rtrl", "unit"),
}
"""name -> the function that trains with it (called by ``train_method``)."""
