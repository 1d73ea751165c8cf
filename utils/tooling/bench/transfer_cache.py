"""Benchmark of notebook 03's source-model cache: pretraining (cold) vs loading (warm).

Notebook 03 pretrains one small ResNet per seed on MNIST digits 0-4 (through ``train.fit``,
pinned to one thread by :func:`utils.tasks.transfer.pretrain`) and caches it under
``build/cache/``. This measures, in CPU seconds of this process, what the cache saves:
pretraining three seeds into an empty temporary cache, then loading them back.
"""

from __future__ import annotations

import tempfile
import time

from utils.core import repro
from utils.tasks import transfer


def run() -> str:
    """Return the Markdown section (``## title``, explanation, table)."""
    cfg = transfer.SourceConfig()
    transfer.source_data()  # data loading is not part of either timing
    seeds = [0, 1, 2]
    with repro.num_threads(1), tempfile.TemporaryDirectory() as tmp:
        t0 = time.process_time()
        cold = [transfer.load_or_pretrain(cfg, s, directory=tmp) for s in seeds]
        t1 = time.process_time()
        warm = [transfer.load_or_pretrain(cfg, s, directory=tmp) for s in seeds]
        t2 = time.process_time()
    assert not any(i["cached"] for _, i in cold) and all(i["cached"] for _, i in warm)
    cold_s, warm_s = t1 - t0, t2 - t1
    acc = ", ".join(f"{i['source_test_acc']:.3f}" for _, i in warm)
    return "\n".join(
        [
            "## Notebook 03: source-model cache (pretrain vs load)",
            "",
            "Three source models (ResNet widths 8/16/32, 150 Adam steps on MNIST digits 0-4, "
            "14x14), CPU seconds of one thread. A cold run of notebook 03 pays the first column "
            "once per set of seeds; a warm run pays the second.",
            "",
            "| pretrain 3 seeds (CPU s) | load 3 from cache (CPU s) | ratio | source test acc |",
            "|---:|---:|---:|---|",
            f"| {cold_s:.2f} | {warm_s:.3f} | {cold_s / max(warm_s, 1e-9):.0f}x | {acc} |",
        ]
    )
