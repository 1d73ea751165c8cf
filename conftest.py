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


import pytest  # noqa: E402


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    """After nbval runs a notebook cell, fail it if its output shows a raw dict or float noise
    (utils/tooling/outputs.py): a learner should read tables (verdict.table) and rounded
    numbers, not ``{'a': 0.1599999964237213}``."""
    result = yield
    outs = getattr(item, "test_outputs", None)
    if outs:
        from utils.tooling.outputs import noise, output_texts

        problems = [p for text in output_texts(outs) for p in noise(text)]
        if problems:
            raise AssertionError(
                "noisy cell output (show a verdict.table or round the numbers): "
                + "; ".join(problems[:5])
            )
    return result
