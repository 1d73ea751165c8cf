"""utils.core.parallel: pmap equals the plain loop bit for bit, and really uses other processes."""

import concurrent.futures
import os
import random
import sys
import time

import numpy as np
import pytest
import torch

from utils.core import parallel, paths


def _meet(folder, n=2, timeout_s=60.0):
    """Block a job until n different processes have started jobs (a file each): without it, a
    warm worker may finish a tiny job 0 and take job 1 before this process takes any."""
    (folder / f"pid{os.getpid()}").touch()
    deadline = time.monotonic() + timeout_s
    while len(list(folder.glob("pid*"))) < n and time.monotonic() < deadline:
        time.sleep(0.01)


def _training_job(folder):
    """A fully seeded job, defined in a function so that cloudpickle sends it by value, as a
    notebook's function is sent."""
    x = torch.randn(256, 16, generator=torch.Generator().manual_seed(0))

    def job(seed):
        _meet(folder)
        torch.manual_seed(seed)
        net = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.Tanh(), torch.nn.Linear(32, 1))
        opt = torch.optim.Adam(net.parameters(), lr=1e-2)
        for _ in range(30):
            loss = net(x).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        return os.getpid(), loss.item(), [p.detach().clone() for p in net.parameters()]

    return job


def test_pmap_equals_the_plain_loop_bit_for_bit_and_uses_two_processes(tmp_path):
    job = _training_job(tmp_path)
    (tmp_path / "pid0").touch()  # the loop runs in one process: let it pass the meeting point
    loop = [job(s) for s in range(5)]
    for f in tmp_path.glob("pid*"):
        f.unlink()
    par = parallel.pmap(job, range(5), n_workers=2)
    assert [r[1] for r in par] == [r[1] for r in loop]  # float equality, not closeness
    for (_, _, a), (_, _, b) in zip(par, loop, strict=True):
        assert all(torch.equal(p, q) for p, q in zip(a, b, strict=True))
    assert len({r[0] for r in par}) == 2  # this process and one worker both computed
    assert os.getpid() in {r[0] for r in par}


def test_pmap_keeps_order_and_accepts_lambdas_and_generators():
    assert parallel.pmap(lambda v: v * v, (i for i in range(7)), n_workers=2) == [
        i * i for i in range(7)
    ]
    assert parallel.pmap(lambda v: v, [], n_workers=2) == []


def test_pmap_restores_the_callers_global_rng_states():
    def draws(_):
        torch.manual_seed(123)
        return torch.rand(1).item(), np.random.rand(), random.random()

    for n in (1, 2):
        torch.manual_seed(7)
        np.random.seed(7)
        random.seed(7)
        parallel.pmap(draws, range(3), n_workers=n)
        after = torch.rand(1).item(), np.random.rand(), random.random()
        torch.manual_seed(7)
        np.random.seed(7)
        random.seed(7)
        assert after == (torch.rand(1).item(), np.random.rand(), random.random())


def test_workers_compute_with_the_callers_thread_count():
    before = torch.get_num_threads()
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            got = parallel.pmap(lambda _: torch.get_num_threads(), range(4), n_workers=2)
            assert got == [threads] * 4
    finally:
        torch.set_num_threads(before)


def test_workers_are_not_restarted_for_a_large_working_set(tmp_path):
    from joblib.externals.loky import process_executor

    assert hasattr(process_executor, "_MAX_MEMORY_LEAK_SIZE")  # the switch _init_worker raises

    def limit(_):
        from joblib.externals.loky import process_executor

        _meet(tmp_path)
        return os.getpid(), process_executor._MAX_MEMORY_LEAK_SIZE

    got = dict(parallel.pmap(limit, range(2), n_workers=2))
    assert len(got) == 2 and got.pop(os.getpid()) != parallel._LEAK_LIMIT_BYTES
    assert list(got.values()) == [parallel._LEAK_LIMIT_BYTES]  # the worker's limit was raised


