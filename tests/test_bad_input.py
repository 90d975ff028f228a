"""Bad input is refused at the public boundary with a ``ValueError`` that names the argument: the
sequence functions of ``companion.bptt``, the one-step protocol, the cells' constructors and
initialisation, for every cell (the gated cells' parameter sets and two-part state at the end)."""
from __future__ import annotations

import numpy as np
import pytest

from companion import bptt
from companion.bptt import SequenceCache
from companion.cells import GRU, LSTM, Elman, Jordan

from helpers import make_gated_cell, make_problem, seeded

T, B, N_IN, H = 3, 2, 2, 4


@pytest.fixture
def problem():
    cell = Elman(N_IN, H)
    params, xs, state0, dhs = make_problem(cell, T, B, seeded("bad input"))
    return cell, params, xs, state0, dhs


def _raises(name: str):
    """``pytest.raises(ValueError)`` whose message starts by naming ``name`` (regex-escaped)."""
    return pytest.raises(ValueError, match="^" + name.replace("[", r"\[").replace("]", r"\]"))


# ----- xs -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "shape",
    [(T, B), (B, N_IN), (T, B, N_IN, 1), (), (T, B, N_IN + 1), (T, B, 1)],
    ids=["2d", "no-time", "4d", "scalar", "n_in+1", "n_in=1"],
)
def test_xs_with_the_wrong_shape(problem, shape):
    cell, params, *_ = problem
    with _raises("xs must have shape"):
        bptt.forward(cell, params, np.zeros(shape))


def test_xs_batch_major_mistake_is_caught_by_the_state(problem):
    """xs given as (B, T, n_in) with a (B, H) initial state: the batch sizes no longer agree."""
    cell, params, xs, state0, _ = problem
    with _raises("state0 must have shape"):
        bptt.forward(cell, params, xs.transpose(1, 0, 2), state0)


def test_dhs_batch_major_mistake(problem):
    cell, params, xs, state0, dhs = problem
    _, cache = bptt.forward(cell, params, xs, state0)
    with _raises("dhs must have shape"):
        bptt.backward(cell, params, cache, dhs.transpose(1, 0, 2))


def test_the_message_says_what_was_expected_and_received(problem):
    cell, params, *_ = problem
    with pytest.raises(ValueError) as info:
        bptt.forward(cell, params, np.zeros((T, B, 5)))
    message = str(info.value)
    assert message.startswith("xs must have shape (T, B, n_in)")
    assert f"{N_IN})" in message and message.endswith(f"got ({T}, {B}, 5)")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_xs_with_non_finite_values(problem, bad):
    cell, params, xs, *_ = problem
    xs = xs.copy()
    xs[1, 0, 1] = bad
    with _raises("xs contains 1 non-finite"):
        bptt.forward(cell, params, xs)


@pytest.mark.parametrize("shape", [(0, B, N_IN), (T, 0, N_IN)], ids=["T=0", "B=0"])
def test_empty_sequences(problem, shape):
    cell, params, *_ = problem
    with _raises("xs must have T >= 1 and B >= 1"):
        bptt.forward(cell, params, np.zeros(shape))


@pytest.mark.parametrize(
    "xs",
    [
        np.full((T, B, N_IN), None, dtype=object),
        np.zeros((T, B, N_IN)).astype(object),                           # object dtype even with numbers
        np.full((T, B, N_IN), "1.0"),
        np.zeros((T, B, N_IN), dtype=complex),
        [[[1.0, 2.0]], [[1.0]]],                                          # ragged
    ],
    ids=["object-none", "object-float", "str", "complex", "ragged"],
)
def test_xs_not_a_real_array(problem, xs):
    cell, params, *_ = problem
    with _raises("xs must be a"):
        bptt.forward(cell, params, xs)


# ----- params -------------------------------------------------------------------------------------------
def _without(params, key):
    return {k: v for k, v in params.items() if k != key}


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda p: _without(p, "W_hh"), "params must have exactly the keys"),
        (lambda p: {**p, "W_hy": np.zeros((H, H))}, "params must have exactly the keys"),
        (lambda p: {**p, "W_hh": np.zeros((H, H + 1))}, "params['W_hh'] must have shape"),
        (lambda p: {**p, "W_xh": p["W_xh"].T}, "params['W_xh'] must have shape"),         # (n_in, H) mistake
        (lambda p: {**p, "b_h": np.zeros((1, H))}, "params['b_h'] must have shape"),
        (lambda p: {**p, "b_h": np.full(H, np.nan)}, "params['b_h'] contains 4 non-finite"),
        (lambda p: {**p, "W_hh": np.full((H, H), None, dtype=object)}, "params['W_hh'] must be a real"),
        (lambda p: list(p.values()), "params must be a dict"),
        (lambda p: None, "params must be a dict"),
    ],
    ids=["missing", "extra", "wrong-shape", "transposed", "bias-2d", "nan", "object", "list", "none"],
)
def test_bad_params(problem, edit, message):
    cell, params, xs, state0, dhs = problem
    bad = edit(params)
    with _raises(message):
        bptt.forward(cell, bad, xs, state0)
    _, cache = bptt.forward(cell, params, xs, state0)
    with _raises(message):
        bptt.backward(cell, bad, cache, dhs)
    with _raises(message):
        cell.step(bad, xs[0], state0)


