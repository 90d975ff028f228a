"""Formal languages for next-symbol prediction: the embedded Reber grammar, a^n b^n and a^n b^n c^n.

A language here is a distribution over strings together with its grammar. Every language offers

* ``sample(rng, count)``: strings drawn from the distribution;
* ``accepts(string)``: a recognizer, written independently of the sampler (a regular expression for
  the Reber grammars, block counting for a^n b^n and a^n b^n c^n);
* ``legal_next(string)``: the symbols the *grammar* allows after each prefix (the multi-hot targets of
  the literature);
* ``next_probabilities(string)``: the distribution of the next symbol given each prefix under the
  *sampling distribution* (what the best possible predictor outputs);
* ``entropy()``: the exact cross-entropy per predicted symbol of that best predictor.

``encode`` turns a list of strings of different lengths into time-major, zero-padded arrays with a mask,
and ``entropy_monte_carlo`` estimates the entropy from samples with its standard error.

Strings are Python ``str``: every character is one symbol. Inputs are the symbols 0, ..., L - 2 of a
string of length L and targets the symbols 1, ..., L - 1, so a string gives L - 1 predictions.
Entropies are in nats (natural logarithm), like ``companion.losses.softmax_cross_entropy``.
"""
from __future__ import annotations

import math
import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .tasks import one_hot
from .types import Array
from .validation import as_rng, check_positive_int

REBER_SYMBOLS = "BTPSXVE"
"""The seven symbols of the Reber grammars: B begins a string and E ends it."""

# The Reber grammar as a deterministic automaton (Cleeremans, Servan-Schreiber & McClelland 1989):
# state -> its arcs (symbol, next state); state 7 is final. Every branch is taken with probability 1/2.
_REBER_ARCS: tuple[tuple[tuple[str, int], ...], ...] = (
    (("B", 1),),
    (("T", 2), ("P", 3)),
    (("S", 2), ("X", 4)),
    (("T", 3), ("V", 5)),
    (("X", 3), ("S", 6)),
    (("P", 4), ("V", 6)),
    (("E", 7),),
)

# The same grammar as a regular expression, for the recognizer: from node 3 the loop T*V P X returns
# to node 3; the string leaves through V V or V P S.
_REBER_FROM_3 = r"(?:T*VPX)*T*V(?:PS|V)"
_REBER_INNER = rf"B(?:TS*X(?:X{_REBER_FROM_3}|S)|P{_REBER_FROM_3})E"
_REBER_PATTERN = re.compile(_REBER_INNER)
_EMBEDDED_REBER_PATTERN = re.compile(rf"B(?:T{_REBER_INNER}T|P{_REBER_INNER}P)E")


def _embed(inner: tuple[tuple[tuple[str, int], ...], ...]) -> tuple[tuple[tuple[str, int], ...], ...]:
    """The embedded automaton: B, then T or P, a copy of ``inner``, the same T or P again, then E.

    State 0 emits B, state 1 chooses the branch; branch k's copy of ``inner`` occupies the states
    2 + k (n + 1), ..., where n = len(inner), and its last state emits the branch letter. The state
    after both copies emits E; the one after it is final.
    """
    n = len(inner)
    closing = 2 + 2 * (n + 1)                                        # the state that emits E
    arcs: list[tuple[tuple[str, int], ...]] = [(("B", 1),), (("T", 2), ("P", 2 + n + 1))]
    for letter in "TP":
        offset = len(arcs)
        arcs += [tuple((symbol, offset + target) for symbol, target in state) for state in inner]
        arcs.append(((letter, closing),))
    arcs.append((("E", closing + 1),))
    return tuple(arcs)


def _check_string(string: object, name: str) -> str:
    """Return ``string`` if it is a ``str`` of at least two symbols, else raise ``ValueError``."""
    if not isinstance(string, str) or len(string) < 2:
        raise ValueError(f"{name} must be a str of at least 2 symbols, got {string!r:.60}")
    return string


