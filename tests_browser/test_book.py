"""The book offline: a page opened from disk in Chromium, with every network request refused.

The book is built with ``make book``'s wrapper (``utils.tooling.book``) without executing the
notebooks (``--execute off``: formulas, navigation and titles do not depend on outputs), into a
temporary folder. The page of notebook 02 holds the R2 bias-variance derivation, the longest
formula in the course. Asserted: MathJax typesets it from the book's own ``_static`` copy (no
raw ``$...$`` or ``\\[...\\]`` left in the text), the page has its own title, a sidebar in
course order and previous/next links, and no request left ``file://``. Screenshot:
``build/screenshots/book_02_regularization.png``.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

PAGE = "notebooks/02_regularization.html"
RAW_TEX = re.compile(r"\$[^$\n]{2,}\$|\\\[|\\begin\{")


@pytest.fixture(scope="module")
def book_html(tmp_path_factory):
    out = tmp_path_factory.mktemp("book")
    cmd = [sys.executable, "-m", "utils.tooling.book", "--out", str(out), "--execute", "off", "-q"]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, f"book build failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return out / "html"


def test_book_page_renders_formulas_and_navigation_offline(book_html, browser, screenshots):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    remote = []

    def refuse_remote(route):
        if route.request.url.startswith("file://"):
            route.continue_()
        else:
            remote.append(route.request.url)
            route.abort()

    context.route("**/*", refuse_remote)
    page = context.new_page()
    try:
        page.goto((book_html / PAGE).as_uri())
        # MathJax 2.7 signals the end of typesetting through its hub queue
        page.wait_for_function(
            "() => window.MathJax && MathJax.Hub && MathJax.Hub.queue && "
            "MathJax.Hub.queue.pending === 0 && MathJax.Hub.queue.running === 0 && "
            "document.querySelectorAll('.MathJax, .MathJax_Display, mjx-container').length > 0",
            timeout=60_000,
        )
        article = page.locator("article, main").first.inner_text()
        assert "Bias-variance" in article or "bias" in article.lower()
        raw = RAW_TEX.findall(article)
        assert not raw, f"formulas left as raw TeX: {raw[:5]}"
        rendered = page.locator(".MathJax, .MathJax_Display, mjx-container").count()
        title = page.title()
        assert title and not title.startswith("Notebook"), f"page title {title!r}"
        nav = [t.strip() for t in page.locator("nav.bd-links a, .bd-sidebar a").all_inner_texts()]
        course = [t for t in nav if re.match(r"^0[0-5]\b", t)]
        assert course == sorted(course) and len(course) >= 6, f"sidebar: {nav[:12]}"
        prev_next = page.locator(".prev-next-area a, a.left-prev, a.right-next").count()
        assert prev_next >= 2, "no previous/next links"
        assert not remote, f"the page requested other hosts: {remote[:5]}"
        print(f"[book] {title!r}: {rendered} formulas typeset, sidebar {course}", flush=True)
        page.locator(".MathJax_Display").first.scroll_into_view_if_needed()
        page.screenshot(path=screenshots / "book_02_regularization.png")
    finally:
        context.close()
