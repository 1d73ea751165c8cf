"""What a learner should never have to wade through in a notebook's output.

* **Raw dicts**: a printed ``{'key': value, ...}`` under a well-formatted table; show a table,
  a sentence or a verdict instead.
* **Float noise**: ``0.1599999964237213``, ``3.3306690738754696e-15``, ``0.1 ± 1.7e-17``:
  format numbers to the digits that mean something.

``conftest.py`` applies :func:`noise` to every cell output that nbval collects, so ``make test``
fails on them; ``noise`` is also usable on an executed notebook (``python -m
utils.tooling.outputs executed.ipynb``).
"""

from __future__ import annotations

import re
import sys

# a printed dict/mapping repr: {'a': ... or {"a": ...
_RAW_DICT = re.compile(r"""(?:^|[\s(\[=:])\{\s*['"][^'"\n]{1,60}['"]\s*:\s""")
# eight or more decimals: float32/float64 repr noise (0.1599999964237213)
_LONG_FLOAT = re.compile(r"(?<![\w.])-?\d+\.\d{8,}(?:e[-+]?\d+)?(?![\w])")
# a tiny exponent such as 3.33e-15 or 1.7e-17 (rounding noise printed as a value)
_TINY = re.compile(r"(?<![\w.])-?\d(?:\.\d+)?e-(?:1[3-9]|[2-9]\d|\d{3})(?![\w])")


def noise(text: str) -> list[str]:
    """The raw dicts and noisy floats in one output text (empty list when clean).

    Raises:
        TypeError: ``text`` not a string.
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    found = [f"raw dict {m.group(0).strip()[:40]!r}" for m in _RAW_DICT.finditer(text)]
    found += [f"float noise {m.group(0)!r}" for m in _LONG_FLOAT.finditer(text)]
    found += [f"float noise {m.group(0)!r}" for m in _TINY.finditer(text)]
    return found


def output_texts(outputs: list) -> list[str]:
    """The learner-visible text of a cell's outputs (stream text and ``text/plain`` results;
    HTML, images and widgets are rendered, not read)."""
    texts = []
    for out in outputs:
        get = out.get if isinstance(out, dict) else lambda k, d=None, o=out: getattr(o, k, d)
        kind = get("output_type")
        if kind == "stream":
            t = get("text", "")
            texts.append("".join(t) if isinstance(t, list) else t)
        elif kind in ("execute_result", "display_data"):
            data = get("data", {}) or {}
            if "text/html" in data or "image/png" in data or any("widget" in k for k in data):
                continue
            t = data.get("text/plain", "")
            texts.append("".join(t) if isinstance(t, list) else t)
    return texts


def main(paths: list[str]) -> int:
    import nbformat

    bad = 0
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        for i, cell in enumerate(nb.cells):
            if cell.cell_type != "code":
                continue
            for text in output_texts(cell.get("outputs", [])):
                for problem in noise(text):
                    bad += 1
                    print(f"{path}: cell {i}: {problem}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
