"""Benchmark: from-scratch attention vs ``torch.nn.functional.scaled_dot_product_attention``.

Times ``utils.scratch.attention.scaled_dot_product_attention`` (which materialises the [n, n] weight
matrix to return it) against the library kernel at a few sequence lengths, and the cost of
loading all-MiniLM-L6-v2 (the model-loading share of notebook 04).
"""

from __future__ import annotations

import subprocess
import sys
import time

import torch
import torch.nn.functional as F

from utils.core import paths
from utils.scratch import attention as A

LENGTHS = (128, 512, 1024, 2048)
HEADS, HEAD_DIM, REPEATS = 4, 32, 5


def _best(fn, repeats: int = REPEATS) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def run() -> str:
    g = torch.Generator().manual_seed(0)
    rows = [
        "| n | from scratch ms | F.sdpa ms | ratio | max abs diff |",
        "|---:|---:|---:|---:|---:|",
    ]
    for n in LENGTHS:
        q, k, v = (torch.randn(1, HEADS, n, HEAD_DIM, generator=g) for _ in range(3))
        with torch.no_grad():
            mine = _best(lambda q=q, k=k, v=v: A.scaled_dot_product_attention(q, k, v))
            ref = _best(lambda q=q, k=k, v=v: F.scaled_dot_product_attention(q, k, v))
            diff = float(
                (
                    A.scaled_dot_product_attention(q, k, v)[0]
                    - F.scaled_dot_product_attention(q, k, v)
                )
                .abs()
                .max()
            )
        rows.append(f"| {n} | {mine * 1e3:.2f} | {ref * 1e3:.2f} | {mine / ref:.2f} | {diff:.1e} |")

    # A fresh process, so that the model is not already cached by an earlier import.
    code = (
        "import time; from utils.scratch import bert; "
        "t0, c0 = time.perf_counter(), time.process_time(); "
        "bert.encode(['The cat sat on the mat.']); "
        "print(time.perf_counter() - t0, time.process_time() - c0)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=paths.ROOT,
    )
    load = tuple(float(v) for v in out.stdout.split()[-2:])
    return "\n".join(
        [
            "## Attention: from scratch vs F.scaled_dot_product_attention",
            "",
            f"One call, batch 1, {HEADS} heads, head dim {HEAD_DIM}, float32, best of {REPEATS}, "
            f"{torch.get_num_threads()} threads. The from-scratch version builds the n x n weight "
            "matrix (it returns it); the library kernel may fuse "
            "(flash/memory-efficient attention).",
            "",
            *rows,
            "",
            f"Loading all-MiniLM-L6-v2 (safetensors + tokenizers) and encoding one sentence: "
            f"{load[0]:.2f} s wall, {load[1]:.2f} CPU-s (the model-loading share of notebook 04).",
        ]
    )
