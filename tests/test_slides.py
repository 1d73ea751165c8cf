"""Every notebook carries RISE slide metadata that follows utils.tooling.slides' rule."""

import json
from pathlib import Path

import pytest

from utils.tooling import slides

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_has_slide_metadata(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    wrong = [
        i
        for i, c in enumerate(nb["cells"])
        if c.get("metadata", {}).get("slideshow", {}).get("slide_type") != slides.slide_type(c, i)
    ]
    assert not wrong, f"{path.name}: cells {wrong[:10]} lack slide metadata; run make slides"


def test_rule():
    md = {"cell_type": "markdown", "source": ["## O3 · x · y"]}
    assert slides.slide_type(md, 5) == "slide"
    assert slides.slide_type({"cell_type": "markdown", "source": ["text"]}, 5) == "subslide"
    assert slides.slide_type({"cell_type": "code", "source": []}, 0) == "-"
    with pytest.raises(ValueError, match="cell_type"):
        slides.slide_type({"cell_type": "widget"}, 0)
