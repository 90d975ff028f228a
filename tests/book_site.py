"""The book's table of contents and its build, shared by the build test and the browser tests.

``tests/conftest.py`` builds the book once per test run (a session fixture) with ``build_book``;
``test_book_build.py`` checks the build log and the files, ``test_site_browser.py`` serves the result
and looks at it in chromium.
"""
from __future__ import annotations

import pathlib
import subprocess
import sys

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[1]

SCREENSHOTS = ROOT / "_build" / "screenshots"
"""Where the browser tests save a full-page screenshot of every page of the toc, for people to look at."""

saved_screenshots: list[pathlib.Path] = []
"""The screenshots this test run saved (the terminal summary of tests/conftest.py names their folder)."""


def toc_files() -> list[str]:
    """The pages of ``_toc.yml`` in reading order, as paths without suffix (``book/intro``, ...)."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]
    for part in toc.get("parts", []):
        files += [chapter["file"] for chapter in part["chapters"]]
    return files


def build_book(output: pathlib.Path) -> tuple[pathlib.Path, str, int]:
    """``jupyter-book build -W -n --keep-going`` into ``output``: (the html folder, the log, the exit code)."""
    jupyter_book = pathlib.Path(sys.executable).parent / "jupyter-book"
    result = subprocess.run(
        [str(jupyter_book), "build", "-W", "-n", "--keep-going", "--path-output", str(output), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    return output / "_build" / "html", result.stdout + result.stderr, result.returncode


def build_lite(output: pathlib.Path, staging: pathlib.Path) -> tuple[str, int]:
    """``scripts/build_lite.py`` into ``output``: (the log, the exit code)."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "build_lite.py"), "--strict",
         "--output-dir", str(output), "--staging", str(staging)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    return result.stdout + result.stderr, result.returncode
