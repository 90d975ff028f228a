"""The book builds without a single warning, and the built pages hold what the chapters promise.

``jupyter-book build -W -n --keep-going`` turns every Sphinx warning into an error: a broken ``{ref}``,
``{eq}`` or ``{prf:ref}``, a missing bibliography key, a notebook missing from the table of contents.
The build reads the notebooks' stored outputs (``execute_notebooks: off``); nbval keeps those outputs
honest by re-running every chapter.
"""
from __future__ import annotations

import pathlib
import re
import subprocess
import sys

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[1]


def toc_files() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]
    for part in toc.get("parts", []):
        files += [chapter["file"] for chapter in part["chapters"]]
    return files


@pytest.fixture(scope="module")
def built_site(tmp_path_factory) -> tuple[pathlib.Path, str]:
    output = tmp_path_factory.mktemp("book")
    jupyter_book = pathlib.Path(sys.executable).parent / "jupyter-book"
    result = subprocess.run(
        [str(jupyter_book), "build", "-W", "-n", "--keep-going", "--path-output", str(output), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-6000:]
    return output / "_build" / "html", log


def test_build_has_no_warnings(built_site):
    _, log = built_site
    warnings = [line for line in log.splitlines() if re.search(r"\bWARNING\b|\bERROR\b", line)]
    assert not warnings, "\n".join(warnings)


def test_every_page_of_the_toc_is_built(built_site):
    html, _ = built_site
    for page in toc_files():
        assert (html / f"{page}.html").is_file(), page


def test_math_figures_and_citations_reach_the_pages(built_site):
    html, _ = built_site
    for notebook in sorted((ROOT / "book").glob("*.ipynb")):
        page = (html / "book" / f"{notebook.stem}.html").read_text()
        assert "math notranslate" in page, f"{notebook.stem}: no math"
        images = re.findall(r'<img[^>]+src="([^"]+\.png)"', page)
        assert images, f"{notebook.stem}: no figure"
        for source in images:
            assert (html / "book" / source).resolve().is_file(), f"{notebook.stem}: missing {source}"
        assert 'class="reference internal" href="bibliography.html' in page, f"{notebook.stem}: no citation"
