"""Recursive networks over binary trees, trained by backpropagation through structure (BPTS).

A recursive network (Pollack 1990; Goller & Küchler 1996) reads a tree bottom-up and applies the same
composition function at every internal node. In the book's column-vector notation (chapter
"Backpropagation through structure")::

    leaf n:           h_n = W_xh x_n
    internal node n:  a_n = W_L h_left(n) + W_R h_right(n) + b_h,    h_n = tanh(a_n)

with one ``W_xh`` (the leaf map), ``W_L``, ``W_R`` and ``b_h`` shared by every node of every tree. A leaf's
input x_n is a vector of width n_in, or an integer id, which stands for the one-hot vector e_id, so that
``W_xh e_id`` is column ``id`` of ``W_xh``: an embedding. A loss reads some nodes (the root, or every node)
through a softmax readout y_n = W_hy h_n + b_y.

The unrolled graph of the network is the tree itself. Backpropagation through structure walks it top-down,
parents before children: the adjoint of a node is its direct gradient plus what its parent sends it,

    hbar_n = dl_n/dh_n + W_L^T abar_p   (n the left child of p)    or    ... + W_R^T abar_p   (right child),
    abar_n = tanh'(a_n) * hbar_n,

and the gradient of each tied weight is the sum over the nodes of the gradients of its per-node copies:
``dW_L = sum_n abar_n h_left(n)^T``, ``dW_R = sum_n abar_n h_right(n)^T``, ``db_h = sum_n abar_n``,
``dW_xh = sum_leaves hbar_n x_n^T``.

**The chain is a left-branching tree.** With ``W_R = I``, the left-branching tree over the leaves
x_0, x_1, ..., x_T (the node of step t has the node of step t - 1 on its left and the leaf x_t on its right)
computes h_t = tanh(W_L h_{t-1} + W_xh x_t + b_h) from h_0 = W_xh x_0: the Elman network with
``W_hh = W_L``. Its BPTS is BPTT (``tests/test_structure.py`` checks it against ``companion.bptt``).

**Layout.** Trees are ``Tree`` objects (``leaf`` and ``node`` build them; ``from_nested`` converts nested
tuples). ``flatten`` checks a list of trees and lays them out as one ``Forest`` of N nodes in post-order
(children before their parent, tree after tree), with the internal nodes grouped by height, so that
``forward`` and ``backward`` handle every node of one height, across all the trees of a batch, with one
matrix product. The states of all nodes are the rows of one ``(N, H)`` array.
"""
from __future__ import annotations

import math
import reprlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .losses import softmax_cross_entropy
from .readout import readout_backward, readout_forward
from .types import Array, Params
from .validation import as_float_array, as_rng, check_params, check_positive_int, check_shape

#: the keys of the composition's parameters: the leaf map, the left and right weights, the bias
COMPOSITION_KEYS = ("W_xh", "W_L", "W_R", "b_h")
#: the keys of the softmax readout's parameters
READOUT_KEYS = ("W_hy", "b_y")


# ----- trees ----------------------------------------------------------------------------------------------
class Tree:
    """A node of a binary tree, with the subtree below it.

    Build trees with :func:`leaf` and :func:`node`; :func:`check_tree` says what is wrong with a malformed
    one, and :func:`flatten` checks before it lays trees out.

    Attributes
    ----------
    children : list of Tree
        ``[]`` for a leaf, ``[left, right]`` for an internal node.
    x : array of shape (n_in,), int, or None
        A leaf's input: a vector, or an integer id in ``[0, n_in)`` standing for the one-hot vector.
        ``None`` for an internal node.
    label : int or None
        The class the loss asks for at this node (read through the softmax readout), or ``None``.
    """

    __slots__ = ("children", "x", "label")

    def __init__(self, children: Sequence[Tree] = (), x: object = None, label: int | None = None):
        self.children = list(children)
        self.x = x
        self.label = label

    @property
    def is_leaf(self) -> bool:
        """Whether the node has no children."""
        return not self.children

    @reprlib.recursive_repr("<cycle>")
    def __repr__(self) -> str:
        label = "" if self.label is None else f", label={self.label!r}"
        if self.is_leaf:
            x = self.x if isinstance(self.x, (int, np.integer)) else np.asarray(self.x).round(4).tolist()
            return f"leaf({x!r}{label})"
        return "node(" + ", ".join(repr(child) for child in self.children) + label + ")"


