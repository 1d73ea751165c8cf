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
do. As a safety net every job starts from the same global RNG states (the caller's), wherever
it runs, and ``pmap`` leaves the caller's states as it found them.

The workers are joblib's process pool (loky, ``joblib.externals.loky.get_reusable_executor``,
the pool ``joblib.Parallel`` and scikit-learn use). It pickles functions defined in a notebook
by value (cloudpickle), stays alive between calls, and is started ahead of time by ``warm()``.
In a Jupyter kernel it is stopped when the kernel shuts down or restarts (``stop_pool``), so the
kernel does not wait for processes that ignore its SIGTERM.
Off the CPU (CUDA, MPS) ``pmap`` is a plain loop: one device is shared, and the jobs are fast.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import gc
import importlib
import os
import random
import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import numpy as np
import torch

from utils.core import repro

_ENV_WORKERS = "LAB_WORKERS"
_IDLE_TIMEOUT_S = 600  # workers stay alive this long between calls (a whole notebook)
_LEAK_LIMIT_BYTES = 4 * 2**30  # memory growth at which a worker is restarted (see _init_worker)
_STOP_WAIT_S = 1.0  # how long stop_pool waits for the pool's semaphores to be released
_LOKY_SYNC = "joblib.externals.loky.backend.synchronize"  # the module of the pool's semaphores
T = TypeVar("T")
R = TypeVar("R")


def usable_cpus() -> int:
    """CPU cores this process may use: ``joblib.cpu_count()``, which honours the affinity mask
    and a container's CPU quota, >= 1."""
    import joblib

    return max(1, joblib.cpu_count())


def is_pool_process(cmdline: list[str]) -> bool:
    """True when a process's command line (``psutil.Process.cmdline()``) is one of this pool's:
    loky's workers and its resource tracker. Used to leave them out of another tool's CPU count
    (e.g. ``raytune.child_cpu_seconds``, which counts a notebook's Ray processes)."""
    return any("joblib.externals.loky" in part for part in cmdline)


def pool_cpu_seconds() -> float:
    """CPU seconds (user + system) used so far by this process's live pool processes (``psutil``):
    what ``time.process_time()`` misses of the work ``pmap`` handed to workers."""
    import psutil

    total = 0.0
    for p in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if is_pool_process(p.cmdline()):
                t = p.cpu_times()
                total += t.user + t.system
    return total


