"""Slide metadata for live slideshows (RISE, ``jupyterlab-rise``) of every notebook.

A facilitator presses the slideshow button in JupyterLab and the notebook becomes a reveal.js
deck whose cells still run. The rule that cuts a notebook into slides:

* the title cell and every ``## `` section heading start a new **slide**;
* every other Markdown cell starts a **subslide** (a vertical step under its section);
* a code cell stays on the slide of the text before it (``"-"``), so its output shows there.

``python -m utils.tooling.slides`` applies the rule to ``notebooks/*.ipynb`` in place (only the
``slideshow`` metadata changes); ``tests/test_slides.py`` checks that the committed notebooks
follow it. Source of the metadata format: RISE's documentation (``slideshow.slide_type`` with
``slide``, ``subslide``, ``fragment``, ``-``, ``skip``, ``notes``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..core import paths


def slide_type(cell: dict, index: int) -> str:
    """The ``slideshow.slide_type`` the rule gives a notebook cell (a dict as in the JSON).

    Raises:
        ValueError: an unknown ``cell_type``.
    """
    kind = cell.get("cell_type")
    if kind not in ("markdown", "code", "raw"):
        raise ValueError(f"cell_type must be markdown, code or raw, got {kind!r}")
    if kind != "markdown":
        return "-"
    source = "".join(cell.get("source", [])).lstrip()
    if index == 0 or source.startswith(("# ", "## ")):
        return "slide"
    return "subslide"


def apply(path: Path) -> bool:
    """Set the slide metadata of one notebook file; returns True when the file changed."""
    text = path.read_text(encoding="utf-8")
    nb = json.loads(text)
    for i, cell in enumerate(nb["cells"]):
        cell.setdefault("metadata", {})["slideshow"] = {"slide_type": slide_type(cell, i)}
    new = json.dumps(nb, indent=1, ensure_ascii=False) + "\n"
    if new != text:
        path.write_text(new, encoding="utf-8")
        return True
    return False


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("notebooks", nargs="*", help="default: notebooks/*.ipynb")
    args = ap.parse_args()
    targets = [Path(p) for p in args.notebooks] or sorted(paths.NOTEBOOKS.glob("*.ipynb"))
    for path in targets:
        print(("updated " if apply(path) else "unchanged ") + path.name)


if __name__ == "__main__":
    main()
