"""``make book``: execute every notebook into ``build/html/`` with an index page of verdicts.

Each notebook runs top to bottom in a fresh kernel (nbclient) and is exported with nbconvert's
HTML exporter; ``index.html`` lists the notebooks in course order and every verdict with its
status and headline number. The README's answer index is refreshed from the same records.
"""

from __future__ import annotations

import argparse
import html
import os
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbconvert import HTMLExporter

from ..core import paths
from ..core.verdict import record_dir
from . import answer_index

ROOT = paths.ROOT


def build(out: Path, pattern: str = "*.ipynb") -> list[tuple[str, float, str]]:
    """Execute and export the notebooks; return (name, seconds, error or '') per notebook."""
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("LAB_PROGRESS", "0")
    exporter = HTMLExporter()
    results = []
    for path in sorted((ROOT / "notebooks").glob(pattern)):
        nb = nbformat.read(path, as_version=4)
        start, error = time.perf_counter(), ""
        try:
            NotebookClient(
                nb,
                timeout=900,
                kernel_name="python3",
                resources={"metadata": {"path": str(path.parent)}},
            ).execute()
        except Exception as err:  # keep building the rest; the page shows the failure
            error = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
        body, _ = exporter.from_notebook_node(nb)
        (out / f"{path.stem}.html").write_text(body, encoding="utf-8")
        results.append((path.stem, time.perf_counter() - start, error))
        print(
            f"{path.name}: {results[-1][1]:.1f} s {'FAILED: ' + error if error else 'ok'}",
            flush=True,
        )
    return results


def index_page(results: list[tuple[str, float, str]], records: list[dict]) -> str:
    """The HTML of build/html/index.html."""
    nb_rows = "".join(
        f"<li><a href='{n}.html'>{html.escape(n)}</a> — {s:.0f} s"
        f"{' — <b>FAILED</b>: ' + html.escape(e) if e else ''}</li>"
        for n, s, e in results
    )
    v_rows = "".join(
        f"<tr><td>{r['qid']}</td><td><a href='{r['notebook']}.html'>{r['notebook']}</a></td>"
        f"<td>{html.escape(r['claim'])}</td><td><b>{r['status']}</b></td>"
        f"<td>{html.escape(r['headline'])}</td></tr>"
        for r in records
    )
    return (
        "<!doctype html><meta charset='utf-8'><title>Mentoring Lab</title>"
        "<style>body{font-family:sans-serif;max-width:70em;margin:2em auto}"
        "td,th{border-bottom:1px solid #ddd;padding:.3em;text-align:left;vertical-align:top}"
        "table{border-collapse:collapse}</style>"
        "<h1>Mentoring Lab</h1><h2>Notebooks (course order)</h2>"
        f"<ol>{nb_rows}</ol><h2>Answer index</h2><table><tr><th>ID</th><th>notebook</th>"
        f"<th>claim</th><th>verdict</th><th>headline</th></tr>{v_rows}</table>"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default=str(ROOT / "build" / "html"))
    ap.add_argument("--notebooks", default="*.ipynb", help="glob under notebooks/")
    args = ap.parse_args()
    out = Path(args.out)
    results = build(out, args.notebooks)
    records = answer_index.load_records(record_dir())
    (out / "index.html").write_text(index_page(results, records), encoding="utf-8")
    # the book never edits tracked files: `make index` refreshes README and docs on purpose
    print(f"wrote {out / 'index.html'} ({len(records)} verdicts)")
    if any(e for _, _, e in results):
        raise SystemExit("some notebooks failed (see above)")


if __name__ == "__main__":
    main()