def test_params_missing_key_message_names_the_key(problem):
    cell, params, xs, *_ = problem
    with pytest.raises(ValueError, match=r"missing \['b_h'\], unexpected \[\]"):
        bptt.forward(cell, _without(params, "b_h"), xs)


def test_jordan_params_of_an_elman_cell_are_refused():
    jordan, elman = Jordan(N_IN, H), Elman(N_IN, H)
    with _raises("params must have exactly the keys"):
        bptt.forward(jordan, elman.init_params(0), np.zeros((T, B, N_IN)))


# ----- states, dhs, cell, cache ---------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(B, H + 1), (B + 1, H), (H,), (1, B, H)], ids=["width", "batch", "1d", "3d"])
def test_state0_with_the_wrong_shape(problem, shape):
    cell, params, xs, *_ = problem
    with _raises("state0 must have shape"):
        bptt.forward(cell, params, xs, np.zeros(shape))


def test_state0_non_finite(problem):
    cell, params, xs, state0, _ = problem
    with _raises("state0 contains"):
        bptt.forward(cell, params, xs, np.where(state0 > 0, np.inf, state0))


@pytest.mark.parametrize("shape", [(T - 1, B, H), (T, B, H + 1), (T, B + 1, H), (B, H)], ids=["T", "H", "B", "2d"])
def test_dhs_with_the_wrong_shape(problem, shape):
    cell, params, xs, state0, _ = problem
    _, cache = bptt.forward(cell, params, xs, state0)
    with _raises("dhs must have shape"):
        bptt.backward(cell, params, cache, np.zeros(shape))


def test_dhs_non_finite(problem):
    cell, params, xs, state0, dhs = problem
    _, cache = bptt.forward(cell, params, xs, state0)
    with _raises("dhs contains"):
        bptt.backward(cell, params, cache, dhs * np.nan)


@pytest.mark.parametrize("shape", [(B, H + 1), (B + 1, H), (T, B, H)], ids=["width", "batch", "3d"])
def test_d_final_state_with_the_wrong_shape(problem, shape):
    cell, params, xs, state0, dhs = problem
    _, cache = bptt.forward(cell, params, xs, state0)
    with _raises("d_final_state must have shape"):
        bptt.backward(cell, params, cache, dhs, d_final_state=np.zeros(shape))


@pytest.mark.parametrize("cell", [None, "Elman", Elman, object()], ids=["none", "str", "class", "object"])
def test_cell_not_a_cell(problem, cell):
    good, params, xs, state0, dhs = problem
    with _raises("cell must be a companion.cells.Cell"):
        bptt.forward(cell, params, xs, state0)
    _, cache = bptt.forward(good, params, xs, state0)
    with _raises("cell must be a companion.cells.Cell"):
        bptt.backward(cell, params, cache, dhs)


@pytest.mark.parametrize(
    "cache",
    [None, (), "cache", [np.zeros((B, H))] * T],
    ids=["none", "tuple", "str", "list-of-steps"],
)
def test_cache_not_a_sequence_cache(problem, cache):
    cell, params, xs, state0, dhs = problem
    with _raises("cache must be the SequenceCache"):
        bptt.backward(cell, params, cache, dhs)
    _, real = bptt.forward(cell, params, xs, state0)
    assert isinstance(real, SequenceCache)


# ----- the one-step protocol ----------------------------------------------------------------------------
def test_step_checks_its_arguments(problem):
    cell, params, xs, state0, _ = problem
    with _raises("x_t must have shape"):
        cell.step(params, xs, state0)                                      # the whole sequence, not x_t
    with _raises("x_t contains"):
        cell.step(params, np.full((B, N_IN), np.nan), state0)
    with _raises("state must have shape"):
        cell.step(params, xs[0], state0[:1])                               # batch differs from x_t's
    _, step_cache = cell.step(params, xs[0], state0)
    with _raises("d_state must have shape"):
        cell.step_backward(params, step_cache, np.zeros((B, H + 1)))
    with _raises("d_state contains"):
        cell.step_backward(params, step_cache, np.full((B, H), np.inf))


