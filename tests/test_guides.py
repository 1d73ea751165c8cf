"""Facilitator guides: sources validate, the generator takes numbers from records, and every
notebook's committed guide is complete."""

import json
from pathlib import Path

import pytest
import yaml

from utils.tooling import guides

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted((ROOT / "docs" / "facilitator" / "src").glob("*.yaml"))


@pytest.mark.parametrize("src", SOURCES, ids=lambda p: p.stem)
def test_source_validates_and_covers_every_section_of_its_notebook(src):
    data = guides.load_source(src)
    nb = json.loads((ROOT / "notebooks" / f"{data['notebook']}.ipynb").read_text(encoding="utf-8"))
    headings = [
        "".join(c["source"]).split("\n", 1)[0][3:].split(" · ")[0]
        for c in nb["cells"]
        if c["cell_type"] == "markdown" and "".join(c["source"]).startswith("## ")
    ]
    ids = [s["id"] for s in data["sections"]]
    assert ids[0] == "setup" and ids[1:] == headings, (ids, headings)
    assert (ROOT / "docs" / "facilitator" / f"{data['notebook']}.md").exists()


def test_notebook_00_guide_is_complete():
    text = (ROOT / "docs" / "facilitator" / "00_pytorch_primer.md").read_text(encoding="utf-8")
    for part in (
        "학습 목표",
        "시간 계획",
        "멈춤 질문",
        "예상 수치",
        "흔한 오해",
        "시간이 부족하면",
        "수치가 다르거나",
    ):
        assert part in text, part
    assert "Run `make verify`" not in text and "Run `make bench`" not in text  # generated from runs


def _record(folder: Path, qid: str, values: list[float]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rec = {
        "qid": qid,
        "metrics": {"acc": {"mean": sum(values) / len(values), "std": 0.01, "values": values}},
    }
    (folder / f"{qid}.json").write_text(json.dumps(rec))


def test_spread_and_render_take_numbers_from_records(tmp_path):
    _record(tmp_path / "seed0", "M1", [0.9, 0.92, 0.91])
    _record(tmp_path / "seed1", "M1", [0.8, 0.82, 0.81])
    _record(tmp_path / "seed0-threads2", "M1", [0.1, 0.1, 0.1])  # ignored: repeats seed 0
    sp = guides.spread(tmp_path, "M1")
    assert sp["acc"]["runs"] == 2
    assert sp["acc"]["lo"] == pytest.approx(0.81) and sp["acc"]["hi"] == pytest.approx(0.91)
    assert guides.spread(tmp_path, "M2") is None
    source = guides.load_source(SOURCES[0])
    text = guides.render(source, {"sections": {"M1": 95.0}}, tmp_path)
    assert "0.81 to 0.91" in text and "| 2 | 15 |" in text  # 95 s rounds up to 2 min
    assert "**M1**" in text


def test_load_source_names_what_is_wrong(tmp_path):
    data = yaml.safe_load(SOURCES[0].read_text(encoding="utf-8"))
    bad = dict(data)
    del bad["skip"]
    (tmp_path / "a.yaml").write_text(yaml.safe_dump(bad, allow_unicode=True), encoding="utf-8")
    with pytest.raises(ValueError, match="skip"):
        guides.load_source(tmp_path / "a.yaml")
    bad = dict(data)
    bad["goals"] = {"en": ["x"], "ko": ["no hangul here"]}
    (tmp_path / "b.yaml").write_text(yaml.safe_dump(bad, allow_unicode=True), encoding="utf-8")
    with pytest.raises(ValueError, match="Hangul"):
        guides.load_source(tmp_path / "b.yaml")