def leaf(x: object, label: int | None = None) -> Tree:
    """A leaf with input ``x`` (a vector ``(n_in,)`` or an integer id) and an optional class ``label``."""
    return Tree((), x, label)


def node(left: Tree, right: Tree, label: int | None = None) -> Tree:
    """An internal node with two children and an optional class ``label``."""
    return Tree((left, right), None, label)


def from_nested(nested: object) -> Tree:
    """A ``Tree`` from nested tuples: a tuple ``(left, right)`` is a node, an int id or a 1-D array a leaf.

    ``from_nested(((3, 5), 2))`` is ``node(node(leaf(3), leaf(5)), leaf(2))``. The result has no labels.
    Raises ``ValueError`` for an empty tuple anywhere and for a list that contains itself (a cycle);
    :func:`check_tree` checks the rest (two children per node, the leaves' inputs).
    """
    root = _from_nested_node(nested, "root")
    stack = [(root, nested, "root", frozenset())]    # iterative: a deep chain cannot hit the recursion limit
    while stack:
        tree, item, path, ancestors = stack.pop()
        if not isinstance(item, (tuple, list)):
            continue
        if id(item) in ancestors:
            raise ValueError(f"the nested tree has a cycle: the tuple at {path} contains itself")
        paths = [f"{path}.L", f"{path}.R"] if len(item) == 2 else [f"{path}[{k}]" for k in range(len(item))]
        tree.children = [_from_nested_node(sub, sub_path) for sub, sub_path in zip(item, paths)]
        stack.extend((child, sub, sub_path, ancestors | {id(item)})
                     for child, sub, sub_path in zip(tree.children, item, paths))
    return root


def _from_nested_node(item: object, path: str) -> Tree:
    """One node of ``from_nested``: an internal node (children filled in later) or a leaf."""
    if isinstance(item, (tuple, list)):
        if len(item) == 0:
            raise ValueError(f"the tree is empty at {path}: () has no leaf; a tree has at least one leaf")
        return Tree()
    return leaf(item)


def check_tree(tree: object, n_in: int, *, name: str = "tree") -> None:
    """Raise ``ValueError`` naming the first thing wrong with ``tree``, with the path of the node.

    Paths start at ``root``; ``.L`` and ``.R`` step to the left and the right child, so ``root.L.R`` is the
    right child of the root's left child.

    Parameters
    ----------
    tree : Tree
        The root of the tree.
    n_in : int
        The width of the leaves' inputs (an id must lie in ``[0, n_in)``).
    name : str, keyword-only
        What to call the tree in the message (``"trees[3]"``).

    Notes
    -----
    A tree is malformed when it is empty (``None``), a node has other than 0 or 2 children, a child is not
    a ``Tree``, a node is reached twice (a cycle, or a node shared by two parents), a leaf has no input or
    an input of the wrong width or id, an internal node has an input, or a label is not a non-negative
    integer.
    """
    n_in = check_positive_int(n_in, "n_in")
    if tree is None:
        raise ValueError(f"{name} is empty (None); a tree has at least one leaf")
    if not isinstance(tree, Tree):
        raise ValueError(f"{name} must be a Tree (build it with structure.leaf and structure.node), got {type(tree).__name__}")
    first_path: dict[int, str] = {}                    # id of every node reached -> the path it was reached by
    stack = [(tree, "root")]
    while stack:
        current, path = stack.pop()
        if id(current) in first_path:
            _refuse_revisit(name, first_path[id(current)], path)
        first_path[id(current)] = path
        _check_node(current, path, n_in, name)
        for side, child in zip("LR", current.children):
            if not isinstance(child, Tree):
                raise ValueError(f"the {'left' if side == 'L' else 'right'} child of the node at {path} of {name} "
                                 f"must be a Tree, got {type(child).__name__}")
            stack.append((child, f"{path}.{side}"))


