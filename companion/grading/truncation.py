"""The grader of the assignment "Truncated BPTT(k2; k1)" (``assignments/source/truncated_bptt``).

The student writes, for the tanh Elman network of chapter "Truncated BPTT", with the one-step forward and
backward functions that the notebook provides:

* ``backward_points(T, k1, k2) -> [(start, first_loss, end), ...]``: the backward passes of BPTT(k2; k1)
  in the book's 1-based time, as ``companion.truncation.backward_points`` lists them: at the backward point
  ``end`` (a multiple of k1, or T) the losses of the steps ``first_loss .. end`` are back-propagated through
  the steps ``start = max(1, end - k2 + 1) .. end``;
* ``tbptt_gradients(params, xs, dhs, h0, k1, k2) -> grads``: the gradient of BPTT(k2; k1) with the
  parameters held fixed over the sequence (``companion.truncation.tbptt`` on ``companion.cells.Elman``).

Each check draws problems from its seeds, computes the answer with the companion and compares. A wrong
list of passes is located at its first wrong pass and field; a wrong gradient at the first backward pass
whose gradient is wrong (by running the student's function on the sequence cut after each backward point,
where the passes are the first ones of the whole sequence), and the message says what that pass does
instead when it is one of the usual mistakes: a window that starts at another step, losses that another
pass carries (or that it leaves out), no pass at all, or a window run forward again from h_0 or from zero.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import NamedTuple

import numpy as np

from .. import bptt
from .. import truncation as companion_truncation
from ..cells import Elman
from ..types import Array, Params
from .core import GradingError, as_answer, as_dict, call_student, is_close, problem_text

#: the parameter keys of the Elman cell, in the order the messages name them
PARAMS = ("W_xh", "W_hh", "b_h")
#: the parts of the assignment that ``tbptt_gradients`` is checked on, with what each one exercises
PARTS = {
    "full": "In this part k1 = k2 >= T: one backward pass, through the whole sequence, gives full BPTT",
    "detach": ("In this part k1 = k2 = k divides T: the passes are the consecutive windows of k steps, each "
               "back-propagated on its own (what the loop that carries the state and calls detach() every k "
               "steps computes)"),
    "every_step": ("In this part k1 = 1: a pass runs after every step and back-propagates that step's loss "
                   "through the last k2 steps"),
    "general": ("In this part k1 < k2, so the windows overlap, and k1 does not divide T: the last pass, at T, "
                "carries fewer than k1 losses but still reaches back k2 steps"),
}

#: one backward pass: (start, first_loss, end), 1-based
Pass = tuple[int, int, int]


class WindowCase(NamedTuple):
    """One call ``backward_points(T, k1, k2)`` to check, and ``kind``, what it exercises."""

    T: int
    k1: int
    k2: int
    kind: str

    @property
    def call(self) -> str:
        return f"backward_points({self.T}, {self.k1}, {self.k2})"


class Problem(NamedTuple):
    """One random problem: the Elman ``params``, inputs ``xs`` (T, B, n_in), direct gradients ``dhs``
    (T, B, H) (``dhs[t - 1]`` = dl_t/dh_t), the initial state ``h0`` (B, H), and the window sizes k1, k2."""

    params: Params
    xs: Array
    dhs: Array
    h0: Array
    k1: int
    k2: int

    @property
    def label(self) -> str:
        return f"BPTT({self.k2}; {self.k1})"

    @property
    def text(self) -> str:
        T, B, n_in = self.xs.shape
        return problem_text(T=T, B=B, n_in=n_in, H=self.h0.shape[1], k1=self.k1, k2=self.k2)

    def prefix(self, k: int) -> Problem:
        """The same problem cut to its first ``k`` steps."""
        return self._replace(xs=self.xs[:k], dhs=self.dhs[:k])


def window_cases(seed: int) -> list[WindowCase]:
    """Five calls of ``backward_points`` drawn from ``seed``, one of each kind: k1 does not divide T
    (k1 < k2 < T); k1 = k2 dividing T; k1 = 1 < k2 < T; k2 >= T; k1 > T."""
    rng = np.random.default_rng((seed, 0))

    def draw(low: int, high: int) -> int:               # an int in low..high
        return int(rng.integers(low, high + 1))

    k1 = draw(2, 4)
    k2 = draw(k1 + 1, k1 + 4)
    T = draw(k2 + 1, k2 + 11)
    if T % k1 == 0:
        T += 1                                          # k1 must not divide T
    k, passes = draw(2, 5), draw(2, 4)
    T_step = draw(4, 12)
    T_full = draw(2, 12)
    k1_full = draw(1, T_full)
    T_long = draw(1, 8)
    k1_long = draw(T_long + 1, T_long + 3)
    return [
        WindowCase(T, k1, k2, "k1 does not divide T"),
        WindowCase(k * passes, k, k, "k1 = k2 dividing T"),
        WindowCase(T_step, 1, draw(2, T_step - 1), "k1 = 1"),
        WindowCase(T_full, k1_full, draw(max(k1_full, T_full), T_full + 3), "k2 >= T"),
        WindowCase(T_long, k1_long, draw(k1_long, k1_long + 2), "k1 > T"),
    ]


def problems(part: str, seed: int) -> list[Problem]:
    """The problems of ``part`` (a key of ``PARTS``) drawn from ``seed``; shapes B, n_in in 1..3, H in 2..5.

    ``"full"``: two, BPTT(T; T) and BPTT(k; k) with k > T, T in 3..8; ``"detach"``: k in 2..4 and T = 2k
    .. 4k; ``"every_step"``: T in 5..9, k2 in 2..T - 1; ``"general"``: k1 in 2..3, k2 in k1 + 1 .. k1 + 3,
    T in k2 + 2 .. k2 + 8 not a multiple of k1.
    """
    if part not in PARTS:
        raise ValueError(f"part must be one of {sorted(PARTS)}, got {part!r}")
    rng = np.random.default_rng((seed, 1 + list(PARTS).index(part)))

    def draw(low: int, high: int) -> int:
        return int(rng.integers(low, high + 1))

    if part == "full":
        T = draw(3, 8)
        k = T + draw(1, 2)
        sizes = [(T, T, T), (T, k, k)]
    elif part == "detach":
        k = draw(2, 4)
        sizes = [(k * draw(2, 4), k, k)]
    elif part == "every_step":
        T = draw(5, 9)
        sizes = [(T, 1, draw(2, T - 1))]
    else:
        k1 = draw(2, 3)
        k2 = draw(k1 + 1, k1 + 3)
        T = draw(k2 + 2, k2 + 8)
        sizes = [(T + 1 if T % k1 == 0 else T, k1, k2)]     # k1 must not divide T
    drawn = []
    for T, k1, k2 in sizes:
        B, n_in, H = draw(1, 3), draw(1, 3), draw(2, 5)
        shapes = {"W_xh": (H, n_in), "W_hh": (H, H), "b_h": (H,)}
        params = {key: 0.8 * rng.normal(size=shape) for key, shape in shapes.items()}
        drawn.append(Problem(params, rng.normal(size=(T, B, n_in)), rng.normal(size=(T, B, H)),
                             0.5 * rng.normal(size=(B, H)), k1, k2))
    return drawn


def reference(problem: Problem) -> Params:
    """The gradient of BPTT(k2; k1) on ``problem``, by ``companion.truncation.tbptt``."""
    cell = Elman(problem.xs.shape[2], problem.h0.shape[1])
    return companion_truncation.tbptt(cell, problem.params, problem.xs, problem.dhs, problem.k1, problem.k2,
                                      state0=problem.h0)


def pass_gradient(problem: Problem, first_loss: int, start: int, end: int, h_before: Array | None = None) -> Params:
    """What one backward pass gives: the losses of the steps ``first_loss .. end`` back-propagated through
    the steps ``start .. end`` (1-based), the state before the window a constant.

    That state is h_{start-1} of the forward pass through the whole sequence, or ``h_before`` (B, H) if
    given: then the window's forward pass is run again from it (a window restarted from another state).
    """
    cell = Elman(problem.xs.shape[2], problem.h0.shape[1])
    if h_before is None:
        hs, _ = bptt.forward(cell, problem.params, problem.xs[:end], problem.h0)
        h_before = problem.h0 if start == 1 else hs[start - 2]
    _, cache = bptt.forward(cell, problem.params, problem.xs[start - 1:end], h_before)
    dhs = problem.dhs[start - 1:end].copy()
    dhs[:first_loss - start] = 0.0
    return bptt.backward(cell, problem.params, cache, dhs)[0]


def student_points(backward_points: Callable, case: WindowCase) -> list[Pass]:
    """The student's passes for ``case``, checked to be a list of (start, first_loss, end) triples of ints."""
    __tracebackhide__ = True
    try:
        result = call_student(backward_points, "backward_points", case.T, case.k1, case.k2)
    except GradingError as error:
        raise GradingError(f"{error} (on the call {case.call})") from None
    shape = f"{case.call} must return a list of (start, first_loss, end) triples of ints"
    if not isinstance(result, (list, tuple)):
        raise GradingError(f"{shape}, got {type(result).__name__}")
    passes = []
    for item in result:
        if not isinstance(item, (list, tuple)) or len(item) != 3 or not all(_is_int(value) for value in item):
            raise GradingError(f"{shape}; one of its items is {item!r}")
        passes.append(tuple(int(value) for value in item))
    return passes


