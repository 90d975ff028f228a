"""Memory-efficient BPTT: keep a few states, recompute the rest, with the fewest extra forward steps.

Chapter "Memory-efficient BPTT". Full BPTT keeps the cache of every step, memory in proportion to T.
A *policy* keeps only some states (or some steps' caches) and recomputes the others from the nearest kept
state when the backward pass needs them. Every function here is written against the cell protocol and
never names a cell.

The cost model (Gruslys et al. 2016, "Memory-Efficient Backpropagation Through Time"): the cost of a
policy is the number of forward steps it runs, the first forward pass included; memory is counted in
*slots*, the size of one hidden state, the state the sequence starts from included. Three families of
policy, and the simple scheme they improve on:

* ``"hsm"``, hidden-state memorization (BPTT-HSM): only hidden states are kept, so the backward pass of
  every step recomputes that step from the state before it. The optimal cost ``hsm_cost`` obeys
  C(t, 1) = t(t + 1)/2 and C(t, m) = min_{1 <= y < t} [y + C(t - y, m - 1) + C(y, m)]; it equals the
  forward steps of Griewank and Walther's binomial checkpointing (revolve) plus the T recording steps.
* ``"ism"``, internal-state memorization: the policy may keep a step's *internal state*, its cache
  together with the state it produced, which costs ``internal_size`` slots and spares that step's
  recomputation; only the state the sequence starts from is kept as a bare hidden state.
* ``"msm"``, mixed: both kinds. The recursions of ISM and MSM here are *reconstructed* from the cost
  model (the paper's text was not available): a kept internal state both replaces the recomputation of
  its step and lets a sweep restart after it. ``ism_cost`` and ``msm_cost`` say how, and the tests check
  them against an exhaustive search over every policy of the model on small cases.
* ``"sqrt"``, Chen et al. 2016's scheme as ``torch.utils.checkpoint.checkpoint_sequential`` runs it:
  ``slots`` equal segments, the state at each segment's start kept in the first pass; each segment is
  re-run with its caches kept, then back-propagated. About sqrt(T) segments give memory O(sqrt(T)) for
  one extra forward pass.

``policy`` builds a policy as a printable list of ``Action``s; ``checkpointed_bptt`` runs one on a cell
and returns the gradients of ``companion.bptt.backward``, bit for bit those of the step loop (it feeds
the recomputed caches, in order, to ``bptt.backward_steps``), with what it cost (``Stats``).
"""
from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

import numpy as np

from . import bptt
from .cells.base import Cell, check_cell
from .types import Array, Params, State
from .validation import check_positive_int

SCHEMES = ("hsm", "ism", "msm", "sqrt")
"""The policies ``policy`` and ``checkpointed_bptt`` know (see the module docstring)."""

_INFINITE = 2**29
"""A cost standing for "impossible within the memory": above every cost of T <= 2**15 steps (at most
T(T + 1)/2 < 2**29), and three of them still fit in the tables' int32."""


_KEPT, _OWNED = 0, 1
"""The two kinds of subproblem of the recursion: the state it starts from stays stored until its end
(s_0, or a state inside a stored internal state), or it is a bare stored state that the subproblem owns
and drops when it no longer needs it, possibly at once, to make room (see ``msm_cost``)."""


# ----- the policy as data ---------------------------------------------------------------------------------
class Action(NamedTuple):
    """One action of a policy, in the book's 1-based time (state s_t is the state after step t).

    Attributes
    ----------
    kind : {"advance", "backward", "free", "take"}
        ``advance``: run the steps ``start + 1 .. stop`` from s_start (in hand, stored, or inside a stored
        internal state); the sweep's state s_stop is then in hand, and ``keep`` says what is stored.
        ``backward``: back-propagate step ``start`` with its stored internal state if there is one, else
        after running the step once more from s_{start-1} (in hand or stored). ``free``: drop the stored
        state s_start. ``take``: drop the stored state s_start from the store but keep it in hand, for the
        sweep that starts from it next.
    start : int
        s_start for ``advance``, ``free`` and ``take``; the step t for ``backward``.
    stop : int
        s_stop for ``advance``; equal to ``start`` otherwise.
    keep : {"state", "internal", None}
        For ``advance``: store the hidden state s_stop, the internal state of step ``stop`` (its cache and
        s_stop), or nothing.
    """

    kind: str
    start: int
    stop: int
    keep: str | None = None

    def __str__(self) -> str:
        if self.kind == "advance":
            what = {"state": f", store s_{self.stop}", "internal": f", store step {self.stop}'s internal state",
                    None: ""}[self.keep]
            return f"advance s_{self.start} -> s_{self.stop}{what}"
        if self.kind == "backward":
            return f"backward step {self.start}"
        if self.kind == "take":
            return f"take s_{self.start} in hand, free its slot"
        return f"free s_{self.start}"


