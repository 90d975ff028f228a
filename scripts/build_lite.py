"""Build the JupyterLite site, in which the numpy parts of the chapters run in the browser (Pyodide).

Usage::

    .venv/bin/python scripts/build_lite.py                  # after `jupyter-book build .`
    .venv/bin/python scripts/build_lite.py --output-dir /tmp/lite --staging /tmp/lite-staging
    .venv/bin/python scripts/build_lite.py --tag book/lstm.ipynb   # tag the cells that need torch

Steps, each offline (no network: everything comes from this environment):

1. build the companion as a pure-Python wheel (``pip wheel --no-deps --no-build-isolation``, from a clean
   copy of the package so no stale ``build/`` file can slip in) and check it is ``py3-none-any``;
2. copy every notebook chapter of ``_toc.yml`` into ``<staging>/contents/`` at the same relative path
   (``book/elman_bptt.ipynb``: the path the book's JupyterLite launch button asks for), transformed for
   the browser (:func:`transform_notebook`): a first cell that installs the companion wheel with piplite,
   and, in every code cell that needs torch, the statements that need it commented out and a message
   printed instead. Such cells should carry the tag ``torch`` (``--tag`` adds it); one without it is
   guarded all the same with a warning, or stops the build with ``--strict``;
3. ``jupyter lite build`` into ``_build/html/lite`` (inside the book's site, so it is served with it),
   with the wheel served by the site's own piplite index.

What is not offline is the *run time*: the Pyodide kernel loads Pyodide itself and its numpy and
matplotlib packages from Pyodide's CDN when a notebook starts. ``--pyodide`` takes a local Pyodide
distribution (a release tarball ``pyodide-<version>.tar.bz2`` or its unpacked folder) to serve instead;
see the README, section "Running chapters in the browser (JupyterLite)", for why none is shipped.
"""
from __future__ import annotations

import argparse
import ast
import copy
import json
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile

import nbformat
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[1]
DEFAULT_OUTPUT = ROOT / "_build" / "html" / "lite"
DEFAULT_STAGING = ROOT / "_build" / "lite-staging"

#: the tag that marks a code cell needing torch
TORCH_TAG = "torch"
#: modules that need torch: importing one, or using a name bound from one, needs torch
TORCH_MODULES = ("torch", "torchdiffeq", "snntorch", "companion.torch_ref")
#: the message a guarded cell prints in the browser
TORCH_MESSAGE = (
    "this cell needs torch, which does not run in the browser; run the chapter locally to execute it"
)
#: the message a partly guarded cell prints in the browser
TORCH_PARTIAL_MESSAGE = (
    "the commented-out lines of this cell need torch, which does not run in the browser; "
    "run the chapter locally to execute them"
)
#: the prefix of a line left out in the browser
SKIPPED = "# [needs torch] "
#: metadata key the transform writes on the cells it adds or changes
LITE_KEY = "bptt_lite"

INSTALL_SOURCE = '''\
# JupyterLite only: install the course's companion package, a pure-Python wheel served by this site.
# Its numpy comes from Pyodide, which the browser downloads from Pyodide's CDN: this needs a network
# connection. (Run locally, the package is already installed and this cell does nothing.)
import sys

if sys.platform == "emscripten":
    import piplite

    await piplite.install("companion")
    try:
        import numpy
    except ImportError:
        raise RuntimeError(
            "numpy could not be loaded: Pyodide downloads it from its CDN (cdn.jsdelivr.net), "
            "so this page needs a network connection"
        ) from None'''

#: the files next to the chapters that a chapter may show or read (figures, data such as book/data/*.json)
ASSET_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".svg", ".csv", ".txt", ".json", ".npy", ".npz"}


class UntaggedTorchCell(ValueError):
    """A code cell uses torch but is not tagged ``torch``: in the browser it would fail."""


# --------------------------------------------------------------------------------------------------
# torch analysis: which statements of a cell need torch
# --------------------------------------------------------------------------------------------------


def _is_torch_module(name: str) -> bool:
    return any(name == mod or name.startswith(mod + ".") for mod in TORCH_MODULES)


def _python_source(source: str) -> str:
    """The cell's source as plain Python (IPython magics turned into calls), or the source itself."""
    if not re.search(r"^\s*[%!]", source, flags=re.M):
        return source
    try:
        from IPython.core.inputtransformer2 import TransformerManager
    except ImportError:  # pragma: no cover - IPython comes with ipykernel
        return source
    return TransformerManager().transform_cell(source)


