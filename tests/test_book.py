"""The book's configuration (book/conf.py) and `make book`'s wrapper, without building the book.

Building it runs every notebook (minutes): tests_book/test_offline.py does that and opens a page in
a browser with the network cut. Here: the toctree is the course order, math comes from a local
MathJax that the installed package really ships, no CDN URL, every page the book should show is
a source, the answer index links each ID to its section, and raw-HTML question anchors become
link targets (a tiny Sphinx build, a few seconds).
"""

from __future__ import annotations

import re
import runpy
from pathlib import Path

import pytest

from utils.tooling import book

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"


@pytest.fixture(scope="module")
def conf() -> dict:
    return runpy.run_path(str(BOOK / "conf.py"))


def toctree_entries(text: str, caption: str) -> list[str]:
    """The entries of the ```{toctree}``` block with this caption in a MyST page."""
    for block in re.findall(r"```\{toctree\}\n(.*?)```", text, flags=re.S):
        if re.search(rf"^:caption: {re.escape(caption)}", block, flags=re.M):
            return [ln.strip() for ln in block.splitlines() if ln.strip() and ln[0] != ":"]
    raise AssertionError(f"no toctree with caption {caption!r}")


def test_sidebar_lists_the_notebooks_in_course_order(conf):
    course = sorted(p.stem for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    assert len(course) == 6
    assert conf["COURSE"] == course
    index = (BOOK / "index.md").read_text(encoding="utf-8")
    assert toctree_entries(index, "Course · 과정") == [f"/notebooks/{nb}" for nb in course]
    reference = toctree_entries(index, "Reference · 참고")
    assert reference == ["answers", "/docs/questions", "/docs/glossary"]
    assert toctree_entries(index, "Facilitator guides · 진행자 가이드") == ["/docs/facilitator/*"]
    assert conf["root_doc"] == "book/index"


def test_every_page_is_a_source_and_the_rest_is_pruned(conf):
    from sphinx.util.matching import get_matching_files

    found = set(get_matching_files(ROOT, conf["include_patterns"], conf["exclude_patterns"]))
    for nb in conf["COURSE"]:
        assert f"notebooks/{nb}.ipynb" in found
    for page in ("book/index.md", "book/answers.md", "docs/questions.md", "docs/glossary.md"):
        assert page in found
    guides = {p.relative_to(ROOT).as_posix() for p in (ROOT / "docs/facilitator").glob("*.md")}
    assert guides <= found
    assert not [f for f in found if f.startswith(("notebooks/solutions", "build/", ".venv/"))]
    for top in (".venv", "build", "utils", "tests", "README.md"):
        assert top in conf["exclude_patterns"] or not (ROOT / top).exists()


def test_math_is_rendered_by_the_local_mathjax_of_a_pip_package(conf):
    path, _, query = conf["mathjax_path"].partition("?")
    assert "://" not in conf["mathjax_path"] and not path.startswith("/")
    source = conf["mathjax_source"]()  # jupyter-server-mathjax's static folder
    assert path == f"{conf['MATHJAX_DIR']}/MathJax.js"
    assert (source / "MathJax.js").is_file()
    assert 'MathJax.version="2.7' in (source / "MathJax.js").read_text(encoding="utf-8")
    config = query.removeprefix("config=")
    assert (source / "config" / f"{config}.js").is_file()
    assert conf["mathjax2_config"]["tex2jax"]["inlineMath"] == [["\\(", "\\)"]]
    font = conf["mathjax2_config"]["HTML-CSS"]["webFont"]  # a web font the package ships
    assert (source / "fonts" / "HTML-CSS" / font).is_dir()
    assert (source / "jax" / "output" / "HTML-CSS" / "fonts" / font / "fontdata.js").is_file()
    assert conf["myst_update_mathjax"] is False  # it would write a MathJax 3/4 config
    assert "dollarmath" in conf["myst_enable_extensions"]
    assert conf["nb_render_markdown_format"] == "myst"


def test_nothing_is_loaded_from_another_host(conf):
    assert conf["nb_ipywidgets_js"] == {}  # myst-nb's default loads require.js from a CDN
    for path in [BOOK / "conf.py", *BOOK.glob("_templates/*"), *BOOK.glob("_static/*")]:
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"https?://", text), f"{path.name} names a URL"
    assert conf["nb_execution_mode"] in ("force", "cache", "off")
    assert Path(conf["nb_execution_cache_path"]).is_relative_to(ROOT / "build") or (
        "LAB_BUILD_DIR" in __import__("os").environ
    )


