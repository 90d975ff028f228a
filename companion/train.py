"""A training loop: loss and gradients, optional clipping, an optimizer step, a record of each step.

The loop knows nothing about cells or tasks: it calls ``loss_and_grads(params, batch)`` (for example a
``functools.partial`` of ``companion.model.sequence_loss_and_grads``) on one batch per step, so the same
loop trains with full BPTT, truncated BPTT or any other gradient method of the course.

With ``carry_state=True`` the batches are consecutive windows of the same streams (``companion.tasks.
stream_windows``), and the state at the end of one window is where the next one starts:
``loss_and_grads(params, batch, state0)`` returns ``(loss, grads, final_state)``, and the loop hands
``final_state`` to the next call. This is how a long stream is trained window by window.

With ``accumulate=k`` each update averages the gradients of k consecutive batches. The two schedules of
the Stuttgart Neural Network Simulator (SNNS) are the two ends: *online* (BPTT: update after every
pattern, batches of one sequence, ``accumulate=1``) and *batch* (BBPTT, QPTT: the patterns' gradients
averaged over the N patterns of the training set, one update per pass, ``accumulate=N``).

The online loops of the course (``truncation.online_tbptt``, ``rtrl.online_rtrl``, ``eprop.online_eprop``,
``uoro.online_uoro``) share this module's checks of their arguments (``check_optimizer_and_clip``,
``check_stream``) and its update (``apply_update``: clip, optimizer step, record), so every loop clips and
records the same way.
"""
from __future__ import annotations

import math
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tqdm import tqdm

from .bptt import check_inputs
from .optim import Optimizer, clip_grad_norm, global_norm
from .types import Array, Params, State
from .validation import check_positive_float, check_positive_int


@dataclass
class History:
    """What ``train`` records, one entry per step.

    Attributes
    ----------
    losses : list of float
        The loss of each step's batch (the mean over its batches with ``accumulate``), before that step's
        update.
    grad_norms : list of float
        The global L2 norm of each step's gradients (averaged over its batches), before clipping.
    """

    losses: list[float] = field(default_factory=list)
    grad_norms: list[float] = field(default_factory=list)

    @property
    def steps(self) -> int:
        """The number of steps taken."""
        return len(self.losses)


def check_optimizer_and_clip(optimizer: object, clip: object) -> float | None:
    """Raise ``ValueError`` unless ``optimizer`` has ``step(params, grads)``; return ``clip`` checked
    (``None``, or a finite positive float)."""
    if not callable(getattr(optimizer, "step", None)):
        raise ValueError(f"optimizer must have a step(params, grads) method, got {optimizer!r}")
    return None if clip is None else check_positive_float(clip, "clip")


def check_stream(cell: Any, xs: object, targets: object) -> tuple[Array, Array]:
    """``(xs, targets)`` of an online training loop, checked: ``xs`` a float array ``(T, B, n_in)`` with
    T, B >= 1 and ``n_in`` the cell's, ``targets`` an array whose shape starts with ``(T, B)``."""
    xs = check_inputs(cell, xs)
    targets = np.asarray(targets)
    if targets.shape[:2] != xs.shape[:2]:
        raise ValueError(f"targets must start with the (T, B) = {xs.shape[:2]} of xs, got shape {targets.shape}")
    return xs, targets


def apply_update(params: Params, grads: Params, optimizer: Optimizer, history: History, loss: float, *,
           clip: float | None) -> None:
    """One update of every training loop of the course: clip ``grads`` to global norm ``clip`` (if given),
    ``optimizer.step(params, grads)``, and record ``loss`` and the pre-clipping norm in ``history``."""
    if clip is None:
        grad_norm = global_norm(grads)
    else:
        grads, grad_norm = clip_grad_norm(grads, clip)
    optimizer.step(params, grads)
    history.losses.append(float(loss))
    history.grad_norms.append(grad_norm)


