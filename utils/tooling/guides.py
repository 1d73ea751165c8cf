"""Facilitator guides: the written parts from a YAML source, the numbers from real runs.

A guide helps a person walk a peer session through one notebook. Its parts:

* written by hand, in Korean and English, in ``docs/facilitator/src/<notebook>.yaml``: learning
  goals, prerequisites, per section a pause question and the minutes of discussion, the common
  misconceptions, what to skip when short of time, what to do when a number differs;
* generated: the **timed agenda** (each section's measured run time, from
  ``build/timings/<notebook>.json`` written by ``make bench``, plus its discussion minutes) and
  the **expected numbers with their spread over base seeds**, from the verdict records that
  ``make verify`` writes to ``build/verify/seed*/`` (one folder per ``LAB_SEED``).

``python -m utils.tooling.guides`` (``make guides``) renders ``docs/facilitator/<notebook>.md``
for every source file. Nothing is typed twice: a number in a guide comes from a run.
"""

from __future__ import annotations

import argparse
import json
import math
import re
from pathlib import Path

import numpy as np

from ..core import paths

SRC = paths.ROOT / "docs" / "facilitator" / "src"
OUT = paths.ROOT / "docs" / "facilitator"
LANGS = ("en", "ko")
_HANGUL = re.compile(r"[\uac00-\ud7a3]")
REQUIRED = (
    "notebook",
    "title",
    "goals",
    "prerequisites",
    "sections",
    "misconceptions",
    "skip",
    "when_numbers_differ",
)


def _bilingual(where: str, value, *, many: bool) -> dict:
    if not isinstance(value, dict) or set(value) != set(LANGS):
        raise ValueError(f"{where} must have exactly the keys {LANGS}")
    for lang in LANGS:
        items = value[lang] if many else [value[lang]]
        if (
            not isinstance(items, list)
            or not items
            or not all(isinstance(s, str) and s.strip() for s in items)
        ):
            kind = "a non-empty list of strings" if many else "a non-empty string"
            raise ValueError(f"{where}.{lang} must be {kind}")
        if lang == "ko" and not all(_HANGUL.search(s) for s in items):
            raise ValueError(f"{where}.ko must be written in Korean (Hangul)")
    return value


def load_source(path: Path) -> dict:
    """Read and validate one guide source.

    Returns:
        the parsed dict.

    Raises:
        ValueError: a missing field, a field without both ``en`` and ``ko``, Korean text
            without Hangul, or a section without ``id``/``discussion_min``/``pause``.
    """
    import yaml

    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path.name}: the top level must be a mapping")
    for key in REQUIRED:
        if key not in data:
            raise ValueError(f"{path.name}: missing field {key!r}")
    _bilingual(f"{path.name}: title", data["title"], many=False)
    for key in ("goals", "prerequisites", "skip", "when_numbers_differ"):
        _bilingual(f"{path.name}: {key}", data[key], many=True)
    if not isinstance(data["misconceptions"], list) or not data["misconceptions"]:
        raise ValueError(f"{path.name}: misconceptions must be a non-empty list")
    for i, m in enumerate(data["misconceptions"]):
        _bilingual(f"{path.name}: misconceptions[{i}]", m, many=False)
    if not isinstance(data["sections"], list) or not data["sections"]:
        raise ValueError(f"{path.name}: sections must be a non-empty list")
    for i, s in enumerate(data["sections"]):
        where = f"{path.name}: sections[{i}]"
        if not isinstance(s, dict) or not isinstance(s.get("id"), str):
            raise ValueError(f"{where} needs an 'id' (a question ID or section name)")
        minutes = s.get("discussion_min")
        if not isinstance(minutes, (int, float)) or minutes < 0:
            raise ValueError(f"{where}.discussion_min must be a number >= 0")
        _bilingual(f"{where}.title", s.get("title"), many=False)
        if "pause" in s:
            _bilingual(f"{where}.pause", s["pause"], many=False)
    return data


def spread(verify_dir: Path, qid: str) -> dict[str, dict] | None:
    """Per metric of verdict ``qid``: the run means over every ``seed*`` folder of ``verify_dir``.

    Returns:
        ``{metric: {"runs": k, "mean": m, "lo": min, "hi": max, "seed_std": mean std within a
        run, "deterministic": bool}}``, or None when no record exists. A run is one base seed
        (``LAB_SEED``), whose record already averages its own seeds.
    """
    records = []
    for folder in sorted(Path(verify_dir).glob("seed*")):
        if "threads" in folder.name:
            continue  # the 2-thread check repeats seed 0
        f = folder / f"{qid}.json"
        if f.exists():
            records.append(json.loads(f.read_text(encoding="utf-8")))
    if not records:
        return None
    out = {}
    for name in records[0]["metrics"]:
        means = [r["metrics"][name]["mean"] for r in records if name in r["metrics"]]
        stds = [r["metrics"][name]["std"] for r in records if name in r["metrics"]]
        finite = [m for m in means if math.isfinite(m)]
        out[name] = {
            "runs": len(means),
            "mean": float(np.mean(finite)) if finite else math.nan,
            "lo": min(finite) if finite else math.nan,
            "hi": max(finite) if finite else math.nan,
            "seed_std": float(np.mean(stds)),
            "deterministic": "deterministic" in records[0]["metrics"][name],
        }
    return out


def _fmt(x: float) -> str:
    if not math.isfinite(x):
        return str(x)
    if x == 0:
        return "0"
    return f"{x:.3g}" if abs(x) >= 1e4 or abs(x) < 1e-3 else f"{x:.4g}"


def _minutes(seconds: float) -> float:
    return max(0.5, math.ceil(seconds / 30) / 2)  # round up to half a minute


