"""Fixtures of the site tests: the book is built once per test run and shared by every test that needs it."""
from __future__ import annotations

import pathlib

import pytest

import book_site


@pytest.fixture(scope="session")
def built_site(tmp_path_factory) -> tuple[pathlib.Path, str]:
    """(the html folder, the build log) of a warning-free ``jupyter-book build -W -n --keep-going``.

    The JupyterLite site is built into the html folder's ``lite/`` afterwards, as the README's first
    command does, so the chapters' JupyterLite launch links are checked like every other link.
    """
    html, log, returncode = book_site.build_book(tmp_path_factory.mktemp("book"))
    assert returncode == 0, log[-6000:]
    lite_log, lite_returncode = book_site.build_lite(html / "lite", tmp_path_factory.mktemp("lite-staging"))
    assert lite_returncode == 0, lite_log[-6000:]
    return html, log


def pytest_terminal_summary(terminalreporter) -> None:
    """Say where the browser tests left their screenshots (only when this run saved some)."""
    if book_site.saved_screenshots:
        terminalreporter.write_line(
            f"site screenshots: {len(book_site.saved_screenshots)} PNG files in {book_site.SCREENSHOTS}"
        )
