"""The gated cells' weight exchange with torch: the stacked gate order and the two biases really are pinned
down (a swapped mapping fails), and what ``companion.torch_ref`` refuses for the LSTM and the GRU.

The gated cells' gradients against torch, and the weight exchange shared by every cell, are in
test_torch_ref.py.
"""
from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_allclose

torch = pytest.importorskip("torch")

from companion import bptt  # noqa: E402
from companion.cells import GRU, LSTM, Elman  # noqa: E402
from companion.torch_ref import from_torch, rnn_autograd_gradients, to_torch  # noqa: E402

from helpers import TIGHT, make_gated_cell, random_state, seeded  # noqa: E402
from torch_reference import random_module, run_module  # noqa: E402

MODULE_KINDS = ["lstm", "gru-torch"]          # the gated cells torch has a module for


@pytest.mark.parametrize("kind", MODULE_KINDS)
def test_the_gate_order_check_can_fail(kind):
    """The control of test_torch_ref.py's ``test_from_torch_reads_both_biases_and_gives_the_module_outputs``:
    the mapping ``from_torch`` reads gives the module's outputs, but a swapped pair of gates, or (GRU) b_hn
    folded into b_xn, changes them far beyond rounding, so agreement with the module pins the mapping down."""
    T, B, n_in, H = 3, 2, 2, 3
    rng = seeded("gate order control", kind)
    cell = make_gated_cell(kind, n_in, H)
    module = random_module(cell, rng)
    params = from_torch(cell, module)
    xs = rng.normal(size=(T, B, n_in))
    state0 = random_state(cell, rng, B)
    out, _ = run_module(module, xs, state0)
    a, b = ("i", "f") if kind == "lstm" else ("r", "z")
    swapped = dict(params)
    for prefix in ("W_x", "W_h", "b_"):
        swapped[prefix + a], swapped[prefix + b] = params[prefix + b], params[prefix + a]
    variants = [swapped]
    if kind == "gru-torch":                   # r multiplies b_hn: moving it out of the reset is different
        variants.append({**params, "b_xn": params["b_xn"] + params["b_hn"], "b_hn": np.zeros(H)})
    hs, _ = bptt.forward(cell, params, xs, state0, fused=False)
    assert_allclose(hs, out, **TIGHT)                                   # control: the right mapping
    for wrong in variants:
        hs, _ = bptt.forward(cell, wrong, xs, state0, fused=False)
        assert np.max(np.abs(hs - out)) > 1e-2


# ----- refusals ---------------------------------------------------------------------------------------
def test_to_torch_refuses_the_cho_variant():
    cho = GRU(2, 3, variant="cho")
    with pytest.raises(ValueError, match="variant"):
        to_torch(cho, cho.init_params(0))
    with pytest.raises(ValueError, match="variant"):
        rnn_autograd_gradients(cho, cho.init_params(0), np.zeros((1, 1, 2)), np.zeros((1, 1, 3)))
    with pytest.raises(ValueError, match="variant"):
        from_torch(cho, torch.nn.GRU(2, 3, dtype=torch.float64))


@pytest.mark.parametrize("kind, wrong", [("lstm", "gru-torch"), ("gru-torch", "lstm")])
def test_to_torch_refuses_params_of_another_cell(kind, wrong):
    with pytest.raises(ValueError, match="^params"):
        to_torch(make_gated_cell(kind, 2, 3), make_gated_cell(wrong, 2, 3).init_params(0))


@pytest.mark.parametrize(
    "make_module",
    [
        lambda: torch.nn.GRU(2, 3, dtype=torch.float64),
        lambda: torch.nn.RNN(2, 3, dtype=torch.float64),
        lambda: torch.nn.LSTM(3, 3, dtype=torch.float64),
        lambda: torch.nn.LSTM(2, 4, dtype=torch.float64),
        lambda: torch.nn.LSTM(2, 3, num_layers=2, dtype=torch.float64),
        lambda: torch.nn.LSTM(2, 3, bidirectional=True, dtype=torch.float64),
        lambda: torch.nn.LSTM(2, 3, proj_size=2, dtype=torch.float64),
        lambda: torch.nn.LSTM(2, 3, bias=False, dtype=torch.float64),
        lambda: torch.nn.Linear(2, 3),
    ],
    ids=["gru-module", "rnn-module", "n_in", "hidden", "layers", "bidirectional", "proj_size", "no-bias",
         "linear"],
)
def test_from_torch_refuses_a_module_that_does_not_fit_an_lstm(make_module):
    with pytest.raises(ValueError, match="^module"):
        from_torch(LSTM(2, 3), make_module())


@pytest.mark.parametrize(
    "make_module",
    [
        lambda: torch.nn.LSTM(2, 3, dtype=torch.float64),
        lambda: torch.nn.RNN(2, 3, dtype=torch.float64),
        lambda: torch.nn.GRU(3, 3, dtype=torch.float64),
        lambda: torch.nn.GRU(2, 2, dtype=torch.float64),
        lambda: torch.nn.GRU(2, 3, num_layers=2, dtype=torch.float64),
        lambda: torch.nn.GRU(2, 3, bidirectional=True, dtype=torch.float64),
        lambda: torch.nn.GRU(2, 3, bias=False, dtype=torch.float64),
    ],
    ids=["lstm-module", "rnn-module", "n_in", "hidden", "layers", "bidirectional", "no-bias"],
)
def test_from_torch_refuses_a_module_that_does_not_fit_a_gru(make_module):
    with pytest.raises(ValueError, match="^module"):
        from_torch(GRU(2, 3), make_module())


def test_from_torch_an_lstm_module_with_the_wrong_cells():
    module = torch.nn.LSTM(2, 3, dtype=torch.float64)
    for cell in (GRU(2, 3), Elman(2, 3)):
        with pytest.raises(ValueError, match="^module must be a torch.nn.modules.rnn"):
            from_torch(cell, module)
