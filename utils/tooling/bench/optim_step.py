"""Step time of the from-scratch optimizers (utils.scratch.optim) vs torch.optim, single-tensor and
foreach.

One ``optimizer.step()`` on a ~1.07M-parameter MLP (784-1024-256-10, 6 tensors) with fixed
random gradients. The three variants of an optimizer are timed round-robin (ours, torch
``foreach=False``, torch ``foreach=True``) so that load on a shared machine hits them alike; the
table reports the median step time over the repeats, and the ratios are medians of the per-round
ratios (each round times the variants back to back, which cancels slow drifts in machine load).
Reference for AdamP: ``adamp.AdamP`` (no foreach path).
Target (issue 3): ours within 1.5x of torch's single-tensor path. Ours includes the per-tensor
update functions' argument checks (``sgd_update_`` etc., shared with the stacked trainer).
"""

from __future__ import annotations

import statistics
import time
from math import nan

import adamp
import torch

from utils.core import models
from utils.scratch import optim

WARMUP, REPEATS = 5, 60
TARGET = 1.5

# name -> (our class, reference class or None for torch.optim.<name>, kwargs)
CONFIGS = {
    "SGD (momentum 0.9, wd 1e-4)": (
        optim.SGD,
        torch.optim.SGD,
        dict(lr=0.01, momentum=0.9, weight_decay=1e-4),
    ),
    "SGD (Nesterov 0.9)": (optim.SGD, torch.optim.SGD, dict(lr=0.01, momentum=0.9, nesterov=True)),
    "Adagrad": (optim.Adagrad, torch.optim.Adagrad, dict(lr=0.01)),
    "Adadelta": (optim.Adadelta, torch.optim.Adadelta, dict()),
    "RMSprop": (optim.RMSprop, torch.optim.RMSprop, dict(lr=1e-3)),
    "RMSprop (centered, momentum)": (
        optim.RMSprop,
        torch.optim.RMSprop,
        dict(lr=1e-3, centered=True, momentum=0.9),
    ),
    "Adam": (optim.Adam, torch.optim.Adam, dict(lr=1e-3)),
    "Adam (amsgrad)": (optim.Adam, torch.optim.Adam, dict(lr=1e-3, amsgrad=True)),
    "AdamW": (optim.AdamW, torch.optim.AdamW, dict(lr=1e-3)),
    "RAdam": (optim.RAdam, torch.optim.RAdam, dict(lr=1e-3)),
    "AdamP": (optim.AdamP, adamp.AdamP, dict(lr=1e-3, weight_decay=1e-2)),
}


def _model_with_grads(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    net = models.MLP(784, [1024, 256], 10)
    for p in net.parameters():
        p.grad = torch.randn_like(p) * 1e-2
    return net


def _time_step(opt: torch.optim.Optimizer) -> float:
    start = time.perf_counter()
    opt.step()
    return time.perf_counter() - start


def measure(repeats: int = REPEATS) -> list[dict]:
    """Median step time (ms) per optimizer and variant.

    Returns:
        one dict per CONFIGS entry: name, ours_ms, single_ms, foreach_ms (NaN where the
        reference has no foreach path), ratio_single and ratio_foreach (medians of the
        per-round ratios ours / reference), n_params.
    """
    rows = []
    for name, (ours_cls, ref_cls, kw) in CONFIGS.items():
        variants = {"ours": ours_cls(_model_with_grads().parameters(), **kw)}
        if ref_cls is adamp.AdamP:
            variants["single"] = ref_cls(_model_with_grads().parameters(), **kw)
        else:
            variants["single"] = ref_cls(_model_with_grads().parameters(), foreach=False, **kw)
            variants["foreach"] = ref_cls(_model_with_grads().parameters(), foreach=True, **kw)
        times: dict[str, list[float]] = {k: [] for k in variants}
        for i in range(WARMUP + repeats):
            for key, opt in variants.items():
                dt = _time_step(opt)
                if i >= WARMUP:
                    times[key].append(dt)
        med = {k: 1e3 * statistics.median(v) for k, v in times.items()}
        ratio = {
            k: statistics.median(a / b for a, b in zip(times["ours"], v, strict=True))
            for k, v in times.items()
            if k != "ours"
        }
        n_params = sum(p.numel() for g in variants["ours"].param_groups for p in g["params"])
        rows.append(
            dict(
                name=name,
                ours_ms=med["ours"],
                single_ms=med["single"],
                foreach_ms=med.get("foreach", float("nan")),
                ratio_single=ratio["single"],
                ratio_foreach=ratio.get("foreach", nan),
                n_params=n_params,
            )
        )
    return rows


def run() -> str:
    rows = measure()
    lines = [
        "## Optimizer step: from scratch (utils.scratch.optim) vs torch.optim",
        "",
        f"Median wall time of one `step()` over {REPEATS} repeats (after {WARMUP} warm-up steps) "
        f"on a {rows[0]['n_params'] / 1e6:.2f}M-parameter MLP 784-1024-256-10, "
        f"{torch.get_num_threads()} torch threads; variants timed round-robin, ratios are "
        "medians of per-round ratios. "
        f"Target: ours / torch single-tensor <= {TARGET}. AdamP's reference is `adamp.AdamP` "
        "(single-tensor only).",
        "",
        "| optimizer | ours ms | torch single ms | torch foreach ms | ours / single | "
        "ours / foreach | target |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        ratio_s, ratio_f = r["ratio_single"], r["ratio_foreach"]
        foreach = "—" if ratio_f != ratio_f else f"{r['foreach_ms']:.2f}"
        rf = "—" if ratio_f != ratio_f else f"{ratio_f:.2f}"
        mark = "ok" if ratio_s <= TARGET else "MISSED"
        lines.append(
            f"| {r['name']} | {r['ours_ms']:.2f} | {r['single_ms']:.2f} | {foreach} | "
            f"{ratio_s:.2f} | {rf} | {mark} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(run())
