"""The grader of the assignment "Networks with delays (NARX)" (``assignments/source/narx``).

The student writes, for the NARX network of chapter "Networks with delays (NARX)" with every input and
output before step 1 zero,

    a_t = sum_{k=0..d_x} W_xh^(k) x_{t-k} + sum_{j=1..d_y} W_yh^(j) y_{t-j} + b_h,
    h_t = tanh(a_t),    y_t = W_hy h_t + b_y,

with the delayed matrices side by side, ``W_xh = [W_xh^(0) | ... | W_xh^(d_x)]`` ``(H, (d_x + 1) n_in)`` and
``W_yh = [W_yh^(1) | ... | W_yh^(d_y)]`` ``(H, d_y n_out)``:

* ``narx_forward(params, xs, d_x, d_y) -> (ys, hs)``: the closed loop, the network's own outputs fed back;
* ``output_adjoints(params, hs, dys, d_y) -> ybar``: ybar_t = dys[t - 1] + sum_j W_yh^(j)T abar_{t+j} with
  abar_t = (1 - h_t^2) * W_hy^T ybar_t, for L = sum_t <dys[t - 1], y_t>;
* ``narx_gradients(params, xs, hs, ys, ybar, d_x, d_y) -> (grads, dxs)``: the parameter gradients, sums over
  the steps, and dL/dx_t, from the forward pass and the output adjoints;
* ``open_loop(params, xs, ys_measured, dys, d_x, d_y) -> (ys, grads)``: teacher forcing, every step fed the
  measured past outputs, and the gradient of L = sum_t <dys[t - 1], y_t> of those one-step predictions.

Each check draws problems of random shapes and delays from its seeds, computes the answer with the
companion's ``NARX`` cell (``bptt.forward``, ``bptt.state_adjoints``, ``bptt.backward``, ``teacher_states``)
and compares; every backward check hands the student's function the right forward results, so one mistake
costs only its own part. A wrong answer raises ``GradingError`` saying which quantity is wrong, at which
step (or which delay's block), on which problem, and naming a known mistake when the answer is one.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import NamedTuple

import numpy as np

from .. import bptt
from ..cells import NARX
from ..types import Array, Params
from .core import (
    GradingError,
    as_answer,
    as_dict,
    as_tuple,
    call_student,
    check_names,
    first_wrong_output,
    first_wrong_step,
    is_close,
    known_mistake,
    listing,
    problem_text,
    steps_after,
    steps_before,
)

#: the parameter keys of the NARX network
PARAMS = ("W_xh", "W_yh", "b_h", "W_hy", "b_y")
#: what ``check_gradients`` can check: a parameter key, or ``"xs"`` for dL/dx_t
GRADIENTS = (*PARAMS, "xs")
#: each gradient's shape in symbols, for messages
SHAPE_TEXT = {"W_xh": "(H, (d_x + 1) n_in)", "W_yh": "(H, d_y n_out)", "b_h": "(H,)", "W_hy": "(n_out, H)",
              "b_y": "(n_out,)", "xs": "(T, B, n_in)"}


class Problem(NamedTuple):
    """One random problem: parameters, inputs ``xs`` (T, B, n_in), the loss weights ``dys`` (T, B, n_out),
    measured outputs ``ys_measured`` (T, B, n_out) for teacher forcing, and the delays."""

    params: Params
    xs: Array
    dys: Array
    ys_measured: Array
    d_x: int
    d_y: int

    @property
    def cell(self) -> NARX:
        return NARX(self.xs.shape[2], self.params["b_h"].shape[0], n_out=self.dys.shape[2], d_x=self.d_x,
                    d_y=self.d_y)

    @property
    def text(self) -> str:
        T, B, n_in = self.xs.shape
        return problem_text(T=T, B=B, n_in=n_in, H=self.params["b_h"].shape[0], n_out=self.dys.shape[2],
                            d_x=self.d_x, d_y=self.d_y)


def draw_problem(seed: int) -> Problem:
    """A problem of random shape (T in 4..7, B in 1..3, n_in in 1..3, H in 2..5, n_out in 1..2) and delays
    (d_x in 0..2, d_y in 2..3) drawn from ``seed``; weights at scale 0.5."""
    rng = np.random.default_rng(seed)
    T, B, n_in, H, n_out, d_x, d_y = (int(rng.integers(low, high + 1)) for low, high in
                                      ((4, 7), (1, 3), (1, 3), (2, 5), (1, 2), (0, 2), (2, 3)))
    cell = NARX(n_in, H, n_out=n_out, d_x=d_x, d_y=d_y)
    params = {key: 0.5 * rng.normal(size=shape) for key, shape in cell.param_shapes().items()}
    return Problem(params, rng.normal(size=(T, B, n_in)), rng.normal(size=(T, B, n_out)),
                   rng.normal(size=(T, B, n_out)), d_x, d_y)


class Reference(NamedTuple):
    """The right answers on a problem, as the companion computes them: ``ys`` (T, B, n_out), ``hs``
    (T, B, H), ``ybar`` (T, B, n_out), ``grads`` (a dict of ``PARAMS``), ``dxs`` (T, B, n_in), and teacher
    forcing's one-step predictions ``open_ys`` and gradients ``open_grads``."""

    ys: Array
    hs: Array
    ybar: Array
    grads: Params
    dxs: Array
    open_ys: Array
    open_grads: Params


