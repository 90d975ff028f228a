"""Forward mode of the cell protocol (``step_jvp``, ``state_jacobian``, ``param_jacobian``) for every cell:
central differences of ``step`` along random tangents, the dot-product identity against ``step_backward``,
leading direction axes, the dense Jacobians, mutants the checks must catch, and bad input."""
from __future__ import annotations

import re

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from companion.cells import GRU, LSTM, NARX, Elman, EulerCTRNN, Jordan
from companion.gradcheck import relative_error

from helpers import (CTRNN_DT, GRAD_TOL, KINK_MARGIN, MIN_GRAD_NORM, TIGHT, make_delay_cell, make_gated_cell, make_problem,
                     seeded, state_parts)

EPS = 1e-6           # central-difference step along a tangent
ADJOINT_TOL = 1e-12  # <w, J v> vs <J^T w, v>: rounding apart
MUTANT_MIN_ERROR = 0.1  # a dropped term misses by order one

# (B, n_in, H): B = 1, n_in = 1 and H != n_in all occur.
STEP_SHAPES = [(1, 1, 1), (2, 3, 2), (1, 2, 4), (3, 1, 3)]
# "jordan-out": n_out different from n_hidden (larger and smaller), keyed by (n_in, H).
JORDAN_N_OUT = {(1, 1): 2, (3, 2): 4, (2, 4): 1, (1, 3): 2}
# "narx": five-part state (helpers.NARX_DELAYS); "narx-1": d_x = 0, d_y = 1, the state is y_t alone; "tdnn": the
# time-delay layer, whose next step does not read h_t.
KINDS = ["elman-tanh", "elman-relu", "elman-linear", "jordan", "jordan-out", "lstm", "gru-torch", "gru-cho", "ctrnn-euler",
         "narx", "narx-1", "tdnn"]
CASES = [(kind, *shape) for kind in KINDS for shape in STEP_SHAPES]
CASE_IDS = [f"{kind}-B{B}-in{n_in}-H{H}" for kind, B, n_in, H in CASES]
TANGENTS = ["joint", "state", "params", "x"]


# ----- problems and tangents ------------------------------------------------------------------------------
def make_cell(kind: str, n_in: int, H: int):
    if kind.startswith("elman-"):
        return Elman(n_in, H, nonlinearity=kind[6:])
    if kind == "jordan":
        return Jordan(n_in, H)
    if kind == "jordan-out":
        return Jordan(n_in, H, n_out=JORDAN_N_OUT[n_in, H])
    if kind == "ctrnn-euler":
        return EulerCTRNN(n_in, H, dt=CTRNN_DT)
    if kind == "narx-1":
        return NARX(n_in, H, n_out=2, d_x=0, d_y=1)
    if kind in ("narx", "tdnn"):
        return make_delay_cell(kind, n_in, H)
    return make_gated_cell(kind, n_in, H)


def make_step_problem(kind: str, B: int, n_in: int, H: int, seed: int = 0):
    """``(cell, params, x_t, state_prev, cache)`` of one step; for relu, pre-activations clear of the kink."""
    cell = make_cell(kind, n_in, H)
    for attempt in range(100):
        params, xs, state_prev, _ = make_problem(cell, 1, B, seeded("jvp", kind, B, n_in, H, seed, attempt), scale=0.7)
        x_t = xs[0]
        if kind == "ctrnn-euler":   # time constants must be positive
            params["tau"] = seeded("jvp-tau", B, n_in, H, seed).uniform(0.5, 2.0, size=H)
        if kind == "elman-relu":
            a = x_t @ params["W_xh"].T + state_prev @ params["W_hh"].T + params["b_h"]
            if np.min(np.abs(a)) <= KINK_MARGIN or not np.any(a > 0):
                continue
        _, cache = cell.step(params, x_t, state_prev)
        return cell, params, x_t, state_prev, cache
    raise AssertionError("no relu step clear of the kink found")


def as_state(cell, parts):
    """A state from a sequence of parts: the array itself for a one-part state."""
    parts = tuple(parts)
    return parts if len(cell.state_widths) > 1 else parts[0]


def joined(state) -> np.ndarray:
    """The parts of a state (or tangent) concatenated along the last axis."""
    return np.concatenate(state_parts(state), axis=-1)