def train(
    loss_and_grads: Callable[..., tuple],
    params: Params,
    optimizer: Optimizer,
    batches: Iterable[Any],
    *,
    steps: int,
    clip: float | None = None,
    accumulate: int = 1,
    carry_state: bool = False,
    progress: bool = True,
    description: str = "training",
) -> History:
    """Take ``steps`` optimizer steps, ``accumulate`` batches each, updating ``params`` in place.

    Each step: ``loss, grads = loss_and_grads(params, batch)`` for each of its ``accumulate`` batches
    (all at the same ``params``), averaged; if ``clip`` is given, rescale ``grads`` to global norm at most
    ``clip`` (``companion.optim.clip_grad_norm``); ``optimizer.step(params, grads)``. Nothing random
    happens inside: the same inputs give the same history.

    Parameters
    ----------
    loss_and_grads : callable
        ``(params, batch) -> (loss, grads)``, with ``grads`` keyed as ``params``; with ``carry_state``,
        ``(params, batch, state0) -> (loss, grads, final_state)``.
    params : dict of arrays
        The parameters, updated in place.
    optimizer : Optimizer
        ``SGD``, ``Momentum`` or ``Adam`` from ``companion.optim`` (anything with ``step(params, grads)``).
    batches : iterable
        Yields the batches in order; must yield at least ``steps * accumulate`` batches. Use
        ``itertools.repeat(batch)`` to train on one fixed batch, or a generator drawing a fresh batch from
        a task each step.
    steps : int, keyword-only
        Number of steps.
    clip : float, optional, keyword-only
        Maximum global gradient norm; no clipping if omitted.
    accumulate : int, keyword-only
        Batches per update, their gradients averaged: 1 is the online schedule, the number of batches
        of an epoch the batch schedule (see the module's docstring).
    carry_state : bool, keyword-only
        Start each batch from the final state of the previous one (``None``, the zero state, for the
        first): for consecutive windows of the same streams.
    progress : bool, keyword-only
        Show a ``tqdm`` progress bar on stderr, with the latest loss refreshed about every tenth of the run.
    description : str, keyword-only
        The progress bar's label.

    Returns
    -------
    History
        The loss and the pre-clipping gradient norm of every step.
    """
    if not callable(loss_and_grads):
        raise ValueError(f"loss_and_grads must be a callable (params, batch) -> (loss, grads), got {loss_and_grads!r}")
    clip = check_optimizer_and_clip(optimizer, clip)
    if not isinstance(batches, Iterable):
        raise ValueError(f"batches must be an iterable of batches, got {type(batches).__name__}")
    steps = check_positive_int(steps, "steps")
    accumulate = check_positive_int(accumulate, "accumulate")

    history = History()
    state: State | None = None
    report_every = max(1, steps // 10)
    batch_iterator = iter(batches)
    used = 0
    with tqdm(total=steps, desc=description, disable=not progress, file=sys.stderr) as bar:
        for step in range(steps):
            losses, summed = [], None
            for _ in range(accumulate):
                try:
                    batch = next(batch_iterator)
                except StopIteration:
                    raise ValueError(f"batches ran out after {used} batches; steps={steps} with "
                                     f"accumulate={accumulate} needs {steps * accumulate}") from None
                used += 1
                if carry_state:
                    loss, grads, state = loss_and_grads(params, batch, state)
                else:
                    loss, grads = loss_and_grads(params, batch)
                loss = float(loss)
                if not math.isfinite(loss):
                    raise ValueError(f"loss_and_grads returned a non-finite loss ({loss}) at step {step}")
                losses.append(loss)
                summed = grads if summed is None else {key: summed[key] + grads[key] for key in summed}
            if accumulate > 1:
                loss, grads = sum(losses) / accumulate, {key: value / accumulate for key, value in summed.items()}
            apply_update(params, grads, optimizer, history, loss, clip=clip)
            if (step + 1) % report_every == 0 or step + 1 == steps:
                bar.set_postfix(loss=f"{loss:.4g}", refresh=False)
            bar.update(1)
    return history
