"""Shared helpers of the core tests: tiny random problems, the cell kinds, and the finite-difference
gradient check of the step loop.

Imported by the test modules as ``from helpers import ...`` (pytest puts ``tests/`` on ``sys.path``
because the folder is not a package). This module needs numpy and the companion only, never torch:
what needs torch is in ``torch_reference.py``.

A problem is ``(params, xs, state0, dhs)`` for a cell: ``xs`` (T, B, n_in), ``state0`` (B, width) (or,
for a cell with a multi-part state such as the LSTM's ``(h, c)``, a tuple of such arrays) and ``dhs``
(T, B, width), the gradient of the loss L = sum(hs * dhs) with respect to ``hs``.

Gradient dicts hold the parameters' keys, ``"xs"`` and the initial state's entries: ``"state0"`` for a
one-part state, ``"state0[0]"``, ``"state0[1]"``, ... for a tuple (``state_entries``).

The gradients here are the step loop's (``bptt.forward(..., fused=False)``), the reference that every
other gradient method is pinned to (``gradient_methods.py``).
"""
from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_array_equal

from companion import bptt
from companion.cells import GRU, LSTM, NARX, TDNN, Elman, EulerCTRNN, Jordan
from companion.gradcheck import numerical_gradient, relative_errors

# (T, B, n_in, H): T = 1, B = 1, n_in = 1 and H != n_in all occur.
SHAPES = [
    (1, 1, 1, 1),
    (1, 2, 3, 2),
    (3, 1, 2, 4),
    (4, 2, 1, 3),
    (2, 3, 3, 2),
]
SHAPE_IDS = [f"T{T}-B{B}-in{n_in}-H{H}" for T, B, n_in, H in SHAPES]

# (T, B, n_in, n_hidden, n_out): n_out None (the default, = n_hidden), n_out < and > n_hidden.
JORDAN_SHAPES = [
    (1, 1, 1, 1, None),
    (3, 2, 2, 3, None),
    (2, 1, 3, 2, 4),
    (4, 2, 1, 3, 1),
]
JORDAN_IDS = [f"T{T}-B{B}-in{n_in}-H{H}-out{n_out}" for T, B, n_in, H, n_out in JORDAN_SHAPES]

NONLINEARITIES = ["tanh", "relu", "linear"]

# The gated cells, by test id: the LSTM (state (h, c)) and both variants of the GRU.
GATED_KINDS = ["lstm", "gru-torch", "gru-cho"]

# Every cell kind of the companion, by test id ("ctrnn-euler": the Euler step of a continuous-time network;
# "narx": the NARX network with the delays of NARX_DELAYS). The time-delay layer, "tdnn" (make_cell makes it
# too), is not one of them: its state does not depend on the parameters and it forgets its initial state
# after d_x steps, so the truncation tests' claims (a cut changes the gradient, the adjoint never vanishes)
# do not hold for it; test_narx.py runs the gradient-method table on it.
CELL_KINDS = [f"elman-{nonlinearity}" for nonlinearity in NONLINEARITIES] + ["jordan"] + GATED_KINDS + ["ctrnn-euler", "narx"]

CTRNN_DT = 0.3   # the Euler step of the "ctrnn-euler" kind: large enough that dt f is not tiny next to h

# The "narx" kind: two stored inputs and three fed-back outputs, so its state has five parts and the
# table's shapes have T below, at and above d_y; n_out None means NARX_N_OUT.
NARX_DELAYS = dict(d_x=2, d_y=3)
NARX_N_OUT = 2
TDNN_DELAY = 2   # the "tdnn" kind: x_t, x_{t-1}, x_{t-2}
# (T, B, n_in, H, n_out) of the NARX network: n_out = 1, 2 (the default), 4.
NARX_SHAPES = [
    (1, 1, 1, 1, 1),
    (3, 2, 2, 3, None),
    (2, 1, 3, 2, 4),
    (5, 2, 1, 3, 1),
]

