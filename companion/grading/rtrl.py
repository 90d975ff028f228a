"""The grader of the assignment "Real-time recurrent learning" (``assignments/source/rtrl``).

The student writes, for the tanh Elman network ``h_t = tanh(W_xh x_t + W_hh h_{t-1} + b_h)`` of chapter
"Real-time recurrent learning", with the sensitivities laid out as in that chapter's exercise
(``[b, k, ...]`` = d h_{t,k} / d(parameter entry ...) for sequence b):

* ``immediate_jacobians(params, x, h_prev, h) -> (J, Jtheta)``: the one-step Jacobian J_t ``(B, H, H)`` and
  the immediate Jacobians J^theta_t, a dict with ``W_xh`` ``(B, H, H, n_in)``, ``W_hh`` ``(B, H, H, H)`` and
  ``b_h`` ``(B, H, H)``;
* ``rtrl_step(params, sens, x, h_prev) -> (h, sens)``: one step of the recursion
  Pi_t = J_t Pi_{t-1} + J^theta_t for every parameter, and Pi^0_t = J_t Pi^0_{t-1} for the sensitivity
  to the initial state (key ``h0``, ``(B, H, H)``);
* ``rtrl_gradients(params, xs, h0, dhs) -> (grads, dh0)``: the gradient of
  L = sum_t sum_b <dhs[t - 1, b], h_{t,b}> by the recursion, sum_t Pi_t^T g_t, and dL/dh_0.

Each check draws problems of random shapes from its seeds, computes the answer with the companion (the
cell's ``state_jacobian`` and ``param_jacobian``, its forward mode ``step_jvp`` with the directions of
``rtrl.unit_directions``, and full BPTT for the gradients) and compares; a wrong answer raises
``GradingError`` saying which quantity is wrong (which block, which entry), at which step, and on which
problem, and names a known mistake when the answer is one.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import NamedTuple

import numpy as np

from .. import bptt, rtrl
from ..cells import Elman
from ..types import Array, Params
from .core import (
    GradingError,
    as_answer,
    as_dict,
    as_tuple,
    call_student,
    check_names,
    is_close,
    other_part_note,
    problem_text,
    shortest_failing_length,
)

#: the parameter keys of the Elman cell
PARAMS = ("W_xh", "W_hh", "b_h")
#: the keys of the sensitivities: one per parameter, and ``"h0"`` for Pi^0_t = d h_t / d h_0
SENSITIVITIES = (*PARAMS, "h0")
#: what ``check_gradient`` can check: a parameter key, or ``"h0"`` for dL/dh_0
GRADIENTS = (*PARAMS, "h0")
#: what an entry of each sensitivity (and immediate Jacobian) block is, for messages
MEANING = {
    "W_xh": "d h_{t,k} / d(W_xh)_{ij}",
    "W_hh": "d h_{t,k} / d(W_hh)_{ij}",
    "b_h": "d h_{t,k} / d(b_h)_i",
    "h0": "d h_{t,k} / d h_{0,j}",
}
#: the names of each block's axes, for messages
AXES = {"W_xh": "b, k, i, j", "W_hh": "b, k, i, j", "b_h": "b, k, i", "h0": "b, k, j"}
#: each block's shape in symbols, for messages
SHAPE_TEXT = {"W_xh": "(B, H, H, n_in)", "W_hh": "(B, H, H, H)", "b_h": "(B, H, H)", "h0": "(B, H, H)"}


class Problem(NamedTuple):
    """One random problem: ``params``, inputs ``xs`` (T, B, n_in), ``h0`` (B, H) and loss weights ``dhs`` (T, B, H)."""

    params: Params
    xs: Array
    h0: Array
    dhs: Array

    @property
    def text(self) -> str:
        T, B, n_in = self.xs.shape
        return problem_text(T=T, B=B, n_in=n_in, H=self.h0.shape[1])

    @property
    def cell(self) -> Elman:
        return Elman(self.xs.shape[2], self.h0.shape[1])

    def prefix(self, k: int) -> Problem:
        """The same problem cut to its first ``k`` steps."""
        return Problem(self.params, self.xs[:k], self.h0, self.dhs[:k])

    def shapes(self) -> dict[str, tuple[int, ...]]:
        """The shape of every sensitivity block, in ``SENSITIVITIES`` order."""
        _, B, n_in = self.xs.shape
        H = self.h0.shape[1]
        return {"W_xh": (B, H, H, n_in), "W_hh": (B, H, H, H), "b_h": (B, H, H), "h0": (B, H, H)}


def draw_problem(seed: int) -> Problem:
    """A problem of random shape (T in 3..6, B, n_in in 1..3, H in 2..5) drawn from ``seed``."""
    rng = np.random.default_rng(seed)
    T, B, n_in, H = (int(rng.integers(low, high + 1)) for low, high in ((3, 6), (1, 3), (1, 3), (2, 5)))
    shapes = {"W_xh": (H, n_in), "W_hh": (H, H), "b_h": (H,)}
    params = {key: 0.8 * rng.normal(size=shape) for key, shape in shapes.items()}
    return Problem(params, rng.normal(size=(T, B, n_in)), 0.5 * rng.normal(size=(B, H)), rng.normal(size=(T, B, H)))


class Step(NamedTuple):
    """The reference of step t (1-based): its point and its Jacobians, as the companion computes them.

    ``x`` (B, n_in), ``h_prev`` h_{t-1} (B, H), ``h`` h_t (B, H), ``J`` (B, H, H) with ``J[b, k, j]`` =
    d h_{t,k} / d h_{t-1,j}, and ``Jtheta[key]`` ``(B, H, *shape of key)``.
    """

    x: Array
    h_prev: Array
    h: Array
    J: Array
    Jtheta: Params


def reference_steps(problem: Problem) -> list[Step]:
    """Every step's point and Jacobians, by the companion's step loop, ``state_jacobian`` and ``param_jacobian``."""
    cell = problem.cell
    _, cache = bptt.forward(cell, problem.params, problem.xs, problem.h0, fused=False)
    return [Step(step.x_t, step.h_prev, step.h, cell.state_jacobian(problem.params, step),
                 cell.param_jacobian(problem.params, step)) for step in cache.steps]


def reference_sensitivities(problem: Problem) -> list[dict[str, Array]]:
    """Pi_0, Pi_1, ..., Pi_T (T + 1 dicts of ``SENSITIVITIES``, shapes of ``Problem.shapes``).

    Computed by the cell's forward mode with one direction per entry of h_0 and per parameter entry
    (``rtrl.unit_directions``, the directions of ``rtrl.rtrl``), then laid out per block ``[b, k, ...]``.
    """
    cell = problem.cell
    _, B, n_in = problem.xs.shape
    H = problem.h0.shape[1]
    _, cache = bptt.forward(cell, problem.params, problem.xs, problem.h0, fused=False)
    directions = rtrl.unit_directions(cell, B)
    sens = directions.sensitivities                                  # (K, B, H): direction k, column k of Pi_0
    layouts = [_layout(sens, H, n_in)]
    for step in cache.steps:
        sens = cell.step_jvp(problem.params, step, sens, dict(directions.d_params), directions.d_x)
        layouts.append(_layout(sens, H, n_in))
    return layouts


def _layout(sens: Array, H: int, n_in: int) -> dict[str, Array]:
    """Directions ``(K, B, H)`` (h_0's H, then W_xh, W_hh, b_h, each in C order) as blocks ``[b, k, ...]``."""
    blocks, start = {}, 0
    for key, shape in (("h0", (H,)), ("W_xh", (H, n_in)), ("W_hh", (H, H)), ("b_h", (H,))):
        size = int(np.prod(shape))
        block = sens[start:start + size].reshape(*shape, *sens.shape[1:])   # (*shape, B, H: k)
        blocks[key] = np.moveaxis(block, (-2, -1), (0, 1)).copy()            # (B, k, *shape)
        start += size
    return {key: blocks[key] for key in SENSITIVITIES}


def reference_gradients(problem: Problem) -> dict[str, Array]:
    """dL/dtheta for every key of ``PARAMS`` and dL/dh_0 (key ``"h0"``, (B, H)), by full BPTT."""
    cell = problem.cell
    _, cache = bptt.forward(cell, problem.params, problem.xs, problem.h0, fused=False)
    grads, _, dh0 = bptt.backward(cell, problem.params, cache, problem.dhs)
    return {**grads, "h0": dh0}


def student_J(immediate_jacobians: Callable, problem: Problem, step: Step) -> Array:
    """The student's J_t ``(B, H, H)`` at ``step``, checked for type and shape (``Jtheta`` is not looked at)."""
    __tracebackhide__ = True
    J, _ = _call_jacobians(immediate_jacobians, problem, step)
    return as_answer(J, "immediate_jacobians's J", step.J.shape, "(B, H, H)")


def student_Jtheta(
    immediate_jacobians: Callable, problem: Problem, step: Step, names: tuple[str, ...]
) -> dict[str, Array]:
    """The blocks ``names`` of the student's J^theta_t at ``step``: the dict's keys checked, and those blocks'
    shapes."""
    __tracebackhide__ = True
    _, Jtheta = _call_jacobians(immediate_jacobians, problem, step)
    Jtheta = as_dict(Jtheta, "immediate_jacobians's Jtheta", PARAMS)
    shapes = problem.shapes()
    return {key: as_answer(Jtheta[key], f"Jtheta[{key!r}]", shapes[key], SHAPE_TEXT[key]) for key in names}


def _call_jacobians(immediate_jacobians: Callable, problem: Problem, step: Step) -> tuple[object, object]:
    """What the student's ``immediate_jacobians`` returns at ``step``, as its two values, unchecked."""
    __tracebackhide__ = True
    result = call_student(immediate_jacobians, "immediate_jacobians", problem.params, step.x, step.h_prev, step.h)
    J, Jtheta = as_tuple(result, "immediate_jacobians", 2, "(J, Jtheta)")
    return J, Jtheta


def check_state_jacobian(immediate_jacobians: Callable, seeds: Iterable[int] = (0, 1, 2)) -> None:
    """Raise ``GradingError`` unless ``immediate_jacobians``'s J_t is right at every step of every seed's problem.

    Parameters
    ----------
    immediate_jacobians : callable
        The student's ``immediate_jacobians(params, x, h_prev, h) -> (J, Jtheta)``; only ``J`` ``(B, H, H)``,
        ``J[b, k, j]`` = d h_{t,k} / d h_{t-1,j}, is checked here.
    seeds : iterable of int
        One random problem per seed.
    """
    __tracebackhide__ = True
    for seed in seeds:
        problem = draw_problem(seed)
        for t, step in enumerate(reference_steps(problem), start=1):
            J = student_J(immediate_jacobians, problem, step)
            if is_close(J, step.J):
                continue
            d, d_prev, W = 1.0 - step.h ** 2, 1.0 - step.h_prev ** 2, problem.params["W_hh"]
            hint = _known_mistake(J, {
                "it is the transpose of J_t: J_t[b, k, j] = tanh'(a_{t,k}) (W_hh)_{kj}, row k is unit k of h_t":
                    np.swapaxes(step.J, 1, 2),
                "it uses W_hh^T where W_hh belongs: (W_hh)_{kj} carries unit j of h_(t-1) into unit k of a_t":
                    d[:, :, None] * W.T[None],
                "it lacks the factor tanh'(a_t) = 1 - h_t^2 on row k": np.broadcast_to(W, J.shape),
                "tanh'(a_t) scales its columns: it must scale row k, the unit of h_t (diag(1 - h_t^2) W_hh)":
                    W[None] * d[:, None, :],
                "it uses 1 - h_{t-1}^2: tanh'(a_t) is 1 - h_t^2": d_prev[:, :, None] * W[None],
            }) or _where(J, step.J, "b, k, j", "d h_{t,k} / d h_{t-1,j}")
            raise GradingError(f"J_t is wrong at step t = {t}, on the problem of seed {seed} {problem.text}: {hint}")


def check_param_jacobian(
    immediate_jacobians: Callable, names: str | Iterable[str], seeds: Iterable[int] = (0, 1, 2)
) -> None:
    """Raise ``GradingError`` unless the blocks ``names`` of ``immediate_jacobians``'s J^theta_t are right.

    Parameters
    ----------
    immediate_jacobians : callable
        The student's ``immediate_jacobians(params, x, h_prev, h) -> (J, Jtheta)``; ``Jtheta`` must have
        the keys of ``PARAMS``, and the blocks ``names`` are checked: ``Jtheta["W_hh"]`` ``(B, H, H, H)``,
        ``[b, k, i, j]`` = d h_{t,k} / d(W_hh)_{ij} with h_{t-1} held fixed, and alike ``W_xh``
        ``(B, H, H, n_in)`` and ``b_h`` ``(B, H, H)``.
    names : str or iterable of str
        Keys of ``PARAMS``.
    seeds : iterable of int
        One random problem per seed.
    """
    __tracebackhide__ = True
    names = check_names(names, PARAMS)
    for seed in seeds:
        problem = draw_problem(seed)
        for t, step in enumerate(reference_steps(problem), start=1):
            Jtheta = student_Jtheta(immediate_jacobians, problem, step, names)
            for key in names:
                if is_close(Jtheta[key], step.Jtheta[key]):
                    continue
                hint = _known_mistake(Jtheta[key], _jacobian_mistakes(key, step)) or _where(
                    Jtheta[key], step.Jtheta[key], AXES[key], MEANING[key], diagonal=True)
                raise GradingError(
                    f"Jtheta[{key!r}], the immediate Jacobian J^theta_t of {key}, is wrong at step t = {t}, on the "
                    f"problem of seed {seed} {problem.text}: {hint}"
                )


def _jacobian_mistakes(key: str, step: Step) -> dict[str, Array]:
    """Known wrong versions of J^theta_t's block ``key``, by what the message says of them."""
    B, H = step.h.shape
    eye = np.eye(H)
    d = 1.0 - step.h ** 2
    reads = {"W_xh": step.x, "W_hh": step.h_prev}             # what weight (i, j) multiplies: x_{t,j}, h_{t-1,j}
    if key == "b_h":
        return {"it lacks the factor tanh'(a_t) = 1 - h_t^2": np.broadcast_to(eye, (B, H, H))}
    mistakes = {
        "it lacks the factor tanh'(a_t) = 1 - h_t^2": np.einsum("ki,bj->bkij", eye, reads[key]),
    }
    if key == "W_hh":
        mistakes["it uses h_t where the weight (W_hh)_{ij} multiplies h_{t-1,j}"] = np.einsum(
            "ki,bk,bj->bkij", eye, d, step.h)
        mistakes["i and j are swapped: (W_hh)_{ij} feeds unit i of a_t from unit j of h_{t-1}, so "
                 "[b, k, i, j] = [k == i] tanh'(a_{t,i}) h_{t-1,j}"] = np.swapaxes(step.Jtheta[key], 2, 3)
    return mistakes


def student_step(
    rtrl_step: Callable, problem: Problem, step: Step, sens: Mapping[str, Array]
) -> tuple[Array, dict[str, Array]]:
    """The student's (h_t, Pi_t) from the right h_{t-1} and Pi_{t-1}, checked for type, keys and shapes."""
    __tracebackhide__ = True
    result = call_student(rtrl_step, "rtrl_step", problem.params, dict(sens), step.x, step.h_prev)
    h, new = as_tuple(result, "rtrl_step", 2, "(h, sens)")
    h = as_answer(h, "rtrl_step's h", step.h.shape, "(B, H)")
    new = as_dict(new, "rtrl_step's sens", SENSITIVITIES)
    shapes = problem.shapes()
    return h, {key: as_answer(new[key], f"rtrl_step's sens[{key!r}]", shapes[key], SHAPE_TEXT[key])
               for key in SENSITIVITIES}


def check_rtrl_step(
    rtrl_step: Callable, seeds: Iterable[int] = (0, 1, 2), *, immediate_jacobians: Callable | None = None
) -> None:
    """Raise ``GradingError`` unless ``rtrl_step`` gives the right h_t and Pi_t at every step of every seed's problem.

    Parameters
    ----------
    rtrl_step : callable
        The student's ``rtrl_step(params, sens, x, h_prev) -> (h, sens)``: ``sens`` a dict of
        ``SENSITIVITIES`` (``W_xh`` ``(B, H, H, n_in)``, ``W_hh`` ``(B, H, H, H)``, ``b_h`` ``(B, H, H)``,
        ``h0`` ``(B, H, H)``), ``x`` ``(B, n_in)``, ``h_prev`` and ``h`` ``(B, H)``.
    seeds : iterable of int
        One random problem per seed.
    immediate_jacobians : callable, optional, keyword-only
        The student's Jacobians, only to say in the message whether they are right.

    Notes
    -----
    Step t gets the right h_{t-1} and Pi_{t-1}, so the first step at which an answer is wrong is the first
    step at which the student's carried sensitivities would go wrong. At step 1 the parameters' Pi_0 is 0,
    so Pi_1 = J^theta_1 tests the immediate term alone and Pi^0_1 = J_1 the Jacobian alone; from step 2 on
    the carried term J_t Pi_{t-1} counts too.
    """
    __tracebackhide__ = True
    for seed in seeds:
        problem = draw_problem(seed)
        steps, expected = reference_steps(problem), reference_sensitivities(problem)
        for t, step in enumerate(steps, start=1):
            h, sens = student_step(rtrl_step, problem, step, expected[t - 1])
            if not is_close(h, step.h):
                raise GradingError(
                    f"rtrl_step's h is wrong at step t = {t} (h_t = tanh(W_xh x_t + W_hh h_(t-1) + b_h)), on the "
                    f"problem of seed {seed} {problem.text}"
                )
            for key in SENSITIVITIES:
                if is_close(sens[key], expected[t][key]):
                    continue
                hint = _known_mistake(sens[key], _step_mistakes(key, step, expected[t - 1][key])) or _where(
                    sens[key], expected[t][key], AXES[key], MEANING[key])
                symbol = "Pi^0_t" if key == "h0" else "Pi_t"
                raise GradingError(
                    f"rtrl_step's sens[{key!r}], {symbol}, is wrong at step t = {t}{_step_context(key, t)}, on the "
                    f"problem of seed {seed} {problem.text}: {hint}" + jacobians_note(immediate_jacobians, seed)
                )


def _step_context(key: str, t: int) -> str:
    """What the step's answer depends on, for a message on block ``key`` wrong first at step ``t``."""
    if t > 1:
        right = f"steps 1 .. {t - 1} are" if t > 2 else "step 1 is"
        return f", given the right Pi_{t - 1} ({right} right)"
    if key == "h0":
        return " (Pi^0_0 = I, so Pi^0_1 = J_1)"
    return " (Pi_0 = 0, so Pi_1 = J^theta_1, the immediate term alone)"


def _step_mistakes(key: str, step: Step, previous: Array) -> dict[str, Array]:
    """Known wrong versions of one step's block ``key``, given the right previous sensitivity ``previous``."""
    carried = np.einsum("bkl,bl...->bk...", step.J, previous)
    transposed = np.einsum("blk,bl...->bk...", step.J, previous)
    if key == "h0":
        return {
            "it is J_t^T Pi^0_(t-1): multiply by J_t itself, (J_t Pi)[b, k, ...] = sum_l J_t[b, k, l] Pi[b, l, ...]":
                transposed,
            "it was not carried: Pi^0_t = J_t Pi^0_(t-1)": previous,
        }
    immediate = step.Jtheta[key]
    return {
        "it is the immediate term J^theta_t alone: the carried term J_t Pi_(t-1) is missing (that drops every path "
        "through earlier steps, an approximation cruder than e-prop's eligibility traces, not RTRL)": immediate,
        "the immediate term J^theta_t is missing: Pi_t = J_t Pi_(t-1) + J^theta_t": carried,
        "it uses J_t^T: multiply by J_t itself, (J_t Pi)[b, k, ...] = sum_l J_t[b, k, l] Pi[b, l, ...]":
            transposed + immediate,
    }


def jacobians_note(immediate_jacobians: Callable | None, seed: int) -> str:
    """What a message says of the student's ``immediate_jacobians``: right, wrong, or nothing if not given."""
    checks = [check_state_jacobian, lambda function, seeds: check_param_jacobian(function, PARAMS, seeds)]
    return other_part_note(immediate_jacobians, checks, seed,
                           right="; your immediate_jacobians is right on this problem",
                           wrong="; your immediate_jacobians is wrong on this problem too (see its checks)")


def student_gradients(rtrl_gradients: Callable, problem: Problem) -> dict[str, Array]:
    """The student's gradients on ``problem``, checked for type, keys and shapes (``"h0"``: dL/dh_0)."""
    __tracebackhide__ = True
    result = call_student(rtrl_gradients, "rtrl_gradients", problem.params, problem.xs, problem.h0, problem.dhs)
    grads, dh0 = as_tuple(result, "rtrl_gradients", 2, "(grads, dh0)")
    grads = as_dict(grads, "rtrl_gradients's grads", PARAMS)
    shapes = {"W_xh": "(H, n_in)", "W_hh": "(H, H)", "b_h": "(H,)"}
    answer = {key: as_answer(grads[key], f"grads[{key!r}]", problem.params[key].shape, shapes[key]) for key in PARAMS}
    answer["h0"] = as_answer(dh0, "dh0", problem.h0.shape, "(B, H)")
    return answer


def check_gradient(
    rtrl_gradients: Callable, names: str | Iterable[str], seeds: Iterable[int] = (0, 1, 2), *,
    rtrl_step: Callable | None = None,
) -> None:
    """Raise ``GradingError`` unless the gradients ``names`` of ``rtrl_gradients`` equal full BPTT's.

    Parameters
    ----------
    rtrl_gradients : callable
        The student's ``rtrl_gradients(params, xs, h0, dhs) -> (grads, dh0)``, for
        L = sum_t sum_b <dhs[t - 1, b], h_{t,b}>: ``grads`` a dict of ``PARAMS``, ``dh0`` ``(B, H)``.
    names : str or iterable of str
        Which gradients to check: keys of ``GRADIENTS`` (``"h0"`` is dL/dh_0).
    seeds : iterable of int
        One random problem per seed.
    rtrl_step : callable, optional, keyword-only
        The student's step, only to say in the message whether it is right.

    Notes
    -----
    A wrong gradient is located by the shortest prefix of the sequence on which it is wrong: RTRL has
    summed the shares of steps 1 .. k - 1 rightly and goes wrong with step k's.
    """
    __tracebackhide__ = True
    names = check_names(names, GRADIENTS)
    for seed in seeds:
        problem = draw_problem(seed)
        got, expected = student_gradients(rtrl_gradients, problem), reference_gradients(problem)
        for name in names:
            if is_close(got[name], expected[name]):
                continue
            T = problem.xs.shape[0]
            k = shortest_failing_length(T, lambda k: _right_on_prefix(rtrl_gradients, problem, name, k)) or T
            right = f"{k - 1} steps" if k > 2 else "step"
            where = ("already on the first step alone (T = 1)" if k == 1 else
                     f"from step {k} on (it is right on the first {right} of the sequence)")
            label = "dL/dh_0" if name == "h0" else f"dL/d{name}"
            hint = _known_mistake(got[name], _gradient_mistakes(name, problem))
            raise GradingError(
                f"{label} is wrong {where}, on the problem of seed {seed} {problem.text}{f': {hint}' if hint else ''}"
                + step_note(rtrl_step, name, seed)
            )


def _right_on_prefix(rtrl_gradients: Callable, problem: Problem, name: str, k: int) -> bool:
    """Whether the student's gradient ``name`` is right on the first ``k`` steps of ``problem``."""
    __tracebackhide__ = True
    prefix = problem.prefix(k)
    return is_close(student_gradients(rtrl_gradients, prefix)[name], reference_gradients(prefix)[name])


def _gradient_mistakes(name: str, problem: Problem) -> dict[str, Array]:
    """Known wrong versions of the gradient ``name``, by what the message says of them."""
    from_zero = reference_gradients(problem._replace(h0=np.zeros_like(problem.h0)))[name]
    last = problem._replace(dhs=np.concatenate([np.zeros_like(problem.dhs[:-1]), problem.dhs[-1:]]))
    share = "(Pi^0_T)^T g_T" if name == "h0" else "Pi_T^T g_T"
    mistakes = {
        "it is the gradient of a sequence started from h_0 = 0: start from the given h0": from_zero,
        f"it has only the last step's share {share}: add the share of every step": reference_gradients(last)[name],
    }
    if name == "h0":
        mistakes["it is zero: the sensitivities to h_0 start at Pi^0_0 = I, not 0"] = np.zeros_like(problem.h0)
    return mistakes


def step_note(rtrl_step: Callable | None, name: str, seed: int) -> str:
    """What a message says of the student's ``rtrl_step``: wrong, or right and where to look instead."""
    start = "Pi^0_0 = I" if name == "h0" else "Pi_0 = 0"
    total = ("sum_t (Pi^0_t)^T g_t, per sequence" if name == "h0" else
             "sum_t Pi_t^T g_t, summed over the sequences of the batch")
    return other_part_note(
        rtrl_step, [check_rtrl_step], seed,
        wrong="; your rtrl_step is wrong on this problem too (see its check): fix it first",
        right=f"; your rtrl_step is right on this problem, so look at rtrl_gradients itself: the start {start} and "
              f"the sum {total}")


def _known_mistake(got: Array, mistakes: Mapping[str, Array]) -> str | None:
    """The description of the first of ``mistakes`` whose array ``got`` equals, or ``None``."""
    for description, wrong in mistakes.items():
        if np.shape(wrong) == got.shape and is_close(got, np.asarray(wrong)):
            return description
    return None


def _where(got: Array, expected: Array, axes: str, meaning: str, *, diagonal: bool = False) -> str:
    """Where ``got`` first differs from ``expected``: the entry, both values and, for an immediate Jacobian
    block (``diagonal``: axes ``b, k, i, ...``), whether the wrong entries are those with k = i or k != i.
    """
    difference = np.abs(got - expected)
    wrong = difference > 1e-8 * max(float(np.abs(expected).max()), 1e-300)
    first = np.argwhere(wrong)[0] if wrong.any() else np.unravel_index(difference.argmax(), got.shape)
    index = tuple(int(i) for i in first)
    text = (f"first wrong entry [{axes}] = {list(index)}, {meaning}: yours {got[index]:.6g}, right "
            f"{expected[index]:.6g}")
    if diagonal:
        H = got.shape[1]
        same = np.eye(H, dtype=bool)[None, :, :].reshape(1, H, H, *([1] * (got.ndim - 3)))
        if not (wrong & same).any():
            text += ("; only entries with k != i are wrong: they must be 0, since with h_(t-1) held fixed a weight of "
                     "row i moves only unit i of h_t")
        elif not (wrong & ~same).any():
            text += "; only entries with k = i are wrong"
    return text