def compare_points(got: list[Pass], case: WindowCase) -> str | None:
    """What is wrong with the passes ``got`` for ``case``, at the first wrong pass, or ``None`` if they are right."""
    T, k1, k2, _ = case
    expected = companion_truncation.backward_points(T, k1, k2)
    ends = [end for _, _, end in expected]
    rule = f"the backward points are the multiples of k1 = {k1} up to T = {T}, and T itself: {ends}"
    for i, ((start, first, end), (right_start, right_first, right_end)) in enumerate(zip(got, expected)):
        if (start, first, end) == (right_start, right_first, right_end):
            continue
        before = {0: "", 1: "pass 1 is right; "}.get(i, f"passes 1..{i} are right; ")
        if end != right_end:
            return f"{before}pass {i + 1} should be at step {right_end}, yours is at step {end} ({rule})"
        where = f"the pass at step {end}"
        if first != right_first:
            reason = (f"one past the previous backward point, {expected[i - 1][2]}" if i
                      else "the first pass carries every loss from step 1")
            return f"{before}{where} should carry the losses from step {right_first} ({reason}), yours from step {first}"
        return (f"{before}{where} should reach back to step {right_start}, yours to step {start}: its window is "
                f"the last k2 = {k2} steps, clipped at step 1: max(1, {end} - {k2} + 1) .. {end} = "
                f"{right_start}..{end}")
    if len(got) < len(expected):
        missing = ", ".join(map(str, ends[len(got):]))
        right = f"your {len(got)} pass{'es are' if len(got) > 1 else ' is'} right, but " if got else ""
        reason = f" (T = {T} is a backward point even though k1 = {k1} does not divide it)" if T % k1 else ""
        several = len(ends) - len(got) > 1
        return (f"{right}the passes must end at the steps {ends}: the pass{'es' if several else ''} at "
                f"step{'s' if several else ''} {missing} {'are' if several else 'is'} missing{reason}")
    if len(got) > len(expected):
        extra = [item[2] for item in got[len(expected):]]
        return f"there are {len(expected)} passes, at the steps {ends}; yours has more, ending at the steps {extra}"
    return None


