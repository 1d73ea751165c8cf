"""Reference solutions of notebook 03's exercises (and one wrong answer each).

Under ``LAB_CHECK_SOLUTIONS`` (set by the test suite) every ``utils.core.check`` call in the
notebook grades ``SOLUTIONS[id]``, which must pass, and ``WRONG[id]``, which must fail. Try the
exercises before you read on.
"""

import math


def steps_to_reach(steps, curve, target):
    """First evaluation step at which the curve is at least the target; inf if it never is."""
    for step, value in zip(steps, curve, strict=True):
        if value >= target:
            return float(step)
    return math.inf


def _first_index(steps, curve, target):
    """A wrong answer: the position in the list, not the training step it was measured at."""
    for i, value in enumerate(curve):
        if value >= target:
            return float(i)
    return math.inf


SOLUTIONS = {
    # T3's prediction, in points of source accuracy lost by full fine-tuning after 50 steps:
    # the new head is random, its large gradients reshape the backbone from the first steps
    "03.1": 30.0,
    "03.2": steps_to_reach,
    # each train-mode step keeps (1 - 0.1) of the running mean: 0.9 ** 50 = 0.005 of the source's
    # is left, so the "frozen" backbone normalises source images with the target's statistics
    "03.3": "b",
}

WRONG = {
    "03.1": 2.0,  # "fine-tuning keeps what the network knew"
    "03.2": _first_index,
    "03.3": "a",
}
