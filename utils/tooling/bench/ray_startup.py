"""Benchmark: what Ray Tune costs on this machine before it tunes anything.

Starts a local Ray with :func:`utils.instruments.raytune.session` in a fresh subprocess (so the
import is counted), runs 8 trials of :func:`utils.instruments.raytune.toy_trainable` (3 reports
each), and reports the wall and CPU seconds of start-up, of the tuning and of shutdown (which
includes deleting the session folder). Notebook 02 (R10) pays the start-up once; this is the
fixed cost a learner's laptop pays.
"""

from __future__ import annotations

import json
import subprocess
import sys

_SCRIPT = r"""
import json, time
t0, c0 = time.perf_counter(), time.process_time()
from ray import tune
from utils.instruments import raytune
out = {}
with raytune.session() as info:
    out["startup_wall"] = time.perf_counter() - t0
    out["startup_cpu"] = time.process_time() - c0 + raytune.child_cpu_seconds()
    out["cpus"] = info["cpus"]
    t1, c1 = time.perf_counter(), time.process_time() + raytune.child_cpu_seconds()
    raytune.run(raytune.toy_trainable, {"x": tune.uniform(0, 1)}, metric="loss", mode="min",
                num_samples=8, seed=0, name="bench_ray_startup")
    out["tune_wall"] = time.perf_counter() - t1
    out["tune_cpu"] = time.process_time() + raytune.child_cpu_seconds() - c1
    t2 = time.perf_counter()
out["shutdown_wall"] = time.perf_counter() - t2
print(json.dumps(out))
"""


def run() -> str:
    """Markdown section with the start-up / tuning / shutdown costs of a local Ray."""
    proc = subprocess.run(
        [sys.executable, "-c", _SCRIPT], capture_output=True, text=True, timeout=300
    )
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        return "## Ray start-up\n\nFAILED: " + (proc.stderr.strip().splitlines() or ["?"])[-1]
    r = json.loads(lines[-1])
    return "\n".join(
        [
            "## Ray start-up (local `ray.init` + 8 toy trials)",
            "",
            f"Local Ray with {r['cpus']:.0f} CPUs, loopback only, no dashboard. CPU = this process "
            "plus Ray's own processes (raylet, GCS, agents, workers).",
            "",
            "| phase | wall s | CPU s |",
            "|---|---:|---:|",
            f"| import + ray.init | {r['startup_wall']:.1f} | {r['startup_cpu']:.1f} |",
            f"| Tuner.fit, 8 trials | {r['tune_wall']:.1f} | {r['tune_cpu']:.1f} |",
            f"| shutdown | {r['shutdown_wall']:.1f} | - |",
        ]
    )