def workers() -> int:
    """Processes ``pmap`` computes in, this one included.

    Off the CPU (CUDA, MPS) always 1: one device is shared. Else env ``LAB_WORKERS``, else
    ``usable_cpus() // repro.lab_threads() // n`` where n is the number of pytest-xdist
    workers running notebooks side by side (``PYTEST_XDIST_WORKER_COUNT``, 1 outside pytest):
    one process per core that is not already busy. So ``LAB_THREADS=2`` on 2 cores, or
    ``make test`` (two notebooks at once on 2 cores), gives 1, a plain loop. More processes
    than cores do not help: measured on 2 cores, 3 training jobs in 3 processes took 25 s
    where 2 processes took 21 s (the caches thrash, and each extra worker imports torch).
    ``LAB_WORKERS=1`` turns the pool off: the numbers do not change, only the wall time does.

    Raises:
        ValueError: ``LAB_WORKERS`` is not a positive integer.
    """
    if repro.device().type != "cpu":
        return 1
    value = repro.env_int(_ENV_WORKERS, None, minimum=1)
    if value is not None:
        return value
    try:
        sharing = max(1, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
    except ValueError:
        sharing = 1
    return max(1, usable_cpus() // repro.lab_threads() // sharing)


def split(items: Iterable[T], parts: int | None = None) -> list[list[T]]:
    """``items`` cut into ``parts`` contiguous pieces of near-equal length, in order, like
    ``numpy.array_split`` (the first pieces one longer); never more pieces than items.

    Used to cut a stack of independent models into one stack per process (``parts`` defaults to
    ``workers()``): a model's numbers do not depend on its stack-mates (``tests/test_stacked.py``),
    so any cut gives the numbers of one uncut stack.

    Raises:
        TypeError, ValueError: ``parts`` not a positive int.
    """
    if parts is None:
        parts = workers()
    if not isinstance(parts, int) or isinstance(parts, bool):
        raise TypeError(f"parts must be an int or None, got {type(parts).__name__}")
    if parts < 1:
        raise ValueError(f"parts must be >= 1, got {parts}")
    items = list(items)
    n = min(parts, max(1, len(items)))
    size, extra = divmod(len(items), n)
    bounds = [i * size + min(i, extra) for i in range(n + 1)]
    return [items[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def _rng_states() -> tuple:
    return torch.get_rng_state(), np.random.get_state(), random.getstate()


def _set_rng_states(states: tuple) -> None:
    torch.set_rng_state(states[0])
    np.random.set_state(states[1])
    random.setstate(states[2])


class _Job:
    """``fn`` wrapped to start every job from the same global RNG states (the caller's at the
    ``pmap`` call) and, in a worker, with the caller's thread count and determinism switches."""

    def __init__(self, fn: Callable[[Any], Any], threads: int, states: tuple):
        self.fn, self.threads, self.states = fn, threads, states
        self.caller = os.getpid()

    def __call__(self, job: Any) -> Any:
        if os.getpid() != self.caller:  # in a worker: compute as the caller does
            torch.set_num_threads(self.threads)
            repro.determinism(True)
        _set_rng_states(self.states)
        return self.fn(job)


def _ready(modules: tuple[str, ...] = ()) -> int:
    for name in modules:  # import now what the jobs' functions will need, not in the first job
        importlib.import_module(name)
    return os.getpid()


def _init_worker() -> None:
    os.environ["LAB_PROGRESS"] = "0"  # a worker's bars would go to the terminal, not the notebook
    # tqdm's default lock holds a multiprocessing RLock, which a loky worker registers with the
    # resource tracker; stop_pool kills the workers, so the tracker would report it as leaked.
    # A worker's bars are off and never shared across processes: a thread lock is enough.
    from tqdm import tqdm

    tqdm.set_lock(threading.RLock())
    # loky restarts a worker whose memory grew by 300 MB since its first job, to contain leaks.
    # A training run's working set (activations, torch's cached allocations, the job's data)
    # is that large without leaking, and a restart costs a fresh torch import (~3 CPU-s), so
    # the threshold is raised for these workers. A joblib without this switch just restarts.
    from joblib.externals.loky import process_executor

    if hasattr(process_executor, "_MAX_MEMORY_LEAK_SIZE"):  # tested: the pinned joblib has it
        process_executor._MAX_MEMORY_LEAK_SIZE = _LEAK_LIMIT_BYTES


_pool_size = 0  # the size the pool grew to here (it never shrinks: that kills workers)
_warming: list[concurrent.futures.Future] = []  # warm()'s start-up jobs, one per worker started


def _executor(n: int):
    """joblib's reusable loky pool with at least n worker processes."""
    global _pool_size
    from joblib.externals.loky import get_reusable_executor

    _pool_size = max(_pool_size, n)
    _stop_with_the_kernel()
    return get_reusable_executor(
        max_workers=_pool_size, timeout=_IDLE_TIMEOUT_S, initializer=_init_worker
    )


def stop_pool() -> bool:
    """Stop the pool's worker processes and the two resource-tracker processes it started
    (loky's and ``multiprocessing``'s) now; the next ``warm()`` or ``pmap`` starts a fresh pool.

    Called by the Jupyter kernel when it shuts down or restarts (see :func:`_stop_with_the_kernel`).
    ipykernel (7.x) sends SIGTERM to every child process in the kernel's process group at shutdown
    and waits, with growing sleeps, until they are gone. The resource trackers ignore SIGTERM by
    design (``multiprocessing.resource_tracker.main``), so a kernel that had used the pool took
    2.5 s to shut down or restart, until jupyter_client terminated it (half of its
    ``shutdown_wait_time``); with the pool stopped first it takes what a kernel without one takes.
    A tracker that a live semaphore of this process is still registered with (another
    ``multiprocessing`` user's) is left running: stopped, it would unlink that semaphore, and the
    semaphore's own clean-up would start it again.

    Returns:
        True if a pool was running and was stopped.
    """
    global _pool_size
    from multiprocessing import resource_tracker as mp_tracker

    from joblib.externals.loky import reusable_executor
    from joblib.externals.loky.backend import resource_tracker as loky_tracker

    with reusable_executor._executor_lock:
        ex, reusable_executor._executor = reusable_executor._executor, None
    _warming.clear()
    _pool_size = 0
    if ex is not None:
        ex.shutdown(wait=True, kill_workers=True)
        del ex
    # the pool's queues hold semaphores registered with the trackers: they must be collected
    # (and so unregistered) before a tracker stops, or it reports and unlinks them as leaked.
    # loky's threads may hold the last references a moment longer: wait for them, briefly.
    deadline = time.monotonic() + _STOP_WAIT_S
    gc.collect()
    while _live_semaphores(_LOKY_SYNC) and time.monotonic() < deadline:
        time.sleep(0.01)
        gc.collect()
    stopped = False
    for tracker, module in (
        (loky_tracker._resource_tracker, _LOKY_SYNC),
        (mp_tracker._resource_tracker, "multiprocessing.synchronize"),
    ):
        # a semaphore still alive would unregister at exit and so start the tracker again
        if getattr(tracker, "_pid", None) is not None and not _live_semaphores(module):
            tracker._stop()
            stopped = True
    return stopped


def _live_semaphores(module: str) -> int:
    """Named semaphores of ``module``'s ``SemLock`` still alive in this process: each has a
    pending ``multiprocessing.util.Finalize`` that unregisters it from its resource tracker when
    it is collected, or at exit."""
    from multiprocessing import util

    return sum(
        getattr(getattr(f, "_callback", None), "__qualname__", "") == "SemLock._cleanup"
        and getattr(f._callback, "__module__", "") == module
        for f in list(util._finalizer_registry.values())
    )


def _stop_with_the_kernel() -> None:
    """In a Jupyter kernel, make its shutdown (and restart) call :func:`stop_pool` first.

    ``do_shutdown`` is ipykernel's documented hook for "things to do when the frontend shuts
    down the kernel"; it runs before the kernel terminates its children. The kernel instance's
    method is wrapped once; outside a kernel (a script, pytest) nothing happens.
    """
    ipython = sys.modules.get("IPython")  # never imported here: only a kernel has it loaded
    shell = ipython.get_ipython() if ipython is not None else None
    kernel = getattr(shell, "kernel", None)
    if kernel is None or getattr(kernel, "_lab_stops_pool", False):
        return
    original = kernel.do_shutdown

    def do_shutdown(restart):
        try:
            stop_pool()
        except Exception as err:  # never block a shutdown: the kernel then only takes longer
            print(f"parallel.stop_pool failed at kernel shutdown: {err!r}", file=sys.stderr)
        return original(restart)

    kernel.do_shutdown = do_shutdown
    kernel._lab_stops_pool = True


def warm(n_workers: int | None = None) -> None:
    """Start the worker processes ``pmap`` will use (``n_workers - 1``), and return at once.

    A worker needs a few CPU-seconds to start: it imports torch, then the ``utils`` modules
    this process has imported, which the jobs' functions refer to. A notebook calls this at the
    end of its setup cell, so the workers start on an idle core while the first sections
    compute. Until a worker's start-up is done, ``pmap`` gives it no job (this process computes
    them instead), so an early ``pmap`` never waits for a worker that is still importing.
    Does nothing when ``n_workers`` (default ``workers()``) is 1.

    Raises:
        TypeError, ValueError: ``n_workers`` not a positive int.
    """
    n = _check_n(n_workers) - 1  # this process is one of the n
    if n >= 1:
        modules = tuple(sorted(m for m in sys.modules if m == "utils" or m.startswith("utils.")))
        ex = _executor(n)
        _warming[:] = [ex.submit(_ready, modules) for _ in range(n)]


def pmap(fn: Callable[[T], R], jobs: Iterable[T], *, n_workers: int | None = None) -> list[R]:
    """``[fn(job) for job in jobs]``, computed in ``n_workers`` processes (default ``workers()``).

    Like ``joblib.Parallel(n_jobs)(delayed(fn)(j) for j in jobs)`` with the loky backend, except
    that this process computes jobs too (it would otherwise wait idle, and its jobs need no
    pickling): workers take jobs from the front of the list, this process from the back, each
    the next one as soon as it is free. Every job starts from the global RNG states the caller
    had when calling ``pmap`` (torch CPU, numpy, ``random``), with the caller's thread count
    and ``repro``'s determinism switches, so where a job runs cannot change its result; a
    fully seeded job (module docstring) gives the plain loop's result bit for bit. When
    ``pmap`` returns, the caller's RNG states are as they were.

    Costs: each job sends ``fn`` and the globals it uses by pickle (cloudpickle), and its result
    comes back the same way; keep them to tensors, arrays, numbers and small models. A job must
    not change globals the caller reads afterwards: in a worker the change is lost.

    Args:
        fn: a function of one argument; a lambda or a function defined in a notebook works.
        jobs: an iterable of arguments, one per job; consumed into a list first.
        n_workers: processes to compute in, this one included; 1 runs the loop here.

    Raises:
        TypeError: ``fn`` is not callable, ``jobs`` is not iterable, ``n_workers`` not an int.
        ValueError: ``n_workers`` < 1, or a bad ``LAB_WORKERS``.
        Whatever a job raises (from a worker, with its traceback); no new job starts after it.
        ``concurrent.futures.process.BrokenProcessPool`` if a worker process died (killed
        for memory, or interrupted); the next call starts a fresh pool.
    """
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {type(fn).__name__}")
    try:
        jobs = list(jobs)
    except TypeError:
        raise TypeError(f"jobs must be an iterable, got {type(jobs).__name__}") from None
    n = min(_check_n(n_workers), len(jobs))
    states = _rng_states()
    call = _Job(fn, torch.get_num_threads(), states)
    try:
        if n <= 1:
            return [call(job) for job in jobs]
        return _shared(call, jobs, _executor(n - 1), n - 1)
    finally:
        _set_rng_states(states)


def _shared(call: _Job, jobs: list, ex, n_pool: int) -> list:
    """Jobs from the front go to the pool's workers, from the back to this process.

    A worker's next job is submitted by the done-callback of its last one, so no process waits
    while another still has jobs to hand out. A worker that ``warm()`` is still starting gets its
    first job when its start-up job finishes: until then this process takes jobs from the back,
    and may finish them all (a job handed to the pool cannot be taken back, so handing one to a
    worker that is still importing torch would make this process wait for it). The first failure
    (a job's exception, a submission refused by a broken pool) stops the handing out.
    """
    results: list = [None] * len(jobs)
    lock = threading.Lock()
    todo = {"front": 0, "back": len(jobs)}  # jobs[front:back] are not started yet
    futures: list[concurrent.futures.Future] = []
    errors: list[BaseException] = []

    def stop() -> None:
        with lock:
            todo["back"] = todo["front"]

    def submit_next(done: concurrent.futures.Future | None = None) -> None:
        if done is not None and (done.cancelled() or done.exception() is not None):
            stop()
            return
        with lock:
            if todo["front"] >= todo["back"]:
                return
            i = todo["front"]
            todo["front"] += 1
            try:
                fut = ex.submit(call, jobs[i])
            except BaseException as err:  # a broken pool: runs in loky's thread, so keep it
                errors.append(err)
                todo["back"] = todo["front"]
                return
            fut.index = i
            futures.append(fut)
        fut.add_done_callback(submit_next)

    try:
        starting = [f for f in _warming if not f.done()][:n_pool]
        for _ in range(n_pool - len(starting)):
            submit_next()
        for f in starting:  # called at once if it finished meanwhile
            f.add_done_callback(lambda _: submit_next())
        while True:
            with lock:
                if todo["front"] >= todo["back"]:
                    break
                todo["back"] -= 1
                i = todo["back"]
            results[i] = call(jobs[i])
        waited = 0
        while waited < len(futures):  # callbacks may append while we wait: wait for each one
            concurrent.futures.wait([futures[waited]])
            waited += 1
        if errors:
            raise errors[0]
        for fut in sorted(futures, key=lambda f: f.index):
            results[fut.index] = fut.result()  # raises the first failed job's exception
    except BaseException:
        stop()
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
