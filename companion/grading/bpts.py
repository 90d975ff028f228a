"""The grader of the assignment "Backpropagation through structure" (``assignments/source/bpts``).

The student writes, for the recursive network of chapter "Backpropagation through structure" on a binary
tree given as nested tuples (a tuple ``(left, right)`` is a node, an int ``j`` a leaf with token id j),
with every node named by its *path*, the string of ``"L"`` and ``"R"`` steps from the root (``""`` is the
root):

* ``tree_forward(params, tree) -> states``: h_n = W_xh e_j at a leaf, tanh(W_L h_left + W_R h_right + b_h)
  at a node; a dict path -> ``(H,)``;
* ``tree_loss(params, states, labels) -> (loss, direct)``: the softmax cross-entropy averaged over the
  labelled nodes (``labels``: path -> class) and every labelled node's direct gradient
  g_n = W_hy^T (softmax(y_n) - e_c) / |M|, a dict path -> ``(H,)``;
* ``tree_adjoints(params, tree, states, direct) -> adjoints``: backpropagation through structure, every
  node's hbar_n = g_n + W_L^T abar_p (left child) or W_R^T abar_p (right child), a dict path -> ``(H,)``;
* ``tree_gradients(params, tree, states, adjoints) -> grads``: the tied weights' gradients ``W_xh``,
  ``W_L``, ``W_R``, ``b_h``, sums over the nodes.

Each check draws problems of random trees and sizes from its seeds, computes the answer with
``companion.structure`` and compares. A wrong answer raises ``GradingError`` naming the quantity, the first
node where it goes wrong (for the forward pass the lowest wrong node, whose children are right; for the
adjoints the highest, whose parent is right; for a weight's gradient the smallest subtree on which it is
wrong), the problem (seed and sizes), and a known mistake when the answer is one.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import NamedTuple

import numpy as np

from .. import structure
from ..types import Array, Params
from .core import (
    GradingError,
    as_answer,
    as_dict,
    as_tuple,
    call_student,
    check_names,
    is_close,
    other_part_note,
    problem_text,
)

#: the composition's parameters, whose gradients ``check_gradients`` checks
PARAMS = ("W_xh", "W_L", "W_R", "b_h")
#: every parameter of a problem: the composition's and the readout's
ALL_PARAMS = (*PARAMS, "W_hy", "b_y")
#: each gradient's shape in symbols, for messages
SHAPE_TEXT = {"W_xh": "(H, n_in)", "W_L": "(H, H)", "W_R": "(H, H)", "b_h": "(H,)"}
#: each gradient's term at one node, for messages
TERM = {
    "W_xh": "a leaf's copy of W_xh gets hbar_n x_n^T (x_n the one-hot vector of its token)",
    "W_L": "a node's copy of W_L gets abar_n h_left^T, with abar_n = (1 - h_n^2) * hbar_n",
    "W_R": "a node's copy of W_R gets abar_n h_right^T, with abar_n = (1 - h_n^2) * hbar_n",
    "b_h": "a node's copy of b_h gets abar_n = (1 - h_n^2) * hbar_n",
}


class Problem(NamedTuple):
    """One random problem.

    Attributes
    ----------
    params : dict
        ``W_xh`` (H, n_in), ``W_L``, ``W_R`` (H, H), ``b_h`` (H,), ``W_hy`` (V, H), ``b_y`` (V,).
    tree : nested tuples
        Leaves are token ids in ``[0, n_in)``.
    labels : dict
        Path -> class in ``[0, V)``: the labelled nodes of the loss (the root and some others).
    direct : dict
        Path -> ``(H,)``: the direct gradients g_n given to ``tree_adjoints`` (the root and some others).
    """

    params: Params
    tree: object
    labels: dict[str, int]
    direct: dict[str, Array]

    @property
    def sizes(self) -> tuple[int, int, int]:
        """(n_in, H, V)."""
        H, n_in = self.params["W_xh"].shape
        return n_in, H, self.params["W_hy"].shape[0]

    @property
    def text(self) -> str:
        n_in, H, V = self.sizes
        paths = node_paths(self.tree)
        return problem_text(leaves=sum(1 for p in paths if _is_leaf(self.tree, p)),
                            depth=max(len(p) for p in paths), n_in=n_in, H=H, V=V)


# ----- trees and paths --------------------------------------------------------------------------------------
def node_paths(tree: object) -> list[str]:
    """Every node's path, children before parents (left subtree, right subtree, node)."""
    return [_student_path(path) for path in structure.flatten(structure.from_nested(tree), _n_in(tree)).paths]