class Language(ABC):
    """A formal language with a distribution over its strings (see the module docstring).

    Attributes
    ----------
    symbols : str
        The alphabet; symbol ``symbols[v]`` has id v, V = ``len(symbols)``.
    """

    symbols: str

    @property
    def size(self) -> int:
        """V, the number of symbols."""
        return len(self.symbols)

    @abstractmethod
    def sample(self, rng: np.random.Generator | int, count: int) -> list[str]:
        """``count`` strings drawn independently from the language's distribution."""

    @abstractmethod
    def accepts(self, string: str) -> bool:
        """Whether ``string`` belongs to the language (any ``str``; other objects are not strings of it)."""

    @abstractmethod
    def legal_next(self, string: str) -> Array:
        """The symbols the grammar allows after each prefix of ``string`` (a string of the language).

        Returns
        -------
        bool array, shape (L - 1, V)
            Row t: the symbols s such that ``string[:t + 1] + s`` begins some string of the language.
        """

    @abstractmethod
    def next_probabilities(self, string: str) -> Array:
        """The distribution of each next symbol of ``string`` given its prefix, under ``sample``.

        Returns
        -------
        array, shape (L - 1, V)
            Row t: P(symbol t + 1 = v | symbols 0..t); rows sum to one.
        """

    @abstractmethod
    def entropy(self) -> float:
        """The exact cross-entropy per predicted symbol of the best predictor, in nats.

        It is ``E[-log P(string)] / E[L - 1]``: the expected information of a string over the expected
        number of predictions, the limit of a masked mean loss over a large batch.
        """

    def _check_member(self, string: object, name: str = "string") -> str:
        string = _check_string(string, name)
        if not self.accepts(string):
            raise ValueError(f"{name} must be a string of {self!r}, got {string!r:.60}")
        return string


class Reber(Language):
    r"""The Reber grammar, or by default the embedded Reber grammar, with every branch taken with p = 1/2.

    The Reber grammar is the automaton of Cleeremans, Servan-Schreiber & McClelland (1989): strings
    such as ``BTSSXXTVVE`` or ``BPVVE``. The embedded grammar wraps a Reber string as
    ``B T <reber> T E`` or ``B P <reber> P E``; to predict the symbol before the last E a network must
    remember the second symbol across the whole inner string (Hochreiter & Schmidhuber 1997,
    experiment 1). Both automata are deterministic, so the prefix fixes the state and the best predictor
    is uncertain only at the branches: one bit per branch.

    Parameters
    ----------
    embedded : bool, keyword-only
        True (default) for the embedded grammar, False for the plain Reber grammar.
    """

    symbols = REBER_SYMBOLS

    def __init__(self, *, embedded: bool = True):
        if not isinstance(embedded, (bool, np.bool_)):
            raise ValueError(f"embedded must be True or False, got {embedded!r}")
        self.embedded = bool(embedded)
        self._arcs = _embed(_REBER_ARCS) if self.embedded else _REBER_ARCS
        self._pattern = _EMBEDDED_REBER_PATTERN if self.embedded else _REBER_PATTERN

    def __repr__(self) -> str:
        return f"Reber(embedded={self.embedded})"

    def sample(self, rng: np.random.Generator | int, count: int) -> list[str]:
        """``count`` strings, each a walk from state 0 to the final state choosing each branch with p = 1/2.

        The walk draws one integer in {0, 1} from ``rng`` at every branch, in order.
        """
        rng = as_rng(rng)
        count = check_positive_int(count, "count")
        return [self._walk(rng) for _ in range(count)]

    def _walk(self, rng: np.random.Generator) -> str:
        state, symbols = 0, []
        while state < len(self._arcs):
            arcs = self._arcs[state]
            symbol, state = arcs[int(rng.integers(len(arcs)))] if len(arcs) > 1 else arcs[0]
            symbols.append(symbol)
        return "".join(symbols)

    def accepts(self, string: str) -> bool:
        """Whether the grammar's regular expression matches the whole of ``string``."""
        return isinstance(string, str) and self._pattern.fullmatch(string) is not None

    def _states(self, string: str) -> list[int]:
        """The automaton's state after each symbol of ``string`` except the last, shape (L - 1,)."""
        states, state = [], 0
        for symbol in string[:-1]:
            state = dict(self._arcs[state])[symbol]
            states.append(state)
        return states

    def next_probabilities(self, string: str) -> Array:
        string = self._check_member(string)
        probs = np.zeros((len(string) - 1, self.size))
        for t, state in enumerate(self._states(string)):
            arcs = self._arcs[state]
            for symbol, _ in arcs:
                probs[t, self.symbols.index(symbol)] = 1.0 / len(arcs)
        return probs

    def legal_next(self, string: str) -> Array:
        return self.next_probabilities(string) > 0          # every arc has positive probability

    def entropy(self) -> float:
        r"""Exact, from the expected visits of the automaton's states.

        With Q the transition matrix among the non-final states (Q[s, s'] = 1/2 per arc of a branch),
        the expected visits from state 0 are :math:`v = e_0^\top (I - Q)^{-1}`; each visit emits one
        symbol, and a visit of a branch contributes log 2. So the entropy is
        :math:`(v \cdot h) / (v \cdot 1 - 1)` with :math:`h_s = \log(\text{arcs of } s)`.
        """
        n = len(self._arcs)
        transitions = np.zeros((n, n))                                  # Q, (n, n)
        for state, arcs in enumerate(self._arcs):
            for _, target in arcs:
                if target < n:
                    transitions[state, target] += 1.0 / len(arcs)
        start = np.zeros(n)
        start[0] = 1.0
        visits = np.linalg.solve((np.eye(n) - transitions).T, start)    # v, (n,)
        branch_entropy = np.array([math.log(len(arcs)) for arcs in self._arcs])
        return float(visits @ branch_entropy / (visits.sum() - 1.0))


