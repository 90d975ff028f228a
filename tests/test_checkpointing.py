"""Memory-efficient BPTT (``companion.checkpointing``): the optimal costs against an exhaustive search and
against revolve's closed form, the policies, the gradients of every budget against the step loop, the
memory the runs hold, and the refusals.

The model every search here is written from (the chapter "Memory-efficient BPTT" states it): s_0 is stored
throughout and counts one slot; a sweep starts from a stored state and runs steps forward, one forward step
each, and may store the state in hand (one slot) or, where allowed, the internal state of the step it just
ran (its cache and its state, ``alpha`` slots); the backward pass of step t, in the order T, ..., 1, needs
step t's cache: stored, or the one a sweep has just made; anything but s_0 may be dropped at any time. The
cost is the number of forward steps. Full BPTT's side of the gradient comparisons is the step loop of
``companion.bptt`` (pinned elsewhere to finite differences and torch); checkpointed BPTT also runs through
the whole table of gradient methods (gradient_methods.py, entries "checkpointed-...").
"""
from __future__ import annotations

import collections
import functools
from math import comb

import numpy as np
import pytest
from numpy.testing import assert_array_equal

from companion import bptt, checkpointing
from companion.cells import LSTM, Elman, Jordan

from helpers import CELL_KINDS, make_kind_problem, random_state, seeded, state_parts

SCHEMES = ("hsm", "ism", "msm", "sqrt")


# ----- an exhaustive search over every policy of the model ------------------------------------------------
@functools.lru_cache(maxsize=None)
def fewest_forward_steps(T: int, slots: int, alpha: int, kinds: str) -> int:
    """The cheapest policy of the model by a 0-1 breadth-first search over its configurations.

    A configuration is (next step to back-propagate, stored items, position of the sweep in hand, whether
    the step at that position has just been run, so that its cache is in hand). ``kinds`` says what may be
    stored: "s" hidden states (1 slot), "I" internal states (``alpha`` slots).
    """
    size = {"s": 1, "I": alpha}
    start = (T, frozenset({("s", 0)}), None, False)
    distance = {start: 0}
    queue = collections.deque([start])
    while queue:
        node = queue.popleft()
        cost = distance[node]
        p, stored, at, fresh = node
        if p == 0:
            return cost
        used = sum(size[kind] for kind, _ in stored)
        moves = []                                                   # (forward steps, next configuration)
        for kind, j in stored:
            if j < p:                                                # a sweep (re)starts at a stored state
                moves.append((0, (p, stored, j, False)))
            if (kind, j) != ("s", 0):                                # drop it
                moves.append((0, (p, stored - {(kind, j)}, at, fresh)))
        if at is not None and at < p:                                # one forward step
            moves.append((1, (p, stored, at + 1, True)))
        if at is not None and 1 <= at < p:                           # store what is in hand
            for kind in kinds:
                if (kind, at) not in stored and used + size[kind] <= slots and (kind == "s" or fresh):
                    moves.append((0, (p, stored | {(kind, at)}, at, fresh)))
        if ("I", p) in stored or (at == p and fresh):                # back-propagate step p
            q = p - 1                                                # what step q and earlier can still use:
            kept = frozenset((kind, j) for kind, j in stored if j == 0 or j < q or (kind == "I" and j == q))
            sweep = (at, fresh) if at is not None and at <= q else (None, False)
            moves.append((0, (q, kept, *sweep)))
        for steps, following in moves:
            if following not in distance or distance[following] > cost + steps:
                distance[following] = cost + steps
                (queue.appendleft if steps == 0 else queue.append)(following)
    raise AssertionError("no policy back-propagates every step")


def revolve_steps(T: int, snaps: int) -> int:
    """Forward steps of binomial checkpointing (Griewank & Walther, revolve's ``numforw``) plus the T recording
    steps: with r the least integer with beta(snaps, r) = C(snaps + r, snaps) >= T, the advances number
    r T - beta(snaps + 1, r - 1)."""
    r = 0
    while comb(snaps + r, snaps) < T:
        r += 1
    return r * T - comb(snaps + r, snaps + 1) + T