def _bound_names(node: ast.AST) -> set[str]:
    """Names a statement binds at the top level of the notebook (assignments, defs, imports, loops)."""
    names: set[str] = set()
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        names.add(node.name)
        return names  # names bound inside a def or class body stay local to it
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        for alias in node.names:
            names.add(alias.asname or alias.name.split(".")[0])
        return names
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name) and isinstance(sub.ctx, (ast.Store, ast.Del)):
            names.add(sub.id)
        elif isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(sub.name)
        elif isinstance(sub, (ast.Import, ast.ImportFrom)):
            for alias in sub.names:
                names.add(alias.asname or alias.name.split(".")[0])
    return names


def _targets(node: ast.AST | None) -> set[str]:
    """The names an assignment target, loop target or ``as`` clause binds."""
    if node is None:
        return set()
    return {sub.id for sub in ast.walk(node) if isinstance(sub, ast.Name)}


def _arguments(args: ast.arguments) -> set[str]:
    every = [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]
    return {a.arg for a in every if a is not None}


def _free(nodes) -> set[str]:
    names: set[str] = set()
    for node in nodes:
        if node is not None:
            names |= _used_names(node)
    return names


def _used_names(node: ast.AST) -> set[str]:
    """The names a statement reads from the notebook's namespace (not those it binds itself first).

    Names local to a function, lambda or comprehension, and the target of a ``for`` loop or ``with``
    inside the statement, are not reads of the notebook's namespace: ``for key in grads`` reads
    ``grads``, not an earlier ``key``.
    """
    if isinstance(node, ast.Name):
        return {node.id} if isinstance(node.ctx, ast.Load) else set()
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
        args = node.args
        outer = _free([*node.__dict__.get("decorator_list", []), *args.defaults, *args.kw_defaults])
        body = node.body if isinstance(node.body, list) else [node.body]
        local = _arguments(args) | {n for stmt in body for n in _bound_names(stmt)}
        return outer | (_free(body) - local)
    if isinstance(node, ast.ClassDef):
        outer = _free([*node.decorator_list, *node.bases, *(k.value for k in node.keywords)])
        local = {n for stmt in node.body for n in _bound_names(stmt)}
        return outer | (_free(node.body) - local)
    if isinstance(node, (ast.ListComp, ast.SetComp, ast.GeneratorExp, ast.DictComp)):
        gens = node.generators
        local = {n for g in gens for n in _targets(g.target)}
        inner = [*(g.iter for g in gens[1:]), *(i for g in gens for i in g.ifs)]
        inner += [node.key, node.value] if isinstance(node, ast.DictComp) else [node.elt]
        return _used_names(gens[0].iter) | (_free(inner) - local)
    if isinstance(node, (ast.For, ast.AsyncFor)):
        return _used_names(node.iter) | (_free([*node.body, *node.orelse]) - _targets(node.target))
    if isinstance(node, (ast.With, ast.AsyncWith)):
        local = {n for item in node.items for n in _targets(item.optional_vars)}
        return _free([item.context_expr for item in node.items]) | (_free(node.body) - local)
    return _free(ast.iter_child_nodes(node))


def _import_needs_torch(node: ast.AST) -> list[ast.alias]:
    """The aliases of an import statement that import a torch module."""
    if isinstance(node, ast.Import):
        return [a for a in node.names if _is_torch_module(a.name)]
    if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
        if _is_torch_module(node.module):
            return list(node.names)
        return [a for a in node.names if _is_torch_module(f"{node.module}.{a.name}")]
    return []


class _Statement:
    def __init__(self, node: ast.stmt, tainted: set[str]):
        self.node = node
        self.first, self.last = node.lineno, node.end_lineno or node.lineno
        self.torch_aliases = _import_needs_torch(node)
        self.uses = sorted(_used_names(node) & tainted)
        self.binds = _bound_names(node)

    @property
    def needs_torch(self) -> bool:
        return bool(self.uses) or bool(self.torch_aliases)

    @property
    def splittable_import(self) -> bool:
        """An import of torch and non-torch names on one line: keep the others."""
        return (
            isinstance(self.node, (ast.Import, ast.ImportFrom))
            and bool(self.torch_aliases)
            and len(self.torch_aliases) < len(self.node.names)
        )


def analyse_cell(source: str, tainted: set[str]) -> list[_Statement] | None:
    """The top-level statements of a cell with what each needs; ``None`` if it does not parse."""
    try:
        tree = ast.parse(_python_source(source))
    except SyntaxError:
        return None
    statements = []
    for node in tree.body:
        statement = _Statement(node, tainted)
        statements.append(statement)
        if statement.needs_torch:
            # everything it binds now needs torch, except the names a split import keeps
            if statement.splittable_import:
                tainted |= {a.asname or a.name.split(".")[0] for a in statement.torch_aliases}
            else:
                tainted |= statement.binds
        else:
            tainted -= statement.binds  # rebound without torch: usable again
    return statements


