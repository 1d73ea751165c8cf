"""A thin layer over Ray Tune: start (or join) Ray safely, run a search, get plain results.

* Offline (env ``RAY_ADDRESS`` unset): :func:`session` starts a private local Ray with
  ``num_cpus = os.cpu_count()``, no dashboard, node IP 127.0.0.1 (loopback only), usage stats
  off, logs and temp files under ``<repo>/build/ray`` (or a short ``/tmp`` folder linked there
  when that path is too long for Ray's Unix sockets), and always shuts it down on exit. After a
  clean exit it also deletes the session folder (logs, sockets) that this process's Ray wrote
  there, so ``build/ray`` does not grow by one folder per run; after an error the folder is
  kept for its logs.
* With ``RAY_ADDRESS`` set (e.g. ``ray://head:10001`` or ``auto``): the same code connects to
  that existing cluster, ships the ``utils`` package to its workers (``runtime_env``
  ``py_modules``), and leaves the cluster running on exit.
* :func:`start_in_background` starts that private Ray in a thread, so its start-up overlaps
  other work; ``session(started=...)`` then joins it. :func:`per_group` runs several independent
  searches (e.g. one per seed) in one ``Tuner.fit``, each with its own scheduler, paying a
  fit's fixed cost once.

Ray Tune: Liaw et al. 2018, arXiv:1807.05118. ASHA: Li et al. 2020, arXiv:1810.05934.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

from ..core import parallel, paths

ROOT = paths.ROOT
UTILS = Path(__file__).resolve().parents[1]  # the `utils` package shipped to a remote cluster
# Ray puts Unix sockets at <temp>/session_<date>_<time>_<pid>/sockets/plasma_store (~65 chars
# after <temp>); AF_UNIX paths are limited to 107 bytes on Linux (103 on macOS).
MAX_TEMP_DIR_LEN = 36
# Starts of a local Ray that session() tries before giving up: under load (two notebooks
# running at once on 2 cores) one start in several has timed out.
START_ATTEMPTS = 3

_ENV_QUIET = {
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_AIR_NEW_OUTPUT": "0",
    "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",
    "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "60",
}


def temp_dir(root: Path | str = ROOT) -> Path:
    """Folder for Ray's session files: ``<root>/build/ray`` when short enough for Unix sockets,
    else ``<tmp>/mlab-ray-<hash>`` with a symlink ``<root>/build/ray`` pointing to it."""
    wanted = Path(root).resolve() / "build" / "ray"
    if len(str(wanted)) <= MAX_TEMP_DIR_LEN:
        return wanted
    digest = hashlib.sha1(str(wanted).encode()).hexdigest()[:8]
    short = Path(tempfile.gettempdir()) / f"mlab-ray-{digest}"
    if len(str(short)) > MAX_TEMP_DIR_LEN:
        short = Path("/tmp") / f"mlab-ray-{digest}"
    return short


def init_kwargs(
    env: Mapping[str, str] | None = None, *, root: Path | str = ROOT, num_cpus: int | None = None
) -> dict:
    """The keyword arguments for ``ray.init`` (pure function, unit-testable without Ray).

    Args:
        env: environment to read ``RAY_ADDRESS`` from (default ``os.environ``).
        root: repository root whose ``build/`` holds Ray's files.
        num_cpus: CPUs for a local Ray; default ``os.cpu_count()``.

    Returns:
        With ``RAY_ADDRESS`` set: ``{"address": ..., "runtime_env": {"py_modules": [utils]},
        "log_to_driver": False}``. Otherwise the local loopback-only configuration described in
        the module docstring.

    Raises:
        ValueError: num_cpus not a positive int.
    """
    env = os.environ if env is None else env
    address = env.get("RAY_ADDRESS", "").strip()
    if address:
        return {
            "address": address,
            "log_to_driver": False,
            "runtime_env": {"py_modules": [str(UTILS)]},
        }
    n = (os.cpu_count() or 1) if num_cpus is None else num_cpus
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"num_cpus must be an int >= 1, got {num_cpus!r}")
    return {
        "num_cpus": n,
        "include_dashboard": False,
        "_node_ip_address": "127.0.0.1",
        "_temp_dir": str(temp_dir(root)),
        "log_to_driver": False,
        "configure_logging": True,
        "logging_level": "error",
    }


def owns_cluster(kwargs: Mapping) -> bool:
    """True when ``kwargs`` start a private Ray that :func:`session` must shut down."""
    return "address" not in kwargs


def _prepare_temp(kwargs: Mapping, root: Path | str) -> None:
    tmp = kwargs.get("_temp_dir")
    if not tmp:
        return
    Path(tmp).mkdir(parents=True, exist_ok=True)
    link = Path(root).resolve() / "build" / "ray"
    if Path(tmp) != link and not link.exists():
        link.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(OSError):
            link.symlink_to(tmp, target_is_directory=True)


def own_session_dirs(temp: Path | str, pid: int | None = None) -> list[Path]:
    """The session folders that a Ray head started by process ``pid`` (default: this one) wrote
    under ``temp``: Ray names them ``session_<date>_<time>_<pid>``."""
    pid = os.getpid() if pid is None else pid
    temp = Path(temp)
    if not temp.is_dir():
        return []
    return sorted(p for p in temp.glob(f"session_*_{pid}") if p.is_dir() and not p.is_symlink())


def stop_leftover_processes(temp: Path | str, timeout: float = 5.0) -> int:
    """Kill this process's descendants whose command line names ``temp``: the GCS, dashboard,
    monitor and agent processes of a local Ray head whose start timed out. ``ray.shutdown()``
    does not stop them (the failed node was never registered with the driver), and left
    running they load the machine that the next start attempt needs.

    Args:
        temp: the ``_temp_dir`` the failed ``ray.init`` was given.
        timeout: seconds to wait for the killed processes to exit.

    Returns:
        the number of processes killed.
    """
    import psutil

    temp = str(temp)
    victims = []
    for p in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if any(temp in arg for arg in p.cmdline()):
                p.kill()
                victims.append(p)
    psutil.wait_procs(victims, timeout=timeout)
    return len(victims)


def remove_own_sessions(temp: Path | str, pid: int | None = None) -> int:
    """Delete this process's Ray session folders under ``temp`` (see :func:`own_session_dirs`)
    and a ``session_latest`` link left dangling by that; other processes' sessions are kept.

    Returns:
        the number of session folders removed.
    """
    dirs = own_session_dirs(temp, pid)
    for d in dirs:
        shutil.rmtree(d, ignore_errors=True)
    latest = Path(temp) / "session_latest"
    if latest.is_symlink() and not latest.exists():
        with contextlib.suppress(OSError):
            latest.unlink()
    return len(dirs)


def _start_local(kwargs: Mapping, attempts: int) -> None:
    """``ray.init(**kwargs)`` for a private local Ray, tried ``attempts`` times; the last failure
    propagates. A failed attempt's leftover processes are killed before the next one."""
    import ray

    if ray.is_initialized():  # e.g. a second background start: never shut a working Ray down
        return
    for attempt in range(1, attempts + 1):
        try:
            ray.init(**kwargs)
            return
        except Exception:  # noqa: BLE001 - Ray gives up after 30 s on a very busy machine
            ray.shutdown()
            if kwargs.get("_temp_dir"):  # the failed head's processes outlive shutdown()
                stop_leftover_processes(kwargs["_temp_dir"])
            if attempt == attempts:
                raise  # the last failure propagates