def reference(problem: Problem) -> Reference:
    """Every right answer on ``problem``, by the companion's ``NARX`` cell from the zero state."""
    cell, params, xs, dys = problem.cell, problem.params, problem.xs, problem.dys
    ys, cache = bptt.forward(cell, params, xs, fused=False)
    hs = np.stack([step.h for step in cache.steps])
    adjoints = bptt.state_adjoints(cell, params, cache, dys)
    ybar = (adjoints[0] if isinstance(adjoints, tuple) else adjoints)[1:]      # ybar_t, t = 1..T
    grads, dxs, _ = bptt.backward(cell, params, cache, dys)
    T, B = xs.shape[:2]
    teacher = cell.teacher_states(xs, problem.ys_measured)
    folded = tuple(part.reshape(T * B, -1) for part in (teacher if isinstance(teacher, tuple) else (teacher,)))
    open_ys, open_cache = bptt.forward(cell, params, xs.reshape(1, T * B, -1),
                                       folded if len(folded) > 1 else folded[0], fused=False)
    open_grads, _, _ = bptt.backward(cell, params, open_cache, dys.reshape(1, T * B, -1))
    return Reference(ys, hs, ybar, grads, dxs, open_ys.reshape(ys.shape), open_grads)


# ----- known mistakes, computed for the messages -----------------------------------------------------------
def _blocks(W: Array, count: int) -> list[Array]:
    width = W.shape[1] // count
    return [W[:, k * width:(k + 1) * width] for k in range(count)]


def _closed_loop(params: Params, xs: Array, d_x: int, d_y: int, *, squash: bool = False) -> tuple[Array, Array]:
    """``(ys, hs)`` of the closed loop from zero history, written out (for the variants of the messages)."""
    T, B, n_in = xs.shape
    n_out = params["b_y"].shape[0]
    W_x, W_y = _blocks(params["W_xh"], d_x + 1), _blocks(params["W_yh"], d_y)
    x = [np.zeros((B, n_in))] * d_x + list(xs)                     # x[d_x + t - 1] is x_t
    y = [np.zeros((B, n_out))] * d_y                               # y[d_y + t - 1] is y_t
    hs = []
    for t in range(T):
        a = params["b_h"] + sum(x[d_x + t - k] @ W_x[k].T for k in range(d_x + 1))
        a = a + sum(y[d_y + t - j] @ W_y[j - 1].T for j in range(1, d_y + 1))
        hs.append(np.tanh(a))
        out = hs[-1] @ params["W_hy"].T + params["b_y"]
        y.append(np.tanh(out) if squash else out)
    return np.stack(y[d_y:]), np.stack(hs)


def _with_blocks(params: Params, key: str, count: int, change: Callable[[list[Array]], list[Array]]) -> Params:
    """``params`` with the delay blocks of ``key`` changed (reordered or zeroed) by ``change``."""
    return {**params, key: np.hstack(change(_blocks(params[key], count)))}