def _refuse_revisit(name: str, first: str, again: str) -> None:
    """The error for a node reached a second time: a cycle if it is an ancestor of itself, else shared."""
    if again.startswith(first + "."):
        raise ValueError(f"{name} has a cycle: the node at {first} is its own descendant at {again}")
    raise ValueError(f"{name} is not a tree: the node at {first} is also the child at {again}; a node may have "
                     "only one parent (build a separate copy of a repeated subtree)")


def _check_node(current: Tree, path: str, n_in: int, name: str) -> None:
    """Check one node's number of children, its input (leaves only) and its label."""
    where = f"the node at {path} of {name}"
    count = len(current.children)
    if count not in (0, 2):
        raise ValueError(f"{where} has {count} child{'ren' if count != 1 else ''}; a node of a binary tree has "
                         "none (a leaf) or two")
    if count == 2 and current.x is not None:
        raise ValueError(f"{where} has children and an input x; only leaves carry inputs")
    if count == 0:
        _leaf_input(current.x, n_in, f"the leaf at {path} of {name}")
    label = current.label
    if label is not None and (isinstance(label, (bool, np.bool_)) or not isinstance(label, (int, np.integer)) or label < 0):
        raise ValueError(f"the label of {where} must be None or a non-negative integer class id, got {label!r}")


def _leaf_input(x: object, n_in: int, where: str) -> Array:
    """A leaf's input as a float64 row ``(n_in,)``: the vector itself, or the one-hot vector of an id."""
    if x is None:
        raise ValueError(f"{where} has no input x; give a vector of width n_in = {n_in} or an integer id in [0, {n_in})")
    if isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_)):
        if not 0 <= x < n_in:
            raise ValueError(f"the input id {x} of {where} must lie in [0, n_in) = [0, {n_in})")
        return np.eye(n_in)[int(x)]
    vector = as_float_array(x, f"the input of {where}")
    if vector.shape != (n_in,):
        raise ValueError(f"the input of {where} has shape {vector.shape}; a vector input must have shape "
                         f"(n_in,) = ({n_in},)")
    return vector.astype(np.float64)


def shaped_tree(leaves: Sequence[Tree], shape: str, rng: np.random.Generator | int | None = None) -> Tree:
    """Join ``leaves`` (in order, left to right) into one binary tree of the given shape.

    Parameters
    ----------
    leaves : sequence of Tree
        At least one; used as they are (not copied).
    shape : {"balanced", "left", "right", "random"}
        ``"left"``: each node has the tree so far on its left and the next leaf on its right (a chain read
        from the first leaf); ``"right"``: the mirror image; ``"balanced"``: split in the middle, recursively;
        ``"random"``: split at a uniformly drawn point, recursively.
    rng : np.random.Generator or int, optional
        Only for ``"random"``.
    """
    leaves = list(leaves)
    if not leaves:
        raise ValueError("leaves must hold at least one leaf; an empty tree has none")
    if shape not in ("balanced", "left", "right", "random"):
        raise ValueError(f"shape must be 'balanced', 'left', 'right' or 'random', got {shape!r}")
    if shape == "left":
        tree = leaves[0]
        for item in leaves[1:]:
            tree = node(tree, item)
        return tree
    if shape == "right":
        tree = leaves[-1]
        for item in reversed(leaves[:-1]):
            tree = node(item, tree)
        return tree
    generator = as_rng(rng) if shape == "random" else None
    return _split(leaves, generator)


def _split(leaves: list[Tree], rng: np.random.Generator | None) -> Tree:
    """Join leaves by splitting them in the middle (``rng`` None) or at a random point."""
    if len(leaves) == 1:
        return leaves[0]
    cut = len(leaves) // 2 if rng is None else int(rng.integers(1, len(leaves)))
    return node(_split(leaves[:cut], rng), _split(leaves[cut:], rng))


