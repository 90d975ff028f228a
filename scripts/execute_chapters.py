"""Execute chapter notebooks top to bottom in place, as nbval will re-run them.

Usage::

    python scripts/execute_chapters.py book/elman_bptt.ipynb [more.ipynb ...]
    python scripts/execute_chapters.py --all

Run it after changing the companion, then commit the notebooks with their new outputs. The kernel runs
in this Python environment with one BLAS thread (the setting of the test suite), so the stored outputs
are the ones ``pytest`` reproduces.
"""
from __future__ import annotations

import argparse
import os
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
#: the file names of the assignments' student versions in book/, which are not executed
STUDENT_VERSION_PREFIX = "assignment_"
SINGLE_THREAD = {name: "1" for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}


def execute(path: pathlib.Path, timeout: int) -> None:
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    )
    client.execute()
    nbformat.write(notebook, path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebooks", nargs="*", type=pathlib.Path)
    parser.add_argument("--all", action="store_true", help="every chapter under book/ (not the assignments)")
    parser.add_argument("--timeout", type=int, default=600, help="seconds per cell")
    args = parser.parse_args()
    notebooks = sorted((ROOT / "book").rglob("*.ipynb")) if args.all else args.notebooks
    notebooks = [nb for nb in notebooks if ".ipynb_checkpoints" not in nb.parts and "_build" not in nb.parts]
    if args.all:   # the assignments' student versions are shown unexecuted (scripts/release_assignments.py)
        notebooks = [nb for nb in notebooks if not nb.name.startswith(STUDENT_VERSION_PREFIX)]
    if not notebooks:
        parser.error("name notebooks or pass --all")
    os.environ.update(SINGLE_THREAD)
    for notebook in notebooks:
        print(f"executing {notebook}", flush=True)
        execute(notebook.resolve(), args.timeout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