def random_tangents(cell, B: int, rng: np.random.Generator, lead: tuple[int, ...] = ()):
    """``(d_state_prev, d_params, d_x_t)``, standard normal, with leading direction axes ``lead``."""
    d_state = as_state(cell, (rng.normal(size=(*lead, B, w)) for w in cell.state_widths))
    d_params = {key: rng.normal(size=(*lead, *shape)) for key, shape in cell.param_shapes().items()}
    return d_state, d_params, rng.normal(size=(*lead, B, cell.n_in))


def select(tangents, which: str):
    """Keep the tangents named by ``which`` ("joint": all), ``None`` for the others."""
    d_state, d_params, d_x = tangents
    keep = {"state": which in ("joint", "state"), "params": which in ("joint", "params"), "x": which in ("joint", "x")}
    return d_state if keep["state"] else None, d_params if keep["params"] else None, d_x if keep["x"] else None


def finite_difference_jvp(cell, params, x_t, state_prev, d_state=None, d_params=None, d_x=None) -> np.ndarray:
    """Central difference of the (joined) next state along the tangents (``None``: zero), one direction."""
    d_params = d_params or {}

    def next_state(sign: float) -> np.ndarray:
        e = sign * EPS
        theta = {key: value + e * d_params[key] if key in d_params else value for key, value in params.items()}
        x = x_t if d_x is None else x_t + e * d_x
        state = state_prev if d_state is None else as_state(
            cell, (s + e * ds for s, ds in zip(state_parts(state_prev), state_parts(d_state))))
        return joined(cell.step(theta, x, state)[0])

    return (next_state(1.0) - next_state(-1.0)) / (2.0 * EPS)


def inner(a, b) -> float:
    return float(np.sum(a * b))


# ----- step_jvp against central differences ---------------------------------------------------------------
@pytest.mark.parametrize("which", TANGENTS)
@pytest.mark.parametrize("kind, B, n_in, H", CASES, ids=CASE_IDS)
def test_step_jvp_matches_finite_differences(kind, B, n_in, H, which):
    cell, params, x_t, state_prev, cache = make_step_problem(kind, B, n_in, H)
    tangents = select(random_tangents(cell, B, seeded("tangent", kind, B, n_in, H, which)), which)
    jvp = cell.step_jvp(params, cache, *tangents)
    assert [part.shape for part in state_parts(jvp)] == [(B, w) for w in cell.state_widths]
    numeric = finite_difference_jvp(cell, params, x_t, state_prev, *tangents)
    assert np.linalg.norm(joined(jvp)) > MIN_GRAD_NORM, "degenerate problem: zero tangent"
    assert relative_error(joined(jvp), numeric) < GRAD_TOL


@pytest.mark.parametrize("kind, B, n_in, H", CASES, ids=CASE_IDS)
def test_jvp_is_the_adjoint_of_the_backward_step(kind, B, n_in, H):
    """<w, J v> = <J^T w, v>, summed over the state, every parameter and x_t."""
    cell, params, _, _, cache = make_step_problem(kind, B, n_in, H)
    rng = seeded("adjoint", kind, B, n_in, H)
    d_state, d_params, d_x = random_tangents(cell, B, rng)
    w = as_state(cell, (rng.normal(size=(B, width)) for width in cell.state_widths))
    jvp = cell.step_jvp(params, cache, d_state, d_params, d_x)
    g_params, g_state, g_x = cell.step_backward(params, cache, w)
    pairs = [(joined(w), joined(jvp)), (joined(g_state), joined(d_state)), (g_x, d_x)]
    pairs += [(g_params[key], d_params[key]) for key in params]
    lhs = inner(*pairs[0])
    rhs = sum(inner(a, b) for a, b in pairs[1:])
    scale = sum(float(np.sum(np.abs(a * b))) for a, b in pairs)
    assert abs(lhs - rhs) <= ADJOINT_TOL * scale, (lhs, rhs)