def _student_path(forest_path: str) -> str:
    """``"root.L.R"`` -> ``"LR"``."""
    return forest_path[len("root"):].replace(".", "")


def _n_in(tree: object) -> int:
    """One more than the largest token id of the tree: enough width for ``structure.flatten``."""
    largest, stack = 0, [tree]
    while stack:
        item = stack.pop()
        if isinstance(item, tuple):
            stack.extend(item)
        else:
            largest = max(largest, int(item))
    return largest + 1


def subtree(tree: object, path: str) -> object:
    """The subtree at ``path``."""
    for step in path:
        tree = tree[0 if step == "L" else 1]
    return tree


def _is_leaf(tree: object, path: str) -> bool:
    return not isinstance(subtree(tree, path), tuple)


def describe(path: str) -> str:
    """The node at ``path`` in words: ``"the root"``, ``"the root's left child"``, ..."""
    side = {"L": "left", "R": "right"}
    if path == "":
        return "the root"
    if len(path) == 1:
        return f"the root's {side[path]} child"
    if len(path) == 2:
        return f"the {side[path[1]]} child of the root's {side[path[0]]} child"
    return f"the node at path {path!r} (root, " + ", ".join(side[step] for step in path) + ")"


def draw_problem(seed: int) -> Problem:
    """A problem drawn from ``seed``: n_in in 2..5, H in 2..5, V in 2..4, a tree of 4..9 leaves of a random
    shape (balanced, left- or right-branching, random splits), labels at the root and at about half the
    other nodes, and direct gradients at the root and at about half the other nodes."""
    rng = np.random.default_rng(seed)
    n_in, H, V, n_leaves = (int(rng.integers(low, high + 1)) for low, high in ((2, 5), (2, 5), (2, 4), (4, 9)))
    shape = ("balanced", "left", "right", "random")[seed % 4]
    tokens = [int(token) for token in rng.integers(0, n_in, size=n_leaves)]
    tree = _nested(structure.shaped_tree([structure.leaf(token) for token in tokens], shape, rng))
    shapes = structure.param_shapes(n_in, H, V)
    params = {key: 0.8 * rng.normal(size=shapes[key]) for key in ALL_PARAMS}
    paths = node_paths(tree)
    labels = {path: int(rng.integers(V)) for path in paths if path == "" or rng.random() < 0.5}
    direct = {path: rng.normal(size=H) for path in paths if path == "" or rng.random() < 0.5}
    return Problem(params, tree, labels, direct)


def _nested(tree: structure.Tree) -> object:
    """A ``structure.Tree`` of token leaves as nested tuples."""
    return tree.x if tree.is_leaf else tuple(_nested(child) for child in tree.children)


# ----- the reference answers, by companion.structure --------------------------------------------------------
class _Layout(NamedTuple):
    """A problem's tree laid out by ``structure.flatten``, with each node's index by path."""

    forest: structure.Forest
    index: dict[str, int]


def _layout(problem: Problem, path: str = "", labels: Mapping[str, int] | None = None) -> _Layout:
    """The subtree at ``path`` as a Forest (paths relative to it), with ``labels`` on its nodes."""
    tree = structure.from_nested(subtree(problem.tree, path))
    for node_path, label in (labels or {}).items():
        node = tree
        for step in node_path:
            node = node.children[0 if step == "L" else 1]
        node.label = label
    forest = structure.flatten(tree, problem.sizes[0])
    return _Layout(forest, {_student_path(p): k for k, p in enumerate(forest.paths)})


