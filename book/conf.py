"""Sphinx configuration of the Mentoring Lab book (`make book`: `python -m utils.tooling.book`).

The book is a Sphinx project read by myst-nb and drawn by sphinx-book-theme. Its source folder is
the repository root and this folder is only its configuration (``sphinx-build -c book . OUT``), so
the pages are the repository's own files, never copies: ``notebooks/0*.ipynb`` and ``docs/**.md``
keep their relative links (``../notebooks/...`` in ``docs/questions.md``), and the book's own
pages live in ``book/``. ``book/answers.md`` shows README's answer index, read at build time with
each row linked to its question's section.

It reads offline: MathJax 2.7 is copied from the ``jupyter-server-mathjax`` pip package into the
book's ``_static/mathjax``, and no page loads anything from another host (myst-nb's ipywidgets
and require.js CDN scripts are switched off). Notebooks are executed at build time with
``LAB_PROGRESS=0`` (no widget progress bars); ``LAB_BOOK_EXECUTE`` chooses ``force`` (default),
``cache`` (jupyter-cache under ``build/book/jupyter_cache``) or ``off``.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

BOOK = Path(__file__).resolve().parent
ROOT = BOOK.parent
BUILD = Path(os.environ.get("LAB_BUILD_DIR", "").strip() or ROOT / "build")

#: The notebooks in course order: the order of their file names (00_ ... 05_).
COURSE = sorted(p.stem for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))

project = "Mentoring Lab"
author = "the study group"
copyright = "the Mentoring Lab authors"
language = "en"
root_doc = "book/index"

extensions = ["myst_nb", "sphinx.ext.mathjax"]
#: What the book reads from the repository root; everything else at the top is pruned unread.
SOURCES = ("book", "notebooks", "docs")
include_patterns = ["book/*.md", "notebooks/[0-9][0-9]_*.ipynb", "docs/*.md", "docs/*/*.md"]
exclude_patterns = sorted(p.name for p in ROOT.iterdir() if p.name not in SOURCES) + [
    "book/_static",
    "book/_templates",
    "notebooks/solutions",
    "**/.ipynb_checkpoints",
    "docs/facilitator/src",
]
suppress_warnings = ["mystnb.unknown_mime_type"]

# --- theme: a sidebar in course order, previous/next links, an in-page table of contents ---
html_theme = "sphinx_book_theme"
html_title = "Mentoring Lab"
html_static_path = ["_static"]
templates_path = ["_templates"]
html_additional_pages = {"index": "redirect.html"}  # <out>/index.html opens book/index.html
html_css_files = ["book.css"]
html_theme_options = {
    "home_page_in_toc": True,
    "show_navbar_depth": 1,
    "show_toc_level": 2,
    "toc_title": "On this page",
    "use_download_button": True,
    "use_fullscreen_button": True,
    "use_repository_button": False,
    "navigation_with_keys": False,
    "show_prev_next": True,
}
html_last_updated_fmt = None

# --- MyST: $...$ and $$...$$ are math (in markdown cells and in Markdown outputs) ---
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence"]
myst_dmath_double_inline = True  # $$...$$ inside a paragraph is display math, as in JupyterLab
myst_heading_anchors = 3
myst_update_mathjax = False  # it would write a MathJax 3/4 config; we load MathJax 2.7

# --- myst-nb: execute at build time, offline ---
nb_execution_mode = os.environ.get("LAB_BOOK_EXECUTE", "force")
nb_execution_cache_path = str(BUILD / "book" / "jupyter_cache")
nb_execution_timeout = 1200  # seconds per cell; a notebook takes under a minute
nb_execution_raise_on_error = False  # keep building; build-finished fails the build at the end
nb_execution_show_tb = True
nb_render_markdown_format = "myst"  # verdict.discuss's Markdown outputs get math too
nb_merge_streams = True
nb_ipywidgets_js = {}  # the default loads require.js and the widget manager from CDNs
os.environ.setdefault("LAB_PROGRESS", "0")  # the kernels inherit it: no widget progress bars

# --- math: MathJax 2.7 from the jupyter-server-mathjax pip package, copied into _static ---
MATHJAX_DIR = "mathjax"
mathjax_path = f"{MATHJAX_DIR}/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full"  # under _static/
mathjax2_config = {
    "tex2jax": {
        "inlineMath": [["\\(", "\\)"]],
        "displayMath": [["\\[", "\\]"]],
        "processEscapes": True,
        "processEnvironments": True,
    },
    # the package ships the STIX-Web fonts only (as Jupyter configures it): no TeX font files
    "HTML-CSS": {
        "availableFonts": [],
        "preferredFont": None,
        "webFont": "STIX-Web",
        "imageFont": None,
    },
    "SVG": {"font": "STIX-Web"},
    # the hidden assistive MathML would ask for TeX .otf files that are not shipped (404s)
    "NativeMML": {
        "styles": {
            f"@font-face /*{i}*/": {"src": f'local("MathJax_{name}")'}
            for i, name in enumerate(
                ["Caligraphic", "Caligraphic", "AMS", "Script", "Fraktur", "Fraktur"], start=1
            )
        }
    },
    "fast-preview": {"disabled": True},
    "messageStyle": "none",
    "menuSettings": {"zoom": "Click"},
}


def mathjax_source() -> Path:
    """The MathJax 2.7 tree shipped by the jupyter-server-mathjax package."""
    import jupyter_server_mathjax

    path = Path(jupyter_server_mathjax.__file__).resolve().parent / "static"
    if not (path / "MathJax.js").is_file():
        raise FileNotFoundError(f"no MathJax.js in {path}: reinstall jupyter-server-mathjax")
    return path


def _copy_mathjax(app) -> None:
    """builder-inited: put MathJax into <out>/_static/mathjax before any page is written."""
    if app.builder.format != "html":
        return
    dest = Path(app.outdir) / "_static" / MATHJAX_DIR
    shutil.copytree(mathjax_source(), dest, dirs_exist_ok=True)


# --- question anchors: <a id="M2"></a> in a notebook or docs page is a real link target ---
_ANCHOR = re.compile(r"""<a\s+(?:id|name)\s*=\s*["']([^"']+)["']\s*>\s*</a>""")
_OPEN_ANCHOR = re.compile(r"""<a\s+(?:id|name)\s*=\s*["']([^"']+)["']\s*>""")


def _anchor_transform():
    from docutils import nodes
    from sphinx.transforms import SphinxTransform

    class RawAnchors(SphinxTransform):
        """Turn raw-HTML anchors into docutils targets, before MyST resolves ``#id`` links.

        Then ``[M2](#M2)`` and ``[M2](../notebooks/00_pytorch_primer.ipynb#M2)`` resolve with no
        warning. An anchor inside a heading becomes an id of its section (so no raw HTML lands in
        the tables of contents); one elsewhere becomes an empty target in its place. Each anchor
        is registered with the std domain under a per-page name (``M1`` exists both in the
        catalogue and in notebook 00).
        """

        default_priority = 500  # MyST's ResolveAnchorIds runs at 879

        def apply(self, **kwargs) -> None:
            for raw in list(self.document.findall(nodes.raw)):
                if raw.parent is None or "html" not in raw.get("format", "").split():
                    continue
                text, gone = raw.astext(), [raw]
                ids = _ANCHOR.findall(text)
                rest = _ANCHOR.sub("", text).strip()
                if not ids and (m := _OPEN_ANCHOR.fullmatch(text.strip())):
                    # inline HTML comes as two raw nodes: '<a id="M2">' and '</a>'
                    nxt = raw.next_node(descend=False, siblings=True)
                    if isinstance(nxt, nodes.raw) and nxt.astext().strip() == "</a>":
                        ids, rest, gone = [m.group(1)], "", [raw, nxt]
                if ids:
                    self._anchor(raw, ids, rest, gone)

        def _anchor(self, raw, ids, rest, gone) -> None:
            doc, env = self.document, self.env
            ids = [i for i in ids if i not in doc.ids]
            if not ids:  # a duplicate id: leave the HTML as it is
                return
            parent = raw.parent
            if isinstance(parent, nodes.title) and isinstance(parent.parent, nodes.section):
                holder = parent.parent  # an anchor in a heading: an id of its section
                holder["ids"].extend(ids)
                new = []
            else:
                holder = nodes.target("", "", ids=ids)
                new = [holder]
            if rest:
                new.append(nodes.raw(rest, rest, format="html"))
            for node in gone[1:]:
                parent.remove(node)
            if new:
                raw.replace_self(new)
            else:
                parent.remove(raw)
            if (
                isinstance(parent, nodes.paragraph)
                and isinstance(parent.parent, nodes.Element)
                and not parent.astext().strip()
                and all(isinstance(c, nodes.target | nodes.Text) for c in parent.children)
            ):  # a paragraph that only held the anchor: keep the target, drop the <p>
                parent.replace_self([c for c in parent.children if isinstance(c, nodes.target)])
            for anchor in ids:
                doc.ids[anchor] = holder
                env.domains.standard_domain.anonlabels[f"{env.docname}#{anchor}"] = (
                    env.docname,
                    anchor,
                )

    return RawAnchors


# --- the answer index: README's generated block, each row linked to its question's section ---
README_START = "<!-- answer-index:start"
README_END = "<!-- answer-index:end -->"
ANSWER_MARKER = "<!-- answer-index from README -->"
_ROW = re.compile(r"^\|\s*([A-Z]+\d+)\s*\|\s*(\d\d_\w+)\s*\|")


def answer_index_markdown(readme: Path = ROOT / "README.md") -> str:
    """README's answer-index table, each ID linked to ``../notebooks/<nb>.ipynb#<ID>``.

    The link is relative to ``book/answers.md``; a row whose ID is already a link keeps it, moved
    one folder up (README's links are relative to the repository root).
    """
    text = readme.read_text(encoding="utf-8")
    if README_START not in text or README_END not in text:
        return "*README.md has no answer index yet: run the notebooks, then `make index`.*\n"
    block = text.split(README_START, 1)[1].split("\n", 1)[1].split(README_END, 1)[0]
    lines = []
    for line in block.splitlines():
        # links written for README (repository root) are one folder up from book/answers.md
        line = re.sub(r"\]\((notebooks|docs)/", r"](../\1/", line)
        m = _ROW.match(line)
        if m:
            qid, nb = m.groups()
            link = f"../notebooks/{nb}.ipynb"
            line = f"| [{qid}]({link}#{qid}) | [{nb[:2]}]({link}) |" + line[m.end() :]
        lines.append(line)
    return "\n".join(lines).strip() + "\n"


def _source_read(app, docname, source) -> None:
    if docname == "book/answers" and ANSWER_MARKER in source[0]:
        source[0] = source[0].replace(ANSWER_MARKER, answer_index_markdown())


# --- a notebook that fails to execute fails `make book` (after every page is written) ---
def _check_execution(app, exception) -> None:
    """build-finished: name each notebook that failed and make sphinx-build exit with 1.

    The pages are still written (the failing cell shows its traceback), as in `make test`'s
    report; the traceback is in ``<out>/reports/``.
    """
    if exception is not None or app.builder.format != "html":
        return
    from myst_nb.sphinx_ import NbMetadataCollector
    from sphinx.util import logging

    failed = sorted(
        f"{docname}: {data['exec_data'].get('error') or 'failed'}"
        for docname, data in NbMetadataCollector.get_doc_data(app.env).items()
        if data.get("exec_data") and not data["exec_data"].get("succeeded", True)
    )
    if failed:
        logging.getLogger("book").error(
            "make book: notebooks failed to execute: %s", "; ".join(failed)
        )
        app.statuscode = 1


def setup(app):
    app.connect("builder-inited", _copy_mathjax)
    app.connect("source-read", _source_read)
    app.add_transform(_anchor_transform())
    app.connect("build-finished", _check_execution)
    return {"parallel_read_safe": False}