# ----- leading direction axes, None and partial tangents --------------------------------------------------
@pytest.mark.parametrize("lead", [(3,), (2, 3)], ids=["K3", "2x3"])
@pytest.mark.parametrize("kind, B, n_in, H", CASES, ids=CASE_IDS)
def test_a_stack_of_directions_equals_separate_calls(kind, B, n_in, H, lead):
    cell, params, _, _, cache = make_step_problem(kind, B, n_in, H)
    d_state, d_params, d_x = random_tangents(cell, B, seeded("stack", kind, B, n_in, H, len(lead)), lead)
    stacked = cell.step_jvp(params, cache, d_state, d_params, d_x)
    assert [part.shape for part in state_parts(stacked)] == [(*lead, B, w) for w in cell.state_widths]
    for index in np.ndindex(*lead):
        one = cell.step_jvp(params, cache, as_state(cell, (s[index] for s in state_parts(d_state))),
                            {key: value[index] for key, value in d_params.items()}, d_x[index])
        assert_allclose(joined(stacked)[index], joined(one), **TIGHT, err_msg=str(index))


@pytest.mark.parametrize("lead", [(), (2,)], ids=["one", "K2"])
@pytest.mark.parametrize("kind", KINDS)
def test_none_and_missing_keys_are_zero_tangents(kind, lead):
    B, n_in, H = 2, 3, 2
    cell, params, _, _, cache = make_step_problem(kind, B, n_in, H)
    d_state, d_params, d_x = random_tangents(cell, B, seeded("none", kind, len(lead)), lead)
    zero_state = as_state(cell, (np.zeros_like(part) for part in state_parts(d_state)))
    zero_params = {key: np.zeros_like(value) for key, value in d_params.items()}
    zero_x = np.zeros_like(d_x)
    for given, full in [
        ((d_state, None, None), (d_state, zero_params, zero_x)),
        ((None, d_params, None), (zero_state, d_params, zero_x)),
        ((None, None, d_x), (zero_state, zero_params, d_x)),
        ((None, d_params, d_x), (zero_state, d_params, d_x)),
    ]:
        assert_array_equal(joined(cell.step_jvp(params, cache, *given)), joined(cell.step_jvp(params, cache, *full)))
    # a partial dict: the keys left out are zero
    key = list(cell.param_shapes())[1]
    partial = cell.step_jvp(params, cache, d_params={key: d_params[key]})
    assert_array_equal(joined(partial), joined(cell.step_jvp(params, cache, None, {**zero_params, key: d_params[key]})))
    assert partial is not None and np.linalg.norm(joined(partial)) > 0.0
    # no tangent at all: a zero tangent of the state's structure, no leading axes
    nothing = cell.step_jvp(params, cache)
    assert [part.shape for part in state_parts(nothing)] == [(B, w) for w in cell.state_widths]
    assert not np.any(joined(nothing))


# ----- dense Jacobians --------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind, B, n_in, H", CASES, ids=CASE_IDS)
def test_state_jacobian_matches_finite_differences_and_step_jvp(kind, B, n_in, H):
    cell, params, x_t, state_prev, cache = make_step_problem(kind, B, n_in, H)
    S = sum(cell.state_widths)
    J = cell.state_jacobian(params, cache)
    assert J.shape == (B, S, S)
    numeric = np.empty((B, S, S))
    for j in range(S):
        unit = np.zeros((B, S))
        unit[:, j] = 1.0                     # coordinate j of every sequence; sequences do not interact
        split = np.split(unit, np.cumsum(cell.state_widths)[:-1], axis=-1)
        numeric[:, :, j] = finite_difference_jvp(cell, params, x_t, state_prev, d_state=as_state(cell, split))
    assert relative_error(J, numeric) < GRAD_TOL
    d_state, _, _ = random_tangents(cell, B, seeded("state jacobian", kind, B, n_in, H), (2,))
    jvp = cell.step_jvp(params, cache, d_state)
    assert_allclose(np.einsum("bij,kbj->kbi", J, joined(d_state)), joined(jvp), **TIGHT)


@pytest.mark.parametrize("kind, B, n_in, H", CASES, ids=CASE_IDS)
def test_param_jacobian_matches_finite_differences_and_step_jvp(kind, B, n_in, H):
    cell, params, x_t, state_prev, cache = make_step_problem(kind, B, n_in, H)
    S = sum(cell.state_widths)
    jacobians = cell.param_jacobian(params, cache)
    shapes = cell.param_shapes()
    assert list(jacobians) == list(shapes)
    _, d_params, _ = random_tangents(cell, B, seeded("param jacobian", kind, B, n_in, H))
    through_jacobians = np.zeros((B, S))
    for key, shape in shapes.items():
        J = jacobians[key]
        assert J.shape == (B, S, *shape)
        flat = J.reshape(B, S, -1)
        numeric = np.empty_like(flat)
        for k in range(flat.shape[-1]):
            unit = np.zeros(shape)
            unit.flat[k] = 1.0
            numeric[:, :, k] = finite_difference_jvp(cell, params, x_t, state_prev, d_params={key: unit})
        assert relative_error(flat, numeric) < GRAD_TOL, key
        through_jacobians += np.einsum("bip,p->bi", flat, d_params[key].reshape(-1))
    assert_allclose(through_jacobians, joined(cell.step_jvp(params, cache, d_params=d_params)), **TIGHT)


