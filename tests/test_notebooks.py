"""Hygiene of the committed notebooks (nbval executes them; these check their shape)."""

import json
import re
from pathlib import Path

import pytest
from committed import read as committed

from utils.core.verdict import NOTEBOOK_OF_PREFIX, STATUSES
from utils.tooling.answer_index import notebook_verdicts

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
ORDER = [f"{stem}.ipynb" for stem in NOTEBOOK_OF_PREFIX.values()]


def test_notebooks_are_known_and_in_course_order():
    names = [p.name for p in NOTEBOOKS]
    assert names, "no notebooks"
    assert all(n in ORDER for n in names), f"unexpected notebook names: {names}"
    assert names == sorted(names, key=ORDER.index)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_without_outputs(path):
    # what git holds (the index), not the learner's saved working copy: see tests/committed.py
    nb = json.loads(committed(path))
    dirty = [
        i
        for i, c in enumerate(nb["cells"])
        if c["cell_type"] == "code" and (c.get("outputs") or c.get("execution_count") is not None)
    ]
    assert not dirty, (
        f"{path.name}: cells {dirty} are staged with outputs; run `make setup` (it installs the "
        "nbstripout git filter) and stage the notebook again"
    )


KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_metadata_is_what_a_saved_session_cleans_back_to(path):
    # JupyterLab writes this kernelspec on save, and the nbstripout filter (Makefile NBSTRIP)
    # drops language_info: so a learner's saved session is the shipped notebook again
    meta = json.loads(committed(path))["metadata"]
    assert meta.get("kernelspec") == KERNELSPEC, f"{path.name}: kernelspec {meta.get('kernelspec')}"
    assert "language_info" not in meta, f"{path.name}: ship it without metadata.language_info"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_verdicts_belong_to_the_notebook_and_have_headings(path):
    verdicts = notebook_verdicts(path)
    assert verdicts, f"{path.name} has no verdict() call"
    prefix = next(k for k, v in NOTEBOOK_OF_PREFIX.items() if path.stem == v)
    nb = json.loads(path.read_text(encoding="utf-8"))
    headings = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")
    for qid, status in verdicts.items():
        assert qid.startswith(prefix), f"{path.name} answers {qid}, which belongs elsewhere"
        assert status in STATUSES, f"{qid}: status must be a literal in {STATUSES}"
        assert re.search(rf"^## {qid} · .+ · .+$", headings, re.M), (
            f"{path.name}: no bilingual heading '## {qid} · <English> · <Korean>'"
        )