# The shapes each kind is checked over, as (T, B, n_in, H, n_out); n_out is the Jordan and NARX networks' only.
KIND_SHAPES = {kind: {"jordan": JORDAN_SHAPES, "narx": NARX_SHAPES}.get(kind, [(*shape, None) for shape in SHAPES])
               for kind in CELL_KINDS}
# One small problem per kind (two for the Jordan network: n_out = n_hidden and n_out != n_hidden).
SMALL_SHAPES = {kind: [(3, 2, 2, 3, None)] + ([(3, 2, 2, 3, 2)] if kind == "jordan" else []) for kind in CELL_KINDS}

DHS_KINDS = ["random", "last", "first"]

TIGHT = dict(rtol=1e-10, atol=1e-12)   # one float64 quantity computed two ways: rounding apart
GRAD_TOL = 1e-7      # finite differences vs the hand-written backward
MIN_GRAD_NORM = 1e-4  # below this, rounding noise of the finite differences (~1e-10) is no longer negligible
KINK_MARGIN = 1e-3   # relu pre-activations are kept this far from 0 (eps = 1e-6 never crosses a kink)


def seeded(*key: int | str) -> np.random.Generator:
    """A generator seeded from a test's parameters (ints and strs), so every case is reproducible and distinct."""
    ints = [k if isinstance(k, int) else sum((i + 1) * ord(c) for i, c in enumerate(k)) for k in key]
    return np.random.default_rng(ints)


def shape_id(kind: str, shape: tuple) -> str:
    T, B, n_in, H, n_out = shape
    return f"{kind}-T{T}-B{B}-in{n_in}-H{H}" + ("" if n_out is None else f"-out{n_out}")


def kind_cases(shapes_of: dict[str, list[tuple]], kinds=CELL_KINDS) -> list:
    """``pytest.param(kind, shape)`` for every kind of ``kinds`` and every shape ``shapes_of[kind]``."""
    return [pytest.param(kind, shape, id=shape_id(kind, shape)) for kind in kinds for shape in shapes_of[kind]]


def make_dhs(rng: np.random.Generator, T: int, B: int, width: int, kind: str) -> np.ndarray:
    """``kind``: "random" everywhere, "last" (zero except at t = T) or "first" (zero except at t = 1)."""
    dhs = rng.normal(size=(T, B, width))
    if kind == "last":
        dhs[:-1] = 0.0
    elif kind == "first":
        dhs[1:] = 0.0
    elif kind != "random":
        raise AssertionError(f"unknown dhs kind {kind!r}")
    return dhs


def make_problem(cell, T: int, B: int, rng: np.random.Generator, *, zero_state: bool = False,
                 dhs_kind: str = "random", scale: float = 1.0):
    """Random float64 ``(params, xs, state0, dhs)`` of the given sizes for ``cell``.

    ``state0`` is one (B, width) array, or a tuple of them for a cell with several ``state_widths``.
    """
    params = {key: scale * rng.normal(size=shape) for key, shape in cell.param_shapes().items()}
    xs = rng.normal(size=(T, B, cell.n_in))
    width = cell.output_width
    parts = tuple(np.zeros((B, w)) if zero_state else rng.normal(size=(B, w)) for w in cell.state_widths)
    state0 = parts[0] if len(parts) == 1 else parts
    dhs = make_dhs(rng, T, B, width, dhs_kind)
    return params, xs, state0, dhs


def state_parts(state) -> tuple:
    """The parts of a state: ``(state,)`` for one array, the tuple itself for a multi-part state."""
    return state if isinstance(state, tuple) else (state,)


def state_entries(name: str, state) -> dict:
    """A state as dict entries: ``{name: state}`` for one array, ``{name[0]: ..., name[1]: ...}`` for a tuple."""
    if isinstance(state, tuple):
        return {f"{name}[{k}]": part for k, part in enumerate(state)}
    return {name: state}