def test_jacobians_in_closed_form():
    """Elman: d h_t / d h_{t-1} = diag(phi'(a_t)) W_hh. LSTM: the c -> c block is diag(f_t), the carousel."""
    cell, params, _, _, cache = make_step_problem("elman-tanh", 2, 3, 2)
    expected = (1.0 - cache.h**2)[:, :, None] * params["W_hh"]
    assert_allclose(cell.state_jacobian(params, cache), expected, **TIGHT)
    cell, params, _, _, cache = make_step_problem("lstm", 2, 3, 2)
    J = cell.state_jacobian(params, cache)
    assert_allclose(J[:, 2:, 2:], np.stack([np.diag(f) for f in cache.f]), **TIGHT)


# ----- mutants: the checks above must be able to fail ------------------------------------------------------
class ElmanWithoutRecurrentWeightTangent(Elman):
    """Drops Ẇ_hh h_{t-1} from ȧ_t."""

    def _step_jvp(self, params, cache, dh_prev, d_params, dx):
        return super()._step_jvp(params, cache, dh_prev, {**d_params, "W_hh": 0.0 * d_params["W_hh"]}, dx)


class LSTMWithoutCarousel(LSTM):
    """Drops f_t ċ_{t-1} from ċ_t."""

    def _step_jvp(self, params, cache, d_state_prev, d_params, dx):
        return super()._step_jvp(params, cache, (d_state_prev[0], 0.0 * d_state_prev[1]), d_params, dx)


class GRUWithoutDirectPath(GRU):
    """Drops z_t ḣ_{t-1} from ḣ_t."""

    def _step_jvp(self, params, cache, dh_prev, d_params, dx):
        return super()._step_jvp(params, cache, dh_prev, d_params, dx) - cache.z * dh_prev


@pytest.mark.parametrize("mutant, isolating", [
    (ElmanWithoutRecurrentWeightTangent(3, 4), "params"),
    (LSTMWithoutCarousel(3, 4), "state"),
    (GRUWithoutDirectPath(3, 4, variant="cho"), "state"),
], ids=lambda value: type(value).__name__ if isinstance(value, (Elman, LSTM, GRU)) else value)
def test_checks_catch_a_wrong_jvp(mutant, isolating):
    """The finite-difference check fails for the joint tangent and for the one that carries the dropped
    term, and still passes for the tangents the mutant left alone (it points at the wrong term)."""
    B = 3
    params, xs, state_prev, _ = make_problem(mutant, 1, B, seeded("mutant", type(mutant).__name__), scale=0.7)
    _, cache = mutant.step(params, xs[0], state_prev)
    rng = seeded("mutant tangents", type(mutant).__name__)
    d_state, d_params, d_x = random_tangents(mutant, B, rng)
    errors = {}
    for which in TANGENTS:
        tangents = select((d_state, d_params, d_x), which)
        jvp = joined(mutant.step_jvp(params, cache, *tangents))
        errors[which] = relative_error(jvp, finite_difference_jvp(mutant, params, xs[0], state_prev, *tangents))
    assert errors["joint"] > MUTANT_MIN_ERROR and errors[isolating] > MUTANT_MIN_ERROR, errors
    assert all(errors[which] < GRAD_TOL for which in TANGENTS if which not in ("joint", isolating)), errors
    # the adjoint identity against the (correct) backward step fails too
    w = as_state(mutant, (rng.normal(size=(B, width)) for width in mutant.state_widths))
    g_params, g_state, g_x = mutant.step_backward(params, cache, w)
    rhs = inner(joined(g_state), joined(d_state)) + inner(g_x, d_x)
    rhs += sum(inner(g_params[key], d_params[key]) for key in params)
    jvp = joined(mutant.step_jvp(params, cache, d_state, d_params, d_x))
    assert abs(inner(joined(w), jvp) - rhs) > MUTANT_MIN_ERROR * abs(rhs)


