"""The grader of the assignment "The LSTM backward pass" (``assignments/source/lstm_backward``).

The student writes, for the LSTM of the chapter "Long short-term memory" (``companion.cells.LSTM``: gates
in the order i, f, g, o, state ``(h, c)``) and the loss L = sum over t and b of <dhs_t, h_t>:

* ``lstm_step_backward(params, cache, dh, dc) -> (grads, dh_prev, dc_prev, dx)``, one step backward. The
  cache is the dict of the notebook's forward step (keys ``CACHE_KEYS``), ``dh`` is the adjoint of h_t,
  ``dc`` the carry f_{t+1} * cbar_{t+1} from step t + 1; ``dh_prev`` and ``dc_prev`` are what the step
  hands to step t - 1 (sum_q W_hq^T abar^q_t and f_t * cbar_t), exactly the pair of the companion's
  ``LSTM.step_backward``;
* ``lstm_backward(params, xs, h0, c0, dhs) -> (grads, dxs, dh0, dc0)``, BPTT over the whole sequence.

``check_step`` grades chosen outputs of one step and says which gate is wrong and whether the error
comes with ``dh`` or with the carry ``dc``. ``check_backward`` grades the time loop: it passes when
``lstm_backward`` is right, or when it is exactly the companion's time loop around the student's own
``lstm_step_backward`` (so that an error of one step is graded once, by ``check_step``); otherwise it
says which gradients are wrong and the first step back at which they go wrong.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from functools import partial
from typing import NamedTuple

import numpy as np

from .. import bptt
from ..cells import LSTM
from ..cells.lstm import GATES, LSTMStepCache
from ..types import Array, Params, State
from .core import (
    GradingError,
    as_answer,
    as_dict,
    as_tuple,
    call_student,
    check_names,
    is_close,
    listing,
    problem_text,
    shortest_failing_length,
    steps_back,
)

#: the parameter keys, gate by gate in the order i, f, g, o
PARAMS = tuple(f"{kind}{q}" for q in GATES for kind in ("W_x", "W_h", "b_"))
#: the keys of the notebook's step cache: the step's inputs, the four gates, c_t and tanh(c_t)
CACHE_KEYS = ("x", "h_prev", "c_prev", "i", "f", "g", "o", "c", "tanh_c")
#: what ``check_step`` can check: a parameter key, or what the step hands back
STEP_OUTPUTS = (*PARAMS, "dh_prev", "dc_prev", "dx")
#: what ``check_backward`` compares
SEQUENCE_OUTPUTS = (*PARAMS, "dxs", "dh0", "dc0")

_GATE_NAMES = {"i": "input gate", "f": "forget gate", "g": "candidate", "o": "output gate"}


def _shapes(n_in: int, H: int) -> dict[str, tuple[tuple[int, ...], str]]:
    """Every parameter's shape and its shape in symbols."""
    shapes = {}
    for q in GATES:
        shapes.update({f"W_x{q}": ((H, n_in), "(H, n_in)"), f"W_h{q}": ((H, H), "(H, H)"), f"b_{q}": ((H,), "(H,)")})
    return shapes


def _label(name: str) -> str:
    """How a message names a quantity: ``dL/dW_xf``, or the returned name (``dh_prev``, ``dxs``)."""
    return f"dL/d{name}" if name in PARAMS else name


def _wrong_text(wrong: list[str]) -> str:
    """The subject of a message: the wrong quantities, the first few of a long list, and the verb."""
    labels = [_label(name) for name in wrong]
    if len(labels) > 4:
        return f"{', '.join(labels[:3])} and {len(labels) - 3} more are"
    return f"{listing(labels)} {'is' if len(labels) == 1 else 'are'}"


def _wrong_names(got: Mapping[str, Array], expected: Mapping[str, Array], names: Iterable[str]) -> list[str]:
    """The names among ``names`` whose answer differs from the expected one."""
    return [name for name in names if not is_close(got[name], expected[name])]


def cache_dict(cache: LSTMStepCache) -> dict[str, Array]:
    """The notebook's step cache, a dict keyed by ``CACHE_KEYS``, from the companion's step cache.

    Parameters
    ----------
    cache : LSTMStepCache
        What ``LSTM.step`` keeps: x_t (B, n_in); h_{t-1}, c_{t-1}, the gates and tanh(c_t), each (B, H).

    Returns
    -------
    dict
        ``x`` (B, n_in); ``h_prev``, ``c_prev``, ``i``, ``f``, ``g``, ``o``, ``c`` (= c_t) and ``tanh_c``,
        each (B, H).
    """
    c = cache.f * cache.c_prev + cache.i * cache.g     # c_t, as the companion's step computes it
    return {"x": cache.x_t, "h_prev": cache.h_prev, "c_prev": cache.c_prev, "i": cache.i, "f": cache.f,
            "g": cache.g, "o": cache.o, "c": c, "tanh_c": cache.tanh_c}


