"""Execute one notebook in a fresh kernel; print JSON ``{"wall_s", "peak_rss_mib", "ok"}``.

Usage: ``python -m utils.tooling.bench.run_notebook notebooks/00_pytorch_primer.ipynb``.
"""

import json
import resource
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError


def main(path: str) -> None:
    nb_path = Path(path).resolve()
    nb = nbformat.read(nb_path, as_version=4)
    client = NotebookClient(
        nb,
        timeout=900,
        kernel_name="python3",
        resources={"metadata": {"path": str(nb_path.parent)}},
    )
    start = time.perf_counter()
    ok, error = True, ""
    try:
        client.execute()
    except CellExecutionError as err:
        ok, error = False, str(err).splitlines()[-1][:300] if str(err) else "cell error"
    wall = time.perf_counter() - start
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(json.dumps({"wall_s": wall, "peak_rss_mib": peak_kib / 1024, "ok": ok, "error": error}))


if __name__ == "__main__":
    main(sys.argv[1])