def _composition(problem: Problem) -> Params:
    return {key: problem.params[key] for key in PARAMS}


def reference_states(problem: Problem) -> dict[str, Array]:
    """Every node's state h_n, path -> ``(H,)``, by ``structure.forward``."""
    layout = _layout(problem)
    hs = structure.forward(_composition(problem), layout.forest)
    return {path: hs[k] for path, k in layout.index.items()}


def reference_loss(problem: Problem) -> tuple[float, dict[str, Array]]:
    """The loss and every labelled node's direct gradient, path -> ``(H,)``, by ``structure.readout_loss``."""
    layout = _layout(problem, labels=problem.labels)
    hs = structure.forward(_composition(problem), layout.forest)
    readout = {key: problem.params[key] for key in ("W_hy", "b_y")}
    loss, _, dhs = structure.readout_loss(readout, layout.forest, hs)
    return loss, {path: dhs[layout.index[path]] for path in problem.labels}


def reference_adjoints(problem: Problem) -> dict[str, Array]:
    """Every node's adjoint hbar_n for the direct gradients ``problem.direct``, by ``structure.backward``."""
    return _backward(problem, "")[1]


def reference_gradients(problem: Problem, path: str = "") -> Params:
    """The tied weights' gradients summed over the subtree at ``path`` (the whole tree by default), for the
    adjoints of ``reference_adjoints``."""
    return _backward(problem, path)[0]


def _backward(problem: Problem, path: str) -> tuple[Params, dict[str, Array]]:
    """``structure.backward`` on the subtree at ``path``: its root gets its full adjoint as direct gradient,
    so every adjoint below it is the whole tree's."""
    layout = _layout(problem, path)
    composition = _composition(problem)
    hs = structure.forward(composition, layout.forest)
    dhs = np.zeros_like(hs)
    for node_path, gradient in problem.direct.items():
        if node_path.startswith(path) and node_path != path:
            dhs[layout.index[node_path[len(path):]]] = gradient
    dhs[layout.index[""]] = reference_adjoints(problem)[path] if path else problem.direct.get("", 0.0)
    grads, adjoints, _ = structure.backward(composition, layout.forest, hs, dhs)
    return grads, {path + sub: adjoints[k] for sub, k in layout.index.items()}


# ----- the student's answers, checked for type and shape ----------------------------------------------------
def _as_node_dict(value: object, name: str, paths: Iterable[str], H: int) -> dict[str, Array]:
    """A dict path -> ``(H,)`` array with exactly ``paths`` as keys, or a ``GradingError``."""
    __tracebackhide__ = True
    value = as_dict(value, name, list(paths))
    return {path: as_answer(value[path], f"{name}[{path!r}]", (H,), "(H,)") for path in paths}


def student_states(tree_forward: Callable, problem: Problem) -> dict[str, Array]:
    """The student's states on ``problem``, checked."""
    __tracebackhide__ = True
    states = call_student(tree_forward, "tree_forward", problem.params, problem.tree)
    return _as_node_dict(states, "tree_forward's states", node_paths(problem.tree), problem.sizes[1])


def forward_note(tree_forward: Callable | None, seed: int) -> str:
    """What a message says of the student's forward pass: right, wrong, or nothing if not given."""
    return other_part_note(tree_forward, [check_forward], seed, right="; your tree_forward is right",
                           wrong="; your tree_forward is wrong too (this check gives your function the right states)")


# ----- checks -----------------------------------------------------------------------------------------------
def check_forward(tree_forward: Callable, seeds: Iterable[int] = (0, 1, 2)) -> None:
    """Raise ``GradingError`` unless ``tree_forward`` gives every node's state on every seed's problem.

    A wrong state is located at the lowest wrong node: the first, children before parents, whose children
    are right (so the mistake is in that node's own formula).
    """
    __tracebackhide__ = True
    for seed in seeds:
        problem = draw_problem(seed)
        got, expected = student_states(tree_forward, problem), reference_states(problem)
        for path in node_paths(problem.tree):
            if not is_close(got[path], expected[path]):
                raise GradingError(f"the state h of {describe(path)} is wrong{_forward_hint(problem, path, got[path])}"
                                   f", on the problem of seed {seed} {problem.text}")


