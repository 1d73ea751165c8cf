"""utils.core.check: right/wrong without printing the answer, stubs not attempted, and the
solution self-test that CI runs inside every notebook."""

import math

import pytest
import torch
from torch import nn

from utils.core import check


@pytest.fixture(autouse=True)
def _no_solutions(monkeypatch):
    monkeypatch.delenv("LAB_CHECK_SOLUTIONS", raising=False)


def test_value_right_wrong_and_not_attempted():
    assert check.value("00.9", 0.11, 0.1).ok is True
    low = check.value("00.9", 0.05, 0.1)
    assert low.ok is False and "too low" in low.message and "0.1" not in low.message.split("(")[0]
    assert check.value("00.9", ..., 0.1).ok is None
    assert check.value("00.9", 3e-5, 4.3e-5, log=True, rel_tol=0.5).ok is True
    assert check.value("00.9", 2**-29, 4.3e-5, log=True, rel_tol=0.5).ok is False
    assert check.value("00.9", -1.0, 4.3e-5, log=True).ok is False
    with pytest.raises(TypeError, match="number"):
        check.value("00.9", "0.1", 0.1)
    with pytest.raises(ValueError, match="rel_tol"):
        check.value("00.9", 0.1, 0.1, rel_tol=0)
    with pytest.raises(ValueError, match="exercise"):
        check.value("9", 0.1, 0.1)
    with pytest.raises(ValueError, match="measured"):
        check.value("00.9", 0.1, math.nan)


def _ref(w, g):
    return nn.init.kaiming_normal_(w, mode="fan_in", nonlinearity="relu", generator=g)


def _inputs(t):
    return torch.empty([(8, 4), (3, 2, 3, 3)][t % 2]), torch.Generator().manual_seed(t)


def test_function_against_its_reference_and_stub_is_not_attempted():
    def good(w, g):
        with torch.no_grad():
            return w.normal_(0, math.sqrt(2 / w[0].numel()), generator=g)

    def bad(w, g):
        with torch.no_grad():
            return w.normal_(0, math.sqrt(1 / w[0].numel()), generator=g)

    def crashes(w, g):
        raise RuntimeError("boom")

    def stub(w, g): ...  # your code here

    assert check.function("00.9", good, _ref, _inputs, trials=4).ok is True
    assert check.function("00.9", bad, _ref, _inputs).ok is False
    res = check.function("00.9", crashes, _ref, _inputs)
    assert res.ok is False and "RuntimeError" in res.message
    assert check.function("00.9", stub, _ref, _inputs).ok is None
    with pytest.raises(TypeError):
        check.function("00.9", 3, _ref, _inputs)


def test_choice_hides_the_key_and_rejects_bad_input():
    key = check.answer_key("00.9", "c")
    assert check.choice("00.9", "c", "abcd", key).ok is True
    wrong = check.choice("00.9", "a", "abcd", key)
    assert wrong.ok is False and "'c'" not in str(wrong)
    assert check.choice("00.9", ..., "abcd", key).ok is None
    with pytest.raises(ValueError, match="one of"):
        check.choice("00.9", "e", "abcd", key)
    with pytest.raises(ValueError, match="key"):
        check.choice("00.9", "a", "abcd", "0" * 16)
    assert "not attempted" in check.choice("00.9", None, "abcd", key)._repr_html_()


def test_solution_self_test_passes_references_and_catches_a_broken_check(monkeypatch):
    monkeypatch.setenv("LAB_CHECK_SOLUTIONS", "1")
    from utils.core import paths

    sol = paths.NOTEBOOKS / "solutions" / "00_pytorch_primer.py"
    assert sol.exists()
    # the real notebook-00 checks accept the reference and reject the wrong answer
    assert check.choice("00.4", ..., "abcd", "e9f96203f5510644").ok is None
    assert check.value("00.2", ..., 4.3e-5, log=True, rel_tol=0.5).ok is None
    assert check.function("00.3", ..., _ref, _inputs).ok is None
    # a check so loose that it accepts the wrong answer fails loudly
    with pytest.raises(AssertionError, match="accepts the wrong answer"):
        check.value("00.2", ..., 4.3e-5, log=True, rel_tol=10)
    # a key that the reference does not match fails loudly
    with pytest.raises(AssertionError, match="reference solution fails"):
        check.choice("00.4", ..., "abcd", check.answer_key("00.4", "c"))
    with pytest.raises(AssertionError, match="no solutions file"):
        check.value("99.1", ..., 1.0)
