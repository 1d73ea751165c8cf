"""Core layer: paths, reproducibility, data, models, the one training loop, metrics, plots and
verdicts. Imports nothing else from ``utils``."""
