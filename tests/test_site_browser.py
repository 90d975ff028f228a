"""The built site in a real browser with no network: every page renders, links, loads and searches offline.

The book built once per run (the ``built_site`` fixture of ``tests/conftest.py``) is served by Python's
``http.server`` on 127.0.0.1 and opened in Debian's chromium, driven by Playwright. Every request to a
host other than 127.0.0.1 is aborted and recorded, so a page that needs a CDN fails here. On every
page of the table of contents the tests check: every same-origin ``href``/``src`` answers HTTP 200 (and
every ``#fragment`` into a page names an element there), MathJax rendered all the math and no raw TeX
is left in the text, the console holds no error, every ``<img>`` decoded with a non-zero width, no
request left the machine, at a phone's width the page does not scroll sideways, no formula is cut off
(at desktop width every one fits the box that shows it; at a phone's width one that does not scrolls
in its box and shows a cue, see ``_static/site.css``), and the page shows one search box. The search
page must find "truncation". Each page is loaded once, looked at 1280 px wide, then narrowed to 390 px
and looked at again; a full-page screenshot at both widths is saved under ``_build/screenshots/`` for
people to look at (pytest's summary names the folder).

chromium and Playwright are required, not optional: without them these tests fail and say how to
install them (``.ci/run`` does).
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import html.parser
import http.server
import pathlib
import shutil
import threading
import urllib.error
import urllib.parse
import urllib.request

import pytest

import book_site
from book_site import SCREENSHOTS, toc_files

CHROMIUM = pathlib.Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",  # CI runs as root
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# Each page is loaded once, at desktop width, then narrowed to a phone's width (the theme lays pages out
# by CSS width alone) and looked at again.
VIEWPORTS = {"desktop": {"width": 1280, "height": 900}, "phone": {"width": 390, "height": 844}}
PAGES = toc_files()
LOCAL_HOST = "127.0.0.1"
TIMEOUT_MS = 20_000

# After the load event: wait for MathJax's first typesetting, make every image load and decode, wait
# for the web fonts.
SETTLE_JS = """async () => {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) { await MathJax.startup.promise; }
  const images = Array.from(document.images);
  images.forEach((img) => { img.loading = "eager"; });
  await Promise.all(images.map((img) => img.decode().catch(() => null)));
  await document.fonts.ready;
}"""

# What the page shows once settled.
INSPECT_JS = r"""() => {
  const links = [];
  for (const el of document.querySelectorAll("[href], [src]")) {
    for (const name of ["href", "src"]) {
      const value = el.getAttribute(name);
      if (value !== null && value !== "") { links.push(new URL(value, document.baseURI).href); }
    }
  }
  const math = Array.from(document.querySelectorAll(".math"));
  const unrendered = math.filter((el) => !el.querySelector("mjx-container"))
                         .map((el) => el.textContent.trim().slice(0, 80));
  const mathErrors = Array.from(document.querySelectorAll("mjx-merror, mjx-container [data-mjx-error]"))
                          .map((el) => (el.getAttribute("data-mjx-error") || el.textContent).slice(0, 80));
  // Text outside code, scripts and rendered math that still holds TeX.
  const rawTex = [];
  const skip = "pre, code, script, style, textarea, mjx-container, mjx-assistive-mml";
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  const pattern = /\$\$|\\\(|\\\)|\\\[|\\\]|\\begin\{|\$[^$\n]*\\[A-Za-z]+[^$\n]*\$/;
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    if (node.parentElement && node.parentElement.closest(skip)) { continue; }
    if (pattern.test(node.textContent)) { rawTex.push(node.textContent.trim().slice(0, 120)); }
  }
  const images = Array.from(document.images).map((img) => ({
    src: img.currentSrc || img.src, complete: img.complete, width: img.naturalWidth,
  }));
  const searchHits = Array.from(document.querySelectorAll("#search-results ul.search li a")).map((a) => a.href);
  const overflow = document.documentElement.scrollWidth - document.documentElement.clientWidth;
  // The search fields and buttons a reader sees (not the closed search dialog, not an off-canvas sidebar).
  const searchBoxes = Array.from(document.querySelectorAll(
    'input[type="search"], .search-button-field, .search-button, [role="search"]'))
    .filter((el) => {
      const box = el.getBoundingClientRect();
      return box.width > 0 && box.height > 0 && box.right > 0 && box.left < window.innerWidth
        && getComputedStyle(el).visibility === "visible" && !el.closest("dialog:not([open])")
        && !el.parentElement.closest('input[type="search"], .search-button-field, .search-button, [role="search"]');
    })
    .map((el) => `${el.tagName.toLowerCase()}.${Array.from(el.classList).join(".")}`);
  return {
    overflow, searchHits, links, mathCount: math.length, containers: document.querySelectorAll("mjx-container").length,
    unrendered, mathErrors, rawTex, images, searchBoxes,
  };
}"""

# Every formula (``mjx-container``, display or inline) that a box cuts off: walking out from the formula
# as drawn (MathJax's ``mjx-math``; not the container's scrollWidth, which MathJax's hidden copy of the
# formula for screen readers can widen) through the container and each ancestor that hides or scrolls
# what sticks out of it, each box that hides part of what is still visible. ``cue``: the box scrolls
# (overflow-x auto or scroll) and shows it, by a scrollbar with a height (Playwright's headless
# chromium hides scrollbars) or by the fade of _static/site.css (a mask image).
CLIPPED_MATH_JS = r"""() => {
  const items = window.MathJax && MathJax.startup && MathJax.startup.document
    ? Array.from(MathJax.startup.document.math) : [];
  const name = (container) => {
    const eqno = container.closest("div.math") && container.closest("div.math").querySelector(".eqno");
    if (eqno) { return `equation ${eqno.textContent.replace(/#/g, "").trim()}`; }
    const item = items.find((math) => math.typesetRoot === container);
    return (item ? item.math : container.textContent).trim().replace(/\s+/g, " ").slice(0, 70);
  };
  const clipped = [];
  for (const container of document.querySelectorAll("mjx-container")) {
    const drawn = (container.querySelector("mjx-math") || container).getBoundingClientRect();
    if (drawn.width === 0) { continue; }  // not laid out (a closed dropdown)
    let left = drawn.left, right = drawn.right;  // the part of the formula still visible
    for (let el = container; el && el !== document.body; el = el.parentElement) {
      const style = getComputedStyle(el);
      if (style.overflowX === "visible") { continue; }
      const inner = el.getBoundingClientRect().left + el.clientLeft;
      const hidden = Math.max(right - (inner + el.clientWidth), inner - left);
      left = Math.max(left, inner);
      right = Math.min(right, inner + el.clientWidth);
      if (hidden <= 1) { continue; }
      const scrolls = style.overflowX === "auto" || style.overflowX === "scroll";
      const scrollbar = el.offsetHeight - el.clientHeight
        - parseFloat(style.borderTopWidth) - parseFloat(style.borderBottomWidth);
      const fade = (style.maskImage || style.webkitMaskImage || "none") !== "none";
      clipped.push({
        math: name(container), hidden: Math.round(hidden),
        box: [el.tagName.toLowerCase(), ...el.classList].join("."),
        cue: scrolls && (scrollbar > 0 || fade),
      });
    }
  }
  return clipped;
}"""


@dataclasses.dataclass
class Visit:
    """What one page did (requests, console) and showed at each width (``shown``, ``screenshots``)."""

    url: str
    outside_requests: list[str] = dataclasses.field(default_factory=list)
    failed_requests: list[str] = dataclasses.field(default_factory=list)
    console_errors: list[str] = dataclasses.field(default_factory=list)
    shown: dict[str, dict] = dataclasses.field(default_factory=dict)  # viewport -> what INSPECT_JS saw
    screenshots: dict[str, pathlib.Path] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Site:
    root: pathlib.Path
    base: str
    visits: dict[str, Visit]  # page of the toc -> Visit
    search: Visit
    status: dict[str, int | str]  # every same-origin URL linked from a page (no fragment) -> HTTP status


def _require_browser():
    """Playwright's sync API, or a failure that says what to install."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as error:
        pytest.fail(f"the browser tests need pip's playwright ({error}); install it: "
                    ".venv/bin/pip install -r requirements.txt", pytrace=False)
    if not CHROMIUM.is_file():
        pytest.fail(f"the browser tests need Debian's chromium at {CHROMIUM}; install it as root: "
                    "apt-get update && apt-get install -y chromium (.ci/run does)", pytrace=False)
    return sync_playwright


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the signature of the base class
        pass


