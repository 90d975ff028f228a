"""The book builds without a single warning, and the built pages hold what the chapters promise.

``jupyter-book build -W -n --keep-going`` turns every Sphinx warning into an error: a broken ``{ref}``,
``{eq}`` or ``{prf:ref}``, a missing bibliography key, a notebook missing from the table of contents.
The build reads the notebooks' stored outputs (``execute_notebooks: off``); nbval keeps those outputs
honest by re-running every chapter.
"""
from __future__ import annotations

import re

import yaml

from book_site import ROOT, toc_files

# The ``built_site`` fixture (tests/conftest.py) builds the book once per test run.


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
    chapters = [path for path in sorted((ROOT / "book").glob("*.ipynb")) if not path.name.startswith("assignment_")]
    for notebook in chapters:
        page = (html / "book" / f"{notebook.stem}.html").read_text()
        assert "math notranslate" in page, f"{notebook.stem}: no math"
        images = re.findall(r'<img[^>]+src="([^"]+\.png)"', page)
        assert images, f"{notebook.stem}: no figure"
        for source in images:
            assert (html / "book" / source).resolve().is_file(), f"{notebook.stem}: missing {source}"
        assert 'class="reference internal" href="bibliography.html' in page, f"{notebook.stem}: no citation"


def _asset_urls(page: str) -> list[str]:
    """The URLs a page loads as it opens: scripts, stylesheets, preloads, icons, images."""
    scripts = re.findall(r'<script[^>]*\bsrc="([^"]+)"', page)
    links = [href for tag in re.findall(r"<link\b[^>]*>", page)
             if re.search(r'rel="(stylesheet|preload|icon|shortcut icon|modulepreload)"', tag)
             for href in re.findall(r'href="([^"]+)"', tag)]
    images = re.findall(r'<img[^>]*\bsrc="([^"]+)"', page)
    return scripts + links + images


def test_pages_load_mathjax_from_the_site_and_nothing_from_other_hosts(built_site):
    html, _ = built_site
    for name in toc_files() + ["search", "genindex"]:
        path = html / f"{name}.html"
        page = path.read_text()
        external = [url for url in _asset_urls(page) if "://" in url or url.startswith("//")]
        assert not external, f"{name}: loads from other hosts: {external}"
        assert "THEBE_JS_URL" not in page, f"{name}: thebe's CDN script is back (see _ext/site_fixes.py)"
        mathjax = [url for url in re.findall(r'<script[^>]*\bsrc="([^"]+)"', page) if "mathjax" in url.lower()]
        assert len(mathjax) == ("math notranslate" in page), f"{name}: MathJax scripts {mathjax}"
        for url in mathjax:  # Sphinx adds MathJax to the pages that have math
            served = (path.parent / url.split("?")[0]).resolve()
            assert served == (html / "mathjax" / "tex-chtml.js").resolve() and served.is_file(), url
    fonts = list((html / "mathjax" / "output" / "chtml" / "fonts" / "woff-v2").glob("*.woff"))
    assert len(fonts) >= 20, "MathJax's CHTML fonts are not served with the site"
    size = sum(file.stat().st_size for file in (html / "mathjax").rglob("*") if file.is_file())
    assert size < 5e6, f"the vendored MathJax holds {size / 1e6:.1f} MB: copy only what it needs at run time"


def test_every_chapter_offers_its_notebook_and_launch_buttons(built_site):
    html, _ = built_site
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    repository = config["repository"]["url"].removeprefix("https://github.com/").strip("/")
    branch = config["repository"]["branch"]
    chapters = [page for page in toc_files() if (ROOT / f"{page}.ipynb").is_file()]
    assert chapters
    for chapter in chapters:
        page = (html / f"{chapter}.html").read_text()
        name = chapter.split("/")[-1]
        assert f'href="../_sources/{chapter}.ipynb"' in page, f"{chapter}: no .ipynb download"
        assert (html / "_sources" / f"{chapter}.ipynb").is_file(), f"{chapter}: the .ipynb is not served"
        binder = f"https://mybinder.org/v2/gh/{repository}/{branch}?urlpath=lab/tree/{chapter}.ipynb"
        colab = f"https://colab.research.google.com/github/{repository}/blob/{branch}/{chapter}.ipynb"
        assert f'href="{binder}"' in page, f"{name}: no Binder launch button"
        assert f'href="{colab}"' in page, f"{name}: no Colab launch button"


def test_the_introduction_reads_the_repository_from_the_config(built_site):
    """The install instructions name the repository of ``_config.yml`` (one place to set it), whole."""
    html, _ = built_site
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    url = config["repository"]["url"].rstrip("/")
    page = (html / "book" / "intro.html").read_text()
    text = " ".join(re.sub(r"<[^>]+>", " ", page).split())    # the words a reader sees
    assert f"!pip install git+{url}" in text
    assert text.count(url) >= 2                               # the copy to take, and the Colab line
    assert "{{" not in text and "repository_url" not in text  # no substitution left unexpanded
    assert "pip install -r requirements-student.txt" in text