def student_step(
    lstm_step_backward: Callable, params: Params, cache: Mapping[str, Array], dh: Array, dc: Array
) -> dict[str, Array]:
    """The student's step backward on one cache, checked for type, keys and shapes.

    Parameters
    ----------
    lstm_step_backward : callable
        The student's ``lstm_step_backward(params, cache, dh, dc) -> (grads, dh_prev, dc_prev, dx)``.
    params : dict
        The LSTM's parameters: for each gate q, ``W_xq`` (H, n_in), ``W_hq`` (H, H), ``b_q`` (H,).
    cache : dict
        The step's cache, keys ``CACHE_KEYS`` (see ``cache_dict``).
    dh, dc : array, shape (B, H)
        The adjoint of h_t and the carry f_{t+1} * cbar_{t+1}.

    Returns
    -------
    dict
        Every key of ``STEP_OUTPUTS``: the parameter gradients of this step, ``dh_prev`` and ``dc_prev``
        (B, H), ``dx`` (B, n_in).
    """
    __tracebackhide__ = True
    B, n_in = cache["x"].shape
    H = dh.shape[1]
    result = call_student(lstm_step_backward, "lstm_step_backward", params, cache, dh, dc)
    grads, dh_prev, dc_prev, dx = as_tuple(result, "lstm_step_backward", 4, "(grads, dh_prev, dc_prev, dx)")
    grads = as_dict(grads, "lstm_step_backward's grads", PARAMS)
    answer = {key: as_answer(grads[key], f"grads[{key!r}]", shape, meaning)
              for key, (shape, meaning) in _shapes(n_in, H).items()}
    answer["dh_prev"] = as_answer(dh_prev, "dh_prev", (B, H), "(B, H)")
    answer["dc_prev"] = as_answer(dc_prev, "dc_prev", (B, H), "(B, H)")
    answer["dx"] = as_answer(dx, "dx", (B, n_in), "(B, n_in)")
    return answer


class StepProblem(NamedTuple):
    """One step: ``params``, input ``x`` (B, n_in), state ``h_prev``, ``c_prev`` (B, H), upstream ``dh``, ``dc`` (B, H)."""

    params: Params
    x: Array
    h_prev: Array
    c_prev: Array
    dh: Array
    dc: Array

    @property
    def text(self) -> str:
        B, n_in = self.x.shape
        return problem_text(B=B, n_in=n_in, H=self.h_prev.shape[1])

    def upstream(self, dh: Array, dc: Array) -> StepProblem:
        """The same step with other adjoints ``dh``, ``dc`` (B, H) arriving from above."""
        return self._replace(dh=dh, dc=dc)


def draw_step(seed: int) -> StepProblem:
    """A step of random shape (B, n_in in 1..3, H in 2..5) drawn from ``seed``, every upstream adjoint non-zero."""
    rng = np.random.default_rng(seed)
    B, n_in, H = (int(rng.integers(low, high + 1)) for low, high in ((1, 3), (1, 3), (2, 5)))
    params = {key: 0.5 * rng.normal(size=shape) for key, (shape, _) in _shapes(n_in, H).items()}
    x, h_prev, c_prev, dh, dc = (rng.normal(size=(B, width)) for width in (n_in, H, H, H, H))
    return StepProblem(params, x, h_prev, c_prev, dh, dc)


def step_reference(problem: StepProblem) -> tuple[dict[str, Array], dict[str, Array]]:
    """The step's cache dict (``CACHE_KEYS``) and every answer of ``STEP_OUTPUTS``, by ``LSTM.step_backward``."""
    B, n_in = problem.x.shape
    cell = LSTM(n_in, problem.h_prev.shape[1])
    _, cache = cell.step(problem.params, problem.x, (problem.h_prev, problem.c_prev))
    grads, (dh_prev, dc_prev), dx = cell.step_backward(problem.params, cache, (problem.dh, problem.dc))
    return cache_dict(cache), {**grads, "dh_prev": dh_prev, "dc_prev": dc_prev, "dx": dx}


def _student_on(lstm_step_backward: Callable, problem: StepProblem) -> dict[str, Array]:
    """The student's answers on ``problem``'s step."""
    __tracebackhide__ = True
    cache, _ = step_reference(problem)
    return student_step(lstm_step_backward, problem.params, cache, problem.dh, problem.dc)


