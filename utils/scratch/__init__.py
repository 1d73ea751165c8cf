"""From-scratch layer: readable twins of library classes (optimizers, BatchNorm, attention, a
BERT encoder), each proven equal to its reference in ``tests/``. Imports only ``utils.core``."""
