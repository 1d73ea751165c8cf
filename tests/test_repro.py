import numpy as np
import pytest
import torch

from utils.core import repro


def test_base_seed_default_and_env(monkeypatch):
    monkeypatch.delenv("LAB_SEED", raising=False)
    assert repro.base_seed() == 0
    monkeypatch.setenv("LAB_SEED", "7")
    assert repro.base_seed() == 7


@pytest.mark.parametrize("bad", ["x", "-1", "1.5"])
def test_base_seed_rejects_bad_env(monkeypatch, bad):
    monkeypatch.setenv("LAB_SEED", bad)
    with pytest.raises(ValueError, match="LAB_SEED"):
        repro.base_seed()


def test_seeds_are_deterministic_distinct_and_follow_lab_seed(monkeypatch):
    monkeypatch.setenv("LAB_SEED", "0")
    a = repro.seeds(5)
    assert a == repro.seeds(5) and len(set(a)) == 5
    assert repro.seeds(3) == a[:3]  # a prefix: asking for more seeds keeps the first ones
    assert repro.seeds(3, stream=1) != a[:3]
    monkeypatch.setenv("LAB_SEED", "1")
    assert repro.seeds(5) != a
    assert all(0 <= s < 2**31 for s in a)


@pytest.mark.parametrize(
    "n, exc", [(0, ValueError), (-2, ValueError), (2.0, TypeError), (True, TypeError)]
)
def test_seeds_validates_n(n, exc):
    with pytest.raises(exc, match="n must"):
        repro.seeds(n)


def test_set_seed_reproduces_torch_and_numpy():
    repro.set_seed(3)
    a = torch.rand(3), np.random.rand(3)
    repro.set_seed(3)
    b = torch.rand(3), np.random.rand(3)
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    with pytest.raises(ValueError, match="seed"):
        repro.set_seed(-1)
    with pytest.raises(TypeError, match="seed"):
        repro.set_seed("3")


def test_generator_is_seeded():
    g1, g2 = repro.generator(5), repro.generator(5)
    assert torch.equal(torch.randperm(10, generator=g1), torch.randperm(10, generator=g2))


def test_device_env_override(monkeypatch):
    monkeypatch.setenv("LAB_DEVICE", "cpu")
    assert repro.device() == torch.device("cpu")
    monkeypatch.setenv("LAB_DEVICE", "nonsense")
    with pytest.raises(ValueError, match="LAB_DEVICE"):
        repro.device()
    if not torch.cuda.is_available():
        monkeypatch.setenv("LAB_DEVICE", "cuda")
        with pytest.raises(ValueError, match="CUDA is not available"):
            repro.device()


def test_determinism_toggles_and_report(monkeypatch):
    monkeypatch.setenv("LAB_SEED", "2")
    try:
        repro.determinism(True)
        assert torch.are_deterministic_algorithms_enabled()
    finally:
        repro.determinism(False)
    assert not torch.are_deterministic_algorithms_enabled()
    line = repro.env_report()
    assert "torch" in line and "LAB_SEED=2" in line and "\n" not in line
    with pytest.raises(TypeError):
        repro.determinism(1)


def test_setup_returns_seeds_and_device(monkeypatch):
    monkeypatch.setenv("LAB_SEED", "0")
    try:
        s, dev = repro.setup(4, freeze_imports=False)
    finally:
        repro.determinism(False)
    assert s == repro.seeds(4) and isinstance(dev, torch.device)


def test_setup_freezes_the_objects_alive_then_out_of_the_garbage_collector():
    import gc

    before = gc.get_freeze_count()
    try:
        repro.setup(2, freeze_imports=False)
        assert gc.get_freeze_count() == before
        repro.setup(2)
        assert gc.get_freeze_count() > before
    finally:
        gc.unfreeze()
        repro.determinism(False)
    with pytest.raises(TypeError, match="freeze_imports"):
        repro.setup(2, freeze_imports=1)


def test_lab_threads_and_num_threads(monkeypatch):
    import torch

    monkeypatch.delenv("LAB_THREADS", raising=False)
    assert repro.lab_threads() == 1
    monkeypatch.setenv("LAB_THREADS", "2")
    assert repro.lab_threads() == 2
    for bad in ("0", "two"):
        monkeypatch.setenv("LAB_THREADS", bad)
        with pytest.raises(ValueError, match="LAB_THREADS"):
            repro.lab_threads()
    before = torch.get_num_threads()
    with repro.num_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with pytest.raises(ValueError, match="n must"):
        with repro.num_threads(0):
            pass


def test_setup_pins_the_thread_count(monkeypatch):
    import torch

    before = torch.get_num_threads()
    monkeypatch.setenv("LAB_THREADS", "1")
    try:
        repro.setup(3, freeze_imports=False)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
        repro.determinism(False)


def test_env_int_default_value_and_errors_name_the_variable(monkeypatch):
    monkeypatch.delenv("LAB_TEST_INT", raising=False)
    assert repro.env_int("LAB_TEST_INT", None, minimum=1) is None
    monkeypatch.setenv("LAB_TEST_INT", "  ")
    assert repro.env_int("LAB_TEST_INT", 4, minimum=1) == 4
    monkeypatch.setenv("LAB_TEST_INT", "7")
    assert repro.env_int("LAB_TEST_INT", 4, minimum=1) == 7
    for raw, minimum, kind in [("0", 1, "positive"), ("-1", 0, "non-negative"), ("x", 2, ">= 2")]:
        monkeypatch.setenv("LAB_TEST_INT", raw)
        with pytest.raises(ValueError, match=f"LAB_TEST_INT must be .*{kind}"):
            repro.env_int("LAB_TEST_INT", 4, minimum=minimum)