def _forward_mistakes(problem: Problem) -> dict[str, Array]:
    """Known wrong versions of the outputs ys, by what the message says of them."""
    p, xs, d_x, d_y = problem.params, problem.xs, problem.d_x, problem.d_y

    def zero_after_first(blocks):
        return [blocks[0]] + [np.zeros_like(block) for block in blocks[1:]]

    return {
        "the delays of W_yh are reversed: the block W_yh^(j) (columns (j - 1) n_out .. j n_out - 1) multiplies "
        "y_{t-j}, so the first block goes with y_{t-1}":
            _closed_loop(_with_blocks(p, "W_yh", d_y, lambda b: b[::-1]), xs, d_x, d_y)[0],
        "only y_{t-1} is fed back: step t reads the d_y outputs y_{t-1}, ..., y_{t-d_y}":
            _closed_loop(_with_blocks(p, "W_yh", d_y, zero_after_first), xs, d_x, d_y)[0],
        "only x_t is read: step t reads the d_x + 1 inputs x_t, ..., x_{t-d_x}":
            _closed_loop(_with_blocks(p, "W_xh", d_x + 1, zero_after_first), xs, d_x, d_y)[0],
        "the delays of W_xh are reversed: the block W_xh^(k) multiplies x_{t-k}, the first block x_t":
            _closed_loop(_with_blocks(p, "W_xh", d_x + 1, lambda b: b[::-1]), xs, d_x, d_y)[0],
        "the output is squashed: y_t = W_hy h_t + b_y is linear": _closed_loop(p, xs, d_x, d_y, squash=True)[0],
    }


def _output_adjoints(params: Params, hs: Array, dys: Array, d_y: int, *, reach: int | None = None,
                     reverse: bool = False, slope: bool = True) -> Array:
    """ybar by the recursion, with the variants of the messages: only delays 1..``reach`` sending back,
    the blocks matched in ``reverse``, or tanh' left out (``slope`` false)."""
    T = hs.shape[0]
    W_y = _blocks(params["W_yh"], d_y)
    reach = d_y if reach is None else reach
    ybar, abar = np.zeros_like(dys), {}
    for t in range(T, 0, -1):
        later = dys[t - 1].copy()
        for j in range(1, reach + 1):
            if t + j <= T:
                later += abar[t + j] @ W_y[(d_y - j) if reverse else (j - 1)]
        ybar[t - 1] = later
        abar[t] = (1.0 - hs[t - 1] ** 2 if slope else 1.0) * (later @ params["W_hy"])
    return ybar


def _adjoint_mistakes(problem: Problem, hs: Array) -> dict[str, Array]:
    p, dys, d_y = problem.params, problem.dys, problem.d_y
    return {
        "only the next step sends back: y_t is read by the d_y steps t + 1, ..., t + d_y, and each sends "
        "W_yh^(j)T abar_{t+j}": _output_adjoints(p, hs, dys, d_y, reach=1),
        "the blocks are matched to the wrong steps: the block W_yh^(j) goes with abar_{t+j}, the step j later":
            _output_adjoints(p, hs, dys, d_y, reverse=True),
        "abar lacks tanh'(a_t): abar_t = (1 - h_t^2) * W_hy^T ybar_t": _output_adjoints(p, hs, dys, d_y, slope=False),
        "it is the direct gradient dys alone: add what the later steps send back": dys,
    }


def _sums(problem: Problem, hs: Array, ys: Array, ybar: Array, *, y_shift: int = 0, x_reach: int | None = None,
          slope: bool = True) -> tuple[Params, Array]:
    """The gradients from the adjoints (eq-nx-grads and dL/dx_t), with the variants of the messages: the
    output window shifted by ``y_shift`` steps, dL/dx_t from delays 0..``x_reach`` only, tanh' left out."""
    p, xs, d_x, d_y = problem.params, problem.xs, problem.d_x, problem.d_y
    T, B, n_in = xs.shape
    n_out = ys.shape[2]
    x = np.concatenate([np.zeros((d_x, B, n_in)), xs])                         # x[d_x + t - 1] is x_t
    y = np.concatenate([np.zeros((d_y + 1, B, n_out)), ys])                    # y[d_y + t] is y_t
    abar = (1.0 - hs ** 2 if slope else 1.0) * (ybar @ p["W_hy"])              # (T, B, H)
    X = np.concatenate([x[d_x + np.arange(T) - k] for k in range(d_x + 1)], axis=-1)
    Y = np.concatenate([y[d_y + np.arange(1, T + 1) - j + y_shift] for j in range(1, d_y + 1)], axis=-1)
    grads = {"W_xh": np.einsum("tbh,tbi->hi", abar, X), "W_yh": np.einsum("tbh,tbi->hi", abar, Y),
             "b_h": abar.sum(axis=(0, 1)), "W_hy": np.einsum("tbo,tbh->oh", ybar, hs), "b_y": ybar.sum(axis=(0, 1))}
    W_x = _blocks(p["W_xh"], d_x + 1)
    reach = d_x if x_reach is None else x_reach
    dxs = np.zeros_like(xs)
    for t in range(T):
        for k in range(reach + 1):
            if t + k < T:
                dxs[t] += abar[t + k] @ W_x[k]
    return grads, dxs


