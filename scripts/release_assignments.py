"""Generate the student version of every assignment and put it in book/, where the book shows it.

Usage::

    .venv/bin/python scripts/release_assignments.py          # after changing assignments/source/
    .venv/bin/python scripts/release_assignments.py --check  # exit 1 if a copy in book/ is out of date

For each assignment of ``assignments/source/<name>/``, nbgrader's ``generate_assignment`` runs in a scratch
copy of the course directory (so an instructor's gradebook and ``release/`` folder are left alone) and
the student version, ``assignment_<name>.ipynb`` with the solutions and hidden tests removed, is copied
to ``book/``: the book's page, its download button and its JupyterLite copy all give that file, and it
is the file ``nbgrader generate_assignment`` gives an instructor. The solutions never leave
``assignments/source/``.
"""
from __future__ import annotations

import argparse
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[1]
COURSE = ROOT / "assignments"
BOOK = ROOT / "book"


def assignment_names() -> list[str]:
    """Every assignment of ``assignments/source``, sorted."""
    return sorted(path.name for path in (COURSE / "source").iterdir() if path.is_dir())


def notebook_name(assignment: str) -> str:
    """The file name of the assignment's one notebook; raise ``ValueError`` unless there is exactly one."""
    notebooks = sorted(path.name for path in (COURSE / "source" / assignment).glob("*.ipynb"))
    if len(notebooks) != 1:
        raise ValueError(f"assignments/source/{assignment} must hold exactly one notebook, found {notebooks}")
    return notebooks[0]


def course_copy(destination: pathlib.Path) -> pathlib.Path:
    """Copy the course directory's configuration and sources into ``destination``; return it."""
    destination.mkdir(parents=True, exist_ok=True)
    shutil.copy(COURSE / "nbgrader_config.py", destination)
    shutil.copytree(COURSE / "source", destination / "source")
    return destination


def nbgrader(course: pathlib.Path, *args: str) -> str:
    """Run ``nbgrader *args`` in the course directory ``course``; return its log.

    This Python's ``bin`` folder goes first on PATH: nbgrader runs the ``alembic`` it installed there.
    Raises ``RuntimeError`` with the end of the log if the command fails.
    """
    bin_dir = pathlib.Path(sys.executable).parent
    environment = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    result = subprocess.run(
        [str(bin_dir / "nbgrader"), *args], cwd=course, env=environment, capture_output=True, text=True, timeout=900
    )
    log = result.stdout + result.stderr
    if result.returncode != 0:
        raise RuntimeError(f"nbgrader {' '.join(args)} failed:\n{log[-6000:]}")
    return log


def generate(course: pathlib.Path, assignments: list[str]) -> dict[str, pathlib.Path]:
    """Run ``generate_assignment`` for every name in ``course``; return name -> the student version's path."""
    for assignment in assignments:
        nbgrader(course, "generate_assignment", assignment, "--force")
    return {name: course / "release" / name / notebook_name(name) for name in assignments}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="compare the copies in book/ instead of writing them")
    args = parser.parse_args()
    stale = []
    with tempfile.TemporaryDirectory() as scratch:
        released = generate(course_copy(pathlib.Path(scratch) / "course"), assignment_names())
        for name, path in released.items():
            target = BOOK / path.name
            if args.check:
                if not target.exists() or target.read_bytes() != path.read_bytes():
                    stale.append(str(target.relative_to(ROOT)))
            else:
                shutil.copy(path, target)
                print(f"{name}: wrote {target.relative_to(ROOT)}")
    if stale:
        print("out of date (run scripts/release_assignments.py): " + ", ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
