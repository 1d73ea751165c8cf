"""Independent, fully seeded jobs on several CPU cores, with the numbers of a plain loop.

The notebooks compute on one thread (``repro.lab_threads``), which leaves the other cores of a
laptop idle. When an experiment is a list of independent jobs (one training run per learning
rate, per arm or per seed), ``pmap(fn, jobs)`` returns ``[fn(job) for job in jobs]``, the same
list in the same order, bit for bit, but computes it on several cores: this process runs jobs
itself while worker processes run the others, each with the notebook's thread count and
determinism switches.

The one condition is the usual one for a parallel map: each job must be *fully seeded*, its
result a function of its arguments alone. A job that draws from the global RNG (``torch.rand``
without a generator, a model built without ``torch.manual_seed``) would see a different global
state in a worker than it sees as the n-th step of a loop. Seed inside the job; the notebooks
do. For the same reason ``pmap`` leaves the caller's global RNG state as it found it.

The workers are joblib's process pool (loky, ``joblib.externals.loky.get_reusable_executor``,
the pool ``joblib.Parallel`` and scikit-learn use). It pickles functions defined in a notebook
by value (cloudpickle), stays alive between calls, and is started ahead of time by ``warm()``.
Off the CPU (CUDA, MPS) ``pmap`` is a plain loop: one device is shared, and the jobs are fast.
"""

from __future__ import annotations

import concurrent.futures
import importlib
import os
import random
import sys
import threading
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import numpy as np
import torch

from utils.core import repro

_ENV_WORKERS = "LAB_WORKERS"
_IDLE_TIMEOUT_S = 600  # workers stay alive this long between calls (a whole notebook)
_LEAK_LIMIT_BYTES = 4 * 2**30  # memory growth at which a worker is restarted (see _init_worker)
T = TypeVar("T")
R = TypeVar("R")


