import json

import numpy as np
import pytest
import torch

from utils import verdict as V


@pytest.fixture(autouse=True)
def _records(tmp_path, monkeypatch):
    monkeypatch.setenv("LAB_VERDICT_DIR", str(tmp_path))
    monkeypatch.setenv("LAB_SEED", "1")
    return tmp_path


def test_verdict_passes_records_and_displays(_records):
    v = V.verdict(
        "O6",
        "Nesterov damps oscillation",
        {"flips_hb": [12, 13, 12], "flips_nag": np.array([3, 3, 4])},
        status="supported",
        expect="min(flips_hb) > 2 * max(flips_nag)",
    )
    assert v.status == "supported" and v.notebook == "01_optimization"
    rec = json.loads((_records / "O6.json").read_text())
    assert rec["metrics"]["flips_hb"]["n"] == 3 and rec["lab_seed"] == 1
    assert rec["metrics"]["flips_nag"]["mean"] == pytest.approx(10 / 3)
    assert rec["metrics"]["flips_nag"]["std"] == pytest.approx(np.std([3, 3, 4], ddof=1))
    assert "flips_hb" in str(v) and "SUPPORTED" in v._repr_html_()
    assert v.headline.startswith("flips_hb = 12.33 ± 0.5774")
    assert V.summary("O")[-1].qid == "O6"


def test_verdict_raises_with_evidence_when_condition_fails(_records):
    with pytest.raises(AssertionError, match="(?s)O2.*gap.*0.1, 0.2, 0.3"):
        V.verdict("O2", "claim", {"gap": [0.1, 0.2, 0.3]}, status="refuted", expect="mean(gap) > 1")
    assert not (_records / "O2.json").exists()


def test_verdict_accepts_tensors_and_custom_headline():
    v = V.verdict(
        "N1",
        "c",
        {"x": torch.tensor([1.0, 2.0, 3.0])},
        status="nuanced",
        expect="all(x > 0)",
        headline="x is positive",
    )
    assert v.headline == "x is positive" and v.evidence["x"] == [1.0, 2.0, 3.0]


@pytest.mark.parametrize(
    "kwargs, exc, word",
    [
        ({"qid": "Z1"}, ValueError, "qid"),
        ({"status": "true"}, ValueError, "status"),
        ({"evidence": {"a": [1, 2]}}, ValueError, ">= 3 seeds"),
        ({"evidence": {"not valid": [1, 2, 3]}}, ValueError, "identifiers"),
        ({"evidence": {"a": 3}}, TypeError, "sequence"),
        ({"evidence": {"a": [[1, 2, 3]]}}, ValueError, "1-D"),
        ({"expect": "mean(b) > 0"}, ValueError, "unknown name"),
        ({"expect": ""}, TypeError, "expect"),
        ({"claim": " "}, ValueError, "claim"),
    ],
)
def test_verdict_validates_arguments(kwargs, exc, word):
    args = {
        "qid": "M1",
        "claim": "c",
        "evidence": {"a": [1, 2, 3]},
        "status": "supported",
        "expect": "mean(a) > 0",
    }
    args.update(kwargs)
    qid, claim, evidence = args.pop("qid"), args.pop("claim"), args.pop("evidence")
    with pytest.raises(exc, match=word):
        V.verdict(qid, claim, evidence, **args)


def test_expect_cannot_reach_builtins():
    with pytest.raises(ValueError, match="unknown name"):
        V.verdict("M2", "c", {"a": [1, 2, 3]}, status="supported", expect="__import__('os')")
