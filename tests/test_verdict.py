import json

import numpy as np
import pytest
import torch

from utils.core import verdict as V


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


def test_interval_matches_scipy_t_interval():
    from scipy import stats

    x = np.array([0.31, 0.27, 0.35, 0.30, 0.29])
    want = stats.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=stats.sem(x))
    assert V.interval(x) == pytest.approx(want)
    assert V.lo(x) == pytest.approx(want[0]) and V.hi(x) == pytest.approx(want[1])
    assert V.interval([2.5]) == (2.5, 2.5)
    assert all(np.isnan(V.interval([1.0, np.nan, 2.0])))
    with pytest.raises(ValueError, match="confidence"):
        V.interval(x, confidence=1.0)
    with pytest.raises(ValueError, match="at least one"):
        V.interval([])


def test_a_noise_level_effect_fails_lo_and_a_real_one_passes():
    rng = np.random.default_rng(0)
    base = rng.normal(0.80, 0.02, size=5)
    noise = base + rng.normal(0.0, 0.02, size=5) * np.array([1, -1, 1, -1, 1])  # no real gap
    real = base + 0.05 + rng.normal(0.0, 0.005, size=5)  # a 5-point gain, well above the noise
    with pytest.raises(AssertionError, match="does not hold"):
        V.verdict(
            "O2", "B beats A", {"a": base, "b": noise}, status="supported", expect="lo(b - a) > 0"
        )
    V.verdict("O2", "B beats A", {"a": base, "b": real}, status="supported", expect="lo(b - a) > 0")


def test_within_asserts_no_meaningful_difference_and_fails_on_a_real_one():
    a = np.array([0.90, 0.91, 0.89, 0.92, 0.90])
    same = a + np.array([0.002, -0.001, 0.001, -0.002, 0.0])
    shifted = a + 0.03
    V.verdict(
        "O4",
        "no gap within 0.01",
        {"a": a, "b": same},
        status="nuanced",
        expect="within(b - a, 0.01)",
    )
    with pytest.raises(AssertionError):
        V.verdict(
            "O4",
            "no gap within 0.01",
            {"a": a, "b": shifted},
            status="nuanced",
            expect="within(b - a, 0.01)",
        )
    with pytest.raises(ValueError, match="delta"):
        V.within(a, 0)


def test_deterministic_fact_is_one_value_with_a_reason(_records):
    v = V.verdict(
        "N1",
        "the raw second-moment spectrum is ill-conditioned",
        {"condition": [6.5e4], "gain": [0.10, 0.12, 0.11]},
        status="supported",
        expect="condition > 1e3 and lo(gain) > 0",
        deterministic={"condition": "eigenvalues of fixed data"},
    )
    rec = json.loads((_records / "N1.json").read_text())
    assert rec["metrics"]["condition"]["deterministic"] == "eigenvalues of fixed data"
    assert rec["metrics"]["condition"]["ci95"] == [6.5e4, 6.5e4]
    assert "exact: eigenvalues" in str(v) and "95% interval" in v._repr_html_()
    with pytest.raises(ValueError, match="copies"):
        V.verdict(
            "N1",
            "c",
            {"c": [1, 1, 1]},
            status="supported",
            expect="c > 0",
            deterministic={"c": "fixed"},
        )
    with pytest.raises(ValueError, match="not a metric"):
        V.verdict(
            "N1",
            "c",
            {"c": [1, 2, 3]},
            status="supported",
            expect="c > 0",
            deterministic={"d": "x"},
        )
    with pytest.raises(ValueError, match="reason"):
        V.verdict(
            "N1", "c", {"c": [1]}, status="supported", expect="c > 0", deterministic={"c": " "}
        )
    with pytest.raises(ValueError, match=">= 3 seeds"):
        V.verdict("N1", "c", {"c": [1]}, status="supported", expect="c > 0")


def test_discuss_renders_markdown():
    md = V.discuss(f"Momentum needed {12.0:.0f} steps.")
    assert md.data == "Momentum needed 12 steps."
    with pytest.raises(TypeError):
        V.discuss(3)


def test_table_rounds_numbers_and_renders_html_without_noise():
    from utils.tooling.outputs import noise

    t = V.table({"a": [0.1599999964237213, 0.2], "b": np.float32(0.16)}, caption="acc")
    text = str(t)
    assert "0.18 ± 0.028" in text and "0.16" in text and not noise(text)
    nested = V.table({"x": {"p": 1, "q": "s"}, "y": {"p": 0.123456, "q": "t"}}, digits=2)
    assert "<th>p</th>" in nested._repr_html_() and "0.12" in str(nested)


@pytest.mark.parametrize(
    "args, exc, word",
    [
        (([1, 2],), TypeError, "data"),
        (({},), ValueError, "data"),
        (({"a": 1}, None, 0), ValueError, "digits"),
        (({"a": {"p": 1}, "b": 2},), TypeError, "row"),
    ],
)
def test_table_rejects_bad_input(args, exc, word):
    with pytest.raises(exc, match=word):
        V.table(*args)


def test_relation_reads_the_interval_of_the_mean():
    assert V.relation([0.5, 0.6, 0.55, 0.52]) == "above"
    assert V.relation([-0.5, -0.6, -0.55, -0.52]) == "below"
    assert V.relation([0.5, -0.4, 0.1, -0.2]) == "not detectably different from"
    low, high = V.interval([0.5, -0.4, 0.1, -0.2])
    assert low < 0 < high  # the case above really straddles zero
