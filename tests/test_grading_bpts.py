"""The grader of the assignment "Backpropagation through structure" (companion.grading.bpts): a right
implementation passes, every seeded mistake fails with a message that locates it."""
from __future__ import annotations

import numpy as np
import pytest

from companion.grading import GradingError
from companion.grading import bpts as grade


# ----- an independent implementation of the assignment, with optional seeded mistakes -----------------------
def make_forward(*, swap=False, leaf_tanh=False):
    def tree_forward(params, tree):
        states = {}

        def walk(item, path):
            if not isinstance(item, tuple):
                h = params["W_xh"][:, item]
                states[path] = np.tanh(h) if leaf_tanh else h
                return states[path]
            left, right = walk(item[0], path + "L"), walk(item[1], path + "R")
            if swap:
                left, right = right, left
            states[path] = np.tanh(params["W_L"] @ left + params["W_R"] @ right + params["b_h"])
            return states[path]

        walk(tree, "")
        return states
    return tree_forward


def make_loss(*, summed=False):
    def tree_loss(params, states, labels):
        M = 1 if summed else len(labels)
        loss, direct = 0.0, {}
        for path, c in labels.items():
            y = params["W_hy"] @ states[path] + params["b_y"]
            p = np.exp(y - y.max())
            p /= p.sum()
            loss -= np.log(p[c]) / len(labels)
            p[c] -= 1.0
            direct[path] = params["W_hy"].T @ p / M
        return loss, direct
    return tree_loss


def make_adjoints(*, swap=False, no_slope=False, no_direct_below_root=False, untransposed=False):
    def tree_adjoints(params, tree, states, direct):
        adjoints = {}

        def walk(item, path, from_parent):
            g = direct.get(path, 0.0)
            if no_direct_below_root and path:
                g = 0.0
            adjoints[path] = from_parent + g
            if not isinstance(item, tuple):
                return
            a_bar = adjoints[path] if no_slope else (1 - states[path] ** 2) * adjoints[path]
            W_left, W_right = (params["W_R"], params["W_L"]) if swap else (params["W_L"], params["W_R"])
            if untransposed:
                walk(item[0], path + "L", W_left @ a_bar)
                walk(item[1], path + "R", W_right @ a_bar)
            else:
                walk(item[0], path + "L", W_left.T @ a_bar)
                walk(item[1], path + "R", W_right.T @ a_bar)

        walk(tree, "", np.zeros(params["W_L"].shape[0]))
        return adjoints
    return tree_adjoints


def make_gradients(*, overwrite=False, no_slope=False, transposed=False):
    def tree_gradients(params, tree, states, adjoints):
        grads = {key: np.zeros_like(params[key]) for key in ("W_xh", "W_L", "W_R", "b_h")}

        def add(key, value):
            if overwrite:
                grads[key] = value
            else:
                grads[key] = grads[key] + value

        def walk(item, path):
            if not isinstance(item, tuple):
                add("W_xh", np.outer(adjoints[path], np.eye(params["W_xh"].shape[1])[item]))
                return
            a_bar = adjoints[path] if no_slope else (1 - states[path] ** 2) * adjoints[path]
            left, right = states[path + "L"], states[path + "R"]
            add("W_L", np.outer(left, a_bar) if transposed else np.outer(a_bar, left))
            add("W_R", np.outer(a_bar, right))
            add("b_h", a_bar)
            walk(item[0], path + "L")
            walk(item[1], path + "R")

        walk(tree, "")
        return grads
    return tree_gradients


# ----- the right implementation passes ----------------------------------------------------------------------
def test_a_right_implementation_passes_on_many_problems():
    seeds = range(20)
    grade.check_forward(make_forward(), seeds)
    grade.check_loss(make_loss(), seeds, tree_forward=make_forward())
    grade.check_adjoints(make_adjoints(), seeds, tree_forward=make_forward())
    grade.check_gradients(make_gradients(), grade.PARAMS, seeds, tree_adjoints=make_adjoints())


def test_the_problems_are_varied():
    problems = [grade.draw_problem(seed) for seed in range(20)]
    assert len({p.text for p in problems}) >= 15
    assert {len(max(grade.node_paths(p.tree), key=len)) for p in problems} >= {3, 5, 7}
    assert all("" in p.labels and "" in p.direct for p in problems)
    assert any(len(p.labels) > 2 and len(p.direct) > 2 for p in problems)


def test_paths_are_described_in_words():
    assert grade.describe("") == "the root"
    assert grade.describe("L") == "the root's left child"
    assert grade.describe("LR") == "the right child of the root's left child"
    assert grade.describe("RLL") == "the node at path 'RLL' (root, right, left, left)"
    assert grade.node_paths(((0, 1), 2)) == ["LL", "LR", "L", "R", ""]


# ----- each seeded mistake is located -----------------------------------------------------------------------
def test_a_swapped_composition_is_found_at_the_lowest_node():
    with pytest.raises(GradingError, match=r"the state h of .* is wrong though both its children's states are right: "
                                           r"W_L and W_R are swapped.* seed 0"):
        grade.check_forward(make_forward(swap=True))


def test_a_squashed_leaf_is_named():
    with pytest.raises(GradingError, match=r"the state h of .* \(a leaf, token \d\): a leaf is not squashed"):
        grade.check_forward(make_forward(leaf_tanh=True))


