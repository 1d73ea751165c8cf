"""The built book reads offline: a headless Chromium with every outside request cut opens it.

Slow (it builds the book, running every notebook, unless a fresh build exists), so `make test`
does not collect this folder; run it with `.venv/bin/python -m pytest tests_book`. The browser is
Debian's Chromium (`/usr/bin/chromium`, or `LAB_CHROMIUM`) driven by Playwright from PyPI; no
browser is ever downloaded.

Which build: `LAB_BOOK_HTML=<folder>` if set; else `build/book/html` when it is newer than every
source of the book (notebooks, book/, docs/, README, utils/); else a fresh build into a
temporary folder. One screenshot goes to `build/screenshots/book_00_pytorch_primer.png`.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import re
import shutil
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("LAB_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
COURSE = sorted(p.stem for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
MATH_PAGE = "00_pytorch_primer"  # M2's variance argument is written in TeX

# TeX that MathJax should have drawn: $...$ / $$...$$ / \(...\) / \[...\] with TeX inside.
RAW_TEX = re.compile(
    r"\$\$.+?\$\$|\$[^$\s][^$\n]*?[\\^_{}][^$\n]*?\$|\\\(.+?\\\)|\\\[.+?\\\]"
    r"|\\(?:frac|sqrt|mathbb|mathrm|operatorname|sum|cdot|sigma|mu|eta|lambda)\b",
    re.S,
)


def _sources() -> list[Path]:
    files = [*(ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"), ROOT / "README.md"]
    for folder, pattern in (("book", "**/*"), ("docs", "**/*.md"), ("utils", "**/*.py")):
        files += [p for p in (ROOT / folder).glob(pattern) if p.is_file()]
    return files


def notebook_title(stem: str) -> str:
    """The notebook's `# ` heading as Sphinx shows it (inline code marks dropped)."""
    nb = json.loads((ROOT / "notebooks" / f"{stem}.ipynb").read_text(encoding="utf-8"))
    for cell in nb["cells"]:
        text = "".join(cell["source"])
        if cell["cell_type"] == "markdown" and text.startswith("# "):
            return text.splitlines()[0][2:].replace("`", "").strip()
    raise AssertionError(f"{stem} has no title")


@pytest.fixture(scope="session")
def html(tmp_path_factory) -> Path:
    if os.environ.get("LAB_BOOK_HTML"):
        return Path(os.environ["LAB_BOOK_HTML"])
    built = ROOT / "build" / "book" / "html" / "index.html"
    if built.exists() and built.stat().st_mtime > max(p.stat().st_mtime for p in _sources()):
        return built.parent
    from utils.tooling import book

    out = tmp_path_factory.mktemp("book")
    assert book.build(out, "force", quiet=True) == 0, (out / "warnings.txt").read_text()
    return out / "html"


@pytest.fixture(scope="session")
def server(html):
    """The book on a local HTTP server (127.0.0.1, a free port)."""
    handler = functools.partial(QuietHandler, directory=str(html))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install chromium")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture
def offline_page(browser, server):
    """A page whose every request to anything but the local server or file:// is aborted."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    blocked: list[str] = []

    def route(r):
        url = r.request.url
        if url.startswith((server + "/", "file://", "data:", "blob:")):
            r.continue_()
        else:
            blocked.append(url)
            r.abort()

    context.route("**/*", route)
    page = context.new_page()
    page.blocked = blocked
    page.missing = []  # local files the page asked for and did not get (a font, a script)

    def response(r):
        if r.status >= 400 and not r.url.endswith("/favicon.ico"):
            page.missing.append(f"{r.status} {r.url}")

    page.on("response", response)
    yield page
    context.close()


def prose_text(page) -> str:
    """The article's text as a reader sees it, without code (its f-strings may hold TeX)."""
    return page.evaluate(
        """() => {
            const article = document.querySelector('article').cloneNode(true);
            article.querySelectorAll('pre, code, script, style, .MathJax_Preview, .cell_input')
                .forEach(e => e.remove());
            return article.textContent;
        }"""
    )


def open_rendered(page, url: str) -> None:
    page.goto(url, wait_until="load")
    if page.locator("script[src*='mathjax/MathJax.js']").count() == 0:
        assert page.locator(".math").count() == 0, f"{url} has math but no MathJax"
        return  # Sphinx loads MathJax only on pages with math
    page.wait_for_function("() => window.MathJax && window.MathJax.Hub", timeout=30_000)
    page.evaluate("() => new Promise(done => MathJax.Hub.Queue(() => done(true)))")