def state_from_entries(name: str, entries: dict, like):
    """The inverse of ``state_entries``: rebuild a state with the structure of ``like`` from ``entries``."""
    if isinstance(like, tuple):
        return tuple(entries[f"{name}[{k}]"] for k in range(len(like)))
    return entries[name]


def random_state(cell, rng: np.random.Generator, B: int):
    """A random state (or final-state gradient) of ``cell`` for B sequences, with the state's structure."""
    parts = tuple(rng.normal(size=(B, width)) for width in cell.state_widths)
    return parts if len(parts) > 1 else parts[0]


def analytic_gradients(cell, params, xs, state0, dhs, *, d_final_state=None):
    """``(hs, grads)`` from the step loop; ``grads`` holds the params' keys, "xs" and the state0 entries."""
    hs, cache = bptt.forward(cell, params, xs, state0, fused=False)
    grads, dxs, dstate0 = bptt.backward(cell, params, cache, dhs, d_final_state=d_final_state)
    return hs, {**grads, "xs": dxs, **state_entries("state0", dstate0)}


def numerical_gradients(cell, params, xs, state0, dhs, *, g_final=None):
    """Central differences of L = sum(hs * dhs) (+ sum(final_state * g_final)) w.r.t. params, xs, state0,
    through the step loop's forward."""

    def loss(point):
        theta = {key: point[key] for key in params}
        hs, cache = bptt.forward(cell, theta, point["xs"], state_from_entries("state0", point, state0), fused=False)
        value = np.sum(hs * dhs)
        if g_final is not None:
            value += sum(np.sum(s * g) for s, g in zip(state_parts(cache.final_state), state_parts(g_final)))
        return value

    return numerical_gradient(loss, {**params, "xs": xs, **state_entries("state0", state0)})


def gradcheck_errors(cell, params, xs, state0, dhs, *, g_final=None) -> dict[str, float]:
    """Relative error, per array, between the step loop's backward and finite differences.

    Also asserts that the gradient is not zero (a check that passes only because both sides vanish
    proves nothing) and that no array of it is tiny without being exactly zero (a vanished gradient
    leaves only the rounding noise of the finite differences to compare).
    """
    _, analytic = analytic_gradients(cell, params, xs, state0, dhs, d_final_state=g_final)
    numeric = numerical_gradients(cell, params, xs, state0, dhs, g_final=g_final)
    norms = {key: float(np.linalg.norm(value)) for key, value in analytic.items()}
    assert sum(norms.values()) > MIN_GRAD_NORM, f"degenerate problem: zero gradient {norms}"
    for key, norm in norms.items():  # exactly 0 (dW_hh when h_0 = 0 and T = 1) is fine; tiny is not
        assert norm == 0.0 or norm > MIN_GRAD_NORM, f"degenerate problem: |d{key}| = {norm}"
    return relative_errors(analytic, numeric)


def elman_preactivations(params, xs, hs, state0) -> np.ndarray:
    """a_t = W_xh x_t + W_hh h_{t-1} + b_h for every t, recomputed from the outputs, (T, B, H)."""
    h_prev = np.concatenate([state0[None], hs[:-1]])
    return xs @ params["W_xh"].T + h_prev @ params["W_hh"].T + params["b_h"]


def make_elman_problem(T, B, n_in, H, nonlinearity, *, zero_state, dhs_kind="random", seed=0):
    """An Elman cell and a problem; for relu, a seed whose pre-activations stay clear of the kink."""
    cell = Elman(n_in, H, nonlinearity=nonlinearity)
    for attempt in range(100):
        rng = seeded(T, B, n_in, H, nonlinearity, int(zero_state), dhs_kind, seed, attempt)
        params, xs, state0, dhs = make_problem(cell, T, B, rng, zero_state=zero_state, dhs_kind=dhs_kind,
                                               scale=0.7)
        if nonlinearity != "relu":
            return cell, params, xs, state0, dhs
        hs, _ = bptt.forward(cell, params, xs, state0, fused=False)
        a = elman_preactivations(params, xs, hs, state0)
        # away from the kink, and at least one unit active at the last step (else the gradient vanishes)
        if np.min(np.abs(a)) > KINK_MARGIN and np.any(a[-1] > 0):
            return cell, params, xs, state0, dhs
    raise AssertionError("no relu problem clear of the kink found")


