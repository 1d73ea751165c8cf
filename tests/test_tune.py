"""Tests of utils.tune: the ray.init kwargs builder (no cluster needed), session shutdown
logic with a stub Ray, and one tiny real tuning run that must leave Ray shut down."""

import sys
import types

import pytest

from utils.instruments import raytune as labtune


def test_local_kwargs_are_loopback_no_dashboard_all_cores(tmp_path):
    kw = labtune.init_kwargs({}, root=tmp_path, num_cpus=None)
    import os

    assert kw["num_cpus"] == os.cpu_count()
    assert kw["include_dashboard"] is False
    assert kw["_node_ip_address"] == "127.0.0.1"
    assert "address" not in kw and labtune.owns_cluster(kw)
    assert len(kw["_temp_dir"]) <= labtune.MAX_TEMP_DIR_LEN


def test_short_repo_path_keeps_temp_under_build(tmp_path, monkeypatch):
    root = tmp_path.parent / "r"
    if len(str(root / "build" / "ray")) <= labtune.MAX_TEMP_DIR_LEN:
        assert labtune.temp_dir(root) == (root / "build" / "ray").resolve()
    long_root = tmp_path / ("x" * 80)
    short = labtune.temp_dir(long_root)
    assert len(str(short)) <= labtune.MAX_TEMP_DIR_LEN and "mlab-ray-" in str(short)


def test_ray_address_switches_to_cluster_mode(tmp_path):
    kw = labtune.init_kwargs({"RAY_ADDRESS": "ray://head:10001"}, root=tmp_path)
    assert kw["address"] == "ray://head:10001"
    assert "num_cpus" not in kw and "_temp_dir" not in kw
    assert kw["runtime_env"]["py_modules"][0].endswith("utils")
    assert not labtune.owns_cluster(kw)
    assert labtune.owns_cluster(labtune.init_kwargs({"RAY_ADDRESS": "  "}, root=tmp_path))


@pytest.mark.parametrize("bad", [0, -2, 1.5, True])
def test_bad_num_cpus(bad, tmp_path):
    with pytest.raises(ValueError, match="num_cpus"):
        labtune.init_kwargs({}, root=tmp_path, num_cpus=bad)


class _StubRay(types.ModuleType):
    def __init__(self):
        super().__init__("ray")
        self.calls, self.up = [], False

    def is_initialized(self):
        return self.up

    def init(self, **kw):
        self.calls.append(("init", kw))
        self.up = True

    def shutdown(self):
        self.calls.append(("shutdown", {}))
        self.up = False

    def cluster_resources(self):
        return {"CPU": 4.0}


@pytest.mark.parametrize("address", ["", "ray://head:10001"])
def test_session_shuts_down_only_its_own_ray(address, monkeypatch, tmp_path):
    stub = _StubRay()
    monkeypatch.setitem(sys.modules, "ray", stub)
    monkeypatch.setenv("RAY_ADDRESS", address) if address else monkeypatch.delenv(
        "RAY_ADDRESS", raising=False
    )
    with pytest.raises(RuntimeError), labtune.session(root=tmp_path) as info:
        assert info["mode"] == ("cluster" if address else "local")
        raise RuntimeError("a failing experiment must still shut a local Ray down")
    names = [c[0] for c in stub.calls]
    assert names == (["init"] if address else ["init", "shutdown"])
    if address:
        assert stub.calls[0][1]["address"] == address
    else:
        assert stub.calls[0][1]["_node_ip_address"] == "127.0.0.1"


def test_tiny_tuning_run_and_shutdown(monkeypatch):
    import ray
    from ray import tune

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    with labtune.session(num_cpus=1) as info:
        assert info["mode"] == "local" and ray.is_initialized()
        res = labtune.run(
            labtune.toy_trainable,
            {"x": tune.uniform(0, 1)},
            metric="loss",
            mode="min",
            num_samples=3,
            seed=0,
            scheduler=labtune.asha(max_t=3),
            max_concurrent_trials=1,
            name="pytest_tiny",
        )
        assert labtune.child_cpu_seconds() > 0
    assert not ray.is_initialized()
    assert len(res) == 3 and all(1 <= r["iterations"] <= 3 for r in res)
    assert all(0 <= r["config"]["x"] <= 1 for r in res)


def test_run_argument_errors():
    with pytest.raises(ValueError, match="mode"):
        labtune.run(labtune.toy_trainable, {}, metric="loss", mode="up", num_samples=1, seed=0)
    with pytest.raises(ValueError, match="num_samples"):
        labtune.run(labtune.toy_trainable, {}, metric="loss", mode="min", num_samples=0, seed=0)