def check_windows(backward_points: Callable, seeds: Iterable[int] = (0, 1, 2)) -> None:
    """Raise ``GradingError`` unless ``backward_points`` lists the right passes for every case of every seed.

    Parameters
    ----------
    backward_points : callable
        The student's ``backward_points(T, k1, k2) -> [(start, first_loss, end), ...]``.
    seeds : iterable of int
        The five calls of ``window_cases(seed)`` for each seed.
    """
    __tracebackhide__ = True
    for seed in seeds:
        for case in window_cases(seed):
            got = student_points(backward_points, case)
            wrong = compare_points(got, case)
            if wrong is not None:
                raise GradingError(f"{case.call} is wrong ({case.kind}; drawn from seed {seed}): {wrong}. "
                                   f"Yours: {got}")


def points_note(backward_points: Callable | None, problem: Problem) -> str:
    """What a message says of the student's ``backward_points`` on the problem's (T, k1, k2), if it is given."""
    if backward_points is None:
        return ""
    case = WindowCase(problem.xs.shape[0], problem.k1, problem.k2, "")
    try:
        wrong = compare_points(student_points(backward_points, case), case)
    except GradingError as error:
        return f". Your backward_points fails here: {error}"
    if wrong is None:
        return ". Your backward_points gives the right passes for this problem"
    return f". Your backward_points is wrong on this problem too: {case.call}: {wrong}"