def _forward_hint(problem: Problem, path: str, got: Array) -> str:
    """Why the state at ``path`` is wrong, given that its children's are right."""
    p = problem.params
    item = subtree(problem.tree, path)
    if not isinstance(item, tuple):
        if is_close(got, np.tanh(p["W_xh"][:, item])):
            return f" (a leaf, token {item}): a leaf is not squashed, h = W_xh x_n is column {item} of W_xh, without tanh"
        return f" (a leaf, token {item}): a leaf's state is W_xh x_n, column {item} of W_xh"
    states = reference_states(problem)
    h_left, h_right = states[path + "L"], states[path + "R"]
    mistakes = {
        "W_L and W_R are swapped: the left child's state goes through W_L": np.tanh(p["W_R"] @ h_left + p["W_L"] @ h_right + p["b_h"]),
        "tanh is missing": p["W_L"] @ h_left + p["W_R"] @ h_right + p["b_h"],
        "the bias b_h is missing": np.tanh(p["W_L"] @ h_left + p["W_R"] @ h_right),
    }
    for mistake, value in mistakes.items():
        if is_close(got, value):
            return f" though both its children's states are right: {mistake}"
    return " though both its children's states are right: look at h = tanh(W_L h_left + W_R h_right + b_h)"


def check_loss(tree_loss: Callable, seeds: Iterable[int] = (0, 1, 2), *, tree_forward: Callable | None = None) -> None:
    """Raise ``GradingError`` unless ``tree_loss`` gives the loss and every labelled node's direct gradient
    (given the right states) on every seed's problem."""
    __tracebackhide__ = True
    for seed in seeds:
        problem = draw_problem(seed)
        expected_loss, expected = reference_loss(problem)
        result = call_student(tree_loss, "tree_loss", problem.params, reference_states(problem), problem.labels)
        loss, direct = as_tuple(result, "tree_loss", 2, "(loss, direct)")
        loss = float(as_answer(loss, "tree_loss's loss", (), "() (a number)"))
        direct = _as_node_dict(direct, "tree_loss's direct", list(problem.labels), problem.sizes[1])
        where = f", on the problem of seed {seed} {problem.text}{forward_note(tree_forward, seed)}"
        for path in sorted(problem.labels, key=lambda p: (len(p), p)):
            if not is_close(direct[path], expected[path]):
                raise GradingError(f"the direct gradient g of {describe(path)} (a labelled node) is wrong"
                                   f"{_loss_hint(direct[path], expected[path], len(problem.labels))}{where}")
        if not is_close(np.array(loss), np.array(expected_loss)):
            raise GradingError(f"the loss is wrong ({loss:.6g} instead of {expected_loss:.6g}) though every g is "
                               f"right: L is the mean over the labelled nodes of -log softmax(y_n)[c_n]{where}")


def _loss_hint(got: Array, expected: Array, M: int) -> str:
    """A known mistake in a direct gradient, or the formula."""
    if M > 1 and is_close(got, M * expected):
        return f": it is |M| = {M} times too large (L is the mean over the {M} labelled nodes)"
    if is_close(got, -expected):
        return ": its sign is flipped (d l_n / d y_n = softmax(y_n) - e_c)"
    return ": g_n = W_hy^T (softmax(y_n) - e_c) / |M|, with y_n = W_hy h_n + b_y"