# ----- the optimal costs ----------------------------------------------------------------------------------
def test_hsm_cost_extremes():
    """One slot: step t is recomputed from s_0, t(t + 1)/2 in all; t - 1 or more slots: every state fits,
    each step but the last runs twice, 2T - 1."""
    for T in range(1, 40):
        assert checkpointing.hsm_cost(T, 1) == T * (T + 1) // 2
        for slots in (max(T - 1, 1), T, T + 5, 10**6):
            assert checkpointing.hsm_cost(T, slots) == 2 * T - 1
    assert checkpointing.hsm_cost(1000, 10**9) == 1999


@pytest.mark.parametrize("T", range(1, 8))
def test_hsm_cost_is_the_exhaustive_optimum(T):
    for slots in range(1, 9):
        assert checkpointing.hsm_cost(T, slots) == fewest_forward_steps(T, slots, 1, "s"), slots


def test_hsm_cost_is_revolve_plus_the_recording_steps():
    """Griewank & Walther's closed form, for every T <= 300 and slots <= 40, and T = 1000."""
    for T in range(1, 301):
        for slots in range(1, 41):
            assert checkpointing.hsm_cost(T, slots) == revolve_steps(T, slots), (T, slots)
    for slots in (2, 10, 31, 100, 500):
        assert checkpointing.hsm_cost(1000, slots) == revolve_steps(1000, slots), slots


@pytest.mark.parametrize("alpha", [1, 2, 3, 4])
def test_internal_costs_are_the_exhaustive_optimum(alpha):
    """ISM and MSM against the search, for T <= 6 and every memory up to 2 + 2 alpha slots (T = 7 and 8
    at a few, among them the case that the recursion without the "take" move gets wrong)."""
    cases = [(T, slots) for T in range(1, 7) for slots in range(1, 3 + 2 * alpha)]
    cases += [(T, slots) for T in (7, 8) for slots in (alpha + 1, alpha + 2, 2 * alpha + 1)]
    for T, slots in cases:
        assert checkpointing.ism_cost(T, slots, alpha) == fewest_forward_steps(T, slots, alpha, "I"), (T, slots)
        assert checkpointing.msm_cost(T, slots, alpha) == fewest_forward_steps(T, slots, alpha, "sI"), (T, slots)


def test_the_take_move_matters():
    """T = 7, 4 slots, alpha = 3: dropping a stored state to make room for an internal state saves a step."""
    assert fewest_forward_steps(7, 4, 3, "sI") == checkpointing.msm_cost(7, 4, 3) == 13
    plan = checkpointing.policy(7, 4, scheme="msm", internal_size=3)
    assert any(action.kind == "take" for action in plan.actions)


def test_costs_order_and_limits():
    """Mixed is never worse than either pure scheme; with room for every internal state each step runs once;
    with internal states of one slot ISM never recomputes a step it can store."""
    T = 60
    for alpha in (1, 2, 5):
        for slots in (1, 2, 3, 7, 20, 100, 400):
            msm = checkpointing.msm_cost(T, slots, alpha)
            assert msm <= min(checkpointing.hsm_cost(T, slots), checkpointing.ism_cost(T, slots, alpha))
        assert checkpointing.msm_cost(T, 1 + alpha * (T - 1), alpha) == T
        assert checkpointing.ism_cost(T, 1 + alpha * (T - 1), alpha) == T
        assert checkpointing.ism_cost(T, alpha, alpha) == T * (T + 1) // 2        # no room for an internal state
    assert checkpointing.hsm_cost(T, 10) < checkpointing.hsm_cost(T, 9)


def test_sqrt_cost_counts_the_segments_of_checkpoint_sequential():
    assert checkpointing.sqrt_cost(10, 1) == 10                                # one segment: plain BPTT
    assert checkpointing.sqrt_cost(10, 3) == 10 + 2 * 3                        # segments 3, 3, 4
    assert checkpointing.sqrt_cost(1000, 32) == 1000 + 31 * 31


