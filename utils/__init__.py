"""Shared code of the Mentoring Lab notebooks.

Small modules, one concern each: `repro` (seeds, device, determinism), `data` (offline real
data), `models`, `train`, `plot`, `verdict`. Import the modules you need, e.g.
``from utils import data, verdict``.
"""

__version__ = "0.1.0"