def test_an_unseeded_job_gives_the_same_result_wherever_it_runs(tmp_path):
    def draw(_):
        _meet(tmp_path)
        return os.getpid(), torch.rand(1).item()

    torch.manual_seed(3)
    draws = parallel.pmap(draw, range(4), n_workers=2)
    assert len({pid for pid, _ in draws}) == 2  # both processes ran jobs
    assert len({value for _, value in draws}) == 1  # every job started from the caller's state
    torch.manual_seed(3)
    assert draws[0][1] == torch.rand(1).item()


def test_an_exception_in_a_worker_is_raised_here_and_the_pool_survives():
    def fails_on_first(v):
        if v == 0:  # job 0 goes to the worker (the caller takes jobs from the back)
            raise ValueError("job 0 failed")
        return v

    with pytest.raises(ValueError, match="job 0 failed"):
        parallel.pmap(fails_on_first, range(4), n_workers=2)
    assert parallel.pmap(lambda v: v + 1, range(3), n_workers=2) == [1, 2, 3]


def test_a_failed_worker_job_stops_the_handing_out(tmp_path):
    def job(v):
        (tmp_path / f"started{v}").touch()
        if v == 0:  # job 0 goes to the worker and fails at once
            raise RuntimeError("job 0 failed")
        time.sleep(1.0)
        return v

    with pytest.raises(RuntimeError, match="job 0 failed"):
        parallel.pmap(job, range(6), n_workers=2)
    started = sorted(int(p.name[7:]) for p in tmp_path.iterdir())
    assert 0 in started and len(started) < 6  # this process stopped taking jobs after the failure


def test_an_exception_in_this_process_is_raised_while_a_worker_is_busy():
    def job(v):
        if v == 3:  # the caller takes the last job first
            raise KeyError("caller's job")
        time.sleep(0.5)
        return v

    with pytest.raises(KeyError, match="caller's job"):
        parallel.pmap(job, range(4), n_workers=2)
    assert parallel.pmap(abs, [-1, -2], n_workers=2) == [1, 2]


def test_a_dead_worker_raises_broken_process_pool_and_the_next_call_recovers():
    from concurrent.futures.process import BrokenProcessPool

    caller = os.getpid()

    def job(v):
        if os.getpid() != caller:
            os._exit(1)  # the worker process dies, as when the kernel kills it for memory
        return v

    with pytest.raises(BrokenProcessPool):
        parallel.pmap(job, range(4), n_workers=2)
    assert parallel.pmap(lambda v: v * 2, range(4), n_workers=2) == [0, 2, 4, 6]


def test_one_worker_is_the_plain_loop_in_this_process(monkeypatch):
    monkeypatch.setenv("LAB_WORKERS", "1")
    assert parallel.pmap(lambda _: os.getpid(), range(3)) == [os.getpid()] * 3


def test_workers_default_env_and_devices(monkeypatch):
    monkeypatch.delenv("LAB_WORKERS", raising=False)
    monkeypatch.delenv("PYTEST_XDIST_WORKER_COUNT", raising=False)
    monkeypatch.setenv("LAB_THREADS", "1")
    monkeypatch.setattr(parallel, "usable_cpus", lambda: 4)
    monkeypatch.setattr(parallel.repro, "device", lambda: torch.device("cpu"))
    assert parallel.workers() == 4
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "2")  # two notebooks at once share the cores
    assert parallel.workers() == 2
    monkeypatch.delenv("PYTEST_XDIST_WORKER_COUNT")
    monkeypatch.setenv("LAB_THREADS", "2")
    assert parallel.workers() == 2
    monkeypatch.setenv("LAB_THREADS", "8")
    assert parallel.workers() == 1
    monkeypatch.setenv("LAB_WORKERS", "3")
    assert parallel.workers() == 3
    monkeypatch.setattr(parallel.repro, "device", lambda: torch.device("cuda"))
    assert parallel.workers() == 1  # one shared device: a plain loop, whatever LAB_WORKERS says


@pytest.mark.parametrize("bad", ["0", "-1", "two", "1.5"])
def test_workers_rejects_a_bad_env(monkeypatch, bad):
    monkeypatch.setenv("LAB_WORKERS", bad)
    with pytest.raises(ValueError, match="LAB_WORKERS"):
        parallel.workers()