def _upstream_note(lstm_step_backward: Callable, problem: StepProblem, wrong: list[str]) -> str | None:
    """Whether the ``wrong`` answers are wrong with ``dh`` alone (dc = 0), with ``dc`` alone, or both.

    ``None`` if the student's step fails with one of them zero (then the message leaves this hint out).
    """
    __tracebackhide__ = True
    zero = np.zeros_like(problem.dh)
    is_wrong = {}
    for source, alone in (("dh", problem.upstream(problem.dh, zero)), ("dc", problem.upstream(zero, problem.dc))):
        try:
            got = _student_on(lstm_step_backward, alone)
        except GradingError:
            return None
        is_wrong[source] = bool(_wrong_names(got, step_reference(alone)[1], wrong))
    if is_wrong["dh"] and is_wrong["dc"]:
        return "wrong both with dh alone (dc = 0) and with the carry dc alone (dh = 0)"
    if is_wrong["dh"]:
        return ("right with the carry dc alone (dh = 0) but wrong with dh alone (dc = 0): look at what dh "
                "contributes, through o_t and tanh(c_t)")
    if is_wrong["dc"]:
        return ("right with dh alone (dc = 0) but wrong with the carry dc alone (dh = 0): look at how dc "
                "(= f_{t+1} * cbar_{t+1}) enters cbar_t")
    return "right with dh alone and with dc alone but wrong with both: the answer must be linear in (dh, dc)"


def _gate_note(got: Mapping[str, Array], expected: Mapping[str, Array], wrong: list[str]) -> str:
    """What the bias gradients say about the pre-activation adjoints abar^q_t (dL/db_q is their sum over the batch)."""
    wrong_gates = [q for q in GATES if not is_close(got[f"b_{q}"], expected[f"b_{q}"])]
    notes = []
    for q in dict.fromkeys(name[-1] for name in wrong if name in PARAMS):
        if q in wrong_gates:
            notes.append(f"dL/db_{q} is wrong, so abar^{q}_t, the adjoint of the {_GATE_NAMES[q]}'s pre-activation, "
                         "is wrong")
        else:
            notes.append(f"dL/db_{q} is right, so abar^{q}_t is right: look at the outer products with x_t and h_{{t-1}}")
    if not wrong_gates:
        notes.append("every abar^q_t is right (every dL/db_q is)")
    else:
        right = [q for q in GATES if q not in wrong_gates]
        notes.append(f"of the four gates, the bias gradients of {listing(wrong_gates)} are wrong"
                     + (f" and those of {listing(right)} right" if right else ""))
        if {"i", "f", "g"} <= set(wrong_gates):
            notes.append("i, f and g all read cbar_t: look at cbar_t first")
    return "; ".join(notes)


def _step_diagnosis(
    lstm_step_backward: Callable, problem: StepProblem, got: Mapping[str, Array], expected: Mapping[str, Array],
    cache: Mapping[str, Array], wrong: list[str],
) -> str:
    """The hints of a message on a wrong step: the upstream source, the gates, the carousel, the sums over gates."""
    __tracebackhide__ = True
    upstream = _upstream_note(lstm_step_backward, problem, wrong)
    notes = ([] if upstream is None else [upstream]) + [_gate_note(got, expected, wrong)]
    if "dc_prev" in wrong:
        if is_close(got["dc_prev"], expected["dc_prev"] / cache["f"]):
            notes.insert(0, "your dc_prev equals cbar_t itself: what goes back to c_{t-1} is f_t * cbar_t "
                            "(the carousel multiplies by the forget gate)")
        elif all(is_close(got[f"b_{q}"], expected[f"b_{q}"]) for q in "ifg"):
            notes.insert(0, "cbar_t is right (abar^i_t, abar^f_t and abar^g_t, which read it, are): look at what "
                            "the step sends back to c_{t-1}")
    if {"dh_prev", "dx"} & set(wrong):
        notes.append("dh_prev and dx sum W_hq^T abar^q_t and W_xq^T abar^q_t over the four gates")
    return "; ".join(notes)


