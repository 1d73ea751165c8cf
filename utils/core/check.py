"""Self-checks for exercises: right or wrong, without printing the answer.

Three kinds of exercise, one function each:

* :func:`value`: a numeric prediction, checked against the value the notebook just measured,
  with a relative (or log-scale) tolerance;
* :func:`function`: a function the learner writes (an init rule, an update rule), checked against
  the library reference on random inputs;
* :func:`choice`: a multiple-choice concept question; the notebook holds only a salted hash of
  the right option, so reading the cell does not give it away.

An exercise that has not been attempted (the answer is still ``...``) answers "not attempted
yet" and raises nothing, so the notebooks run under nbval as shipped.

Reference solutions live in ``notebooks/solutions/<notebook>.py`` as ``SOLUTIONS`` and
``WRONG`` dicts keyed by exercise ID (``"00.1"``). When the environment variable
``LAB_CHECK_SOLUTIONS`` is set (the test suite sets it for every notebook kernel), each check
also grades the reference solution, which must pass, and the wrong answer, which must fail; a
check that cannot tell them apart raises ``AssertionError``. So CI proves every solution and
every check, in the same notebook run that proves the verdicts.
"""

from __future__ import annotations

import hashlib
import html
import importlib.util
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import ModuleType

from . import paths

_ENV = "LAB_CHECK_SOLUTIONS"
NOT_ATTEMPTED = "not attempted yet"


@dataclass(frozen=True)
class Result:
    """The outcome of one check: ``ok`` is True (right), False (wrong) or None (not attempted)."""

    exercise: str
    ok: bool | None
    message: str

    def __str__(self) -> str:
        mark = {True: "✓ right", False: "✗ not yet", None: "… " + NOT_ATTEMPTED}[self.ok]
        return f"[{self.exercise}] {mark}: {self.message}"

    __repr__ = __str__

    def _repr_html_(self) -> str:
        colour = {True: "#1a7f37", False: "#cf222e", None: "#6e7781"}[self.ok]
        mark = {True: "✓ right", False: "✗ not yet", None: "… " + NOT_ATTEMPTED}[self.ok]
        return (
            f"<p><b>{html.escape(self.exercise)}</b> · <span style='color:{colour}'>"
            f"<b>{mark}</b></span> · {html.escape(self.message)}</p>"
        )


def _check_id(exercise: str) -> str:
    if not isinstance(exercise, str) or "." not in exercise:
        raise ValueError(f"exercise must be an ID like '00.1' (notebook.number), got {exercise!r}")
    return exercise


def _solutions(exercise: str) -> ModuleType | None:
    """The solutions module of the exercise's notebook when ``LAB_CHECK_SOLUTIONS`` is set."""
    if not os.environ.get(_ENV):
        return None
    prefix = exercise.split(".", 1)[0]
    folder = paths.NOTEBOOKS / "solutions"
    found = sorted(folder.glob(f"{prefix}_*.py"))
    if not found:
        raise AssertionError(f"{_ENV} is set but {folder} has no solutions file for {exercise}")
    spec = importlib.util.spec_from_file_location(f"_solutions_{prefix}", found[0])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for name in ("SOLUTIONS", "WRONG"):
        if exercise not in getattr(module, name, {}):
            raise AssertionError(f"{found[0].name} has no {name}[{exercise!r}]")
    return module


def _self_test(exercise: str, grade: Callable[[object], bool]) -> None:
    """Under ``LAB_CHECK_SOLUTIONS``: the reference must pass and the wrong answer must fail."""
    module = _solutions(exercise)
    if module is None:
        return
    if not grade(module.SOLUTIONS[exercise]):
        raise AssertionError(f"{exercise}: the reference solution fails its own check")
    if grade(module.WRONG[exercise]):
        raise AssertionError(f"{exercise}: the check accepts the wrong answer")


def _stub() -> None: ...


def _attempted(answer) -> bool:
    """False for ``...``, None, or a function whose body is still only ``...`` (or ``pass``)."""
    if answer is ... or answer is None:
        return False
    code = getattr(answer, "__code__", None)
    return code is None or code.co_code != _stub.__code__.co_code