def test_a_summed_loss_is_named():
    with pytest.raises(GradingError, match=r"the direct gradient g of .* \(a labelled node\) is wrong: it is \|M\| = \d "
                                           r"times too large .*your tree_forward is right"):
        grade.check_loss(make_loss(summed=True), tree_forward=make_forward())


def test_a_swapped_adjoint_is_located_at_the_root_child():
    with pytest.raises(GradingError, match=r"the adjoint of the root's left child is wrong; its parent's is right: "
                                           r"it got W_R\^T abar_p, but a left child gets W_L\^T abar_p"):
        grade.check_adjoints(make_adjoints(swap=True))


def test_a_missing_slope_in_the_adjoints_is_named():
    with pytest.raises(GradingError, match=r"its parent's is right: the parent's slope is missing"):
        grade.check_adjoints(make_adjoints(no_slope=True))


def test_an_untransposed_weight_is_named():
    with pytest.raises(GradingError, match=r"its parent's is right: W_L is not transposed"):
        grade.check_adjoints(make_adjoints(untransposed=True))


def test_a_missing_direct_gradient_below_the_root_is_named():
    with pytest.raises(GradingError, match=r"its own direct gradient g_n is missing.*your tree_forward is wrong too"):
        grade.check_adjoints(make_adjoints(no_direct_below_root=True), tree_forward=make_forward(swap=True))


def test_an_overwritten_sum_is_located_above_the_first_node():
    wrong = make_gradients(overwrite=True)
    with pytest.raises(GradingError, match=r"dL/dW_L is wrong on the subtree at .* though it is right on each subtree "
                                           r"below it: the gradient of a tied weight is the sum"):
        grade.check_gradients(wrong, "W_L")
    with pytest.raises(GradingError, match=r"dL/dW_xh is wrong on the subtree at .* \(2 leaves\), though it is right on "
                                           r"each subtree below it"):
        grade.check_gradients(wrong, "W_xh")


def test_a_missing_slope_in_the_gradients_is_located_at_one_node():
    with pytest.raises(GradingError, match=r"dL/db_h is wrong already on one node with two leaves .*: it uses hbar_n "
                                           r"where the term needs abar_n.*your tree_adjoints is right"):
        grade.check_gradients(make_gradients(no_slope=True), ["W_xh", "b_h"], tree_adjoints=make_adjoints())
    grade.check_gradients(make_gradients(no_slope=True), "W_xh")


def test_a_transposed_outer_product_fails_only_its_own_weight():
    with pytest.raises(GradingError, match=r"dL/dW_L is wrong already on one node with two leaves .*: it is transposed"):
        grade.check_gradients(make_gradients(transposed=True), ["W_L", "W_R"])
    grade.check_gradients(make_gradients(transposed=True), ["W_R", "b_h", "W_xh"])


# ----- blank functions, wrong types and shapes --------------------------------------------------------------
def _not_implemented(*args):
    raise NotImplementedError()


@pytest.mark.parametrize("check, message", [
    (lambda f: grade.check_forward(f), "tree_forward is not implemented yet: it raised NotImplementedError"),
    (lambda f: grade.check_loss(f), "tree_loss is not implemented yet"),
    (lambda f: grade.check_adjoints(f), "tree_adjoints is not implemented yet"),
    (lambda f: grade.check_gradients(f, "W_L"), "tree_gradients is not implemented yet"),
])
def test_a_blank_function_gets_a_message(check, message):
    with pytest.raises(GradingError, match=message):
        check(_not_implemented)


def test_wrong_types_keys_and_shapes_get_messages():
    with pytest.raises(GradingError, match=r"tree_forward's states must be a dict with keys"):
        grade.check_forward(lambda params, tree: [1, 2])
    with pytest.raises(GradingError, match=r"tree_forward's states must have exactly the keys .* missing \[''\]"):
        grade.check_forward(lambda params, tree: {k: v for k, v in make_forward()(params, tree).items() if k})
    with pytest.raises(GradingError, match=r"tree_forward's states\['\w*'\] must have shape \(H,\)"):
        grade.check_forward(lambda params, tree: {k: np.append(v, 0.0) for k, v in make_forward()(params, tree).items()})
    with pytest.raises(GradingError, match=r"tree_loss must return 2 values \(loss, direct\)"):
        grade.check_loss(lambda params, states, labels: 1.0)
    with pytest.raises(GradingError, match=r"tree_adjoints's adjoints\['.*'\] contains NaN"):
        grade.check_adjoints(lambda params, tree, states, direct: {k: v * np.nan for k, v in states.items()})
    with pytest.raises(GradingError, match=r"grads\['W_xh'\] must have shape \(H, n_in\)"):
        grade.check_gradients(lambda *args: {**make_gradients()(*args), "W_xh": np.zeros(2)}, "W_xh")
    with pytest.raises(ValueError, match=r"names must be among"):
        grade.check_gradients(make_gradients(), "W_hh")


def test_a_wrong_loss_with_right_direct_gradients_is_named():
    def doubled(params, states, labels):
        loss, direct = make_loss()(params, states, labels)
        return 2 * loss, direct
    with pytest.raises(GradingError, match=r"the loss is wrong .* though every g is right"):
        grade.check_loss(doubled)
