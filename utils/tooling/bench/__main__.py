"""Entry point of ``make bench`` (see the package docstring)."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import pkgutil
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

import utils.tooling.bench as pkg
from utils.core import paths

ROOT = paths.ROOT
BUDGET_S, CEILING_S = 60.0, 90.0
_NOT_BENCHES = {"run_notebook", "__main__"}


def notebook_rows(pattern: str) -> list[str]:
    rows = ["| notebook | wall s | peak MiB | budget 60 s |", "|---|---:|---:|---|"]
    env = {**os.environ, "LAB_PROGRESS": "0"}
    for nb in sorted((ROOT / "notebooks").glob(pattern)):
        out = subprocess.run(
            [sys.executable, "-m", "utils.tooling.bench.run_notebook", str(nb)],
            capture_output=True,
            text=True,
            env=env,
            cwd=ROOT,
        )
        try:
            res = json.loads(out.stdout.strip().splitlines()[-1])
        except (IndexError, json.JSONDecodeError):
            res = {
                "wall_s": float("nan"),
                "peak_rss_mib": float("nan"),
                "ok": False,
                "error": out.stderr.strip().splitlines()[-1:] or "no output",
            }
        wall = res["wall_s"]
        mark = (
            "FAILED: " + str(res.get("error"))
            if not res["ok"]
            else (
                "ok"
                if wall <= BUDGET_S
                else ("over budget" if wall <= CEILING_S else "OVER CEILING")
            )
        )
        rows.append(f"| {nb.name} | {wall:.1f} | {res['peak_rss_mib']:.0f} | {mark} |")
        print(rows[-1], flush=True)
    return rows


def ratio_sections(only: str | None) -> list[str]:
    sections = []
    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
        if info.name in _NOT_BENCHES or (only and info.name not in only.split(",")):
            continue
        mod = importlib.import_module(f"utils.tooling.bench.{info.name}")
        start = time.perf_counter()
        text = mod.run()
        sections.append(text.rstrip() + f"\n\n(benchmark took {time.perf_counter() - start:.0f} s)")
        print(sections[-1], flush=True)
    return sections


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default="build/bench.md")
    ap.add_argument("--notebooks", default="*.ipynb", help="glob under notebooks/ ('' to skip)")
    ap.add_argument(
        "--ratios", default=None, help="comma list of benchmark modules ('none' to skip)"
    )
    args = ap.parse_args()
    header = [
        "# make bench",
        "",
        f"{time.strftime('%Y-%m-%d %H:%M')} | {platform.node()} | {os.cpu_count()} cores | "
        f"torch {torch.__version__} | {torch.get_num_threads()} threads",
        "",
        "## Notebooks (fresh kernel, top to bottom)",
        "",
    ]
    rows = notebook_rows(args.notebooks) if args.notebooks else ["(skipped)"]
    sections = [] if args.ratios == "none" else ratio_sections(args.ratios)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(header + rows + [""] + sections) + "\n", encoding="utf-8")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