# ----- constructors and initialisation ------------------------------------------------------------------
@pytest.mark.parametrize(
    "make, name",
    [
        (lambda: Elman(0, 3), "n_in"),
        (lambda: Elman(-1, 3), "n_in"),
        (lambda: Elman(2.0, 3), "n_in"),
        (lambda: Elman(True, 3), "n_in"),
        (lambda: Elman("2", 3), "n_in"),
        (lambda: Elman(2, 0), "n_hidden"),
        (lambda: Elman(2, None), "n_hidden"),
        (lambda: Jordan(0, 3), "n_in"),
        (lambda: Jordan(2, 0), "n_hidden"),
        (lambda: Jordan(2, 3, n_out=0), "n_out"),
        (lambda: Jordan(2, 3, n_out=1.5), "n_out"),
        (lambda: LSTM(0, 3), "n_in"),
        (lambda: LSTM(2, 0), "n_hidden"),
        (lambda: LSTM(2.0, 3), "n_in"),
        (lambda: LSTM(2, True), "n_hidden"),
        (lambda: GRU(-1, 3), "n_in"),
        (lambda: GRU(2, 0, variant="cho"), "n_hidden"),
    ],
    ids=["elman-n_in=0", "n_in<0", "n_in-float", "n_in-bool", "n_in-str", "n_hidden=0", "n_hidden-none",
         "jordan-n_in=0", "jordan-n_hidden=0", "n_out=0", "n_out-float", "lstm-n_in=0", "lstm-n_hidden=0",
         "lstm-float", "lstm-bool", "gru-n_in<0", "cho-n_hidden=0"],
)
def test_sizes_must_be_positive_integers(make, name):
    with _raises(f"{name} must be a positive integer"):
        make()


@pytest.mark.parametrize("nonlinearity", ["sigmoid", "Tanh", None, ""])
def test_unknown_nonlinearity(nonlinearity):
    with _raises("nonlinearity must be one of"):
        Elman(2, 3, nonlinearity=nonlinearity)


@pytest.mark.parametrize("variant", ["bogus", "Torch", None])
def test_unknown_gru_variant(variant):
    with _raises("variant must be one of"):
        GRU(2, 3, variant=variant)


def test_gru_variant_is_keyword_only():
    with pytest.raises(TypeError):
        GRU(2, 3, "cho")


def test_sizes_are_numpy_integers_too():
    cell = Elman(np.int64(2), np.int32(3))
    assert (cell.n_in, cell.n_hidden) == (2, 3) and type(cell.n_in) is int


BAD_INIT_CELLS = [Elman(2, 3), Jordan(2, 3, n_out=1), LSTM(2, 3), GRU(2, 3), GRU(2, 3, variant="cho")]


@pytest.mark.parametrize(
    "rng",
    [None, 1.5, True, "0", np.random.RandomState(0), [0, 1]],
    ids=["none", "float", "bool", "str", "legacy-RandomState", "list"],
)
def test_init_params_with_a_bad_rng(rng):
    for cell in BAD_INIT_CELLS:
        with _raises("rng must be a numpy Generator"):
            cell.init_params(rng)


@pytest.mark.parametrize("batch", [0, -2, 2.0, True, None])
def test_initial_state_needs_a_positive_batch(batch):
    for cell in BAD_INIT_CELLS:
        with _raises("batch must be a positive integer"):
            cell.initial_state(batch)


# ----- the gated cells: parameter sets and the two-part state ---------------------------------------------
@pytest.fixture
def lstm_problem():
    cell = LSTM(2, 3)
    params, xs, state0, dhs = make_problem(cell, 3, 2, seeded("bad lstm"))
    return cell, params, xs, state0, dhs


@pytest.mark.parametrize(
    "cell, wrong",
    [
        (GRU(2, 3, variant="cho"), GRU(2, 3)),                  # b_xn, b_hn where b_n is expected
        (GRU(2, 3), GRU(2, 3, variant="cho")),
        (LSTM(2, 3), GRU(2, 3)),
        (GRU(2, 3), LSTM(2, 3)),
    ],
    ids=["torch-params-to-cho", "cho-params-to-torch", "gru-params-to-lstm", "lstm-params-to-gru"],
)
def test_params_of_another_cell_are_refused(cell, wrong):
    params = wrong.init_params(0)
    with _raises("params must have exactly the keys"):
        bptt.forward(cell, params, np.zeros((3, 2, 2)))
    with _raises("params must have exactly the keys"):
        cell.step(params, np.zeros((2, 2)), cell.initial_state(2))