def render(source: dict, timings: dict | None, verify_dir: Path) -> str:
    """The guide as Markdown (English then Korean in each part).

    Args:
        source: a validated guide source (:func:`load_source`).
        timings: ``build/timings/<notebook>.json`` content (``{"sections": {name: s}}``) or None.
        verify_dir: folder with ``seed*/<ID>.json`` verdict records.
    """
    nb = source["notebook"]
    secs = (timings or {}).get("sections", {})
    lines = [
        f"# Facilitator guide · 진행자 가이드: {source['title']['en']} · {source['title']['ko']}",
        "",
        f"<!-- generated by `python -m utils.tooling.guides` from docs/facilitator/src/{nb}.yaml, "
        "build/timings and build/verify: edit the source, not this file -->",
        "",
        f"Notebook: [`notebooks/{nb}.ipynb`](../../notebooks/{nb}.ipynb). Slides: open the "
        "notebook in JupyterLab and press the RISE button (or `Alt+R`) to present it as live "
        "slides whose cells still run.",
        "",
    ]

    def both(title_en: str, title_ko: str, key: str) -> None:
        lines.extend([f"## {title_en} · {title_ko}", ""])
        for lang in LANGS:
            lines.extend(f"- {s}" for s in source[key][lang])
            lines.append("")

    both("Learning goals", "학습 목표", "goals")
    both("Prerequisites", "사전 지식", "prerequisites")

    lines.extend(["## Timed agenda · 시간 계획", ""])
    if not secs:
        lines.extend(["_Run `make bench` to measure the run time of each section._", ""])
    lines.extend(
        [
            "| start (min) | section | run (min) | discussion (min) | pause question · 멈춤 질문 |",
            "|---:|---|---:|---:|---|",
        ]
    )
    clock = 0.0
    for s in source["sections"]:
        run = _minutes(secs[s["id"]]) if s["id"] in secs else 0.5
        pause = s.get("pause")
        q = f"{pause['en']}<br>{pause['ko']}" if pause else ""
        title = f"{s['title']['en']}<br>{s['title']['ko']}"
        lines.append(
            f"| {clock:g} | **{s['id']}** {title} | {run:g} | {s['discussion_min']:g} | {q} |"
        )
        clock += run + s["discussion_min"]
    lines.extend(["", f"Total: about {clock:g} minutes.", ""])
    if secs:
        measured = sum(secs.values())
        lines.extend(
            [
                f"Run times come from the last timed run ({_fmt(measured)} s of kernel time for "
                "the whole notebook, `build/timings`); re-run `make bench` on a quiet machine "
                "and `make guides` to refresh them for yours.",
                "",
            ]
        )

    lines.extend(
        [
            "## Expected numbers · 예상 수치",
            "",
            "Each verdict's metrics over the base seeds that `make verify` ran (`LAB_SEED` = "
            "one run; each run already averages its own seeds). A participant's numbers should "
            "fall near this range; the verdict's assertion, not the exact value, is what must "
            "hold. The range comes from one machine: another CPU (with or without AVX-512, another "
            "BLAS) rounds floats differently, so the same `LAB_SEED` can give other numbers there, "
            "now and then just outside this range.",
            "",
            "각 범위는 한 기계에서 얻은 것이다. 다른 CPU(AVX-512 유무, 다른 BLAS)는 부동소수점 "
            "반올림이 달라서 같은 `LAB_SEED`로도 다른 수치가 나오고, "
            "가끔은 이 범위를 조금 벗어난다. "
            "지켜져야 하는 것은 정확한 값이 아니라 판정의 단언이다.",
            "",
        ]
    )
    qids = [s["id"] for s in source["sections"] if re.fullmatch(r"[MORTAN]\d+", s["id"])]
    any_records = False
    for qid in qids:
        sp = spread(verify_dir, qid)
        if sp is None:
            continue
        any_records = True
        runs = max(v["runs"] for v in sp.values())
        lines.extend(
            [
                f"**{qid}** ({runs} base seeds)",
                "",
                "| metric | mean of runs | range of run means | typical seed std in a run |",
                "|---|---:|---|---:|",
            ]
        )
        for name, v in sp.items():
            if v["deterministic"]:
                lines.append(f"| `{name}` | {_fmt(v['mean'])} | exact (deterministic) | 0 |")
            else:
                lines.append(
                    f"| `{name}` | {_fmt(v['mean'])} | {_fmt(v['lo'])} to {_fmt(v['hi'])} "
                    f"| {_fmt(v['seed_std'])} |"
                )
        lines.append("")
    if not any_records:
        lines.extend(["_Run `make verify` to fill this table._", ""])

    lines.extend(["## Common misconceptions · 흔한 오해", ""])
    for m in source["misconceptions"]:
        lines.extend([f"- {m['en']}", f"  - {m['ko']}"])
    lines.append("")
    both("If you are short of time", "시간이 부족하면", "skip")
    both(
        "When a number differs or a verdict fails",
        "수치가 다르거나 판정이 실패하면",
        "when_numbers_differ",
    )
    return "\n".join(lines).rstrip() + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--verify-dir", default=str(paths.build_dir() / "verify"))
    ap.add_argument("--timings", default=str(paths.build_dir() / "timings"))
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args()
    for src in sorted(SRC.glob("*.yaml")):
        source = load_source(src)
        tfile = Path(args.timings) / f"{source['notebook']}.json"
        timings = json.loads(tfile.read_text(encoding="utf-8")) if tfile.exists() else None
        out = Path(args.out) / f"{source['notebook']}.md"
        out.write_text(render(source, timings, Path(args.verify_dir)), encoding="utf-8")
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