_STARTING: Starting | None = None
_STARTING_LOCK = threading.Lock()


class Starting:
    """A private local Ray starting in a background thread: see :func:`start_in_background`.

    The thread stays alive, idle, until :meth:`release` (called by :func:`session` after it shut
    Ray down): Ray's processes are spawned with ``PR_SET_PDEATHSIG``, which Linux fires when the
    spawning *thread* exits, so a thread that ended after ``ray.init`` would kill the GCS and
    raylet it just started.

    Attributes:
        kwargs: the ``ray.init`` keyword arguments.
        startup_s: wall seconds the start took (None while it runs).
        error: the exception of a failed start (None if it worked or still runs).
    """

    def __init__(self, kwargs: dict):
        self.kwargs, self.startup_s, self.error = kwargs, None, None
        self._ready, self._released = threading.Event(), threading.Event()
        self._thread = threading.Thread(target=self._run, name="ray-start", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        t0 = time.perf_counter()
        try:
            _start_local(self.kwargs, attempts=1)  # session() retries in the foreground
        except Exception as err:  # noqa: BLE001 - handed to session()
            self.error = err
        self.startup_s = time.perf_counter() - t0
        self._ready.set()
        if self.error is None:
            self._released.wait()  # keep the parent thread of Ray's processes alive

    def join(self) -> Starting:
        """Wait for the start to finish (it may have failed: see ``error``)."""
        self._ready.wait()
        return self

    def release(self) -> None:
        """Let the thread end; call after ``ray.shutdown()``."""
        self._released.set()
        self._thread.join()


def start_in_background(*, num_cpus: int | None = None, root: Path | str = ROOT) -> Starting | None:
    """Start the private local Ray that a later :func:`session` will use, in a background thread.

    A local start takes about 15 s wall on a 2-core machine, most of it Ray's own processes
    (GCS, raylet, agents) starting. A notebook computes on one thread, so started early the
    start-up runs on the otherwise idle core while other sections compute, and
    ``session(started=...)`` finds Ray up. With ``RAY_ADDRESS`` set nothing is started (a
    cluster is joined by :func:`session` itself) and None is returned.

    A failed start is not raised here: it is kept in the handle's ``error`` and
    :func:`session` then starts Ray in the foreground. Called again while that start runs or its
    Ray is up (a re-run setup cell), it returns the same handle; with Ray already initialised
    otherwise, None. A start that hangs blocks :func:`session` as ``ray.init`` would.

    Returns:
        a :class:`Starting` handle to pass to :func:`session`, or None.

    Raises:
        ValueError: bad ``num_cpus`` (see :func:`init_kwargs`).
    """
    global _STARTING
    for k, v in _ENV_QUIET.items():
        os.environ.setdefault(k, v)
    kwargs = init_kwargs(root=root, num_cpus=num_cpus)
    if not owns_cluster(kwargs):
        return None
    import ray  # imported here, not in the thread: module imports take a lock

    with _STARTING_LOCK:  # a re-run setup cell gets the start that is running or holding Ray up
        if _STARTING is not None and _STARTING._thread.is_alive():
            return _STARTING
        if ray.is_initialized():
            return None  # session() reuses that Ray
        _prepare_temp(kwargs, root)
        _STARTING = Starting(kwargs)
        return _STARTING


@contextlib.contextmanager
def session(
    *, num_cpus: int | None = None, root: Path | str = ROOT, started: Starting | None = None
) -> Iterator[dict]:
    """Context manager: start (or join) Ray, yield info, shut a private Ray down on exit.

    Args:
        num_cpus, root: see :func:`init_kwargs`.
        started: a handle from :func:`start_in_background`. The block waits for that start and
            owns the Ray it started (shuts it down on exit); if that start failed, the usual
            foreground start runs. None or a handle with a different ``num_cpus``/root: ignored
            when Ray is not up by then.

    Yields:
        dict with ``mode`` (``"local"``/``"cluster"``/``"reused"``), ``kwargs`` passed to
        ``ray.init``, ``startup_s`` (wall seconds of import + init; for a background start, the
        start's own duration), ``waited_s`` (wall seconds this call waited for Ray to be up) and
        ``cpus`` (cluster CPUs).

    A Ray already initialised in this process is reused and left running. A failed start
    (Ray waits a hard-coded 30 s for its raylet to register, which a loaded 2-core machine can
    exceed while Ray's own agent processes start) is retried, ``START_ATTEMPTS`` starts in all;
    the last failure propagates. A private Ray's session folder is deleted after a clean exit
    (kept, with its logs, when the block raised).
    """
    for k, v in _ENV_QUIET.items():
        os.environ.setdefault(k, v)
    start = time.perf_counter()
    import ray

    kwargs = init_kwargs(root=root, num_cpus=num_cpus)
    startup_s = None
    if started is not None and started.join().error is None and ray.is_initialized():
        kwargs, startup_s = started.kwargs, started.startup_s
        mode, shutdown = "local", True
    elif ray.is_initialized():
        mode, shutdown = "reused", False
    else:
        _prepare_temp(kwargs, root)
        _start_local(kwargs, START_ATTEMPTS)
        mode, shutdown = ("local", True) if owns_cluster(kwargs) else ("cluster", False)
    waited_s = time.perf_counter() - start
    info = {
        "mode": mode,
        "kwargs": kwargs,
        "startup_s": waited_s if startup_s is None else startup_s,
        "waited_s": waited_s,
        "cpus": ray.cluster_resources().get("CPU", 0.0),
    }
    failed = True
    try:
        yield info
        failed = False
    finally:
        if shutdown:
            ray.shutdown()
            if started is not None:
                started.release()
            if not failed and kwargs.get("_temp_dir"):
                remove_own_sessions(kwargs["_temp_dir"])


def run(
    trainable: Callable[[dict], None],
    param_space: dict,
    *,
    metric: str,
    mode: str,
    num_samples: int,
    seed: int,
    scheduler=None,
    max_concurrent_trials: int | None = None,
    name: str = "tune",
    **with_parameters,
) -> list[dict]:
    """Run one Ray Tune experiment; return plain per-trial results.

    Must be called inside :func:`session`. Configurations are drawn by Ray's
    ``BasicVariantGenerator`` (random search / grid) seeded with ``seed``.

    Args:
        trainable: function trainable ``f(config, **with_parameters)`` that calls
            ``ray.tune.report({...})`` once per training iteration.
        param_space: Ray Tune search space (``tune.loguniform`` etc.).
        metric, mode: the metric reported by the trainable and ``"min"``/``"max"``.
        num_samples: number of trials (>= 1). seed: search seed (int).
        scheduler: optional trial scheduler (e.g. :func:`asha`).
        max_concurrent_trials: cap on parallel trials (1 makes ASHA deterministic).
        name: experiment name (Ray's state under ``build/ray_results/<name>``, deleted once
            the results are collected).
        **with_parameters: large objects (data) passed via the object store
            (``tune.with_parameters``).

    Returns:
        list of dicts, one per trial: ``config``, ``last`` (last reported metrics) and
        ``iterations`` (number of reports). Per-trial result files are not written (the
        JSON/CSV loggers are off: they cost more CPU than these tiny trials), so report any
        running best yourself.

    Raises:
        ValueError: bad mode or num_samples.
    """
    from ray import tune
    from ray.tune.search import BasicVariantGenerator

    if mode not in ("min", "max"):
        raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"num_samples must be an int >= 1, got {num_samples!r}")
    fn = tune.with_parameters(trainable, **with_parameters) if with_parameters else trainable
    tuner = tune.Tuner(
        fn,
        param_space=param_space,
        tune_config=tune.TuneConfig(
            metric=metric,
            mode=mode,
            num_samples=num_samples,
            scheduler=scheduler,
            search_alg=BasicVariantGenerator(random_state=int(seed)),
            max_concurrent_trials=max_concurrent_trials,
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(
            name=name, storage_path=str(ROOT / "build" / "ray_results"), verbose=0
        ),
    )
    grid = tuner.fit()
    results = [
        {
            "config": dict(res.config),
            "last": dict(res.metrics or {}),
            "iterations": int((res.metrics or {}).get("training_iteration", 0)),
        }
        for res in grid
    ]
    # the results are returned in memory; the experiment folder would only pile up run after run
    shutil.rmtree(ROOT / "build" / "ray_results" / name, ignore_errors=True)
    return results


def asha(max_t: int, grace_period: int = 1, reduction_factor: int = 3):
    """ASHA early-stopping scheduler (Li et al. 2020, arXiv:1810.05934), time unit =
    ``training_iteration`` (one ``tune.report`` call)."""
    from ray.tune.schedulers import ASHAScheduler

    return ASHAScheduler(
        time_attr="training_iteration",
        max_t=max_t,
        grace_period=grace_period,
        reduction_factor=reduction_factor,
    )


def per_group(make: Callable[[], object], key: str):
    """A Tune scheduler that gives every group of trials its own scheduler instance: trials whose
    ``config[key]`` is equal are scheduled together, as if each group ran in its own
    ``Tuner.fit``, and no decision in one group looks at another group's results.

    Why: each ``Tuner.fit`` starts a fresh trial actor (a new worker process) and tears it down
    at the end, about 10 s of fixed cost on a 2-core machine whatever the trials do. Several
    independent searches (e.g. one per search seed, each on its own data split) can instead run
    as one ``Tuner.fit`` with ``key`` as a ``tune.grid_search`` dimension, paying that cost once.
    With ``max_concurrent_trials=1`` the trials of one group still run in the order they were
    generated, so an asynchronous scheduler such as ASHA makes the decisions it would make in a
    run of that group alone (given the same configurations). Only schedulers that pick trials
    first in, first out and decide CONTINUE or STOP (ASHA, FIFO, median stopping with hard
    stops) can be split this way; PAUSE-based ones (HyperBand, PBT) cannot.

    Args:
        make: a function that returns a fresh scheduler, e.g. ``lambda: asha(max_t=6)``; called
            once per group, when its first trial is added.
        key: the config key that names the group.

    Returns:
        a ``ray.tune.schedulers.FIFOScheduler`` subclass instance (FIFO picks the next pending
        trial; the groups' schedulers decide CONTINUE/STOP on each result).

    Raises:
        TypeError: ``make`` not callable or ``key`` not a str; (during the run) ``make`` returned
            a scheduler with its own trial choice (not FIFO).
        KeyError (during the run): a trial whose config lacks ``key``.
    """
    from ray.tune.schedulers import FIFOScheduler

    def _fifo_like(sched) -> bool:  # picks trials FIFO and decides only CONTINUE/STOP
        return type(sched).choose_trial_to_run is FIFOScheduler.choose_trial_to_run

    if not callable(make):
        raise TypeError(f"make must be a callable returning a scheduler, got {type(make).__name__}")
    if not isinstance(key, str):
        raise TypeError(f"key must be a str (a config key), got {type(key).__name__}")

    class _PerGroup(FIFOScheduler):
        _supports_buffered_results = False  # ASHA decides on every result, not on a buffer

        def __init__(self):
            super().__init__()
            self.groups: dict = {}
            self._props: tuple | None = None

        def set_search_properties(self, metric, mode, **spec) -> bool:
            super().set_search_properties(metric, mode, **spec)
            self._props = (metric, mode, spec)
            return all(g.set_search_properties(metric, mode, **spec) for g in self.groups.values())

        def _of(self, trial):
            group = trial.config[key]
            if group not in self.groups:
                sched = make()
                if not _fifo_like(sched):
                    raise TypeError(
                        "per_group needs schedulers that run trials first in, first out and "
                        f"decide only CONTINUE/STOP (e.g. asha()), got {type(sched).__name__}"
                    )
                if self._props is not None:
                    metric, mode, spec = self._props
                    sched.set_search_properties(metric, mode, **spec)
                self.groups[group] = sched
            return self.groups[group]

        def on_trial_add(self, tune_controller, trial):
            self._of(trial).on_trial_add(tune_controller, trial)

        def on_trial_error(self, tune_controller, trial):
            self._of(trial).on_trial_error(tune_controller, trial)

        def on_trial_result(self, tune_controller, trial, result):
            return self._of(trial).on_trial_result(tune_controller, trial, result)

        def on_trial_complete(self, tune_controller, trial, result):
            self._of(trial).on_trial_complete(tune_controller, trial, result)

        def on_trial_remove(self, tune_controller, trial):
            self._of(trial).on_trial_remove(tune_controller, trial)

        def debug_string(self) -> str:
            return "; ".join(f"{key}={g}: {s.debug_string()}" for g, s in self.groups.items())

    return _PerGroup()


def child_cpu_seconds() -> float:
    """CPU seconds (user + system) used so far by all live descendant processes of this one
    (Ray's raylet, GCS, agents and workers when Ray runs locally), except the worker processes
    of ``utils.core.parallel``, which are not Ray's. Call before shutdown."""
    import psutil

    total = 0.0
    for p in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if parallel.is_pool_process(p.cmdline()):
                continue
            t = p.cpu_times()
            total += t.user + t.system
    return total


def toy_trainable(config: dict) -> None:
    """A tiny trainable for smoke tests and examples: reports ``loss = (x - 0.3)^2 + 1/i + offset``
    for iterations i = 1..3, ``offset = config.get("offset", 0)`` (it lives in this module so Ray
    workers can import it by name)."""
    from ray import tune

    offset = float(config.get("offset", 0.0))
    for i in range(1, 4):
        tune.report({"loss": (float(config["x"]) - 0.3) ** 2 + 1.0 / i + offset})