class _Counting(Language):
    """S, then n copies of each letter in turn, then T, with n uniform on {n_min, ..., n_max}."""

    letters: str

    def __init__(self, n_min: int = 1, n_max: int = 10):
        self.n_min = check_positive_int(n_min, "n_min")
        self.n_max = check_positive_int(n_max, "n_max")
        if self.n_max < self.n_min:
            raise ValueError(f"n_max must be >= n_min = {self.n_min}, got {self.n_max}")
        self.symbols = "S" + self.letters + "T"
        self._pattern = re.compile("S" + "".join(f"({letter}+)" for letter in self.letters) + "T")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n_min={self.n_min}, n_max={self.n_max})"

    def sample(self, rng: np.random.Generator | int, count: int) -> list[str]:
        """``count`` strings with n drawn uniformly from {n_min, ..., n_max} (one draw of all n)."""
        rng = as_rng(rng)
        count = check_positive_int(count, "count")
        ns = rng.integers(self.n_min, self.n_max + 1, size=count)
        return ["S" + "".join(letter * int(n) for letter in self.letters) + "T" for n in ns]

    def accepts(self, string: str) -> bool:
        """Whether ``string`` is S, then blocks of equal positive length of each letter in order, then T."""
        match = self._pattern.fullmatch(string) if isinstance(string, str) else None
        return match is not None and len({len(block) for block in match.groups()}) == 1

    def _block_length(self, string: str) -> int:
        """n, for a string of the language."""
        return (len(string) - 2) // len(self.letters)

    def legal_next(self, string: str) -> Array:
        """After S only the first letter; within the first block it or the second letter (n is not yet
        known); within any later block, that letter until n of it, then the next letter or T."""
        string = self._check_member(string)
        n, k = self._block_length(string), len(self.letters)
        legal = np.zeros((len(string) - 1, self.size), dtype=bool)
        legal[0, 1] = True                                         # S -> a
        legal[1:n + 1, 1:3] = True                                 # a's -> a or the second letter
        for block in range(1, k):                                  # letter ids 1..k, T has id k + 1
            first = 1 + block * n                                  # the step that reads the block's first letter
            legal[first:first + n - 1, 1 + block] = True           # within the block: the same letter
            legal[first + n - 1, 2 + block] = True                 # its n-th letter: the next letter or T
        return legal

    def next_probabilities(self, string: str) -> Array:
        r"""Deterministic except in the first block: after k first letters the block ends with
        :math:`P(n = k \mid n \ge k) = 1 / (n_{max} - k + 1)` for :math:`k \ge n_{min}`, else 0."""
        string = self._check_member(string)
        n = self._block_length(string)
        if not self.n_min <= n <= self.n_max:
            raise ValueError(f"string must have n in [{self.n_min}, {self.n_max}] (probability 0 otherwise), got n = {n}")
        probs = self.legal_next(string).astype(np.float64)
        for k in range(1, n + 1):                                  # row k: after k first letters
            stop = 1.0 / (self.n_max - k + 1) if k >= self.n_min else 0.0
            probs[k, 1:3] = (1.0 - stop, stop)
        return probs

    def entropy(self) -> float:
        r"""Exact: :math:`\log K / E[L - 1]` with K = n_max - n_min + 1 and
        :math:`E[L - 1] = k (n_{min} + n_{max}) / 2 + 1` for k letters (a string carries log K nats)."""
        count = self.n_max - self.n_min + 1
        return math.log(count) / (len(self.letters) * (self.n_min + self.n_max) / 2 + 1)


class AnBn(_Counting):
    """The context-free language S a^n b^n T, n uniform on {n_min, ..., n_max} (Gers & Schmidhuber 2001).

    Parameters
    ----------
    n_min, n_max : int
        The range of n for ``sample``, 1 <= n_min <= n_max. The recognizer accepts every n >= 1.
    """

    letters = "ab"


class AnBnCn(_Counting):
    """The context-sensitive language S a^n b^n c^n T, n uniform on {n_min, ..., n_max}.

    Parameters
    ----------
    n_min, n_max : int
        The range of n for ``sample``, 1 <= n_min <= n_max. The recognizer accepts every n >= 1.
    """

    letters = "abc"