@pytest.mark.parametrize(
    "n, exc", [(0, ValueError), (-1, ValueError), (2.0, TypeError), (True, TypeError)]
)
def test_pmap_and_warm_validate_n_workers(n, exc):
    with pytest.raises(exc, match="n_workers"):
        parallel.pmap(abs, [1], n_workers=n)
    with pytest.raises(exc, match="n_workers"):
        parallel.warm(n)


def test_pmap_rejects_a_non_callable_and_a_non_iterable():
    with pytest.raises(TypeError, match="fn must be callable"):
        parallel.pmap(3, [1, 2])
    with pytest.raises(TypeError, match="jobs must be an iterable"):
        parallel.pmap(abs, 5)


def test_split_cuts_like_numpy_array_split(monkeypatch):
    for n in range(0, 8):
        for parts in range(1, 5):
            want = [a.tolist() for a in np.array_split(np.arange(n), min(parts, max(1, n)))]
            assert parallel.split(range(n), parts) == want
    monkeypatch.setenv("LAB_WORKERS", "1")
    assert parallel.split([3, 1, 2]) == [[3, 1, 2]]  # default: one piece per process
    with pytest.raises(ValueError, match="parts must be >= 1"):
        parallel.split([1], 0)
    with pytest.raises(TypeError, match="parts must be an int"):
        parallel.split([1], 2.0)


def test_warm_with_one_worker_starts_nothing(monkeypatch):
    monkeypatch.setattr(parallel, "_executor", lambda n: pytest.fail("no pool for one worker"))
    parallel.warm(1)


def test_a_worker_still_starting_gets_its_first_job_only_when_ready(monkeypatch):
    starting = concurrent.futures.Future()  # warm()'s start-up job of a worker, not finished
    monkeypatch.setattr(parallel, "_warming", [starting])
    out = parallel.pmap(lambda v: (os.getpid(), v * v), range(5), n_workers=2)
    assert out == [(os.getpid(), v * v) for v in range(5)]  # all here: no job waited for the worker
    starting.set_result(os.getpid())  # the worker is ready now: nothing is left to hand it
    ready = concurrent.futures.Future()
    ready.set_result(0)  # a worker that finished starting takes jobs at once
    monkeypatch.setattr(parallel, "_warming", [ready])
    assert parallel.pmap(lambda v: v + 1, range(6), n_workers=2) == list(range(1, 7))


def test_warm_then_pmap_uses_the_worker_once_it_is_ready(tmp_path):
    parallel.warm(2)
    job = _training_job(tmp_path)  # every job waits until two processes have started one
    assert len({pid for pid, _, _ in parallel.pmap(job, range(4), n_workers=2)}) == 2


def test_pool_processes_are_recognised_and_left_out_of_rays_cpu_count():
    import psutil

    from utils.instruments import raytune

    def burn(_):
        end = time.process_time() + 0.6
        while time.process_time() < end:
            pass
        return os.getpid()

    pids = set(parallel.pmap(burn, range(2), n_workers=2)) - {os.getpid()}
    assert pids and all(parallel.is_pool_process(psutil.Process(p).cmdline()) for p in pids)
    assert not parallel.is_pool_process(psutil.Process().cmdline())
    assert raytune.child_cpu_seconds() < 0.5  # the worker's 0.6 CPU-s (and more) are not counted
    assert parallel.pool_cpu_seconds() > 0.6  # ... they are the pool's


def _tracker_and_pool_children() -> list[str]:
    import psutil

    found = []
    for p in psutil.Process().children(recursive=True):
        try:
            line = " ".join(p.cmdline())
        except psutil.Error:
            continue
        if "resource_tracker" in line or parallel.is_pool_process(p.cmdline()):
            found.append(line)
    return found


def test_stop_pool_ends_the_workers_and_the_trackers_and_a_new_pool_starts_after():
    pids = set(parallel.pmap(lambda _: os.getpid(), range(4), n_workers=2))
    assert _tracker_and_pool_children()  # a worker and the trackers that ignore SIGTERM
    assert parallel.stop_pool() is True
    assert _tracker_and_pool_children() == []  # nothing left for a kernel's shutdown to wait for
    assert parallel.stop_pool() is False  # nothing to stop
    job = _training_job_pid_only()
    again = parallel.pmap(job, range(4), n_workers=2)
    assert len(set(again)) == 2 and not (set(again) - {os.getpid()}) & pids  # a fresh worker


