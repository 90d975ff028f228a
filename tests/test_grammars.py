"""The grammar tasks: generated strings belong to their language, targets follow the grammar, the
encoding pads and masks, and the entropy is right (exact values derived by hand and by propagating the
automaton's probability mass here, independently of the module's linear solve)."""
import math

import numpy as np
import pytest

from companion.grammars import AnBn, AnBnCn, Reber, encode, entropy_monte_carlo

LANGUAGES = [Reber(embedded=False), Reber(), AnBn(), AnBn(3, 7), AnBnCn(), AnBnCn(2, 4)]
IDS = ["reber", "embedded-reber", "anbn", "anbn-3-7", "anbncn", "anbncn-2-4"]

# The Reber grammar's diagram as a table (state, symbol) -> next state, written independently of the module.
DIAGRAM = {(0, "B"): 1, (1, "T"): 2, (1, "P"): 3, (2, "S"): 2, (2, "X"): 4, (3, "T"): 3, (3, "V"): 5,
           (4, "X"): 3, (4, "S"): 6, (5, "P"): 4, (5, "V"): 6, (6, "E"): 7}

# Reber and non-Reber strings from Schraudolph's course notes on the Reber grammar.
REBER_STRINGS = ["BTSSXXTVVE", "BPVVE", "BTXXVPSE", "BPVPXVPXVPXVVE", "BTSXXVPSE"]
NON_REBER_STRINGS = ["BTSSPXSE", "BPTVVB", "BTXXVVSE", "BPVSPSE", "BTSSSE"]


@pytest.mark.parametrize("language", LANGUAGES, ids=IDS)
def test_every_generated_string_is_recognized(language):
    strings = language.sample(0, 400)
    assert all(language.accepts(string) for string in strings)
    assert len(set(strings)) >= 3


def test_reber_recognizer_on_known_strings():
    reber = Reber(embedded=False)
    assert all(reber.accepts(s) for s in REBER_STRINGS)
    assert not any(reber.accepts(s) for s in NON_REBER_STRINGS)


def test_embedded_reber_recognizer_needs_matching_branch_letters():
    embedded = Reber()
    for inner in REBER_STRINGS:
        assert embedded.accepts(f"BT{inner}TE") and embedded.accepts(f"BP{inner}PE")
        assert not embedded.accepts(f"BT{inner}PE") and not embedded.accepts(f"BP{inner}TE")
        assert not embedded.accepts(inner)
    assert not Reber(embedded=False).accepts("BTBPVVETE")


@pytest.mark.parametrize(
    "language, members, others",
    [
        (AnBn(), ["SabT", "SaaabbbT", "S" + "a" * 50 + "b" * 50 + "T"],
         ["ST", "SaabT", "SabbT", "SbaT", "SabTT", "abT", "Sab", "SabcT", "SaTbT", 5]),
        (AnBnCn(), ["SabcT", "SaabbccT"],
         ["SabT", "SaabbcT", "SabbcT", "SacbT", "SaabbcccT", "ScbaT", None]),
    ],
)
def test_counting_recognizers(language, members, others):
    assert all(language.accepts(s) for s in members)
    assert not any(language.accepts(s) for s in others)


def test_reber_strings_are_not_counting_strings_and_back():
    assert not any(AnBn().accepts(s) for s in Reber().sample(1, 50))
    assert not any(Reber().accepts(s) for s in AnBn().sample(1, 50))
    assert not any(AnBnCn().accepts(s) for s in AnBn().sample(2, 50))


def _diagram_legal(string):
    """Legal next symbols of a plain Reber string from the diagram table, shape (L - 1, 7)."""
    state, rows = 0, []
    for symbol in string[:-1]:
        state = DIAGRAM[(state, symbol)]
        rows.append([(state, s) in DIAGRAM for s in "BTPSXVE"])
    return np.array(rows)


def test_reber_legal_sets_follow_the_diagram():
    reber = Reber(embedded=False)
    for string in reber.sample(3, 100):
        np.testing.assert_array_equal(reber.legal_next(string), _diagram_legal(string))