def value(
    exercise: str,
    answer: float | None,
    measured: float,
    *,
    rel_tol: float = 0.25,
    log: bool = False,
) -> Result:
    """Check a numeric prediction against the value the notebook measured.

    Args:
        exercise: ID such as ``"00.1"`` (notebook number, exercise number).
        answer: the learner's prediction (float), or ``...``/None if not attempted.
        measured: the value the run computed.
        rel_tol: accepted relative error ``|answer - measured| <= rel_tol * |measured|``; with
            ``log=True`` the accepted error is in decades: ``|log10(answer / measured)| <=
            rel_tol`` (for quantities that span orders of magnitude; both must be > 0).
        log: compare on a log10 scale.

    Returns:
        :class:`Result`; its message says whether the prediction was too high or too low,
        never the measured value itself.

    Raises:
        TypeError: ``answer`` not a number. ValueError: bad ``exercise``, ``rel_tol`` <= 0, a
            non-finite ``measured``, or ``log=True`` with a non-positive ``measured``.
    """
    _check_id(exercise)
    if not (isinstance(rel_tol, (int, float)) and rel_tol > 0):
        raise ValueError(f"rel_tol must be a positive number, got {rel_tol!r}")
    measured = float(measured)
    if not math.isfinite(measured) or (log and measured <= 0):
        raise ValueError(f"measured must be finite (and > 0 with log=True), got {measured!r}")

    def error(a) -> float:
        a = float(a)
        if log:
            return abs(math.log10(a / measured)) if a > 0 else math.inf
        return abs(a - measured) / max(abs(measured), 1e-12)

    _self_test(exercise, lambda a: error(a) <= rel_tol)
    if not _attempted(answer):
        return Result(exercise, None, "write your prediction in place of `...` and re-run")
    if isinstance(answer, bool) or not isinstance(answer, (int, float)):
        raise TypeError(f"answer must be a number, got {type(answer).__name__}")
    err = error(answer)
    unit = "decades" if log else "relative"
    if err <= rel_tol:
        return Result(exercise, True, f"within the tolerance ({unit} error {err:.2g})")
    side = "high" if float(answer) > measured else "low"
    return Result(exercise, False, f"too {side} ({unit} error {err:.2g} > {rel_tol:g})")


def function(
    exercise: str,
    answer: Callable | None,
    reference: Callable,
    make_inputs: Callable[[int], tuple],
    *,
    trials: int = 5,
    atol: float = 1e-6,
    rtol: float = 1e-5,
) -> Result:
    """Check a function the learner wrote against the library reference on random inputs.

    Args:
        exercise: ID such as ``"00.2"``.
        answer: the learner's function, or ``...``/None if not attempted.
        reference: the library function it must equal (e.g. ``nn.init.kaiming_normal_``).
        make_inputs: ``make_inputs(trial) -> args`` builds fresh argument tuples; it is called
            twice per trial, once for each side, and must give equal (not shared) inputs, so
            in-place functions can be compared.
        trials: how many random inputs (>= 1). atol, rtol: as ``torch.testing.assert_close``.

    Returns:
        :class:`Result` naming the first trial that differs (shapes, not values).

    Raises:
        TypeError: ``answer`` or ``reference`` not callable. ValueError: bad ``trials``.

    Source: comparison by ``torch.testing.assert_close``.
    """
    import torch

    _check_id(exercise)
    if not callable(reference):
        raise TypeError("reference must be callable")
    if not isinstance(trials, int) or trials < 1:
        raise ValueError(f"trials must be an int >= 1, got {trials!r}")

    def grade(fn) -> tuple[bool, str]:
        for trial in range(trials):
            want = reference(*make_inputs(trial))
            args = make_inputs(trial)
            try:
                got = fn(*args)
            except Exception as err:  # the learner's code may raise anything
                return False, f"trial {trial} raised {type(err).__name__}: {err}"
            try:
                torch.testing.assert_close(got, want, atol=atol, rtol=rtol)
            except (AssertionError, TypeError, ValueError):
                shape = tuple(getattr(args[0], "shape", ()))
                return False, f"differs from the reference on trial {trial} (input shape {shape})"
        return True, f"equals the reference on {trials} random inputs"

    _self_test(exercise, lambda f: grade(f)[0])
    if not _attempted(answer):
        return Result(exercise, None, "write the function body in place of `...` and re-run")
    if not callable(answer):
        raise TypeError(f"answer must be a function, got {type(answer).__name__}")
    ok, message = grade(answer)
    return Result(exercise, ok, message)


def answer_key(exercise: str, option: str) -> str:
    """The salted hash a notebook stores for the right option of a multiple-choice question."""
    return hashlib.sha256(f"mentoring-lab:{exercise}:{option}".encode()).hexdigest()[:16]


def choice(exercise: str, answer: str | None, options: Sequence[str], key: str) -> Result:
    """Check a multiple-choice answer against a salted hash of the right option.

    Args:
        exercise: ID such as ``"00.3"``.
        answer: the chosen option letter (e.g. ``"b"``), or ``...``/None if not attempted.
        options: the allowed letters, e.g. ``"abcd"``.
        key: :func:`answer_key` of the right option (computed once by the author).

    Returns:
        :class:`Result`.

    Raises:
        ValueError: an answer that is not one of ``options``, or a key that matches none of
            them (a broken exercise).
    """
    _check_id(exercise)
    options = [str(o) for o in options]
    if sum(answer_key(exercise, o) == key for o in options) != 1:
        raise ValueError(f"{exercise}: key matches none of the options {options}")
    _self_test(exercise, lambda a: answer_key(exercise, str(a)) == key)
    if not _attempted(answer):
        return Result(exercise, None, f"set your answer to one of {options} and re-run")
    if str(answer) not in options:
        raise ValueError(f"answer must be one of {options}, got {answer!r}")
    if answer_key(exercise, str(answer)) == key:
        return Result(exercise, True, f"'{answer}' is right")
    return Result(exercise, False, f"'{answer}' is not the best answer; re-read the section")