def check_step(lstm_step_backward: Callable, names: str | Iterable[str], seeds: Iterable[int] = (0, 1, 2)) -> None:
    """Raise ``GradingError`` unless the answers ``names`` of ``lstm_step_backward`` are right on every seed's step.

    Parameters
    ----------
    lstm_step_backward : callable
        The student's ``lstm_step_backward(params, cache, dh, dc) -> (grads, dh_prev, dc_prev, dx)``.
    names : str or iterable of str
        Which answers to check: keys of ``STEP_OUTPUTS``.
    seeds : iterable of int
        One random step (``draw_step``) per seed.

    Notes
    -----
    A wrong answer is located by rerunning the step with ``dc = 0`` and with ``dh = 0`` (which upstream
    adjoint it mishandles) and by the bias gradients, which are the pre-activation adjoints summed over the
    batch (which gate is wrong).
    """
    __tracebackhide__ = True
    names = check_names(names, STEP_OUTPUTS)
    for seed in seeds:
        problem = draw_step(seed)
        cache, expected = step_reference(problem)
        got = student_step(lstm_step_backward, problem.params, cache, problem.dh, problem.dc)
        wrong = _wrong_names(got, expected, names)
        if wrong:
            raise GradingError(
                f"{_wrong_text(wrong)} wrong on the step of seed {seed} {problem.text}: "
                + _step_diagnosis(lstm_step_backward, problem, got, expected, cache, wrong)
            )


class Problem(NamedTuple):
    """One sequence: ``params``, inputs ``xs`` (T, B, n_in), initial state ``h0``, ``c0`` (B, H), ``dhs`` (T, B, H)."""

    params: Params
    xs: Array
    h0: Array
    c0: Array
    dhs: Array

    @property
    def text(self) -> str:
        T, B, n_in = self.xs.shape
        return problem_text(T=T, B=B, n_in=n_in, H=self.h0.shape[1])

    def prefix(self, k: int) -> Problem:
        """The same problem cut to its first ``k`` steps."""
        return Problem(self.params, self.xs[:k], self.h0, self.c0, self.dhs[:k])


def draw_problem(seed: int) -> Problem:
    """A sequence of random shape (T in 3..6, B, n_in in 1..3, H in 2..5) drawn from ``seed``."""
    rng = np.random.default_rng(seed)
    T, B, n_in, H = (int(rng.integers(low, high + 1)) for low, high in ((3, 6), (1, 3), (1, 3), (2, 5)))
    params = {key: 0.5 * rng.normal(size=shape) for key, (shape, _) in _shapes(n_in, H).items()}
    return Problem(params, rng.normal(size=(T, B, n_in)), 0.5 * rng.normal(size=(B, H)),
                   rng.normal(size=(B, H)), rng.normal(size=(T, B, H)))


def _run(cell: LSTM, problem: Problem) -> dict[str, Array]:
    """``bptt.forward`` and ``bptt.backward`` of ``cell`` on ``problem``, as a dict of ``SEQUENCE_OUTPUTS``."""
    _, cache = bptt.forward(cell, problem.params, problem.xs, (problem.h0, problem.c0))
    grads, dxs, (dh0, dc0) = bptt.backward(cell, problem.params, cache, problem.dhs)
    return {**grads, "dxs": dxs, "dh0": dh0, "dc0": dc0}


def reference(problem: Problem) -> dict[str, Array]:
    """Every gradient of ``SEQUENCE_OUTPUTS`` on ``problem``, by the companion's BPTT for the LSTM."""
    return _run(LSTM(problem.xs.shape[2], problem.h0.shape[1]), problem)


class _AroundStudentStep(LSTM):
    """The LSTM whose backward step is the student's ``lstm_step_backward``; ``bptt`` runs it by its step loop."""

    def __init__(self, n_in: int, n_hidden: int, lstm_step_backward: Callable):
        super().__init__(n_in, n_hidden)
        self.lstm_step_backward = lstm_step_backward

    def _step_backward(
        self, params: Params, cache: LSTMStepCache, d_state: tuple[Array, Array]
    ) -> tuple[Params, State, Array]:
        __tracebackhide__ = True
        answer = student_step(self.lstm_step_backward, params, cache_dict(cache), *d_state)
        return {key: answer[key] for key in PARAMS}, (answer["dh_prev"], answer["dc_prev"]), answer["dx"]


def own_loop(lstm_step_backward: Callable, problem: Problem) -> dict[str, Array]:
    """The companion's time loop (``bptt``'s step loop) around the student's ``lstm_step_backward``.

    Raises ``GradingError`` if the student's step fails on one of the problem's steps. The answers equal
    ``reference(problem)`` when the student's step is right.
    """
    __tracebackhide__ = True
    return _run(_AroundStudentStep(problem.xs.shape[2], problem.h0.shape[1], lstm_step_backward), problem)