def test_embedded_reber_legal_sets():
    embedded = Reber()
    for string in embedded.sample(4, 100):
        legal, inner = embedded.legal_next(string), string[2:-2]
        np.testing.assert_array_equal(legal[2:-2], _diagram_legal(inner))     # inside the inner string
        assert set(np.flatnonzero(legal[0])) == {1, 2}                        # after B: T or P
        assert np.flatnonzero(legal[-2]).tolist() == ["BTPSXVE".index(string[1])]   # remember the branch
        np.testing.assert_array_equal(embedded.next_probabilities(string) > 0, legal)


@pytest.mark.parametrize("language", LANGUAGES, ids=IDS)
def test_probabilities_are_distributions_on_the_legal_sets(language):
    for string in language.sample(5, 50):
        probs, legal = language.next_probabilities(string), language.legal_next(string)
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-14)
        assert np.all(legal[probs > 0])
        ids = [language.symbols.index(s) for s in string[1:]]
        assert np.all(probs[np.arange(len(ids)), ids] > 0)                    # the sampled symbol is possible


def test_anbn_legal_sets_by_hand():
    #                 S  a  b  T      reading:
    expected = np.array([[0, 1, 0, 0],  # S
                         [0, 1, 1, 0],  # a
                         [0, 1, 1, 0],  # aa
                         [0, 1, 1, 0],  # aaa
                         [0, 0, 1, 0],  # b
                         [0, 0, 1, 0],  # bb
                         [0, 0, 0, 1]], dtype=bool)  # bbb
    np.testing.assert_array_equal(AnBn().legal_next("SaaabbbT"), expected)
    legal = AnBnCn().legal_next("SaabbccT")
    assert [np.flatnonzero(row).tolist() for row in legal] == [[1], [1, 2], [1, 2], [2], [3], [3], [4]]


@pytest.mark.parametrize("language", [AnBn(2, 6), AnBnCn(1, 3)], ids=["anbn", "anbncn"])
def test_counting_probabilities_multiply_to_the_uniform_law_of_n(language):
    k = len(language.symbols) - 2
    for n in range(language.n_min, language.n_max + 1):
        string = "S" + "".join(letter * n for letter in "abc"[:k]) + "T"
        probs = language.next_probabilities(string)
        ids = [language.symbols.index(s) for s in string[1:]]
        np.testing.assert_allclose(np.prod(probs[np.arange(len(ids)), ids]),
                                   1.0 / (language.n_max - language.n_min + 1), rtol=1e-13)


def test_encoding_shapes_padding_and_masks():
    strings = ["SabT", "SaaabbbT", "SaabbT"]
    batch = encode(AnBn(), strings)
    assert batch.xs.shape == (7, 3, 4) and batch.legal.shape == (7, 3, 4)
    assert batch.targets.shape == batch.mask.shape == batch.determined.shape == (7, 3)
    assert batch.targets.dtype == np.int64 and batch.mask.dtype == bool
    np.testing.assert_array_equal(batch.mask.sum(axis=0), [3, 7, 5])
    np.testing.assert_array_equal(batch.xs.sum(axis=-1), batch.mask)         # one-hot on real steps only
    np.testing.assert_array_equal(batch.legal[~batch.mask], 0.0)
    np.testing.assert_array_equal(batch.targets[~batch.mask], 0)
    for b, string in enumerate(strings):
        steps = len(string) - 1
        np.testing.assert_array_equal(batch.xs[:steps, b].argmax(-1), ["SabT".index(s) for s in string[:-1]])
        np.testing.assert_array_equal(batch.targets[:steps, b], ["SabT".index(s) for s in string[1:]])
    # determined: after S, and from the first b on (n - 1 more b's and T)
    np.testing.assert_array_equal(batch.determined[:, 1], [True, False, False, False, True, True, True])
    np.testing.assert_array_equal(batch.determined[:, 0], [True, False, True, False, False, False, False])


