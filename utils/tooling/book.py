"""``make book``: the course as a Sphinx book, built offline into ``build/book/html/``.

A thin wrapper around one command::

    sphinx-build -b html -c book . build/book/html

The book itself is ``book/`` (``conf.py``, the landing page, the answer-index page): Sphinx with
myst-nb and sphinx-book-theme, reading the notebooks, ``docs/*.md`` and README's answer index in
place (see ``book/conf.py``). myst-nb executes every notebook at build time (``LAB_PROGRESS=0``, so
no widget bars), and formulas are drawn by the MathJax 2.7 of the ``jupyter-server-mathjax``
package, copied into the book: the result opens from disk with no network. Nothing tracked is
written; ``make index`` is what refreshes README and ``docs/questions.md``.

    python -m utils.tooling.book                      # build/book/html/index.html
    python -m utils.tooling.book --execute cache      # reuse outputs of unchanged notebooks
    python -m utils.tooling.book --execute off        # layout only, notebooks not run
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from ..core import paths

ROOT = paths.ROOT
BOOK = ROOT / "book"
EXECUTE_MODES = ("force", "cache", "off")


def command(out: Path, execute: str = "force") -> list[str]:
    """The sphinx-build command line that writes the book into ``out/html``.

    ``force`` re-reads every page (``-E``) so each notebook runs again; ``cache`` and ``off``
    let Sphinx skip pages whose source did not change.
    """
    if execute not in EXECUTE_MODES:
        raise ValueError(f"execute must be one of {EXECUTE_MODES}, got {execute!r}")
    out = Path(out)
    cmd = [sys.executable, "-m", "sphinx", "-b", "html", "-c", str(BOOK)]
    cmd += ["-d", str(out / "doctrees"), "-w", str(out / "warnings.txt"), "--jobs", "1"]
    if execute == "force":
        cmd.append("-E")
    return cmd + [str(ROOT), str(out / "html")]


def build(out: Path, execute: str = "force", quiet: bool = False) -> int:
    """Build the book into ``out/html``; return sphinx-build's exit status."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, LAB_BOOK_EXECUTE=execute, LAB_PROGRESS="0")
    cmd = command(out, execute) + (["-q"] if quiet else [])
    return subprocess.run(cmd, cwd=ROOT, env=env, check=False).returncode


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        description="Build the course book (Sphinx + myst-nb) into OUT/html, offline."
    )
    ap.add_argument("--out", default=str(paths.build_dir() / "book"), help="default build/book")
    ap.add_argument(
        "--execute",
        choices=EXECUTE_MODES,
        default="force",
        help="force: run every notebook (default); cache: reuse unchanged ones; off: don't run",
    )
    ap.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    args = ap.parse_args(argv)
    out = Path(args.out)
    start = time.perf_counter()
    status = build(out, args.execute, args.quiet)
    took = time.perf_counter() - start
    if status:
        raise SystemExit(f"make book failed after {took:.0f} s (warnings: {out / 'warnings.txt'})")
    print(f"book: {out / 'html' / 'index.html'} ({took:.0f} s; warnings in {out / 'warnings.txt'})")


if __name__ == "__main__":
    main()
