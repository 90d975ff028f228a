"""The fused layer cannot bypass a cell's math: it serves exact cell classes only.

A subclass that changes the step backward (a student's variant, a deliberately broken cell) must get
its own gradient from ``bptt.forward`` / ``bptt.backward`` with default arguments.
"""
from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_allclose

from companion import bptt, fused
from companion.cells import GRU, LSTM, Elman, Jordan

from helpers import TIGHT, make_problem, seeded


def zero_parameter_gradients(base: type) -> type:
    """A subclass of ``base`` whose step backward returns zero parameter gradients (and is otherwise right)."""

    class ZeroParameterGradients(base):
        def _step_backward(self, params, cache, d_state):
            d_params, d_state_prev, d_x = super()._step_backward(params, cache, d_state)
            return {key: np.zeros_like(value) for key, value in d_params.items()}, d_state_prev, d_x

    return ZeroParameterGradients


CASES = [(Elman, {}), (LSTM, {}), (GRU, {"variant": "torch"}), (GRU, {"variant": "cho"})]
CASE_IDS = ["elman", "lstm", "gru-torch", "gru-cho"]


@pytest.mark.parametrize("base, options", CASES, ids=CASE_IDS)
def test_a_subclass_that_overrides_the_step_backward_gets_its_own_gradient(base, options):
    cell = zero_parameter_gradients(base)(3, 4, **options)
    params, xs, state0, dhs = make_problem(cell, 5, 2, seeded("subclass", base.__name__, *options.values()))
    assert fused.fused_path(cell) is None
    _, cache = bptt.forward(cell, params, xs, state0)              # default arguments: fused=True
    assert cache.fused is None and cache.steps is not None
    grads, dxs, _ = bptt.backward(cell, params, cache, dhs)
    assert all(not np.any(value) for value in grads.values())       # the subclass's (wrong) zeros
    # the exact class does take its fused path, and there the gradient is not zero
    exact = base(3, 4, **options)
    _, exact_cache = bptt.forward(exact, params, xs, state0)
    assert exact_cache.fused is fused.REGISTRY[base]
    exact_grads, exact_dxs, _ = bptt.backward(exact, params, exact_cache, dhs)
    assert all(np.linalg.norm(value) > 1e-3 for value in exact_grads.values())
    assert_allclose(dxs, exact_dxs, **TIGHT)                        # the input path was left intact


def test_only_the_registered_classes_have_a_fused_path():
    assert set(fused.REGISTRY) == {Elman, LSTM, GRU}
    assert fused.fused_path(Jordan(2, 3)) is None
    for cell in (Elman(2, 3), LSTM(2, 3), GRU(2, 3, variant="cho")):
        assert fused.fused_path(cell) is fused.REGISTRY[type(cell)]
