"""Small fixes to the HTML that Jupyter Book 1.x writes, so every page loads cleanly offline.

Loaded through ``sphinx: local_extensions`` in ``_config.yml``.

- **Duplicate inline scripts.** With Sphinx 7.4, an inline ``<script>`` (a body, no file) that an
  extension adds once the builder exists lands twice on every page: the builder keeps it with the file
  name ``None`` and ``StandaloneHTMLBuilder.prepare_writing`` adds it again with ``''``. sphinx-thebe's
  ``const THEBE_JS_URL = ...`` then runs twice, and the second copy throws "Identifier 'THEBE_JS_URL' has
  already been declared" in the console of every page. We drop the second copy of every script.
- **Thebe.** The course has no thebe (live code on Binder) button, so its scripts, which name a CDN,
  are left out of the pages; they come back if ``launch_buttons: thebe`` is turned on.
- **MathJax.** The site serves MathJax itself from ``_vendor/mathjax/`` (``npm ci`` fills it); if it is
  missing, the build warns with the command that fixes it, instead of leaving pages without math.
- **One search box.** sphinx-book-theme keeps search in its primary sidebar and empties the theme's
  top navbar through its ``theme.conf`` (``navbar_persistent =``). pydata-sphinx-theme 0.17 only looks
  at the options the *user* set, finds no ``navbar_persistent`` and puts its search field back into a
  top bar, so desktop pages showed two search boxes. We set the option (to no items) unless
  ``html_theme_options`` already names it.
- **The repository address in one place.** ``_config.yml``'s ``repository: url`` (which Jupyter Book hands
  to the theme as ``html_theme_options["repository_url"]``) is also made the MyST substitution
  ``{{ repository_url }}``, so the pages' install instructions read it from there instead of repeating it.
"""
from __future__ import annotations

import pathlib
import posixpath

from sphinx.util import logging

logger = logging.getLogger(__name__)

THEBE_MARKERS = ("THEBE_JS_URL", "sphinx-thebe.js")


def _thebe_enabled(app) -> bool:
    launch = (app.config.html_theme_options or {}).get("launch_buttons") or {}
    return bool(launch.get("thebe")) or bool((getattr(app.config, "thebe_config", None) or {}).get("always_load"))


def _clean_scripts(app, pagename, templatename, context, doctree) -> None:
    scripts = context.get("script_files")
    if not scripts:
        return
    drop_thebe = not _thebe_enabled(app)
    seen = set()
    kept = []
    for script in scripts:
        filename = getattr(script, "filename", script) or ""
        attributes = getattr(script, "attributes", {})
        key = (str(filename), tuple(sorted(attributes.items())))
        if key in seen:
            continue
        seen.add(key)
        if drop_thebe and any(marker in str(filename) + attributes.get("body", "") for marker in THEBE_MARKERS):
            continue
        kept.append(script)
    context["script_files"] = kept


def _check_vendored_mathjax(app) -> None:
    path = app.config.mathjax_path or ""
    served = posixpath.normpath(posixpath.join("_static", path))  # Sphinx reads mathjax_path from _static/
    if "://" in path or served.startswith("_static/"):
        return
    folders = [pathlib.Path(app.confdir, extra) for extra in app.config.html_extra_path]
    if not any((folder / served).is_file() for folder in folders):
        logger.warning(
            "MathJax is not vendored: no html_extra_path folder holds %s, so the pages' math will not "
            "render. Run `npm ci` in %s (it copies MathJax into _vendor/; see scripts/vendor_mathjax.js).",
            served, app.confdir,
        )


def _one_search_box(app, config) -> None:
    if config.html_theme == "sphinx_book_theme":
        if config.html_theme_options is None:
            config.html_theme_options = {}
        config.html_theme_options.setdefault("navbar_persistent", [])


def _repository_substitutions(app, config) -> None:
    options = config.html_theme_options or {}
    url = (options.get("repository_url") or "").rstrip("/")
    if not url:
        logger.warning("_config.yml names no repository url; the install instructions need one")
        return
    config.myst_substitutions = {**config.myst_substitutions, "repository_url": url}


def setup(app):
    app.connect("config-inited", _one_search_box)
    app.connect("config-inited", _repository_substitutions)
    app.connect("builder-inited", _check_vendored_mathjax)
    app.connect("html-page-context", _clean_scripts)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
