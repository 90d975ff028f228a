"""``bptt.state_adjoints``: dL/d(state_t) at every step, for every cell and from either path's cache."""
from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_allclose

from companion import bptt
from companion.cells import GRU, LSTM, Elman, Jordan

from helpers import TIGHT, make_problem, random_state, seeded, state_parts

CELLS = [Elman(2, 3), Elman(2, 3, nonlinearity="relu"), Jordan(2, 3, n_out=2), LSTM(2, 3),
         GRU(2, 3, variant="torch"), GRU(2, 3, variant="cho")]


def _entry(adjoints, t):
    """dL/d(state_t) from the stacked result: an array, or a tuple for a multi-part state."""
    return tuple(part[t] for part in adjoints) if isinstance(adjoints, tuple) else adjoints[t]


@pytest.mark.parametrize("fused", [True, False], ids=["fused-cache", "step-cache"])
@pytest.mark.parametrize("cell", CELLS, ids=repr)
def test_each_adjoint_is_the_gradient_of_the_rest_of_the_sequence(cell, fused):
    """dL/d(state_t) is the direct gradient on h_t plus what BPTT over steps t+1..T alone, started from
    state_t, returns for its initial state."""
    T, B = 5, 2
    params, xs, state0, dhs = make_problem(cell, T, B, seeded("adjoints", repr(cell)), scale=0.7)
    g_final = random_state(cell, seeded("adjoints g", repr(cell)), B)
    _, cache = bptt.forward(cell, params, xs, state0, fused=fused)
    adjoints = bptt.state_adjoints(cell, params, cache, dhs, d_final_state=g_final)
    assert [part.shape for part in state_parts(adjoints)] == [(T + 1, B, w) for w in cell.state_widths]
    states = [state0, *_states_after_each_step(cell, params, xs, state0)]
    for t in range(T):
        _, rest = bptt.forward(cell, params, xs[t:], states[t], fused=False)
        _, _, expected = bptt.backward(cell, params, rest, dhs[t:], d_final_state=g_final)
        if t > 0:
            expected = cell.add_to_hidden(expected, dhs[t - 1])
        for got, want in zip(state_parts(_entry(adjoints, t)), state_parts(expected)):
            assert_allclose(got, want, **TIGHT, err_msg=f"t={t}")
    # step T: the final state's own gradient plus the direct gradient on h_T
    last = cell.add_to_hidden(g_final, dhs[-1])
    for got, want in zip(state_parts(_entry(adjoints, T)), state_parts(last)):
        assert_allclose(got, want, **TIGHT)


def _states_after_each_step(cell, params, xs, state0):
    """state_1, ..., state_T by the public one-step protocol."""
    state = state0
    for x_t in xs:
        state, _ = cell.step(params, x_t, state)
        yield state


@pytest.mark.parametrize("cell", CELLS, ids=repr)
def test_adjoint_zero_is_backward_dstate0(cell):
    params, xs, state0, dhs = make_problem(cell, 4, 3, seeded("adjoint0", repr(cell)), scale=0.7)
    _, cache = bptt.forward(cell, params, xs, state0)
    _, _, dstate0 = bptt.backward(cell, params, cache, dhs)
    adjoints = bptt.state_adjoints(cell, params, cache, dhs)
    for got, want in zip(state_parts(_entry(adjoints, 0)), state_parts(dstate0)):
        assert_allclose(got, want, **TIGHT)
    assert np.linalg.norm(state_parts(dstate0)[0]) > 1e-3      # not a comparison of two zeros


def test_a_cache_of_another_cell_is_refused():
    lstm, elman = LSTM(2, 3), Elman(2, 3)
    params, xs, state0, dhs = make_problem(lstm, 3, 2, seeded("other cell"))
    _, cache = bptt.forward(lstm, params, xs, state0)
    with pytest.raises(ValueError, match="cache comes from bptt.forward with the cell LSTM"):
        bptt.state_adjoints(elman, elman.init_params(0), cache, dhs)
    with pytest.raises(ValueError, match="cache comes from bptt.forward with the cell LSTM"):
        bptt.backward(elman, elman.init_params(0), cache, dhs)
    tanh, relu = Elman(2, 3), Elman(2, 3, nonlinearity="relu")
    _, tanh_cache = bptt.forward(tanh, tanh.init_params(0), xs)
    with pytest.raises(ValueError, match="nonlinearity='relu'"):
        bptt.backward(relu, relu.init_params(0), tanh_cache, dhs)


def test_a_step_cache_of_another_cell_is_refused():
    lstm, elman = LSTM(2, 3), Elman(2, 3)
    _, lstm_cache = lstm.step(lstm.init_params(0), np.ones((1, 2)), lstm.initial_state(1))
    with pytest.raises(ValueError, match="cache must be the ElmanStepCache"):
        elman.step_backward(elman.init_params(0), lstm_cache, np.ones((1, 3)))
    _, wide_cache = Elman(4, 3).step(Elman(4, 3).init_params(0), np.ones((1, 4)), np.zeros((1, 3)))
    with pytest.raises(ValueError, match="cache comes from a cell with input width"):
        elman.step_backward(elman.init_params(0), wide_cache, np.ones((1, 3)))