def _training_job_pid_only():
    def job(_):
        end = time.process_time() + 0.3  # long enough that both processes take a job
        while time.process_time() < end:
            pass
        return os.getpid()

    return job


class _FakeKernel:
    def __init__(self):
        self.calls = []

    def do_shutdown(self, restart):
        self.calls.append(restart)
        return {"status": "ok", "restart": restart}


def test_a_kernels_shutdown_stops_the_pool_first(monkeypatch):
    import types

    kernel = _FakeKernel()
    shell = types.SimpleNamespace(kernel=kernel)
    monkeypatch.setitem(sys.modules, "IPython", types.SimpleNamespace(get_ipython=lambda: shell))
    stopped = []
    monkeypatch.setattr(parallel, "stop_pool", lambda: stopped.append(len(kernel.calls)))
    parallel._stop_with_the_kernel()
    parallel._stop_with_the_kernel()  # wrapped once, however many pools start
    assert kernel.do_shutdown(True) == {"status": "ok", "restart": True}
    assert stopped == [0] and kernel.calls == [True]  # the pool stopped first

    def broken():
        raise RuntimeError("boom")

    monkeypatch.setattr(parallel, "stop_pool", broken)
    assert kernel.do_shutdown(False)["restart"] is False  # a failure never blocks the shutdown


def test_outside_a_kernel_nothing_is_wrapped(monkeypatch):
    monkeypatch.delitem(sys.modules, "IPython", raising=False)
    parallel._stop_with_the_kernel()  # no IPython loaded: returns without importing it
    assert "IPython" not in sys.modules


def test_a_real_kernel_with_a_pool_shuts_down_without_being_terminated():
    """ipykernel terminates the kernel's children at shutdown; the trackers ignore SIGTERM, so
    without stop_pool jupyter_client has to terminate the kernel itself (its status says so)."""
    from jupyter_client.manager import KernelManager, _ShutdownStatus

    km = KernelManager(kernel_name="python3")
    km.start_kernel(cwd=str(paths.ROOT))
    try:
        kc = km.client()
        kc.start_channels()
        kc.wait_for_ready(timeout=120)
        out = []
        reply = kc.execute_interactive(
            "from utils.core import parallel\nimport os\n"
            "print(len(set(parallel.pmap(lambda _: os.getpid(), range(6), n_workers=2))) >= 1)",
            timeout=120,
            output_hook=lambda msg: out.append(msg["content"].get("text", "")),
        )
        assert reply["content"]["status"] == "ok" and "True" in "".join(out)
        kc.stop_channels()
    finally:
        km.shutdown_kernel(now=False)
    assert km._shutdown_status == _ShutdownStatus.ShutdownRequest  # not Sigterm- or SigkillRequest


def test_a_workers_progress_bars_take_no_multiprocessing_lock():
    """tqdm's default lock holds a multiprocessing RLock, which a worker registers with the
    resource tracker; stop_pool kills workers, so the tracker would report it as leaked."""

    def lock_of(_):
        import threading

        from tqdm import tqdm

        end = time.process_time() + 0.3  # long enough that both processes take a job
        while time.process_time() < end:
            pass
        return os.getpid(), isinstance(tqdm.get_lock(), type(threading.RLock()))

    got = dict(parallel.pmap(lock_of, range(4), n_workers=2))
    got.pop(os.getpid(), None)
    assert got and all(got.values())


def test_stop_pool_keeps_a_tracker_that_a_live_semaphore_still_needs():
    import gc
    import multiprocessing
    from multiprocessing import resource_tracker

    parallel.pmap(_training_job_pid_only(), range(2), n_workers=2)
    lock = multiprocessing.get_context("spawn").Lock()  # registered with multiprocessing's tracker
    parallel.stop_pool()
    # stopped now, the tracker would be started again when the lock unregisters (at exit)
    assert resource_tracker._resource_tracker._pid is not None
    del lock
    gc.collect()
    assert parallel.stop_pool() is True
    assert resource_tracker._resource_tracker._pid is None