# ----- a batch of trees, laid out for the network ---------------------------------------------------------
@dataclass(frozen=True)
class Forest:
    """One or more trees laid out as N nodes in post-order (children before parents), tree after tree.

    Attributes
    ----------
    n_in : int
        The width of the leaves' inputs.
    left, right : int arrays, shape (N,)
        The index of each node's left and right child; -1 for a leaf.
    parent : int array, shape (N,)
        The index of each node's parent; -1 for a root.
    leaves : int array, shape (n_leaves,)
        The indices of the leaves, in order.
    inputs : array, shape (n_leaves, n_in)
        ``inputs[k]`` is the input x of leaf ``leaves[k]`` (the one-hot vector for an id), float64.
    levels : tuple of int arrays
        The internal nodes grouped by height: ``levels[0]`` holds the nodes whose children are leaves
        (height 1), ``levels[k]`` those of height k + 1. A node's children lie in earlier levels.
    roots : int array, shape (n_trees,)
        The index of each tree's root.
    labels : int array, shape (N,)
        Each node's class, -1 where it has none.
    depth : int array, shape (N,)
        Each node's distance from its root, in edges (0 at the roots).
    height : int array, shape (N,)
        Each node's height: 0 at a leaf, 1 + the larger of its children's heights otherwise.
    tree_index : int array, shape (N,)
        Which tree each node belongs to.
    paths : tuple of str
        Each node's path from its root (``"root.L.R"``), for messages.
    """

    n_in: int
    left: Array
    right: Array
    parent: Array
    leaves: Array
    inputs: Array
    levels: tuple[Array, ...]
    roots: Array
    labels: Array
    depth: Array
    height: Array
    tree_index: Array
    paths: tuple[str, ...]

    @property
    def n_nodes(self) -> int:
        """N, the number of nodes of all the trees."""
        return len(self.left)

    @property
    def n_trees(self) -> int:
        """The number of trees."""
        return len(self.roots)


def flatten(trees: Tree | Sequence[Tree], n_in: int) -> Forest:
    """Check ``trees`` (:func:`check_tree`) and lay them out as one ``Forest``.

    Parameters
    ----------
    trees : Tree or sequence of Tree
        One tree, or a non-empty batch of them.
    n_in : int
        The width of the leaves' inputs.

    Returns
    -------
    Forest
        The nodes of every tree in post-order, tree after tree.
    """
    n_in = check_positive_int(n_in, "n_in")
    batch = [trees] if isinstance(trees, Tree) else trees
    if not isinstance(batch, Sequence) or isinstance(batch, str) or len(batch) == 0:
        raise ValueError(f"trees must be a Tree or a non-empty list of Trees, got {trees!r}")
    for index, tree in enumerate(batch):
        check_tree(tree, n_in, name="tree" if isinstance(trees, Tree) else f"trees[{index}]")
    nodes, paths, tree_index, roots = [], [], [], []
    for index, tree in enumerate(batch):
        order, order_paths = _post_order(tree)
        nodes += order
        paths += order_paths
        tree_index += [index] * len(order)
        roots.append(len(nodes) - 1)                   # post-order ends at the root
    return _layout(nodes, paths, np.array(tree_index), np.array(roots), n_in)


def post_order(tree: Tree) -> list[Tree]:
    """The nodes of a tree, children before parents (left subtree, right subtree, node): the order of a
    ``Forest``. The tree must be well formed (:func:`check_tree`)."""
    return _post_order(tree)[0]


def _post_order(tree: Tree) -> tuple[list[Tree], list[str]]:
    """The nodes of a checked tree, children before parents (left subtree, right subtree, node), and their paths."""
    order, paths, stack = [], [], [(tree, "root", False)]
    while stack:
        current, path, expanded = stack.pop()
        if expanded or current.is_leaf:
            order.append(current)
            paths.append(path)
        else:
            stack.append((current, path, True))
            stack.append((current.children[1], path + ".R", False))
            stack.append((current.children[0], path + ".L", False))
    return order, paths


