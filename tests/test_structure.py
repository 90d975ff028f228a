"""Recursive networks over trees (companion.structure): BPTS against finite differences and against torch
autograd on the same trees, BPTT on a chain as the special case of a left-branching tree, the batch as
the sum of its trees, the arithmetic task's data, and every malformed tree refused by name."""
from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_allclose

from companion import bptt, structure
from companion.cells import Elman
from companion.gradcheck import numerical_gradient, relative_error
from companion.structure import flatten, leaf, node, shaped_tree

SHAPES = ("balanced", "left", "right", "random")
N_IN, H, N_OUT = 3, 4, 3


def random_tree(shape: str, n_leaves: int, rng: np.random.Generator, *, ids: bool = False, labels: str = "every") -> structure.Tree:
    """A tree of ``n_leaves`` leaves (vectors, or ids into N_IN) of the given shape, with random labels."""
    leaves = [leaf(int(rng.integers(N_IN)) if ids else rng.normal(size=N_IN)) for _ in range(n_leaves)]
    tree = shaped_tree(leaves, shape, rng)
    stack = [tree]
    while stack:
        current = stack.pop()
        if labels == "every" or current is tree:
            current.label = int(rng.integers(N_OUT))
        stack.extend(current.children)
    return tree


def batch(seed: int) -> list[structure.Tree]:
    """One tree of every shape (5 to 8 leaves; ids and vectors; labels at every node or the root only)."""
    rng = np.random.default_rng(seed)
    return [random_tree(shape, int(rng.integers(5, 9)), rng, ids=k % 2 == 1, labels=("every", "root")[k // 2 % 2])
            for k, shape in enumerate(SHAPES)]


# ----- the torch reference: a recursion over the Tree objects, written from the module's docstring ----------
def torch_loss_and_grads(params, trees):
    """(loss, grads, {(tree, path): dL/dh}) by torch autograd, float64, node by node and recursively."""
    torch = pytest.importorskip("torch")
    p = {key: torch.tensor(value, dtype=torch.float64, requires_grad=True) for key, value in params.items()}
    states, logits, labels = {}, [], []

    def state(tree, where, path):
        if tree.is_leaf:
            x = torch.zeros(N_IN, dtype=torch.float64)
            if isinstance(tree.x, int):
                x[tree.x] = 1.0
            else:
                x = torch.tensor(tree.x, dtype=torch.float64)
            h = p["W_xh"] @ x                                            # h = W_xh x
        else:
            h_left = state(tree.children[0], where, path + ".L")
            h_right = state(tree.children[1], where, path + ".R")
            h = torch.tanh(p["W_L"] @ h_left + p["W_R"] @ h_right + p["b_h"])
        h.retain_grad()
        states[(where, path)] = h
        if tree.label is not None:
            logits.append(p["W_hy"] @ h + p["b_y"])
            labels.append(tree.label)
        return h

    for index, tree in enumerate(trees):
        state(tree, index, "root")
    loss = torch.nn.functional.cross_entropy(torch.stack(logits), torch.tensor(labels))
    loss.backward()
    grads = {key: value.grad.numpy() for key, value in p.items()}
    return loss.item(), grads, {key: h.grad.numpy() for key, h in states.items()}


@pytest.mark.parametrize("seed", range(3))
def test_bpts_equals_torch_autograd_on_trees_of_every_shape(seed):
    trees = batch(seed)
    forest = flatten(trees, N_IN)
    params = structure.init_params(N_IN, H, N_OUT, seed)
    loss, grads = structure.loss_and_grads(params, forest)
    torch_loss, torch_grads, torch_adjoints = torch_loss_and_grads(params, trees)
    assert_allclose(loss, torch_loss, rtol=1e-12)
    for key in params:
        assert_allclose(grads[key], torch_grads[key], rtol=1e-10, atol=1e-14, err_msg=key)
    # every node's adjoint hbar_n, through its own loss and its ancestors'
    composition, readout = structure.split_params(params)
    hs = structure.forward(composition, forest)
    _, _, dhs = structure.readout_loss(readout, forest, hs)
    _, adjoints, _ = structure.backward(composition, forest, hs, dhs)
    for n in range(forest.n_nodes):
        expected = torch_adjoints[(int(forest.tree_index[n]), forest.paths[n])]
        assert_allclose(adjoints[n], expected, rtol=1e-10, atol=1e-14)


def test_bpts_equals_finite_differences_for_parameters_and_leaf_inputs():
    rng = np.random.default_rng(7)
    trees = [random_tree("random", 6, rng), random_tree("balanced", 5, rng, labels="root")]
    params = structure.init_params(N_IN, H, N_OUT, 3)
    forest = flatten(trees, N_IN)
    _, grads = structure.loss_and_grads(params, forest)
    numeric = numerical_gradient(lambda p: structure.loss_and_grads(p, forest)[0], params)
    errors = {key: relative_error(grads[key], numeric[key]) for key in params}
    assert max(errors.values()) < 1e-7, errors

    # dL/dx of every leaf: perturb the leaves' vectors (a fresh forest for each point)
    leaves = [current for current in _nodes(trees) if current.is_leaf]
    inputs = np.array([current.x for current in leaves])
    composition, readout = structure.split_params(params)

    def loss_at(point):
        for current, x in zip(leaves, point["x"]):
            current.x = x
        forest_x = flatten(trees, N_IN)
        return structure.readout_loss(readout, forest_x, structure.forward(composition, forest_x))[0]

    numeric_x = numerical_gradient(loss_at, {"x": inputs})["x"]
    for current, x in zip(leaves, inputs):
        current.x = x
    hs = structure.forward(composition, forest)
    _, _, dhs = structure.readout_loss(readout, forest, hs)
    _, _, d_inputs = structure.backward(composition, forest, hs, dhs)
    assert relative_error(d_inputs, numeric_x) < 1e-7


def _nodes(trees):
    """Every node of the trees, in post-order, tree after tree (the forest's order)."""
    out = []
    for tree in trees:
        out += structure.post_order(tree)
    return out


def test_a_left_branching_tree_is_the_elman_network_and_bpts_is_bptt():
    """Leaves x_0 .. x_T joined from the left with W_R = I: h_0 = W_xh x_0, h_t = tanh(W_L h_{t-1} + W_xh x_t
    + b_h), the Elman network with W_hh = W_L; BPTS on it is companion.bptt on the Elman cell."""
    T, rng = 7, np.random.default_rng(11)
    xs = rng.normal(size=(T + 1, N_IN))                                  # x_0, x_1, ..., x_T
    tree = shaped_tree([leaf(x) for x in xs], "left")
    forest = flatten(tree, N_IN)
    params = structure.init_params(N_IN, H, None, 5)
    params["W_R"] = np.eye(H)
    steps = np.concatenate(forest.levels)                                # the node of step t = 1 .. T
    assert [len(level) for level in forest.levels] == [1] * T
    assert list(forest.left[steps[1:]]) == list(steps[:-1])             # step t reads step t - 1 on its left

    cell = Elman(N_IN, H)
    cell_params = {"W_xh": params["W_xh"], "W_hh": params["W_L"], "b_h": params["b_h"]}
    h0 = (params["W_xh"] @ xs[0])[None]                                  # (B = 1, H)
    hs_chain, cache = bptt.forward(cell, cell_params, xs[1:, None], h0)
    hs = structure.forward(params, forest)
    assert_allclose(hs[steps], hs_chain[:, 0], rtol=1e-13, atol=1e-15)

    dhs_chain = rng.normal(size=(T, 1, H))                               # a loss at every step ...
    dhs_chain[2] = 0.0                                                   # ... but step 3
    dhs = np.zeros_like(hs)
    dhs[steps] = dhs_chain[:, 0]
    grads, adjoints, d_inputs = structure.backward(params, forest, hs, dhs)
    grads_chain, dxs, dh0 = bptt.backward(cell, cell_params, cache, dhs_chain)
    chain_adjoints = bptt.state_adjoints(cell, cell_params, cache, dhs_chain)   # (T + 1, 1, H): t = 0 .. T

    first = forest.leaves[0]                                             # the leaf x_0 is h_0
    assert_allclose(grads["W_L"], grads_chain["W_hh"], rtol=1e-12, atol=1e-15)
    assert_allclose(grads["b_h"], grads_chain["b_h"], rtol=1e-12, atol=1e-15)
    # the leaf map is read by the T input leaves and by the leaf x_0 that gives h_0
    assert_allclose(grads["W_xh"], grads_chain["W_xh"] + np.outer(dh0[0], xs[0]), rtol=1e-12, atol=1e-15)
    assert_allclose(adjoints[steps], chain_adjoints[1:, 0], rtol=1e-12, atol=1e-15)
    assert_allclose(adjoints[first], dh0[0], rtol=1e-12, atol=1e-15)
    assert_allclose(d_inputs[1:], dxs[:, 0], rtol=1e-12, atol=1e-15)


def test_the_gradient_of_a_batch_is_the_sum_over_its_trees():
    trees = batch(4)
    params = structure.init_params(N_IN, H, None, 2)
    forest = flatten(trees, N_IN)
    hs = structure.forward(params, forest)
    dhs = np.random.default_rng(0).normal(size=hs.shape)
    grads, adjoints, _ = structure.backward(params, forest, hs, dhs)
    total = {key: np.zeros_like(value) for key, value in params.items()}
    for index, tree in enumerate(trees):
        mine = forest.tree_index == index
        single = flatten(tree, N_IN)
        assert_allclose(structure.forward(params, single), hs[mine], rtol=1e-14, atol=1e-15)
        one, one_adjoints, _ = structure.backward(params, single, hs[mine], dhs[mine])
        assert_allclose(one_adjoints, adjoints[mine], rtol=1e-13, atol=1e-15)
        for key in total:
            total[key] += one[key]
    for key in total:
        assert_allclose(grads[key], total[key], rtol=1e-12, atol=1e-14)


def test_the_forest_layout():
    tree = structure.from_nested(((0, 1), (2, (1, 0))))
    forest = flatten([tree, leaf(2)], N_IN)
    assert forest.n_nodes == 10 and forest.n_trees == 2
    assert forest.paths[:9] == ("root.L.L", "root.L.R", "root.L", "root.R.L", "root.R.R.L", "root.R.R.R",
                                "root.R.R", "root.R", "root")
    assert list(forest.roots) == [8, 9] and list(forest.tree_index) == [0] * 9 + [1]
    assert [list(level) for level in forest.levels] == [[2, 6], [7], [8]]
    assert list(forest.depth) == [2, 2, 1, 2, 3, 3, 2, 1, 0, 0]
    assert list(forest.parent) == [2, 2, 8, 7, 6, 6, 7, 8, -1, -1]
    assert_allclose(forest.inputs[0], [1.0, 0.0, 0.0])                   # an id is its one-hot vector
    for level in forest.levels:                                          # children come in earlier levels
        assert np.all(forest.left[level] < level) and np.all(forest.right[level] < level)


def test_shapes_of_trees():
    leaves = [leaf(k % N_IN) for k in range(8)]
    depth = {shape: flatten(shaped_tree(leaves, shape, 0), N_IN).depth.max() for shape in SHAPES}
    assert depth["balanced"] == 3 and depth["left"] == depth["right"] == 7
    left = flatten(shaped_tree(leaves, "left"), N_IN)
    assert left.paths[left.leaves[0]] == "root" + ".L" * 7               # the first leaf is deepest


def test_arithmetic_trees_hold_their_values():
    vocabulary = structure.arithmetic_vocabulary(7, "+-*")
    trees = structure.arithmetic_trees(200, 0, modulus=7, depths=(0, 1, 2, 3), operators="+-*")
    assert trees[0].label is not None
    for tree in trees:
        text = structure.expression_text(tree, vocabulary)
        assert tree.label == eval(text) % 7                               # Python's % is in [0, 7)
        check_subexpressions(tree, vocabulary)
    again = structure.arithmetic_trees(200, 0, modulus=7, depths=(0, 1, 2, 3), operators="+-*")
    assert [structure.expression_text(t, vocabulary) for t in again] == [structure.expression_text(t, vocabulary) for t in trees]
    root_only = flatten(structure.arithmetic_trees(50, 1, labels="root"), 7)
    assert set(np.flatnonzero(root_only.labels >= 0)) == set(root_only.roots)
    depths = flatten(structure.arithmetic_trees(300, 2, depths=(3,)), 7).depth.max()
    assert depths >= 6                                                    # a depth-3 expression: up to 6 edges


def check_subexpressions(tree, vocabulary):
    """Every subexpression's node carries its value; the operators and the (op b) nodes carry none."""
    if tree.is_leaf:
        assert tree.label == tree.x
        return
    left, pending = tree.children
    assert pending.label is None and pending.children[0].label is None
    assert tree.label == eval(structure.expression_text(tree, vocabulary)) % len([v for v in vocabulary if v.isdigit()])
    check_subexpressions(left, vocabulary)
    check_subexpressions(pending.children[1], vocabulary)


def test_predict_and_training_lower_the_loss():
    trees = structure.arithmetic_trees(64, 3, modulus=3, depths=(1,))
    forest = flatten(trees, 5)
    params = structure.init_params(5, 8, 3, 0)
    first, _ = structure.loss_and_grads(params, forest)
    for _ in range(100):
        loss, grads = structure.loss_and_grads(params, forest)
        params = {key: params[key] - 0.5 * grads[key] for key in params}
    assert loss < 0.8 * first
    assert structure.predict(params, forest).shape == (64,)


# ----- bad input -------------------------------------------------------------------------------------------
def _cycle():
    a = node(leaf(0), leaf(1))
    b = node(a, leaf(2))
    a.children[1] = b                                                   # a is its own descendant
    return b


def _shared():
    a = node(leaf(0), leaf(1))
    return node(a, node(leaf(2), a))


@pytest.mark.parametrize("tree, message", [
    (None, r"tree is empty \(None\)"),
    (structure.Tree(), r"the leaf at root of tree has no input x"),
    (structure.Tree([leaf(0)]), r"the node at root of tree has 1 child; a node of a binary tree has none \(a leaf\) or two"),
    (node(structure.Tree([leaf(0), leaf(1), leaf(2)]), leaf(0)), r"the node at root.L of tree has 3 children"),
    (_cycle(), r"tree has a cycle: the node at root is its own descendant at root.L.R"),
    (_shared(), r"tree is not a tree: the node at root.R.R is also the child at root.L; a node may have only one parent"),
    (node(leaf(0), node(leaf(1), leaf(None))), r"the leaf at root.R.R of tree has no input x"),
    (node(leaf(np.ones(4)), leaf(0)), r"the input of the leaf at root.L of tree has shape \(4,\); a vector input must have shape \(n_in,\) = \(3,\)"),
    (node(leaf(0), leaf(3)), r"the input id 3 of the leaf at root.R of tree must lie in \[0, n_in\) = \[0, 3\)"),
    (node(leaf(0), leaf(np.array([1.0, np.nan, 0.0]))), r"the input of the leaf at root.R of tree contains 1 non-finite"),
    (node(leaf(0), "x"), r"the right child of the node at root of tree must be a Tree, got str"),
    (structure.Tree([leaf(0), leaf(1)], x=0), r"the node at root of tree has children and an input x"),
    (node(leaf(0), leaf(1), label=-1), r"the label of the node at root of tree must be None or a non-negative integer"),
    ((0, 1), r"tree must be a Tree"),
])
def test_a_malformed_tree_is_refused_by_name(tree, message):
    with pytest.raises(ValueError, match=message):
        structure.check_tree(tree, N_IN)
    if isinstance(tree, structure.Tree):                                 # flatten checks every tree it lays out
        with pytest.raises(ValueError, match=message):
            flatten(tree, N_IN)


def test_empty_input_is_refused():
    with pytest.raises(ValueError, match=r"trees must be a Tree or a non-empty list of Trees"):
        flatten([], N_IN)
    with pytest.raises(ValueError, match=r"trees\[1\] is empty \(None\)"):
        flatten([leaf(0), None], N_IN)
    with pytest.raises(ValueError, match=r"the tree is empty at root"):
        structure.from_nested(())
    with pytest.raises(ValueError, match=r"the tree is empty at root.R"):
        structure.from_nested((1, ()))
    with pytest.raises(ValueError, match=r"leaves must hold at least one leaf"):
        shaped_tree([], "balanced")


def test_nested_tuples_are_checked():
    cyclic = [0, 1]
    cyclic[1] = cyclic
    with pytest.raises(ValueError, match=r"the nested tree has a cycle: the tuple at root.R contains itself"):
        structure.from_nested(cyclic)
    with pytest.raises(ValueError, match=r"the node at root.R of tree has 3 children"):
        structure.check_tree(structure.from_nested((0, (1, 2, 0))), N_IN)
    shared = (0, 1)                                                     # a repeated tuple is a value: two copies
    forest = flatten(structure.from_nested((shared, shared)), N_IN)
    assert forest.n_nodes == 7


def test_bad_parameters_gradients_and_labels_are_refused():
    forest = flatten(node(leaf(0, label=1), leaf(1)), N_IN)
    params = structure.init_params(N_IN, H, N_OUT, 0)
    composition, readout = structure.split_params(params)
    with pytest.raises(ValueError, match=r"params must be a dict with exactly the keys"):
        structure.split_params(composition)
    with pytest.raises(ValueError, match=r"params\['W_xh'\] must have shape \(4, 3\), got \(4, 2\)"):
        structure.forward({**composition, "W_xh": np.ones((H, 2))}, forest)
    with pytest.raises(ValueError, match=r"params\['W_L'\] must have shape \(H, H\)"):
        structure.forward({**composition, "W_L": np.ones((H, 2))}, forest)
    with pytest.raises(ValueError, match=r"forest must be a Forest"):
        structure.forward(composition, [leaf(0)])
    hs = structure.forward(composition, forest)
    with pytest.raises(ValueError, match=r"dhs must have shape \(N, H\) = \(3, 4\), got \(2, 4\)"):
        structure.backward(composition, forest, hs, np.zeros((2, H)))
    with pytest.raises(ValueError, match=r"no node of the trees has a label"):
        structure.loss_and_grads(params, flatten(node(leaf(0), leaf(1)), N_IN))
    with pytest.raises(ValueError, match=r"the label 5 of the node at root.L of tree 0 must lie in \[0, n_out\) = \[0, 3\)"):
        structure.loss_and_grads(params, flatten(node(leaf(0, label=5), leaf(1)), N_IN))
    with pytest.raises(ValueError, match=r"shape must be 'balanced', 'left', 'right' or 'random'"):
        shaped_tree([leaf(0)], "zigzag")
    with pytest.raises(ValueError, match=r"operators must be distinct characters"):
        structure.arithmetic_vocabulary(5, "+/")
    with pytest.raises(ValueError, match=r"depths must be a non-empty list of non-negative integers"):
        structure.arithmetic_trees(3, 0, depths=(-1,))