def _guard_partially(source: str, statements: list[_Statement]) -> str | None:
    """The cell with the torch statements commented out, or ``None`` if every statement needs torch."""
    if all(s.needs_torch and not s.splittable_import for s in statements):
        return None
    if _python_source(source) != source:
        return None  # IPython magics: the statements' line numbers are not the cell's
    clean_lines = {n for s in statements if not s.needs_torch for n in range(s.first, s.last + 1)}
    torch_lines = {n for s in statements if s.needs_torch for n in range(s.first, s.last + 1)}
    if clean_lines & torch_lines:
        return None  # `a = 1; import torch` on one line: cannot comment out one of them
    lines = source.split("\n")
    out: list[str] = []
    skipped_lines: set[int] = set()
    replacement: dict[int, list[str]] = {}
    for s in statements:
        if not s.needs_torch:
            continue
        if s.splittable_import:
            torch_ids = {id(a) for a in s.torch_aliases}
            kept, dropped = copy.copy(s.node), copy.copy(s.node)
            kept.names = [a for a in s.node.names if id(a) not in torch_ids]
            dropped.names = list(s.torch_aliases)
            replacement[s.first] = [SKIPPED + ast.unparse(dropped), ast.unparse(kept)]
            for line in range(s.first + 1, s.last + 1):  # the rest of a parenthesised import
                replacement[line] = []
        for line in range(s.first, s.last + 1):
            skipped_lines.add(line)
    for number, line in enumerate(lines, start=1):
        if number in replacement:
            out.extend(replacement[number])
        elif number in skipped_lines:
            out.append(SKIPPED + line if line.strip() else line)
        else:
            out.append(line)
    out += ["", f"print({TORCH_PARTIAL_MESSAGE!r})"]
    return "\n".join(out)


def _guard_whole(source: str) -> str:
    commented = "\n".join(f"# {line}" if line.strip() else "#" for line in source.split("\n"))
    return f"print({TORCH_MESSAGE!r})\n\n# The cell as the chapter runs it locally:\n{commented}"


# --------------------------------------------------------------------------------------------------
# the notebook transform
# --------------------------------------------------------------------------------------------------


def _tags(cell) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def _untagged_message(name: str, index: int, cell, statements: list[_Statement]) -> str:
    needing = [s for s in statements if s.needs_torch]
    what = sorted({n for s in needing for n in (*s.uses, *(a.name for a in s.torch_aliases))})
    lines = sorted({s.first for s in needing})
    return (
        f"{name}: code cell {index} (id {cell.get('id', '?')}) needs torch ({', '.join(what)}; "
        f"line {', '.join(map(str, lines))}) but is not tagged {TORCH_TAG!r}"
    )


def torch_report(
    nb: nbformat.NotebookNode, name: str = "notebook", trust_tags: bool = True
) -> tuple[list[int], list[str]]:
    """The indices of the code cells that need torch, and a message for each of them not tagged.

    With ``trust_tags`` a cell tagged ``torch`` counts as needing torch (and so does every name it
    binds) even where no statement of it visibly does; without, only what the code shows counts.
    """
    needing, untagged = [], []
    tainted: set[str] = set()
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        statements = analyse_cell(cell.source, tainted)
        tagged = TORCH_TAG in _tags(cell)
        if statements is not None and any(s.needs_torch for s in statements):
            needing.append(index)
            if not tagged:
                untagged.append(_untagged_message(name, index, cell, statements))
        elif tagged and trust_tags:
            needing.append(index)
            for s in statements or []:
                tainted |= s.binds
    return needing, untagged


