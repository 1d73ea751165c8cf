"""pytest setup shared by unit tests and nbval notebook runs.

Threads: pytest-xdist runs two workers on the 2-core machine, so each worker (and the
notebook kernels it starts, which inherit this environment) uses one BLAS/OpenMP thread.
MPLBACKEND is popped so the kernels use matplotlib's inline backend, not a leaked GUI one.
LAB_CHECK_SOLUTIONS makes every exercise check in a notebook prove its reference solution.
"""

import os

if os.environ.get("PYTEST_XDIST_WORKER"):
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = "1"
os.environ.pop("MPLBACKEND", None)
os.environ.setdefault("LAB_PROGRESS", "0")
# every utils.core.check call in a notebook also grades notebooks/solutions/: the reference
# solution must pass and the recorded wrong answer must fail (see utils/core/check.py)
os.environ.setdefault("LAB_CHECK_SOLUTIONS", "1")
