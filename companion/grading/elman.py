"""The grader of the assignment "BPTT for the Elman network" (``assignments/source/elman_bptt``).

The student writes, for the tanh Elman network of chapter 2 with a linear readout and the softmax
cross-entropy averaged over all T B predictions (``companion.losses.softmax_cross_entropy``):

* ``elman_loss(params, xs, targets, h0) -> (loss, hs)``, the forward pass;
* ``elman_gradients(params, xs, targets, h0, hs) -> (grads, dh0)``, its backward pass by BPTT.

Each check draws problems of random shapes from its seeds, computes the answer with the companion
(``bptt``, ``readout``, ``losses``) and compares; a wrong answer raises ``GradingError`` saying which
quantity is wrong, where, and on which problem.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import NamedTuple

import numpy as np

from .. import bptt
from ..cells import Elman
from ..losses import softmax_cross_entropy
from ..readout import readout_backward, readout_forward
from ..types import Array, Params
from .core import (
    GradingError,
    as_answer,
    as_dict,
    as_tuple,
    call_student,
    check_names,
    first_wrong_step,
    is_close,
    other_part_note,
    problem_text,
    shortest_failing_length,
    steps_back,
)

#: the parameter keys of the model: the cell's, then the readout's
PARAMS = ("W_xh", "W_hh", "b_h", "W_hy", "b_y")
#: what ``check_gradient`` can check: a parameter key, or ``"h0"``
GRADIENTS = (*PARAMS, "h0")


class Problem(NamedTuple):
    """One random problem: ``params``, inputs ``xs`` (T, B, n_in), class ids ``targets`` (T, B), ``h0`` (B, H)."""

    params: Params
    xs: Array
    targets: Array
    h0: Array

    @property
    def text(self) -> str:
        T, B, n_in = self.xs.shape
        return problem_text(T=T, B=B, n_in=n_in, H=self.h0.shape[1], V=self.params["b_y"].shape[0])

    def prefix(self, k: int) -> Problem:
        """The same problem cut to its first ``k`` steps."""
        return Problem(self.params, self.xs[:k], self.targets[:k], self.h0)


def draw_problem(seed: int) -> Problem:
    """A problem of random shape (T in 3..6, B, n_in in 1..3, H in 2..5, V in 2..4) drawn from ``seed``."""
    rng = np.random.default_rng(seed)
    T, B, n_in, H, V = (int(rng.integers(low, high + 1)) for low, high in ((3, 6), (1, 3), (1, 3), (2, 5), (2, 4)))
    shapes = {"W_xh": (H, n_in), "W_hh": (H, H), "b_h": (H,), "W_hy": (V, H), "b_y": (V,)}
    params = {key: 0.8 * rng.normal(size=shape) for key, shape in shapes.items()}
    return Problem(params, rng.normal(size=(T, B, n_in)), rng.integers(0, V, size=(T, B)), 0.5 * rng.normal(size=(B, H)))


def reference(problem: Problem) -> tuple[float, Array, dict[str, Array]]:
    """The loss, hs ``(T, B, H)`` and every gradient of ``GRADIENTS``, by the companion."""
    cell_params = {key: problem.params[key] for key in ("W_xh", "W_hh", "b_h")}
    readout_params = {key: problem.params[key] for key in ("W_hy", "b_y")}
    cell = Elman(problem.xs.shape[2], problem.h0.shape[1])
    hs, cache = bptt.forward(cell, cell_params, problem.xs, problem.h0)
    loss, dys = softmax_cross_entropy(readout_forward(readout_params, hs), problem.targets)
    readout_grads, dhs = readout_backward(readout_params, hs, dys)
    grads, _, dh0 = bptt.backward(cell, cell_params, cache, dhs)
    return loss, hs, {**grads, **readout_grads, "h0": dh0}


def student_forward(elman_loss: Callable, problem: Problem) -> tuple[float, Array]:
    """The student's (loss, hs) on ``problem``, checked for type and shape."""
    __tracebackhide__ = True
    T, B, _ = problem.xs.shape
    result = call_student(elman_loss, "elman_loss", problem.params, problem.xs, problem.targets, problem.h0)
    loss, hs = as_tuple(result, "elman_loss", 2, "(loss, hs)")
    loss = as_answer(loss, "elman_loss's loss", (), "() (a number)")
    return float(loss), as_answer(hs, "elman_loss's hs", (T, B, problem.h0.shape[1]), "(T, B, H)")