def student_gradients(tbptt_gradients: Callable, problem: Problem) -> dict[str, Array]:
    """The student's gradient on ``problem``, checked for type, keys and shapes."""
    __tracebackhide__ = True
    where = f"(on the problem {problem.text})"
    try:
        result = call_student(tbptt_gradients, "tbptt_gradients", problem.params, problem.xs, problem.dhs,
                              problem.h0, problem.k1, problem.k2)
        grads = as_dict(result, "tbptt_gradients's grads", PARAMS)
        shapes = {"W_xh": "(H, n_in)", "W_hh": "(H, H)", "b_h": "(H,)"}
        return {key: as_answer(grads[key], f"grads[{key!r}]", problem.params[key].shape, shapes[key]) for key in PARAMS}
    except GradingError as error:
        raise GradingError(f"{error} {where}") from None


def same(got: Mapping[str, Array], expected: Mapping[str, Array]) -> bool:
    """Whether every gradient of ``PARAMS`` agrees (``core.is_close``)."""
    return all(is_close(got[key], expected[key]) for key in PARAMS)


def locate(tbptt_gradients: Callable, problem: Problem, got: Mapping[str, Array]) -> str:
    """Where the student's gradient ``got`` on ``problem`` (known to be wrong) first goes wrong, and what that
    pass does instead.

    The sequence cut after the backward point t_j has the first j passes of the whole sequence (t_j is a
    multiple of k1 for every pass but the last, the whole sequence's). The first j at which the student's
    gradient of the cut sequence is wrong locates the pass (the last one if every earlier cut is right); the
    candidates for what that pass computes are in ``explain``.
    """
    passes = companion_truncation.backward_points(problem.xs.shape[0], problem.k1, problem.k2)
    before = {key: np.zeros_like(value) for key, value in problem.params.items()}
    j = 0
    for j, (_, _, end) in enumerate(passes[:-1]):
        try:
            got_cut = student_gradients(tbptt_gradients, problem.prefix(end))
        except GradingError:
            return (f"Your function fails on the first {end} steps of the sequence alone, so the pass at which "
                    "it goes wrong cannot be located")
        expected = reference(problem.prefix(end))
        if not same(got_cut, expected):
            got = got_cut
            break
        before = expected
    else:
        j = len(passes) - 1                 # every earlier cut is right: the last pass is wrong
    start, first, end = passes[j]
    right = (f"the pass{'es' if j > 1 else ''} before it, at step{'s' if j > 1 else ''} "
             f"{', '.join(str(p[2]) for p in passes[:j])}, {'are' if j > 1 else 'is'} right" if j
             else "it is the first pass")
    head = f"The gradient of the pass at step {end} (losses {first}..{end} through the window {start}..{end}) is wrong"
    return f"{head}; {right}. {explain(problem, passes, j, got, before)}"


def explain(problem: Problem, passes: list[Pass], j: int, got: Mapping[str, Array], before: Mapping[str, Array]) -> str:
    """What the student's pass ``j`` computes, when it is a usual mistake; else where to look."""
    T, k1, k2 = problem.xs.shape[0], problem.k1, problem.k2
    start, first, end = passes[j]

    def matches(one: Params) -> bool:                   # got = the passes before j, then ``one``
        return same(got, {key: before[key] + one[key] for key in PARAMS})

    if same(got, before):
        last = f" (T = {T} is a backward point even though k1 = {k1} does not divide it)" if end == T and T % k1 else ""
        return (f"Your function adds nothing for this pass: the losses of steps {first}..{end} are never "
                f"back-propagated{last}")
    candidates = sorted(((lo, st) for st in range(1, end + 1) for lo in range(st, end + 1) if (lo, st) != (first, start)),
                        key=lambda pair: (abs(pair[1] - start) + abs(pair[0] - first), pair))
    for lo, st in candidates:
        if matches(pass_gradient(problem, lo, st, end)):
            parts = []
            if st != start:
                parts.append(f"it reaches back to step {st} instead of step {start}: the window of the pass at step "
                             f"{end} holds the last k2 = {k2} steps, clipped at step 1: max(1, {end} - {k2} + 1) .. "
                             f"{end} = {start}..{end}, and the state h_{start - 1} before it is a constant")
            if lo < first:
                parts.append(f"it back-propagates the losses of steps {lo}..{end} instead of {first}..{end}: the losses "
                             f"of steps {lo}..{first - 1} belong to earlier passes (each loss is back-propagated once, "
                             "by the first backward point at or after its step)")
            elif lo > first:
                parts.append(f"it back-propagates the losses of steps {lo}..{end} instead of {first}..{end}: every loss "
                             f"since the previous backward point, from step {first} on, belongs to this pass")
            return "Your pass: " + "; ".join(parts)
    zero = np.zeros_like(problem.h0)
    restarts = [(problem.h0, "h_0"), (zero, "the zero state")] if start > 1 else [(zero, "the zero state")]
    for h_before, name in restarts:
        if not matches(pass_gradient(problem, first, start, end, h_before)):
            continue
        if start == 1:
            return f"Your pass runs the steps 1..{end} forward from the zero state instead of from the given h_0"
        return (f"Your pass runs its window forward again from {name} instead of from h_{start - 1}: the "
                "truncation cuts the backward pass only; the forward pass runs on through the whole sequence, "
                "and each window starts from the state the steps before it computed (a window restarted "
                f"from {name} is the gradient of another model, one that forgets at every window's start)")
    return ("It is none of the usual mistakes (a window that starts at another step, the losses of other passes, "
            "no pass): check how the pass carries the adjoint back from step to step and which state each step uses")