def test_torch_params_to_a_cho_cell_name_the_keys():
    with pytest.raises(ValueError, match=r"missing \['b_n'\], unexpected \['b_hn', 'b_xn'\]"):
        bptt.forward(GRU(2, 3, variant="cho"), GRU(2, 3).init_params(0), np.zeros((1, 1, 2)))


@pytest.mark.parametrize(
    "key, shape",
    [("W_hf", (3, 4)), ("W_xg", (2, 3)), ("b_o", (1, 3))],
    ids=["W_hf-width", "W_xg-transposed", "b_o-2d"],
)
def test_lstm_param_with_the_wrong_shape(lstm_problem, key, shape):
    cell, params, xs, state0, dhs = lstm_problem
    with _raises(f"params['{key}'] must have shape"):
        bptt.forward(cell, {**params, key: np.zeros(shape)}, xs, state0)


@pytest.mark.parametrize("kind, key", [("gru-torch", "b_hn"), ("gru-cho", "W_hn")])
def test_gru_param_with_the_wrong_shape(kind, key):
    cell = make_gated_cell(kind, 2, 3)
    params = {**cell.init_params(0), key: np.zeros((4, 4))}
    with _raises(f"params['{key}'] must have shape"):
        bptt.forward(cell, params, np.zeros((2, 1, 2)))


@pytest.mark.parametrize(
    "make_state0, message",
    [
        (lambda h, c: h, "state0 must be a tuple of 2 arrays"),              # h0 alone
        (lambda h, c: np.stack([h, c]), "state0 must be a tuple of 2 arrays"),
        (lambda h, c: [h, c], "state0 must be a tuple of 2 arrays"),
        (lambda h, c: (h,), "state0 must be a tuple of 2 arrays"),
        (lambda h, c: (h, c, c), "state0 must be a tuple of 2 arrays"),
        (lambda h, c: (h, c[:, :2]), "state0[1] must have shape"),
        (lambda h, c: (h[:1], c), "state0[0] must have shape"),
        (lambda h, c: (h, c * np.nan), "state0[1] contains"),
    ],
    ids=["single-array", "stacked", "list", "one-part", "three-parts", "c-width", "h-batch", "c-nan"],
)
def test_lstm_state0_structure(lstm_problem, make_state0, message):
    cell, params, xs, (h0, c0), _ = lstm_problem
    with _raises(message):
        bptt.forward(cell, params, xs, make_state0(h0, c0))


@pytest.mark.parametrize(
    "make_g, message",
    [
        (lambda B, H: np.zeros((B, H)), "d_final_state must be a tuple of 2 arrays"),
        (lambda B, H: (np.zeros((B, H)),), "d_final_state must be a tuple of 2 arrays"),
        (lambda B, H: (np.zeros((B, H)), np.zeros((B, H + 1))), "d_final_state[1] must have shape"),
        (lambda B, H: (np.zeros((B + 1, H)), np.zeros((B, H))), "d_final_state[0] must have shape"),
    ],
    ids=["single-array", "one-part", "c-width", "h-batch"],
)
def test_lstm_d_final_state_structure(lstm_problem, make_g, message):
    cell, params, xs, state0, dhs = lstm_problem
    _, cache = bptt.forward(cell, params, xs, state0)
    with _raises(message):
        bptt.backward(cell, params, cache, dhs, d_final_state=make_g(2, 3))


@pytest.mark.parametrize("variant", ["torch", "cho"])
def test_gru_d_final_state_given_as_a_pair(variant):
    cell = GRU(2, 3, variant=variant)
    params, xs, h0, dhs = make_problem(cell, 3, 2, seeded("bad gru", variant))
    _, cache = bptt.forward(cell, params, xs, h0)
    with _raises("d_final_state must have shape"):
        bptt.backward(cell, params, cache, dhs, d_final_state=(np.zeros((2, 3)), np.zeros((2, 3))))
    with _raises("state0 must have shape"):
        bptt.forward(cell, params, xs, (h0, h0))


def test_lstm_step_protocol_checks_the_state_structure(lstm_problem):
    cell, params, xs, (h0, c0), _ = lstm_problem
    with _raises("state must be a tuple of 2 arrays"):
        cell.step(params, xs[0], h0)
    with _raises("state[1] must have shape"):
        cell.step(params, xs[0], (h0, c0[:1]))
    _, step_cache = cell.step(params, xs[0], (h0, c0))
    with _raises("d_state must be a tuple of 2 arrays"):
        cell.step_backward(params, step_cache, h0)
    with _raises("d_state[1] contains"):
        cell.step_backward(params, step_cache, (h0, np.full_like(c0, np.inf)))