def _layout(nodes: list[Tree], paths: list[str], tree_index: Array, roots: Array, n_in: int) -> Forest:
    """The index arrays of a Forest from its nodes in post-order."""
    N = len(nodes)
    position = {id(item): index for index, item in enumerate(nodes)}
    left, right, parent = np.full(N, -1), np.full(N, -1), np.full(N, -1)
    height, depth = np.zeros(N, dtype=int), np.zeros(N, dtype=int)
    for index, item in enumerate(nodes):               # children come first: their heights are known
        if not item.is_leaf:
            left[index], right[index] = (position[id(child)] for child in item.children)
            parent[[left[index], right[index]]] = index
            height[index] = 1 + max(height[left[index]], height[right[index]])
    for index in range(N - 1, -1, -1):                 # parents come later: walk backward for the depths
        if parent[index] >= 0:
            depth[index] = depth[parent[index]] + 1
    leaves = np.flatnonzero(left < 0)
    inputs = np.array([_leaf_input(nodes[index].x, n_in, "a leaf") for index in leaves]).reshape(len(leaves), n_in)
    levels = tuple(np.flatnonzero(height == k) for k in range(1, int(height.max()) + 1))
    labels = np.array([-1 if item.label is None else int(item.label) for item in nodes])
    return Forest(n_in, left, right, parent, leaves, inputs, levels, roots, labels, depth, height, tree_index,
                  tuple(paths))


# ----- parameters -----------------------------------------------------------------------------------------
def param_shapes(n_in: int, n_hidden: int, n_out: int | None = None) -> dict[str, tuple[int, ...]]:
    """The parameters' shapes: ``W_xh`` ``(H, n_in)``, ``W_L``, ``W_R`` ``(H, H)``, ``b_h`` ``(H,)``, and, with
    ``n_out``, the readout's ``W_hy`` ``(n_out, H)`` and ``b_y`` ``(n_out,)``."""
    n_in, H = check_positive_int(n_in, "n_in"), check_positive_int(n_hidden, "n_hidden")
    shapes = {"W_xh": (H, n_in), "W_L": (H, H), "W_R": (H, H), "b_h": (H,)}
    if n_out is not None:
        n_out = check_positive_int(n_out, "n_out")
        shapes.update({"W_hy": (n_out, H), "b_y": (n_out,)})
    return shapes


def init_params(n_in: int, n_hidden: int, n_out: int | None, rng: np.random.Generator | int) -> Params:
    """Draw parameters uniform in ``[-1/sqrt(H), 1/sqrt(H)]`` (the scale of ``torch.nn.RNN``), in the order
    of :func:`param_shapes`; ``n_out=None`` gives the composition's parameters only.

    Returns
    -------
    dict
        ``W_xh`` ``(H, n_in)``, ``W_L`` ``(H, H)``, ``W_R`` ``(H, H)``, ``b_h`` ``(H,)`` (and ``W_hy``
        ``(n_out, H)``, ``b_y`` ``(n_out,)``), float64.
    """
    shapes = param_shapes(n_in, n_hidden, n_out)
    rng = as_rng(rng)
    scale = 1.0 / math.sqrt(n_hidden)
    return {key: rng.uniform(-scale, scale, size=shape) for key, shape in shapes.items()}


def split_params(params: object) -> tuple[Params, Params]:
    """``(composition, readout)``: the six parameters split into the composition's and the readout's."""
    if not isinstance(params, Mapping) or set(params) != set(COMPOSITION_KEYS + READOUT_KEYS):
        got = sorted(params) if isinstance(params, Mapping) else type(params).__name__
        raise ValueError(f"params must be a dict with exactly the keys {sorted(COMPOSITION_KEYS + READOUT_KEYS)}, got {got}")
    return ({key: params[key] for key in COMPOSITION_KEYS}, {key: params[key] for key in READOUT_KEYS})


