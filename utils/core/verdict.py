"""Verdicts: every answer in the curriculum as something a test can check.

A verdict takes a question ID, the claim in one sentence, evidence (named metrics, one value
per seed), a status (``supported`` / ``refuted`` / ``nuanced``) and the condition that the
evidence must satisfy, written as a Python expression over the metric names. It

* raises ``AssertionError`` with the evidence table when the condition is false (so nbval fails
  the notebook when a claim stops holding),
* returns a :class:`Verdict` that displays as a compact table (metric, mean ± std, n) and a
  one-line verdict, and
* writes a JSON record to ``build/verdicts/<ID>.json`` that ``make index`` / ``make book`` turn
  into the answer index.

Example::

    verdict("O6", "Nesterov damps the oscillation of heavy-ball momentum",
            {"flips_heavy_ball": [12, 13, 12], "flips_nesterov": [3, 3, 4]},
            status="supported",
            expect="min(flips_heavy_ball) > 2 * max(flips_nesterov)")

The condition is evaluated with each metric bound to a float numpy array of its per-seed values
and with ``mean``, ``std`` (sample, ddof=1), ``min``, ``max``, ``abs``, ``all``, ``any``, ``np``
and the interval helpers below.

Comparisons are asserted on 95 % confidence intervals of a mean (Student t, ``n - 1`` degrees of
freedom), never on a threshold fitted to the seeds that happened to run:

* ``lo(x)`` / ``hi(x)``: lower / upper bound of the interval of ``mean(x)``;
* "A beats B" (paired by seed): ``lo(a - b) > 0``;
* "no meaningful difference within delta": ``within(a - b, delta)``, i.e.
  ``lo(a - b) > -delta and hi(a - b) < delta``; state ``delta`` in the claim.

An effect whose interval straddles zero is the finding "no detectable difference at n seeds",
not a reason to tighten a threshold. Deterministic facts (a spectrum, a count, a gradient check)
are one value, ``n = 1``, named in ``deterministic={metric: reason}``; their interval is the
value itself.
"""

from __future__ import annotations

import html
import json
import math
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import paths

STATUSES = ("supported", "refuted", "nuanced")
MIN_SEEDS = 3
# Question-ID prefix -> notebook that answers it (the sections of docs/questions.md).
NOTEBOOK_OF_PREFIX = {
    "M": "00_pytorch_primer",
    "O": "01_optimization",
    "R": "02_regularization",
    "T": "03_transfer_learning",
    "A": "04_attention_scaling",
    "N": "05_normalization",
}
_QID = re.compile(r"^[MORTAN][1-9]\d*$")
_SESSION: dict[str, Verdict] = {}


def record_dir() -> Path:
    """Folder of the JSON verdict records: env ``LAB_VERDICT_DIR`` or ``<repo>/build/verdicts``."""
    return paths.verdict_dir()


def _std(values: np.ndarray) -> float:
    return float(np.std(values, ddof=1)) if values.size > 1 else 0.0


CONFIDENCE = 0.95


