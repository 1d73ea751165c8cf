"""Instruments: tools that measure or drive training (Hessian and landscape tools, probes,
stacked training, fine-tuning, augmentation, Ray Tune). Imports ``utils.core`` and
``utils.scratch`` only."""