def check_adjoints(
    tree_adjoints: Callable, seeds: Iterable[int] = (0, 1, 2), *, tree_forward: Callable | None = None
) -> None:
    """Raise ``GradingError`` unless ``tree_adjoints`` gives every node's adjoint hbar_n (given the right
    states and the problem's direct gradients) on every seed's problem.

    A wrong adjoint is located at the highest wrong node: the first, parents before children, whose parent
    is right (so the mistake is in what a parent sends to that child).
    """
    __tracebackhide__ = True
    for seed in seeds:
        problem = draw_problem(seed)
        states = reference_states(problem)
        result = call_student(tree_adjoints, "tree_adjoints", problem.params, problem.tree, states, problem.direct)
        paths = node_paths(problem.tree)
        got = _as_node_dict(result, "tree_adjoints's adjoints", paths, problem.sizes[1])
        expected = reference_adjoints(problem)
        for path in sorted(paths, key=lambda p: (len(p), p)):                    # top-down, left to right
            if not is_close(got[path], expected[path]):
                raise GradingError(f"the adjoint of {describe(path)} is wrong{_adjoint_hint(problem, path, got[path])}"
                                   f", on the problem of seed {seed} {problem.text}{forward_note(tree_forward, seed)}")


def _adjoint_hint(problem: Problem, path: str, got: Array) -> str:
    """Why the adjoint at ``path`` is wrong, given that its parent's is right."""
    g = problem.direct.get(path, np.zeros_like(got))
    if path == "":
        return ": the root has no parent, so its adjoint is its direct gradient g_root (zero if it has none)"
    parent, side = path[:-1], path[-1]
    states, adjoints = reference_states(problem), reference_adjoints(problem)
    h_bar_parent = adjoints[parent]
    a_bar_parent = (1.0 - states[parent] ** 2) * h_bar_parent
    W, other = (problem.params["W_L"], problem.params["W_R"]) if side == "L" else (problem.params["W_R"], problem.params["W_L"])
    name, other_name = ("W_L", "W_R") if side == "L" else ("W_R", "W_L")
    mistakes = {
        f"it got {other_name}^T abar_p, but a {'left' if side == 'L' else 'right'} child gets {name}^T abar_p": g + other.T @ a_bar_parent,
        f"{name} is not transposed: the child gets {name}^T abar_p": g + W @ a_bar_parent,
        "the parent's slope is missing: the child gets W^T abar_p with abar_p = (1 - h_p^2) * hbar_p, not W^T hbar_p": g + W.T @ h_bar_parent,
        "its own direct gradient g_n is missing: hbar_n = g_n + what its parent sends": W.T @ a_bar_parent,
    }
    for mistake, value in mistakes.items():
        if not is_close(value, g + W.T @ a_bar_parent) and is_close(got, value):
            return f"; its parent's is right: {mistake}"
    return (f"; its parent's is right: a {'left' if side == 'L' else 'right'} child's adjoint is "
            f"g_n + {name}^T abar_p, with abar_p = (1 - h_p^2) * hbar_p")


def check_gradients(
    tree_gradients: Callable, names: str | Iterable[str], seeds: Iterable[int] = (0, 1, 2), *,
    tree_adjoints: Callable | None = None,
) -> None:
    """Raise ``GradingError`` unless the gradients ``names`` of ``tree_gradients`` (given the right states and
    adjoints) are right on every seed's problem.

    Parameters
    ----------
    tree_gradients : callable
        The student's ``tree_gradients(params, tree, states, adjoints) -> grads``.
    names : str or iterable of str
        Keys of ``PARAMS``.
    seeds : iterable of int
        One random problem per seed.
    tree_adjoints : callable, optional, keyword-only
        The student's adjoints, only to say in the message whether they are right.

    Notes
    -----
    A wrong gradient is located at the smallest subtree (children before parents) on which it is wrong,
    given that subtree's own states and adjoints: a leaf or a node whose children are leaves means one
    node's term; a larger subtree whose parts are right means the sum over the nodes.
    """
    __tracebackhide__ = True
    names = check_names(names, PARAMS)
    for seed in seeds:
        problem = draw_problem(seed)
        got = _student_gradients(tree_gradients, problem, "")
        expected = reference_gradients(problem)
        for name in names:
            if is_close(got[name], expected[name]):
                continue
            path = _smallest_failing_subtree(tree_gradients, problem, name)
            wrong = _student_gradients(tree_gradients, problem, path)[name]
            note = _adjoints_note(tree_adjoints, seed)
            raise GradingError(f"dL/d{name} is wrong{_gradient_hint(problem, name, path, wrong)}, on the problem of "
                               f"seed {seed} {problem.text}{note}")