def check_composition(params: object, forest: Forest) -> Params:
    """The composition's parameters checked against ``forest.n_in`` and the H read off ``W_L``."""
    if not isinstance(forest, Forest):
        raise ValueError(f"forest must be a Forest (structure.flatten(trees, n_in)), got {type(forest).__name__}")
    if not isinstance(params, Mapping) or "W_L" not in params:
        got = sorted(params) if isinstance(params, Mapping) else type(params).__name__
        raise ValueError(f"params must be a dict with exactly the keys {sorted(COMPOSITION_KEYS)}, got {got}")
    W_L = as_float_array(params["W_L"], "params['W_L']")
    if W_L.ndim != 2 or W_L.shape[0] != W_L.shape[1] or W_L.shape[0] == 0:
        raise ValueError(f"params['W_L'] must have shape (H, H) with H >= 1, got {W_L.shape}")
    shapes = param_shapes(forest.n_in, W_L.shape[0])
    return check_params(params, shapes)


# ----- forward and backward -------------------------------------------------------------------------------
def forward(params: Params, forest: Forest) -> Array:
    """The state of every node, bottom-up: ``h = W_xh x`` at a leaf, ``tanh(W_L h_left + W_R h_right + b_h)``
    at an internal node.

    Parameters
    ----------
    params : dict
        ``W_xh`` ``(H, n_in)``, ``W_L`` ``(H, H)``, ``W_R`` ``(H, H)``, ``b_h`` ``(H,)``.
    forest : Forest
        From :func:`flatten`.

    Returns
    -------
    hs : array, shape (N, H)
        ``hs[n]`` is the state h_n of node n (the forest's order).
    """
    params = check_composition(params, forest)
    W_L, W_R, b_h = params["W_L"], params["W_R"], params["b_h"]
    hs = np.zeros((forest.n_nodes, W_L.shape[0]), dtype=np.result_type(*params.values()))
    hs[forest.leaves] = forest.inputs @ params["W_xh"].T          # h_n = W_xh x_n, every leaf at once
    for level in forest.levels:                                    # height 1, 2, ...: children are done
        a = hs[forest.left[level]] @ W_L.T + hs[forest.right[level]] @ W_R.T + b_h   # a_n, (nodes, H)
        hs[level] = np.tanh(a)                                     # h_n = tanh(a_n)
    return hs


def backward(params: Params, forest: Forest, hs: Array, dhs: Array) -> tuple[Params, Array, Array]:
    """Backpropagation through structure: every node's adjoint top-down, the tied weights' gradients summed.

    Parameters
    ----------
    params : dict
        As given to :func:`forward`.
    forest : Forest
        As given to :func:`forward`.
    hs : array, shape (N, H)
        What :func:`forward` returned.
    dhs : array, shape (N, H)
        ``dhs[n]`` is the direct gradient dl_n/dh_n of the loss at node n (zero where the loss does not
        read node n).

    Returns
    -------
    grads : dict
        ``W_xh`` ``(H, n_in)``, ``W_L``, ``W_R`` ``(H, H)``, ``b_h`` ``(H,)``: sums over every node of every
        tree.
    adjoints : array, shape (N, H)
        hbar_n = dL/dh_n of every node, through every path (its own loss and its ancestors').
    d_inputs : array, shape (n_leaves, n_in)
        dL/dx of every leaf's input (for an id, the gradient with respect to its one-hot vector).
    """
    params = check_composition(params, forest)
    N, H = forest.n_nodes, params["W_L"].shape[0]
    hs = as_float_array(hs, "hs")
    check_shape(hs, (N, H), "hs", "(N, H)")
    adjoints = as_float_array(dhs, "dhs").copy()                  # hbar_n starts at the direct gradient
    check_shape(adjoints, (N, H), "dhs", "(N, H)")
    W_L, W_R = params["W_L"], params["W_R"]
    grads = {key: np.zeros_like(params[key]) for key in ("W_L", "W_R", "b_h")}
    for level in reversed(forest.levels):                          # parents before children
        da = adjoints[level] * (1.0 - hs[level] ** 2)              # abar_n = tanh'(a_n) * hbar_n
        left, right = forest.left[level], forest.right[level]
        grads["W_L"] += da.T @ hs[left]                            # tied: sum over nodes of abar_n h_left^T
        grads["W_R"] += da.T @ hs[right]                           # ... of abar_n h_right^T
        grads["b_h"] += da.sum(axis=0)                             # ... of abar_n
        adjoints[left] += da @ W_L                                 # the parent's share: W_L^T abar_n
        adjoints[right] += da @ W_R                                # W_R^T abar_n
    leaf_adjoints = adjoints[forest.leaves]                        # complete: every ancestor is done
    grads["W_xh"] = leaf_adjoints.T @ forest.inputs                # sum over leaves of hbar_n x_n^T
    d_inputs = leaf_adjoints @ params["W_xh"]                      # W_xh^T hbar_n
    return {key: grads[key] for key in COMPOSITION_KEYS}, adjoints, d_inputs