def student_backward(lstm_backward: Callable, problem: Problem) -> dict[str, Array]:
    """The student's ``lstm_backward`` on ``problem``, checked for type, keys and shapes.

    Returns
    -------
    dict
        Every key of ``SEQUENCE_OUTPUTS``: the parameter gradients, ``dxs`` (T, B, n_in), ``dh0`` and
        ``dc0`` (B, H).
    """
    __tracebackhide__ = True
    T, B, n_in = problem.xs.shape
    H = problem.h0.shape[1]
    result = call_student(lstm_backward, "lstm_backward", problem.params, problem.xs, problem.h0, problem.c0,
                          problem.dhs)
    grads, dxs, dh0, dc0 = as_tuple(result, "lstm_backward", 4, "(grads, dxs, dh0, dc0)")
    grads = as_dict(grads, "lstm_backward's grads", PARAMS)
    answer = {key: as_answer(grads[key], f"grads[{key!r}]", shape, meaning)
              for key, (shape, meaning) in _shapes(n_in, H).items()}
    answer["dxs"] = as_answer(dxs, "dxs", (T, B, n_in), "(T, B, n_in)")
    answer["dh0"] = as_answer(dh0, "dh0", (B, H), "(B, H)")
    answer["dc0"] = as_answer(dc0, "dc0", (B, H), "(B, H)")
    return answer


def _where(k: int | None, against_loop: bool) -> str:
    """Where the gradients first go wrong, for a message on ``lstm_backward``.

    ``against_loop`` says that the comparison is with the time loop around a step the student wrote, so a
    one-step sequence tests what ``lstm_backward`` hands to that step, not the step's formula.
    """
    if k is None:
        return "on the full sequence only"
    if k == 1 and against_loop:
        return ("already on a one-step sequence: look at what lstm_backward hands to lstm_step_backward for the "
                "last step (dh = dhs[T-1], dc = 0) and what it returns")
    return "from " + steps_back(k)


def check_backward(
    lstm_backward: Callable, seeds: Iterable[int] = (0, 1, 2), *, lstm_step_backward: Callable | None = None
) -> None:
    """Raise ``GradingError`` unless ``lstm_backward`` carries the gradient through time right on every seed's problem.

    Parameters
    ----------
    lstm_backward : callable
        The student's ``lstm_backward(params, xs, h0, c0, dhs) -> (grads, dxs, dh0, dc0)``.
    seeds : iterable of int
        One random problem (``draw_problem``) per seed.
    lstm_step_backward : callable, optional, keyword-only
        The student's step backward. When given, an ``lstm_backward`` that is exactly the time loop around it
        passes (the step's errors are graded by ``check_step``), and a message says whether the step is right.

    Notes
    -----
    A wrong answer is located by the shortest prefix of the sequence on which it is wrong: wrong on one
    step means what one step receives or returns; right on k - 1 steps and wrong on k, how the pair
    (dh_prev, dc_prev) is carried from step t to step t - 1 or how the gradients are summed over time.
    """
    __tracebackhide__ = True
    passed_by_own_loop = False
    for seed in seeds:
        problem = draw_problem(seed)
        got = student_backward(lstm_backward, problem)
        expected = reference(problem)
        wrong = _wrong_names(got, expected, SEQUENCE_OUTPUTS)
        if not wrong:
            continue
        target: Callable[[Problem], dict[str, Array]] = reference
        note, against_loop = "", False
        if lstm_step_backward is not None:
            try:
                own = own_loop(lstm_step_backward, problem)
            except GradingError as error:
                note = f"; your lstm_step_backward fails on this problem's steps ({error})"
            else:
                if not _wrong_names(own, expected, SEQUENCE_OUTPUTS):
                    note = "; your lstm_step_backward is right on every step of this problem, so look at the time loop"
                    against_loop = True
                elif not _wrong_names(got, own, SEQUENCE_OUTPUTS):
                    passed_by_own_loop = True
                    continue
                else:
                    target, against_loop = partial(own_loop, lstm_step_backward), True
                    wrong = _wrong_names(got, own, SEQUENCE_OUTPUTS)
                    note = ("; your lstm_step_backward is wrong too (see its checks), and lstm_backward is not the "
                            "time loop around it either: what is named wrong here differs from that loop")
        k = shortest_failing_length(problem.xs.shape[0], lambda k: not _wrong_names(
            student_backward(lstm_backward, problem.prefix(k)), target(problem.prefix(k)), wrong))
        raise GradingError(
            f"lstm_backward's {_wrong_text(wrong)} wrong {_where(k, against_loop)}, "
            f"on the problem of seed {seed} {problem.text}{note}"
        )
    if passed_by_own_loop:
        print("lstm_backward is the right time loop around your lstm_step_backward; its gradients are wrong only "
              "where lstm_step_backward is (see the checks of Part 1)")