def usable_cpus() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one), >= 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def workers() -> int:
    """Processes ``pmap`` computes in, this one included: env ``LAB_WORKERS``, else one per core.

    The default is ``usable_cpus() // repro.lab_threads()``, so ``LAB_THREADS=2`` on a 2-core
    machine gives 1, a plain loop. More processes than cores do not help: measured on 2 cores,
    3 training jobs in 3 processes took 25 s where 2 processes took 21 s (the caches thrash,
    and each extra worker costs a torch import). Off the CPU it is 1. ``LAB_WORKERS=1`` turns
    the pool off everywhere: the numbers do not change, only the wall time does.

    Raises:
        ValueError: ``LAB_WORKERS`` is not a positive integer.
    """
    raw = os.environ.get(_ENV_WORKERS, "").strip()
    if raw:
        try:
            value = int(raw)
        except ValueError:
            raise ValueError(f"LAB_WORKERS must be a positive integer, got {raw!r}") from None
        if value < 1:
            raise ValueError(f"LAB_WORKERS must be a positive integer, got {value}")
        return value
    if repro.device().type != "cpu":
        return 1
    return max(1, usable_cpus() // repro.lab_threads())


class _InWorker:
    """``fn`` wrapped to run with the notebook's thread count and determinism switches."""

    def __init__(self, fn: Callable[[Any], Any], threads: int):
        self.fn, self.threads = fn, threads

    def __call__(self, job: Any) -> Any:
        torch.set_num_threads(self.threads)
        repro.determinism(True)
        return self.fn(job)


def _ready(modules: tuple[str, ...] = ()) -> int:
    for name in modules:  # import now what the jobs' functions will need, not in the first job
        importlib.import_module(name)
    return os.getpid()


def _init_worker() -> None:
    # loky restarts a worker whose memory grew by 300 MB since its first job, to contain leaks.
    # A training run's working set (activations, torch's cached allocations, the job's data)
    # is that large without leaking, and a restart costs a fresh torch import (~3 CPU-s), so
    # the threshold is raised for these workers. A joblib without this switch just restarts.
    try:
        from joblib.externals.loky import process_executor
    except ImportError:  # pragma: no cover - the vendored layout of joblib 1.x
        return
    process_executor._MAX_MEMORY_LEAK_SIZE = _LEAK_LIMIT_BYTES


_pool_size = 0  # the size the pool grew to here (it never shrinks: that kills workers)


def _executor(n: int):
    """joblib's reusable loky pool with at least n worker processes."""
    global _pool_size
    from joblib.externals.loky import get_reusable_executor

    _pool_size = max(_pool_size, n)
    return get_reusable_executor(
        max_workers=_pool_size, timeout=_IDLE_TIMEOUT_S, initializer=_init_worker
    )


def warm(n_workers: int | None = None) -> None:
    """Start the worker processes ``pmap`` will use (``n_workers - 1``), and return at once.

    A worker needs a few CPU-seconds to start: it imports torch, then the ``utils`` modules
    this process has imported, which the jobs' functions refer to. A notebook calls this at the
    end of its setup cell, so the workers start on an idle core while the first sections
    compute. Does nothing when ``n_workers`` (default ``workers()``) is 1.

    Raises:
        TypeError, ValueError: ``n_workers`` not a positive int.
    """
    n = _check_n(n_workers) - 1  # this process is one of the n
    if n >= 1:
        modules = tuple(sorted(m for m in sys.modules if m == "utils" or m.startswith("utils.")))
        ex = _executor(n)
        for _ in range(n):
            ex.submit(_ready, modules)


def pmap(fn: Callable[[T], R], jobs: Iterable[T], *, n_workers: int | None = None) -> list[R]:
    """``[fn(job) for job in jobs]``, computed in ``n_workers`` processes (default ``workers()``).

    Like ``joblib.Parallel(n_jobs)(delayed(fn)(j) for j in jobs)`` with the loky backend, except
    that this process computes jobs too (it would otherwise wait idle, and its jobs need no
    pickling), and each worker computes with this process's thread count and ``repro``'s
    determinism switches. So the result equals the plain loop's bit for bit when every job is
    fully seeded (module docstring). Jobs are handed out in order as processes come free.
    Arguments and results travel by pickle: keep them to tensors, arrays, numbers and small
    models. An exception in a job is raised here, with the worker's traceback.

    Unlike the loop, ``pmap`` restores the caller's global RNG states (torch CPU, numpy,
    ``random``) when it returns, whichever process ran which job.

    Args:
        fn: a function of one argument; a lambda or a function defined in a notebook works.
        jobs: the arguments, one per job; consumed into a list first.
        n_workers: processes to compute in, this one included; 1 runs the plain loop here.

    Raises:
        TypeError: ``fn`` is not callable, or ``n_workers`` not an int.
        ValueError: ``n_workers`` < 1.
    """
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {type(fn).__name__}")
    jobs = list(jobs)
    n = min(_check_n(n_workers), len(jobs))
    states = torch.get_rng_state(), np.random.get_state(), random.getstate()
    try:
        if n <= 1:
            return [fn(job) for job in jobs]
        return _shared(fn, jobs, _executor(n - 1), n - 1)
    finally:
        torch.set_rng_state(states[0])
        np.random.set_state(states[1])
        random.setstate(states[2])


def _shared(fn, jobs, ex, n_pool: int) -> list:
    """Jobs from the front go to the pool's workers, from the back to this process.

    A worker's next job is submitted the moment its last one ends (a done-callback), so no
    process waits while another still has jobs to hand out.
    """
    call = _InWorker(fn, torch.get_num_threads())
    results: list = [None] * len(jobs)
    lock = threading.Lock()
    todo = {"front": 0, "back": len(jobs)}  # jobs[front:back] are not started yet
    futures: list[concurrent.futures.Future] = []

    def submit_next(_done=None) -> None:
        with lock:
            if todo["front"] >= todo["back"]:
                return
            i = todo["front"]
            todo["front"] += 1
            fut = ex.submit(call, jobs[i])
            fut.index = i
            futures.append(fut)
        fut.add_done_callback(submit_next)

    try:
        for _ in range(n_pool):
            submit_next()
        while True:
            with lock:
                if todo["front"] >= todo["back"]:
                    break
                todo["back"] -= 1
                i = todo["back"]
            results[i] = fn(jobs[i])
        done = 0
        while done < len(futures):  # the list grows while callbacks submit; wait for every future
            futures[done].result()
            done += 1
        for fut in futures:
            results[fut.index] = fut.result()
    except BaseException:
        with lock:
            todo["back"] = todo["front"]  # hand out nothing more
        for fut in futures:
            fut.cancel()
        raise
    return results


def _check_n(n_workers: int | None) -> int:
    if n_workers is None:
        return workers()
    if not isinstance(n_workers, int) or isinstance(n_workers, bool):
        raise TypeError(f"n_workers must be an int or None, got {type(n_workers).__name__}")
    if n_workers < 1:
        raise ValueError(f"n_workers must be >= 1, got {n_workers}")
    return n_workers