class _QuietServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):  # a browser that drops a connection is no error here
        pass


@contextlib.contextmanager
def serve(folder: pathlib.Path):
    """Serve ``folder`` on 127.0.0.1 at an ephemeral port, in a thread; yields the base URL."""
    server = _QuietServer((LOCAL_HOST, 0), functools.partial(_QuietHandler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, name="site-server", daemon=True)
    thread.start()
    try:
        yield f"http://{LOCAL_HOST}:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _is_local(url: str) -> bool:
    parts = urllib.parse.urlsplit(url)
    return parts.scheme not in ("http", "https", "ws", "wss") or parts.hostname == LOCAL_HOST


def new_context(browser, record: dict):
    """A browser context that aborts every request leaving 127.0.0.1 and records it in ``record["visit"]``."""
    context = browser.new_context(viewport=VIEWPORTS["desktop"])
    context.set_default_timeout(TIMEOUT_MS)

    def route(route):
        if _is_local(route.request.url):
            route.continue_()
        else:
            record["visit"].outside_requests.append(route.request.url)
            route.abort("blockedbyclient")

    context.route("**/*", route)
    return context


def visit(context, record: dict, url: str, *, ready_js: str | None = None, screenshot: str | None = None):
    """Open ``url`` in a fresh tab, let it settle, and inspect it at every width of ``VIEWPORTS``.

    With ``screenshot`` (a file name), save a full-page screenshot at each width under ``SCREENSHOTS``.
    Without, look at the desktop width only.
    """
    seen = record["visit"] = Visit(url)
    page = context.new_page()

    def on_console(message):
        if message.type == "error":
            seen.console_errors.append(f"{message.text} ({message.location.get('url', '')})")

    def on_response(response):
        if _is_local(response.url) and response.status >= 400:
            seen.failed_requests.append(f"HTTP {response.status} {response.url}")

    def on_request_failed(request):
        if _is_local(request.url):
            seen.failed_requests.append(f"{request.failure} {request.url}")

    page.on("console", on_console)
    page.on("pageerror", lambda error: seen.console_errors.append(f"uncaught: {error}"))
    page.on("response", on_response)
    page.on("requestfailed", on_request_failed)
    page.on("websocket", lambda ws: None if _is_local(ws.url) else seen.outside_requests.append(ws.url))
    page.goto(url, wait_until="load")
    page.evaluate(SETTLE_JS)
    if ready_js:
        page.wait_for_function(ready_js)
    for viewport, size in VIEWPORTS.items():
        if viewport != "desktop":
            if not screenshot:
                break
            page.set_viewport_size(size)
            page.evaluate(RELAYOUT_JS)
        seen.shown[viewport] = page.evaluate(INSPECT_JS)
        seen.shown[viewport]["clippedMath"] = page.evaluate(CLIPPED_MATH_JS)
        if screenshot:
            path = SCREENSHOTS / viewport / screenshot
            path.parent.mkdir(parents=True, exist_ok=True)
            # animations="disabled" ends the theme's CSS transitions, which would leave the top of a
            # page narrowed to a phone's width drawn as it was at desktop width
            page.screenshot(path=str(path), full_page=True, animations="disabled")
            seen.screenshots[viewport] = path
            book_site.saved_screenshots.append(path)
    page.close()
    return seen


def http_status(url: str) -> int | str:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError as error:
        return f"unreachable ({error})"


RELAYOUT_JS = """() => new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)))"""

SEARCH_DONE_JS = """() => {
  const summary = document.querySelector("#search-results p.search-summary");
  return summary && /Search finished|did not match/.test(summary.innerText);
}"""


@pytest.fixture(scope="module")
def site(built_site) -> Site:
    """Every page of the toc visited at desktop and phone width, the search page, and every linked URL's status."""
    root, _ = built_site
    sync_playwright = _require_browser()
    shutil.rmtree(SCREENSHOTS, ignore_errors=True)
    record: dict = {}
    visits: dict[str, Visit] = {}
    with serve(root) as base, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            context = new_context(browser, record)
            for page in PAGES:
                shot = f"{pathlib.PurePosixPath(page).name}.png"
                visits[page] = visit(context, record, f"{base}{page}.html", screenshot=shot)
            search = visit(context, record, f"{base}search.html?q=truncation", ready_js=SEARCH_DONE_JS)
            context.close()
        finally:
            browser.close()
        linked = {url.split("#")[0] for seen in visits.values() for url in seen.shown["desktop"]["links"]}
        status = {url: http_status(url) for url in sorted(linked) if url.startswith(base)}
    return Site(root, base, visits, search, status)


def _fragment_targets(root: pathlib.Path, base: str, links: list[str]) -> list[str]:
    """Links ``page.html#id`` whose page has no element with that id."""
    missing = []
    ids: dict[pathlib.Path, set[str]] = {}
    for url in links:
        address, _, fragment = url.partition("#")
        if not fragment or not address.startswith(base):
            continue
        path = urllib.parse.urlsplit(address).path.lstrip("/")
        target = root / urllib.parse.unquote(path)
        if target.suffix != ".html":
            continue
        if target not in ids:
            collector = _IdCollector()
            collector.feed(target.read_text(encoding="utf-8") if target.is_file() else "")
            ids[target] = collector.ids
        if urllib.parse.unquote(fragment) not in ids[target]:
            missing.append(url)
    return missing


class _IdCollector(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in ("id", "name") and value:
                self.ids.add(value)


@pytest.mark.parametrize("page", PAGES)
def test_every_link_and_asset_of_the_page_answers_200(site, page):
    shown = site.visits[page].shown["desktop"]
    local = sorted({url.split("#")[0] for url in shown["links"] if url.startswith(site.base)})
    assert local, f"{page}: no same-origin links found"
    broken = [f"{site.status[url]} {url}" for url in local if site.status[url] != 200]
    assert not broken, f"{page}: links or assets that do not answer 200:\n" + "\n".join(broken)
    missing = _fragment_targets(site.root, site.base, shown["links"])
    assert not missing, f"{page}: links to an #id that the target page lacks:\n" + "\n".join(missing)


@pytest.mark.parametrize("page", PAGES)
def test_no_request_leaves_the_machine_and_none_fails(site, page):
    seen = site.visits[page]
    assert not seen.outside_requests, f"{page}: requests to other hosts:\n" + "\n".join(seen.outside_requests)
    assert not seen.failed_requests, f"{page}: failed requests:\n" + "\n".join(seen.failed_requests)


@pytest.mark.parametrize("page", PAGES)
def test_no_console_errors(site, page):
    errors = site.visits[page].console_errors
    assert not errors, f"{page}: console errors:\n" + "\n".join(errors)


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
@pytest.mark.parametrize("page", PAGES)
def test_math_is_rendered_and_no_raw_tex_is_left(site, page, viewport):
    shown = site.visits[page].shown[viewport]
    assert not shown["rawTex"], f"{page}: raw TeX in the text:\n" + "\n".join(shown["rawTex"])
    assert not shown["unrendered"], f"{page}: math MathJax did not render:\n" + "\n".join(shown["unrendered"])
    assert not shown["mathErrors"], f"{page}: MathJax errors:\n" + "\n".join(shown["mathErrors"])
    source = (site.root / f"{page}.html").read_text(encoding="utf-8")
    if "math notranslate" in source:
        assert shown["mathCount"] > 0 and shown["containers"] >= shown["mathCount"], (
            f"{page}: {shown['mathCount']} math elements, {shown['containers']} rendered by MathJax")


@pytest.mark.parametrize("page", PAGES)
def test_the_page_fits_a_phone_screen(site, page):
    """Wide content (code, tables, equations) scrolls in its own box; the page itself never scrolls sideways."""
    overflow = site.visits[page].shown["phone"]["overflow"]
    assert overflow <= 0, f"{page}: {overflow} px wider than a {VIEWPORTS['phone']['width']} px screen"


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
@pytest.mark.parametrize("page", PAGES)
def test_no_formula_is_cut_off(site, page, viewport):
    """At desktop width every formula fits the box that shows it; at a phone's width one that does not
    scrolls in its box and shows that it does (a scrollbar, or the fade of ``_static/site.css``)."""
    clipped = site.visits[page].shown[viewport]["clippedMath"]
    what = "formulas cut off"
    if viewport != "desktop":
        clipped = [math for math in clipped if not math["cue"]]
        what = "formulas cut off without a scroll cue"
    width = VIEWPORTS[viewport]["width"]
    assert not clipped, f"{page} at {width} px: {what}:\n" + "\n".join(
        f"{math['math']}: {math['hidden']} px hidden by {math['box']}" for math in clipped)


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
@pytest.mark.parametrize("page", PAGES)
def test_the_page_shows_one_search_box(site, page, viewport):
    boxes = site.visits[page].shown[viewport]["searchBoxes"]
    assert len(boxes) == 1, f"{page} at {VIEWPORTS[viewport]['width']} px: {len(boxes)} search boxes: {boxes}"


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
@pytest.mark.parametrize("page", PAGES)
def test_every_image_decodes_with_a_nonzero_size(site, page, viewport):
    images = site.visits[page].shown[viewport]["images"]
    broken = [image["src"] for image in images if not image["complete"] or image["width"] == 0]
    assert not broken, f"{page}: images that did not decode:\n" + "\n".join(broken)


def test_the_search_page_finds_truncation(site):
    assert not site.search.outside_requests, site.search.outside_requests
    assert not site.search.failed_requests, site.search.failed_requests
    assert not site.search.console_errors, site.search.console_errors
    pages = {urllib.parse.urlsplit(hit).path for hit in site.search.shown["desktop"]["searchHits"]}
    assert "/book/intro.html" in pages, f"search for 'truncation' found {sorted(pages)}"


def test_a_screenshot_of_every_page_is_saved(site):
    for page, seen in site.visits.items():
        for viewport in VIEWPORTS:
            path = seen.screenshots.get(viewport)
            assert path and path.stat().st_size > 10_000, f"{viewport} {page}: no screenshot"
