"""Execute one notebook in a fresh kernel; print JSON ``{"wall_s", "peak_rss_mib", "ok"}``.

Usage: ``python -m utils.tooling.bench.run_notebook notebooks/00_pytorch_primer.ipynb``.

It also writes the seconds each section took (cells grouped under their ``## `` heading, from
nbclient's per-cell execution timestamps) to ``build/timings/<notebook>.json``: the facilitator
guides' agendas are built from them (``utils.tooling.guides``).
"""

import json
import re
import resource
import sys
import time
from datetime import datetime
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from utils.core import paths


def section_seconds(nb) -> dict[str, float]:
    """Seconds of kernel time per section of an executed notebook.

    Args:
        nb: an executed ``nbformat`` notebook whose code cells carry nbclient's
            ``metadata.execution`` timestamps.

    Returns:
        ``{section: seconds}`` in notebook order; a section is named by its heading's question
        ID (``"M1"``) or its heading text, and cells before the first ``## `` heading count as
        ``"setup"``.
    """
    out: dict[str, float] = {}
    section = "setup"
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            m = re.match(r"^## (.+)$", cell.source, re.M)
            if m:
                title = m.group(1).strip()
                qid = re.match(r"([MORTAN]\d+) ·", title)
                section = qid.group(1) if qid else title.split(" · ")[0]
            continue
        ex = cell.get("metadata", {}).get("execution", {})
        start, end = ex.get("iopub.execute_input"), ex.get("shell.execute_reply")
        if start and end:
            secs = (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()
            out[section] = out.get(section, 0.0) + max(secs, 0.0)
    return out


def main(path: str) -> None:
    nb_path = Path(path).resolve()
    nb = nbformat.read(nb_path, as_version=4)
    client = NotebookClient(
        nb,
        timeout=900,
        kernel_name="python3",
        resources={"metadata": {"path": str(nb_path.parent)}},
        record_timing=True,
    )
    start = time.perf_counter()
    ok, error = True, ""
    try:
        client.execute()
    except CellExecutionError as err:
        ok, error = False, str(err).splitlines()[-1][:300] if str(err) else "cell error"
    wall = time.perf_counter() - start
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if ok:
        out = paths.build_dir() / "timings"
        out.mkdir(parents=True, exist_ok=True)
        record = {"wall_s": wall, "sections": section_seconds(nb)}
        (out / f"{nb_path.stem}.json").write_text(json.dumps(record, indent=1), encoding="utf-8")
    print(json.dumps({"wall_s": wall, "peak_rss_mib": peak_kib / 1024, "ok": ok, "error": error}))


if __name__ == "__main__":
    main(sys.argv[1])