def check_part(tbptt_gradients: Callable, part: str, seeds: Iterable[int] = (0, 1, 2), *,
               backward_points: Callable | None = None) -> None:
    """Raise ``GradingError`` unless ``tbptt_gradients`` gives the gradient of BPTT(k2; k1) on every problem of
    ``part`` (a key of ``PARTS``) for every seed.

    Parameters
    ----------
    tbptt_gradients : callable
        The student's ``tbptt_gradients(params, xs, dhs, h0, k1, k2) -> grads``.
    part : str
        Which windows: ``"full"``, ``"detach"``, ``"every_step"`` or ``"general"`` (see ``PARTS``).
    seeds : iterable of int
        The problems of ``problems(part, seed)`` for each seed.
    backward_points : callable, optional, keyword-only
        The student's ``backward_points``, only to say in the message whether it is right on the problem.
    """
    __tracebackhide__ = True
    if part not in PARTS:
        raise ValueError(f"part must be one of {sorted(PARTS)}, got {part!r}")
    for seed in seeds:
        for problem in problems(part, seed):
            got = student_gradients(tbptt_gradients, problem)
            expected = reference(problem)
            if same(got, expected):
                continue
            wrong = [f"dL/d{key}" for key in PARAMS if not is_close(got[key], expected[key])]
            raise GradingError(
                f"{problem.label} on the problem of seed {seed} {problem.text}: the truncated gradient is wrong "
                f"({', '.join(wrong)}). {locate(tbptt_gradients, problem, got)}. {PARTS[part]}"
                + points_note(backward_points, problem)
            )


def check_full(tbptt_gradients: Callable, seeds: Iterable[int] = (0, 1, 2), *,
               backward_points: Callable | None = None) -> None:
    """``check_part`` on the part ``"full"``: BPTT(k; k) with k >= T, one pass, the full gradient."""
    __tracebackhide__ = True
    check_part(tbptt_gradients, "full", seeds, backward_points=backward_points)


def check_detach(tbptt_gradients: Callable, seeds: Iterable[int] = (0, 1, 2), *,
                 backward_points: Callable | None = None) -> None:
    """``check_part`` on the part ``"detach"``: BPTT(k; k) with k dividing T."""
    __tracebackhide__ = True
    check_part(tbptt_gradients, "detach", seeds, backward_points=backward_points)


def check_every_step(tbptt_gradients: Callable, seeds: Iterable[int] = (0, 1, 2), *,
                     backward_points: Callable | None = None) -> None:
    """``check_part`` on the part ``"every_step"``: BPTT(k2; 1)."""
    __tracebackhide__ = True
    check_part(tbptt_gradients, "every_step", seeds, backward_points=backward_points)


def check_general(tbptt_gradients: Callable, seeds: Iterable[int] = (0, 1, 2), *,
                  backward_points: Callable | None = None) -> None:
    """``check_part`` on the part ``"general"``: BPTT(k2; k1), 1 < k1 < k2 < T, k1 not dividing T."""
    __tracebackhide__ = True
    check_part(tbptt_gradients, "general", seeds, backward_points=backward_points)


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))