def transform_notebook(
    nb: nbformat.NotebookNode, name: str = "notebook", strict: bool = False
) -> nbformat.NotebookNode:
    """The notebook as JupyterLite runs it: the install cell first, torch cells guarded.

    A statement needs torch if it imports a module of ``TORCH_MODULES`` or uses a name that an earlier
    statement needing torch bound (a name rebound without torch is free again). In a cell that needs
    torch, such statements are commented out and the cell prints ``TORCH_PARTIAL_MESSAGE`` (the rest of
    the cell, an ``import numpy`` say, still runs); a cell that is all torch, or a cell tagged ``torch``
    in which no statement visibly needs it (or that does not parse), prints ``TORCH_MESSAGE`` instead.
    Cells that need torch should carry the tag ``torch``; one without it raises
    :class:`UntaggedTorchCell` if ``strict``, and is otherwise guarded all the same with a warning.
    Changed cells lose their outputs; the others keep the chapter's committed outputs to compare with.
    """
    nb = copy.deepcopy(nb)
    tainted: set[str] = set()
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        tagged = TORCH_TAG in _tags(cell)
        statements = analyse_cell(cell.source, tainted)
        partial = statements is not None and any(s.needs_torch for s in statements)
        if not tagged and not partial:
            continue
        if not tagged:
            message = _untagged_message(name, index, cell, statements)
            if strict:
                raise UntaggedTorchCell(message + "; run scripts/build_lite.py --tag " + name)
            print(f"warning: {message}; guarded anyway", file=sys.stderr)
        guarded = _guard_partially(cell.source, statements) if partial else None
        if guarded is None:
            guarded = _guard_whole(cell.source)
            for s in statements or []:
                tainted |= s.binds
        cell.source = guarded
        cell.outputs = []
        cell.execution_count = None
        cell.metadata[LITE_KEY] = "torch guarded"
    install = nbformat.v4.new_code_cell(INSTALL_SOURCE)
    install.metadata[LITE_KEY] = "install companion"
    install.metadata["tags"] = ["lite-install"]
    nb.cells.insert(0, install)
    # the kernel of JupyterLite is "python" (Pyodide), whatever kernel the chapter was executed with
    nb.metadata["kernelspec"] = {"display_name": "Python (Pyodide)", "language": "python", "name": "python"}
    return nb


def tag_torch_cells(path: pathlib.Path) -> list[str]:
    """Add the tag ``torch`` to every code cell of a notebook that needs torch (metadata only)."""
    nb = nbformat.read(path, as_version=4)
    needing, _ = torch_report(nb, str(path))
    added = []
    for index in needing:
        tags = nb.cells[index].metadata.setdefault("tags", [])
        if TORCH_TAG not in tags:
            tags.append(TORCH_TAG)
            added.append(f"{path}: cell {index} (id {nb.cells[index].get('id', '?')})")
    if added:
        nbformat.write(nb, path)
    return added


def chapter_notebooks(root: pathlib.Path = ROOT) -> list[pathlib.Path]:
    """The notebooks of ``_toc.yml`` that exist, in order, relative to ``root``."""
    toc = yaml.safe_load((root / "_toc.yml").read_text())
    files = [toc["root"]]
    for part in toc.get("parts", []):
        files += [chapter["file"] for chapter in part.get("chapters", [])]
    files += [entry["file"] for entry in toc.get("chapters", [])]
    notebooks = []
    for file in files:
        path = pathlib.Path(file)
        path = path if path.suffix == ".ipynb" else path.with_suffix(".ipynb")
        if (root / path).is_file():
            notebooks.append(path)
    return notebooks


def stage_contents(
    contents: pathlib.Path, root: pathlib.Path = ROOT, strict: bool = False
) -> list[pathlib.Path]:
    """Write the transformed chapters (and the figures next to them) under ``contents``."""
    if contents.exists():
        shutil.rmtree(contents)
    written = []
    notebooks = chapter_notebooks(root)
    for rel in notebooks:
        nb = nbformat.read(root / rel, as_version=4)
        out = contents / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        lite = transform_notebook(nb, str(rel), strict=strict)
        nbformat.validate(lite)
        # multi-line fields as single strings, not lists of lines as nbformat.write stores them: JupyterLite
        # serves the file as it is, and its output area shows a stream stored as a list joined by commas
        out.write_text(json.dumps(lite, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        written.append(out)
    for folder in sorted({rel.parent for rel in notebooks}):
        for asset in sorted((root / folder).rglob("*")):
            skip = {"_build", ".ipynb_checkpoints"} & set(asset.parts)
            if asset.is_file() and asset.suffix.lower() in ASSET_SUFFIXES and not skip:
                target = contents / asset.relative_to(root)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(asset, target)
    return written


# --------------------------------------------------------------------------------------------------
# the wheel
# --------------------------------------------------------------------------------------------------


def build_wheel(dist: pathlib.Path, root: pathlib.Path = ROOT) -> pathlib.Path:
    """Build the companion's wheel into ``dist`` from a clean copy of the sources; check it is pure."""
    dist.mkdir(parents=True, exist_ok=True)
    for old in dist.glob("companion-*.whl"):
        old.unlink()
    with tempfile.TemporaryDirectory(prefix="companion-wheel-") as tmp:
        src = pathlib.Path(tmp) / "src"
        src.mkdir()
        for name in ("pyproject.toml", "README.md"):
            shutil.copy2(root / name, src / name)
        shutil.copytree(
            root / "companion", src / "companion", ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
        )
        result = subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
             "--quiet", "--wheel-dir", str(dist), str(src)],
            capture_output=True, text=True,
        )
        if result.returncode != 0:
            raise RuntimeError(f"pip wheel failed:\n{result.stdout}\n{result.stderr}")
    wheels = sorted(dist.glob("companion-*.whl"))
    if len(wheels) != 1:
        raise RuntimeError(f"expected one companion wheel in {dist}, found {wheels}")
    wheel = wheels[0]
    if not wheel.name.endswith("-py3-none-any.whl"):
        raise RuntimeError(f"{wheel.name} is not pure Python (py3-none-any): piplite cannot install it")
    with zipfile.ZipFile(wheel) as zf:
        if "companion/data/tiny_text.txt" not in zf.namelist():
            raise RuntimeError(f"{wheel.name} lacks companion/data/tiny_text.txt")
    return wheel