def make_jordan_problem(T, B, n_in, H, n_out, *, zero_state, dhs_kind="random", seed=0):
    """A Jordan cell and a problem whose gradients have not vanished (two tanh layers a step shrink them)."""
    cell = Jordan(n_in, H, n_out=n_out)
    for attempt in range(100):
        rng = seeded(T, B, n_in, H, n_out or 0, int(zero_state), dhs_kind, seed, attempt)
        params, xs, state0, dhs = make_problem(cell, T, B, rng, zero_state=zero_state, dhs_kind=dhs_kind)
        _, grads = analytic_gradients(cell, params, xs, state0, dhs)
        if all(np.linalg.norm(value) == 0.0 or np.linalg.norm(value) > 10 * MIN_GRAD_NORM
               for value in grads.values()):
            return cell, params, xs, state0, dhs
    raise AssertionError("no Jordan problem with a non-vanishing gradient found")


def make_gated_cell(kind: str, n_in: int, H: int):
    """``"lstm"`` -> ``LSTM(n_in, H)``; ``"gru-torch"`` / ``"gru-cho"`` -> ``GRU(n_in, H, variant=...)``."""
    if kind == "lstm":
        return LSTM(n_in, H)
    if kind.startswith("gru-"):
        return GRU(n_in, H, variant=kind[4:])
    raise AssertionError(f"unknown gated cell kind {kind!r}")


def make_gated_problem(kind, T, B, n_in, H, *, zero_state, dhs_kind="random", seed=0, scale=0.7):
    """A gated cell and a problem whose gradients have not vanished (saturated gates shrink them).

    Every array of the gradient is exactly zero (dW_h* when the initial state is zero and T = 1) or
    clearly above the finite differences' rounding noise.
    """
    cell = make_gated_cell(kind, n_in, H)
    for attempt in range(100):
        rng = seeded(kind, T, B, n_in, H, int(zero_state), dhs_kind, seed, attempt)
        params, xs, state0, dhs = make_problem(cell, T, B, rng, zero_state=zero_state, dhs_kind=dhs_kind,
                                               scale=scale)
        _, grads = analytic_gradients(cell, params, xs, state0, dhs)
        if all(np.linalg.norm(value) == 0.0 or np.linalg.norm(value) > 10 * MIN_GRAD_NORM
               for value in grads.values()):
            return cell, params, xs, state0, dhs
    raise AssertionError(f"no {kind} problem with a non-vanishing gradient found")


def make_ctrnn_problem(T, B, n_in, H, *, zero_state, dhs_kind="random", seed=0):
    """An Euler-discretized CTRNN and a problem: weights as ``make_problem`` draws them, time constants
    uniform in [0.5, 2] (they must be positive)."""
    cell = EulerCTRNN(n_in, H, dt=CTRNN_DT)
    rng = seeded("ctrnn", T, B, n_in, H, int(zero_state), dhs_kind, seed)
    params, xs, state0, dhs = make_problem(cell, T, B, rng, zero_state=zero_state, dhs_kind=dhs_kind)
    params["tau"] = rng.uniform(0.5, 2.0, size=H)
    return cell, params, xs, state0, dhs