def student_gradients(elman_gradients: Callable, problem: Problem) -> dict[str, Array]:
    """The student's gradients on ``problem`` (given the right hs), checked for type, keys and shapes."""
    __tracebackhide__ = True
    _, hs, expected = reference(problem)
    result = call_student(elman_gradients, "elman_gradients", problem.params, problem.xs, problem.targets, problem.h0, hs)
    grads, dh0 = as_tuple(result, "elman_gradients", 2, "(grads, dh0)")
    grads = as_dict(grads, "elman_gradients's grads", PARAMS)
    shapes = {"W_xh": "(H, n_in)", "W_hh": "(H, H)", "b_h": "(H,)", "W_hy": "(V, H)", "b_y": "(V,)"}
    answer = {key: as_answer(grads[key], f"grads[{key!r}]", expected[key].shape, shapes[key]) for key in PARAMS}
    answer["h0"] = as_answer(dh0, "dh0", expected["h0"].shape, "(B, H)")
    return answer


def check_forward(elman_loss: Callable, seeds: Iterable[int] = (0, 1, 2)) -> None:
    """Raise ``GradingError`` unless ``elman_loss`` gives the right h_1 .. h_T and loss on every seed's problem."""
    __tracebackhide__ = True
    for seed in seeds:
        problem = draw_problem(seed)
        loss, hs = student_forward(elman_loss, problem)
        expected_loss, expected_hs, _ = reference(problem)
        t = first_wrong_step(hs, expected_hs)
        if t is not None:
            hint = " (the first step starts from h0)" if t == 0 else f"; h_1 .. h_{t} are right"
            raise GradingError(f"h_t is wrong from step t = {t + 1} on{hint}, on the problem of seed {seed} {problem.text}")
        if not is_close(np.array(loss), np.array(expected_loss)):
            raise GradingError(
                f"the loss is wrong ({loss:.6g} instead of {expected_loss:.6g}) though every h_t is right: look at "
                f"the readout y_t = W_hy h_t + b_y, the softmax cross-entropy, and the mean over all T B "
                f"predictions; on the problem of seed {seed} {problem.text}"
            )


def forward_note(elman_loss: Callable | None, seed: int) -> str:
    """What a message says of the student's forward pass: right, wrong, or nothing if not given."""
    return other_part_note(elman_loss, [check_forward], seed, right="; your forward pass is right",
                           wrong="; your forward pass is wrong too (this check gives elman_gradients the right hs)")


def check_gradient(
    elman_gradients: Callable, names: str | Iterable[str], seeds: Iterable[int] = (0, 1, 2), *,
    elman_loss: Callable | None = None,
) -> None:
    """Raise ``GradingError`` unless the gradients ``names`` of ``elman_gradients`` are right on every seed's problem.

    Parameters
    ----------
    elman_gradients : callable
        The student's ``elman_gradients(params, xs, targets, h0, hs) -> (grads, dh0)``.
    names : str or iterable of str
        Which gradients to check: keys of ``GRADIENTS`` (``"h0"`` is dL/dh_0).
    seeds : iterable of int
        One random problem per seed.
    elman_loss : callable, optional, keyword-only
        The student's forward pass, only to say in the message whether it is right.

    Notes
    -----
    A wrong gradient is located by the shortest prefix of the sequence on which it is wrong: wrong on one
    step means the formula of one step; right on k - 1 steps and wrong on k, the recursion that carries the
    gradient back from h_t to h_{t-1}.
    """
    __tracebackhide__ = True
    names = check_names(names, GRADIENTS)
    for seed in seeds:
        problem = draw_problem(seed)
        got = student_gradients(elman_gradients, problem)
        expected = reference(problem)[2]
        for name in names:
            if is_close(got[name], expected[name]):
                continue
            k = shortest_failing_length(problem.xs.shape[0], lambda k: is_close(
                student_gradients(elman_gradients, problem.prefix(k))[name], reference(problem.prefix(k))[2][name]))
            where = steps_back(k) if k is not None else "the full sequence only"
            label = "dL/dh_0" if name == "h0" else f"dL/d{name}"
            raise GradingError(
                f"{label} is wrong at {where}, on the problem of seed {seed} {problem.text}" + forward_note(elman_loss, seed)
            )