class Policy(NamedTuple):
    """A policy for back-propagating T steps, and what it costs (``policy`` builds it).

    Attributes
    ----------
    T : int
        The number of steps.
    scheme : str
        One of ``SCHEMES``.
    slots : int
        The memory it was built for: hidden-state slots (segments for ``"sqrt"``).
    internal_size : int
        Slots one internal state takes (1 for ``"hsm"``, which keeps none).
    actions : tuple of Action
        What to do, in order.
    forward_steps : int
        Forward steps the actions run, the first pass included.
    peak_slots : int
        The most slots stored at once (s_0 included; a hidden state takes one slot, an internal state
        ``internal_size``); the state of a sweep in progress and the cache of the step being
        back-propagated are not stored and not counted.
    """

    T: int
    scheme: str
    slots: int
    internal_size: int
    actions: tuple[Action, ...]
    forward_steps: int
    peak_slots: int

    def __str__(self) -> str:
        head = (f"{self.scheme} policy for T = {self.T} with {self.slots} slots: {self.forward_steps} forward "
                f"steps, at most {self.peak_slots} slots stored")
        return "\n".join([head, *(f"{k:4d}. {action}" for k, action in enumerate(self.actions, 1))])


# ----- the optimal costs ----------------------------------------------------------------------------------
def hsm_cost(T: int, slots: int) -> int:
    """The fewest forward steps that back-propagate T steps keeping at most ``slots`` hidden states (BPTT-HSM).

    .. math::
        C(0, m) = 0, \\quad C(t, 1) = \\tfrac{t(t+1)}{2}, \\quad
        C(t, m) = \\min_{1 \\le y < t} \\big[\\, y + C(t - y, m - 1) + C(y, m) \\,\\big]

    Store s_y after y steps; back-propagate the last t - y steps from s_y with one slot fewer; then the
    first y steps with all m slots again. The first forward pass is included, and so is the forward step
    that every step's backward pass runs to rebuild its cache. With m >= t - 1 slots every state fits:
    C(t, m) = 2t - 1, returned at once. Otherwise a memoized dynamic programme, O(T^2 m) integer
    operations in numpy (under a second for T = 1000 and any slots; T <= 2**15).

    Parameters
    ----------
    T : int
        The number of steps, T >= 1.
    slots : int
        Hidden states that may be stored at once, s_0 included; slots >= 1.

    Returns
    -------
    int
        C(T, slots): revolve's binomial checkpointing plus the T recording steps. Chapter
        "Memory-efficient BPTT" proves it optimal among the policies that keep every stored state until
        the backward pass reaches it.
    """
    T, slots = check_positive_int(T, "T"), check_positive_int(slots, "slots")
    if slots >= T - 1:                     # every state fits: each step runs twice, the last once
        return 2 * T - 1
    return int(_cost_tables(T, slots, 0, "HA")[_KEPT, T, -1])


def ism_cost(T: int, slots: int, internal_size: int) -> int:
    """The fewest forward steps with internal-state memorization (BPTT-ISM; reconstructed, see ``msm_cost``).

    Only the internal states of steps may be stored (and s_0, held throughout): the moves (A) and (I) of
    ``msm_cost``.

    Parameters
    ----------
    T : int
        The number of steps, T >= 1.
    slots : int
        Memory in hidden-state slots, s_0's included; slots >= 1.
    internal_size : int
        Slots one internal state takes (its step's cache and the state it produced), >= 1.

    Returns
    -------
    int
        The optimal number of forward steps, first pass included.
    """
    T, slots, internal_size = _check_internal_arguments(T, slots, internal_size)
    return int(_cost_tables(T, _internal_memory(T, slots, internal_size), internal_size, "IA")[_KEPT, T, -1])


