"""Tooling on top of everything: ``make bench``, ``make book`` and the answer index."""