# ----- the loss -------------------------------------------------------------------------------------------
def readout_loss(readout: Params, forest: Forest, hs: Array) -> tuple[float, Params, Array]:
    """The softmax cross-entropy at every labelled node, averaged over them, and its gradients.

    Parameters
    ----------
    readout : dict
        ``W_hy`` ``(n_out, H)`` and ``b_y`` ``(n_out,)``.
    forest : Forest
        Its ``labels`` (-1 where a node has none) say which nodes the loss reads.
    hs : array, shape (N, H)
        The states from :func:`forward`.

    Returns
    -------
    loss : float
        The mean over the M labelled nodes of -log softmax(W_hy h_n + b_y)[label_n].
    readout_grads : dict
        ``W_hy`` ``(n_out, H)``, ``b_y`` ``(n_out,)``.
    dhs : array, shape (N, H)
        The direct gradient dl_n/dh_n of every node (zero where unlabelled), for :func:`backward`.
    """
    labelled = np.flatnonzero(forest.labels >= 0)
    if labelled.size == 0:
        raise ValueError("no node of the trees has a label: give the root (or any node) a label for the loss")
    n_out = np.shape(readout.get("W_hy")) if isinstance(readout, Mapping) else ()
    labels = forest.labels[labelled]
    if len(n_out) == 2 and labels.max() >= n_out[0]:
        worst = int(np.argmax(forest.labels))
        raise ValueError(f"the label {forest.labels[worst]} of the node at {forest.paths[worst]} of tree "
                         f"{forest.tree_index[worst]} must lie in [0, n_out) = [0, {n_out[0]})")
    states = hs[labelled][None]                                    # (1, M, H): the labelled nodes as one batch
    loss, dlogits = softmax_cross_entropy(readout_forward(readout, states), labels[None])
    readout_grads, dh = readout_backward(readout, states, dlogits)
    dhs = np.zeros_like(hs)
    dhs[labelled] = dh[0]
    return loss, readout_grads, dhs


def loss_and_grads(params: Params, forest: Forest) -> tuple[float, Params]:
    """The loss of :func:`readout_loss` and the gradient of every parameter, by BPTS.

    Parameters
    ----------
    params : dict
        The six parameters of :func:`param_shapes` with ``n_out``.
    forest : Forest
        The batch of trees, with labels.

    Returns
    -------
    loss : float
    grads : dict
        The same keys and shapes as ``params``.
    """
    composition, readout = split_params(params)
    hs = forward(composition, forest)
    loss, readout_grads, dhs = readout_loss(readout, forest, hs)
    grads, _, _ = backward(composition, forest, hs, dhs)
    return loss, {**grads, **readout_grads}


def predict(params: Params, forest: Forest) -> Array:
    """The most likely class at every tree's root, ``(n_trees,)`` ints."""
    composition, readout = split_params(params)
    hs = forward(composition, forest)
    return np.argmax(readout_forward(readout, hs[forest.roots][None])[0], axis=-1)


# ----- a task: arithmetic expressions ---------------------------------------------------------------------
OPERATORS = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b}