def msm_cost(T: int, slots: int, internal_size: int) -> int:
    r"""The fewest forward steps when hidden states and internal states may both be stored (mixed, BPTT-MSM).

    A reconstruction from the cost model of Gruslys et al. (whose text was not available here): the
    *internal state* of step y is its cache together with s_y and takes alpha = ``internal_size`` slots;
    kept, it spares the recomputation of step y in the backward pass and lets a sweep restart from s_y.
    C(t, m) is the cost of t steps in m slots (the start's included) when the start stays stored to the
    end (s_0, or a start inside a stored internal state); D(t, m) the same when the start is a bare
    stored state that the subproblem owns and may drop. C(0, m) = D(0, m) = 0, both are infinite for
    m < 1, and C(t, m) is the least of

    .. math::
        \text{(A)}\; t + C(t - 1, m), \qquad
        \text{(H)}\; \min_{1 \le y < t} y + D(t - y, m - 1) + C(y, m), \qquad
        \text{(I)}\; \min_{1 \le y < t} y + C(t - y, m - \alpha) + C(y - 1, m):

    (A) sweep to step t storing nothing and back-propagate it; (H) store s_y (``hsm_cost``'s recursion);
    (I) store step y's internal state: the last t - y steps are back-propagated from s_y, inside it,
    within m - alpha slots, then step y without recomputation, then the first y - 1. D(t, m) is the least
    of the same with D for C in the left parts (C(t - 1, m), C(y, m), C(y - 1, m)) and of
    (take) 1 + C(t - 1, m - alpha + 1) for t >= 2: drop the start into the sweep, run step 1 and store its
    internal state in the room. Without (take) the recursion misses policies of the model (T = 7, 4
    slots, alpha = 3: 14 steps instead of 13); the tests check C against an exhaustive search over every
    policy of the model, early freeing included, for small T. Computed like ``hsm_cost``, in O(T^2 m)
    operations: for T = 1000, about a second up to 512 slots, some seconds beyond.

    Parameters
    ----------
    T : int
        The number of steps, T >= 1.
    slots : int
        Memory in hidden-state slots, s_0's included; slots >= 1.
    internal_size : int
        alpha, the slots one internal state takes, >= 1 (``memory_sizes(...).internal_slots``).

    Returns
    -------
    int
        The optimal number of forward steps, first pass included; at most ``hsm_cost(T, slots)``.
    """
    T, slots, internal_size = _check_internal_arguments(T, slots, internal_size)
    return int(_cost_tables(T, _internal_memory(T, slots, internal_size), internal_size, "HIA")[_KEPT, T, -1])


