"""Where things live: the repository root, ``build/`` and the caches, computed in one place.

Every module that writes a file asks here, so a learner who moves the checkout or sets an
environment variable changes one thing. Environment overrides (a relative path is taken from
the repository root, not from the working directory: notebook kernels run in ``notebooks/``):

* ``LAB_BUILD_DIR``: the build folder (default ``<repo>/build``);
* ``LAB_VERDICT_DIR``: the verdict records (default ``<build>/verdicts``);
* ``LAB_CACHE_DIR``: cached pretrained models (default ``<build>/cache``).
"""

from __future__ import annotations

import os
from pathlib import Path

#: The repository root: the folder that holds ``utils/``, ``notebooks/`` and ``README.md``.
ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"


def _env_dir(var: str, default: Path) -> Path:
    raw = os.environ.get(var, "").strip()
    if not raw:
        return default
    path = Path(raw).expanduser()
    return path if path.is_absolute() else ROOT / path


def build_dir() -> Path:
    """``build/`` (env ``LAB_BUILD_DIR``): generated files only, never tracked by git."""
    return _env_dir("LAB_BUILD_DIR", ROOT / "build")


def verdict_dir() -> Path:
    """Folder of the JSON verdict records (env ``LAB_VERDICT_DIR``, else ``build/verdicts``)."""
    return _env_dir("LAB_VERDICT_DIR", build_dir() / "verdicts")


def cache_dir() -> Path:
    """Folder of cached pretrained models (env ``LAB_CACHE_DIR``, else ``build/cache``)."""
    return _env_dir("LAB_CACHE_DIR", build_dir() / "cache")