def make_delay_cell(kind: str, n_in: int, H: int, n_out: int | None = None):
    """``"narx"`` -> ``NARX(..., **NARX_DELAYS)`` (``n_out`` None: ``NARX_N_OUT``); ``"tdnn"`` -> ``TDNN``."""
    if kind == "narx":
        return NARX(n_in, H, n_out=NARX_N_OUT if n_out is None else n_out, **NARX_DELAYS)
    if kind == "tdnn":
        return TDNN(n_in, H, d_x=TDNN_DELAY)
    raise AssertionError(f"unknown delay cell kind {kind!r}")


def make_delay_problem(kind, T, B, n_in, H, n_out, *, zero_state, dhs_kind="random", seed=0):
    """A NARX or TDNN cell and a problem whose gradients have not vanished (weights at scale 0.5, so that
    the fed-back linear outputs do not saturate the tanh layer)."""
    cell = make_delay_cell(kind, n_in, H, n_out)
    for attempt in range(100):
        rng = seeded(kind, T, B, n_in, H, n_out or 0, int(zero_state), dhs_kind, seed, attempt)
        params, xs, state0, dhs = make_problem(cell, T, B, rng, zero_state=zero_state, dhs_kind=dhs_kind,
                                               scale=0.5)
        _, grads = analytic_gradients(cell, params, xs, state0, dhs)
        if all(np.linalg.norm(value) == 0.0 or np.linalg.norm(value) > 10 * MIN_GRAD_NORM
               for value in grads.values()):
            return cell, params, xs, state0, dhs
    raise AssertionError(f"no {kind} problem with a non-vanishing gradient found")


def make_cell(kind: str, n_in: int, H: int, n_out: int | None = None):
    """The cell of a kind of ``CELL_KINDS`` (``n_out`` for the Jordan and NARX networks only)."""
    if kind in ("narx", "tdnn"):
        return make_delay_cell(kind, n_in, H, n_out)
    if kind == "ctrnn-euler":
        return EulerCTRNN(n_in, H, dt=CTRNN_DT)
    if kind.startswith("elman-"):
        return Elman(n_in, H, nonlinearity=kind[6:])
    if kind == "jordan":
        return Jordan(n_in, H, n_out=n_out)
    return make_gated_cell(kind, n_in, H)


def make_kind_problem(kind: str, shape: tuple, *, zero_state: bool = False, dhs_kind: str = "random", seed=0):
    """``(cell, params, xs, state0, dhs)`` for a kind of ``CELL_KINDS`` and a shape (T, B, n_in, H, n_out),
    with every array of the gradient either exactly zero or clearly above the finite differences' noise
    (and relu pre-activations clear of the kink)."""
    T, B, n_in, H, n_out = shape
    options = dict(zero_state=zero_state, dhs_kind=dhs_kind, seed=seed)
    if kind.startswith("elman-"):
        return make_elman_problem(T, B, n_in, H, kind[6:], **options)
    if kind == "jordan":
        return make_jordan_problem(T, B, n_in, H, n_out, **options)
    if kind == "ctrnn-euler":
        return make_ctrnn_problem(T, B, n_in, H, **options)
    if kind in ("narx", "tdnn"):
        return make_delay_problem(kind, T, B, n_in, H, n_out, **options)
    return make_gated_problem(kind, T, B, n_in, H, **options)


def snapshot(*arrays) -> list:
    """Copies of arrays, dicts of arrays and states, to compare with ``assert_unchanged`` later."""
    return [{key: value.copy() for key, value in a.items()} if isinstance(a, dict)
            else [part.copy() for part in state_parts(a)] for a in arrays]


def assert_unchanged(saved: list, *arrays) -> None:
    """Each of ``arrays`` equals, bit for bit, its copy in ``saved = snapshot(*arrays)``."""
    for copy, a in zip(saved, arrays, strict=True):
        if isinstance(a, dict):
            assert list(a) == list(copy)
            for key in a:
                assert_array_equal(a[key], copy[key], err_msg=key)
        else:
            for part, part_copy in zip(state_parts(a), copy, strict=True):
                assert_array_equal(part, part_copy)