def interval(values, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Two-sided Student-t confidence interval of the mean of ``values``.

    Args:
        values: 1-D sequence or array of floats (one per seed); for a paired comparison pass
            the per-seed differences ``a - b``.
        confidence: coverage in (0, 1), default 0.95.

    Returns:
        ``(lo, hi)`` as floats: ``mean -+ t_{(1+c)/2, n-1} * std / sqrt(n)``. One value gives
        ``(v, v)`` (a deterministic fact, exact); any NaN gives ``(nan, nan)``, so a comparison
        with it is False; a non-finite mean gives ``(mean, mean)``.

    Raises:
        ValueError: empty input or ``confidence`` outside (0, 1).

    Source: the t interval of any statistics text, e.g. ``scipy.stats.t.interval``; it assumes
    roughly normal per-seed values, which is why a verdict keeps every per-seed value in view.
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    arr = np.asarray(values, dtype=float).ravel()
    if arr.size == 0:
        raise ValueError("values must hold at least one number")
    if np.isnan(arr).any():
        return math.nan, math.nan
    mean = float(arr.mean())
    if arr.size == 1 or not math.isfinite(mean):
        return mean, mean
    from scipy.stats import t as student_t

    half = (
        float(student_t.ppf((1 + confidence) / 2, arr.size - 1)) * _std(arr) / math.sqrt(arr.size)
    )
    return mean - half, mean + half


def lo(values) -> float:
    """Lower bound of the 95 % interval of the mean (see :func:`interval`)."""
    return interval(values)[0]


def hi(values) -> float:
    """Upper bound of the 95 % interval of the mean (see :func:`interval`)."""
    return interval(values)[1]


def relation(values) -> str:
    """How the mean of ``values`` (e.g. paired differences over seeds) compares with zero, judged by
    its 95 % interval (:func:`interval`): ``"above"``, ``"below"`` or ``"not detectably different
    from"``, for prose such as ``f"{relation(a - b)} zero"`` about a half that is reported, not
    asserted."""
    low, high = interval(values)
    return "above" if low > 0 else "below" if high < 0 else "not detectably different from"


def within(values, delta: float) -> bool:
    """True when the whole 95 % interval of the mean lies inside ``(-delta, +delta)``.

    Use it on paired differences for "no meaningful difference": ``within(a - b, 0.01)``.

    Raises:
        ValueError: ``delta`` not a positive finite number.
    """
    if not (isinstance(delta, (int, float, np.floating)) and math.isfinite(delta) and delta > 0):
        raise ValueError(f"delta must be a positive finite number, got {delta!r}")
    low, high = interval(values)
    return bool(low > -delta and high < delta)


def _fmt(x: float) -> str:
    if not math.isfinite(x):
        return str(x)
    if x == 0:
        return "0"
    if abs(x) >= 1e4 or abs(x) < 1e-3:
        return f"{x:.3g}"
    return f"{x:.4g}"


@dataclass(frozen=True)
class Verdict:
    """A checked answer: what was claimed, the evidence per seed, the status and the condition."""

    qid: str
    claim: str
    status: str
    expect: str
    evidence: dict[str, list[float]]
    headline: str
    lab_seed: int | None = None
    notebook: str = field(default="")
    deterministic: dict[str, str] = field(default_factory=dict)

    def rows(self) -> list[tuple[str, str, str, int, str]]:
        """(metric, 'mean ± std', '95 % interval', n, per-seed values) per metric."""
        out = []
        for name, vals in self.evidence.items():
            arr = np.asarray(vals, dtype=float)
            per_seed = ", ".join(_fmt(v) for v in arr)
            if name in self.deterministic:
                out.append((name, _fmt(float(arr[0])), f"exact: {self.deterministic[name]}", 1, ""))
                continue
            low, high = interval(arr)
            out.append(
                (
                    name,
                    f"{_fmt(float(arr.mean()))} ± {_fmt(_std(arr))}",
                    f"[{_fmt(low)}, {_fmt(high)}]",
                    arr.size,
                    per_seed,
                )
            )
        return out

    def line(self) -> str:
        """The one-line verdict."""
        return f"{self.qid} · {self.status.upper()} · {self.claim} — {self.headline}"

    def __str__(self) -> str:
        rows = self.rows()
        w = max(len("metric"), *(len(r[0]) for r in rows))
        v = max(len("mean ± std"), *(len(r[1]) for r in rows))
        c = max(len("95% interval"), *(len(r[2]) for r in rows))
        lines = [f"{'metric':<{w}}  {'mean ± std':<{v}}  {'95% interval':<{c}}  n  per seed"]
        lines += [f"{r[0]:<{w}}  {r[1]:<{v}}  {r[2]:<{c}}  {r[3]}  {r[4]}" for r in rows]
        lines += [f"asserted: {self.expect}", self.line()]
        return "\n".join(lines)

    __repr__ = __str__

    def _repr_html_(self) -> str:
        """Claim and status first, then the evidence table; the asserted condition folds away."""
        colour = {"supported": "#1a7f37", "refuted": "#cf222e", "nuanced": "#9a6700"}[self.status]
        body = "".join(
            f"<tr><td><code>{html.escape(r[0])}</code></td><td>{html.escape(r[1])}</td>"
            f"<td>{html.escape(r[2])}</td><td>{r[3]}</td><td>{html.escape(r[4])}</td></tr>"
            for r in self.rows()
        )
        return (
            f"<p><b>{html.escape(self.qid)} · <span style='color:{colour}'>"
            f"{self.status.upper()}</span></b> · {html.escape(self.claim)}<br>"
            f"<i>{html.escape(self.headline)}</i></p>"
            "<table><thead><tr><th>metric</th><th>mean ± std</th><th>95% interval</th>"
            "<th>n</th><th>per seed</th>"
            f"</tr></thead><tbody>{body}</tbody></table>"
            "<details><summary>asserted condition (what makes this cell fail)</summary>"
            f"<code>{html.escape(self.expect)}</code></details>"
        )

    def to_record(self) -> dict:
        """The JSON-ready record used by the answer index."""
        return {
            "qid": self.qid,
            "notebook": self.notebook,
            "claim": self.claim,
            "status": self.status,
            "expect": self.expect,
            "headline": self.headline,
            "lab_seed": self.lab_seed,
            "metrics": {
                name: {
                    "mean": float(np.mean(vals)),
                    "std": _std(np.asarray(vals, dtype=float)),
                    "ci95": list(interval(vals)),
                    "n": len(vals),
                    "values": [float(v) for v in vals],
                    **(
                        {"deterministic": self.deterministic[name]}
                        if name in self.deterministic
                        else {}
                    ),
                }
                for name, vals in self.evidence.items()
            },
            "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }


def _as_values(name: str, values) -> list[float]:
    if hasattr(values, "detach"):  # torch tensor
        values = values.detach().cpu().numpy()
    if isinstance(values, (str, bytes)) or not isinstance(values, (Sequence, np.ndarray)):
        raise TypeError(
            f"evidence[{name!r}] must be a sequence of numbers (one per seed), "
            f"got {type(values).__name__}"
        )
    arr = np.asarray(values, dtype=float)
    if arr.ndim != 1:
        raise ValueError(
            f"evidence[{name!r}] must be 1-D (one value per seed), got shape {arr.shape}"
        )
    return [float(v) for v in arr]


def verdict(
    qid: str,
    claim: str,
    evidence: Mapping[str, Sequence[float]],
    *,
    status: str,
    expect: str,
    headline: str | None = None,
    min_seeds: int = MIN_SEEDS,
    deterministic: Mapping[str, str] | None = None,
) -> Verdict:
    """Check a claim against per-seed evidence, record it and return the displayable verdict.

    Args:
        qid: question ID from the catalogue docs/questions.md, e.g. ``"O6"`` (prefix M, O, R, T,
            A or N).
        claim: the claim or question in one sentence (shown in the answer index).
        evidence: metric name (a Python identifier) -> one float per seed (list, tuple, 1-D
            numpy array or 1-D tensor). NaN/inf are kept: a diverged run is evidence.
        status: ``"supported"``, ``"refuted"`` or ``"nuanced"``.
        expect: Python expression over the metric names that the evidence must satisfy, e.g.
            ``"mean(sgd_band) < mean(adam_band)"``; ``mean``/``std``/``min``/``max``/``abs``/
            ``all``/``any``/``np`` are available.
        headline: the headline number for the index; default: first metric's mean ± std.
        min_seeds: minimum number of values per metric (default 3).
        deterministic: metric name -> the reason it does not vary with the seed (e.g. "a
            spectrum of fixed data"). Such a metric holds exactly one value (n = 1) instead of
            ``min_seeds``; its interval is the value itself.

    Returns:
        Verdict: displays as the evidence table plus the one-line verdict.

    Raises:
        TypeError: for arguments of the wrong type.
        ValueError: for an unknown status, a malformed ID, an empty or non-identifier metric
            name, fewer than ``min_seeds`` values, a deterministic metric that is unknown, has
            no reason or has more than one value, or an ``expect`` that names an unknown metric.
        AssertionError: when ``expect`` is false on the evidence (message holds the table).
    """
    if not isinstance(qid, str) or not _QID.match(qid):
        raise ValueError(
            f"qid must look like 'O6' (prefix one of {sorted(NOTEBOOK_OF_PREFIX)}), got {qid!r}"
        )
    if not isinstance(claim, str) or not claim.strip():
        raise ValueError("claim must be a non-empty sentence")
    if status not in STATUSES:
        raise ValueError(f"status must be one of {STATUSES}, got {status!r}")
    if not isinstance(expect, str) or not expect.strip():
        raise TypeError("expect must be a non-empty Python expression string over the metric names")
    if not isinstance(evidence, Mapping) or not evidence:
        raise ValueError("evidence must be a non-empty mapping of metric name -> per-seed values")
    if not isinstance(min_seeds, int) or min_seeds < 1:
        raise ValueError(f"min_seeds must be an int >= 1, got {min_seeds!r}")

    deterministic = dict(deterministic or {})
    for name, reason in deterministic.items():
        if name not in evidence:
            raise ValueError(f"deterministic names {name!r}, which is not a metric of evidence")
        if not isinstance(reason, str) or not reason.strip():
            raise ValueError(f"deterministic[{name!r}] must be a non-empty reason string")

    clean: dict[str, list[float]] = {}
    for name, values in evidence.items():
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"metric names must be Python identifiers, got {name!r}")
        vals = _as_values(name, values)
        if name in deterministic:
            if len(vals) != 1:
                raise ValueError(
                    f"evidence[{name!r}] is deterministic ({deterministic[name]}): give its one "
                    f"value, not {len(vals)} copies"
                )
        elif len(vals) < min_seeds:
            raise ValueError(
                f"evidence[{name!r}] has {len(vals)} value(s); a verdict needs >= {min_seeds} seeds"
            )
        clean[name] = vals

    from . import repro  # local import: verdict has no torch dependency otherwise

    if not headline:
        name, vals = next(iter(clean.items()))
        arr = np.asarray(vals)
        headline = f"{name} = {_fmt(float(arr.mean()))} ± {_fmt(_std(arr))} (n={arr.size})"
    v = Verdict(
        qid=qid,
        claim=claim.strip(),
        status=status,
        expect=expect.strip(),
        evidence=clean,
        headline=headline,
        lab_seed=repro.base_seed(),
        notebook=NOTEBOOK_OF_PREFIX[qid[0]],
        deterministic={k: v.strip() for k, v in deterministic.items()},
    )

    namespace = {k: np.asarray(x, dtype=float) for k, x in clean.items()}
    helpers = {
        "mean": np.mean,
        "std": _std,
        "min": np.min,
        "max": np.max,
        "abs": np.abs,
        "all": np.all,
        "any": np.any,
        "np": np,
        "lo": lo,
        "hi": hi,
        "within": within,
    }
    try:
        ok = eval(v.expect, {"__builtins__": {}}, {**helpers, **namespace})  # noqa: S307
    except NameError as err:
        raise ValueError(
            f"expect refers to an unknown name ({err}); metrics are {sorted(clean)}"
        ) from None
    if not bool(np.all(ok)):
        raise AssertionError(f"{qid}: the asserted condition does not hold.\n{v}")

    _SESSION[qid] = v
    out = record_dir()
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{qid}.json").write_text(json.dumps(v.to_record(), indent=1), encoding="utf-8")
    return v


class Summary(list):
    """The verdicts of this kernel session, displayed as one table (the notebook's closing cell)."""

    def __str__(self) -> str:
        return "\n".join(v.line() for v in self)

    __repr__ = __str__

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><td>{html.escape(v.qid)}</td><td><b>{v.status}</b></td>"
            f"<td>{html.escape(v.claim)}</td><td>{html.escape(v.headline)}</td></tr>"
            for v in self
        )
        return (
            "<table><thead><tr><th>ID</th><th>verdict</th><th>claim</th><th>headline</th></tr>"
            f"</thead><tbody>{rows}</tbody></table>"
        )