def test_encoded_targets_are_legal():
    batch = encode(Reber(), Reber().sample(6, 40))
    t, b = np.nonzero(batch.mask)
    assert np.all(batch.legal[t, b, batch.targets[t, b]] == 1.0)


def _reber_expectations(diagram_arcs, depth=400):
    """E[number of symbols] and E[number of branches] by pushing probability mass through the automaton."""
    mass = {0: 1.0}
    symbols = branches = 0.0
    for _ in range(depth):
        new = {}
        for state, p in mass.items():
            arcs = diagram_arcs[state]
            symbols += p
            branches += p * (len(arcs) > 1)
            for target in arcs:
                new[target] = new.get(target, 0.0) + p / len(arcs)
        mass = {s: p for s, p in new.items() if s in diagram_arcs}
    return symbols, branches


def test_exact_entropy_of_the_reber_grammars():
    arcs = {}
    for (state, _), target in DIAGRAM.items():
        arcs.setdefault(state, []).append(target)
    symbols, branches = _reber_expectations(arcs)
    np.testing.assert_allclose([symbols, branches], [8.0, 6.0], rtol=1e-12)   # derived by hand: 6 inner symbols
    assert Reber(embedded=False).entropy() == pytest.approx(branches * math.log(2) / (symbols - 1), rel=1e-12)
    # embedded: 4 more symbols (B, T/P, T/P, E) and one more branch
    assert Reber().entropy() == pytest.approx(7 * math.log(2) / 11, rel=1e-12)


def test_exact_entropy_of_the_counting_languages():
    assert AnBn().entropy() == pytest.approx(math.log(10) / 12, rel=1e-14)    # E[2n + 1] = 12 for n in 1..10
    assert AnBnCn(2, 4).entropy() == pytest.approx(math.log(3) / 10, rel=1e-14)  # E[3n + 1] = 10
    assert AnBn(4, 4).entropy() == 0.0


@pytest.mark.parametrize("language", [Reber(), Reber(embedded=False), AnBn(), AnBnCn(2, 4)],
                         ids=["embedded-reber", "reber", "anbn", "anbncn"])
def test_monte_carlo_entropy_agrees_with_the_exact_value(language):
    estimate, error = entropy_monte_carlo(language, 7, count=3000)
    assert 0 < error < 0.02 * language.entropy()
    assert abs(estimate - language.entropy()) < 4 * error


def test_monte_carlo_standard_error_is_the_spread_of_estimates():
    runs = [entropy_monte_carlo(AnBn(), seed, count=200) for seed in range(40)]
    estimates, errors = np.array(runs).T
    assert 0.7 < estimates.std(ddof=1) / errors.mean() < 1.4


@pytest.mark.parametrize("language", LANGUAGES, ids=IDS)
def test_sampling_is_reproducible(language):
    assert language.sample(11, 30) == language.sample(np.random.default_rng(11), 30)
    assert language.sample(11, 30) != language.sample(12, 30)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: AnBn(5, 2), "n_max"),
        (lambda: AnBn(0, 2), "n_min"),
        (lambda: AnBnCn(1, 2.5), "n_max"),
        (lambda: Reber(embedded="yes"), "embedded"),
        (lambda: Reber().sample(0, 0), "count"),
        (lambda: Reber().sample("seed", 3), "rng"),
        (lambda: encode(AnBn(), []), "strings"),
        (lambda: encode(AnBn(), "SabT"), "strings"),
        (lambda: encode(AnBn(), ["SabT", "SaabT"]), r"strings\[1\]"),
        (lambda: encode("anbn", ["SabT"]), "language"),
        (lambda: Reber().legal_next("BTSXSE"), "string"),
        (lambda: AnBn(1, 3).next_probabilities("SaaaabbbbT"), r"n in \[1, 3\]"),
        (lambda: entropy_monte_carlo(AnBn(), 0, count=1), "count"),
    ],
)
def test_bad_input_raises(call, match):
    with pytest.raises(ValueError, match=match):
        call()
