import json
import re
from pathlib import Path

import nbformat
import pytest

from utils.tooling import answer_index as ai

ROOT = Path(__file__).resolve().parents[1]


def _nb(tmp_path, sources):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(s) for s in sources]
    path = tmp_path / "x.ipynb"
    nbformat.write(nb, path)
    return path


def test_notebook_verdicts_reads_calls_and_skips_magics(tmp_path):
    path = _nb(
        tmp_path,
        [
            "%matplotlib inline",
            'verdict.verdict("O1", "c", {"a": [1, 2, 3]}, status="nuanced", expect="True")',
            "from utils.verdict import verdict\n"
            'verdict("O2", "c", ev, status="refuted", expect="x")',
            'print("O3")',
        ],
    )
    assert ai.notebook_verdicts(path) == {"O1": "nuanced", "O2": "refuted"}


def test_render_and_update_readme(tmp_path):
    recs = [
        {
            "qid": "O2",
            "notebook": "01_optimization",
            "claim": "a|b",
            "status": "refuted",
            "headline": "h",
            "lab_seed": 0,
        },
        {
            "qid": "M1",
            "notebook": "00_pytorch_primer",
            "claim": "c",
            "status": "supported",
            "headline": "k",
            "lab_seed": 0,
        },
    ]
    folder = tmp_path / "rec"
    folder.mkdir()
    for r in recs:
        (folder / f"{r['qid']}.json").write_text(json.dumps(r))
    loaded = ai.load_records(folder)
    assert [r["qid"] for r in loaded] == ["M1", "O2"]
    readme = tmp_path / "README.md"
    readme.write_text(f"top\n{ai.START}\nold\n{ai.END}\nbottom\n")
    ai.update_readme(readme, loaded)
    text = readme.read_text()
    assert "old" not in text and "a\\|b" in text and text.startswith("top") and "bottom" in text
    with pytest.raises(ValueError, match="markers"):
        ai.readme_block("no markers")


def test_readme_index_lists_every_answered_question_with_its_status():
    """The README's generated index is in step with the notebooks (run `make index` if not)."""
    block = ai.readme_block((ROOT / "README.md").read_text(encoding="utf-8"))
    rows = {}
    for line in block.splitlines():
        # split on the table's pipes, not on escaped ones ("\|") inside a claim
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))]
        if len(cells) >= 4 and cells[0][:1] in "MORTAN" and cells[0][1:].isdigit():
            rows[cells[0]] = cells[3].strip("*")
    expected = {}
    for nb in sorted((ROOT / "notebooks").glob("*.ipynb")):
        expected.update(ai.notebook_verdicts(nb))
    assert rows == expected, "README answer index is stale: run the notebooks, then `make index`"