# ----- the policies ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("scheme", SCHEMES)
def test_policies_reach_their_cost_within_their_memory(scheme):
    cost = {"hsm": lambda T, m, a: checkpointing.hsm_cost(T, m), "ism": checkpointing.ism_cost,
            "msm": checkpointing.msm_cost, "sqrt": lambda T, m, a: checkpointing.sqrt_cost(T, m)}[scheme]
    for T in (1, 2, 5, 13, 40):
        for slots in (1, 2, 3, 4, 7, 12, 40):
            if scheme == "sqrt" and slots > T:
                continue
            plan = checkpointing.policy(T, slots, scheme=scheme, internal_size=3)
            assert plan.forward_steps == cost(T, slots, 3), (T, slots)
            if scheme == "sqrt":                         # the segment starts, and the last segment's caches
                assert plan.peak_slots == slots + 3 * (T - (T // slots) * (slots - 1) - 1)
            else:
                assert plan.peak_slots <= slots
            assert [a.start for a in plan.actions if a.kind == "backward"] == list(range(T, 0, -1))


def test_hsm_policy_printed():
    plan = checkpointing.policy(6, 2)
    assert str(plan).splitlines() == [
        "hsm policy for T = 6 with 2 slots: 14 forward steps, at most 2 slots stored",
        "   1. advance s_0 -> s_3, store s_3",
        "   2. advance s_3 -> s_5",
        "   3. backward step 6",
        "   4. advance s_3 -> s_4",
        "   5. backward step 5",
        "   6. backward step 4",
        "   7. free s_3",
        "   8. advance s_0 -> s_1, store s_1",
        "   9. advance s_1 -> s_2",
        "  10. backward step 3",
        "  11. backward step 2",
        "  12. free s_1",
        "  13. backward step 1",
    ]
    assert checkpointing.hsm_cost(6, 2) == 14


# ----- running a policy on a cell -------------------------------------------------------------------------
SMALL = (7, 2, 2, 3, None)            # (T, B, n_in, H, n_out)


@pytest.mark.parametrize("zero_state", [False, True], ids=["state0", "zero-state0"])
@pytest.mark.parametrize("kind", CELL_KINDS)
def test_gradients_are_the_step_loops_bit_for_bit_for_every_budget(kind, zero_state):
    """Every scheme at every budget, with and without a gradient on the final state: the gradients of the
    step loop exactly (the same steps on the same numbers, summed in the same order), and as many forward
    steps as the scheme's optimal cost."""
    cell, params, xs, state0, dhs = make_kind_problem(kind, SMALL, zero_state=zero_state)
    T, B = xs.shape[:2]
    alpha = checkpointing.memory_sizes(cell, params, xs, state0).internal_slots
    g = random_state(cell, seeded("checkpointed g", kind), B)
    _, cache = bptt.forward(cell, params, xs, state0, fused=False)
    for d_final_state in (None, g):
        grads, dxs, dstate0 = bptt.backward(cell, params, cache, dhs, d_final_state=d_final_state)
        for scheme in SCHEMES:
            for slots in range(1, T + 2 + (alpha * T if scheme in ("ism", "msm") else 0)):
                if scheme == "sqrt" and slots > T:
                    continue
                result = checkpointing.checkpointed_bptt(cell, params, xs, dhs, slots, state0=state0,
                                                         d_final_state=d_final_state, scheme=scheme,
                                                         internal_size=alpha)
                label = f"{scheme}, {slots} slots"
                for key in grads:
                    assert_array_equal(result.grads[key], grads[key], err_msg=f"{label}: {key}")
                assert_array_equal(result.dxs, dxs, err_msg=label)
                for got, expected in zip(state_parts(result.dstate0), state_parts(dstate0), strict=True):
                    assert_array_equal(got, expected, err_msg=label)
                plan = checkpointing.policy(T, slots, scheme=scheme, internal_size=alpha)
                assert result.stats.forward_steps == plan.forward_steps, label
                assert result.stats.peak_slots == plan.peak_slots, label


def test_result_unpacks_and_float32_stays_float32():
    cell, params, xs, state0, dhs = make_kind_problem("lstm", SMALL)
    params32 = {key: value.astype(np.float32) for key, value in params.items()}
    grads, dxs, dstate0, stats = checkpointing.checkpointed_bptt(cell, params32, xs.astype(np.float32),
                                                                 dhs.astype(np.float32), 3)
    assert all(value.dtype == np.float32 for value in (*grads.values(), dxs, *dstate0))
    assert stats.forward_steps == checkpointing.hsm_cost(7, 3) and stats.peak_slots == 3


def test_memory_sizes_of_the_lstm_and_the_elman_network():
    """The LSTM's step keeps h_{t-1}, c_{t-1}, i, f, g, o and tanh(c_t): full BPTT holds 7T + 2 arrays of
    (B, H) (the final state is a copy); an internal state is those 7 and (h_t, c_t). The Elman step keeps
    h_{t-1} and h_t, each shared with a neighbour: T + 2 arrays."""
    T, B, n_in, H = 9, 3, 2, 5
    xs = np.zeros((T, B, n_in))
    unit = B * H * 8
    lstm = LSTM(n_in, H)
    sizes = checkpointing.memory_sizes(lstm, lstm.init_params(0), xs)
    assert sizes == (2 * unit, 9 * unit, (7 * T + 2) * unit) and sizes.internal_slots == 5
    elman = Elman(n_in, H)
    sizes = checkpointing.memory_sizes(elman, elman.init_params(0), xs)
    assert sizes == (unit, 2 * unit, (T + 2) * unit) and sizes.internal_slots == 2
    assert sizes.slots_within(10 * unit) == 7 and sizes.slots_within(unit) == 1


@pytest.mark.parametrize("scheme", SCHEMES)
def test_peak_bytes_stay_within_the_budget_the_slots_were_chosen_for(scheme):
    """``MemorySizes.slots_within(budget)`` leaves room for the state in hand and the cache being
    back-propagated: the measured peak never exceeds the budget, and full BPTT's slots hold as much."""
    cell = LSTM(3, 4)
    params = cell.init_params(0)
    rng = seeded("budget", scheme)
    xs, dhs = rng.normal(size=(40, 2, 3)), rng.normal(size=(40, 2, 4))
    sizes = checkpointing.memory_sizes(cell, params, xs)
    for fraction in (0.05, 0.1, 0.25, 0.5):
        budget = fraction * sizes.full
        slots = sizes.slots_within(budget) if scheme != "sqrt" else 4
        result = checkpointing.checkpointed_bptt(cell, params, xs, dhs, slots, scheme=scheme,
                                                 internal_size=sizes.internal_slots)
        bound = sizes.state * (result.stats.peak_slots + 1) + sizes.internal
        assert result.stats.peak_bytes <= bound, fraction
        if scheme != "sqrt":
            assert result.stats.peak_bytes <= budget, fraction


def test_held_bytes_counts_a_buffer_once():
    a = np.zeros((4, 8))
    assert checkpointing.held_bytes(a, a[1:], (a, [a.T])) == a.nbytes
    assert checkpointing.held_bytes(a, np.ones(3), exclude=a) == 24
    cell = Elman(2, 3)
    _, cache = bptt.forward(cell, cell.init_params(0), np.zeros((5, 1, 2)), fused=False)
    assert checkpointing.held_bytes(cache) == (5 + 2) * 3 * 8          # h_0 .. h_5 and the final copy


def test_a_take_move_runs_on_a_cell():
    """The Jordan network with n_out = n_hidden has internal states of 3 slots (y_{t-1}, h_t, y_t): the
    policy of T = 7 in 4 slots drops a stored state into a sweep, and its gradients are the step loop's."""
    cell = Jordan(2, 3)
    params = cell.init_params(1)
    rng = seeded("take")
    xs, dhs = rng.normal(size=(7, 2, 2)), rng.normal(size=(7, 2, 3))
    assert checkpointing.memory_sizes(cell, params, xs).internal_slots == 3
    _, cache = bptt.forward(cell, params, xs, fused=False)
    grads, _, _ = bptt.backward(cell, params, cache, dhs)
    result = checkpointing.checkpointed_bptt(cell, params, xs, dhs, 4, scheme="msm", internal_size=3)
    assert result.stats.forward_steps == 13 and result.stats.peak_slots <= 4
    for key in grads:
        assert_array_equal(result.grads[key], grads[key], err_msg=key)


# ----- refusals -------------------------------------------------------------------------------------------
def _bad_input_cases():
    cell = Elman(2, 3)
    params = cell.init_params(0)
    T, B = 4, 2
    xs, dhs = np.zeros((T, B, 2)), np.zeros((T, B, 3))

    def run(**changes):
        arguments = dict(cell=cell, params=params, xs=xs, dhs=dhs, slots=2) | changes
        return lambda: checkpointing.checkpointed_bptt(**arguments)

    return [
        ("slots=0", run(slots=0), "slots must be a positive integer"),
        ("slots=-1", run(slots=-1), "slots must be a positive integer"),
        ("slots=2.0", run(slots=2.0), "slots must be a positive integer"),
        ("slots=True", run(slots=True), "slots must be a positive integer"),
        ("slots='2'", run(slots="2"), "slots must be a positive integer"),
        ("scheme", run(scheme="revolve"), "scheme must be one of"),
        ("scheme-None", run(scheme=None), "scheme must be one of"),
        ("msm-no-internal_size", run(scheme="msm"), "internal_size must be given"),
        ("msm-internal_size=0", run(scheme="msm", internal_size=0), "internal_size must be a positive integer"),
        ("sqrt-internal_size=1.5", run(scheme="sqrt", internal_size=1.5),
         "internal_size must be a positive integer"),
        ("sqrt-no-internal_size", run(scheme="sqrt"), "internal_size must be given"),
        ("sqrt-slots>T", run(scheme="sqrt", slots=T + 1, internal_size=2), "slots .* must be at most T"),
        ("cell", run(cell="elman"), "cell must be a companion.cells.Cell"),
        ("params", run(params={"W_xh": np.zeros((3, 2))}), "params must have exactly the keys"),
        ("xs-2d", run(xs=np.zeros((T, 2))), "xs must have shape"),
        ("xs-width", run(xs=np.zeros((T, B, 5))), "xs must have shape"),
        ("xs-T=0", run(xs=np.zeros((0, B, 2)), dhs=np.zeros((0, B, 3))), "xs must have T >= 1"),
        ("xs-nan", run(xs=np.full((T, B, 2), np.nan)), "xs contains"),
        ("dhs-batch-major", run(dhs=np.zeros((B, T, 3))), "dhs must have shape"),
        ("dhs-T", run(dhs=np.zeros((T - 1, B, 3))), "dhs must have shape"),
        ("state0", run(state0=np.zeros((B + 1, 3))), "state0 must have shape"),
        ("d_final_state", run(d_final_state=np.zeros((B, 4))), "d_final_state must have shape"),
        ("hsm_cost-T=0", lambda: checkpointing.hsm_cost(0, 2), "T must be a positive integer"),
        ("hsm_cost-slots=0", lambda: checkpointing.hsm_cost(5, 0), "slots must be a positive integer"),
        ("hsm_cost-slots=True", lambda: checkpointing.hsm_cost(5, True), "slots must be a positive integer"),
        ("msm_cost-alpha", lambda: checkpointing.msm_cost(5, 3, 0), "internal_size must be a positive integer"),
        ("ism_cost-alpha-None", lambda: checkpointing.ism_cost(5, 3, None), "internal_size must be given"),
        ("sqrt_cost-segments", lambda: checkpointing.sqrt_cost(5, 6), "must be at most T"),
        ("policy-scheme", lambda: checkpointing.policy(5, 2, scheme="HSM"), "scheme must be one of"),
        ("policy-T", lambda: checkpointing.policy(2.5, 2), "T must be a positive integer"),
        ("hsm_cost-T-too-long", lambda: checkpointing.hsm_cost(2**15 + 1, 3), "T must be at most"),
    ]


BAD_INPUT = _bad_input_cases()


@pytest.mark.parametrize("call, message", [case[1:] for case in BAD_INPUT], ids=[case[0] for case in BAD_INPUT])
def test_bad_input_is_a_value_error_naming_the_argument(call, message):
    with pytest.raises(ValueError, match=message):
        call()
