"""What git holds for a file: the staged (index) content, not the learner's working copy.

A learner runs and saves notebooks in JupyterLab; the saved file then carries outputs. The
rule "notebooks are committed without outputs" is about what git commits, so the hygiene tests
read the index (``git show :path``), which the nbstripout filter that ``make setup`` installs
keeps clean. Outside a git checkout (an unpacked archive) the file itself is read.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def read(path: Path) -> str:
    """The staged content of ``path`` (a file inside the repository), or the file's text."""
    rel = Path(path).resolve().relative_to(ROOT).as_posix()
    try:
        out = subprocess.run(
            ["git", "show", f":{rel}"], cwd=ROOT, capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        return Path(path).read_text(encoding="utf-8")
    return out.stdout
