"""pyproject.toml and environment.yml describe the same environment."""

import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _pyproject_pins() -> set[str]:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    return {d.replace(" ", "") for d in deps}


def _environment_pins() -> set[str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = [d for d in env["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert len(pip) == 1, "environment.yml needs exactly one pip: section"
    return {d.replace(" ", "") for d in pip[0]["pip"]}


def test_every_dependency_is_pinned_exactly():
    for dep in _pyproject_pins():
        assert "==" in dep and not any(op in dep for op in (">", "<", "~", "*")), dep


def test_torch_is_pinned_to_the_local_cpu_build():
    assert "torch==2.13.0" in _pyproject_pins()


def test_environment_yml_matches_pyproject():
    py, env = _pyproject_pins(), _environment_pins()
    assert py == env, (
        f"only in pyproject: {sorted(py - env)}; only in environment.yml: {sorted(env - py)}"
    )
    env_doc = yaml.safe_load((ROOT / "environment.yml").read_text())
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert "python=3.11" in env_doc["dependencies"] and "3.11" in requires