# ----- bad input ----------------------------------------------------------------------------------------------
def _raises(name: str):
    """``pytest.raises(ValueError)`` whose message starts with ``name`` (taken literally)."""
    return pytest.raises(ValueError, match="^" + re.escape(name))


@pytest.fixture
def elman_step():
    cell, params, _, _, cache = make_step_problem("elman-tanh", 2, 3, 4)   # B = 2, n_in = 3, H = 4
    return cell, params, cache


@pytest.mark.parametrize("tangents, name", [
    (dict(d_state_prev=np.zeros((2, 3))), "d_state_prev must have shape (..., B, n_hidden)"),
    (dict(d_state_prev=np.zeros((4, 2))), "d_state_prev must have shape"),
    (dict(d_state_prev=np.zeros(4)), "d_state_prev must have shape"),
    (dict(d_x_t=np.zeros((2, 4))), "d_x_t must have shape (..., B, n_in) = (..., 2, 3), got (2, 4)"),
    (dict(d_x_t=np.zeros((5, 3, 3))), "d_x_t must have shape"),
    (dict(d_x_t=np.full((2, 3), np.nan)), "d_x_t contains"),
    (dict(d_params={"W_hh": np.zeros((4, 3))}), "d_params['W_hh'] must have shape"),
    (dict(d_params={"b_h": np.zeros((4, 1))}), "d_params['b_h'] must have shape"),
    (dict(d_params={"W_yh": np.zeros((4, 4))}), "d_params has unexpected keys ['W_yh']"),
    (dict(d_params=[np.zeros((4, 4))]), "d_params must be None or a dict"),
], ids=["width", "batch-swapped", "1d", "x-width", "x-batch", "x-nan", "W_hh", "b_h-2d", "unknown-key", "not-a-dict"])
def test_wrong_tangent_shapes_are_refused(elman_step, tangents, name):
    cell, params, cache = elman_step
    with _raises(name):
        cell.step_jvp(params, cache, **tangents)


@pytest.mark.parametrize("tangents, name", [
    (dict(d_state_prev=np.zeros((3, 2, 4)), d_x_t=np.zeros((4, 2, 3))), "d_x_t has leading direction axes (4,)"),
    (dict(d_state_prev=np.zeros((2, 4)), d_params={"b_h": np.zeros((5, 4))}), "d_params['b_h'] has leading"),
    (dict(d_params={"W_xh": np.zeros((3, 4, 3)), "b_h": np.zeros((1, 3, 4))}), "d_params['b_h'] has leading"),
    (dict(d_state_prev=np.zeros((3, 2, 4)), d_x_t=np.zeros((2, 3))), "d_x_t has leading direction axes ()"),
], ids=["K3-vs-K4", "none-vs-K5", "3-vs-1x3", "K3-vs-none"])
def test_mismatched_leading_axes_are_refused(elman_step, tangents, name):
    cell, params, cache = elman_step
    with _raises(name):
        cell.step_jvp(params, cache, **tangents)


def test_a_two_part_state_tangent_is_checked_part_by_part():
    cell, params, _, _, cache = make_step_problem("lstm", 2, 3, 4)
    with _raises("d_state_prev must be None or a tuple of 2 arrays"):
        cell.step_jvp(params, cache, np.zeros((2, 4)))
    with _raises("d_state_prev[1] must have shape (..., B, width)"):
        cell.step_jvp(params, cache, (np.zeros((2, 4)), np.zeros((2, 3))))
    with _raises("d_state_prev[1] has leading direction axes ()"):
        cell.step_jvp(params, cache, (np.zeros((3, 2, 4)), np.zeros((2, 4))))


@pytest.mark.parametrize("method", ["step_jvp", "state_jacobian", "param_jacobian"])
def test_a_cache_of_another_cell_type_or_bad_params_are_refused(elman_step, method):
    cell, params, cache = elman_step
    gru = GRU(3, 4)     # same n_in and H, and its cache also has x_t and h_prev
    with _raises("cache must be the GRUStepCache"):
        getattr(gru, method)(gru.init_params(0), cache)
    with _raises("params must have exactly the keys"):
        getattr(cell, method)({key: params[key] for key in ("W_xh", "W_hh")}, cache)