def _gradient_mistakes(problem: Problem, ref: Reference) -> dict[str, tuple[Params, Array]]:
    return {
        "the output window is off by one step: W_yh^(j) pairs abar_t with y_{t-j}, the output j steps before "
        "step t, not y_{t-j+1}": _sums(problem, ref.hs, ref.ys, ref.ybar, y_shift=1),
        "abar lacks tanh'(a_t): abar_t = (1 - h_t^2) * W_hy^T ybar_t": _sums(problem, ref.hs, ref.ys, ref.ybar,
                                                                            slope=False),
        "dL/dx_t has only step t's share: x_t is also read by steps t + 1, ..., t + d_x through W_xh^(k)":
            _sums(problem, ref.hs, ref.ys, ref.ybar, x_reach=0),
    }


# ----- the checks ------------------------------------------------------------------------------------------


def student_forward(narx_forward: Callable, problem: Problem) -> tuple[Array, Array]:
    """The student's ``(ys, hs)`` on ``problem``, checked for type and shapes."""
    __tracebackhide__ = True
    result = call_student(narx_forward, "narx_forward", problem.params, problem.xs, problem.d_x, problem.d_y)
    ys, hs = as_tuple(result, "narx_forward", 2, "(ys, hs)")
    T, B, _ = problem.xs.shape
    return (as_answer(ys, "narx_forward's ys", (T, B, problem.dys.shape[2]), "(T, B, n_out)"),
            as_answer(hs, "narx_forward's hs", (T, B, problem.params["b_h"].shape[0]), "(T, B, H)"))


def forward_note(narx_forward: Callable | None, problem: Problem, seed: int) -> str:
    """What a message says of the student's forward pass on ``problem``: right, wrong, or nothing."""
    if narx_forward is None:
        return ""
    ref = reference(problem)
    try:
        ys, hs = student_forward(narx_forward, problem)
    except GradingError:
        return "; your narx_forward fails on this problem (see its check)"
    right = is_close(ys, ref.ys) and is_close(hs, ref.hs)
    return f"; your narx_forward is {'right' if right else 'wrong'} on this problem (seed {seed})"


def check_forward(narx_forward: Callable, seeds: Iterable[int] = (0, 1, 2)) -> None:
    """Raise ``GradingError`` unless ``narx_forward`` gives the right outputs and hidden states.

    Parameters
    ----------
    narx_forward : callable
        The student's ``narx_forward(params, xs, d_x, d_y) -> (ys, hs)``: ``xs`` (T, B, n_in), ``ys``
        (T, B, n_out) the closed loop's outputs y_t, ``hs`` (T, B, H) the hidden layer h_t, every value
        before step 1 zero.
    seeds : iterable of int
        One random problem per seed.
    """
    __tracebackhide__ = True
    for seed in seeds:
        problem = draw_problem(seed)
        ref = reference(problem)
        ys, hs = student_forward(narx_forward, problem)
        if is_close(ys, ref.ys) and is_close(hs, ref.hs):
            continue
        t, which = first_wrong_output({"hs (the hidden layer h_t)": (hs, ref.hs), "ys (the outputs y_t)": (ys, ref.ys)})
        t += 1
        hint = None if first_wrong_step(ys, ref.ys) is None else known_mistake(ys, _forward_mistakes(problem), ref.ys)
        raise GradingError(
            f"{which} is wrong from step t = {t} on{steps_before(t)}, on the problem of seed {seed} {problem.text}"
            + (f": {hint}" if hint else "")
        )