def arithmetic_vocabulary(modulus: int, operators: str = "+-") -> tuple[str, ...]:
    """The leaves' tokens: the digits ``0 .. modulus - 1`` (ids ``0 .. modulus - 1``), then the operators."""
    modulus = check_positive_int(modulus, "modulus")
    if not operators or any(op not in OPERATORS for op in operators) or len(set(operators)) != len(operators):
        raise ValueError(f"operators must be distinct characters of {''.join(OPERATORS)!r}, got {operators!r}")
    return tuple(str(digit) for digit in range(modulus)) + tuple(operators)


def arithmetic_tree(depth: int, rng: np.random.Generator, modulus: int, operators: str = "+-") -> tuple[Tree, int]:
    """A random expression of the given nesting ``depth`` and its value modulo ``modulus``.

    ``a op b`` is the tree ``node(A, node(leaf(op), B))``: the right child ``(op b)`` is the operation
    waiting for its left operand. Every subexpression's node (a digit's leaf included) is labelled with its
    value modulo ``modulus``; the operators' leaves and the ``(op b)`` nodes have no label. Depth 0 is a
    digit; an expression of depth d has one operand of depth d - 1 and one of a depth drawn from
    ``0 .. d - 1``, on a side drawn at random.

    Returns
    -------
    tree : Tree
    value : int
        In ``[0, modulus)``.
    """
    if depth == 0:
        digit = int(rng.integers(modulus))
        return leaf(digit, label=digit), digit
    other = int(rng.integers(depth))
    depths = (depth - 1, other) if rng.random() < 0.5 else (other, depth - 1)
    (left, a), (right, b) = (arithmetic_tree(d, rng, modulus, operators) for d in depths)
    which = int(rng.integers(len(operators)))
    value = OPERATORS[operators[which]](a, b) % modulus
    return node(left, node(leaf(modulus + which), right), label=value), value


def arithmetic_trees(
    count: int, rng: np.random.Generator | int, *, modulus: int = 5, depths: Sequence[int] = (1, 2, 3, 4),
    operators: str = "+-", labels: str = "every",
) -> list[Tree]:
    """``count`` random expressions, their depths drawn uniformly from ``depths``.

    Parameters
    ----------
    count : int
    rng : np.random.Generator or int
    modulus : int, keyword-only
        Digits are ``0 .. modulus - 1``; values are taken modulo ``modulus`` (the classes of the readout).
    depths : sequence of int, keyword-only
        The nesting depths to draw from (non-negative).
    operators : str, keyword-only
        Characters of ``"+-*"``; the leaves' ids are ``arithmetic_vocabulary(modulus, operators)``.
    labels : {"every", "root"}, keyword-only
        Keep the label of every subexpression, or of the root only.

    Returns
    -------
    list of Tree
        Leaves carry ids in ``[0, modulus + len(operators))``.
    """
    count = check_positive_int(count, "count")
    arithmetic_vocabulary(modulus, operators)
    depths = list(depths)
    if not depths or any(isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 0 for d in depths):
        raise ValueError(f"depths must be a non-empty list of non-negative integers, got {depths!r}")
    if labels not in ("every", "root"):
        raise ValueError(f"labels must be 'every' or 'root', got {labels!r}")
    rng = as_rng(rng)
    trees = [arithmetic_tree(int(rng.choice(depths)), rng, modulus, operators)[0] for _ in range(count)]
    if labels == "root":
        for tree in trees:
            _drop_labels_below(tree)
    return trees


def _drop_labels_below(tree: Tree) -> None:
    """Remove the label of every node but the root."""
    stack = list(tree.children)
    while stack:
        current = stack.pop()
        current.label = None
        stack.extend(current.children)


def expression_text(tree: Tree, vocabulary: Sequence[str]) -> str:
    """The expression of an arithmetic tree, fully bracketed: ``"((3 + 4) - 2)"``."""
    if tree.is_leaf:
        return vocabulary[tree.x]
    left, (operator, right) = tree.children[0], tree.children[1].children
    return f"({expression_text(left, vocabulary)} {vocabulary[operator.x]} {expression_text(right, vocabulary)})"