def summary(prefix: str | None = None) -> Summary:
    """All verdicts recorded in this session (optionally only IDs starting with ``prefix``)."""
    items = [v for q, v in _SESSION.items() if prefix is None or q.startswith(prefix)]
    return Summary(sorted(items, key=lambda v: (v.qid[0], int(v.qid[1:]))))


def discuss(text: str):
    """Show ``text`` as rendered Markdown: a discussion whose numbers come from this run.

    Write the sentence as an f-string over the measured values, e.g.
    ``verdict.discuss(f"Momentum needed {steps:.0f} steps.")``, so no typed number can drift
    from what the run computed (``tests/test_prose.py`` rejects measured digits typed into
    Markdown cells).

    Returns:
        the ``IPython.display.Markdown`` object (displayed when it ends a cell).

    Raises:
        TypeError: ``text`` not a string.
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    from IPython.display import Markdown

    return Markdown(text)


class Table:
    """A small results table: rows of named columns, numbers rounded for reading.

    Displays as HTML in a notebook and as aligned text elsewhere (``str``), so a cell never
    shows a raw ``dict`` or float noise such as ``0.1599999964237213``.
    """

    def __init__(self, header: list[str], rows: list[list[str]], caption: str = ""):
        self.header, self.rows, self.caption = header, rows, caption

    def __str__(self) -> str:
        cols = [self.header, *self.rows]
        widths = [max(len(r[i]) for r in cols) for i in range(len(self.header))]
        lines = [self.caption] if self.caption else []
        lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in cols]
        return "\n".join(lines)

    __repr__ = __str__

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{html.escape(h)}</th>" for h in self.header)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in self.rows
        )
        cap = f"<caption>{html.escape(self.caption)}</caption>" if self.caption else ""
        return f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _cell(value, digits: int) -> str:
    if isinstance(value, str):
        return value
    arr = np.asarray(value, dtype=float).ravel()
    if arr.size == 1:
        x = float(arr[0])
        return f"{x:.{digits}g}" if math.isfinite(x) else str(x)
    return f"{arr.mean():.{digits}g} ± {_std(arr):.2g}"


def table(data: Mapping, columns: Sequence[str] | None = None, digits: int = 3, caption: str = ""):
    """Show measurements as a table instead of printing a ``dict``.

    Args:
        data: ``{row: value}`` (one column named ``value``) or ``{row: {column: value}}``. A
            value is a number, a string, or a sequence of per-seed numbers (``mean ± std``).
        columns: the column order for nested rows (default: the first row's keys).
        digits: significant digits per number (1 to 10).
        caption: an optional line above the table.

    Returns:
        a :class:`Table` (displayed when it ends a cell; ``display(table(...))`` elsewhere).

    Raises:
        TypeError: ``data`` not a mapping, or a nested row not a mapping.
        ValueError: empty ``data``, or ``digits`` outside 1-10.
    """
    if not isinstance(data, Mapping):
        raise TypeError(f"data must be a mapping of rows, got {type(data).__name__}")
    if not data:
        raise ValueError("data must have at least one row")
    if not isinstance(digits, int) or not 1 <= digits <= 10:
        raise ValueError(f"digits must be an int from 1 to 10, got {digits!r}")
    first = next(iter(data.values()))
    if isinstance(first, Mapping):
        cols = list(columns) if columns is not None else list(first)
        rows = []
        for name, row in data.items():
            if not isinstance(row, Mapping):
                raise TypeError(f"row {name!r} must be a mapping like the first row")
            rows.append([str(name), *(_cell(row.get(c, ""), digits) for c in cols)])
        return Table(["", *map(str, cols)], rows, caption)
    rows = [[str(name), _cell(v, digits)] for name, v in data.items()]
    return Table(["", "value"], rows, caption)
