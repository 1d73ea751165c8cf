"""Tests of utils.hpo: search budgets, reproducibility, the training curve."""

import numpy as np
import pytest

from utils.tasks import hpo


@pytest.fixture(scope="module")
def task():
    return hpo.digits_task(0)


def test_person_search_uses_exact_budget_and_stays_in_space(task):
    trials = hpo.person_search(task, 12, 2, train_seed=0)
    assert len(trials) == 12
    for t in trials:
        assert hpo.SPACE["lr"][0] <= t["config"]["lr"] <= hpo.SPACE["lr"][1]
    with pytest.raises(ValueError, match="budget"):
        hpo.person_search(task, 5, 2, train_seed=0)


def test_random_search_is_reproducible(task):
    a = hpo.random_search(task, 3, 2, seed=1, train_seed=0)
    b = hpo.random_search(task, 3, 2, seed=1, train_seed=0)
    assert a == b and hpo.choose(a)["val"] == min(t["val"] for t in a)


def test_good_config_learns_and_diverged_config_scores_one(task):
    curve = [v for _, v, _ in hpo.train_curve(hpo.DEFAULT | {"lr": 0.1}, task, 5, seed=0)]
    assert curve[-1] < 0.15 < 0.9 < 1.0
    assert hpo.evaluate({"lr": 1e6, "wd": 0.0, "width": 8}, task, 2, seed=0) == (1.0, 1.0)


def test_sample_stays_in_space():
    rng = np.random.default_rng(0)
    for _ in range(50):
        c = hpo.sample(rng)
        assert hpo.SPACE["wd"][0] <= c["wd"] <= hpo.SPACE["wd"][1]
        assert hpo.SPACE["width"][0] <= c["width"] <= hpo.SPACE["width"][1]