def test_answer_index_links_each_id_to_its_section(conf, tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(
        "intro\n<!-- answer-index:start (generated) -->\n| ID | notebook | claim |\n|---|---|---|\n"
        "| O3 | 01_optimization | SGD \\| Adam |\n"
        "| [M1](notebooks/00_pytorch_primer.ipynb#M1) | 00_pytorch_primer | x |\n"
        "<!-- answer-index:end -->\nmore\n",
        encoding="utf-8",
    )
    md = conf["answer_index_markdown"](readme)
    lines = md.splitlines()
    assert lines[0] == "| ID | notebook | claim |"
    assert lines[2] == (
        "| [O3](../notebooks/01_optimization.ipynb#O3) "
        "| [01](../notebooks/01_optimization.ipynb) | SGD \\| Adam |"
    )
    # a row README already links keeps its link, seen from book/answers.md
    assert lines[3].startswith("| [M1](../notebooks/00_pytorch_primer.ipynb#M1) | 00_pytorch")
    assert "intro" not in md and "more" not in md
    (tmp_path / "R.md").write_text("no index", encoding="utf-8")
    assert "make index" in conf["answer_index_markdown"](tmp_path / "R.md")
    # the real README: every row of its index gets a link
    real = conf["answer_index_markdown"]()
    rows = [ln for ln in real.splitlines() if re.match(r"\| \[[A-Z]+\d+\]", ln)]
    assert len(rows) >= 40
    for row in rows:
        qid, nb = re.match(r"\| \[(\w+)\]\(\.\./notebooks/(\w+)\.ipynb#\1\)", row).groups()
        assert nb in conf["COURSE"], row


def test_wrapper_runs_one_sphinx_build_into_out_html(tmp_path):
    cmd = book.command(tmp_path, "force")
    assert cmd[1:4] == ["-m", "sphinx", "-b"]
    assert cmd[cmd.index("-c") + 1] == str(BOOK)
    assert cmd[-2:] == [str(ROOT), str(tmp_path / "html")]
    assert "-E" in cmd  # force: every notebook runs again
    assert "-E" not in book.command(tmp_path, "cache")
    with pytest.raises(ValueError, match="execute"):
        book.command(tmp_path, "always")


@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning", "ignore::DeprecationWarning")
def test_raw_html_question_anchors_become_link_targets(tmp_path):
    """`<a id="Q1"></a>` in a heading or on its own line resolves `page.md#Q1` (no warning)."""
    from sphinx.cmd.build import build_main

    src = tmp_path / "src"
    src.mkdir()
    (src / "conf.py").write_text(
        "import runpy\n"
        f"_book = runpy.run_path({str(BOOK / 'conf.py')!r})\n"
        "extensions = ['myst_parser']\n"
        "def setup(app):\n"
        "    app.add_transform(_book['_anchor_transform']())\n",
        encoding="utf-8",
    )
    (src / "index.md").write_text(
        "# Index\n\n```{toctree}\nnb\n```\n\n"
        '[first](nb.md#Q1) [second](nb.md#Q2) [local](#Z)\n\n<a id="Z"></a>\n\nend\n',
        encoding="utf-8",
    )
    (src / "nb.md").write_text(
        '# Notebook\n\n## Q1 · first question <a id="Q1"></a>\n\ntext\n\n'
        '<a id="Q2"></a>\n\n## Q2 · second question\n\ntext\n',
        encoding="utf-8",
    )
    warnings = tmp_path / "warnings.txt"
    status = build_main(["-q", "-b", "html", "-w", str(warnings), str(src), str(tmp_path / "out")])
    assert status == 0
    assert warnings.read_text(encoding="utf-8") == ""
    index = (tmp_path / "out" / "index.html").read_text(encoding="utf-8")
    assert 'href="nb.html#Q1"' in index and 'href="nb.html#Q2"' in index
    assert 'href="#Z"' in index and 'id="Z"' in index
    page = (tmp_path / "out" / "nb.html").read_text(encoding="utf-8")
    assert 'id="Q1"' in page and 'id="Q2"' in page
    assert "&lt;a id" not in page and '<a id="Q1">' not in page  # no raw HTML left in titles