def check_output_adjoints(output_adjoints: Callable, seeds: Iterable[int] = (0, 1, 2), *,
                          narx_forward: Callable | None = None) -> None:
    """Raise ``GradingError`` unless ``output_adjoints`` gives ybar_t = dL/dy_t at every step.

    Parameters
    ----------
    output_adjoints : callable
        The student's ``output_adjoints(params, hs, dys, d_y) -> ybar``, ``hs`` (T, B, H) the right hidden
        layer, ``dys`` (T, B, n_out) the direct gradients of L = sum_t <dys[t - 1], y_t>, ``ybar``
        (T, B, n_out) through every path.
    seeds : iterable of int
        One random problem per seed.
    narx_forward : callable, optional, keyword-only
        The student's forward pass, only to say in the message whether it is right.

    Notes
    -----
    The recursion runs from t = T down, so the message names the latest step at which ybar_t is wrong:
    every later step is right. At t = T nothing comes back (ybar_T = dys[T - 1]); from t = T - 1 on,
    the steps that read y_t send back.
    """
    __tracebackhide__ = True
    for seed in seeds:
        problem = draw_problem(seed)
        ref = reference(problem)
        result = call_student(output_adjoints, "output_adjoints", problem.params, ref.hs, problem.dys, problem.d_y)
        ybar = as_answer(result, "output_adjoints's ybar", ref.ybar.shape, "(T, B, n_out)")
        if is_close(ybar, ref.ybar):
            continue
        T = ybar.shape[0]
        t = max(s for s in range(1, T + 1) if not is_close(ybar[s - 1], ref.ybar[s - 1]))
        if t == T:
            where = f"at the last step t = T = {T}, where nothing comes back: ybar_T = dys[T - 1]"
        else:
            reads = [f"{t + j}" for j in range(1, problem.d_y + 1) if t + j <= T]
            where = (f"at step t = {t}{steps_after(t, T)}; y_{t} is read by the step{'s' if len(reads) > 1 else ''} "
                     f"{listing(reads)}")
        hint = known_mistake(ybar, _adjoint_mistakes(problem, ref.hs), ref.ybar)
        raise GradingError(
            f"ybar is wrong {where}, on the problem of seed {seed} {problem.text}" + (f": {hint}" if hint else "")
            + forward_note(narx_forward, problem, seed)
        )


def student_gradients(narx_gradients: Callable, problem: Problem, ref: Reference) -> tuple[Params, Array]:
    """The student's ``(grads, dxs)`` from the right forward results and adjoints, checked for keys and shapes."""
    __tracebackhide__ = True
    result = call_student(narx_gradients, "narx_gradients", problem.params, problem.xs, ref.hs, ref.ys, ref.ybar,
                          problem.d_x, problem.d_y)
    grads, dxs = as_tuple(result, "narx_gradients", 2, "(grads, dxs)")
    grads = as_dict(grads, "narx_gradients's grads", PARAMS)
    answer = {key: as_answer(grads[key], f"grads[{key!r}]", problem.params[key].shape, SHAPE_TEXT[key])
              for key in PARAMS}
    return answer, as_answer(dxs, "narx_gradients's dxs", problem.xs.shape, SHAPE_TEXT["xs"])


def check_gradients(narx_gradients: Callable, names: str | Iterable[str], seeds: Iterable[int] = (0, 1, 2)) -> None:
    """Raise ``GradingError`` unless the gradients ``names`` of ``narx_gradients`` are right.

    Parameters
    ----------
    narx_gradients : callable
        The student's ``narx_gradients(params, xs, hs, ys, ybar, d_x, d_y) -> (grads, dxs)``, given the right
        forward results ``hs`` (T, B, H), ``ys`` (T, B, n_out) and output adjoints ``ybar`` (T, B, n_out):
        ``grads`` a dict of ``PARAMS`` of the parameters' shapes, ``dxs`` (T, B, n_in).
    names : str or iterable of str
        Keys of ``GRADIENTS`` (``"xs"`` is dL/dx_t).
    seeds : iterable of int
        One random problem per seed.
    """
    __tracebackhide__ = True
    names = check_names(names, GRADIENTS)
    for seed in seeds:
        problem = draw_problem(seed)
        ref = reference(problem)
        grads, dxs = student_gradients(narx_gradients, problem, ref)
        got = {**grads, "xs": dxs}
        expected = {**ref.grads, "xs": ref.dxs}
        for name in names:
            if is_close(got[name], expected[name]):
                continue
            mistakes = {text: ({**g, "xs": d}[name]) for text, (g, d) in _gradient_mistakes(problem, ref).items()}
            hint = known_mistake(got[name], mistakes, expected[name])
            raise GradingError(
                f"{_where_wrong(name, got[name], expected[name], problem)}, on the problem of seed {seed} "
                f"{problem.text}" + (f": {hint}" if hint else "")
            )


def _where_wrong(name: str, got: Array, expected: Array, problem: Problem) -> str:
    """Which part of the gradient ``name`` is wrong: the first wrong delay block, or the first wrong step."""
    if name == "xs":
        t = first_wrong_step(got, expected) + 1
        return f"dL/dx_t is wrong from step t = {t} on{steps_before(t)}"
    if name in ("W_xh", "W_yh"):
        count, first = (problem.d_x + 1, 0) if name == "W_xh" else (problem.d_y, 1)
        pairs = zip(_blocks(got, count), _blocks(expected, count))
        delay = next(first + k for k, (a, b) in enumerate(pairs) if not is_close(a, b))
        symbol = "W_xh^(k)" if name == "W_xh" else "W_yh^(j)"
        letter = "k" if name == "W_xh" else "j"
        return f"dL/d{name} is wrong, first in the block of delay {letter} = {delay}, {symbol} with {letter} = {delay}"
    return f"dL/d{name} is wrong"


