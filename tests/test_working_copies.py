"""A learner's saved notebook (with outputs) is staged without them: the nbstripout git filter
that `make setup` configures, checked in a scratch repository."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_makefile_and_gitattributes_wire_the_filter():
    assert "*.ipynb filter=nbstripout" in (ROOT / ".gitattributes").read_text()
    make = (ROOT / "Makefile").read_text()
    assert "-m nbstripout $(NBSTRIP)" in make and "filter.nbstripout.clean" in make
    assert "NBSTRIP := --keep-id --extra-keys metadata.language_info" in make


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_a_saved_session_is_staged_clean(tmp_path):
    def git(*args):
        return subprocess.run(
            ["git", *args], cwd=tmp_path, check=True, capture_output=True, text=True
        ).stdout

    git("init", "-q")
    strip = "--keep-id --extra-keys metadata.language_info"  # the Makefile's NBSTRIP
    git("config", "filter.nbstripout.clean", f'"{sys.executable}" -m nbstripout {strip}')
    git("config", "filter.nbstripout.smudge", "cat")
    shutil.copy(ROOT / ".gitattributes", tmp_path / ".gitattributes")
    shipped = (ROOT / "notebooks" / "00_pytorch_primer.ipynb").read_text(encoding="utf-8")
    nb = json.loads(shipped)
    for i, cell in enumerate(nb["cells"]):  # what JupyterLab writes after a run and a save
        if cell["cell_type"] == "code":
            cell["execution_count"] = i
            cell["outputs"] = [{"output_type": "stream", "name": "stdout", "text": ["x\n"]}]
    nb["metadata"]["language_info"] = {"name": "python", "version": "3.11.7"}
    (tmp_path / "nb.ipynb").write_text(json.dumps(nb, indent=1), encoding="utf-8")
    git("add", "nb.ipynb", ".gitattributes")
    staged = json.loads(git("show", ":nb.ipynb"))
    code = [c for c in staged["cells"] if c["cell_type"] == "code"]
    assert code and all(not c["outputs"] and c["execution_count"] is None for c in code)
    assert [c["id"] for c in staged["cells"]] == [c["id"] for c in json.loads(shipped)["cells"]]
    slides = [c["metadata"].get("slideshow") for c in staged["cells"]]
    assert all(slides), "the filter must keep the RISE slide metadata"
    assert staged["metadata"] == json.loads(shipped)["metadata"]  # no language_info, same kernel