# --------------------------------------------------------------------------------------------------
# the lite build
# --------------------------------------------------------------------------------------------------


def lite_build(staging: pathlib.Path, output: pathlib.Path, wheel: pathlib.Path,
               pyodide: str | None = None) -> None:
    jupyter = pathlib.Path(sys.executable).parent / "jupyter"
    if output.exists():
        if any(output.iterdir()) and not (output / "jupyter-lite.json").is_file():
            raise RuntimeError(f"{output} exists and is not a JupyterLite site: not overwriting it")
        shutil.rmtree(output)
    for stale in (staging / ".jupyterlite.doit.db", staging / ".cache"):
        if stale.is_dir():
            shutil.rmtree(stale)
        elif stale.exists():
            stale.unlink()
    command = [
        str(jupyter), "lite", "build",
        "--lite-dir", str(staging),
        "--contents", str(staging / "contents"),
        "--output-dir", str(output),
        "--piplite-wheels", str(wheel),
        "--apps", "lab",
        "--no-sourcemaps",
        "--no-unused-shared-packages",
    ]
    if pyodide:
        command += ["--pyodide", str(pathlib.Path(pyodide).resolve())]
    result = subprocess.run(command, cwd=staging, capture_output=True, text=True)
    log = result.stdout + result.stderr
    (staging / "build.log").write_text(log)
    if result.returncode != 0:
        raise RuntimeError(f"jupyter lite build failed (log in {staging / 'build.log'}):\n{log[-4000:]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--output-dir", type=pathlib.Path, default=DEFAULT_OUTPUT,
                        help="where the site goes (default: _build/html/lite, inside the book's site)")
    parser.add_argument("--staging", type=pathlib.Path, default=DEFAULT_STAGING,
                        help="work folder: wheel, browser copies, build log (default: _build/lite-staging)")
    parser.add_argument("--pyodide", default=None,
                        help="a local Pyodide distribution (tarball or folder) to serve instead of the CDN")
    parser.add_argument("--stage-only", action="store_true",
                        help="build the wheel and the browser copies of the chapters, not the site")
    parser.add_argument("--strict", action="store_true",
                        help="fail on a code cell that needs torch but is not tagged `torch` (default: warn)")
    parser.add_argument("--tag", nargs="+", type=pathlib.Path, metavar="NOTEBOOK",
                        help="only tag `torch` the cells of these notebooks that need torch, then stop")
    args = parser.parse_args(argv)

    if args.tag:
        for path in args.tag:
            added = tag_torch_cells(path)
            for line in added:
                print(f"tagged:   {line}")
            if not added:
                print(f"{path}: nothing to tag")
        return 0
    staging = args.staging.resolve()
    staging.mkdir(parents=True, exist_ok=True)
    wheel = build_wheel(staging / "dist")
    print(f"wheel:    {wheel}")
    for notebook in stage_contents(staging / "contents", strict=args.strict):
        print(f"chapter:  {notebook}")
    if args.stage_only:
        return 0
    output = args.output_dir.resolve()
    lite_build(staging, output, wheel, args.pyodide)
    print(f"site:     {output / 'lab' / 'index.html'}")
    print("serve it over HTTP (JupyterLite does not run from file://), e.g.\n"
          f"  .venv/bin/python -m http.server -d {output.parent} 8000\n"
          f"  and open http://127.0.0.1:8000/{output.name}/lab/index.html")
    return 0


if __name__ == "__main__":
    sys.exit(main())