def check_open_loop(open_loop: Callable, seeds: Iterable[int] = (0, 1, 2)) -> None:
    """Raise ``GradingError`` unless ``open_loop`` gives teacher forcing's one-step predictions and gradients.

    Parameters
    ----------
    open_loop : callable
        The student's ``open_loop(params, xs, ys_measured, dys, d_x, d_y) -> (ys, grads)``: step t fed the
        measured outputs ``ys_measured`` (T, B, n_out) of steps t - d_y .. t - 1 (zero before step 1),
        ``ys`` (T, B, n_out) its one-step predictions, ``grads`` a dict of ``PARAMS``: the gradient of
        L = sum_t <dys[t - 1], y_t> with the measured values held fixed.
    seeds : iterable of int
        One random problem per seed.
    """
    __tracebackhide__ = True
    for seed in seeds:
        problem = draw_problem(seed)
        ref = reference(problem)
        result = call_student(open_loop, "open_loop", problem.params, problem.xs, problem.ys_measured, problem.dys,
                              problem.d_x, problem.d_y)
        ys, grads = as_tuple(result, "open_loop", 2, "(ys, grads)")
        ys = as_answer(ys, "open_loop's ys", ref.open_ys.shape, "(T, B, n_out)")
        if not is_close(ys, ref.open_ys):
            t = first_wrong_step(ys, ref.open_ys) + 1
            hint = known_mistake(ys, {
                "these are the closed loop's outputs: in open loop step t reads the measured y_{t-1}, ..., "
                "y_{t-d_y} (ys_measured), not the network's own": ref.ys,
            }, ref.open_ys)
            raise GradingError(
                f"open_loop's ys (the one-step predictions) is wrong from step t = {t} on, on the problem of seed "
                f"{seed} {problem.text}" + (f": {hint}" if hint else "")
            )
        grads = as_dict(grads, "open_loop's grads", PARAMS)
        for key in PARAMS:
            got = as_answer(grads[key], f"open_loop's grads[{key!r}]", problem.params[key].shape, SHAPE_TEXT[key])
            if is_close(got, ref.open_grads[key]):
                continue
            through_feedback = _open_loop_through_feedback(problem)
            hint = known_mistake(got, {
                "it back-propagates through the feedback: in open loop the fed-back values are measurements, "
                "constants, so ybar_t is the direct gradient dys[t - 1] alone": through_feedback[key],
                "it is the closed loop's gradient (BPTT through the network's own outputs)": ref.grads[key],
            }, ref.open_grads[key])
            raise GradingError(
                f"open_loop's dL/d{key} is wrong (your one-step predictions are right), on the problem of seed "
                f"{seed} {problem.text}" + (f": {hint}" if hint else "")
            )


def _open_loop_through_feedback(problem: Problem) -> Params:
    """The wrong open-loop gradient that carries ybar_t back through the feedback as if the measured values
    were the network's outputs: the recursion of ``_output_adjoints`` on the one-step predictions."""
    teacher = problem.cell.teacher_states(problem.xs, problem.ys_measured)
    parts = teacher if isinstance(teacher, tuple) else (teacher,)
    X = np.concatenate((problem.xs, *parts[problem.d_y:]), axis=-1)          # (T, B, (d_x + 1) n_in)
    Y = np.concatenate(parts[:problem.d_y], axis=-1)                          # (T, B, d_y n_out)
    hs = np.tanh(X @ problem.params["W_xh"].T + Y @ problem.params["W_yh"].T + problem.params["b_h"])
    ybar = _output_adjoints(problem.params, hs, problem.dys, problem.d_y)
    abar = (1.0 - hs ** 2) * (ybar @ problem.params["W_hy"])
    return {"W_xh": np.einsum("tbh,tbi->hi", abar, X), "W_yh": np.einsum("tbh,tbi->hi", abar, Y),
            "b_h": abar.sum(axis=(0, 1)), "W_hy": np.einsum("tbo,tbh->oh", ybar, hs), "b_y": ybar.sum(axis=(0, 1))}