def test_static_html_names_no_other_host(html):
    pages = [p for p in html.rglob("*.html") if "_static" not in p.parts]
    assert len(pages) >= 10
    remote = re.compile(r"""<(?:script|link|img|iframe)\b[^>]*\b(?:src|href)=["'](?:https?:)?//""")
    for page in pages:
        hits = remote.findall(page.read_text(encoding="utf-8"))
        assert not hits, f"{page.relative_to(html)} loads from another host: {hits[:3]}"
    assert (html / "_static" / "mathjax" / "MathJax.js").is_file()


def test_notebook_page_renders_math_offline_with_navigation(offline_page, server):
    page = offline_page
    open_rendered(page, f"{server}/notebooks/{MATH_PAGE}.html")

    # formulas: MathJax drew them, and no TeX source is left in the text a reader sees
    assert page.locator("script[type^='math/tex']").count() > 0
    drawn = page.locator(".MathJax, .MathJax_Display, .MathJax_CHTML, .MathJax_SVG").count()
    assert drawn > 0
    assert page.locator(".MathJax_Error, merror").count() == 0
    leftover = RAW_TEX.findall(prose_text(page))
    assert not leftover, f"raw TeX in the rendered page: {leftover[:5]}"

    # title: the notebook's own heading, not "Notebook"
    title = notebook_title(MATH_PAGE)
    assert page.title().startswith(title), page.title()
    assert page.locator("article h1").first.inner_text().strip().startswith(title)

    # sidebar: the six notebooks in course order
    hrefs = page.locator("nav.bd-docs-nav a.reference").evaluate_all(
        "links => links.map(a => a.href)"  # resolved: the current page's own link is '#'
    )
    listed = [m.group(1) for h in hrefs if (m := re.search(r"/(\d\d_\w+)\.html#?$", h))]
    assert listed == COURSE, hrefs

    # previous / next
    prev = page.locator("a.left-prev")
    nxt = page.locator("a.right-next")
    assert prev.count() == 1 and nxt.count() == 1
    assert prev.get_attribute("href").endswith("book/index.html")
    assert nxt.get_attribute("href").endswith(f"{COURSE[1]}.html")

    # a screenshot at the first drawn formula
    shots = ROOT / "build" / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    formula = page.locator(".MathJax_Display, .MathJax").first
    formula.scroll_into_view_if_needed()
    page.evaluate("() => window.scrollBy(0, -250)")
    page.screenshot(path=str(shots / f"book_{MATH_PAGE}.png"))

    assert page.blocked == [], f"requests to other hosts: {page.blocked}"
    assert page.missing == [], f"files missing from the book: {page.missing}"


def test_every_page_opens_offline_and_links_resolve(offline_page, server, html):
    page = offline_page
    for path in ["index.html", "book/answers.html", "docs/questions.html", "docs/glossary.html"]:
        response = page.goto(f"{server}/{path}", wait_until="load")
        assert response.ok, path
    assert page.blocked == [], f"requests to other hosts: {page.blocked}"
    # the landing page draws its formula too
    open_rendered(page, f"{server}/book/index.html")
    assert page.locator(".MathJax").count() > 0
    assert page.missing == [], f"files missing from the book: {page.missing}"


def _has_question_anchors() -> bool:
    text = (ROOT / "notebooks" / f"{MATH_PAGE}.ipynb").read_text(encoding="utf-8")
    return bool(re.search(r"""<a (?:id|name)=\\?["']M1\\?["']""", text))


@pytest.mark.skipif(
    not _has_question_anchors(), reason='the notebooks carry no <a id="M1"></a> anchors yet'
)
def test_answer_index_and_catalogue_link_to_each_question(html):
    ids_of: dict[str, set[str]] = {}
    for source in ("book/answers.html", "docs/questions.html"):
        text = (html / source).read_text(encoding="utf-8")
        links = re.findall(r'href="\.\./notebooks/(\d\d_\w+)\.html#([^"]+)"', text)
        assert len(links) >= 40, source
        for stem, anchor in links:
            if stem not in ids_of:
                page = (html / "notebooks" / f"{stem}.html").read_text(encoding="utf-8")
                ids_of[stem] = set(re.findall(r'\bid="([^"]+)"', page))
            assert anchor in ids_of[stem], f"{source}: {stem}.html#{anchor} has no target"
            assert re.fullmatch(r"[A-Z]+\d+", anchor), f"{source}: {anchor} is not a question ID"


@pytest.mark.parametrize("stem", COURSE)
def test_no_notebook_page_shows_raw_tex(offline_page, server, stem):
    page = offline_page
    open_rendered(page, f"{server}/notebooks/{stem}.html")
    assert page.locator(".MathJax_Error, merror").count() == 0
    leftover = RAW_TEX.findall(prose_text(page))
    assert not leftover, f"{stem}: raw TeX in the rendered page: {leftover[:5]}"
    assert page.title().startswith(notebook_title(stem)), page.title()
    assert page.blocked == [], f"requests to other hosts: {page.blocked}"
    assert page.missing == [], f"files missing from the book: {page.missing}"
