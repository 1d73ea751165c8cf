"""Reproducibility: the base seed, derived seeds, the device and determinism switches.

Every notebook starts from one base seed, read from the environment variable ``LAB_SEED``
(default 0). Experiments that need several independent runs ask for ``seeds(n)``: n seeds
derived from the base seed with numpy's ``SeedSequence``, so changing ``LAB_SEED`` changes
every run and the same ``LAB_SEED`` reproduces every number on the same machine.
"""

from __future__ import annotations

import contextlib
import gc
import os
import platform
import random
from collections.abc import Iterator

import numpy as np
import torch

_ENV_SEED = "LAB_SEED"
_ENV_DEVICE = "LAB_DEVICE"
_ENV_THREADS = "LAB_THREADS"


def env_int(name: str, default: int | None, *, minimum: int) -> int | None:
    """The integer in environment variable ``name``, or ``default`` when it is unset or blank.

    Raises:
        ValueError: the value is not an integer >= ``minimum`` (the message names ``name``).
    """
    kind = {0: "a non-negative integer", 1: "a positive integer"}.get(
        minimum, f"an integer >= {minimum}"
    )
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name} must be {kind}, got {raw!r}") from None
    if value < minimum:
        raise ValueError(f"{name} must be {kind}, got {value}")
    return value


def base_seed() -> int:
    """Return the base seed from env ``LAB_SEED`` (default 0).

    Raises:
        ValueError: if ``LAB_SEED`` is not a non-negative integer.
    """
    return env_int(_ENV_SEED, 0, minimum=0)


def seeds(n: int, *, stream: int = 0) -> list[int]:
    """Return ``n`` seeds derived from the base seed.

    Args:
        n: how many seeds (>= 1).
        stream: a label for independent families of seeds within one notebook (e.g. one
            stream for data subsampling, another for initialisation); different streams give
            unrelated seeds. Non-negative int.

    Returns:
        list of ``n`` Python ints in [0, 2**31), a pure function of (LAB_SEED, stream, n).

    Raises:
        TypeError: if ``n`` or ``stream`` is not an int.
        ValueError: if ``n < 1`` or ``stream < 0``.

    Source: ``numpy.random.SeedSequence`` (spawning independent streams from one entropy).
    """
    if not isinstance(n, int) or isinstance(n, bool):
        raise TypeError(f"n must be an int, got {type(n).__name__}")
    if not isinstance(stream, int) or isinstance(stream, bool):
        raise TypeError(f"stream must be an int, got {type(stream).__name__}")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if stream < 0:
        raise ValueError(f"stream must be >= 0, got {stream}")
    seq = np.random.SeedSequence([base_seed(), stream])
    return [int(s) for s in seq.generate_state(n, dtype=np.uint32) % (2**31)]


def set_seed(seed: int) -> None:
    """Seed Python's ``random``, numpy's global RNG and torch (all devices) with ``seed``.

    Raises:
        TypeError: if ``seed`` is not an int.
        ValueError: if ``seed`` is negative or >= 2**63.
    """
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    seed = int(seed)
    if not 0 <= seed < 2**63:
        raise ValueError(f"seed must be in [0, 2**63), got {seed}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def generator(seed: int, device: str | torch.device = "cpu") -> torch.Generator:
    """Return a ``torch.Generator`` on ``device`` seeded with ``seed`` (for data order, masks)."""
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    g = torch.Generator(device=device)
    g.manual_seed(int(seed))
    return g


def device() -> torch.device:
    """Return the device the notebooks compute on.

    ``LAB_DEVICE`` (e.g. ``cpu``, ``cuda``, ``cuda:1``, ``mps``) overrides; otherwise CUDA if
    available, else CPU. MPS is used only when asked for, since some ops used here are
    missing or slow on it.

    Raises:
        ValueError: if ``LAB_DEVICE`` names a device type torch does not know, or one that is
            not available on this machine.
    """
    wanted = os.environ.get(_ENV_DEVICE, "").strip()
    if wanted:
        try:
            dev = torch.device(wanted)
        except RuntimeError as err:
            raise ValueError(f"LAB_DEVICE={wanted!r} is not a torch device: {err}") from None
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"LAB_DEVICE={wanted!r} but CUDA is not available here")
        if dev.type == "mps" and not torch.backends.mps.is_available():
            raise ValueError(f"LAB_DEVICE={wanted!r} but MPS is not available here")
        return dev
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def determinism(enabled: bool = True) -> None:
    """Switch torch to deterministic kernels (and cuDNN to non-benchmark mode) or back.

    Uses ``torch.use_deterministic_algorithms(enabled, warn_only=True)`` so an op without a
    deterministic implementation warns instead of failing. On CUDA, deterministic cuBLAS also
    needs ``CUBLAS_WORKSPACE_CONFIG=:4096:8``, which this sets if unset.
    """
    if not isinstance(enabled, bool):
        raise TypeError(f"enabled must be a bool, got {type(enabled).__name__}")
    if enabled:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(enabled, warn_only=True)
    torch.backends.cudnn.deterministic = enabled
    torch.backends.cudnn.benchmark = not enabled