@dataclass(frozen=True)
class GrammarBatch:
    """Strings of different lengths as time-major, zero-padded arrays for next-symbol prediction.

    With L_b the length of string b, T = max L_b - 1 and V the number of symbols:

    Attributes
    ----------
    xs : array, shape (T, B, V)
        One-hot symbol t of string b for t < L_b - 1, zeros after.
    targets : int64 array, shape (T, B)
        The sampled next symbol, id of symbol t + 1; 0 on padding.
    legal : array, shape (T, B, V)
        Multi-hot: 1.0 for each symbol the grammar allows after symbols 0..t; zeros on padding.
    mask : bool array, shape (T, B)
        True at the L_b - 1 real steps of string b.
    determined : bool array, shape (T, B)
        True at real steps where the grammar allows exactly one next symbol (for a^n b^n: after S and
        from the first b on; for embedded Reber: among others the symbol before the last E).
    """

    xs: Array
    targets: Array
    legal: Array
    mask: Array
    determined: Array


def encode(language: Language, strings: Sequence[str]) -> GrammarBatch:
    """Encode strings of ``language`` for next-symbol prediction (see ``GrammarBatch``).

    Parameters
    ----------
    language : Language
    strings : sequence of str, length B >= 1
        Strings of the language (checked with ``language.accepts``), of any lengths.

    Returns
    -------
    GrammarBatch
    """
    if not isinstance(language, Language):
        raise ValueError(f"language must be a companion.grammars.Language, got {type(language).__name__}")
    if isinstance(strings, str) or not isinstance(strings, Sequence) or not strings:
        raise ValueError(f"strings must be a non-empty list of str, got {strings!r:.60}")
    strings = [language._check_member(string, f"strings[{b}]") for b, string in enumerate(strings)]
    steps = max(len(string) for string in strings) - 1                      # T
    ids = np.zeros((steps + 1, len(strings)), dtype=np.int64)               # (T + 1, B)
    legal = np.zeros((steps, len(strings), language.size))                  # (T, B, V)
    mask = np.zeros((steps, len(strings)), dtype=bool)                      # (T, B)
    for b, string in enumerate(strings):
        ids[: len(string), b] = [language.symbols.index(symbol) for symbol in string]
        legal[: len(string) - 1, b] = language.legal_next(string)
        mask[: len(string) - 1, b] = True
    xs = one_hot(ids[:-1], vocab_size=language.size) * mask[..., None]      # zero the padding
    return GrammarBatch(xs, ids[1:], legal, mask, mask & (legal.sum(axis=-1) == 1))


def entropy_monte_carlo(language: Language, rng: np.random.Generator | int, *, count: int) -> tuple[float, float]:
    r"""The best predictor's cross-entropy per predicted symbol, estimated from ``count`` sampled strings.

    For string i with :math:`Y_i = -\sum_t \log P(s_{t+1} \mid s_{0..t})` (the best predictor's loss
    on it) and :math:`X_i = L_i - 1` predictions, the estimate is the ratio
    :math:`R = \sum_i Y_i / \sum_i X_i` and its standard error the delta method's
    :math:`\sqrt{\sum_i (Y_i - R X_i)^2 / (N (N - 1))} / \bar X`. Compare with ``language.entropy()``.

    Parameters
    ----------
    language : Language
    rng : np.random.Generator or int
        Source of the strings (``language.sample``).
    count : int, keyword-only
        N >= 2, the number of strings.

    Returns
    -------
    estimate : float
        R, in nats per predicted symbol.
    standard_error : float
    """
    if not isinstance(language, Language):
        raise ValueError(f"language must be a companion.grammars.Language, got {type(language).__name__}")
    count = check_positive_int(count, "count")
    if count < 2:
        raise ValueError(f"count must be at least 2 (a standard error needs two strings), got {count}")
    strings = language.sample(rng, count)
    losses = np.array([_string_information(language, string) for string in strings])   # Y, (N,)
    predictions = np.array([len(string) - 1 for string in strings], dtype=np.float64)  # X, (N,)
    ratio = losses.sum() / predictions.sum()
    residuals = losses - ratio * predictions
    error = math.sqrt(residuals @ residuals / (count * (count - 1))) / predictions.mean()
    return float(ratio), float(error)


def _string_information(language: Language, string: str) -> float:
    """-log P(string) as the sum of the best predictor's losses on its next symbols."""
    probs = language.next_probabilities(string)                             # (L - 1, V)
    ids = [language.symbols.index(symbol) for symbol in string[1:]]
    return float(-np.log(probs[np.arange(len(ids)), ids]).sum())