def sqrt_cost(T: int, segments: int) -> int:
    """Forward steps of the ``"sqrt"`` scheme: 2T minus the length of the last segment.

    The segments are those of ``torch.utils.checkpoint.checkpoint_sequential``: ``segments - 1`` of
    length ``T // segments``, the last one the rest. The first pass runs every step once; every segment
    but the last is run once more in the backward pass (the last one's caches are kept in the first pass).

    Parameters
    ----------
    T : int
        The number of steps, T >= 1.
    segments : int
        The number of segments, 1 <= segments <= T.

    Returns
    -------
    int
        ``T + (segments - 1) * (T // segments)``.
    """
    T, segments = _check_segments(T, segments)
    return T + (segments - 1) * (T // segments)


# ----- building a policy ----------------------------------------------------------------------------------
def policy(T: int, slots: int, *, scheme: str = "hsm", internal_size: int | None = None) -> Policy:
    """The optimal policy of a scheme for T steps and a memory of ``slots`` (segments for ``"sqrt"``).

    Parameters
    ----------
    T : int
        The number of steps, T >= 1.
    slots : int
        Hidden-state slots, s_0's included (``"sqrt"``: the number of segments, at most T).
    scheme : {"hsm", "ism", "msm", "sqrt"}, keyword-only
        See the module docstring.
    internal_size : int, keyword-only
        Slots one internal state takes; required by ``"ism"``, ``"msm"`` and ``"sqrt"`` (whose re-run
        segments keep internal states), ignored by ``"hsm"``.

    Returns
    -------
    Policy
        Its ``forward_steps`` equal ``hsm_cost``, ``ism_cost``, ``msm_cost`` or ``sqrt_cost``, and its
        ``peak_slots`` never exceed ``slots`` (for ``"sqrt"``: ``slots`` plus the internal states of one
        segment but its last step).
    """
    scheme = _check_scheme(scheme)
    if scheme == "hsm":
        T, slots = check_positive_int(T, "T"), check_positive_int(slots, "slots")
        internal_size = 1
    elif scheme == "sqrt":
        T, slots = _check_segments(T, slots)
        internal_size = _check_internal_size(internal_size)
    else:
        T, slots, internal_size = _check_internal_arguments(T, slots, internal_size)
    return _policy(T, slots, scheme, internal_size)


@functools.lru_cache(maxsize=64)
def _policy(T: int, slots: int, scheme: str, internal_size: int) -> Policy:
    """``policy`` on checked arguments, memoized: a training loop asks for the same policy every step."""
    if scheme == "hsm":
        actions = _optimal_actions(T, _hsm_memory(T, slots), 0, "HA")
    elif scheme == "sqrt":
        actions = _segment_actions(T, slots)
    else:
        moves = "IA" if scheme == "ism" else "HIA"
        actions = _optimal_actions(T, _internal_memory(T, slots, internal_size), internal_size, moves)
    forward_steps, peak_slots = _simulate(T, actions, internal_size)
    return Policy(T, scheme, slots, internal_size, tuple(actions), forward_steps, peak_slots)


def _optimal_actions(T: int, memory: int, internal_size: int, moves: str) -> list[Action]:
    """The actions of the recursion's optimum, unrolled with a stack (T = 1000 nests too deep to recurse).

    A task ``(lo, hi, m, kind)`` back-propagates steps lo + 1 .. hi from the stored s_lo within m slots; an
    ``_OWNED`` task frees s_lo when it is done with it.
    """
    tables = _cost_tables(T, memory, internal_size, moves)
    actions: list[Action] = []
    tasks: list[tuple[int, int, int, int] | Action] = [(0, T, memory, _KEPT)]
    while tasks:
        task = tasks.pop()
        if isinstance(task, Action):
            actions.append(task)
            continue
        lo, hi, m, kind = task
        move, y = _best_move(tables, kind, hi - lo, m, internal_size, moves)
        done = [Action("free", lo, lo)] if kind == _OWNED else []       # s_lo is no longer needed
        if move == "A":                    # sweep to s_{hi-1}, back-propagate step hi, then the rest
            rest = [(lo, hi - 1, m, kind)] if hi - 1 > lo else done
            sweep = [Action("advance", lo, hi - 1)] if hi - 1 > lo else []
            later = rest + [Action("backward", hi, hi)] + sweep
        elif move == "H":                  # store s_{lo+y}; the right part owns it, with one slot fewer
            later = [(lo, lo + y, m, kind), (lo + y, hi, m - 1, _OWNED), Action("advance", lo, lo + y, "state")]
        elif move == "I":                  # store step lo+y's internal state; the right part starts inside it
            rest = [(lo, lo + y - 1, m, kind)] if y > 1 else done
            later = rest + [Action("backward", lo + y, lo + y), (lo + y, hi, m - internal_size, _KEPT),
                            Action("advance", lo, lo + y, "internal")]
        else:                              # "take": drop s_lo into the sweep, store step lo+1's internal state
            later = [Action("backward", lo + 1, lo + 1), (lo + 1, hi, m - internal_size + 1, _KEPT),
                     Action("advance", lo, lo + 1, "internal"), Action("take", lo, lo)]
        tasks += later                     # a stack: the last pushed runs first
    return actions


def _best_move(tables: Array, kind: int, t: int, m: int, internal_size: int, moves: str) -> tuple[str, int]:
    """The first optimal move of the recursion for t steps and m slots: ("H", y), ("I", y), ("take", 1)
    or ("A", t), the first in that order among the cheapest."""
    alpha, y = internal_size, np.arange(1, t)
    candidates = []
    if "H" in moves and t > 1:
        candidates.append(("H", y + tables[_OWNED, t - y, m - 1] + tables[kind, y, m]))
    if "I" in moves and t > 1 and m > alpha:
        candidates.append(("I", y + tables[_KEPT, t - y, m - alpha] + tables[kind, y - 1, m]))
    if "I" in moves and kind == _OWNED and t > 1 and m >= alpha:
        candidates.append(("take", np.array([1 + tables[_KEPT, t - 1, m - alpha + 1]])))
    candidates.append(("A", np.array([t + tables[kind, t - 1, m]])))
    best = min(int(costs.min()) for _, costs in candidates)
    assert best == tables[kind, t, m], "the policy must reach the recursion's optimum"
    move, costs = next((move, costs) for move, costs in candidates if costs.min() == best)
    return move, (t if move == "A" else int(np.argmin(costs)) + 1)


def _segment_actions(T: int, segments: int) -> list[Action]:
    """The ``"sqrt"`` scheme: segment starts stored in the first pass; each segment re-run keeping its
    internal states, then back-propagated (the last segment's first run is already the re-run)."""
    size = T // segments
    starts = [k * size for k in range(segments)]                 # s_0, s_size, ...; the last segment is longer
    actions = [Action("advance", a, b, "state") for a, b in zip(starts, starts[1:])]
    for a, b in reversed(list(zip(starts, starts[1:] + [T]))):
        actions += [Action("advance", j, j + 1, "internal") for j in range(a, b - 1)]
        actions += [Action("backward", j, j) for j in range(b, a, -1)]
        if a > 0:
            actions.append(Action("free", a, a))
    return actions


def _simulate(T: int, actions: Sequence[Action], internal_size: int) -> tuple[int, int]:
    """Check that ``actions`` back-propagate steps T .. 1 in order, each from what is in hand or stored,
    and return (forward steps, peak slots stored). Raises ``AssertionError`` on an invalid policy."""
    stored: dict[int, int] = {0: 1}            # index -> slots: s_0 is stored from the start
    internal: set[int] = set()
    at = None                                  # the sweep's state in hand
    steps, peak, next_backward = 0, 1, T
    for action in actions:
        if action.kind == "advance":
            assert action.start in (at, *stored) and action.start < action.stop <= T, action
            steps += action.stop - action.start
            at = action.stop
            if action.keep is not None:
                stored[action.stop] = internal_size if action.keep == "internal" else 1
                if action.keep == "internal":
                    internal.add(action.stop)
        elif action.kind == "backward":
            t = action.start
            assert t == next_backward, f"step {t} back-propagated before step {next_backward}"
            if t in internal:
                internal.discard(t)
                del stored[t]
            else:
                assert t - 1 in (at, *stored), f"s_{t - 1} is neither in hand nor stored for step {t}"
                steps += 1
            at, next_backward = None, t - 1
        else:                                  # "free" or "take" a bare stored state
            assert action.start in stored and action.start not in internal and action.start > 0, action
            del stored[action.start]
            if action.kind == "take":
                at = action.start
        peak = max(peak, sum(stored.values()))
    assert next_backward == 0, f"steps {next_backward} .. 1 were never back-propagated"
    return steps, peak


# ----- the dynamic programme ------------------------------------------------------------------------------
def _cost_tables(T: int, memory: int, internal_size: int, moves: str) -> Array:
    """The recursion's tables ``tables[kind, t, m]`` for t <= T, m <= memory (a view of cached ones).

    Tables are computed for sizes rounded up to a power of two and kept (``_full_tables``), so a sweep
    over budgets or lengths reuses them: C(t, m) does not depend on the tables' size.
    """
    if T > 2**15:
        raise ValueError(f"T must be at most {2**15} for the optimal policies, got {T}")
    rounded_T, rounded_memory = (1 << max(4, (size - 1).bit_length()) for size in (T, memory))
    return _full_tables(rounded_T, rounded_memory, internal_size, moves)[:, :T + 1, :memory + 1]


@functools.lru_cache(maxsize=8)
def _full_tables(T: int, memory: int, internal_size: int, moves: str) -> Array:
    """The optimal cost of every subproblem, ``tables[kind, t, m]``, row by row in t.

    ``kind`` is ``_KEPT`` or ``_OWNED``; ``moves`` holds the options of ``msm_cost``: "A" (sweep to the end),
    "H" (store a hidden state), "I" (store an internal state of ``internal_size`` slots). Each row is one
    vectorized minimum over y. Entries with no slot for s_0 (m = 0) are ``_INFINITE``. Read-only.
    """
    tables = np.full((2, T + 1, memory + 1), _INFINITE, dtype=np.int32)
    tables[:, 0, 1:] = 0
    alpha = internal_size
    kinds = (_KEPT, _OWNED) if "I" in moves else (_KEPT,)          # without "I" both kinds cost the same
    for t in range(1, T + 1):
        y = np.arange(1, t, dtype=np.int32)[:, None]            # (t - 1, 1)
        rows = t + tables[:, t - 1]                             # (A) t + C(t-1, m)
        if "H" in moves and t > 1:                              # (H) y + D(t-y, m-1) + C(y, m)
            right = y + tables[_OWNED, t - y[:, 0], :-1]
            for kind in kinds:
                rows[kind, 1:] = np.minimum(rows[kind, 1:], (right + tables[kind, y[:, 0], 1:]).min(axis=0))
        if "I" in moves and t > 1 and memory > alpha:           # (I) y + C(t-y, m-alpha) + C(y-1, m)
            right = y + tables[_KEPT, t - y[:, 0], :-alpha]
            for kind in kinds:
                rows[kind, alpha:] = np.minimum(rows[kind, alpha:],
                                                (right + tables[kind, y[:, 0] - 1, alpha:]).min(axis=0))
        if "I" in moves and t > 1 and memory >= alpha:          # (take) 1 + C(t-1, m-alpha+1), owned start
            rows[_OWNED, alpha:] = np.minimum(rows[_OWNED, alpha:], 1 + tables[_KEPT, t - 1, 1:memory - alpha + 2])
        rows[:, 0] = _INFINITE
        tables[:, t] = np.minimum(rows, _INFINITE)
        if "I" not in moves:
            tables[_OWNED, t] = tables[_KEPT, t]
    tables.flags.writeable = False
    return tables


def _hsm_memory(T: int, slots: int) -> int:
    """Slots beyond T - 1 change nothing for HSM (every state but s_T fits): clip, keeping at least 1."""
    return min(slots, max(T - 1, 1))


def _internal_memory(T: int, slots: int, internal_size: int) -> int:
    """Slots beyond s_0 plus T - 1 internal states change nothing (every step is run once): clip."""
    return min(slots, 1 + internal_size * (T - 1))


# ----- running a policy on a cell -------------------------------------------------------------------------
class Stats(NamedTuple):
    """What a run of ``checkpointed_bptt`` cost.

    Attributes
    ----------
    forward_steps : int
        Steps of the cell run forward, the first pass included (``Policy.forward_steps``).
    peak_slots : int
        The most hidden-state slots stored at once, s_0 included (``Policy.peak_slots``).
    peak_bytes : int
        The most bytes held at once in states and step caches: the stored states and internal states, the
        state of the sweep in progress and the cache of the step being back-propagated. Arrays shared
        between them count once; the inputs ``xs``, the adjoints and the gradients are not counted.
    """

    forward_steps: int
    peak_slots: int
    peak_bytes: int


class CheckpointedResult(NamedTuple):
    """What ``checkpointed_bptt`` returns; unpacks as ``grads, dxs, dstate0, stats``.

    Attributes
    ----------
    grads : dict
        dL/dtheta for every key of ``params``, as ``companion.bptt.backward`` returns it.
    dxs : array, shape (T, B, n_in)
        dL/dx_t for every step.
    dstate0 : State
        dL/d(state0), with the structure of the state.
    stats : Stats
        Forward steps, peak slots and peak bytes of the run.
    """

    grads: Params
    dxs: Array
    dstate0: State
    stats: Stats


def checkpointed_bptt(
    cell: Cell,
    params: Params,
    xs: Array,
    dhs: Array,
    slots: int,
    *,
    state0: State | None = None,
    d_final_state: State | None = None,
    scheme: str = "hsm",
    internal_size: int | None = None,
) -> CheckpointedResult:
    """Back-propagate through a sequence within a memory of ``slots`` hidden states, recomputing the rest.

    The policy (``policy(T, slots, scheme=...)``) decides which states to keep; every cache the backward
    pass needs is recomputed from the nearest kept state, and the caches go, step T first, to
    ``companion.bptt.backward_steps``. The gradients are therefore those of ``bptt.backward`` on the step
    loop's cache, bit for bit (the same steps on the same numbers, summed over time in the same order).

    Parameters
    ----------
    cell : Cell
        Any cell of ``companion.cells``.
    params : dict
        The cell's parameters.
    xs : array, shape (T, B, n_in)
        Inputs, time-major.
    dhs : array, shape (T, B, n_hidden)
        ``dhs[t - 1]`` is the direct gradient of the loss with respect to h_t, as for ``bptt.backward``.
    slots : int
        Memory in hidden-state slots, s_0's included (``"sqrt"``: the number of segments, at most T).
    state0 : State, optional, keyword-only
        Initial state; zeros if omitted.
    d_final_state : State, optional, keyword-only
        Gradient arriving at the final state from beyond the sequence.
    scheme : {"hsm", "ism", "msm", "sqrt"}, keyword-only
        The family of policies (module docstring); ``"hsm"`` by default.
    internal_size : int, optional, keyword-only
        Slots one internal state (a step's cache and the state it produced) takes; required by
        ``"ism"``, ``"msm"`` and ``"sqrt"``: ``memory_sizes(cell, params, xs).internal_slots``.

    Returns
    -------
    CheckpointedResult
        ``(grads, dxs, dstate0, stats)``: the gradients of ``bptt.backward``, and ``Stats`` with
        ``forward_steps`` equal to the scheme's optimal cost (``hsm_cost`` for ``"hsm"``).
    """
    cell = check_cell(cell)
    params = cell.check_params(params)
    xs = bptt.check_inputs(cell, xs)
    T, B = xs.shape[:2]
    dhs = bptt.check_dhs(cell, dhs, T, B)
    state0 = bptt.start_state(cell, params, xs, state0)
    if d_final_state is not None:
        d_final_state = cell.check_state(d_final_state, B, "d_final_state")
    plan = policy(T, slots, scheme=scheme, internal_size=internal_size)
    run = _PolicyRun(cell, params, xs, state0, plan)
    last_cache, final_state = run.cache_of(T)                    # the first pass, through step T
    if d_final_state is None:
        d_final_state = cell.zero_state_grad(final_state)
    caches = _RecomputedCaches(run, last_cache)
    del last_cache, final_state                                  # step T's cache: held by `caches` only
    grads, dxs, dstate0 = bptt.backward_steps(cell, params, caches, dhs, d_final_state)
    assert run.forward_steps == plan.forward_steps and run.peak_slots == plan.peak_slots
    return CheckpointedResult(grads, dxs, dstate0, Stats(run.forward_steps, run.peak_slots, run.ledger.peak))


class _PolicyRun:
    """Runs a policy's actions on a cell, one backward step at a time (``cache_of``).

    Holds the stored hidden states (``stored``, s_0 from the start), the stored internal states
    (``internal``: step -> (cache, state)), the sweep's state in hand (``at``, ``in_hand``), and a
    ``_Ledger`` of the bytes they hold.
    """

    def __init__(self, cell: Cell, params: Params, xs: Array, state0: State, plan: Policy):
        self.cell, self.params, self.xs, self.plan = cell, params, xs, plan
        self.actions: Iterator[Action] = iter(plan.actions)
        self.stored: dict[int, State] = {0: state0}
        self.internal: dict[int, tuple[Any, State]] = {}
        self.at: int | None = None
        self.in_hand: State | None = None
        self.forward_steps, self.peak_slots = 0, 1
        self.ledger = _Ledger(exclude=xs)
        self.ledger.hold(("state", 0), self.ledger.buffers(state0))

    def cache_of(self, t: int) -> tuple[Any, State]:
        """Run the actions up to the backward pass of step t; return step t's cache and the state s_t."""
        self.ledger.release("cache")                         # the previous step's cache has been used
        for action in self.actions:
            if action.kind == "advance":
                self._advance(action)
            elif action.kind in ("free", "take"):
                state = self.stored.pop(action.start)
                buffers = self.ledger.release(("state", action.start))
                if action.kind == "take":
                    self._hold_in_hand(action.start, state, buffers)
            else:
                assert action.start == t, f"the policy back-propagates step {action.start}, not {t}"
                return self._cache_for_backward(t)
            self.peak_slots = max(self.peak_slots, len(self.stored) + self.plan.internal_size * len(self.internal))
        raise AssertionError(f"the policy ended before the backward pass of step {t}")

    def _advance(self, action: Action) -> None:
        state = self._state(action.start)
        for step in range(action.start + 1, action.stop + 1):
            state, cache = self.cell._step(self.params, self.xs[step - 1], state)   # s_step from s_{step-1}
        self.forward_steps += action.stop - action.start
        buffers = self.ledger.buffers(state)
        self._hold_in_hand(action.stop, state, buffers)
        if action.keep == "state":
            self.stored[action.stop] = state
            self.ledger.hold(("state", action.stop), buffers)
        elif action.keep == "internal":
            self.internal[action.stop] = (cache, state)
            self.ledger.hold(("internal", action.stop), buffers | self.ledger.buffers(cache))

    def _cache_for_backward(self, t: int) -> tuple[Any, State]:
        if t in self.internal:                               # kept: no recomputation
            cache, state = self.internal.pop(t)
            self.ledger.release(("internal", t))
        else:                                                # run step t once more from s_{t-1}
            state, cache = self.cell._step(self.params, self.xs[t - 1], self._state(t - 1))
            self.forward_steps += 1
        self.ledger.hold("cache", self.ledger.buffers(cache))
        self._hold_in_hand(None, None, {})                   # the sweep ends at a backward step
        return cache, state

    def _state(self, index: int) -> State:
        """s_index: in hand, stored, or inside a stored internal state."""
        if index == self.at:
            return self.in_hand
        if index in self.stored:
            return self.stored[index]
        return self.internal[index][1]

    def _hold_in_hand(self, index: int | None, state: State | None, buffers: dict[int, int]) -> None:
        self.at, self.in_hand = index, state
        self.ledger.release("in hand")
        self.ledger.hold("in hand", buffers)


class _RecomputedCaches(Sequence):
    """The step caches as ``bptt.backward_steps`` reads them (index T - 1 first, then down to 0), each
    recomputed by the policy run on demand; ``first`` is step T's, computed by the first pass."""

    def __init__(self, run: _PolicyRun, first: Any):
        self.run, self.first = run, first

    def __len__(self) -> int:
        return self.run.plan.T

    def __getitem__(self, index: int) -> Any:
        if index == self.run.plan.T - 1:
            first, self.first = self.first, None               # handed over once: no longer held here
            return first
        return self.run.cache_of(index + 1)[0]


# ----- measuring memory -----------------------------------------------------------------------------------
class _Ledger:
    """Bytes held under names, each memory buffer counted once however many names hold it.

    ``hold(name, buffers)`` adds the buffers (``buffers(obj)``: id -> bytes) under a name, ``release(name)``
    removes and returns them; ``total`` is what is held now and ``peak`` the most ever held. A view counts
    as its base buffer; buffers of ``exclude`` (the inputs) are not counted. Whoever holds a name must keep
    its objects alive until it releases it, so that no other buffer can take their ids.
    """

    def __init__(self, exclude: Any = None):
        self.excluded = set(_buffers(exclude))
        self.held: dict[Any, dict[int, int]] = {}
        self.counts: dict[int, int] = {}
        self.total = self.peak = 0

    def buffers(self, obj: Any) -> dict[int, int]:
        """The buffers of the arrays in ``obj`` that are counted: id -> bytes."""
        return _buffers(obj, self.excluded)

    def hold(self, name: Any, buffers: dict[int, int]) -> None:
        self.held[name] = buffers
        for key, size in buffers.items():
            count = self.counts.get(key, 0)
            if count == 0:
                self.total += size
            self.counts[key] = count + 1
        self.peak = max(self.peak, self.total)

    def release(self, name: Any) -> dict[int, int]:
        buffers = self.held.pop(name, {})
        for key, size in buffers.items():
            self.counts[key] -= 1
            if self.counts[key] == 0:
                self.total -= size
                del self.counts[key]
        return buffers


def _buffers(obj: Any, excluded: frozenset[int] | set[int] = frozenset()) -> dict[int, int]:
    """The memory buffers of the arrays in ``obj`` (nested tuples, lists, dicts), id -> bytes, but for the
    ids in ``excluded``."""
    found: dict[int, int] = {}
    items = [obj]
    for item in items:                                   # grows as containers are opened
        if isinstance(item, np.ndarray):
            base = item.base
            while isinstance(base, np.ndarray):          # a view holds its base alive
                item, base = base, base.base
            if id(item) not in excluded:
                found[id(item)] = item.nbytes
        elif isinstance(item, (tuple, list)):
            items.extend(item)
        elif isinstance(item, dict):
            items.extend(item.values())
    return found


def held_bytes(*objects: Any, exclude: Any = None) -> int:
    """Bytes of the arrays in ``objects`` (nested tuples, lists, dicts), each buffer counted once.

    Parameters
    ----------
    *objects
        Arrays, step caches, states, or ``bptt.SequenceCache``s (whose ``xs`` is left out).
    exclude : optional, keyword-only
        Arrays whose buffers are not counted (the inputs, say).

    Returns
    -------
    int
        The bytes that holding ``objects`` keeps alive, views counted as their base buffer.
    """
    expanded = [_sequence_cache_contents(obj) if isinstance(obj, bptt.SequenceCache) else obj for obj in objects]
    excluded = [exclude] + [obj.xs for obj in objects if isinstance(obj, bptt.SequenceCache)]
    ledger = _Ledger(exclude=excluded)
    ledger.hold("objects", ledger.buffers(expanded))
    return ledger.total


def _sequence_cache_contents(cache: bptt.SequenceCache) -> list:
    """What a ``SequenceCache`` holds besides its cell and its inputs."""
    return [cache.state0, cache.final_state, cache.steps, cache.fused_cache]


class MemorySizes(NamedTuple):
    """Bytes of the pieces of memory-efficient BPTT for one cell, batch and dtype (``memory_sizes``).

    Attributes
    ----------
    state : int
        One hidden state s_t (every part of it).
    internal : int
        One internal state: a step's cache together with the state it produced (the input x_t excluded).
    full : int
        What full BPTT's step loop keeps for the whole sequence: every step's cache and the final state.
    """

    state: int
    internal: int
    full: int

    @property
    def internal_slots(self) -> int:
        """Slots one internal state takes: ceil(internal / state)."""
        return -(-self.internal // self.state)

    def slots_within(self, budget: float) -> int:
        """The most slots a policy may store so that ``Stats.peak_bytes`` stays within ``budget`` bytes.

        The stored slots, the state in hand and one internal state (the cache being back-propagated and
        its state) must fit: floor((budget - state - internal) / state), at least 1.
        """
        return max(1, int((budget - self.state - self.internal) // self.state))


def memory_sizes(cell: Cell, params: Params, xs: Array, state0: State | None = None) -> MemorySizes:
    """Measure the bytes of a state, an internal state and full BPTT's cache, by running the step loop.

    Parameters
    ----------
    cell, params, xs, state0
        As for ``companion.bptt.forward``; ``xs`` is (T, B, n_in).

    Returns
    -------
    MemorySizes
        ``full`` measured on the step loop's cache of this sequence (``bptt.forward(..., fused=False)``),
        ``state`` and ``internal`` on its first step, run once more.
    """
    _, cache = bptt.forward(cell, params, xs, state0, fused=False)
    state, step_cache = cell._step(cell.check_params(params), cache.xs[0], cache.state0)
    return MemorySizes(held_bytes(state), held_bytes((step_cache, state), exclude=cache.xs), held_bytes(cache))


# ----- checks ---------------------------------------------------------------------------------------------
def _check_scheme(scheme: object) -> str:
    if not isinstance(scheme, str) or scheme not in SCHEMES:
        raise ValueError(f"scheme must be one of {SCHEMES}, got {scheme!r}")
    return scheme


def _check_internal_arguments(T: object, slots: object, internal_size: object) -> tuple[int, int, int]:
    return check_positive_int(T, "T"), check_positive_int(slots, "slots"), _check_internal_size(internal_size)


def _check_internal_size(internal_size: object) -> int:
    if internal_size is None:
        raise ValueError("internal_size must be given for the schemes that keep internal states "
                         "(memory_sizes(cell, params, xs).internal_slots)")
    return check_positive_int(internal_size, "internal_size")


def _check_segments(T: object, segments: object) -> tuple[int, int]:
    T, segments = check_positive_int(T, "T"), check_positive_int(segments, "slots")
    if segments > T:
        raise ValueError(f"slots (the number of segments of the 'sqrt' scheme) must be at most T = {T}, got {segments}")
    return T, segments
