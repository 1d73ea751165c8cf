"""utils.core.paths: one place for the repository root and the build folders."""

from utils.core import paths


def test_relative_overrides_are_taken_from_the_repository_root(monkeypatch, tmp_path):
    # make verify passes LAB_VERDICT_DIR=build/verify/seedN while kernels run in notebooks/
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LAB_VERDICT_DIR", "build/verify/seed3")
    assert paths.verdict_dir() == paths.ROOT / "build" / "verify" / "seed3"
    monkeypatch.setenv("LAB_CACHE_DIR", str(tmp_path / "cache"))
    assert paths.cache_dir() == tmp_path / "cache"
    monkeypatch.delenv("LAB_BUILD_DIR", raising=False)
    monkeypatch.setenv("LAB_VERDICT_DIR", "  ")
    assert paths.verdict_dir() == paths.ROOT / "build" / "verdicts"
