"""Numbers in a notebook's prose come from the run, never from the author's keyboard.

A measured number typed into a Markdown cell drifts from what the code computes (the prose once
said "a fraction of a percent" where the run said 1.34 %). So a Markdown cell may hold a digit
only as

* a citation: a year (2015), an arXiv id (1412.6980), "Table 2", "Fig. 3", "Eq. 4",
  "Section 3.1", "Definition 2.1", "Algorithm 1", "lecture 6e";
* a question ID (O3, T1) or a notebook number ("notebook 03");
* a marked constant: inline code (`lr = 0.02`, `300` per class), or a formula in $...$
  (the settings of the experiment and the mathematics, not its results);
* part of a name (ResNet-18, MNIST-1D, L2, all-MiniLM-L6-v2, float64).

Measured numbers are rendered by code: ``verdict.discuss(f"...")`` in a code cell.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))

_STRIP = [
    re.compile(r"```.*?```", re.S),  # code blocks
    re.compile(r"`[^`\n]*`"),  # inline code: marked constants
    re.compile(r"\$\$.*?\$\$", re.S),  # display math
    re.compile(r"\$[^$\n]+\$"),  # inline math
    re.compile(r"<!--.*?-->", re.S),  # comments
    re.compile(r"\]\([^)]*\)"),  # link targets
    re.compile(r"https?://\S+"),
    re.compile(r"<[^>\n]+>"),  # html tags and their attributes
]
_ALLOWED = [
    re.compile(r"\b(?:1[89]|20)\d\d[a-z]?\b"),  # years (2015, 2019a)
    re.compile(r"\b\d{4}\.\d{4,5}(?:v\d+)?\b"),  # arXiv ids
    re.compile(
        r"\b(?:Tables?|Fig(?:ure)?s?\.?|Eqs?\.?|Equations?|Sections?|Sec\.|§|Algorithms?|"
        r"Definitions?|Theorems?|Lemmas?|Appendix|Chapters?|Ch\.|lectures?|Prop(?:osition)?\.?|"
        r"Corollary|notebooks?|seed notes?|step)\s*[A-Z]?\d+(?:\.\d+)*[a-z]?"
        r"(?:\s*(?:and|,|-|–|to)\s*\d+(?:\.\d+)*)*",
        re.I,
    ),
    re.compile(r"^#+ \d{2} ·", re.M),  # the notebook's number in its title
    re.compile(r"\b[MORTAN]\d{1,2}\b"),  # question IDs
    re.compile(r"\b\d{2}_[a-z_]+"),  # notebook file stems
]
# a number standing alone: not glued to a letter, a hyphenated name or another number
_NUMBER = re.compile(r"(?<![\w.\-/])\d+(?:[.,]\d+)*(?![\w])")


def bare_numbers(markdown: str) -> list[str]:
    """The digits of ``markdown`` that are neither citations, IDs nor marked constants."""
    text = markdown
    for pattern in _STRIP + _ALLOWED:
        text = pattern.sub(" ", text)
    return _NUMBER.findall(text)


def test_the_rule_catches_typed_measurements_and_allows_citations():
    assert bare_numbers("The run says 1.34 % and about 330× faster.") == ["1.34", "330"]
    assert bare_numbers("Momentum took 18 steps.") == ["18"]
    ok = (
        "Kingma & Ba (2015, arXiv:1412.6980), Table 2 and Section 3.1; O3 in notebook 03; "
        "ResNet-18 on MNIST-1D with L2; `lr = 0.02`, `300` per class; $\\beta_2 = 0.999$; "
        "Definition 2.1 of Santurkar et al. (2018); all-MiniLM-L6-v2 in float64.\n"
        "# 03 · Transfer learning"
    )
    assert bare_numbers(ok) == []


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_markdown_cells_hold_no_typed_measurements(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    found = []
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] != "markdown":
            continue
        nums = bare_numbers("".join(cell["source"]))
        if nums:
            found.append(f"cell {i}: {', '.join(nums[:8])}")
    assert not found, (
        f"{path.name}: numbers typed into Markdown (compute them with verdict.discuss(f'...'), "
        "or mark a setting as `code`):\n" + "\n".join(found)
    )
