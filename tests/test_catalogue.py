"""The question catalogue and the glossary (``utils.tooling.catalogue``, ``docs/``)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from utils.core.verdict import NOTEBOOK_OF_PREFIX
from utils.tooling import answer_index
from utils.tooling import catalogue as cat

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
#: What each seed note is (see the header of docs/questions.yaml): the kinds its sections allow.
SEED_KINDS = {
    "000": {"mentoring Q&A"},
    "001": {"weekly retro"},
    "002": {"lecture notes", "assignment notes", "peer meeting"},
    "004": {"peer meeting"},
}


def _yaml(path: Path) -> list:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def questions():
    return cat.load_questions(DOCS / "questions.yaml")


@pytest.fixture(scope="module")
def terms(questions):
    return cat.load_glossary(DOCS / "glossary.yaml", [q["id"] for q in questions])


def test_yaml_lists_exactly_the_ids_the_notebooks_answer(questions):
    answered = {}
    for name in NOTEBOOK_OF_PREFIX.values():
        for qid in answer_index.notebook_verdicts(ROOT / "notebooks" / f"{name}.ipynb"):
            answered[qid] = name
    listed = [q["id"] for q in _yaml(DOCS / "questions.yaml")]
    assert len(listed) == len(set(listed)), "an ID is listed twice"
    assert set(listed) == set(answered)
    for q in questions:
        assert q["notebook"] == answered[q["id"]], q["id"]
    cat.load_questions(DOCS / "questions.yaml", expected_ids=answered)  # the module agrees


def test_every_ko_field_has_hangul(questions, terms):
    for q in questions:
        assert cat.has_hangul(q["ko"]), q["id"]
    for t in terms:
        assert cat.has_hangul(t["ko"]) and cat.has_hangul(t["definition_ko"]), t["en"]


def test_raised_in_matches_the_kind_of_seed_note(questions):
    for q in questions:
        first = re.match(r"^(\d{3}):", q["source"])
        assert first, f"{q['id']}: source must start with a seed number, got {q['source']!r}"
        assert q["raised_in"] in SEED_KINDS[first.group(1)], q["id"]


def test_glossary_covers_the_terms_the_issue_names(terms):
    names = {t["en"].casefold() for t in terms}
    for must in [
        "linear probe",
        "catastrophic forgetting",
        "internal covariate shift",
        "effective learning rate",
        "expected calibration error (ECE)",
        "Hessian-vector product (HVP)",
        "top Hessian eigenvalue",
        "heavy-ball momentum",
        "learning-rate warmup",
        "weight decay vs L2 penalty",
        "DropConnect",
        "ASHA",
        "confidence interval",
    ]:
        assert must.casefold() in names, must
    assert any("β-smoothness" in t["en"] for t in terms)
    assert len(terms) >= 50


def _record(folder: Path, qid: str, status: str, headline: str) -> None:
    rec = {
        "qid": qid,
        "notebook": NOTEBOOK_OF_PREFIX[qid[0]],
        "claim": f"claim of {qid}",
        "status": status,
        "headline": headline,
        "lab_seed": 3,
    }
    (folder / f"{qid}.json").write_text(json.dumps(rec), encoding="utf-8")


def _sections(text: str) -> dict[str, str]:
    """``{qid: its section of questions.md}``."""
    parts = re.split(r"^### ([A-Z]\d+)$", text, flags=re.M)
    return {parts[i]: parts[i + 1] for i in range(1, len(parts), 2)}


def test_render_without_records(tmp_path, questions):
    ids = [q["id"] for q in questions]
    q_md, g_md = cat.render(tmp_path / "out", tmp_path / "no-records", expected_ids=ids)
    sections = _sections(q_md.read_text(encoding="utf-8"))
    assert list(sections) == ids  # course order, each once
    assert all("not run yet" in s for s in sections.values())
    assert f"0 of {len(ids)} questions have a record" in q_md.read_text(encoding="utf-8")
    assert g_md.exists()


def test_render_with_two_records(tmp_path, questions):
    ids = [q["id"] for q in questions]
    records = tmp_path / "records"
    records.mkdir()
    _record(records, "M1", "supported", "moved 0 vs 1.3")
    _record(records, "A7", "refuted", "ViT 206k params")
    q_md, _ = cat.render(tmp_path / "out", records, expected_ids=ids)
    text = q_md.read_text(encoding="utf-8")
    sections = _sections(text)
    assert "**supported**" in sections["M1"] and "moved 0 vs 1.3" in sections["M1"]
    assert "claim of M1" in sections["M1"]
    assert "**refuted**" in sections["A7"] and "ViT 206k params" in sections["A7"]
    others = [s for q, s in sections.items() if q not in {"M1", "A7"}]
    assert all("not run yet" in s for s in others)
    assert f"2 of {len(ids)} questions have a record (LAB_SEED 3)" in text
    for q in questions:  # Korean and English text, where raised, link to the notebook
        s = sections[q["id"]]
        assert q["ko"] in s and q["en"] in s and q["raised_in"] in s and q["source"] in s
        assert f"../notebooks/{q['notebook']}.ipynb" in s


def test_glossary_render_is_alphabetical(terms):
    rows = [ln for ln in cat.render_glossary(terms).splitlines() if ln.startswith("| **")]
    english = [re.match(r"\| \*\*(.*?)\*\* \|", r).group(1) for r in rows]
    assert english == sorted(english, key=cat.sort_key)
    assert len(rows) == len(terms)


def test_committed_docs_list_every_id_and_term(questions, terms):
    q_text = (DOCS / "questions.md").read_text(encoding="utf-8")
    sections = _sections(q_text)
    for q in questions:
        assert q["id"] in sections, f"{q['id']} missing from docs/questions.md"
        assert f'<a id="{q["id"]}"></a>' in q_text
        assert q["ko"] in sections[q["id"]] and q["en"] in sections[q["id"]], (
            f"docs/questions.md is stale for {q['id']}: run python -m utils.tooling.catalogue"
        )
    assert "python -m utils.tooling.catalogue" in q_text  # how to regenerate
    g_text = (DOCS / "glossary.md").read_text(encoding="utf-8")
    for t in terms:
        assert f"| **{t['en']}** |" in g_text, f"{t['en']} missing from docs/glossary.md"
    # the glossary does not depend on a run: the committed file is exactly a fresh render
    assert g_text == cat.render_glossary(terms)


def _write(tmp_path: Path, entries: list) -> Path:
    path = tmp_path / "q.yaml"
    path.write_text(yaml.safe_dump(entries, allow_unicode=True), encoding="utf-8")
    return path


def test_missing_field_raises_naming_id_and_field(tmp_path):
    entries = _yaml(DOCS / "questions.yaml")
    del next(e for e in entries if e["id"] == "O3")["ko"]
    with pytest.raises(ValueError, match=r"O3.*'ko'"):
        cat.load_questions(_write(tmp_path, entries))


@pytest.mark.parametrize(
    ("qid", "field", "value", "pattern"),
    [
        ("R2", "ko", "an English sentence only", r"R2.*'ko'.*Hangul"),
        ("T4", "en", "   ", r"T4.*'en'"),
        ("N5", "raised_in", "coffee break", r"N5.*'raised_in'"),
        ("A1", "notebook", "01_optimization", r"A1.*'notebook'"),
    ],
)
def test_bad_field_raises_naming_id_and_field(tmp_path, qid, field, value, pattern):
    entries = _yaml(DOCS / "questions.yaml")
    next(e for e in entries if e["id"] == qid)[field] = value
    with pytest.raises(ValueError, match=pattern):
        cat.load_questions(_write(tmp_path, entries))


def test_duplicate_missing_and_unexpected_ids_raise(tmp_path):
    entries = _yaml(DOCS / "questions.yaml")
    with pytest.raises(ValueError, match=r"M1.*more than once"):
        cat.validate_questions([*entries, dict(entries[0])])
    with pytest.raises(ValueError, match=r"O5"):
        cat.validate_questions([e for e in entries if e["id"] != "O5"])
    with pytest.raises(ValueError, match=r"not listed: \['X9'\]|\['X9'\]"):
        cat.validate_questions(entries, expected_ids=[e["id"] for e in entries] + ["X9"])


def test_glossary_validation(tmp_path):
    entries = _yaml(DOCS / "glossary.yaml")
    broken = [dict(e) for e in entries]
    del broken[0]["definition_ko"]
    with pytest.raises(ValueError, match=rf"{re.escape(entries[0]['en'])}.*'definition_ko'"):
        cat.validate_glossary(broken)
    bad_see = [dict(e) for e in entries]
    bad_see[1]["see"] = ["Z1"]
    with pytest.raises(ValueError, match=r"'see'.*Z1"):
        cat.validate_glossary(bad_see, known_ids=["O7"])


def test_no_citation_points_outside_the_repository():
    """Citations go to the shipped catalogue, never to the study notes or QUESTIONS.md (which
    live outside the repository)."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    dangling = re.compile(r"QUESTIONS\.md|[Ss]eed notes \d|[Ss]tudy notes \d")
    files = sorted((root / "notebooks").glob("*.ipynb")) + sorted((root / "utils").rglob("*.py"))
    hits = [
        f"{p.relative_to(root)}: {m.group(0)}"
        for p in files
        for m in dangling.finditer(p.read_text(encoding="utf-8"))
    ]
    assert not hits, hits