def _student_gradients(tree_gradients: Callable, problem: Problem, path: str) -> dict[str, Array]:
    """The student's gradients on the subtree at ``path``, given its right states and adjoints."""
    __tracebackhide__ = True
    states, adjoints = reference_states(problem), reference_adjoints(problem)
    sub = node_paths(subtree(problem.tree, path))
    result = call_student(tree_gradients, "tree_gradients", problem.params, subtree(problem.tree, path),
                          {p: states[path + p] for p in sub}, {p: adjoints[path + p] for p in sub})
    grads = as_dict(result, "tree_gradients's grads", PARAMS)
    shapes = {key: problem.params[key].shape for key in PARAMS}
    return {key: as_answer(grads[key], f"grads[{key!r}]", shapes[key], SHAPE_TEXT[key]) for key in PARAMS}


def _smallest_failing_subtree(tree_gradients: Callable, problem: Problem, name: str) -> str:
    """The path of the smallest subtree, children before parents, on which gradient ``name`` is wrong."""
    for path in node_paths(problem.tree):
        if name != "W_xh" and _is_leaf(problem.tree, path):
            continue                                    # a leaf adds nothing to W_L, W_R or b_h
        if not is_close(_student_gradients(tree_gradients, problem, path)[name], reference_gradients(problem, path)[name]):
            return path
    return ""


def _gradient_hint(problem: Problem, name: str, path: str, got: Array) -> str:
    """Where gradient ``name`` goes wrong, in words, with the term it should add; ``got`` is the student's
    value on the subtree at ``path``, the smallest on which it is wrong."""
    item = subtree(problem.tree, path)
    if not isinstance(item, tuple):
        return f" already on a single leaf ({describe(path)}, alone): {TERM[name]}"
    if name != "W_xh" and not isinstance(item[0], tuple) and not isinstance(item[1], tuple):
        return (f" already on one node with two leaves ({describe(path)} and its children, alone)"
                f"{_one_node_mistake(problem, name, path, got)}: {TERM[name]}")
    count = str(item).count("(") if name != "W_xh" else str(item).count(",") + 1
    nodes = "internal nodes" if name != "W_xh" else "leaves"
    return (f" on the subtree at {describe(path)} ({count} {nodes}), though it is right on each subtree "
            f"below it: the gradient of a tied weight is the sum of every node's term ({TERM[name]})")


def _one_node_mistake(problem: Problem, name: str, path: str, got: Array) -> str:
    """A known mistake in one node's term of gradient ``name`` (not ``W_xh``), or nothing."""
    states, adjoints = reference_states(problem), reference_adjoints(problem)
    h_bar = adjoints[path]
    a_bar = (1.0 - states[path] ** 2) * h_bar
    child = {"W_L": states[path + "L"], "W_R": states[path + "R"]}
    term = (lambda d: d) if name == "b_h" else (lambda d: np.outer(d, child[name]))
    if is_close(got, term(h_bar)):
        return ": it uses hbar_n where the term needs abar_n = (1 - h_n^2) * hbar_n"
    if name != "b_h" and is_close(got, term(a_bar).T):
        return f": it is transposed (row i of dL/d{name} belongs to unit i of a_n)"
    return ""


def _adjoints_note(tree_adjoints: Callable | None, seed: int) -> str:
    """What a message says of the student's adjoints: right, wrong, or nothing if not given."""
    return other_part_note(tree_adjoints, [check_adjoints], seed, right="; your tree_adjoints is right",
                           wrong="; your tree_adjoints is wrong too (this check gives tree_gradients the right adjoints)")
