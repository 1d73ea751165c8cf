"""``make bench``: wall time and peak memory of every notebook, plus ratio benchmarks.

Run as ``python -m utils.tooling.bench --out build/bench.md``. Each notebook is executed top
to bottom in a fresh kernel by :mod:`utils.tooling.bench.run_notebook` in its own process, so
its peak resident memory (the kernel's, read with ``getrusage(RUSAGE_CHILDREN)``) is its own.

Ratio benchmarks are the other modules of this package: each defines ``run() -> str``, which
returns a Markdown section (a heading and a table). Add a module to add a benchmark.
"""