def lab_threads() -> int:
    """The number of CPU threads torch computes with: env ``LAB_THREADS`` (default 1).

    CPU kernels split reductions across threads, so 1 and 2 threads can differ in the last
    bits, and a long training run turns that into different numbers. One thread everywhere
    (``make lab``, ``make test``, ``make verify``, ``make bench``) makes the same ``LAB_SEED``
    give the same numbers on every path. ``LAB_THREADS=2`` is faster on big models; the
    verdicts are checked to hold with it too, but its numbers are not the shipped ones.

    Raises:
        ValueError: ``LAB_THREADS`` not a positive integer.
    """
    return env_int(_ENV_THREADS, 1, minimum=1)


@contextlib.contextmanager
def num_threads(n: int) -> Iterator[None]:
    """Run a block with ``torch.set_num_threads(n)``, restoring the previous count after.

    Used where a result must not depend on the caller's thread count, e.g. pretraining a
    model that is cached on disk.

    Raises:
        ValueError: ``n`` not an int >= 1.
    """
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"n must be an int >= 1, got {n!r}")
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def setup(n_seeds: int = 3, *, freeze_imports: bool = True) -> tuple[list[int], torch.device]:
    """Notebook preamble: threads, determinism, base seed, ``n_seeds`` seeds and the device.

    Sets ``torch.set_num_threads(lab_threads())`` (1 unless ``LAB_THREADS`` says otherwise),
    so ``make lab`` and ``make test`` compute the same numbers. Call it after the imports.

    Args:
        n_seeds: how many derived seeds to return (int >= 1).
        freeze_imports: move every object alive now (the imported libraries: about 580,000
            objects in notebook 02, which imports torch, Ray, scipy and sklearn) out of the
            cyclic garbage collector's reach with ``gc.freeze()``. They are never garbage, yet
            every full collection walks them: one in 02's run, and two at kernel exit (IPython's
            reset and ``parallel.stop_pool``). Measured on a 2-core machine, 02's kernel exit
            took 2.9 s, and 0.5 s with them frozen. Objects created later are collected as usual.

    Returns:
        (seeds, device) where seeds is ``seeds(n_seeds)``.

    Raises:
        TypeError: ``freeze_imports`` not a bool.
    """
    if not isinstance(freeze_imports, bool):
        raise TypeError(f"freeze_imports must be a bool, got {type(freeze_imports).__name__}")
    torch.set_num_threads(lab_threads())
    determinism(True)
    set_seed(base_seed())
    if freeze_imports:
        gc.freeze()
    return seeds(n_seeds), device()


def env_report() -> str:
    """One line: Python, torch, numpy versions, threads, device and LAB_SEED."""
    dev = device()
    name = dev.type
    if dev.type == "cuda":
        name = f"cuda ({torch.cuda.get_device_name(dev)})"
    return (
        f"Python {platform.python_version()} | torch {torch.__version__} | "
        f"numpy {np.__version__} | threads {torch.get_num_threads()} | "
        f"device {name} | LAB_SEED={base_seed()}"
    )
